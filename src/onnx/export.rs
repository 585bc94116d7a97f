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
    let shapes = crate::graph::shape::infer(g, &[g.input_shape(1)?])?;
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
            Op::Add | Op::Mul => w.node(n.op.kind(), nm, vec![x, vname(n.inputs[1])], &out, vec![]),
            Op::MaxPool(p) => w.node("MaxPool", nm, vec![x], &out, pool_attrs(p, false)),
            Op::AveragePool(p) => w.node("AveragePool", nm, vec![x], &out, pool_attrs(p, true)),
            Op::GlobalAveragePool => w.node("GlobalAveragePool", nm, vec![x], &out, vec![]),
            Op::Flatten { axis } => w.node("Flatten", nm, vec![x], &out, vec![a_int("axis", *axis as i64)]),
            Op::Reshape { shape } => {
                let s = format!("{nm}.shape");
                w.inits.push(tensor_i64(&s, shape));
                w.node("Reshape", nm, vec![x, s], &out, vec![]);
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
                };
                let ins = match r.target {
                    ResizeTarget::Scales([sh, sw]) => {
                        vec![x, String::new(), w.init(format!("{nm}.scales"), &[4], &[1.0, 1.0, sh, sw])]
                    }
                    ResizeTarget::Sizes([h, wd]) => {
                        // sizes = [N, C] of the input (kept dynamic) ++ [h, w].
                        let nc = format!("{nm}.nc");
                        w.node("Shape", &nc, vec![x.clone()], &nc, vec![a_int("start", 0), a_int("end", 2)]);
                        let hw = format!("{nm}.hw");
                        w.inits.push(tensor_i64(&hw, &[h as i64, wd as i64]));
                        let sizes = format!("{nm}.sizes");
                        w.node("Concat", &sizes, vec![nc, hw], &sizes, vec![a_int("axis", 0)]);
                        vec![x, String::new(), String::new(), sizes]
                    }
                };
                let attrs = vec![a_str("mode", mode), a_str("coordinate_transformation_mode", coord), a_str("nearest_mode", nearest)];
                w.node("Resize", nm, ins, &out, attrs);
            }
            Op::Softmax { axis } => w.node("Softmax", nm, vec![x], &out, vec![a_int("axis", *axis as i64)]),
            Op::Identity => w.node("Identity", nm, vec![x], &out, vec![]),
        }
    }
    let input = g.inputs.iter().map(|i| {
        let mut s = i.shape.clone();
        s[0] = 0;
        value_info(&g.values[i.id], Some(&s))
    });
    let graph = pb::GraphProto {
        name: "kestrel".into(),
        node: w.nodes,
        initializer: w.inits,
        input: input.collect(),
        output: g
            .outputs
            .iter()
            .map(|&o| {
                let mut s = shapes[o].clone();
                if let Some(b) = s.first_mut() {
                    *b = 0;
                }
                value_info(&g.values[o], Some(&s))
            })
            .collect(),
        ..Default::default()
    };
    Ok(pb::ModelProto {
        ir_version: IR_VERSION,
        opset_import: vec![pb::OperatorSetIdProto { domain: String::new(), version: OPSET }],
        producer_name: "kestrel".into(),
        producer_version: env!("CARGO_PKG_VERSION").into(),
        graph: Some(graph),
        ..Default::default()
    })
}

/// Serialises an existing ModelProto.
pub fn to_bytes_model(m: &pb::ModelProto) -> Vec<u8> {
    m.encode_to_vec()
}
