//! AVX-512F kernel: 8 channels × 48 pixels (3 zmm) per tile, one `vfmadd231ps` per channel and
//! vector for each k: 24 accumulators, 3 B loads and 8 broadcasts per k.

use std::arch::x86_64::*;

use super::{Act, Epilogue, Geometry, Init, Tile};

pub(super) const GEOMETRY: Geometry = Geometry { mr: MR, lanes: 16, nv: 3, kc: 128, kc_taps: 256, nc: 960 };
const MR: usize = 8;

/// # Safety
/// The CPU must support AVX-512F, and the arguments satisfy [`super::Kernel::tile`]'s contract.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn tile(a: *const f32, b: *const f32, c: *mut f32, t: Tile, init: Init, epi: Option<&Epilogue>) {
    // SAFETY: forwarded contract.
    unsafe {
        match t.nv {
            1 => tile_n::<1>(a, b, c, t, init, epi),
            2 => tile_n::<2>(a, b, c, t, init, epi),
            _ => tile_n::<3>(a, b, c, t, init, epi),
        }
    }
}

/// The epilogue's activation on 16 lanes (shared with the BF16 tile, `cpu::bgemm`).
#[target_feature(enable = "avx512f")]
#[inline]
pub(crate) unsafe fn act(y: __m512, a: Act) -> __m512 {
    let zero = _mm512_setzero_ps();
    match a {
        Act::None => y,
        Act::Leaky(s) => _mm512_add_ps(_mm512_max_ps(y, zero), _mm512_mul_ps(_mm512_set1_ps(s), _mm512_min_ps(y, zero))),
        Act::Clip(lo, hi) => _mm512_min_ps(_mm512_max_ps(y, _mm512_set1_ps(lo)), _mm512_set1_ps(hi)),
    }
}

/// `$body` once for each of the tile's 8 rows, `$r` the row as a literal: the accumulators are
/// then indexed by constants only, which keeps them in registers (a loop over rows that LLVM
/// leaves rolled indexes them at run time, from a stack copy).
macro_rules! each_row {
    ($r:ident => $body:block) => {{
        const _: () = assert!(MR == 8);
        { let $r = 0usize; $body }
        { let $r = 1usize; $body }
        { let $r = 2usize; $body }
        { let $r = 3usize; $body }
        { let $r = 4usize; $body }
        { let $r = 5usize; $body }
        { let $r = 6usize; $body }
        { let $r = 7usize; $body }
    }};
}

