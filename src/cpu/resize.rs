//! Spatial resize of NCHW tensors (ONNX Resize, nearest and bilinear). The source index and
//! weight of every output row and column are computed once per call.

use rayon::prelude::*;

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
                ResizeMode::Linear => {
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
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    let [sh, sw] = scales(r, [h, w], [oh, ow]);
    let ty = axis_table(r, sh, h, oh);
    let tx = axis_table(r, sw, w, ow);
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).for_each(|(o, plane)| {
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
