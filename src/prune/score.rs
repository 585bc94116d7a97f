//! Channel importance, per group, and the calibration statistics it (and recovery) needs.
//!
//! - Magnitude: the L1 or L2 norm of every weight slice a channel touches — its producers'
//!   filters, its depthwise filters, its consumers' input slices — reduced over the group's
//!   members by mean or max.
//! - BatchNorm: `|γ|`, averaged over the group's BatchNorms (groups without one fall back to
//!   L2 magnitude).
//! - Activation: the mean absolute value of the channel where its consumers read it, on the
//!   calibration inputs.
//! - Reconstruction: the energy the channel adds to its consumers' outputs once its mean is
//!   folded into their bias, `Σ ‖op(x_c − μ_c)‖²` over the calibration inputs: exactly the
//!   squared change of those outputs when the channel is removed with bias folding.
//! - Random: seeded, as a baseline.
//!
//! Scores are divided by their group's mean, so that a global ranking compares channels
//! against their own group, not groups against each other.

use std::collections::HashMap;

use super::groups::{Groups, Role};
use crate::cpu::{conv, conv_transpose};
use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::graph::{Conv2d, ConvTranspose2d, Graph, Op, Precision, ValueId};
use crate::rng::Rng;
use crate::tensor::Tensor;

/// How members' norms are combined into a channel's score.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reduce {
    Mean,
    Max,
}

/// A channel importance criterion.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Importance {
    L1(Reduce),
    L2(Reduce),
    BnGamma,
    Activation,
    Reconstruction,
    Random(u64),
}

impl Importance {
    /// Parses `l1`, `l1-max`, `l2`, `l2-max`, `bn`, `activation`, `reconstruction`, `random`.
    pub fn parse(s: &str, seed: u64) -> Result<Importance> {
        Ok(match s.trim() {
            "l1" | "l1-mean" => Importance::L1(Reduce::Mean),
            "l1-max" => Importance::L1(Reduce::Max),
            "l2" | "l2-mean" => Importance::L2(Reduce::Mean),
            "l2-max" => Importance::L2(Reduce::Max),
            "bn" | "bn-gamma" => Importance::BnGamma,
            "activation" => Importance::Activation,
            "reconstruction" => Importance::Reconstruction,
            "random" => Importance::Random(seed),
            other => return Err(Error::Argument(format!("--importance {other}: use l1, l1-max, l2, l2-max, bn, activation, reconstruction or random"))),
        })
    }

    /// Whether the criterion needs calibration inputs.
    pub fn needs_data(self) -> bool {
        matches!(self, Importance::Activation | Importance::Reconstruction)
    }
}

/// Per-feature statistics of a value along axis 1 over the calibration inputs.
#[derive(Clone, Debug, Default)]
pub struct ValueStats {
    /// Elements seen per feature.
    pub count: f64,
    pub sum: Vec<f64>,
    pub sum_abs: Vec<f64>,
}

impl ValueStats {
    fn add(&mut self, t: &Tensor) {
        let s = t.shape();
        let (n, c) = (s[0], s.get(1).copied().unwrap_or(1));
        let inner: usize = s.get(2..).map_or(1, |r| r.iter().product());
        if self.sum.len() != c {
            self.sum = vec![0.0; c];
            self.sum_abs = vec![0.0; c];
        }
        for (k, chunk) in t.data().chunks(inner.max(1)).enumerate() {
            let ch = k % c;
            for &v in chunk {
                self.sum[ch] += f64::from(v);
                self.sum_abs[ch] += f64::from(v).abs();
            }
        }
        self.count += (n * inner) as f64;
    }

    /// Mean of each feature.
    pub fn mean(&self) -> Vec<f64> {
        self.sum.iter().map(|s| s / self.count.max(1.0)).collect()
    }
}

/// Runs `g` on every calibration input and gathers statistics of `values`.
pub fn value_stats(g: &Graph, values: &[ValueId], calib: &[Tensor], threads: usize) -> Result<HashMap<ValueId, ValueStats>> {
    let session = Session::new(g.clone(), &Options { threads, optimize: false, ..Default::default() })?;
    let mut stats: HashMap<ValueId, ValueStats> = values.iter().map(|&v| (v, ValueStats::default())).collect();
    for x in calib {
        let all = session.run_all(std::slice::from_ref(x))?;
        for (v, st) in stats.iter_mut() {
            if let Some(t) = &all[*v] {
                st.add(t);
            }
        }
    }
    Ok(stats)
}

