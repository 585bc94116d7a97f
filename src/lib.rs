//! kestrel: a pure-Rust inference engine for convolutional networks.
//!
//! - [`graph`]: the IR (a closed [`graph::Op`] enum), shape inference and passes;
//! - [`models`]: native ResNet and UNet builders over safetensors or seeded weights;
//! - [`onnx`]: ONNX import and export (feature `onnx`);
//! - [`exec`]: the planner and executor, over the kernels in [`cpu`];
//! - [`parity`]: error metrics and the comparison against ONNX Runtime (feature `ort`).
//!
//! The tools of the `kestrel` CLI (reports, benches, evaluation, image and slide I/O, datasets)
//! are the default `app` feature's; without default features the crate is the engine alone,
//! for embedding (README, "Embedding").

// The kernel modules' docs name the private constants and helpers that set their layouts and
// thresholds, for whoever tunes them (`cargo doc --document-private-items` renders the links);
// every other link must resolve, which the test command checks (`cargo doc` with `-D warnings`).
#![allow(rustdoc::private_intra_doc_links)]

#[cfg(feature = "app")]
pub mod bench;
pub mod cache;
pub mod compare;
pub mod convert;
#[cfg(feature = "app")]
pub mod dataset;
pub mod cpu;
pub mod detmath;
#[cfg(feature = "cuda")]
pub mod cuda;
pub mod engine;
pub mod error;
#[cfg(feature = "app")]
pub mod eval;
#[cfg(feature = "app")]
pub mod explain;
pub mod exec;
pub mod graph;
pub mod metrics;
#[cfg(feature = "app")]
pub mod imageio;
pub mod load;
pub mod models;
pub mod onnx;
pub mod parity;
pub mod postprocess;
pub mod prune;
#[cfg(feature = "app")]
pub mod prune_report;
pub mod qparams;
pub mod quant;
#[cfg(feature = "app")]
pub mod reference;
#[cfg(feature = "app")]
pub mod report;
pub mod rng;
#[cfg(feature = "app")]
pub mod slide;
pub mod stats;
pub mod tensor;
#[cfg(feature = "app")]
pub mod tile;

pub use error::{Error, Result};
pub use exec::{Options, Session};
pub use graph::Graph;
pub use load::{load_model, LoadOptions, LoadedModel, Task};
pub use tensor::Tensor;
pub mod ort_ref;
