//! Max and average pooling over NCHW, one plane per task, with the window taps of each
//! output row and column computed once per call.

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
    let ty = taps(oh, h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0]);
    let tx = taps(ow, w, p.kernel[1], p.stride[1], (p.pads[1], p.pads[3]), p.dilation[1]);
    if is_max {
        // Separable: the elementwise maximum over the window's rows (vectorises), then over
        // its columns. Padding taps are skipped, not read.
        out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each_init(
            || vec![0.0f32; w],
            |rowmax, (o, plane)| {
                for (oy, (ys, _)) in ty.iter().enumerate() {
                    rowmax.fill(f32::NEG_INFINITY);
                    for &iy in ys {
                        for (m, &v) in rowmax.iter_mut().zip(&plane[iy * w..(iy + 1) * w]) {
                            *m = m.max(v);
                        }
                    }
                    for (dst, (xs_, _)) in o[oy * ow..(oy + 1) * ow].iter_mut().zip(&tx) {
                        *dst = xs_.iter().fold(f32::NEG_INFINITY, |m, &ix| m.max(rowmax[ix]));
                    }
                }
            },
        );
        return;
    }
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(o, plane)| {
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
///
/// Separable: the elementwise maximum over each window's rows, written into a zero-padded row
/// (0 is the smallest code, so padding taps never win), then over its columns: for each tap,
/// the row read at the output stride (SSE2 for stride 2) and maxed into the output row.
pub fn max_pool2d_u8(p: &Pool2d, x: &[u8], xs: [usize; 4], out: &mut [u8], os: [usize; 4]) {
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    let ty = taps(oh, h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0]);
    let (kx, sx, dx, left) = (p.kernel[1], p.stride[1], p.dilation[1], p.pads[1]);
    // Padded row: `left` zeros, the row maxima, then zeros up to the last tap of the last output.
    let last = (ow.max(1) - 1) * sx + (kx.max(1) - 1) * dx + 1;
    let plen = last.max(left + w) + 32;
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each_init(
        || (vec![0u8; plen], vec![0u8; ow]),
        |(padded, strided), (o, plane)| {
            for (oy, (ys, _)) in ty.iter().enumerate() {
                let rowmax = &mut padded[left..left + w];
                rowmax.fill(0);
                for &iy in ys {
                    for (m, &v) in rowmax.iter_mut().zip(&plane[iy * w..(iy + 1) * w]) {
                        *m = (*m).max(v);
                    }
                }
                let orow = &mut o[oy * ow..(oy + 1) * ow];
                orow.fill(0);
                for t in 0..kx {
                    let src = &padded[t * dx..];
                    let taps: &[u8] = match sx {
                        1 => &src[..ow],
                        2 => {
                            gather_stride2(src, strided);
                            strided
                        }
                        _ => {
                            strided.iter_mut().zip(src.iter().step_by(sx)).for_each(|(d, &v)| *d = v);
                            strided
                        }
                    };
                    for (d, &v) in orow.iter_mut().zip(taps) {
                        *d = (*d).max(v);
                    }
                }
            }
        },
    );
}

/// Mean over H·W of each plane: `[N, C, H, W] → [N, C, 1, 1]`.
pub fn global_avg_pool(x: &[f32], hw: usize, out: &mut [f32]) {
    out.par_iter_mut().zip(x.par_chunks(hw.max(1))).for_each(|(o, plane)| {
        *o = plane.iter().sum::<f32>() / hw as f32;
    });
}
