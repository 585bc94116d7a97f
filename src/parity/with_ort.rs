//! kestrel against ONNX Runtime (feature `ort`): whole outputs, and layer by layer down to the
//! first diverging layer.
//!
//! For a quantized model three distances are measured on the same input:
//! - kestrel against ORT at the chosen optimisation level (`all` by default: ORT fuses the
//!   Q/DQ pairs into its integer kernels);
//! - kestrel against the model's exact QDQ semantics: ORT with optimisations disabled, which
//!   runs every QuantizeLinear, DequantizeLinear and float conv of the file literally;
//! - ORT's optimised run against those exact semantics.
//!
//! The verdict is against the exact semantics, in two parts: every layer alone, fed the
//! reference's values of its inputs, within one output quantization step
//! ([`Tolerance::quantized_layer`]; always checked for quantized models), and the whole outputs
//! within a sanity bound ([`Tolerance::quantized`]) that rounding flips compounding through
//! the depth stay inside.
//!
//! ORT's fast INT8 path depends on the CPU: on AVX2 without VNNI its u8×s8 kernel
//! (`vpmaddubsw`) adds pairs of products into a saturating i16, so its results drift from the
//! model's semantics. ORT's optimised run counts as drifting when it leaves the whole-output
//! tolerance, or when it is more than [`DRIFT_FACTOR`] times as far from the exact semantics
//! as kestrel's output (whose every layer is verified, so its distance is what rounding flips
//! alone produce on this model and input) and above [`DRIFT_FLOOR`]. The report says so in one
//! line ([`ParityReport::ort_drift`]) instead of failing the engine that is right.

use std::collections::{HashMap, HashSet};

use prost::Message;
use serde::Serialize;

use super::{compare, Metrics, Tolerance};
use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::graph::Graph;
use crate::load::LoadedModel;
use crate::onnx::{export, pb};
use crate::ort_ref::{OrtModel, OrtOptimization, OrtOptions};
use crate::tensor::Tensor;

/// One layer's comparison in a per-layer run.
#[derive(Clone, Debug, Serialize)]
pub struct LayerReport {
    pub node: String,
    pub op: &'static str,
    pub value: String,
    /// Ours against ORT, each fed by its own earlier layers.
    pub metrics: Metrics,
    /// This layer alone, fed ORT's values of its inputs.
    pub isolated: Metrics,
    /// Whether the isolated error is within tolerance.
    pub within: bool,
}

/// Adds the node outputs named in `keep` (float tensors kestrel also computes) as graph
/// outputs, so ORT returns those intermediates.
pub fn expose_intermediates(model: &pb::ModelProto, keep: &HashSet<&str>) -> pb::ModelProto {
    let mut m = model.clone();
    if let Some(g) = m.graph.as_mut() {
        let have: HashSet<String> = g.output.iter().map(|o| o.name.clone()).collect();
        let extra: Vec<String> = g
            .node
            .iter()
            .flat_map(|n| n.output.iter().take(1).cloned())
            .filter(|o| !o.is_empty() && !have.contains(o) && keep.contains(o.as_str()))
            .collect();
        for o in extra {
            g.output.push(export::value_info(&o, None));
        }
    }
    m
}

/// Compares kestrel's unfused graph with ORT (built as `ort`) layer by layer on `input`.
/// `graph` must be the import of `model` (so value names are ONNX tensor names). Layers whose
/// outputs ORT does not expose (e.g. non-float shape arithmetic) are skipped.
pub fn per_layer(model: &pb::ModelProto, graph: &Graph, input: &Tensor, tol: &Tolerance, ort: &OrtOptions) -> Result<Vec<LayerReport>> {
    per_layer_at(model, graph, input, tol, ort, false)
}

