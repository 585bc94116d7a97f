//! Class activation maps: where a classifier looked, for one image at a time.
//!
//! The map lives on one conv layer's output `A: [C, h, w]` (by default the last conv whose map
//! is at least 7×7, else the last conv; `layer` picks another) and is upsampled to the input
//! for display.
//! - **CAM** (Zhou et al.): `M = Σ_c W[k][c] · A[c]`, for a layer whose map goes straight into
//!   GlobalAveragePool, (Flatten), then the Linear with weights `W`.
//! - **Grad-CAM** (Selvaraju et al.): `M = ReLU(Σ_c α_c · A[c])`, `α_c` the mean over the map
//!   of `∂ score_k / ∂ A[c]`. For the head above, `α_c = W[k][c] / (h·w)`, so Grad-CAM is
//!   `ReLU(CAM) / (h·w)`: both are one weighted sum over the map, no backward pass. For any
//!   other layer, the gradient comes from a backward pass over the ops between the layer and
//!   the output: convs (through their fused bias, residual and activation; the input
//!   gradient is the transposed conv with the same weights), BatchNorm, Add, activations,
//!   max and global pooling, Flatten/Reshape and Linear. Any other op is refused by name.
//!
//! The score is the class logit: when the graph ends in Softmax, its input.

use std::collections::HashSet;

use crate::cpu::conv_transpose;
use crate::error::{Error, Result};
use crate::exec::Session;
use crate::graph::{Activation, ConvTranspose2d, Graph, Node, Op, Pool2d, Precision, ValueId};
use crate::tensor::Tensor;

/// Which map.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Cam,
    GradCam,
}

/// Which class to explain.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Class {
    /// The highest-scoring class.
    Top,
    Index(usize),
}

/// The map of one image.
#[derive(Clone, Debug)]
pub struct Explanation {
    pub class: usize,
    /// The class logit.
    pub score: f32,
    /// The node whose output the map lives on.
    pub layer: String,
    /// `[h][w]`, row-major.
    pub map: Vec<f32>,
    pub map_hw: [usize; 2],
    /// Whether a backward pass computed it (false: one weighted sum over the map).
    pub backward: bool,
}

/// The map of `method` for image `x` (`[1, C, H, W]`, preprocessed) on `session`'s graph.
pub fn explain(session: &Session, x: &Tensor, layer: Option<&str>, class: Class, method: Method) -> Result<Explanation> {
    if x.shape().first() != Some(&1) {
        return Err(Error::Argument(format!("explain takes one image at a time, got a batch of shape {:?}", x.shape())));
    }
    let g = session.graph();
    let values = session.run_all(std::slice::from_ref(x))?;
    let target = target_layer(g, &values, layer)?;
    if g.outputs.is_empty() {
        return Err(Error::NoOutput);
    }
    let producers = g.producers();
    let logits_v = logits_value(g);
    let logits = value(&values, logits_v)?;
    if logits.shape().len() != 2 {
        return Err(Error::Unsupported { what: format!("explain: the output has shape {:?}, not [1, classes]", logits.shape()), hint: "a classifier's logits".into() });
    }
    let k = match class {
        Class::Top => argmax(logits.data()),
        Class::Index(k) if k < logits.numel() => k,
        Class::Index(k) => return Err(Error::Argument(format!("--class {k}: the model has {} classes", logits.numel()))),
    };
    let score = logits.data()[k];
    let a = value(&values, target)?;
    let [c, h, w] = [a.shape()[1], a.shape()[2], a.shape()[3]];
    let name = producers[target].map_or_else(|| g.values[target].clone(), |p| g.nodes[p].name.clone());
    let mut explanation = Explanation { class: k, score, layer: name, map: vec![0.0; h * w], map_hw: [h, w], backward: false };
    let head = gap_linear_head(g, target, logits_v);
    let alpha: Vec<f32> = match (head, method) {
        (Some(lin), _) => {
            let wk = &lin.weight.data()[k * c..(k + 1) * c];
            match method {
                Method::Cam => wk.to_vec(),
                Method::GradCam => wk.iter().map(|v| v / (h * w) as f32).collect(),
            }
        }
        (None, Method::Cam) => {
            return Err(Error::Unsupported {
                what: format!("CAM on '{}': its map does not go straight into GlobalAveragePool and a Linear", explanation.layer.escape_debug()),
                hint: "use --method gradcam, or the layer before the global pooling".into(),
            })
        }
        (None, Method::GradCam) => {
            explanation.backward = true;
            let grad = backward(session, &values, target, logits_v, k)?;
            grad.chunks(h * w).map(|plane| plane.iter().sum::<f32>() / (h * w) as f32).collect()
        }
    };
    for (ch, &al) in alpha.iter().enumerate() {
        for (m, &v) in explanation.map.iter_mut().zip(&a.data()[ch * h * w..(ch + 1) * h * w]) {
            *m += al * v;
        }
    }
    if method == Method::GradCam {
        explanation.map.iter_mut().for_each(|m| *m = m.max(0.0));
    }
    Ok(explanation)
}

