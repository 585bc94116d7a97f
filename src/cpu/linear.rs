//! FP32 fully connected layer: `y[N, out] = x[N, in] · Wᵀ + b` with `W: [out, in]`.

use super::sgemm;
use crate::graph::Linear;

/// Runs the layer on `x: [n, in]` into `out: [n, out]`.
pub fn linear(l: &Linear, x: &[f32], n: usize, out: &mut [f32], threads: usize) {
    let (o, i) = (l.weight.shape()[0], l.weight.shape()[1]);
    match &l.bias {
        Some(b) => out.chunks_mut(o).for_each(|r| r.copy_from_slice(b)),
        None => out.fill(0.0),
    }
    sgemm(n, o, i, out, o, true, x, (i, 1), l.weight.data(), (1, i), threads);
}
