//! Writing a graph's weights back out as a safetensors state dict with PyTorch names
//! (`{node}.weight`, `{node}.bias`, `{node}.running_mean`, …), plus the model config in the
//! file's metadata under `kestrel_config` so that it loads without a sidecar.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::models::ModelConfig;

/// The state dict of an unoptimised graph: name → (shape, values).
pub fn state_dict(g: &Graph) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    let mut out = Vec::new();
    for n in &g.nodes {
        let name = &n.name;
        let mut put = |suffix: &str, shape: Vec<usize>, data: Vec<f32>| out.push((format!("{name}.{suffix}"), shape, data));
        match &n.op {
            Op::Conv(c) => {
                put("weight", c.weight.shape().to_vec(), c.weight.data().to_vec());
                if let Some(b) = &c.bias {
                    put("bias", vec![b.len()], b.clone());
                }
            }
            Op::ConvTranspose(c) => {
                put("weight", c.weight.shape().to_vec(), c.weight.data().to_vec());
                if let Some(b) = &c.bias {
                    put("bias", vec![b.len()], b.clone());
                }
            }
            Op::BatchNorm(b) => {
                let c = b.gamma.len();
                put("weight", vec![c], b.gamma.clone());
                put("bias", vec![c], b.beta.clone());
                put("running_mean", vec![c], b.mean.clone());
                put("running_var", vec![c], b.var.clone());
            }
            Op::Linear(l) => {
                put("weight", l.weight.shape().to_vec(), l.weight.data().to_vec());
                if let Some(b) = &l.bias {
                    put("bias", vec![b.len()], b.clone());
                }
            }
            _ => {}
        }
    }
    out
}

/// Writes `g`'s weights as f32 safetensors, with `config` in the metadata when given. A
/// quantized graph is refused: its INT8 layers' meaning (codes, scales, input parameters)
/// has no place in a float state dict.
pub fn write_safetensors(g: &Graph, config: Option<&ModelConfig>, path: &Path) -> Result<()> {
    if let Some(n) = g.nodes.iter().find(|n| n.op.int8().is_some() || matches!(n.op, Op::FakeQuant(_))) {
        return Err(Error::Unsupported {
            what: format!("writing quantized layer '{}' ({}) to safetensors", n.name.escape_debug(), n.op.kind()),
            hint: "write a quantized model as .onnx (QDQ)".into(),
        });
    }
    let dict = state_dict(g);
    // Tensor names come from node names, which a file may repeat.
    let mut seen = std::collections::HashSet::new();
    if let Some((n, _, _)) = dict.iter().find(|(n, _, _)| !seen.insert(n.clone())) {
        return Err(Error::Unsupported { what: format!("two tensors named '{}' (nodes with the same name)", n.escape_debug()), hint: "rename the nodes, or write the model as .onnx".into() });
    }
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> =
        dict.into_iter().map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
    let views = bytes
        .iter()
        .map(|(n, s, b)| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)
                .map(|v| (n.clone(), v))
                .map_err(|e| Error::Internal(format!("safetensors view of tensor '{n}': {e}")))
        })
        .collect::<Result<Vec<_>>>()?;
    let meta = match config {
        Some(c) => {
            let json = serde_json::to_string(c).map_err(|e| Error::Internal(format!("serialising the model config: {e}")))?;
            Some(HashMap::from([("kestrel_config".to_string(), json)]))
        }
        None => None,
    };
    safetensors::serialize_to_file(views, meta, path).map_err(|e| Error::Safetensors { path: path.to_path_buf(), reason: e.to_string() })
}
