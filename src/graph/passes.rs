//! Value-preserving graph rewrites, for every backend, applied once when a session is built:
//! 1. drop Identity (and Dropout, imported as Identity);
//! 2. fold an inference BatchNorm into the f32 Conv that feeds it;
//! 3. fuse a residual Add into the Conv epilogue (any precision);
//! 4. fuse a following activation into the Conv epilogue;
//! 5. remove nodes whose output nobody reads.
//!
//! Each rewrite only fires when the intermediate value has exactly one reader and is not a
//! graph output, so no observable value changes. Lowering decisions (kernels, u8 hand-offs
//! between INT8 layers) belong to a backend's prepare stage, not here.

use super::{Graph, Op, Precision, ValueId};

/// Runs every pass to a fixed point.
pub fn optimize(g: &mut Graph) {
    drop_identity(g);
    fold_batchnorm(g);
    fuse_residual_add(g);
    fuse_activation(g);
    remove_dead(g);
}

/// Replaces every read of an Identity's output by its input.
pub fn drop_identity(g: &mut Graph) {
    let mut alias: Vec<ValueId> = (0..g.values.len()).collect();
    for n in &g.nodes {
        if matches!(n.op, Op::Identity) && !g.outputs.contains(&n.output) {
            alias[n.output] = alias[n.inputs[0]];
        }
    }
    for n in &mut g.nodes {
        for i in &mut n.inputs {
            *i = alias[*i];
        }
    }
    g.nodes.retain(|n| !(matches!(n.op, Op::Identity) && alias[n.output] != n.output));
}

/// Index of the single node reading `v`, if exactly one node reads it and it is no output.
fn sole_reader(g: &Graph, v: ValueId) -> Option<usize> {
    if g.outputs.contains(&v) {
        return None;
    }
    let mut found = None;
    for (i, n) in g.nodes.iter().enumerate() {
        for &x in &n.inputs {
            if x == v {
                if found.is_some() {
                    return None;
                }
                found = Some(i);
            }
        }
    }
    found
}

/// Folds `BatchNorm(Conv(x))` into an f32 conv's weight and bias (an INT8 conv's weights
/// are its codes, which folding would change).
pub fn fold_batchnorm(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let folded = match (&g.nodes[i].op, sole_reader(g, g.nodes[i].output)) {
            (Op::Conv(c), Some(j)) if c.act.is_none() && !c.residual && matches!(c.precision, Precision::F32) => match &g.nodes[j].op {
                Op::BatchNorm(bn) => Some((j, bn.affine())),
                _ => None,
            },
            _ => None,
        };
        if let Some((j, (scale, shift))) = folded {
            let bn_out = g.nodes[j].output;
            if let Op::Conv(c) = &mut g.nodes[i].op {
                let per = c.weight.numel() / c.out_channels();
                for (co, w) in c.weight.data_mut().chunks_mut(per).enumerate() {
                    w.iter_mut().for_each(|v| *v *= scale[co]);
                }
                let bias = c.bias.get_or_insert_with(|| vec![0.0; scale.len()]);
                for (co, b) in bias.iter_mut().enumerate() {
                    *b = *b * scale[co] + shift[co];
                }
            }
            g.nodes[i].output = bn_out;
            g.nodes.remove(j);
            continue;
        }
        i += 1;
    }
}

/// Rewrites `Add(Conv(x), r)` (either order) into a Conv with a residual input.
pub fn fuse_residual_add(g: &mut Graph) {
    let producers = g.producers();
    let mut i = 0;
    while i < g.nodes.len() {
        let mut fused = None;
        if matches!(g.nodes[i].op, Op::Add) {
            let [a, b] = [g.nodes[i].inputs[0], g.nodes[i].inputs[1]];
            for (conv_v, other) in [(a, b), (b, a)] {
                if a == b || g.constants.contains_key(&other) {
                    break;
                }
                let Some(p) = producers[conv_v] else { continue };
                let ok = g.nodes.get(p).and_then(|n| n.op.conv()).is_some_and(|c| c.act.is_none() && !c.residual)
                    && g.nodes[p].output == conv_v
                    && sole_reader(g, conv_v) == Some(i)
                    // The residual must be computed before the conv runs.
                    && producers[other].is_none_or(|q| q < p);
                if ok {
                    fused = Some((p, other));
                    break;
                }
            }
        }
        if let Some((p, other)) = fused {
            let add_out = g.nodes[i].output;
            if let Some(c) = g.nodes[p].op.conv_mut() {
                c.residual = true;
            }
            g.nodes[p].inputs.push(other);
            g.nodes[p].output = add_out;
            g.nodes.remove(i);
            return fuse_residual_add(g);
        }
        i += 1;
    }
}

/// Folds an activation that solely consumes a conv's output into the conv.
pub fn fuse_activation(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let fused = match (g.nodes[i].op.conv(), sole_reader(g, g.nodes[i].output)) {
            (Some(c), Some(j)) if c.act.is_none() => match g.nodes[j].op {
                Op::Act(a) => Some((j, a)),
                _ => None,
            },
            _ => None,
        };
        if let Some((j, a)) = fused {
            let out = g.nodes[j].output;
            if let Some(c) = g.nodes[i].op.conv_mut() {
                c.act = Some(a);
            }
            g.nodes[i].output = out;
            g.nodes.remove(j);
            continue;
        }
        i += 1;
    }
}

/// Removes nodes whose outputs are never read.
pub fn remove_dead(g: &mut Graph) {
    loop {
        let uses = g.use_counts();
        let before = g.nodes.len();
        g.nodes.retain(|n| uses[n.output] > 0);
        if g.nodes.len() == before {
            break;
        }
    }
}
