//! `kestrel bench`: timing a model the way trtexec and onnxruntime_perf_test do.
//!
//! For each batch size of the sweep, every variant runs the same pipeline on the same bytes:
//! decode `B` in-memory PNGs (synthetic images of the model's task at its input size),
//! preprocess them into `[B, C, H, W]`, forward, and postprocess (softmax + top-5 per row for
//! classifiers, a thresholded mask per image for segmenters). Variants alternate iteration by
//! iteration so that drift in machine speed hits them alike. Each stage keeps its raw
//! per-iteration milliseconds; [`crate::stats::Summary`] condenses them.
//!
//! Cold start is measured per variant: model load (shared), preparation (quantization, weight
//! packing, export, session creation) and the first inference.
//!
//! Thread scaling (`--scaling 1,2`): every variant is prepared once per thread count, and all
//! of them alternate in the same loop, so each variant's speed-up from the first count to the
//! others ([`Scaling`]) comes from runs made seconds apart, whatever the host's speed does
//! meanwhile: kestrel's and ONNX Runtime's speed-ups from the same minutes. Rows are then
//! named `VARIANT@Nt`.

pub mod batch;
pub mod machine;
pub mod output;
pub mod plot;

use std::time::Instant;

use serde::Serialize;

use crate::error::{Error, Result};
use crate::imageio::{self, Preprocess};
use crate::load::{LoadedModel, Task};
use crate::stats::Summary;
use crate::tensor::Tensor;
pub use batch::{BatchChoice, BatchPoint};
pub use machine::Fingerprint;
pub use crate::engine::{Kind, Variant};

/// How to bench.
#[derive(Clone, Debug, Serialize)]
pub struct BenchOptions {
    pub variants: Vec<Kind>,
    /// Batch sizes in ascending order.
    pub batches: Vec<usize>,
    pub threads: usize,
    /// Thread counts to run every variant at, all alternating in one loop (`--scaling 1,2`;
    /// 0: every core); empty: `threads` alone. Speed-ups are from the first count.
    pub scaling: Vec<usize>,
    pub warmup: usize,
    /// Timed iterations per variant and batch (the minimum when `seconds` is set).
    pub iters: usize,
    /// Keep iterating until this many seconds per variant and batch have passed.
    pub seconds: Option<f64>,
    /// Stop the sweep before a batch whose planner estimate exceeds this many bytes.
    pub memory_limit: Option<u64>,
    pub p99_budget_ms: Option<f64>,
    /// Profile every layer of the kestrel variants and of `ort-f32` at the first batch.
    pub per_layer: bool,
    /// Seeded calibration images for the static INT8 variants.
    pub calib_samples: usize,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            variants: vec![Kind::F32],
            batches: vec![1],
            threads: 0,
            scaling: Vec::new(),
            warmup: 3,
            iters: 20,
            seconds: None,
            memory_limit: None,
            p99_budget_ms: None,
            per_layer: false,
            calib_samples: 16,
        }
    }
}

/// The pipeline stages, in order.
pub const STAGES: [&str; 5] = ["decode", "preprocess", "forward", "postprocess", "total"];

/// One stage's statistics and raw samples (ms per batch).
#[derive(Clone, Debug, Serialize)]
pub struct Stage {
    pub name: &'static str,
    pub summary: Summary,
    /// Images per second at the mean.
    pub throughput: f64,
    pub raw_ms: Vec<f64>,
}

/// A variant at one batch size.
#[derive(Clone, Debug, Serialize)]
pub struct BatchResult {
    pub batch: usize,
    /// The kestrel planner's estimate of bytes held (activations, scratch, weights).
    pub memory_estimate: Option<u64>,
    pub stages: Vec<Stage>,
    /// Forward-stage mean latency per image, ms.
    pub latency_per_image_ms: f64,
    /// Forward-stage mean latency of the batch over that of the first variant.
    pub ratio_to_first: Option<f64>,
    /// The forward times' ratios to the first variant's, iteration by iteration (variants
    /// alternate, so each pair ran back to back): median and quartiles.
    pub paired_ratio_to_first: Option<crate::stats::PairedRatio>,
    /// Of a kestrel variant's timed runs, how many ran the plans of workers that share no
    /// cache ([`crate::cpu::placement::far`] after the run: its probe found them apart, or
    /// `KESTREL_PLACEMENT=far`); none for ONNX Runtime.
    pub far_runs: Option<usize>,
    /// Of a kestrel variant's timed runs, how many split the batch between the two workers,
    /// each running its half alone ([`crate::exec::Session::per_worker`]: cores apart, or an
    /// Intel mesh slow to hand lines over); none for ONNX Runtime.
    pub split_runs: Option<usize>,
}

