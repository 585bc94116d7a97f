//! The kernels one session runs, chosen once: the dispatch table. `KESTREL_ISA` (or the
//! richest path this CPU has) names an ISA; [`Kernels::new`] builds the qgemm kernel and the
//! SIMD level of every multiversioned loop (epilogues, codecs) for it, or fails when the CPU
//! lacks it. Nothing falls back silently, and nothing is looked up again per call: the
//! session's prepare stage packs weights for [`Kernels::qgemm`] and hands the table to every
//! kernel call.

use crate::cpu::detect::{self, Isa};
use crate::cpu::{amx, bgemm, qgemm, sgemm};
use crate::cpu::simd::Simd;
use crate::error::Result;

/// One ISA's kernels. Holding one proves the CPU runs them.
#[derive(Clone, Copy, Debug)]
pub struct Kernels {
    pub isa: Isa,
    /// The u8×s8 GEMM micro-kernel (and so the packing of INT8 weights).
    pub qgemm: qgemm::Kernel,
    /// The vector level of the epilogues and codecs.
    pub simd: Simd,
    /// kestrel's own FP32 GEMM kernel (and so the packing of FP32 conv weights); `None` runs
    /// FP32 convs on the `gemm` crate (the scalar path, or AVX2 without FMA).
    pub sgemm: Option<sgemm::Kernel>,
    /// The BF16 kernel f32 convs run on, when the session asked for bf16
    /// (`Options::bf16`); `None` runs them in f32.
    pub conv_bf16: Option<bgemm::Kernel>,
    /// With bf16 on AVX512_BF16, the implicit kernel (AMX tiles, or `vdpbf16ps` over phase
    /// planes) the convs it takes run on ([`amx::takes`]); the others stay on `conv_bf16`.
    pub conv_planes: Option<amx::PlaneKernel>,
    /// Run the f32 3×3 stride-1 convs that pay for it by Winograd F(2×2, 3×3) on `sgemm`
    /// ([`crate::cpu::wino`]); set by a session that optimizes, unless `KESTREL_WINOGRAD=0`.
    pub winograd: bool,
    /// With `winograd`, take F(4×4, 3×3) on the output maps where it is faster
    /// ([`crate::cpu::wino::prefers_f4`]); off under `KESTREL_WINOGRAD=f2`.
    pub winograd_f4: bool,
    /// With `winograd_f4`, run bf16 Winograd as F(4×4, 3×3) where
    /// [`crate::cpu::wino::bf16_variant`] says so (`Options::winograd_bf16_f4`, or
    /// `KESTREL_WINOGRAD=f4-bf16`); else bf16 Winograd is F(2×2, 3×3).
    pub winograd_bf16_f4: bool,
    /// The CPU family whose measured rules the plan follows where they differ
    /// ([`detect::tune`]).
    pub tune: detect::Tune,
}

impl Kernels {
    /// The kernels of `isa`, or an error naming the missing ISA.
    pub fn new(isa: Isa) -> Result<Kernels> {
        let qgemm = qgemm::kernel(isa)?;
        let simd = Simd::for_isa(isa).ok_or_else(|| detect::unsupported(isa))?;
        Ok(Kernels { isa, qgemm, simd, sgemm: sgemm::Kernel::for_isa(isa), conv_bf16: None, conv_planes: None, winograd: false, winograd_f4: false, winograd_bf16_f4: false, tune: detect::tune()? })
    }

    /// The bf16 conv kernels in use, for reports (`None` in f32).
    pub fn bf16_name(&self) -> Option<String> {
        let k = self.conv_bf16?;
        Some(match self.conv_planes {
            Some(p) => format!("{} + {}", p.name(), k.name()),
            None => k.name().to_string(),
        })
    }

    /// The kernels `KESTREL_ISA` names, or this CPU's richest.
    pub fn select() -> Result<Kernels> {
        Kernels::new(detect::selected()?)
    }
}
