//! The prepare stage: a graph lowered for the CPU backend, once per session.
//!
//! 1. The value-preserving passes run on the session's copy of the graph (`graph::passes`).
//! 2. One dispatch table is chosen ([`Kernels::select`]: `KESTREL_ISA` or the CPU's richest
//!    path; a forced path the CPU lacks is an error).
//! 3. Each value gets its storage type ([`DType`]). Where every reader of an INT8 conv's
//!    output is an INT8 conv with the same static input parameters (or a QuantizeDequantize
//!    with those parameters that only residual inputs of INT8 convs read), the producer writes
//!    u8 codes and the readers take them as they are: the codes are exactly those the readers
//!    would have computed, and a removed QuantizeDequantize's readers dequantize exactly the
//!    values it passed on. A MaxPool between such convs runs on the codes (max commutes with
//!    the monotone quantization).
//! 4. Each node gets its [`Step`]: its kernel, with INT8 weights packed for the chosen qgemm
//!    kernel only.
//!
//! A session prepared without `optimize` keeps the graph as given and every value f32, so
//! each node's output can be read and compared (per-layer tools).

use crate::cpu::detect::Tune;
use crate::cpu::kernels::Kernels;
use crate::cpu::sgemm::PackedA;
use crate::cpu::bgemm::{self, PackedBf16};
use crate::cpu::{amx, bconv, blinear, conv_transpose, qconv, sconv, slanes, spos, wino};
use crate::cpu::qgemm::PackedWeights;
use crate::error::{Error, Result};
use crate::graph::{passes, ActQuant, Conv2d, Graph, Node, Op};
use crate::qparams::QParams;

/// How a [`super::Session`] is built.
#[derive(Clone, Debug)]
pub struct Options {
    /// Worker threads of each call; 0 means one per core, more than [`super::MAX_THREADS`] is
    /// refused. A call of fewer than [`super::plan::CALL_PAR_MIN_MACS`] multiply-adds runs on
    /// the calling thread alone.
    pub threads: usize,
    /// Run the graph passes (fold BatchNorm, fuse epilogues, drop Identity) and hand u8
    /// codes between INT8 layers. Without it every node's output is kept as computed, in f32.
    pub optimize: bool,
    /// Run the f32 convolutions in bf16 (`--precision bf16`): weights and activations rounded
    /// to bf16, products by `vdpbf16ps`, accumulation in f32. Needs AVX512_BF16 (or the
    /// scalar emulation under `KESTREL_ISA=scalar`); refused elsewhere.
    pub bf16: bool,
    /// With `optimize`, run the f32 3×3 stride-1 convs that gain from it by Winograd
    /// F(2×2, 3×3) (`cpu::wino`: equal to direct convolution up to rounding). On by default;
    /// `KESTREL_WINOGRAD=0` in the environment turns it off for every session.
    pub winograd: bool,
    /// With `bf16` and `winograd`, run bf16 Winograd as F(4×4, 3×3) on maps of 32² and more
    /// ([`wino::bf16_variant`]): on Zen 4 1.2–1.5× faster than F(2×2) there, but about six
    /// times its rounding error (its transforms scale the operands rounded to bf16 by up to
    /// 100), so off by default; `KESTREL_WINOGRAD=f4-bf16` turns it on for every session.
    pub winograd_bf16_f4: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options { threads: 0, optimize: true, bf16: false, winograd: true, winograd_bf16_f4: false }
    }
}

/// How a value is stored while a graph runs.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum DType {
    /// One f32 per element.
    F32,
    /// One u8 code per element, with the parameters that dequantize it.
    U8(QParams),
}

impl DType {
    /// Bytes per element.
    pub fn size(self) -> usize {
        match self {
            DType::F32 => 4,
            DType::U8(_) => 1,
        }
    }
}

