//! Structured channel pruning of float graphs: whole channels removed from every layer they
//! couple, so the result is a physically smaller model of the same ops that every command
//! runs, quantizes and exports.
//!
//! - [`groups`]: the channel dependency groups (residual streams, Concat skips, depthwise
//!   convs, Gemm after Flatten) and what may not be pruned;
//! - [`score`]: channel importance (magnitude, BatchNorm γ, activation, reconstruction,
//!   random), normalised per group;
//! - this module: how many channels each group keeps (a uniform ratio, a global ranking, a
//!   MAC, parameter or latency target; widths rounded to what the kernels run in whole
//!   blocks) and the driver, [`prune`];
//! - [`apply`]: slicing weights, biases, BatchNorms and constants;
//! - [`recover`]: bias folding, least-squares refits and BatchNorm re-estimation on
//!   calibration inputs;
//! - [`sensitivity`]: how many channels each group loses when the model's measured output
//!   error decides (`--sensitivity`).
//!
//! Pruning is not a `graph::passes` pass: it changes values. Prune the float model, then
//! prepare, quantize or export the pruned one.

pub mod apply;
pub mod groups;
pub mod recover;
pub mod score;
pub mod sensitivity;
pub mod sparse;
pub mod width;

use std::collections::HashMap;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::tensor::Tensor;
pub use groups::Groups;
pub use recover::{Recovery, RecoveryReport};
pub use score::{Importance, Reduce};
pub use width::RoundTo;

/// How many channels to remove.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Target {
    /// Remove this fraction of each group's channels (uniform) or of all prunable channels
    /// (global).
    Ratio(f64),
    /// Keep at most this fraction of the model's MACs.
    Macs(f64),
    /// Keep at most this fraction of the model's parameters.
    Params(f64),
    /// Run in at most this many milliseconds, as the latency callback of [`prune_measured`]
    /// measures it (our own engine at the chosen precision, on this machine).
    Latency(f64),
}

/// What [`prune`] does.
#[derive(Clone, Debug)]
pub struct PruneOptions {
    pub target: Target,
    /// Rank every prunable channel together (else each group loses its own share).
    pub global: bool,
    /// Global ranking: the largest fraction of any one group removed.
    pub max_layer_ratio: f64,
    /// Remove the ratio of all prunable channels, each group's share chosen by its measured
    /// sensitivity on the calibration inputs ([`sensitivity`]) rather than by ranking scores.
    pub sensitivity: bool,
    /// With `sensitivity`: curves measured before for the same model, calibration inputs,
    /// importance, recovery steps and rounding ([`Pruned::sensitivity`] of an earlier run), so
    /// that a sweep over ratios measures them once.
    pub curves: Option<std::sync::Arc<Vec<Option<sensitivity::Curve>>>>,
    /// Node names kept whole (a trailing `*` matches a prefix).
    pub exclude: Vec<String>,
    pub importance: Importance,
    pub round_to: RoundTo,
    /// The model is pruned for INT8: `RoundTo::Auto` rounds for the INT8 kernels' steps
    /// (coarser on AMX tiles, [`width::auto_multiple`]).
    pub for_int8: bool,
    /// Recovery steps (they need calibration inputs).
    pub recovery: Recovery,
    pub threads: usize,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            target: Target::Ratio(0.0),
            global: false,
            max_layer_ratio: 0.9,
            sensitivity: false,
            curves: None,
            exclude: Vec::new(),
            importance: Importance::BnGamma,
            round_to: RoundTo::Multiple(1),
            for_int8: false,
            recovery: Recovery::ALL,
            threads: 0,
        }
    }
}

/// One layer before and after.
#[derive(Clone, Debug, Serialize)]
pub struct LayerChange {
    pub node: String,
    pub op: &'static str,
    pub in_before: usize,
    pub in_after: usize,
    pub out_before: usize,
    pub out_after: usize,
    pub params_before: usize,
    pub params_after: usize,
    pub macs_before: u64,
    pub macs_after: u64,
}

/// A pruned graph and what changed.
#[derive(Clone, Debug, Serialize)]
pub struct Pruned {
    #[serde(skip)]
    pub graph: Graph,
    /// Kept channels of each group.
    pub kept: Vec<Vec<usize>>,
    /// Group widths before.
    pub widths: Vec<usize>,
    pub prunable_groups: usize,
    pub params_before: usize,
    pub params_after: usize,
    pub macs_before: u64,
    pub macs_after: u64,
    pub layers: Vec<LayerChange>,
    pub recovery: RecoveryReport,
    /// The global ratio a MAC or parameter target settled on.
    pub ratio_used: f64,
    /// How kept widths were rounded (`RoundTo::describe`).
    pub rounding: String,
    /// Each group's measured cost curve, with `--sensitivity` (`None` for groups kept whole).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sensitivity: Option<Vec<Option<sensitivity::Curve>>>,
}

