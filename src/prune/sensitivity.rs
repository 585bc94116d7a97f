//! How many channels each group loses, by measured sensitivity (`kestrel prune
//! --sensitivity`): every prunable group is pruned alone, at removal steps of an eighth of its
//! width (the channels its importance scores rank lowest, the widths rounded as the final
//! model's are), recovered with the same steps as the final model, and the model's outputs
//! compared with the original's: the cost of a step is the relative squared error
//! `Σ(y′ − y)² / Σy²` over every output. The last [`SENSITIVITY_IMAGES`] calibration images
//! are held out for that comparison and the recovery fits on the others (with fewer than twice
//! that many images, both use all of them): measured on the images it was fitted to, a
//! least-squares refit of a layer with few rows per unknown (a classifier head, 1×1 maps)
//! looks nearly free at any width. A greedy allocation then takes, again and again, the
//! group's next width (any of its measured steps further on) with the lowest added cost per
//! unit the target counts ([`Unit`]: channels for a ratio, the model's multiply-adds for a MAC
//! or latency target, parameters for a parameter target), until the target is met; the cost
//! and the savings of groups pruned together are taken as the sums of theirs alone (the
//! target search then measures the real model).
//!
//! Why: a uniform ratio takes as much from the 8-channel layers of a small UNet's
//! full-resolution path as from its 64-channel bottleneck, and normalised importance scores
//! do not compare channels across groups (a global ranking empties the narrow layers first);
//! the model's own outputs on calibration data do. It costs a pruned-and-recovered model and
//! one calibration pass per step and group (`steps × groups`, up to 7 steps each).

use std::collections::HashMap;

use super::groups::Groups;
use super::recover::{self, Recovery, RecoveryReport};
use super::score::ValueStats;
use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::graph::{Graph, ValueId};
use crate::tensor::Tensor;

/// Calibration images the sensitivity trials compare outputs on (the last ones of the
/// calibration set).
pub const SENSITIVITY_IMAGES: usize = 64;

/// Removal steps per group: eighths of its width.
const STEPS: usize = 8;

/// One group's measured cost: `removed[i]` channels removed cost `cost[i]` and save
/// `saved_macs[i]` multiply-adds and `saved_params[i]` parameters of the whole model
/// (`removed[0] = 0`, the rest 0 there too; `removed` strictly increasing).
#[derive(Clone, Debug, serde::Serialize)]
pub struct Curve {
    pub removed: Vec<usize>,
    pub cost: Vec<f64>,
    pub saved_macs: Vec<u64>,
    pub saved_params: Vec<usize>,
}

/// What a target counts: channels (`--ratio`), multiply-adds (`--target-macs`, and
/// `--target-latency`, for which they stand in) or parameters (`--target-params`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Unit {
    Channels,
    Macs,
    Params,
}

impl Curve {
    /// What step `i` removes, counted in `unit`.
    fn amount(&self, unit: Unit, i: usize) -> f64 {
        match unit {
            Unit::Channels => self.removed[i] as f64,
            Unit::Macs => self.saved_macs[i] as f64,
            Unit::Params => self.saved_params[i] as f64,
        }
    }
}

/// What a trial needs besides the group and its step.
pub struct Trial<'a> {
    pub graph: &'a Graph,
    pub groups: &'a Groups,
    pub scores: &'a [Vec<f64>],
    pub stats: &'a HashMap<ValueId, ValueStats>,
    pub recovery: Recovery,
    pub max_layer_ratio: f64,
    pub threads: usize,
}

/// The kept channels when group `gi` keeps its `keep` highest-scoring ones (all other groups
/// whole).
fn kept_with(t: &Trial, gi: usize, keep: usize) -> Vec<Vec<usize>> {
    t.groups.groups.iter().enumerate().map(|(i, gr)| if i == gi { super::keep_top(&t.scores[i], keep) } else { (0..gr.width).collect() }).collect()
}

