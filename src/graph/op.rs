//! The closed set of ops kestrel executes. Weighted ops own their weights, in the layouts
//! PyTorch and ONNX use:
//! - Conv weight `[Cout, Cin/groups, kh, kw]`;
//! - ConvTranspose weight `[Cin, Cout/groups, kh, kw]`;
//! - Linear (Gemm) weight `[out, in]`.
//!
//! Pads are `[top, left, bottom, right]`.

use crate::cpu::qgemm::PackedWeights;
use crate::error::Result;
use crate::qparams::{quantize_per_channel, quantize_symmetric, QParams};
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

impl Op {
    /// The float conv (geometry and epilogue) of a Conv or QConv.
    pub fn conv(&self) -> Option<&Conv2d> {
        match self {
            Op::Conv(c) | Op::QConv(QConv2d { conv: c, .. }) => Some(c),
            _ => None,
        }
    }

    /// Mutable [`Op::conv`].
    pub fn conv_mut(&mut self) -> Option<&mut Conv2d> {
        match self {
            Op::Conv(c) | Op::QConv(QConv2d { conv: c, .. }) => Some(c),
            _ => None,
        }
    }
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

/// Where a quantized op gets its input's u8 parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ActQuant {
    /// Fixed by calibration (static quantization) or by a QDQ model.
    Static(QParams),
    /// Computed from each input's min and max at run time (dynamic quantization).
    Dynamic,
}

/// s8 weights of a quantized layer, symmetric per output channel (or one scale for all).
#[derive(Clone, Debug)]
pub struct QWeights {
    /// `[rows][k]`.
    pub q: Vec<i8>,
    /// `[rows]` (all equal when per-tensor).
    pub scales: Vec<f32>,
    pub per_channel: bool,
}

impl QWeights {
    /// Quantizes `w: [rows][k]`.
    pub fn quantize(w: &[f32], rows: usize, per_channel: bool) -> QWeights {
        if per_channel {
            let (scales, q) = quantize_per_channel(w, rows);
            QWeights { q, scales, per_channel }
        } else {
            let (s, q) = quantize_symmetric(w);
            QWeights { q, scales: vec![s; rows], per_channel }
        }
    }

    /// The dequantized weights, `[rows][k]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let per = self.q.len() / self.scales.len().max(1);
        self.q.iter().enumerate().map(|(i, &v)| f32::from(v) * self.scales[i / per.max(1)]).collect()
    }
}

/// An INT8 convolution: u8 input × s8 weights in i32, then the f32 epilogue of `conv`
/// (`(acc − za·Σw)·sa·sw + bias`, residual, activation). `conv.weight` holds the dequantized
/// weights, so the layer's float meaning is explicit.
#[derive(Clone, Debug)]
pub struct QConv2d {
    pub conv: Conv2d,
    pub weights: QWeights,
    /// One packed weight matrix per group: `[Cout/g][Cin/g·kh·kw]`.
    pub packed: Vec<PackedWeights>,
    pub input: ActQuant,
    /// Set by the `fuse_requantize` pass: the output is written as u8 codes with these
    /// parameters (the next INT8 layers' input parameters) instead of f32.
    pub out_q: Option<QParams>,
    /// Set by the same pass: the input value holds u8 codes already quantized with
    /// `input`'s parameters.
    pub in_u8: bool,
    /// Set by the same pass when the residual input was a QuantizeDequantize of an INT8
    /// conv's output: the residual value holds those u8 codes, and the epilogue adds their
    /// dequantization `(code − zp)·scale` (the value the removed QuantizeDequantize passed on).
    pub res_q: Option<QParams>,
}

impl QConv2d {
    /// Quantizes a float conv's weights and packs them.
    pub fn new(mut conv: Conv2d, input: ActQuant, per_channel: bool) -> Result<Self> {
        let cout = conv.out_channels();
        let weights = QWeights::quantize(conv.weight.data(), cout, per_channel);
        conv.weight = Tensor::new(conv.weight.shape().to_vec(), weights.dequantize())?;
        Self::from_quantized(conv, weights, input)
    }

    /// Packs already quantized weights (from a QDQ model); `conv.weight` must be their dequantization.
    pub fn from_quantized(conv: Conv2d, weights: QWeights, input: ActQuant) -> Result<Self> {
        let cout = conv.out_channels();
        let g = conv.groups;
        let k = weights.q.len() / cout.max(1);
        let cg = cout / g;
        let packed = (0..g)
            .map(|gi| PackedWeights::new(&weights.q[gi * cg * k..(gi + 1) * cg * k], cg, k))
            .collect::<Result<Vec<_>>>()?;
        Ok(QConv2d { conv, weights, packed, input, out_q: None, in_u8: false, res_q: None })
    }
}

/// An INT8 transposed convolution (groups = 1): `col = Wᵀ·x` in INT8 with `Wᵀ` packed as
/// `[Cout·kh·kw][Cin]`, dequantized per output channel, then col2im in f32 plus bias.
/// `convt.weight` holds the dequantized weights; `weights.q` keeps the `[Cin, Cout, kh, kw]`
/// codes and `weights.scales` one scale per output channel (axis 1).
#[derive(Clone, Debug)]
pub struct QConvTranspose2d {
    pub convt: ConvTranspose2d,
    pub weights: QWeights,
    pub packed: PackedWeights,
    pub input: ActQuant,
}

