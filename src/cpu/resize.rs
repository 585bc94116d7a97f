//! Spatial resize of NCHW tensors (ONNX Resize). The source indices and weights of every
//! output row and column are computed once per call. Two paths:
//! - nearest and bilinear with the common coordinate modes ([`Resize::is_simple`]): both axes
//!   in one pass, two taps per axis, f32 coordinates as ONNX Runtime computes them;
//! - everything else (bicubic, antialias, `exclude_outside`, `half_pixel_symmetric`,
//!   `tf_crop_and_resize`): separable, H then W through an `[N·C][OH][W]` buffer, with the
//!   coordinates and tap weights of the ONNX reference implementation
//!   (`onnx.reference.ops.op_resize`) computed in f64: each output takes the `n` input
//!   positions nearest its source coordinate (edge-clamped), weighted by the mode's filter.

use rayon::prelude::*;

use crate::graph::shape::keep_aspect_scale;
use crate::graph::{CoordMode, NearestMode, Resize, ResizeMode, ResizeTarget};

/// Maps output coordinate `o` to the input axis (ONNX `coordinate_transformation_mode`).
/// For `align_corners` ONNX divides by the unrounded resized length `in · scale` − 1, which
/// differs from `out_len − 1` when the scale is given and `in · scale` is fractional.
pub fn source_coord(coord: CoordMode, o: usize, scale: f32, in_len: usize, out_len: usize) -> f32 {
    let o = o as f32;
    match coord {
        CoordMode::HalfPixel => (o + 0.5) / scale - 0.5,
        CoordMode::PytorchHalfPixel => {
            if out_len > 1 {
                (o + 0.5) / scale - 0.5
            } else {
                0.0
            }
        }
        CoordMode::AlignCorners => {
            if out_len > 1 {
                o * (in_len as f32 - 1.0) / (in_len as f32 * scale - 1.0)
            } else {
                0.0
            }
        }
        CoordMode::Asymmetric => o / scale,
        // Not on this path (`Resize::is_simple`); the general path's `source_coord_f64` has them.
        CoordMode::HalfPixelSymmetric | CoordMode::TfCropAndResize => (o + 0.5) / scale - 0.5,
    }
}

/// Rounds a source coordinate to an input index (ONNX `nearest_mode`), clamped to the axis.
pub fn nearest_index(mode: NearestMode, x: f32, in_len: usize) -> usize {
    let r = match mode {
        NearestMode::RoundPreferFloor => {
            if x.fract() == 0.5 {
                x.floor()
            } else {
                x.round()
            }
        }
        NearestMode::RoundPreferCeil => {
            if x.fract() == 0.5 {
                x.ceil()
            } else {
                x.round()
            }
        }
        NearestMode::Floor => x.floor(),
        NearestMode::Ceil => x.ceil(),
    };
    r.clamp(0.0, in_len as f32 - 1.0) as usize
}

/// Scale factors `[sh, sw]` used in the coordinate transform: the given scales, or out/in.
pub fn scales(r: &Resize, in_hw: [usize; 2], out_hw: [usize; 2]) -> [f32; 2] {
    match r.target {
        ResizeTarget::Scales(s) => s,
        ResizeTarget::Sizes(_) => [out_hw[0] as f32 / in_hw[0] as f32, out_hw[1] as f32 / in_hw[1] as f32],
        ResizeTarget::KeepAspect { sizes, policy, unit_axes } => [keep_aspect_scale(sizes, policy, unit_axes, in_hw[0], in_hw[1]) as f32; 2],
    }
}

/// [`scales`] in f64, as the general path and the ONNX reference compute them.
fn scales_f64(r: &Resize, in_hw: [usize; 2], out_hw: [usize; 2]) -> [f64; 2] {
    match r.target {
        ResizeTarget::Scales([sh, sw]) => [f64::from(sh), f64::from(sw)],
        ResizeTarget::Sizes(_) => [out_hw[0] as f64 / in_hw[0] as f64, out_hw[1] as f64 / in_hw[1] as f64],
        ResizeTarget::KeepAspect { sizes, policy, unit_axes } => [keep_aspect_scale(sizes, policy, unit_axes, in_hw[0], in_hw[1]); 2],
    }
}

