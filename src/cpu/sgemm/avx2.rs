//! AVX2 + FMA kernel: 6 channels × 16 pixels (2 ymm) per tile: 12 accumulators, 2 B loads
//! and 6 broadcasts per k, 15 of the 16 ymm registers (a 4 × 24 tile needs all 16, and
//! LLVM then spills an accumulator inside the K loop). Convs with few output channels pack
//! their weights in panels of 4 rows instead ([`super::Kernel::panel_rows`]): 8 accumulators,
//! still two FMAs in flight per cycle for FMA's 4-cycle latency, and an 8-channel conv no
//! longer computes 12 rows.

use std::arch::x86_64::*;

use super::{Act, Epilogue, Geometry, Init, Tile};

pub(super) const GEOMETRY: Geometry = Geometry { mr: 6, lanes: 8, nv: 2, kc: 256, kc_taps: 256, nc: 384 };

/// A tile of `mr` (4 or 6) rows.
///
/// # Safety
/// The CPU must support AVX2 and FMA, and the arguments satisfy [`super::Kernel::tile_rows`]'s
/// contract.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn tile(mr: usize, a: *const f32, b: *const f32, c: *mut f32, t: Tile, init: Init, epi: Option<&Epilogue>) {
    // SAFETY: forwarded contract.
    unsafe {
        match (mr, t.nv) {
            (4, 1) => tile_n::<4, 1>(a, b, c, t, init, epi),
            (4, _) => tile_n::<4, 2>(a, b, c, t, init, epi),
            (_, 1) => tile_n::<6, 1>(a, b, c, t, init, epi),
            _ => tile_n::<6, 2>(a, b, c, t, init, epi),
        }
    }
}

