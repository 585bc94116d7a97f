//! ONNX interop through candle-onnx's protobuf types (feature `onnx`).
//!
//! - `import`: ModelProto → [`Graph`], folding the shape arithmetic
//!   that `torch.onnx.export` writes (Shape/Gather/Unsqueeze/Concat → Reshape).
//! - `export`: Graph → ModelProto at IR version 8, opset 17, f32.
//!
//! Without the feature, the same functions answer [`Error::FeatureDisabled`](crate::error::Error::FeatureDisabled).

#[cfg(feature = "onnx")]
pub mod export;
#[cfg(feature = "onnx")]
pub mod import;
#[cfg(feature = "onnx")]
pub mod proto;

#[cfg(feature = "onnx")]
pub use candle_onnx::onnx as pb;

use std::path::Path;

use crate::error::Result;
use crate::graph::Graph;

/// Options for [`load`].
#[derive(Clone, Debug, Default)]
pub struct ImportOptions {
    /// Concrete input shape for models whose spatial dims are symbolic.
    pub input_shape: Option<Vec<usize>>,
    /// Directory that external tensor data is read from (the model file's directory).
    pub base_dir: Option<std::path::PathBuf>,
}

/// Reads an ONNX file into a graph.
pub fn load(path: &Path, opts: &ImportOptions) -> Result<Graph> {
    #[cfg(feature = "onnx")]
    {
        let model = proto::read(path)?;
        let mut opts = opts.clone();
        if opts.base_dir.is_none() {
            opts.base_dir = Some(path.parent().map_or_else(|| ".".into(), |p| if p.as_os_str().is_empty() { ".".into() } else { p.to_path_buf() }));
        }
        import::import(&model, &opts)
    }
    #[cfg(not(feature = "onnx"))]
    {
        let _ = opts;
        Err(crate::error::Error::FeatureDisabled { feature: "onnx", what: format!("reading {}", path.display()) })
    }
}

/// Writes a graph as an ONNX file.
pub fn save(g: &Graph, path: &Path) -> Result<()> {
    #[cfg(feature = "onnx")]
    {
        let bytes = export::to_bytes(g)?;
        std::fs::write(path, bytes).map_err(|e| crate::error::Error::io(path, e))
    }
    #[cfg(not(feature = "onnx"))]
    {
        let _ = g;
        Err(crate::error::Error::FeatureDisabled { feature: "onnx", what: format!("writing {}", path.display()) })
    }
}
