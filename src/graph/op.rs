//! The closed set of ops a model computes, independent of any backend. Weighted ops own their
//! weights, in the layouts PyTorch and ONNX use:
//! - Conv weight `[Cout, Cin/groups, kh, kw]`;
//! - ConvTranspose weight `[Cin, Cout/groups, kh, kw]`;
//! - Linear (Gemm) weight `[out, in]`.
//!
//! Pads are `[top, left, bottom, right]`.
//!
//! A weighted op computes at a [`Precision`]: f32, or INT8 with its s8 weight codes, their
//! scales and its input's u8 parameters as data ([`Int8`]). The float `weight` of an INT8 op
//! holds the dequantized codes, so the layer's meaning is explicit. How a backend runs an op
//! (packed panels, kernel choice, u8 hand-offs between layers) is decided when a session is
//! prepared (`exec::prepare`), never stored here.

use crate::error::{Error, Result};
use crate::qparams::{quantize_per_channel, quantize_symmetric, QParams, WeightBits};
use crate::tensor::Tensor;

/// A pointwise activation, standalone or fused into a conv epilogue.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Relu,
    LeakyRelu(f32),
    Sigmoid,
    /// Clip to `[min, max]`; Relu6 is `Clip(0, 6)`.
    Clip(f32, f32),
    Tanh,
    /// `x` for `x ≥ 0`, else `alpha · (eˣ − 1)`.
    Elu(f32),
    /// `gamma · x` for `x > 0`, else `gamma · alpha · (eˣ − 1)` (ONNX `alpha`, `gamma`).
    Selu(f32, f32),
    /// `clamp(alpha · x + beta, 0, 1)`.
    HardSigmoid(f32, f32),
    /// `x · clamp(x / 6 + 1/2, 0, 1)`.
    HardSwish,
    /// `x · tanh(ln(1 + eˣ))`.
    Mish,
    Neg,
    Sqrt,
    Exp,
    /// `x^p` for a constant exponent `p` (ONNX Pow with a constant scalar exponent).
    Pow(f32),
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
            Activation::Tanh => x.tanh(),
            Activation::Elu(a) => {
                if x < 0.0 {
                    a * x.exp_m1()
                } else {
                    x
                }
            }
            Activation::Selu(a, g) => {
                if x > 0.0 {
                    g * x
                } else {
                    g * a * x.exp_m1()
                }
            }
            Activation::HardSigmoid(a, b) => (a * x + b).clamp(0.0, 1.0),
            Activation::HardSwish => x * (x / 6.0 + 0.5).clamp(0.0, 1.0),
            // ln(1 + eˣ) without overflow for large x.
            Activation::Mish => x * (if x > 20.0 { x } else { x.exp().ln_1p() }).tanh(),
            Activation::Neg => -x,
            Activation::Sqrt => x.sqrt(),
            Activation::Exp => x.exp(),
            Activation::Pow(p) => x.powf(p),
        }
    }
}

/// The arithmetic a weighted op (Conv, ConvTranspose, Linear) computes in.
#[derive(Clone, Debug, Default)]
pub enum Precision {
    #[default]
    F32,
    /// u8 input codes × s8 weight codes, accumulated exactly, then the op's f32 epilogue on
    /// `acc · s_in · s_w`.
    Int8(Int8),
}

/// The quantization data of an INT8 op: its weight codes and scales, and where its input's
/// u8 parameters come from.
#[derive(Clone, Debug)]
pub struct Int8 {
    pub weights: QWeights,
    pub input: ActQuant,
}

impl Precision {
    /// The INT8 data, when the op is INT8.
    pub fn int8(&self) -> Option<&Int8> {
        match self {
            Precision::Int8(q) => Some(q),
            Precision::F32 => None,
        }
    }

    /// Whether the op computes in f32.
    pub fn is_f32(&self) -> bool {
        matches!(self, Precision::F32)
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
    pub precision: Precision,
}

impl Op {
    /// The conv of a Conv node (any precision).
    pub fn conv(&self) -> Option<&Conv2d> {
        match self {
            Op::Conv(c) => Some(c),
            _ => None,
        }
    }

