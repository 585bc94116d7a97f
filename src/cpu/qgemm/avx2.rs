//! AVX2 kernels (which one a layer takes is decided when its weights are packed; see the
//! module docs of `qgemm`):
//! - widening, 2 channels × 16 pixels per tile: activations widened u8→i16 (`vpmovzxbw`),
//!   weights pre-widened, `vpmaddwd` forms i32 pair sums, so nothing can saturate.
//!   Accumulators hold per-pixel pair sums `(k0·w0 + k1·w1, k2·w2 + k3·w3)` that are added
//!   once at the end of K;
//! - byte, 4 channels × 16 pixels per tile, for weights whose pairs cannot saturate:
//!   `vpmaddubsw` on the panel's `[pixel][4 k]` bytes gives i16 pair sums, `vpmaddwd` by ones
//!   adds the two pairs of a pixel into its i32 lane: `vpdpbusd` in three instructions.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{PackedWeights, BLOCK};

const MR: usize = 2;

/// `acc[c − rows.start][p]` for the channels in `rows` and every pixel of the panel.
///
/// # Safety
/// The CPU must support AVX2, and the arguments must satisfy `qgemm::check_args`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn qgemm_u8s8_avx2_2x16(w: &PackedWeights, s16: &[i16], range: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
    let k4n = w.kpad / 4;
    let pstride = super::block_stride(w.kpad);
    let mut c0 = range.start;
    while c0 < range.end {
        let rows = (range.end - c0).min(MR);
        let wr: [*const i16; MR] = std::array::from_fn(|r| s16.as_ptr().add((c0 + r) * w.kpad));
        for b in 0..nblocks {
            let p = panel.as_ptr().add(b * pstride);
            let mut acc = [[_mm256_setzero_si256(); 4]; MR];
            for k4 in 0..k4n {
                let base = p.add(k4 * 64);
                let x: [__m256i; 4] = std::array::from_fn(|q| _mm256_cvtepu8_epi16(_mm_loadu_si128(base.add(q * 16) as *const _)));
                for r in 0..MR {
                    let wb = _mm256_set1_epi64x(std::ptr::read_unaligned(wr[r].add(k4 * 4) as *const i64));
                    for q in 0..4 {
                        acc[r][q] = _mm256_add_epi32(acc[r][q], _mm256_madd_epi16(x[q], wb));
                    }
                }
            }
            for (r, accr) in acc.iter().enumerate().take(rows) {
                let o = (c0 - range.start + r) * out_rs + b * BLOCK;
                let dst = &mut out[o..o + BLOCK];
                for (q, a) in accr.iter().enumerate() {
                    let mut lanes = [0i32; 8];
                    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, *a);
                    for px in 0..4 {
                        dst[q * 4 + px] = lanes[2 * px] + lanes[2 * px + 1];
                    }
                }
            }
        }
        c0 += MR;
    }
}

/// The byte kernel: `acc[c − rows.start][p]` for the channels in `rows` and every pixel of
/// the panel, weights packed as `Packing::S8Paired`.
///
/// # Safety
/// The CPU must support AVX2, and the arguments must satisfy `qgemm::check_args`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn qgemm_u8s8_avx2_maddubs_4x16(w: &PackedWeights, s8: &[i8], range: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
    const TR: usize = 4;
    let k4n = w.kpad / 4;
    let pstride = super::block_stride(w.kpad);
    let ones = _mm256_set1_epi16(1);
    let pp = panel.as_ptr();
    let op = out.as_mut_ptr();
    let mut c0 = range.start;
    while c0 < range.end {
        let rows = (range.end - c0).min(TR);
        // c0 ≡ 0 or 4 (mod 8) and c0 < Mpad, a multiple of 8: all TR rows exist (zero-filled
        // past m).
        let wr: [*const i8; TR] = std::array::from_fn(|r| s8.as_ptr().add((c0 + r) * w.kpad));
        for b in 0..nblocks {
            let p = pp.add(b * pstride);
            let mut acc = [[_mm256_setzero_si256(); 2]; TR];
            for k4 in 0..k4n {
                let a0 = _mm256_loadu_si256(p.add(k4 * 64) as *const _);
                let a1 = _mm256_loadu_si256(p.add(k4 * 64 + 32) as *const _);
                for r in 0..TR {
                    let wb = _mm256_set1_epi32(std::ptr::read_unaligned(wr[r].add(k4 * 4) as *const i32));
                    acc[r][0] = _mm256_add_epi32(acc[r][0], _mm256_madd_epi16(_mm256_maddubs_epi16(a0, wb), ones));
                    acc[r][1] = _mm256_add_epi32(acc[r][1], _mm256_madd_epi16(_mm256_maddubs_epi16(a1, wb), ones));
                }
            }
            for (r, accr) in acc.iter().enumerate().take(rows) {
                let dst = op.add((c0 - range.start + r) * out_rs + b * BLOCK);
                _mm256_storeu_si256(dst as *mut _, accr[0]);
                _mm256_storeu_si256(dst.add(8) as *mut _, accr[1]);
            }
        }
        c0 += TR;
    }
}