/// [`per_layer`] with kestrel's f32 convs in bf16 when `bf16` is set.
pub fn per_layer_at(model: &pb::ModelProto, graph: &Graph, input: &Tensor, tol: &Tolerance, ort: &OrtOptions, bf16: bool) -> Result<Vec<LayerReport>> {
    let keep: HashSet<&str> = graph.nodes.iter().map(|n| graph.values[n.output].as_str()).collect();
    let exposed = expose_intermediates(model, &keep);
    let mut reference = OrtModel::with_options(&exposed.encode_to_vec(), ort)?;
    let theirs: HashMap<String, Tensor> = reference.run(input)?.into_iter().collect();
    let threads = ort.threads.max(1);
    let session = Session::new(graph.clone(), &Options { threads, optimize: false, bf16, ..Default::default() })?;
    let ours = session.run_all(std::slice::from_ref(input))?;
    let g = session.graph();
    // Isolated: each layer runs on ORT's values of its inputs (ours where ORT has none), so a
    // layer is judged by its own error, not by what earlier layers passed on.
    let mut out = Vec::new();
    for (index, n) in g.nodes.iter().enumerate() {
        let name = &g.values[n.output];
        let (Some(r), Some(Some(o))) = (theirs.get(name), ours.get(n.output)) else { continue };
        let metrics = compare(r, o);
        let mut fed: Vec<Option<Tensor>> = vec![None; g.values.len()];
        for &i in &n.inputs {
            fed[i] = theirs.get(&g.values[i]).cloned().or_else(|| ours[i].clone());
        }
        let isolated = session.run_node(index, &fed).map(|t| compare(r, &t))?;
        let within = tol.violation(&Tolerance::layer_metrics(&isolated)).is_none();
        out.push(LayerReport { node: n.name.clone(), op: n.op.kind(), value: name.clone(), metrics, isolated, within });
    }
    if out.is_empty() {
        return Err(Error::Unsupported { what: "a per-layer comparison of this model".into(), hint: "none of kestrel's layer outputs is a tensor ONNX Runtime exposes".into() });
    }
    Ok(out)
}

/// ORT's optimised output drifts when it is this many times further (relative L2) from the
/// exact semantics than kestrel's.
pub const DRIFT_FACTOR: f64 = 2.0;
/// … and at least this far (relative L2): below it, both are float noise.
pub const DRIFT_FLOOR: f64 = 1e-3;

/// How [`check`] runs.
#[derive(Clone, Debug)]
pub struct ParityOptions {
    /// Threads for both engines (0: one per core).
    pub threads: usize,
    /// ORT's optimisation level for the "ORT" column.
    pub optimization: OrtOptimization,
    /// Limits for whole outputs (see [`Tolerance::for_model`]).
    pub tolerance: Tolerance,
    /// Limits for one layer fed the reference's inputs (see [`Tolerance::quantized_layer`]).
    pub layer_tolerance: Tolerance,
    /// Also compare every layer of a float model and name the first that leaves
    /// `layer_tolerance` (quantized models are always compared layer by layer).
    pub per_layer: bool,
    /// Run kestrel's f32 convs in bf16 (`--precision bf16`; see [`Tolerance::bf16`]).
    pub bf16: bool,
}

impl ParityOptions {
    /// The default limits for `model`, every ORT optimisation, no per-layer pass.
    pub fn for_model(model: &Graph, threads: usize) -> Self {
        let quantized = model.is_quantized();
        ParityOptions {
            threads,
            optimization: OrtOptimization::All,
            tolerance: Tolerance::for_model(quantized),
            layer_tolerance: if quantized { Tolerance::quantized_layer() } else { Tolerance::default() },
            per_layer: false,
            bf16: false,
        }
    }
}

/// One model output compared three ways.
#[derive(Clone, Debug, Serialize)]
pub struct OutputParity {
    pub output: String,
    /// kestrel against ORT at the chosen optimisation level.
    pub kestrel_vs_ort: Metrics,
    /// Quantized models: kestrel against the exact QDQ semantics (ORT, optimisations disabled).
    pub kestrel_vs_exact: Option<Metrics>,
    /// Quantized models: ORT at the chosen level against the exact QDQ semantics.
    pub ort_vs_exact: Option<Metrics>,
    /// The first limit the verdict comparison breaks (against the exact semantics for a
    /// quantized model, against ORT otherwise).
    pub violation: Option<String>,
    /// How ORT's own run drifts from the exact semantics: the first whole-output limit it
    /// breaks, or its distance against kestrel's (see [`DRIFT_FACTOR`]).
    pub ort_violation: Option<String>,
}

impl OutputParity {
    /// The comparison the verdict is about.
    pub fn verdict_metrics(&self) -> &Metrics {
        self.kestrel_vs_exact.as_ref().unwrap_or(&self.kestrel_vs_ort)
    }
}

