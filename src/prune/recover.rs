//! Recovering a pruned model's accuracy without training, on calibration inputs.
//!
//! 1. **Bias folding**: a removed input channel `c` of a consumer contributes, on average,
//!    `μ_c · Σ_taps W[:, c, tap] · coverage(tap)` to the consumer's output, where `coverage`
//!    is the fraction of output pixels (at the model's input size) whose tap lands inside the
//!    image; that is added to the consumer's bias. A channel that is constant where the
//!    consumer reads it changes nothing once folded, for 1×1 convs, Gemms and convs without
//!    padding; with padding the fold is exact on average over the map, not at every border
//!    pixel. A ConvTranspose consumer gets the mean over its taps per output pixel.
//! 2. **Least squares**: each Conv (groups 1) or Gemm whose inputs lost channels is refitted
//!    on the kept ones, in graph order: `[W′ b′] = argmin ‖X′·W′ᵀ + b′ − Y‖² + λ‖W′‖²` with
//!    `X′` the pruned network's inputs to the layer (earlier refits included; im2col rows of
//!    sampled output pixels) and `Y` the original layer's outputs, in f64 through the normal
//!    equations and a Cholesky solve. λ is 1e-4 of the mean diagonal of `X′ᵀX′`. Layers with
//!    fewer sampled rows than twice their unknowns are left to bias folding, and so are
//!    ConvTransposes: refitting a UNet's 2×2 up-convs tap by tap lowered the training error
//!    but cost Dice on the held-out set (BENCHMARKS.md), so they keep bias folding only.
//! 3. **BatchNorm re-estimation**: the BatchNorms after layers whose outputs pruning changed
//!    and least squares did not restore (layers left to bias folding) take the statistics of
//!    their input in the pruned network on the calibration inputs, layer by layer. A refitted
//!    layer reproduces its original outputs, so its BatchNorm keeps its trained statistics.
//!
//! The solve is a plain Cholesky (`cholesky_solve`) rather than a linear-algebra crate: the
//! systems are small (at most a few thousand unknowns), symmetric positive definite by
//! construction, and the one `gemm` dependency already forms `X′ᵀX′` in f64; a crate such as
//! `nalgebra` or `faer` would add far more code than these 40 lines to an edge build.

use std::collections::HashMap;

use super::groups::{Groups, Role};
use super::score::ValueStats;
use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::graph::{Graph, Op, ValueId};
use crate::tensor::Tensor;

/// Which recovery steps run.
#[derive(Clone, Copy, Debug, serde::Serialize)]
pub struct Recovery {
    pub bias_fold: bool,
    pub least_squares: bool,
    pub bn_recalibration: bool,
}

impl Recovery {
    /// Every step.
    pub const ALL: Recovery = Recovery { bias_fold: true, least_squares: true, bn_recalibration: true };
    /// No step.
    pub const NONE: Recovery = Recovery { bias_fold: false, least_squares: false, bn_recalibration: false };

    /// Whether any step runs.
    pub fn any(&self) -> bool {
        self.bias_fold || self.least_squares || self.bn_recalibration
    }
}

/// What recovery did.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct RecoveryReport {
    pub biases_folded: usize,
    pub layers_refitted: usize,
    /// Layers left to bias folding, with the reason.
    pub layers_not_refitted: Vec<(String, String)>,
    pub batchnorms_reestimated: usize,
    /// Node indices of the refitted layers.
    #[serde(skip)]
    pub refitted: Vec<usize>,
}

/// The consumers of prunable groups that lost input channels, with their input layout's
/// kept features.
fn lossy_consumers(g: &Graph, groups: &Groups, kept: &[Vec<usize>]) -> Vec<(usize, Vec<usize>)> {
    let mut nodes: Vec<usize> = groups
        .groups
        .iter()
        .enumerate()
        .filter(|(gi, gr)| gr.prunable() && kept[*gi].len() < gr.width)
        .flat_map(|(_, gr)| gr.members.iter())
        .filter(|(_, r)| matches!(r, Role::Consumer { .. }))
        .map(|(n, _)| *n)
        .collect();
    nodes.sort_unstable();
    nodes.dedup();
    nodes
        .into_iter()
        .filter_map(|n| groups.layouts[g.nodes[n].inputs[0]].as_ref().map(|l| (n, groups.kept_indices(l, kept))))
        .collect()
}

