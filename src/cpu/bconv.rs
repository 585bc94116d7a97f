//! BF16 convolution (`--precision bf16`) on [`crate::cpu::bgemm`]: any kernel, stride, pad,
//! dilation and group count, weights packed once per group.
//!
//! Per image and group: `out[Cout_g, OH·OW] = W[Cout_g, Cin_g·kh·kw] × col[Cin_g·kh·kw, OH·OW]`,
//! where `col` is never built whole: each task (an image, a group, a block of up to `NC`
//! output pixels and a range of output-channel panels) packs one K block of it at a time,
//! `KC2` pairs of im2col rows rounded to bf16, and runs every weight panel of its range
//! against it. A residual starts the accumulators; bias and the fusable activations run in
//! the last K block's epilogue, any other activation on the stored values after it.

use rayon::prelude::*;

use super::bgemm::{Epi, Kernel, PackedBf16, KC2, MR, NC, NR};
use super::parallel::OutPtr;
use super::sgemm::{Epilogue, Init};
use crate::graph::Conv2d;

/// The conv's weights per group, `[Cout_g][Cin_g·kh·kw]` each.
pub fn pack(c: &Conv2d) -> Vec<PackedBf16> {
    let cout = c.out_channels();
    let cout_g = cout / c.groups.max(1);
    let k = c.weight.numel() / cout.max(1);
    let w = c.weight.data();
    (0..c.groups).map(|g| PackedBf16::new(&w[g * cout_g * k..(g + 1) * cout_g * k], cout_g, k)).collect()
}

/// Bytes of B blocks the conv allocates per worker (counted by the planner).
pub fn block_bytes(threads: usize) -> usize {
    4 * KC2 * NC * threads.max(1)
}


