//! Max and average pooling over NCHW, one plane per task, with the window taps of each
//! output row and column computed once per call. Max pooling (f32, and u8 codes of INT8
//! models) is separable: row maxima first, then a strided pass over a padded row.

use rayon::prelude::*;

use crate::cpu::simd::gather_stride2;
use crate::graph::Pool2d;

/// Valid input taps along one axis for every output index, and the padded-window size.
fn taps(out: usize, input: usize, k: usize, s: usize, pad: (usize, usize), d: usize) -> Vec<(Vec<usize>, usize)> {
    (0..out)
        .map(|o| {
            let start = (o * s) as isize - pad.0 as isize;
            let mut valid = Vec::with_capacity(k);
            let mut padded = 0;
            for t in 0..k {
                let i = start + (t * d) as isize;
                if i >= 0 && (i as usize) < input {
                    valid.push(i as usize);
                }
                if i < (input + pad.1) as isize {
                    padded += 1;
                }
            }
            (valid, padded)
        })
        .collect()
}

/// Max (`is_max`) or average pooling of `x: [N, C, H, W]` into `out: [N, C, OH, OW]`.
pub fn pool2d(p: &Pool2d, is_max: bool, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    if is_max {
        max_pool_separable(p, x, xs, out, os, f32::NEG_INFINITY, f32::max, None);
        return;
    }
    let ty = taps(oh, h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0]);
    let tx = taps(ow, w, p.kernel[1], p.stride[1], (p.pads[1], p.pads[3]), p.dilation[1]);
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).with_min_len(super::min_items(h * w + oh * ow)).for_each(|(o, plane)| {
        for (oy, (ys, py)) in ty.iter().enumerate() {
            let orow = &mut o[oy * ow..(oy + 1) * ow];
            for (ox, (xs_, px)) in tx.iter().enumerate() {
                let v = if is_max {
                    let mut m = f32::NEG_INFINITY;
                    for &iy in ys {
                        let row = &plane[iy * w..];
                        for &ix in xs_ {
                            m = m.max(row[ix]);
                        }
                    }
                    m
                } else {
                    let mut s = 0.0;
                    for &iy in ys {
                        let row = &plane[iy * w..];
                        for &ix in xs_ {
                            s += row[ix];
                        }
                    }
                    let count = if p.count_include_pad { py * px } else { ys.len() * xs_.len() };
                    if count == 0 {
                        0.0
                    } else {
                        s / count as f32
                    }
                };
                orow[ox] = v;
            }
        }
    });
}

/// Max pooling of u8 codes `x: [N, C, H, W]` into `out: [N, C, OH, OW]` (padding taps are
/// skipped, as in [`pool2d`]; a window with no valid tap yields 0).
pub fn max_pool2d_u8(p: &Pool2d, x: &[u8], xs: [usize; 4], out: &mut [u8], os: [usize; 4]) {
    max_pool_separable(p, x, xs, out, os, 0, u8::max, Some(gather_stride2));
}

/// Max pooling, separable: the elementwise maximum over each window's rows, written into a row
/// padded with `lowest` (so padding taps never win, and a window with no valid tap yields
/// `lowest`), then over its columns: for each tap, the padded row read at the output stride
/// (`stride2` when given and the stride is 2) and maxed into the output row.
#[allow(clippy::too_many_arguments)]
fn max_pool_separable<T: Copy + Send + Sync>(
    p: &Pool2d,
    x: &[T],
    xs: [usize; 4],
    out: &mut [T],
    os: [usize; 4],
    lowest: T,
    max: impl Fn(T, T) -> T + Sync,
    stride2: Option<fn(&[T], &mut [T])>,
) {
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    let ty = taps(oh, h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0]);
    let (kx, sx, dx, left) = (p.kernel[1], p.stride[1], p.dilation[1], p.pads[1]);
    // Padded row: `left` pads, the row maxima, then pads up to the last tap of the last output
    // (and 32 more, so a vector gather may read past its last element).
    let last = (ow.max(1) - 1) * sx + (kx.max(1) - 1) * dx + 1;
    let plen = last.max(left + w) + 32;
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).with_min_len(super::min_items(h * w + oh * ow)).for_each_init(
        || (vec![lowest; plen], vec![lowest; ow]),
        |(padded, strided), (o, plane)| {
            for (oy, (ys, _)) in ty.iter().enumerate() {
                let rowmax = &mut padded[left..left + w];
                rowmax.fill(lowest);
                for &iy in ys {
                    for (m, &v) in rowmax.iter_mut().zip(&plane[iy * w..(iy + 1) * w]) {
                        *m = max(*m, v);
                    }
                }
                let orow = &mut o[oy * ow..(oy + 1) * ow];
                orow.fill(lowest);
                for t in 0..kx {
                    let src = &padded[t * dx..];
                    let taps: &[T] = match (sx, stride2) {
                        (1, _) => &src[..ow],
                        (2, Some(gather)) => {
                            gather(src, strided);
                            strided
                        }
                        _ => {
                            strided.iter_mut().zip(src.iter().step_by(sx)).for_each(|(d, &v)| *d = v);
                            strided
                        }
                    };
                    for (d, &v) in orow.iter_mut().zip(taps) {
                        *d = max(*d, v);
                    }
                }
            }
        },
    );
}

/// Mean over H·W of each plane: `[N, C, H, W] → [N, C, 1, 1]`.
/// `out[n·c] = max` over each `hw` plane of `x` (NaN if the plane holds one, as ONNX's
/// reference `np.max`).
pub fn global_max_pool(x: &[f32], hw: usize, out: &mut [f32]) {
    out.par_iter_mut().zip(x.par_chunks(hw.max(1))).with_min_len(super::min_items(hw)).for_each(|(o, plane)| {
        *o = plane.iter().fold(f32::NEG_INFINITY, |m, &v| if m.is_nan() || !(v <= m) { if m.is_nan() { m } else { v } } else { m });
    });
}

pub fn global_avg_pool(x: &[f32], hw: usize, out: &mut [f32]) {
    out.par_iter_mut().zip(x.par_chunks(hw.max(1))).with_min_len(super::min_items(hw)).for_each(|(o, plane)| {
        *o = plane.iter().sum::<f32>() / hw as f32;
    });
}
