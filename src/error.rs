//! The one error type of the crate. Every variant names the file, node, op, tensor or
//! shape at fault, so that the CLI can print it as a single readable line.
//!
//! User-facing errors (a bad file, argument, shape or an unsupported request) are distinct
//! from [`Error::Internal`], an invariant of kestrel's own that broke (a bug to report), and
//! from [`Error::System`], a resource the system refused.

use std::path::PathBuf;

/// Everything that can go wrong in kestrel.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be opened or read.
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A safetensors file is truncated, corrupt or holds a tensor we cannot use.
    #[error("{}: invalid safetensors file: {reason}", path.display())]
    Safetensors { path: PathBuf, reason: String },
    /// An ONNX file could not be decoded as a protobuf ModelProto.
    #[error("{}: invalid ONNX file: {reason}", path.display())]
    OnnxDecode { path: PathBuf, reason: String },
    /// An ONNX node uses an op, attribute or input form that kestrel does not support.
    #[error("ONNX node '{node}' (op {op}): {reason}")]
    OnnxUnsupported { node: String, op: String, reason: String },
    /// A tensor's declared shape and its data disagree, or it has an unusable dtype.
    #[error("tensor '{name}': {reason}")]
    BadTensor { name: String, reason: String },
    /// A weight the model needs is absent from the weight source.
    #[error("weight '{name}' is missing from {source_name}")]
    MissingWeight { name: String, source_name: String },
    /// A weight exists but has the wrong shape for the model config.
    #[error("weight '{name}': expected shape {expected:?}, found {found:?}")]
    WeightShape { name: String, expected: Vec<usize>, found: Vec<usize> },
    /// A model input has the wrong rank, channel count or spatial size.
    #[error("input '{name}': expected {expected}, got shape {got:?}")]
    InputShape { name: String, expected: String, got: Vec<usize> },
    /// A model's output does not have the shape a task needs (classifier logits, a mask).
    #[error("model output: expected {expected}, got shape {got:?}")]
    OutputShape { expected: String, got: Vec<usize> },
    /// A classifier scores a different number of classes than the labelled data has.
    #[error("the model scores {model} classes, the data has {data}")]
    ClassCount { model: usize, data: usize },
    /// A model has no output (a graph whose output list is empty).
    #[error("the model has no output")]
    NoOutput,
    /// Shape inference failed at a node.
    #[error("node '{node}' ({op}): {reason}")]
    Shape { node: String, op: &'static str, reason: String },
    /// An image file could not be decoded.
    #[error("{}: cannot decode image: {reason}", path.display())]
    Image { path: PathBuf, reason: String },
    /// A data file or folder (calibration inputs, a dataset, an input array) is unusable.
    #[error("{}: {reason}", path.display())]
    Data { path: PathBuf, reason: String },
    /// A model configuration is invalid.
    #[error("invalid model config: {0}")]
    Config(String),
    /// ONNX Runtime failed (loading the library, building a session or running it).
    #[error("ONNX Runtime: {0}")]
    Ort(String),
    /// CUDA is unusable here (no driver, no device, no NVRTC) or refused a request; NVRTC's
    /// compile log is part of the message.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// A valid request this build or backend cannot carry out.
    #[error("{what} is not supported: {hint}")]
    Unsupported { what: String, hint: String },
    /// The operation needs a cargo feature this build was compiled without.
    #[error("{what} needs kestrel built with the '{feature}' feature")]
    FeatureDisabled { feature: &'static str, what: String },
    /// A plan's buffers would exceed the memory limit (`exec::plan::memory_limit`).
    #[error("{what} {need} of activation buffers, above the memory limit of {limit} (KESTREL_MEMORY_LIMIT sets it)")]
    MemoryLimit { what: String, need: String, limit: String },
    /// The system refused a resource (threads, memory).
    #[error("{0}")]
    System(String),
    /// An internal invariant broke: a bug in kestrel, not in the input.
    #[error("internal error (please report): {0}")]
    Internal(String),
    /// A user-facing argument or option is invalid (CLI flags, variant names, tolerances,
    /// `KESTREL_ISA`).
    #[error("{0}")]
    Argument(String),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    /// Wraps an I/O error with the path it happened on.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
}
