//! Unstructured sparsity, as older tools report it: zeroing individual weights and counting
//! zeros. kestrel's kernels are dense: zeroed weights bring no speed-up, and nothing here
//! claims any. Structured pruning (the rest of this module family) is what makes models faster.

use serde::Serialize;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::tensor::Tensor;

/// The sentence every unstructured result carries.
pub const NO_SPEEDUP: &str = "zeroed weights bring no speed-up on kestrel's dense kernels (nor on ORT's): the model runs exactly as fast as before; only structured pruning removes work";

/// One weighted layer's sparsity.
#[derive(Clone, Debug, Serialize)]
pub struct LayerSparsity {
    pub node: String,
    pub op: &'static str,
    pub weights: usize,
    /// Fraction of weights exactly zero.
    pub zero_fraction: f64,
    /// Output channels whose weights' L2 norm is below 1e-6 of the layer's largest.
    pub near_zero_channels: usize,
    pub channels: usize,
}

fn weight(op: &Op) -> Option<(&Tensor, usize)> {
    match op {
        Op::Conv(c) => Some((&c.weight, 0)),
        Op::ConvTranspose(c) => Some((&c.weight, 1)),
        Op::Linear(l) => Some((&l.weight, 0)),
        _ => None,
    }
}

/// Per-layer sparsity of every Conv, ConvTranspose and Gemm.
pub fn sparsity(g: &Graph) -> Vec<LayerSparsity> {
    g.nodes
        .iter()
        .filter_map(|n| {
            let (w, axis) = weight(&n.op)?;
            let s = w.shape();
            let channels = s[axis];
            let mut norms = vec![0.0f64; channels];
            let inner: usize = s[axis + 1..].iter().product();
            for (i, &v) in w.data().iter().enumerate() {
                norms[(i / inner) % channels] += f64::from(v) * f64::from(v);
            }
            let max = norms.iter().copied().fold(0.0, f64::max);
            Some(LayerSparsity {
                node: n.name.clone(),
                op: n.op.kind(),
                weights: w.numel(),
                zero_fraction: w.data().iter().filter(|&&v| v == 0.0).count() as f64 / w.numel().max(1) as f64,
                near_zero_channels: norms.iter().filter(|&&v| v.sqrt() <= 1e-6 * max.sqrt()).count(),
                channels,
            })
        })
        .collect()
}

/// Zeroes the fraction `ratio` of smallest-magnitude weights of every Conv, ConvTranspose and
/// Gemm (layer by layer). Biases and BatchNorms are kept.
pub fn zero_smallest(g: &Graph, ratio: f64) -> Result<Graph> {
    if !(0.0..1.0).contains(&ratio) {
        return Err(Error::Argument(format!("--ratio {ratio}: must be in [0, 1)")));
    }
    if g.is_quantized() {
        return Err(Error::Unsupported { what: "zeroing weights of a quantized model".into(), hint: "zero the float model's weights, then quantize".into() });
    }
    let mut out = g.clone();
    for n in &mut out.nodes {
        let w = match &mut n.op {
            Op::Conv(c) => &mut c.weight,
            Op::ConvTranspose(c) => &mut c.weight,
            Op::Linear(l) => &mut l.weight,
            _ => continue,
        };
        let k = (ratio * w.numel() as f64).floor() as usize;
        if k == 0 {
            continue;
        }
        let mut mags: Vec<f32> = w.data().iter().map(|v| v.abs()).collect();
        let (_, &mut cut, _) = mags.select_nth_unstable_by(k - 1, f32::total_cmp);
        // Zero the k smallest: everything below the cut, then ties at the cut until k.
        let mut left = k - w.data().iter().filter(|v| v.abs() < cut).count();
        for v in w.data_mut() {
            if v.abs() < cut {
                *v = 0.0;
            } else if v.abs() == cut && left > 0 {
                *v = 0.0;
                left -= 1;
            }
        }
    }
    Ok(out)
}
