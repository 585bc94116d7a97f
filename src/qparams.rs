//! Quantization parameters and rounding, exactly as ONNX defines them:
//! `QuantizeLinear: q = saturate(round_half_even(x / scale) + zero_point)`,
//! `DequantizeLinear: x = (q − zero_point) · scale`.
//!
//! Activations are u8 asymmetric per tensor, with the range widened to include 0 (so that
//! zero padding is exact). Weights are s8 symmetric in [−127, 127] (8 bits) or [−64, 64]
//! (7 bits, onnxruntime's `reduce_range`), per output channel or per tensor, as
//! onnxruntime's quantizer makes them.
//!
//! A leaf: the IR, the kernels and the quantizer all use these types. The vectorised slice
//! codecs live with the kernels (`cpu::codec`).

/// u8 affine parameters of one tensor.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QParams {
    pub scale: f32,
    pub zero_point: u8,
}

impl QParams {
    /// Parameters covering `[min, max]` widened to include 0 (onnxruntime's `compute_scale_zp`,
    /// and ONNX `DynamicQuantizeLinear`). A degenerate range gets scale 1, zero point 0.
    pub fn from_range(min: f32, max: f32) -> QParams {
        let (lo, hi) = (min.min(0.0), max.max(0.0));
        let scale = (hi - lo) / 255.0;
        if !(scale >= f32::MIN_POSITIVE) || !scale.is_finite() {
            return QParams { scale: 1.0, zero_point: 0 };
        }
        let zp = (-lo / scale).round_ties_even().clamp(0.0, 255.0) as u8;
        QParams { scale, zero_point: zp }
    }

    /// Quantizes one value.
    #[inline(always)]
    pub fn quantize(self, x: f32) -> u8 {
        // Clamping first keeps |v| far below 2²², where adding and removing 1.5·2²³ rounds
        // to the nearest integer, ties to even, in the default FP mode: exactly
        // `round_ties_even`, but inline and vectorisable. The saturated result y ∈ [0, 255] is
        // read back from the low mantissa byte of y + 1.5·2²³, which avoids a per-lane
        // saturating float→int conversion. NaN saturates to 0 (`max` drops NaN).
        const MAGIC: f32 = 12_582_912.0;
        let v = (x / self.scale).clamp(-1024.0, 1024.0);
        let y = (((v + MAGIC) - MAGIC) + f32::from(self.zero_point)).max(0.0).min(255.0);
        (y + MAGIC).to_bits() as u8
    }

    /// Dequantizes one value.
    #[inline(always)]
    pub fn dequantize(self, q: u8) -> f32 {
        (i32::from(q) - i32::from(self.zero_point)) as f32 * self.scale
    }

    /// `quantize` then `dequantize`: the value a QDQ pair passes on.
    #[inline(always)]
    pub fn fake(self, x: f32) -> f32 {
        self.dequantize(self.quantize(x))
    }
}

/// The code range of quantized weights.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum WeightBits {
    /// [−127, 127].
    #[default]
    Eight,
    /// [−64, 64], onnxruntime's `reduce_range`: no same-signed pair of weights exceeds 128 in
    /// magnitude, so AVX2's `vpmaddubsw` kernel runs every layer exactly.
    Seven,
}

impl WeightBits {
    /// The largest code magnitude.
    pub fn qmax(self) -> f32 {
        match self {
            WeightBits::Eight => 127.0,
            WeightBits::Seven => 64.0,
        }
    }

    /// 7 or 8.
    pub fn bits(self) -> u32 {
        match self {
            WeightBits::Eight => 8,
            WeightBits::Seven => 7,
        }
    }
}

/// Symmetric s8 quantization of `w` in `[−qmax, qmax]` with `scale = max|w| / qmax` (1 if
/// all zero).
pub fn quantize_symmetric(w: &[f32], bits: WeightBits) -> (f32, Vec<i8>) {
    let qmax = bits.qmax();
    let amax = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if amax > 0.0 && amax.is_finite() { amax / qmax } else { 1.0 };
    (scale, w.iter().map(|&v| (v / scale).round_ties_even().clamp(-qmax, qmax) as i8).collect())
}

/// Per-output-channel symmetric quantization of `[rows][per_row]` weights.
pub fn quantize_per_channel(w: &[f32], rows: usize, bits: WeightBits) -> (Vec<f32>, Vec<i8>) {
    let per = w.len() / rows.max(1);
    let mut scales = Vec::with_capacity(rows);
    let mut q = Vec::with_capacity(w.len());
    for r in w.chunks(per.max(1)) {
        let (s, v) = quantize_symmetric(r, bits);
        scales.push(s);
        q.extend(v);
    }
    (scales, q)
}
