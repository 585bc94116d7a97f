//! Quantization parameters and rounding, exactly as ONNX defines them:
//! `QuantizeLinear: q = saturate(round_half_even(x / scale) + zero_point)`,
//! `DequantizeLinear: x = (q − zero_point) · scale`.
//!
//! Activations are u8 asymmetric per tensor, with the range widened to include 0 (so that
//! zero padding is exact). Weights are s8 symmetric in [−127, 127], per output channel or
//! per tensor, as onnxruntime's quantizer makes them.

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

crate::cpu::simd::multiversion! {
    /// `out[i] = q.quantize(x[i])` ([`QParams::quantize`]).
    pub fn quantize_slice(q: QParams, x: &[f32], out: &mut [u8]) {
        for (o, &v) in out.iter_mut().zip(x) {
            *o = q.quantize(v);
        }
    }
}

crate::cpu::simd::multiversion! {
    /// `out[i] = q.dequantize(codes[i])` ([`QParams::dequantize`]).
    pub fn dequantize_slice(q: QParams, codes: &[u8], out: &mut [f32]) {
        for (o, &c) in out.iter_mut().zip(codes) {
            *o = q.dequantize(c);
        }
    }
}

/// Minimum and maximum of a slice (NaNs ignored; empty gives (0, 0)). Runs in parallel
/// chunks with 16 independent lanes each, so the compare loop vectorises.
pub fn min_max(x: &[f32]) -> (f32, f32) {
    use rayon::prelude::*;
    let (lo, hi) = x
        .par_chunks(64 * 1024)
        .map(|c| {
            let mut r = (f32::INFINITY, f32::NEG_INFINITY);
            min_max_chunk(c, &mut r);
            r
        })
        .reduce(|| (f32::INFINITY, f32::NEG_INFINITY), |a, b| (a.0.min(b.0), a.1.max(b.1)));
    if lo > hi {
        (0.0, 0.0)
    } else {
        (lo, hi)
    }
}

/// Running `(min, max)` kept as 16 lanes each, so that widening it by a short slice costs no
/// horizontal fold; [`Lanes::range`] folds once at the end. NaNs are ignored.
#[derive(Clone, Copy, Debug)]
pub struct Lanes {
    lo: [f32; 16],
    hi: [f32; 16],
}

impl Default for Lanes {
    fn default() -> Self {
        Lanes { lo: [f32::INFINITY; 16], hi: [f32::NEG_INFINITY; 16] }
    }
}

impl Lanes {
    /// Widens the lanes to cover `c`.
    #[inline]
    pub fn add(&mut self, c: &[f32]) {
        lanes_add(c, self);
    }

    /// Merges another set of lanes.
    pub fn merge(mut self, o: Lanes) -> Lanes {
        for j in 0..16 {
            self.lo[j] = self.lo[j].min(o.lo[j]);
            self.hi[j] = self.hi[j].max(o.hi[j]);
        }
        self
    }

    /// `(min, max)`; `(+∞, −∞)` when nothing (or only NaN) was added.
    pub fn range(&self) -> (f32, f32) {
        (self.lo.iter().copied().fold(f32::INFINITY, f32::min), self.hi.iter().copied().fold(f32::NEG_INFINITY, f32::max))
    }
}

/// `(min, max)` of one chunk.
fn min_max_chunk(c: &[f32], range: &mut (f32, f32)) {
    let mut l = Lanes::default();
    l.add(c);
    *range = l.range();
}

crate::cpu::simd::multiversion! {
    /// Widens `l` to cover `c` (NaNs ignored).
    fn lanes_add(c: &[f32], l: &mut Lanes) {
        let (mut lo, mut hi) = (l.lo, l.hi);
        let mut it = c.chunks_exact(16);
        for v in &mut it {
            for j in 0..16 {
                lo[j] = if v[j] < lo[j] { v[j] } else { lo[j] };
                hi[j] = if v[j] > hi[j] { v[j] } else { hi[j] };
            }
        }
        for (j, &v) in it.remainder().iter().enumerate() {
            lo[j] = if v < lo[j] { v } else { lo[j] };
            hi[j] = if v > hi[j] { v } else { hi[j] };
        }
        (l.lo, l.hi) = (lo, hi);
    }
}

/// Symmetric s8 quantization of `w` in [−127, 127] with `scale = max|w| / 127` (1 if all zero).
pub fn quantize_symmetric(w: &[f32]) -> (f32, Vec<i8>) {
    let amax = w.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let scale = if amax > 0.0 && amax.is_finite() { amax / 127.0 } else { 1.0 };
    (scale, w.iter().map(|&v| (v / scale).round_ties_even().clamp(-127.0, 127.0) as i8).collect())
}

/// Per-output-channel symmetric quantization of `[rows][per_row]` weights.
pub fn quantize_per_channel(w: &[f32], rows: usize) -> (Vec<f32>, Vec<i8>) {
    let per = w.len() / rows.max(1);
    let mut scales = Vec::with_capacity(rows);
    let mut q = Vec::with_capacity(w.len());
    for r in w.chunks(per.max(1)) {
        let (s, v) = quantize_symmetric(r);
        scales.push(s);
        q.extend(v);
    }
    (scales, q)
}
