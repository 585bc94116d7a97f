//! Plain reference twins of the fast kernels: direct loops straight from the ONNX
//! definitions, with no tables, no GEMM and no threads. Tests compare the fast kernels
//! against these; they are also small enough to read as the specification.

use crate::detmath;
use crate::cpu::simd::Simd;
use crate::graph::{Conv2d, ConvTranspose2d, Int8, Linear, Pool2d, Resize, ResizeMode};

use super::resize::{nearest_index, scales, source_coord};

/// The direct-convolution loop the conv twins share: for output `o` (NCHW index) of channel
/// `co`, `acc = start(o)`, then `acc = step(acc, x index, weight index)` for each kernel tap
/// that falls inside the image, in `(ci, ky, kx)` order (padding contributes nothing), handed
/// to `store(o, co, acc)`.
fn direct_conv<A: Copy>(c: &Conv2d, xs: [usize; 4], os: [usize; 4], start: impl Fn(usize) -> A, step: impl Fn(A, usize, usize) -> A, mut store: impl FnMut(usize, usize, A)) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let [kh, kw] = c.kernel();
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    for b in 0..n {
        for co in 0..cout {
            let g = co / cout_g;
            for oy in 0..oh {
                for ox in 0..ow {
                    let o = ((b * cout + co) * oh + oy) * ow + ox;
                    let mut acc = start(o);
                    for ci in 0..cin_g {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                                    continue;
                                }
                                let xi = ((b * cin + g * cin_g + ci) * h + iy as usize) * w + ix as usize;
                                acc = step(acc, xi, ((co * cin_g + ci) * kh + ky) * kw + kx);
                            }
                        }
                    }
                    store(o, co, acc);
                }
            }
        }
    }
}

/// The conv epilogue: `act(v + bias[co] + residual[o])`.
fn conv_epilogue(c: &Conv2d, co: usize, o: usize, v: f32, residual: Option<&[f32]>) -> f32 {
    let mut v = v + c.bias.as_ref().map_or(0.0, |bb| bb[co]);
    if let Some(r) = residual {
        v += r[o];
    }
    c.act.map_or(v, |a| a.apply(v))
}

/// Direct convolution with the same epilogue as [`super::conv::conv2d`].
pub fn conv2d_ref(c: &Conv2d, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4]) {
    let wt = c.weight.data();
    direct_conv(c, xs, os, |_| 0.0f64, |acc, xi, wi| acc + f64::from(x[xi]) * f64::from(wt[wi]), |o, co, acc| {
        out[o] = conv_epilogue(c, co, o, acc as f32, residual);
    });
}

/// Direct convolution in the operation order of kestrel's own FP32 conv
/// ([`super::sconv::conv2d`]): `acc = residual (or 0)`, then one fused multiply-add per tap in
/// `(ci, ky, kx)` order, then `+ bias`, then the activation. Taps in the padding are skipped:
/// adding `w · 0` to a sum that started at `+0` or a residual changes no value.
pub fn conv2d_fma_ref(c: &Conv2d, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4]) {
    let wt = c.weight.data();
    direct_conv(c, xs, os, |o| residual.map_or(0.0, |r| r[o]), |acc: f32, xi, wi| detmath::fma(wt[wi], x[xi], acc), |o, co, mut acc| {
        if let Some(bias) = &c.bias {
            acc += bias[co];
        }
        out[o] = c.act.map_or(acc, |a| a.apply(acc));
    });
}

/// Direct transposed convolution: every input pixel scatters its kernel into the output.
pub fn conv_transpose2d_ref(c: &ConvTranspose2d, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let [kh, kw] = c.kernel();
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let wt = c.weight.data();
    let mut acc = vec![0.0f64; out.len()];
    for b in 0..n {
        for ci in 0..cin {
            let g = ci / cin_g;
            for iy in 0..h {
                for ix in 0..w {
                    let xv = f64::from(x[((b * cin + ci) * h + iy) * w + ix]);
                    for col in 0..cout_g {
                        for ky in 0..kh {
                            for kx in 0..kw {
                                let oy = (iy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                                let ox = (ix * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                                if oy < 0 || ox < 0 || oy >= oh as isize || ox >= ow as isize {
                                    continue;
                                }
                                let co = g * cout_g + col;
                                let wv = f64::from(wt[((ci * cout_g + col) * kh + ky) * kw + kx]);
                                acc[((b * cout + co) * oh + oy as usize) * ow + ox as usize] += xv * wv;
                            }
                        }
                    }
                }
            }
        }
    }
    for (i, o) in out.iter_mut().enumerate() {
        let co = (i / (oh * ow)) % cout;
        *o = acc[i] as f32 + c.bias.as_ref().map_or(0.0, |bb| bb[co]);
    }
}

/// Direct pooling: every output visits its window and checks each tap's bounds.
pub fn pool2d_ref(p: &Pool2d, is_max: bool, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    let [n, c, h, w] = xs;
    let [_, _, oh, ow] = os;
    for plane in 0..n * c {
        for oy in 0..oh {
            for ox in 0..ow {
                let (mut m, mut s, mut valid, mut padded) = (f32::NEG_INFINITY, 0.0f32, 0usize, 0usize);
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.pads[0] as isize;
                        let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize - p.pads[1] as isize;
                        if iy < (h + p.pads[2]) as isize && ix < (w + p.pads[3]) as isize {
                            padded += 1;
                        }
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let v = x[(plane * h + iy as usize) * w + ix as usize];
                        m = m.max(v);
                        s += v;
                        valid += 1;
                    }
                }
                let count = if p.count_include_pad { padded } else { valid };
                out[(plane * oh + oy) * ow + ox] = if is_max {
                    m
                } else if count == 0 {
                    0.0
                } else {
                    s / count as f32
                };
            }
        }
    }
}