    /// Mutable [`Op::conv`].
    pub fn conv_mut(&mut self) -> Option<&mut Conv2d> {
        match self {
            Op::Conv(c) => Some(c),
            _ => None,
        }
    }

    /// The precision of a weighted op; `None` for the others.
    pub fn precision(&self) -> Option<&Precision> {
        match self {
            Op::Conv(c) => Some(&c.precision),
            Op::ConvTranspose(c) => Some(&c.precision),
            Op::Linear(l) => Some(&l.precision),
            _ => None,
        }
    }

    /// The INT8 data of an INT8 weighted op.
    pub fn int8(&self) -> Option<&Int8> {
        self.precision().and_then(Precision::int8)
    }
}

fn codes_mismatch(what: &str, codes: usize, weights: usize, scales: usize, rows: usize) -> Error {
    Error::BadTensor {
        name: format!("{what} weights"),
        reason: format!("{codes} s8 codes and {scales} scales for {weights} weights in {rows} channels"),
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
            precision: Precision::F32,
        }
    }

    /// The INT8 version of this f32 conv: s8 weights of `bits`, symmetric per output channel
    /// (or per tensor), `weight` replaced by their dequantization.
    pub fn quantized(mut self, input: ActQuant, per_channel: bool, bits: WeightBits) -> Result<Self> {
        let cout = self.out_channels();
        let weights = QWeights::quantize(self.weight.data(), cout, per_channel, bits);
        self.weight = Tensor::new(self.weight.shape().to_vec(), weights.dequantize())?;
        self.with_int8(weights, input)
    }

    /// This conv at INT8 precision with already quantized weights (from a QDQ model);
    /// `weight` must hold their dequantization.
    pub fn with_int8(mut self, weights: QWeights, input: ActQuant) -> Result<Self> {
        let cout = self.out_channels();
        if weights.q.len() != self.weight.numel() || weights.scales.len() != cout {
            return Err(codes_mismatch("conv", weights.q.len(), self.weight.numel(), weights.scales.len(), cout));
        }
        self.precision = Precision::Int8(Int8 { weights, input });
        Ok(self)
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
    pub precision: Precision,
}

/// Transposed convolution over `k` spatial axes for the ranks [`ConvTranspose2d`] does not
/// cover (1-D, 3-D and beyond), in f32. Per spatial axis `a`: `stride[a]`, `dilation[a]`,
/// `output_padding[a]`, pads `pads[a]` before and `pads[k + a]` after (ONNX's order).
#[derive(Clone, Debug)]
pub struct ConvTransposeNd {
    /// `[Cin, Cout/groups, k1, …, kk]`.
    pub weight: Tensor,
    /// `[Cout]`.
    pub bias: Option<Vec<f32>>,
    pub stride: Vec<usize>,
    pub pads: Vec<usize>,
    pub output_padding: Vec<usize>,
    pub dilation: Vec<usize>,
    pub groups: usize,
}

impl ConvTranspose2d {
    /// The INT8 version of this f32 transposed conv: s8 weights of `bits`, symmetric per
    /// output channel (axis 1 of the weight) or per tensor, `weight` replaced by their
    /// dequantization.
    pub fn quantized(mut self, input: ActQuant, per_channel: bool, bits: WeightBits) -> Result<Self> {
        let qmax = bits.qmax();
        let [cin, cout] = [self.in_channels(), self.out_channels()];
        let [kh, kw] = self.kernel();
        let w = self.weight.data();
        let per = kh * kw;
        let cout_g = cout / self.groups.max(1);
        // Output channel of weight element i: group of its input channel, then axis 1.
        let chan = |i: usize| (i / (cout_g * per)) / (cin / self.groups.max(1)) * cout_g + (i / per) % cout_g;
        let mut amax = vec![0.0f32; cout];
        for (i, v) in w.iter().enumerate() {
            amax[chan(i)] = amax[chan(i)].max(v.abs());
        }
        let scale_of = |a: f32| if a > 0.0 && a.is_finite() { a / qmax } else { 1.0 };
        let scales: Vec<f32> = if per_channel {
            amax.iter().map(|&a| scale_of(a)).collect()
        } else {
            vec![scale_of(amax.iter().copied().fold(0.0, f32::max)); cout]
        };
        let q: Vec<i8> = w.iter().enumerate().map(|(i, &v)| (v / scales[chan(i)]).round_ties_even().clamp(-qmax, qmax) as i8).collect();
        let deq: Vec<f32> = q.iter().enumerate().map(|(i, &v)| f32::from(v) * scales[chan(i)]).collect();
        self.weight = Tensor::new(self.weight.shape().to_vec(), deq)?;
        self.with_int8(QWeights { q, scales, per_channel }, input)
    }

