//! Shape inference for concrete input shapes. Returns one shape per value; values that are
//! never defined get an empty shape.

use super::{AspectPolicy, ConvTransposeNd, Graph, Node, Op, Pool2d, PoolNd, ResizeTarget};
use crate::error::{Error, Result};

/// Output size of a convolution or pooling window along one axis, or `None` when empty.
pub fn window_out(input: usize, k: usize, stride: usize, pad: (usize, usize), dil: usize, ceil: bool) -> Option<usize> {
    let eff = dil.checked_mul(k.checked_sub(1)?)?.checked_add(1)?;
    let span = input.checked_add(pad.0)?.checked_add(pad.1)?.checked_sub(eff)?;
    let stride = stride.max(1);
    let mut out = if ceil { span.div_ceil(stride) + 1 } else { span / stride + 1 };
    // A ceil-mode window must start inside the input or the left padding (PyTorch and ONNX).
    if ceil && (out - 1) * stride >= input + pad.0 {
        out -= 1;
    }
    Some(out)
}

/// Output H and W of a pooling op on an `[N, C, H, W]` input.
pub fn pool_out(p: &Pool2d, h: usize, w: usize) -> Option<[usize; 2]> {
    Some([
        window_out(h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0], p.ceil_mode)?,
        window_out(w, p.kernel[1], p.stride[1], (p.pads[1], p.pads[3]), p.dilation[1], p.ceil_mode)?,
    ])
}

/// Output shape of [`PoolNd`] on `[N, C, D1, …, Dk]`, or why there is none.
pub fn pool_nd_out(p: &PoolNd, x: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let k = p.kernel.len();
    if k == 0 || x.len() != k + 2 || p.stride.len() != k || p.dilation.len() != k || p.pads.len() != 2 * k {
        return Err(format!("a {k}-D window (strides {:?}, dilations {:?}, pads {:?}) on an input of shape {x:?}", p.stride, p.dilation, p.pads));
    }
    if p.kernel.contains(&0) || !p.stride.iter().chain(&p.dilation).all(|&v| (1..=MAX_STEP).contains(&v)) {
        return Err(format!("kernel {:?}, strides {:?} and dilations {:?} must be ≥ 1 (strides and dilations ≤ {MAX_STEP})", p.kernel, p.stride, p.dilation));
    }
    let mut out = vec![x[0], x[1]];
    let mut padded = x[0].checked_mul(x[1]);
    for a in 0..k {
        let (pb, pe) = (p.pads[a], p.pads[k + a]);
        padded = padded.and_then(|e| e.checked_mul(x[2 + a].checked_add(pb)?.checked_add(pe)?));
        out.push(window_out(x[2 + a], p.kernel[a], p.stride[a], (pb, pe), p.dilation[a], p.ceil_mode).ok_or_else(|| format!("window {:?} does not fit input {x:?}", p.kernel))?);
    }
    if padded.is_none_or(|e| e > MAX_ELEMENTS) {
        return Err(format!("pads {:?} on input {x:?} make a padded input of more than 2^40 elements", p.pads));
    }
    Ok(out)
}

/// `Ok` when a layer's bias, if any, holds one value per output channel (or feature): the
/// kernels index it by channel.
fn bias_fits(bias: Option<&[f32]>, outputs: usize) -> std::result::Result<(), String> {
    match bias {
        Some(b) if b.len() != outputs => Err(format!("bias of {} values for {outputs} output channels", b.len())),
        _ => Ok(()),
    }
}

