//! The lanes tile: a direct convolution's inner loop with the output channels in the vector
//! lanes (`cpu::slanes`). For `rows × cols` output pixels (16 at most) and 16 output channels,
//! per k (one input channel and tap, in the weights' `(ci, ky, kx)` order) the weight vector
//! `w[k][..16]` is loaded once and each pixel's input value broadcast: one `vfmadd231ps` per
//! pixel. Nothing is packed or gathered: pixel `(r, c)` reads `row[r] + koff[k] + c · step`, a
//! zero-padded input plane read in place.
//!
//! The accumulators hold pixels by channels; NCHW wants channels by pixels (except on 1 × 1
//! maps, where a pixel's channels are contiguous and the vectors are stored as they are). The
//! AVX-512 tile transposes them in registers (16 × 16, and a residual on the way in) and
//! stores each channel's row pieces in plain vector stores: copied out through a buffer one
//! float at a time they took as long as a 7 × 7 stem's multiply-adds. Two or four channel
//! vectors per tile (fewer pixels each) ran 2.2–2.5× the time of one.
//!
//! The AVX2 tile holds the 16 channels as two 8-lane vectors and runs the tile's pixels four
//! at a time (8 accumulators, 2 weight vectors and a broadcast of the 16 ymm registers; the
//! weights of a chunk are read again for the next, from L1 or L2), or, when at most 8
//! channels are live (a conv of 8 output channels), only the first vector, eight pixels at a
//! time; each piece of 4 pixels is transposed 4 × 4 per 128-bit half into per-channel pieces.
//!
//! Each element is `acc = residual or 0; for k in order: acc = fma(w, x, acc)`, then
//! `acc + bias` and the activation, as [`twin`] computes it one output at a time with
//! [`crate::detmath::fma`].

use crate::detmath;
use super::{finish, Act};

/// Output channels per tile: one vector.
pub const LANES: usize = 16;

/// Rows of a tile at most.
pub const MAX_ROWS: usize = 8;

/// One tile's arguments.
#[derive(Clone, Copy, Debug)]
pub struct LanesTile {
    /// Pixels per row (1, 2, 4, 8 or 16) and rows (1 to [`MAX_ROWS`]), at most 16 pixels in
    /// all ([`LanesTile::valid`]).
    pub cols: usize,
    pub rows: usize,
    /// Rows and channels stored: rows past `live_rows` (at most `rows`) and channels past
    /// `live_lanes` (at most 16) are computed and dropped.
    pub live_rows: usize,
    pub live_lanes: usize,
    /// Multiply-adds per output: the weights' K.
    pub kdim: usize,
    /// `kdim` offsets, in floats, from each row's start to its pixel 0's input of each k.
    pub koff: *const usize,
    /// Where each row's pixel 0 reads its input (entries past `rows` unused).
    pub row: [*const f32; MAX_ROWS],
    /// Floats from one pixel's input to the next one's in a row: the conv's column stride.
    pub step: usize,
    /// `[kdim][16]` weights.
    pub w: *const f32,
    /// 16 biases, or null for none.
    pub bias: *const f32,
    pub act: Act,
    /// Each live row's output of channel 0, pixel 0; channel `l` of it at `+ l · cs`, its
    /// pixels contiguous.
    pub out: [*mut f32; MAX_ROWS],
    pub cs: usize,
    /// Laid out as `out`, the residual the accumulators start from, or all null for 0 (they
    /// may be `out`'s own pointers: a tile reads its residuals before it stores).
    pub res: [*const f32; MAX_ROWS],
}

impl LanesTile {
    /// Whether the shape is one the kernels run.
    pub fn valid(&self) -> bool {
        [1, 2, 4, 8, 16].contains(&self.cols) && (1..=MAX_ROWS).contains(&self.rows) && self.rows * self.cols <= 16 && (1..=self.rows).contains(&self.live_rows) && (1..=LANES).contains(&self.live_lanes)
    }
}