/// `∂ logit[k] / ∂ A` for the map `A` of `layer` (as [`explain`] picks it), by the backward
/// pass Grad-CAM uses for heads other than GlobalAveragePool + Linear; with `A`'s shape.
pub fn gradient(session: &Session, x: &Tensor, layer: Option<&str>, k: usize) -> Result<(Vec<f32>, Vec<usize>)> {
    let g = session.graph();
    let values = session.run_all(std::slice::from_ref(x))?;
    let target = target_layer(g, &values, layer)?;
    let logits = logits_value(g);
    let grad = backward(session, &values, target, logits, k)?;
    Ok((grad, value(&values, target)?.shape().to_vec()))
}

/// The logit `k` with the map of `layer` edited by `edit` and every later node run again: the
/// direct computation the gradient is checked against (finite differences).
pub fn logit_with(session: &Session, x: &Tensor, layer: Option<&str>, k: usize, edit: impl FnOnce(&mut [f32])) -> Result<f32> {
    let g = session.graph();
    let mut values = session.run_all(std::slice::from_ref(x))?;
    let target = target_layer(g, &values, layer)?;
    let at = g.producers()[target].ok_or_else(|| Error::Argument("explain: the layer is a graph input".into()))?;
    let a = values[target].take().ok_or_else(|| Error::Internal("the layer's map was not computed".into()))?;
    let (shape, mut data) = (a.shape().to_vec(), a.data().to_vec());
    edit(&mut data);
    values[target] = Some(Tensor::new(shape, data)?);
    for i in at + 1..g.nodes.len() {
        let y = session.run_node(i, &values)?;
        values[g.nodes[i].output] = Some(y);
    }
    Ok(value(&values, logits_value(g))?.data()[k])
}

/// The logits: the graph's output, or a final Softmax's input.
fn logits_value(g: &Graph) -> ValueId {
    let out = g.outputs.first().copied().unwrap_or(0);
    match g.producers()[out].map(|p| &g.nodes[p]) {
        Some(n) if matches!(n.op, Op::Softmax { .. }) => n.inputs[0],
        _ => out,
    }
}

fn value(values: &[Option<Tensor>], v: ValueId) -> Result<&Tensor> {
    values.get(v).and_then(Option::as_ref).ok_or_else(|| Error::Internal(format!("value #{v} was not computed")))
}

fn argmax(v: &[f32]) -> usize {
    v.iter().enumerate().fold((0, f32::NEG_INFINITY), |(bi, bv), (i, &x)| if x > bv { (i, x) } else { (bi, bv) }).0
}

