//! The INT8 convolution. The input is quantized once to u8 (`[N, Cin, H, W]`, static or
//! dynamic parameters; or it arrives as u8 codes from the previous INT8 conv). Convs other
//! than 1×1 stride 1 first rearrange it into zero-point-padded stride-phase planes
//! ([`Phases`]), where each im2col row is one contiguous run, so no im2col is materialised.
//! Output pixels are split into tasks of whole [`BLOCK`]s (or, on small images with many
//! channels, output channels are split instead); each worker interleaves its panel straight
//! from the runs (1×1: from the u8 planes), runs the session's qgemm kernel `ROWS_PER_CALL`
//! channels at a time into an i32 tile, and applies the epilogue
//! `y = (acc − za·Σw[c])·sa·sw[c] + bias[c] (+ residual)`, then the activation, writing f32,
//! or u8 codes for the next INT8 conv (`cpu::epilogue`). Where the workers split channels,
//! each packs the whole panel for its channels (a panel packed once and shared cost more:
//! its other half crosses between cores). Each worker takes one contiguous run of the
//! tasks, the same part of every map from layer to layer. u8 outputs with ReLU or no
//! activation are requantized a kernel call's channel rows at a time ([`requant_rows`]), a u8
//! residual dequantized inside that pass; others one channel row at a time, such a residual
//! dequantized into the worker's own residual row first ([`super::WorkerScratch`]).
//!
//! Convs with taps on the VNNI kernel (stride 1, or strided with more than one tap), and on
//! AMX those with 64·n input channels a group, pack no panels from plain planes: their planes
//! are built as quad planes (four channels interleaved pixel by pixel,
//! per stride phase, [`Phases::build_quads`]), whose 16-pixel
//! runs already are `vpdpbusd`'s 16 × 4-k operands, and the kernel reads them in place at one
//! offset per (channel quad, tap) (`Kernel::run_rows_taps`), with the weights packed in that
//! K order ([`PackedWeights::quad_taps`]; AMX's tap by tap, a tile's 16 rows 16 quads of one
//! tap at the planes' stride). Each tap's run was otherwise interleaved into a panel once per
//! task: 9× the input for a 3×3 conv. On small maps, where the planes' padding columns are a
//! large share of those runs ([`DENSE_WASTE`]), and for strided convs on AMX, the quad groups
//! are copied into panels without them instead (`pack_quads_dense`), and the same weights run
//! on them.
//!
//! AMX stores the sums of tasks of at least [`TILES_MIN_BLOCKS`] blocks tile by tile for the
//! requantizing pass (`Kernel::run_rows_tiles`, [`Sums::Tiles`]).
//!
//! A batch of unpadded 1×1 convs onto maps of at most [`BATCH_MAP_PIXELS`] pixels runs as one
//! stride-1 GEMM over all the batch's output pixels, its input (the pixels a stride reads),
//! residual and output laid out channel-major around it ([`batched_pointwise`]).
//!
//! A map's last block of at most [`GEMV_TAIL`] pixels (a 7² map's 49th pixel, a 14² one's
//! last 4, a 1 × 1 or 2 × 2 map) runs as GEMV columns on a kernel with a GEMV form
//! ([`crate::cpu::qgemm::Kernel::gemv_cols`]), each pixel's K column gathered from the panel
//! or the quad planes: the same i32 sums as a 16-pixel block at a quarter of its work or
//! less (one column costs a fifth of a block on VNNI, a ninth on AVX2; ResNet-50's 7² 1×1
//! convs 1.1–1.2× faster on VNNI). A task of GEMV columns only packs no panel, and a map of at
//! most [`GEMV_TAIL`] pixels builds no planes either: each column is gathered straight from
//! the u8 input in the weights' K order (`gather_column`), the zero point in the padding. Its
//! f32 outputs are computed channel by channel within each column, its u8 codes 16 channels a
//! vector where a call has at most two columns ([`requant_rows`]).

use std::sync::Mutex;

use super::phases::{dense_offsets, pack_pointwise, pack_quads_dense, pack_taps, Phases, Source};
use super::{input_params_with, quantize_par, OutPtr, QIn, QOut, QScratch, Ranges, Residual, PANEL_TARGET, ROWS_PER_CALL, SMALL_PANEL_TARGET, SMALL_WEIGHTS, TILES_MIN_BLOCKS};
use crate::cpu::codec::{dequantize_slice, quantize_slice, Lanes};
use crate::cpu::epilogue::{dequant_segs, requant_rows, requant_segs, requant_segs_codes, ResCodes, RowRes, Seg, Sums};
use crate::cpu::kernels::Kernels;
use crate::cpu::qgemm::{self, panel_index, panel_len, quad_group, PackedWeights, BLOCK, MR};
use crate::cpu::simd::Simd;
use crate::error::Result;
use crate::graph::shape::window_out;
use crate::graph::{ActQuant, Activation, Conv2d, Int8};
use crate::qparams::QParams;

/// Packs an INT8 conv's s8 weights for `kernels`: one `[Cout/g][Cin/g·kh·kw]` matrix per group,
/// in the quad-tap K order of the implicit GEMM ([`PackedWeights::quad_taps`]) for convs with
/// taps (stride 1, or strided with more than one tap) on a kernel that reads them in place
/// ([`crate::cpu::qgemm::Kernel::reads_taps`]).
pub fn pack_conv(kernels: &Kernels, c: &Conv2d, q: &Int8) -> Result<Vec<PackedWeights>> {
    let cout = c.out_channels();
    let g = c.groups.max(1);
    let k = q.weights.q.len() / cout.max(1);
    let cg = cout / g;
    let [kh, kw] = c.kernel();
    // Convs with taps (any stride) where quads waste little: a depthwise conv (one channel per
    // group) would read and multiply four times its input. Strided 1×1 convs (downsamples,
    // one tap, no padding: their phase plane holds no padding column either) keep packed
    // panels: on quads they measured the same (ResNet-50 INT8 0.995–1.005 of the time, Zen 4).
    // Strided 3×3 convs on quads: BENCHMARKS.md, "AMD Zen 4, fifteenth session".
    let taps = kh * kw;
    let cin_g = if taps > 0 && k % taps == 0 { k / taps } else { 0 };
    // On an AMX CPU, narrow layers run on the VNNI kernel ([`crate::cpu::qgemm::AMX_MIN_ROWS`]).
    let kern = kernels.qgemm.for_shape(cg, k);
    let implicit = kern.reads_taps(cin_g) && !pointwise(c) && (c.stride == [1, 1] || taps > 1) && cin_g > 0 && (cin_g % 4 == 0 || cin_g >= 16);
    (0..g)
        .map(|gi| {
            let w = &q.weights.q[gi * cg * k..(gi + 1) * cg * k];
            let packing = kern.packing_for(w, cg, k);
            if implicit {
                PackedWeights::quad_taps(w, cg, cin_g, taps, packing)
            } else {
                PackedWeights::new(w, cg, k, packing)
            }
        })
        .collect()
}

