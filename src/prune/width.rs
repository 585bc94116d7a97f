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

/// The kernels `auto` rounds for: this CPU's ISA, and whether the model is pruned for INT8
/// on AMX tiles (`kestrel prune --precision int8` on a CPU with AMX-INT8).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Steps {
    pub isa: Isa,
    pub amx_int8: bool,
}

impl Steps {
    /// This CPU's kernels (the ISA sessions select), for INT8 models when `int8`.
    pub fn detect(int8: bool) -> Result<Steps> {
        let isa = crate::cpu::detect::selected()?;
        let amx_int8 = int8 && matches!(crate::cpu::kernels::Kernels::new(isa)?.qgemm, crate::cpu::qgemm::Kernel::Amx(_));
        Ok(Steps { isa, amx_int8 })
    }
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

    /// The multiple for a group of `width` channels.
    pub fn multiple(self, width: usize, steps: Steps) -> usize {
        match self {
            RoundTo::Multiple(n) => n.max(1),
            RoundTo::Auto => auto_multiple(steps, width),
        }
    }

    /// How widths are rounded, in words, for reports.
    pub fn describe(self, steps: Steps) -> String {
        match self {
            RoundTo::Multiple(1) => "not rounded".into(),
            RoundTo::Multiple(n) => format!("rounded to multiples of {n}"),
            RoundTo::Auto if steps.amx_int8 && steps.isa == Isa::Avx512Vnni => {
                format!("rounded to multiples of {AMX_K_STEP} (groups of {} channels or more) or 8 (auto: INT8 on AMX tiles)", crate::cpu::qgemm::AMX_MIN_ROWS)
            }
            RoundTo::Auto => format!("rounded to multiples of {} (auto: {})", auto_multiple(steps, usize::MAX), steps.isa.name()),
        }
    }

    /// `keep` of a group's `width` channels rounded up to the multiple (callers cap it at the
    /// width).
    pub fn round(self, keep: usize, width: usize, steps: Steps) -> usize {
        let m = self.multiple(width, steps);
        keep.div_ceil(m) * m
    }
}

/// The channel step at which the convs `steps` names run whole blocks, for a group of `width`
/// channels.
///
/// Measured with `examples/width_steps` (BENCHMARKS.md, "Widths the kernels run in whole
/// blocks"): kestrel's FP32 convs step every 8 output channels on AVX-512 (the 8 × 48 tile's
/// rows) and every 6 on AVX2 + FMA (6 × 16); the INT8 VNNI conv every 8 (its 8-row
/// micro-kernel); the AVX2 and scalar INT8 kernels every 2 and every channel, but their weights
/// are packed in blocks of 8 rows. Hence 8 on AVX-512 VNNI, lcm(6, 8) = 24 on AVX2, and 8 on
/// the scalar ISA (whose FP32 convs run on the `gemm` crate, not measured in steps).
///
/// On AMX tiles (`steps.amx_int8`) the INT8 conv steps every 32 output channels (two 16-row
/// tiles per step) and every 64 bytes of K (one tile of k, zero past K): a 1×1 conv reading
/// 40 channels costs what one reading 64 does (`width_steps` with `SWEEP=in`, through a noisy
/// host's ±15 %). So a group of at least 64 channels rounds to 64 there (a 64-channel group is
/// then kept whole: removing some of its channels would count toward a MAC target without
/// saving INT8 time); a narrower one (the trained models' 8–32-channel groups) to 8 as on
/// VNNI, so that it can still be pruned. ResNet-50 pruned to 50 % of its MACs (`--global
/// --importance l2`), family 6 model 207, 2 threads, before and after alternating (run pairs'
/// p25–p75 of after / before): INT8 0.54–0.59 with 64, 0.61–0.76 with 8, 0.61–0.65 with a step
/// of a quarter of each group's width up to 64 (layer1's 64-channel groups by 16), 0.58–0.61
/// with 32 for groups read only by 3×3 convs.
pub fn auto_multiple(steps: Steps, width: usize) -> usize {
    match steps.isa {
        // Narrower groups' layers run on VNNI, not on the tiles (`qgemm::AMX_MIN_ROWS`).
        Isa::Avx512Vnni if steps.amx_int8 && width >= crate::cpu::qgemm::AMX_MIN_ROWS => AMX_K_STEP,
        Isa::Avx512Vnni => 8,
        Isa::Avx2 => 24,
        Isa::Scalar => 8,
    }
}

/// Bytes of K in one AMX-INT8 tile step (`qgemm::amx`): a group's channel step on AMX.
const AMX_K_STEP: usize = 64;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amx_int8_rounds_wide_groups_to_whole_tiles() {
        let amx = Steps { isa: Isa::Avx512Vnni, amx_int8: true };
        let vnni = Steps { isa: Isa::Avx512Vnni, amx_int8: false };
        assert_eq!([8, 32, 63, 64, 256, 2048].map(|w| auto_multiple(amx, w)), [8, 8, 8, 64, 64, 64]);
        assert_eq!([8, 64, 2048].map(|w| auto_multiple(vnni, w)), [8, 8, 8]);
        assert_eq!(auto_multiple(Steps { isa: Isa::Avx2, amx_int8: true }, 256), 24);
        // A 64-channel group keeps all of them; 40 of 256 round to 64, 200 of 256 to 256.
        assert_eq!([(40, 64), (40, 256), (200, 256), (3, 32)].map(|(k, w)| RoundTo::Auto.round(k, w, amx)), [64, 64, 256, 8]);
        assert_eq!(RoundTo::Multiple(16).round(17, 64, amx), 32);
        assert!(RoundTo::Auto.describe(amx).contains("AMX"));
        assert!(RoundTo::Auto.describe(vnni).contains("multiples of 8"));
    }
}
