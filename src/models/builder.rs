//! Helpers that append PyTorch-named layers to a [`Graph`], pulling weights from a source.
//!
//! The builder tracks every value's channel count, so a layer's input width is what its input
//! really has; a conv's output width is the architecture's unless the config's per-layer
//! `widths` (a pruned model's) names another.

use std::collections::{BTreeMap, HashMap};

use super::weights::{Param, WeightSource};
use crate::error::Result;
use crate::graph::*;

/// Appends layers to a graph, fetching each layer's parameters by its module path.
pub struct Builder<'a> {
    pub g: Graph,
    pub src: &'a mut dyn WeightSource,
    widths: &'a BTreeMap<String, usize>,
    channels: HashMap<ValueId, usize>,
}

impl<'a> Builder<'a> {
    /// A builder over an empty graph; `widths` overrides output channels by layer name.
    pub fn new(src: &'a mut dyn WeightSource, widths: &'a BTreeMap<String, usize>) -> Self {
        Builder { g: Graph::default(), src, widths, channels: HashMap::new() }
    }

    /// Declares the graph input `[1, c, side, side]`.
    pub fn input(&mut self, name: &str, c: usize, side: usize) -> ValueId {
        let x = self.g.add_input(name, vec![1, c, side, side]);
        self.channels.insert(x, c);
        x
    }

    /// Channels of `v` (or `default` for values the builder did not make).
    pub fn channels(&self, v: ValueId, default: usize) -> usize {
        self.channels.get(&v).copied().unwrap_or(default)
    }

    /// Output width of layer `name`: the config's override, else `default`.
    fn width(&self, name: &str, default: usize) -> usize {
        self.widths.get(name).copied().unwrap_or(default)
    }

    /// Appends a weightless node; its output has the channels of its inputs (their sum for a
    /// Concat along axis 1).
    pub fn push(&mut self, name: impl Into<String>, op: Op, inputs: Vec<ValueId>) -> ValueId {
        let c = match op {
            Op::Concat { axis: 1 } => inputs.iter().map(|&v| self.channels(v, 0)).sum(),
            _ => inputs.first().map_or(0, |&v| self.channels(v, 0)),
        };
        let out = self.g.push(name, op, inputs);
        self.channels.insert(out, c);
        out
    }

    /// `name.weight` (and `name.bias` when `bias`) of a `cin → cout` k×k conv (`cin` is the
    /// input's width when the builder knows it, `cout` may be overridden by `widths`).
    #[allow(clippy::too_many_arguments)]
    pub fn conv(&mut self, name: &str, x: ValueId, cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool) -> Result<ValueId> {
        let cin = self.channels(x, cin);
        let cout = self.width(name, cout);
        let fan_in = cin * k * k;
        let weight = self.src.get(&format!("{name}.weight"), &[cout, cin, k, k], Param::Weight { fan_in })?;
        let mut c = Conv2d::new(weight, stride, pad, 1);
        if bias {
            c.bias = Some(self.src.get(&format!("{name}.bias"), &[cout], Param::Bias { fan_in })?.into_data());
        }
        let out = self.g.push(name, Op::Conv(c), vec![x]);
        self.channels.insert(out, cout);
        Ok(out)
    }

    /// A `cin → cout` transposed conv with kernel and stride `k` (bias included).
    pub fn conv_transpose(&mut self, name: &str, x: ValueId, cin: usize, cout: usize, k: usize) -> Result<ValueId> {
        let cin = self.channels(x, cin);
        let cout = self.width(name, cout);
        let fan_in = cout * k * k;
        let weight = self.src.get(&format!("{name}.weight"), &[cin, cout, k, k], Param::Weight { fan_in })?;
        let bias = self.src.get(&format!("{name}.bias"), &[cout], Param::Bias { fan_in })?.into_data();
        let c = ConvTranspose2d {
            weight,
            bias: Some(bias),
            stride: [k, k],
            pads: [0; 4],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            precision: Precision::F32,
        };
        let out = self.g.push(name, Op::ConvTranspose(c), vec![x]);
        self.channels.insert(out, cout);
        Ok(out)
    }

    /// BatchNorm2d over `c` channels (`weight`, `bias`, `running_mean`, `running_var`).
    pub fn bn(&mut self, name: &str, x: ValueId, c: usize, residual_end: bool) -> Result<ValueId> {
        let c = self.channels(x, c);
        let mut get = |suffix: &str, kind| self.src.get(&format!("{name}.{suffix}"), &[c], kind).map(|t| t.into_data());
        let bn = BatchNorm {
            gamma: get("weight", Param::BnGamma { residual_end })?,
            beta: get("bias", Param::BnBeta)?,
            mean: get("running_mean", Param::BnMean)?,
            var: get("running_var", Param::BnVar)?,
            eps: 1e-5,
        };
        Ok(self.push(name, Op::BatchNorm(bn), vec![x]))
    }

    /// `nn.Linear(cin, cout)`.
    pub fn linear(&mut self, name: &str, x: ValueId, cin: usize, cout: usize) -> Result<ValueId> {
        let cin = self.channels(x, cin);
        let weight = self.src.get(&format!("{name}.weight"), &[cout, cin], Param::Weight { fan_in: cin })?;
        let bias = self.src.get(&format!("{name}.bias"), &[cout], Param::Bias { fan_in: cin })?.into_data();
        let out = self.g.push(name, Op::Linear(Linear::new(weight, Some(bias))), vec![x]);
        self.channels.insert(out, cout);
        Ok(out)
    }

    /// A ReLU.
    pub fn relu(&mut self, name: &str, x: ValueId) -> ValueId {
        self.push(name, Op::Act(Activation::Relu), vec![x])
    }

    /// Max pooling with a square window.
    pub fn maxpool(&mut self, name: &str, x: ValueId, k: usize, stride: usize, pad: usize) -> ValueId {
        let p = Pool2d {
            kernel: [k, k],
            stride: [stride, stride],
            pads: [pad; 4],
            dilation: [1, 1],
            ceil_mode: false,
            count_include_pad: false,
        };
        self.push(name, Op::MaxPool(p), vec![x])
    }
}
