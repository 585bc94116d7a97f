//! Range observers for static calibration. Every observer first sees the values' min and
//! max (pass 1), then a 2048-bin histogram over that range (pass 2), and turns it into a
//! `[lo, hi]` clip range:
//! - MinMax: the observed range;
//! - Percentile(p): the two-sided p-th percentile (e.g. 99.99 keeps 99.99 % of the values);
//! - Entropy: TensorRT's KL-divergence threshold search on |x| (128 target levels for signed
//!   data, 255 for non-negative data);
//! - Mse: the scaling of the observed range that minimises the mean squared error of
//!   quantize–dequantize over the histogram.

use crate::qparams::QParams;

/// Number of histogram bins.
pub const BINS: usize = 2048;

/// How a calibration range is chosen.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub enum Method {
    MinMax,
    Percentile(f64),
    Entropy,
    Mse,
}

impl Method {
    /// Parses `minmax`, `percentile` (with `pct`), `entropy`, `mse`.
    pub fn parse(s: &str, pct: f64) -> Option<Method> {
        Some(match s {
            "minmax" => Method::MinMax,
            "percentile" => Method::Percentile(pct),
            "entropy" => Method::Entropy,
            "mse" => Method::Mse,
            _ => return None,
        })
    }

    /// Whether the method needs the histogram pass.
    pub fn needs_histogram(self) -> bool {
        !matches!(self, Method::MinMax)
    }
}

/// Statistics of one tensor over the calibration set.
#[derive(Clone, Debug)]
pub struct Observer {
    pub min: f32,
    pub max: f32,
    pub hist: Vec<u64>,
    /// Exact zeros among the histogram's values (post-ReLU data is half zeros).
    pub zeros: u64,
}

impl Default for Observer {
    fn default() -> Self {
        Observer { min: f32::INFINITY, max: f32::NEG_INFINITY, hist: Vec::new(), zeros: 0 }
    }
}

impl Observer {
    /// Pass 1: widen the range (`simd`: the vector level of the min/max pass).
    pub fn see_range(&mut self, simd: crate::cpu::simd::Simd, x: &[f32]) {
        let (lo, hi) = crate::cpu::codec::min_max(simd, x);
        self.min = self.min.min(lo);
        self.max = self.max.max(hi);
    }

    fn bin_width(&self) -> f32 {
        ((self.max - self.min) / BINS as f32).max(f32::MIN_POSITIVE)
    }

    /// Pass 2: histogram over the pass-1 range.
    pub fn see_histogram(&mut self, x: &[f32]) {
        if self.hist.is_empty() {
            self.hist = vec![0; BINS];
        }
        let w = self.bin_width();
        for &v in x {
            if v == 0.0 {
                self.zeros += 1;
            }
            if v.is_finite() {
                let b = (((v - self.min) / w) as usize).min(BINS - 1);
                self.hist[b] += 1;
            }
        }
    }

    /// The calibrated parameters.
    pub fn params(&self, m: Method) -> QParams {
        if !(self.min <= self.max) {
            return QParams::from_range(0.0, 0.0);
        }
        let (lo, hi) = match m {
            Method::MinMax => (self.min, self.max),
            _ if self.hist.iter().sum::<u64>() == 0 => (self.min, self.max),
            Method::Percentile(p) => self.percentile(p),
            Method::Entropy => self.entropy(),
            Method::Mse => self.mse(),
        };
        QParams::from_range(lo, hi)
    }

    fn edge(&self, b: usize) -> f32 {
        self.min + b as f32 * self.bin_width()
    }

    fn percentile(&self, p: f64) -> (f32, f32) {
        let total: u64 = self.hist.iter().sum();
        let tail = ((1.0 - p.clamp(0.0, 100.0) / 100.0) * total as f64 / 2.0) as u64;
        let (mut acc, mut lo) = (0u64, 0);
        for (i, &c) in self.hist.iter().enumerate() {
            if acc + c > tail {
                lo = i;
                break;
            }
            acc += c;
        }
        let (mut acc, mut hi) = (0u64, BINS - 1);
        for (i, &c) in self.hist.iter().enumerate().rev() {
            if acc + c > tail {
                hi = i;
                break;
            }
            acc += c;
        }
        (self.edge(lo).max(self.min), self.edge(hi + 1).min(self.max))
    }

