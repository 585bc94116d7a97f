//! ONNX → [`Graph`]. Runtime tensors become graph values; initializers and `Constant`s stay
//! host constants; `Shape` of a runtime tensor becomes a symbolic dim list (batch stays
//! symbolic) so that the Shape/Gather/Unsqueeze/Concat chains `torch.onnx.export` writes
//! for `flatten` fold into a constant-spec Reshape.

use std::collections::{HashMap, HashSet};

use super::pb;
use super::proto::{tensor_data, tensor_data_in, Data};
use super::ImportOptions;
use crate::error::{Error, Result};
use crate::graph::shape::{node_output_shape, MAX_ELEMENTS};
use crate::graph::*;
use crate::qparams::QParams;
use crate::tensor::Tensor;

/// One dim of a symbolic shape: the free batch or a known size.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Dim {
    Batch,
    Known(i64),
}

/// What an ONNX tensor name stands for during import.
#[derive(Clone, Debug)]
enum Sym {
    Runtime(ValueId),
    F32(Vec<usize>, Vec<f32>),
    I64(Vec<usize>, Vec<i64>),
    Dims(Vec<Dim>, bool),
    /// The u8 output of QuantizeLinear / DynamicQuantizeLinear on a runtime value.
    Quant(ValueId, ActQuant),
    /// The scale or zero point output of DynamicQuantizeLinear.
    DynParam,
}

struct Importer<'a> {
    g: Graph,
    syms: HashMap<String, Sym>,
    /// Static shape (batch as declared) of every runtime value, for Shape and auto_pad.
    shapes: Vec<Vec<usize>>,
    node: &'a pb::NodeProto,
    opset: i64,
    /// ONNX data type of integer constants, by name.
    int_dtype: HashMap<String, i32>,
    /// s8 weights behind a DequantizeLinear, by the DequantizeLinear's output name.
    qweights: HashMap<String, QWeights>,
    /// The same for rank-4 weights quantized along axis 1 (ConvTranspose's output channels);
    /// `scales` has one entry per axis-1 index.
    qweights_axis1: HashMap<String, QWeights>,
    /// FakeQuant outputs: their source value and parameters.
    fake_of: HashMap<ValueId, (ValueId, ActQuant)>,
    /// Every name a node or the graph's outputs read: an op's extra outputs (MaxPool indices,
    /// Dropout's mask, BatchNorm's running statistics) are accepted when nothing reads them.
    read: HashSet<String>,
}

/// Converts a decoded ModelProto into a graph.
pub fn import(m: &pb::ModelProto, opts: &ImportOptions) -> Result<Graph> {
    let gp = m.graph.as_ref().ok_or_else(|| Error::Config("ONNX model has no graph".into()))?;
    let opset = m.opset_import.iter().find(|o| o.domain.is_empty() || o.domain == "ai.onnx").map_or(13, |o| o.version);
    let empty = pb::NodeProto::default();
    let mut im = Importer {
        g: Graph::default(),
        syms: HashMap::new(),
        shapes: Vec::new(),
        node: &empty,
        opset,
        int_dtype: HashMap::new(),
        qweights: HashMap::new(),
        qweights_axis1: HashMap::new(),
        fake_of: HashMap::new(),
        read: gp.node.iter().flat_map(|n| n.input.iter()).chain(gp.output.iter().map(|o| &o.name)).filter(|n| !n.is_empty()).cloned().collect(),
    };
    for t in &gp.initializer {
        im.int_dtype.insert(t.name.clone(), t.data_type);
        let (shape, data) = tensor_data_in(t, opts.base_dir.as_deref())?;
        im.syms.insert(t.name.clone(), from_data(shape, data));
    }
    for vi in &gp.input {
        if im.syms.contains_key(&vi.name) {
            continue; // an initializer listed as an input (IR < 4)
        }
        let shape = input_shape(vi, opts)?;
        let id = im.g.add_input(vi.name.clone(), shape.clone());
        im.set_shape(id, shape);
        im.syms.insert(vi.name.clone(), Sym::Runtime(id));
    }
    if im.g.inputs.len() != 1 {
        return Err(Error::Config(format!("kestrel runs single-input models; this one has {} inputs", im.g.inputs.len())));
    }
    for node in &gp.node {
        im.node = node;
        im.node(node)?;
    }
    for vo in &gp.output {
        match im.syms.get(&vo.name) {
            Some(Sym::Runtime(id)) => im.g.outputs.push(*id),
            Some(Sym::F32(s, d)) => {
                let t = Tensor::new(s.clone(), d.clone())?;
                let id = im.g.add_constant(vo.name.clone(), t);
                im.g.outputs.push(id);
            }
            _ => return Err(Error::Config(format!("graph output '{}' is not an f32 tensor kestrel computes", vo.name))),
        }
    }
    im.g.validate()?;
    Ok(im.g)
}

fn from_data(shape: Vec<usize>, data: Data) -> Sym {
    match data {
        Data::F32(v) => Sym::F32(shape, v),
        Data::I64(v) => Sym::I64(shape, v),
    }
}

fn input_shape(vi: &pb::ValueInfoProto, opts: &ImportOptions) -> Result<Vec<usize>> {
    let bad = |reason: String| Error::InputShape { name: vi.name.clone(), expected: "a float tensor".into(), got: vec![] }.with(reason);
    let Some(pb::type_proto::Value::TensorType(tt)) = vi.r#type.as_ref().and_then(|t| t.value.as_ref()) else {
        return Err(bad("is not a tensor".into()));
    };
    if tt.elem_type != pb::tensor_proto::DataType::Float as i32 {
        return Err(bad(format!("has element type {}, kestrel takes float32 inputs", tt.elem_type)));
    }
    let dims: Vec<Option<usize>> = tt
        .shape
        .as_ref()
        .map(|s| {
            s.dim
                .iter()
                .map(|d| match d.value {
                    Some(pb::tensor_shape_proto::dimension::Value::DimValue(v)) if v > 0 => Some(v as usize),
                    _ => None,
                })
                .collect()
        })
        .unwrap_or_default();
    if let Some(s) = &opts.input_shape {
        if s.len() != dims.len() || s.iter().zip(&dims).any(|(a, b)| b.is_some_and(|b| b != *a) && s[0] != *a) {
            return Err(bad(format!("declared {dims:?} does not accept {s:?}")));
        }
        return Ok(s.clone());
    }
    let mut out = Vec::with_capacity(dims.len());
    for (i, d) in dims.iter().enumerate() {
        match d {
            Some(v) => out.push(*v),
            None if i == 0 => out.push(1),
            None => return Err(bad(format!("dim {i} is symbolic; give a concrete input shape"))),
        }
    }
    Ok(out)
}

trait With {
    fn with(self, reason: String) -> Error;
}
impl With for Error {
    fn with(self, reason: String) -> Error {
        match self {
            Error::InputShape { name, .. } => Error::Config(format!("ONNX input '{name}' {reason}")),
            e => e,
        }
    }
}

fn attr<'n>(node: &'n pb::NodeProto, name: &str) -> Option<&'n pb::AttributeProto> {
    node.attribute.iter().find(|a| a.name == name)
}