impl BatchResult {
    /// The stage called `name`.
    pub fn stage(&self, name: &str) -> Option<&Stage> {
        self.stages.iter().find(|s| s.name == name)
    }
}

/// Cold-start costs of a variant, ms.
#[derive(Clone, Debug, Serialize)]
pub struct Cold {
    pub load_ms: f64,
    pub prepare_ms: f64,
    pub first_inference_ms: f64,
}

/// [`LayerTime::op`] of an ONNX Runtime node no layer owns (a pool, a layout reorder),
/// listed under ORT's own name.
pub const ORT_NODE: &str = "ORT node";

/// One layer's share of a forward pass.
#[derive(Clone, Debug, Serialize)]
pub struct LayerTime {
    pub node: String,
    pub op: &'static str,
    /// The kernel and instruction path the layer ran (`exec::Step::kernel`).
    pub kernel: String,
    /// Mean ms per forward.
    pub ms: f64,
    /// Multiply-accumulates per forward at the profiled batch ([`crate::graph::Graph::node_macs`]
    /// of the graph the engine ran): 0 for ops without products and for ORT's own nodes.
    pub macs: u64,
}

impl LayerTime {
    /// Billions of multiply-accumulates per second, where the layer has any.
    pub fn gmacs(&self) -> Option<f64> {
        gmacs(self.macs, self.ms)
    }
}

/// Billions of multiply-accumulates per second of `macs` in `ms`; `None` without either.
pub fn gmacs(macs: u64, ms: f64) -> Option<f64> {
    (macs > 0 && ms > 0.0).then(|| macs as f64 / ms / 1e6)
}

/// Everything measured for one variant.
#[derive(Clone, Debug, Serialize)]
pub struct VariantResult {
    /// The variant's name, `NAME@Nt` when `--scaling` runs it at several thread counts.
    pub name: String,
    pub kind: Kind,
    /// Worker threads of each call.
    pub threads: usize,
    pub engine: String,
    pub cold: Cold,
    pub batches: Vec<BatchResult>,
    pub choice: BatchChoice,
    pub per_layer: Option<Vec<LayerTime>>,
}

/// A variant's speed-up from one thread count to another at one batch (`--scaling`).
#[derive(Clone, Debug, Serialize)]
pub struct Scaling {
    pub kind: Kind,
    pub batch: usize,
    pub from_threads: usize,
    pub to_threads: usize,
    /// Mean forward time at `from_threads` over the mean at `to_threads`.
    pub speedup_of_means: f64,
    /// The same, iteration by iteration (the runs alternate, so each pair ran seconds apart):
    /// median and quartiles of time at `from_threads` over time at `to_threads`.
    pub speedup_paired: Option<crate::stats::PairedRatio>,
}

/// A full bench run.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub fingerprint: Fingerprint,
    pub model: String,
    pub task: Task,
    pub input_shape: Vec<usize>,
    pub options: BenchOptions,
    pub variants: Vec<VariantResult>,
    /// Speed-ups from the first thread count of `--scaling` to the others, per variant and
    /// batch (empty without `--scaling`).
    pub scaling: Vec<Scaling>,
    /// Variants asked for that cannot run here, with the reason.
    pub skipped: Vec<(String, String)>,
    /// Batches dropped from the sweep by `--memory-limit` (batch, estimated bytes).
    pub memory_refused: Option<(usize, u64)>,
    pub rss_after_load_bytes: Option<u64>,
    pub peak_rss_bytes: Option<u64>,
    pub warnings: Vec<String>,
}

/// `n` synthetic images of the model's task, PNG-encoded, at `h`×`w`.
fn synthetic_pngs(task: Task, n: usize, h: usize, w: usize) -> Result<Vec<Vec<u8>>> {
    (0..n)
        .map(|i| {
            let img = match task {
                Task::Segment => crate::dataset::synth::blob_sample(77, i as u64, h.max(w)).0,
                _ => crate::dataset::synth::shape_sample(77, i as u64, h.max(w)).0,
            };
            let img = image::imageops::crop_imm(&img, 0, 0, w as u32, h as u32).to_image();
            let mut bytes = Vec::new();
            img.write_to(&mut std::io::Cursor::new(&mut bytes), image::ImageFormat::Png)
                .map_err(|e| Error::Internal(format!("encoding a synthetic PNG: {e}")))?;
            Ok(bytes)
        })
        .collect()
}

