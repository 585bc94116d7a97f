//! The graph IR: values (named tensors), nodes in topological order, constant values and
//! graph inputs with a free batch dimension.
//!
//! Every node has exactly one output value. Constant values (from ONNX initializers or
//! `Constant` nodes) may feed `Add`, `Mul` and `Concat`; weighted ops own their weights.

pub mod live_taps;
pub mod op;
pub mod passes;
pub mod shape;

use std::collections::BTreeMap;

pub use op::*;

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Index of a value in [`Graph::values`].
pub type ValueId = usize;

/// A graph input: its value and its shape with dimension 0 (batch) free.
#[derive(Clone, Debug)]
pub struct GraphInput {
    pub id: ValueId,
    /// The full declared shape; `shape[0]` is the default batch.
    pub shape: Vec<usize>,
}

/// One op applied to its inputs, producing one value.
#[derive(Clone, Debug)]
pub struct Node {
    pub name: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
}

/// A model graph. Nodes are kept in topological order.
#[derive(Clone, Debug, Default)]
pub struct Graph {
    /// Value names, indexed by [`ValueId`].
    pub values: Vec<String>,
    pub nodes: Vec<Node>,
    pub inputs: Vec<GraphInput>,
    pub outputs: Vec<ValueId>,
    pub constants: BTreeMap<ValueId, Tensor>,
    /// When set, input H and W must be multiples of this (UNet: 2^depth).
    pub spatial_multiple: Option<usize>,
}

impl Graph {
    /// Adds a named value and returns its id.
    pub fn add_value(&mut self, name: impl Into<String>) -> ValueId {
        self.values.push(name.into());
        self.values.len() - 1
    }

    /// Declares a graph input of `shape` (batch first).
    pub fn add_input(&mut self, name: impl Into<String>, shape: Vec<usize>) -> ValueId {
        let id = self.add_value(name);
        self.inputs.push(GraphInput { id, shape });
        id
    }

    /// Adds a constant value.
    pub fn add_constant(&mut self, name: impl Into<String>, t: Tensor) -> ValueId {
        let id = self.add_value(name);
        self.constants.insert(id, t);
        id
    }

    /// Appends a node whose output value is named after the node; returns the output id.
    pub fn push(&mut self, name: impl Into<String>, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let name = name.into();
        let output = self.add_value(name.clone());
        self.nodes.push(Node { name, op, inputs, output });
        output
    }

    /// The node producing each value, if any.
    pub fn producers(&self) -> Vec<Option<usize>> {
        let mut p = vec![None; self.values.len()];
        for (i, n) in self.nodes.iter().enumerate() {
            p[n.output] = Some(i);
        }
        p
    }

    /// How many times each value is read (node inputs plus graph outputs).
    pub fn use_counts(&self) -> Vec<usize> {
        let mut c = vec![0; self.values.len()];
        for n in &self.nodes {
            for &i in &n.inputs {
                c[i] += 1;
            }
        }
        for &o in &self.outputs {
            c[o] += 1;
        }
        c
    }

    /// Whether any node computes in INT8 or quantizes its input (an op at INT8
    /// [`Precision`], or a QuantizeDequantize): such a graph has QDQ semantics, and parity judges
    /// it in output quantization steps against ORT running the Q/DQ nodes literally.
    pub fn is_quantized(&self) -> bool {
        self.nodes.iter().any(|n| n.op.int8().is_some() || matches!(n.op, Op::FakeQuant(_)))
    }

    /// Total weight parameters.
    pub fn param_count(&self) -> usize {
        self.nodes.iter().map(|n| n.op.param_count()).sum::<usize>()
            + self.constants.values().map(Tensor::numel).sum::<usize>()
    }

    /// Checks that every node reads only values defined before it and that arities match.
    pub fn validate(&self) -> Result<()> {
        let mut defined = vec![false; self.values.len()];
        for i in &self.inputs {
            defined[i.id] = true;
        }
        for &c in self.constants.keys() {
            defined[c] = true;
        }
        for n in &self.nodes {
            let arity_ok = match &n.op {
                Op::Add | Op::Mul | Op::Sub | Op::Div | Op::Pow | Op::PRelu => n.inputs.len() == 2,
                Op::Concat { .. } => !n.inputs.is_empty(),
                Op::Conv(c) => n.inputs.len() == 1 + usize::from(c.residual),
                _ => n.inputs.len() == 1,
            };
            if !arity_ok {
                return Err(Error::Shape {
                    node: n.name.clone(),
                    op: n.op.kind(),
                    reason: format!("wrong number of inputs ({})", n.inputs.len()),
                });
            }
            for &i in &n.inputs {
                if i >= defined.len() || !defined[i] {
                    return Err(Error::Shape {
                        node: n.name.clone(),
                        op: n.op.kind(),
                        reason: format!("reads value #{i} before it is defined"),
                    });
                }
            }
            defined[n.output] = true;
        }
        for &o in &self.outputs {
            if !defined[o] {
                return Err(Error::Config(format!("graph output '{}' is never produced", self.values[o])));
            }
        }
        Ok(())
    }

    /// Input shape for a given batch size.
    pub fn input_shape(&self, batch: usize) -> Result<Vec<usize>> {
        let i = self.inputs.first().ok_or_else(|| Error::Config("graph has no input".into()))?;
        let mut s = i.shape.clone();
        if let Some(b) = s.first_mut() {
            *b = batch;
        }
        Ok(s)
    }

    /// Bytes of f32 weights, buffers and constants.
    pub fn weight_bytes(&self) -> usize {
        self.nodes.iter().map(|n| n.op.weight_bytes()).sum::<usize>() + 4 * self.constants.values().map(Tensor::numel).sum::<usize>()
    }

    /// Multiply-accumulate count for one run at `input_shape`.
    pub fn macs(&self, input_shape: &[usize]) -> Result<u64> {
        Ok(self.macs_at(&shape::infer(self, &[input_shape.to_vec()])?))
    }

    /// [`Graph::macs`] with every value's shape already inferred (`shapes[value id]`).
    pub fn macs_at(&self, shapes: &[Vec<usize>]) -> u64 {
        self.node_macs(shapes).into_iter().fold(0u64, u64::saturating_add)
    }

    /// Each node's multiply-accumulate count (indexed like `nodes`; 0 for ops without
    /// products), every value's shape already inferred (`shapes[value id]`).
    pub fn node_macs(&self, shapes: &[Vec<usize>]) -> Vec<u64> {
        // Saturating: a file's shapes can imply more than 2^64 (the planner refuses them later).
        let elems = |s: &[usize]| s.iter().fold(1u64, |a, &d| a.saturating_mul(d as u64));
        let mut macs = Vec::with_capacity(self.nodes.len());
        for n in &self.nodes {
            let out_elems = elems(&shapes[n.output]);
            let per = match &n.op {
                Op::Conv(c) => out_elems.saturating_mul(elems(&c.weight.shape()[1..])),
                Op::ConvTranspose(c) => elems(&shapes[n.inputs[0]]).saturating_mul(elems(&c.weight.shape()[1..])),
                Op::ConvTransposeNd(c) => elems(&shapes[n.inputs[0]]).saturating_mul(elems(&c.weight.shape()[1..])),
                Op::Linear(l) => out_elems.saturating_mul(l.weight.shape()[1] as u64),
                Op::MatMul { b } => {
                    let bs = b.shape();
                    out_elems.saturating_mul(bs[bs.len().saturating_sub(2)] as u64)
                }
                _ => 0,
            };
            macs.push(per);
        }
        macs
    }
}
