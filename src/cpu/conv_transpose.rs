//! FP32 transposed convolution as GEMM plus col2im over NCHW.
//!
//! For each image and group: `col[Cout_g·kh·kw, H·W] = W_gᵀ × x[Cin_g, H·W]`, with `W_g` the
//! `[Cin_g, Cout_g·kh·kw]` slice of the `[Cin, Cout/g, kh, kw]` weight, then every column
//! entry is scattered into the output at `oy = iy·s − pad + ky·d`. The output starts as bias.
//! On AVX-512 the GEMM is a 1×1 conv with `Cout·kh·kw` output channels on kestrel's FP32
//! kernel ([`pack`], [`conv_transpose2d_packed`]: `Wᵀ` packed once, the input read in place;
//! the prepare stage's choice, as measured in BENCHMARKS.md), else the `gemm` crate's
//! ([`conv_transpose2d`]). Over one, three or more spatial
//! axes ([`conv_transpose_nd`]) the same scatter is a plain loop.

use rayon::prelude::*;

use super::sgemm;
use super::sconv;
use crate::graph::{Conv2d, ConvTranspose2d, ConvTransposeNd};
use crate::tensor::Tensor;

/// A transposed conv's GEMM as a 1×1 conv on kestrel's FP32 kernel: output channel
/// `gi·Cout_g·kh·kw + (co·kh + ky)·kw + kx` (the rows of group `gi`'s `col`) is
/// `Σ_ci W[gi·Cin_g + ci][co][ky][kx] · x[gi·Cin_g + ci]`, no bias (col2im adds it).
#[derive(Clone, Debug)]
pub struct Packed {
    pub kernel: sgemm::Kernel,
    conv: Conv2d,
    packed: Vec<sgemm::PackedA>,
}

impl Packed {
    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        self.packed.iter().map(sgemm::PackedA::bytes).sum()
    }
}

/// `c`'s GEMM packed for `kernel` ([`Packed`]); `None` for a weight that is not
/// `[Cin, Cout/g, kh, kw]` with `Cin` a multiple of the groups.
pub fn pack(kernel: sgemm::Kernel, c: &ConvTranspose2d) -> Option<Packed> {
    let s = c.weight.shape();
    let g = c.groups.max(1);
    let [cin, cout_g, kh, kw] = *s else { return None };
    if cin % g != 0 {
        return None;
    }
    let (cin_g, kk) = (cin / g, kh * kw);
    let rows = cout_g * kk;
    let w = c.weight.data();
    // Row r of group gi is column r of W_g (`[Cin_g][Cout_g·kh·kw]`).
    let mut t = vec![0f32; g * rows * cin_g];
    for gi in 0..g {
        for ci in 0..cin_g {
            let src = &w[(gi * cin_g + ci) * rows..(gi * cin_g + ci + 1) * rows];
            for (r, &v) in src.iter().enumerate() {
                t[(gi * rows + r) * cin_g + ci] = v;
            }
        }
    }
    let conv = Conv2d::new(Tensor::new(vec![g * rows, cin_g, 1, 1], t).ok()?, 1, 0, g);
    let packed = sconv::pack(kernel, &conv);
    Some(Packed { kernel, conv, packed })
}

/// Scratch elements [`conv_transpose2d_packed`] needs besides `col` ([`scratch_len`]): the 1×1
/// conv's, for one image of `xs`.
pub fn packed_scratch_len(p: &Packed, xs: [usize; 4], threads: usize) -> usize {
    let [_, cin, h, w] = xs;
    let rows = p.conv.weight.shape()[0];
    sconv::scratch_len(p.kernel, &p.conv, [1, cin, h, w], [1, rows, h, w], threads)
}

/// [`conv_transpose2d`] with the GEMM on kestrel's FP32 kernel ([`pack`]): `col` (at least
/// [`scratch_len`] elements) takes one image's columns at a time, `scratch` the conv's own.
#[allow(clippy::too_many_arguments)]
pub fn conv_transpose2d_packed(c: &ConvTranspose2d, p: &Packed, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4], col: &mut Vec<f32>, scratch: &mut Vec<f32>, threads: usize) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let g = c.groups.max(1);
    let cout_g = cout / g;
    let [kh, kw] = c.kernel();
    let rows = cout_g * kh * kw;
    if cout_g == 0 {
        return;
    }
    let need = packed_cols_len(c, [h, w]);
    if col.len() < need {
        col.resize(need, 0.0);
    }
    let col = &mut col[..need];
    for b in 0..n {
        let xb = &x[b * cin * h * w..(b + 1) * cin * h * w];
        sconv::conv2d(p.kernel, &p.conv, &p.packed, xb, [1, cin, h, w], None, col, [1, g * rows, h, w], scratch, threads);
        let ob = &mut out[b * cout * oh * ow..(b + 1) * cout * oh * ow];
        for (gi, og) in ob.chunks_mut(cout_g * oh * ow).enumerate() {
            scatter_group(c, &col[gi * rows * h * w..(gi + 1) * rows * h * w], [h, w], gi * cout_g, og, [oh, ow]);
        }
    }
}

/// Elements of [`conv_transpose2d_packed`]'s `col`: one image's columns, every group.
pub fn packed_cols_len(c: &ConvTranspose2d, in_hw: [usize; 2]) -> usize {
    c.groups.max(1) * scratch_len(c, in_hw)
}

