//! The INT8 transposed convolution (groups 1): `col[Cout·kh·kw, H·W] = Wᵀ·x` on the qgemm
//! kernel, with `Wᵀ` packed once as `[Cout·kh·kw][Cin]` and the u8 input planes as the panel
//! rows (as for a 1×1 conv), dequantized per output channel into an f32 `col`, then scattered
//! (col2im) onto the bias in f32.

use rayon::prelude::*;

use super::phases::pack_pointwise;
use super::{input_params, quantize_par, OutPtr, QScratch, CONVT_PANEL_TARGET};
use crate::cpu::epilogue::dequant_row;
use crate::cpu::kernels::Kernels;
use crate::cpu::qgemm::{panel_len, PackedWeights, BLOCK};
use crate::error::{Error, Result};
use crate::graph::{ConvTranspose2d, Int8};

/// Packs an INT8 transposed conv's `[Cin, Cout, kh, kw]` codes for `kernels` as the
/// `[Cout·kh·kw][Cin]` matrix the GEMM multiplies. Groups must be 1.
pub fn pack_conv_transpose(kernels: &Kernels, c: &ConvTranspose2d, q: &Int8) -> Result<PackedWeights> {
    if c.groups != 1 {
        return Err(Error::Unsupported { what: format!("an INT8 ConvTranspose with {} groups", c.groups), hint: "the CPU backend runs INT8 ConvTranspose with groups = 1; keep the layer in f32".into() });
    }
    let [cin, cout] = [c.in_channels(), c.out_channels()];
    let [kh, kw] = c.kernel();
    let rows = cout * kh * kw;
    let mut wt = vec![0i8; rows * cin];
    for ci in 0..cin {
        for r in 0..rows {
            wt[r * cin + ci] = q.weights.q[ci * rows + r];
        }
    }
    PackedWeights::new(&wt, rows, cin, kernels.qgemm.for_shape(rows, cin).packing_for(&wt, rows, cin))
}

/// INT8 transposed convolution: `col[Cout·kh·kw, H·W] = Wᵀ·x` with the qgemm kernel (the
/// input planes are the panel rows, as for a 1×1 conv), dequantized per output channel into an
/// f32 `col`, then scattered (col2im) onto the bias. `out[N, Cout, OH, OW]`.
#[allow(clippy::too_many_arguments)]
pub fn qconv_transpose2d(
    kernels: &Kernels,
    c: &ConvTranspose2d,
    q: &Int8,
    pw: &PackedWeights,
    x: &[f32],
    xs: [usize; 4],
    out: &mut [f32],
    os: [usize; 4],
    s: &mut QScratch,
    col: &mut Vec<f32>,
    threads: usize,
) {
    let simd = kernels.simd;
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let [kh, kw] = c.kernel();
    let rows = pw.m;
    let npix = h * w;
    let pa = input_params(simd, q.input, x);
    let total_blocks = npix.div_ceil(BLOCK);
    let nb_max = (CONVT_PANEL_TARGET / (pw.kpad * BLOCK)).clamp(1, total_blocks);
    let rounds = total_blocks.div_ceil(nb_max * threads.max(1)).max(1);
    let nb = total_blocks.div_ceil(rounds * threads.max(1)).clamp(1, nb_max);
    let chunks = npix.div_ceil(nb * BLOCK);
    let workers = threads.max(1).min(chunks);
    let plen = panel_len(pw.kpad, nb);
    let tile = pw.mpad * nb * BLOCK;
    if s.u8.len() < x.len() + workers * plen {
        s.u8.resize(x.len() + workers * plen, 0);
    }
    if s.i32.len() < workers * tile {
        s.i32.resize(workers * tile, 0);
    }
    if col.len() < rows * npix {
        col.resize(rows * npix, 0.0);
    }
    let (xq, panels) = s.u8.split_at_mut(x.len());
    quantize_par(simd, pa, x, xq);
    let xq: &[u8] = xq;
    let kern = kernels.qgemm.for_packing(pw.packing());
    let col_len = col.len();
    for b in 0..n {
        let xb = &xq[b * cin * npix..(b + 1) * cin * npix];
        let dst = OutPtr(col.as_mut_ptr());
        panels.par_chunks_mut(plen).zip(s.i32.par_chunks_mut(tile)).take(workers).enumerate().for_each(|(wi, (panel, acc))| {
            let dst = dst;
            let mut t = wi;
            while t < chunks {
                let p0 = t * nb * BLOCK;
                let cnt = (npix - p0).min(nb * BLOCK);
                let blocks = cnt.div_ceil(BLOCK);
                pack_pointwise(simd, xb, npix, cin, p0, cnt, pw.kpad, panel);
                let rs = blocks * BLOCK;
                kern.run(pw, panel, blocks, acc, rs);
                for r in 0..rows {
                    let co = r / (kh * kw);
                    let corr = i32::from(pa.zero_point) * pw.row_sums[r];
                    debug_assert!(r * npix + p0 + cnt <= col_len);
                    // SAFETY: row r, columns p0..p0+cnt of the [rows, npix] col buffer lie
                    // inside it and belong to this task's pixel chunk only; `col` outlives
                    // the parallel scope.
                    let crow = unsafe { std::slice::from_raw_parts_mut(dst.0.add(r * npix + p0), cnt) };
                    dequant_row(simd, &acc[r * rs..r * rs + cnt], corr, pa.scale * q.weights.scales[co], 0.0, None, false, crow);
                }
                t += workers;
            }
        });
        let col = &*col;
        let ob = &mut out[b * cout * oh * ow..(b + 1) * cout * oh * ow];
        ob.par_chunks_mut(oh * ow).enumerate().with_min_len(crate::cpu::min_items(oh * ow)).for_each(|(co, plane)| {
            let bias = c.bias.as_ref().map_or(0.0, |bias| bias[co]);
            crate::cpu::conv_transpose::col2im_biased(c, &col[co * kh * kw * npix..(co + 1) * kh * kw * npix], [h, w], bias, plane, [oh, ow]);
        });
    }
}