/// How one node runs on the CPU.
#[derive(Clone, Debug)]
pub enum Step {
    /// The op's f32 kernel.
    F32,
    /// An FP32 conv on kestrel's own GEMM kernel, its weights packed per group.
    SConv(Vec<PackedA>),
    /// An f32 conv run in bf16 (`Options::bf16`), its weights rounded and packed per group.
    BConv(Vec<PackedBf16>),
    /// An FP32 3×3 stride-1 conv by Winograd F(2×2, 3×3) or F(4×4, 3×3) on kestrel's GEMM
    /// kernel, its weights transformed and packed once (`cpu::wino`). Maps too small for it run as
    /// [`Step::SConv`], packed by the plan.
    Wino(wino::Packed),
    /// An f32 conv run in bf16 (`Options::bf16`) by Winograd F(2×2, 3×3): the transformed
    /// weights rounded to bf16 and packed once, the GEMMs on the bf16 kernel (`cpu::wino`).
    /// Maps too small for it run on the direct bf16 steps, chosen by the plan.
    BWino(wino::Packed),
    /// An FP32 conv of a batch of small maps by output position, only the taps that read the
    /// input at each (`cpu::spos`), prepared by the plan for one input size.
    SPos(spos::PosConv),
    /// An FP32 conv of a batch of small maps as a direct conv with the output channels in the
    /// vector lanes (`cpu::slanes`), prepared by the plan for one input size.
    SLanes(slanes::LanesConv),
    /// An f32 conv run in bf16 as an implicit GEMM over bf16 phase planes (AMX tiles, or
    /// `vdpbf16ps` without them), its weights rounded and packed once.
    BImplicit(amx::Packed),
    /// An f32 conv run in bf16 on the FP32 kernel: weights rounded to bf16 and packed once,
    /// the input rounded per call, so every product of two bf16 values is exact and the FMAs
    /// accumulate in f32 as the bf16 kernels do (in another order). Chosen by the plan for
    /// output maps of at most [`BF16_FMA_MAX_PIXELS`] pixels, where the bf16 kernels' 16-pixel
    /// vectors would be mostly empty, and for convs of at most [`BF16_FMA_MAX_CHANNELS`] input
    /// channels per group (a stem), whose channel pairs would be mostly padding (not where
    /// [`folds_wide`] sends them to the phase planes).
    BFma(Vec<PackedA>),
    /// An f32 conv run in bf16 on the FP32 channel-lanes path ([`Step::SLanes`]), as
    /// [`Step::BFma`] runs on the packed FP32 kernel: weights rounded to bf16 and packed by
    /// the plan for one input size, the input rounded per call. Chosen where the FP32 plan
    /// takes that path (small maps), not the bf16 kernels' 16-pixel vectors.
    BLanes(slanes::LanesConv),
    /// The same on the FP32 by-position path ([`Step::SPos`]: a batch of maps so small that
    /// most taps read padding).
    BPos(spos::PosConv),
    /// An INT8 conv, its weights packed per group.
    QConv(Vec<PackedWeights>),
    /// An INT8 transposed conv, its weights packed as `[Cout·kh·kw][Cin]`.
    QConvTranspose(PackedWeights),
    /// An FP32 transposed conv whose GEMM runs as a 1×1 conv on kestrel's FP32 kernel, `Wᵀ`
    /// packed once (`cpu::conv_transpose::pack`).
    SConvT(conv_transpose::Packed),
    /// An INT8 fully connected layer.
    QLinear(PackedWeights),
    /// An f32 fully connected layer run in bf16 (`cpu::blinear`), its weights rounded and
    /// packed once.
    BLinear(blinear::Packed),
    /// Max pooling over u8 codes.
    MaxPoolU8,
}