/// Whether `c` is a 1×1 stride-1 unpadded conv, whose input planes are already its GEMM's
/// rows (no phase planes).
fn pointwise(c: &Conv2d) -> bool {
    c.kernel() == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4]
}

/// Output pixels per map up to which a batch of unpadded 1×1 convs runs as one GEMM over the
/// whole batch ([`batched_pointwise`]). Image by image, such a map is one 16-pixel block or a
/// few GEMV columns, each pass reading all the weights: the trained shapes-resnet18's layer4
/// convs (128 channels on 1 × 1 maps, cropped to their centre tap) took 4–9× their f32 time at
/// batch 64 that way.
pub const BATCH_MAP_PIXELS: usize = 16;

/// The output map `[OH, OW]` of an unpadded 1×1 conv `c` on `[H, W]`, or `None` for another conv.
fn one_by_one_map(c: &Conv2d, [h, w]: [usize; 2]) -> Option<[usize; 2]> {
    if c.kernel() != [1, 1] || c.pads != [0; 4] {
        return None;
    }
    Some([window_out(h, 1, c.stride[0], (0, 0), 1, false)?, window_out(w, 1, c.stride[1], (0, 0), 1, false)?])
}

/// Whether [`qconv2d`] runs `c`, with weights packed for `kern`, onto maps of `[OH, OW]` as GEMV
/// columns gathered straight from its u8 input, with no phase planes and no panel: a map of at
/// most [`GEMV_TAIL`] pixels on a kernel with a GEMV form (not a 1×1 stride-1 unpadded conv,
/// whose input planes already are its rows). It does not see the batch: a batch that
/// [`batches_columns`] takes runs as one GEMM over the batch instead, and callers ask that
/// first ([`qconv2d`] itself, and the session's per-layer labels).
pub fn gathers_columns(c: &Conv2d, kern: qgemm::Kernel, [oh, ow]: [usize; 2]) -> bool {
    !pointwise(c) && kern.has_gemv() && (1..=GEMV_TAIL).contains(&(oh * ow))
}

/// Whether [`qconv2d`] runs `c` on input `xs` as one GEMM over the batch: an unpadded 1×1 conv
/// (any stride) of a batch whose output maps hold at most [`BATCH_MAP_PIXELS`] pixels.
pub fn batches_columns(c: &Conv2d, [n, _, h, w]: [usize; 4]) -> bool {
    n > 1 && one_by_one_map(c, [h, w]).is_some_and(|[oh, ow]| oh * ow <= BATCH_MAP_PIXELS)
}

/// Bytes [`qconv2d`] allocates for the batch's channel-major copies when it
/// [`batches_columns`] (input, output and residual as f32 at most), else 0.
pub fn batched_bytes(c: &Conv2d, xs: [usize; 4], os: [usize; 4]) -> usize {
    if batches_columns(c, xs) {
        4 * (xs.iter().product::<usize>() + 2 * os.iter().product::<usize>())
    } else {
        0
    }
}

/// `[N][C][H][W]` → `[C][N·OH·OW]`, pixel `(oy·sy, ox·sx)` of each map: every channel's
/// (subsampled) maps of the batch side by side. Maps of one pixel as a plain transpose, the
/// images innermost, and the runs of others without a copy call ([`copy_run`]): a call per
/// map (one element on a 1 × 1 map) cost shapes-resnet18's batched 1×1 convs at batch 64 most
/// of their time.
fn to_channel_major<T: Copy>(src: &[T], [n, c, h, w]: [usize; 4], [oh, ow]: [usize; 2], [sy, sx]: [usize; 2]) -> Vec<T> {
    let (p, hw) = (oh * ow, h * w);
    let Some(&first) = src.first().filter(|_| n * c * p > 0) else { return Vec::new() };
    let mut dst = vec![first; n * c * p];
    if p == 1 {
        for (ci, row) in dst.chunks_exact_mut(n).enumerate() {
            for (b, v) in row.iter_mut().enumerate() {
                *v = src[(b * c + ci) * hw];
            }
        }
        return dst;
    }
    for (b, img) in src.chunks_exact(c * hw).take(n).enumerate() {
        for (ci, map) in img.chunks_exact(hw).enumerate() {
            let to = &mut dst[(ci * n + b) * p..][..p];
            if [sy, sx] == [1, 1] {
                copy_run(&map[..p], to);
                continue;
            }
            for (oy, row) in to.chunks_exact_mut(ow).enumerate() {
                let line = &map[oy * sy * w..];
                for (ox, v) in row.iter_mut().enumerate() {
                    *v = line[ox * sx];
                }
            }
        }
    }
    dst
}

/// `[C][N·P]` → `[N][C][P]`, into `dst` (as [`to_channel_major`] does it).
fn to_batch_major<T: Copy>(src: &[T], dst: &mut [T], [n, c, p]: [usize; 3]) {
    if n * c * p == 0 {
        return;
    }
    if p == 1 {
        for (b, row) in dst.chunks_exact_mut(c).take(n).enumerate() {
            for (ci, v) in row.iter_mut().enumerate() {
                *v = src[ci * n + b];
            }
        }
        return;
    }
    for (b, img) in dst.chunks_exact_mut(c * p).take(n).enumerate() {
        for (ci, to) in img.chunks_exact_mut(p).enumerate() {
            copy_run(&src[(ci * n + b) * p..][..p], to);
        }
    }
}

/// `to.copy_from_slice(from)` (equal lengths), as a copy of a fixed size for the runs of maps
/// of up to [`BATCH_MAP_PIXELS`] pixels, which compiles to moves rather than a call.
#[inline]
fn copy_run<T: Copy>(from: &[T], to: &mut [T]) {
    fn fixed<T: Copy, const P: usize>(from: &[T], to: &mut [T]) {
        to[..P].copy_from_slice(&from[..P]);
    }
    match from.len() {
        2 => fixed::<T, 2>(from, to),
        3 => fixed::<T, 3>(from, to),
        4 => fixed::<T, 4>(from, to),
        6 => fixed::<T, 6>(from, to),
        8 => fixed::<T, 8>(from, to),
        9 => fixed::<T, 9>(from, to),
        12 => fixed::<T, 12>(from, to),
        16 => fixed::<T, 16>(from, to),
        _ => to.copy_from_slice(from),
    }
}

