//! kestrel: a pure-Rust inference engine for convolutional networks.
//!
//! - [`graph`]: the IR (a closed [`graph::Op`] enum), shape inference and passes;
//! - [`models`]: native ResNet and UNet builders over safetensors or seeded weights;
//! - [`onnx`]: ONNX import and export (feature `onnx`);
//! - [`exec`]: the planner and executor, over the kernels in [`cpu`];
//! - [`parity`]: error metrics and the comparison against ONNX Runtime (feature `ort`).

pub mod bench;
pub mod cache;
pub mod compare;
pub mod convert;
pub mod dataset;
pub mod cpu;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod engine;
pub mod error;
pub mod eval;
pub mod explain;
pub mod exec;
pub mod graph;
pub mod metrics;
pub mod imageio;
pub mod load;
pub mod models;
pub mod onnx;
pub mod parity;
pub mod postprocess;
pub mod prune;
pub mod prune_report;
pub mod qparams;
pub mod quant;
pub mod reference;
pub mod report;
pub mod rng;
pub mod slide;
pub mod stats;
pub mod tensor;
pub mod tile;

pub use error::{Error, Result};
pub use exec::{Options, Session};
pub use graph::Graph;
pub use load::{load_model, LoadOptions, LoadedModel, Task};
pub use tensor::Tensor;
pub mod ort_ref;