impl Step {
    /// The kernel's name, for messages and profiles.
    pub fn name(&self) -> &'static str {
        match self {
            Step::F32 => "f32",
            Step::SConv(_) | Step::SPos(_) | Step::SLanes(_) => "f32 conv (packed)",
            Step::Wino(_) => "f32 conv (Winograd)",
            Step::BConv(_) | Step::BImplicit(_) | Step::BFma(_) | Step::BLanes(_) | Step::BPos(_) => "bf16 conv",
            Step::BWino(_) => "bf16 conv (Winograd)",
            Step::QConv(_) => "INT8 conv",
            Step::QConvTranspose(_) => "INT8 ConvTranspose",
            Step::SConvT(_) => "f32 ConvTranspose",
            Step::QLinear(_) => "INT8 Gemm",
            Step::BLinear(_) => "bf16 Gemm",
            Step::MaxPoolU8 => "u8 max-pool",
        }
    }

    /// The kernel and instruction path the step runs, for per-layer reports: e.g.
    /// `INT8 conv avx2 vpmaddubsw` (a grouped conv lists each path its groups take), or
    /// `INT8 conv avx512vnni, quad planes` for the implicit GEMM.
    pub fn kernel(&self, kernels: &Kernels) -> String {
        let q = |p: &PackedWeights| kernels.qgemm.path(p.packing());
        match self {
            Step::QConv(p) => {
                let mut paths: Vec<&str> = p.iter().map(q).collect();
                paths.dedup();
                let implicit = if p.first().is_some_and(|w| w.taps > 0) { ", quad planes" } else { "" };
                format!("{} {}{implicit}", self.name(), paths.join(" + "))
            }
            Step::QConvTranspose(p) | Step::QLinear(p) => format!("{} {}", self.name(), q(p)),
            Step::SConv(_) => format!("f32 conv {}", kernels.sgemm.map_or("gemm crate", |k| k.name())),
            Step::SConvT(p) => format!("{} {}", self.name(), p.kernel.name()),
            Step::BConv(_) => format!("bf16 conv {}", kernels.conv_bf16.map_or("-", |k| k.name())),
            Step::BImplicit(p) => format!("bf16 conv {}", kernels.conv_planes.map_or("-", |k| k.name_for(p))),
            Step::BFma(_) => format!("bf16 conv on f32 FMA {}", kernels.sgemm.map_or("-", |k| k.name())),
            Step::BLanes(lc) if lc.chunked => format!("bf16 conv on f32 FMA {}", crate::cpu::schan::NAME),
            Step::BLanes(_) => format!("bf16 conv on f32 FMA {} channels in lanes", kernels.sgemm.map_or("-", |k| k.name())),
            Step::BPos(_) => format!("bf16 conv on f32 FMA {} by position", kernels.sgemm.map_or("-", |k| k.name())),
            Step::SPos(_) => format!("f32 conv {} by position", kernels.sgemm.map_or("-", |k| k.name())),
            Step::SLanes(lc) if lc.chunked => format!("f32 conv {}", crate::cpu::schan::NAME),
            Step::SLanes(_) => format!("f32 conv {} channels in lanes", kernels.sgemm.map_or("-", |k| k.name())),
            Step::Wino(p) => format!("f32 conv Winograd F({m}x{m},3x3) {}", kernels.sgemm.map_or("-", |k| k.name()), m = p.variant.m()),
            Step::BWino(p) => format!("bf16 conv Winograd F({m}x{m},3x3) {}", kernels.conv_bf16.map_or("-", |k| k.name()), m = p.variant.m()),
            Step::BLinear(_) => format!("bf16 Gemm {}", kernels.conv_bf16.map_or("-", blinear::name)),
            Step::F32 | Step::MaxPoolU8 => self.name().to_string(),
        }
    }

    /// Bytes of packed weights the step holds.
    pub fn packed_bytes(&self) -> usize {
        match self {
            Step::QConv(p) => p.iter().map(PackedWeights::bytes).sum(),
            Step::SConv(p) | Step::BFma(p) => p.iter().map(PackedA::bytes).sum(),
            Step::BConv(p) => p.iter().map(PackedBf16::bytes).sum(),
            Step::BImplicit(p) => p.bytes(),
            Step::SPos(p) | Step::BPos(p) => p.bytes(),
            Step::SLanes(p) | Step::BLanes(p) => p.bytes(),
            Step::Wino(p) | Step::BWino(p) => p.bytes(),
            Step::QConvTranspose(p) | Step::QLinear(p) => p.bytes(),
            Step::SConvT(p) => p.bytes(),
            Step::BLinear(p) => p.bytes(),
            Step::F32 | Step::MaxPoolU8 => 0,
        }
    }
}

/// A graph lowered for the CPU: immutable once built, shared by every call of a session.
#[derive(Debug)]
pub struct Prepared {
    pub graph: Graph,
    pub kernels: Kernels,
    /// One per node of `graph`.
    pub steps: Vec<Step>,
    /// One per value of `graph`.
    pub dtypes: Vec<DType>,
    /// Values whose producer (an INT8 conv writing f32) records their `(min, max)` for a
    /// dynamic INT8 conv that reads them.
    pub record_range: Vec<bool>,
}