/// The values consumers and per-channel members of prunable groups read.
pub fn read_values(g: &Graph, groups: &Groups) -> Vec<ValueId> {
    let mut v: Vec<ValueId> = groups
        .groups
        .iter()
        .filter(|gr| gr.prunable())
        .flat_map(|gr| gr.members.iter())
        .filter(|(_, r)| matches!(r, Role::Consumer { .. } | Role::PerChannel { .. }))
        .map(|(n, _)| g.nodes[*n].inputs[0])
        .collect();
    v.sort_unstable();
    v.dedup();
    v
}

/// Norm of the weights channel `c` of a group touches in member `(n, role)`, raised to `p`
/// (1 or 2; the caller takes the root for L2).
fn member_norm(g: &Graph, n: usize, role: &Role, c: usize, p: u32) -> Option<f64> {
    let acc = |it: &mut dyn Iterator<Item = f32>| it.map(|w| f64::from(w).abs().powi(p as i32)).sum::<f64>();
    match (&g.nodes[n].op, role) {
        (Op::Conv(cv), Role::Producer) => {
            let per = cv.weight.numel() / cv.out_channels();
            Some(acc(&mut cv.weight.data()[c * per..(c + 1) * per].iter().copied()))
        }
        (Op::Conv(cv), Role::PerChannel { offset }) => {
            let per = cv.weight.numel() / cv.out_channels();
            let ch = offset + c;
            Some(acc(&mut cv.weight.data()[ch * per..(ch + 1) * per].iter().copied()))
        }
        (Op::Conv(cv), Role::Consumer { offset, .. }) => {
            let s = cv.weight.shape();
            let (cin, k) = (s[1], s[2] * s[3]);
            let ch = offset + c;
            Some(acc(&mut (0..s[0]).flat_map(|o| cv.weight.data()[(o * cin + ch) * k..(o * cin + ch + 1) * k].iter().copied())))
        }
        (Op::ConvTranspose(ct), Role::Producer) => {
            let s = ct.weight.shape();
            let (cout, k) = (s[1], s[2] * s[3]);
            Some(acc(&mut (0..s[0]).flat_map(|i| ct.weight.data()[(i * cout + c) * k..(i * cout + c + 1) * k].iter().copied())))
        }
        (Op::ConvTranspose(ct), Role::Consumer { offset, .. }) => {
            let per = ct.weight.numel() / ct.weight.shape()[0];
            let ch = offset + c;
            Some(acc(&mut ct.weight.data()[ch * per..(ch + 1) * per].iter().copied()))
        }
        (Op::Linear(l), Role::Producer) => {
            let i = l.weight.shape()[1];
            Some(acc(&mut l.weight.data()[c * i..(c + 1) * i].iter().copied()))
        }
        (Op::Linear(l), Role::Consumer { offset, inner }) => {
            let i = l.weight.shape()[1];
            let f0 = (offset + c) * inner;
            Some(acc(&mut (0..l.weight.shape()[0]).flat_map(|o| l.weight.data()[o * i + f0..o * i + f0 + inner].iter().copied())))
        }
        _ => None,
    }
}

