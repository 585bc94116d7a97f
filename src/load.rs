//! Resolving a MODEL argument: a built-in name, an `.onnx` file, or a `.safetensors` file
//! whose architecture comes from a JSON config (`--config`, `MODEL.json` beside it, the
//! file's own `kestrel_config` metadata) or is recognised from its state-dict names.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::graph::Graph;
use crate::models::{weights::SafetensorsWeights, ModelConfig, ResNetConfig, SeededWeights, UNetConfig, UpMode};
use crate::onnx::ImportOptions;

/// What a model produces.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Task {
    /// `[N, classes]` logits.
    Classify,
    /// `[N, C, H, W]` logits.
    Segment,
    Other,
}

/// A model ready to run, with where it came from.
pub struct LoadedModel {
    pub name: String,
    pub graph: Graph,
    pub task: Task,
    /// The native config, for built-in and safetensors models.
    pub config: Option<ModelConfig>,
    /// The source file, for file models.
    pub path: Option<PathBuf>,
}

impl LoadedModel {
    /// The model as ONNX, as a reference engine should run it: the very file kestrel imported
    /// (external data inlined), or kestrel's own export of a native model.
    #[cfg(feature = "onnx")]
    pub fn onnx_model(&self) -> Result<crate::onnx::pb::ModelProto> {
        match &self.path {
            Some(p) if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("onnx")) => {
                let mut m = crate::onnx::proto::read(p)?;
                let dir = p.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
                crate::onnx::proto::inline_external(&mut m, dir)?;
                Ok(m)
            }
            _ => crate::onnx::export::to_model(&self.graph),
        }
    }
}

/// How to load a model.
#[derive(Clone, Debug, Default)]
pub struct LoadOptions {
    /// Seed for built-in models' synthetic weights.
    pub seed: u64,
    /// A JSON [`ModelConfig`] for safetensors files.
    pub config: Option<PathBuf>,
    /// Concrete input shape: an ONNX model's symbolic dims, or a native model's size in place
    /// of its config's (a UNet at a tile's size).
    pub input_shape: Option<Vec<usize>>,
}

/// Loads `spec` (built-in name or file path).
pub fn load_model(spec: &str, opts: &LoadOptions) -> Result<LoadedModel> {
    let path = Path::new(spec);
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    let (graph, config, file) = match ext.as_str() {
        "onnx" => {
            let g = crate::onnx::load(path, &ImportOptions { input_shape: opts.input_shape.clone(), base_dir: None })?;
            (g, None, Some(path.to_path_buf()))
        }
        "safetensors" => {
            let mut w = SafetensorsWeights::load(path)?;
            let cfg = safetensors_config(path, opts.config.as_deref(), &w)?;
            (cfg.build(&mut w)?, Some(cfg), Some(path.to_path_buf()))
        }
        _ if path.exists() => {
            return Err(Error::Data { path: path.to_path_buf(), reason: "unknown model format (expected .onnx or .safetensors)".into() });
        }
        _ if spec.contains('/') || spec.contains('.') => {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
        }
        _ => {
            let cfg = ModelConfig::builtin(spec)?;
            (cfg.build(&mut SeededWeights { seed: opts.seed })?, Some(cfg), None)
        }
    };
    let mut graph = graph;
    if let (Some(s), false) = (&opts.input_shape, ext == "onnx") {
        set_input_shape(&mut graph, s)?;
    }
    let task = infer_task(&graph);
    let name = path.file_stem().and_then(|s| s.to_str()).unwrap_or(spec).to_string();
    Ok(LoadedModel { name, graph, task, config, path: file })
}