    /// This transposed conv at INT8 precision with already quantized `[Cin, Cout/g, kh, kw]`
    /// codes and one scale per output channel (from a QDQ model).
    pub fn with_int8(mut self, weights: QWeights, input: ActQuant) -> Result<Self> {
        let cout = self.out_channels();
        if weights.q.len() != self.weight.numel() || weights.scales.len() != cout {
            return Err(codes_mismatch("ConvTranspose", weights.q.len(), self.weight.numel(), weights.scales.len(), cout));
        }
        self.precision = Precision::Int8(Int8 { weights, input });
        Ok(self)
    }

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

/// Max or average pooling over the `k` spatial axes of `[N, C, D1, …, Dk]`, for the ranks
/// [`Pool2d`] does not cover (1-D and 3-D and beyond). Per spatial axis `a`: `kernel[a]`,
/// `stride[a]`, `dilation[a]`, and pads `pads[a]` before and `pads[k + a]` after (ONNX's
/// order). Padding taps never win a max and count in an average only with
/// `count_include_pad`, as for [`Pool2d`].
#[derive(Clone, Debug, PartialEq)]
pub struct PoolNd {
    pub max: bool,
    pub kernel: Vec<usize>,
    pub stride: Vec<usize>,
    pub pads: Vec<usize>,
    pub dilation: Vec<usize>,
    pub ceil_mode: bool,
    pub count_include_pad: bool,
}

/// A fully connected layer, `y = x · Wᵀ + b` over `[N, in]`.
#[derive(Clone, Debug)]
pub struct Linear {
    /// `[out, in]`.
    pub weight: Tensor,
    /// `[out]`.
    pub bias: Option<Vec<f32>>,
    pub precision: Precision,
}

impl Linear {
    /// An f32 layer.
    pub fn new(weight: Tensor, bias: Option<Vec<f32>>) -> Self {
        Linear { weight, bias, precision: Precision::F32 }
    }

    /// The INT8 version of this f32 layer: s8 weights of `bits` per output row (or per
    /// tensor), `weight` replaced by their dequantization.
    pub fn quantized(mut self, input: ActQuant, per_channel: bool, bits: WeightBits) -> Result<Self> {
        let (o, i) = (self.weight.shape()[0], self.weight.shape()[1]);
        let weights = QWeights::quantize(self.weight.data(), o, per_channel, bits);
        self.weight = Tensor::new(vec![o, i], weights.dequantize())?;
        self.with_int8(weights, input)
    }