/// Output shape of [`ConvTransposeNd`] on `[N, Cin, D1, …, Dk]`, or why there is none:
/// `stride · (in − 1) + output_padding + (kernel − 1) · dilation + 1 − pads` per axis.
pub fn conv_transpose_nd_out(c: &ConvTransposeNd, x: &[usize]) -> std::result::Result<Vec<usize>, String> {
    let ws = c.weight.shape();
    let k = ws.len().saturating_sub(2);
    if k == 0 || x.len() != k + 2 || c.stride.len() != k || c.dilation.len() != k || c.output_padding.len() != k || c.pads.len() != 2 * k {
        return Err(format!("weight {ws:?} (strides {:?}, pads {:?}) on an input of shape {x:?}", c.stride, c.pads));
    }
    if x[1] != ws[0] || c.groups == 0 || ws[0] % c.groups != 0 {
        return Err(format!("expects {} input channels in {} groups, got {x:?}", ws[0], c.groups));
    }
    if !c.stride.iter().chain(&c.dilation).all(|&v| (1..=MAX_STEP).contains(&v)) || ws[2..].contains(&0) {
        return Err(format!("strides {:?} and dilations {:?} must be in 1..={MAX_STEP}, the kernel non-empty", c.stride, c.dilation));
    }
    let mut out = vec![x[0], ws[1] * c.groups];
    for a in 0..k {
        let o = c.stride[a]
            .checked_mul(x[2 + a].max(1) - 1)
            .and_then(|v| v.checked_add(c.output_padding[a]))
            .and_then(|v| v.checked_add((ws[2 + a] - 1).checked_mul(c.dilation[a])?))
            .and_then(|v| v.checked_add(1))
            .and_then(|v| v.checked_sub(c.pads[a].checked_add(c.pads[k + a])?))
            .filter(|&o| o > 0)
            .ok_or_else(|| format!("pads {:?} leave no output for input {x:?}", c.pads))?;
        out.push(o);
    }
    if out.iter().try_fold(1usize, |e, &d| e.checked_mul(d)).is_none_or(|e| e > MAX_ELEMENTS) {
        return Err(format!("an output of shape {out:?} has more than 2^40 elements"));
    }
    Ok(out)
}

/// numpy `matmul` shapes: a 1-D `a` is a row, a 1-D `b` a column, each axis so added is
/// dropped from the result; the axes before the last two broadcast.
pub fn matmul_out(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let a2: Vec<usize> = if a.len() == 1 { vec![1, a[0]] } else { a.to_vec() };
    let b2: Vec<usize> = if b.len() == 1 { vec![b[0], 1] } else { b.to_vec() };
    if a2.len() < 2 || b2.len() < 2 || a2[a2.len() - 1] != b2[b2.len() - 2] {
        return None;
    }
    let mut out = broadcast(&a2[..a2.len() - 2], &b2[..b2.len() - 2])?;
    if a.len() > 1 {
        out.push(a2[a2.len() - 2]);
    }
    if b.len() > 1 {
        out.push(b2[b2.len() - 1]);
    }
    Some(out)
}

