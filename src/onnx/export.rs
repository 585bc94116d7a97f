//! [`Graph`] → ONNX (IR version 8, opset 17, f32). Weights become initializers named
//! `{node}.weight` and the like; fused epilogues are written back out as separate Add and
//! activation nodes, which a re-import fuses again into the same computation.

use prost::Message;

use super::pb;
use crate::error::Result;
use crate::graph::*;

/// ONNX IR version written.
pub const IR_VERSION: i64 = 8;
/// Default-domain opset written.
pub const OPSET: i64 = 17;

/// Serialises a graph to ONNX bytes.
pub fn to_bytes(g: &Graph) -> Result<Vec<u8>> {
    Ok(to_model(g)?.encode_to_vec())
}

fn tensor(name: &str, dims: &[usize], data: &[f32]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: pb::tensor_proto::DataType::Float as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn tensor_i64(name: &str, data: &[i64]) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: vec![data.len() as i64],
        data_type: pb::tensor_proto::DataType::Int64 as i32,
        raw_data: data.iter().flat_map(|v| v.to_le_bytes()).collect(),
        ..Default::default()
    }
}

fn a_int(name: &str, i: i64) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: pb::attribute_proto::AttributeType::Int as i32, i, ..Default::default() }
}
fn a_float(name: &str, f: f32) -> pb::AttributeProto {
    pb::AttributeProto { name: name.into(), r#type: pb::attribute_proto::AttributeType::Float as i32, f, ..Default::default() }
}
fn a_ints(name: &str, v: &[usize]) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::Ints as i32,
        ints: v.iter().map(|&x| x as i64).collect(),
        ..Default::default()
    }
}
fn a_str(name: &str, s: &str) -> pb::AttributeProto {
    pb::AttributeProto {
        name: name.into(),
        r#type: pb::attribute_proto::AttributeType::String as i32,
        s: s.as_bytes().to_vec(),
        ..Default::default()
    }
}

/// A float tensor ValueInfo; `dims` of `None` leaves the shape out, a 0 dim becomes `N`.
pub fn value_info(name: &str, dims: Option<&[usize]>) -> pb::ValueInfoProto {
    use pb::tensor_shape_proto::{dimension::Value, Dimension};
    let shape = dims.map(|d| pb::TensorShapeProto {
        dim: d
            .iter()
            .map(|&x| Dimension {
                value: Some(if x == 0 { Value::DimParam("N".into()) } else { Value::DimValue(x as i64) }),
                ..Default::default()
            })
            .collect(),
    });
    pb::ValueInfoProto {
        name: name.to_string(),
        r#type: Some(pb::TypeProto {
            value: Some(pb::type_proto::Value::TensorType(pb::type_proto::Tensor {
                elem_type: pb::tensor_proto::DataType::Float as i32,
                shape,
            })),
            ..Default::default()
        }),
        ..Default::default()
    }
}

struct Writer {
    nodes: Vec<pb::NodeProto>,
    inits: Vec<pb::TensorProto>,
}

