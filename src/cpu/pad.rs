//! Per-axis gathers over any rank: `out[o] = x[map₀(o₀), map₁(o₁), …]` or a fill value where
//! some axis maps outside. ONNX Pad maps an output index `o` to `o − begin` in the input, and
//! an index outside the input to the constant, the mirror image (period `2·(n − 1)`, numpy
//! `reflect`), the nearest edge, or the periodic repeat (negative amounts crop); ONNX Slice
//! maps `o` to `first + o · step`. Rows of the last axis are filled one at a time, in
//! parallel.

use rayon::prelude::*;

use crate::graph::shape::slice_axis;
use crate::graph::{Pad, PadMode};

/// The input index output index `o` of an axis of input length `n` reads, or `None` for
/// the constant.
fn source(mode: PadMode, o: usize, begin: i64, n: usize) -> Option<usize> {
    let (i, n) = (o as i64 - begin, n as i64);
    if (0..n).contains(&i) {
        return Some(i as usize);
    }
    match mode {
        PadMode::Constant => None,
        PadMode::Edge => Some(i.clamp(0, n - 1) as usize),
        PadMode::Wrap => Some(i.rem_euclid(n) as usize),
        PadMode::Reflect if n == 1 => Some(0),
        PadMode::Reflect => {
            let period = 2 * (n - 1);
            let m = i.rem_euclid(period);
            Some(if m < n { m } else { period - m } as usize)
        }
    }
}

/// Pads `x` (shape `xs`) into `out` (shape `os`, as shape inference gives it).
pub fn pad(p: &Pad, x: &[f32], xs: &[usize], out: &mut [f32], os: &[usize]) {
    let maps: Vec<Vec<Option<usize>>> = xs.iter().zip(os).zip(&p.pads).map(|((&n, &m), &[b, _])| (0..m).map(|o| source(p.mode, o, b, n)).collect()).collect();
    gather(&maps, p.value, x, xs, out, os);
}

/// ONNX Slice of `x` (shape `xs`) by `[start, end, step]` per axis into `out` (shape `os`).
pub fn slice(spec: &[[i64; 3]], x: &[f32], xs: &[usize], out: &mut [f32], os: &[usize]) {
    let maps: Vec<Vec<Option<usize>>> = xs
        .iter()
        .zip(spec)
        .zip(os)
        .map(|((&d, &s), &m)| {
            let (first, _) = slice_axis(d, s);
            (0..m).map(|o| Some((first as i64 + o as i64 * s[2]) as usize)).collect()
        })
        .collect();
    gather(&maps, 0.0, x, xs, out, os);
}

/// `out[o] = x[maps[0][o₀], maps[1][o₁], …]`, or `fill` where an axis maps to `None`.
fn gather(maps: &[Vec<Option<usize>>], fill: f32, x: &[f32], xs: &[usize], out: &mut [f32], os: &[usize]) {
    let Some((last, outer)) = maps.split_last() else {
        out.copy_from_slice(x);
        return;
    };
    let inner = os[os.len() - 1];
    let in_inner = xs[xs.len() - 1];
    let outer_dims = &os[..os.len() - 1];
    let in_strides: Vec<usize> = (0..outer_dims.len()).map(|a| xs[a + 1..].iter().product::<usize>() / in_inner.max(1)).collect();
    out.par_chunks_mut(inner.max(1)).enumerate().with_min_len(super::min_items(inner)).for_each(|(r, row)| {
        // The input row this output row reads, unless some outer axis lands in the constant.
        let mut rest = r;
        let mut src_row = Some(0usize);
        for a in (0..outer_dims.len()).rev() {
            let o = rest % outer_dims[a];
            rest /= outer_dims[a];
            src_row = src_row.and_then(|s| outer[a][o].map(|i| s + i * in_strides[a]));
        }
        match src_row {
            None => row.fill(fill),
            Some(s) => {
                let src = &x[s * in_inner..(s + 1) * in_inner];
                for (v, m) in row.iter_mut().zip(last) {
                    *v = m.map_or(fill, |i| src[i]);
                }
            }
        }
    });
}

/// ONNX Transpose: `out[o₀, …, o_{r−1}] = x[i]` with `i[perm[a]] = o_a`.
pub fn transpose(perm: &[usize], x: &[f32], xs: &[usize], out: &mut [f32], os: &[usize]) {
    let rank = xs.len();
    let mut xstride = vec![1usize; rank];
    for a in (0..rank.saturating_sub(1)).rev() {
        xstride[a] = xstride[a + 1] * xs[a + 1];
    }
    // Input stride of each output axis.
    let step: Vec<usize> = perm.iter().map(|&p| xstride[p]).collect();
    let mut idx = vec![0usize; rank];
    let mut off = 0usize;
    for v in out.iter_mut() {
        *v = x[off];
        for a in (0..rank).rev() {
            idx[a] += 1;
            off += step[a];
            if idx[a] < os[a] {
                break;
            }
            off -= step[a] * os[a];
            idx[a] = 0;
        }
    }
}