/// For each output index: the two source indices and the weight of the second.
fn axis_table(r: &Resize, scale: f32, in_len: usize, out_len: usize) -> Vec<(usize, usize, f32)> {
    (0..out_len)
        .map(|o| {
            let x = source_coord(r.coord, o, scale, in_len, out_len);
            match r.mode {
                ResizeMode::Nearest(m) => {
                    let i = nearest_index(m, x, in_len);
                    (i, i, 0.0)
                }
                // Cubic is not on this path (`Resize::is_simple`).
                ResizeMode::Linear | ResizeMode::Cubic { .. } => {
                    let x = x.clamp(0.0, in_len as f32 - 1.0);
                    let i0 = x.floor() as usize;
                    let i1 = (i0 + 1).min(in_len - 1);
                    (i0, i1, x - i0 as f32)
                }
            }
        })
        .collect()
}

/// Resizes `x: [N, C, H, W]` into `out: [N, C, OH, OW]`.
pub fn resize(r: &Resize, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    if !r.is_simple() {
        return resize_general(r, x, xs, out, os);
    }
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    let [sh, sw] = scales(r, [h, w], [oh, ow]);
    let ty = axis_table(r, sh, h, oh);
    let tx = axis_table(r, sw, w, ow);
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).with_min_len(super::min_items(h * w + oh * ow)).for_each(|(o, plane)| {
        for (oy, &(y0, y1, wy)) in ty.iter().enumerate() {
            let (r0, r1) = (&plane[y0 * w..(y0 + 1) * w], &plane[y1 * w..(y1 + 1) * w]);
            let orow = &mut o[oy * ow..(oy + 1) * ow];
            for (v, &(x0, x1, wx)) in orow.iter_mut().zip(&tx) {
                let top = r0[x0] + (r0[x1] - r0[x0]) * wx;
                let bot = r1[x0] + (r1[x1] - r1[x0]) * wx;
                *v = top + (bot - top) * wy;
            }
        }
    });
}

/// One axis of the general path: for output index `o`, taps `o·n .. o·n + n` of `idx`
/// (clamped to the input) and `w`; `outside[o]` outputs take the extrapolation value.
struct Taps {
    n: usize,
    idx: Vec<usize>,
    w: Vec<f32>,
    outside: Vec<bool>,
}

/// The source coordinate of output `y` on an axis, as the ONNX reference computes it, and
/// whether it lies outside the crop (`tf_crop_and_resize` only). `roi` is `[start, end]`.
fn source_coord_f64(coord: CoordMode, y: f64, scale: f64, in_len: usize, out_len: usize, roi: [f64; 2]) -> (f64, bool) {
    let (inl, out_f) = (in_len as f64, scale * in_len as f64);
    match coord {
        CoordMode::AlignCorners => (if out_f == 1.0 { 0.0 } else { y * (inl - 1.0) / (out_f - 1.0) }, false),
        CoordMode::Asymmetric => (y / scale, false),
        CoordMode::TfCropAndResize => {
            let x = if out_f == 1.0 { (roi[1] - roi[0]) * (inl - 1.0) / 2.0 } else { y * (roi[1] - roi[0]) * (inl - 1.0) / (out_f - 1.0) };
            let x = x + roi[0] * (inl - 1.0);
            (x, x < 0.0 || x > inl - 1.0)
        }
        // The spec's text (and ONNX Runtime, and the fast path): 0 for a 1-long output. The
        // reference code tests the unrounded length `in · scale` and returns −0.5; the two
        // differ only for a fractional `in · scale` below 2, which no conformance case has.
        CoordMode::PytorchHalfPixel => (if out_len > 1 { (y + 0.5) / scale - 0.5 } else { 0.0 }, false),
        CoordMode::HalfPixel => ((y + 0.5) / scale - 0.5, false),
        CoordMode::HalfPixelSymmetric => {
            let adjustment = out_len as f64 / out_f;
            let offset = inl / 2.0 * (1.0 - adjustment);
            (offset + (y + 0.5) / scale - 0.5, false)
        }
    }
}

