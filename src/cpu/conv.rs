//! FP32 convolution as an implicit-im2col GEMM over NCHW.
//!
//! For each image and group: `out[Cout_g, OH·OW] = W[Cout_g, Cin_g·kh·kw] × col[Cin_g·kh·kw, OH·OW]`.
//! 1×1 stride-1 unpadded convs read the input directly as `col`; others fill `col` in a
//! scratch buffer the caller owns and reuses. The epilogue (bias, residual, activation) runs
//! on the output while it is still hot: the residual is copied into the output first and the
//! GEMM accumulates onto it.

use rayon::prelude::*;

use super::sgemm;
use crate::graph::Conv2d;

/// Scratch elements needed for `col` by [`conv2d`] at this input shape.
pub fn scratch_len(c: &Conv2d, out_hw: [usize; 2]) -> usize {
    if is_pointwise(c) {
        0
    } else {
        let [kh, kw] = c.kernel();
        c.weight.shape()[1] * kh * kw * out_hw[0] * out_hw[1]
    }
}

fn is_pointwise(c: &Conv2d) -> bool {
    c.kernel() == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4]
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    c: &Conv2d,
    x: &[f32],
    xs: [usize; 4],
    residual: Option<&[f32]>,
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
    let kdim = cin_g * kh * kw;
    let npix = oh * ow;
    let wdata = c.weight.data();
    let need = scratch_len(c, [oh, ow]);
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    for b in 0..n {
        let xb = &x[b * cin * h * w..(b + 1) * cin * h * w];
        let ob = &mut out[b * cout * npix..(b + 1) * cout * npix];
        if let Some(r) = residual {
            ob.copy_from_slice(&r[b * cout * npix..(b + 1) * cout * npix]);
        }
        for gi in 0..g {
            let xg = &xb[gi * cin_g * h * w..(gi + 1) * cin_g * h * w];
            let col: &[f32] = if is_pointwise(c) {
                xg
            } else {
                im2col(c, xg, [cin_g, h, w], [oh, ow], &mut scratch[..need]);
                &scratch[..need]
            };
            let og = &mut ob[gi * cout_g * npix..(gi + 1) * cout_g * npix];
            let wg = &wdata[gi * cout_g * kdim..(gi + 1) * cout_g * kdim];
            sgemm(cout_g, npix, kdim, og, npix, residual.is_some(), wg, (kdim, 1), col, (npix, 1), threads);
        }
        epilogue(c, ob, npix);
    }
}

/// Adds bias and applies the activation, one output channel per task.
fn epilogue(c: &Conv2d, out: &mut [f32], npix: usize) {
    if c.bias.is_none() && c.act.is_none() {
        return;
    }
    out.par_chunks_mut(npix).enumerate().for_each(|(ch, row)| {
        let b = c.bias.as_ref().map_or(0.0, |b| b[ch]);
        match c.act {
            Some(a) => row.iter_mut().for_each(|v| *v = a.apply(*v + b)),
            None => row.iter_mut().for_each(|v| *v += b),
        }
    });
}

/// Fills `col: [Cin_g·kh·kw, OH·OW]` from `x: [Cin_g, H, W]`, zero outside the image.
fn im2col(c: &Conv2d, x: &[f32], [_, h, w]: [usize; 3], [oh, ow]: [usize; 2], col: &mut [f32]) {
    let [kh, kw] = c.kernel();
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let (pt, pl) = (c.pads[0] as isize, c.pads[1] as isize);
    col.par_chunks_mut(oh * ow).enumerate().for_each(|(row, dst)| {
        let ci = row / (kh * kw);
        let ky = (row / kw) % kh;
        let kx = row % kw;
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for oy in 0..oh {
            let iy = (oy * sh) as isize - pt + (ky * dh) as isize;
            let drow = &mut dst[oy * ow..(oy + 1) * ow];
            if iy < 0 || iy >= h as isize {
                drow.fill(0.0);
                continue;
            }
            let src = &plane[iy as usize * w..(iy as usize + 1) * w];
            let x0 = kx as isize * dw as isize - pl;
            if sw == 1 {
                // Contiguous run: zeros left, copy, zeros right.
                let lo = (-x0).clamp(0, ow as isize) as usize;
                let hi = (w as isize - x0).clamp(lo as isize, ow as isize) as usize;
                drow[..lo].fill(0.0);
                drow[lo..hi].copy_from_slice(&src[(lo as isize + x0) as usize..(hi as isize + x0) as usize]);
                drow[hi..].fill(0.0);
            } else {
                for (ox, d) in drow.iter_mut().enumerate() {
                    let ix = (ox * sw) as isize + x0;
                    *d = if ix >= 0 && ix < w as isize { src[ix as usize] } else { 0.0 };
                }
            }
        }
    });
}
