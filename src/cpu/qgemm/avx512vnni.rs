//! AVX-512 VNNI kernel: 8 channels × 32 pixels per tile, `vpdpbusd` on 4-k groups.
//! Each step loads two 64-byte activation vectors (16 pixels × 4 k each) and broadcasts one
//! 4-byte weight group per channel.

use std::arch::x86_64::*;
use std::ops::Range;

use super::{PackedWeights, BLOCK, MR};

#[inline(always)]
unsafe fn bcast(row: *const i8, k4: usize) -> __m512i {
    _mm512_set1_epi32(std::ptr::read_unaligned(row.add(k4 * 4) as *const i32))
}

/// `acc[c − rows.start][p]` for the channels in `rows` and every pixel of the panel.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VNNI, and the arguments must satisfy `qgemm::check_args`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn qgemm_u8s8_avx512vnni_8x32(w: &PackedWeights, s8: &[i8], range: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
    kernel_8x32(w, s8, range, panel.as_ptr(), Packed, super::block_stride(w.kpad), nblocks, out, out_rs);
}

/// [`qgemm_u8s8_avx512vnni_8x32`] reading its activations in place (implicit GEMM): 4-k group
/// `g` of pixel `p` is the 4 bytes at `src[koff[g] + 4·p]` (a quad phase plane: four
/// channels of one tap, pixel by pixel), so the 16 pixels of block `b` are the 64 bytes at
/// `koff[g] + 64·b`. Weights packed by `PackedWeights::quad_taps`.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VNNI, and the arguments must satisfy
/// `qgemm::check_taps_args`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn qgemm_u8s8_avx512vnni_8x32_taps(w: &PackedWeights, s8: &[i8], range: Range<usize>, src: &[u8], koff: &[usize], nblocks: usize, out: &mut [i32], out_rs: usize) {
    kernel_8x32(w, s8, range, src.as_ptr(), InPlace(koff), 4 * BLOCK, nblocks, out, out_rs);
}

/// Where 4-k group `k4` of a block starts, in bytes from the block's start.
trait Groups: Copy {
    fn at(self, k4: usize) -> usize;
}

/// A packed panel block: `[Kpad/4][16 pixels][4 k]`, the groups 64 bytes apart.
#[derive(Clone, Copy)]
struct Packed;

impl Groups for Packed {
    #[inline(always)]
    fn at(self, k4: usize) -> usize {
        k4 * 64
    }
}

/// Quad planes read in place: group `k4` at its own offset (`koff.len() = Kpad/4`, checked by
/// `check_taps_args`).
#[derive(Clone, Copy)]
struct InPlace<'a>(&'a [usize]);

impl Groups for InPlace<'_> {
    #[inline(always)]
    fn at(self, k4: usize) -> usize {
        self.0[k4]
    }
}