    /// This layer at INT8 precision with already quantized `[out, in]` codes.
    pub fn with_int8(mut self, weights: QWeights, input: ActQuant) -> Result<Self> {
        let o = self.weight.shape()[0];
        if weights.q.len() != self.weight.numel() || weights.scales.len() != o {
            return Err(codes_mismatch("Gemm", weights.q.len(), self.weight.numel(), weights.scales.len(), o));
        }
        self.precision = Precision::Int8(Int8 { weights, input });
        Ok(self)
    }
}

/// How Resize maps an output coordinate back to the input (ONNX `coordinate_transformation_mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CoordMode {
    HalfPixel,
    PytorchHalfPixel,
    AlignCorners,
    Asymmetric,
    /// `half_pixel` with the input's centre mapped to the output's (opset 18).
    HalfPixelSymmetric,
    /// Samples the region [`Resize::roi`] of the input; outside it, [`Resize::extrapolation`].
    TfCropAndResize,
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
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeMode {
    Nearest(NearestMode),
    /// Bilinear over H and W.
    Linear,
    /// Bicubic over H and W with coefficient `a` (ONNX `cubic_coeff_a`: −0.75 by default, torch
    /// uses the same, TensorFlow −0.5).
    Cubic { a: f32 },
}

/// How `keep_aspect_ratio_policy` fits one scale to the requested sizes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AspectPolicy {
    /// The output fits inside the sizes: the smaller of the two ratios.
    NotLarger,
    /// The output covers the sizes: the larger of the two ratios.
    NotSmaller,
}

/// How the output size of a Resize is given.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum ResizeTarget {
    /// Scale factors for H and W; the output is `floor(in * scale)`.
    Scales([f32; 2]),
    /// Output H and W.
    Sizes([usize; 2]),
    /// One scale for H and W chosen from the requested sizes by `policy`; the output is
    /// `round_half_up(in * scale)`. With `unit_axes` the policy also weighs N and C, whose
    /// ratio is 1 (ONNX's reading of a sizes list that covers every axis).
    KeepAspect { sizes: [usize; 2], policy: AspectPolicy, unit_axes: bool },
}

/// Spatial resize of an NCHW tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Resize {
    pub mode: ResizeMode,
    pub coord: CoordMode,
    pub target: ResizeTarget,
    /// Widen the linear or cubic filter by 1/scale when downsampling (ONNX `antialias`).
    pub antialias: bool,
    /// Taps outside the input get weight 0, the others renormalised (ONNX `exclude_outside`).
    pub exclude_outside: bool,
    /// The value of outputs sampled outside the input, for [`CoordMode::TfCropAndResize`].
    pub extrapolation: f32,
    /// `[h_start, w_start, h_end, w_end]`, normalised, for [`CoordMode::TfCropAndResize`].
    pub roi: [f32; 4],
}

impl Resize {
    /// A plain resize: no antialias, no excluded taps, the whole input.
    pub fn new(mode: ResizeMode, coord: CoordMode, target: ResizeTarget) -> Resize {
        Resize { mode, coord, target, antialias: false, exclude_outside: false, extrapolation: 0.0, roi: [0.0, 0.0, 1.0, 1.0] }
    }

    /// Whether the separable nearest/bilinear path computes it (else the general tap path).
    pub fn is_simple(&self) -> bool {
        !self.antialias
            && !self.exclude_outside
            && matches!(self.mode, ResizeMode::Nearest(_) | ResizeMode::Linear)
            && matches!(self.coord, CoordMode::HalfPixel | CoordMode::PytorchHalfPixel | CoordMode::AlignCorners | CoordMode::Asymmetric)
    }
}

/// The reduction of [`Reduce`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceKind {
    Mean,
    /// NaN if any reduced value is NaN (numpy's `max`).
    Max,
}

/// ReduceMean / ReduceMax over any axes (the spatial mean of NCHW is imported as
/// GlobalAveragePool instead).
#[derive(Clone, Debug, PartialEq)]
pub struct Reduce {
    pub kind: ReduceKind,
    /// Sorted, distinct, each below the input's rank.
    pub axes: Vec<usize>,
    /// Reduced axes stay as 1 (else they are removed).
    pub keepdims: bool,
}

/// What ONNX Pad puts outside the input.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadMode {
    /// [`Pad::value`].
    Constant,
    /// The input mirrored about its edge, the edge not repeated (numpy `reflect`).
    Reflect,
    /// The edge value repeated.
    Edge,
    /// The input repeated periodically (opset 19).
    Wrap,
}

/// Padding (or, with negative amounts, cropping) of every axis.
#[derive(Clone, Debug, PartialEq)]
pub struct Pad {
    pub mode: PadMode,
    pub value: f32,
    /// `[begin, end]` per axis of the input; negative amounts crop.
    pub pads: Vec<[i64; 2]>,
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
    pub fn quantize(w: &[f32], rows: usize, per_channel: bool, bits: WeightBits) -> QWeights {
        if per_channel {
            let (scales, q) = quantize_per_channel(w, rows, bits);
            QWeights { q, scales, per_channel }
        } else {
            let (s, q) = quantize_symmetric(w, bits);
            QWeights { q, scales: vec![s; rows], per_channel }
        }
    }

