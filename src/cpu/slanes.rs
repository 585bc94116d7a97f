//! FP32 direct convolution of small maps (one image's or a batch's) with the output channels
//! in the vector lanes.
//!
//! On maps of 16 × 16 pixels and less, the GEMM paths of [`crate::cpu::sconv`] spend much of
//! their time arranging B: the batched im2col gathers every B panel before its tile runs, and
//! per-image GEMMs of 8 × 8 maps are 64 columns and 16 rows each. Here nothing is arranged. The
//! input is read in place, or, when the conv pads, copied once into zero-padded planes
//! `[N·Cin][H + pads][W + pads]`; each tile
//! ([`crate::cpu::sgemm::lanes`]) holds `rows × cols` output pixels (`cols` neighbours in an
//! output row, `rows` output rows of any images, 16 pixels at most) by 16 output channels: per
//! k it loads one weight vector (`[Cout/16][K][16]`, packed when the plan prepares the conv for
//! its input size) and broadcasts each pixel's input, read in place at
//! `row + koff[k] + col · stride`. An output row is cut into pieces of 16, 8, 4, 2 and 1 pixels.
//!
//! Each output is `acc = residual or 0; for (ci, ky, kx) in order: acc = fma(w, x, acc)`, then
//! `acc + bias` and the activation: [`crate::cpu::reference::conv2d_fma_ref`]'s operations, plus
//! the products of padding (`w · 0`, as the GEMM tiles of `sconv` do), so the values are the
//! same up to the sign of an exactly-zero sum. The AVX-512 and AVX2 tiles and their scalar twin
//! agree bit for bit.
//!
//! Work: the tiles (group, piece of a row, rows) split evenly over the workers; convs under
//! [`PAR_MIN_MACS`] run on the calling thread.

use super::aligned::Aligned;
use super::parallel::{par_for, OutPtr};
use super::sconv::{phase_input, LINE_F32, PAR_MIN_MACS};
use super::sgemm::lanes::{LanesTile, LANES, MAX_ROWS};
use super::sgemm::{Epilogue, Kernel};
use crate::graph::Conv2d;

/// Pixels per output row of a tile at most.
const MAX_COLS: usize = 16;

/// Packed weight bytes up to which each tile runs all its channel slices in turn (its inputs
/// then stay in L1 across them) rather than each slice running all the tiles.
const TILE_FIRST_BYTES: usize = 128 * 1024;

/// A conv prepared for one input and output size: weights packed by slices of 16 output
/// channels, the padded-plane geometry and the K offsets.
#[derive(Clone, Debug)]
pub struct LanesConv {
    /// Per group: `[slices][kdim][16]`, channels past the group's output channels 0.
    /// On a cache line: a K step's 16 weights are one 64-byte load (`cpu::aligned`).
    pub weights: Vec<Aligned<f32>>,
    /// Per group: `slices · 16` biases (0 past the output channels), or empty.
    pub bias: Vec<Vec<f32>>,
    /// Slices of 16 output channels per group.
    pub slices: usize,
    pub kdim: usize,
    /// Per k (`(ci, ky, kx)` order), the offset of its input from the output pixel's window
    /// corner in the padded plane of the group's first input channel.
    pub koff: Vec<usize>,
    /// Strides and padded-plane size `[sy, sx, hp, wp]`.
    pub planes: [usize; 4],
    /// The input and output sizes it was prepared for.
    pub xs: [usize; 4],
    pub os: [usize; 4],
    /// The tiles (group, row piece, rows), found once for these sizes.
    tasks: Vec<Task>,
    /// Run by [`crate::cpu::schan`] (small maps, long K, in K chunks) instead of this module's
    /// tiles: [`crate::cpu::schan::prepare`] sets it.
    pub chunked: bool,
}

impl LanesConv {
    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        4 * (self.weights.iter().map(|w| w.len()).sum::<usize>() + self.bias.iter().map(Vec::len).sum::<usize>())
    }
}

