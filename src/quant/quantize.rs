//! The quantization rewrite. The float graph is optimised first (BatchNorm folded, epilogues
//! fused), then each Conv and Gemm that is not excluded (and each ConvTranspose with
//! groups = 1) becomes INT8 ([`crate::graph::Precision::Int8`]) with per-channel (or
//! per-tensor) s8 weights and u8 input parameters that are
//! calibrated (static) or computed per run (dynamic). In static mode the residual input of a
//! quantized conv with a fused Add also gets a QuantizeDequantize with its calibrated
//! parameters (unless `f32_residual`), which lets INT8 producers hand it over as u8 codes.
//! Pooling, concat, resize and the Add itself stay in f32 on the dequantized values.

use std::collections::HashMap;

use super::observe::{Method, Observer};
use crate::qparams::{QParams, WeightBits};
use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::graph::{passes, ActQuant, Graph, Node, Op, ValueId};
use crate::compare::compare;
use crate::tensor::Tensor;

/// Static (calibrated) or dynamic activation ranges.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Static,
    Dynamic,
}

/// How to quantize.
#[derive(Clone, Debug)]
pub struct QuantizeOptions {
    pub mode: Mode,
    pub method: Method,
    /// Per-output-channel weight scales (else one per tensor).
    pub per_channel: bool,
    /// The weights' code range; `None` chooses for this host ([`auto_weight_bits`]).
    pub weight_bits: Option<WeightBits>,
    /// Node names kept in f32; a trailing `*` matches a prefix.
    pub exclude: Vec<String>,
    /// When set, only these nodes are quantized (sensitivity analysis).
    pub only: Option<Vec<String>>,
    /// Static mode: keep the residual input of quantized convs in f32. By default it is
    /// quantized with its own calibrated parameters (a QuantizeDequantize before the fused
    /// Add, as in ONNX Runtime's QDQ models), so INT8 producers hand it over as u8 codes.
    pub f32_residual: bool,
    pub threads: usize,
}

impl Default for QuantizeOptions {
    fn default() -> Self {
        QuantizeOptions { mode: Mode::Static, method: Method::MinMax, per_channel: true, weight_bits: None, exclude: vec![], only: None, f32_residual: false, threads: 0 }
    }
}

/// The weight bits for this host's INT8 kernel (`KESTREL_ISA` or the richest the CPU has):
/// 7 where it is AVX2, whose `vpmaddubsw` kernel is provably exact on 7-bit weights (8-bit
/// layers mostly take the widening kernel, 1.5–1.7× slower; BENCHMARKS.md), 8 elsewhere. On a
/// host whose ISA cannot be chosen, 8.
pub fn auto_weight_bits() -> WeightBits {
    match crate::cpu::detect::selected() {
        Ok(crate::cpu::detect::Isa::Avx2) => WeightBits::Seven,
        _ => WeightBits::Eight,
    }
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => pattern == name,
    }
}

/// The float graph the rewrite starts from: passes applied.
pub fn prepare(graph: &Graph) -> Graph {
    let mut g = graph.clone();
    passes::optimize(&mut g);
    g
}

/// Indices of the nodes `opts` quantizes in a prepared graph.
pub fn targets(g: &Graph, opts: &QuantizeOptions) -> Vec<usize> {
    g.nodes
        .iter()
        .enumerate()
        .filter(|(_, n)| match &n.op {
            Op::Conv(c) => c.precision.is_f32(),
            Op::Linear(l) => l.precision.is_f32(),
            Op::ConvTranspose(c) => c.groups == 1 && c.precision.is_f32(),
            _ => false,
        })
        .filter(|(_, n)| !opts.exclude.iter().any(|p| matches(p, &n.name)))
        .filter(|(_, n)| opts.only.as_ref().is_none_or(|o| o.iter().any(|p| matches(p, &n.name))))
        .map(|(i, _)| i)
        .collect()
}

