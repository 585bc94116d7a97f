//! Helpers that append PyTorch-named layers to a [`Graph`], pulling weights from a source.

use super::weights::{Param, WeightSource};
use crate::error::Result;
use crate::graph::*;

/// Appends layers to a graph, fetching each layer's parameters by its module path.
pub struct Builder<'a> {
    pub g: Graph,
    pub src: &'a mut dyn WeightSource,
}

impl<'a> Builder<'a> {
    /// A builder over an empty graph.
    pub fn new(src: &'a mut dyn WeightSource) -> Self {
        Builder { g: Graph::default(), src }
    }

    /// `name.weight` (and `name.bias` when `bias`) of a `cin → cout` k×k conv.
    #[allow(clippy::too_many_arguments)]
    pub fn conv(&mut self, name: &str, x: ValueId, cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool) -> Result<ValueId> {
        let fan_in = cin * k * k;
        let weight = self.src.get(&format!("{name}.weight"), &[cout, cin, k, k], Param::Weight { fan_in })?;
        let mut c = Conv2d::new(weight, stride, pad, 1);
        if bias {
            c.bias = Some(self.src.get(&format!("{name}.bias"), &[cout], Param::Bias { fan_in })?.into_data());
        }
        Ok(self.g.push(name, Op::Conv(c), vec![x]))
    }

    /// A `cin → cout` transposed conv with kernel and stride `k` (bias included).
    pub fn conv_transpose(&mut self, name: &str, x: ValueId, cin: usize, cout: usize, k: usize) -> Result<ValueId> {
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
        Ok(self.g.push(name, Op::ConvTranspose(c), vec![x]))
    }

    /// BatchNorm2d over `c` channels (`weight`, `bias`, `running_mean`, `running_var`).
    pub fn bn(&mut self, name: &str, x: ValueId, c: usize, residual_end: bool) -> Result<ValueId> {
        let mut get = |suffix: &str, kind| self.src.get(&format!("{name}.{suffix}"), &[c], kind).map(|t| t.into_data());
        let bn = BatchNorm {
            gamma: get("weight", Param::BnGamma { residual_end })?,
            beta: get("bias", Param::BnBeta)?,
            mean: get("running_mean", Param::BnMean)?,
            var: get("running_var", Param::BnVar)?,
            eps: 1e-5,
        };
        Ok(self.g.push(name, Op::BatchNorm(bn), vec![x]))
    }

    /// `nn.Linear(cin, cout)`.
    pub fn linear(&mut self, name: &str, x: ValueId, cin: usize, cout: usize) -> Result<ValueId> {
        let weight = self.src.get(&format!("{name}.weight"), &[cout, cin], Param::Weight { fan_in: cin })?;
        let bias = self.src.get(&format!("{name}.bias"), &[cout], Param::Bias { fan_in: cin })?.into_data();
        Ok(self.g.push(name, Op::Linear(Linear::new(weight, Some(bias))), vec![x]))
    }

    /// A ReLU.
    pub fn relu(&mut self, name: &str, x: ValueId) -> ValueId {
        self.g.push(name, Op::Act(Activation::Relu), vec![x])
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
        self.g.push(name, Op::MaxPool(p), vec![x])
    }
}
