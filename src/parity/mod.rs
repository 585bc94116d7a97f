//! Numeric parity of kestrel against ONNX Runtime (feature `ort`): whole outputs and layer by
//! layer, for float models against ORT and for quantized models against their exact QDQ
//! semantics (`with_ort`, with the feature). The metrics and tolerances are [`crate::compare`]'s.

pub use crate::compare::{compare, Metrics, Tolerance, QUANTIZED_COSINE, QUANTIZED_REL_L2};

#[cfg(feature = "ort")]
mod with_ort;
#[cfg(feature = "ort")]
pub use with_ort::*;