impl Prepared {
    /// Lowers `graph` (see the module docs).
    pub fn new(mut graph: Graph, opts: &Options) -> Result<Self> {
        graph.validate()?;
        let mut kernels = Kernels::select()?;
        if opts.bf16 {
            let k = bgemm::Kernel::for_isa(kernels.isa).ok_or_else(|| Error::Unsupported {
                what: format!("bf16 precision on this CPU (ISA path {})", kernels.isa.name()),
                hint: "it needs AVX512_BF16 (AMD Zen 4, Intel Cooper Lake, Sapphire Rapids or later); run in f32, or force the slow scalar emulation with KESTREL_ISA=scalar".into(),
            })?;
            kernels.conv_bf16 = Some(k);
            // The scalar path keeps the im2col emulation everywhere (its reference); the
            // implicit kernels' scalar twin is for the tests.
            kernels.conv_planes = match k {
                bgemm::Kernel::Scalar => None,
                #[cfg(target_arch = "x86_64")]
                bgemm::Kernel::Avx512Bf16(_) => Some(amx::PlaneKernel::for_bf16(k)),
            };
        }
        if opts.optimize {
            passes::optimize(&mut graph);
            let env = std::env::var("KESTREL_WINOGRAD");
            kernels.winograd = opts.winograd && kernels.sgemm.is_some() && env.as_ref().map_or(true, |v| v != "0");
            kernels.winograd_f4 = kernels.winograd && env.as_ref().map_or(true, |v| v != "f2");
            kernels.winograd_bf16_f4 = kernels.winograd_f4 && (opts.winograd_bf16_f4 || env.is_ok_and(|v| v == "f4-bf16"));
        }
        let mut dtypes = vec![DType::F32; graph.values.len()];
        let mut pool_u8 = vec![false; graph.nodes.len()];
        if opts.optimize {
            hand_off_u8(&mut graph, &mut dtypes, &mut pool_u8);
        }
        // The output maps at the declared input shapes, where they infer: they choose the
        // Winograd variant packed here (a plan for other sizes packs the other where its maps
        // want it, so that the values depend on the run's shapes only).
        let declared = (kernels.winograd_f4 || kernels.conv_planes.is_some()).then(|| crate::graph::shape::infer(&graph, &graph.inputs.iter().map(|i| i.shape.clone()).collect::<Vec<_>>()).ok()).flatten();
        let map_of = |n: &Node| declared.as_ref().and_then(|s| s.get(n.output)).filter(|s| s.len() == 4).map(|s| [s[2], s[3]]);
        let steps = graph.nodes.iter().zip(&pool_u8).map(|(n, &u8_pool)| if u8_pool { Ok(Step::MaxPoolU8) } else { step_at(&kernels, n, map_of(n)) }).collect::<Result<Vec<_>>>()?;
        let mut record_range = vec![false; graph.values.len()];
        let producers = graph.producers();
        for n in &graph.nodes {
            if n.op.conv().and_then(|c| c.precision.int8()).is_some_and(|q| q.input == ActQuant::Dynamic) {
                let v = n.inputs[0];
                let by_qconv = producers[v].is_some_and(|p| matches!(steps[p], Step::QConv(_)));
                record_range[v] = by_qconv && dtypes[v] == DType::F32;
            }
        }
        Ok(Prepared { graph, kernels, steps, dtypes, record_range })
    }

    /// Bytes of weights packed for the kernels.
    pub fn packed_bytes(&self) -> usize {
        self.steps.iter().map(Step::packed_bytes).sum()
    }
}

/// Output maps of at most this many pixels run their bf16 convs on the FP32 kernel
/// ([`Step::BFma`]).
pub const BF16_FMA_MAX_PIXELS: usize = 16;

/// bf16 convs with at most this many input channels per group run on the FP32 kernel
/// ([`Step::BFma`]) whatever their map: `vdpbf16ps` takes channels in pairs, and ResNet's
/// 3-channel stem gained nothing from it (0.81 ms on the planes at 2 threads, as in f32); on
/// the FP32 kernel it takes that kernel's order of tiles too (Zen 5, per layer, 2 threads: 0.87 →
/// 0.83–0.85 ms, f32's own 0.79–0.82). Not on Zen 4 where the columns fold wide
/// ([`folds_wide`]).
pub const BF16_FMA_MAX_CHANNELS: usize = 4;