/// Scores of every channel of every prunable group (empty lists for the others), normalised
/// by each group's mean. `stats` must hold [`read_values`] for the data-driven criteria.
pub fn scores(g: &Graph, groups: &Groups, how: Importance, stats: &HashMap<ValueId, ValueStats>, calib: &[Tensor], threads: usize) -> Result<Vec<Vec<f64>>> {
    let energy = if how == Importance::Reconstruction { Some(reconstruction_energy(g, groups, stats, calib, threads)?) } else { None };
    let mut rng = match how {
        Importance::Random(seed) => Some(Rng::new(seed)),
        _ => None,
    };
    let mut out = Vec::with_capacity(groups.groups.len());
    for gr in &groups.groups {
        if !gr.prunable() {
            out.push(Vec::new());
            continue;
        }
        let magnitude = |p: u32, reduce: Reduce, c: usize| -> f64 {
            let norms: Vec<f64> = gr.members.iter().filter_map(|(n, r)| member_norm(g, *n, r, c, p)).map(|v| if p == 2 { v.sqrt() } else { v }).collect();
            match reduce {
                Reduce::Mean => norms.iter().sum::<f64>() / norms.len().max(1) as f64,
                Reduce::Max => norms.iter().copied().fold(0.0, f64::max),
            }
        };
        let bns: Vec<(&crate::graph::BatchNorm, usize)> = gr
            .members
            .iter()
            .filter_map(|(n, r)| match (&g.nodes[*n].op, r) {
                (Op::BatchNorm(b), Role::PerChannel { offset }) => Some((b, *offset)),
                _ => None,
            })
            .collect();
        let mut s: Vec<f64> = (0..gr.width)
            .map(|c| match how {
                Importance::L1(r) => magnitude(1, r, c),
                Importance::L2(r) => magnitude(2, r, c),
                Importance::BnGamma if !bns.is_empty() => bns.iter().map(|(b, off)| f64::from(b.gamma.get(off + c).copied().unwrap_or(0.0)).abs()).sum::<f64>() / bns.len() as f64,
                Importance::BnGamma => magnitude(2, Reduce::Mean, c),
                Importance::Activation => {
                    let vals: Vec<f64> = consumer_reads(g, gr).filter_map(|(v, off, inner)| stats.get(&v).map(|st| (0..inner).map(|f| st.sum_abs[(off + c) * inner + f] / st.count.max(1.0)).sum::<f64>() / inner as f64)).collect();
                    vals.iter().sum::<f64>() / vals.len().max(1) as f64
                }
                Importance::Reconstruction => energy.as_ref().map_or(0.0, |e| gr.members.iter().filter_map(|(n, r)| match r {
                    Role::Consumer { offset, .. } => e.get(n).and_then(|v| v.get(offset + c)).copied(),
                    _ => None,
                }).sum::<f64>()),
                Importance::Random(_) => rng.as_mut().map_or(0.0, |r| f64::from(r.uniform())),
            })
            .collect();
        let mean = s.iter().sum::<f64>() / s.len().max(1) as f64;
        if mean > 0.0 && mean.is_finite() {
            s.iter_mut().for_each(|v| *v /= mean);
        }
        out.push(s);
    }
    Ok(out)
}

/// The values a group's consumers read, with the segment offset and features per channel.
fn consumer_reads<'a>(g: &'a Graph, gr: &'a super::groups::Group) -> impl Iterator<Item = (ValueId, usize, usize)> + 'a {
    gr.members.iter().filter_map(move |(n, r)| match r {
        Role::Consumer { offset, inner } => Some((g.nodes[*n].inputs[0], *offset, *inner)),
        _ => None,
    })
}

/// Channel `ch` of an `[n, c, hw]` tensor, every batch item's plane in turn, minus `mean`.
fn centred_channel(x: &[f32], [n, c, hw]: [usize; 3], ch: usize, mean: f64) -> Vec<f32> {
    (0..n).flat_map(|b| x[(b * c + ch) * hw..(b * c + ch + 1) * hw].iter().map(move |&v| v - mean as f32)).collect()
}