/// Numpy broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let n = a.len().max(b.len());
    let mut out = vec![0; n];
    for i in 0..n {
        let da = if i + a.len() >= n { a[i + a.len() - n] } else { 1 };
        let db = if i + b.len() >= n { b[i + b.len() - n] } else { 1 };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

/// Output H and W of a resize.
pub fn resize_out(target: &ResizeTarget, h: usize, w: usize) -> [usize; 2] {
    match *target {
        ResizeTarget::Sizes(s) => s,
        ResizeTarget::Scales([sh, sw]) => [(h as f32 * sh).floor() as usize, (w as f32 * sw).floor() as usize],
        ResizeTarget::KeepAspect { sizes, policy, unit_axes } => {
            let s = keep_aspect_scale(sizes, policy, unit_axes, h, w);
            // ONNX's round_half_up: int(x + 0.5).
            [(s * h as f64 + 0.5) as usize, (s * w as f64 + 0.5) as usize]
        }
    }
}

/// The one scale `keep_aspect_ratio_policy` takes for both axes: the smaller (not_larger) or
/// the larger (not_smaller) of `sizes / [h, w]`, and of 1 with `unit_axes` (N and C).
pub fn keep_aspect_scale(sizes: [usize; 2], policy: AspectPolicy, unit_axes: bool, h: usize, w: usize) -> f64 {
    let (rh, rw) = (sizes[0] as f64 / h.max(1) as f64, sizes[1] as f64 / w.max(1) as f64);
    let s = match policy {
        AspectPolicy::NotLarger => rh.min(rw),
        AspectPolicy::NotSmaller => rh.max(rw),
    };
    match (unit_axes, policy) {
        (false, _) => s,
        (true, AspectPolicy::NotLarger) => s.min(1.0),
        (true, AspectPolicy::NotSmaller) => s.max(1.0),
    }
}

/// Infers every value's shape from the shapes of the graph inputs.
pub fn infer(g: &Graph, input_shapes: &[Vec<usize>]) -> Result<Vec<Vec<usize>>> {
    if input_shapes.len() != g.inputs.len() {
        return Err(Error::InputShape { name: "inputs".into(), expected: format!("{} input tensor(s)", g.inputs.len()), got: vec![input_shapes.len()] });
    }
    let mut shapes = vec![Vec::new(); g.values.len()];
    for (inp, s) in g.inputs.iter().zip(input_shapes) {
        let want = &inp.shape;
        // Fully convolutional models take any H and W: only rank and channels are fixed.
        let fixed = if want.len() == 4 { 2 } else { want.len() };
        // A batch of 0 only where the graph was declared with one (an ONNX input of size 0).
        let ok = s.len() == want.len() && !s.is_empty() && (s[0] > 0 || want[0] == 0) && s[1..fixed] == want[1..fixed];
        if !ok {
            return Err(Error::InputShape {
                name: g.values[inp.id].clone(),
                expected: format!("[N, {}]", want.iter().skip(1).map(|d| d.to_string()).collect::<Vec<_>>().join(", ")),
                got: s.clone(),
            });
        }
        if let (Some(m), 4) = (g.spatial_multiple, s.len()) {
            if s[2] % m != 0 || s[3] % m != 0 || s[2] == 0 || s[3] == 0 {
                return Err(Error::InputShape {
                    name: g.values[inp.id].clone(),
                    expected: format!("H and W non-zero multiples of {m} (pad or resize the image)"),
                    got: s.clone(),
                });
            }
        }
        shapes[inp.id] = s.clone();
    }
    for (&id, t) in &g.constants {
        shapes[id] = t.shape().to_vec();
    }
    for n in &g.nodes {
        let s = node_output_shape(n, &shapes)?;
        // Attributes from a file can imply any size: refuse what no buffer could hold before
        // anything multiplies the dimensions out.
        if s.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).is_none_or(|e| e > MAX_ELEMENTS) {
            return Err(Error::Shape { node: n.name.clone(), op: n.op.kind(), reason: format!("output shape {s:?} has more than 2^40 elements") });
        }
        shapes[n.output] = s;
    }
    Ok(shapes)
}

/// The most elements any value may have (a terabyte of u8 codes, 4 TB of f32).
pub const MAX_ELEMENTS: usize = 1 << 40;

/// The largest stride or dilation of a conv or pooling window.
pub const MAX_STEP: usize = 256;

