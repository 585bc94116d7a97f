//! INT8 quantization: range observers for calibration ([`observe`]), and the graph rewrite
//! that turns Conv and Gemm layers into INT8 layers, statically (calibrated) or dynamically
//! ([`quantize()`]). The parameters and ONNX rounding are the leaf [`crate::qparams`].

pub mod observe;
pub mod quantize;

pub use observe::Method;
pub use quantize::{auto_weight_bits, quantize, Mode, QuantizeOptions};
