//! FP32 fully connected layer: `y[N, out] = x[N, in] · Wᵀ + b` with `W: [out, in]`, and numpy
//! `matmul` by a constant (ONNX MatMul beyond 2-D): per broadcast batch index `[m, k] · [k, n]`.

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

/// numpy `matmul` of `a` (shape `as_`) by `b` (shape `bs`) into `out`, whose shape
/// [`crate::graph::shape::matmul_out`] gives: a 1-D `a` is one row, a 1-D `b` one column,
/// and the axes before the last two broadcast (one `[m, k] · [k, n]` product per index).
pub fn matmul(a: &[f32], as_: &[usize], b: &[f32], bs: &[usize], out: &mut [f32], threads: usize) {
    let a2: Vec<usize> = if as_.len() == 1 { vec![1, as_[0]] } else { as_.to_vec() };
    let b2: Vec<usize> = if bs.len() == 1 { vec![bs[0], 1] } else { bs.to_vec() };
    let (ab, bb) = (&a2[..a2.len() - 2], &b2[..b2.len() - 2]);
    let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
    let Some(batch) = crate::graph::shape::broadcast(ab, bb) else { return };
    // Matrix index of batch index `bi` in an operand of batch dims `dims` (right-aligned, a
    // dim of 1 repeating).
    let matrix = |dims: &[usize], bi: usize| -> usize {
        let (mut rem, mut idx, mut stride) = (bi, 0, 1);
        for d in (0..batch.len()).rev() {
            let i = rem % batch[d];
            rem /= batch[d];
            if let Some(od) = (d + dims.len()).checked_sub(batch.len()) {
                if dims[od] != 1 {
                    idx += i * stride;
                }
                stride *= dims[od];
            }
        }
        idx
    };
    for (bi, o) in out.chunks_mut(m * n).enumerate() {
        let (ia, ib) = (matrix(ab, bi), matrix(bb, bi));
        sgemm(m, n, k, o, n, false, &a[ia * m * k..(ia + 1) * m * k], (k, 1), &b[ib * k * n..(ib + 1) * k * n], (n, 1), threads);
    }
}
