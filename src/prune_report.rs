//! The measured side of `kestrel prune`: latency of the original and pruned models on this
//! machine (kestrel f32 and INT8, and ONNX Runtime f32 when built with `ort`, per layer and
//! whole), accuracy on the model's task when labelled data is given, and sweeps over
//! pruning ratios with and without recovery, written as tables and SVG plots with the Pareto
//! front marked.
//!
//! Every latency is the median of `runs` batch-1 runs after two warm-up runs, on the same
//! input and threads; the original and the pruned model's runs alternate, engine by engine,
//! and the whole-model rows also give the quartiles of the run pairs' ratios.

use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;

use serde::Serialize;

use crate::engine::Kind;
use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::graph::Graph;
use crate::load::{infer_task, LoadedModel};
use crate::prune::{LayerChange, PruneOptions, Pruned};
use crate::tensor::Tensor;

/// Whole-model latencies in ms (batch 1).
#[derive(Clone, Debug, Default, Serialize)]
pub struct Latency {
    pub kestrel_f32: f64,
    pub kestrel_int8: Option<f64>,
    pub ort_f32: Option<f64>,
}

fn median_ms(runs: usize, f: &mut dyn FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    f()?;
    let mut t = Vec::with_capacity(runs.max(1));
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        f()?;
        t.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    Ok(crate::stats::Summary::of(&t).median)
}

/// The quartiles (25th and 75th percentiles) of the per-pair `after / before` time ratios of
/// alternating runs: how far single pairs scatter around the reported ratio, which on a
/// loaded host says how much that ratio can be trusted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct RatioQuartiles {
    pub p25: f64,
    pub p75: f64,
}

/// [`RatioQuartiles`] of each engine's runs in [`latencies`].
#[derive(Clone, Debug, Default, Serialize)]
pub struct RatioSpread {
    pub kestrel_f32: RatioQuartiles,
    pub kestrel_int8: Option<RatioQuartiles>,
    pub ort_f32: Option<RatioQuartiles>,
}

/// Median ms of `before` and of `after` over `runs` runs each, after two warm-up runs each,
/// the two alternating run by run, so that a machine's drift (another tenant, clock changes)
/// weighs on both alike and their ratio stays fair; and the quartiles of the pairs' ratios.
fn paired_median_ms(runs: usize, before: &mut dyn FnMut() -> Result<()>, after: &mut dyn FnMut() -> Result<()>) -> Result<(f64, f64, RatioQuartiles)> {
    for _ in 0..2 {
        before()?;
        after()?;
    }
    let (mut tb, mut ta) = (Vec::with_capacity(runs.max(1)), Vec::with_capacity(runs.max(1)));
    for _ in 0..runs.max(1) {
        let t0 = Instant::now();
        before()?;
        tb.push(t0.elapsed().as_secs_f64() * 1e3);
        let t0 = Instant::now();
        after()?;
        ta.push(t0.elapsed().as_secs_f64() * 1e3);
    }
    let q = crate::stats::PairedRatio::of(&ta, &tb).map_or(RatioQuartiles { p25: f64::NAN, p75: f64::NAN }, |r| RatioQuartiles { p25: r.p25, p75: r.p75 });
    Ok((crate::stats::Summary::of(&tb).median, crate::stats::Summary::of(&ta).median, q))
}

/// `calib`, or 8 seeded synthetic images of `g`'s input when it is empty.
fn calib_or_synthetic<'a>(g: &Graph, calib: &'a [Tensor]) -> Result<std::borrow::Cow<'a, [Tensor]>> {
    Ok(if calib.is_empty() { std::borrow::Cow::Owned(crate::dataset::calib::synthetic(8, &g.input_shape(1)?)?) } else { std::borrow::Cow::Borrowed(calib) })
}

/// The static INT8 version of `g`, calibrated on `calib` (seeded synthetic images if empty).
pub fn int8(g: &Graph, calib: &[Tensor], threads: usize) -> Result<Graph> {
    crate::quant::quantize(g, &crate::quant::QuantizeOptions { threads, ..Default::default() }, &calib_or_synthetic(g, calib)?, &mut |_, _| {})
}

/// A kestrel session of `g` (f32, or static INT8 calibrated on `calib`) and a seeded batch-1
/// input for it.
fn kestrel_session(g: &Graph, calib: &[Tensor], threads: usize, int8_too: bool) -> Result<(Session, Tensor)> {
    let g = if int8_too { int8(g, calib, threads)? } else { g.clone() };
    let x = Tensor::randn(g.input_shape(1)?, 1.0, 17);
    Ok((Session::new(g, &Options { threads, optimize: true, ..Default::default() })?, x))
}