/// The scalar twin: the same operations, one output at a time.
///
/// # Safety
/// `t.valid()`; `t.koff` holds `kdim` offsets; for every `r < rows`, `c < cols` and `k`,
/// `row[r] + koff[k] + c · step` is readable; `w` holds `kdim · 16` floats and `bias` (unless
/// null) 16; for `r < live_rows`, `l < live_lanes` and `c < cols`, `out[r] + l · cs + c` is
/// writable (and `res[r] + l · cs + c` readable, unless null), with no other reference to them
/// alive.
pub unsafe fn twin(t: &LanesTile) {
    // SAFETY: a non-null `bias` holds 16 floats (the caller's contract) and `l < 16`.
    let bias = |l: usize| if t.bias.is_null() { None } else { Some(unsafe { *t.bias.add(l) }) };
    // SAFETY: the caller's contract bounds every read and write below.
    unsafe {
        for r in 0..t.live_rows {
            for l in 0..t.live_lanes {
                for c in 0..t.cols {
                    let at = l * t.cs + c;
                    let mut a = if t.res[r].is_null() { 0.0 } else { *t.res[r].add(at) };
                    for k in 0..t.kdim {
                        a = detmath::fma(*t.w.add(k * LANES + l), *t.row[r].add(*t.koff.add(k) + c * t.step), a);
                    }
                    *t.out[r].add(at) = finish(a, bias(l), t.act);
                }
            }
        }
    }
}

/// The AVX-512F tile.
///
/// # Safety
/// The CPU must support AVX-512F; the arguments satisfy [`twin`]'s contract.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn avx512(t: &LanesTile) {
    // SAFETY: forwarded contract; each instance's constants are the tile's shape.
    unsafe {
        match (t.cols, t.rows, t.step) {
            (16, 1, 1) => x86::tile::<16, 1, 16, 1>(t),
            (16, 1, 2) => x86::tile::<16, 1, 16, 2>(t),
            (8, 2, 1) => x86::tile::<8, 2, 16, 1>(t),
            (8, 2, 2) => x86::tile::<8, 2, 16, 2>(t),
            (4, 4, 1) => x86::tile::<4, 4, 16, 1>(t),
            (4, 4, 2) => x86::tile::<4, 4, 16, 2>(t),
            (2, 8, 1) => x86::tile::<2, 8, 16, 1>(t),
            (2, 8, 2) => x86::tile::<2, 8, 16, 2>(t),
            (1, 8, 1) => x86::tile::<1, 8, 8, 1>(t),
            (1, 8, 2) => x86::tile::<1, 8, 8, 2>(t),
            // Shapes and strides `cpu::slanes` never asks for: the same values, one output at
            // a time.
            _ => twin(t),
        }
    }
}