/// One group's output planes `og` (channels `oc0..`, `[Cout_g][OH·OW]`): each channel's bias
/// plus its `[kh·kw, H·W]` block of the group's columns `col`, scattered ([`col2im_biased`]),
/// the planes in parallel.
fn scatter_group(c: &ConvTranspose2d, col: &[f32], [h, w]: [usize; 2], oc0: usize, og: &mut [f32], [oh, ow]: [usize; 2]) {
    let [kh, kw] = c.kernel();
    let block = kh * kw * h * w;
    if oh * ow == 0 {
        return;
    }
    og.par_chunks_mut(oh * ow).enumerate().with_min_len(super::min_items(oh * ow)).for_each(|(co, plane)| {
        let bias = c.bias.as_ref().map_or(0.0, |bias| bias[oc0 + co]);
        col2im_biased(c, &col[co * block..(co + 1) * block], [h, w], bias, plane, [oh, ow]);
    });
}

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
            scatter_group(c, col, [h, w], gi * cout_g, &mut ob[gi * cout_g * oh * ow..(gi + 1) * cout_g * oh * ow], [oh, ow]);
        }
    }
}

/// One output channel's plane: `bias` plus its `[kh·kw, H·W]` column block scattered
/// ([`col2im_plane`]). Where the taps tile the output exactly (kernel = stride, no dilation,
/// padding or output padding: UNet's 2×2 stride-2 up-convs) each output is written once, as
/// `bias + v`, the value the scatter adds onto the bias (16 → 8 channels at 32² → 64²: 0.054
/// against ORT's 0.037 ms in blobs-unet at batch 1 through the scatter).
pub(crate) fn col2im_biased(c: &ConvTranspose2d, col: &[f32], [h, w]: [usize; 2], bias: f32, plane: &mut [f32], [oh, ow]: [usize; 2]) {
    let [kh, kw] = c.kernel();
    let exact = c.stride == [kh, kw] && c.dilation == [1, 1] && c.pads == [0; 4] && oh == kh * h && ow == kw * w;
    if !exact {
        plane.fill(bias);
        col2im_plane(c, col, [h, w], plane, [oh, ow]);
        return;
    }
    let hw = h * w;
    for iy in 0..h {
        for ky in 0..kh {
            let drow = &mut plane[(iy * kh + ky) * ow..(iy * kh + ky + 1) * ow];
            let tap = |kx: usize| &col[(ky * kw + kx) * hw + iy * w..(ky * kw + kx) * hw + (iy + 1) * w];
            if kw == 2 {
                for ((d, &a), &b) in drow.chunks_exact_mut(2).zip(tap(0)).zip(tap(1)) {
                    d[0] = bias + a;
                    d[1] = bias + b;
                }
            } else {
                for kx in 0..kw {
                    for (ix, &v) in tap(kx).iter().enumerate() {
                        drow[ix * kw + kx] = bias + v;
                    }
                }
            }
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

/// `y = conv_transpose(x) + bias` over any number of spatial axes ([`ConvTransposeNd`]):
/// `x: [N, Cin, D1, …]` into `out: [N, Cout, O1, …]`, each input element scattered through
/// its kernel taps (the plain loop: 1-D and 3-D transposed convs are rare in CNNs).
pub fn conv_transpose_nd(c: &ConvTransposeNd, x: &[f32], xs: &[usize], out: &mut [f32], os: &[usize]) {
    let ws = c.weight.shape();
    let k = ws.len() - 2;
    let (cin, cout) = (xs[1], os[1]);
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let (in_plane, out_plane) = (xs[2..].iter().product::<usize>(), os[2..].iter().product::<usize>());
    let taps: usize = ws[2..].iter().product();
    let w = c.weight.data();
    out.par_chunks_mut(cout * out_plane).zip(x.par_chunks(cin * in_plane)).with_min_len(super::parallel::min_len(1)).for_each(|(ob, xb)| {
        for (co, plane) in ob.chunks_mut(out_plane).enumerate() {
            plane.fill(c.bias.as_ref().map_or(0.0, |b| b[co]));
        }
        let mut at = vec![0usize; k];
        for i in 0..in_plane {
            let mut t = vec![0usize; k];
            for tap in 0..taps {
                // Output position of input position `at` through tap `t`, if inside the output.
                let mut o = Some(0usize);
                for a in 0..k {
                    let p = (at[a] * c.stride[a] + t[a] * c.dilation[a]).checked_sub(c.pads[a]).filter(|&p| p < os[2 + a]);
                    o = o.zip(p).map(|(o, p)| o * os[2 + a] + p);
                }
                if let Some(o) = o {
                    for ci in 0..cin {
                        let g = ci / cin_g;
                        let v = xb[ci * in_plane + i];
                        for cg in 0..cout_g {
                            ob[(g * cout_g + cg) * out_plane + o] += v * w[(ci * cout_g + cg) * taps + tap];
                        }
                    }
                }
                for a in (0..k).rev() {
                    t[a] += 1;
                    if t[a] < ws[2 + a] {
                        break;
                    }
                    t[a] = 0;
                }
            }
            for a in (0..k).rev() {
                at[a] += 1;
                if at[a] < xs[2 + a] {
                    break;
                }
                at[a] = 0;
            }
        }
    });
}