/// Median batch-1 latency of `g` in kestrel at f32 or INT8.
pub fn kestrel_ms(g: &Graph, calib: &[Tensor], threads: usize, runs: usize, int8_too: bool) -> Result<f64> {
    let (s, x) = kestrel_session(g, calib, threads, int8_too)?;
    median_ms(runs, &mut || s.run(std::slice::from_ref(&x)).map(|_| ()))
}

/// Median per-layer times in ms of `before` and of `after` in kestrel (f32, or INT8), by
/// node name: profiled runs of the two alternating, as the whole-model latencies do, so that
/// the host's drift weighs on both columns alike.
pub fn paired_layer_ms(before: &Graph, after: &Graph, calib: &[Tensor], threads: usize, runs: usize, int8_too: bool) -> Result<(HashMap<String, f64>, HashMap<String, f64>)> {
    let session = |g: &Graph| -> Result<(Session, Tensor)> {
        let g = if int8_too { int8(g, calib, threads)? } else { g.clone() };
        let x = Tensor::randn(g.input_shape(1)?, 1.0, 17);
        let s = Session::new(g, &Options { threads, optimize: true, ..Default::default() })?;
        s.run(std::slice::from_ref(&x))?;
        Ok((s, x))
    };
    let pair = [session(before)?, session(after)?];
    let mut samples: [Vec<Vec<f64>>; 2] = std::array::from_fn(|i| vec![Vec::new(); pair[i].0.graph().nodes.len()]);
    for _ in 0..runs.max(1) {
        for ((s, x), acc) in pair.iter().zip(samples.iter_mut()) {
            let mut t = Vec::new();
            s.run_profiled(std::slice::from_ref(x), &mut t)?;
            for (a, v) in acc.iter_mut().zip(t) {
                a.push(v * 1e3);
            }
        }
    }
    let [(sb, _), (sa, _)] = &pair;
    let [tb, ta] = samples;
    let medians = |s: &Session, t: Vec<Vec<f64>>| -> HashMap<String, f64> { s.graph().nodes.iter().zip(t).map(|(n, v)| (n.name.clone(), crate::stats::Summary::of(&v).median)).collect() };
    Ok((medians(sb, tb), medians(sa, ta)))
}

/// Median per-layer times in ms of `before` and of `after` in ONNX Runtime f32, from its
/// profiler's kernel times read back onto the layers ([`crate::ort_ref::profile`]: the
/// medians of the nodes a layer owns, summed), the two models' runs alternating as the
/// whole-model rows do. Empty maps where ORT is not available.
fn paired_ort_layer_ms(before: &Graph, after: &Graph, threads: usize, runs: usize) -> Result<(HashMap<String, f64>, HashMap<String, f64>)> {
    #[cfg(feature = "ort")]
    {
        let opts = crate::ort_ref::OrtOptions { spinning: false, ..crate::ort_ref::OrtOptions::threads(threads) };
        let open = |g: &Graph| crate::onnx::export::to_bytes(g).and_then(|b| crate::ort_ref::OrtModel::profiled(&b, &opts));
        let (mut mb, mut ma) = match (open(before), open(after)) {
            (Ok(mb), Ok(ma)) => (mb, ma),
            _ => return Ok((HashMap::new(), HashMap::new())),
        };
        let (xb, xa) = (Tensor::randn(before.input_shape(1)?, 1.0, 17), Tensor::randn(after.input_shape(1)?, 1.0, 17));
        for _ in 0..2 + runs.max(1) {
            mb.run(&xb)?;
            ma.run(&xa)?;
        }
        let layers = |m: &mut crate::ort_ref::OrtModel, g: &Graph| -> Result<HashMap<String, f64>> {
            Ok(crate::ort_ref::profile::layer_times(g, m.node_times()?, runs, |t| crate::stats::Summary::of(t).median).0)
        };
        Ok((layers(&mut mb, before)?, layers(&mut ma, after)?))
    }
    #[cfg(not(feature = "ort"))]
    {
        let _ = (before, after, threads, runs);
        Ok((HashMap::new(), HashMap::new()))
    }
}

