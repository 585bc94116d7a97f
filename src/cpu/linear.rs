//! FP32 fully connected layer: `y[N, out] = x[N, in] · Wᵀ + b` with `W: [out, in]`, and numpy
//! `matmul` by a constant (ONNX MatMul beyond 2-D): per broadcast batch index `[m, k] · [k, n]`.
//!
//! One row (`N = 1`, a classifier head at batch 1) is a GEMV bound by the weight stream
//! (ResNet-50's head reads 8 MB for 2 M multiply-adds): [`gemv`] splits the output features
//! over the workers, so each streams only its share of `W`. Each feature is summed in 16 lanes
//! in `k` order, the lanes then added pairwise, the tail (`in mod 16`) added last, then the
//! bias: the same operations whatever the split or the SIMD level ([`dots`]). A batch runs the
//! same GEMVs, 16 rows at a time, each block of weights serving every row while it is in L2, so
//! an image's features are the same in a batch as alone. Only a layer without input features
//! runs on the `gemm` crate (its bias).

use super::parallel::OutPtr;
use super::sgemm;
use crate::cpu::simd::Simd;
use crate::graph::Linear;

/// Output features per GEMV task: 64 rows of a 2048-wide head are 512 KB of weights, enough
/// to amortise a task and few enough that two workers split a 1000-class head evenly.
const GEMV_ROWS: usize = 64;
/// Weights (= multiply-adds) from which a GEMV splits over the workers: far fewer than a
/// conv's [`super::sconv::PAR_MIN_MACS`], since a GEMV is bound by its weight stream, which
/// two cores pull faster than one (ResNet-18's 512 → 1000 head, 0.5 M weights, 2 MB: 0.29 ms
/// on one thread, 0.16 ms on two).
const GEMV_PAR_MIN: usize = 1 << 16;
/// Lanes of the GEMV's partial sums per output feature.
pub(crate) const LANES: usize = 16;
/// Output features computed side by side.
const ROWS_AT_ONCE: usize = 4;

/// Rows (images) of a batch that run as GEMVs sharing each block of weights ([`gemv_rows`]):
/// ResNet-18's 512 → 1000 head at batch 8 took 0.93 ms on the `gemm` crate (4.5× ONNX
/// Runtime's time).
const GEMV_BATCH_MAX: usize = 16;

/// Runs the layer on `x: [n, in]` into `out: [n, out]`. Batches run as GEMVs ([`gemv_rows`],
/// up to [`GEMV_BATCH_MAX`] rows at a time), so each row's values are those it has alone, in
/// any batch (a batch that runs in slices, or whole from some layer on, gives the same bits).
pub fn linear(simd: Simd, l: &Linear, x: &[f32], n: usize, out: &mut [f32], threads: usize) {
    let (o, i) = (l.weight.shape()[0], l.weight.shape()[1]);
    if n > 0 && i > 0 && o > 0 {
        for (xr, or) in x[..n * i].chunks(GEMV_BATCH_MAX * i).zip(out[..n * o].chunks_mut(GEMV_BATCH_MAX * o)) {
            gemv_rows(simd, l.weight.data(), l.bias.as_deref(), xr, xr.len() / i, or, threads);
        }
        return;
    }
    match &l.bias {
        Some(b) => out.chunks_mut(o).for_each(|r| r.copy_from_slice(b)),
        None => out.fill(0.0),
    }
    sgemm(n, o, i, out, o, true, x, (i, 1), l.weight.data(), (1, i), threads);
}

/// `out[j] = bias[j] + Σ_k x[k]·w[j·K + k]` (`K = x.len()`, `w: [out.len(), K]`), output
/// features split over the workers in blocks of [`GEMV_ROWS`].
pub fn gemv(simd: Simd, w: &[f32], bias: Option<&[f32]>, x: &[f32], out: &mut [f32], threads: usize) {
    gemv_rows(simd, w, bias, x, 1, out, threads);
}