/// The output shape of one node given the shapes of all values defined before it.
pub fn node_output_shape(n: &Node, shapes: &[Vec<usize>]) -> Result<Vec<usize>> {
    let err = |reason: String| Error::Shape { node: n.name.clone(), op: n.op.kind(), reason };
    let x = &shapes[n.inputs[0]];
    let need4 = |x: &Vec<usize>| -> Result<()> {
        if x.len() == 4 {
            Ok(())
        } else {
            Err(err(format!("expects a 4-D NCHW input, got {x:?}")))
        }
    };
    // Window attributes from a file: strides and dilations up to MAX_STEP, kernels of at least
    // one tap, and a padded input that could exist (the kernels build padded copies of it).
    let window = |x: &Vec<usize>, kernel: [usize; 2], stride: [usize; 2], dil: [usize; 2], pads: [usize; 4]| -> Result<()> {
        if kernel.contains(&0) || !stride.iter().chain(&dil).all(|&v| (1..=MAX_STEP).contains(&v)) {
            return Err(err(format!("kernel {kernel:?}, strides {stride:?} and dilations {dil:?} must be ≥ 1 (strides and dilations ≤ {MAX_STEP})")));
        }
        let padded = x[2].checked_add(pads[0]).and_then(|h| h.checked_add(pads[2])).zip(x[3].checked_add(pads[1]).and_then(|w| w.checked_add(pads[3])));
        let elems = padded.and_then(|(h, w)| x[0].checked_mul(x[1])?.checked_mul(h)?.checked_mul(w));
        if elems.is_none_or(|e| e > MAX_ELEMENTS) {
            return Err(err(format!("pads {pads:?} on input {x:?} make a padded input of more than 2^40 elements")));
        }
        Ok(())
    };
    // Empty tensors (a dim of 0) pass only through the ops that move no values, so that no
    // kernel ever sees one.
    if !matches!(n.op, Op::Identity | Op::Reshape { .. } | Op::Flatten { .. } | Op::Slice { .. } | Op::Reduce(_)) {
        if let Some(e) = n.inputs.iter().map(|&i| &shapes[i]).find(|s| s.contains(&0)) {
            return Err(err(format!("an empty tensor {e:?} reaches it (only Reshape, Flatten, Slice, ReduceMean, ReduceMax and Identity take one)")));
        }
    }
    let out = match &n.op {
        Op::Conv(c) => {
            need4(x)?;
            window(x, c.kernel(), c.stride, c.dilation, c.pads)?;
            if x[1] != c.in_channels() {
                return Err(err(format!("expects {} input channels, got {x:?}", c.in_channels())));
            }
            let [kh, kw] = c.kernel();
            let oh = window_out(x[2], kh, c.stride[0], (c.pads[0], c.pads[2]), c.dilation[0], false);
            let ow = window_out(x[3], kw, c.stride[1], (c.pads[1], c.pads[3]), c.dilation[1], false);
            let (Some(oh), Some(ow)) = (oh, ow) else {
                return Err(err(format!("kernel {kh}x{kw} does not fit input {x:?}")));
            };
            let out = vec![x[0], c.out_channels(), oh, ow];
            bias_fits(c.bias.as_deref(), c.out_channels()).map_err(err)?;
            if c.residual && shapes[n.inputs[1]] != out {
                return Err(err(format!("residual {:?} differs from output {out:?}", shapes[n.inputs[1]])));
            }
            out
        }
        Op::ConvTranspose(c) => {
            need4(x)?;
            window(x, c.kernel(), c.stride, c.dilation, [0; 4])?;
            if x[1] != c.in_channels() {
                return Err(err(format!("expects {} input channels, got {x:?}", c.in_channels())));
            }
            let cout = c.weight.shape()[1].checked_mul(c.groups).ok_or_else(|| err(format!("{} groups of {} output channels overflow", c.groups, c.weight.shape()[1])))?;
            bias_fits(c.bias.as_deref(), cout).map_err(err)?;
            let [kh, kw] = c.kernel();
            let dim = |i: usize, k: usize, s: usize, d: usize, op: usize, pb: usize, pe: usize| {
                s.checked_mul(i.max(1) - 1)?.checked_add(op)?.checked_add(k.checked_sub(1)?.checked_mul(d)?)?.checked_add(1)?.checked_sub(pb.checked_add(pe)?)
            };
            let oh = dim(x[2], kh, c.stride[0], c.dilation[0], c.output_padding[0], c.pads[0], c.pads[2]);
            let ow = dim(x[3], kw, c.stride[1], c.dilation[1], c.output_padding[1], c.pads[1], c.pads[3]);
            match (oh, ow) {
                (Some(oh), Some(ow)) if oh > 0 && ow > 0 => vec![x[0], c.out_channels(), oh, ow],
                _ => return Err(err(format!("pads leave no output for input {x:?}"))),
            }
        }
        Op::BatchNorm(b) => {
            if x.len() < 2 || x[1] != b.gamma.len() {
                return Err(err(format!("expects {} channels, got {x:?}", b.gamma.len())));
            }
            x.clone()
        }
        Op::Act(_) | Op::Identity | Op::FakeQuant(_) => x.clone(),
        Op::Softmax { axis } => {
            if *axis >= x.len() {
                return Err(err(format!("axis {axis} out of range for {x:?}")));
            }
            x.clone()
        }
        Op::Add | Op::Mul | Op::Sub | Op::Div | Op::Pow | Op::PRelu => {
            let y = &shapes[n.inputs[1]];
            broadcast(x, y).ok_or_else(|| err(format!("cannot broadcast {x:?} with {y:?}")))?
        }
        Op::MaxPool(p) | Op::AveragePool(p) => {
            need4(x)?;
            window(x, p.kernel, p.stride, p.dilation, p.pads)?;
            let [oh, ow] = pool_out(p, x[2], x[3]).ok_or_else(|| err(format!("window does not fit input {x:?}")))?;
            vec![x[0], x[1], oh, ow]
        }
        Op::PoolNd(p) => pool_nd_out(p, x).map_err(err)?,
        Op::ConvTransposeNd(c) => {
            let out = conv_transpose_nd_out(c, x).map_err(err)?;
            bias_fits(c.bias.as_deref(), out[1]).map_err(err)?;
            out
        }
        Op::MatMul { b } => matmul_out(x, b.shape()).ok_or_else(|| err(format!("cannot multiply {x:?} by {:?}", b.shape())))?,
        Op::Dropout { .. } => x.clone(),
        Op::GlobalAveragePool | Op::GlobalMaxPool => {
            need4(x)?;
            vec![x[0], x[1], 1, 1]
        }
        Op::Flatten { axis } => {
            if *axis > x.len() {
                return Err(err(format!("axis {axis} out of range for {x:?}")));
            }
            vec![x[..*axis].iter().product(), x[*axis..].iter().product()]
        }
        Op::Reshape { shape, allowzero } => reshape_out(x, shape, *allowzero).map_err(err)?,
        Op::Linear(l) => {
            let [o, i] = [l.weight.shape()[0], l.weight.shape()[1]];
            if x.len() != 2 || x[1] != i {
                return Err(err(format!("expects [N, {i}], got {x:?}")));
            }
            bias_fits(l.bias.as_deref(), o).map_err(err)?;
            vec![x[0], o]
        }
        Op::Concat { axis } => {
            let mut out = x.clone();
            if *axis >= out.len() {
                return Err(err(format!("axis {axis} out of range for {x:?}")));
            }
            for &i in &n.inputs[1..] {
                let y = &shapes[i];
                let same = y.len() == x.len() && y.iter().zip(x).enumerate().all(|(d, (a, b))| d == *axis || a == b);
                if !same {
                    return Err(err(format!("inputs {x:?} and {y:?} differ off axis {axis}")));
                }
                out[*axis] += y[*axis];
            }
            out
        }
        Op::InstanceNorm { scale, bias, .. } => {
            if x.len() < 3 || x[1] != scale.len() || bias.len() != scale.len() {
                return Err(err(format!("expects [N, {}, …] of rank 3 or more, got {x:?}", scale.len())));
            }
            x.clone()
        }
        Op::Transpose { perm } => {
            let mut seen = vec![false; x.len()];
            if perm.len() != x.len() || perm.iter().any(|&p| p >= x.len() || std::mem::replace(&mut seen[p], true)) {
                return Err(err(format!("perm {perm:?} is not a permutation of {x:?}'s axes")));
            }
            perm.iter().map(|&p| x[p]).collect()
        }
        Op::Slice { spec } => {
            if spec.len() != x.len() {
                return Err(err(format!("a slice of {} axes on an input of shape {x:?}", spec.len())));
            }
            x.iter().zip(spec).map(|(&d, &s)| slice_axis(d, s).1).collect()
        }
        Op::Reduce(r) => {
            if r.axes.iter().any(|&a| a >= x.len()) {
                return Err(err(format!("axes {:?} out of range for {x:?}", r.axes)));
            }
            x.iter().enumerate().filter_map(|(a, &d)| if r.axes.contains(&a) { r.keepdims.then_some(1) } else { Some(d) }).collect()
        }
        Op::Pad(p) => {
            if p.pads.len() != x.len() {
                return Err(err(format!("pads for {} axes on an input of shape {x:?}", p.pads.len())));
            }
            let mut out = Vec::with_capacity(x.len());
            for (&d, &[b, e]) in x.iter().zip(&p.pads) {
                match (d as i64).checked_add(b).and_then(|v| v.checked_add(e)) {
                    Some(v) if v > 0 && v as u64 <= MAX_ELEMENTS as u64 => out.push(v as usize),
                    _ => return Err(err(format!("pads {:?} leave no output (or too large a one) for input {x:?}", p.pads))),
                }
            }
            out
        }
        Op::Resize(r) => {
            need4(x)?;
            let [oh, ow] = resize_out(&r.target, x[2], x[3]);
            if oh == 0 || ow == 0 {
                return Err(err(format!("resize of {x:?} gives an empty output")));
            }
            vec![x[0], x[1], oh, ow]
        }
    };
    Ok(out)
}

