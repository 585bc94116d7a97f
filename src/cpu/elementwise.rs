//! Elementwise and channel-wise ops over NCHW: broadcast Add/Mul/Sub/Div, activations, BatchNorm as
//! a per-channel affine, Softmax, Concat, reductions, InstanceNorm and seeded Dropout.

use rayon::prelude::*;

use crate::graph::{Activation, Reduce, ReduceKind};

const CHUNK: usize = 16 * 1024;

/// Binary op kinds with numpy broadcasting.
#[derive(Clone, Copy, Debug)]
pub enum Binary {
    Add,
    Mul,
    Sub,
    Div,
    Pow,
    PRelu,
}

impl Binary {
    #[inline(always)]
    fn apply(self, a: f32, b: f32) -> f32 {
        match self {
            Binary::Add => a + b,
            Binary::Mul => a * b,
            Binary::Sub => a - b,
            Binary::Div => a / b,
            Binary::Pow => a.powf(b),
            Binary::PRelu => {
                if a < 0.0 {
                    a * b
                } else {
                    a
                }
            }
        }
    }
}

/// Row-major strides of `shape` padded on the left to `rank`, zero where the dim broadcasts.
fn broadcast_strides(shape: &[usize], out: &[usize]) -> Vec<usize> {
    let pad = out.len() - shape.len();
    let mut strides = vec![0; out.len()];
    let mut acc = 1;
    for i in (0..shape.len()).rev() {
        strides[i + pad] = if shape[i] == 1 && out[i + pad] != 1 { 0 } else { acc };
        acc *= shape[i];
    }
    strides
}

/// `out = a ∘ b` with numpy broadcasting to `os`.
pub fn binary(op: Binary, a: &[f32], as_: &[usize], b: &[f32], bs: &[usize], out: &mut [f32], os: &[usize]) {
    if as_ == os && bs == os {
        out.par_chunks_mut(CHUNK).zip(a.par_chunks(CHUNK).zip(b.par_chunks(CHUNK))).with_min_len(super::parallel::min_len(1)).for_each(|(o, (a, b))| {
            for ((o, a), b) in o.iter_mut().zip(a).zip(b) {
                *o = op.apply(*a, *b);
            }
        });
        return;
    }
    // Per-channel operand: `[N, C, H, W] ∘ [C, 1, 1]` and the like.
    if as_ == os && os.len() == 4 && bs.iter().product::<usize>() == os[1] && bs.len() >= 3 && bs[bs.len() - 2..] == [1, 1] {
        let hw = os[2] * os[3];
        out.par_chunks_mut(hw).zip(a.par_chunks(hw)).enumerate().with_min_len(super::min_items(hw)).for_each(|(i, (o, a))| {
            let s = b[i % os[1]];
            for (o, a) in o.iter_mut().zip(a) {
                *o = op.apply(*a, s);
            }
        });
        return;
    }
    binary_general(op, a, as_, b, bs, out, os);
}

/// The plain broadcasting loop, used for odd shapes and as the reference twin.
pub fn binary_general(op: Binary, a: &[f32], as_: &[usize], b: &[f32], bs: &[usize], out: &mut [f32], os: &[usize]) {
    let sa = broadcast_strides(as_, os);
    let sb = broadcast_strides(bs, os);
    let mut idx = vec![0usize; os.len()];
    for o in out.iter_mut() {
        let (mut ia, mut ib) = (0, 0);
        for d in 0..os.len() {
            ia += idx[d] * sa[d];
            ib += idx[d] * sb[d];
        }
        *o = op.apply(a[ia], b[ib]);
        for d in (0..os.len()).rev() {
            idx[d] += 1;
            if idx[d] < os[d] {
                break;
            }
            idx[d] = 0;
        }
    }
}

/// `out = act(x)`.
pub fn activation(act: Activation, x: &[f32], out: &mut [f32]) {
    out.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).with_min_len(super::parallel::min_len(1)).for_each(|(o, x)| {
        for (o, x) in o.iter_mut().zip(x) {
            *o = act.apply(*x);
        }
    });
}

/// `out[n, c, ..] = x[n, c, ..] * scale[c] + shift[c]` with `inner` elements per (n, c).
pub fn channel_affine(x: &[f32], channels: usize, inner: usize, scale: &[f32], shift: &[f32], out: &mut [f32]) {
    let inner = inner.max(1);
    out.par_chunks_mut(inner).zip(x.par_chunks(inner)).enumerate().with_min_len(super::min_items(inner)).for_each(|(i, (o, x))| {
        let c = i % channels;
        for (o, x) in o.iter_mut().zip(x) {
            *o = x * scale[c] + shift[c];
        }
    });
}

/// Softmax along `axis` of `shape`.
pub fn softmax(x: &[f32], shape: &[usize], axis: usize, out: &mut [f32]) {
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    for o in 0..outer {
        for i in 0..inner {
            let at = |k: usize| o * len * inner + k * inner + i;
            let m = (0..len).map(|k| x[at(k)]).fold(f32::NEG_INFINITY, f32::max);
            let mut sum = 0.0;
            for k in 0..len {
                let e = (x[at(k)] - m).exp();
                out[at(k)] = e;
                sum += e;
            }
            for k in 0..len {
                out[at(k)] /= sum;
            }
        }
    }
}

