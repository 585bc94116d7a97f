//! Data-dependent initialisation of BatchNorm statistics for seeded models.
//!
//! With default statistics (mean 0, var 1) a random deep ResNet's activations grow or
//! collapse with depth and its output barely depends on its input, which hides bugs. Here
//! each BatchNorm's running mean and variance are set to the batch statistics of its input
//! on a seeded image-like batch, layer by layer, so every layer sees unit-scale activations.

use crate::detmath;
use crate::error::Result;
use crate::exec::run_node;
use crate::graph::{Graph, Op};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// A seeded, smooth, image-like batch `[n, c, h, w]`, roughly zero mean and unit variance
/// per channel: a few random low-frequency waves plus blobs plus a little noise; the same
/// values on every platform ([`crate::detmath`]).
pub fn synthetic_images(n: usize, c: usize, h: usize, w: usize, seed: u64) -> Tensor {
    let mut rng = Rng::new(seed);
    let mut data = Vec::with_capacity(n * c * h * w);
    for _ in 0..n {
        let waves: Vec<[f32; 4]> = (0..4)
            .map(|_| [rng.range(0.5, 6.0), rng.range(0.5, 6.0), rng.range(0.0, 6.3), rng.range(0.3, 1.0)])
            .collect();
        let blobs: Vec<[f32; 4]> = (0..3).map(|_| [rng.uniform(), rng.uniform(), rng.range(0.05, 0.25), rng.range(-1.5, 1.5)]).collect();
        for ch in 0..c {
            let tint = rng.range(-0.5, 0.5);
            for y in 0..h {
                for x in 0..w {
                    let (u, v) = (x as f32 / w as f32, y as f32 / h as f32);
                    let mut s = tint;
                    for (k, wv) in waves.iter().enumerate() {
                        let phase = wv[2] + ch as f32 * 0.7 * k as f32;
                        s += wv[3] * detmath::sin(std::f32::consts::TAU * (wv[0] * u + wv[1] * v) + phase);
                    }
                    for bl in &blobs {
                        let d2 = (u - bl[0]).powi(2) + (v - bl[1]).powi(2);
                        s += bl[3] * detmath::exp(-d2 / (bl[2] * bl[2]));
                    }
                    data.push(s * 0.6 + rng.normal() * 0.1);
                }
            }
        }
    }
    Tensor::new(vec![n, c, h, w], data).unwrap_or_else(|_| Tensor::zeros(vec![n, c, h, w]))
}

/// Sets every BatchNorm's running statistics from a seeded image-like batch.
pub fn calibrate_batchnorm(g: &mut Graph, seed: u64) -> Result<()> {
    let mut shape = g.input_shape(2)?;
    if shape.len() != 4 {
        return Ok(());
    }
    // Statistics barely depend on resolution; cap it to keep start-up cheap.
    let m = g.spatial_multiple.unwrap_or(1).max(1);
    let side = |s: usize| (s.min(128) / m).max(1) * m;
    shape[2] = side(shape[2]);
    shape[3] = side(shape[3]);
    let input = synthetic_images(shape[0], shape[1], shape[2], shape[3], seed);
    set_batchnorm_statistics(g, input, None, 1e-4)?;
    Ok(())
}

/// Runs `g` node by node on `input` and sets the running mean and variance of the BatchNorm
/// nodes `which` (every BatchNorm when `None`) to the batch statistics of their input, the
/// variance at least `var_floor`. Each BatchNorm sees the statistics already set before it.
/// Values are dropped after their last reader. Returns how many BatchNorms were set.
pub fn set_batchnorm_statistics(g: &mut Graph, input: Tensor, which: Option<&[usize]>, var_floor: f32) -> Result<usize> {
    let mut last_use = vec![0usize; g.values.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for &v in &n.inputs {
            last_use[v] = i;
        }
    }
    let mut values: Vec<Option<Tensor>> = vec![None; g.values.len()];
    if let Some(i) = g.inputs.first() {
        values[i.id] = Some(input);
    }
    for (&id, t) in &g.constants {
        values[id] = Some(t.clone());
    }
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let mut count = 0;
    for i in 0..g.nodes.len() {
        let x_id = g.nodes[i].inputs[0];
        let chosen = which.is_none_or(|w| w.contains(&i));
        if let (Op::BatchNorm(bn), Some(x), true) = (&mut g.nodes[i].op, &values[x_id], chosen) {
            let s = x.shape();
            let (c, inner) = (s[1], s[2..].iter().product::<usize>());
            let (mut sum, mut sq) = (vec![0.0f64; c], vec![0.0f64; c]);
            for (k, chunk) in x.data().chunks(inner.max(1)).enumerate() {
                for &v in chunk {
                    sum[k % c] += f64::from(v);
                    sq[k % c] += f64::from(v) * f64::from(v);
                }
            }
            let per = (x.numel() / c.max(1)).max(1) as f64;
            for ch in 0..c {
                let mean = sum[ch] / per;
                bn.mean[ch] = mean as f32;
                bn.var[ch] = ((sq[ch] / per - mean * mean) as f32).max(var_floor);
            }
            count += 1;
        }
        let t = run_node(&g.nodes[i], &values, threads)?;
        let out = g.nodes[i].output;
        values[out] = Some(t);
        for &v in &g.nodes[i].inputs {
            if last_use[v] == i && !g.constants.contains_key(&v) && !g.outputs.contains(&v) {
                values[v] = None;
            }
        }
    }
    Ok(count)
}