/// Whether a bf16 conv of few input channels (at most [`BF16_FMA_MAX_CHANNELS`]) runs on the
/// phase planes rather than the FP32 kernel: on Zen 4 where its kernel columns fold into at
/// least 16 channels of a K step (ResNet's 7 × 7 stem: 21). Zen 4, 2 threads, per layer,
/// ResNet-50's stem: 0.93–0.95 ms on the planes against 1.18–1.19 on the FP32 kernel; the 3 × 3
/// convs of 3 channels (9 folded: shapes-resnet18, blobs-unet, UNet) were 0–3 % slower as
/// whole models. Only convs the planes take (ungrouped: [`amx::takes`]), and only on
/// `vdpbf16ps` tiles, against which it was measured (not on AMX tiles).
fn folds_wide(kernels: &Kernels, c: &Conv2d) -> bool {
    let ci = c.weight.shape().get(1).copied().unwrap_or(0);
    kernels.tune == Tune::Zen4 && matches!(kernels.conv_planes, Some(amx::PlaneKernel::Dot(_))) && amx::takes(c) && ci * c.kernel()[1] >= 16
}

/// The [`Step::BFma`] of a bf16 conv whose output map has `pixels` pixels, where it takes one
/// (the plan's choice; convs of few channels take it at prepare time, [`bf16_direct`]).
pub fn bf16_on_fma(kernels: &Kernels, c: &Conv2d, pixels: usize) -> Option<Step> {
    if pixels > BF16_FMA_MAX_PIXELS {
        return None;
    }
    bf16_fma(kernels, c)
}

/// The [`Step::BFma`] of a bf16 conv: its weights rounded to bf16 and packed for the FP32 kernel.
fn bf16_fma(kernels: &Kernels, c: &Conv2d) -> Option<Step> {
    let sk = kernels.sgemm?;
    Some(Step::BFma(sconv::pack(sk, &bf16_rounded(kernels, c)?)))
}

/// Conv `c` with its weights rounded to bf16 (bias and the rest as they are), for the FP32
/// kernels to run in bf16 ([`Step::BFma`], [`Step::BLanes`], [`Step::BPos`]); `None` without a
/// bf16 kernel, or for an INT8 conv.
pub fn bf16_rounded(kernels: &Kernels, c: &Conv2d) -> Option<Conv2d> {
    let bk = kernels.conv_bf16?;
    if c.precision.int8().is_some() {
        return None;
    }
    let mut rounded = c.clone();
    let w: Vec<f32> = c.weight.data().to_vec();
    let mut r = vec![0f32; w.len()];
    bk.round_slice(&w, &mut r);
    rounded.weight = crate::tensor::Tensor::new(c.weight.shape().to_vec(), r).ok()?;
    Some(rounded)
}

/// The direct (not Winograd) step of a conv run in bf16 with output maps `map` (when known):
/// a conv of at most [`BF16_FMA_MAX_CHANNELS`] input channels per group on the FP32 kernel,
/// else the implicit GEMM over planes where it takes the conv, else the packed bf16 conv.
pub fn bf16_direct(kernels: &Kernels, c: &Conv2d, map: Option<[usize; 2]>) -> Step {
    if c.weight.shape().get(1).is_some_and(|&ci| ci <= BF16_FMA_MAX_CHANNELS) && !folds_wide(kernels, c) {
        if let Some(step) = bf16_fma(kernels, c) {
            return step;
        }
    }
    match kernels.conv_planes.filter(|_| amx::takes(c)) {
        Some(k) => Step::BImplicit(amx::pack_for_map(c, k, map)),
        None => Step::BConv(bconv::pack(c)),
    }
}

/// The step of a conv in a bf16 session with output maps `map` (when known): the FP32
/// Winograd F(4×4) where it outruns the bf16 convs ([`f32_f4_in_bf16`]), else bf16 Winograd
/// where it pays (not on AMX tiles: the rule was measured against `vdpbf16ps`, which AMX's
/// direct conv outruns about twice), F(4×4) or F(2×2) as [`bf16_wino_variant`] says for the
/// maps, else the direct bf16 step ([`bf16_direct`]).
pub fn bf16_step(kernels: &Kernels, c: &Conv2d, map: Option<[usize; 2]>) -> Step {
    if let Some(k) = map.and_then(|m| f32_f4_in_bf16(kernels, c, m)) {
        return Step::Wino(wino::pack_f4(k.geometry().mr, c));
    }
    match bf16_wino_variant(kernels, c, map) {
        Some(variant) => Step::BWino(wino::pack_bf16(c, variant)),
        None => bf16_direct(kernels, c, map),
    }
}