/// Output elements per piece of a parallel [`concat()`]; outputs smaller than two pieces are
/// copied on the calling thread.
const CONCAT_PIECE: usize = 1 << 14;

/// Concatenates `parts` (each with its shape) along `axis` into `out`: the output, in order,
/// is `outer` rows of each part's block in turn. With `threads > 1` an output of at least two
/// [`CONCAT_PIECE`]s is copied in pieces on the workers (a UNet's skip concats are 0.5–16 MiB:
/// blobs-unet's at batch 16 ran at 1.3–1.5× ORT's time on one thread).
pub fn concat(parts: &[(&[f32], &[usize])], axis: usize, out: &mut [f32], threads: usize) {
    let outer: usize = parts[0].1[..axis].iter().product();
    let blocks: Vec<usize> = parts.iter().map(|(_, shape)| shape[axis..].iter().product()).collect();
    let row: usize = blocks.iter().sum();
    let total = (outer * row).min(out.len());
    // Copies output elements `pos..pos + dst.len()` into `dst`: each run lies in one part's
    // block of one row.
    let fill = |mut pos: usize, dst: &mut [f32]| {
        let mut d = 0;
        while d < dst.len() {
            let (o, mut r) = (pos / row, pos % row);
            let mut p = 0;
            while r >= blocks[p] {
                r -= blocks[p];
                p += 1;
            }
            let n = (blocks[p] - r).min(dst.len() - d);
            dst[d..d + n].copy_from_slice(&parts[p].0[o * blocks[p] + r..][..n]);
            d += n;
            pos += n;
        }
    };
    if threads <= 1 || total < 2 * CONCAT_PIECE {
        fill(0, &mut out[..total]);
        return;
    }
    crate::cpu::parallel::par_chunks_mut(&mut out[..total], CONCAT_PIECE, |i, piece| fill(i * CONCAT_PIECE, piece));
}

/// `out = reduce(x)` over `r.axes` of `x: xs` (`out` holds the kept axes in order; with or
/// without the reduced ones as 1). Each output element reads its inputs in row-major order.
pub fn reduce(r: &Reduce, x: &[f32], xs: &[usize], out: &mut [f32]) {
    // Output position of input element i: its index with the reduced axes dropped.
    let kept: Vec<usize> = (0..xs.len()).filter(|a| !r.axes.contains(a)).collect();
    let mut ostride = vec![0usize; xs.len()];
    let mut acc = 1;
    for &a in kept.iter().rev() {
        ostride[a] = acc;
        acc *= xs[a];
    }
    // The mean of an empty set is NaN (0 / 0), as numpy and the ONNX reference give it.
    let count = r.axes.iter().map(|&a| xs[a]).product::<usize>();
    let init = match r.kind {
        ReduceKind::Mean => 0.0,
        ReduceKind::Max => f32::NEG_INFINITY,
    };
    out.fill(init);
    let mut idx = vec![0usize; xs.len()];
    for &v in x {
        let o: usize = idx.iter().zip(&ostride).map(|(i, s)| i * s).sum();
        let slot = &mut out[o];
        *slot = match r.kind {
            ReduceKind::Mean => *slot + v,
            ReduceKind::Max if slot.is_nan() || v <= *slot => *slot,
            ReduceKind::Max => v,
        };
        for a in (0..xs.len()).rev() {
            idx[a] += 1;
            if idx[a] < xs[a] {
                break;
            }
            idx[a] = 0;
        }
    }
    if r.kind == ReduceKind::Mean {
        out.iter_mut().for_each(|v| *v /= count as f32);
    }
}

/// Instance normalization of `x: [N, C, inner…]`: every `(n, c)` plane of `inner` values
/// minus its mean, over `sqrt(var + eps)` (population variance, accumulated in f64), times
/// `scale[c]`, plus `bias[c]`.
pub fn instance_norm(scale: &[f32], bias: &[f32], eps: f32, x: &[f32], channels: usize, inner: usize, out: &mut [f32]) {
    let inner = inner.max(1);
    out.par_chunks_mut(inner).zip(x.par_chunks(inner)).enumerate().with_min_len(super::min_items(inner)).for_each(|(i, (o, x))| {
        let c = i % channels.max(1);
        let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / inner as f64;
        let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / inner as f64;
        let k = f64::from(scale[c]) / (var + f64::from(eps)).sqrt();
        for (o, &v) in o.iter_mut().zip(x) {
            *o = ((f64::from(v) - mean) * k + f64::from(bias[c])) as f32;
        }
    });
}

/// Training-mode Dropout with a fixed seed ([`crate::graph::Op::Dropout`]): `out[i] = mask[i]
/// · x[i] · 1/(1 − ratio)` with `mask[i] = (u_i ≥ ratio)`, `u_i` the `i`-th double of numpy's
/// `RandomState(seed)`, in the ONNX reference's order of operations (a dropped NaN stays NaN).
pub fn dropout(ratio: f32, seed: u32, x: &[f32], out: &mut [f32]) {
    let mut r = crate::rng::Mt19937::new(seed);
    let scale = 1.0 / (1.0 - ratio);
    for (o, &v) in out.iter_mut().zip(x) {
        let keep = if r.next_f64() >= f64::from(ratio) { 1.0 } else { 0.0 };
        *o = keep * v * scale;
    }
}
