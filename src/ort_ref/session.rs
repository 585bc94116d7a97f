//! ONNX Runtime sessions: the library loaded once per process, one session per model.

use std::path::Path;
use std::sync::OnceLock;

use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session as OrtSession;
use ort::value::TensorRef;

use super::OrtOptimization;
use crate::error::{Error, Result};
use crate::tensor::Tensor;

static ENV: OnceLock<std::result::Result<ort::environment::Environment, String>> = OnceLock::new();

fn env() -> Result<&'static ort::environment::Environment> {
    ENV.get_or_init(|| {
        let path = std::env::var("ORT_DYLIB_PATH")
            .map_err(|_| "ORT_DYLIB_PATH is not set; point it at libonnxruntime.so.1.31.1 (see README)".to_string())?;
        if !Path::new(&path).exists() {
            return Err(format!("ORT_DYLIB_PATH={path} does not exist"));
        }
        let env = ort::init_from(&path).map_err(|e| format!("loading {path}: {e}"))?.build().map_err(|e| e.to_string())?;
        // ORT's own logger writes warnings (coloured, several lines) to stderr; kestrel reports
        // ORT's failures itself, as one line, from the errors the API returns.
        env.set_log_level(ort::logging::LogLevel::Fatal);
        Ok(env)
    })
    .as_ref()
    .map_err(|e| Error::Ort(e.clone()))
}

/// Whether ONNX Runtime can be loaded in this process.
pub fn available() -> Result<()> {
    env().map(|_| ())
}

/// The loaded ONNX Runtime version, read from the library's file name (`…so.1.31.1`).
pub fn version() -> Result<String> {
    env()?;
    let path = std::env::var("ORT_DYLIB_PATH").unwrap_or_default();
    Ok(path.rsplit_once(".so.").map_or_else(|| "unknown".to_string(), |(_, v)| v.to_string()))
}

/// How an [`OrtModel`] session is built.
#[derive(Clone, Copy, Debug)]
pub struct OrtOptions {
    /// Intra-op threads (0: ORT's default).
    pub threads: usize,
    pub optimization: OrtOptimization,
    /// Whether idle intra-op threads spin. Benches that alternate engines turn spinning off:
    /// ORT's workers otherwise keep the cores busy for a while after each run and slow down
    /// whichever engine runs next.
    pub spinning: bool,
}

impl OrtOptions {
    /// `threads` threads, every optimisation, spinning workers (ORT's own defaults).
    pub fn threads(threads: usize) -> Self {
        OrtOptions { threads, optimization: OrtOptimization::All, spinning: true }
    }
}

impl From<OrtOptimization> for GraphOptimizationLevel {
    fn from(l: OrtOptimization) -> Self {
        match l {
            OrtOptimization::Disabled => GraphOptimizationLevel::Disable,
            OrtOptimization::Basic => GraphOptimizationLevel::Level1,
            OrtOptimization::Extended => GraphOptimizationLevel::Level2,
            OrtOptimization::All => GraphOptimizationLevel::All,
        }
    }
}

/// One ORT session over an ONNX model.
pub struct OrtModel {
    session: OrtSession,
    input: String,
    outputs: Vec<String>,
}

fn oe<E: std::fmt::Display>(e: E) -> Error {
    Error::Ort(e.to_string())
}

impl OrtModel {
    /// A session over `bytes` with `threads` intra-op threads (0: ORT's default) and every
    /// graph optimisation.
    pub fn from_bytes(bytes: &[u8], threads: usize) -> Result<Self> {
        Self::with_options(bytes, &OrtOptions::threads(threads))
    }

    /// A session over `bytes` built as `opts` says.
    pub fn with_options(bytes: &[u8], opts: &OrtOptions) -> Result<Self> {
        Self::build(bytes, opts, None)
    }

    /// [`OrtModel::with_options`], recording ONNX Runtime's profile of every run (each node's
    /// kernel time) for [`OrtModel::node_times`]. The profile goes to a file in the temporary
    /// directory, removed when it is read.
    pub fn profiled(bytes: &[u8], opts: &OrtOptions) -> Result<Self> {
        static NEXT: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let prefix = std::env::temp_dir().join(format!("kestrel-ort-profile-{}-{n}", std::process::id()));
        Self::build(bytes, opts, Some(&prefix))
    }

    fn build(bytes: &[u8], opts: &OrtOptions, profile: Option<&Path>) -> Result<Self> {
        if opts.threads > crate::exec::MAX_THREADS {
            return Err(Error::Argument(format!("{} ONNX Runtime threads: at most {} (0: its default)", opts.threads, crate::exec::MAX_THREADS)));
        }
        let env = env()?;
        let mut b = OrtSession::builder(env)
            .map_err(oe)?
            .with_optimization_level(opts.optimization.into())
            .map_err(oe)?
            .with_inter_threads(1)
            .map_err(oe)?
            .with_intra_op_spinning(opts.spinning)
            .map_err(oe)?;
        if opts.threads > 0 {
            b = b.with_intra_threads(opts.threads).map_err(oe)?;
        }
        if let Some(prefix) = profile {
            b = b.with_profiling(prefix).map_err(oe)?;
        }
        let session = b.commit_from_memory(bytes).map_err(oe)?;
        let input = session.inputs().first().map(|i| i.name().to_string()).ok_or_else(|| Error::Ort("model has no input".into()))?;
        let outputs = session.outputs().iter().map(|o| o.name().to_string()).collect();
        Ok(OrtModel { session, input, outputs })
    }

    /// A session over an ONNX file.
    pub fn from_file(path: &Path, threads: usize) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(&bytes, threads)
    }

    /// Ends the profile of a [`OrtModel::profiled`] session and returns each node run it
    /// recorded, in order: ORT's name for the node (after its graph optimisations: a fused
    /// node takes one of its nodes' names, ORT's NCHWc convs add `_nchwc`) and its kernel time
    /// in ms. Profiling stops here.
    pub fn node_times(&mut self) -> Result<Vec<(String, f64)>> {
        let file = self.session.end_profiling().map_err(oe)?;
        let path = Path::new(&file);
        let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e));
        let _ = std::fs::remove_file(path);
        let events: serde_json::Value = serde_json::from_str(&text?).map_err(|e| Error::Ort(format!("ONNX Runtime's profile {file}: {e}")))?;
        let events = events.as_array().ok_or_else(|| Error::Ort(format!("ONNX Runtime's profile {file}: not a list of events")))?;
        Ok(events
            .iter()
            .filter(|e| e.get("cat").and_then(|c| c.as_str()) == Some("Node"))
            .filter_map(|e| {
                let name = e.get("name")?.as_str()?.strip_suffix("_kernel_time")?;
                Some((name.to_string(), e.get("dur")?.as_f64()? / 1e3))
            })
            .collect())
    }

    /// Output names, in graph order.
    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    /// Runs on one f32 input and returns every output by name.
    pub fn run(&mut self, x: &Tensor) -> Result<Vec<(String, Tensor)>> {
        let shape: Vec<i64> = x.shape().iter().map(|&d| d as i64).collect();
        let input = TensorRef::from_array_view((shape, x.data())).map_err(oe)?;
        let outs = self.session.run(ort::inputs![self.input.as_str() => input]).map_err(oe)?;
        let mut result = Vec::with_capacity(self.outputs.len());
        for name in &self.outputs {
            let (shape, data) = outs[name.as_str()].try_extract_tensor::<f32>().map_err(oe)?;
            let shape: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
            result.push((name.clone(), Tensor::new(shape, data.to_vec())?));
        }
        Ok(result)
    }
}