/// Step 1: folds the mean contribution of every removed input channel into its consumer's
/// bias, in `pruned` (the result of `apply` on `orig`).
pub fn fold_biases(orig: &Graph, pruned: &mut Graph, groups: &Groups, kept: &[Vec<usize>], stats: &HashMap<ValueId, ValueStats>, report: &mut RecoveryReport) -> Result<()> {
    for (n, kin) in lossy_consumers(orig, groups, kept) {
        let node = &orig.nodes[n];
        let Some(st) = stats.get(&node.inputs[0]) else { continue };
        let mean = st.mean();
        let keep: std::collections::HashSet<usize> = kin.iter().copied().collect();
        let removed: Vec<usize> = (0..mean.len()).filter(|f| !keep.contains(f)).collect();
        let delta: Vec<f64> = match &node.op {
            Op::Conv(c) if c.groups == 1 => {
                let s = c.weight.shape();
                let (cin, k) = (s[1], s[2] * s[3]);
                let cov = tap_coverage(c, &groups.shapes[node.inputs[0]], &groups.shapes[node.output]);
                let dot = |w: &[f32]| w.iter().zip(&cov).map(|(&w, &f)| f64::from(w) * f).sum::<f64>();
                (0..s[0]).map(|o| removed.iter().map(|&r| mean[r] * dot(&c.weight.data()[(o * cin + r) * k..(o * cin + r + 1) * k])).sum()).collect()
            }
            Op::ConvTranspose(c) if c.groups == 1 => {
                let s = c.weight.shape();
                let (cout, k) = (s[1], s[2] * s[3]);
                let taps_per_pixel = (c.stride[0] * c.stride[1]) as f64;
                (0..cout).map(|o| removed.iter().map(|&r| mean[r] * c.weight.data()[(r * cout + o) * k..(r * cout + o + 1) * k].iter().map(|&w| f64::from(w)).sum::<f64>() / taps_per_pixel).sum()).collect()
            }
            Op::Linear(l) => {
                let i = l.weight.shape()[1];
                (0..l.weight.shape()[0]).map(|o| removed.iter().map(|&r| mean[r] * f64::from(l.weight.data()[o * i + r])).sum()).collect()
            }
            _ => continue,
        };
        let kout: Vec<usize> = match groups.layouts[node.output].as_ref() {
            Some(l) => groups.kept_indices(l, kept),
            None => (0..delta.len()).collect(),
        };
        let bias = match &mut pruned.nodes[n].op {
            Op::Conv(c) => &mut c.bias,
            Op::ConvTranspose(c) => &mut c.bias,
            Op::Linear(l) => &mut l.bias,
            _ => continue,
        };
        let b = bias.get_or_insert_with(|| vec![0.0; kout.len()]);
        for (bi, &o) in b.iter_mut().zip(&kout) {
            *bi = (f64::from(*bi) + delta[o]) as f32;
        }
        report.biases_folded += 1;
    }
    Ok(())
}

/// For each tap `(ky, kx)` of `c`, the fraction of output pixels of a `[.., H, W]` input
/// (`[.., OH, OW]` output) whose tap reads inside the image rather than the zero padding.
fn tap_coverage(c: &crate::graph::Conv2d, xs: &[usize], os: &[usize]) -> Vec<f64> {
    let [kh, kw] = c.kernel();
    let (h, w, oh, ow) = (xs[2], xs[3], os[2], os[3]);
    let inside = |o: usize, k: usize, s: usize, d: usize, p: usize, n: usize| {
        let i = (o * s + k * d) as isize - p as isize;
        i >= 0 && (i as usize) < n
    };
    let frac = |k: usize, s: usize, d: usize, p: usize, n: usize, on: usize| (0..on).filter(|&o| inside(o, k, s, d, p, n)).count() as f64 / on.max(1) as f64;
    let mut cov = Vec::with_capacity(kh * kw);
    for ky in 0..kh {
        let fy = frac(ky, c.stride[0], c.dilation[0], c.pads[0], h, oh);
        for kx in 0..kw {
            cov.push(fy * frac(kx, c.stride[1], c.dilation[1], c.pads[1], w, ow));
        }
    }
    cov
}

