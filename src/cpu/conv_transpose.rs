//! FP32 transposed convolution as GEMM plus col2im over NCHW.
//!
//! For each image and group: `col[Cout_g·kh·kw, H·W] = W_gᵀ × x[Cin_g, H·W]`, with `W_g` the
//! `[Cin_g, Cout_g·kh·kw]` slice of the `[Cin, Cout/g, kh, kw]` weight, then every column
//! entry is scattered into the output at `oy = iy·s − pad + ky·d`. The output starts as bias.

use rayon::prelude::*;

use super::sgemm;
use crate::graph::ConvTranspose2d;

/// Scratch elements needed for `col` by [`conv_transpose2d`].
pub fn scratch_len(c: &ConvTranspose2d, in_hw: [usize; 2]) -> usize {
    let [kh, kw] = c.kernel();
    c.weight.shape()[1] * kh * kw * in_hw[0] * in_hw[1]
}

/// `y = conv_transpose(x) + bias` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`.
pub fn conv_transpose2d(
    c: &ConvTranspose2d,
    x: &[f32],
    xs: [usize; 4],
    out: &mut [f32],
    os: [usize; 4],
    scratch: &mut Vec<f32>,
    threads: usize,
) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups;
    let (cin_g, cout_g) = (cin / g, cout / g);
    let [kh, kw] = c.kernel();
    let rows = cout_g * kh * kw;
    let need = scratch_len(c, [h, w]);
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let col = &mut scratch[..need];
    let wdata = c.weight.data();
    for b in 0..n {
        let xb = &x[b * cin * h * w..(b + 1) * cin * h * w];
        let ob = &mut out[b * cout * oh * ow..(b + 1) * cout * oh * ow];
        for gi in 0..g {
            let xg = &xb[gi * cin_g * h * w..(gi + 1) * cin_g * h * w];
            let wg = &wdata[gi * cin_g * rows..(gi + 1) * cin_g * rows];
            sgemm(rows, h * w, cin_g, col, h * w, false, wg, (1, rows), xg, (h * w, 1), threads);
            let og = &mut ob[gi * cout_g * oh * ow..(gi + 1) * cout_g * oh * ow];
            let col = &*col;
            og.par_chunks_mut(oh * ow).enumerate().with_min_len(super::min_items(oh * ow)).for_each(|(co, plane)| {
                plane.fill(c.bias.as_ref().map_or(0.0, |bias| bias[gi * cout_g + co]));
                col2im_plane(c, &col[co * kh * kw * h * w..(co + 1) * kh * kw * h * w], [h, w], plane, [oh, ow]);
            });
        }
    }
}

/// Scatters the `[kh·kw, H·W]` column block of one output channel into its plane.
pub(crate) fn col2im_plane(c: &ConvTranspose2d, col: &[f32], [h, w]: [usize; 2], plane: &mut [f32], [oh, ow]: [usize; 2]) {
    let [kh, kw] = c.kernel();
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let (pt, pl) = (c.pads[0] as isize, c.pads[1] as isize);
    for ky in 0..kh {
        for kx in 0..kw {
            let src = &col[(ky * kw + kx) * h * w..(ky * kw + kx + 1) * h * w];
            for iy in 0..h {
                let oy = (iy * sh + ky * dh) as isize - pt;
                if oy < 0 || oy >= oh as isize {
                    continue;
                }
                let drow = &mut plane[oy as usize * ow..(oy as usize + 1) * ow];
                let srow = &src[iy * w..(iy + 1) * w];
                for (ix, &v) in srow.iter().enumerate() {
                    let ox = (ix * sw + kx * dw) as isize - pl;
                    if ox >= 0 && ox < ow as isize {
                        drow[ox as usize] += v;
                    }
                }
            }
        }
    }
}