/// The filter weights for a source coordinate whose distance past the tap on its left is
/// `ratio` (in (0, 1]; 1 when the coordinate is a whole number).
fn coeffs(r: &Resize, ratio: f64, scale: f64) -> Vec<f64> {
    match r.mode {
        ResizeMode::Nearest(m) => {
            if ratio == 1.0 {
                return vec![0.0, 1.0];
            }
            let right = match m {
                NearestMode::RoundPreferFloor => ratio > 0.5,
                NearestMode::RoundPreferCeil => ratio >= 0.5,
                NearestMode::Floor => false,
                NearestMode::Ceil => true,
            };
            if right { vec![0.0, 1.0] } else { vec![1.0, 0.0] }
        }
        ResizeMode::Linear if r.antialias => {
            let s = scale.min(1.0);
            let start = (-1.0 / s).floor() as i64 + 1;
            let footprint = 2 - 2 * start;
            normalised((start..start + footprint).map(|i| (1.0 - ((i as f64 - ratio) * s).abs()).clamp(0.0, 1.0)).collect())
        }
        ResizeMode::Linear => vec![1.0 - ratio, ratio],
        ResizeMode::Cubic { a } if r.antialias => {
            let (a, s) = (f64::from(a), scale.min(1.0));
            let start = (-2.0 / s).floor() as i64 + 1;
            normalised((start..2 - start).map(|i| cubic(a, s * (i as f64 - ratio))).collect())
        }
        ResizeMode::Cubic { a } => {
            let a = f64::from(a);
            vec![cubic(a, ratio + 1.0), cubic(a, ratio), cubic(a, 1.0 - ratio), cubic(a, 2.0 - ratio)]
        }
    }
}

/// Keys' cubic convolution kernel with coefficient `a`.
fn cubic(a: f64, x: f64) -> f64 {
    let x = x.abs();
    if x <= 1.0 {
        ((a + 2.0) * x - (a + 3.0)) * x * x + 1.0
    } else if x < 2.0 {
        ((a * x - 5.0 * a) * x + 8.0 * a) * x - 4.0 * a
    } else {
        0.0
    }
}

fn normalised(mut c: Vec<f64>) -> Vec<f64> {
    let sum: f64 = c.iter().sum();
    if sum != 0.0 {
        c.iter_mut().for_each(|v| *v /= sum);
    }
    c
}

/// The taps each output index reads on the general path ([`coeffs`]' length), without
/// building them: antialiased filters widen with the downscale.
fn taps_per_output(r: &Resize, scale: f64) -> usize {
    // `start..2 − start` around the tap, as `coeffs` spans it (saturating for any scale).
    let footprint = |reach: f64| (2.0 - 2.0 * ((-reach / scale.min(1.0)).floor() + 1.0)).max(0.0) as usize;
    match r.mode {
        ResizeMode::Nearest(_) => 2,
        ResizeMode::Linear if r.antialias => footprint(1.0),
        ResizeMode::Linear => 2,
        ResizeMode::Cubic { .. } if r.antialias => footprint(2.0),
        ResizeMode::Cubic { .. } => 4,
    }
}

/// Bytes a resize of `xs` into `os` allocates besides its output with `threads` workers at
/// once: the per-axis tables and, on the general path, one plane's rows per worker. The
/// planner counts them, since a file's shapes can make the tables as large as the output (a
/// tall, narrow single-channel map has a table entry per output row).
pub fn scratch_bytes(r: &Resize, xs: [usize; 4], os: [usize; 4], threads: usize) -> usize {
    let ([_, _, h, w], [_, _, oh, ow]) = (xs, os);
    if r.is_simple() {
        return std::mem::size_of::<(usize, usize, f32)>().saturating_mul(oh.saturating_add(ow));
    }
    let [sh, sw] = scales_f64(r, [h, w], [oh, ow]);
    let table = |scale, len: usize| taps_per_output(r, scale).saturating_mul(len).saturating_mul(std::mem::size_of::<usize>() + std::mem::size_of::<f32>()).saturating_add(len);
    table(sh, oh).saturating_add(table(sw, ow)).saturating_add(oh.saturating_mul(w).saturating_mul(4 * threads.max(1)))
}

