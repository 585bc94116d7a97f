//! ONNX Runtime's profile read back onto a graph's layers. ORT fuses a conv with the
//! BatchNorm, activation and residual Add after it and names the fused node after one node
//! of the chain or after that node's output value (its NCHWc convs: `layer1.0.relu1_nchwc`
//! of our models, `/layer1/layer1.0/relu/Relu_output_0_nchwc` of a torch export), with
//! suffixes of its own (`_nchwc`, `_token_48`). [`layer_times`] gives each measured layer (a
//! Conv, ConvTranspose or Gemm node) the kernel times of the ORT nodes it owns, and lists the
//! others (pools, ORT's layout reorders) under ORT's names.
//!
//! Compiled without the `ort` feature too: it only reads names and numbers.

use std::collections::HashMap;

use crate::graph::{Graph, Op, ValueId};

/// The layer each node's time belongs to, by node name and by the name of the value the
/// node writes: a layer owns itself, a BatchNorm or activation the layer that produced its
/// input, an Add the layer of its input made by a Conv or BatchNorm (the block's branch, not
/// the residual stream).
pub fn layer_owners(g: &Graph) -> HashMap<&str, &str> {
    let mut producer: HashMap<ValueId, usize> = HashMap::new();
    let mut owner: Vec<Option<usize>> = vec![None; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        let made_by = |v: &ValueId| producer.get(v).copied();
        owner[i] = match &n.op {
            Op::Conv(_) | Op::ConvTranspose(_) | Op::Linear(_) => Some(i),
            Op::BatchNorm(_) | Op::Act(_) => n.inputs.first().and_then(made_by).and_then(|p| owner[p]),
            Op::Add => n.inputs.iter().filter_map(made_by).find(|&p| matches!(g.nodes[p].op, Op::Conv(_) | Op::BatchNorm(_))).and_then(|p| owner[p]),
            _ => None,
        };
        producer.insert(n.output, i);
    }
    let mut map: HashMap<&str, &str> = g.nodes.iter().zip(&owner).filter_map(|(n, o)| Some((n.name.as_str(), g.nodes[(*o)?].name.as_str()))).collect();
    for (n, o) in g.nodes.iter().zip(&owner) {
        if let (Some(o), Some(v)) = (o, g.values.get(n.output)) {
            map.entry(v.as_str()).or_insert(g.nodes[*o].name.as_str());
        }
    }
    map
}

/// The layer an ORT profile name belongs to ([`layer_owners`]): the name itself, or with up
/// to two `_suffix`es cut off.
pub fn owner_of<'a>(owners: &HashMap<&str, &'a str>, name: &str) -> Option<&'a str> {
    let mut n = name;
    for _ in 0..3 {
        if let Some(o) = owners.get(n) {
            return Some(o);
        }
        n = &n[..n.rfind('_')?];
    }
    None
}

/// Each layer's ORT time in ms, and the ORT nodes no layer owns under their ORT names (in
/// first-seen order), from `times` (each node run of the profile, in order, as
/// `OrtModel::node_times` gives them, with the `ort` feature): per ORT node, `stat` of its last
/// `runs` times (the earlier ones were warm-up runs), summed over the nodes a layer owns.
pub fn layer_times(g: &Graph, times: Vec<(String, f64)>, runs: usize, stat: impl Fn(&[f64]) -> f64) -> (HashMap<String, f64>, Vec<(String, f64)>) {
    let mut order: Vec<String> = Vec::new();
    let mut per_node: HashMap<String, Vec<f64>> = HashMap::new();
    for (name, t) in times {
        match per_node.get_mut(&name) {
            Some(v) => v.push(t),
            None => {
                order.push(name.clone());
                per_node.insert(name, vec![t]);
            }
        }
    }
    let owners = layer_owners(g);
    let (mut layers, mut others): (HashMap<String, f64>, Vec<(String, f64)>) = (HashMap::new(), Vec::new());
    for name in order {
        let t = &per_node[&name];
        let v = stat(&t[t.len().saturating_sub(runs.max(1))..]);
        match owner_of(&owners, &name) {
            Some(layer) => *layers.entry(layer.to_string()).or_default() += v,
            None => others.push((name, v)),
        }
    }
    (layers, others)
}
