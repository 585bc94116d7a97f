//! INT8 convolution and fully connected layers over NCHW f32 tensors.
//!
//! Per call: the input is quantized once to u8 (`[N, Cin, H, W]`, static or dynamic
//! parameters; or it arrives as u8 codes from the previous INT8 conv). Convs other than 1×1
//! stride 1 first rearrange it into zero-point-padded stride-phase planes (`Phases`), where
//! each im2col row is one contiguous run, so no im2col is materialised. Output pixels are split
//! into tasks of whole [`BLOCK`]s (or, on small images with many channels, output channels are
//! split instead); each worker interleaves its panel straight from the runs (1×1: from the u8
//! planes), runs the selected qgemm kernel `ROWS_PER_CALL` channels at a time into an i32
//! tile, and applies the epilogue `y = (acc − za·Σw[c])·sa·sw[c] + bias[c] (+ residual)`, then
//! the activation, writing f32, or u8 codes for the next INT8 conv (`cpu::epilogue`).
//! A residual arrives as f32 or as an INT8 producer's u8 codes ([`Residual`]), which each
//! worker dequantizes one channel row at a time into `QScratch::res`.

use rayon::prelude::*;

use crate::cpu::detect;
use crate::cpu::epilogue::{dequant_row, dequant_segs, requant_segs, Seg};
use crate::cpu::qgemm::{self, panel_len, PackedWeights, BLOCK, MR};
use crate::cpu::simd::gather_stride2;
use crate::graph::{ActQuant, QConv2d, QConvTranspose2d, QLinear};
use crate::cpu::codec::{dequantize_slice, min_max, quantize_slice, Lanes};
use crate::qparams::QParams;

/// Target panel size in bytes: a worker's panel and i32 tile stay within a 1 MB L2. Fewer,
/// larger tasks also mean fewer passes over the weights per worker; on the reference Zen 4
/// this took ResNet-50's 14² 3×3 convs from 0.47 to 0.39 ms (2 threads) against 192 KB.
const PANEL_TARGET: usize = 512 * 1024;
/// The same for ConvTranspose, whose i32 tile holds all `Cout·kh·kw` rows at once.
const CONVT_PANEL_TARGET: usize = 192 * 1024;
/// Output channels per kernel call: the epilogue reads their i32 tile (at most
/// `ROWS_PER_CALL · 16 · blocks` values) while it is still in cache. A multiple of `MR`.
const ROWS_PER_CALL: usize = 32;
const _: () = assert!(ROWS_PER_CALL % MR == 0);
/// Below this many output bytes, input quantization and phase planes are built on the calling
/// thread: cheaper than waking the pool.
const SERIAL_BYTES: usize = 64 * 1024;

/// Reusable byte and i32 buffers for the INT8 layers, and the value ranges the executor
/// hands between a conv writing f32 and a dynamic INT8 conv reading it.
#[derive(Default, Debug)]
pub struct QScratch {
    pub u8: Vec<u8>,
    pub i32: Vec<i32>,
    /// `(min, max)` of the next conv's input, recorded by its producer (NaNs ignored); a
    /// dynamic conv uses it instead of a pass over the input. Taken by the call.
    pub in_range: Option<(f32, f32)>,
    /// Ask the next conv to record its f32 output's range in `out_range`. Taken by the call.
    pub want_range: bool,
    pub out_range: Option<(f32, f32)>,
    /// A u8 residual dequantized one channel row at a time, one row per worker.
    pub res: Vec<f32>,
}

/// The kernel of the selected ISA (the session checked `KESTREL_ISA` when it was built).
fn kernel() -> qgemm::Kernel {
    detect::selected().and_then(qgemm::kernel).unwrap_or(qgemm::Kernel::Scalar)
}

/// The input parameters for this call.
pub fn input_params(q: ActQuant, x: &[f32]) -> QParams {
    input_params_with(q, x, None)
}