impl Writer {
    fn node(&mut self, op: &str, name: &str, inputs: Vec<String>, output: &str, attribute: Vec<pb::AttributeProto>) {
        self.nodes.push(pb::NodeProto {
            op_type: op.into(),
            name: name.into(),
            input: inputs,
            output: vec![output.into()],
            attribute,
            ..Default::default()
        });
    }
    fn init(&mut self, name: String, dims: &[usize], data: &[f32]) -> String {
        self.inits.push(tensor(&name, dims, data));
        name
    }
    fn act(&mut self, a: Activation, name: &str, x: String, out: &str) {
        match a {
            Activation::Relu => self.node("Relu", name, vec![x], out, vec![]),
            Activation::Sigmoid => self.node("Sigmoid", name, vec![x], out, vec![]),
            Activation::LeakyRelu(al) => self.node("LeakyRelu", name, vec![x], out, vec![a_float("alpha", al)]),
            Activation::Clip(lo, hi) => {
                let lo = self.init(format!("{name}.min"), &[], &[lo]);
                let hi = self.init(format!("{name}.max"), &[], &[hi]);
                self.node("Clip", name, vec![x, lo, hi], out, vec![]);
            }
            Activation::Tanh => self.node("Tanh", name, vec![x], out, vec![]),
            Activation::Elu(al) => self.node("Elu", name, vec![x], out, vec![a_float("alpha", al)]),
            Activation::Selu(al, g) => self.node("Selu", name, vec![x], out, vec![a_float("alpha", al), a_float("gamma", g)]),
            Activation::HardSigmoid(al, b) => self.node("HardSigmoid", name, vec![x], out, vec![a_float("alpha", al), a_float("beta", b)]),
            Activation::HardSwish => self.node("HardSwish", name, vec![x], out, vec![]),
            Activation::Mish => self.node("Mish", name, vec![x], out, vec![]),
            Activation::Neg => self.node("Neg", name, vec![x], out, vec![]),
            Activation::Sqrt => self.node("Sqrt", name, vec![x], out, vec![]),
            Activation::Exp => self.node("Exp", name, vec![x], out, vec![]),
            Activation::Pow(p) => {
                let p = self.init(format!("{name}.exponent"), &[], &[p]);
                self.node("Pow", name, vec![x, p], out, vec![]);
            }
        }
    }
}

fn tensor_bytes(name: &str, dims: &[usize], dt: pb::tensor_proto::DataType, raw: Vec<u8>) -> pb::TensorProto {
    pb::TensorProto {
        name: name.to_string(),
        dims: dims.iter().map(|&d| d as i64).collect(),
        data_type: dt as i32,
        raw_data: raw,
        ..Default::default()
    }
}

impl Writer {
    /// `x → QuantizeLinear → DequantizeLinear` (static) or `x → DynamicQuantizeLinear →
    /// DequantizeLinear` (dynamic); returns the dequantized name.
    fn qdq(&mut self, name: &str, x: String, q: ActQuant) -> String {
        let out = format!("{name}.dq");
        match q {
            ActQuant::Static(p) => {
                let s = self.init(format!("{name}.scale"), &[], &[p.scale]);
                let z = format!("{name}.zero_point");
                self.inits.push(tensor_bytes(&z, &[], pb::tensor_proto::DataType::Uint8, vec![p.zero_point]));
                let qv = format!("{name}.q");
                self.node("QuantizeLinear", &format!("{name}.quantize"), vec![x, s.clone(), z.clone()], &qv, vec![]);
                self.node("DequantizeLinear", &format!("{name}.dequantize"), vec![qv, s, z], &out, vec![]);
            }
            ActQuant::Dynamic => {
                let (qv, s, z) = (format!("{name}.q"), format!("{name}.scale"), format!("{name}.zero_point"));
                self.nodes.push(pb::NodeProto {
                    op_type: "DynamicQuantizeLinear".into(),
                    name: format!("{name}.quantize"),
                    input: vec![x],
                    output: vec![qv.clone(), s.clone(), z.clone()],
                    ..Default::default()
                });
                self.node("DequantizeLinear", &format!("{name}.dequantize"), vec![qv, s, z], &out, vec![]);
            }
        }
        out
    }

