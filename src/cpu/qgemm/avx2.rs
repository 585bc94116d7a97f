//! AVX2 kernel: 2 channels × 16 pixels per tile. Activations are widened u8→i16
//! (`vpmovzxbw`), weights come pre-widened, and `vpmaddwd` forms i32 pair sums, so nothing
//! can saturate (see the module docs of `qgemm`). Accumulators hold per-pixel pair sums
//! `(k0·w0 + k1·w1, k2·w2 + k3·w3)` that are added once at the end of K.

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
    let pstride = k4n * 4 * BLOCK;
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