/// Solves `A·X = B` for symmetric positive definite `A: [n][n]` and `B: [n][m]` (row-major,
/// f64) by Cholesky; `None` when `A` is not positive definite.
pub fn cholesky_solve(a: &[f64], n: usize, b: &[f64], m: usize) -> Option<Vec<f64>> {
    let mut l = vec![0.0f64; n * n];
    for j in 0..n {
        let mut d = a[j * n + j];
        for k in 0..j {
            d -= l[j * n + k] * l[j * n + k];
        }
        if !(d > 0.0) || !d.is_finite() {
            return None;
        }
        let d = d.sqrt();
        l[j * n + j] = d;
        for i in j + 1..n {
            let mut s = a[i * n + j];
            let (ri, rj) = (&l[i * n..i * n + j], &l[j * n..j * n + j]);
            s -= ri.iter().zip(rj).map(|(x, y)| x * y).sum::<f64>();
            l[i * n + j] = s / d;
        }
    }
    // L·Z = B, then Lᵀ·X = Z.
    let mut x = b.to_vec();
    for c in 0..m {
        for i in 0..n {
            let mut s = x[i * m + c];
            for k in 0..i {
                s -= l[i * n + k] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
        for i in (0..n).rev() {
            let mut s = x[i * m + c];
            for k in i + 1..n {
                s -= l[k * n + i] * x[k * m + c];
            }
            x[i * m + c] = s / l[i * n + i];
        }
    }
    Some(x)
}

/// `out += aᵀ·b` for row-major `a: [r][p]`, `b: [r][q]` in f64.
fn gram_add(a: &[f64], b: &[f64], r: usize, p: usize, q: usize, out: &mut [f64], threads: usize) {
    if r == 0 {
        return;
    }
    let par = if threads > 1 { gemm::Parallelism::Rayon(threads) } else { gemm::Parallelism::None };
    // SAFETY: dst is [p][q] row-major (row stride q), lhs = aᵀ read from a with (row stride 1,
    // column stride p), rhs = b [r][q] with (row stride q, column stride 1): every index stays
    // inside the slices, whose lengths are checked just below.
    assert!(a.len() >= r * p && b.len() >= r * q && out.len() >= p * q, "gram_add: slice sizes");
    unsafe {
        gemm::gemm(p, q, r, out.as_mut_ptr(), 1, q as isize, true, a.as_ptr(), p as isize, 1, b.as_ptr(), 1, q as isize, 1.0, 1.0, false, false, false, par);
    }
}

/// Unknowns per output at most for which least squares runs.
const MAX_UNKNOWNS: usize = 6000;
/// Rows sampled per unknown (over all calibration inputs), at least.
const ROWS_PER_UNKNOWN: usize = 64;

/// Step 2: refits each lossy Conv (groups 1) and Gemm of `pruned`, in graph order, on the
/// kept inputs. The inputs are the pruned network's own (earlier refits included), so each
/// layer also absorbs the error its inputs carry; the targets are the original layer's
/// outputs. A conv's taps that never read inside the image at the model's input size (a 3×3
/// conv on a 1×1 map) keep their weights and are left out of the fit.
pub fn least_squares(orig: &Graph, pruned: &mut Graph, groups: &Groups, kept: &[Vec<usize>], calib: &[Tensor], threads: usize, report: &mut RecoveryReport) -> Result<()> {
    let targets = lossy_consumers(orig, groups, kept);
    if targets.is_empty() || calib.is_empty() {
        return Ok(());
    }
    let original = Session::new(orig.clone(), &Options { threads, optimize: false, ..Default::default() })?;
    let threads = original.threads();
    let images: usize = calib.iter().map(|t| t.shape()[0]).sum();
    // The original layers' outputs: computed once, kept only for the layers refitted.
    let mut want: HashMap<usize, Vec<Tensor>> = HashMap::new();
    for x in calib {
        let all = original.run_all(std::slice::from_ref(x))?;
        for (n, _) in &targets {
            if let Some(t) = &all[orig.nodes[*n].output] {
                want.entry(*n).or_default().push(t.clone());
            }
        }
    }
    for (n, kin) in targets {
        let node = &orig.nodes[n];
        let kout: Vec<usize> = groups.layouts[node.output].as_ref().map_or_else(Vec::new, |l| groups.kept_indices(l, kept));
        let (taps, rows_per_image): (Vec<usize>, Option<usize>) = match &node.op {
            Op::Conv(c) if c.groups == 1 => {
                let cov = tap_coverage(c, &groups.shapes[node.inputs[0]], &groups.shapes[node.output]);
                ((0..cov.len()).filter(|&t| cov[t] > 0.0).collect(), None)
            }
            Op::Linear(_) => (vec![0], Some(1)),
            _ => {
                report.layers_not_refitted.push((node.name.clone(), format!("{} is refitted by bias folding only", node.op.kind())));
                continue;
            }
        };
        let unknowns = kin.len() * taps.len() + 1;
        if unknowns > MAX_UNKNOWNS {
            report.layers_not_refitted.push((node.name.clone(), format!("{unknowns} unknowns per output exceed {MAX_UNKNOWNS}")));
            continue;
        }
        if rows_per_image.is_some_and(|r| r * images < 2 * unknowns) {
            report.layers_not_refitted.push((node.name.clone(), format!("{images} calibration rows for {unknowns} unknowns")));
            continue;
        }
        // The pruned network as refitted so far, run to this layer's input.
        let current = Session::new(pruned.clone(), &Options { threads, optimize: false, ..Default::default() })?;
        let m = kout.len();
        let mut gram = vec![0.0f64; unknowns * unknowns];
        let mut rhs = vec![0.0f64; unknowns * m];
        let mut rows_total = 0usize;
        for (i, x) in calib.iter().enumerate() {
            let all = current.run_all(std::slice::from_ref(x))?;
            let pn = &pruned.nodes[n];
            let (Some(xv), Some(yv)) = (&all[pn.inputs[0]], want.get(&n).and_then(|w| w.get(i))) else {
                return Err(Error::Internal(format!("prune: values of '{}' missing in calibration", node.name)));
            };
            let residual = match &node.op {
                Op::Conv(c) if c.residual => all[pn.inputs[1]].as_ref(),
                _ => None,
            };
            let all_in: Vec<usize> = (0..xv.shape()[1]).collect();
            let (xrows, yrows, r) = rows(&node.op, xv, yv, residual, &all_in, &taps, &kout, ROWS_PER_UNKNOWN * unknowns / calib.len().max(1) + 1)?;
            gram_add(&xrows, &xrows, r, unknowns, unknowns, &mut gram, threads);
            gram_add(&xrows, &yrows, r, unknowns, m, &mut rhs, threads);
            rows_total += r;
        }
        if rows_total < 2 * unknowns {
            report.layers_not_refitted.push((node.name.clone(), format!("{rows_total} sampled rows for {unknowns} unknowns")));
            continue;
        }
        let diag = (0..unknowns).map(|i| gram[i * unknowns + i]).sum::<f64>() / unknowns as f64;
        let lambda = 1e-4 * diag.max(f64::MIN_POSITIVE);
        for i in 0..unknowns - 1 {
            gram[i * unknowns + i] += lambda;
        }
        gram[(unknowns - 1) * unknowns + unknowns - 1] += 1e-12 * rows_total as f64;
        let Some(sol) = cholesky_solve(&gram, unknowns, &rhs, m) else {
            report.layers_not_refitted.push((node.name.clone(), "the normal equations are not positive definite".into()));
            continue;
        };
        // sol: [unknowns][m], rows = kept inputs × active taps, then the bias.
        let k = unknowns - 1;
        let b: Vec<f32> = (0..m).map(|o| sol[k * m + o] as f32).collect();
        match &mut pruned.nodes[n].op {
            Op::Conv(c) => {
                let s = c.weight.shape().to_vec();
                let (cin, kk) = (s[1], s[2] * s[3]);
                let w = c.weight.data_mut();
                for o in 0..m {
                    for ci in 0..cin {
                        for (ti, &t) in taps.iter().enumerate() {
                            w[(o * cin + ci) * kk + t] = sol[(ci * taps.len() + ti) * m + o] as f32;
                        }
                    }
                }
                c.bias = Some(b);
            }
            Op::Linear(l) => {
                let i = l.weight.shape()[1];
                let w = l.weight.data_mut();
                for o in 0..m {
                    for f in 0..i {
                        w[o * i + f] = sol[f * m + o] as f32;
                    }
                }
                l.bias = Some(b);
            }
            _ => {}
        }
        report.layers_refitted += 1;
        report.refitted.push(n);
    }
    Ok(())
}

/// Sampled rows of one calibration batch: inputs `[r][unknowns]` (the channels `kin` of `x`
/// at the taps `taps`, then 1) and targets `[r][kout]` of `y` (minus the residual).
#[allow(clippy::too_many_arguments)]
fn rows(op: &Op, x: &Tensor, y: &Tensor, residual: Option<&Tensor>, kin: &[usize], taps: &[usize], kout: &[usize], want: usize) -> Result<(Vec<f64>, Vec<f64>, usize)> {
    let (xs, ys) = (x.shape(), y.shape());
    let (mut xr, mut yr) = (Vec::new(), Vec::new());
    match op {
        Op::Conv(c) => {
            let (n, cin, h, w) = (xs[0], xs[1], xs[2], xs[3]);
            let (cout, oh, ow) = (ys[1], ys[2], ys[3]);
            let kw = c.kernel()[1];
            let total = n * oh * ow;
            let step = total.div_ceil(want.max(1)).max(1);
            let mut r = 0;
            for p in (0..total).step_by(step) {
                let (b, oy, ox) = (p / (oh * ow), (p / ow) % oh, p % ow);
                for &ci in kin {
                    for &t in taps {
                        let (ky, kx) = (t / kw, t % kw);
                        let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                        let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                        let v = if iy >= 0 && ix >= 0 && (iy as usize) < h && (ix as usize) < w { x.data()[((b * cin + ci) * h + iy as usize) * w + ix as usize] } else { 0.0 };
                        xr.push(f64::from(v));
                    }
                }
                xr.push(1.0);
                for &o in kout {
                    let at = ((b * cout + o) * oh + oy) * ow + ox;
                    let r_v = residual.map_or(0.0, |t| t.data()[at]);
                    yr.push(f64::from(y.data()[at] - r_v));
                }
                r += 1;
            }
            Ok((xr, yr, r))
        }
        Op::Linear(_) => {
            let (n, i, o) = (xs[0], xs[1], ys[1]);
            for b in 0..n {
                xr.extend(kin.iter().map(|&f| f64::from(x.data()[b * i + f])));
                xr.push(1.0);
                yr.extend(kout.iter().map(|&c| f64::from(y.data()[b * o + c])));
            }
            Ok((xr, yr, n))
        }
        _ => Ok((xr, yr, 0)),
    }
}

/// The BatchNorms step 3 re-estimates in `pruned`: those reading the output of a layer that
/// lost input channels and was not refitted.
pub fn batchnorms_to_reestimate(orig: &Graph, groups: &Groups, kept: &[Vec<usize>], refitted: &[usize]) -> Vec<usize> {
    let changed: std::collections::HashSet<ValueId> = lossy_consumers(orig, groups, kept).into_iter().filter(|(n, _)| !refitted.contains(n)).map(|(n, _)| orig.nodes[n].output).collect();
    orig.nodes.iter().enumerate().filter(|(_, n)| matches!(n.op, Op::BatchNorm(_)) && changed.contains(&n.inputs[0])).map(|(i, _)| i).collect()
}

/// Step 3: sets the statistics of the BatchNorm nodes `which` (every BatchNorm when `None`)
/// from their input in `g` on `calib`, in graph order (each sees the statistics already set
/// before it). Returns how many.
pub fn reestimate_batchnorm(g: &mut Graph, calib: &[Tensor], which: Option<&[usize]>) -> Result<usize> {
    if calib.is_empty() || !g.nodes.iter().any(|n| matches!(n.op, Op::BatchNorm(_))) || which.is_some_and(|w| w.is_empty()) {
        return Ok(0);
    }
    crate::models::init::set_batchnorm_statistics(g, Tensor::concat_batch(calib)?, which, 0.0)
}