    /// s8 weights as an initializer behind a per-channel (axis 0) or per-tensor DequantizeLinear.
    fn dq_weights(&mut self, name: &str, dims: &[usize], w: &QWeights) -> String {
        let q = format!("{name}.weight_quantized");
        self.inits.push(tensor_bytes(&q, dims, pb::tensor_proto::DataType::Int8, w.q.iter().map(|&v| v as u8).collect()));
        let out = format!("{name}.weight");
        let (s, z) = (format!("{name}.weight_scale"), format!("{name}.weight_zero_point"));
        if w.per_channel {
            self.init(s.clone(), &[w.scales.len()], &w.scales);
            self.inits.push(tensor_bytes(&z, &[w.scales.len()], pb::tensor_proto::DataType::Int8, vec![0; w.scales.len()]));
            self.node("DequantizeLinear", &format!("{name}.weight_dequantize"), vec![q, s, z], &out, vec![a_int("axis", 0)]);
        } else {
            self.init(s.clone(), &[], &w.scales[..1]);
            self.inits.push(tensor_bytes(&z, &[], pb::tensor_proto::DataType::Int8, vec![0]));
            self.node("DequantizeLinear", &format!("{name}.weight_dequantize"), vec![q, s, z], &out, vec![]);
        }
        out
    }

    /// Conv (float, on given input and weight names) plus its fused epilogue as nodes.
    #[allow(clippy::too_many_arguments)]
    fn conv_nodes(&mut self, nm: &str, c: &Conv2d, x: String, wt: String, residual: Option<String>, out: &str) {
        let mut ins = vec![x, wt];
        if let Some(b) = &c.bias {
            ins.push(self.init(format!("{nm}.bias"), &[b.len()], b));
        }
        let attrs = vec![
            a_ints("kernel_shape", &c.kernel()),
            a_ints("strides", &c.stride),
            a_ints("pads", &c.pads),
            a_ints("dilations", &c.dilation),
            a_int("group", c.groups as i64),
        ];
        let conv_out = if c.residual || c.act.is_some() { format!("{out}.conv") } else { out.to_string() };
        self.node("Conv", nm, ins, &conv_out, attrs);
        let mut cur = conv_out;
        if let Some(r) = residual {
            let add_out = if c.act.is_some() { format!("{out}.add") } else { out.to_string() };
            self.node("Add", &format!("{nm}.add"), vec![cur, r], &add_out, vec![]);
            cur = add_out;
        }
        if let Some(a) = c.act {
            self.act(a, &format!("{nm}.act"), cur, out);
        }
    }
}

fn convt_attrs(c: &ConvTranspose2d) -> Vec<pb::AttributeProto> {
    vec![
        a_ints("kernel_shape", &c.kernel()),
        a_ints("strides", &c.stride),
        a_ints("pads", &c.pads),
        a_ints("dilations", &c.dilation),
        a_ints("output_padding", &c.output_padding),
        a_int("group", c.groups as i64),
    ]
}

fn pool_attrs(p: &Pool2d, avg: bool) -> Vec<pb::AttributeProto> {
    let mut a = vec![a_ints("kernel_shape", &p.kernel), a_ints("strides", &p.stride), a_ints("pads", &p.pads)];
    if p.dilation != [1, 1] {
        a.push(a_ints("dilations", &p.dilation));
    }
    if p.ceil_mode {
        a.push(a_int("ceil_mode", 1));
    }
    if avg && p.count_include_pad {
        a.push(a_int("count_include_pad", 1));
    }
    a
}