/// Whether the plan runs conv `c` with input `xs` and output `os` here, on `kernel` (one that
/// runs the lanes tile in vectors): at least 8 output channels per group (fewer would leave
/// most lanes empty), a column stride of 1 or 2, a K of at most [`MAX_K`], and
/// - on AVX-512, output maps of at most 8 × 8, or of at most 16 × 16 with at most 16 output
///   channels per group (a ResNet stem on 32² inputs ran 0.84–0.93 of the GEMM path's time at
///   batch 64; 32 channels at 16² 0.96–1.09). One image too: Zen 4, one thread, the two
///   alternating, shapes-resnet18's 16-channel 8² convs took 0.69–0.72 of the GEMM path's
///   time and its 32-channel 4² convs and stride-2 downsamples 0.36–0.44 (the model 0.77 at
///   one thread and at two), ResNet-18's 3×3 stride-2 conv onto 7² (K = 2 304) made the
///   model 0.976 (ResNet-34 0.991); models without such maps unchanged;
/// - on AVX2, where the GEMM tile is 6 rows and the 6 × 16 path pays more per small GEMM,
///   output maps of at most 8 × 8, or of at most 16 × 16 with at most 32 output channels per
///   group, and with a single image at most 64 output channels per group (Zen 3, 2 threads,
///   the two alternating: blobs-unet's 16–64-channel convs on 16² maps 0.77–0.87 of the GEMM
///   path's time at batch 16, 0.77–0.84 at batch 1, its 8² ones 0.80–0.85; 64 channels at
///   16² 0.93–1.03; 16 channels on 32² maps 0.84–1.34, so not those);
/// - for a 1 × 1 kernel, output maps of 1 × 1 (whose channel vectors need no transposes: 128
///   channels at batch 64 ran 0.37–0.51 of the GEMM path's time), or a K of at most
///   [`MAX_K_1X1`] (shapes-resnet18's stride-2 downsamples of 16–64 channels 0.45–0.63; ResNet
///   downsamples of 128–1024 channels at 14² and 7² 1.3–1.6×, and a 1 × 1 stride-1 conv
///   elsewhere is a GEMM reading its input rows in place).
pub fn pays(kernel: Kernel, c: &Conv2d, xs: [usize; 4], os: [usize; 4]) -> bool {
    let g = c.groups.max(1);
    let (cout_g, npix) = (os[1] / g, os[2] * os[3]);
    let kdim = xs[1] / g * c.kernel()[0] * c.kernel()[1];
    let one_by_one = c.kernel() == [1, 1];
    let pointwise = one_by_one && c.stride == [1, 1] && c.pads == [0; 4];
    let wide = kernel.geometry().lanes > 8;
    let small_maps = os[2] <= MAX_SIDE
        && os[3] <= MAX_SIDE
        && if wide { npix <= 64 || cout_g <= LANES } else { (xs[0] > 1 || cout_g <= 64) && (npix <= 64 || cout_g <= 2 * LANES) };
    kernel.runs_lanes()
        && cout_g >= 8
        && !super::sconv::is_narrow(os)
        && small_maps
        && kdim <= MAX_K
        && (!one_by_one || npix == 1 || (kdim <= MAX_K_1X1 && !pointwise))
        && (1..=2).contains(&c.stride[1])
}

/// Output rows and columns up to which a conv runs here (see [`pays`]); `cpu::spos` takes
/// smaller maps still.
pub const MAX_SIDE: usize = 16;

/// K up to which a slice's weights (`K · 64` bytes) stay in L2 across a worker's tiles:
/// ResNet-18's 3×3 stride-2 conv of 256 channels (K = 2304) at 14² → 7², batch 8, ran 0.83 of
/// the time of the GEMM path; ResNet-50's of 512 channels (K = 4608) no faster.
pub const MAX_K: usize = 2304;

/// K up to which a 1 × 1 conv on maps larger than 1 × 1 runs here (see [`pays`]).
pub const MAX_K_1X1: usize = 64;

