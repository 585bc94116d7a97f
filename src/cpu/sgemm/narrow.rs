//! The narrow kernel: GEMMs of at most [`COLS`] (= `NARROW_COLS`) columns (a conv over 1×1 or 2×2 maps at
//! batch 1), vectorised along M instead of N. Per k, one ymm holds a weight panel's MR ≤ 8
//! weights ([`super::PackedA`]'s `[K][MR]` rows) and is multiplied by each column's B value,
//! broadcast; several panels run side by side so that the FMA chains overlap. A tile of 48
//! columns spends its lanes on zeros there: a 1×1 map used 1 lane in 16.
//!
//! Each element is still `acc = fma(a, b, acc)` over k in order, as in the tiles and the
//! scalar twin, so the values are bit-identical to them.

use std::arch::x86_64::*;

use super::NARROW_COLS as COLS;

/// `acc[(p·COLS + j)·8 + r] = fma(a_p[k][r], b[j][k], …)` over k in order, from the value
/// `acc` holds, for panels `p < panels` (panel `p` at `a + p · stride`, `[kdim][MR]`),
/// columns `j < cols` and rows `r < MR` (lanes `MR..8` of `acc` are left as they are).
///
/// # Safety
/// The CPU must support AVX2 and FMA; `a` holds `panels` panels of `kdim · MR` floats at
/// stride `stride`; `b[j]` holds `kdim` floats for `j < cols`; `acc` holds
/// `panels · COLS · 8` floats; `1 ≤ cols ≤ COLS`.
#[target_feature(enable = "avx2,fma")]
pub(super) unsafe fn run<const MR: usize>(a: *const f32, stride: usize, panels: usize, kdim: usize, b: [*const f32; COLS], cols: usize, acc: &mut [f32]) {
    // SAFETY: forwarded contract. Register use: P·N accumulators, N broadcasts and a weight
    // vector (one column: the weights are an FMA's memory operand) within AVX2's 16 ymm
    // registers, and at least 8 independent FMA chains (4 cycles of latency, 2 per cycle).
    // 3 panels × 4 columns spilled an accumulator in the K loop.
    unsafe {
        match cols {
            1 => run_n::<MR, 1, 12>(a, stride, panels, kdim, b, acc),
            2 => run_n::<MR, 2, 6>(a, stride, panels, kdim, b, acc),
            3 => run_n::<MR, 3, 3>(a, stride, panels, kdim, b, acc),
            _ => run_n::<MR, 4, 2>(a, stride, panels, kdim, b, acc),
        }
    }
}

#[target_feature(enable = "avx2,fma")]
#[inline]
unsafe fn run_n<const MR: usize, const N: usize, const P: usize>(a: *const f32, stride: usize, panels: usize, kdim: usize, b: [*const f32; COLS], acc: &mut [f32]) {
    assert!(MR <= 8 && acc.len() >= panels * COLS * 8, "narrow: accumulators too short");
    let mask = _mm256_cmpgt_epi32(_mm256_set1_epi32(MR as i32), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
    let mut p0 = 0;
    while p0 < panels {
        let live = (panels - p0).min(P);
        // Slots past the live panels repeat the last one: computed, never stored.
        let ap: [*const f32; P] = std::array::from_fn(|i| a.wrapping_add((p0 + i.min(live - 1)) * stride));
        let mut v = [[_mm256_setzero_ps(); N]; P];
        for (i, row) in v.iter_mut().enumerate().take(live) {
            for (j, x) in row.iter_mut().enumerate() {
                // SAFETY: acc holds panels · COLS · 8 floats (asserted); p0 + i < panels.
                *x = unsafe { _mm256_loadu_ps(acc.as_ptr().add(((p0 + i) * COLS + j) * 8)) };
            }
        }
        for k in 0..kdim {
            // SAFETY: b[j] holds kdim floats for the N columns; each live panel holds kdim · MR
            // floats (the repeated slots read a live panel); MR < 8 loads mask the lanes past
            // MR, which are then neither read nor changed.
            unsafe {
                let bv: [__m256; N] = std::array::from_fn(|j| _mm256_broadcast_ss(&*b[j].add(k)));
                for i in 0..P {
                    let w = ap[i].add(k * MR);
                    let av = if MR == 8 { _mm256_loadu_ps(w) } else { _mm256_maskload_ps(w, mask) };
                    for j in 0..N {
                        v[i][j] = _mm256_fmadd_ps(av, bv[j], v[i][j]);
                    }
                }
            }
        }
        for (i, row) in v.iter().enumerate().take(live) {
            for (j, x) in row.iter().enumerate() {
                let at = ((p0 + i) * COLS + j) * 8;
                let mut lanes = [0f32; 8];
                // SAFETY: `lanes` holds 8 floats.
                unsafe { _mm256_storeu_ps(lanes.as_mut_ptr(), *x) };
                acc[at..at + MR].copy_from_slice(&lanes[..MR]);
            }
        }
        p0 += P;
    }
}