/// Whole-model latencies of `before` and `after`, each engine running the two alternately,
/// and how the run pairs' ratios spread.
pub fn latencies(before: &Graph, after: &Graph, calib: &[Tensor], threads: usize, runs: usize) -> Result<(Latency, Latency, RatioSpread)> {
    let kestrel = |int8_too: bool| -> Result<(f64, f64, RatioQuartiles)> {
        let ((sb, xb), (sa, xa)) = (kestrel_session(before, calib, threads, int8_too)?, kestrel_session(after, calib, threads, int8_too)?);
        paired_median_ms(runs, &mut || sb.run(std::slice::from_ref(&xb)).map(|_| ()), &mut || sa.run(std::slice::from_ref(&xa)).map(|_| ()))
    };
    let (f32_before, f32_after, f32_q) = kestrel(false)?;
    let (int8_before, int8_after, int8_q) = kestrel(true)?;
    #[cfg(feature = "ort")]
    let (ort_before, ort_after, ort_q) = {
        // Idle ORT workers must not spin into the other model's turn.
        let open = |g: &Graph| crate::onnx::export::to_bytes(g).and_then(|b| crate::ort_ref::OrtModel::with_options(&b, &crate::ort_ref::OrtOptions { spinning: false, ..crate::ort_ref::OrtOptions::threads(threads) }));
        match (open(before), open(after)) {
            (Ok(mut mb), Ok(mut ma)) => {
                let (xb, xa) = (Tensor::randn(before.input_shape(1)?, 1.0, 17), Tensor::randn(after.input_shape(1)?, 1.0, 17));
                let (b, a, q) = paired_median_ms(runs, &mut || mb.run(&xb).map(|_| ()), &mut || ma.run(&xa).map(|_| ()))?;
                (Some(b), Some(a), Some(q))
            }
            _ => (None, None, None),
        }
    };
    #[cfg(not(feature = "ort"))]
    let (ort_before, ort_after, ort_q) = (None, None, None);
    Ok((
        Latency { kestrel_f32: f32_before, kestrel_int8: Some(int8_before), ort_f32: ort_before },
        Latency { kestrel_f32: f32_after, kestrel_int8: Some(int8_after), ort_f32: ort_after },
        RatioSpread { kestrel_f32: f32_q, kestrel_int8: Some(int8_q), ort_f32: ort_q },
    ))
}

/// Accuracy (or Dice) of `g` at f32 and INT8 on labelled `data`.
#[derive(Clone, Debug, Serialize)]
pub struct Accuracy {
    pub metric: &'static str,
    pub f32: f64,
    pub int8: Option<f64>,
}

/// Scores `g` on `data` (an ImageFolder, or images/ + masks/) as `kestrel eval` does.
pub fn accuracy(name: &str, g: &Graph, data: &Path, calib: &[Tensor], threads: usize) -> Result<Accuracy> {
    let model = LoadedModel { name: name.to_string(), graph: g.clone(), task: infer_task(g), config: None, path: None };
    let calib = calib_or_synthetic(g, calib)?;
    let variants = [Kind::F32, Kind::Int8Static];
    let opts = crate::eval::EvalOptions { variants: &variants, threads, batch: 32, threshold: 0.5, shard: Default::default(), calib: &calib };
    let r = crate::eval::run_variants(&model, data, &opts, &mut |_, _, _| {})?;
    let score = |k: Kind| r.variants.iter().find(|v| v.variant == k.name()).map(|v| v.metrics.headline());
    let (metric, f32) = score(Kind::F32).ok_or_else(|| Error::Internal("no f32 evaluation".into()))?;
    Ok(Accuracy { metric, f32, int8: score(Kind::Int8Static).map(|s| s.1) })
}

/// One layer of the report: channels, params and MACs before and after, and the measured
/// time of the layer before and after in kestrel (f32 and INT8) and in ONNX Runtime (f32).
#[derive(Clone, Debug, Serialize)]
pub struct LayerRow {
    #[serde(flatten)]
    pub change: LayerChange,
    pub f32_ms: (Option<f64>, Option<f64>),
    pub int8_ms: (Option<f64>, Option<f64>),
    /// ONNX Runtime f32, from its profiler (`None` without ORT).
    pub ort_ms: (Option<f64>, Option<f64>),
}

