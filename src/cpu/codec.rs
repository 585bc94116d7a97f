//! Quantization codecs over slices, vectorised: f32 → u8 codes ([`quantize_slice`]), codes →
//! f32 ([`dequantize_slice`]), and the `(min, max)` of a tensor for dynamic ranges
//! ([`min_max`], [`Lanes`]). Each element is exactly [`QParams::quantize`] /
//! [`QParams::dequantize`] of it. Each takes the session's [`Simd`] level first.

use crate::cpu::simd::Simd;
use crate::qparams::QParams;

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
pub fn min_max(simd: Simd, x: &[f32]) -> (f32, f32) {
    use rayon::prelude::*;
    let (lo, hi) = x
        .par_chunks(64 * 1024)
        .with_min_len(super::parallel::min_len(1))
        .map(|c| {
            let mut l = Lanes::default();
            l.add(simd, c);
            l.range()
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
    pub fn add(&mut self, simd: Simd, c: &[f32]) {
        lanes_add(simd, c, self);
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