    /// The dequantized weights, `[rows][k]`.
    pub fn dequantize(&self) -> Vec<f32> {
        let per = self.q.len() / self.scales.len().max(1);
        self.q.iter().enumerate().map(|(i, &v)| f32::from(v) * self.scales[i / per.max(1)]).collect()
    }
}

/// The closed set of ops. Each node has one output.
#[derive(Clone, Debug)]
pub enum Op {
    Conv(Conv2d),
    ConvTranspose(ConvTranspose2d),
    /// Transposed convolution over one, three or more spatial axes.
    ConvTransposeNd(ConvTransposeNd),
    BatchNorm(BatchNorm),
    Act(Activation),
    /// Elementwise add with numpy broadcasting.
    Add,
    /// Elementwise multiply with numpy broadcasting (per-channel scale included).
    Mul,
    /// Elementwise subtract with numpy broadcasting.
    Sub,
    /// Elementwise divide with numpy broadcasting.
    Div,
    /// `x` where `x ≥ 0`, else `x · slope`, the slope broadcast numpy-style (ONNX PRelu).
    PRelu,
    /// Instance normalization: each `(n, c)` plane of `[N, C, …]` normalised by its own mean
    /// and variance, then `scale[c]`, `bias[c]`.
    InstanceNorm { scale: Vec<f32>, bias: Vec<f32>, eps: f32 },
    /// ONNX Slice of a computed tensor: `[start, end, step]` per axis of the input (ONNX's
    /// values; clamped against the axis at shape inference).
    Slice { spec: Vec<[i64; 3]> },
    /// Axis permutation: output axis `i` is input axis `perm[i]` (ONNX Transpose).
    Transpose { perm: Vec<usize> },
    /// Pad or crop every axis.
    Pad(Pad),
    Reduce(Reduce),
    /// Elementwise power with numpy broadcasting (a scalar constant exponent is
    /// [`Activation::Pow`] instead).
    Pow,
    MaxPool(Pool2d),
    AveragePool(Pool2d),
    /// Pooling over one, three or more spatial axes.
    PoolNd(PoolNd),
    GlobalAveragePool,
    /// Max over each whole `[H, W]` plane: `[N, C, 1, 1]`.
    GlobalMaxPool,
    /// Flattens to 2-D `[prod(dims[..axis]), prod(dims[axis..])]`.
    Flatten { axis: usize },
    /// ONNX Reshape with a constant target: `0` copies the input dim (with `allowzero`, it is
    /// a dim of size 0), `-1` is inferred.
    Reshape { shape: Vec<i64>, allowzero: bool },
    Linear(Linear),
    /// numpy `matmul` of the input by a constant `b`: a 1-D operand gains an axis for the
    /// product and loses it after; the axes before the last two broadcast.
    MatMul { b: Tensor },
    /// Training-mode Dropout with a fixed seed, as the ONNX reference computes it: element `i`
    /// (row-major over the whole tensor, batch included) is kept, times `1 / (1 − ratio)`,
    /// when the `i`-th draw of numpy's `RandomState(seed).uniform(0, 1)` is at least `ratio`.
    /// The same elements drop at every run.
    Dropout { ratio: f32, seed: u32 },
    Concat { axis: usize },
    Resize(Resize),
    Softmax { axis: usize },
    Identity,
    /// A QuantizeLinear → DequantizeLinear pair: `x ↦ dequantize(quantize(x))`, with static
    /// parameters or (DynamicQuantizeLinear) parameters from each input's range.
    FakeQuant(ActQuant),
}

