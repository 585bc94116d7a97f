//! ONNX Runtime as the reference engine (feature `ort`), loaded at run time from
//! `ORT_DYLIB_PATH` (the `libonnxruntime.so.1.31.1` of pip `onnxruntime==1.31.1`).
//!
//! [`OrtOptimization`] is compiled without the feature too, so that command lines parse it
//! the same way in every build.

use crate::error::{Error, Result};

/// ONNX Runtime's graph optimisation level (`GraphOptimizationLevel`).
///
/// With `Disabled`, ORT runs every node of the file as written: a QDQ model's
/// QuantizeLinear/DequantizeLinear pairs and float convolutions are computed literally, which
/// is the model's exact QDQ semantics. The other levels fuse Q/DQ pairs into ORT's integer
/// kernels, whose results depend on the CPU (on AVX2 without VNNI, `vpmaddubsw` saturates).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OrtOptimization {
    Disabled,
    Basic,
    Extended,
    #[default]
    All,
}

impl OrtOptimization {
    /// Every level, least optimised first.
    pub const ALL: [OrtOptimization; 4] = [OrtOptimization::Disabled, OrtOptimization::Basic, OrtOptimization::Extended, OrtOptimization::All];

    /// The command-line name.
    pub fn name(self) -> &'static str {
        match self {
            OrtOptimization::Disabled => "disabled",
            OrtOptimization::Basic => "basic",
            OrtOptimization::Extended => "extended",
            OrtOptimization::All => "all",
        }
    }

    /// Parses a command-line name.
    pub fn parse(s: &str) -> Result<Self> {
        Self::ALL
            .into_iter()
            .find(|l| l.name() == s.trim())
            .ok_or_else(|| Error::Argument(format!("--ort-optimization {s}: use disabled, basic, extended or all")))
    }
}

impl std::str::FromStr for OrtOptimization {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        Self::parse(s)
    }
}

impl std::fmt::Display for OrtOptimization {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

pub mod profile;
#[cfg(feature = "ort")]
mod session;
#[cfg(feature = "ort")]
pub use session::*;
