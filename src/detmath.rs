//! Elementary functions of `f32` that give the same bits on every platform: `ln`, `exp`,
//! `sin` and `cos`, evaluated in `f64` with `+ − × ÷` only (IEEE-exact operations, which Rust
//! never contracts into fused multiply-adds), then rounded once to `f32`.
//!
//! `f32::ln`, `exp`, `sin` and `cos` call the platform's libm, whose last bits differ between
//! glibc, Windows and macOS (and between glibc's own FMA and plain variants). The seeded
//! generators whose outputs must name the same thing everywhere — synthetic weights and
//! inputs ([`crate::rng::Rng::normal`]), the image-like batch that calibrates a seeded model's
//! BatchNorm statistics, the synthetic datasets the trained models are evaluated on — use
//! these instead.
//!
//! Accuracy: the `f64` value is within a few `f64` ulps of the true one, so the `f32` result
//! is the correctly rounded one except where the true value lies within about 1e-15 relative
//! of a midpoint between two `f32`s (`tests` check every `f32` the generators can feed `ln`
//! and the Box-Muller angles against the `f64` libm). `sin` and `cos` reduce their argument
//! by π/2 in three parts, exact for |x| < 2^19; beyond that the result is still the same on
//! every platform, but less accurate (no caller goes there).

use std::f64::consts::{FRAC_2_PI, LOG2_E};

/// ln 2 in two parts, the first with its low 32 bits zero, so that `k · LN2_HI` is exact for
/// the |k| < 2^11 used here (fdlibm's split).
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1;
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10;

/// π/2 in three parts of 33 bits each (fdlibm's `pio2_1`, `pio2_2`, `pio2_3`), so that
/// `k · part` is exact for |k| < 2^20.
const PIO2_1: f64 = 1.570_796_326_734_125_614_17;
const PIO2_2: f64 = 6.077_100_506_303_965_976_60e-11;
const PIO2_3: f64 = 2.022_266_248_711_166_455_80e-21;

/// `2^k` for `k` in the normal range of `f64`.
fn pow2(k: i64) -> f64 {
    f64::from_bits(((k + 1023) as u64) << 52)
}

/// The natural logarithm of `x`: NaN below 0 (and for NaN), −∞ at 0, +∞ at +∞.
pub fn ln(x: f32) -> f32 {
    if x.is_nan() || x < 0.0 {
        return f32::NAN;
    }
    if x == 0.0 {
        return f32::NEG_INFINITY;
    }
    if x.is_infinite() {
        return f32::INFINITY;
    }
    // Every f32, subnormals included, is a normal f64: x = m · 2^e with m in [1, 2).
    let bits = f64::from(x).to_bits();
    let mut e = ((bits >> 52) & 0x7ff) as i64 - 1023;
    let mut m = f64::from_bits((bits & ((1u64 << 52) - 1)) | (1023u64 << 52));
    if m > std::f64::consts::SQRT_2 {
        m *= 0.5;
        e += 1;
    }
    // ln m = 2·atanh(s) = 2(s + s³/3 + s⁵/5 + …), s = (m − 1)/(m + 1), |s| ≤ 0.1716: the
    // terms to s²³/23 leave less than 1e-18.
    let s = (m - 1.0) / (m + 1.0);
    let z = s * s;
    let mut p = 1.0 / 23.0;
    for k in (0..11).rev() {
        p = p * z + 1.0 / f64::from(2 * k + 1);
    }
    let ek = e as f64;
    (ek * LN2_HI + (ek * LN2_LO + 2.0 * s * p)) as f32
}

/// e^x: +∞ above the `f32` range, 0 below it, NaN for NaN.
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return f32::NAN;
    }
    if x > 89.0 {
        return f32::INFINITY;
    }
    if x < -104.0 {
        return 0.0; // below half the smallest subnormal f32
    }
    let d = f64::from(x);
    // x = k·ln 2 + r, |r| ≤ ln2/2; e^r by its Taylor series to r¹⁶/16! (< 1e-20 left).
    let k = (d * LOG2_E).round();
    let r = (d - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0;
    for n in (1..=16).rev() {
        p = 1.0 + p * r / f64::from(n);
    }
    (p * pow2(k as i64)) as f32
}