/// What `kestrel prune` reports.
#[derive(Clone, Debug, Serialize)]
pub struct PruneReport {
    pub model: String,
    pub machine: crate::bench::Fingerprint,
    pub pruned: Pruned,
    pub layers: Vec<LayerRow>,
    pub latency_before: Latency,
    pub latency_after: Latency,
    /// How the alternating runs' `after / before` ratios spread.
    pub ratio_spread: RatioSpread,
    pub accuracy_before: Option<Accuracy>,
    pub accuracy_after: Option<Accuracy>,
}

/// Measures `before` and `pruned` (and scores them on `eval` when given).
pub fn report(name: &str, before: &Graph, pruned: Pruned, calib: &[Tensor], eval: Option<&Path>, threads: usize, runs: usize) -> Result<PruneReport> {
    let after = &pruned.graph;
    let (fb, fa) = paired_layer_ms(before, after, calib, threads, runs, false)?;
    let (ib, ia) = paired_layer_ms(before, after, calib, threads, runs, true)?;
    let (ob, oa) = paired_ort_layer_ms(before, after, threads, runs)?;
    let pair = |b: &HashMap<String, f64>, a: &HashMap<String, f64>, node: &str| (b.get(node).copied(), a.get(node).copied());
    let layers = pruned
        .layers
        .iter()
        .map(|l| LayerRow { change: l.clone(), f32_ms: pair(&fb, &fa, &l.node), int8_ms: pair(&ib, &ia, &l.node), ort_ms: pair(&ob, &oa, &l.node) })
        .collect();
    let (latency_before, latency_after, ratio_spread) = latencies(before, after, calib, threads, runs)?;
    let (accuracy_before, accuracy_after) = match eval {
        Some(d) => (Some(accuracy(name, before, d, calib, threads)?), Some(accuracy(name, after, d, calib, threads)?)),
        None => (None, None),
    };
    Ok(PruneReport { model: name.to_string(), machine: crate::bench::Fingerprint::collect(threads), pruned, layers, latency_before, latency_after, ratio_spread, accuracy_before, accuracy_after })
}

fn ms(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.3}"))
}

/// The report as Markdown (also what the terminal shows).
pub fn markdown(r: &PruneReport) -> String {
    use std::fmt::Write as _;
    let p = &r.pruned;
    let mut s = String::new();
    let pct = |a: f64, b: f64| 100.0 * a / b.max(f64::MIN_POSITIVE);
    let _ = writeln!(s, "### Pruned {}\n", r.model);
    let _ = writeln!(
        s,
        "{} of {} groups prunable; params {} → {} ({:.1}%), MACs {:.2} M → {:.2} M ({:.1}%); widths {}; machine: {}, INT8 path {}, {} threads\n",
        p.prunable_groups,
        p.widths.len(),
        p.params_before,
        p.params_after,
        pct(p.params_after as f64, p.params_before as f64),
        p.macs_before as f64 / 1e6,
        p.macs_after as f64 / 1e6,
        pct(p.macs_after as f64, p.macs_before as f64),
        p.rounding,
        r.machine.cpu,
        r.machine.isa,
        r.machine.threads,
    );
    let _ = writeln!(s, "| latency (batch 1, median) | before ms | after ms | after / before | run pairs' after / before, p25–p75 |\n|---|---:|---:|---:|---:|");
    let row = |s: &mut String, what: &str, b: Option<f64>, a: Option<f64>, q: Option<RatioQuartiles>| {
        let ratio = match (b, a) {
            (Some(b), Some(a)) => format!("{:.2}x", a / b),
            _ => "-".into(),
        };
        let spread = q.map_or("-".into(), |q| format!("{:.2}–{:.2}x", q.p25, q.p75));
        let _ = writeln!(s, "| {what} | {} | {} | {ratio} | {spread} |", ms(b), ms(a));
    };
    let q = &r.ratio_spread;
    row(&mut s, "kestrel f32", Some(r.latency_before.kestrel_f32), Some(r.latency_after.kestrel_f32), Some(q.kestrel_f32));
    row(&mut s, "kestrel INT8 (static)", r.latency_before.kestrel_int8, r.latency_after.kestrel_int8, q.kestrel_int8);
    row(&mut s, "ONNX Runtime f32", r.latency_before.ort_f32, r.latency_after.ort_f32, q.ort_f32);
    if let (Some(b), Some(a)) = (&r.accuracy_before, &r.accuracy_after) {
        let _ = writeln!(s, "\n| {} | before | after | change |\n|---|---:|---:|---:|", b.metric);
        let _ = writeln!(s, "| f32 | {:.4} | {:.4} | {:+.4} |", b.f32, a.f32, a.f32 - b.f32);
        if let (Some(bi), Some(ai)) = (b.int8, a.int8) {
            let _ = writeln!(s, "| INT8 | {bi:.4} | {ai:.4} | {:+.4} |", ai - bi);
        }
    }
    let rec = &p.recovery;
    let _ = writeln!(s, "\nrecovery: {} biases folded, {} layers refitted, {} BatchNorms re-estimated", rec.biases_folded, rec.layers_refitted, rec.batchnorms_reestimated);
    for (n, why) in &rec.layers_not_refitted {
        let _ = writeln!(s, "- not refitted: {n}: {why}");
    }
    let _ = writeln!(s, "\n| layer | op | in | out | params | MMACs | f32 ms | INT8 ms | ORT f32 ms |\n|---|---|---:|---:|---:|---:|---:|---:|---:|");
    for l in &r.layers {
        let c = &l.change;
        let _ = writeln!(
            s,
            "| {} | {} | {} → {} | {} → {} | {} → {} | {:.2} → {:.2} | {} → {} | {} → {} | {} → {} |",
            c.node,
            c.op,
            c.in_before,
            c.in_after,
            c.out_before,
            c.out_after,
            c.params_before,
            c.params_after,
            c.macs_before as f64 / 1e6,
            c.macs_after as f64 / 1e6,
            ms(l.f32_ms.0),
            ms(l.f32_ms.1),
            ms(l.int8_ms.0),
            ms(l.int8_ms.1),
            ms(l.ort_ms.0),
            ms(l.ort_ms.1)
        );
    }
    s
}