impl Importer<'_> {
    fn err(&self, reason: impl Into<String>) -> Error {
        Error::OnnxUnsupported { node: self.node.name.clone(), op: self.node.op_type.clone(), reason: reason.into() }
    }

    fn set_shape(&mut self, id: ValueId, s: Vec<usize>) {
        if self.shapes.len() <= id {
            self.shapes.resize(id + 1, Vec::new());
        }
        self.shapes[id] = s;
    }

    fn int(&self, name: &str, default: i64) -> i64 {
        attr(self.node, name).map_or(default, |a| a.i)
    }
    fn float(&self, name: &str, default: f32) -> f32 {
        attr(self.node, name).map_or(default, |a| a.f)
    }
    fn ints(&self, name: &str) -> Option<Vec<i64>> {
        attr(self.node, name).map(|a| a.ints.clone())
    }
    fn string(&self, name: &str, default: &str) -> String {
        attr(self.node, name).map_or(default.to_string(), |a| String::from_utf8_lossy(&a.s).into_owned())
    }

    /// Refuses attributes this importer does not know for the current op.
    fn only_attrs(&self, known: &[&str]) -> Result<()> {
        for a in &self.node.attribute {
            if !known.contains(&a.name.as_str()) {
                return Err(self.err(format!("attribute '{}' is not supported", a.name)));
            }
        }
        Ok(())
    }

    fn input(&self, i: usize) -> Option<&Sym> {
        let name = self.node.input.get(i)?;
        if name.is_empty() {
            return None;
        }
        self.syms.get(name)
    }

    fn need(&self, i: usize) -> Result<&Sym> {
        let name = self.node.input.get(i).ok_or_else(|| self.err(format!("missing input {i}")))?;
        self.syms.get(name).ok_or_else(|| self.err(format!("input '{name}' is not defined")))
    }

    fn runtime(&self, i: usize) -> Result<ValueId> {
        match self.need(i)? {
            Sym::Runtime(id) => Ok(*id),
            _ => Err(self.err(format!("input {i} must be a runtime tensor, not a constant"))),
        }
    }

    fn const_f32(&self, i: usize) -> Result<(Vec<usize>, Vec<f32>)> {
        match self.need(i)? {
            Sym::F32(s, d) => Ok((s.clone(), d.clone())),
            Sym::I64(s, d) => Ok((s.clone(), d.iter().map(|&v| v as f32).collect())),
            _ => Err(self.err(format!("input {i} must be a constant (initializer)"))),
        }
    }

    fn const_i64(&self, i: usize) -> Result<Vec<i64>> {
        match self.need(i)? {
            Sym::I64(_, d) => Ok(d.clone()),
            Sym::Dims(d, _) if d.iter().all(|x| matches!(x, Dim::Known(_))) => {
                Ok(d.iter().map(|x| if let Dim::Known(v) = x { *v } else { 0 }).collect())
            }
            _ => Err(self.err(format!("input {i} must be a constant integer tensor"))),
        }
    }

    /// Appends a kestrel node named after the ONNX node; its value takes `out_name`.
    fn emit(&mut self, op: Op, inputs: Vec<ValueId>, out_name: &str) -> Result<ValueId> {
        let name = if self.node.name.is_empty() { out_name.to_string() } else { self.node.name.clone() };
        let id = self.g.push(name, op, inputs);
        self.g.values[id] = out_name.to_string();
        let shapes = &self.shapes;
        let s = node_output_shape(&self.g.nodes[self.g.nodes.len() - 1], shapes)?;
        self.set_shape(id, s);
        Ok(id)
    }

    fn bind(&mut self, id: ValueId) {
        if let Some(o) = self.node.output.first() {
            self.syms.insert(o.clone(), Sym::Runtime(id));
        }
    }

    fn out0(&self) -> Result<String> {
        self.node.output.first().cloned().ok_or_else(|| self.err("has no output"))
    }

    fn emit1(&mut self, op: Op, inputs: Vec<ValueId>) -> Result<()> {
        let out = self.out0()?;
        let id = self.emit(op, inputs, &out)?;
        self.bind(id);
        Ok(())
    }

    /// Extra outputs (MaxPool indices, BatchNorm running stats, Dropout's mask) must be
    /// unused by the graph.
    fn single_output(&self) -> Result<()> {
        if let Some(o) = self.node.output.iter().skip(1).find(|o| self.read.contains(*o)) {
            return Err(self.err(format!("output '{}' is read, and only the first output is supported", o.escape_debug())));
        }
        Ok(())
    }

    /// Appends a helper node of a multi-node lowering: node and value named after the ONNX
    /// node's output with `.{suffix}`, so that every node name stays unique.
    fn emit_aux(&mut self, op: Op, inputs: Vec<ValueId>, suffix: &str) -> Result<ValueId> {
        let out = format!("{}.{suffix}", self.out0()?);
        let id = self.g.push(out.clone(), op, inputs);
        let s = node_output_shape(&self.g.nodes[self.g.nodes.len() - 1], &self.shapes)?;
        self.set_shape(id, s);
        Ok(id)
    }

    /// A constant value of the graph (for Add, Mul and the other binary ops).
    fn aux_constant(&mut self, suffix: &str, t: Tensor) -> Result<ValueId> {
        let name = format!("{}.{suffix}", self.out0()?);
        let s = t.shape().to_vec();
        let id = self.g.add_constant(name, t);
        self.set_shape(id, s);
        Ok(id)
    }

    fn spatial(&self, name: &str, default: [usize; 2]) -> Result<[usize; 2]> {
        match self.ints(name) {
            None => Ok(default),
            Some(v) if v.len() == 2 && v.iter().all(|&x| x >= 0) => Ok([v[0] as usize, v[1] as usize]),
            Some(v) => Err(self.err(format!("{name} {v:?}: only 2-D (NCHW) is supported"))),
        }
    }

    /// Resolved `[top, left, bottom, right]` pads, honouring `auto_pad`.
    fn pads(&self, x: ValueId, kernel: [usize; 2], stride: [usize; 2], dil: [usize; 2]) -> Result<[usize; 4]> {
        let auto = self.string("auto_pad", "NOTSET");
        match auto.as_str() {
            "NOTSET" => match self.ints("pads") {
                None => Ok([0; 4]),
                Some(p) if p.len() == 4 && p.iter().all(|&v| v >= 0) => Ok([p[0] as usize, p[1] as usize, p[2] as usize, p[3] as usize]),
                Some(p) => Err(self.err(format!("pads {p:?}: expected 4 non-negative values"))),
            },
            "VALID" => Ok([0; 4]),
            "SAME_UPPER" | "SAME_LOWER" => {
                let s = &self.shapes[x];
                let mut pads = [0; 4];
                for a in 0..2 {
                    let Some(&inp) = s.get(2 + a).filter(|_| s.len() == 4) else {
                        return Err(self.err(format!("auto_pad {auto} on an input of shape {s:?}: only NCHW is supported")));
                    };
                    let out = inp.div_ceil(stride[a].max(1));
                    let eff = kernel[a].saturating_sub(1).saturating_mul(dil[a]).saturating_add(1);
                    let total = out.saturating_sub(1).saturating_mul(stride[a]).saturating_add(eff).saturating_sub(inp);
                    let (small, big) = (total / 2, total - total / 2);
                    let (b, e) = if auto == "SAME_UPPER" { (small, big) } else { (big, small) };
                    pads[a] = b;
                    pads[a + 2] = e;
                }
                Ok(pads)
            }
            other => Err(self.err(format!("auto_pad '{other}' is not supported"))),
        }
    }

    fn node(&mut self, node: &pb::NodeProto) -> Result<()> {
        if !(node.domain.is_empty() || node.domain == "ai.onnx") {
            return Err(self.err(format!("domain '{}' is not supported", node.domain)));
        }
        match node.op_type.as_str() {
            "Conv" => self.conv(),
            "ConvTranspose" => self.conv_transpose(),
            "BatchNormalization" => self.batchnorm(),
            "Relu" => self.act(Activation::Relu, &[]),
            "Sigmoid" => self.act(Activation::Sigmoid, &[]),
            "LeakyRelu" => self.act(Activation::LeakyRelu(self.float("alpha", 0.01)), &["alpha"]),
            "Tanh" => self.act(Activation::Tanh, &[]),
            "Elu" => self.act(Activation::Elu(self.float("alpha", 1.0)), &["alpha"]),
            "Selu" => self.act(Activation::Selu(self.float("alpha", 1.673_263_2), self.float("gamma", 1.050_701)), &["alpha", "gamma"]),
            "HardSigmoid" => self.act(Activation::HardSigmoid(self.float("alpha", 0.2), self.float("beta", 0.5)), &["alpha", "beta"]),
            "HardSwish" => self.act(Activation::HardSwish, &[]),
            "Mish" => self.act(Activation::Mish, &[]),
            "Neg" => self.act(Activation::Neg, &[]),
            "Sqrt" => self.act(Activation::Sqrt, &[]),
            "Exp" => self.act(Activation::Exp, &[]),
            "Pow" => self.pow(),
            "Pad" => self.pad(),
            "Clip" => self.clip(),
            "Add" | "Mul" | "Sub" | "Div" | "PRelu" => self.binary(),
            "InstanceNormalization" => self.instance_norm(),
            "Transpose" => {
                self.only_attrs(&["perm"])?;
                let x = self.runtime(0)?;
                let rank = self.shapes[x].len();
                let perm = match self.ints("perm") {
                    Some(p) => p.iter().map(|&a| usize::try_from(a).map_err(|_| self.err(format!("perm {p:?}")))).collect::<Result<Vec<_>>>()?,
                    None => (0..rank).rev().collect(),
                };
                self.emit1(Op::Transpose { perm }, vec![x])
            }
            "Split" => self.split(),
            "MaxPool" | "AveragePool" => self.pool(),
            "GlobalAveragePool" | "GlobalMaxPool" => {
                self.only_attrs(&[])?;
                let x = self.runtime(0)?;
                let op = if node.op_type == "GlobalMaxPool" { Op::GlobalMaxPool } else { Op::GlobalAveragePool };
                self.emit1(op, vec![x])
            }
            "ReduceMean" | "ReduceMax" => self.reduce(),
            "Flatten" => self.flatten(),
            "Reshape" => self.reshape(),
            "Gemm" => self.gemm(),
            "MatMul" => self.matmul(),
            "Concat" => self.concat(),
            "Resize" | "Upsample" => self.resize(),
            "Softmax" => self.softmax(),
            "Identity" => self.identity(),
            "Dropout" => self.dropout(),
            "Constant" => self.constant(),
            "Shape" => self.shape_op(),
            "Gather" => self.gather(),
            "Unsqueeze" => self.unsqueeze(),
            "Squeeze" => self.squeeze(),
            "Cast" => self.cast(),
            "Slice" => self.slice(),
            "QuantizeLinear" => self.quantize_linear(),
            "DynamicQuantizeLinear" => self.dynamic_quantize_linear(),
            "DequantizeLinear" => self.dequantize_linear(),
            other => Err(self.err(format!("op '{other}' is not supported"))),
        }
    }

    fn conv(&mut self) -> Result<()> {
        self.only_attrs(&["kernel_shape", "strides", "pads", "dilations", "group", "auto_pad"])?;
        let x = self.runtime(0)?;
        let (ws, w) = self.const_f32(1)?;
        if ws.len() != 4 {
            return Err(self.err(format!("weight shape {ws:?}: only 2-D convolution is supported")));
        }
        let groups = self.int("group", 1);
        if groups < 1 || ws[0] % groups as usize != 0 {
            return Err(self.err(format!("group {groups} does not divide {} output channels", ws[0])));
        }
        let kernel = self.spatial("kernel_shape", [ws[2], ws[3]])?;
        if kernel != [ws[2], ws[3]] {
            return Err(self.err(format!("kernel_shape {kernel:?} disagrees with weight {ws:?}")));
        }
        let stride = self.spatial("strides", [1, 1])?;
        let dilation = self.spatial("dilations", [1, 1])?;
        if stride.contains(&0) || dilation.contains(&0) {
            return Err(self.err("strides and dilations must be positive"));
        }
        let pads = self.pads(x, kernel, stride, dilation)?;
        let bias = match self.input(2) {
            None => None,
            Some(_) => Some(self.const_f32(2)?.1),
        };
        if bias.as_ref().is_some_and(|b| b.len() != ws[0]) {
            return Err(self.err(format!("bias length differs from {} output channels", ws[0])));
        }
        let weight = Tensor::new(ws, w)?;
        let c = Conv2d { weight, bias, stride, pads, dilation, groups: groups as usize, act: None, residual: false, precision: Precision::F32 };
        match (self.fake_of.get(&x).copied(), self.qweights.get(&self.node.input[1]).cloned()) {
            (Some((src, aq)), Some(qw)) => self.emit1(Op::Conv(c.with_int8(qw, aq)?), vec![src]),
            _ => self.emit1(Op::Conv(c), vec![x]),
        }
    }

    fn conv_transpose(&mut self) -> Result<()> {
        self.only_attrs(&["kernel_shape", "strides", "pads", "dilations", "group", "output_padding", "auto_pad", "output_shape"])?;
        let x = self.runtime(0)?;
        let (ws, w) = self.const_f32(1)?;
        let xs = self.shapes[x].clone();
        if ws.len() < 3 || xs.len() != ws.len() {
            return Err(self.err(format!("weight shape {ws:?} on input {xs:?}: expected [Cin, Cout/group, k1, …] for an input [N, Cin, D1, …] of the same rank")));
        }
        let k = ws.len() - 2;
        let groups = self.int("group", 1);
        if groups < 1 || ws[0] % groups as usize != 0 {
            return Err(self.err(format!("group {groups} does not divide {} input channels", ws[0])));
        }
        if let Some(kernel) = self.ints("kernel_shape") {
            if kernel.len() != k || kernel.iter().zip(&ws[2..]).any(|(&a, &b)| a != b as i64) {
                return Err(self.err(format!("kernel_shape {kernel:?} disagrees with weight {ws:?}")));
            }
        }
        let per_axis = |name: &str| -> Result<Vec<usize>> {
            match self.ints(name) {
                None => Ok(vec![1; k]),
                Some(v) if v.len() == k && v.iter().all(|&d| d >= 1) => Ok(v.iter().map(|&d| d as usize).collect()),
                Some(v) => Err(self.err(format!("{name} {v:?}: expected {k} positive values"))),
            }
        };
        let (stride, dilation) = (per_axis("strides")?, per_axis("dilations")?);
        let (pads, output_padding) = self.conv_transpose_pads(&xs, &ws[2..], &stride, &dilation)?;
        let bias = match self.input(2) {
            None => None,
            Some(_) => Some(self.const_f32(2)?.1),
        };
        // Output channels: Cout/group (weight axis 1) times the groups.
        if let Some(b) = &bias {
            if ws[1].checked_mul(groups as usize) != Some(b.len()) {
                return Err(self.err(format!("bias length {} differs from the output channels of weight {ws:?} with group {groups}", b.len())));
            }
        }
        let weight = Tensor::new(ws, w)?;
        if k != 2 {
            let c = ConvTransposeNd { weight, bias, stride, pads, output_padding, dilation, groups: groups as usize };
            return self.emit1(Op::ConvTransposeNd(c), vec![x]);
        }
        let c = ConvTranspose2d {
            weight,
            bias,
            stride: [stride[0], stride[1]],
            pads: [pads[0], pads[1], pads[2], pads[3]],
            output_padding: [output_padding[0], output_padding[1]],
            dilation: [dilation[0], dilation[1]],
            groups: groups as usize,
            precision: Precision::F32,
        };
        match (self.fake_of.get(&x).copied(), self.qweights_axis1.get(&self.node.input[1]).cloned()) {
            (Some((src, aq)), Some(qw)) if c.groups == 1 => self.emit1(Op::ConvTranspose(c.with_int8(qw, aq)?), vec![src]),
            _ => self.emit1(Op::ConvTranspose(c), vec![x]),
        }
    }

    /// Pads (`k` at the start of each spatial axis, then `k` at the end) and output padding of
    /// a ConvTranspose over `k` spatial axes, as the ONNX reference derives them from `pads`,
    /// `output_padding`, `output_shape` and `auto_pad`:
    /// - `auto_pad` SAME_UPPER/SAME_LOWER without `pads`: the output is `output_shape` (default
    ///   input · stride), and the total padding that leaves is split, the odd one at the end
    ///   (UPPER) or the start (LOWER);
    /// - otherwise with `output_shape`: `pads` (or 0) crop the start and the output is cut,
    ///   or extended with zeros, at the end to `output_shape` (`output_padding` is ignored);
    /// - otherwise `pads` and `output_padding` as given (VALID: no pads).
    fn conv_transpose_pads(&self, xs: &[usize], kernel: &[usize], stride: &[usize], dil: &[usize]) -> Result<(Vec<usize>, Vec<usize>)> {
        let k = kernel.len();
        let auto = self.string("auto_pad", "NOTSET");
        let output_shape = match self.ints("output_shape") {
            None => None,
            Some(o) if o.len() >= k && o.iter().all(|&v| v > 0 && v <= MAX_ELEMENTS as i64) => Some(o[o.len() - k..].iter().map(|&v| v as usize).collect::<Vec<_>>()),
            Some(o) => return Err(self.err(format!("output_shape {o:?}: expected the {k} spatial sizes, each in 1..={MAX_ELEMENTS}"))),
        };
        let output_padding = match self.ints("output_padding") {
            None => vec![0; k],
            Some(v) if v.len() == k && v.iter().all(|&d| d >= 0) => v.iter().map(|&d| d as usize).collect(),
            Some(v) => return Err(self.err(format!("output_padding {v:?}: expected {k} non-negative values"))),
        };
        let given_pads = match self.ints("pads") {
            None => None,
            Some(p) if p.len() == 2 * k && p.iter().all(|&v| v >= 0) => Some(p.iter().map(|&v| v as usize).collect::<Vec<_>>()),
            Some(p) => return Err(self.err(format!("pads {p:?}: expected {} non-negative values", 2 * k))),
        };
        // Without any padding: stride · (in − 1) + (k − 1) · dil + 1, checked.
        let full = |a: usize| -> Result<usize> {
            stride[a]
                .checked_mul(xs[2 + a].max(1) - 1)
                .and_then(|v| v.checked_add(kernel[a].checked_sub(1)?.checked_mul(dil[a])?))
                .and_then(|v| v.checked_add(1))
                .ok_or_else(|| self.err("the output size overflows"))
        };
        match auto.as_str() {
            "SAME_UPPER" | "SAME_LOWER" if given_pads.is_none() => {
                let mut pads = vec![0usize; 2 * k];
                for a in 0..k {
                    let out = match &output_shape {
                        Some(o) => o[a],
                        None => xs[2 + a].checked_mul(stride[a]).ok_or_else(|| self.err("the output size overflows"))?,
                    };
                    let total = full(a)? as i64 + output_padding[a] as i64 - out as i64;
                    if total < 0 {
                        return Err(self.err(format!("auto_pad {auto} with output size {out} beyond the transposed conv's reach needs negative pads")));
                    }
                    let (small, big) = ((total / 2) as usize, (total - total / 2) as usize);
                    (pads[a], pads[k + a]) = if auto == "SAME_UPPER" { (small, big) } else { (big, small) };
                }
                Ok((pads, output_padding))
            }
            "NOTSET" | "VALID" | "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = if auto == "VALID" { vec![0; 2 * k] } else { given_pads.unwrap_or_else(|| vec![0; 2 * k]) };
                let Some(o) = output_shape else { return Ok((pads, output_padding)) };
                let mut op = vec![0usize; k];
                for a in 0..k {
                    let room = full(a)?.checked_sub(pads[a]).filter(|&r| r > 0).ok_or_else(|| self.err(format!("pads {pads:?} leave no output")))?;
                    (pads[k + a], op[a]) = if room >= o[a] { (room - o[a], 0) } else { (0, o[a] - room) };
                }
                Ok((pads, op))
            }
            other => Err(self.err(format!("auto_pad '{}' is not supported", other.escape_debug()))),
        }
    }

    fn batchnorm(&mut self) -> Result<()> {
        self.only_attrs(&["epsilon", "momentum", "training_mode", "spatial"])?;
        self.single_output()?;
        if self.int("training_mode", 0) != 0 {
            return self.batchnorm_training();
        }
        let x = self.runtime(0)?;
        let bn = BatchNorm {
            gamma: self.const_f32(1)?.1,
            beta: self.const_f32(2)?.1,
            mean: self.const_f32(3)?.1,
            var: self.const_f32(4)?.1,
            eps: self.float("epsilon", 1e-5),
        };
        let c = bn.gamma.len();
        if [bn.beta.len(), bn.mean.len(), bn.var.len()].iter().any(|&l| l != c) {
            return Err(self.err("scale, bias, mean and var lengths differ"));
        }
        self.emit1(Op::BatchNorm(bn), vec![x])
    }

    /// BatchNormalization in training mode normalises by the batch's own statistics:
    /// `y = (x − μ) / √(σ² + ε) · scale + B`, with μ and the biased σ² over every axis but
    /// the channels (the running statistics it also outputs must be unused). Lowered to
    /// ReduceMean, Sub, Mul, Add, Sqrt and Div.
    fn batchnorm_training(&mut self) -> Result<()> {
        let x = self.runtime(0)?;
        let rank = self.shapes[x].len();
        if rank < 2 {
            return Err(self.err(format!("input of shape {:?}: expected [N, C, …]", self.shapes[x])));
        }
        let c = self.shapes[x][1];
        let (scale, bias) = (self.const_f32(1)?.1, self.const_f32(2)?.1);
        if scale.len() != c || bias.len() != c {
            return Err(self.err(format!("scale and bias must have {c} entries, one per channel")));
        }
        let eps = self.float("epsilon", 1e-5);
        let per_channel: Vec<usize> = (0..rank).map(|a| if a == 1 { c } else { 1 }).collect();
        let axes: Vec<usize> = (0..rank).filter(|&a| a != 1).collect();
        let reduce = || Op::Reduce(Reduce { kind: ReduceKind::Mean, axes: axes.clone(), keepdims: true });
        let mean = self.emit_aux(reduce(), vec![x], "mean")?;
        let d = self.emit_aux(Op::Sub, vec![x, mean], "centred")?;
        let sq = self.emit_aux(Op::Mul, vec![d, d], "squared")?;
        let var = self.emit_aux(reduce(), vec![sq], "var")?;
        let eps = self.aux_constant("epsilon", Tensor::new(vec![1], vec![eps])?)?;
        let var = self.emit_aux(Op::Add, vec![var, eps], "var_eps")?;
        let sd = self.emit_aux(Op::Act(Activation::Sqrt), vec![var], "std")?;
        let n = self.emit_aux(Op::Div, vec![d, sd], "normalised")?;
        let scale = self.aux_constant("scale", Tensor::new(per_channel.clone(), scale)?)?;
        let y = self.emit_aux(Op::Mul, vec![n, scale], "scaled")?;
        let bias = self.aux_constant("bias", Tensor::new(per_channel, bias)?)?;
        self.emit1(Op::Add, vec![y, bias])
    }

    fn act(&mut self, a: Activation, attrs: &[&str]) -> Result<()> {
        self.only_attrs(attrs)?;
        let x = self.runtime(0)?;
        self.emit1(Op::Act(a), vec![x])
    }

    fn clip(&mut self) -> Result<()> {
        let (lo, hi) = if self.opset < 11 {
            (self.float("min", f32::MIN), self.float("max", f32::MAX))
        } else {
            self.only_attrs(&[])?;
            let get = |s: &Self, i: usize, d: f32| -> Result<f32> {
                match s.input(i) {
                    None => Ok(d),
                    Some(_) => s.const_f32(i)?.1.first().copied().ok_or_else(|| s.err("empty min/max")),
                }
            };
            (get(self, 1, f32::MIN)?, get(self, 2, f32::MAX)?)
        };
        let x = self.runtime(0)?;
        self.emit1(Op::Act(Activation::Clip(lo, hi)), vec![x])
    }

    /// Pad: `pads` (attribute before opset 11, then input 1), `constant_value` (attribute
    /// `value`, then input 2), `axes` (input 3, opset 18), `mode`.
    fn pad(&mut self) -> Result<()> {
        let legacy = self.opset < 11;
        self.only_attrs(if legacy { &["mode", "pads", "paddings", "value"] } else { &["mode"] })?;
        let x = self.runtime(0)?;
        let rank = self.shapes[x].len();
        let mode = match self.string("mode", "constant").as_str() {
            "constant" => PadMode::Constant,
            "reflect" => PadMode::Reflect,
            "edge" => PadMode::Edge,
            "wrap" => PadMode::Wrap,
            other => return Err(self.err(format!("mode '{}' is not supported", other.escape_debug()))),
        };
        let (raw, value) = if legacy {
            let raw = self.ints("pads").or_else(|| self.ints("paddings")).ok_or_else(|| self.err("no pads"))?;
            (raw, self.float("value", 0.0))
        } else {
            let raw = self.const_i64(1)?;
            let value = match self.input(2) {
                Some(_) => *self.const_f32(2)?.1.first().ok_or_else(|| self.err("an empty constant_value"))?,
                None => 0.0,
            };
            (raw, value)
        };
        let axes: Vec<usize> = match self.input(3) {
            None => (0..rank).collect(),
            Some(_) => {
                let mut out = Vec::new();
                for a in self.const_i64(3)? {
                    let a = if a < 0 { a + rank as i64 } else { a };
                    if !(0..rank as i64).contains(&a) || out.contains(&(a as usize)) {
                        return Err(self.err(format!("axis {a} is out of range or repeated for rank {rank}")));
                    }
                    out.push(a as usize);
                }
                out
            }
        };
        if raw.len() != 2 * axes.len() {
            return Err(self.err(format!("{} pads for {} axes", raw.len(), axes.len())));
        }
        let mut pads = vec![[0i64; 2]; rank];
        for (i, &a) in axes.iter().enumerate() {
            pads[a] = [raw[i], raw[axes.len() + i]];
        }
        if mode != PadMode::Constant && pads.iter().zip(&self.shapes[x]).any(|(p, &d)| (p[0] > 0 || p[1] > 0) && d == 0) {
            return Err(self.err("reflect, edge and wrap need a non-empty axis to pad"));
        }
        self.emit1(Op::Pad(Pad { mode, value, pads }), vec![x])
    }

    /// Pow: with a constant scalar exponent (what torch writes for `x ** 2`) an activation that
    /// fuses into a conv, else elementwise.
    fn pow(&mut self) -> Result<()> {
        self.only_attrs(&[])?;
        let x = self.runtime(0)?;
        match self.input(1) {
            Some(Sym::F32(..) | Sym::I64(..)) if self.const_f32(1)?.1.len() == 1 => {
                let p = self.const_f32(1)?.1[0];
                self.emit1(Op::Act(Activation::Pow(p)), vec![x])
            }
            // A tensor exponent, constant or computed: elementwise with broadcasting.
            _ => self.binary(),
        }
    }

    fn binary(&mut self) -> Result<()> {
        self.only_attrs(&[])?;
        let op = match self.node.op_type.as_str() {
            "Add" => Op::Add,
            "Mul" => Op::Mul,
            "Sub" => Op::Sub,
            "Pow" => Op::Pow,
            "PRelu" => Op::PRelu,
            _ => Op::Div,
        };
        let mut ids = Vec::new();
        for i in 0..2 {
            let id = match self.need(i)?.clone() {
                Sym::Runtime(id) => id,
                Sym::F32(s, d) => {
                    let name = self.node.input[i].clone();
                    let id = self.g.add_constant(name, Tensor::new(s.clone(), d)?);
                    self.set_shape(id, s);
                    id
                }
                // An integer exponent of a float base: a float constant.
                Sym::I64(s, d) if i == 1 && self.node.op_type == "Pow" => {
                    let name = self.node.input[i].clone();
                    let id = self.g.add_constant(name, Tensor::new(s.clone(), d.iter().map(|&v| v as f32).collect())?);
                    self.set_shape(id, s);
                    id
                }
                Sym::I64(..) | Sym::Dims(..) => return self.fold_int_binary(),
                Sym::Quant(..) | Sym::DynParam => return Err(self.err("quantized values must pass through DequantizeLinear first")),
            };
            ids.push(id);
        }
        if ids.iter().all(|id| self.g.constants.contains_key(id)) {
            return Err(self.err("both operands are constants"));
        }
        self.emit1(op, ids)
    }

    /// Integer arithmetic on shapes (rare in CNN exports): fold when fully known.
    fn fold_int_binary(&mut self) -> Result<()> {
        let (a, b) = (self.const_i64(0)?, self.const_i64(1)?);
        if a.is_empty() || b.is_empty() || (a.len() != b.len() && a.len() != 1 && b.len() != 1) {
            return Err(self.err("integer operands are empty or of different lengths"));
        }
        let n = a.len().max(b.len());
        let at = |v: &Vec<i64>, i: usize| v[if v.len() == 1 { 0 } else { i }];
        let add = match self.node.op_type.as_str() {
            "Add" => true,
            "Mul" => false,
            other => return Err(self.err(format!("integer {other} on shapes is not supported"))),
        };
        let out = (0..n)
            .map(|i| if add { at(&a, i).checked_add(at(&b, i)) } else { at(&a, i).checked_mul(at(&b, i)) })
            .collect::<Option<Vec<i64>>>()
            .ok_or_else(|| self.err("integer arithmetic overflows"))?;
        let o = self.out0()?;
        self.syms.insert(o, Sym::I64(vec![n], out));
        Ok(())
    }

    fn pool(&mut self) -> Result<()> {
        let is_max = self.node.op_type == "MaxPool";
        self.only_attrs(&["kernel_shape", "strides", "pads", "dilations", "ceil_mode", "count_include_pad", "auto_pad", "storage_order"])?;
        // storage_order only orders the indices output, which single_output makes sure is unused.
        self.single_output()?;
        let x = self.runtime(0)?;
        if self.shapes[x].len() != 4 {
            return self.pool_nd(is_max);
        }
        let kernel = self.spatial("kernel_shape", [0, 0])?;
        if kernel.contains(&0) {
            return Err(self.err("kernel_shape must be given and positive"));
        }
        let stride = self.spatial("strides", [1, 1])?;
        let dilation = self.spatial("dilations", [1, 1])?;
        if stride.contains(&0) || dilation.contains(&0) {
            return Err(self.err("strides and dilations must be positive"));
        }
        let pads = self.pads(x, kernel, stride, dilation)?;
        let p = Pool2d {
            kernel,
            stride,
            pads,
            dilation,
            ceil_mode: self.int("ceil_mode", 0) != 0,
            count_include_pad: self.int("count_include_pad", 0) != 0,
        };
        self.emit1(if is_max { Op::MaxPool(p) } else { Op::AveragePool(p) }, vec![x])
    }

    /// MaxPool or AveragePool over one, three or more spatial axes ([`PoolNd`]); `auto_pad`
    /// resolved per axis as for 2-D.
    fn pool_nd(&mut self, max: bool) -> Result<()> {
        let x = self.runtime(0)?;
        let xs = self.shapes[x].clone();
        let Some(k) = xs.len().checked_sub(2).filter(|&k| k > 0) else {
            return Err(self.err(format!("input of shape {xs:?}: expected [N, C, D1, …]")));
        };
        let per_axis = |name: &str, default: usize| -> Result<Vec<usize>> {
            match self.ints(name) {
                None => Ok(vec![default; k]),
                Some(v) if v.len() == k && v.iter().all(|&d| d >= 0) => Ok(v.iter().map(|&d| d as usize).collect()),
                Some(v) => Err(self.err(format!("{name} {v:?}: expected {k} non-negative values for input {xs:?}"))),
            }
        };
        let kernel = per_axis("kernel_shape", 0)?;
        let (stride, dilation) = (per_axis("strides", 1)?, per_axis("dilations", 1)?);
        if kernel.contains(&0) || stride.contains(&0) || dilation.contains(&0) {
            return Err(self.err("kernel_shape must be given, and it, strides and dilations positive"));
        }
        let auto = self.string("auto_pad", "NOTSET");
        let pads = match auto.as_str() {
            "NOTSET" => match self.ints("pads") {
                None => vec![0; 2 * k],
                Some(p) if p.len() == 2 * k && p.iter().all(|&v| v >= 0) => p.iter().map(|&v| v as usize).collect(),
                Some(p) => return Err(self.err(format!("pads {p:?}: expected {} non-negative values", 2 * k))),
            },
            "VALID" => vec![0; 2 * k],
            "SAME_UPPER" | "SAME_LOWER" => {
                let mut pads = vec![0; 2 * k];
                for a in 0..k {
                    let out = xs[2 + a].div_ceil(stride[a]);
                    let eff = (kernel[a] - 1).saturating_mul(dilation[a]).saturating_add(1);
                    let total = out.saturating_sub(1).saturating_mul(stride[a]).saturating_add(eff).saturating_sub(xs[2 + a]);
                    let (small, big) = (total / 2, total - total / 2);
                    (pads[a], pads[k + a]) = if auto == "SAME_UPPER" { (small, big) } else { (big, small) };
                }
                pads
            }
            other => return Err(self.err(format!("auto_pad '{}' is not supported", other.escape_debug()))),
        };
        let p = PoolNd { max, kernel, stride, pads, dilation, ceil_mode: self.int("ceil_mode", 0) != 0, count_include_pad: self.int("count_include_pad", 0) != 0 };
        self.emit1(Op::PoolNd(p), vec![x])
    }

    /// ReduceMean and ReduceMax: `axes` an attribute before opset 18 (ReduceMean, ReduceMax),
    /// then input 1; no axes reduce all of them unless `noop_with_empty_axes`. The spatial
    /// mean of NCHW becomes GlobalAveragePool (and a Flatten without keepdims).
    fn reduce(&mut self) -> Result<()> {
        self.only_attrs(&["axes", "keepdims", "noop_with_empty_axes"])?;
        let x = self.runtime(0)?;
        let kind = if self.node.op_type == "ReduceMax" { ReduceKind::Max } else { ReduceKind::Mean };
        let rank = self.shapes[x].len();
        let given = match self.ints("axes") {
            Some(a) => a,
            None if self.input(1).is_some() => self.const_i64(1)?,
            None => Vec::new(),
        };
        if given.is_empty() && self.int("noop_with_empty_axes", 0) != 0 {
            return self.identity();
        }
        let mut axes = Vec::new();
        for a in if given.is_empty() { (0..rank as i64).collect() } else { given } {
            let a = if a < 0 { a + rank as i64 } else { a };
            if !(0..rank as i64).contains(&a) || axes.contains(&(a as usize)) {
                return Err(self.err(format!("axis {a} is out of range or repeated for rank {rank}")));
            }
            axes.push(a as usize);
        }
        axes.sort_unstable();
        let keepdims = self.int("keepdims", 1) != 0;
        if kind == ReduceKind::Mean && axes == [2, 3] && rank == 4 {
            let out = self.out0()?;
            if keepdims {
                let id = self.emit(Op::GlobalAveragePool, vec![x], &out)?;
                self.bind(id);
            } else {
                let pooled = self.emit(Op::GlobalAveragePool, vec![x], &format!("{out}.pooled"))?;
                let id = self.emit(Op::Flatten { axis: 1 }, vec![pooled], &out)?;
                self.bind(id);
            }
            return Ok(());
        }
        self.emit1(Op::Reduce(Reduce { kind, axes, keepdims }), vec![x])
    }

    fn flatten(&mut self) -> Result<()> {
        self.only_attrs(&["axis"])?;
        let x = self.runtime(0)?;
        let rank = self.shapes[x].len() as i64;
        let mut axis = self.int("axis", 1);
        if axis < 0 {
            axis += rank;
        }
        if !(0..=rank).contains(&axis) {
            return Err(self.err(format!("axis {axis} out of range for rank {rank}")));
        }
        self.emit1(Op::Flatten { axis: axis as usize }, vec![x])
    }

    fn reshape(&mut self) -> Result<()> {
        self.only_attrs(&["allowzero"])?;
        let allowzero = self.int("allowzero", 0) != 0;
        let spec: Vec<i64> = match self.need(1)?.clone() {
            Sym::I64(_, v) => v,
            Sym::Dims(d, _) => d
                .iter()
                .enumerate()
                .map(|(i, x)| match x {
                    Dim::Batch if i == 0 => Ok(0),
                    Dim::Batch => Err(self.err("the batch dim may only stay at position 0")),
                    Dim::Known(v) => Ok(*v),
                })
                .collect::<Result<_>>()?,
            _ => return Err(self.err("the target shape must be constant or derived from input shapes")),
        };
        // allowzero only changes the meaning of 0 entries (a zero-sized dim instead of a copy),
        // and the spec forbids it beside a -1.
        let allowzero = allowzero && spec.contains(&0);
        if allowzero && spec.contains(&-1) {
            return Err(self.err(format!("target shape {spec:?} has both a 0 and a -1 with allowzero = 1")));
        }
        match self.need(0)?.clone() {
            Sym::Runtime(x) => {
                // A target that fixes the batch dim to the declared batch is rewritten to copy it.
                let mut spec = spec;
                if !allowzero && self.shapes[x].first() == Some(&1) && spec.first() == Some(&1) && spec.len() > 1 && !spec.contains(&-1) {
                    spec[0] = 0;
                }
                self.emit1(Op::Reshape { shape: spec, allowzero }, vec![x])
            }
            Sym::F32(s, d) => {
                let s = shape::reshape_out(&s, &spec, allowzero).map_err(|e| self.err(e))?;
                let o = self.out0()?;
                self.syms.insert(o, Sym::F32(s, d));
                Ok(())
            }
            _ => Err(self.err("reshaping integer tensors is not supported")),
        }
    }

    /// Gemm with a constant B: `alpha · A′·B′ + beta · C`, a [`Linear`] whose weight carries
    /// `alpha`. `transA` puts a Transpose before it; a C that is not one value per output
    /// (or one value) is added after it, broadcast as ONNX does.
    fn gemm(&mut self) -> Result<()> {
        self.only_attrs(&["alpha", "beta", "transA", "transB"])?;
        let mut x = self.runtime(0)?;
        if self.shapes[x].len() != 2 {
            return Err(self.err(format!("A of shape {:?}: Gemm takes a 2-D A", self.shapes[x])));
        }
        let trans_a = self.int("transA", 0) != 0;
        let (ws, w) = self.const_f32(1)?;
        if ws.len() != 2 {
            return Err(self.err(format!("B must be 2-D, got {ws:?}")));
        }
        let (alpha, beta) = (self.float("alpha", 1.0), self.float("beta", 1.0));
        let trans_b = self.int("transB", 0) != 0;
        let (out_f, in_f) = if trans_b { (ws[0], ws[1]) } else { (ws[1], ws[0]) };
        let mut wt = if trans_b {
            w
        } else {
            let mut t = vec![0.0; w.len()];
            for k in 0..in_f {
                for o in 0..out_f {
                    t[o * in_f + k] = w[k * out_f + o];
                }
            }
            t
        };
        if alpha != 1.0 {
            wt.iter_mut().for_each(|v| *v *= alpha);
        }
        let mut matrix_c = None;
        let bias = match self.input(2) {
            None => None,
            Some(_) => {
                let (cs, c) = self.const_f32(2)?;
                let n: usize = cs.iter().product();
                let scaled = |c: Vec<f32>| -> Vec<f32> { c.into_iter().map(|v| v * beta).collect() };
                if n == out_f && cs.iter().rev().skip(1).all(|&d| d == 1) {
                    Some(scaled(c))
                } else if n == 1 {
                    Some(vec![c[0] * beta; out_f])
                } else if cs.len() <= 2 {
                    matrix_c = Some(Tensor::new(cs, scaled(c))?);
                    None
                } else {
                    return Err(self.err(format!("C of shape {cs:?} does not broadcast to Gemm's 2-D output")));
                }
            }
        };
        if trans_a {
            if self.fake_of.contains_key(&x) {
                return Err(self.err("transA = 1 on a quantized A is not supported"));
            }
            x = self.emit_aux(Op::Transpose { perm: vec![1, 0] }, vec![x], "transA")?;
        }
        if let Some(c) = matrix_c {
            let l = Linear::new(Tensor::new(vec![out_f, in_f], wt)?, None);
            let y = self.emit_aux(Op::Linear(l), vec![x], "AB")?;
            let c = self.aux_constant("C", c)?;
            return self.emit1(Op::Add, vec![y, c]);
        }
        let l = Linear::new(Tensor::new(vec![out_f, in_f], wt)?, bias);
        let qw = self.qweights.get(&self.node.input[1]).cloned().filter(|q| alpha == 1.0 && (trans_b || !q.per_channel));
        match (self.fake_of.get(&x).copied(), qw) {
            (Some((src, aq)), Some(mut qw)) => {
                if !trans_b {
                    // Per-tensor weights: transpose the codes to [out, in] like the floats.
                    let mut t = vec![0i8; qw.q.len()];
                    for k in 0..in_f {
                        for o in 0..out_f {
                            t[o * in_f + k] = qw.q[k * out_f + o];
                        }
                    }
                    qw.q = t;
                    qw.scales = vec![qw.scales[0]; out_f];
                }
                self.emit1(Op::Linear(l.with_int8(qw, aq)?), vec![src])
            }
            _ => self.emit1(Op::Linear(l), vec![x]),
        }
    }

    /// MatMul of a runtime A by a constant B: `[N, K] × [K, M]` is a [`Linear`]; any other
    /// ranks (1-D operands, batched and broadcast products) are [`Op::MatMul`].
    fn matmul(&mut self) -> Result<()> {
        self.only_attrs(&[])?;
        let x = self.runtime(0)?;
        let (ws, w) = self.const_f32(1)?;
        if ws.len() != 2 || self.shapes[x].len() != 2 {
            if ws.is_empty() || self.shapes[x].is_empty() {
                return Err(self.err("MatMul of a scalar is not defined"));
            }
            return self.emit1(Op::MatMul { b: Tensor::new(ws, w)? }, vec![x]);
        }
        let (k, m) = (ws[0], ws[1]);
        let mut t = vec![0.0; w.len()];
        for i in 0..k {
            for o in 0..m {
                t[o * k + i] = w[i * m + o];
            }
        }
        let l = Linear::new(Tensor::new(vec![m, k], t)?, None);
        self.emit1(Op::Linear(l), vec![x])
    }

    fn concat(&mut self) -> Result<()> {
        self.only_attrs(&["axis"])?;
        let axis = self.int("axis", 0);
        let n = self.node.input.len();
        let syms: Vec<Sym> = (0..n).map(|i| self.need(i).cloned()).collect::<Result<_>>()?;
        if syms.iter().any(|s| matches!(s, Sym::Dims(..) | Sym::I64(..))) {
            let mut dims = Vec::new();
            for s in syms {
                match s {
                    Sym::Dims(d, _) => dims.extend(d),
                    Sym::I64(_, v) => dims.extend(v.into_iter().map(Dim::Known)),
                    _ => return Err(self.err("cannot concatenate shape values with float tensors")),
                }
            }
            let o = self.out0()?;
            self.syms.insert(o, Sym::Dims(dims, false));
            return Ok(());
        }
        let mut ids = Vec::new();
        for (i, s) in syms.into_iter().enumerate() {
            match s {
                Sym::Runtime(id) => ids.push(id),
                Sym::F32(s, d) => {
                    let id = self.g.add_constant(self.node.input[i].clone(), Tensor::new(s.clone(), d)?);
                    self.set_shape(id, s);
                    ids.push(id)
                }
                _ => unreachable_sym()?,
            }
        }
        let Some(&first) = ids.first() else { return Err(self.err("Concat has no inputs")) };
        let rank = self.shapes[first].len() as i64;
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(self.err(format!("axis {axis} out of range")));
        }
        self.emit1(Op::Concat { axis: axis as usize }, ids)
    }

    fn resize(&mut self) -> Result<()> {
        let upsample = self.node.op_type == "Upsample";
        let x = self.runtime(0)?;
        let legacy = upsample || self.opset < 11;
        let mode = self.string("mode", "nearest");
        let (coord, nearest) = if legacy {
            self.only_attrs(&["mode", "scales"])?;
            ("asymmetric".to_string(), "floor".to_string())
        } else {
            self.only_attrs(&[
                "mode",
                "coordinate_transformation_mode",
                "nearest_mode",
                "cubic_coeff_a",
                "exclude_outside",
                "extrapolation_value",
                "antialias",
                "keep_aspect_ratio_policy",
                "axes",
            ])?;
            (self.string("coordinate_transformation_mode", "half_pixel"), self.string("nearest_mode", "round_prefer_floor"))
        };
        let coord = match coord.as_str() {
            "half_pixel" => CoordMode::HalfPixel,
            "pytorch_half_pixel" => CoordMode::PytorchHalfPixel,
            "align_corners" => CoordMode::AlignCorners,
            "asymmetric" => CoordMode::Asymmetric,
            "half_pixel_symmetric" => CoordMode::HalfPixelSymmetric,
            "tf_crop_and_resize" => CoordMode::TfCropAndResize,
            other => return Err(self.err(format!("coordinate_transformation_mode '{}' is not supported", other.escape_debug()))),
        };
        let mode = match mode.as_str() {
            "nearest" => ResizeMode::Nearest(match nearest.as_str() {
                "round_prefer_floor" => NearestMode::RoundPreferFloor,
                "round_prefer_ceil" => NearestMode::RoundPreferCeil,
                "floor" => NearestMode::Floor,
                "ceil" => NearestMode::Ceil,
                other => return Err(self.err(format!("nearest_mode '{}' is not supported", other.escape_debug()))),
            }),
            "linear" | "bilinear" => ResizeMode::Linear,
            "cubic" | "bicubic" => {
                let a = self.float("cubic_coeff_a", -0.75);
                if !a.is_finite() {
                    return Err(self.err(format!("cubic_coeff_a {a} is not finite")));
                }
                ResizeMode::Cubic { a }
            }
            other => return Err(self.err(format!("mode '{}' is not supported", other.escape_debug()))),
        };
        let antialias = self.int("antialias", 0) != 0;
        if antialias && matches!(mode, ResizeMode::Nearest(_)) {
            return Err(self.err("antialias is defined for the linear and cubic modes only"));
        }
        let xs = self.shapes[x].clone();
        let rank = xs.len();
        // The axes the scales, sizes and roi list (all of them by default), normalised.
        let axes: Vec<usize> = match self.ints("axes") {
            None => (0..rank).collect(),
            Some(a) => {
                let mut out = Vec::with_capacity(a.len());
                for v in a {
                    let v = if v < 0 { v + rank as i64 } else { v };
                    if !(0..rank as i64).contains(&v) || out.contains(&(v as usize)) {
                        return Err(self.err(format!("axes: {v} is out of range or repeated for rank {rank}")));
                    }
                    out.push(v as usize);
                }
                out
            }
        };
        // Scales: attribute (Upsample-7), input 1 (Upsample-9, Resize-10) or input 2; sizes: input 3.
        let (scales_in, sizes_in) = if legacy { (1, usize::MAX) } else { (2, 3) };
        let scales: Option<Vec<f32>> = if let Some(a) = attr(self.node, "scales") {
            Some(a.floats.clone())
        } else if self.input(scales_in).is_some() {
            let s = self.const_f32(scales_in)?.1;
            if s.is_empty() { None } else { Some(s) }
        } else {
            None
        };
        // Per-axis values as given for `axes` (legacy scales always cover every axis; a
        // 2-value list on a 4-D input is the spatial pair, as older exporters wrote it).
        let per_axis = |vals: usize| -> Result<Vec<usize>> {
            if vals == axes.len() {
                Ok(axes.clone())
            } else if vals == 2 && rank == 4 && axes.len() == 4 {
                Ok(vec![2, 3])
            } else {
                Err(self.err(format!("{vals} values for {} axes", axes.len())))
            }
        };
        let target = if let Some(s) = scales {
            let mut full = vec![1.0f32; rank];
            for (v, a) in s.iter().zip(per_axis(s.len())?) {
                full[a] = *v;
            }
            if rank != 4 || full[0] != 1.0 || full[1] != 1.0 {
                return Err(self.err(format!("scales {s:?}: only spatial scaling of NCHW is supported")));
            }
            if !(full[2] > 0.0 && full[3] > 0.0 && full[2].is_finite() && full[3].is_finite()) {
                return Err(self.err(format!("scales {s:?} must be positive and finite")));
            }
            ResizeTarget::Scales([full[2], full[3]])
        } else if self.input(sizes_in).is_some() {
            let s: Vec<i64> = match self.need(sizes_in)?.clone() {
                Sym::Dims(d, _) => d.iter().map(|x| if let Dim::Known(v) = x { *v } else { xs.first().map_or(1, |&b| b as i64) }).collect(),
                _ => self.const_i64(sizes_in)?,
            };
            let mut full: Vec<i64> = xs.iter().map(|&d| d as i64).collect();
            for (v, a) in s.iter().zip(per_axis(s.len())?) {
                full[a] = *v;
            }
            if rank != 4 || full[0] != xs[0] as i64 || full[1] != xs[1] as i64 || full[2] <= 0 || full[3] <= 0 {
                return Err(self.err(format!("sizes {s:?}: only spatial resizing of NCHW is supported")));
            }
            let sizes = [full[2] as usize, full[3] as usize];
            match self.string("keep_aspect_ratio_policy", "stretch").as_str() {
                "stretch" => ResizeTarget::Sizes(sizes),
                // One spatial axis resized: one ratio, so every policy is `stretch`.
                _ if !(axes.contains(&2) && axes.contains(&3)) => ResizeTarget::Sizes(sizes),
                "not_larger" => ResizeTarget::KeepAspect { sizes, policy: AspectPolicy::NotLarger, unit_axes: axes.contains(&0) || axes.contains(&1) },
                "not_smaller" => ResizeTarget::KeepAspect { sizes, policy: AspectPolicy::NotSmaller, unit_axes: axes.contains(&0) || axes.contains(&1) },
                other => return Err(self.err(format!("keep_aspect_ratio_policy '{}' is not supported", other.escape_debug()))),
            }
        } else {
            return Err(self.err("neither scales nor sizes is given"));
        };
        let mut r = Resize::new(mode, coord, target);
        r.antialias = antialias;
        r.exclude_outside = !legacy && self.int("exclude_outside", 0) != 0;
        r.extrapolation = self.float("extrapolation_value", 0.0);
        if coord == CoordMode::TfCropAndResize {
            let roi = match self.input(1) {
                Some(_) if !legacy => self.const_f32(1)?.1,
                _ => return Err(self.err("tf_crop_and_resize needs a constant roi input")),
            };
            if roi.len() != 2 * axes.len() || roi.iter().any(|v| !v.is_finite()) {
                return Err(self.err(format!("roi of {} values for {} axes", roi.len(), axes.len())));
            }
            let (mut start, mut end) = (vec![0.0f32; rank], vec![1.0f32; rank]);
            for (i, &a) in axes.iter().enumerate() {
                (start[a], end[a]) = (roi[i], roi[axes.len() + i]);
            }
            if start[0] != 0.0 || start[1] != 0.0 || end[0] != 1.0 || end[1] != 1.0 {
                return Err(self.err(format!("roi {roi:?}: only spatial crops of NCHW are supported")));
            }
            r.roi = [start[2], start[3], end[2], end[3]];
        }
        self.emit1(Op::Resize(r), vec![x])
    }

    fn softmax(&mut self) -> Result<()> {
        self.only_attrs(&["axis"])?;
        let x = self.runtime(0)?;
        let rank = self.shapes[x].len() as i64;
        let default = if self.opset < 13 { 1 } else { -1 };
        let mut axis = self.int("axis", default);
        if axis < 0 {
            axis += rank;
        }
        if self.opset < 13 && axis != rank - 1 {
            return Err(self.err("opset < 13 Softmax over a non-final axis flattens; not supported"));
        }
        if !(0..rank).contains(&axis) {
            return Err(self.err(format!("axis {axis} out of range")));
        }
        self.emit1(Op::Softmax { axis: axis as usize }, vec![x])
    }

    /// Dropout at inference is the identity. In training mode with a `seed` it is the ONNX
    /// reference's seeded dropout ([`Op::Dropout`]); without one it would draw new values at
    /// every run, which kestrel does not compute: refused, as is a training flag or a ratio
    /// known only at run time. The mask output must be unused.
    fn dropout(&mut self) -> Result<()> {
        self.single_output()?;
        let training = if self.opset >= 12 {
            match self.input(2) {
                None => false,
                Some(Sym::I64(..) | Sym::F32(..)) => self.const_f32(2)?.1.iter().any(|&v| v != 0.0),
                Some(_) => return Err(self.err("a training_mode known only at run time is not supported")),
            }
        } else {
            self.opset < 7 && self.int("is_test", 0) == 0
        };
        let ratio = if self.opset >= 12 {
            match self.input(1) {
                None => 0.5,
                Some(Sym::F32(..) | Sym::I64(..)) => match self.const_f32(1)?.1[..] {
                    [r] => r,
                    ref r => return Err(self.err(format!("ratio {r:?}: expected one value"))),
                },
                Some(_) if !training => 0.5,
                Some(_) => return Err(self.err("a ratio known only at run time is not supported")),
            }
        } else {
            self.float("ratio", 0.5)
        };
        // A ratio of 0 drops nothing, in training mode too.
        if !training || ratio == 0.0 {
            return self.identity();
        }
        if !(0.0..1.0).contains(&ratio) {
            return Err(self.err(format!("ratio {ratio} is outside [0, 1)")));
        }
        let seed = match attr(self.node, "seed") {
            Some(a) => u32::try_from(a.i).map_err(|_| self.err(format!("seed {} is outside [0, 2^32)", a.i)))?,
            None => return Err(self.err("training mode without a seed draws a new random mask at every run, which kestrel does not compute; give the node a seed or export the model in eval mode")),
        };
        let x = self.runtime(0)?;
        self.emit1(Op::Dropout { ratio, seed }, vec![x])
    }

    fn identity(&mut self) -> Result<()> {
        let s = self.need(0)?.clone();
        let o = self.out0()?;
        match s {
            Sym::Runtime(x) => self.emit1(Op::Identity, vec![x]),
            other => {
                self.syms.insert(o, other);
                Ok(())
            }
        }
    }

    fn constant(&mut self) -> Result<()> {
        let a = self.node.attribute.first().ok_or_else(|| self.err("Constant without a value"))?;
        let sym = match a.name.as_str() {
            "value" => {
                let t = a.t.as_ref().ok_or_else(|| self.err("value is not a tensor"))?;
                if let Some(o) = self.node.output.first() {
                    self.int_dtype.insert(o.clone(), t.data_type);
                }
                let (s, d) = tensor_data(t)?;
                from_data(s, d)
            }
            "value_float" => Sym::F32(vec![], vec![a.f]),
            "value_floats" => Sym::F32(vec![a.floats.len()], a.floats.clone()),
            "value_int" => Sym::I64(vec![], vec![a.i]),
            "value_ints" => Sym::I64(vec![a.ints.len()], a.ints.clone()),
            other => return Err(self.err(format!("attribute '{other}' is not supported"))),
        };
        let o = self.out0()?;
        self.syms.insert(o, sym);
        Ok(())
    }

    fn shape_op(&mut self) -> Result<()> {
        self.only_attrs(&["start", "end"])?;
        let dims: Vec<Dim> = match self.need(0)?.clone() {
            Sym::Runtime(x) => {
                self.shapes[x].iter().enumerate().map(|(i, &d)| if i == 0 { Dim::Batch } else { Dim::Known(d as i64) }).collect()
            }
            Sym::F32(s, _) | Sym::I64(s, _) => s.iter().map(|&d| Dim::Known(d as i64)).collect(),
            Sym::Dims(d, scalar) => vec![Dim::Known(if scalar { 0 } else { d.len() as i64 })],
            Sym::Quant(x, _) => self.shapes[x].iter().enumerate().map(|(i, &d)| if i == 0 { Dim::Batch } else { Dim::Known(d as i64) }).collect(),
            Sym::DynParam => vec![],
        };
        let r = dims.len() as i64;
        let clampi = |v: i64| (if v < 0 { v + r } else { v }).clamp(0, r) as usize;
        let (s, e) = (clampi(self.int("start", 0)), clampi(self.int("end", r)));
        let o = self.out0()?;
        self.syms.insert(o, Sym::Dims(dims[s.min(e)..e].to_vec(), false));
        Ok(())
    }

    fn gather(&mut self) -> Result<()> {
        self.only_attrs(&["axis"])?;
        let (data, _) = match self.need(0)?.clone() {
            Sym::Dims(d, s) => (d, s),
            Sym::I64(_, v) => (v.into_iter().map(Dim::Known).collect(), false),
            _ => return Err(self.err("Gather is supported only on shape values")),
        };
        let (idx_shape, idx) = match self.need(1)?.clone() {
            Sym::I64(s, v) => (s, v),
            _ => return Err(self.err("Gather indices must be constant")),
        };
        let n = data.len() as i64;
        let mut out = Vec::new();
        for i in idx {
            let i = if i < 0 { i + n } else { i };
            out.push(*data.get(i as usize).ok_or_else(|| self.err(format!("index {i} out of range")))?);
        }
        let o = self.out0()?;
        self.syms.insert(o, Sym::Dims(out, idx_shape.is_empty()));
        Ok(())
    }

    fn unsqueeze(&mut self) -> Result<()> {
        let o = self.out0()?;
        match self.need(0)?.clone() {
            Sym::Dims(d, _) => {
                self.syms.insert(o, Sym::Dims(d, false));
                Ok(())
            }
            Sym::I64(s, v) => {
                let mut s = s;
                s.insert(0, 1);
                self.syms.insert(o, Sym::I64(s, v));
                Ok(())
            }
            Sym::Runtime(x) => {
                let axes = match self.ints("axes") {
                    Some(a) => a,
                    None => self.const_i64(1)?,
                };
                let mut shape: Vec<i64> = self.shapes[x].iter().map(|&d| d as i64).collect();
                let rank = (shape.len() + axes.len()) as i64;
                let mut axes: Vec<i64> = axes.iter().map(|&a| if a < 0 { a + rank } else { a }).collect();
                axes.sort_unstable();
                for a in axes {
                    shape.insert(a.clamp(0, shape.len() as i64) as usize, 1);
                }
                if shape.first().is_some_and(|&s0| self.shapes[x].first().is_some_and(|&d0| s0 == d0 as i64)) {
                    shape[0] = 0;
                }
                self.emit1(Op::Reshape { shape, allowzero: false }, vec![x])
            }
            Sym::F32(s, d) => {
                let mut s = s;
                s.insert(0, 1);
                self.syms.insert(o, Sym::F32(s, d));
                Ok(())
            }
            Sym::Quant(..) | Sym::DynParam => Err(self.err("quantized values must pass through DequantizeLinear first")),
        }
    }

    fn squeeze(&mut self) -> Result<()> {
        let x = self.runtime(0)?;
        let s = &self.shapes[x];
        let axes: Vec<i64> = match self.ints("axes") {
            Some(a) => a,
            None if self.input(1).is_some() => self.const_i64(1)?,
            None => (0..s.len() as i64).filter(|&i| s[i as usize] == 1 && i != 0).collect(),
        };
        let rank = s.len() as i64;
        let axes: Vec<usize> = axes.iter().map(|&a| (if a < 0 { a + rank } else { a }) as usize).collect();
        let spec: Vec<i64> = s
            .iter()
            .enumerate()
            .filter(|(i, _)| !axes.contains(i))
            .map(|(i, &d)| if i == 0 { 0 } else { d as i64 })
            .collect();
        self.emit1(Op::Reshape { shape: spec, allowzero: false }, vec![x])
    }

    /// Slice of a 1-D shape value with constant starts and ends (axis 0, step 1).
    /// Split into one Slice node per output: sizes from input 1 (opset 13+) or the `split`
    /// attribute, else `num_outputs` (opset 18) or the number of outputs, in equal parts (the
    /// last one smaller, as ONNX says).
    fn split(&mut self) -> Result<()> {
        self.only_attrs(&["axis", "split", "num_outputs"])?;
        let x = self.runtime(0)?;
        let xs = self.shapes[x].clone();
        let rank = xs.len() as i64;
        let axis = self.int("axis", 0);
        let axis = if axis < 0 { axis + rank } else { axis };
        if !(0..rank).contains(&axis) {
            return Err(self.err(format!("axis {axis} out of range for rank {rank}")));
        }
        let axis = axis as usize;
        let outs: Vec<String> = self.node.output.clone();
        let sizes: Vec<i64> = match (self.ints("split"), self.input(1)) {
            (Some(s), _) => s,
            (None, Some(_)) if self.opset >= 13 => self.const_i64(1)?,
            _ => {
                let n = self.int("num_outputs", outs.len() as i64);
                if n < 1 || n as u64 != outs.len() as u64 {
                    return Err(self.err(format!("num_outputs {n} for {} outputs", outs.len())));
                }
                let (len, n) = (xs[axis], n as usize);
                let part = len.div_ceil(n);
                (0..n).map(|i| len.saturating_sub(i * part).min(part) as i64).collect()
            }
        };
        let total = sizes.iter().try_fold(0i64, |a, &s| if s < 0 { None } else { a.checked_add(s) });
        if sizes.len() != outs.len() || total != Some(xs[axis] as i64) {
            return Err(self.err(format!("split sizes {sizes:?} do not cover axis {axis} of {xs:?} in {} outputs", outs.len())));
        }
        let mut start = 0i64;
        for (i, (out, size)) in outs.iter().zip(&sizes).enumerate() {
            let mut spec = vec![[0i64, i64::MAX, 1]; xs.len()];
            spec[axis] = [start, start + size, 1];
            start += size;
            if out.is_empty() {
                continue;
            }
            let node_name = format!("{}.{i}", if self.node.name.is_empty() { out } else { &self.node.name });
            let id = self.g.push(node_name, Op::Slice { spec }, vec![x]);
            self.g.values[id] = out.clone();
            let s = node_output_shape(&self.g.nodes[self.g.nodes.len() - 1], &self.shapes)?;
            self.set_shape(id, s);
            self.syms.insert(out.clone(), Sym::Runtime(id));
        }
        Ok(())
    }

    /// InstanceNormalization: constant `scale` and `B`, `epsilon`.
    fn instance_norm(&mut self) -> Result<()> {
        self.only_attrs(&["epsilon"])?;
        let x = self.runtime(0)?;
        let (scale, bias) = (self.const_f32(1)?.1, self.const_f32(2)?.1);
        if scale.len() != bias.len() {
            return Err(self.err(format!("scale of {} values and B of {}", scale.len(), bias.len())));
        }
        self.emit1(Op::InstanceNorm { scale, bias, eps: self.float("epsilon", 1e-5) }, vec![x])
    }

    /// Slice of a computed tensor: constant starts, ends, axes and steps (attributes before
    /// opset 10).
    fn slice_runtime(&mut self, x: ValueId) -> Result<()> {
        let rank = self.shapes[x].len();
        let (starts, ends, axes, steps) = if self.opset < 10 {
            self.only_attrs(&["starts", "ends", "axes"])?;
            (self.ints("starts").unwrap_or_default(), self.ints("ends").unwrap_or_default(), self.ints("axes"), None)
        } else {
            let opt = |s: &Self, i: usize| -> Result<Option<Vec<i64>>> { if s.input(i).is_some() { s.const_i64(i).map(Some) } else { Ok(None) } };
            (self.const_i64(1)?, self.const_i64(2)?, opt(self, 3)?, opt(self, 4)?)
        };
        let axes = axes.unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = steps.unwrap_or_else(|| vec![1; starts.len()]);
        if starts.len() != ends.len() || axes.len() != starts.len() || steps.len() != starts.len() {
            return Err(self.err("starts, ends, axes and steps differ in length"));
        }
        let mut spec = vec![[0i64, i64::MAX, 1]; rank];
        let mut seen = Vec::new();
        for i in 0..starts.len() {
            let a = if axes[i] < 0 { axes[i] + rank as i64 } else { axes[i] };
            if !(0..rank as i64).contains(&a) || seen.contains(&a) || steps[i] == 0 {
                return Err(self.err(format!("axis {} (step {}) is out of range, repeated or zero-stepped for rank {rank}", axes[i], steps[i])));
            }
            seen.push(a);
            spec[a as usize] = [starts[i], ends[i], steps[i]];
        }
        self.emit1(Op::Slice { spec }, vec![x])
    }

    fn slice(&mut self) -> Result<()> {
        if let Sym::Runtime(x) = self.need(0)?.clone() {
            return self.slice_runtime(x);
        }
        let dims: Vec<Dim> = match self.need(0)?.clone() {
            Sym::Dims(d, _) => d,
            Sym::I64(s, v) if s.len() <= 1 => v.into_iter().map(Dim::Known).collect(),
            _ => return Err(self.err("Slice is supported only on shape values")),
        };
        let (starts, ends) = if self.opset < 10 {
            (self.ints("starts").unwrap_or_default(), self.ints("ends").unwrap_or_default())
        } else {
            (self.const_i64(1)?, self.const_i64(2)?)
        };
        let steps_ok = self.input(4).is_none() || self.const_i64(4)? == [1];
        let axes_ok = self.input(3).is_none() || self.const_i64(3)? == [0];
        if starts.len() != 1 || ends.len() != 1 || !steps_ok || !axes_ok {
            return Err(self.err("only a 1-D slice with step 1 is supported"));
        }
        let n = dims.len() as i64;
        let clampi = |v: i64| (if v < 0 { v + n } else { v }).clamp(0, n) as usize;
        let (a, b) = (clampi(starts[0]), clampi(ends[0]));
        let o = self.out0()?;
        self.syms.insert(o, Sym::Dims(dims[a.min(b)..b].to_vec(), false));
        Ok(())
    }

    /// A scalar f32 scale and an optional scalar u8 zero point (inputs 1 and 2).
    fn act_params(&self) -> Result<QParams> {
        let (ss, scale) = self.const_f32(1)?;
        if scale.len() != 1 {
            return Err(self.err(format!("per-axis activation scales {ss:?} are not supported")));
        }
        let zp = match self.input(2) {
            None => 0,
            Some(_) => {
                let dt = self.int_dtype.get(&self.node.input[2]).copied().unwrap_or(0);
                if dt != pb::tensor_proto::DataType::Uint8 as i32 {
                    return Err(self.err("only uint8 activations are supported (zero point must be uint8)"));
                }
                let z = self.const_i64(2)?;
                *z.first().ok_or_else(|| self.err("empty zero point"))? as u8
            }
        };
        if !(scale[0] > 0.0 && scale[0].is_finite()) {
            return Err(self.err(format!("scale {} must be positive", scale[0])));
        }
        Ok(QParams { scale: scale[0], zero_point: zp })
    }

    fn quantize_linear(&mut self) -> Result<()> {
        self.only_attrs(&["axis", "saturate"])?;
        let x = self.runtime(0)?;
        let p = self.act_params()?;
        let o = self.out0()?;
        self.syms.insert(o, Sym::Quant(x, ActQuant::Static(p)));
        Ok(())
    }

    fn dynamic_quantize_linear(&mut self) -> Result<()> {
        self.only_attrs(&[])?;
        let x = self.runtime(0)?;
        let outs = self.node.output.clone();
        if let Some(o) = outs.first() {
            self.syms.insert(o.clone(), Sym::Quant(x, ActQuant::Dynamic));
        }
        for o in outs.iter().skip(1) {
            self.syms.insert(o.clone(), Sym::DynParam);
        }
        Ok(())
    }

    fn dequantize_linear(&mut self) -> Result<()> {
        self.only_attrs(&["axis", "block_size"])?;
        if self.int("block_size", 0) != 0 {
            return Err(self.err("blocked quantization is not supported"));
        }
        match self.need(0)?.clone() {
            Sym::Quant(src, aq) => {
                if let ActQuant::Static(p) = aq {
                    if self.act_params()? != p {
                        return Err(self.err("DequantizeLinear parameters differ from the QuantizeLinear's"));
                    }
                }
                let out = self.out0()?;
                let id = self.emit(Op::FakeQuant(aq), vec![src], &out)?;
                self.fake_of.insert(id, (src, aq));
                self.bind(id);
                Ok(())
            }
            Sym::I64(shape, q) => self.dequantize_constant(shape, q),
            _ => Err(self.err("input must be quantized: a QuantizeLinear output or an integer initializer")),
        }
    }

    /// DequantizeLinear of integer weights: the floats, plus the s8 codes for INT8 Conv,
    /// ConvTranspose and Gemm.
    fn dequantize_constant(&mut self, shape: Vec<usize>, q: Vec<i64>) -> Result<()> {
        use pb::tensor_proto::DataType as D;
        let dt = self.int_dtype.get(&self.node.input[0]).copied().unwrap_or(0);
        let (_, scales) = self.const_f32(1)?;
        let zps: Vec<i64> = if self.input(2).is_some() { self.const_i64(2)? } else { vec![0] };
        if scales.is_empty() || zps.is_empty() {
            return Err(self.err("DequantizeLinear has an empty scale or zero point"));
        }
        let rank = shape.len() as i64;
        let mut axis = self.int("axis", 1);
        if axis < 0 {
            axis += rank;
        }
        let per_axis = scales.len() > 1;
        let (outer, len, inner) = if per_axis {
            if !(0..rank).contains(&axis) || shape[axis as usize] != scales.len() || (zps.len() != 1 && zps.len() != scales.len()) {
                return Err(self.err(format!("per-axis scales of length {} do not fit {shape:?} on axis {axis}", scales.len())));
            }
            let a = axis as usize;
            (shape[..a].iter().product::<usize>(), shape[a], shape[a + 1..].iter().product::<usize>())
        } else {
            (1, 1, q.len())
        };
        let mut f = vec![0.0f32; q.len()];
        for o in 0..outer {
            for c in 0..len {
                let (s, z) = (scales[if per_axis { c } else { 0 }], zps[if zps.len() > 1 { c } else { 0 }]);
                for i in 0..inner {
                    let idx = (o * len + c) * inner + i;
                    f[idx] = (q[idx] - z) as f32 * s;
                }
            }
        }
        let out = self.out0()?;
        let symmetric_s8 = dt == D::Int8 as i32 && zps.iter().all(|&z| z == 0);
        if symmetric_s8 && shape.len() == 4 && (!per_axis || axis == 1) {
            let cols = shape[1];
            let scales1 = if per_axis { scales.clone() } else { vec![scales[0]; cols] };
            let codes = q.iter().map(|&v| v.clamp(-128, 127) as i8).collect();
            self.qweights_axis1.insert(out.clone(), QWeights { q: codes, scales: scales1, per_channel: per_axis });
        }
        if symmetric_s8 && (!per_axis || axis == 0) && !shape.is_empty() {
            let rows = shape[0];
            let row_scales = if per_axis { scales.clone() } else { vec![scales[0]; rows] };
            let codes = q.iter().map(|&v| v.clamp(-128, 127) as i8).collect();
            self.qweights.insert(out.clone(), QWeights { q: codes, scales: row_scales, per_channel: per_axis });
        }
        self.syms.insert(out, Sym::F32(shape, f));
        Ok(())
    }

    fn cast(&mut self) -> Result<()> {
        let s = self.need(0)?.clone();
        let to = self.int("to", 1);
        let o = self.out0()?;
        match s {
            Sym::Runtime(x) if to == pb::tensor_proto::DataType::Float as i64 => self.emit1(Op::Identity, vec![x]),
            Sym::Dims(..) | Sym::I64(..) if to == pb::tensor_proto::DataType::Int64 as i64 => {
                self.syms.insert(o, s);
                Ok(())
            }
            Sym::I64(sh, v) if to == pb::tensor_proto::DataType::Float as i64 => {
                self.syms.insert(o, Sym::F32(sh, v.iter().map(|&x| x as f32).collect()));
                Ok(())
            }
            Sym::F32(..) if to == pb::tensor_proto::DataType::Float as i64 => {
                self.syms.insert(o, s);
                Ok(())
            }
            _ => Err(self.err(format!("cast to data type {to} is not supported"))),
        }
    }
}

fn unreachable_sym() -> Result<()> {
    Err(Error::Config("internal: unexpected symbolic value in Concat".into()))
}