/// Direct resize: each output element computes its own source coordinates. Modes off the
/// fast path (bicubic, antialias, …) are computed by `resize::resize_general`, which is
/// itself plain code following the ONNX reference implementation and is checked against the
/// conformance cases' expected outputs.
pub fn resize_ref(r: &Resize, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    if !r.is_simple() {
        return super::resize::resize_general(r, x, xs, out, os);
    }
    let [n, c, h, w] = xs;
    let [_, _, oh, ow] = os;
    let [sh, sw] = scales(r, [h, w], [oh, ow]);
    for plane in 0..n * c {
        let at = |y: usize, x_: usize| x[(plane * h + y) * w + x_];
        for oy in 0..oh {
            for ox in 0..ow {
                let fy = source_coord(r.coord, oy, sh, h, oh);
                let fx = source_coord(r.coord, ox, sw, w, ow);
                let v = match r.mode {
                    ResizeMode::Nearest(m) => at(nearest_index(m, fy, h), nearest_index(m, fx, w)),
                    ResizeMode::Linear | ResizeMode::Cubic { .. } => {
                        let fy = fy.clamp(0.0, (h - 1) as f32);
                        let fx = fx.clamp(0.0, (w - 1) as f32);
                        let (y0, x0) = (fy.floor() as usize, fx.floor() as usize);
                        let (y1, x1) = ((y0 + 1).min(h - 1), (x0 + 1).min(w - 1));
                        let (wy, wx) = (fy - y0 as f32, fx - x0 as f32);
                        at(y0, x0) * (1.0 - wy) * (1.0 - wx)
                            + at(y0, x1) * (1.0 - wy) * wx
                            + at(y1, x0) * wy * (1.0 - wx)
                            + at(y1, x1) * wy * wx
                    }
                };
                out[(plane * oh + oy) * ow + ox] = v;
            }
        }
    }
}

/// Direct fully connected layer.
pub fn linear_ref(l: &Linear, x: &[f32], n: usize, out: &mut [f32]) {
    let (o, i) = (l.weight.shape()[0], l.weight.shape()[1]);
    let wt = l.weight.data();
    for b in 0..n {
        for j in 0..o {
            let mut acc = f64::from(l.bias.as_ref().map_or(0.0, |bb| bb[j]));
            for k in 0..i {
                acc += f64::from(x[b * i + k]) * f64::from(wt[j * i + k]);
            }
            out[b * o + j] = acc as f32;
        }
    }
}

/// Direct INT8 convolution, the twin of [`super::qconv::qconv2d`]: the same quantized input,
/// `acc = Σ (q − za)·w` over taps inside the image (padding is the zero point, so it adds
/// nothing), then the same f32 epilogue.
pub fn qconv2d_ref(c: &Conv2d, q: &Int8, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4]) {
    let pa = super::qconv::input_params(Simd::Baseline, q.input, x);
    let xq: Vec<i32> = x.iter().map(|&v| i32::from(pa.quantize(v)) - i32::from(pa.zero_point)).collect();
    let wq = &q.weights.q;
    direct_conv(c, xs, os, |_| 0i32, |acc, xi, wi| acc + xq[xi] * i32::from(wq[wi]), |o, co, acc| {
        out[o] = conv_epilogue(c, co, o, acc as f32 * (pa.scale * q.weights.scales[co]), residual);
    });
}

/// Direct INT8 fully connected layer, the twin of [`super::qconv::qlinear`]:
/// `acc = Σ (q − za)·w`, then `acc·sa·sw + bias`.
pub fn qlinear_ref(l: &Linear, q: &Int8, x: &[f32], n: usize, out: &mut [f32]) {
    let (o, i) = (l.weight.shape()[0], l.weight.shape()[1]);
    let pa = super::qconv::input_params(Simd::Baseline, q.input, x);
    let xq: Vec<i32> = x.iter().map(|&v| i32::from(pa.quantize(v)) - i32::from(pa.zero_point)).collect();
    for b in 0..n {
        for j in 0..o {
            let acc: i32 = (0..i).map(|k| xq[b * i + k] * i32::from(q.weights.q[j * i + k])).sum();
            out[b * o + j] = acc as f32 * (pa.scale * q.weights.scales[j]) + l.bias.as_ref().map_or(0.0, |bb| bb[j]);
        }
    }
}
