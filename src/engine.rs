//! The engines the tools run side by side, behind one type: an [`Engine`] is a kestrel CPU
//! session or an ONNX Runtime session, run the same way on the same inputs.
//!
//! A [`Variant`] is one model prepared on one engine at one precision, as `bench`, `eval` and
//! `report` name them ([`Kind`]): kestrel f32 (and `f32-direct`, without Winograd, to time
//! that path against the direct convs in one run), kestrel bf16 (f32 graph, convs in bf16 where
//! the CPU has AVX512_BF16; `bf16-direct` without Winograd, `bf16-f4` with the opt-in bf16
//! Winograd F(4×4, 3×3)), kestrel INT8 (static or dynamic), and ONNX
//! Runtime on the same graph (f32) or on the QDQ file of kestrel's static quantization (ORT's
//! own INT8 kernels on the very same scales).

use std::time::Instant;

use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::graph::Graph;
use crate::load::LoadedModel;
use crate::tensor::Tensor;

/// Which engine and precision a variant runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Kind {
    F32,
    F32Direct,
    Bf16,
    Bf16Direct,
    Bf16F4,
    Int8Static,
    Int8Dynamic,
    OrtF32,
    OrtInt8,
}

impl Kind {
    /// Every kind, in report order.
    pub const ALL: [Kind; 9] = [Kind::F32, Kind::F32Direct, Kind::Bf16, Kind::Bf16Direct, Kind::Bf16F4, Kind::Int8Static, Kind::Int8Dynamic, Kind::OrtF32, Kind::OrtInt8];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Kind::F32 => "f32",
            Kind::F32Direct => "f32-direct",
            Kind::Bf16 => "bf16",
            Kind::Bf16Direct => "bf16-direct",
            Kind::Bf16F4 => "bf16-f4",
            Kind::Int8Static => "int8-static",
            Kind::Int8Dynamic => "int8-dynamic",
            Kind::OrtF32 => "ort-f32",
            Kind::OrtInt8 => "ort-int8",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Result<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == s.trim()).ok_or_else(|| {
            Error::Argument(format!("unknown variant '{s}' (use {})", Kind::ALL.map(Kind::name).join(", ")))
        })
    }

    /// Parses a comma-separated list.
    pub fn parse_list(s: &str) -> Result<Vec<Kind>> {
        s.split(',').filter(|p| !p.trim().is_empty()).map(Kind::parse).collect()
    }

    /// Whether the variant runs on ONNX Runtime.
    pub fn is_ort(self) -> bool {
        matches!(self, Kind::OrtF32 | Kind::OrtInt8)
    }
}

/// A model ready to run on one engine.
pub enum Engine {
    /// kestrel's CPU executor (f32 or INT8, by the graph's precision).
    Kestrel(Session),
    /// ONNX Runtime (feature `ort`).
    #[cfg(feature = "ort")]
    Ort(crate::ort_ref::OrtModel),
}

impl Engine {
    /// Runs one batch and returns every output.
    pub fn run(&mut self, x: &Tensor) -> Result<Vec<Tensor>> {
        match self {
            Engine::Kestrel(s) => s.run(std::slice::from_ref(x)),
            #[cfg(feature = "ort")]
            Engine::Ort(m) => Ok(m.run(x)?.into_iter().map(|(_, t)| t).collect()),
        }
    }

    /// Runs one batch and returns the first output.
    pub fn run_first(&mut self, x: &Tensor) -> Result<Tensor> {
        self.run(x)?.into_iter().next().ok_or(Error::NoOutput)
    }

    /// The kestrel session, if this engine is kestrel's.
    pub fn session(&self) -> Option<&Session> {
        match self {
            Engine::Kestrel(s) => Some(s),
            #[cfg(feature = "ort")]
            Engine::Ort(_) => None,
        }
    }
}