/// [`input_params`], with the input's `(min, max)` when its producer recorded it.
fn input_params_with(q: ActQuant, x: &[f32], range: Option<(f32, f32)>) -> QParams {
    match q {
        ActQuant::Static(p) => p,
        ActQuant::Dynamic => {
            let (lo, hi) = match range {
                Some((lo, hi)) if lo <= hi => (lo, hi),
                Some(_) => (0.0, 0.0),
                None => min_max(x),
            };
            QParams::from_range(lo, hi)
        }
    }
}



/// Quantizes `x` into `out` in parallel chunks.
fn quantize_par(p: QParams, x: &[f32], out: &mut [u8]) {
    if out.len() < SERIAL_BYTES {
        quantize_slice(p, x, out);
        return;
    }
    out.par_chunks_mut(16 * 1024).zip(x.par_chunks(16 * 1024)).for_each(|(o, x)| quantize_slice(p, x, o));
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers write pairwise-disjoint output elements (distinct image, group, pixel range
// or channel range), and the output slice outlives the parallel scope.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// The residual input of an INT8 conv, `[N, Cout, OH, OW]`: floats, or u8 codes that the
/// epilogue dequantizes with their parameters ([`QConv2d::res_q`]).
#[derive(Clone, Copy, Debug)]
pub enum Residual<'a> {
    F32(&'a [f32]),
    U8(&'a [u8], QParams),
}

/// `out[N, Cout, OH, OW]` from `x[N, Cin, H, W]`.
#[allow(clippy::too_many_arguments)]
pub fn qconv2d(q: &QConv2d, x: &[f32], xs: [usize; 4], residual: Option<Residual>, out: &mut [f32], os: [usize; 4], s: &mut QScratch, threads: usize) {
    let c = &q.conv;
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups;
    let (cin_g, cout_g) = (cin / g, cout / g);
    let npix = oh * ow;
    let pa = input_params_with(q.input, x, s.in_range.take());
    let record = std::mem::take(&mut s.want_range) && q.out_q.is_none();
    let pw0 = &q.packed[0];
    let pointwise = c.kernel() == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
    let geo = if pointwise { None } else { Some(Phases::new(c, cin, [h, w], [oh, ow])) };
    // Output pixels as the GEMM sees them: rows of the phase planes' width when that exceeds
    // OW, else the plain pixel range (one row of width `npix`).
    let (nv, row_w, width) = match &geo {
        Some(p) if p.wph != ow => (p.virtual_pixels, p.wph, ow),
        _ => (npix, npix.max(1), npix.max(1)),
    };
    let total_blocks = nv.div_ceil(BLOCK);
    let nb_max = (PANEL_TARGET / (pw0.kpad * BLOCK)).clamp(1, total_blocks);
    let (chunks, row_chunks) = work_split(total_blocks, nb_max, n * g, cout_g, threads);
    let nb = total_blocks.div_ceil(chunks);
    let tasks = n * g * chunks * row_chunks;
    let workers = threads.max(1).min(tasks);
    let plen = panel_len(pw0.kpad, nb);
    let tile = pw0.mpad.min(ROWS_PER_CALL) * nb * BLOCK;
    // f32 inputs of convs that skip some phases (a 1×1 stride-2 downsample reads a quarter of
    // its input) are quantized while their planes are built, when plane rows are long enough
    // to amortise a quantize call each; the others quantize it all first, in parallel.
    let fused = !q.in_u8 && geo.as_ref().is_some_and(|p| p.used.contains(&false) && p.wph >= 24);
    let own = if q.in_u8 || fused { 0 } else { x.len() };
    let phase_len = geo.as_ref().map_or(0, |p| n * p.image_len + p.slack);
    let need_u8 = own + phase_len + workers * plen;
    if s.u8.len() < need_u8 {
        s.u8.resize(need_u8, 0);
    }
    if s.i32.len() < workers * tile {
        s.i32.resize(workers * tile, 0);
    }
    // Each worker dequantizes one channel's share of a u8 residual at a time (≤ nb blocks).
    let res_row = if matches!(residual, Some(Residual::U8(..))) { nb * BLOCK } else { 1 };
    if s.res.len() < workers * res_row {
        s.res.resize(workers * res_row, 0.0);
    }
    let (xq, rest) = s.u8.split_at_mut(own);
    let (phases, panels) = rest.split_at_mut(phase_len);
    let src = if q.in_u8 {
        // The producer wrote u8 codes into the first x.len() bytes of this f32 buffer.
        Source::U8(&bytemuck::cast_slice::<f32, u8>(x)[..x.len()])
    } else if fused {
        Source::F32(x, pa)
    } else {
        quantize_par(pa, x, xq);
        Source::U8(xq)
    };
    let koff = geo.as_ref().map(|p| {
        p.build(src, n, cin, [h, w], c.pads, pa.zero_point, phases);
        p.tap_offsets(c, cin, pw0.kpad)
    });
    let xq: &[u8] = match src {
        Source::U8(xq) => xq,
        Source::F32(..) => &[],
    };
    let phases: &[u8] = phases;
    let kern = kernel();
    let out_q = q.out_q;
    let dst = OutPtr(out.as_mut_ptr());
    let out_len = out.len();
    let per_worker = panels.par_chunks_mut(plen).zip(s.i32.par_chunks_mut(tile)).zip(s.res.par_chunks_mut(res_row));
    let range = per_worker.take(workers).enumerate().map(|(wi, ((panel, acc), res_buf))| {
        let dst = dst;
        let mut range = Lanes::default();
        let mut segs = Vec::new();
        let mut t = wi;
        while t < tasks {
            let (b, rest) = (t / (g * chunks * row_chunks), t % (g * chunks * row_chunks));
            let (gi, rest) = (rest / (chunks * row_chunks), rest % (chunks * row_chunks));
            let (ch, rc) = (rest / row_chunks, rest % row_chunks);
            // This task's output channels: a share of cout_g, cut at multiples of MR.
            let cut = |i: usize| if i == row_chunks { cout_g } else { (i * cout_g / row_chunks) / MR * MR };
            let (m0, m1) = (cut(rc), cut(rc + 1));
            let (blk0, blk1) = (ch * total_blocks / chunks, (ch + 1) * total_blocks / chunks);
            let v0 = blk0 * BLOCK;
            let cnt = (nv - v0).min((blk1 - blk0) * BLOCK);
            let blocks = blk1 - blk0;
            let pw = &q.packed[gi];
            match (&geo, &koff) {
                (Some(p), Some(koff)) => {
                    let base = b * p.image_len + gi * cin_g * p.plane + v0;
                    pack_taps(phases, base, koff, blocks, pw.kpad, panel);
                }
                _ => {
                    let xg = &xq[(b * cin + gi * cin_g) * h * w..(b * cin + (gi + 1) * cin_g) * h * w];
                    pack_pointwise(xg, h * w, pw.k, v0, cnt, pw.kpad, panel);
                }
            }
            let rs = blocks * BLOCK;
            let obase = (b * cout + gi * cout_g) * npix;
            // Virtual pixels v0..v0+cnt cover parts of output rows; columns ≥ OW are
            // discarded. The valid ones are contiguous in each output plane, from `first`.
            let end = v0 + cnt;
            segs.clear();
            let (mut first, mut region) = (None, 0);
            let mut v = v0;
            while v < end {
                let (oy, ox) = (v / row_w, v % row_w);
                if ox >= width {
                    v = (oy + 1) * row_w;
                    continue;
                }
                let seg_end = end.min(oy * row_w + width);
                first.get_or_insert(oy * width + ox);
                segs.push(Seg { acc: v - v0, out: region, len: seg_end - v });
                region += seg_end - v;
                v = seg_end;
            }
            let first = first.unwrap_or(0);
            for c0 in (m0..m1).step_by(ROWS_PER_CALL) {
                let c1 = (c0 + ROWS_PER_CALL).min(m1);
                kern.run_rows(pw, c0..c1, panel, blocks, acc, rs);
                for co in c0..c1 {
                    let oc = gi * cout_g + co;
                    let at = obase + co * npix + first;
                    debug_assert!(at + region <= out_len);
                    let res = match residual {
                        None => None,
                        Some(Residual::F32(r)) => Some(&r[at..at + region]),
                        Some(Residual::U8(r, p)) => {
                            dequantize_slice(p, &r[at..at + region], &mut res_buf[..region]);
                            Some(&res_buf[..region])
                        }
                    };
                    let accs = &acc[(co - c0) * rs..(co - c0 + 1) * rs];
                    match out_q {
                        None => {
                            // SAFETY: output elements [at, at + region) lie inside `out`
                            // (channel oc of image b, the pixels of this task) and belong to
                            // this task only: tasks cover distinct images, groups, pixel ranges
                            // or channel ranges, and `out` outlives the parallel scope.
                            let orow = unsafe { std::slice::from_raw_parts_mut(dst.0.add(at), region) };
                            epilogue(q, pw, co, oc, pa, accs, &segs, res, orow);
                            if record {
                                range.add(orow);
                            }
                        }
                        Some(oq) => {
                            // SAFETY: u8 codes go to byte offsets equal to the element
                            // indices, [at, at + region), which lie in the first out_len bytes
                            // of `out` (4·out_len bytes long) and belong to this task only, as
                            // above.
                            let bytes = unsafe { std::slice::from_raw_parts_mut((dst.0 as *mut u8).add(at), region) };
                            requant_epilogue(kern.avx512vnni(), q, pw, co, oc, pa, oq, accs, &segs, res, bytes);
                        }
                    }
                }
            }
            t += workers;
        }
        range
    });
    let range = range.reduce(Lanes::default, Lanes::merge);
    s.out_range = record.then(|| range.range());
}

/// [`epilogue`] then quantization with the next layer's `oq`, into u8 codes: one pass for
/// ReLU or no activation, through an f32 row for the others (same values either way).
#[allow(clippy::too_many_arguments)]
#[inline]
fn requant_epilogue(vnni: Option<detect::Avx512Vnni>, q: &QConv2d, pw: &PackedWeights, co: usize, oc: usize, pa: QParams, oq: QParams, acc: &[i32], segs: &[Seg], res: Option<&[f32]>, out: &mut [u8]) {
    let relu = q.conv.act == Some(crate::graph::Activation::Relu);
    if q.conv.act.is_none() || relu {
        let (corr, mult, bias) = affine(q, pw, co, oc, pa);
        requant_segs(vnni, acc, segs, corr, mult, bias, res, relu, oq, out);
        return;
    }
    let mut row = [0f32; 256];
    for sg in segs {
        for start in (0..sg.len).step_by(256) {
            let l = (sg.len - start).min(256);
            let (a, o) = (sg.acc + start, sg.out + start);
            let one = [Seg { acc: 0, out: 0, len: l }];
            epilogue(q, pw, co, oc, pa, &acc[a..a + l], &one, res.map(|r| &r[o..o + l]), &mut row[..l]);
            quantize_slice(oq, &row[..l], &mut out[o..o + l]);
        }
    }
}

/// Channel `oc`'s epilogue constants: the zero-point correction `za·Σw` (row `co` of its
/// group's weights), the scale `sa·sw` and the bias.
#[inline]
fn affine(q: &QConv2d, pw: &PackedWeights, co: usize, oc: usize, pa: QParams) -> (i32, f32, f32) {
    let corr = i32::from(pa.zero_point) * pw.row_sums[co];
    (corr, pa.scale * q.weights.scales[oc], q.conv.bias.as_ref().map_or(0.0, |b| b[oc]))
}

/// `(acc − za·Σw)·sa·sw + bias (+ residual)`, then the activation, for one output channel's
/// segments.
#[allow(clippy::too_many_arguments)]
#[inline]
fn epilogue(q: &QConv2d, pw: &PackedWeights, co: usize, oc: usize, pa: QParams, acc: &[i32], segs: &[Seg], res: Option<&[f32]>, out: &mut [f32]) {
    let (corr, mult, bias) = affine(q, pw, co, oc, pa);
    let relu = q.conv.act == Some(crate::graph::Activation::Relu);
    dequant_segs(acc, segs, corr, mult, bias, res, relu, out);
    match q.conv.act {
        Some(act) if !relu => out.iter_mut().for_each(|v| *v = act.apply(*v)),
        _ => {}
    }
}

/// How each (image, group) is cut into tasks: `(pixel chunks, channel chunks)`.
///
/// Normally by pixels: enough chunks that each fits [`PANEL_TARGET`], at least one per worker,
/// and, while there are only a few, a count that gives every worker the same number of tasks
/// (chunks then take `total_blocks / chunks` blocks each, give or take one). With few pixel
/// blocks and many channels (ResNet's 7×7 stage) the workers split output channels instead, so
/// each streams only its share of the weights and reuses every weight row across all blocks.
fn work_split(total_blocks: usize, nb_max: usize, per_image: usize, cout_g: usize, threads: usize) -> (usize, usize) {
    let threads = threads.max(1);
    if per_image * total_blocks <= 4 * threads && cout_g >= 16 * threads && total_blocks <= nb_max {
        return (1, threads);
    }
    let mut chunks = total_blocks.div_ceil(nb_max).max(threads.div_ceil(per_image)).min(total_blocks).max(1);
    while (per_image * chunks) % threads != 0 && per_image * chunks < 8 * threads && chunks < total_blocks {
        chunks += 1;
    }
    (chunks, 1)
}

/// What the phase planes are built from: u8 codes, or f32 values quantized on the way.
#[derive(Clone, Copy)]
enum Source<'a> {
    U8(&'a [u8]),
    F32(&'a [f32], QParams),
}

/// The u8 input of a conv rearranged so that every im2col row is one contiguous run.
///
/// The zero-point padded input `[Cin, Hp, Wp]` is split by stride into `sy·sx` phase planes
/// per channel, phase `(py, px)` holding padded pixels `(r·sy + py, j·sx + px)`:
/// `[N][sy·sx][Cin][hph][wph]`, `hph = ⌈Hp/sy⌉`, `wph = ⌈Wp/sx⌉`. Output pixel `(oy, ox)` is
/// *virtual* pixel `v = oy·wph + ox`; tap `(ky, kx)` of channel `ci` reads phase
/// `(ky·dy mod sy, kx·dx mod sx)` at `v + ⌊ky·dy/sy⌋·wph + ⌊kx·dx/sx⌋`. Virtual columns
/// `ox ≥ OW` are computed and discarded (`wph − OW` per row), and a slack after the last
/// plane keeps their reads in bounds.
struct Phases {
    sy: usize,
    sx: usize,
    wph: usize,
    plane: usize,
    image_len: usize,
    slack: usize,
    virtual_pixels: usize,
    /// Which phases some tap reads (a 1×1 stride-2 conv reads only phase (0, 0)).
    used: Vec<bool>,
}

impl Phases {
    fn new(c: &crate::graph::Conv2d, cin: usize, [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> Phases {
        let [sy, sx] = c.stride;
        let [kh, kw] = c.kernel();
        let [dy, dx] = c.dilation;
        let (hp, wp) = (h + c.pads[0] + c.pads[2], w + c.pads[1] + c.pads[3]);
        let (hph, wph) = (hp.div_ceil(sy), wp.div_ceil(sx));
        let plane = hph * wph;
        let image_len = sy * sx * cin * plane;
        let virtual_pixels = (oh.max(1) - 1) * wph + ow;
        let mut used = vec![false; sy * sx];
        for ky in 0..kh {
            for kx in 0..kw {
                used[(ky * dy % sy) * sx + kx * dx % sx] = true;
            }
        }
        // Largest tap offset within an image, plus the padded last panel block.
        let max_off = image_len - plane + ((kh - 1) * dy / sy) * wph + (kw - 1) * dx / sx;
        let reach = max_off + virtual_pixels.div_ceil(BLOCK) * BLOCK;
        Phases { sy, sx, wph, plane, image_len, slack: reach.saturating_sub(image_len), virtual_pixels, used }
    }

    /// Writes the phase planes of all `n` images of `src: [N, Cin, H, W]` into `out`.
    #[allow(clippy::too_many_arguments)]
    fn build(&self, src: Source, n: usize, cin: usize, [h, w]: [usize; 2], pads: [usize; 4], zp: u8, out: &mut [u8]) {
        let (pt, pl) = (pads[0], pads[1]);
        let (sy, sx, wph) = (self.sy, self.sx, self.wph);
        let (planes, slack) = out.split_at_mut(n * self.image_len);
        slack.fill(zp);
        let plane_of = |(i, dst): (usize, &mut [u8])| {
            let (b, ph, ci) = (i / (sy * sx * cin), (i / cin) % (sy * sx), i % cin);
            let (py, px) = (ph / sx, ph % sx);
            let plane = (b * cin + ci) * h * w..(b * cin + ci + 1) * h * w;
            // Phase columns j with an input column: j·sx + px − pl ∈ [0, w).
            let jlo = pl.saturating_sub(px).div_ceil(sx).min(wph);
            let jhi = (w + pl).saturating_sub(px).div_ceil(sx).clamp(jlo, wph);
            for (r, row) in dst.chunks_mut(wph).enumerate() {
                let iy = (r * sy + py).wrapping_sub(pt);
                if iy >= h {
                    row.fill(zp);
                    continue;
                }
                fill_pad(&mut row[..jlo], zp);
                fill_pad(&mut row[jhi..], zp);
                let x0 = jlo * sx + px - pl;
                let dst = &mut row[jlo..jhi];
                match src {
                    Source::U8(xq) => {
                        let src = &xq[plane.clone()];
                        if sx == 1 {
                            dst.copy_from_slice(&src[iy * w + x0..iy * w + x0 + dst.len()]);
                        } else if sx == 2 {
                            gather_stride2(&src[iy * w + x0..], dst);
                        } else {
                            for (d, &v) in dst.iter_mut().zip(src[iy * w + x0..(iy + 1) * w].iter().step_by(sx)) {
                                *d = v;
                            }
                        }
                    }
                    Source::F32(x, p) => {
                        let srow = &x[plane.clone()][iy * w..(iy + 1) * w];
                        if sx == 1 {
                            quantize_slice(p, &srow[x0..x0 + dst.len()], dst);
                        } else {
                            // Strided values gathered into a small buffer, then quantized
                            // vectorised.
                            let mut buf = [0f32; 64];
                            let mut vals = srow[x0..].iter().step_by(sx);
                            for d in dst.chunks_mut(64) {
                                for (b, &v) in buf.iter_mut().zip(vals.by_ref()) {
                                    *b = v;
                                }
                                quantize_slice(p, &buf[..d.len()], d);
                            }
                        }
                    }
                }
            }
        };
        // Only the phases some tap reads, spread evenly over the workers; small inputs (the 14²
        // and 7² stages) cost less than a fork-join of the pool.
        let used: Vec<(usize, &mut [u8])> = planes.chunks_mut(self.plane).enumerate().filter(|(i, _)| self.used[(i / cin) % (sy * sx)]).collect();
        if used.len() * self.plane < SERIAL_BYTES {
            used.into_iter().for_each(plane_of);
        } else {
            used.into_par_iter().for_each(plane_of);
        }
    }

    /// Offset of each of the `kpad` im2col rows of group 0 in an image's phase planes
    /// (`k = ci·kh·kw + ky·kw + kx`); the padding rows meet zero weights and read offset 0.
    fn tap_offsets(&self, c: &crate::graph::Conv2d, cin: usize, kpad: usize) -> Vec<usize> {
        let [kh, kw] = c.kernel();
        let [dy, dx] = c.dilation;
        let kdim = c.weight.shape()[1] * kh * kw;
        (0..kpad)
            .map(|k| {
                if k >= kdim {
                    return 0;
                }
                let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
                let ph = (ky * dy % self.sy) * self.sx + kx * dx % self.sx;
                (ph * cin + ci) * self.plane + (ky * dy / self.sy) * self.wph + kx * dx / self.sx
            })
            .collect()
    }
}

/// `row.fill(zp)` for the few padding bytes at a row's ends, without a `memset` call per row
/// (that call dominated building the planes of the small 14² and 7² stages).
#[inline(always)]
fn fill_pad(row: &mut [u8], zp: u8) {
    match row {
        [] => {}
        [a] => *a = zp,
        [a, b] => (*a, *b) = (zp, zp),
        [a, b, c] => (*a, *b, *c) = (zp, zp, zp),
        _ => row.fill(zp),
    }
}

/// Packs `blocks` blocks of virtual pixels starting at `phases[base..]` into a qgemm panel:
/// row `k` of the im2col is the run at `base + koff[k]`.
fn pack_taps(phases: &[u8], base: usize, koff: &[usize], blocks: usize, kpad: usize, panel: &mut [u8]) {
    for (k4, offs) in koff.chunks_exact(4).enumerate().take(kpad / 4) {
        let rows: [&[u8]; 4] = std::array::from_fn(|j| &phases[base + offs[j]..base + offs[j] + blocks * BLOCK]);
        for b in 0..blocks {
            let at = b * kpad * BLOCK + k4 * 4 * BLOCK;
            interleave4x16(rows.map(|r| &r[b * BLOCK..(b + 1) * BLOCK]), &mut panel[at..at + 4 * BLOCK]);
        }
    }
}

/// 1×1 stride-1 convs: the u8 input planes already are the `col` rows, so full blocks are
/// interleaved straight from them; only a partial last block goes through a padded copy.
fn pack_pointwise(xq: &[u8], npix: usize, kdim: usize, p0: usize, cnt: usize, kpad: usize, panel: &mut [u8]) {
    const ZERO: [u8; BLOCK] = [0; BLOCK];
    let full = cnt / BLOCK;
    let mut tail = [[0u8; BLOCK]; 4];
    for k4 in 0..kpad / 4 {
        let row = |j: usize| -> Option<&[u8]> {
            let k = k4 * 4 + j;
            (k < kdim).then(|| &xq[k * npix + p0..k * npix + p0 + cnt])
        };
        let rows = [row(0), row(1), row(2), row(3)];
        for b in 0..full {
            let src = rows.map(|r| r.map_or(&ZERO[..], |r| &r[b * BLOCK..(b + 1) * BLOCK]));
            let at = b * kpad * BLOCK + k4 * 4 * BLOCK;
            interleave4x16(src, &mut panel[at..at + 4 * BLOCK]);
        }
        if cnt % BLOCK != 0 {
            for (t, r) in tail.iter_mut().zip(&rows) {
                t.fill(0);
                if let Some(r) = r {
                    t[..cnt % BLOCK].copy_from_slice(&r[full * BLOCK..]);
                }
            }
            let at = full * kpad * BLOCK + k4 * 4 * BLOCK;
            interleave4x16([&tail[0][..], &tail[1][..], &tail[2][..], &tail[3][..]], &mut panel[at..at + 4 * BLOCK]);
        }
    }
}

/// `dst[p·4 + j] = rows[j][p]` for 16 pixels and 4 rows.
#[inline(always)]
fn interleave4x16(rows: [&[u8]; 4], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        assert!(rows.iter().all(|r| r.len() >= 16) && dst.len() >= 64);
        // SAFETY: SSE2 is part of the x86-64 baseline; the assert above proves the four
        // 16-byte loads and the four 16-byte stores are in bounds.
        unsafe {
            let [a, b, c, d] = rows.map(|r| _mm_loadu_si128(r.as_ptr() as *const __m128i));
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let o = dst.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for p in 0..16 {
        for j in 0..4 {
            dst[p * 4 + j] = rows[j][p];
        }
    }
}

/// INT8 transposed convolution: `col[Cout·kh·kw, H·W] = Wᵀ·x` with the qgemm kernel (the
/// input planes are the panel rows, as for a 1×1 conv), dequantized per output channel into an
/// f32 `col`, then scattered (col2im) onto the bias. `out[N, Cout, OH, OW]`.
#[allow(clippy::too_many_arguments)]
pub fn qconv_transpose2d(q: &QConvTranspose2d, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4], s: &mut QScratch, col: &mut Vec<f32>, threads: usize) {
    let c = &q.convt;
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let [kh, kw] = c.kernel();
    let pw = &q.packed;
    let rows = pw.m;
    let npix = h * w;
    let pa = input_params(q.input, x);
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
    quantize_par(pa, x, xq);
    let xq: &[u8] = xq;
    let kern = kernel();
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
                pack_pointwise(xb, npix, cin, p0, cnt, pw.kpad, panel);
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
                    dequant_row(&acc[r * rs..r * rs + cnt], corr, pa.scale * q.weights.scales[co], 0.0, None, false, crow);
                }
                t += workers;
            }
        });
        let col = &*col;
        let ob = &mut out[b * cout * oh * ow..(b + 1) * cout * oh * ow];
        ob.par_chunks_mut(oh * ow).enumerate().for_each(|(co, plane)| {
            plane.fill(c.bias.as_ref().map_or(0.0, |bias| bias[co]));
            crate::cpu::conv_transpose::col2im_plane(c, &col[co * kh * kw * npix..(co + 1) * kh * kw * npix], [h, w], plane, [oh, ow]);
        });
    }
}

/// `out[N, O]` from `x[N, I]`; the workers split the output rows (each streams its share of
/// the weights, which dominate at small N).
pub fn qlinear(q: &QLinear, x: &[f32], n: usize, out: &mut [f32], s: &mut QScratch, threads: usize) {
    let pw = &q.packed;
    let (o, i) = (pw.m, pw.k);
    let pa = input_params(q.input, x);
    let blocks = n.div_ceil(BLOCK);
    let plen = panel_len(pw.kpad, blocks);
    if s.u8.len() < x.len() + plen {
        s.u8.resize(x.len() + plen, 0);
    }
    let rs = blocks * BLOCK;
    if s.i32.len() < pw.mpad * rs {
        s.i32.resize(pw.mpad * rs, 0);
    }
    let (xq, panel) = s.u8.split_at_mut(x.len());
    quantize_par(pa, x, xq);
    panel[..plen].fill(0);
    for p in 0..n {
        for k in 0..i {
            panel[qgemm::panel_index(pw.kpad, k, p)] = xq[p * i + k];
        }
    }
    let per = o.div_ceil(threads.max(1)).next_multiple_of(MR).max(MR);
    let kern = kernel();
    let panel: &[u8] = panel;
    s.i32[..o * rs].par_chunks_mut(per * rs).enumerate().for_each(|(i, acc)| {
        let c0 = i * per;
        kern.run_rows(pw, c0..(c0 + per).min(o), panel, blocks, acc, rs);
    });
    for c in 0..o {
        let corr = i32::from(pa.zero_point) * pw.row_sums[c];
        let mult = pa.scale * q.weights.scales[c];
        let bias = q.linear.bias.as_ref().map_or(0.0, |b| b[c]);
        for p in 0..n {
            out[p * o + c] = (s.i32[c * rs + p] - corr) as f32 * mult + bias;
        }
    }
}