/// The value the map lives on: the output of node `layer` (its name, or the last node under
/// that prefix: `layer4` is its last conv), else the last conv whose map is at least 7×7, else
/// the last conv.
fn target_layer(g: &Graph, values: &[Option<Tensor>], layer: Option<&str>) -> Result<ValueId> {
    let spatial = |v: ValueId| values.get(v).and_then(Option::as_ref).is_some_and(|t| t.shape().len() == 4);
    let pick = match layer {
        Some(name) => g
            .nodes
            .iter()
            .rev()
            .find(|n| n.name == name)
            .or_else(|| g.nodes.iter().rev().find(|n| n.name.starts_with(&format!("{name}.")) && spatial(n.output)))
            .ok_or_else(|| Error::Argument(format!("--layer {}: no node of that name (see `kestrel info`)", name.escape_debug())))?,
        None => {
            let convs: Vec<&Node> = g.nodes.iter().filter(|n| matches!(n.op, Op::Conv(_))).collect();
            let big = |n: &&&Node| values.get(n.output).and_then(Option::as_ref).is_some_and(|t| t.shape().len() == 4 && t.shape()[2] >= 7 && t.shape()[3] >= 7);
            *convs.iter().rev().find(big).or(convs.last()).ok_or_else(|| Error::Unsupported { what: "explain: the model has no conv layer".into(), hint: "a CNN classifier".into() })?
        }
    };
    if !spatial(pick.output) {
        return Err(Error::Argument(format!("--layer {}: its output is not a [1, C, h, w] map", pick.name.escape_debug())));
    }
    Ok(pick.output)
}

/// The Linear of a `target → GlobalAveragePool → (Flatten | Reshape)* → Linear → logits` head.
fn gap_linear_head(g: &Graph, target: ValueId, logits: ValueId) -> Option<&crate::graph::Linear> {
    let only_reader = |v: ValueId| -> Option<&Node> {
        let mut r = g.nodes.iter().filter(|n| n.inputs.contains(&v));
        let first = r.next()?;
        (r.next().is_none() && !g.outputs.contains(&v)).then_some(first)
    };
    let gap = only_reader(target).filter(|n| matches!(n.op, Op::GlobalAveragePool))?;
    let mut v = gap.output;
    loop {
        let n = only_reader(v)?;
        match &n.op {
            Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => v = n.output,
            Op::Linear(l) if n.output == logits && l.precision.is_f32() => return Some(l),
            _ => return None,
        }
    }
}

/// `∂ logits[k] / ∂ target`, by reverse mode over the nodes between them.
fn backward(session: &Session, values: &[Option<Tensor>], target: ValueId, logits: ValueId, k: usize) -> Result<Vec<f32>> {
    let g = session.graph();
    // The nodes that depend on the target: only they carry its gradient.
    let mut reach: HashSet<ValueId> = HashSet::from([target]);
    for n in &g.nodes {
        if n.inputs.iter().any(|v| reach.contains(v)) {
            reach.insert(n.output);
        }
    }
    if !reach.contains(&logits) {
        return Err(Error::Internal("explain: the logits do not depend on the layer".into()));
    }
    let mut grads: Vec<Option<Vec<f32>>> = vec![None; g.values.len()];
    let mut seed = vec![0.0; value(values, logits)?.numel()];
    seed[k] = 1.0;
    grads[logits] = Some(seed);
    for n in g.nodes.iter().rev() {
        if n.output == target {
            break;
        }
        let Some(gy) = grads[n.output].take() else { continue };
        if !reach.contains(&n.output) {
            continue;
        }
        let y = value(values, n.output)?;
        let x = value(values, n.inputs[0])?;
        let mut add = |v: ValueId, d: Vec<f32>| {
            if reach.contains(&v) {
                match &mut grads[v] {
                    Some(acc) => acc.iter_mut().zip(&d).for_each(|(a, b)| *a += b),
                    slot => *slot = Some(d),
                }
            }
        };
        let refuse = || Error::Unsupported {
            what: format!("Grad-CAM through node '{}' ({})", n.name.escape_debug(), n.op.kind()),
            hint: "its backward is not implemented: choose a later --layer".into(),
        };
        match &n.op {
            Op::Conv(c) if c.precision.is_f32() => {
                let gpre = act_backward(c.act, y.data(), gy).ok_or_else(refuse)?;
                if c.residual {
                    add(n.inputs[1], gpre.clone());
                }
                add(n.inputs[0], conv_input_grad(c, &gpre, y.shape(), x.shape()));
            }
            Op::Act(a) => add(n.inputs[0], act_backward(Some(*a), y.data(), gy).ok_or_else(refuse)?),
            Op::BatchNorm(b) => {
                let (scale, _) = b.affine();
                let inner: usize = x.shape()[2..].iter().product();
                add(n.inputs[0], gy.iter().enumerate().map(|(i, d)| d * scale[(i / inner.max(1)) % scale.len()]).collect());
            }
            Op::Add if n.inputs.iter().all(|&v| values.get(v).and_then(Option::as_ref).is_some_and(|t| t.shape() == y.shape())) => {
                for &v in &n.inputs {
                    add(v, gy.clone());
                }
            }
            Op::GlobalAveragePool => {
                let hw: usize = x.shape()[2..].iter().product();
                add(n.inputs[0], (0..x.numel()).map(|i| gy[i / hw] / hw as f32).collect());
            }
            Op::GlobalMaxPool => {
                let hw: usize = x.shape()[2..].iter().product();
                let mut d = vec![0.0; x.numel()];
                for (ch, plane) in x.data().chunks(hw).enumerate() {
                    d[ch * hw + argmax(plane)] = gy[ch];
                }
                add(n.inputs[0], d);
            }
            Op::MaxPool(p) => add(n.inputs[0], max_pool_backward(p, x, y, &gy)),
            Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => add(n.inputs[0], gy),
            Op::Linear(l) if l.precision.is_f32() => {
                let [out, inp] = [l.weight.shape()[0], l.weight.shape()[1]];
                let wt = l.weight.data();
                let d = (0..inp).map(|i| (0..out).map(|o| gy[o] * wt[o * inp + i]).sum()).collect();
                add(n.inputs[0], d);
            }
            _ => return Err(refuse()),
        }
    }
    grads[target].take().ok_or_else(|| Error::Internal("explain: no gradient reached the layer".into()))
}