/// Each prunable group's cost curve (`None` for groups kept whole), measured on `calib` (in
/// batches: the last [`SENSITIVITY_IMAGES`] images or more compare outputs, the others fit the
/// recovery). `round` rounds a kept width as the final model's will be. `progress` hears
/// `(group, groups)` as groups finish.
pub fn curves(t: &Trial, calib: &[Tensor], round: &dyn Fn(usize, usize) -> usize, progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Option<Curve>>> {
    if calib.is_empty() {
        return Err(Error::Argument("--sensitivity measures on calibration inputs: give --calib DIR or --calib-samples N".into()));
    }
    let count = |b: &[Tensor]| b.iter().map(|x| x.shape().first().copied().unwrap_or(1)).sum::<usize>();
    let mut split = calib.len();
    while split > 0 && count(&calib[split..]) < SENSITIVITY_IMAGES {
        split -= 1;
    }
    let (fit, subset) = if count(calib) >= 2 * SENSITIVITY_IMAGES && split > 0 { (&calib[..split], &calib[split..]) } else { (calib, calib) };
    let opts = Options { threads: t.threads, optimize: true, ..Default::default() };
    let original = Session::new(t.graph.clone(), &opts)?;
    let reference: Vec<Vec<Tensor>> = subset.iter().map(|x| original.run(std::slice::from_ref(x))).collect::<Result<_>>()?;
    let energy: f64 = reference.iter().flatten().flat_map(|y| y.data()).map(|&v| f64::from(v) * f64::from(v)).sum::<f64>().max(f64::MIN_POSITIVE);
    let total = t.groups.groups.len();
    let input = t.graph.input_shape(1)?;
    let macs_before = t.graph.macs(&input)?;
    let params_before = t.graph.param_count();
    let mut out = Vec::with_capacity(total);
    for (gi, gr) in t.groups.groups.iter().enumerate() {
        if !gr.prunable() {
            out.push(None);
            progress(gi + 1, total);
            continue;
        }
        let w = gr.width;
        let cap = ((t.max_layer_ratio * w as f64).floor() as usize).min(w - 1);
        let mut curve = Curve { removed: vec![0], cost: vec![0.0], saved_macs: vec![0], saved_params: vec![0] };
        for step in 1..STEPS {
            let want = (step * w).div_ceil(STEPS).min(cap);
            let keep = round(w - want, w).min(w);
            let removed = w - keep;
            if removed <= curve.removed.last().copied().unwrap_or(0) {
                continue;
            }
            let kept = kept_with(t, gi, keep);
            let mut pg = super::apply::apply(t.graph, t.groups, &kept)?;
            let (saved_macs, saved_params) = (macs_before.saturating_sub(pg.macs(&input)?), params_before.saturating_sub(pg.param_count()));
            let mut report = RecoveryReport::default();
            if t.recovery.bias_fold {
                recover::fold_biases(t.graph, &mut pg, t.groups, &kept, t.stats, &mut report)?;
            }
            if t.recovery.least_squares {
                recover::least_squares(t.graph, &mut pg, t.groups, &kept, fit, t.threads, &mut report)?;
            }
            if t.recovery.bn_recalibration {
                let which = recover::batchnorms_to_reestimate(t.graph, t.groups, &kept, &report.refitted);
                recover::reestimate_batchnorm(&mut pg, fit, Some(&which))?;
            }
            let s = Session::new(pg, &opts)?;
            let mut err = 0.0f64;
            for (x, want) in subset.iter().zip(&reference) {
                for (y, r) in s.run(std::slice::from_ref(x))?.iter().zip(want) {
                    err += y.data().iter().zip(r.data()).map(|(&a, &b)| (f64::from(a) - f64::from(b)).powi(2)).sum::<f64>();
                }
            }
            curve.removed.push(removed);
            // A trial whose outputs are not finite (a refit gone wrong) is never worth taking.
            let cost = err / energy;
            curve.cost.push(if cost.is_finite() { cost } else { f64::INFINITY });
            curve.saved_macs.push(saved_macs);
            curve.saved_params.push(saved_params);
        }
        out.push(Some(curve));
        progress(gi + 1, total);
    }
    Ok(out)
}

/// Channels each group loses so that at least `want` (in `unit`) go in all (less only when
/// every curve is exhausted): greedily the move, to any further measured step of a group, with
/// the lowest added cost per unit removed (a cost that falls further on, as refits can make
/// it, is taken as no cost); where the last move overshoots, its group gives back as many
/// whole channels of it as keep the total at `want` or more, at the move's average amount per
/// channel (a width between two measured steps).
pub fn allocate(curves: &[Option<Curve>], want: f64, unit: Unit) -> Vec<usize> {
    let mut at = vec![0usize; curves.len()];
    let mut removed = vec![0usize; curves.len()];
    let mut got = 0.0f64;
    let mut last = None;
    while got < want {
        let best = curves
            .iter()
            .enumerate()
            .filter_map(|(gi, c)| c.as_ref().map(|c| (gi, c)))
            .flat_map(|(gi, c)| {
                let i = at[gi];
                (i + 1..c.removed.len()).filter_map(move |j| {
                    let da = c.amount(unit, j) - c.amount(unit, i);
                    let dc = c.cost[j] - c.cost[i];
                    (da > 0.0).then(|| (if dc.is_nan() { f64::INFINITY } else { dc.max(0.0) } / da, gi, j))
                })
            })
            .min_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)).then(a.2.cmp(&b.2)));
        let Some((_, gi, j)) = best else { break };
        let Some(c) = curves[gi].as_ref() else { break };
        got += c.amount(unit, j) - c.amount(unit, at[gi]);
        last = Some((gi, at[gi], j));
        at[gi] = j;
        removed[gi] = c.removed[j];
    }
    if let (Some((gi, i, j)), true) = (last, got > want) {
        if let Some(c) = curves[gi].as_ref() {
            let channels = c.removed[j] - c.removed[i];
            let per = (c.amount(unit, j) - c.amount(unit, i)) / channels as f64;
            removed[gi] -= (((got - want) / per).floor() as usize).min(channels);
        }
    }
    removed
}

