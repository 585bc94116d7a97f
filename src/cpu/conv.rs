//! FP32 convolution as an implicit-im2col GEMM over NCHW.
//!
//! For each image and group: `out[Cout_g, OH·OW] = W[Cout_g, Cin_g·kh·kw] × col[Cin_g·kh·kw, OH·OW]`.
//! 1×1 stride-1 unpadded convs read the input directly as `col`; others fill `col` in a
//! scratch buffer the caller owns and reuses. The epilogue (bias, residual, activation) runs
//! on the output while it is still hot: the residual is copied into the output first and the
//! GEMM accumulates onto it.

use rayon::prelude::*;

use super::parallel::OutPtr;
use super::sgemm;
use crate::graph::Conv2d;

/// Largest `col` matrix (in f32 elements) formed in one piece; larger ones are blocked.
pub const COL_BUDGET: usize = 256 * 1024;
/// Target size of one `col` block in the blocked path.
const BLOCK_TARGET: usize = 64 * 1024;

/// Output rows per block for the blocked path, or `None` when the whole `col` fits.
fn rows_per_block(c: &Conv2d, [oh, ow]: [usize; 2]) -> Option<usize> {
    let [kh, kw] = c.kernel();
    let kdim = c.weight.shape()[1] * kh * kw;
    if is_pointwise(c) || kdim * oh * ow <= COL_BUDGET {
        return None;
    }
    Some((BLOCK_TARGET / (kdim * ow).max(1)).clamp(1, oh))
}

/// Scratch elements needed by [`conv2d`] at this output size with `threads` workers.
pub fn scratch_len(c: &Conv2d, out_hw: [usize; 2], threads: usize) -> usize {
    let [kh, kw] = c.kernel();
    let kdim = c.weight.shape()[1] * kh * kw;
    match rows_per_block(c, out_hw) {
        _ if is_pointwise(c) => 0,
        None => kdim * out_hw[0] * out_hw[1],
        Some(rows) => kdim * rows * out_hw[1] * threads.max(1),
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
    let need = scratch_len(c, [oh, ow], threads);
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    if let Some(rows) = rows_per_block(c, [oh, ow]) {
        if let Some(r) = residual {
            out.copy_from_slice(&r[..out.len()]);
        }
        conv2d_blocked(c, x, xs, residual.is_some(), out, os, rows, &mut scratch[..need], threads);
        for ob in out.chunks_mut(cout * npix) {
            epilogue(c, ob, npix);
        }
        return;
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

/// The blocked path: tasks over (image, group, row block), each with its own `col` block.
#[allow(clippy::too_many_arguments)]
fn conv2d_blocked(c: &Conv2d, x: &[f32], xs: [usize; 4], accumulate: bool, out: &mut [f32], os: [usize; 4], rows: usize, scratch: &mut [f32], threads: usize) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups;
    let (cin_g, cout_g) = (cin / g, cout / g);
    let [kh, kw] = c.kernel();
    let kdim = cin_g * kh * kw;
    let npix = oh * ow;
    let nblocks = oh.div_ceil(rows);
    let tasks = n * g * nblocks;
    let workers = threads.max(1).min(tasks);
    let per_worker = kdim * rows * ow;
    let dst = OutPtr(out.as_mut_ptr());
    let out_len = out.len();
    let wdata = c.weight.data();
    scratch.par_chunks_mut(per_worker).take(workers).enumerate().for_each(|(wi, col)| {
        let dst = dst;
        let mut t = wi;
        while t < tasks {
            let (b, rest) = (t / (g * nblocks), t % (g * nblocks));
            let (gi, blk) = (rest / nblocks, rest % nblocks);
            let (r0, r1) = (blk * rows, ((blk + 1) * rows).min(oh));
            let cols = (r1 - r0) * ow;
            let xg = &x[(b * cin + gi * cin_g) * h * w..(b * cin + (gi + 1) * cin_g) * h * w];
            im2col_rows(c, xg, [h, w], [r0, r1], ow, &mut col[..kdim * cols]);
            let wg = &wdata[gi * cout_g * kdim..(gi + 1) * cout_g * kdim];
            let base = (b * cout + gi * cout_g) * npix + r0 * ow;
            // The block's output: cout_g rows of `cols` elements, row stride npix.
            let span = (cout_g - 1) * npix + cols;
            debug_assert!(base + span <= out_len);
            // SAFETY: [base, base + span) lies inside `out` (checked by shape inference and
            // the debug assert); tasks own distinct (image, group, row block) triples, so the
            // elements each writes (rows of this group, columns r0·ow..r1·ow) are disjoint
            // from every other task's, and `out` outlives this parallel scope.
            let block = unsafe { std::slice::from_raw_parts_mut(dst.0.add(base), span) };
            sgemm(cout_g, cols, kdim, block, npix, accumulate, wg, (kdim, 1), &col[..kdim * cols], (cols, 1), 1);
            t += workers;
        }
    });
}

/// Fills `col: [Cin_g·kh·kw, (r1−r0)·OW]` for output rows `r0..r1`.
fn im2col_rows(c: &Conv2d, x: &[f32], [h, w]: [usize; 2], [r0, r1]: [usize; 2], ow: usize, col: &mut [f32]) {
    let [kh, kw] = c.kernel();
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let (pt, pl) = (c.pads[0] as isize, c.pads[1] as isize);
    let cols = (r1 - r0) * ow;
    for (row, dst) in col.chunks_mut(cols).enumerate() {
        let ci = row / (kh * kw);
        let ky = (row / kw) % kh;
        let kx = row % kw;
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for (i, oy) in (r0..r1).enumerate() {
            fill_row(plane, w, h, (oy * sh) as isize - pt + (ky * dh) as isize, kx as isize * dw as isize - pl, sw, &mut dst[i * ow..(i + 1) * ow]);
        }
    }
}

/// One output row of one `col` row: input row `iy`, starting column `x0`, column stride `sw`.
#[inline]
fn fill_row(plane: &[f32], w: usize, h: usize, iy: isize, x0: isize, sw: usize, drow: &mut [f32]) {
    if iy < 0 || iy >= h as isize {
        drow.fill(0.0);
        return;
    }
    super::strided_row(drow, &plane[iy as usize * w..(iy as usize + 1) * w], x0, sw);
}

/// Adds bias and applies the activation, one output channel per task.
fn epilogue(c: &Conv2d, out: &mut [f32], npix: usize) {
    if c.bias.is_none() && c.act.is_none() {
        return;
    }
    out.par_chunks_mut(npix).enumerate().with_min_len(super::min_items(npix)).for_each(|(ch, row)| {
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
    col.par_chunks_mut(oh * ow).enumerate().with_min_len(super::min_items(oh * ow)).for_each(|(row, dst)| {
        let ci = row / (kh * kw);
        let ky = (row / kw) % kh;
        let kx = row % kw;
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        for oy in 0..oh {
            let iy = (oy * sh) as isize - pt + (ky * dh) as isize;
            fill_row(plane, w, h, iy, kx as isize * dw as isize - pl, sw, &mut dst[oy * ow..(oy + 1) * ow]);
        }
    });
}