/// An unpadded 1×1 conv over a batch of small maps as a stride-1 one over one image of
/// `N·OH·OW` pixels: the input (the pixels the stride reads), a residual and a residual
/// already in the output laid out channel-major (`[C][N·OH·OW]`), the conv run as pointwise on
/// that (`conv_on`), and
/// the output laid back batch-major. A 1×1 conv computes each output pixel from its own input
/// pixel only, so the values are the same. A dynamic input's parameters come from the whole
/// input's range, as on the direct path (measured here when its producer did not hand it
/// over, since a stride drops pixels); the recorded output range does not depend on the order.
#[allow(clippy::too_many_arguments)]
fn batched_pointwise(kernels: &Kernels, c: &Conv2d, q: &Int8, packed: &[PackedWeights], x: QIn, xs: [usize; 4], residual: Option<Residual>, out: QOut, os: [usize; 4], ranges: Ranges, s: &mut QScratch, threads: usize) -> Option<(f32, f32)> {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let pout = oh * ow;
    let (in_len, len) = (n * cin * h * w, n * cout * pout);
    let (xs1, os1) = ([1, cin, 1, n * pout], [1, cout, 1, n * pout]);
    let strided = c.stride != [1, 1];
    let mut ranges1 = ranges;
    let (x_f32, x_u8);
    let x1 = match x {
        QIn::F32(v) => {
            if strided && ranges.input.is_none() && matches!(q.input, ActQuant::Dynamic) {
                ranges1.input = Some(crate::cpu::codec::min_max(kernels.simd, &v[..in_len]));
            }
            x_f32 = to_channel_major(&v[..in_len], xs, [oh, ow], c.stride);
            QIn::F32(&x_f32)
        }
        QIn::U8(v) => {
            x_u8 = to_channel_major(&v[..in_len], xs, [oh, ow], c.stride);
            QIn::U8(&x_u8)
        }
    };
    let whole = |len_of: usize| [n, len_of, oh, ow];
    let (res_f32, res_u8);
    let residual1 = match residual {
        Some(Residual::F32(r)) => {
            res_f32 = to_channel_major(&r[..len], whole(cout), [oh, ow], [1, 1]);
            Some(Residual::F32(&res_f32))
        }
        Some(Residual::U8(r, p)) => {
            res_u8 = to_channel_major(&r[..len], whole(cout), [oh, ow], [1, 1]);
            Some(Residual::U8(&res_u8, p))
        }
        // None, or codes in the output buffer (laid out with it below).
        other => other,
    };
    // The conv runs as a stride-1 one over the gathered pixels (`conv_on` as pointwise).
    match out {
        QOut::F32(o) => {
            let mut o1 = vec![0f32; len];
            let range = conv_on(kernels, c, true, q, packed, x1, xs1, residual1, QOut::F32(&mut o1), os1, ranges1, s, threads);
            to_batch_major(&o1, &mut o[..len], [n, cout, pout]);
            range
        }
        QOut::U8(o, p) => {
            let mut o1 = if matches!(residual, Some(Residual::Output(_))) { to_channel_major(&o[..len], whole(cout), [oh, ow], [1, 1]) } else { vec![0u8; len] };
            let range = conv_on(kernels, c, true, q, packed, x1, xs1, residual1, QOut::U8(&mut o1, p), os1, ranges1, s, threads);
            to_batch_major(&o1, &mut o[..len], [n, cout, pout]);
            range
        }
    }
}

/// `out[N, Cout, OH, OW]` from `x[N, Cin, H, W]` for the INT8 conv `c` (its INT8 data `q`,
/// its weights packed by [`pack_conv`] for `kernels`). Returns the f32 output's `(min, max)`
/// when `ranges.record_output` asks for it.
///
/// # Panics
/// When `x` is u8 codes but the conv's input parameters are dynamic (the prepare stage never
/// hands codes to a dynamic layer), or when slice lengths disagree with the shapes.
#[allow(clippy::too_many_arguments)]
pub fn qconv2d(
    kernels: &Kernels,
    c: &Conv2d,
    q: &Int8,
    packed: &[PackedWeights],
    x: QIn,
    xs: [usize; 4],
    residual: Option<Residual>,
    out: QOut,
    os: [usize; 4],
    ranges: Ranges,
    s: &mut QScratch,
    threads: usize,
) -> Option<(f32, f32)> {
    if batches_columns(c, xs) {
        return batched_pointwise(kernels, c, q, packed, x, xs, residual, out, os, ranges, s, threads);
    }
    conv_on(kernels, c, pointwise(c), q, packed, x, xs, residual, out, os, ranges, s, threads)
}