/// ONNX Slice on one axis of length `d`: `[start, end, step]` → (first index, count), with
/// negative indices counted from the end and both ends clamped as the spec says. A zero step
/// selects nothing.
pub fn slice_axis(d: usize, [start, end, step]: [i64; 3]) -> (usize, usize) {
    let d = d as i64;
    let wrap = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (wrap(start), wrap(end));
    let (first, count) = if step > 0 {
        let (s, e) = (s.clamp(0, d), e.clamp(0, d));
        (s, if e > s { (e - s - 1) / step + 1 } else { 0 })
    } else if step < 0 {
        let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
        (s, if s > e { (s - e - 1) / step.checked_neg().unwrap_or(i64::MAX) + 1 } else { 0 })
    } else {
        (0, 0)
    };
    (first.max(0) as usize, count as usize)
}

/// ONNX Reshape semantics: a `0` entry copies the input's dim, or with `allowzero` is a dim of
/// size 0; one `-1` is inferred (never beside a literal 0).
pub fn reshape_out(x: &[usize], spec: &[i64], allowzero: bool) -> std::result::Result<Vec<usize>, String> {
    let overflow = || format!("reshape of {x:?} to {spec:?} overflows");
    let total = x.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
    let mut out = Vec::with_capacity(spec.len());
    let mut infer = None;
    for (i, &d) in spec.iter().enumerate() {
        match d {
            0 if allowzero => out.push(0),
            0 => out.push(*x.get(i).ok_or_else(|| format!("dim 0 at {i} has no input dim in {x:?}"))?),
            -1 if infer.is_none() => {
                infer = Some(i);
                out.push(1);
            }
            d if d > 0 => out.push(d as usize),
            _ => return Err(format!("invalid target shape {spec:?}")),
        }
    }
    let known = out.iter().try_fold(1usize, |a, &d| a.checked_mul(d)).ok_or_else(overflow)?;
    if let Some(i) = infer {
        if known == 0 || total % known != 0 {
            return Err(format!("cannot reshape {x:?} to {spec:?}"));
        }
        out[i] = total / known;
    } else if known != total {
        return Err(format!("cannot reshape {x:?} to {spec:?}"));
    }
    Ok(out)
}