/// `(sin x, cos x)`: NaN for NaN and ±∞.
pub fn sin_cos(x: f32) -> (f32, f32) {
    if !x.is_finite() {
        return (f32::NAN, f32::NAN);
    }
    let d = f64::from(x);
    // x = k·π/2 + r, |r| ≤ π/4 (plus rounding); the quadrant k mod 4 picks the signs.
    let k = (d * FRAC_2_PI).round();
    let r = ((d - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let z = r * r;
    // Taylor series in Horner form: sin r = r(1 − z/(2·3)(1 − z/(4·5)(…))) to r¹⁹/19!, cos r =
    // 1 − z/(1·2)(1 − z/(3·4)(…)) to r¹⁸/18! (|r| ≤ 0.786: less than 1e-20 left).
    let mut s = 1.0;
    let mut c = 1.0;
    for n in (1..=9).rev() {
        let n = f64::from(n);
        s = 1.0 - s * z / ((2.0 * n) * (2.0 * n + 1.0));
        c = 1.0 - c * z / ((2.0 * n - 1.0) * (2.0 * n));
    }
    let s = r * s;
    let q = k.rem_euclid(4.0) as u8;
    let (sn, cs) = match q {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    };
    (sn as f32, cs as f32)
}

/// `sin x` ([`sin_cos`]).
pub fn sin(x: f32) -> f32 {
    sin_cos(x).0
}

/// `cos x` ([`sin_cos`]).
pub fn cos(x: f32) -> f32 {
    sin_cos(x).1
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The correctly rounded value, as far as the platform's `f64` libm (within an ulp of
    /// `f64`) rounded once to `f32` tells it.
    fn reference(x: f32, f: fn(f64) -> f64) -> f32 {
        f(f64::from(x)) as f32
    }

    fn same(a: f32, b: f32) -> bool {
        a.to_bits() == b.to_bits() || (a.is_nan() && b.is_nan())
    }

    /// Every f32 between `lo` and `hi` (of one sign), every `step`-th bit pattern.
    fn sweep(lo: f32, hi: f32, step: u32) -> impl Iterator<Item = f32> {
        let (a, b) = if lo < 0.0 { (hi.to_bits(), lo.to_bits()) } else { (lo.to_bits(), hi.to_bits()) };
        (a..=b).step_by(step as usize).map(f32::from_bits)
    }

    #[test]
    fn special_values() {
        assert!(ln(-1.0).is_nan() && ln(f32::NAN).is_nan());
        assert_eq!(ln(0.0), f32::NEG_INFINITY);
        assert_eq!(ln(f32::INFINITY), f32::INFINITY);
        assert_eq!(ln(1.0), 0.0);
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(200.0), f32::INFINITY);
        assert_eq!(exp(-200.0), 0.0);
        assert_eq!(exp(f32::NEG_INFINITY), 0.0);
        assert!(exp(f32::NAN).is_nan() && sin(f32::INFINITY).is_nan() && cos(f32::NAN).is_nan());
        assert_eq!(sin_cos(0.0), (0.0, 1.0));
        // The smallest subnormal and the largest finite f32 go through the same path.
        assert!(same(ln(f32::from_bits(1)), reference(f32::from_bits(1), f64::ln)));
        assert!(same(ln(f32::MAX), reference(f32::MAX, f64::ln)));
        assert!(same(exp(-103.5), reference(-103.5, f64::exp)));
        assert!(same(exp(88.5), reference(88.5, f64::exp)));
    }

    /// Correctly rounded (to the reference) on sweeps of each function's range and on every
    /// value `Rng::normal` feeds `ln` and `sin_cos` (`k / 2^24`, and `2π · k / 2^24` in f32).
    #[test]
    fn correctly_rounded_on_sweeps() {
        let mut bad = Vec::new();
        let mut check = |what: &str, x: f32, got: f32, want: f32| {
            if !same(got, want) && bad.len() < 10 {
                bad.push(format!("{what}({x:e}) = {got:e}, want {want:e}"));
            }
        };
        for x in sweep(f32::from_bits(1), f32::MAX, 1 << 10) {
            check("ln", x, ln(x), reference(x, f64::ln));
        }
        for x in sweep(-104.0, -1e-30, 1 << 8).chain(sweep(1e-30, 89.0, 1 << 8)) {
            check("exp", x, exp(x), reference(x, f64::exp));
        }
        for x in sweep(-400.0, -1e-30, 1 << 8).chain(sweep(1e-30, 400.0, 1 << 8)) {
            let (s, c) = sin_cos(x);
            check("sin", x, s, reference(x, f64::sin));
            check("cos", x, c, reference(x, f64::cos));
        }
        for k in (1u32..1 << 24).step_by(7) {
            let u = k as f32 * (1.0 / (1u64 << 24) as f32);
            check("ln", u, ln(u), reference(u, f64::ln));
            let t = 2.0 * std::f32::consts::PI * u;
            let (s, c) = sin_cos(t);
            check("sin", t, s, reference(t, f64::sin));
            check("cos", t, c, reference(t, f64::cos));
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }
}