/// The postprocess stage: top-5 of the softmax per row, or a mask per image.
fn postprocess(task: Task, out: &Tensor) -> Result<usize> {
    match task {
        Task::Classify => {
            let rows = crate::postprocess::softmax_rows(out)?;
            Ok(rows.iter().map(|r| crate::postprocess::topk(r, 5.min(r.len()))[0]).sum())
        }
        Task::Segment => {
            let s = out.shape();
            let mut fg = 0;
            for img in out.split_batch() {
                fg += crate::postprocess::foreground(&img, s[2], s[3], 0.5)?.iter().filter(|&&b| b).count();
            }
            Ok(fg)
        }
        Task::Other => Ok(out.numel()),
    }
}

struct Pipeline<'a> {
    task: Task,
    pre: &'a Preprocess,
    pngs: &'a [Vec<u8>],
}

impl Pipeline<'_> {
    /// Runs every stage once; returns ms per stage (decode, preprocess, forward, postprocess).
    fn run(&self, v: &mut Variant, profile: Option<&mut Vec<f64>>) -> Result<[f64; 4]> {
        let ms = |t: Instant| t.elapsed().as_secs_f64() * 1e3;
        let t = Instant::now();
        let imgs = self
            .pngs
            .iter()
            .map(|b| image::load_from_memory(b).map(|i| i.to_rgb8()).map_err(|e| Error::Internal(format!("decoding a synthetic PNG: {e}"))))
            .collect::<Result<Vec<_>>>()?;
        let decode = ms(t);
        let t = Instant::now();
        let x = Tensor::concat_batch(&imgs.iter().map(|i| imageio::preprocess(i, self.pre)).collect::<Vec<_>>())?;
        let preprocess = ms(t);
        let t = Instant::now();
        let out = match (profile, v.session()) {
            (Some(acc), Some(s)) => s.run_profiled(std::slice::from_ref(&x), acc)?.into_iter().next().ok_or(Error::NoOutput)?,
            _ => v.run(&x)?,
        };
        let forward = ms(t);
        let t = Instant::now();
        std::hint::black_box(postprocess(self.task, &out)?);
        Ok([decode, preprocess, forward, ms(t)])
    }
}

/// Progress callbacks of a bench run: `(done, total)` iterations and a status message.
pub trait Progress {
    fn set(&mut self, done: u64, total: u64, msg: &str);
}

impl<F: FnMut(u64, u64, &str)> Progress for F {
    fn set(&mut self, done: u64, total: u64, msg: &str) {
        self(done, total, msg)
    }
}