/// Observes the inputs of `nodes` (the main input, and the residual of a conv with a fused
/// Add) over the calibration batches and returns their parameters.
pub fn calibrate(
    g: &Graph,
    nodes: &[usize],
    calib: &[Tensor],
    method: Method,
    threads: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<HashMap<ValueId, QParams>> {
    if calib.is_empty() {
        return Err(Error::Argument("static quantization needs at least one calibration input".into()));
    }
    let residual = |n: &crate::graph::Node| n.op.conv().is_some_and(|c| c.residual).then(|| n.inputs.get(1).copied()).flatten();
    let watch: Vec<ValueId> = nodes.iter().flat_map(|&i| std::iter::once(g.nodes[i].inputs[0]).chain(residual(&g.nodes[i]))).collect();
    let mut obs: HashMap<ValueId, Observer> = watch.iter().map(|&v| (v, Observer::default())).collect();
    let passes = if method.needs_histogram() { 2 } else { 1 };
    let total = passes * calib.len();
    let threads = if threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { threads };
    let session = Session::new(g.clone(), &Options { threads, optimize: false, ..Default::default() })?;
    let simd = session.prepared().kernels.simd;
    for pass in 0..passes {
        for (i, x) in calib.iter().enumerate() {
            let values = session.run_all(std::slice::from_ref(x))?;
            for (&v, o) in obs.iter_mut() {
                if let Some(t) = &values[v] {
                    if pass == 0 {
                        o.see_range(simd, t.data());
                    } else {
                        o.see_histogram(t.data());
                    }
                }
            }
            progress(pass * calib.len() + i + 1, total);
        }
    }
    Ok(obs.into_iter().map(|(v, o)| (v, o.params(method))).collect())
}

/// Replaces node `i` (a Conv or Linear) by its INT8 version, with calibrated input
/// parameters from `params` (static) or run-time ranges (dynamic).
fn quantize_node(g: &mut Graph, i: usize, opts: &QuantizeOptions, bits: WeightBits, params: &HashMap<ValueId, QParams>) -> Result<()> {
    let input = match opts.mode {
        Mode::Dynamic => ActQuant::Dynamic,
        Mode::Static => ActQuant::Static(params.get(&g.nodes[i].inputs[0]).copied().unwrap_or(QParams::from_range(0.0, 0.0))),
    };
    let op = std::mem::replace(&mut g.nodes[i].op, Op::Identity);
    g.nodes[i].op = match op {
        Op::Conv(c) => Op::Conv(c.quantized(input, opts.per_channel, bits)?),
        Op::Linear(l) => Op::Linear(l.quantized(input, opts.per_channel, bits)?),
        Op::ConvTranspose(c) => Op::ConvTranspose(c.quantized(input, opts.per_channel, bits)?),
        other => other,
    };
    Ok(())
}

/// Name suffix of the QuantizeDequantize nodes [`quantize`] puts before residual inputs.
pub const RESIDUAL_QDQ_SUFFIX: &str = ".residual_quantize";

/// Static mode: puts a QuantizeDequantize with the calibrated parameters of the residual
/// input of INT8 conv node `i` (if it has one) between that value and the conv. Returns whether a
/// node was inserted (before `i`, which moves to `i + 1`).
fn quantize_residual(g: &mut Graph, i: usize, params: &HashMap<ValueId, QParams>) -> bool {
    let n = &g.nodes[i];
    let (Op::Conv(c), Some(&r)) = (&n.op, n.inputs.get(1)) else { return false };
    let Some(&p) = params.get(&r).filter(|_| c.residual && !c.precision.is_f32()) else { return false };
    let name = format!("{}{RESIDUAL_QDQ_SUFFIX}", n.name);
    let f = g.add_value(name.clone());
    g.nodes.insert(i, Node { name, op: Op::FakeQuant(ActQuant::Static(p)), inputs: vec![r], output: f });
    g.nodes[i + 1].inputs[1] = f;
    true
}

/// Quantizes `graph`. `calib` feeds static calibration (ignored in dynamic mode).
pub fn quantize(graph: &Graph, opts: &QuantizeOptions, calib: &[Tensor], progress: &mut dyn FnMut(usize, usize)) -> Result<Graph> {
    let mut g = prepare(graph);
    let nodes = targets(&g, opts);
    let params = match opts.mode {
        Mode::Static => calibrate(&g, &nodes, calib, opts.method, opts.threads, progress)?,
        Mode::Dynamic => HashMap::new(),
    };
    let bits = opts.weight_bits.unwrap_or_else(auto_weight_bits);
    for &i in &nodes {
        quantize_node(&mut g, i, opts, bits, &params)?;
    }
    if opts.mode == Mode::Static && !opts.f32_residual {
        // From the back, so the indices of the nodes still to visit do not move.
        for &i in nodes.iter().rev() {
            quantize_residual(&mut g, i, &params);
        }
    }
    Ok(g)
}

/// One layer's sensitivity: the model output's error when only that layer is quantized.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Sensitivity {
    pub node: String,
    pub rel_l2: f64,
    pub cosine: f64,
}

/// Quantizes each target layer alone and measures the output error against f32 over `calib`.
/// Sorted worst first.
pub fn sensitivity(graph: &Graph, opts: &QuantizeOptions, calib: &[Tensor], progress: &mut dyn FnMut(usize, usize)) -> Result<Vec<Sensitivity>> {
    let g = prepare(graph);
    let names: Vec<String> = targets(&g, opts).into_iter().map(|i| g.nodes[i].name.clone()).collect();
    let threads = opts.threads;
    let run = |g: &Graph| -> Result<Vec<Tensor>> {
        let session = Session::new(g.clone(), &Options { threads, optimize: false, ..Default::default() })?;
        calib.iter().map(|x| session.run(std::slice::from_ref(x))?.into_iter().next().ok_or(Error::NoOutput)).collect()
    };
    let reference = run(&g)?;
    // Calibrate every layer once, then quantize one layer at a time with those parameters.
    let all = targets(&g, opts);
    let params = match opts.mode {
        Mode::Static => calibrate(&g, &all, calib, opts.method, threads, &mut |_, _| {})?,
        Mode::Dynamic => HashMap::new(),
    };
    let mut out = Vec::new();
    for (k, name) in names.iter().enumerate() {
        let mut q = g.clone();
        let Some(i) = q.nodes.iter().position(|n| &n.name == name) else { continue };
        quantize_node(&mut q, i, opts, opts.weight_bits.unwrap_or_else(auto_weight_bits), &params)?;
        if opts.mode == Mode::Static && !opts.f32_residual {
            quantize_residual(&mut q, i, &params);
        }
        let got = run(&q)?;
        let (mut num, mut den, mut cos) = (0.0, 0.0, 0.0);
        for (r, o) in reference.iter().zip(&got) {
            let m = compare(r, o);
            let n2: f64 = r.data().iter().map(|&v| f64::from(v) * f64::from(v)).sum();
            num += m.rel_l2 * m.rel_l2 * n2;
            den += n2;
            cos += m.cosine;
        }
        out.push(Sensitivity { node: name.clone(), rel_l2: (num / den.max(f64::MIN_POSITIVE)).sqrt(), cosine: cos / got.len().max(1) as f64 });
        progress(k + 1, names.len());
    }
    out.sort_by(|a, b| b.rel_l2.total_cmp(&a.rel_l2));
    Ok(out)
}
