//! BF16 fully connected layer (`--precision bf16`): `y[n, out] = x[n, in] · Wᵀ + b`, `W:
//! [out, in]` rounded to bf16 once and packed as `[out][kp]` u32 channel pairs (`kp` = `in`
//! rounded up to 32, halved; zeros past `in`), each row of `x` rounded into pairs per call.
//! One row is a GEMV bound by the weight stream, which bf16 halves (ResNet-50's head: 4 MB
//! instead of 8).
//!
//! Arithmetic of a feature: 16 lanes of f32 partial sums, lane `l` taking pairs `j ≡ l (mod
//! 16)` in order by [`bgemm::dot_pair`] (what `vdpbf16ps` computes), the lanes added pairwise
//! (lane `l` += lane `l + width` for width 8, 4, 2, 1), then the bias. The `vdpbf16ps` kernel
//! and its scalar twin compute exactly that; the tests hold them bit-identical. Output features
//! are split over the workers in blocks of 64, each block's weights serving every row of the
//! batch while they are in cache, so a row's values never depend on the batch or the split.

use super::aligned::Aligned;
use super::bgemm::{self, pair};
use super::linear::{lanes_sum, LANES};
use super::parallel::{par_for, OutPtr};
use crate::graph::Linear;

/// Output features per task.
const ROWS: usize = 64;
/// Multiply-adds from which a layer splits over the workers (as the f32 GEMV).
const PAR_MIN: usize = 1 << 16;
/// Features computed side by side (their weight rows stream together).
const AT_ONCE: usize = 4;

/// A layer's weights rounded to bf16 and packed.
#[derive(Clone, Debug)]
pub struct Packed {
    /// Output features.
    pub out: usize,
    /// Input features.
    pub inp: usize,
    /// Pairs per feature (a multiple of 16).
    kp: usize,
    /// On a cache line: a feature's pairs are loaded 16 (64 bytes) at a time (`cpu::aligned`).
    data: Aligned<u32>,
}

impl Packed {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}

/// The kernel's name in reports.
pub fn name(k: bgemm::Kernel) -> &'static str {
    match k {
        bgemm::Kernel::Scalar => "scalar emulation gemv",
        #[cfg(target_arch = "x86_64")]
        bgemm::Kernel::Avx512Bf16(_) => "avx512bf16 gemv",
    }
}

/// Rounds and packs `l`'s weights.
pub fn pack(l: &Linear) -> Packed {
    let (out, inp) = (l.weight.shape()[0], l.weight.shape()[1]);
    let kp = inp.next_multiple_of(2 * LANES) / 2;
    let w = l.weight.data();
    let mut data = Aligned::<u32>::zeroed(out * kp);
    for o in 0..out {
        for (j, d) in data[o * kp..(o + 1) * kp].iter_mut().enumerate() {
            let at = |c: usize| if c < inp { w[o * inp + c] } else { 0.0 };
            *d = pair(at(2 * j), at(2 * j + 1));
        }
    }
    Packed { out, inp, kp, data }
}

