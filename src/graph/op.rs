//! The closed set of ops kestrel executes. Weighted ops own their weights, in the layouts
//! PyTorch and ONNX use:
//! - Conv weight `[Cout, Cin/groups, kh, kw]`;
//! - ConvTranspose weight `[Cin, Cout/groups, kh, kw]`;
//! - Linear (Gemm) weight `[out, in]`.
//!
//! Pads are `[top, left, bottom, right]`.

use crate::tensor::Tensor;

/// A pointwise activation, standalone or fused into a conv epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    /// Clip to `[min, max]`; Relu6 is `Clip(0, 6)`.
    Clip(f32, f32),
}

impl Activation {
    /// Applies the activation to one value.
    #[inline(always)]
    pub fn apply(self, x: f32) -> f32 {
        match self {
            Activation::Relu => x.max(0.0),
            Activation::LeakyRelu(a) => {
                if x < 0.0 {
                    x * a
                } else {
                    x
                }
            }
            Activation::Sigmoid => 1.0 / (1.0 + (-x).exp()),
            Activation::Clip(lo, hi) => x.max(lo).min(hi),
        }
    }
}

/// 2-D convolution with an optional fused epilogue:
/// `y = act(conv(x) + bias + residual)`.
#[derive(Clone, Debug)]
pub struct Conv2d {
    /// `[Cout, Cin/groups, kh, kw]`.
    pub weight: Tensor,
    /// `[Cout]`.
    pub bias: Option<Vec<f32>>,
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
    /// Fused activation, applied last.
    pub act: Option<Activation>,
    /// When true the node has a second input of the output's shape, added before `act`.
    pub residual: bool,
}

impl Conv2d {
    /// A plain conv with no bias or epilogue.
    pub fn new(weight: Tensor, stride: usize, pad: usize, groups: usize) -> Self {
        Conv2d {
            weight,
            bias: None,
            stride: [stride; 2],
            pads: [pad; 4],
            dilation: [1, 1],
            groups,
            act: None,
            residual: false,
        }
    }
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[0]
    }
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[1] * self.groups
    }
    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape()[2], self.weight.shape()[3]]
    }
}

/// 2-D transposed convolution (ONNX ConvTranspose without `output_shape`).
#[derive(Clone, Debug)]
pub struct ConvTranspose2d {
    /// `[Cin, Cout/groups, kh, kw]`.
    pub weight: Tensor,
    /// `[Cout]`.
    pub bias: Option<Vec<f32>>,
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub output_padding: [usize; 2],
    pub dilation: [usize; 2],
    pub groups: usize,
}

impl ConvTranspose2d {
    /// Output channels.
    pub fn out_channels(&self) -> usize {
        self.weight.shape()[1] * self.groups
    }
    /// Input channels.
    pub fn in_channels(&self) -> usize {
        self.weight.shape()[0]
    }
    /// `[kh, kw]`.
    pub fn kernel(&self) -> [usize; 2] {
        [self.weight.shape()[2], self.weight.shape()[3]]
    }
}

/// Inference-mode batch normalisation over axis 1.
#[derive(Clone, Debug)]
pub struct BatchNorm {
    pub gamma: Vec<f32>,
    pub beta: Vec<f32>,
    pub mean: Vec<f32>,
    pub var: Vec<f32>,
    pub eps: f32,
}

impl BatchNorm {
    /// Per-channel `(scale, shift)` with `y = x * scale + shift`.
    pub fn affine(&self) -> (Vec<f32>, Vec<f32>) {
        let scale: Vec<f32> =
            self.gamma.iter().zip(&self.var).map(|(g, v)| g / (v + self.eps).sqrt()).collect();
        let shift = self.beta.iter().zip(&self.mean).zip(&scale).map(|((b, m), s)| b - m * s).collect();
        (scale, shift)
    }
}

/// Max or average pooling window.
#[derive(Clone, Debug, PartialEq)]
pub struct Pool2d {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub pads: [usize; 4],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
    /// Average pooling only: count padded cells in the divisor.
    pub count_include_pad: bool,
}

/// A fully connected layer, `y = x · Wᵀ + b` over `[N, in]`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Vec<f32>>,
}

/// How Resize maps an output coordinate back to the input (ONNX `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
}

/// Nearest-neighbour rounding (ONNX `nearest_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NearestMode {
    RoundPreferFloor,
    RoundPreferCeil,
    Floor,
    Ceil,
}

/// Interpolation for Resize.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ResizeMode {
    Nearest(NearestMode),
    /// Bilinear over H and W.
    Linear,
}

/// How the output size of a Resize is given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeTarget {
    /// Scale factors for H and W; the output is `floor(in * scale)`.
    Scales([f32; 2]),
    /// Output H and W.
    Sizes([usize; 2]),
}

/// Spatial resize of an NCHW tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub target: ResizeTarget,
}

/// The closed set of ops. Each node has one output.
#[derive(Clone, Debug)]
pub enum Op {
    Conv(Conv2d),
    ConvTranspose(ConvTranspose2d),
    BatchNorm(BatchNorm),
    Act(Activation),
    /// Elementwise add with numpy broadcasting.
    Add,
    /// Elementwise multiply with numpy broadcasting (per-channel scale included).
    Mul,
    MaxPool(Pool2d),
    AveragePool(Pool2d),
    GlobalAveragePool,
    /// Flattens to 2-D `[prod(dims[..axis]), prod(dims[axis..])]`.
    Flatten { axis: usize },
    /// ONNX Reshape with a constant target: `0` copies the input dim, `-1` is inferred.
    Reshape { shape: Vec<i64> },
    Linear(Linear),
    Concat { axis: usize },
    Resize(Resize),
    Softmax { axis: usize },
    Identity,
}

impl Op {
    /// A short op name for messages and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(_) => "ConvTranspose",
            Op::BatchNorm(_) => "BatchNormalization",
            Op::Act(Activation::Relu) => "Relu",
            Op::Act(Activation::LeakyRelu(_)) => "LeakyRelu",
            Op::Act(Activation::Sigmoid) => "Sigmoid",
            Op::Act(Activation::Clip(..)) => "Clip",
            Op::Add => "Add",
            Op::Mul => "Mul",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Linear(_) => "Gemm",
            Op::Concat { .. } => "Concat",
            Op::Resize(_) => "Resize",
            Op::Softmax { .. } => "Softmax",
            Op::Identity => "Identity",
        }
    }

    /// Number of learnable parameters the op owns (PyTorch's count: BatchNorm's running
    /// statistics are buffers, not parameters).
    pub fn param_count(&self) -> usize {
        match self {
            Op::Conv(c) => c.weight.numel() + c.bias.as_ref().map_or(0, Vec::len),
            Op::ConvTranspose(c) => c.weight.numel() + c.bias.as_ref().map_or(0, Vec::len),
            Op::BatchNorm(b) => 2 * b.gamma.len(),
            Op::Linear(l) => l.weight.numel() + l.bias.as_ref().map_or(0, Vec::len),
            _ => 0,
        }
    }

    /// Bytes of f32 data the op holds: parameters plus buffers such as running statistics.
    pub fn weight_bytes(&self) -> usize {
        let buffers = if let Op::BatchNorm(b) = self { 2 * b.gamma.len() } else { 0 };
        4 * (self.param_count() + buffers)
    }
}