/// The 8 × 32 tile loop of both forms: block `b` starts at `b0 + b·bstride`, its 4-k group
/// `k4` at `groups.at(k4)` from there.
///
/// # Safety
/// As the callers': every group of every block lies inside the activations behind `b0`, the
/// weight rows `c0..c0 + MR` of each step inside `s8`, and the stores inside `out`.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn kernel_8x32<G: Groups>(w: &PackedWeights, s8: &[i8], range: Range<usize>, b0: *const u8, groups: G, bstride: usize, nblocks: usize, out: &mut [i32], out_rs: usize) {
    let k4n = w.kpad / 4;
    let op = out.as_mut_ptr();
    let mut c0 = range.start;
    while c0 < range.end {
        let rows = (range.end - c0).min(MR);
        let wr: [*const i8; MR] = std::array::from_fn(|r| s8.as_ptr().add((c0 + r) * w.kpad));
        // The next 8 rows' weights (the last row again past the end), prefetched while this
        // tile's first pair of blocks runs: a model's weights come from memory, and eight
        // row streams at once are more than the hardware prefetchers follow.
        let nx: [*const i8; MR] = std::array::from_fn(|r| s8.as_ptr().add((c0 + MR + r).min(range.end - 1) * w.kpad));
        let mut b = 0;
        while b + 1 < nblocks {
            let mut acc0 = [_mm512_setzero_si512(); MR];
            let mut acc1 = [_mm512_setzero_si512(); MR];
            let p0 = b0.add(b * bstride);
            for k4 in 0..k4n {
                if b == 0 && k4 % 16 == 0 {
                    for r in 0..MR {
                        _mm_prefetch::<_MM_HINT_T0>(nx[r].add(k4 * 4));
                    }
                }
                let a = p0.add(groups.at(k4));
                let a0 = _mm512_loadu_si512(a as *const _);
                let a1 = _mm512_loadu_si512(a.add(bstride) as *const _);
                for r in 0..MR {
                    let wb = bcast(wr[r], k4);
                    acc0[r] = _mm512_dpbusd_epi32(acc0[r], a0, wb);
                    acc1[r] = _mm512_dpbusd_epi32(acc1[r], a1, wb);
                }
            }
            // All MR rows with the row test inside (constant bounds, unrolled): a loop bounded
            // by `rows` indexed the accumulators at run time, from a stack copy.
            for r in 0..MR {
                if r < rows {
                    let dst = op.add((c0 - range.start + r) * out_rs + b * BLOCK);
                    _mm512_storeu_si512(dst as *mut _, acc0[r]);
                    _mm512_storeu_si512(dst.add(BLOCK) as *mut _, acc1[r]);
                }
            }
            b += 2;
        }
        if b < nblocks {
            // The odd last block alone: half the work of a pair, not a pair's.
            let mut acc0 = [_mm512_setzero_si512(); MR];
            let p0 = b0.add(b * bstride);
            for k4 in 0..k4n {
                let a0 = _mm512_loadu_si512(p0.add(groups.at(k4)) as *const _);
                for r in 0..MR {
                    acc0[r] = _mm512_dpbusd_epi32(acc0[r], a0, bcast(wr[r], k4));
                }
            }
            for r in 0..MR {
                if r < rows {
                    _mm512_storeu_si512(op.add((c0 - range.start + r) * out_rs + b * BLOCK) as *mut _, acc0[r]);
                }
            }
        }
        c0 += MR;
    }
}

/// `out[(c − rows.start)·out_rs] = Σ_k w[c][k] · x[k]` for the channels in `rows`: one
/// column, K along the lanes (64 k per `vpdpbusd`, the partial sums of a row added up at the
/// end), four rows at a time sharing each load of `x`. The GEMM tile would spend a 16-pixel
/// block, four times the work for four pixels, on what a column or a map's last few pixels
/// need.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VNNI, and the arguments must satisfy
/// `qgemm::check_gemv_args`.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn gemv_u8s8_avx512vnni(w: &PackedWeights, s8: &[i8], rows: Range<usize>, x: &[u8], out: &mut [i32], out_rs: usize) {
    let kpad = w.kpad;
    let (full, tail) = (kpad / 64 * 64, (kpad % 64) / 4);
    let tmask: __mmask16 = ((1u32 << tail) - 1) as u16;
    let r0 = rows.start;
    let mut c = rows.start;
    while c < rows.end {
        let n = (rows.end - c).min(4);
        // Rows past `n` repeat the last one (read, never stored): one loop body for every
        // count.
        let wr: [*const i8; 4] = std::array::from_fn(|r| s8.as_ptr().add((c + r.min(n - 1)) * kpad));
        let mut acc = [_mm512_setzero_si512(); 4];
        let mut k = 0;
        while k < full {
            let xv = _mm512_loadu_si512(x.as_ptr().add(k) as *const __m512i);
            for r in 0..4 {
                acc[r] = _mm512_dpbusd_epi32(acc[r], xv, _mm512_loadu_si512(wr[r].add(k) as *const __m512i));
            }
            k += 64;
        }
        if tail > 0 {
            let xv = _mm512_maskz_loadu_epi32(tmask, x.as_ptr().add(k) as *const i32);
            for r in 0..4 {
                acc[r] = _mm512_dpbusd_epi32(acc[r], xv, _mm512_maskz_loadu_epi32(tmask, wr[r].add(k) as *const i32));
            }
        }
        for (r, a) in acc.iter().enumerate().take(n) {
            *out.as_mut_ptr().add((c + r - r0) * out_rs) = _mm512_reduce_add_epi32(*a);
        }
        c += n;
    }
}