/// Everything [`check`] measured.
#[derive(Clone, Debug, Serialize)]
pub struct ParityReport {
    pub model: String,
    pub input_shape: Vec<usize>,
    pub threads: usize,
    pub ort_version: String,
    pub optimization: OrtOptimization,
    /// Whether the model has QDQ semantics ([`Graph::is_quantized`]).
    pub quantized: bool,
    /// This CPU's richest INT8 path (`avx2`, `avx512vnni`, …), which is also what ORT's
    /// integer kernels dispatch on.
    pub host_isa: String,
    /// The kestrel INT8 path that ran (`KESTREL_ISA` or the host's best; `avx512vnni + amx-int8`
    /// where its GEMM ran on AMX tiles), or `bf16 …` for a bf16 session.
    pub kestrel_isa: String,
    pub tolerance: Tolerance,
    pub layer_tolerance: Tolerance,
    pub outputs: Vec<OutputParity>,
    /// One plain line when ORT's optimised run itself drifts beyond the tolerance from the
    /// exact QDQ semantics.
    pub ort_drift: Option<String>,
    /// Per-layer comparisons (empty without `per_layer`); quantized models against the exact
    /// semantics.
    pub layers: Vec<LayerReport>,
    /// The first layer whose isolated error leaves `layer_tolerance`.
    pub first_diverging_layer: Option<String>,
    /// Whether every verdict holds.
    pub passed: bool,
}

/// Runs kestrel and ONNX Runtime on the same `input` and compares every output (and, with
/// `per_layer`, every layer). ORT runs the model's own ONNX file, or kestrel's export of a
/// native model ([`LoadedModel::onnx_model`]).
pub fn check(model: &LoadedModel, input: &Tensor, opts: &ParityOptions) -> Result<ParityReport> {
    let proto = model.onnx_model()?;
    let bytes = export::to_bytes_model(&proto);
    let threads = resolve_threads(opts.threads);
    let quantized = model.graph.is_quantized();
    let session = Session::new(model.graph.clone(), &Options { threads, optimize: true, bf16: opts.bf16, ..Default::default() })?;
    let ours = session.run(std::slice::from_ref(input))?;
    let ort_opts = OrtOptions { threads, optimization: opts.optimization, spinning: true };
    let theirs = OrtModel::with_options(&bytes, &ort_opts)?.run(input)?;
    // The exact QDQ semantics: ORT running every node literally. With optimisations disabled
    // already, the ORT run above is that reference.
    let exact = match (quantized, opts.optimization) {
        (false, _) => None,
        (true, OrtOptimization::Disabled) => Some(theirs.clone()),
        (true, _) => Some(OrtModel::with_options(&bytes, &OrtOptions { optimization: OrtOptimization::Disabled, ..ort_opts })?.run(input)?),
    };
    if ours.len() != theirs.len() {
        return Err(Error::Internal(format!("kestrel computes {} outputs, ONNX Runtime {}", ours.len(), theirs.len())));
    }
    let mut outputs = Vec::with_capacity(ours.len());
    for (i, (o, (name, r))) in ours.iter().zip(&theirs).enumerate() {
        let kestrel_vs_ort = compare(r, o);
        let (kestrel_vs_exact, ort_vs_exact) = match &exact {
            Some(e) => (Some(compare(&e[i].1, o)), Some(compare(&e[i].1, r))),
            None => (None, None),
        };
        let violation = opts.tolerance.violation(kestrel_vs_exact.as_ref().unwrap_or(&kestrel_vs_ort));
        let ort_violation = match (&ort_vs_exact, &kestrel_vs_exact) {
            (Some(e), Some(k)) => ort_drift(&opts.tolerance, e, k),
            _ => None,
        };
        outputs.push(OutputParity { output: name.clone(), kestrel_vs_ort, kestrel_vs_exact, ort_vs_exact, violation, ort_violation });
    }
    let host_isa = crate::cpu::detect::best();
    let ort_drift = if opts.optimization == OrtOptimization::Disabled { None } else { drift_line(&outputs, opts.optimization, host_isa) };
    let (mut layers, mut first_diverging_layer) = (Vec::new(), None);
    if opts.per_layer || quantized {
        // Layer names are ONNX tensor names only in a graph imported from the file ORT runs.
        let graph = if model.path.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx"))) {
            model.graph.clone()
        } else {
            crate::onnx::import::import(&proto, &Default::default())?
        };
        let reference = if quantized { OrtOptions { optimization: OrtOptimization::Disabled, ..ort_opts } } else { ort_opts };
        layers = per_layer_at(&proto, &graph, input, &opts.layer_tolerance, &reference, opts.bf16)?;
        first_diverging_layer = layers.iter().find(|l| !l.within).map(|l| l.node.clone());
    }
    let passed = outputs.iter().all(|o| o.violation.is_none()) && first_diverging_layer.is_none();
    Ok(ParityReport {
        model: model.name.clone(),
        input_shape: input.shape().to_vec(),
        threads,
        ort_version: crate::ort_ref::version()?,
        optimization: opts.optimization,
        quantized,
        host_isa: host_isa.name().to_string(),
        kestrel_isa: match (quantized, session.prepared().kernels.bf16_name()) {
            (true, _) => session.prepared().kernels.qgemm.name().to_string(),
            (false, Some(k)) => format!("bf16 {k}"),
            (false, None) => "f32".to_string(),
        },
        tolerance: opts.tolerance.clone(),
        layer_tolerance: opts.layer_tolerance.clone(),
        outputs,
        ort_drift,
        layers,
        first_diverging_layer,
        passed,
    })
}

