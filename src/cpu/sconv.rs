//! FP32 convolution on kestrel's own GEMM kernels ([`crate::cpu::sgemm`]), weights packed once.
//!
//! Per image and group: `out[Cout_g, OH·OW] = W[Cout_g, Cin_g·kh·kw] × col[Cin_g·kh·kw, OH·OW]`.
//! `col` never exists whole: each tile's B panel (`[kc][nv·LANES]`, a K block of a few output
//! pixels) is filled straight from the NCHW input (im2col of just those pixels; a plain copy
//! for 1×1 stride-1 unpadded convs), stays in L1 while every weight panel of the K block
//! streams past it, and the tile's epilogue (residual, bias, activation) runs on the
//! accumulators before the one store of the last K block.
//!
//! Small maps of a batch (see [`batch_columns`]) run as one GEMM per group whose columns run
//! across images; their tiles go through a buffer, gathered and scattered per image.
//!
//! Work: the `(image, group)` GEMMs, each split into column ranges (or, when it has too few
//! columns, into output-channel ranges) so that every worker gets a share; layers under
//! [`PAR_MIN_MACS`] run on the calling thread, without a rayon hand-off.

use rayon::prelude::*;

use super::conv::fill_row;
use super::sgemm::{Epilogue, Geometry, Init, Kernel, PackedA, Tile};
use crate::graph::Conv2d;

/// Layers with fewer multiply-adds than this run on the calling thread: below it, handing
/// work to a second worker costs about what it saves.
pub const PAR_MIN_MACS: usize = 1 << 19;

/// The conv's weights packed per group for `kernel`.
pub fn pack(kernel: Kernel, c: &Conv2d) -> Vec<PackedA> {
    let s = c.weight.shape();
    let (cout, kdim) = (s[0], s[1] * s[2] * s[3]);
    let cout_g = cout / c.groups.max(1);
    let mr = kernel.geometry().mr;
    let w = c.weight.data();
    (0..c.groups).map(|g| PackedA::new(&w[g * cout_g * kdim..(g + 1) * cout_g * kdim], cout_g, kdim, mr)).collect()
}

/// Bytes of weight panels one M block holds: they stay in L2 while each B panel of the
/// column block passes through L1 once per M block.
const A_BLOCK_BYTES: usize = 256 * 1024;

/// Whether a batch of `npix`-pixel maps runs as one GEMM per group, columns across images:
/// when one image's columns fill less than 85 % of their vectors (7² = 49 columns use 49 of
/// 64 lanes) or fewer vectors than one full tile. Otherwise each image is its own GEMM,
/// which needs no gather and scatter through a tile buffer.
pub fn batch_columns(geo: Geometry, npix: usize) -> bool {
    let vectors = npix.div_ceil(geo.lanes);
    vectors < geo.nv || npix * 100 < 85 * vectors * geo.lanes
}

/// Scratch elements [`conv2d`] needs with `threads` workers.
pub fn scratch_len(kernel: Kernel, threads: usize) -> usize {
    scratch_per_worker(kernel) * threads.max(1)
}

/// One packed B block, then one tile for outputs whose columns span images.
fn scratch_per_worker(kernel: Kernel) -> usize {
    let g = kernel.geometry();
    g.kc * g.nc + g.mr * g.nr()
}

