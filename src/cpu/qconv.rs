//! INT8 convolution and fully connected layers over NCHW f32 tensors.
//!
//! Per call: the input is quantized once to u8 (`[N, Cin, H, W]`, static or dynamic
//! parameters); output pixels are split into panels of whole [`BLOCK`]s; each worker packs its
//! panel straight from the u8 input (im2col with zero-point padding, in the qgemm panel
//! layout), runs the selected qgemm kernel into an i32 tile, and applies the epilogue
//! `y = (acc − za·Σw[c])·sa·sw[c] + bias[c] (+ residual)`, then the activation, writing f32.

use rayon::prelude::*;

use crate::cpu::detect;
use crate::cpu::qgemm::{self, panel_len, PackedWeights, BLOCK};
use crate::graph::{ActQuant, QConv2d, QConvTranspose2d, QLinear};
use crate::quant::params::{min_max, QParams};

/// Target panel size in bytes (keeps a worker's panel and tile in L2).
const PANEL_TARGET: usize = 192 * 1024;

/// Reusable byte and i32 buffers for the INT8 layers.
#[derive(Default, Debug)]
pub struct QScratch {
    pub u8: Vec<u8>,
    pub i32: Vec<i32>,
}

/// The kernel of the selected ISA (the session checked `KESTREL_ISA` when it was built).
fn kernel() -> qgemm::Kernel {
    detect::selected().and_then(qgemm::kernel).unwrap_or(qgemm::Kernel::Scalar)
}

/// The input parameters for this call.
pub fn input_params(q: ActQuant, x: &[f32]) -> QParams {
    match q {
        ActQuant::Static(p) => p,
        ActQuant::Dynamic => {
            let (lo, hi) = min_max(x);
            QParams::from_range(lo, hi)
        }
    }
}

/// Quantizes `x` into `out` in parallel chunks.
fn quantize_par(p: QParams, x: &[f32], out: &mut [u8]) {
    out.par_chunks_mut(16 * 1024).zip(x.par_chunks(16 * 1024)).for_each(|(o, x)| quantize_chunk(p, x, o));
}

crate::cpu::simd::multiversion! {
    /// `out[i] = quantize(x[i])`.
    fn quantize_chunk(p: QParams, x: &[f32], out: &mut [u8]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = p.quantize(v);
        }
    }
}

crate::cpu::simd::multiversion! {
    /// `out = (acc − corr)·mult + bias (+ res)`, then ReLU when `relu`.
    fn dequant_row(acc: &[i32], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, out: &mut [f32]) {
        match (res, relu) {
            (Some(r), true) => {
                for ((o, &a), &rv) in out.iter_mut().zip(acc).zip(r) {
                    *o = ((a - corr) as f32 * mult + bias + rv).max(0.0);
                }
            }
            (Some(r), false) => {
                for ((o, &a), &rv) in out.iter_mut().zip(acc).zip(r) {
                    *o = (a - corr) as f32 * mult + bias + rv;
                }
            }
            (None, true) => {
                for (o, &a) in out.iter_mut().zip(acc) {
                    *o = ((a - corr) as f32 * mult + bias).max(0.0);
                }
            }
            (None, false) => {
                for (o, &a) in out.iter_mut().zip(acc) {
                    *o = (a - corr) as f32 * mult + bias;
                }
            }
        }
    }
}

#[derive(Clone, Copy)]
struct OutPtr(*mut f32);
// SAFETY: workers write pairwise-disjoint output elements (distinct image, group or pixel
// range), and the output slice outlives the parallel scope.
unsafe impl Send for OutPtr {}
unsafe impl Sync for OutPtr {}