#[cfg(test)]
mod tests {
    use super::{allocate, Curve, Unit};

    fn curve(removed: &[usize], cost: &[f64]) -> Curve {
        // Each channel of these groups saves 10 MACs and 3 parameters.
        Curve { removed: removed.to_vec(), cost: cost.to_vec(), saved_macs: removed.iter().map(|&r| 10 * r as u64).collect(), saved_params: removed.iter().map(|&r| 3 * r).collect() }
    }

    #[test]
    fn allocates_the_cheapest_channels_first_and_stops_at_the_target() {
        let flat = curve(&[0, 2, 4, 6], &[0.0, 0.01, 0.02, 0.03]);
        let steep = curve(&[0, 1, 2], &[0.0, 0.5, 1.0]);
        let curves = vec![Some(steep.clone()), None, Some(flat)];
        assert_eq!(allocate(&curves, 5.0, Unit::Channels), vec![0, 0, 5]);
        assert_eq!(allocate(&curves, 7.0, Unit::Channels), vec![1, 0, 6]);
        // Every curve exhausted: as many as they hold.
        assert_eq!(allocate(&curves, 100.0, Unit::Channels), vec![2, 0, 6]);
        assert_eq!(allocate(&[Some(steep.clone())], 0.0, Unit::Channels), vec![0]);
        // In MACs: 45 need 5 channels of 10 (the last move gives back what it overshot).
        assert_eq!(allocate(&curves, 45.0, Unit::Macs), vec![0, 0, 5]);
        assert_eq!(allocate(&curves, 12.0, Unit::Params), vec![0, 0, 4]);
        // A cost that falls further on: the group jumps there.
        let dip = curve(&[0, 2, 4, 6], &[0.0, 0.3, 0.35, 0.01]);
        let mild = curve(&[0, 2, 4], &[0.0, 0.02, 0.04]);
        assert_eq!(allocate(&[Some(dip), Some(mild)], 6.0, Unit::Channels), vec![6, 0]);
        // A group whose channels save more MACs each wins a MAC target at the same cost per channel.
        let mut heavy = curve(&[0, 2, 4], &[0.0, 0.02, 0.04]);
        heavy.saved_macs = vec![0, 100, 200];
        let light = curve(&[0, 2, 4], &[0.0, 0.02, 0.04]);
        assert_eq!(allocate(&[Some(light.clone()), Some(heavy.clone())], 100.0, Unit::Macs), vec![0, 2]);
        assert_eq!(allocate(&[Some(light.clone()), Some(heavy)], 2.0, Unit::Channels), vec![2, 0]);
        // An infinite cost (a trial that failed) is taken last.
        let broken = curve(&[0, 2], &[0.0, f64::INFINITY]);
        assert_eq!(allocate(&[Some(broken.clone()), Some(light.clone())], 4.0, Unit::Channels), vec![0, 4]);
        assert_eq!(allocate(&[Some(broken), Some(light)], 6.0, Unit::Channels), vec![2, 4]);
    }
}