/// [`qconv2d`] without the batch path, `c` run as a 1×1 stride-1 conv (its input planes the
/// GEMM's rows) when `as_pointwise`, else on phase planes by its geometry.
#[allow(clippy::too_many_arguments)]
fn conv_on(
    kernels: &Kernels,
    c: &Conv2d,
    as_pointwise: bool,
    q: &Int8,
    packed: &[PackedWeights],
    x: QIn,
    xs: [usize; 4],
    residual: Option<Residual>,
    out: QOut,
    os: [usize; 4],
    ranges: Ranges,
    s: &mut QScratch,
    threads: usize,
) -> Option<(f32, f32)> {
    let simd = kernels.simd;
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups;
    let (cin_g, cout_g) = (cin / g, cout / g);
    let npix = oh * ow;
    let in_len = n * cin * h * w;
    let pa = match (x, q.input) {
        (QIn::U8(_), ActQuant::Static(p)) => p,
        (QIn::U8(_), ActQuant::Dynamic) => panic!("qconv2d: u8 codes handed to a dynamic INT8 conv"),
        (QIn::F32(x), aq) => input_params_with(simd, aq, &x[..in_len], ranges.input),
    };
    let (out_len, out_q) = match &out {
        QOut::F32(o) => (o.len(), None),
        QOut::U8(o, p) => (o.len(), Some(*p)),
    };
    assert_eq!(out_len, n * cout * npix, "qconv2d: output length");
    assert!(out_q.is_some() || !matches!(residual, Some(Residual::Output(_))), "qconv2d: a residual in the output buffer needs a u8 output");
    let record = ranges.record_output && out_q.is_none();
    let pw0 = &packed[0];
    let pointwise = as_pointwise;
    // The kernel the weights were packed for (`pack_conv`).
    let kern = kernels.qgemm.for_packing(pw0.packing());
    // Convs onto maps of at most `GEMV_TAIL` pixels (small models' last stages: 1×1 and 2×2)
    // are GEMV columns only: each gathered straight from the u8 input (`gather_column`), with
    // no phase planes and no panel. Same bytes in the columns, so the same sums. One thread,
    // Zen 4, u8 in and out, before → after: a 1×1 stride-2 downsample of 64 channels onto
    // 2 × 2 3.0 → 1.4 µs (half of it went to building planes for its 4 columns), 3×3 convs of
    // 128 channels onto 2 × 2 6.6 → 6.0 µs, stride 2 onto 1 × 1 15–17 → 2.6 µs, of 64
    // channels from 4 × 4 onto 2 × 2 5.6 → 3.9 µs.
    let direct = !pointwise && gathers_columns(c, kern, [oh, ow]);
    let geo = if pointwise || direct { None } else { Some(Phases::new(c, cin, [h, w], [oh, ow])) };
    // Weights packed in the quad-tap order: the kernel reads quad phase planes in place, and
    // no panel is packed.
    let implicit = !pointwise && !direct && pw0.taps > 0;
    // Small maps, whose planes' padding columns would be a large share of the GEMM's pixels,
    // pack their panels from the quad planes without those columns instead ([`DENSE_WASTE`]);
    // so do strided convs on AMX. AMX, one conv alone, u8 in and out, 2 threads, the ways
    // alternating call by call (family 6 model 207), against the panels packed from plain
    // phase planes before it read quad planes: ResNet-50's 64-channel 3×3 conv on 56² in
    // place 0.75–0.82 of the time; its stride-2 3×3 convs onto 14² and 7², dense, 0.80–0.87;
    // pruned widths (64 at 28², 128 → 192 at 14², 320 at 7²), dense, 0.77–0.86; its 28², 14²
    // and 7² 3×3 convs 0.94–1.11; the stride-2 conv onto 28² in place 1.05–1.19, dense 0.86.
    let dense = implicit && (kern.stores_tiles() && c.stride != [1, 1] || geo.as_ref().is_some_and(|p| (p.virtual_pixels - npix) * 100 >= DENSE_WASTE * p.virtual_pixels));
    let in_place = implicit && !dense;
    let (cq, quads) = (cin_g.div_ceil(4), g * cin_g.div_ceil(4));
    // Output pixels as the GEMM sees them: rows of the phase planes' width when that exceeds
    // OW, else the plain pixel range (one row of width `npix`).
    let (nv, row_w, width) = match &geo {
        Some(p) if p.wph != ow && !dense => (p.virtual_pixels, p.wph, ow),
        _ => (npix, npix.max(1), npix.max(1)),
    };
    let total_blocks = nv.div_ceil(BLOCK);
    let target = if pw0.mpad * pw0.kpad <= SMALL_WEIGHTS { SMALL_PANEL_TARGET } else { PANEL_TARGET };
    let nb_max = (target / (pw0.kpad * BLOCK)).clamp(1, total_blocks);
    let (chunks, row_chunks) = work_split(total_blocks, nb_max, n * g, cout_g, threads);
    let nb = total_blocks.div_ceil(chunks);
    let tasks = n * g * chunks * row_chunks;
    let workers = threads.max(1).min(tasks);
    let plen = if in_place { 0 } else { panel_len(pw0.kpad, nb) };
    // Where the workers split output channels, each packs the whole panel itself. Packing it
    // once, each worker half of it, and both reading it cost more than the second packing on
    // Zen 4: ResNet-50 INT8 0.99 of the time without it with the two vCPUs on one L3, 0.94
    // on two (the other half of the panel then crosses between CCDs); pruned 0.98; the AVX2
    // kernel forced on the same CPU 0.95.
    // AMX stores the sums of wide tasks tile by tile where the requantizing pass reads them,
    // every row of a call in one pass (u8 codes out, ReLU or no activation).
    let tiled = nb >= TILES_MIN_BLOCKS && kern.stores_tiles() && out_q.is_some() && matches!(c.act, None | Some(Activation::Relu));
    let call_rows = pw0.mpad.min(ROWS_PER_CALL);
    let tile = if tiled { qgemm::tiles_len(call_rows, nb) } else { call_rows * nb * BLOCK };
    // f32 inputs of convs that skip some phases (a 1×1 stride-2 downsample reads a quarter of
    // its input) are quantized while their planes are built, when plane rows are long enough
    // to amortise a quantize call each; the others quantize it all first, in parallel.
    let in_u8 = matches!(x, QIn::U8(_));
    let fused = !in_u8 && geo.as_ref().is_some_and(|p| p.used.contains(&false) && p.wph >= 24);
    let own = if in_u8 || fused { 0 } else { in_len };
    let phase_len = match &geo {
        Some(p) if implicit => n * p.quad_image_len(quads) + p.quad_slack(c, quads),
        Some(p) => n * p.image_len + p.slack,
        None => 0,
    };
    let need_u8 = own + phase_len;
    if s.u8.len() < need_u8 {
        s.u8.resize(need_u8, 0);
    }
    // u8 codes out with ReLU or no activation: a u8 residual is dequantized inside the
    // requantizing pass. Otherwise each worker dequantizes one channel's share of it at a
    // time (≤ nb blocks) into its residual row.
    let res_in_requant = out_q.is_some() && matches!(c.act, None | Some(Activation::Relu));
    let res_row = if !res_in_requant && matches!(residual, Some(Residual::U8(..) | Residual::Output(_))) { nb * BLOCK } else { 1 };
    // Each worker's panel (empty for the implicit GEMM), i32 tile and residual row, taken by
    // its part of the loop.
    let bufs: Vec<Mutex<(&mut [u8], &mut [i32], &mut [f32])>> = s.own.take(workers, [plen, tile, res_row]).map(Mutex::new).collect();
    let (xq, phases) = s.u8.split_at_mut(own);
    let phases = &mut phases[..phase_len];
    let src = match x {
        QIn::U8(codes) => Source::U8(&codes[..in_len]),
        QIn::F32(x) if fused => Source::F32(&x[..in_len], pa),
        QIn::F32(x) => {
            quantize_par(simd, pa, &x[..in_len], xq);
            Source::U8(xq)
        }
    };
    let koff = geo.as_ref().map(|p| {
        if implicit {
            p.build_quads(simd, src, n, cin, g, [h, w], c.pads, pa.zero_point, phases);
            p.quad_offsets(c, quads, cq, pw0.packing())
        } else {
            p.build(simd, src, n, cin, [h, w], c.pads, pa.zero_point, phases);
            p.tap_offsets(c, cin, pw0.kpad)
        }
    });
    let quad_image = geo.as_ref().map_or(0, |p| p.quad_image_len(quads));
    let xq: &[u8] = match src {
        Source::U8(xq) => xq,
        Source::F32(..) => &[],
    };
    let phases: &[u8] = phases;
    // A dense panel's pixel offsets in the quad planes, and where an image and group's quad
    // planes start.
    let at = match &geo {
        Some(p) if dense => dense_offsets(p.wph, [oh, ow]),
        _ => Vec::new(),
    };
    let group_quads = |b: usize, gi: usize| geo.as_ref().map_or(0, |p| b * quad_image + gi * cq * p.plane * 4);
    let (dst_f32, dst_u8) = match out {
        QOut::F32(o) => (OutPtr(o.as_mut_ptr()), OutPtr(std::ptr::null_mut())),
        QOut::U8(o, _) => (OutPtr(std::ptr::null_mut()), OutPtr(o.as_mut_ptr())),
    };
    let panels_g = cout_g.div_ceil(MR);
    let ranges: Vec<Mutex<Lanes>> = (0..workers).map(|_| Mutex::new(Lanes::default())).collect();
    // Workers on cores that share no cache drop the lines of the output they are about to
    // write (`cpu::placement`); not a residual held in the output, which they read first.
    let evicting = workers > 1 && crate::cpu::placement::far(workers) && !matches!(residual, Some(Residual::Output(_)));
    crate::cpu::parallel::par_for(workers, |wi| {
        let (dst_f32, dst_u8) = (dst_f32, dst_u8);
        let mut held = bufs[wi].lock().unwrap_or_else(|e| e.into_inner());
        let (own_panel, acc, res_buf) = &mut *held;
        let mut range = Lanes::default();
        let mut segs = Vec::new();
        let mut affines = Vec::new();
        let mut cols: Vec<u8> = Vec::new();
        for t in tasks_of(wi, workers, tasks, row_chunks) {
            let (b, rest) = (t / (g * chunks * row_chunks), t % (g * chunks * row_chunks));
            let (gi, rest) = (rest / (chunks * row_chunks), rest % (chunks * row_chunks));
            let (ch, rc) = (rest / row_chunks, rest % row_chunks);
            // This task's output channels: a share of cout_g's MR-row panels.
            let (m0, m1) = ((share(panels_g, row_chunks, rc) * MR).min(cout_g), (share(panels_g, row_chunks, rc + 1) * MR).min(cout_g));
            let (blk0, blk1) = (share(total_blocks, chunks, ch), share(total_blocks, chunks, ch + 1));
            let v0 = blk0 * BLOCK;
            let cnt = (nv - v0).min((blk1 - blk0) * BLOCK);
            let blocks = blk1 - blk0;
            let pw = &packed[gi];
            // The map's last few pixels (a 7² map's 49th, a 14² one's last 4, a 2² map's
            // four) by GEMV on a kernel with one: a 16-pixel block costs four times the work
            // for four pixels. Same i32 sums, so the same outputs.
            let tail = cnt.saturating_sub(blocks.saturating_sub(1) * BLOCK);
            let (gemm_blocks, tail) = if kern.has_gemv() && blocks > 0 && tail <= GEMV_TAIL { (blocks - 1, tail) } else { (blocks, 0) };
            // A task of GEMV columns only (maps of a few pixels) packs no panel: its columns
            // are gathered below straight from where the panel would have been packed from.
            let panel_free = gemm_blocks == 0;
            match (&geo, &koff) {
                _ if in_place || panel_free => {}
                (_, Some(koff)) if dense => pack_quads_dense(simd, &phases[group_quads(b, gi)..], koff, &at, v0, cnt, pw.kpad, own_panel),
                (Some(p), Some(koff)) => {
                    let base = b * p.image_len + gi * cin_g * p.plane + v0;
                    pack_taps(simd, phases, base, koff, blocks, pw.kpad, own_panel);
                }
                _ => {
                    let xg = &xq[(b * cin + gi * cin_g) * h * w..(b * cin + (gi + 1) * cin_g) * h * w];
                    pack_pointwise(simd, xg, h * w, pw.k, v0, cnt, pw.kpad, own_panel);
                }
            }
            let panel: &[u8] = own_panel;
            // Each tail pixel's K column, gathered in the weights' K order from where the
            // kernel would have read it.
            cols.clear();
            cols.resize(tail * pw.kpad, 0);
            // Where this task's pixels start in the quad planes (the implicit GEMM's base).
            let quad_base = geo.as_ref().map_or(0, |p| b * quad_image + (gi * cq * p.plane + v0) * 4);
            let src: &[u8] = if in_place { phases } else { panel };
            for (j, col) in cols.chunks_exact_mut(pw.kpad).enumerate() {
                let q = gemm_blocks * BLOCK + j;
                if direct {
                    gather_column(c, pw, xq, [b * cin + gi * cin_g, cin_g], [h, w], [v0 + q, ow], pa.zero_point, col);
                    continue;
                }
                if panel_free && !in_place {
                    // The bytes the panel's column q would hold: `pack_quads_dense`,
                    // `pack_taps` and `pack_pointwise` read them from these places.
                    match (&geo, &koff) {
                        (_, Some(koff)) if dense => {
                            let from = group_quads(b, gi) + at[v0 + q] as usize;
                            for (g, x4) in col.chunks_exact_mut(4).enumerate() {
                                x4.copy_from_slice(&phases[from + koff[g]..from + koff[g] + 4]);
                            }
                        }
                        (Some(p), Some(koff)) => {
                            let base = b * p.image_len + gi * cin_g * p.plane + v0 + q;
                            for (x, &k) in col.iter_mut().zip(&koff[..pw.kpad]) {
                                *x = phases[base + k];
                            }
                        }
                        _ => {
                            // Rows past K are zeros, as in the packed panel.
                            let xg = &xq[(b * cin + gi * cin_g) * h * w..(b * cin + (gi + 1) * cin_g) * h * w];
                            for (x, row) in col.iter_mut().zip(xg.chunks_exact(h * w)) {
                                *x = row[v0 + q];
                            }
                        }
                    }
                    continue;
                }
                for (g, x4) in col.chunks_exact_mut(4).enumerate() {
                    let at = match &koff {
                        Some(koff) if in_place => quad_base + koff[g] + 4 * q,
                        _ => panel_index(pw.kpad, 4 * g, q),
                    };
                    x4.copy_from_slice(&src[at..at + 4]);
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
            if evicting {
                for co in m0..m1 {
                    let at = obase + co * npix + first;
                    debug_assert!(at + region <= out_len);
                    // SAFETY: channel co's pixels [first, first + region) of this task's
                    // image and group: inside the output (the asserted length); evicting reads
                    // no element and changes no memory.
                    unsafe {
                        if dst_u8.0.is_null() {
                            crate::cpu::evict::evict(std::slice::from_raw_parts(dst_f32.0.add(at) as *const f32, region));
                        } else {
                            crate::cpu::evict::evict(std::slice::from_raw_parts(dst_u8.0.add(at) as *const u8, region));
                        }
                    }
                }
            }
            for c0 in (m0..m1).step_by(ROWS_PER_CALL) {
                let c1 = (c0 + ROWS_PER_CALL).min(m1);
                match (&geo, &koff) {
                    _ if gemm_blocks == 0 => {}
                    (_, Some(koff)) if in_place && tiled => kern.run_rows_taps_tiles(pw, c0..c1, &phases[quad_base..], koff, gemm_blocks, acc),
                    (_, Some(koff)) if in_place => kern.run_rows_taps(pw, c0..c1, &phases[quad_base..], koff, gemm_blocks, acc, rs),
                    _ if tiled => kern.run_rows_tiles(pw, c0..c1, panel, gemm_blocks, acc),
                    _ => kern.run_rows(pw, c0..c1, panel, gemm_blocks, acc, rs),
                }
                if tail > 0 {
                    kern.gemv_cols(pw, c0..c1, &cols, tail, &mut acc[gemm_blocks * BLOCK..], rs);
                }
                // u8 codes out with ReLU or no activation, and no residual, one of u8 codes or
                // an f32 one: every channel row of the call in one pass.
                let rows_res = match residual {
                    None => Some((RowRes::None, QParams { scale: 1.0, zero_point: 0 })),
                    Some(Residual::U8(r, rq)) if res_in_requant => Some((RowRes::Own(&r[obase + c0 * npix + first..]), rq)),
                    Some(Residual::Output(rq)) if res_in_requant => Some((RowRes::InOutput, rq)),
                    Some(Residual::F32(r)) => Some((RowRes::F32(&r[obase + c0 * npix + first..]), QParams { scale: 1.0, zero_point: 0 })),
                    _ => None,
                };
                if let (Some(oq), Some((rres, rq)), true) = (out_q, rows_res, matches!(c.act, None | Some(Activation::Relu))) {
                    affines.clear();
                    affines.extend(affines_of(c, q, pw, [c0, c1], gi * cout_g, pa));
                    let at = obase + c0 * npix + first;
                    debug_assert!(at + (c1 - c0 - 1) * npix + region <= out_len);
                    // SAFETY: rows c0..c1 of this task's output: elements [at + r·npix, + region)
                    // of the u8 output, inside it (channel c0 + r of image b, this task's
                    // pixels) and this task's alone, as for the stores below.
                    let sums = if tiled { Sums::Tiles(rs) } else { Sums::Rows(rs) };
                    unsafe { requant_rows(simd, acc, sums, &affines, &segs, rres, rq, c.act.is_some(), oq, dst_u8.0.add(at), npix, region) };
                    continue;
                }
                debug_assert!(!tiled, "qconv2d: tiles of sums on a path that reads rows");
                // f32 out, a few columns of many channels (a small model's last conv before
                // its pooling): channel by channel within each column, without a call (and a
                // residual dequantized) per channel row. The same arithmetic per element as
                // `epilogue`: `((acc − corr)·mult + bias) + residual`, then the activation.
                if out_q.is_none() && !record && region <= GEMV_TAIL && c1 - c0 >= 16 {
                    affines.clear();
                    affines.extend(affines_of(c, q, pw, [c0, c1], gi * cout_g, pa));
                    for sg in &segs {
                        for j in 0..sg.len {
                            for (r, &(corr, mult, bias)) in affines.iter().enumerate() {
                                let at = obase + (c0 + r) * npix + first + sg.out + j;
                                let mut y = (acc[r * rs + sg.acc + j] - corr) as f32 * mult + bias;
                                match residual {
                                    Some(Residual::F32(rv)) => y += rv[at],
                                    Some(Residual::U8(codes, p)) => y += p.dequantize(codes[at]),
                                    _ => {}
                                }
                                y = match c.act {
                                    Some(Activation::Relu) => y.max(0.0),
                                    Some(act) => act.apply(y),
                                    None => y,
                                };
                                debug_assert!(at < out_len);
                                // SAFETY: element `at` of the f32 output: channel c0 + r of
                                // image b at one of this task's pixels, inside `out` and this
                                // task's alone (as for the stores below).
                                unsafe { *dst_f32.0.add(at) = y };
                            }
                        }
                    }
                    continue;
                }
                for co in c0..c1 {
                    let oc = gi * cout_g + co;
                    let at = obase + co * npix + first;
                    debug_assert!(at + region <= out_len);
                    let accs = &acc[(co - c0) * rs..(co - c0 + 1) * rs];
                    if let (true, Some(oq), Some(Residual::U8(_, rq) | Residual::Output(rq))) = (res_in_requant, out_q, residual) {
                        // SAFETY: as for the stores below: elements [at, at + region) of the
                        // u8 output, this task's alone; a residual in the output is read from
                        // them, each code before it is overwritten.
                        let bytes = unsafe { std::slice::from_raw_parts_mut(dst_u8.0.add(at), region) };
                        let codes = match residual {
                            Some(Residual::U8(r, _)) => ResCodes::Own(&r[at..at + region]),
                            _ => ResCodes::InOutput,
                        };
                        let (corr, mult, bias) = affine(c, q, pw, co, oc, pa);
                        requant_segs_codes(simd, accs, &segs, corr, mult, bias, codes, rq, c.act.is_some(), oq, bytes);
                        continue;
                    }
                    let res = match residual {
                        None => None,
                        Some(Residual::F32(r)) => Some(&r[at..at + region]),
                        Some(Residual::U8(r, p)) => {
                            dequantize_slice(simd, p, &r[at..at + region], &mut res_buf[..region]);
                            Some(&res_buf[..region])
                        }
                        Some(Residual::Output(p)) => {
                            // SAFETY: the u8 output's elements [at, at + region), which this
                            // task alone touches (see the stores below); read here, before
                            // the store below writes them, and not held past this statement.
                            let codes = unsafe { std::slice::from_raw_parts(dst_u8.0.add(at), region) };
                            dequantize_slice(simd, p, codes, &mut res_buf[..region]);
                            Some(&res_buf[..region])
                        }
                    };
                    match out_q {
                        None => {
                            // SAFETY: output elements [at, at + region) lie inside `out`
                            // (channel oc of image b, the pixels of this task; out_len was
                            // checked against the shape) and belong to this task only: tasks
                            // cover distinct images, groups, pixel ranges or channel ranges,
                            // and `out` outlives the parallel scope.
                            let orow = unsafe { std::slice::from_raw_parts_mut(dst_f32.0.add(at), region) };
                            epilogue(simd, c, q, pw, co, oc, pa, accs, &segs, res, orow);
                            if record {
                                range.add(simd, orow);
                            }
                        }
                        Some(oq) => {
                            // SAFETY: as above, for the u8 output.
                            let bytes = unsafe { std::slice::from_raw_parts_mut(dst_u8.0.add(at), region) };
                            requant_epilogue(simd, c, q, pw, co, oc, pa, oq, accs, &segs, res, bytes);
                        }
                    }
                }
            }
        }
        *ranges[wi].lock().unwrap_or_else(|e| e.into_inner()) = range;
    });
    let range = ranges.into_iter().map(|r| r.into_inner().unwrap_or_else(|e| e.into_inner())).fold(Lanes::default(), Lanes::merge);
    record.then(|| range.range())
}

/// The share of padding columns (per cent of the planes' virtual pixels) from which a
/// conv on quad planes packs dense panels rather than reading the planes in place:
/// the GEMM then skips those columns (a 7² map's 61 virtual pixels, 4 blocks, become 49: 3
/// blocks and a GEMV column) for a copy of its input per tap. ResNet-50's 7², 14² and 28²
/// 3×3 convs have 20, 12 and 6 %, its 56² ones 3 %; its stride-2 3×3 convs onto 7², 14² and
/// 28² 11, 6 and 3 % (a stride-2 phase plane has one padding column per row). ResNet-50 INT8 on Zen 4, the ways
/// alternating in one process: from 10 % 0.986–0.995 of the time at 2 threads (0.980 at 1),
/// from 5 % 0.988–0.992 (0.975), from 3 % 0.995–0.997 (0.978).
const DENSE_WASTE: usize = 5;

/// A task's last block runs as GEMV columns ([`crate::cpu::qgemm::Kernel::gemv_cols`])
/// when it holds at most this many (virtual) pixels, on a kernel with a GEMV form.
const GEMV_TAIL: usize = 4;

/// [`epilogue`] then quantization with the next layer's `oq`, into u8 codes: one pass for
/// ReLU or no activation, through an f32 row for the others (same values either way).
#[allow(clippy::too_many_arguments)]
#[inline]
fn requant_epilogue(simd: Simd, c: &Conv2d, q: &Int8, pw: &PackedWeights, co: usize, oc: usize, pa: QParams, oq: QParams, acc: &[i32], segs: &[Seg], res: Option<&[f32]>, out: &mut [u8]) {
    let relu = c.act == Some(Activation::Relu);
    if c.act.is_none() || relu {
        let (corr, mult, bias) = affine(c, q, pw, co, oc, pa);
        requant_segs(simd, acc, segs, corr, mult, bias, res, relu, oq, out);
        return;
    }
    let mut row = [0f32; 256];
    for sg in segs {
        for start in (0..sg.len).step_by(256) {
            let l = (sg.len - start).min(256);
            let (a, o) = (sg.acc + start, sg.out + start);
            let one = [Seg { acc: 0, out: 0, len: l }];
            epilogue(simd, c, q, pw, co, oc, pa, &acc[a..a + l], &one, res.map(|r| &r[o..o + l]), &mut row[..l]);
            quantize_slice(simd, oq, &row[..l], &mut out[o..o + l]);
        }
    }
}

/// Channel `oc`'s epilogue constants: the zero-point correction `za·Σw` (row `co` of its
/// group's weights), the scale `sa·sw` and the bias.
#[inline]
fn affine(c: &Conv2d, q: &Int8, pw: &PackedWeights, co: usize, oc: usize, pa: QParams) -> (i32, f32, f32) {
    let corr = i32::from(pa.zero_point) * pw.row_sums[co];
    (corr, pa.scale * q.weights.scales[oc], c.bias.as_ref().map_or(0.0, |b| b[oc]))
}

/// The im2col column of output pixel `p` (of maps `ow` wide) in the K order of `pw`, the
/// weights of one group, from `xq: [N·Cin][H][W]` u8 codes whose group's channels start at
/// plane `ch0` (`cin_g` of them): the quad-tap order ([`quad_group`]) where the weights were
/// packed for it, else channel-major with the taps inner (`ci·taps + t`). Taps in the padding
/// read the zero point `zp`, as the phase planes hold it there; k past the group's channels
/// (their weights are zero) keep what `col` holds.
fn gather_column(c: &Conv2d, pw: &PackedWeights, xq: &[u8], [ch0, cin_g]: [usize; 2], [h, w]: [usize; 2], [p, ow]: [usize; 2], zp: u8, col: &mut [u8]) {
    let [kh, kw] = c.kernel();
    let taps = kh * kw;
    let (oy, ox) = (p / ow.max(1), p % ow.max(1));
    let (cq, packing, hw) = (cin_g.div_ceil(4), pw.packing(), h * w);
    for t in 0..taps {
        let (ky, kx) = (t / kw, t % kw);
        // The tap's input pixel, or `None` in the padding.
        let iy = (oy * c.stride[0] + ky * c.dilation[0]).checked_sub(c.pads[0]).filter(|&y| y < h);
        let ix = (ox * c.stride[1] + kx * c.dilation[1]).checked_sub(c.pads[1]).filter(|&x| x < w);
        let at = iy.zip(ix).map(|(y, x)| y * w + x);
        let code = |ci: usize| at.map_or(zp, |a| xq[(ch0 + ci) * hw + a]);
        if pw.taps > 0 {
            for q in 0..cq {
                let g = quad_group(packing, q, t, cq, taps);
                for (j, x) in col[4 * g..4 * g + 4].iter_mut().enumerate().take(cin_g - 4 * q) {
                    *x = code(4 * q + j);
                }
            }
        } else {
            for ci in 0..cin_g {
                col[ci * taps + t] = code(ci);
            }
        }
    }
}

/// [`affine`] of rows `c0..c1` of a group's weights, whose first output channel is `oc0`: the
/// same constants from slices, without an index check per row (the constants of a 1×1 map's
/// 128 channels cost an eighth of its conv).
fn affines_of<'a>(c: &'a Conv2d, q: &'a Int8, pw: &'a PackedWeights, [c0, c1]: [usize; 2], oc0: usize, pa: QParams) -> impl Iterator<Item = (i32, f32, f32)> + 'a {
    let (sums, scales) = (&pw.row_sums[c0..c1], &q.weights.scales[oc0 + c0..oc0 + c1]);
    let bias = c.bias.as_deref().map(|b| &b[oc0 + c0..oc0 + c1]);
    let zp = i32::from(pa.zero_point);
    sums.iter().zip(scales).enumerate().map(move |(i, (&s, &w))| (zp * s, pa.scale * w, bias.map_or(0.0, |b| b[i])))
}