/// Channels of each group kept for removal ratio `ratio`, from `scores`.
/// The `n` highest of one group's `scores` (ties to the lower channel), in channel order.
fn keep_top(scores: &[f64], n: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    let mut k: Vec<usize> = idx.into_iter().take(n).collect();
    k.sort_unstable();
    k
}

/// With `--sensitivity`, `allocation` gives each group's removed channels for a ratio.
fn select(groups: &Groups, scores: &[Vec<f64>], ratio: f64, opts: &PruneOptions, round: &dyn Fn(usize, usize) -> usize, allocation: Option<&dyn Fn(f64) -> Vec<usize>>) -> Vec<Vec<usize>> {
    let full = |w: usize| (0..w).collect::<Vec<_>>();
    if let Some(allocation) = allocation {
        let removed = allocation(ratio);
        return groups
            .groups
            .iter()
            .zip(scores)
            .zip(&removed)
            .map(|((gr, s), &r)| if !gr.prunable() || r == 0 { full(gr.width) } else { keep_top(s, round(gr.width - r.min(gr.width - 1), gr.width).min(gr.width)) })
            .collect();
    }
    if !opts.global {
        return groups
            .groups
            .iter()
            .zip(scores)
            .map(|(gr, s)| {
                if !gr.prunable() {
                    return full(gr.width);
                }
                let remove = (ratio * gr.width as f64).floor() as usize;
                let keep = round((gr.width - remove.min(gr.width - 1)).max(1), gr.width).min(gr.width);
                keep_top(s, keep)
            })
            .collect();
    }
    // Global: the lowest normalised scores over every prunable channel, within each group's cap.
    let mut all: Vec<(f64, usize, usize)> = Vec::new();
    let mut total = 0usize;
    for (gi, (gr, s)) in groups.groups.iter().zip(scores).enumerate() {
        if gr.prunable() {
            total += gr.width;
            all.extend(s.iter().enumerate().map(|(c, &v)| (v, gi, c)));
        }
    }
    all.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
    let want = (ratio * total as f64).floor() as usize;
    let mut removed = vec![0usize; groups.groups.len()];
    let mut gone = vec![Vec::new(); groups.groups.len()];
    let mut n = 0;
    for (_, gi, c) in all {
        if n >= want {
            break;
        }
        let w = groups.groups[gi].width;
        let cap = ((opts.max_layer_ratio * w as f64).floor() as usize).min(w - 1);
        if removed[gi] < cap {
            removed[gi] += 1;
            gone[gi].push(c);
            n += 1;
        }
    }
    groups
        .groups
        .iter()
        .zip(scores)
        .enumerate()
        .map(|(gi, (gr, s))| {
            if !gr.prunable() || removed[gi] == 0 {
                return full(gr.width);
            }
            let keep = round(gr.width - removed[gi], gr.width).min(gr.width);
            keep_top(s, keep)
        })
        .collect()
}

/// Calibration inputs regrouped into batches of up to `n` images (inputs of one shape), so the
/// calibration passes run batched.
fn batches(calib: &[Tensor], n: usize) -> Result<Vec<Tensor>> {
    let same = calib.windows(2).all(|w| w[0].shape().get(1..) == w[1].shape().get(1..));
    if !same || calib.iter().all(|t| t.shape().first().is_none_or(|&b| b >= n)) {
        return Ok(calib.to_vec());
    }
    let images: Vec<Tensor> = calib.iter().flat_map(Tensor::split_batch).collect();
    images.chunks(n).map(Tensor::concat_batch).collect()
}

/// Per-layer channels, params and MACs of `before` and `after` (same node names).
fn changes(before: &Graph, after: &Graph) -> Result<(Vec<LayerChange>, u64, u64)> {
    let sb = crate::graph::shape::infer(before, &[before.input_shape(1)?])?;
    let sa = crate::graph::shape::infer(after, &[after.input_shape(1)?])?;
    let macs = |g: &Graph, s: &[Vec<usize>], i: usize| -> u64 {
        let n = &g.nodes[i];
        let out: u64 = s[n.output].iter().product::<usize>() as u64;
        match &n.op {
            Op::Conv(c) => {
                let w = c.weight.shape();
                out * (w[1] * w[2] * w[3]) as u64
            }
            Op::ConvTranspose(c) => {
                let w = c.weight.shape();
                s[n.inputs[0]].iter().product::<usize>() as u64 * (w[1] * w[2] * w[3]) as u64
            }
            Op::Linear(l) => out * l.weight.shape()[1] as u64,
            _ => 0,
        }
    };
    let mut rows = Vec::new();
    let (mut mb, mut ma) = (0, 0);
    for (i, (nb, na)) in before.nodes.iter().zip(&after.nodes).enumerate() {
        let (b, a) = (macs(before, &sb, i), macs(after, &sa, i));
        mb += b;
        ma += a;
        if matches!(nb.op, Op::Conv(_) | Op::ConvTranspose(_) | Op::Linear(_)) {
            let ch = |s: &[Vec<usize>], v: usize| s[v].get(1).copied().unwrap_or(0);
            rows.push(LayerChange {
                node: nb.name.clone(),
                op: nb.op.kind(),
                in_before: ch(&sb, nb.inputs[0]),
                in_after: ch(&sa, na.inputs[0]),
                out_before: ch(&sb, nb.output),
                out_after: ch(&sa, na.output),
                params_before: nb.op.param_count(),
                params_after: na.op.param_count(),
                macs_before: b,
                macs_after: a,
            });
        }
    }
    Ok((rows, mb, ma))
}