/// A raw output pointer shared by tasks that write disjoint tiles.
#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: tasks holding an OutPtr write pairwise-disjoint element sets (distinct images,
// groups, channel ranges or column ranges), and the owning slice outlives the parallel scope.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// One task: output channels (in panels) and columns (in vectors) of one image and group, or
/// of one group over the whole batch when columns run across images.
#[derive(Clone, Copy, Debug)]
struct Part {
    image: usize,
    group: usize,
    panels: (usize, usize),
    vectors: (usize, usize),
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`,
/// with `packed` from [`pack`] for the same `kernel`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    kernel: Kernel,
    c: &Conv2d,
    packed: &[PackedA],
    x: &[f32],
    xs: [usize; 4],
    residual: Option<&[f32]>,
    out: &mut [f32],
    os: [usize; 4],
    scratch: &mut Vec<f32>,
    threads: usize,
) {
    let [n, cin, _, _] = xs;
    let [_, cout, oh, ow] = os;
    let groups = c.groups;
    let (cout_g, kdim) = (cout / groups, cin / groups * c.kernel()[0] * c.kernel()[1]);
    let npix = oh * ow;
    let geo = kernel.geometry();
    let (panels, vectors) = (cout_g.div_ceil(geo.mr), npix.div_ceil(geo.lanes));
    assert!(packed.len() == groups && packed.iter().all(|p| p.m == cout_g && p.k == kdim && p.mr == geo.mr), "sconv: weights not packed for this conv and kernel");
    assert!(out.len() >= n * cout * npix && residual.is_none_or(|r| r.len() >= out.len()), "sconv: output or residual too small");
    if n == 0 || cout_g == 0 || npix == 0 {
        return;
    }
    let macs = n * cout * npix * kdim;
    let workers = if threads <= 1 || macs < PAR_MIN_MACS { 1 } else { threads };
    let batched = n > 1 && batch_columns(geo, npix);
    let (gemms, vectors) = if batched { (groups, (n * npix).div_ceil(geo.lanes)) } else { (n * groups, vectors) };
    // Split each GEMM only as much as it takes to give every worker a share.
    let splits = workers.div_ceil(gemms);
    let parts: Vec<Part> = (0..gemms)
        .flat_map(|ig| {
            let (image, group) = (ig / groups, ig % groups);
            // Wide GEMMs split by columns; narrow ones (14², 7² maps) by output channels, so
            // that each worker reads only its share of the weights.
            let by_columns = vectors >= splits * 8 * geo.nv || panels < 2 * splits;
            (0..splits).filter_map(move |s| {
                let total = if by_columns { vectors } else { panels };
                let range = (s * total / splits, (s + 1) * total / splits);
                (range.0 < range.1).then_some(if by_columns {
                    Part { image, group, panels: (0, panels), vectors: range }
                } else {
                    Part { image, group, panels: range, vectors: (0, vectors) }
                })
            })
        })
        .collect();
    let per = scratch_per_worker(kernel);
    let need = per * workers;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let dst = OutPtr(out.as_mut_ptr());
    let run = |w: usize, panel: &mut [f32]| {
        let dst = dst;
        for part in parts.iter().skip(w).step_by(workers) {
            run_part(kernel, c, &packed[part.group], x, xs, residual, dst, os, *part, batched, panel);
        }
    };
    if workers == 1 {
        run(0, &mut scratch[..per]);
    } else {
        scratch[..need].par_chunks_mut(per).enumerate().for_each(|(w, panel)| run(w, panel));
    }
}

/// One part's tiles, the BLIS way: for each block of at most `NC` columns and each K block,
/// every B panel of the block is packed once (the block stays in L2); then, per M block of
/// weight panels (in L2), each B panel (in L1) runs against every weight panel of the block. When `batched`, the part's columns run across the
/// batch (column `j` is pixel `j % OH·OW` of image `j / OH·OW`), and each tile goes through a
/// buffer that is gathered from and scattered to the images' outputs.
#[allow(clippy::too_many_arguments)]
fn run_part(kernel: Kernel, c: &Conv2d, a: &PackedA, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, dst: OutPtr, os: [usize; 4], part: Part, batched: bool, scratch: &mut [f32]) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let geo = kernel.geometry();
    let npix = oh * ow;
    let ncols = if batched { n * npix } else { npix };
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let (act, post) = Epilogue::split(c.act);
    let bias = c.bias.as_ref().map(|b| &b[part.group * cout_g..(part.group + 1) * cout_g]);
    let kdim = a.k;
    let block_vectors = geo.nc / geo.lanes;
    // A 1×1 stride-1 unpadded conv of one image reads its input in place: row k of B is
    // input channel k. Others pack the block's panels.
    let pointwise = !batched && c.kernel() == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    let xg = |b: usize| &x[(b * cin + part.group * cin_g) * h * w..][..cin_g * h * w];
    // Output element of row `r` (of this group) and pixel `p` of image `b`.
    let out_at = |b: usize, r: usize, p: usize| ((b * cout + part.group * cout_g + r) * npix) + p;
    let (bblock, tile_buf) = scratch.split_at_mut(geo.kc * geo.nc);
    let mut vb = part.vectors.0;
    while vb < part.vectors.1 {
        let ve = (vb + block_vectors).min(part.vectors.1);
        // The block's panels: (first vector, vectors, real columns). The fewest panels that
        // cover the block, with their widths as even as they go (a 4-vector block runs as two
        // 2-vector tiles, not a full one and a 1-vector one that is mostly loads).
        let count = (ve - vb).div_ceil(geo.nv);
        let panels: Vec<(usize, usize, usize)> = (0..count)
            .map(|i| {
                let (v0, v1) = (vb + i * (ve - vb) / count, vb + (i + 1) * (ve - vb) / count);
                (v0, v1 - v0, ((v1 - v0) * geo.lanes).min(ncols - v0 * geo.lanes))
            })
            .collect();
        let mut k0 = 0;
        while k0 < kdim {
            let kc = geo.kc.min(kdim - k0);
            let last = k0 + kc == kdim;
            if !pointwise {
                let mut off = 0;
                for &(v0, nv, cols) in &panels {
                    let width = nv * geo.lanes;
                    let panel = &mut bblock[off..off + geo.panel_len(kc, nv)];
                    for (b, p0, len, dcol) in pieces(batched, part.image, npix, v0 * geo.lanes, cols) {
                        pack_panel(c, xg(b), [h, w], ow, k0, kc, p0, len, width, dcol, panel);
                    }
                    for row in panel.chunks_exact_mut(width) {
                        row[cols..].fill(0.0);
                    }
                    off += panel.len();
                }
            }
            // Each B panel (kc · NR floats) stays in L1 while the weight panels of an
            // M block (at most A_BLOCK_BYTES, in L2) stream past it.
            let mc = (A_BLOCK_BYTES / (kc * geo.mr * 4)).max(1);
            let mut m0 = part.panels.0;
            while m0 < part.panels.1 {
                let m1 = (m0 + mc).min(part.panels.1);
                let mut boff = 0;
                for &(v0, nv, cols) in &panels {
                        let width = nv * geo.lanes;
                        let (bp, ldb) = if pointwise { (xg(part.image)[k0 * npix + v0 * geo.lanes..].as_ptr(), npix) } else { (bblock[boff..].as_ptr(), width) };
                        boff += geo.panel_len(kc, nv);
                    for p in m0..m1 {
                        let rows = geo.mr.min(cout_g - p * geo.mr);
                        let ap = a.panel_from(p, k0).as_ptr();
                        let epi = Epilogue { bias: bias.map(|b| &b[p * geo.mr..p * geo.mr + rows]), act };
                        if batched {
                            // Through the tile buffer: gather the running sums (or the residual),
                            // run, scatter.
                            let buf = &mut tile_buf[..geo.mr * width];
                            let src: Option<*const f32> = match (k0, residual) {
                                (0, Some(r)) => Some(r.as_ptr()),
                                (0, None) => None,
                                _ => Some(dst.0 as *const f32),
                            };
                            if let Some(src) = src {
                                for (b, p0, len, dcol) in pieces(true, 0, npix, v0 * geo.lanes, cols) {
                                    for r in 0..rows {
                                        // SAFETY: out_at(b, p·MR + r, p0..p0 + len) lies inside the
                                        // output (and residual, of the same shape), checked by
                                        // `conv2d`; this part alone writes those elements.
                                        let from = unsafe { std::slice::from_raw_parts(src.add(out_at(b, p * geo.mr + r, p0)), len) };
                                        buf[r * width + dcol..r * width + dcol + len].copy_from_slice(from);
                                    }
                                }
                            }
                            let init = if src.is_some() { Init::Output } else { Init::Zero };
                            let t = Tile { kc, rows, cols, nv, ldb, ldc: width };
                            // SAFETY: the weight panel holds kc · MR floats from k0 on; the B panel
                            // kc · width; `buf` holds MR rows of `width`; the bias slice `rows`.
                            unsafe { kernel.tile(ap, bp, buf.as_mut_ptr(), t, init, last.then_some(&epi)) };
                            if last && post {
                                if let Some(f) = c.act {
                                    for r in 0..rows {
                                        buf[r * width..r * width + cols].iter_mut().for_each(|v| *v = f.apply(*v));
                                    }
                                }
                            }
                            for (b, p0, len, dcol) in pieces(true, 0, npix, v0 * geo.lanes, cols) {
                                for r in 0..rows {
                                    // SAFETY: as for the gather above.
                                    let to = unsafe { std::slice::from_raw_parts_mut(dst.0.add(out_at(b, p * geo.mr + r, p0)), len) };
                                    to.copy_from_slice(&buf[r * width + dcol..r * width + dcol + len]);
                                }
                            }
                            continue;
                        }
                        let o = out_at(part.image, p * geo.mr, v0 * geo.lanes);
                        let init = match (k0, residual) {
                            (0, Some(r)) => Init::Residual(r[o..].as_ptr()),
                            (0, None) => Init::Zero,
                            _ => Init::Output,
                        };
                        let t = Tile { kc, rows, cols, nv, ldb, ldc: npix };
                        // SAFETY: the packed weight panel holds K · MR floats from k0 on (kc of them
                        // read); B (the panel at `boff`, kc · nv · LANES floats, or the input in
                        // place: rows k0..k0 + kc of `cols` floats at stride npix) is in bounds;
                        // rows < `rows` and columns < `cols` of the tile lie inside this image and
                        // group's output (and residual), which `conv2d` checked against the
                        // shapes; no other part writes them (parts are disjoint in image, group,
                        // channel panels or columns) and nothing else borrows `out` meanwhile; the
                        // bias slice holds `rows` values.
                        unsafe { kernel.tile(ap, bp, dst.0.add(o), t, init, last.then_some(&epi)) };
                        if last && post {
                            if let Some(f) = c.act {
                                for r in 0..rows {
                                    // SAFETY: as above, row r of the tile this part just wrote.
                                    let row = unsafe { std::slice::from_raw_parts_mut(dst.0.add(o + r * npix), cols) };
                                    row.iter_mut().for_each(|v| *v = f.apply(*v));
                                }
                            }
                        }
                    }
                }
                m0 = m1;
            }
            k0 += kc;
        }
        vb = ve;
    }
}

/// The runs of columns `col0..col0 + cols` within images: `(image, first pixel, length,
/// offset in the tile)`. Unbatched columns all belong to `image`.
fn pieces(batched: bool, image: usize, npix: usize, col0: usize, cols: usize) -> impl Iterator<Item = (usize, usize, usize, usize)> {
    let mut j = 0;
    std::iter::from_fn(move || {
        if j >= cols {
            return None;
        }
        let g = col0 + j;
        let (b, p) = if batched { (g / npix, g % npix) } else { (image, g) };
        let len = (npix - p).min(cols - j);
        let item = (b, p, len, j);
        j += len;
        Some(item)
    })
}

/// Fills columns `dcol..dcol + cols` of one B panel, `dst: [kc][width]`, with rows
/// `k0..k0 + kc` of `col` for output pixels `col0..col0 + cols`, reading the group's input
/// `x: [Cin_g, H, W]` of one image.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_panel(c: &Conv2d, x: &[f32], [h, w]: [usize; 2], ow: usize, k0: usize, kc: usize, col0: usize, cols: usize, width: usize, dcol: usize, dst: &mut [f32]) {
    let [kh, kw] = c.kernel();
    let [sh, sw] = c.stride;
    let [dh, dw] = c.dilation;
    let (pt, pl) = (c.pads[0] as isize, c.pads[1] as isize);
    let pointwise = kh == 1 && kw == 1 && c.stride == [1, 1] && c.pads == [0; 4];
    for (kk, drow) in dst.chunks_exact_mut(width).take(kc).enumerate() {
        let drow = &mut drow[dcol..dcol + cols];
        let k = k0 + kk;
        let ci = k / (kh * kw);
        let plane = &x[ci * h * w..(ci + 1) * h * w];
        if pointwise {
            drow.copy_from_slice(&plane[col0..col0 + cols]);
        } else {
            let (ky, kx) = ((k / kw) % kh, k % kw);
            let mut j = 0;
            while j < cols {
                let p = col0 + j;
                let (oy, ox) = (p / ow, p % ow);
                let len = (ow - ox).min(cols - j);
                let iy = (oy * sh) as isize - pt + (ky * dh) as isize;
                let x0 = (ox * sw) as isize + (kx * dw) as isize - pl;
                fill_row(plane, w, h, iy, x0, sw, &mut drow[j..j + len]);
                j += len;
            }
        }
    }
}