/// Runs the bench of `model` (loaded in `load_ms`).
pub fn run(model: &LoadedModel, load_ms: f64, opts: &BenchOptions, progress: &mut dyn Progress) -> Result<BenchReport> {
    if opts.batches.is_empty() || opts.batches.contains(&0) {
        return Err(Error::Argument("--batch needs sizes ≥ 1".into()));
    }
    if opts.variants.is_empty() {
        return Err(Error::Argument("--variants is empty".into()));
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let all_cores = |t: usize| if t == 0 { cores } else { t };
    // The thread counts every variant runs at, in the order given (duplicates dropped).
    let mut counts: Vec<usize> = Vec::new();
    for t in if opts.scaling.is_empty() { vec![opts.threads] } else { opts.scaling.clone() } {
        if !counts.contains(&all_cores(t)) {
            counts.push(all_cores(t));
        }
    }
    let scaling = !opts.scaling.is_empty();
    if scaling && counts.len() < 2 {
        return Err(Error::Argument(format!("--scaling {}: needs at least two different thread counts (0: every core, {cores} here)", opts.scaling.iter().map(|t| t.to_string()).collect::<Vec<_>>().join(","))));
    }
    let threads = counts[0];
    let most = counts.iter().copied().max().unwrap_or(threads);
    let input1 = model.graph.input_shape(1)?;
    if input1.len() != 4 || input1[1] != 3 {
        return Err(Error::InputShape { name: "input".into(), expected: "[N, 3, H, W] images".into(), got: input1 });
    }
    let (h, w) = (input1[2], input1[3]);
    let pre = Preprocess { resize: h.min(w), crop: if h == w { h } else { 0 }, ..Preprocess::default() };
    let calib: Vec<Tensor> = if opts.variants.iter().any(|k| matches!(k, Kind::Int8Static | Kind::OrtInt8)) {
        crate::dataset::calib::synthetic(opts.calib_samples, &input1)?
    } else {
        Vec::new()
    };
    // The static INT8 variants calibrate at the most threads: that call builds this thread's
    // own worker pool (`exec::session`), which the calls of that count then run on.
    let ctx = crate::engine::Context::new(model, most, &calib);
    let mut variants = Vec::new();
    // Each variant's name in the report: `NAME@Nt` under `--scaling`.
    let mut labels: Vec<String> = Vec::new();
    let mut skipped = Vec::new();
    for &k in &opts.variants {
        for &t in &counts {
            let name = if scaling { format!("{}@{t}t", k.name()) } else { k.name().to_string() };
            progress.set(0, 0, &format!("preparing {name}"));
            match Variant::build_at(k, &ctx, t) {
                Ok(v) => {
                    variants.push(v);
                    labels.push(name);
                }
                Err(e) => skipped.push((name, e.to_string())),
            }
        }
    }
    if variants.is_empty() {
        return Err(Error::Unsupported { what: "every variant asked for".into(), hint: skipped.iter().map(|(k, why)| format!("{k}: {why}")).collect::<Vec<_>>().join("; ") });
    }
    let rss_after_load_bytes = machine::rss_bytes();

    // The sweep stops before the first batch the planner says would exceed the limit: the
    // largest estimate of the kestrel variants, or of an f32 session when all run on ORT.
    let estimator = if variants.iter().any(|v| v.session().is_some()) {
        None
    } else {
        Some(crate::exec::Session::new(model.graph.clone(), &crate::exec::Options { threads: most, optimize: true, ..Default::default() })?)
    };
    let mut est = |b: usize| -> Result<u64> {
        let shape = model.graph.input_shape(b)?;
        let mut bytes = 0u64;
        for s in variants.iter().filter_map(Variant::session).chain(estimator.as_ref()) {
            bytes = bytes.max(s.memory_estimate(&shape)? as u64);
        }
        Ok(bytes)
    };
    let (batches, memory_refused) = batch::within_memory(&opts.batches, opts.memory_limit, &mut est)?;
    if batches.is_empty() {
        return Err(Error::Argument(format!(
            "--memory-limit {}: batch {} already needs an estimated {} bytes",
            opts.memory_limit.unwrap_or(0),
            opts.batches[0],
            memory_refused.map_or(0, |r| r.1)
        )));
    }

    let mut results: Vec<VariantResult> = variants
        .iter()
        .zip(&labels)
        .map(|(v, name)| VariantResult {
            name: name.clone(),
            kind: v.kind,
            threads: v.threads,
            engine: v.engine.clone(),
            cold: Cold { load_ms, prepare_ms: v.prepare_s * 1e3, first_inference_ms: 0.0 },
            batches: Vec::new(),
            choice: BatchChoice::default(),
            per_layer: None,
        })
        .collect();
    let mut warnings = Vec::new();
    // Where the two workers' cores sit, before the runs (the fingerprint measures it after).
    let link_before = if most > 1 { machine::cross_core_round_trip_ns() } else { None };
    let total_iters = (batches.len() * (opts.warmup + opts.iters) * variants.len()) as u64;
    let mut done = 0u64;
    for (bi, &(b, mem)) in batches.iter().enumerate() {
        let pngs = synthetic_pngs(model.task, b, h, w)?;
        let pipe = Pipeline { task: model.task, pre: &pre, pngs: &pngs };
        if bi == 0 {
            // The most threads first: this thread's own worker pool then has that many
            // (`exec::session`), so those calls, like the one-thread ones, run with no
            // hand-off to a pool thread.
            let mut first: Vec<(&mut Variant, &mut VariantResult)> = variants.iter_mut().zip(&mut results).collect();
            first.sort_by_key(|(v, _)| std::cmp::Reverse(v.threads));
            for (v, r) in first {
                let t = Instant::now();
                pipe.run(v, None)?;
                r.cold.first_inference_ms = t.elapsed().as_secs_f64() * 1e3;
            }
        }
        for _ in 0..opts.warmup {
            for v in variants.iter_mut() {
                pipe.run(v, None)?;
                done += 1;
                progress.set(done, total_iters, &format!("batch {b} warm-up"));
            }
        }
        let mut raw: Vec<[Vec<f64>; 4]> = variants.iter().map(|_| Default::default()).collect();
        let mut far_runs: Vec<usize> = vec![0; variants.len()];
        let mut split_runs: Vec<usize> = vec![0; variants.len()];
        let shape_b = model.graph.input_shape(b).ok();
        let t0 = Instant::now();
        let mut it = 0;
        while it < opts.iters || opts.seconds.is_some_and(|s| t0.elapsed().as_secs_f64() < s * variants.len() as f64) {
            for (((v, r), far), split) in variants.iter_mut().zip(&mut raw).zip(&mut far_runs).zip(&mut split_runs) {
                let t = pipe.run(v, None)?;
                for k in 0..4 {
                    r[k].push(t[k]);
                }
                *far += usize::from(crate::cpu::placement::far(v.threads));
                let per_worker = v.session().zip(shape_b.as_ref()).and_then(|(s, sh)| s.per_worker(std::slice::from_ref(sh)));
                *split += usize::from(per_worker.is_some());
            }
            it += 1;
            done = (done + variants.len() as u64).min(total_iters);
            progress.set(done, total_iters, &format!("batch {b}"));
        }
        for (((((v, name), r), res), far), split) in variants.iter().zip(&labels).zip(raw).zip(&mut results).zip(far_runs).zip(split_runs) {
            let totals: Vec<f64> = (0..r[0].len()).map(|i| r.iter().map(|s| s[i]).sum()).collect();
            let stages: Vec<Stage> = STAGES
                .iter()
                .enumerate()
                .map(|(k, &name)| {
                    let raw_ms = if k < 4 { r[k].clone() } else { totals.clone() };
                    let summary = Summary::of(&raw_ms);
                    let throughput = if summary.mean > 0.0 { b as f64 * 1e3 / summary.mean } else { 0.0 };
                    Stage { name, summary, throughput, raw_ms }
                })
                .collect();
            let fwd = &stages[2].summary;
            if fwd.cv() > 0.05 {
                warnings.push(format!(
                    "{name} batch {b}: forward latency varies widely (CV {:.1}% > 5%); the machine may be busy or throttling",
                    fwd.cv() * 100.0
                ));
            }
            let memory_estimate = v.session().and_then(|s| model.graph.input_shape(b).ok().and_then(|sh| s.memory_estimate(&sh).ok())).map(|m| m as u64);
            res.batches.push(BatchResult {
                batch: b,
                memory_estimate: memory_estimate.or(if v.kind.is_ort() { None } else { Some(mem) }),
                latency_per_image_ms: fwd.mean / b as f64,
                stages,
                ratio_to_first: None,
                paired_ratio_to_first: None,
                far_runs: (!v.kind.is_ort()).then_some(far),
                split_runs: (!v.kind.is_ort()).then_some(split),
            });
        }
        if bi == 0 && opts.per_layer {
            // Profiled runs of every timed variant alternating, as the timings above: kestrel's
            // node timers, ORT's profiler for `ort-f32`.
            let n = opts.iters.max(1);
            // ORT's profiled session of each `ort-f32` variant, at its thread count.
            #[cfg(feature = "ort")]
            let mut orts: Vec<Option<OrtProfile>> = variants
                .iter()
                .zip(&labels)
                .map(|(v, name)| match v.kind {
                    crate::engine::Kind::OrtF32 => OrtProfile::new(model, b, v.threads).map_err(|e| warnings.push(format!("{name}: no per-layer profile: {e}"))).ok(),
                    _ => None,
                })
                .collect();
            let mut accs: Vec<Vec<f64>> = variants.iter().map(|_| Vec::new()).collect();
            for _ in 0..n {
                for (i, (v, acc)) in variants.iter_mut().zip(&mut accs).enumerate() {
                    #[cfg(feature = "ort")]
                    if let Some(p) = orts[i].as_mut() {
                        p.run()?;
                        continue;
                    }
                    #[cfg(not(feature = "ort"))]
                    let _ = i; // indexes the ORT profiles
                    if v.session().is_some() {
                        pipe.run(v, Some(acc))?;
                    }
                }
            }
            for (i, ((v, res), acc)) in variants.iter().zip(&mut results).zip(&accs).enumerate() {
                #[cfg(feature = "ort")]
                if let Some(p) = orts[i].as_mut() {
                    match p.layers(model, b, n) {
                        Ok(l) => res.per_layer = Some(l),
                        Err(e) => warnings.push(format!("{}: no per-layer profile: {e}", res.name)),
                    }
                    continue;
                }
                #[cfg(not(feature = "ort"))]
                let _ = i;
                if let Some(s) = v.session() {
                    let input = model.graph.input_shape(b)?;
                    let labels = s.kernel_labels(std::slice::from_ref(&input))?;
                    let macs = s.graph().node_macs(&crate::graph::shape::infer(s.graph(), &[input])?);
                    let layers = s.graph().nodes.iter().zip(labels).zip(macs).zip(acc);
                    res.per_layer = Some(layers.map(|(((node, kernel), macs), &sec)| LayerTime { node: node.name.clone(), op: node.op.kind(), kernel, ms: sec * 1e3 / n as f64, macs }).collect());
                }
            }
        }
    }
    // Ratios to the first variant, and the batch choice per variant.
    let first: Vec<(f64, Vec<f64>)> = results[0].batches.iter().map(|b| (b.stages[2].summary.mean, b.stages[2].raw_ms.clone())).collect();
    for (i, r) in results.iter_mut().enumerate() {
        for (b, (f, raw)) in r.batches.iter_mut().zip(&first) {
            b.ratio_to_first = (*f > 0.0).then(|| b.stages[2].summary.mean / f);
            b.paired_ratio_to_first = if i == 0 { None } else { crate::stats::PairedRatio::of(&b.stages[2].raw_ms, raw) };
        }
        let pts: Vec<BatchPoint> = r
            .batches
            .iter()
            .map(|b| BatchPoint { batch: b.batch, throughput: b.stages[2].throughput, p99_ms: b.stages[2].summary.p99 })
            .collect();
        r.choice = batch::choose(&pts, opts.p99_budget_ms);
    }
    // Kestrel variants whose calls this thread's own pool could not run (`Session::in_pool`).
    let handed: Vec<&str> = variants.iter().zip(&labels).filter(|(v, _)| v.session().is_some_and(|s| s.handed_over_pools() > 0)).map(|(_, l)| l.as_str()).collect();
    if !handed.is_empty() {
        warnings.push(format!(
            "{} ran each call on a worker pool of its own, handed over from this thread (whose own pool has {most} workers): tens of µs a call more than from a thread of their own",
            handed.join(", ")
        ));
    }
    let scaling = if scaling { speedups(&results, threads) } else { Vec::new() };
    let fingerprint = Fingerprint::collect(most);
    // On a mesh every core of the socket is as far as this (`cpu::placement::Fabric`).
    let apart_link = crate::cpu::placement::fabric() == crate::cpu::placement::Fabric::Groups;
    let far: Vec<String> = [("before", link_before), ("after", fingerprint.cross_core_round_trip_ns)]
        .iter()
        .filter_map(|&(when, ns)| ns.filter(|&ns| apart_link && ns > machine::FAR_ROUND_TRIP_NS).map(|ns| format!("{ns:.0} ns {when} the runs")))
        .collect();
    // Which of kestrel's runs took the plans of workers apart (`cpu::placement`).
    let far_runs: Vec<String> = results
        .iter()
        .flat_map(|r| r.batches.iter().filter_map(move |b| b.far_runs.filter(|&n| n > 0).map(|n| format!("{} batch {}: {n} of {}", r.name, b.batch, b.stages[2].raw_ms.len()))))
        .collect();
    // Profiled runs keep both workers on every layer; apart or on a mesh, the timed runs of a
    // batch split it between the workers (`Session::run_by_workers`), so the per-layer times
    // are another plan's.
    let split_layers = opts.per_layer && results.iter().any(|r| r.per_layer.is_some() && r.batches.first().is_some_and(|b| b.split_runs.is_some_and(|n| n > 0)));
    if split_layers {
        warnings.push("the per-layer times come from profiled runs, which keep both workers on every layer; the timed runs split the batch between them instead, each worker running its half alone (README, Sessions and threads)".to_string());
    }
    if !far_runs.is_empty() {
        warnings.push(format!(
            "kestrel ran the plans of workers on cores that share no cache (its placement probe's verdict, or KESTREL_PLACEMENT=far; README, Sessions and threads) in these timed runs: {}",
            far_runs.join(", ")
        ));
    }
    if !far.is_empty() {
        warnings.push(format!(
            "the worker threads' cores share no cache (cache-line round trip {}; under {:.0} ns when they do): on a VM this changes minute by minute, and kestrel's multi-thread times then run up to a quarter slower (README, Sessions and threads)",
            far.join(", "),
            machine::FAR_ROUND_TRIP_NS
        ));
    }
    Ok(BenchReport {
        fingerprint,
        model: model.name.clone(),
        task: model.task,
        input_shape: input1,
        options: opts.clone(),
        variants: results,
        scaling,
        skipped,
        memory_refused,
        rss_after_load_bytes,
        peak_rss_bytes: machine::peak_rss_bytes(),
        warnings,
    })
}

/// Each variant's speed-up from `from` threads to each other count it ran at, per batch: the
/// mean forward times' ratio and the run pairs' (the variants alternate, so iteration `i` of
/// every thread count ran within one loop round).
fn speedups(results: &[VariantResult], from: usize) -> Vec<Scaling> {
    let mut out = Vec::new();
    for base in results.iter().filter(|r| r.threads == from) {
        for other in results.iter().filter(|r| r.kind == base.kind && r.threads != from) {
            for (b0, b1) in base.batches.iter().zip(&other.batches) {
                let (f0, f1) = (&b0.stages[2], &b1.stages[2]);
                out.push(Scaling {
                    kind: base.kind,
                    batch: b0.batch,
                    from_threads: from,
                    to_threads: other.threads,
                    speedup_of_means: f0.summary.mean / f1.summary.mean,
                    speedup_paired: crate::stats::PairedRatio::of(&f0.raw_ms, &f1.raw_ms),
                });
            }
        }
    }
    out
}

/// ONNX Runtime's time per layer for the `ort-f32` variant's `--per-layer`: a session on the
/// variant's bytes with ORT's profiler on, run on a seeded input of batch `b` (two warm-up
/// runs, then one per [`OrtProfile::run`]).
#[cfg(feature = "ort")]
struct OrtProfile {
    model: crate::ort_ref::OrtModel,
    x: Tensor,
}

#[cfg(feature = "ort")]
impl OrtProfile {
    fn new(model: &LoadedModel, b: usize, threads: usize) -> Result<Self> {
        let bytes = crate::engine::onnx_bytes(model, &model.graph)?;
        let m = crate::ort_ref::OrtModel::profiled(&bytes, &crate::ort_ref::OrtOptions { spinning: false, ..crate::ort_ref::OrtOptions::threads(threads) })?;
        let mut p = OrtProfile { model: m, x: Tensor::randn(model.graph.input_shape(b)?, 1.0, 17) };
        p.run()?;
        p.run()?;
        Ok(p)
    }

    fn run(&mut self) -> Result<()> {
        self.model.run(&self.x).map(|_| ())
    }

    /// The profile of the last `runs` runs, each node's kernel time read back onto the layer
    /// that owns it ([`crate::ort_ref::profile`]), as means per forward in graph order; then
    /// the ORT nodes no layer owns (pools, ORT's layout reorders) under ORT's names.
    fn layers(&mut self, model: &LoadedModel, batch: usize, runs: usize) -> Result<Vec<LayerTime>> {
        let mean = |t: &[f64]| t.iter().sum::<f64>() / t.len().max(1) as f64;
        let (layers, others) = crate::ort_ref::profile::layer_times(&model.graph, self.model.node_times()?, runs, mean);
        let kernel = || "onnxruntime".to_string();
        let macs = model.graph.node_macs(&crate::graph::shape::infer(&model.graph, &[model.graph.input_shape(batch)?])?);
        let mut rows: Vec<LayerTime> = model.graph.nodes.iter().zip(macs).filter_map(|(n, macs)| layers.get(&n.name).map(|&ms| LayerTime { node: n.name.clone(), op: n.op.kind(), kernel: kernel(), ms, macs })).collect();
        rows.extend(others.into_iter().map(|(node, ms)| LayerTime { node, op: ORT_NODE, kernel: kernel(), ms, macs: 0 }));
        Ok(rows)
    }
}