/// `(acc − za·Σw)·sa·sw + bias (+ residual)`, then the activation, for one output channel's
/// segments.
#[allow(clippy::too_many_arguments)]
#[inline]
fn epilogue(simd: Simd, c: &Conv2d, q: &Int8, pw: &PackedWeights, co: usize, oc: usize, pa: QParams, acc: &[i32], segs: &[Seg], res: Option<&[f32]>, out: &mut [f32]) {
    let (corr, mult, bias) = affine(c, q, pw, co, oc, pa);
    let relu = c.act == Some(Activation::Relu);
    dequant_segs(simd, acc, segs, corr, mult, bias, res, relu, out);
    match c.act {
        Some(act) if !relu => out.iter_mut().for_each(|v| *v = act.apply(*v)),
        _ => {}
    }
}

/// Where part `i` of `parts` (`i ≤ parts`) of `n` things starts: `⌈i·n / parts⌉`, so the parts
/// differ by at most one and the first is a largest (the first goes to the calling thread,
/// worker 0, which starts first; the other worker finished 2–16 µs later in most of ResNet-50's
/// INT8 convs on Zen 4 even with equal work).
fn share(n: usize, parts: usize, i: usize) -> usize {
    (i * n).div_ceil(parts.max(1))
}

/// Worker `w`'s tasks, so that from one layer to the next a worker keeps the same images and
/// the same part of each map, whose inputs its own core wrote: one contiguous run of them
/// ([`share`]; a chunk's blocks then add up evenly, 196 blocks in 8 chunks: 98 and 98), or,
/// where the workers split output channels (`row_chunks` of them, one per worker), the same
/// channels of every image. Against tasks dealt round by round (each worker every other
/// chunk), ResNet-50 INT8 on Zen 4 took 0.997–1.000 of the time with the two vCPUs on one L3
/// and 0.976 on two CCDs (the inputs of half its tasks came from the other one); pruned 0.998
/// and 0.977.
fn tasks_of(w: usize, workers: usize, tasks: usize, row_chunks: usize) -> std::iter::StepBy<std::ops::Range<usize>> {
    if row_chunks > 1 && row_chunks == workers {
        (w..tasks).step_by(workers)
    } else {
        (share(tasks, workers, w)..share(tasks, workers, w + 1)).step_by(1)
    }
}