/// One task: image, group, first pixel and pixel count, weight panels `p0..p1`.
#[derive(Clone, Copy, Debug)]
struct Task {
    b: usize,
    g: usize,
    px0: usize,
    npx: usize,
    p0: usize,
    p1: usize,
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`
/// (`residual` of the output's shape), with `packed` from [`pack`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d(kernel: Kernel, c: &Conv2d, packed: &[PackedBf16], x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4], threads: usize) {
    conv2d_from(kernel, c, packed, x, xs, residual.map(Some), out, os, threads);
}

/// [`conv2d`] whose residual is what `out` holds on entry (the executor's in-place residual,
/// as [`crate::cpu::sconv::conv2d_onto`]): each tile starts from its own elements, so the
/// values are [`conv2d`]'s bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_onto(kernel: Kernel, c: &Conv2d, packed: &[PackedBf16], x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4], threads: usize) {
    conv2d_from(kernel, c, packed, x, xs, Some(None), out, os, threads);
}

/// [`conv2d`] with `residual` `Some(Some(r))` from `r`, `Some(None)` from what `out` holds.
#[allow(clippy::too_many_arguments)]
fn conv2d_from(kernel: Kernel, c: &Conv2d, packed: &[PackedBf16], x: &[f32], xs: [usize; 4], residual: Option<Option<&[f32]>>, out: &mut [f32], os: [usize; 4], threads: usize) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let npix = oh * ow;
    let groups = c.groups.max(1);
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    assert!(x.len() >= n * cin * h * w && out.len() >= n * cout * npix && residual.flatten().is_none_or(|r| r.len() >= n * cout * npix), "bconv: input, output or residual too small");
    let panels = cout_g.div_ceil(MR);
    let mut tasks = Vec::new();
    for b in 0..n {
        for g in 0..groups {
            for px0 in (0..npix).step_by(NC) {
                tasks.push(Task { b, g, px0, npx: NC.min(npix - px0), p0: 0, p1: panels });
            }
        }
    }
    // Too few pixel blocks for the workers: split the output channels too.
    let want = 2 * threads.max(1);
    if tasks.len() < want && panels > 1 {
        let split = want.div_ceil(tasks.len()).min(panels);
        tasks = tasks.into_iter().flat_map(|t| (0..split).map(move |s| Task { p0: s * panels / split, p1: (s + 1) * panels / split, ..t })).filter(|t| t.p0 < t.p1).collect();
    }
    let dst = OutPtr(out.as_mut_ptr());
    let run = |block: &mut Vec<u32>, t: &Task| {
        // SAFETY: every task writes rows p0·MR..p1·MR (below cout_g) of its group's channels,
        // columns px0..px0 + npx, of image b: tasks are disjoint, and all lie inside `out`
        // (checked above); `run_task` reads the residual at the same elements.
        unsafe { run_task(kernel, c, &packed[t.g], x, [cin_g, h, w], [cin, cout, oh, ow], residual, dst, *t, block) };
    };
    if threads > 1 && tasks.len() > 1 {
        tasks.par_iter().for_each_init(Vec::new, run);
    } else {
        let mut block = Vec::new();
        tasks.iter().for_each(|t| run(&mut block, t));
    }
}

/// One task's tiles (see the module docs).
///
/// # Safety
/// `dst` is the output of `conv2d`'s shapes, and no other thread touches the task's tile
/// elements meanwhile.
#[allow(clippy::too_many_arguments)]
unsafe fn run_task(kernel: Kernel, c: &Conv2d, a: &PackedBf16, x: &[f32], [cin_g, h, w]: [usize; 3], [cin, cout, oh, ow]: [usize; 4], residual: Option<Option<&[f32]>>, dst: OutPtr<f32>, t: Task, block: &mut Vec<u32>) {
    let [kh, kw] = c.kernel();
    let npix = oh * ow;
    let cout_g = a.m;
    let (kdim, k2) = (a.k, a.k2());
    let xg = &x[(t.b * cin + t.g * cin_g) * h * w..][..cin_g * h * w];
    let (act, post) = Epilogue::split(c.act);
    let bias = c.bias.as_ref().map(|b| &b[t.g * cout_g..(t.g + 1) * cout_g]);
    let npanels = t.npx.div_ceil(NR);
    // Im2col row k (channel, tap) over output pixels px0..px0 + npx, into `dst` (0 in the padding).
    let im2col_row = |k: usize, dst: &mut [f32]| {
        let (ci, tap) = (k / (kh * kw), k % (kh * kw));
        let (ky, kx) = (tap / kw, tap % kw);
        let plane = &xg[ci * h * w..(ci + 1) * h * w];
        let (sx, x0) = (c.stride[1], kx * c.dilation[1]);
        let mut p = t.px0;
        let mut j = 0;
        while j < dst.len() {
            let (oy, ox0) = (p / ow, p % ow);
            let run = (ow - ox0).min(dst.len() - j);
            let seg = &mut dst[j..j + run];
            match (oy * c.stride[0] + ky * c.dilation[0]).checked_sub(c.pads[0]).filter(|&iy| iy < h) {
                None => seg.fill(0.0),
                Some(iy) => {
                    let row = &plane[iy * w..(iy + 1) * w];
                    // ix = start + i·sx: inside the row for i in i_lo..i_hi, zeros around it.
                    let start = (ox0 * sx + x0) as isize - c.pads[1] as isize;
                    let (sxi, runi) = (sx as isize, run as isize);
                    let i_lo = if start >= 0 { 0 } else { ((-start + sxi - 1) / sxi).min(runi) };
                    let i_hi = if start >= w as isize { i_lo } else { ((w as isize - 1 - start) / sxi + 1).clamp(i_lo, runi) };
                    let (i_lo, i_hi) = (i_lo as usize, i_hi as usize);
                    seg[..i_lo].fill(0.0);
                    if i_hi > i_lo {
                        let from = (start + (i_lo * sx) as isize) as usize;
                        if sx == 1 {
                            seg[i_lo..i_hi].copy_from_slice(&row[from..from + (i_hi - i_lo)]);
                        } else {
                            for (v, &x) in seg[i_lo..i_hi].iter_mut().zip(row[from..].iter().step_by(sx)) {
                                *v = x;
                            }
                        }
                    }
                    seg[i_hi..].fill(0.0);
                }
            }
            j += run;
            p += run;
        }
    };
    let (mut lo_row, mut hi_row) = (vec![0.0f32; t.npx], vec![0.0f32; t.npx]);
    let row0 = t.b * cout + t.g * cout_g;
    let mut kk0 = 0;
    while kk0 < k2 {
        let kc2 = KC2.min(k2 - kk0);
        let last = kk0 + kc2 == k2;
        // Pack the block: panel q holds pairs kk0..kk0 + kc2 of columns q·NR.. (zero past npx).
        block.clear();
        block.resize(npanels * kc2 * NR, 0);
        for kk in 0..kc2 {
            let (k_lo, k_hi) = (2 * (kk0 + kk), 2 * (kk0 + kk) + 1);
            im2col_row(k_lo, &mut lo_row);
            if k_hi < kdim {
                im2col_row(k_hi, &mut hi_row);
            } else {
                hi_row.fill(0.0);
            }
            for q in 0..npanels {
                let cols = NR.min(t.npx - q * NR);
                let dst = &mut block[(q * kc2 + kk) * NR..(q * kc2 + kk) * NR + cols];
                kernel.pack_pairs(&lo_row[q * NR..], &hi_row[q * NR..], dst);
            }
        }
        for p in t.p0..t.p1 {
            let rows = MR.min(cout_g - p * MR);
            let ap = a.panel_from(p, kk0).as_ptr();
            let epi = Epi { bias: bias.map(|b| &b[p * MR..p * MR + rows]), act };
            for q in 0..npanels {
                let cols = NR.min(t.npx - q * NR);
                let o = (row0 + p * MR) * npix + t.px0 + q * NR;
                let init = match (kk0, residual) {
                    (0, Some(Some(r))) => Init::Residual(r[o..].as_ptr()),
                    (0, None) => Init::Zero,
                    _ => Init::Output,
                };
                // SAFETY: the A panel holds k2 − kk0 ≥ kc2 pairs of MR rows from kk0, the B
                // panel kc2 · NR pairs; rows < `rows` and columns < `cols` of the tile at `o`
                // (stride npix) are this task's elements of `out` and of the residual (same
                // shape), which the caller lets this task alone write.
                unsafe { kernel.tile(ap, block[q * kc2 * NR..].as_ptr(), kc2, dst.0.add(o), npix, rows, cols, init, last.then_some(&epi)) };
                if last && post {
                    if let Some(f) = c.act {
                        for r in 0..rows {
                            // SAFETY: as above, row r of the tile just written.
                            let row = unsafe { std::slice::from_raw_parts_mut(dst.0.add(o + r * npix), cols) };
                            row.iter_mut().for_each(|v| *v = f.apply(*v));
                        }
                    }
                }
            }
        }
        kk0 += kc2;
    }
}