/// `out[N, Cout, OH, OW]` from `x[N, Cin, H, W]`.
#[allow(clippy::too_many_arguments)]
pub fn qconv2d(q: &QConv2d, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4], s: &mut QScratch, threads: usize) {
    let c = &q.conv;
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups;
    let (cin_g, cout_g) = (cin / g, cout / g);
    let npix = oh * ow;
    let pa = input_params(q.input, x);
    let pw0 = &q.packed[0];
    // Blocks per panel: at most what fits PANEL_TARGET, and few enough that every worker
    // gets the same number of panels when there are only a handful.
    let total_blocks = npix.div_ceil(BLOCK);
    let nb_max = (PANEL_TARGET / (pw0.kpad * BLOCK)).clamp(1, total_blocks);
    let per_round = threads.max(1).div_ceil(n * g).max(1);
    let rounds = total_blocks.div_ceil(nb_max * per_round).max(1);
    let nb = total_blocks.div_ceil(rounds * per_round).clamp(1, nb_max);
    let chunks = npix.div_ceil(nb * BLOCK);
    let tasks = n * g * chunks;
    let workers = threads.max(1).min(tasks);
    let plen = panel_len(pw0.kpad, nb);
    let tile = pw0.mpad * nb * BLOCK;
    // Per worker: the panel, then the row-major im2col it is interleaved from.
    let own = if q.in_u8 { 0 } else { x.len() };
    let need_u8 = own + workers * 2 * plen;
    if s.u8.len() < need_u8 {
        s.u8.resize(need_u8, 0);
    }
    if s.i32.len() < workers * tile {
        s.i32.resize(workers * tile, 0);
    }
    let (xq, panels) = s.u8.split_at_mut(own);
    let xq: &[u8] = if q.in_u8 {
        // The producer wrote u8 codes into the first x.len() bytes of this f32 buffer.
        &bytemuck::cast_slice::<f32, u8>(x)[..x.len()]
    } else {
        quantize_par(pa, x, xq);
        xq
    };
    let kern = kernel();
    let out_q = q.out_q;
    let dst = OutPtr(out.as_mut_ptr());
    let out_len = out.len();
    panels.par_chunks_mut(2 * plen).zip(s.i32.par_chunks_mut(tile)).take(workers).enumerate().for_each(|(wi, (buf, acc))| {
        let (panel, col) = buf.split_at_mut(plen);
        let dst = dst;
        let mut t = wi;
        while t < tasks {
            let (b, rest) = (t / (g * chunks), t % (g * chunks));
            let (gi, ch) = (rest / chunks, rest % chunks);
            let p0 = ch * nb * BLOCK;
            let cnt = (npix - p0).min(nb * BLOCK);
            let blocks = cnt.div_ceil(BLOCK);
            let pw = &q.packed[gi];
            let xg = &xq[(b * cin + gi * cin_g) * h * w..(b * cin + (gi + 1) * cin_g) * h * w];
            pack_conv_panel(q, xg, [h, w], ow, p0, cnt, pw.kpad, pa.zero_point, col, panel);
            let rs = blocks * BLOCK;
            kern.run(pw, panel, blocks, acc, rs);
            let obase = (b * cout + gi * cout_g) * npix + p0;
            debug_assert!(obase + (cout_g - 1) * npix + cnt <= out_len);
            for co in 0..cout_g {
                let oc = gi * cout_g + co;
                let res = residual.map(|r| &r[obase + co * npix..obase + co * npix + cnt]);
                match out_q {
                    None => {
                        // SAFETY: row `co` of this task covers output elements
                        // [obase + co·npix, +cnt), inside `out` and disjoint from every other
                        // task's (distinct image, group or pixel range); `out` outlives the scope.
                        let orow = unsafe { std::slice::from_raw_parts_mut(dst.0.add(obase + co * npix), cnt) };
                        epilogue_row(q, pw, co, oc, pa, &acc[co * rs..co * rs + cnt], res, orow);
                    }
                    Some(oq) => {
                        // u8 codes go to byte offsets equal to the element indices, which lie in
                        // the first out_len bytes of the buffer; tasks' byte ranges are disjoint
                        // for the same reason as above.
                        let mut row = [0f32; 256];
                        for start in (0..cnt).step_by(256) {
                            let len = (cnt - start).min(256);
                            let r2 = res.map(|r| &r[start..start + len]);
                            epilogue_row(q, pw, co, oc, pa, &acc[co * rs + start..co * rs + start + len], r2, &mut row[..len]);
                            // SAFETY: [obase + co·npix + start, +len) bytes lie within the first
                            // out_len bytes of `out` (4·out_len bytes long) and belong to this task only.
                            let bytes = unsafe { std::slice::from_raw_parts_mut((dst.0 as *mut u8).add(obase + co * npix + start), len) };
                            quantize_chunk(oq, &row[..len], bytes);
                        }
                    }
                }
            }
            t += workers;
        }
    });
}

/// `(acc − za·Σw)·sa·sw + bias (+ residual)`, then the activation, for one output row.
#[allow(clippy::too_many_arguments)]
#[inline]
fn epilogue_row(q: &QConv2d, pw: &PackedWeights, co: usize, oc: usize, pa: QParams, acc: &[i32], res: Option<&[f32]>, out: &mut [f32]) {
    let corr = i32::from(pa.zero_point) * pw.row_sums[co];
    let mult = pa.scale * q.weights.scales[oc];
    let bias = q.conv.bias.as_ref().map_or(0.0, |b| b[oc]);
    let relu = q.conv.act == Some(crate::graph::Activation::Relu);
    dequant_row(acc, corr, mult, bias, res, relu, out);
    match q.conv.act {
        Some(act) if !relu => out.iter_mut().for_each(|v| *v = act.apply(*v)),
        _ => {}
    }
}