/// How each (image, group) is cut into tasks: `(pixel chunks, channel chunks)`.
///
/// Normally by pixels: enough chunks that each fits the panel target ([`PANEL_TARGET`], or
/// [`SMALL_PANEL_TARGET`] for small weights), at least one per worker,
/// and, while there are only a few, a count that gives every worker the same number of tasks
/// (chunks then take `total_blocks / chunks` blocks each, give or take one: [`share`]). With few pixel
/// blocks and many channels (ResNet's 7² and 14² stages: up to 8 blocks per worker) the
/// workers split output channels instead, so each streams only its share of the weights and
/// reuses every weight row across all blocks. Each then packs all the blocks, but a 14² map's
/// 13 blocks no longer split 6 + 7 (ResNet-50 INT8 −0.3 to −1.4 % as a whole, pruned or not;
/// splitting pixels here instead, Zen 4, 2026-12-05: 1.035 of the time with the vCPUs on one
/// L3, 0.99 on two).
fn work_split(total_blocks: usize, nb_max: usize, per_image: usize, cout_g: usize, threads: usize) -> (usize, usize) {
    let threads = threads.max(1);
    if per_image * total_blocks <= 8 * threads && cout_g >= 16 * threads && total_blocks <= nb_max {
        return (1, threads);
    }
    let mut chunks = total_blocks.div_ceil(nb_max).max(threads.div_ceil(per_image)).min(total_blocks).max(1);
    while (per_image * chunks) % threads != 0 && per_image * chunks < 8 * threads && chunks < total_blocks {
        chunks += 1;
    }
    (chunks, 1)
}