/// The epilogue's activation on 8 lanes (shared with the lanes tile, `sgemm::lanes`).
#[target_feature(enable = "avx2,fma")]
#[inline]
pub(super) unsafe fn act(y: __m256, a: Act) -> __m256 {
    let zero = _mm256_setzero_ps();
    match a {
        Act::None => y,
        Act::Leaky(s) => _mm256_add_ps(_mm256_max_ps(y, zero), _mm256_mul_ps(_mm256_set1_ps(s), _mm256_min_ps(y, zero))),
        Act::Clip(lo, hi) => _mm256_min_ps(_mm256_max_ps(y, _mm256_set1_ps(lo)), _mm256_set1_ps(hi)),
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn tile_n<const MR: usize, const NV: usize>(a: *const f32, b: *const f32, c: *mut f32, t: Tile, init: Init, epi: Option<&Epilogue>) {
    let lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
    let mut masks = [_mm256_setzero_si256(); NV];
    for (v, m) in masks.iter_mut().enumerate() {
        let valid = t.cols.saturating_sub(v * 8).min(8) as i32;
        *m = _mm256_cmpgt_epi32(_mm256_set1_epi32(valid), lane);
    }
    let partial = t.cols < NV * 8;
    // Whole vectors load and store without a mask: `vmaskmovps` to memory is microcoded on
    // AMD cores (Zen 3: a hot 6 × 16 tile of 64 k steps ran at 34 GMAC/s with its 12 masked
    // loads and 12 masked stores, at 45 without, so they cost about 20 k steps).
    let mut whole = [false; NV];
    for (v, w) in whole.iter_mut().enumerate() {
        *w = t.cols >= (v + 1) * 8;
    }
    let mut acc = [[_mm256_setzero_ps(); NV]; MR];
    let src = match init {
        Init::Zero => std::ptr::null(),
        Init::Output => c as *const f32,
        Init::Residual(r) => r,
    };
    // SAFETY (whole body): the caller guarantees rows < t.rows and the masked columns < t.cols
    // of `src` and `c` are valid; `vmaskmovps` neither reads nor writes masked-off lanes and
    // suppresses their faults; `a` holds kc · MR floats and `b` the kc rows `Kernel::tile`
    // describes.
    unsafe {
        if !src.is_null() {
            for (r, row) in acc.iter_mut().enumerate().take(t.rows) {
                for v in 0..NV {
                    let at = src.add(r * t.ldc + v * 8);
                    row[v] = if whole[v] { _mm256_loadu_ps(at) } else { _mm256_maskload_ps(at, masks[v]) };
                }
            }
        }
        // The loop is unswitched: only a partial tile masks its last B vector.
        match (partial, t.b_rows.is_null(), t.b_next != 0) {
            (true, true, false) => k_loop::<MR, NV, true, false, false>(&mut acc, a, b, t, &masks),
            (false, true, false) => k_loop::<MR, NV, false, false, false>(&mut acc, a, b, t, &masks),
            (true, false, false) => k_loop::<MR, NV, true, true, false>(&mut acc, a, b, t, &masks),
            (false, false, false) => k_loop::<MR, NV, false, true, false>(&mut acc, a, b, t, &masks),
            (true, true, true) => k_loop::<MR, NV, true, false, true>(&mut acc, a, b, t, &masks),
            (false, true, true) => k_loop::<MR, NV, false, false, true>(&mut acc, a, b, t, &masks),
            (true, false, true) => k_loop::<MR, NV, true, true, true>(&mut acc, a, b, t, &masks),
            (false, false, true) => k_loop::<MR, NV, false, true, true>(&mut acc, a, b, t, &masks),
        }
        for (r, row) in acc.iter_mut().enumerate().take(t.rows) {
            if let Some(e) = epi {
                let bias = e.bias.map(|b| _mm256_set1_ps(b[r]));
                for y in row.iter_mut() {
                    if let Some(bb) = bias {
                        *y = _mm256_add_ps(*y, bb);
                    }
                    *y = act(*y, e.act);
                }
            }
            for v in 0..NV {
                let at = c.add(r * t.ldc + v * 8);
                if whole[v] {
                    _mm256_storeu_ps(at, row[v]);
                } else {
                    _mm256_maskstore_ps(at, masks[v], row[v]);
                }
            }
        }
    }
}

/// `acc[r][v] = fma(a[k][r], b[k][v], acc[r][v])` for k in `0..t.kc`, in order. With `MASKED`,
/// the last B vector is loaded under `masks` (a B read in place ends at `t.cols`); with
/// `ROWS`, B row k starts at `b + t.b_rows[k]` (its vectors `t.b_vstride` apart when
/// that is not 0); with `NEXT`, the same row of the next B panel
/// (`t.b_next` floats on) is prefetched into L2.
#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn k_loop<const MR: usize, const NV: usize, const MASKED: bool, const ROWS: bool, const NEXT: bool>(acc: &mut [[__m256; NV]; MR], a: *const f32, b: *const f32, t: Tile, masks: &[__m256i; NV]) {
    let (mut ap, mut bp) = (a, b);
    // B vectors of a row read at offsets: contiguous, or `b_vstride` apart.
    let vs = if t.b_vstride > 0 { t.b_vstride } else { 8 };
    // SAFETY: the caller's contract: `a` holds kc · MR floats, `b` kc rows (at stride ldb, or
    // at the kc offsets of b_rows) whose unmasked lanes lie in bounds.
    unsafe {
        for k in 0..t.kc {
            if ROWS {
                bp = b.add(*t.b_rows.add(k));
            }
            let mut bv = [_mm256_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                let at = if ROWS { bp.add(v * vs) } else { bp.add(v * 8) };
                *x = if MASKED && v + 1 == NV { _mm256_maskload_ps(at, masks[v]) } else { _mm256_loadu_ps(at) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm256_broadcast_ss(&*ap.add(r));
                for v in 0..NV {
                    row[v] = _mm256_fmadd_ps(av, bv[v], row[v]);
                }
            }
            if NEXT {
                // Each line of the row's span (a row read in place need not start on one).
                for l in 0..(NV * 8).div_ceil(16) {
                    _mm_prefetch::<_MM_HINT_T1>(bp.wrapping_add(t.b_next + l * 16) as *const i8);
                }
                _mm_prefetch::<_MM_HINT_T1>(bp.wrapping_add(t.b_next + NV * 8 - 1) as *const i8);
            }
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(t.a_next) as *const i8);
            ap = ap.add(MR);
            if !ROWS {
                bp = bp.add(t.ldb);
            }
        }
    }
}

/// `dst[j] = src[idx[j]]` where `idx[j] ≥ 0`, else 0: 8 lanes per masked `vgatherdps`
/// (negative indices are masked off, never read), the tail as the scalar twin.
///
/// # Safety
/// The CPU must support AVX2; every non-negative `idx[j]` addresses a readable element of
/// `src`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn gather(dst: &mut [f32], src: *const f32, idx: &[i32]) {
    let n = dst.len().min(idx.len());
    let full = n / 8 * 8;
    let minus_one = _mm256_set1_epi32(-1);
    for j in (0..full).step_by(8) {
        // SAFETY: j + 8 ≤ n; masked-off lanes (negative indices) are not read, the others are
        // in bounds by the contract.
        unsafe {
            let iv = _mm256_loadu_si256(idx.as_ptr().add(j) as *const __m256i);
            let live = _mm256_castsi256_ps(_mm256_cmpgt_epi32(iv, minus_one));
            let v = _mm256_mask_i32gather_ps::<4>(_mm256_setzero_ps(), src, iv, live);
            _mm256_storeu_ps(dst.as_mut_ptr().add(j), v);
        }
    }
    // SAFETY: forwarded contract.
    unsafe { super::scalar::gather(&mut dst[full..n], src, &idx[full..n]) };
}

/// See [`super::Kernel::copy_rows`]: 8 floats per move, the tail under a lane mask.
///
/// # Safety
/// The CPU must support AVX2; the contract of [`super::Kernel::copy_rows`].
#[target_feature(enable = "avx2")]
pub(super) unsafe fn copy_rows(src: *const f32, lds: usize, dst: *mut f32, ldd: usize, rows: usize, cols: usize) {
    let (full, tail) = (cols / 8 * 8, cols % 8);
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(tail as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    for r in 0..rows {
        // SAFETY: row r's `cols` floats are readable at src and writable at dst (contract);
        // `vmaskmovps` neither reads nor writes the lanes past `cols`.
        unsafe {
            let (s, d) = (src.add(r * lds), dst.add(r * ldd));
            let mut j = 0;
            while j < full {
                _mm256_storeu_ps(d.add(j), _mm256_loadu_ps(s.add(j)));
                j += 8;
            }
            if tail > 0 {
                _mm256_maskstore_ps(d.add(full), mask, _mm256_maskload_ps(s.add(full), mask));
            }
        }
    }
}
