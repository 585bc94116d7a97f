//! Summary statistics of timing samples.
//!
//! Percentiles use linear interpolation between closest ranks (Hyndman–Fan type 7, numpy's
//! default `method="linear"`): for sorted samples `x[0..n]` and `p` in [0, 100], the rank is
//! `h = (n - 1) · p / 100` and the value `x[⌊h⌋] + (h - ⌊h⌋) · (x[⌊h⌋ + 1] - x[⌊h⌋])`.
//! The standard deviation is the sample one (divisor `n - 1`).

use serde::Serialize;

/// The `p`-th percentile (0..=100) of `sorted` (ascending), by linear interpolation.
/// `None` for an empty slice.
pub fn percentile(sorted: &[f64], p: f64) -> Option<f64> {
    let n = sorted.len();
    if n == 0 {
        return None;
    }
    let h = (n - 1) as f64 * p.clamp(0.0, 100.0) / 100.0;
    let lo = h.floor() as usize;
    let hi = (lo + 1).min(n - 1);
    Some(sorted[lo] + (h - lo as f64) * (sorted[hi] - sorted[lo]))
}

/// Count, location and spread of a sample.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
pub struct Summary {
    pub count: usize,
    pub mean: f64,
    pub median: f64,
    pub p50: f64,
    pub p90: f64,
    pub p95: f64,
    pub p99: f64,
    pub min: f64,
    pub max: f64,
    pub stddev: f64,
}

impl Summary {
    /// Summarises `samples` (any order). An empty sample gives all zeros.
    pub fn of(samples: &[f64]) -> Summary {
        let mut s: Vec<f64> = samples.iter().copied().filter(|v| v.is_finite()).collect();
        if s.is_empty() {
            return Summary::default();
        }
        s.sort_by(f64::total_cmp);
        let n = s.len();
        let mean = s.iter().sum::<f64>() / n as f64;
        let var = if n > 1 { s.iter().map(|v| (v - mean) * (v - mean)).sum::<f64>() / (n - 1) as f64 } else { 0.0 };
        let pct = |p| percentile(&s, p).unwrap_or(0.0);
        Summary {
            count: n,
            mean,
            median: pct(50.0),
            p50: pct(50.0),
            p90: pct(90.0),
            p95: pct(95.0),
            p99: pct(99.0),
            min: s[0],
            max: s[n - 1],
            stddev: var.sqrt(),
        }
    }

    /// Coefficient of variation, stddev / mean (0 for a zero mean).
    pub fn cv(&self) -> f64 {
        if self.mean > 0.0 {
            self.stddev / self.mean
        } else {
            0.0
        }
    }
}

/// Median and quartiles of the ratios `num[i] / den[i]` of samples taken in pairs (two engines
/// or models alternating run by run): a host's drift between runs weighs on both members of a
/// pair alike, so the pairs' ratios scatter less than the ratio of two separate summaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize)]
pub struct PairedRatio {
    pub median: f64,
    pub p25: f64,
    pub p75: f64,
    /// Pairs with a finite ratio.
    pub pairs: usize,
}

impl PairedRatio {
    /// The ratios of `num` and `den` paired by index (the shorter length; pairs whose ratio is
    /// not finite are left out). `None` when no pair is left.
    pub fn of(num: &[f64], den: &[f64]) -> Option<PairedRatio> {
        let mut r: Vec<f64> = num.iter().zip(den).map(|(n, d)| n / d).filter(|r| r.is_finite()).collect();
        r.sort_by(f64::total_cmp);
        let q = |p: f64| percentile(&r, p);
        Some(PairedRatio { median: q(50.0)?, p25: q(25.0)?, p75: q(75.0)?, pairs: r.len() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paired_ratios_follow_the_pairs() {
        // The second series drifts with the first, 0.9 of it, but for one outlier pair.
        let den = [10.0, 20.0, 10.0, 30.0, 10.0];
        let num = [9.0, 18.0, 9.0, 27.0, 20.0];
        let r = PairedRatio::of(&num, &den).unwrap();
        assert_eq!((r.median, r.p25, r.p75, r.pairs), (0.9, 0.9, 0.9, 5));
        // Ratios of the means would say 83 / 80.
        assert!((r.median - 83.0 / 80.0).abs() > 0.1);
        // Unequal lengths pair the common prefix; zero denominators are left out.
        let r = PairedRatio::of(&[1.0, 3.0, 5.0], &[1.0, 0.0]).unwrap();
        assert_eq!((r.median, r.pairs), (1.0, 1));
        assert_eq!(PairedRatio::of(&[1.0], &[0.0]), None);
        assert_eq!(PairedRatio::of(&[], &[]), None);
    }

    #[test]
    fn percentiles_match_numpy_linear() {
        // numpy.percentile(np.arange(1, 11), [0, 25, 50, 90, 95, 99, 100])
        let x: Vec<f64> = (1..=10).map(f64::from).collect();
        let want = [(0.0, 1.0), (25.0, 3.25), (50.0, 5.5), (90.0, 9.1), (95.0, 9.55), (99.0, 9.91), (100.0, 10.0)];
        for (p, v) in want {
            let got = percentile(&x, p).unwrap();
            assert!((got - v).abs() < 1e-12, "p{p}: {got} != {v}");
        }
        assert_eq!(percentile(&[7.0], 99.0), Some(7.0));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn summary_of_unsorted_sample() {
        // numpy: x = [4, 1, 3, 2, 100]; mean 22, std(ddof=1) = 43.6177..., p90 = 61.6
        let s = Summary::of(&[4.0, 1.0, 3.0, 2.0, 100.0]);
        assert_eq!((s.count, s.min, s.max, s.median), (5, 1.0, 100.0, 3.0));
        assert!((s.mean - 22.0).abs() < 1e-12);
        assert!((s.stddev - 43.617_656_975_128_774).abs() < 1e-9, "{}", s.stddev);
        assert!((s.p90 - 61.6).abs() < 1e-9 && (s.p99 - 96.16).abs() < 1e-9, "{s:?}");
        assert!((s.cv() - 43.617_656_975_128_774 / 22.0).abs() < 1e-9);
        assert_eq!(Summary::of(&[]).count, 0);
    }
}
