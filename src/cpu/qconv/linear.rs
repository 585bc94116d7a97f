//! The INT8 fully connected layer: `[N, in]` quantized into one panel (or, for a few rows on
//! a kernel with a GEMV form, into zero-padded columns), the workers split the output rows
//! over the `[out][in]` weights packed once.

use super::{input_params, quantize_par, QScratch};
use crate::cpu::kernels::Kernels;
use crate::cpu::qgemm::{panel_index, panel_len, PackedWeights, BLOCK, MR};
use crate::error::Result;
use crate::graph::{Int8, Linear};

/// Packs an INT8 layer's `[out, in]` codes for `kernels` (on an AMX CPU, for its VNNI kernel:
/// [`crate::cpu::qgemm::Kernel::without_tiles`]).
pub fn pack_linear(kernels: &Kernels, l: &Linear, q: &Int8) -> Result<PackedWeights> {
    let (o, i) = (l.weight.shape()[0], l.weight.shape()[1]);
    PackedWeights::new(&q.weights.q, o, i, kernels.qgemm.without_tiles().packing_for(&q.weights.q, o, i))
}

/// Batches of at most this many rows run as GEMV columns ([`crate::cpu::qgemm::Kernel::gemv_cols`])
/// where the kernel has one, instead of a GEMM whose 16-pixel blocks would be mostly padding.
pub const GEMV_MAX_ROWS: usize = 4;

/// `out[N, O]` from `x[N, I]`; the workers split the output rows (each streams its share of
/// the weights, which dominate at small N).
#[allow(clippy::too_many_arguments)]
pub fn qlinear(kernels: &Kernels, l: &Linear, q: &Int8, pw: &PackedWeights, x: &[f32], n: usize, out: &mut [f32], s: &mut QScratch, threads: usize) {
    let simd = kernels.simd;
    let (o, i) = (pw.m, pw.k);
    let pa = input_params(simd, q.input, x);
    let blocks = n.div_ceil(BLOCK);
    let plen = panel_len(pw.kpad, blocks);
    let need = x.len() + plen.max(n * pw.kpad);
    if s.u8.len() < need {
        s.u8.resize(need, 0);
    }
    let rs = blocks * BLOCK;
    if s.i32.len() < pw.mpad * rs {
        s.i32.resize(pw.mpad * rs, 0);
    }
    let (xq, panel) = s.u8.split_at_mut(x.len());
    quantize_par(simd, pa, x, xq);
    let per = o.div_ceil(threads.max(1)).next_multiple_of(MR).max(MR);
    let kern = kernels.qgemm.for_packing(pw.packing());
    if kern.has_gemv() && n <= GEMV_MAX_ROWS {
        // Each input row zero-padded to Kpad, one GEMV column per row.
        let cols = &mut panel[..n * pw.kpad];
        for (p, col) in cols.chunks_exact_mut(pw.kpad).enumerate() {
            col[..i].copy_from_slice(&xq[p * i..(p + 1) * i]);
            col[i..].fill(0);
        }
        let cols: &[u8] = cols;
        crate::cpu::parallel::par_chunks_mut(&mut s.i32[..o * rs], per * rs, |t, acc| {
            let c0 = t * per;
            kern.gemv_cols(pw, c0..(c0 + per).min(o), cols, n, acc, rs);
        });
    } else {
        panel[..plen].fill(0);
        for p in 0..n {
            for k in 0..i {
                panel[panel_index(pw.kpad, k, p)] = xq[p * i + k];
            }
        }
        let panel: &[u8] = panel;
        crate::cpu::parallel::par_chunks_mut(&mut s.i32[..o * rs], per * rs, |t, acc| {
            let c0 = t * per;
            kern.run_rows(pw, c0..(c0 + per).min(o), panel, blocks, acc, rs);
        });
    }
    for c in 0..o {
        let corr = i32::from(pa.zero_point) * pw.row_sums[c];
        let mult = pa.scale * q.weights.scales[c];
        let bias = l.bias.as_ref().map_or(0.0, |b| b[c]);
        for p in 0..n {
            out[p * o + c] = (s.i32[c * rs + p] - corr) as f32 * mult + bias;
        }
    }
}