/// A variant ready to run.
pub struct Variant {
    pub kind: Kind,
    /// Engine and code path, e.g. `kestrel avx512vnni` or `onnxruntime 1.31.1`.
    pub engine: String,
    /// Seconds spent preparing it from the loaded model: quantization and weight packing,
    /// export, session creation.
    pub prepare_s: f64,
    /// The engine, whose kestrel session serves the planner's memory estimate and per-layer
    /// profiles.
    pub engine_impl: Engine,
    /// Worker threads of each call (intra-op threads for ONNX Runtime).
    pub threads: usize,
}

/// What building a variant needs.
pub struct Context<'a> {
    pub model: &'a LoadedModel,
    pub threads: usize,
    /// Calibration inputs for static INT8.
    pub calib: &'a [Tensor],
    /// The static INT8 graph, calibrated once for `int8-static` and `ort-int8` alike.
    static_graph: std::cell::OnceCell<Graph>,
    /// The dynamic INT8 graph, quantized once for every thread count of `int8-dynamic`.
    dynamic_graph: std::cell::OnceCell<Graph>,
}

impl<'a> Context<'a> {
    pub fn new(model: &'a LoadedModel, threads: usize, calib: &'a [Tensor]) -> Self {
        Context { model, threads, calib, static_graph: std::cell::OnceCell::new(), dynamic_graph: std::cell::OnceCell::new() }
    }

    fn static_int8(&self) -> Result<Graph> {
        self.int8(crate::quant::Mode::Static)
    }

    /// The graph quantized in `mode`, made on first use and kept.
    fn int8(&self, mode: crate::quant::Mode) -> Result<Graph> {
        let cell = match mode {
            crate::quant::Mode::Static => &self.static_graph,
            crate::quant::Mode::Dynamic => &self.dynamic_graph,
        };
        if let Some(g) = cell.get() {
            return Ok(g.clone());
        }
        let g = quantized(self, mode)?;
        Ok(cell.get_or_init(|| g).clone())
    }
}

fn quantized(ctx: &Context<'_>, mode: crate::quant::Mode) -> Result<Graph> {
    if ctx.model.graph.is_quantized() {
        return Err(Error::Argument(format!("{} is already quantized: INT8 variants start from a float model", ctx.model.name)));
    }
    let opts = crate::quant::QuantizeOptions { mode, threads: ctx.threads, ..Default::default() };
    crate::quant::quantize(&ctx.model.graph, &opts, ctx.calib, &mut |_, _| {})
}

/// A kestrel session of `g`; `winograd_bf16_f4` allows bf16 Winograd F(4×4, 3×3)
/// ([`Options::winograd_bf16_f4`]).
fn kestrel_session(g: Graph, threads: usize, bf16: bool, (winograd, winograd_bf16_f4): (bool, bool)) -> Result<(Engine, String)> {
    let quant = g.is_quantized();
    let shape = g.input_shape(1).ok();
    let s = Session::new(g, &Options { threads, optimize: true, bf16, winograd, winograd_bf16_f4 })?;
    let mut path = match (quant, s.prepared().kernels.bf16_name()) {
        (true, _) => s.prepared().kernels.qgemm.name().to_string(),
        (false, Some(k)) if winograd_bf16_f4 => format!("{k}, bf16 Winograd F(4x4)"),
        (false, Some(k)) => k,
        (false, None) if !winograd => "f32, direct convs".to_string(),
        (false, None) => "f32".to_string(),
    };
    // A bf16 session names its bf16 kernels; at the model's own input size some convs (small
    // maps, or F(4×4) on large ones) run on the FP32 kernels instead, which the name says.
    if let (true, Some(shape)) = (bf16, shape) {
        if let Ok(labels) = s.kernel_labels(std::slice::from_ref(&shape)) {
            let convs: Vec<&String> = labels.iter().filter(|l| l.contains(" conv ")).collect();
            let on_f32 = convs.iter().filter(|l| l.starts_with("f32 conv") || l.contains("on f32 FMA")).count();
            if on_f32 > 0 {
                let size = shape.iter().skip(2).map(|d| d.to_string()).collect::<Vec<_>>().join("×");
                path.push_str(&format!("; {on_f32} of {} convs on the FP32 kernels at {size}", convs.len()));
            }
        }
    }
    Ok((Engine::Kestrel(s), format!("kestrel {path}")))
}