    /// Histogram of |x| over `[0, amax]` rebuilt from the signed one, without the exact
    /// zeros: a ReLU's spike at 0 is represented exactly by any range and would otherwise
    /// dominate the divergence and drag the threshold down.
    fn abs_hist(&self) -> (Vec<f64>, f32) {
        let amax = self.min.abs().max(self.max.abs());
        let mut h = vec![0.0f64; BINS];
        let w = amax / BINS as f32;
        for (i, &c) in self.hist.iter().enumerate() {
            let center = (self.edge(i) + self.bin_width() / 2.0).abs();
            let b = if w > 0.0 { ((center / w) as usize).min(BINS - 1) } else { 0 };
            h[b] += c as f64;
        }
        let zero_bin = ((-self.min / self.bin_width()) as usize).min(BINS - 1);
        let zero_center = (self.edge(zero_bin) + self.bin_width() / 2.0).abs();
        let zb = if w > 0.0 { ((zero_center / w) as usize).min(BINS - 1) } else { 0 };
        h[zb] = (h[zb] - self.zeros as f64).max(0.0);
        (h, amax)
    }

    fn signed(&self, t: f32) -> (f32, f32) {
        if self.min >= 0.0 {
            (0.0, t.min(self.max))
        } else {
            (-t, t)
        }
    }

    fn entropy(&self) -> (f32, f32) {
        // u8 over [0, t] has 255 steps for non-negative data; signed data spends half of
        // them on each side, like TensorRT's 128 int8 levels.
        let levels: usize = if self.min >= 0.0 { 255 } else { 128 };
        let (h, amax) = self.abs_hist();
        let mut best = (f64::INFINITY, BINS);
        for i in (levels..=BINS).step_by(16) {
            // Reference distribution: first i bins, outliers folded into the last.
            let mut p: Vec<f64> = h[..i].to_vec();
            p[i - 1] += h[i..].iter().sum::<f64>();
            // Candidate: i bins merged into LEVELS levels, spread back over non-empty bins.
            let mut q = vec![0.0f64; i];
            let per = i as f64 / levels as f64;
            for l in 0..levels {
                let (a, b) = ((l as f64 * per) as usize, (((l + 1) as f64 * per) as usize).min(i));
                let sum: f64 = h[a..b].iter().sum();
                let nz = h[a..b].iter().filter(|&&v| v > 0.0).count();
                for j in a..b {
                    if h[j] > 0.0 {
                        q[j] = sum / nz as f64;
                    }
                }
            }
            let (ps, qs): (f64, f64) = (p.iter().sum(), q.iter().sum());
            if ps == 0.0 || qs == 0.0 {
                continue;
            }
            let kl: f64 = p
                .iter()
                .zip(&q)
                .filter(|(a, _)| **a > 0.0)
                .map(|(a, b)| {
                    let (a, b) = (a / ps, (b / qs).max(1e-12));
                    a * (a / b).ln()
                })
                .sum();
            if kl < best.0 {
                best = (kl, i);
            }
        }
        self.signed(amax * best.1 as f32 / BINS as f32)
    }

    fn mse(&self) -> (f32, f32) {
        let mut best = (f64::INFINITY, (self.min, self.max));
        for step in 0..=70 {
            let a = 1.0 - step as f32 * 0.01;
            let (lo, hi) = (self.min * a, self.max * a);
            let q = QParams::from_range(lo, hi);
            let err: f64 = self
                .hist
                .iter()
                .enumerate()
                .filter(|(_, &c)| c > 0)
                .map(|(i, &c)| {
                    let v = self.edge(i) + self.bin_width() / 2.0;
                    let d = f64::from(q.fake(v) - v);
                    d * d * c as f64
                })
                .sum();
            if err < best.0 {
                best = (err, (lo, hi));
            }
        }
        best.1
    }
}
