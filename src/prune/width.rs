//! Channel counts the kernels run in whole blocks, for `--round-to`.
//!
//! A pruned group keeps a number of channels rounded *up* to a multiple: a fixed one
//! (`--round-to N`), or the one this CPU's kernels step at (`auto`). The steps were measured
//! by `examples/width_steps.rs` (latency of a 3×3 conv against its output width, f32 and INT8,
//! on each INT8 path): see BENCHMARKS.md, "Pruning: widths the kernels run in whole blocks".

use crate::cpu::detect::Isa;
use crate::error::{Error, Result};

/// How kept channel counts are rounded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum RoundTo {
    /// Up to a multiple of this (1: no rounding).
    Multiple(usize),
    /// Up to the step of this CPU's kernels ([`auto_multiple`]).
    Auto,
}

impl RoundTo {
    /// Parses `N` or `auto`.
    pub fn parse(s: &str) -> Result<RoundTo> {
        match s.trim() {
            "auto" => Ok(RoundTo::Auto),
            t => match t.parse::<usize>() {
                Ok(n) if n >= 1 => Ok(RoundTo::Multiple(n)),
                _ => Err(Error::Argument(format!("--round-to {s}: a positive channel count or auto"))),
            },
        }
    }

    /// The multiple on `isa`.
    pub fn multiple(self, isa: Isa) -> usize {
        match self {
            RoundTo::Multiple(n) => n.max(1),
            RoundTo::Auto => auto_multiple(isa),
        }
    }

    /// `keep` rounded up to the multiple (callers cap it at the group's width).
    pub fn round(self, keep: usize, isa: Isa) -> usize {
        keep.div_ceil(self.multiple(isa)) * self.multiple(isa)
    }
}

/// The channel step at which both the f32 and the INT8 convs of `isa` run whole blocks.
///
/// Measured with `examples/width_steps` (BENCHMARKS.md, "Widths the kernels run in whole
/// blocks"): kestrel's FP32 convs step every 8 output channels on AVX-512 (the 8 × 48 tile's
/// rows) and every 6 on AVX2 + FMA (6 × 16); the INT8 VNNI conv every 8 (its 8-row
/// micro-kernel); the AVX2 and scalar INT8 kernels every 2 and every channel, but their weights
/// are packed in blocks of 8 rows. Hence 8 on AVX-512 VNNI, lcm(6, 8) = 24 on AVX2, and 8 on
/// the scalar ISA (whose FP32 convs run on the `gemm` crate, not measured in steps).
pub fn auto_multiple(isa: Isa) -> usize {
    match isa {
        Isa::Avx512Vnni => 8,
        Isa::Avx2 => 24,
        Isa::Scalar => 8,
    }
}