#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn tile_n<const NV: usize>(a: *const f32, b: *const f32, c: *mut f32, t: Tile, init: Init, epi: Option<&Epilogue>) {
    let mut masks: [__mmask16; NV] = [0; NV];
    for (v, m) in masks.iter_mut().enumerate() {
        let valid = t.cols.saturating_sub(v * 16).min(16);
        *m = ((1u32 << valid) - 1) as u16;
    }
    let partial = t.cols < NV * 16;
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    let src = match init {
        Init::Zero => std::ptr::null(),
        Init::Output => c as *const f32,
        Init::Residual(r) => r,
    };
    debug_assert!(epi.is_none_or(|e| e.bias.is_none_or(|b| b.len() >= t.rows)), "sgemm: a bias shorter than the tile's rows");
    // SAFETY (whole body): the caller guarantees rows < t.rows and the masked columns < t.cols
    // of `src` and `c` are valid; masked-off lanes are neither read nor written (AVX-512
    // masked loads and stores suppress faults there); `a` holds kc · MR floats and `b` the
    // kc rows `Kernel::tile` describes; the bias holds `t.rows` values.
    unsafe {
        if !src.is_null() {
            each_row!(r => {
                if r < t.rows {
                    for v in 0..NV {
                        acc[r][v] = _mm512_maskz_loadu_ps(masks[v], src.add(r * t.ldc + v * 16));
                    }
                }
            });
        }
        if t.c_next != 0 {
            // The next tile's output rows, which it reads (a residual in place, a later K
            // block) and writes: on their way to L2 while this tile runs.
            let cn = c.wrapping_offset(t.c_next);
            for r in 0..t.rows {
                let row = cn.wrapping_add(r * t.ldc);
                for v in 0..NV {
                    _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(v * 16) as *const i8);
                }
                _mm_prefetch::<_MM_HINT_T1>(row.wrapping_add(NV * 16 - 1) as *const i8);
            }
        }
        // Unswitched: only a partial tile masks its last B vector.
        match (partial, t.b_rows.is_null(), t.b_next != 0) {
            (true, true, false) => k_loop::<NV, true, false, false>(&mut acc, a, b, t, &masks),
            (false, true, false) => k_loop::<NV, false, false, false>(&mut acc, a, b, t, &masks),
            (true, false, false) => k_loop::<NV, true, true, false>(&mut acc, a, b, t, &masks),
            (false, false, false) => k_loop::<NV, false, true, false>(&mut acc, a, b, t, &masks),
            (true, true, true) => k_loop::<NV, true, false, true>(&mut acc, a, b, t, &masks),
            (false, true, true) => k_loop::<NV, false, false, true>(&mut acc, a, b, t, &masks),
            (true, false, true) => k_loop::<NV, true, true, true>(&mut acc, a, b, t, &masks),
            (false, false, true) => k_loop::<NV, false, true, true>(&mut acc, a, b, t, &masks),
        }
        let (bias, act_of) = match epi {
            Some(e) => (e.bias.map_or(std::ptr::null(), |b| b.as_ptr()), Some(e.act)),
            None => (std::ptr::null(), None),
        };
        each_row!(r => {
            if r < t.rows {
                for v in 0..NV {
                    let mut y = acc[r][v];
                    if !bias.is_null() {
                        y = _mm512_add_ps(y, _mm512_set1_ps(*bias.add(r)));
                    }
                    if let Some(f) = act_of {
                        y = act(y, f);
                    }
                    _mm512_mask_storeu_ps(c.add(r * t.ldc + v * 16), masks[v], y);
                }
            }
        });
    }
}

/// `acc[r][v] = fma(a[k][r], b[k][v], acc[r][v])` for k in `0..t.kc`, in order. With `MASKED`,
/// the last B vector is loaded under `masks` (a B read in place ends at `t.cols`); with
/// `ROWS`, B row k starts at `b + t.b_rows[k]` (its vectors `t.b_vstride` apart when
/// that is not 0); with `NEXT`, the same row of the next B panel
/// (`t.b_next` floats on) is prefetched into L2.
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn k_loop<const NV: usize, const MASKED: bool, const ROWS: bool, const NEXT: bool>(acc: &mut [[__m512; NV]; MR], a: *const f32, b: *const f32, t: Tile, masks: &[__mmask16; NV]) {
    let (mut ap, mut bp) = (a, b);
    // B vectors of a row read at offsets: contiguous, or `b_vstride` apart.
    let vs = if t.b_vstride > 0 { t.b_vstride } else { 16 };
    // SAFETY: the caller's contract: `a` holds kc · MR floats, `b` kc rows (at stride ldb, or
    // at the kc offsets of b_rows) whose unmasked lanes lie in bounds.
    unsafe {
        for k in 0..t.kc {
            if ROWS {
                bp = b.add(*t.b_rows.add(k));
            }
            let mut bv = [_mm512_setzero_ps(); NV];
            for (v, x) in bv.iter_mut().enumerate() {
                let at = if ROWS { bp.add(v * vs) } else { bp.add(v * 16) };
                *x = if MASKED && v + 1 == NV { _mm512_maskz_loadu_ps(masks[v], at) } else { _mm512_loadu_ps(at) };
            }
            for (r, row) in acc.iter_mut().enumerate() {
                let av = _mm512_set1_ps(*ap.add(r));
                for v in 0..NV {
                    row[v] = _mm512_fmadd_ps(av, bv[v], row[v]);
                }
            }
            if NEXT {
                // Each line of the row's span (a row read in place need not start on one).
                for v in 0..NV {
                    _mm_prefetch::<_MM_HINT_T1>(bp.wrapping_add(t.b_next + v * 16) as *const i8);
                }
                _mm_prefetch::<_MM_HINT_T1>(bp.wrapping_add(t.b_next + NV * 16 - 1) as *const i8);
            }
            _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add(t.a_next) as *const i8);
            ap = ap.add(MR);
            if !ROWS {
                bp = bp.add(t.ldb);
            }
        }
    }
}