/// Whether ORT's optimised output `ort` (against the exact semantics) drifts, given kestrel's
/// distance `kestrel` on the same outputs; the reason, or `None`.
pub fn ort_drift(tol: &Tolerance, ort: &Metrics, kestrel: &Metrics) -> Option<String> {
    tol.violation(ort).or_else(|| {
        (ort.rel_l2 > DRIFT_FLOOR && ort.rel_l2 > DRIFT_FACTOR * kestrel.rel_l2)
            .then(|| format!("relative L2 {:.2e}, {:.1}x kestrel's {:.2e}", ort.rel_l2, ort.rel_l2 / kestrel.rel_l2.max(f64::MIN_POSITIVE), kestrel.rel_l2))
    })
}

/// The one line that says ORT's optimised run left the tolerance around the exact semantics,
/// naming the worst output, its distance and the host's ISA; `None` when ORT stayed within.
pub fn drift_line(outputs: &[OutputParity], level: OrtOptimization, host: crate::cpu::detect::Isa) -> Option<String> {
    let worst = outputs
        .iter()
        .filter(|o| o.ort_violation.is_some())
        .filter_map(|o| o.ort_vs_exact.as_ref().map(|m| (o, m)))
        .max_by(|a, b| a.1.rel_l2.total_cmp(&b.1.rel_l2))?;
    let (o, m) = worst;
    let steps = m.quant_step.map_or(String::new(), |s| format!("{:.2} output steps, ", m.max_abs / s.max(f64::MIN_POSITIVE)));
    let why = if host >= crate::cpu::detect::Isa::Avx512Vnni {
        String::new()
    } else {
        " (without VNNI, ORT's u8×s8 kernel vpmaddubsw adds pairs of products into a saturating i16)".to_string()
    };
    Some(format!(
        "note: ONNX Runtime ({level} optimisations) itself drifts from the model's exact QDQ semantics on this {} CPU{why}: {steps}{} on output {:?}; the verdict is against the exact semantics",
        host.name(),
        o.ort_violation.as_deref().unwrap_or(""),
        o.output,
    ))
}

fn resolve_threads(threads: usize) -> usize {
    if threads == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        threads
    }
}

/// Median latencies in ms of kestrel and ORT (at `optimization`) on `input` over `runs` runs
/// each, after one warm-up run each. Runs go in blocks, not alternating: ORT's pool spins
/// after a run and would steal the cores from the next kestrel run (and rayon's from ORT's).
pub fn time_engines(model: &LoadedModel, input: &Tensor, threads: usize, optimization: OrtOptimization, runs: usize) -> Result<(f64, f64)> {
    let threads = resolve_threads(threads);
    let kestrel = Engine::Kestrel(Session::new(model.graph.clone(), &Options { threads, optimize: true, ..Default::default() })?);
    let ort = Engine::Ort(OrtModel::with_options(&export::to_bytes_model(&model.onnx_model()?), &OrtOptions { threads, optimization, spinning: true })?);
    let runs = runs.max(1);
    let median = |mut e: Engine| -> Result<f64> {
        e.run(input)?;
        let mut t = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t0 = std::time::Instant::now();
            e.run(input)?;
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        Ok(crate::stats::Summary::of(&t).median)
    };
    Ok((median(kestrel)?, median(ort)?))
}