/// Gives a native model (safetensors or built-in, whose layers take any spatial size their
/// pooling allows) the input shape `shape` in place of its config's: same rank and channels,
/// and a shape every layer accepts.
fn set_input_shape(g: &mut Graph, shape: &[usize]) -> Result<()> {
    let declared = g.input_shape(1)?;
    let bad = |reason: String| Error::Config(format!("--input-shape {shape:?}: {reason}"));
    if shape.len() != declared.len() || shape.get(1) != declared.get(1) || shape.contains(&0) {
        return Err(bad(format!("needs {} dims, {} channels and no 0 (the model's own: {declared:?})", declared.len(), declared.get(1).copied().unwrap_or(0))));
    }
    crate::graph::shape::infer(g, &[shape.to_vec()]).map_err(|e| bad(format!("the model's layers refuse it: {e}")))?;
    if let Some(i) = g.inputs.first_mut() {
        i.shape = shape.to_vec();
    }
    Ok(())
}

/// Classifier if the output is 2-D, segmenter if 4-D.
pub fn infer_task(g: &Graph) -> Task {
    let Ok(shape) = g.input_shape(1) else { return Task::Other };
    match crate::graph::shape::infer(g, &[shape]) {
        Ok(s) => match g.outputs.first().map(|&o| s[o].len()) {
            Some(2) => Task::Classify,
            Some(4) => Task::Segment,
            _ => Task::Other,
        },
        Err(_) => Task::Other,
    }
}

fn safetensors_config(path: &Path, explicit: Option<&Path>, w: &SafetensorsWeights) -> Result<ModelConfig> {
    let read_json = |p: &Path| -> Result<ModelConfig> {
        let text = std::fs::read_to_string(p).map_err(|e| Error::io(p, e))?;
        serde_json::from_str(&text).map_err(|e| Error::Config(format!("{}: {e}", p.display())))
    };
    if let Some(p) = explicit {
        return read_json(p);
    }
    if let Some(j) = &w.config_json {
        return serde_json::from_str(j).map_err(|e| Error::Config(format!("{}: kestrel_config metadata: {e}", path.display())));
    }
    let side = path.with_extension("json");
    if side.exists() {
        return read_json(&side);
    }
    recognise(w).ok_or_else(|| {
        Error::Config(format!(
            "{}: cannot tell the architecture from its tensor names; pass --config CONFIG.json",
            path.display()
        ))
    })
}

/// Recognises a torchvision ResNet or a milesial-style UNet from its state-dict names.
pub fn recognise(w: &SafetensorsWeights) -> Option<ModelConfig> {
    let dim = |n: &str, i: usize| w.shape(n).and_then(|s| s.get(i).copied());
    let has = |n: &str| w.contains(n);
    let count = |prefix: &str| (0..).take_while(|i| has(&format!("{prefix}.{i}.bn1.weight"))).count();
    if has("conv1.weight") && has("fc.weight") && has("layer1.0.conv1.weight") {
        let blocks = [count("layer1"), count("layer2"), count("layer3"), count("layer4")];
        let bottleneck = has("layer1.0.conv3.weight");
        let depth = match (blocks, bottleneck) {
            ([2, 2, 2, 2], false) => 18,
            ([3, 4, 6, 3], false) => 34,
            ([3, 4, 6, 3], true) => 50,
            ([3, 4, 23, 3], true) => 101,
            ([3, 8, 36, 3], true) => 152,
            _ => return None,
        };
        return Some(ModelConfig::ResNet(ResNetConfig {
            depth,
            num_classes: dim("fc.weight", 0)?,
            in_channels: dim("conv1.weight", 1)?,
            base_width: dim("conv1.weight", 0)?,
            ..ResNetConfig::default()
        }));
    }
    if has("inc.double_conv.0.weight") && has("outc.conv.weight") {
        let depth = (1..).take_while(|i| has(&format!("down{i}.maxpool_conv.1.double_conv.0.weight"))).count();
        let batch_norm = has("inc.double_conv.1.running_mean");
        let up = if has("up1.up.weight") { UpMode::Transpose } else { UpMode::Bilinear };
        return Some(ModelConfig::UNet(UNetConfig {
            depth,
            batch_norm,
            up,
            in_channels: dim("inc.double_conv.0.weight", 1)?,
            out_channels: dim("outc.conv.weight", 0)?,
            base_width: dim("inc.double_conv.0.weight", 0)?,
            image_size: (256usize).div_ceil(1 << depth) * (1 << depth),
            ..UNetConfig::default()
        }));
    }
    None
}