/// Builds the ModelProto.
pub fn to_model(g: &Graph) -> Result<pb::ModelProto> {
    g.validate()?;
    let op_set = opset(g);
    // Shapes at the declared input shape; the batch (dim 0) is written symbolic only when the
    // graph also accepts another batch (a Reshape to fixed dims or a Concat with a constant
    // pins it).
    let declared = g.inputs.first().map(|i| i.shape.clone()).ok_or_else(|| crate::error::Error::Config("graph has no input".into()))?;
    let shapes = crate::graph::shape::infer(g, std::slice::from_ref(&declared))?;
    let batch_free = declared.first().is_some_and(|&b| {
        let mut other = declared.clone();
        other[0] = b + 1;
        crate::graph::shape::infer(g, &[other]).is_ok()
    });
    let mut w = Writer { nodes: Vec::new(), inits: Vec::new() };
    let vname = |v: ValueId| g.values[v].clone();
    for (&id, t) in &g.constants {
        w.init(vname(id), t.shape(), t.data());
    }
    for n in &g.nodes {
        let x = vname(n.inputs[0]);
        let out = vname(n.output);
        let nm = n.name.as_str();
        match &n.op {
            Op::Conv(c) => {
                let (xin, wt) = match c.precision.int8() {
                    Some(q) => (w.qdq(&format!("{nm}.input"), x, q.input), w.dq_weights(nm, c.weight.shape(), &q.weights)),
                    None => (x, w.init(format!("{nm}.weight"), c.weight.shape(), c.weight.data())),
                };
                let residual = c.residual.then(|| vname(n.inputs[1]));
                w.conv_nodes(nm, c, xin, wt, residual, &out);
            }
            Op::ConvTranspose(c) => {
                let (xin, wt) = match c.precision.int8() {
                    Some(q) => {
                        let xin = w.qdq(&format!("{nm}.input"), x, q.input);
                        let wq = format!("{nm}.weight_quantized");
                        w.inits.push(tensor_bytes(&wq, c.weight.shape(), pb::tensor_proto::DataType::Int8, q.weights.q.iter().map(|&v| v as u8).collect()));
                        let (sc, zp, wt) = (format!("{nm}.weight_scale"), format!("{nm}.weight_zero_point"), format!("{nm}.weight"));
                        let n_s = if q.weights.per_channel { q.weights.scales.len() } else { 1 };
                        let dims: &[usize] = if q.weights.per_channel { &[n_s] } else { &[] };
                        w.init(sc.clone(), dims, &q.weights.scales[..n_s]);
                        w.inits.push(tensor_bytes(&zp, dims, pb::tensor_proto::DataType::Int8, vec![0; n_s]));
                        let axis = if q.weights.per_channel { vec![a_int("axis", 1)] } else { vec![] };
                        w.node("DequantizeLinear", &format!("{nm}.weight_dequantize"), vec![wq, sc, zp], &wt, axis);
                        (xin, wt)
                    }
                    None => (x, w.init(format!("{nm}.weight"), c.weight.shape(), c.weight.data())),
                };
                let mut ins = vec![xin, wt];
                if let Some(b) = &c.bias {
                    ins.push(w.init(format!("{nm}.bias"), &[b.len()], b));
                }
                let attrs = convt_attrs(c);
                w.node("ConvTranspose", nm, ins, &out, attrs);
            }
            Op::ConvTransposeNd(c) => {
                let ws = c.weight.shape();
                let mut ins = vec![x, w.init(format!("{nm}.weight"), ws, c.weight.data())];
                if let Some(b) = &c.bias {
                    ins.push(w.init(format!("{nm}.bias"), &[b.len()], b));
                }
                let attrs = vec![
                    a_ints("kernel_shape", &ws[2..]),
                    a_ints("strides", &c.stride),
                    a_ints("pads", &c.pads),
                    a_ints("dilations", &c.dilation),
                    a_ints("output_padding", &c.output_padding),
                    a_int("group", c.groups as i64),
                ];
                w.node("ConvTranspose", nm, ins, &out, attrs);
            }
            Op::FakeQuant(q) => {
                let dq = w.qdq(nm, x, *q);
                w.node("Identity", &format!("{nm}.out"), vec![dq], &out, vec![]);
            }
            Op::BatchNorm(b) => {
                let c = b.gamma.len();
                let ins = vec![
                    x,
                    w.init(format!("{nm}.weight"), &[c], &b.gamma),
                    w.init(format!("{nm}.bias"), &[c], &b.beta),
                    w.init(format!("{nm}.running_mean"), &[c], &b.mean),
                    w.init(format!("{nm}.running_var"), &[c], &b.var),
                ];
                w.node("BatchNormalization", nm, ins, &out, vec![a_float("epsilon", b.eps)]);
            }
            Op::Act(a) => w.act(*a, nm, x, &out),
            Op::Add | Op::Mul | Op::Sub | Op::Div | Op::Pow | Op::PRelu => w.node(n.op.kind(), nm, vec![x, vname(n.inputs[1])], &out, vec![]),
            Op::Transpose { perm } => w.node("Transpose", nm, vec![x], &out, vec![a_ints("perm", perm)]),
            Op::InstanceNorm { scale, bias, eps } => {
                let s = w.init(format!("{nm}.scale"), &[scale.len()], scale);
                let b = w.init(format!("{nm}.bias"), &[bias.len()], bias);
                w.node("InstanceNormalization", nm, vec![x, s, b], &out, vec![a_float("epsilon", *eps)]);
            }
            Op::Slice { spec } => {
                let mut names = Vec::new();
                for (k, vals) in [("starts", 0), ("ends", 1), ("axes", 3), ("steps", 2)] {
                    let v: Vec<i64> = spec.iter().enumerate().map(|(a, s)| if vals == 3 { a as i64 } else { s[vals] }).collect();
                    let name = format!("{nm}.{k}");
                    w.inits.push(tensor_i64(&name, &v));
                    names.push(name);
                }
                let mut ins = vec![x];
                ins.extend(names);
                w.node("Slice", nm, ins, &out, vec![]);
            }
            Op::Reduce(r) => {
                let mut attrs = vec![a_int("keepdims", i64::from(r.keepdims))];
                let mut ins = vec![x];
                // Opset 18 moved ReduceMean's and ReduceMax's axes from an attribute to an input.
                if op_set >= 18 {
                    let axes = format!("{nm}.axes");
                    w.inits.push(tensor_i64(&axes, &r.axes.iter().map(|&a| a as i64).collect::<Vec<_>>()));
                    ins.push(axes);
                } else {
                    attrs.push(a_ints("axes", &r.axes));
                }
                w.node(n.op.kind(), nm, ins, &out, attrs);
            }
            Op::Pad(p) => {
                let raw: Vec<i64> = p.pads.iter().map(|b| b[0]).chain(p.pads.iter().map(|b| b[1])).collect();
                let pads = format!("{nm}.pads");
                w.inits.push(tensor_i64(&pads, &raw));
                let value = w.init(format!("{nm}.value"), &[], &[p.value]);
                let mode = match p.mode {
                    PadMode::Constant => "constant",
                    PadMode::Reflect => "reflect",
                    PadMode::Edge => "edge",
                    PadMode::Wrap => "wrap",
                };
                w.node("Pad", nm, vec![x, pads, value], &out, vec![a_str("mode", mode)]);
            }
            Op::MaxPool(p) => w.node("MaxPool", nm, vec![x], &out, pool_attrs(p, false)),
            Op::AveragePool(p) => w.node("AveragePool", nm, vec![x], &out, pool_attrs(p, true)),
            Op::PoolNd(p) => {
                let mut a = vec![a_ints("kernel_shape", &p.kernel), a_ints("strides", &p.stride), a_ints("pads", &p.pads)];
                if p.dilation.iter().any(|&d| d != 1) {
                    a.push(a_ints("dilations", &p.dilation));
                }
                if p.ceil_mode {
                    a.push(a_int("ceil_mode", 1));
                }
                if !p.max && p.count_include_pad {
                    a.push(a_int("count_include_pad", 1));
                }
                w.node(n.op.kind(), nm, vec![x], &out, a);
            }
            Op::MatMul { b } => {
                let bn = w.init(format!("{nm}.b"), b.shape(), b.data());
                w.node("MatMul", nm, vec![x, bn], &out, vec![]);
            }
            Op::Dropout { ratio, seed } => {
                let r = w.init(format!("{nm}.ratio"), &[], &[*ratio]);
                let t = format!("{nm}.training_mode");
                w.inits.push(tensor_bytes(&t, &[], pb::tensor_proto::DataType::Bool, vec![1]));
                w.node("Dropout", nm, vec![x, r, t], &out, vec![a_int("seed", i64::from(*seed))]);
            }
            Op::GlobalAveragePool => w.node("GlobalAveragePool", nm, vec![x], &out, vec![]),
            Op::GlobalMaxPool => w.node("GlobalMaxPool", nm, vec![x], &out, vec![]),
            Op::Flatten { axis } => w.node("Flatten", nm, vec![x], &out, vec![a_int("axis", *axis as i64)]),
            Op::Reshape { shape, allowzero } => {
                let s = format!("{nm}.shape");
                w.inits.push(tensor_i64(&s, shape));
                w.node("Reshape", nm, vec![x, s], &out, if *allowzero { vec![a_int("allowzero", 1)] } else { vec![] });
            }
            Op::Linear(l) => {
                let mut ins = match l.precision.int8() {
                    Some(q) => vec![w.qdq(&format!("{nm}.input"), x, q.input), w.dq_weights(nm, l.weight.shape(), &q.weights)],
                    None => vec![x, w.init(format!("{nm}.weight"), l.weight.shape(), l.weight.data())],
                };
                if let Some(b) = &l.bias {
                    ins.push(w.init(format!("{nm}.bias"), &[b.len()], b));
                }
                w.node("Gemm", nm, ins, &out, vec![a_int("transB", 1)]);
            }
            Op::Concat { axis } => {
                let ins = n.inputs.iter().map(|&v| vname(v)).collect();
                w.node("Concat", nm, ins, &out, vec![a_int("axis", *axis as i64)]);
            }
            Op::Resize(r) => {
                let (mode, nearest) = match r.mode {
                    ResizeMode::Linear => ("linear", "round_prefer_floor"),
                    ResizeMode::Cubic { .. } => ("cubic", "round_prefer_floor"),
                    ResizeMode::Nearest(m) => (
                        "nearest",
                        match m {
                            NearestMode::RoundPreferFloor => "round_prefer_floor",
                            NearestMode::RoundPreferCeil => "round_prefer_ceil",
                            NearestMode::Floor => "floor",
                            NearestMode::Ceil => "ceil",
                        },
                    ),
                };
                let coord = match r.coord {
                    CoordMode::HalfPixel => "half_pixel",
                    CoordMode::PytorchHalfPixel => "pytorch_half_pixel",
                    CoordMode::AlignCorners => "align_corners",
                    CoordMode::Asymmetric => "asymmetric",
                    CoordMode::HalfPixelSymmetric => "half_pixel_symmetric",
                    CoordMode::TfCropAndResize => "tf_crop_and_resize",
                };
                let roi = if r.coord == CoordMode::TfCropAndResize {
                    let [h0, w0, h1, w1] = r.roi;
                    w.init(format!("{nm}.roi"), &[8], &[0.0, 0.0, h0, w0, 1.0, 1.0, h1, w1])
                } else {
                    String::new()
                };
                let mut attrs = vec![a_str("mode", mode), a_str("coordinate_transformation_mode", coord), a_str("nearest_mode", nearest)];
                let sizes = |w: &mut Writer, [h, wd]: [usize; 2]| {
                    // sizes = [N, C] of the input (kept dynamic) ++ [h, w].
                    let nc = format!("{nm}.nc");
                    w.node("Shape", &nc, vec![x.clone()], &nc, vec![a_int("start", 0), a_int("end", 2)]);
                    let hw = format!("{nm}.hw");
                    w.inits.push(tensor_i64(&hw, &[h as i64, wd as i64]));
                    let sizes = format!("{nm}.sizes");
                    w.node("Concat", &sizes, vec![nc, hw], &sizes, vec![a_int("axis", 0)]);
                    sizes
                };
                let ins = match r.target {
                    ResizeTarget::Scales([sh, sw]) => {
                        vec![x.clone(), roi, w.init(format!("{nm}.scales"), &[4], &[1.0, 1.0, sh, sw])]
                    }
                    ResizeTarget::Sizes(hw) => vec![x.clone(), roi, String::new(), sizes(&mut w, hw)],
                    ResizeTarget::KeepAspect { sizes: hw, policy, unit_axes } => {
                        let policy = match policy {
                            AspectPolicy::NotLarger => "not_larger",
                            AspectPolicy::NotSmaller => "not_smaller",
                        };
                        attrs.push(a_str("keep_aspect_ratio_policy", policy));
                        if unit_axes {
                            vec![x.clone(), roi, String::new(), sizes(&mut w, hw)]
                        } else {
                            // The policy over H and W only: axes [2, 3], sizes for those two.
                            attrs.push(a_ints("axes", &[2, 3]));
                            let hw_name = format!("{nm}.sizes");
                            w.inits.push(tensor_i64(&hw_name, &[hw[0] as i64, hw[1] as i64]));
                            vec![x.clone(), roi, String::new(), hw_name]
                        }
                    }
                };
                if let ResizeMode::Cubic { a } = r.mode {
                    attrs.push(a_float("cubic_coeff_a", a));
                }
                if r.antialias {
                    attrs.push(a_int("antialias", 1));
                }
                if r.exclude_outside {
                    attrs.push(a_int("exclude_outside", 1));
                }
                if r.coord == CoordMode::TfCropAndResize {
                    attrs.push(a_float("extrapolation_value", r.extrapolation));
                }
                w.node("Resize", nm, ins, &out, attrs);
            }
            Op::Softmax { axis } => w.node("Softmax", nm, vec![x], &out, vec![a_int("axis", *axis as i64)]),
            Op::Identity => w.node("Identity", nm, vec![x], &out, vec![]),
        }
    }
    let symbolic = |mut s: Vec<usize>| {
        if let Some(b) = s.first_mut().filter(|_| batch_free) {
            *b = 0;
        }
        s
    };
    let input = g.inputs.iter().map(|i| value_info(&g.values[i.id], Some(&symbolic(i.shape.clone()))));
    let graph = pb::GraphProto {
        name: "kestrel".into(),
        node: w.nodes,
        initializer: w.inits,
        input: input.collect(),
        output: g
            .outputs
            .iter()
            .map(|&o| value_info(&g.values[o], Some(&symbolic(shapes[o].clone()))))
            .collect(),
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: op_set }],
        producer_name: "kestrel".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    })
}