/// Packs conv `c` for input `xs` and output `os`. `None` when the shapes do not match the
/// conv's weights.
pub fn prepare(c: &Conv2d, xs: [usize; 4], os: [usize; 4]) -> Option<LanesConv> {
    let [_, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups.max(1);
    let [kh, kw] = c.kernel();
    let [sy, sx] = c.stride;
    let [dy, dx] = c.dilation;
    if cin % g != 0 || cout % g != 0 || ow == 0 || oh == 0 || sy == 0 || sx == 0 {
        return None;
    }
    let (cin_g, cout_g) = (cin / g, cout / g);
    let kdim = cin_g * kh * kw;
    let data = c.weight.data();
    if data.len() != cout * kdim || c.bias.as_ref().is_some_and(|b| b.len() != cout) {
        return None;
    }
    let (hp, wp) = (h + c.pads[0] + c.pads[2], w + c.pads[1] + c.pads[3]);
    let slices = cout_g.div_ceil(LANES);
    let weights = (0..g)
        .map(|gi| {
            let mut p = Aligned::<f32>::zeroed(slices * kdim * LANES);
            for co in 0..cout_g {
                let (s, l) = (co / LANES, co % LANES);
                for (k, &v) in data[(gi * cout_g + co) * kdim..][..kdim].iter().enumerate() {
                    p[(s * kdim + k) * LANES + l] = v;
                }
            }
            p
        })
        .collect();
    let bias = (0..g)
        .map(|gi| {
            c.bias.as_ref().map_or_else(Vec::new, |b| {
                let mut p = vec![0.0; slices * LANES];
                p[..cout_g].copy_from_slice(&b[gi * cout_g..(gi + 1) * cout_g]);
                p
            })
        })
        .collect();
    let mut koff = Vec::with_capacity(kdim);
    for ci in 0..cin_g {
        for ky in 0..kh {
            for kx in 0..kw {
                koff.push((ci * hp + ky * dy) * wp + kx * dx);
            }
        }
    }
    let mut tasks = Vec::new();
    for group in 0..g {
        for (x0, cols) in pieces(ow) {
            let rows = rows_for(cols);
            tasks.extend((0..xs[0] * oh).step_by(rows).map(|q0| Task { group, x0, cols, rows, q0 }));
        }
    }
    Some(LanesConv { weights, bias, slices, kdim, koff, planes: [sy, sx, hp, wp], xs, os, tasks, chunked: false })
}

/// Scratch elements [`conv2d`] needs: the padded planes (none without padding), and a cache
/// line to align them.
pub fn scratch_len(lc: &LanesConv) -> usize {
    let [_, _, hp, wp] = lc.planes;
    if [hp, wp] == [lc.xs[2], lc.xs[3]] {
        return 0;
    }
    LINE_F32 + lc.xs[0] * lc.xs[1] * hp * wp
}

/// The pieces `(first column, columns)` an output row of `ow` pixels is cut into: 16, 8, 4, 2
/// and 1 pixels, largest first.
fn pieces(ow: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut x0 = 0;
    while x0 < ow {
        let cols = MAX_COLS.min(1 << (ow - x0).ilog2());
        out.push((x0, cols));
        x0 += cols;
    }
    out
}

/// Rows of a tile of `cols` pixels per row: 16 pixels (8 of single pixels).
fn rows_for(cols: usize) -> usize {
    (MAX_COLS / cols).clamp(1, MAX_ROWS)
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH,
/// OW]`, with `lc` from [`prepare`] for these sizes.
///
/// # Panics
/// When `lc` was prepared for other sizes or slices are shorter than the shapes.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(kernel: Kernel, c: &Conv2d, lc: &LanesConv, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    conv2d_from(kernel, c, lc, x, xs, residual.map(Some), out, os, scratch, threads);
}

/// [`conv2d`] whose residual is what `out` holds on entry (the executor's in-place residual):
/// each tile reads its outputs' residuals before it writes them, so the values are the same.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_onto(kernel: Kernel, c: &Conv2d, lc: &LanesConv, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    conv2d_from(kernel, c, lc, x, xs, Some(None), out, os, scratch, threads);
}

/// One tile's place: group, first column and columns of its row piece, rows, first row
/// (`image · OH + oy` over the batch).
#[derive(Clone, Copy, Debug)]
struct Task {
    group: usize,
    x0: usize,
    cols: usize,
    rows: usize,
    q0: usize,
}