/// [`gemv_u8s8_avx512vnni`] for `NC` (1–4) columns at once: column `j` of `x` at `j·Kpad`,
/// its sums to `out[(c − rows.start)·out_rs + j]`. Each 64-k load of a weight row serves all
/// `NC` columns, where one column at a time loads every weight once per column (a 14² map's
/// last four pixels: four passes over the weights, five loads per four `vpdpbusd`); and a row's
/// `NC` sums are reduced together, by two rounds of unpacks and two of halving, into one
/// 128-bit store.
///
/// # Safety
/// The CPU must support AVX-512F/BW/VNNI, and the arguments must satisfy
/// `qgemm::check_gemv_args` for `NC` columns.
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
pub(super) unsafe fn gemv_cols_u8s8_avx512vnni<const NC: usize>(w: &PackedWeights, s8: &[i8], rows: Range<usize>, x: &[u8], out: &mut [i32], out_rs: usize) {
    let kpad = w.kpad;
    let (full, tail) = (kpad / 64 * 64, (kpad % 64) / 4);
    let tmask: __mmask16 = ((1u32 << tail) - 1) as u16;
    let xc: [*const u8; NC] = std::array::from_fn(|j| x.as_ptr().add(j * kpad));
    let r0 = rows.start;
    let mut c = rows.start;
    while c < rows.end {
        let n = (rows.end - c).min(4);
        // Rows past `n` repeat the last one (read, never stored), as in the one-column form.
        let wr: [*const i8; 4] = std::array::from_fn(|r| s8.as_ptr().add((c + r.min(n - 1)) * kpad));
        let mut acc = [[_mm512_setzero_si512(); NC]; 4];
        let mut k = 0;
        while k < full {
            let xv: [__m512i; NC] = std::array::from_fn(|j| _mm512_loadu_si512(xc[j].add(k) as *const __m512i));
            for r in 0..4 {
                let wv = _mm512_loadu_si512(wr[r].add(k) as *const __m512i);
                for j in 0..NC {
                    acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], xv[j], wv);
                }
            }
            k += 64;
        }
        if tail > 0 {
            let xv: [__m512i; NC] = std::array::from_fn(|j| _mm512_maskz_loadu_epi32(tmask, xc[j].add(k) as *const i32));
            for r in 0..4 {
                let wv = _mm512_maskz_loadu_epi32(tmask, wr[r].add(k) as *const i32);
                for j in 0..NC {
                    acc[r][j] = _mm512_dpbusd_epi32(acc[r][j], xv[j], wv);
                }
            }
        }
        for (r, a) in acc.iter().enumerate().take(n) {
            let s = sum4(std::array::from_fn(|j| if j < NC { a[j] } else { _mm512_setzero_si512() }));
            let dst = out.as_mut_ptr().add((c + r - r0) * out_rs);
            if NC == 4 {
                _mm_storeu_si128(dst as *mut __m128i, s);
            } else {
                let mut v = [0i32; 4];
                _mm_storeu_si128(v.as_mut_ptr() as *mut __m128i, s);
                std::ptr::copy_nonoverlapping(v.as_ptr(), dst, NC);
            }
        }
        c += n;
    }
}

/// The lane sums of four vectors, `[Σa₀, Σa₁, Σa₂, Σa₃]`: unpacks of dwords then of qwords add
/// the four vectors' lanes pairwise within each 128-bit lane, then the four 128-bit lanes are
/// added by halving.
#[inline]
#[target_feature(enable = "avx512f,avx512bw")]
fn sum4(a: [__m512i; 4]) -> __m128i {
    let u01 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[0], a[1]), _mm512_unpackhi_epi32(a[0], a[1]));
    let u23 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2], a[3]), _mm512_unpackhi_epi32(a[2], a[3]));
    // Each 128-bit lane: [a₀, a₁, a₂, a₃] partial sums.
    let v = _mm512_add_epi32(_mm512_unpacklo_epi64(u01, u23), _mm512_unpackhi_epi64(u01, u23));
    let y = _mm256_add_epi32(_mm512_castsi512_si256(v), _mm512_extracti64x4_epi64::<1>(v));
    _mm_add_epi32(_mm256_castsi256_si128(y), _mm256_extracti128_si256::<1>(y))
}
