//! Physically removing channels: every weight, bias, BatchNorm entry and constant that a
//! group's channels touch is sliced to the kept channels, so the pruned graph is a smaller
//! graph of the same ops (and exports, quantizes and runs like any other).

use super::groups::{Groups, Layout, Role};
use crate::error::{Error, Result};
use crate::graph::{Graph, Op};
use crate::tensor::Tensor;

/// `t` with only the indices `idx` of `axis`, in that order.
pub fn take_axis(t: &Tensor, axis: usize, idx: &[usize]) -> Result<Tensor> {
    let s = t.shape();
    if axis >= s.len() {
        return Err(Error::Internal(format!("prune: axis {axis} of a {s:?} tensor")));
    }
    let outer: usize = s[..axis].iter().product();
    let inner: usize = s[axis + 1..].iter().product();
    let n = s[axis];
    if let Some(&bad) = idx.iter().find(|&&i| i >= n) {
        return Err(Error::Internal(format!("prune: index {bad} of axis {axis} (length {n})")));
    }
    let d = t.data();
    let mut out = Vec::with_capacity(outer * idx.len() * inner);
    for o in 0..outer {
        for &i in idx {
            out.extend_from_slice(&d[(o * n + i) * inner..(o * n + i + 1) * inner]);
        }
    }
    let mut shape = s.to_vec();
    shape[axis] = idx.len();
    Tensor::new(shape, out)
}

fn take(v: &[f32], idx: &[usize]) -> Vec<f32> {
    idx.iter().map(|&i| v[i]).collect()
}

/// The graph with only the channels `kept[group]` of every group (all of a group's channels
/// when its list is complete). Ratio-0 pruning (every list complete) returns an equal graph.
pub fn apply(g: &Graph, groups: &Groups, kept: &[Vec<usize>]) -> Result<Graph> {
    for (gi, k) in kept.iter().enumerate() {
        let gr = &groups.groups[gi];
        if k.is_empty() || k.len() > gr.width || k.windows(2).any(|w| w[0] >= w[1]) || k.last().is_some_and(|&c| c >= gr.width) {
            return Err(Error::Internal(format!("prune: kept channels of group {gi} ({} of {}) are not a sorted subset", k.len(), gr.width)));
        }
        if !gr.prunable() && k.len() != gr.width {
            return Err(Error::Internal(format!("prune: group {gi} is kept whole ({})", gr.blocked.as_deref().unwrap_or(""))));
        }
    }
    let mut out = g.clone();
    let idx = |l: &Option<Layout>| l.as_ref().map(|l| groups.kept_indices(l, kept));
    let full = |l: &Option<Layout>| l.as_ref().map(|l| (0..l.channels() * l.inner).collect::<Vec<_>>());
    let mut sliced_constants: Vec<(usize, Vec<usize>, usize)> = Vec::new();
    for (n, node) in g.nodes.iter().enumerate() {
        let (lin, lout) = (&groups.layouts[node.inputs[0]], &groups.layouts[node.output]);
        let (kin, kout) = (idx(lin), idx(lout));
        let unchanged_in = kin == full(lin);
        let unchanged_out = kout == full(lout);
        if unchanged_in && unchanged_out && !matches!(node.op, Op::Add | Op::Mul | Op::Sub | Op::Div | Op::Pow | Op::PRelu) {
            continue;
        }
        let (kin, kout) = (kin.unwrap_or_default(), kout.unwrap_or_default());
        let name = &node.name;
        match &mut out.nodes[n].op {
            Op::Conv(c) if c.groups == 1 => {
                c.weight = take_axis(&take_axis(&c.weight, 0, &kout)?, 1, &kin)?;
                if let Some(b) = &mut c.bias {
                    *b = take(b, &kout);
                }
            }
            Op::Conv(c) if c.groups == c.in_channels() && c.weight.shape()[1] == 1 => {
                c.weight = take_axis(&c.weight, 0, &kin)?;
                if let Some(b) = &mut c.bias {
                    *b = take(b, &kin);
                }
                c.groups = kin.len();
            }
            Op::ConvTranspose(c) if c.groups == 1 => {
                c.weight = take_axis(&take_axis(&c.weight, 0, &kin)?, 1, &kout)?;
                if let Some(b) = &mut c.bias {
                    *b = take(b, &kout);
                }
            }
            Op::Linear(l) => {
                l.weight = take_axis(&take_axis(&l.weight, 0, &kout)?, 1, &kin)?;
                if let Some(b) = &mut l.bias {
                    *b = take(b, &kout);
                }
            }
            Op::BatchNorm(b) => {
                b.gamma = take(&b.gamma, &kin);
                b.beta = take(&b.beta, &kin);
                b.mean = take(&b.mean, &kin);
                b.var = take(&b.var, &kin);
            }
            Op::Add | Op::Mul | Op::Sub | Op::Div | Op::Pow | Op::PRelu => {
                for (role_node, role) in groups.groups.iter().flat_map(|gr| gr.members.iter()) {
                    if let (true, Role::Constant { axis, .. }) = (*role_node == n, role) {
                        let cv = if g.constants.contains_key(&node.inputs[1]) { node.inputs[1] } else { node.inputs[0] };
                        let runtime = if cv == node.inputs[1] { node.inputs[0] } else { node.inputs[1] };
                        let k = idx(&groups.layouts[runtime]).unwrap_or_default();
                        sliced_constants.push((cv, k, *axis));
                        break;
                    }
                }
            }
            // Only flatten-like Reshapes pass channels (the analysis blocks the others): keep the
            // batch, infer the features.
            Op::Reshape { shape, allowzero } => {
                *shape = vec![0, -1];
                *allowzero = false;
            }
            op if unchanged_in || unchanged_out || matches!(op, Op::Act(_) | Op::MaxPool(_) | Op::AveragePool(_) | Op::GlobalAveragePool | Op::GlobalMaxPool | Op::Resize(_) | Op::Identity | Op::FakeQuant(_) | Op::Softmax { .. } | Op::Flatten { .. } | Op::Concat { .. } | Op::Pad(_)) => {}
            op => {
                return Err(Error::Internal(format!("prune: node '{name}' ({}) lost channels it cannot slice", op.kind())));
            }
        }
    }
    sliced_constants.sort_by_key(|c| c.0);
    sliced_constants.dedup();
    for w in sliced_constants.windows(2) {
        if w[0].0 == w[1].0 {
            return Err(Error::Unsupported { what: format!("pruning channels of constant '{}'", g.values[w[0].0]), hint: "it is read with two different channel layouts; exclude one reader".into() });
        }
    }
    for (cv, k, axis) in sliced_constants {
        if let Some(t) = out.constants.get_mut(&cv) {
            *t = take_axis(t, axis, &k)?;
        }
    }
    out.validate()?;
    crate::graph::shape::infer(&out, &[out.input_shape(1)?])?;
    Ok(out)
}