#[cfg(test)]
mod tests {
    use super::{share, tasks_of};

    /// Parts from `share` cover `0..n` in order and differ by at most one, the first a largest.
    #[test]
    fn shares_cover_everything_larger_first() {
        for n in 0..60 {
            for parts in 1..10 {
                let sizes: Vec<usize> = (0..parts).map(|i| share(n, parts, i + 1) - share(n, parts, i)).collect();
                assert_eq!((share(n, parts, 0), share(n, parts, parts)), (0, n), "n {n} parts {parts}");
                let (lo, hi) = (sizes.iter().copied().min().unwrap_or(0), sizes.iter().copied().max().unwrap_or(0));
                assert!(hi - lo <= 1 && sizes[0] == hi, "n {n} parts {parts}: {sizes:?}");
            }
        }
    }

    /// Every task goes to exactly one worker: in one run each, where the workers split pixels
    /// (`share`'s chunks then add up evenly, 196 blocks in 8 chunks: 98 and 98), or the same
    /// channel chunk of every image, where they split channels.
    #[test]
    fn tasks_go_once_and_evenly() {
        for workers in 1..5 {
            for tasks in 0..40 {
                let mut all: Vec<usize> = (0..workers).flat_map(|w| tasks_of(w, workers, tasks, 1)).collect();
                assert_eq!(all, (0..tasks).collect::<Vec<_>>(), "workers {workers} tasks {tasks}");
                let images = tasks / workers;
                for w in 0..workers {
                    assert!(tasks_of(w, workers, images * workers, workers).all(|t| t % workers == w), "workers {workers}: channel chunk");
                }
                all = (0..workers).flat_map(|w| tasks_of(w, workers, images * workers, workers)).collect();
                all.sort_unstable();
                assert_eq!(all, (0..images * workers).collect::<Vec<_>>(), "workers {workers} images {images}");
            }
        }
        let blocks = |w: usize| tasks_of(w, 2, 8, 1).map(|ch| share(196, 8, ch + 1) - share(196, 8, ch)).sum::<usize>();
        assert_eq!((blocks(0), blocks(1)), (98, 98));
    }
}