/// The opset a graph is written at: [`OPSET`], or the first that has what a node uses:
/// 18 for Resize's antialias and keep_aspect_ratio_policy and for Mish, 19 for Resize's
/// half_pixel_symmetric, Pad's wrap mode and AveragePool's dilations. Of the other ops this
/// exporter writes, opset 18 changed ReduceMean and ReduceMax (axes become an input, and are
/// written so); Reshape, Shape, Concat and Q/DQ on u8/s8 keep their meaning.
fn opset(g: &Graph) -> i64 {
    let needs = |n: &Node| match &n.op {
        Op::Resize(r) if r.coord == CoordMode::HalfPixelSymmetric => 19,
        Op::AveragePool(p) if p.dilation != [1, 1] => 19,
        Op::PoolNd(p) if !p.max && p.dilation.iter().any(|&d| d != 1) => 19,
        Op::Pad(p) if p.mode == PadMode::Wrap => 19,
        Op::Resize(r) if r.antialias || matches!(r.target, ResizeTarget::KeepAspect { .. }) => 18,
        Op::Act(Activation::Mish) => 18,
        Op::Conv(c) if c.act == Some(Activation::Mish) => 18,
        _ => OPSET,
    };
    g.nodes.iter().map(needs).max().unwrap_or(OPSET).max(OPSET)
}

/// Serialises an existing ModelProto.
pub fn to_bytes_model(m: &pb::ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}
