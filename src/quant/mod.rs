//! INT8 quantization: parameters and ONNX rounding ([`params`]), range observers for
//! calibration ([`observe`]), and the graph rewrite that turns Conv and Gemm layers into
//! INT8 layers, statically (calibrated) or dynamically ([`quantize`]).

pub mod params;
pub mod observe;
pub mod quantize;

pub use observe::Method;
pub use quantize::{quantize, Mode, QuantizeOptions};