/// `dst[j] = src[idx[j]]` where `idx[j] ≥ 0`, else 0: 16 lanes per `vgatherdps`, the
/// negative indices masked off (never read), the tail under a lane mask.
///
/// # Safety
/// The CPU must support AVX-512F; every non-negative `idx[j]` addresses a readable element of
/// `src`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn gather(dst: &mut [f32], src: *const f32, idx: &[i32]) {
    let n = dst.len().min(idx.len());
    let zero = _mm512_setzero_ps();
    let mut j = 0;
    while j < n {
        let lanes: __mmask16 = if n - j >= 16 { 0xffff } else { ((1u32 << (n - j)) - 1) as u16 };
        // SAFETY: lanes past n are masked off for the index load and the store; a lane's
        // gather reads src only where its index is non-negative, in bounds by the contract.
        unsafe {
            let iv = _mm512_maskz_loadu_epi32(lanes, idx.as_ptr().add(j));
            let live = _mm512_mask_cmpge_epi32_mask(lanes, iv, _mm512_setzero_si512());
            let v = _mm512_mask_i32gather_ps::<4>(zero, live, iv, src);
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(j), lanes, v);
        }
        j += 16;
    }
}

/// See [`super::Kernel::copy_rows`]: 16 floats per move, the tail under a lane mask.
///
/// # Safety
/// The CPU must support AVX-512F; the contract of [`super::Kernel::copy_rows`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn copy_rows(src: *const f32, lds: usize, dst: *mut f32, ldd: usize, rows: usize, cols: usize) {
    let (full, tail) = (cols / 16 * 16, cols % 16);
    let mask: __mmask16 = ((1u32 << tail) - 1) as u16;
    for r in 0..rows {
        // SAFETY: row r's `cols` floats are readable at src and writable at dst (contract);
        // the masked lanes past `cols` are neither read nor written.
        unsafe {
            let (s, d) = (src.add(r * lds), dst.add(r * ldd));
            let mut j = 0;
            while j < full {
                _mm512_storeu_ps(d.add(j), _mm512_loadu_ps(s.add(j)));
                j += 16;
            }
            if tail > 0 {
                _mm512_mask_storeu_ps(d.add(full), mask, _mm512_maskz_loadu_ps(mask, s.add(full)));
            }
        }
    }
}

/// See [`super::Kernel::permute_maps`].
///
/// # Safety
/// The CPU must support AVX-512F; the contract of [`super::Kernel::permute_maps`].
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn permute_maps(dst: *mut f32, src: *const f32, image_stride: usize, npix: usize, images: usize, first: usize, chunks: usize, perm: &[i32; 16], mask: u16) {
    let per = 16 / npix;
    // SAFETY: `perm` holds 16 lane indices below 16.
    let idx = unsafe { _mm512_loadu_si512(perm.as_ptr() as *const __m512i) };
    for c in 0..chunks {
        let b0 = (first + c) * per;
        // SAFETY: each image b < `images` has `npix` readable floats at src + b·image_stride
        // (contract); images past the batch are not read (their lanes stay 0); dst holds
        // 16 floats per chunk.
        unsafe {
            let v = if npix == 16 {
                _mm512_loadu_ps(src.add(b0 * image_stride))
            } else {
                let at = |i: usize| if b0 + i < images { _mm_loadu_ps(src.add((b0 + i) * image_stride)) } else { _mm_setzero_ps() };
                let v = _mm512_castps128_ps512(at(0));
                let v = _mm512_insertf32x4::<1>(v, at(1));
                let v = _mm512_insertf32x4::<2>(v, at(2));
                _mm512_insertf32x4::<3>(v, at(3))
            };
            _mm512_storeu_ps(dst.add(c * 16), _mm512_maskz_permutexvar_ps(mask, idx, v));
        }
    }
}