/// The taps of one axis (see [`Taps`]); an identity axis (scale 1, same length, whole roi)
/// copies its input, as the reference skips it.
fn axis_taps(r: &Resize, scale: f64, in_len: usize, out_len: usize, roi: [f64; 2]) -> Taps {
    let whole = r.coord != CoordMode::TfCropAndResize || (roi[0].abs() < 1e-9 && (roi[1] - 1.0).abs() < 1e-9);
    if (scale - 1.0).abs() <= 1e-9 && in_len == out_len && whole {
        return Taps { n: 1, idx: (0..out_len).collect(), w: vec![1.0; out_len], outside: vec![false; out_len] };
    }
    let n = coeffs(r, 0.5, scale).len();
    let mut t = Taps { n, idx: Vec::with_capacity(out_len * n), w: Vec::with_capacity(out_len * n), outside: Vec::with_capacity(out_len) };
    let pad = n.div_ceil(2) as f64;
    for y in 0..out_len {
        let (x, outside) = source_coord_f64(r.coord, y as f64, scale, in_len, out_len, roi);
        let ratio = if x == x.floor() { 1.0 } else { x - x.floor() };
        let mut c = coeffs(r, ratio, scale);
        // The n positions nearest x, ties to the smaller (the reference's window), in the
        // edge-padded frame, then back.
        let xp = x + pad;
        let (p, frac) = (xp.floor(), xp - xp.floor());
        let off = if n % 2 == 0 {
            if frac == 0.0 { -((n / 2) as f64) } else { 1.0 - (n / 2) as f64 }
        } else {
            let base = -(((n - 1) / 2) as f64);
            if frac <= 0.5 { base } else { base + 1.0 }
        };
        let first = p + off - pad;
        if r.exclude_outside {
            for (k, v) in c.iter_mut().enumerate() {
                let i = first + k as f64;
                if i < 0.0 || i >= in_len as f64 {
                    *v = 0.0;
                }
            }
            c = normalised(c);
        }
        for (k, v) in c.iter().enumerate() {
            t.idx.push((first + k as f64).clamp(0.0, in_len as f64 - 1.0) as usize);
            t.w.push(*v as f32);
        }
        t.outside.push(outside);
    }
    t
}

/// The general path (see the module docs); [`resize`] takes it for every resize that is not
/// [`Resize::is_simple`].
pub fn resize_general(r: &Resize, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    let [sh, sw] = scales_f64(r, [h, w], [oh, ow]);
    let roi = r.roi.map(f64::from);
    let ty = axis_taps(r, sh, h, oh, [roi[0], roi[2]]);
    let tx = axis_taps(r, sw, w, ow, [roi[1], roi[3]]);
    let e = r.extrapolation;
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).with_min_len(super::min_items(h * w + oh * ow)).for_each(|(o, plane)| {
        let mut rows = vec![0f32; oh * w];
        for (oy, row) in rows.chunks_mut(w).enumerate() {
            if ty.outside[oy] {
                row.fill(e);
                continue;
            }
            for k in 0..ty.n {
                let (src, wt) = (&plane[ty.idx[oy * ty.n + k] * w..][..w], ty.w[oy * ty.n + k]);
                for (v, s) in row.iter_mut().zip(src) {
                    *v += wt * s;
                }
            }
        }
        for (orow, row) in o.chunks_mut(ow).zip(rows.chunks(w)) {
            for (ox, v) in orow.iter_mut().enumerate() {
                *v = if tx.outside[ox] { e } else { (0..tx.n).map(|k| tx.w[ox * tx.n + k] * row[tx.idx[ox * tx.n + k]]).sum() };
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// [`taps_per_output`] is the length of the taps [`coeffs`] builds, for every mode, with and
    /// without antialiasing, over up- and downscales down to 1/1000.
    #[test]
    fn taps_per_output_is_the_coefficients_length() {
        let modes = [ResizeMode::Nearest(NearestMode::Floor), ResizeMode::Linear, ResizeMode::Cubic { a: -0.75 }];
        for mode in modes {
            for antialias in [false, true] {
                let r = Resize { antialias, ..Resize::new(mode, CoordMode::HalfPixel, ResizeTarget::Scales([1.0, 1.0])) };
                for scale in [4.0, 2.0, 1.0, 0.999, 0.5, 0.3, 0.1, 0.0173, 1e-3] {
                    assert_eq!(taps_per_output(&r, scale), coeffs(&r, 0.5, scale).len(), "{mode:?} antialias {antialias} scale {scale}");
                }
            }
        }
    }
}