/// One point of a sweep.
#[derive(Clone, Debug, Serialize)]
pub struct SweepPoint {
    pub ratio: f64,
    pub recovery: bool,
    pub macs: u64,
    pub params: usize,
    pub f32_ms: f64,
    pub int8_ms: f64,
    pub accuracy: Accuracy,
    /// On the Pareto front of accuracy against MACs (no other point is both cheaper and
    /// more accurate).
    pub pareto_macs: bool,
}

/// Prunes at every ratio of `ratios`, without and (when `calib` is given) with recovery,
/// measuring and scoring each; the unpruned model is the ratio-0 point.
pub fn sweep(name: &str, g: &Graph, ratios: &[f64], base: &PruneOptions, calib: &[Tensor], data: &Path, threads: usize, runs: usize, progress: &mut dyn FnMut(&str)) -> Result<Vec<SweepPoint>> {
    let mut points = Vec::new();
    let mut push = |pg: &Graph, ratio: f64, recovery: bool, macs: u64, progress: &mut dyn FnMut(&str)| -> Result<()> {
        progress(&format!("ratio {ratio}{}", if recovery { " with recovery" } else { "" }));
        points.push(SweepPoint {
            ratio,
            recovery,
            macs,
            params: pg.param_count(),
            f32_ms: kestrel_ms(pg, calib, threads, runs, false)?,
            int8_ms: kestrel_ms(pg, calib, threads, runs, true)?,
            accuracy: accuracy(name, pg, data, calib, threads)?,
            pareto_macs: false,
        });
        Ok(())
    };
    let macs0 = g.macs(&g.input_shape(1)?)?;
    push(g, 0.0, false, macs0, progress)?;
    let recoveries: &[bool] = if calib.is_empty() { &[false] } else { &[false, true] };
    // `--sensitivity` curves, measured at the first ratio for each recovery setting, then reused.
    let mut curves: [Option<std::sync::Arc<Vec<Option<crate::prune::sensitivity::Curve>>>>; 2] = [None, None];
    for &r in ratios {
        for (ri, &rec) in recoveries.iter().enumerate() {
            let opts = PruneOptions { target: crate::prune::Target::Ratio(r), recovery: if rec { base.recovery } else { crate::prune::Recovery::NONE }, curves: curves[ri].clone(), ..base.clone() };
            let p = crate::prune::prune(g, &opts, calib)?;
            if curves[ri].is_none() {
                curves[ri] = p.sensitivity.clone().map(std::sync::Arc::new);
            }
            push(&p.graph, r, rec, p.macs_after, progress)?;
        }
    }
    for i in 0..points.len() {
        let (m, a) = (points[i].macs, points[i].accuracy.f32);
        points[i].pareto_macs = !points.iter().any(|q| (q.macs < m && q.accuracy.f32 >= a) || (q.macs <= m && q.accuracy.f32 > a));
    }
    Ok(points)
}