#[cfg(feature = "ort")]
fn ort_session(bytes: &[u8], threads: usize, what: &str) -> Result<(Engine, String)> {
    // Variants alternate run by run, so ORT's idle workers must not spin into kestrel's turn.
    let m = crate::ort_ref::OrtModel::with_options(bytes, &crate::ort_ref::OrtOptions { spinning: false, ..crate::ort_ref::OrtOptions::threads(threads) })?;
    Ok((Engine::Ort(m), format!("onnxruntime {}{what}", crate::ort_ref::version()?)))
}

/// The ONNX bytes ORT runs for `g`: the model's own file for its graph, else kestrel's export.
#[cfg(feature = "ort")]
pub(crate) fn onnx_bytes(model: &LoadedModel, g: &Graph) -> Result<Vec<u8>> {
    if std::ptr::eq(g, &model.graph) {
        Ok(crate::onnx::export::to_bytes_model(&model.onnx_model()?))
    } else {
        crate::onnx::export::to_bytes(g)
    }
}

impl Variant {
    /// Builds `kind` for `ctx.model` at `ctx.threads`; an error says why the variant cannot
    /// exist here.
    pub fn build(kind: Kind, ctx: &Context<'_>) -> Result<Variant> {
        Variant::build_at(kind, ctx, ctx.threads)
    }

    /// [`Variant::build`] running each call on `threads` workers (`ctx.threads` still
    /// calibrates the INT8 variants, once for all thread counts).
    pub fn build_at(kind: Kind, ctx: &Context<'_>, threads: usize) -> Result<Variant> {
        let t = Instant::now();
        let (engine_impl, engine) = match kind {
            Kind::F32 => kestrel_session(ctx.model.graph.clone(), threads, false, (true, false))?,
            Kind::F32Direct => kestrel_session(ctx.model.graph.clone(), threads, false, (false, false))?,
            Kind::Bf16 => kestrel_session(ctx.model.graph.clone(), threads, true, (true, false))?,
            Kind::Bf16Direct => kestrel_session(ctx.model.graph.clone(), threads, true, (false, false))?,
            Kind::Bf16F4 => kestrel_session(ctx.model.graph.clone(), threads, true, (true, true))?,
            Kind::Int8Static => kestrel_session(ctx.static_int8()?, threads, false, (true, false))?,
            Kind::Int8Dynamic => kestrel_session(ctx.int8(crate::quant::Mode::Dynamic)?, threads, false, (true, false))?,
            #[cfg(feature = "ort")]
            Kind::OrtF32 => ort_session(&onnx_bytes(ctx.model, &ctx.model.graph)?, threads, "")?,
            #[cfg(feature = "ort")]
            Kind::OrtInt8 => {
                ort_session(&onnx_bytes(ctx.model, &ctx.static_int8()?)?, threads, " on kestrel's QDQ file")?
            }
            #[cfg(not(feature = "ort"))]
            Kind::OrtF32 | Kind::OrtInt8 => {
                return Err(Error::FeatureDisabled { feature: "ort", what: format!("variant {}", kind.name()) })
            }
        };
        Ok(Variant { kind, engine, prepare_s: t.elapsed().as_secs_f64(), engine_impl, threads })
    }

    /// The command-line name of the variant.
    pub fn name(&self) -> &'static str {
        self.kind.name()
    }

    /// Runs one batch and returns the first output.
    pub fn run(&mut self, x: &Tensor) -> Result<Tensor> {
        self.engine_impl.run_first(x)
    }

    /// The kestrel session, if this variant runs on kestrel.
    pub fn session(&self) -> Option<&Session> {
        self.engine_impl.session()
    }
}
