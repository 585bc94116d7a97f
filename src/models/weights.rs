//! Where model weights come from: a safetensors file with PyTorch state-dict names, or a
//! seeded generator (He init) for built-in defaults and tests.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::rng::Rng;
use crate::tensor::{checked_numel, Tensor};

/// What a parameter is, so the seeded source can initialise it sensibly.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Param {
    /// Conv or Linear weight with this fan-in.
    Weight { fan_in: usize },
    /// Conv or Linear bias with this fan-in.
    Bias { fan_in: usize },
    /// BatchNorm gamma; `residual_end` marks the last BN of a residual branch.
    BnGamma { residual_end: bool },
    BnBeta,
    BnMean,
    BnVar,
}

/// A source of named f32 weights.
pub trait WeightSource {
    /// The tensor called `name`, which must have `shape`.
    fn get(&mut self, name: &str, shape: &[usize], kind: Param) -> Result<Tensor>;
    /// Whether BatchNorm statistics should be calibrated after building (seeded weights).
    fn needs_bn_calibration(&self) -> bool {
        false
    }
}

/// Seeded synthetic weights: He-normal convs, PyTorch-style uniform Linear, BatchNorm
/// gammas near 1 (small at the end of residual branches so depth does not blow up).
pub struct SeededWeights {
    pub seed: u64,
}

impl WeightSource for SeededWeights {
    fn get(&mut self, name: &str, shape: &[usize], kind: Param) -> Result<Tensor> {
        let mut rng = Rng::for_name(self.seed, name);
        let n: usize = shape.iter().product();
        let data: Vec<f32> = match kind {
            Param::Weight { fan_in } if shape.len() == 2 => {
                let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                (0..n).map(|_| rng.range(-b, b)).collect()
            }
            Param::Weight { fan_in } => {
                let std = (2.0 / fan_in.max(1) as f32).sqrt();
                (0..n).map(|_| rng.normal() * std).collect()
            }
            Param::Bias { fan_in } => {
                let b = 1.0 / (fan_in.max(1) as f32).sqrt();
                (0..n).map(|_| rng.range(-b, b)).collect()
            }
            Param::BnGamma { residual_end: false } => (0..n).map(|_| rng.range(0.7, 1.3)).collect(),
            Param::BnGamma { residual_end: true } => (0..n).map(|_| rng.range(0.2, 0.5)).collect(),
            Param::BnBeta => (0..n).map(|_| rng.range(-0.2, 0.2)).collect(),
            Param::BnMean => vec![0.0; n],
            Param::BnVar => vec![1.0; n],
        };
        Tensor::new(shape.to_vec(), data)
    }

    fn needs_bn_calibration(&self) -> bool {
        true
    }
}

/// Weights read from a safetensors file. f32, f16, bf16 and f64 tensors are converted to f32.
pub struct SafetensorsWeights {
    path: PathBuf,
    /// The `kestrel_config` metadata entry, when the file was written by kestrel.
    pub config_json: Option<String>,
    tensors: HashMap<String, (Vec<usize>, Vec<f32>)>,
}

impl SafetensorsWeights {
    /// Reads and validates the whole file (header offsets are checked against its length).
    pub fn load(path: &Path) -> Result<Self> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Self::from_bytes(path, &bytes)
    }

    /// Parses safetensors bytes; `path` is used in messages.
    pub fn from_bytes(path: &Path, bytes: &[u8]) -> Result<Self> {
        let bad = |reason: String| Error::Safetensors { path: path.to_path_buf(), reason };
        let st = safetensors::SafeTensors::deserialize(bytes).map_err(|e| bad(e.to_string()))?;
        let config_json = safetensors::SafeTensors::read_metadata(bytes)
            .ok()
            .and_then(|(_, m)| m.metadata().as_ref().and_then(|m| m.get("kestrel_config").cloned()));
        let mut tensors = HashMap::new();
        for (name, view) in st.tensors() {
            let shape = view.shape().to_vec();
            let n = checked_numel(&shape).ok_or_else(|| bad(format!("tensor '{name}': shape {shape:?} overflows")))?;
            let raw = view.data();
            use safetensors::Dtype;
            let width = match view.dtype() {
                Dtype::F32 => 4,
                Dtype::F16 | Dtype::BF16 => 2,
                Dtype::F64 => 8,
                // Integer buffers such as `num_batches_tracked` carry no weights we use.
                Dtype::I64 | Dtype::I32 | Dtype::U8 | Dtype::I8 | Dtype::BOOL => continue,
                other => return Err(bad(format!("tensor '{name}': unsupported dtype {other:?}"))),
            };
            if raw.len() != n * width {
                return Err(bad(format!("tensor '{name}': shape {shape:?} needs {} bytes, has {}", n * width, raw.len())));
            }
            let data: Vec<f32> = match view.dtype() {
                Dtype::F32 => raw.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect(),
                Dtype::F16 => raw.chunks_exact(2).map(|b| half::f16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                Dtype::BF16 => raw.chunks_exact(2).map(|b| half::bf16::from_le_bytes([b[0], b[1]]).to_f32()).collect(),
                _ => raw.chunks_exact(8).map(|b| f64::from_le_bytes(b.try_into().unwrap_or([0; 8])) as f32).collect(),
            };
            tensors.insert(name.to_string(), (shape, data));
        }
        Ok(SafetensorsWeights { path: path.to_path_buf(), config_json, tensors })
    }

    /// Names of all f32-convertible tensors in the file.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tensors.keys().map(String::as_str)
    }

    /// The shape of `name`, if present.
    pub fn shape(&self, name: &str) -> Option<&[usize]> {
        self.tensors.get(name).map(|(s, _)| s.as_slice())
    }

    /// Whether the file holds `name`.
    pub fn contains(&self, name: &str) -> bool {
        self.tensors.contains_key(name)
    }
}

impl WeightSource for SafetensorsWeights {
    fn get(&mut self, name: &str, shape: &[usize], _kind: Param) -> Result<Tensor> {
        let (found, data) = self.tensors.remove(name).ok_or_else(|| Error::MissingWeight {
            name: name.to_string(),
            source_name: self.path.display().to_string(),
        })?;
        if found != shape {
            return Err(Error::WeightShape { name: name.to_string(), expected: shape.to_vec(), found });
        }
        Tensor::new(found, data)
    }
}