/// For every consumer of a prunable group, the energy each of its input channels adds to
/// its output with the channel's mean removed: `Σ_samples ‖op_c(x_c − μ_c)‖²`.
fn reconstruction_energy(g: &Graph, groups: &Groups, stats: &HashMap<ValueId, ValueStats>, calib: &[Tensor], threads: usize) -> Result<HashMap<usize, Vec<f64>>> {
    let mut consumers: Vec<usize> = groups.groups.iter().filter(|gr| gr.prunable()).flat_map(|gr| gr.members.iter()).filter(|(_, r)| matches!(r, Role::Consumer { .. })).map(|(n, _)| *n).collect();
    consumers.sort_unstable();
    consumers.dedup();
    let session = Session::new(g.clone(), &Options { threads, optimize: false, ..Default::default() })?;
    let mut energy: HashMap<usize, Vec<f64>> = HashMap::new();
    let mut scratch = Vec::new();
    for x in calib {
        let all = session.run_all(std::slice::from_ref(x))?;
        let shapes: Vec<Vec<usize>> = all.iter().map(|t| t.as_ref().map_or(Vec::new(), |t| t.shape().to_vec())).collect();
        for &n in &consumers {
            let node = &g.nodes[n];
            let Some(xv) = &all[node.inputs[0]] else { continue };
            let Some(st) = stats.get(&node.inputs[0]) else { continue };
            let mean = st.mean();
            let xs = xv.shape().to_vec();
            let e = energy.entry(n).or_default();
            match &node.op {
                Op::Conv(c) if c.groups == 1 => {
                    let cin = c.in_channels();
                    e.resize(cin, 0.0);
                    let (nb, h, w) = (xs[0], xs[2], xs[3]);
                    let [kh, kw] = c.kernel();
                    let oshape = crate::graph::shape::node_output_shape(node, &shapes)?;
                    let (oh, ow) = (oshape[2], oshape[3]);
                    for ch in 0..cin {
                        let xc = centred_channel(xv.data(), [nb, cin, h * w], ch, mean[ch]);
                        let wc: Vec<f32> = (0..c.out_channels()).flat_map(|o| c.weight.data()[(o * cin + ch) * kh * kw..(o * cin + ch + 1) * kh * kw].iter().copied()).collect();
                        let one = Conv2d { weight: Tensor::new(vec![c.out_channels(), 1, kh, kw], wc)?, bias: None, act: None, residual: false, groups: 1, precision: Precision::F32, ..c.clone() };
                        let mut y = vec![0.0; nb * c.out_channels() * oh * ow];
                        conv::conv2d(&one, &xc, [nb, 1, h, w], None, &mut y, [nb, c.out_channels(), oh, ow], &mut scratch, threads);
                        e[ch] += y.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
                    }
                }
                Op::ConvTranspose(c) if c.groups == 1 => {
                    let cin = c.in_channels();
                    e.resize(cin, 0.0);
                    let (nb, h, w) = (xs[0], xs[2], xs[3]);
                    let per = c.weight.numel() / cin;
                    let oshape = crate::graph::shape::node_output_shape(node, &shapes)?;
                    let (oh, ow) = (oshape[2], oshape[3]);
                    for ch in 0..cin {
                        let xc = centred_channel(xv.data(), [nb, cin, h * w], ch, mean[ch]);
                        let ws = c.weight.shape();
                        let one = ConvTranspose2d { weight: Tensor::new(vec![1, ws[1], ws[2], ws[3]], c.weight.data()[ch * per..(ch + 1) * per].to_vec())?, bias: None, ..c.clone() };
                        let mut y = vec![0.0; nb * c.out_channels() * oh * ow];
                        conv_transpose::conv_transpose2d(&one, &xc, [nb, 1, h, w], &mut y, [nb, c.out_channels(), oh, ow], &mut scratch, threads);
                        e[ch] += y.iter().map(|&v| f64::from(v) * f64::from(v)).sum::<f64>();
                    }
                }
                Op::Linear(l) => {
                    let (o, i) = (l.weight.shape()[0], l.weight.shape()[1]);
                    e.resize(i, 0.0);
                    let nb = xs[0];
                    for f in 0..i {
                        for b in 0..nb {
                            let d = f64::from(xv.data()[b * i + f]) - mean[f];
                            e[f] += (0..o).map(|r| (f64::from(l.weight.data()[r * i + f]) * d).powi(2)).sum::<f64>();
                        }
                    }
                }
                _ => {}
            }
        }
    }
    // Linear consumers count features; groups index channels × inner, so fold features.
    for (n, e) in energy.iter_mut() {
        if let Op::Linear(_) = g.nodes[*n].op {
            if let Some(inner) = groups.groups.iter().flat_map(|gr| gr.members.iter()).find_map(|(m, r)| match r {
                Role::Consumer { inner, .. } if m == n => Some(*inner),
                _ => None,
            }) {
                *e = e.chunks(inner.max(1)).map(|c| c.iter().sum()).collect();
            }
        }
    }
    Ok(energy)
}