/// The AVX2 + FMA tile.
///
/// # Safety
/// The CPU must support AVX2 and FMA; the arguments satisfy [`twin`]'s contract.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn avx2(t: &LanesTile) {
    // SAFETY: forwarded contract; each instance's constants are the tile's shape.
    unsafe {
        match (t.cols, t.rows, t.step) {
            (16, 1, 1) => ymm::tile::<16, 1, 1>(t),
            (16, 1, 2) => ymm::tile::<16, 1, 2>(t),
            (8, 2, 1) => ymm::tile::<8, 2, 1>(t),
            (8, 2, 2) => ymm::tile::<8, 2, 2>(t),
            (4, 4, 1) => ymm::tile::<4, 4, 1>(t),
            (4, 4, 2) => ymm::tile::<4, 4, 2>(t),
            (2, 8, 1) => ymm::tile::<2, 8, 1>(t),
            (2, 8, 2) => ymm::tile::<2, 8, 2>(t),
            (1, 8, 1) => ymm::tile::<1, 8, 1>(t),
            (1, 8, 2) => ymm::tile::<1, 8, 2>(t),
            // Shapes and strides `cpu::slanes` never asks for: the same values, one output at
            // a time.
            _ => twin(t),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod ymm {
    use std::arch::x86_64::*;

    use super::super::avx2::act;
    use super::LanesTile;

    /// Pixels per transposed piece.
    const Q: usize = 4;

    /// Transposes the 4 × 4 blocks of each 128-bit half: lane `j` of `m[i]` goes to lane `i`
    /// of the result's `j` (and lane `4 + j` to lane `4 + i`).
    #[target_feature(enable = "avx2")]
    #[inline]
    pub(crate) fn transpose4(m: [__m256; 4]) -> [__m256; 4] {
        let lo = |a: __m256, b: __m256| _mm256_castpd_ps(_mm256_unpacklo_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
        let hi = |a: __m256, b: __m256| _mm256_castpd_ps(_mm256_unpackhi_pd(_mm256_castps_pd(a), _mm256_castps_pd(b)));
        let (t0, t1) = (_mm256_unpacklo_ps(m[0], m[1]), _mm256_unpackhi_ps(m[0], m[1]));
        let (t2, t3) = (_mm256_unpacklo_ps(m[2], m[3]), _mm256_unpackhi_ps(m[2], m[3]));
        [lo(t0, t2), hi(t0, t2), lo(t1, t3), hi(t1, t3)]
    }

    /// Channel `l`'s values of the chunk's 4 pixels (the chunk starts at row `r0`, column
    /// `c0` of a tile of `C` pixels per row), as laid out from `base` (`out` or `res`): zero
    /// for rows at or past `live_rows`.
    ///
    /// # Safety
    /// `base[r] + l · cs + c` is readable for the chunk's live pixels.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn load<const C: usize>(base: &[*const f32; super::MAX_ROWS], off: usize, r0: usize, c0: usize, live_rows: usize) -> __m128 {
        // SAFETY: the caller's contract; rows past `live_rows` are not touched.
        unsafe {
            let at = |r: usize, c: usize| base[r].add(off + c);
            match C {
                _ if C >= Q => _mm_loadu_ps(at(r0, c0)),
                2 => {
                    let a = _mm_castsi128_ps(_mm_loadl_epi64(at(r0, 0).cast()));
                    if r0 + 1 < live_rows {
                        _mm_castpd_ps(_mm_loadh_pd(_mm_castps_pd(a), at(r0 + 1, 0).cast()))
                    } else {
                        a
                    }
                }
                _ => {
                    let v = |i: usize| if r0 + i < live_rows { *at(r0 + i, 0) } else { 0.0 };
                    _mm_setr_ps(v(0), v(1), v(2), v(3))
                }
            }
        }
    }

    /// Stores channel `l`'s values of the chunk's 4 pixels (`load`'s layout), rows at or past
    /// `live_rows` dropped.
    ///
    /// # Safety
    /// `out[r] + off + c` is writable for the chunk's live pixels.
    #[target_feature(enable = "avx2")]
    #[inline]
    unsafe fn store<const C: usize>(out: &[*mut f32; super::MAX_ROWS], off: usize, r0: usize, c0: usize, live_rows: usize, v: __m128) {
        // SAFETY: the caller's contract; rows past `live_rows` are not touched.
        unsafe {
            let at = |r: usize, c: usize| out[r].add(off + c);
            match C {
                _ if C >= Q => _mm_storeu_ps(at(r0, c0), v),
                2 => {
                    _mm_storel_epi64(at(r0, 0).cast(), _mm_castps_si128(v));
                    if r0 + 1 < live_rows {
                        _mm_storeh_pd(at(r0 + 1, 0).cast(), _mm_castps_pd(v));
                    }
                }
                _ => {
                    let lanes = [v, _mm_shuffle_ps::<0b01>(v, v), _mm_movehl_ps(v, v), _mm_shuffle_ps::<0b11>(v, v)];
                    for (i, x) in lanes.iter().enumerate().take(live_rows.saturating_sub(r0)) {
                        _mm_store_ss(at(r0 + i, 0), *x);
                    }
                }
            }
        }
    }

    /// `C` pixels per row, `R` rows (`R · C` pixels, a multiple of 8), pixels `S` floats
    /// apart: 16 channels in chunks of 4 pixels, or, when at most 8 channels are live, only
    /// the first 8 in chunks of 8 pixels (8 accumulators either way).
    ///
    /// # Safety
    /// As [`super::avx2`], for a tile of this shape.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    pub(super) unsafe fn tile<const C: usize, const R: usize, const S: usize>(t: &LanesTile) {
        // SAFETY: forwarded contract.
        unsafe {
            if t.live_lanes <= 8 {
                chunks::<C, R, S, 1, 8>(t)
            } else {
                chunks::<C, R, S, 2, 4>(t)
            }
        }
    }

    /// The tile in chunks of `P` pixels by `H` vectors of 8 channels.
    ///
    /// # Safety
    /// As [`tile`]; `H · 8 ≥ live_lanes`.
    #[target_feature(enable = "avx2,fma")]
    #[inline]
    unsafe fn chunks<const C: usize, const R: usize, const S: usize, const H: usize, const P: usize>(t: &LanesTile) {
        debug_assert!(t.cols == C && t.rows == R && t.step == S && (R * C).is_multiple_of(P) && t.live_lanes <= 8 * H);
        let live_rows = t.live_rows.min(R);
        // 1 × 1 output maps: a pixel's 16 channels are contiguous, no transposes.
        let direct = C == 1 && t.cs == 1;
        let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        let masks: [__m256i; H] = std::array::from_fn(|h| _mm256_cmpgt_epi32(_mm256_set1_epi32(t.live_lanes as i32 - 8 * h as i32), lane));
        let out: [*mut f32; super::MAX_ROWS] = t.out;
        let res: [*const f32; super::MAX_ROWS] = t.res;
        // Where a chunk's 4-pixel piece `q` starts: (row, column) in the tile.
        let at = |p0: usize, q: usize| ((p0 + Q * q) / C, (p0 + Q * q) % C);
        // SAFETY: the caller's contract bounds every load and store below: pixels of rows
        // below `rows` are read from their input rows, outputs and residuals are touched only
        // for rows below `live_rows` and channels below `live_lanes` (`load`/`store` and the
        // lane masks drop the rest).
        unsafe {
            let bias: Option<[__m256; H]> = if t.bias.is_null() { None } else { Some(std::array::from_fn(|h| _mm256_loadu_ps(t.bias.add(8 * h)))) };
            for p0 in (0..R * C).step_by(P) {
                let (r0, _) = at(p0, 0);
                if r0 >= live_rows {
                    break;
                }
                // Pixel-major accumulators: `acc[i][h]` holds channels `8h .. 8h + 8` of the
                // chunk's pixel `i`.
                let mut acc = [[_mm256_setzero_ps(); H]; P];
                if !res[0].is_null() {
                    if direct {
                        for (i, a) in acc.iter_mut().enumerate().take(live_rows - r0) {
                            for (h, x) in a.iter_mut().enumerate() {
                                *x = _mm256_maskload_ps(res[r0 + i].add(8 * h), masks[h]);
                            }
                        }
                    } else {
                        for q in 0..P / Q {
                            let (r, c) = at(p0, q);
                            let ch = |l: usize| if l < t.live_lanes { load::<C>(&res, l * t.cs, r, c, live_rows) } else { _mm_setzero_ps() };
                            // Per vector h: channels j and j + 4 of the piece's 4 pixels in u[h][j].
                            let u: [[__m256; 4]; H] = std::array::from_fn(|h| transpose4(std::array::from_fn(|j| _mm256_set_m128(ch(8 * h + j + 4), ch(8 * h + j)))));
                            for (i, a) in acc[Q * q..Q * (q + 1)].iter_mut().enumerate() {
                                for (h, x) in a.iter_mut().enumerate() {
                                    *x = u[h][i];
                                }
                            }
                        }
                    }
                }
                let src: [*const f32; P] = std::array::from_fn(|i| t.row[(p0 + i) / C].add(((p0 + i) % C) * S));
                let mut w = t.w;
                for k in 0..t.kdim {
                    let off = *t.koff.add(k);
                    let wv: [__m256; H] = std::array::from_fn(|h| _mm256_loadu_ps(w.add(8 * h)));
                    for (a, s) in acc.iter_mut().zip(&src) {
                        let x = _mm256_broadcast_ss(&*s.add(off));
                        for h in 0..H {
                            a[h] = _mm256_fmadd_ps(wv[h], x, a[h]);
                        }
                    }
                    w = w.add(super::LANES);
                }
                for a in acc.iter_mut() {
                    for (h, y) in a.iter_mut().enumerate() {
                        *y = act(bias.map_or(*y, |b| _mm256_add_ps(*y, b[h])), t.act);
                    }
                }
                if direct {
                    for (i, a) in acc.iter().enumerate().take(live_rows - r0) {
                        for (h, &y) in a.iter().enumerate() {
                            _mm256_maskstore_ps(out[r0 + i].add(8 * h), masks[h], y);
                        }
                    }
                    continue;
                }
                for q in 0..P / Q {
                    let (r, c) = at(p0, q);
                    let pieces: [[__m256; 4]; H] = std::array::from_fn(|h| transpose4(std::array::from_fn(|i| acc[Q * q + i][h])));
                    for (h, m) in pieces.iter().enumerate() {
                        for (j, &y) in m.iter().enumerate() {
                            for (l, v) in [(8 * h + j, _mm256_castps256_ps128(y)), (8 * h + j + 4, _mm256_extractf128_ps::<1>(y))] {
                                if l < t.live_lanes {
                                    store::<C>(&out, l * t.cs, r, c, live_rows, v);
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// 16 × 16 floats transposed in registers (see `x86::transpose`), and the 4 × 4 blocks of
/// two 8-float halves (`ymm::transpose4`), also for `cpu::spos`.
#[cfg(target_arch = "x86_64")]
pub(crate) use {x86::transpose as transpose16, ymm::transpose4};

#[cfg(target_arch = "x86_64")]
mod x86 {
    use std::arch::x86_64::*;

    use super::super::avx512::act;
    use super::LanesTile;

    /// The 64-bit pairs `a0 b0 a2 b2 …` of two vectors.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn lo(a: __m512, b: __m512) -> __m512 {
        _mm512_castpd_ps(_mm512_unpacklo_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
    }

    /// The 64-bit pairs `a1 b1 a3 b3 …` of two vectors.
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn hi(a: __m512, b: __m512) -> __m512 {
        _mm512_castpd_ps(_mm512_unpackhi_pd(_mm512_castps_pd(a), _mm512_castps_pd(b)))
    }

    /// Transposes 16 × 16 floats in place: lane `j` of `m[i]` goes to lane `i` of `m[j]`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(crate) fn transpose(m: &mut [__m512; 16]) {
        let mut t = [_mm512_setzero_ps(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_ps(m[2 * i], m[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_ps(m[2 * i], m[2 * i + 1]);
        }
        for i in 0..4 {
            let b = 4 * i;
            m[b] = lo(t[b], t[b + 2]);
            m[b + 1] = hi(t[b], t[b + 2]);
            m[b + 2] = lo(t[b + 1], t[b + 3]);
            m[b + 3] = hi(t[b + 1], t[b + 3]);
        }
        for h in 0..2 {
            let b = 8 * h;
            for i in 0..4 {
                t[b + i] = _mm512_shuffle_f32x4::<0x88>(m[b + i], m[b + 4 + i]);
                t[b + 4 + i] = _mm512_shuffle_f32x4::<0xdd>(m[b + i], m[b + 4 + i]);
            }
        }
        for i in 0..8 {
            m[i] = _mm512_shuffle_f32x4::<0x88>(t[i], t[8 + i]);
            m[8 + i] = _mm512_shuffle_f32x4::<0xdd>(t[i], t[8 + i]);
        }
    }

    /// Lanes `r·C .. r·C + C` of `x` moved to lanes `0..C` of a 128-bit vector (`C ≤ 4`).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn quarter<const C: usize>(x: __m512, r: usize) -> __m128 {
        let q = match (r * C) / 4 {
            0 => _mm512_extractf32x4_ps::<0>(x),
            1 => _mm512_extractf32x4_ps::<1>(x),
            2 => _mm512_extractf32x4_ps::<2>(x),
            _ => _mm512_extractf32x4_ps::<3>(x),
        };
        match (r * C) % 4 {
            0 => q,
            1 => _mm_shuffle_ps::<0b01>(q, q),
            2 => _mm_movehl_ps(q, q),
            _ => _mm_shuffle_ps::<0b11>(q, q),
        }
    }

    /// Stores lanes `r·C .. r·C + C` of `x` at `dst` in plain stores.
    ///
    /// # Safety
    /// `dst` is writable for `C` floats; `(r + 1)·C ≤ 16`.
    #[target_feature(enable = "avx512f")]
    #[inline]
    unsafe fn store<const C: usize>(dst: *mut f32, x: __m512, r: usize) {
        // SAFETY: the caller's contract.
        unsafe {
            match C {
                16 => _mm512_storeu_ps(dst, x),
                8 => {
                    let h = if r == 0 { _mm512_extractf64x4_pd::<0>(_mm512_castps_pd(x)) } else { _mm512_extractf64x4_pd::<1>(_mm512_castps_pd(x)) };
                    _mm256_storeu_ps(dst, _mm256_castpd_ps(h));
                }
                4 => _mm_storeu_ps(dst, quarter::<4>(x, r)),
                2 => _mm_storel_epi64(dst.cast(), _mm_castps_si128(quarter::<2>(x, r))),
                _ => _mm_store_ss(dst, quarter::<1>(x, r)),
            }
        }
    }

    /// `C` pixels per row, `R` rows, `P = R · C ≤ 16` pixels (one accumulator each), pixels
    /// `S` floats apart.
    ///
    /// # Safety
    /// As [`super::avx512`], for a tile of this shape.
    #[target_feature(enable = "avx512f")]
    #[inline]
    pub(super) unsafe fn tile<const C: usize, const R: usize, const P: usize, const S: usize>(t: &LanesTile) {
        debug_assert!(P == R * C && t.cols == C && t.rows == R && t.step == S);
        let live_rows = t.live_rows.min(R);
        // SAFETY: the caller's contract bounds every load and store below. A residual's row
        // piece is loaded under a mask of its own lanes `r·C .. r·C + C`, from a pointer moved
        // back by `r·C` floats (wrapping arithmetic): the masked-off lanes are never touched.
        unsafe {
            let mut acc = [_mm512_setzero_ps(); P];
            // 1 × 1 output maps: a pixel's 16 channels are contiguous, no transposes.
            let direct = C == 1 && t.cs == 1;
            let lanes: __mmask16 = ((1u32 << t.live_lanes) - 1) as __mmask16;
            if direct && !t.res[0].is_null() {
                for (r, a) in acc.iter_mut().enumerate().take(live_rows) {
                    *a = _mm512_maskz_loadu_ps(lanes, t.res[r]);
                }
            } else if !t.res[0].is_null() {
                let mut m = [_mm512_setzero_ps(); 16];
                for (l, x) in m.iter_mut().enumerate().take(t.live_lanes) {
                    for r in 0..live_rows {
                        let piece = (((1u32 << C) - 1) << (r * C)) as __mmask16;
                        *x = _mm512_mask_loadu_ps(*x, piece, t.res[r].wrapping_add(l * t.cs).wrapping_sub(r * C));
                    }
                }
                transpose(&mut m);
                acc.copy_from_slice(&m[..P]);
            }
            let rows: [*const f32; R] = std::array::from_fn(|r| t.row[r]);
            let mut w = t.w;
            for k in 0..t.kdim {
                let off = *t.koff.add(k);
                let wv = _mm512_loadu_ps(w);
                for (r, &row) in rows.iter().enumerate() {
                    let src = row.add(off);
                    for c in 0..C {
                        acc[r * C + c] = _mm512_fmadd_ps(wv, _mm512_set1_ps(*src.add(c * S)), acc[r * C + c]);
                    }
                }
                w = w.add(super::LANES);
            }
            let mut m = [_mm512_setzero_ps(); 16];
            let b = if t.bias.is_null() { None } else { Some(_mm512_loadu_ps(t.bias)) };
            for (y, &a) in m.iter_mut().zip(&acc) {
                *y = act(b.map_or(a, |b| _mm512_add_ps(a, b)), t.act);
            }
            if direct {
                for (r, &y) in m.iter().enumerate().take(live_rows) {
                    _mm512_mask_storeu_ps(t.out[r], lanes, y);
                }
                return;
            }
            transpose(&mut m);
            for (l, &x) in m.iter().enumerate().take(t.live_lanes) {
                for r in 0..live_rows {
                    store::<C>(t.out[r].add(l * t.cs), x, r);
                }
            }
        }
    }
}

#[cfg(all(test, target_arch = "x86_64"))]
mod tests {
    use std::arch::x86_64::*;

    #[test]
    fn transpose4_moves_every_lane() {
        if !std::arch::is_x86_feature_detected!("avx2") {
            return;
        }
        let a: Vec<f32> = (0..32).map(|i| i as f32).collect();
        let mut out = [0f32; 32];
        // SAFETY: AVX2 checked above; 4 loads and stores of 8 floats inside 32.
        unsafe {
            let m: [__m256; 4] = std::array::from_fn(|i| _mm256_loadu_ps(a[8 * i..].as_ptr()));
            for (i, v) in super::ymm::transpose4(m).iter().enumerate() {
                _mm256_storeu_ps(out[8 * i..].as_mut_ptr(), *v);
            }
        }
        for i in 0..4 {
            for j in 0..4 {
                for h in [0, 4] {
                    assert_eq!(out[8 * j + h + i], a[8 * i + h + j], "lane {} of row {i}", h + j);
                }
            }
        }
    }

    #[test]
    fn transpose_moves_every_lane() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let a: Vec<f32> = (0..256).map(|i| i as f32).collect();
        let mut out = [0f32; 256];
        // SAFETY: AVX-512F checked above; 16 loads and stores of 16 floats inside 256.
        unsafe {
            let mut m: [__m512; 16] = std::array::from_fn(|i| _mm512_loadu_ps(a[16 * i..].as_ptr()));
            super::x86::transpose(&mut m);
            for (i, v) in m.iter().enumerate() {
                _mm512_storeu_ps(out[16 * i..].as_mut_ptr(), *v);
            }
        }
        for i in 0..16 {
            for j in 0..16 {
                assert_eq!(out[16 * j + i], a[16 * i + j], "lane {j} of row {i}");
            }
        }
    }
}