/// The variant a bf16 session's Winograd conv runs at output maps `map`: F(2×2), or with
/// [`Options::winograd_bf16_f4`] the one [`wino::bf16_variant`] picks for known maps; `None`
/// where it does not run bf16 Winograd (it does not pay, or AMX tiles run its direct conv).
pub fn bf16_wino_variant(kernels: &Kernels, c: &Conv2d, map: Option<[usize; 2]>) -> Option<wino::Variant> {
    let on = kernels.conv_bf16.is_some() && kernels.winograd && wino::pays_bf16(c, kernels.tune) && !matches!(kernels.conv_planes, Some(amx::PlaneKernel::Amx(_)));
    on.then(|| match map {
        Some(m) if kernels.winograd_bf16_f4 => wino::bf16_variant(m),
        _ => wino::Variant::F2,
    })
}

/// The FP32 kernel a bf16 session runs this conv on by Winograd F(4×4, 3×3) at output maps
/// `map`, where that beats the bf16 convs ([`wino::f4_beats_bf16`]; not against AMX tiles,
/// nor where bf16 Winograd runs F(4×4) itself, [`bf16_wino_variant`]).
pub fn f32_f4_in_bf16(kernels: &Kernels, c: &Conv2d, map: [usize; 2]) -> Option<crate::cpu::sgemm::Kernel> {
    let k = kernels.sgemm?;
    let vdp = kernels.conv_bf16.is_some() && !matches!(kernels.conv_planes, Some(amx::PlaneKernel::Amx(_)));
    let bf16_f4 = bf16_wino_variant(kernels, c, Some(map)) == Some(wino::Variant::F4);
    (vdp && !bf16_f4 && kernels.winograd && kernels.winograd_f4 && wino::pays(c) && wino::prefers_f4(k, c, map) && wino::f4_beats_bf16(c, map)).then_some(k)
}

/// An FP32 Winograd conv's weights for output maps `map`: F(4×4, 3×3) where the kernels allow
/// it and [`wino::prefers_f4`] says so, else F(2×2, 3×3).
pub fn wino_pack(kernels: &Kernels, k: crate::cpu::sgemm::Kernel, c: &Conv2d, map: Option<[usize; 2]>) -> wino::Packed {
    match map {
        Some(m) if kernels.winograd_f4 && wino::prefers_f4(k, c, m) => wino::pack_f4(k.geometry().mr, c),
        _ => wino::pack(k.geometry().mr, c),
    }
}

/// The step of one node: its kernel, INT8 weights packed for `kernels`.
pub fn step(kernels: &Kernels, n: &Node) -> Result<Step> {
    step_at(kernels, n, None)
}

/// [`step`] for a node whose output map is `map` (`[OH, OW]`) at the session's declared input
/// size, when known: an FP32 Winograd conv takes F(4×4, 3×3) where [`wino::prefers_f4`] says
/// so, else F(2×2, 3×3).
pub fn step_at(kernels: &Kernels, n: &Node, map: Option<[usize; 2]>) -> Result<Step> {
    let named = |e: Error| match e {
        Error::Unsupported { what, hint } => Error::Unsupported { what: format!("node '{}': {what}", n.name.escape_debug()), hint },
        other => other,
    };
    Ok(match &n.op {
        Op::Conv(c) => match c.precision.int8() {
            Some(q) => Step::QConv(qconv::pack_conv(kernels, c, q).map_err(named)?),
            None => match (kernels.conv_bf16, kernels.sgemm) {
                (Some(_), _) => bf16_step(kernels, c, map),
                (None, Some(k)) if kernels.winograd && wino::pays(c) => Step::Wino(wino_pack(kernels, k, c, map)),
                (None, Some(k)) => Step::SConv(sconv::pack(k, c)),
                (None, None) => Step::F32,
            },
        },
        Op::ConvTranspose(c) => match (c.precision.int8(), kernels.sgemm) {
            (Some(q), _) => Step::QConvTranspose(qconv::pack_conv_transpose(kernels, c, q).map_err(named)?),
            // On AVX-512 only: on the AVX2 kernel UNet's 64 → 32 and 128 → 64 up-convs ran
            // 1.16× and 1.07× slower than on the `gemm` crate (Zen 5, the AVX2 path forced,
            // `cargo bench --bench kernels -- conv_transpose`), the others 0.85–0.96×.
            (None, Some(k)) if k.geometry().lanes >= 16 => conv_transpose::pack(k, c).map_or(Step::F32, Step::SConvT),
            (None, _) => Step::F32,
        },
        Op::Linear(l) => match l.precision.int8() {
            Some(q) => Step::QLinear(qconv::pack_linear(kernels, l, q).map_err(named)?),
            None if kernels.conv_bf16.is_some() && l.weight.shape().len() == 2 => Step::BLinear(blinear::pack(l)),
            None => Step::F32,
        },
        _ => Step::F32,
    })
}