impl Op {
    /// A short op name for messages and reports.
    pub fn kind(&self) -> &'static str {
        match self {
            Op::Conv(c) if !c.precision.is_f32() => "QConv",
            Op::Conv(_) => "Conv",
            Op::ConvTranspose(c) if !c.precision.is_f32() => "QConvTranspose",
            Op::ConvTranspose(_) | Op::ConvTransposeNd(_) => "ConvTranspose",
            Op::BatchNorm(_) => "BatchNormalization",
            Op::Act(Activation::Relu) => "Relu",
            Op::Act(Activation::LeakyRelu(_)) => "LeakyRelu",
            Op::Act(Activation::Sigmoid) => "Sigmoid",
            Op::Act(Activation::Clip(..)) => "Clip",
            Op::Act(Activation::Tanh) => "Tanh",
            Op::Act(Activation::Elu(_)) => "Elu",
            Op::Act(Activation::Selu(..)) => "Selu",
            Op::Act(Activation::HardSigmoid(..)) => "HardSigmoid",
            Op::Act(Activation::HardSwish) => "HardSwish",
            Op::Act(Activation::Mish) => "Mish",
            Op::Act(Activation::Neg) => "Neg",
            Op::Act(Activation::Sqrt) => "Sqrt",
            Op::Act(Activation::Exp) => "Exp",
            Op::Act(Activation::Pow(_)) => "Pow",
            Op::Add => "Add",
            Op::Mul => "Mul",
            Op::Sub => "Sub",
            Op::Div => "Div",
            Op::Pow => "Pow",
            Op::Pad(_) => "Pad",
            Op::PRelu => "PRelu",
            Op::InstanceNorm { .. } => "InstanceNormalization",
            Op::Slice { .. } => "Slice",
            Op::Transpose { .. } => "Transpose",
            Op::Reduce(Reduce { kind: ReduceKind::Mean, .. }) => "ReduceMean",
            Op::Reduce(Reduce { kind: ReduceKind::Max, .. }) => "ReduceMax",
            Op::MaxPool(_) => "MaxPool",
            Op::AveragePool(_) => "AveragePool",
            Op::PoolNd(p) if p.max => "MaxPool",
            Op::PoolNd(_) => "AveragePool",
            Op::GlobalAveragePool => "GlobalAveragePool",
            Op::GlobalMaxPool => "GlobalMaxPool",
            Op::Flatten { .. } => "Flatten",
            Op::Reshape { .. } => "Reshape",
            Op::Linear(l) if !l.precision.is_f32() => "QGemm",
            Op::Linear(_) => "Gemm",
            Op::MatMul { .. } => "MatMul",
            Op::Dropout { .. } => "Dropout",
            Op::Concat { .. } => "Concat",
            Op::Resize(_) => "Resize",
            Op::Softmax { .. } => "Softmax",
            Op::Identity => "Identity",
            Op::FakeQuant(_) => "QuantizeDequantize",
        }
    }

    /// Number of learnable parameters the op owns (PyTorch's count: BatchNorm's running
    /// statistics are buffers, not parameters).
    pub fn param_count(&self) -> usize {
        match self {
            Op::Conv(c) => c.weight.numel() + c.bias.as_ref().map_or(0, Vec::len),
            Op::ConvTranspose(c) => c.weight.numel() + c.bias.as_ref().map_or(0, Vec::len),
            Op::ConvTransposeNd(c) => c.weight.numel() + c.bias.as_ref().map_or(0, Vec::len),
            Op::BatchNorm(b) => 2 * b.gamma.len(),
            Op::Linear(l) => l.weight.numel() + l.bias.as_ref().map_or(0, Vec::len),
            Op::MatMul { b } => b.numel(),
            _ => 0,
        }
    }

    /// Bytes of weight data as stored: f32 parameters and buffers (such as running
    /// statistics), or s8 weights plus f32 scales and bias for quantized layers.
    pub fn weight_bytes(&self) -> usize {
        let f32_bias = |b: &Option<Vec<f32>>| 4 * b.as_ref().map_or(0, Vec::len);
        let bias = match self {
            Op::Conv(c) => &c.bias,
            Op::ConvTranspose(c) => &c.bias,
            Op::Linear(l) => &l.bias,
            Op::BatchNorm(b) => return 4 * (self.param_count() + 2 * b.gamma.len()),
            _ => return 4 * self.param_count(),
        };
        match self.int8() {
            Some(q) => q.weights.q.len() + 4 * q.weights.scales.len() + f32_bias(bias),
            None => 4 * self.param_count(),
        }
    }
}