/// im2col of pixels `p0..p0+cnt` of one group's u8 input into a qgemm panel; taps outside
/// the image read the zero point (the quantized 0.0). Two steps: row-major im2col into `col`
/// (`[Kpad][blocks·16]`, contiguous runs copied whole), then a 4×16 byte interleave per
/// (block, k-group) into the panel layout.
#[allow(clippy::too_many_arguments)]
fn pack_conv_panel(q: &QConv2d, xq: &[u8], [h, w]: [usize; 2], ow: usize, p0: usize, cnt: usize, kpad: usize, zp: u8, col: &mut [u8], panel: &mut [u8]) {
    let c = &q.conv;
    let [kh, kw] = c.kernel();
    let kdim = c.weight.shape()[1] * kh * kw;
    let blocks = cnt.div_ceil(BLOCK);
    let cs = blocks * BLOCK;
    if [kh, kw] == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4] {
        pack_pointwise(xq, h * w, kdim, p0, cnt, kpad, panel);
        return;
    }
    let col = &mut col[..kpad * cs];
    let (pt, pl) = (c.pads[0] as isize, c.pads[1] as isize);
    for (k, dst) in col.chunks_mut(cs).enumerate() {
        if k >= kdim {
            dst.fill(0);
            continue;
        }
        let (ci, ky, kx) = (k / (kh * kw), (k / kw) % kh, k % kw);
        let plane = &xq[ci * h * w..(ci + 1) * h * w];
        // Walk the output rows the pixel range touches.
        let mut p = p0;
        while p < p0 + cnt {
            let (oy, oxa) = (p / ow, p % ow);
            let oxb = ow.min(oxa + (p0 + cnt - p));
            let run = &mut dst[p - p0..p - p0 + (oxb - oxa)];
            let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - pt;
            let x0 = (oxa * c.stride[1] + kx * c.dilation[1]) as isize - pl;
            fill_run(plane, w, h, iy, x0, c.stride[1], zp, run);
            p += oxb - oxa;
        }
    }
    for b in 0..blocks {
        for k4 in 0..kpad / 4 {
            let src = |j: usize| &col[(k4 * 4 + j) * cs + b * BLOCK..(k4 * 4 + j) * cs + (b + 1) * BLOCK];
            let dst = &mut panel[b * kpad * BLOCK + k4 * 4 * BLOCK..b * kpad * BLOCK + (k4 + 1) * 4 * BLOCK];
            interleave4x16([src(0), src(1), src(2), src(3)], dst);
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

/// One run of output pixels of one `col` row: input row `iy`, first column `x0`, stride `sw`.
#[inline]
#[allow(clippy::too_many_arguments)]
fn fill_run(plane: &[u8], w: usize, h: usize, iy: isize, x0: isize, sw: usize, zp: u8, run: &mut [u8]) {
    let n = run.len();
    if iy < 0 || iy >= h as isize {
        run.fill(zp);
        return;
    }
    let src = &plane[iy as usize * w..(iy as usize + 1) * w];
    if sw == 1 {
        let lo = (-x0).clamp(0, n as isize) as usize;
        let hi = (w as isize - x0).clamp(lo as isize, n as isize) as usize;
        run[..lo].fill(zp);
        run[lo..hi].copy_from_slice(&src[(lo as isize + x0) as usize..(hi as isize + x0) as usize]);
        run[hi..].fill(zp);
    } else {
        for (i, d) in run.iter_mut().enumerate() {
            let ix = (i * sw) as isize + x0;
            *d = if ix >= 0 && ix < w as isize { src[ix as usize] } else { zp };
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
    let nb_max = (PANEL_TARGET / (pw.kpad * BLOCK)).clamp(1, total_blocks);
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

/// `out[N, O]` from `x[N, I]`.
pub fn qlinear(q: &QLinear, x: &[f32], n: usize, out: &mut [f32], s: &mut QScratch) {
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
    kernel().run(pw, panel, blocks, &mut s.i32, rs);
    for c in 0..o {
        let corr = i32::from(pa.zero_point) * pw.row_sums[c];
        let mult = pa.scale * q.weights.scales[c];
        let bias = q.linear.bias.as_ref().map_or(0.0, |b| b[c]);
        for p in 0..n {
            out[p * o + c] = (s.i32[c * rs + p] - corr) as f32 * mult + bias;
        }
    }
}