/// The static input parameters of an INT8 conv, if it has them.
fn static_input(op: &Op) -> Option<QParams> {
    match op.conv().and_then(|c| c.precision.int8()).map(|q| q.input) {
        Some(ActQuant::Static(p)) => Some(p),
        _ => None,
    }
}

/// Step 3 of the module docs: sets `dtypes` of the values INT8 convs hand to each other as u8
/// codes, marks the max-pools that run on codes, and removes the QuantizeDequantize nodes
/// whose readers now take codes as their residual.
fn hand_off_u8(g: &mut Graph, dtypes: &mut [DType], pool_u8: &mut Vec<bool>) {
    let mut readers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); g.values.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for (slot, &v) in n.inputs.iter().enumerate() {
            readers[v].push((i, slot));
        }
    }
    let is_int8_conv = |n: &Node| n.op.conv().is_some_and(|c| !c.precision.is_f32());
    // An INT8 conv whose only reader is a MaxPool: the pool can run on u8 codes if its own
    // readers qualify.
    let through_pool = |g: &Graph, p: usize| -> Option<usize> {
        let v = g.nodes[p].output;
        match readers[v].as_slice() {
            [(m, 0)] if matches!(g.nodes[*m].op, Op::MaxPool(_)) && !g.outputs.contains(&v) => Some(*m),
            _ => None,
        }
    };
    // A QuantizeDequantize with static parameters that only residual inputs of INT8 convs read.
    let residual_qdq = |g: &Graph, r: usize| -> Option<QParams> {
        let Op::FakeQuant(ActQuant::Static(pq)) = g.nodes[r].op else { return None };
        let f = g.nodes[r].output;
        let ok = !g.outputs.contains(&f)
            && !readers[f].is_empty()
            && readers[f].iter().all(|&(c, slot)| slot == 1 && is_int8_conv(&g.nodes[c]) && g.nodes[c].op.conv().is_some_and(|c| c.residual));
        ok.then_some(pq)
    };
    let mut removed = vec![false; g.nodes.len()];
    pool_u8.resize(g.nodes.len(), false);
    for p in 0..g.nodes.len() {
        if !is_int8_conv(&g.nodes[p]) {
            continue;
        }
        let pool = through_pool(g, p);
        let v = g.nodes[pool.unwrap_or(p)].output;
        if g.outputs.contains(&v) || readers[v].is_empty() {
            continue;
        }
        let mut params = None;
        let ok = readers[v].iter().all(|&(r, slot)| {
            let pq = match &g.nodes[r].op {
                op if slot == 0 && is_int8_conv(&g.nodes[r]) => match static_input(op) {
                    Some(pq) => pq,
                    None => return false,
                },
                Op::FakeQuant(_) if pool.is_none() => match residual_qdq(g, r) {
                    Some(pq) => pq,
                    None => return false,
                },
                _ => return false,
            };
            *params.get_or_insert(pq) == pq
        });
        let Some(pq) = params.filter(|_| ok) else { continue };
        dtypes[g.nodes[p].output] = DType::U8(pq);
        if let Some(m) = pool {
            dtypes[g.nodes[m].output] = DType::U8(pq);
            pool_u8[m] = true;
        }
        for &(r, _) in &readers[v] {
            if matches!(g.nodes[r].op, Op::FakeQuant(_)) {
                removed[r] = true;
                for &(c, _) in &readers[g.nodes[r].output] {
                    g.nodes[c].inputs[1] = v;
                }
            }
        }
    }
    let mut i = 0;
    g.nodes.retain(|_| {
        i += 1;
        !removed[i - 1]
    });
    let mut i = 0;
    pool_u8.retain(|_| {
        i += 1;
        !removed[i - 1]
    });
}