/// Runs the layer on `x: [n, in]` into `out: [n, out]` (`bias` of `out` values).
///
/// # Panics
/// When `x`, `out` or `bias` is shorter than its shape says.
pub fn linear(k: bgemm::Kernel, p: &Packed, bias: Option<&[f32]>, x: &[f32], n: usize, out: &mut [f32], threads: usize) {
    let (o, i, kp) = (p.out, p.inp, p.kp);
    assert!(x.len() >= n * i && out.len() >= n * o && bias.is_none_or(|b| b.len() >= o), "bf16 linear: input, output or bias too small");
    if n == 0 || o == 0 {
        return;
    }
    // Each row's pairs, zero past `in`.
    let mut xp = vec![0u32; n * kp];
    for b in 0..n {
        let (row, xr) = (&mut xp[b * kp..(b + 1) * kp], &x[b * i..(b + 1) * i]);
        for (j, d) in row.iter_mut().enumerate() {
            let at = |c: usize| xr.get(c).copied().unwrap_or(0.0);
            *d = pair(at(2 * j), at(2 * j + 1));
        }
    }
    let dst = OutPtr(out.as_mut_ptr());
    let run = |blk: usize| {
        let dst = &dst;
        let (r0, rows) = (blk * ROWS, ROWS.min(o - blk * ROWS));
        let w = &p.data[r0 * kp..(r0 + rows) * kp];
        for b in 0..n {
            let xb = &xp[b * kp..(b + 1) * kp];
            // SAFETY: features r0..r0 + rows of row b lie inside `out` (asserted above); each
            // block runs once and no two blocks share a feature.
            let ob = unsafe { std::slice::from_raw_parts_mut(dst.0.add(b * o + r0), rows) };
            dots(k, xb, w, ob);
            if let Some(bias) = bias {
                ob.iter_mut().zip(&bias[r0..]).for_each(|(y, &bb)| *y += bb);
            }
        }
    };
    let blocks = o.div_ceil(ROWS);
    if threads > 1 && n * o * i >= PAR_MIN {
        par_for(blocks, run);
    } else {
        (0..blocks).for_each(run);
    }
}

/// `out[r]` = the pairwise-reduced lanes of feature `r` (`w: [out.len()][kp]`) against `x:
/// [kp]` (see the module docs).
fn dots(k: bgemm::Kernel, x: &[u32], w: &[u32], out: &mut [f32]) {
    let kp = x.len();
    assert!(kp.is_multiple_of(LANES) && w.len() >= out.len() * kp, "bf16 linear: weights shorter than their rows");
    for (r0, o) in (0..out.len()).step_by(AT_ONCE).zip(out.chunks_mut(AT_ONCE)) {
        let mut lanes = [[0f32; LANES]; AT_ONCE];
        match k {
            // SAFETY: the token proves AVX-512F and AVX512_BF16; the rows r0..r0 + o.len()
            // of `w` hold kp pairs each (asserted).
            #[cfg(target_arch = "x86_64")]
            bgemm::Kernel::Avx512Bf16(_) => unsafe { lanes_avx512(x, &w[r0 * kp..(r0 + o.len()) * kp], o.len(), &mut lanes) },
            _ => {
                for (r, acc) in lanes.iter_mut().enumerate().take(o.len()) {
                    let wr = &w[(r0 + r) * kp..(r0 + r + 1) * kp];
                    for c in (0..kp).step_by(LANES) {
                        for (l, a) in acc.iter_mut().enumerate() {
                            *a = bgemm::dot_pair(*a, wr[c + l], x[c + l]);
                        }
                    }
                }
            }
        }
        for (y, a) in o.iter_mut().zip(lanes.iter_mut()) {
            *y = lanes_sum(a);
        }
    }
}

/// The lanes of `rows` (≤ [`AT_ONCE`]) features `w: [rows][kp]` against `x: [kp]`.
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16; `x.len()` is a multiple of 16 and `w` holds `rows ·
/// x.len()` pairs.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn lanes_avx512(x: &[u32], w: &[u32], rows: usize, lanes: &mut [[f32; LANES]; AT_ONCE]) {
    use std::arch::x86_64::*;
    let kp = x.len();
    let mut acc = [_mm512_setzero_ps(); AT_ONCE];
    // SAFETY: loads of 16 u32 at c < kp (a multiple of 16) of `x` and of rows r < rows of `w`
    // (the caller's contract); stores into `lanes` rows r < AT_ONCE.
    unsafe {
        for c in (0..kp).step_by(LANES) {
            let xv = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(x.as_ptr().add(c) as *const __m512i));
            for (r, a) in acc.iter_mut().enumerate().take(rows) {
                let wv = std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(w.as_ptr().add(r * kp + c) as *const __m512i));
                *a = _mm512_dpbf16_ps(*a, wv, xv);
            }
        }
        for (l, a) in lanes.iter_mut().zip(acc).take(rows) {
            _mm512_storeu_ps(l.as_mut_ptr(), a);
        }
    }
}
