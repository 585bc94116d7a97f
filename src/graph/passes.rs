//! Graph rewrites applied once when a session is built:
//! 1. drop Identity (and Dropout, imported as Identity);
//! 2. fold an inference BatchNorm into the Conv that feeds it;
//! 3. fuse a residual Add into the Conv (or INT8 QConv) epilogue;
//! 4. fuse a following activation into the Conv (or QConv) epilogue;
//! 5. remove nodes whose output nobody reads;
//! 6. pass u8 codes between INT8 convs instead of f32 where every reader agrees (also into
//!    residual inputs, in place of a QuantizeDequantize).
//!
//! Each rewrite only fires when the intermediate value has exactly one reader and is not a
//! graph output, so no observable value changes.

use super::{ActQuant, Graph, Op, ValueId};
use crate::qparams::QParams;

/// Runs every pass to a fixed point.
pub fn optimize(g: &mut Graph) {
    drop_identity(g);
    fold_batchnorm(g);
    fuse_residual_add(g);
    fuse_activation(g);
    remove_dead(g);
    fuse_requantize(g);
}

/// Lets an INT8 conv hand its output to INT8 convs as u8 codes. When every reader of a
/// QConv's output (the value is no graph output) agrees on one set of static parameters, the
/// producer quantizes in its epilogue and
/// - a QConv reading it as its main input skips its quantize pass (`in_u8`);
/// - a QuantizeDequantize whose only readers are QConvs taking it as their residual is
///   removed, and those QConvs read the codes and dequantize them in their epilogue (`res_q`).
///
/// The codes are exactly those the readers would have computed, and the residual values
/// exactly those the QuantizeDequantize passed on. A value flagged this way holds u8 codes in
/// its f32 buffer; only the flagged readers see it.
pub fn fuse_requantize(g: &mut Graph) {
    let mut readers: Vec<Vec<(usize, usize)>> = vec![Vec::new(); g.values.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for (slot, &v) in n.inputs.iter().enumerate() {
            readers[v].push((i, slot));
        }
    }
    // An INT8 conv whose only reader is a MaxPool: the pool can run on u8 codes if its own
    // readers qualify (max commutes with the monotone quantization, so the codes are exact).
    let through_pool = |g: &Graph, p: usize| -> Option<usize> {
        let v = g.nodes[p].output;
        match readers[v].as_slice() {
            [(m, 0)] if matches!(g.nodes[*m].op, Op::MaxPool(_)) && !g.outputs.contains(&v) => Some(*m),
            _ => None,
        }
    };
    // A QuantizeDequantize that only residual inputs of QConvs read.
    let residual_qdq = |g: &Graph, r: usize| -> Option<QParams> {
        let Op::FakeQuant(ActQuant::Static(pq)) = g.nodes[r].op else { return None };
        let f = g.nodes[r].output;
        let ok = !g.outputs.contains(&f)
            && !readers[f].is_empty()
            && readers[f].iter().all(|&(c, slot)| slot == 1 && matches!(&g.nodes[c].op, Op::QConv(q) if q.conv.residual && q.res_q.is_none()));
        ok.then_some(pq)
    };
    let mut removed = vec![false; g.nodes.len()];
    for p in 0..g.nodes.len() {
        let Op::QConv(_) = &g.nodes[p].op else { continue };
        let pool = through_pool(g, p);
        let v = g.nodes[pool.unwrap_or(p)].output;
        if g.outputs.contains(&v) || readers[v].is_empty() {
            continue;
        }
        let mut params = None;
        let ok = readers[v].iter().all(|&(r, slot)| {
            let pq = match &g.nodes[r].op {
                Op::QConv(q) if slot == 0 && !q.in_u8 => match q.input {
                    ActQuant::Static(pq) => pq,
                    ActQuant::Dynamic => return false,
                },
                Op::FakeQuant(_) if pool.is_none() => match residual_qdq(g, r) {
                    Some(pq) => pq,
                    None => return false,
                },
                _ => return false,
            };
            *params.get_or_insert(pq) == pq
        });
        let Some(pq) = params.filter(|_| ok) else { continue };
        if let Op::QConv(q) = &mut g.nodes[p].op {
            q.out_q = Some(pq);
        }
        if let Some(m) = pool {
            if let Op::MaxPool(pp) = &g.nodes[m].op {
                g.nodes[m].op = Op::MaxPoolU8(pp.clone());
            }
        }
        for &(r, _) in &readers[v] {
            match &mut g.nodes[r].op {
                Op::QConv(q) => q.in_u8 = true,
                Op::FakeQuant(_) => {
                    removed[r] = true;
                    for &(c, _) in &readers[g.nodes[r].output] {
                        g.nodes[c].inputs[1] = v;
                        if let Op::QConv(q) = &mut g.nodes[c].op {
                            q.res_q = Some(pq);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut i = 0;
    g.nodes.retain(|_| {
        i += 1;
        !removed[i - 1]
    });
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

/// Folds `BatchNorm(Conv(x))` into the conv's weight and bias.
pub fn fold_batchnorm(g: &mut Graph) {
    let mut i = 0;
    while i < g.nodes.len() {
        let folded = match (&g.nodes[i].op, sole_reader(g, g.nodes[i].output)) {
            (Op::Conv(c), Some(j)) if c.act.is_none() && !c.residual => match &g.nodes[j].op {
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