/// Horizontal sum of eight i32 lanes.
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn hsum(v: __m256i) -> i32 {
    let s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256::<1>(v));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b01_00_11_10>(s));
    let s = _mm_add_epi32(s, _mm_shuffle_epi32::<0b10_11_00_01>(s));
    _mm_cvtsi128_si32(s)
}

/// The row loop both AVX2 GEMV forms share: rows `rows` of `w` (`kpad` elements each) four
/// at a time (rows past the last repeat it: read, never stored), `step(k, rows, acc)` adding
/// the products of k..k + `width` into the four accumulators for every whole `width` of K,
/// the rest of K summed plainly (integers: the order does not matter), each row's sum
/// stored at `out[(c − rows.start)·out_rs]`.
///
/// # Safety
/// AVX2 (the caller's `target_feature`); `w` holds `rows.end · kpad` elements, `x` `kpad`
/// codes, `out` the strided row sums (`qgemm::check_gemv_args`), and `step` reads
/// `width` elements from k of each row pointer.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
unsafe fn gemv_rows4<T: Copy + Into<i32>>(w: &[T], kpad: usize, width: usize, rows: Range<usize>, x: &[u8], out: &mut [i32], out_rs: usize, step: impl Fn(usize, &[*const T; 4], &mut [__m256i; 4])) {
    let full = kpad / width * width;
    let r0 = rows.start;
    let mut c = rows.start;
    while c < rows.end {
        let n = (rows.end - c).min(4);
        let wr: [*const T; 4] = std::array::from_fn(|r| w.as_ptr().add((c + r.min(n - 1)) * kpad));
        let mut acc = [_mm256_setzero_si256(); 4];
        let mut k = 0;
        while k < full {
            step(k, &wr, &mut acc);
            k += width;
        }
        for (r, a) in acc.iter().enumerate().take(n) {
            let tail: i32 = (full..kpad).map(|k| i32::from(x[k]) * (*wr[r].add(k)).into()).sum();
            *out.as_mut_ptr().add((c + r - r0) * out_rs) = hsum(*a) + tail;
        }
        c += n;
    }
}

/// One column, `out[(c − rows.start)·out_rs] = Σ_k w[c][k] · x[k]`, K along the lanes, four
/// rows at a time sharing each load of `x`, for weights packed at `S8Paired`: `vpmaddubsw`
/// adds the products of the k pairs `(2j, 2j + 1)`, the pairs `pairs_fit` proved cannot
/// saturate, and `vpmaddwd` by ones widens them into i32 lanes. K past the last whole 32 is
/// summed plainly (integers: the order does not matter).
///
/// # Safety
/// The CPU must support AVX2, and the arguments must satisfy `qgemm::check_gemv_args`, with
/// the weights packed at `S8Paired`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn gemv_u8s8_avx2_maddubs(w: &PackedWeights, s8: &[i8], rows: Range<usize>, x: &[u8], out: &mut [i32], out_rs: usize) {
    let ones = _mm256_set1_epi16(1);
    // SAFETY: AVX2 (this function's feature); the arguments as the caller guarantees, and
    // each step reads 32 codes of x and of each row from k < kpad / 32 · 32.
    unsafe {
        gemv_rows4(s8, w.kpad, 32, rows, x, out, out_rs, |k, wr, acc| {
            let xv = _mm256_loadu_si256(x.as_ptr().add(k) as *const __m256i);
            for r in 0..4 {
                let p = _mm256_maddubs_epi16(xv, _mm256_loadu_si256(wr[r].add(k) as *const __m256i));
                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(p, ones));
            }
        })
    }
}

/// [`gemv_u8s8_avx2_maddubs`] for weights widened to i16 (`S16`): `x` widened 16 k at a time
/// (`vpmovzxbw`), `vpmaddwd` forms i32 pair sums, which cannot overflow.
///
/// # Safety
/// As [`gemv_u8s8_avx2_maddubs`], with the weights packed at `S16`.
#[target_feature(enable = "avx2")]
pub(super) unsafe fn gemv_u8s8_avx2_widen(w: &PackedWeights, s16: &[i16], rows: Range<usize>, x: &[u8], out: &mut [i32], out_rs: usize) {
    // SAFETY: AVX2 (this function's feature); the arguments as the caller guarantees, and
    // each step reads 16 codes of x and 16 weights of each row from k < kpad / 16 · 16.
    unsafe {
        gemv_rows4(s16, w.kpad, 16, rows, x, out, out_rs, |k, wr, acc| {
            let xv = _mm256_cvtepu8_epi16(_mm_loadu_si128(x.as_ptr().add(k) as *const __m128i));
            for r in 0..4 {
                acc[r] = _mm256_add_epi32(acc[r], _mm256_madd_epi16(xv, _mm256_loadu_si256(wr[r].add(k) as *const __m256i)));
            }
        })
    }
}