#[allow(clippy::too_many_arguments)]
fn conv2d_from(kernel: Kernel, c: &Conv2d, lc: &LanesConv, x: &[f32], xs: [usize; 4], residual: Option<Option<&[f32]>>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    assert!(xs == lc.xs && os == lc.os, "slanes: prepared for input {:?} and output {:?}, called with {xs:?} and {os:?}", lc.xs, lc.os);
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups.max(1);
    let (cin_g, cout_g) = (cin / g, cout / g);
    let npix = oh * ow;
    assert!(x.len() >= n * cin * h * w && out.len() >= n * cout * npix && residual.flatten().is_none_or(|r| r.len() >= n * cout * npix), "slanes: input, output or residual too small");
    let [sy, sx, hp, wp] = lc.planes;
    let image = hp * wp;
    let kdim = lc.kdim;
    assert!(lc.koff.len() == kdim && lc.weights.len() == g && lc.weights.iter().all(|p| p.len() == lc.slices * kdim * LANES), "slanes: weights not packed for this conv");
    if n == 0 || cout_g == 0 || npix == 0 {
        return;
    }
    let tasks = &lc.tasks;
    let macs = n * cout * npix * kdim;
    let workers = if threads <= 1 || macs < PAR_MIN_MACS { 1 } else { threads.min(tasks.len()) };
    let padded_len = n * cin * image;
    // Without padding the input is read in place; else copied once into zero-padded planes
    // (one phase of stride 1).
    let padded: &[f32] = if c.pads == [0; 4] {
        &x[..padded_len]
    } else {
        if scratch.len() < LINE_F32 + padded_len {
            scratch.resize(LINE_F32 + padded_len, 0.0);
        }
        let first = scratch.as_ptr().align_offset(LINE_F32 * 4).min(LINE_F32);
        let padded = &mut scratch[first..first + padded_len];
        phase_input(kernel, c, &x[..n * cin * h * w], [h, w], [1, 1], [hp, wp], padded, workers, false);
        padded
    };
    let (act, post) = Epilogue::split(c.act);
    let dst = OutPtr(out.as_mut_ptr());
    // The residual's elements: its own buffer's (only read), or the output's.
    let res = residual.map(|r| OutPtr(r.map_or(dst.0, |r| r.as_ptr().cast_mut())));
    if lc.chunked {
        // SAFETY: the padded planes hold every tap of every output pixel (built above for
        // these sizes, or the unpadded input); `out` and the residual hold the output's
        // elements (asserted above) and outlive the call.
        unsafe { super::schan::run(kernel, lc, padded, act, res, dst, threads) };
        if let (true, Some(f)) = (post, c.act) {
            out[..n * cout * npix].iter_mut().for_each(|y| *y = f.apply(*y));
        }
        return;
    }
    // One slice of 16 output channels of one tile.
    let run = |t: &Task, s: usize| {
        let dst = &dst;
        let live_rows = t.rows.min(n * oh - t.q0);
        // Row `r` of the tile; rows past the batch repeat its last row (computed, never
        // stored).
        let place = |r: usize| {
            let q = t.q0 + r.min(t.rows - 1).min(live_rows - 1);
            (q / oh, q % oh)
        };
        let row: [*const f32; MAX_ROWS] = std::array::from_fn(|r| {
            let (b, oy) = place(r);
            padded[(b * cin + t.group * cin_g) * image + oy * sy * wp + t.x0 * sx..].as_ptr()
        });
        // Per row, its output (and residual) element of the group's channel 0, pixel 0 of the
        // piece.
        let base: [usize; MAX_ROWS] = std::array::from_fn(|r| {
            let (b, oy) = place(r);
            ((b * cout + t.group * cout_g) * oh + oy) * ow + t.x0
        });
        {
            let co0 = s * LANES;
            let at: [usize; MAX_ROWS] = std::array::from_fn(|r| base[r] + co0 * npix);
            let tile = LanesTile {
                cols: t.cols,
                rows: t.rows,
                live_rows,
                live_lanes: LANES.min(cout_g - co0),
                kdim,
                koff: lc.koff.as_ptr(),
                row,
                step: sx,
                w: lc.weights[t.group][s * kdim * LANES..].as_ptr(),
                bias: lc.bias[t.group].get(co0..co0 + LANES).map_or(std::ptr::null(), <[f32]>::as_ptr),
                act,
                out: std::array::from_fn(|r| dst.0.wrapping_add(at[r])),
                cs: npix,
                res: std::array::from_fn(|r| res.as_ref().map_or(std::ptr::null(), |p| p.0.wrapping_add(at[r]).cast_const())),
            };
            debug_assert!(tile.valid());
            // SAFETY: the shape is one `rows_for` and `pieces` choose (valid); every
            // `row[r] + koff[k] + c · sx` lies in the padded planes of its image and group
            // (c < cols stays inside the output row, and the padded planes hold every tap of
            // every output pixel); the slice's weights and biases are `kdim · 16` and 16
            // floats; the live rows' channels `co0 + l` (l < live_lanes), pixels
            // `x0..x0 + cols`, are elements of the output (and of a residual of its size,
            // asserted above) that only this task reads and writes, the residual before the
            // output; `out` outlives the parallel scope.
            unsafe { kernel.lanes_tile(&tile) };
            if let (true, Some(f)) = (post, c.act) {
                for l in 0..tile.live_lanes {
                    for &a in &at[..live_rows] {
                        for i in 0..t.cols {
                            // SAFETY: as above: an element this task has just written.
                            unsafe {
                                let y = dst.0.add(a + l * npix + i);
                                *y = f.apply(*y);
                            }
                        }
                    }
                }
            }
        }
    };
    // Small weights: tile by tile, every slice, so each tile's inputs are read from L1 by all
    // of them. Else slice by slice over each worker's tiles, so that a slice's weights stay in
    // cache across the tiles.
    let tile_first = lc.slices * kdim * LANES * 4 <= TILE_FIRST_BYTES;
    let part = |wi: usize| {
        let mine = &tasks[wi * tasks.len() / workers..(wi + 1) * tasks.len() / workers];
        if tile_first {
            mine.iter().for_each(|t| (0..lc.slices).for_each(|s| run(t, s)));
        } else {
            (0..lc.slices).for_each(|s| mine.iter().for_each(|t| run(t, s)));
        }
    };
    if workers == 1 {
        part(0);
    } else {
        par_for(workers, part);
    }
}