/// The sweep as a Markdown table.
pub fn sweep_markdown(points: &[SweepPoint]) -> String {
    use std::fmt::Write as _;
    let metric = points.first().map_or("accuracy", |p| p.accuracy.metric);
    let mut s = format!("| ratio | recovery | MMACs | params | f32 ms | INT8 ms | {metric} f32 | {metric} INT8 | Pareto (MACs) |\n|---:|---|---:|---:|---:|---:|---:|---:|---|\n");
    for p in points {
        let _ = writeln!(
            s,
            "| {:.2} | {} | {:.2} | {} | {:.3} | {:.3} | {:.4} | {} | {} |",
            p.ratio,
            if p.recovery { "yes" } else { "no" },
            p.macs as f64 / 1e6,
            p.params,
            p.f32_ms,
            p.int8_ms,
            p.accuracy.f32,
            p.accuracy.int8.map_or("-".into(), |v| format!("{v:.4}")),
            if p.pareto_macs { "●" } else { "" }
        );
    }
    s
}

/// SVG plots of a sweep: accuracy against MACs, and against f32 and INT8 latency, one series
/// per recovery setting, Pareto points circled.
pub fn sweep_svgs(points: &[SweepPoint], dir: &Path) -> Result<Vec<std::path::PathBuf>> {
    use plotters::prelude::*;
    let pe = |e: &dyn std::fmt::Display| Error::System(format!("plotting: {e}"));
    let metric = points.first().map_or("accuracy", |p| p.accuracy.metric);
    let mut written = Vec::new();
    let axes: [(&str, &str, fn(&SweepPoint) -> f64); 3] = [("accuracy_vs_macs.svg", "MMACs", |p| p.macs as f64 / 1e6), ("accuracy_vs_f32_latency.svg", "kestrel f32 ms (batch 1)", |p| p.f32_ms), ("accuracy_vs_int8_latency.svg", "kestrel INT8 ms (batch 1)", |p| p.int8_ms)];
    for (file, xlabel, xf) in axes {
        let mut svg = String::new();
        {
            let root = SVGBackend::with_string(&mut svg, (760, 440)).into_drawing_area();
            root.fill(&WHITE).map_err(|e| pe(&e))?;
            let xmax = points.iter().map(xf).fold(0.0, f64::max) * 1.1 + 1e-9;
            let (ymin, ymax) = points.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), p| (l.min(p.accuracy.f32), h.max(p.accuracy.f32)));
            let pad = ((ymax - ymin) * 0.1).max(0.01);
            let mut chart = ChartBuilder::on(&root)
                .caption(format!("{metric} against {xlabel}"), ("sans-serif", 20))
                .margin(12)
                .x_label_area_size(40)
                .y_label_area_size(60)
                .build_cartesian_2d(0f64..xmax, (ymin - pad)..(ymax + pad))
                .map_err(|e| pe(&e))?;
            chart.configure_mesh().x_desc(xlabel).y_desc(format!("{metric} (f32)")).draw().map_err(|e| pe(&e))?;
            for (rec, color, label) in [(false, RGBColor(214, 39, 40), "no recovery"), (true, RGBColor(31, 119, 180), "with recovery")] {
                let mut pts: Vec<(f64, f64)> = points.iter().filter(|p| p.recovery == rec || p.ratio == 0.0).map(|p| (xf(p), p.accuracy.f32)).collect();
                pts.sort_by(|a, b| a.0.total_cmp(&b.0));
                if pts.len() < 2 {
                    continue;
                }
                chart
                    .draw_series(LineSeries::new(pts.clone(), color.stroke_width(2)))
                    .map_err(|e| pe(&e))?
                    .label(label)
                    .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 18, y)], color.stroke_width(2)));
                chart.draw_series(pts.into_iter().map(|p| Circle::new(p, 3, color.filled()))).map_err(|e| pe(&e))?;
            }
            chart.draw_series(points.iter().filter(|p| p.pareto_macs).map(|p| Circle::new((xf(p), p.accuracy.f32), 8, BLACK.stroke_width(1)))).map_err(|e| pe(&e))?;
            chart.configure_series_labels().background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| pe(&e))?;
            root.present().map_err(|e| pe(&e))?;
        }
        let path = dir.join(file);
        crate::bench::output::write(&path, &svg)?;
        written.push(path);
    }
    Ok(written)
}