/// Prunes `g` (a float graph) as `opts` says, recovering on `calib` when given. A latency
/// target needs [`prune_measured`].
pub fn prune(g: &Graph, opts: &PruneOptions, calib: &[Tensor]) -> Result<Pruned> {
    prune_measured(g, opts, calib, None)
}

/// [`prune`], with `latency` measuring a candidate graph in ms for [`Target::Latency`].
pub fn prune_measured(g: &Graph, opts: &PruneOptions, calib: &[Tensor], mut latency: Option<&mut dyn FnMut(&Graph) -> Result<f64>>) -> Result<Pruned> {
    if g.is_quantized() {
        return Err(Error::Unsupported { what: "pruning a quantized model".into(), hint: "prune the float model, then quantize the pruned one".into() });
    }
    let check = |v: f64, what: &str| -> Result<()> {
        if (0.0..1.0).contains(&v) {
            Ok(())
        } else {
            Err(Error::Argument(format!("{what} {v}: must be in [0, 1)")))
        }
    };
    match opts.target {
        Target::Ratio(r) => check(r, "--ratio")?,
        Target::Macs(f) | Target::Params(f) if !(f > 0.0 && f <= 1.0) => return Err(Error::Argument(format!("target {f}: a fraction of the model in (0, 1]"))),
        Target::Latency(ms) if !(ms > 0.0 && ms.is_finite()) => return Err(Error::Argument(format!("--target-latency {ms}: a positive number of milliseconds"))),
        Target::Latency(_) if latency.is_none() => return Err(Error::Argument("a latency target needs a latency measurement (kestrel prune --target-latency)".into())),
        _ => {}
    }
    if !(opts.max_layer_ratio > 0.0 && opts.max_layer_ratio < 1.0) {
        return Err(Error::Argument(format!("--max-layer-ratio {}: must be in (0, 1)", opts.max_layer_ratio)));
    }
    if opts.sensitivity && opts.global {
        return Err(Error::Argument("--sensitivity and --global choose each group's share two ways: give one".into()));
    }
    if opts.sensitivity && calib.is_empty() {
        return Err(Error::Argument("--sensitivity measures on calibration inputs: give --calib DIR or --calib-samples N".into()));
    }
    if opts.importance.needs_data() && calib.is_empty() {
        return Err(Error::Argument("data-driven importance (activation, reconstruction) needs --calib DIR or --calib-samples N".into()));
    }
    let threads = if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
    let batched = batches(calib, 32)?;
    let calib = batched.as_slice();
    let groups = Groups::new(g, &opts.exclude)?;
    let prunable = groups.groups.iter().filter(|gr| gr.prunable()).count();
    let stats = if opts.importance.needs_data() || (opts.recovery.bias_fold && !calib.is_empty()) {
        score::value_stats(g, &score::read_values(g, &groups), calib, threads)?
    } else {
        HashMap::new()
    };
    let scores = score::scores(g, &groups, opts.importance, &stats, calib, threads)?;
    let steps = width::Steps::detect(opts.for_int8)?;
    let round = |keep: usize, width: usize| opts.round_to.round(keep, width, steps);
    let params_before = g.param_count();
    let (_, macs_before, _) = changes(g, g)?;
    let curves = if let (true, Some(c)) = (opts.sensitivity, opts.curves.as_ref().filter(|c| c.len() == groups.groups.len())) {
        Some(c.as_ref().clone())
    } else if opts.sensitivity {
        let trial = sensitivity::Trial { graph: g, groups: &groups, scores: &scores, stats: &stats, recovery: opts.recovery, max_layer_ratio: opts.max_layer_ratio, threads };
        Some(sensitivity::curves(&trial, calib, &round, &mut |_, _| {})?)
    } else {
        None
    };
    // The ratio counts channels, or for a MAC, latency or parameter target the share of the
    // model's MACs (latency: MACs stand in) or parameters to remove, so that the allocation
    // weighs each group's cost against what its channels save of the target.
    let channels: usize = groups.groups.iter().filter(|gr| gr.prunable()).map(|gr| gr.width).sum();
    let allocation = curves.as_deref().map(|c| {
        move |ratio: f64| match opts.target {
            Target::Ratio(_) => sensitivity::allocate(c, (ratio * channels as f64).floor(), sensitivity::Unit::Channels),
            Target::Macs(_) | Target::Latency(_) => sensitivity::allocate(c, ratio * macs_before as f64, sensitivity::Unit::Macs),
            Target::Params(_) => sensitivity::allocate(c, ratio * params_before as f64, sensitivity::Unit::Params),
        }
    });
    let build = |ratio: f64| -> Result<(Vec<Vec<usize>>, Graph)> {
        let kept = select(&groups, &scores, ratio, opts, &round, allocation.as_ref().map(|a| a as &dyn Fn(f64) -> Vec<usize>));
        let pg = apply::apply(g, &groups, &kept)?;
        Ok((kept, pg))
    };
    let (ratio, (kept, mut pg)) = match opts.target {
        Target::Ratio(r) => (r, build(r)?),
        Target::Macs(_) | Target::Params(_) | Target::Latency(_) => {
            let (f, steps) = match opts.target {
                Target::Macs(f) | Target::Params(f) => (f, 20),
                Target::Latency(ms) | Target::Ratio(ms) => (ms, 8),
            };
            let mut measure = |pg: &Graph| -> Result<f64> {
                Ok(match opts.target {
                    Target::Macs(_) => changes(g, pg)?.2 as f64 / macs_before.max(1) as f64,
                    Target::Params(_) => pg.param_count() as f64 / params_before.max(1) as f64,
                    _ => match latency.as_mut() {
                        Some(l) => l(pg)?,
                        None => return Err(Error::Internal("latency target without a measurement".into())),
                    },
                })
            };
            let hi_r = if opts.global || opts.sensitivity { 0.999 } else { 0.99 };
            let hi = build(hi_r)?;
            let best = measure(&hi.1)?;
            if best > f {
                let (want, got) = match opts.target {
                    Target::Latency(_) => (format!("{f:.2} ms"), format!("{best:.2} ms")),
                    _ => (format!("{:.1}%", 100.0 * f), format!("{:.1}%", 100.0 * best)),
                };
                return Err(Error::Argument(format!(
                    "the target of {want} cannot be met: removing every prunable channel it may ({} of {} groups prunable{}) leaves {got}",
                    prunable,
                    groups.groups.len(),
                    if opts.global || opts.sensitivity { format!(", --max-layer-ratio {}", opts.max_layer_ratio) } else { String::new() },
                )));
            }
            // The smallest ratio that meets the target (the measure falls as the ratio grows).
            let (mut lo, mut hi_ratio, mut found) = (0.0f64, hi_r, hi);
            for _ in 0..steps {
                let mid = 0.5 * (lo + hi_ratio);
                let cand = build(mid)?;
                if measure(&cand.1)? <= f {
                    hi_ratio = mid;
                    found = cand;
                } else {
                    lo = mid;
                }
            }
            (hi_ratio, found)
        }
    };
    let mut recovery = RecoveryReport::default();
    if !calib.is_empty() && opts.recovery.any() {
        if opts.recovery.bias_fold {
            recover::fold_biases(g, &mut pg, &groups, &kept, &stats, &mut recovery)?;
        }
        if opts.recovery.least_squares {
            recover::least_squares(g, &mut pg, &groups, &kept, calib, threads, &mut recovery)?;
        }
        if opts.recovery.bn_recalibration {
            let which = recover::batchnorms_to_reestimate(g, &groups, &kept, &recovery.refitted);
            recovery.batchnorms_reestimated = recover::reestimate_batchnorm(&mut pg, calib, Some(&which))?;
        }
    }
    let (layers, _, macs_after) = changes(g, &pg)?;
    Ok(Pruned {
        params_before,
        params_after: pg.param_count(),
        macs_before,
        macs_after,
        layers,
        widths: groups.groups.iter().map(|gr| gr.width).collect(),
        prunable_groups: prunable,
        kept,
        recovery,
        ratio_used: ratio,
        rounding: opts.round_to.describe(steps),
        sensitivity: curves,
        graph: pg,
    })
}

/// Each Conv, ConvTranspose and Gemm node's output channels: the per-layer widths a pruned
/// native model's config records so that its safetensors loads back.
pub fn layer_widths(g: &Graph) -> std::collections::BTreeMap<String, usize> {
    g.nodes
        .iter()
        .filter_map(|n| match &n.op {
            Op::Conv(c) => Some((n.name.clone(), c.out_channels())),
            Op::ConvTranspose(c) => Some((n.name.clone(), c.out_channels())),
            _ => None,
        })
        .collect()
}