impl QConvTranspose2d {
    /// Quantizes a float transposed conv (groups must be 1).
    pub fn new(mut convt: ConvTranspose2d, input: ActQuant, per_channel: bool) -> Result<Self> {
        let [cin, cout] = [convt.in_channels(), convt.out_channels()];
        let [kh, kw] = convt.kernel();
        let w = convt.weight.data();
        let per = kh * kw;
        // Per output channel (axis 1): gather each channel's values across Cin.
        let amax = |co: usize| (0..cin).flat_map(|ci| w[(ci * cout + co) * per..(ci * cout + co + 1) * per].iter()).fold(0.0f32, |m, v| m.max(v.abs()));
        let scale_of = |a: f32| if a > 0.0 && a.is_finite() { a / 127.0 } else { 1.0 };
        let scales: Vec<f32> = if per_channel {
            (0..cout).map(|co| scale_of(amax(co))).collect()
        } else {
            vec![scale_of((0..cout).map(amax).fold(0.0, f32::max)); cout]
        };
        let q: Vec<i8> = w.iter().enumerate().map(|(i, &v)| (v / scales[(i / per) % cout]).round_ties_even().clamp(-127.0, 127.0) as i8).collect();
        let weights = QWeights { q, scales, per_channel };
        let deq: Vec<f32> = weights.q.iter().enumerate().map(|(i, &v)| f32::from(v) * weights.scales[(i / per) % cout]).collect();
        convt.weight = Tensor::new(convt.weight.shape().to_vec(), deq)?;
        Self::from_quantized(convt, weights, input)
    }

    /// Packs already quantized `[Cin, Cout, kh, kw]` codes (from a QDQ model).
    pub fn from_quantized(convt: ConvTranspose2d, weights: QWeights, input: ActQuant) -> Result<Self> {
        if convt.groups != 1 {
            return Err(crate::error::Error::Invalid("INT8 ConvTranspose supports groups = 1 only".into()));
        }
        let [cin, cout] = [convt.in_channels(), convt.out_channels()];
        let [kh, kw] = convt.kernel();
        let rows = cout * kh * kw;
        let mut wt = vec![0i8; rows * cin];
        for ci in 0..cin {
            for r in 0..rows {
                wt[r * cin + ci] = weights.q[ci * rows + r];
            }
        }
        let packed = PackedWeights::new(&wt, rows, cin)?;
        Ok(QConvTranspose2d { convt, weights, packed, input })
    }
}

/// An INT8 fully connected layer (`linear.weight` holds the dequantized weights).
#[derive(Clone, Debug)]
pub struct QLinear {
    pub linear: Linear,
    pub weights: QWeights,
    pub packed: PackedWeights,
    pub input: ActQuant,
}

impl QLinear {
    /// Quantizes a float layer's weights and packs them.
    pub fn new(mut linear: Linear, input: ActQuant, per_channel: bool) -> Result<Self> {
        let (o, i) = (linear.weight.shape()[0], linear.weight.shape()[1]);
        let weights = QWeights::quantize(linear.weight.data(), o, per_channel);
        linear.weight = Tensor::new(vec![o, i], weights.dequantize())?;
        let packed = PackedWeights::new(&weights.q, o, i)?;
        Ok(QLinear { linear, weights, packed, input })
    }

    /// Packs already quantized weights.
    pub fn from_quantized(linear: Linear, weights: QWeights, input: ActQuant) -> Result<Self> {
        let (o, i) = (linear.weight.shape()[0], linear.weight.shape()[1]);
        let packed = PackedWeights::new(&weights.q, o, i)?;
        Ok(QLinear { linear, weights, packed, input })
    }
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
    /// INT8 convolution.
    QConv(QConv2d),
    /// INT8 fully connected layer.
    QLinear(QLinear),
    /// INT8 transposed convolution.
    QConvTranspose(QConvTranspose2d),
    /// Max pooling over u8 codes held in f32 buffers, between an INT8 conv that hands out u8
    /// and INT8 convs that read u8 (set by `fuse_requantize`; exact, since quantization is
    /// monotone).
    MaxPoolU8(Pool2d),
    /// A QuantizeLinear → DequantizeLinear pair: `x ↦ dequantize(quantize(x))`, with static
    /// parameters or (DynamicQuantizeLinear) parameters from each input's range.
    FakeQuant(ActQuant),
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
            Op::MaxPool(_) | Op::MaxPoolU8(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Linear(_) => "Gemm",
            Op::Concat { .. } => "Concat",
            Op::Resize(_) => "Resize",
            Op::Softmax { .. } => "Softmax",
            Op::Identity => "Identity",
            Op::QConv(_) => "QConv",
            Op::QLinear(_) => "QGemm",
            Op::QConvTranspose(_) => "QConvTranspose",
            Op::FakeQuant(_) => "QuantizeDequantize",
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
            Op::QConv(q) => q.weights.q.len() + q.conv.bias.as_ref().map_or(0, Vec::len),
            Op::QLinear(q) => q.weights.q.len() + q.linear.bias.as_ref().map_or(0, Vec::len),
            Op::QConvTranspose(q) => q.weights.q.len() + q.convt.bias.as_ref().map_or(0, Vec::len),
            _ => 0,
        }
    }

    /// Bytes of weight data as stored: f32 parameters and buffers (such as running
    /// statistics), or s8 weights plus f32 scales and bias for quantized layers.
    pub fn weight_bytes(&self) -> usize {
        let f32_bias = |b: &Option<Vec<f32>>| 4 * b.as_ref().map_or(0, Vec::len);
        match self {
            Op::QConv(q) => q.weights.q.len() + 4 * q.weights.scales.len() + f32_bias(&q.conv.bias),
            Op::QLinear(q) => q.weights.q.len() + 4 * q.weights.scales.len() + f32_bias(&q.linear.bias),
            Op::QConvTranspose(q) => q.weights.q.len() + 4 * q.weights.scales.len() + f32_bias(&q.convt.bias),
            Op::BatchNorm(b) => 4 * (self.param_count() + 2 * b.gamma.len()),
            _ => 4 * self.param_count(),
        }
    }
}