/// `∂L/∂pre` from `∂L/∂y` for `y = act(pre)`, from the output `y`; `None` for an activation
/// whose derivative needs its input.
fn act_backward(act: Option<Activation>, y: &[f32], mut gy: Vec<f32>) -> Option<Vec<f32>> {
    let d: fn(f32, Activation) -> f32 = |y, a| match a {
        Activation::Relu => f32::from(y > 0.0),
        Activation::LeakyRelu(s) => if y > 0.0 { 1.0 } else { s },
        Activation::Clip(lo, hi) => f32::from(y > lo && y < hi),
        Activation::Sigmoid => y * (1.0 - y),
        Activation::Tanh => 1.0 - y * y,
        _ => f32::NAN,
    };
    if let Some(a) = act {
        if !matches!(a, Activation::Relu | Activation::LeakyRelu(_) | Activation::Clip(..) | Activation::Sigmoid | Activation::Tanh) {
            return None;
        }
        gy.iter_mut().zip(y).for_each(|(g, &v)| *g *= d(v, a));
    }
    Some(gy)
}

/// `∂L/∂x` of a conv from `∂L/∂(conv(x))`: the transposed conv with the same weights, its
/// output padding chosen to give back x's size.
fn conv_input_grad(c: &crate::graph::Conv2d, gpre: &[f32], ys: &[usize], xs: &[usize]) -> Vec<f32> {
    let [kh, kw] = c.kernel();
    let span = |i: usize, k: usize, s: usize, d: usize, pb: usize, pe: usize| i + pb + pe - (k - 1) * d - 1 - (i + pb + pe - (k - 1) * d - 1) / s * s;
    let ct = ConvTranspose2d {
        weight: c.weight.clone(),
        bias: None,
        stride: c.stride,
        pads: c.pads,
        output_padding: [
            span(xs[2], kh, c.stride[0], c.dilation[0], c.pads[0], c.pads[2]),
            span(xs[3], kw, c.stride[1], c.dilation[1], c.pads[1], c.pads[3]),
        ],
        dilation: c.dilation,
        groups: c.groups,
        precision: Precision::F32,
    };
    let mut out = vec![0.0; xs.iter().product()];
    let ys4 = [ys[0], ys[1], ys[2], ys[3]];
    let xs4 = [xs[0], xs[1], xs[2], xs[3]];
    conv_transpose::conv_transpose2d(&ct, gpre, ys4, &mut out, xs4, &mut Vec::new(), 1);
    out
}