/// [`gemv`] for each of the `n` rows of `x: [n, K]` into `out: [n, O]`: the output features
/// split over the workers in blocks of [`GEMV_ROWS`], each block's weights (in L2) serving
/// every row in turn. Every row's values are those of [`gemv`] alone.
pub fn gemv_rows(simd: Simd, w: &[f32], bias: Option<&[f32]>, x: &[f32], n: usize, out: &mut [f32], threads: usize) {
    let (k, o) = (x.len() / n.max(1), out.len() / n.max(1));
    assert!(n > 0 && k > 0 && x.len() == n * k && out.len() == n * o && w.len() >= o * k && bias.is_none_or(|b| b.len() >= o), "gemv: input, weights or bias too short");
    let dst = OutPtr(out.as_mut_ptr());
    let run = |blk: usize| {
        let dst = &dst;
        let r0 = blk * GEMV_ROWS;
        let rows = GEMV_ROWS.min(o - r0);
        let wb = &w[r0 * k..(r0 + rows) * k];
        for (b, xb) in x.chunks_exact(k).enumerate() {
            // SAFETY: features `r0..r0 + rows` of row `b` lie inside `out` (`out.len() = n·O`,
            // asserted); each block is run once, and no two blocks share a feature; `out`
            // outlives the loop.
            let ob = unsafe { std::slice::from_raw_parts_mut(dst.0.add(b * o + r0), rows) };
            dots(simd, xb, wb, ob);
            if let Some(bias) = bias {
                for (y, &bb) in ob.iter_mut().zip(&bias[r0..]) {
                    *y += bb;
                }
            }
        }
    };
    let blocks = o.div_ceil(GEMV_ROWS);
    if threads > 1 && n * o * k >= GEMV_PAR_MIN {
        crate::cpu::parallel::par_for(blocks, run);
    } else {
        (0..blocks).for_each(run);
    }
}

crate::cpu::simd::multiversion! {
    /// `out[j] = Σ_k x[k]·w[j·K + k]` for each row of `w` (`K = x.len()`): products added into
    /// [`LANES`] partial sums in `k` order (lane `k mod LANES`), the lanes added pairwise (lane
    /// `l` += lane `l + width` for width 8, 4, 2, 1), then the tail's products in order.
    /// Multiplies and adds, never fused, in the same order at every level. Rows go
    /// [`ROWS_AT_ONCE`] at a time: one pass over `x` feeds them all, and their weight rows
    /// stream side by side (a single stream is bounded by one core's misses in flight).
    pub fn dots(x: &[f32], w: &[f32], out: &mut [f32]) {
        let k = x.len();
        let full = k / LANES * LANES;
        for (o, rows) in out.chunks_mut(ROWS_AT_ONCE).zip(w.chunks(ROWS_AT_ONCE * k)) {
            let mut acc = [[0f32; LANES]; ROWS_AT_ONCE];
            let mut tail = [0f32; ROWS_AT_ONCE];
            let nrows = o.len();
            for c in (0..full).step_by(LANES) {
                let xv = &x[c..c + LANES];
                for (r, a) in acc.iter_mut().enumerate().take(nrows) {
                    let wv = &rows[r * k + c..r * k + c + LANES];
                    for l in 0..LANES {
                        a[l] += xv[l] * wv[l];
                    }
                }
            }
            for (r, t) in tail.iter_mut().enumerate().take(nrows) {
                for (a, b) in x[full..].iter().zip(&rows[r * k + full..(r + 1) * k]) {
                    *t += a * b;
                }
            }
            for ((y, a), t) in o.iter_mut().zip(acc.iter_mut()).zip(tail) {
                *y = lanes_sum(a) + t;
            }
        }
    }
}

/// The sum of a GEMV feature's partial sums, added pairwise: lane `l` += lane `l + width` for
/// width 8, 4, 2, 1, then lane 0 (the order [`dots`] and the bf16 GEMV both fix).
#[inline(always)]
pub(crate) fn lanes_sum(a: &mut [f32; LANES]) -> f32 {
    let mut width = LANES;
    while width > 1 {
        width /= 2;
        for l in 0..width {
            a[l] += a[l + width];
        }
    }
    a[0]
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