/// The lanes l of 16 read from column `base` of a row of `w` floats whose column `base + l`
/// lies in `0..w` (the others padding): the load mask of a padded row read in place.
pub(crate) fn row_lanes(base: isize, w: usize) -> __mmask16 {
    let lo = (-base).clamp(0, 16) as u32;
    let hi = (w as isize - base).clamp(0, 16) as u32;
    (((1u32 << hi) - 1) & !((1u32 << lo) - 1)) as u16
}

/// See [`super::Kernel::stride2_plane`]: [`stride2_row`] for each of `hph` plane rows `wph`
/// floats apart, plane row `r` from input row `y0 + r·sy` (zeros outside `0..h`).
///
/// # Safety
/// The CPU must support AVX-512F; `even` (and a non-null `odd`) is writable for `hph · wph`
/// floats, `src` readable for `h · w`.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn stride2_plane(even: *mut f32, odd: *mut f32, [hph, wph]: [usize; 2], src: *const f32, [h, w]: [usize; 2], [y0, sy]: [isize; 2], x0: isize) {
    for r in 0..hph {
        let iy = y0 + r as isize * sy;
        // SAFETY: row r of each plane lies in its hph · wph floats; input row iy < h lies in
        // `src` (the caller's contract).
        unsafe {
            let (e, o) = (even.add(r * wph), if odd.is_null() { odd } else { odd.add(r * wph) });
            if iy < 0 || iy >= h as isize {
                std::ptr::write_bytes(e, 0, wph);
                if !o.is_null() {
                    std::ptr::write_bytes(o, 0, wph);
                }
            } else {
                stride2_row(e, o, wph, src.add(iy as usize * w), w, x0);
            }
        }
    }
}

/// Columns `base .. base + 32` of a row of `w` floats at `src`, split into their even and odd
/// columns (two masked loads, one `vpermt2ps` each): 16 columns of each stride-2 phase, 0
/// where a column lies outside `0..w`.
///
/// # Safety
/// The CPU must support AVX-512F; `src` is readable for `w` floats.
#[inline]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn stride2_pair(src: *const f32, w: usize, base: isize) -> (__m512, __m512) {
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odds = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let (ma, mb) = (row_lanes(base, w), row_lanes(base + 16, w));
    // SAFETY: a lane is loaded only where its column lies in 0..w (the masks), so the wrapped
    // addresses of the others are never dereferenced.
    unsafe {
        let a = _mm512_maskz_loadu_ps(ma, src.wrapping_offset(base));
        let b = _mm512_maskz_loadu_ps(mb, src.wrapping_offset(base + 16));
        (_mm512_permutex2var_ps(a, even, b), _mm512_permutex2var_ps(a, odds, b))
    }
}

/// See [`super::Kernel::stride2_row`] and [`super::Kernel::stride2_rows`]: `dst[j] =
/// src[x0 + 2j]` and, when `odd` is not null, `odd[j] = src[x0 + 2j + 1]`, for `j < n`, each
/// where its column lies in `0..w`, else 0: both from the same two loads ([`stride2_pair`]).
///
/// # Safety
/// The CPU must support AVX-512F; `dst` (and a non-null `odd`) is writable for `n` floats,
/// `src` readable for `w`.
#[inline]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn stride2_row(dst: *mut f32, odd: *mut f32, n: usize, src: *const f32, w: usize, x0: isize) {
    let mut j0 = 0;
    while j0 < n {
        // SAFETY: `src` readable for `w` floats (the caller's contract); the stores are
        // masked to j < n.
        unsafe {
            let (e, o) = stride2_pair(src, w, x0 + 2 * j0 as isize);
            let m: __mmask16 = if n - j0 >= 16 { 0xffff } else { ((1u32 << (n - j0)) - 1) as u16 };
            _mm512_mask_storeu_ps(dst.add(j0), m, e);
            if !odd.is_null() {
                _mm512_mask_storeu_ps(odd.add(j0), m, o);
            }
        }
        j0 += 16;
    }
}