/// Routes each output's gradient to the first maximum of its window.
fn max_pool_backward(p: &Pool2d, x: &Tensor, y: &Tensor, gy: &[f32]) -> Vec<f32> {
    let [_, ch, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let [oh, ow] = [y.shape()[2], y.shape()[3]];
    let mut d = vec![0.0; x.numel()];
    for c in 0..ch {
        let plane = &x.data()[c * h * w..(c + 1) * h * w];
        for oy in 0..oh {
            for ox in 0..ow {
                let mut best: Option<(usize, f32)> = None;
                for ky in 0..p.kernel[0] {
                    for kx in 0..p.kernel[1] {
                        let iy = (oy * p.stride[0] + ky * p.dilation[0]) as isize - p.pads[0] as isize;
                        let ix = (ox * p.stride[1] + kx * p.dilation[1]) as isize - p.pads[1] as isize;
                        if iy < 0 || ix < 0 || iy >= h as isize || ix >= w as isize {
                            continue;
                        }
                        let i = iy as usize * w + ix as usize;
                        if best.is_none_or(|(_, b)| plane[i] > b) {
                            best = Some((i, plane[i]));
                        }
                    }
                }
                if let Some((i, _)) = best {
                    d[c * h * w + i] += gy[(c * oh + oy) * ow + ox];
                }
            }
        }
    }
    d
}

/// The first position `(x, y)` of the largest value of `map` (`w` values a row).
pub fn peak(map: &[f32], w: usize) -> (usize, usize) {
    let i = argmax(map);
    (i % w.max(1), i / w.max(1))
}

/// Where `e` peaks on an input of `[h, w]` pixels: the centre of its largest map cell.
pub fn peak_pixel(e: &Explanation, [h, w]: [usize; 2]) -> (usize, usize) {
    let (cx, cy) = peak(&e.map, e.map_hw[1]);
    (((2 * cx + 1) * w / (2 * e.map_hw[1].max(1))).min(w.saturating_sub(1)), ((2 * cy + 1) * h / (2 * e.map_hw[0].max(1))).min(h.saturating_sub(1)))
}

/// `map: [h][w]` upsampled bilinearly (half-pixel centres) to `[oh][ow]`.
pub fn upsample(map: &[f32], [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> Vec<f32> {
    let coord = |o: usize, n: usize, on: usize| {
        let s = ((o as f32 + 0.5) * n as f32 / on as f32 - 0.5).clamp(0.0, (n - 1) as f32);
        let i0 = s.floor() as usize;
        (i0, (i0 + 1).min(n - 1), s - i0 as f32)
    };
    let mut out = Vec::with_capacity(oh * ow);
    for oy in 0..oh {
        let (y0, y1, fy) = coord(oy, h, oh);
        for ox in 0..ow {
            let (x0, x1, fx) = coord(ox, w, ow);
            let top = map[y0 * w + x0] * (1.0 - fx) + map[y0 * w + x1] * fx;
            let bottom = map[y1 * w + x0] * (1.0 - fx) + map[y1 * w + x1] * fx;
            out.push(top * (1.0 - fy) + bottom * fy);
        }
    }
    out
}

/// `img` (`[3, H, W]` as the model saw it, un-normalized to [0, 1]) with `heat` (`[H][W]`,
/// scaled to its own min and max) blended over it in a blue-to-red ramp.
pub fn overlay(rgb: &[f32], [h, w]: [usize; 2], heat: &[f32]) -> image::RgbImage {
    let (lo, hi) = heat.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(a, b), &v| (a.min(v), b.max(v)));
    let span = if hi > lo { hi - lo } else { 1.0 };
    image::RgbImage::from_fn(w as u32, h as u32, |x, y| {
        let i = y as usize * w + x as usize;
        let t = (heat[i] - lo) / span;
        let ramp = [(1.5 - (4.0 * t - 3.0).abs()).clamp(0.0, 1.0), (1.5 - (4.0 * t - 2.0).abs()).clamp(0.0, 1.0), (1.5 - (4.0 * t - 1.0).abs()).clamp(0.0, 1.0)];
        let px = |c: usize| ((0.5 * rgb[c * h * w + i].clamp(0.0, 1.0) + 0.5 * ramp[c]) * 255.0).round() as u8;
        image::Rgb([px(0), px(1), px(2)])
    })
}
