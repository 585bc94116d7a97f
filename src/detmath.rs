//! Elementary functions of `f32` that give the same bits on every platform: `ln`, `exp`,
//! `sin` and `cos`, evaluated in `f64` with `+ − × ÷` only (IEEE-exact operations, which Rust
//! never contracts into fused multiply-adds), then rounded once to `f32`; and [`fma`], the
//! fused multiply-add of the FP32 kernels' scalar twins, right on windows-gnu too.
//!
//! `f32::ln`, `exp`, `sin` and `cos` call the platform's libm, whose last bits differ between
//! platforms (glibc's and Windows' here: BENCHMARKS.md, thirty-fifth session). The seeded
//! generators whose outputs must name the same thing everywhere — synthetic weights and
//! inputs ([`crate::rng::Rng::normal`]), the image-like batch that calibrates a seeded model's
//! BatchNorm statistics, the synthetic datasets the trained models are evaluated on — use
//! these instead.
//!
//! Accuracy: the `f64` value is within a few `f64` ulps of the true one, so the `f32` result
//! is the correctly rounded one except where the true value lies within about 1e-15 relative
//! of a midpoint between two `f32`s (`tests` check sweeps of each range and every 7th value
//! `Rng::normal` feeds `ln` and `sin_cos` against the `f64` libm; a one-off run checked every
//! one, and every `f32` of each function's range in use). `sin` and `cos` reduce their argument
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

/// The series' coefficients, divided out once at compile time (a division per term cost the
/// seeded ResNet-50's start-up half a second): `1/(2k + 1)` for `ln`, `1/n` for `exp`,
/// `1/((2n)(2n + 1))` and `1/((2n − 1)(2n))` for `sin` and `cos`.
const LN_C: [f64; 12] = {
    let mut c = [0.0; 12];
    let mut k = 0;
    while k < 12 {
        c[k] = 1.0 / (2 * k + 1) as f64;
        k += 1;
    }
    c
};
const EXP_C: [f64; 17] = {
    let mut c = [0.0; 17];
    let mut n = 1;
    while n < 17 {
        c[n] = 1.0 / n as f64;
        n += 1;
    }
    c
};
const SIN_C: [f64; 10] = {
    let mut c = [0.0; 10];
    let mut n = 1;
    while n < 10 {
        c[n] = 1.0 / ((2 * n) * (2 * n + 1)) as f64;
        n += 1;
    }
    c
};
const COS_C: [f64; 10] = {
    let mut c = [0.0; 10];
    let mut n = 1;
    while n < 10 {
        c[n] = 1.0 / ((2 * n - 1) * (2 * n)) as f64;
        n += 1;
    }
    c
};

/// `x` rounded to the nearest integer, ties to even, for |x| < 2^51: by adding and taking away
/// 1.5 · 2^52 (plain arithmetic: `f64::round` is a libm call on x86-64 without SSE4.1).
fn nearest(x: f64) -> f64 {
    const SHIFT: f64 = 6_755_399_441_055_744.0;
    (x + SHIFT) - SHIFT
}

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
    let mut p = LN_C[11];
    for k in (0..11).rev() {
        p = p * z + LN_C[k];
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
    let k = nearest(d * LOG2_E);
    let r = (d - k * LN2_HI) - k * LN2_LO;
    let mut p = 1.0;
    for n in (1..=16).rev() {
        p = 1.0 + p * r * EXP_C[n];
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
    let k = nearest(d * FRAC_2_PI);
    let r = ((d - k * PIO2_1) - k * PIO2_2) - k * PIO2_3;
    let z = r * r;
    // Taylor series in Horner form: sin r = r(1 − z/(2·3)(1 − z/(4·5)(…))) to r¹⁹/19!, cos r =
    // 1 − z/(1·2)(1 − z/(3·4)(…)) to r¹⁸/18! (|r| ≤ 0.786: less than 1e-20 left).
    let mut s = 1.0;
    let mut c = 1.0;
    for n in (1..=9).rev() {
        s = 1.0 - s * z * SIN_C[n];
        c = 1.0 - c * z * COS_C[n];
    }
    let s = r * s;
    let q = (k as i64).rem_euclid(4) as u8;
    let (sn, cs) = match q {
        0 => (s, c),
        1 => (c, -s),
        2 => (-s, -c),
        _ => (-c, s),
    };
    (sn as f32, cs as f32)
}

/// `a · b + c` rounded once, as IEEE 754's fused multiply-add: the operation kestrel's FP32
/// kernels do in hardware and their scalar twins do one element at a time. `f32::mul_add`
/// where the platform's `fmaf` is a true one; on `x86_64-pc-windows-gnu` it is not (mingw-w64
/// 10's `fmaf`, which Rust calls there, rounds the product first: 0.60932505 · 1.8601356 −
/// 0.7834899 gives 0.3499373, not 0.34993732), so there [`fma_exact`] stands in.
#[inline]
pub fn fma(a: f32, b: f32, c: f32) -> f32 {
    #[cfg(all(windows, target_env = "gnu"))]
    {
        fma_exact(a, b, c)
    }
    #[cfg(not(all(windows, target_env = "gnu")))]
    {
        a.mul_add(b, c)
    }
}

/// [`fma`] from basic `f64` arithmetic, on every platform: the product of two `f32` is exact
/// in `f64`; the sum `s` is rounded, and Knuth's two-sum gives its error `e` exactly. `s` to
/// `f32` is then the correctly rounded `a · b + c` unless `s` lies exactly halfway between two
/// `f32`s (subnormal ones and the overflow threshold included) and `e` is not zero: there the
/// sign of `e` picks the neighbour.
pub fn fma_exact(a: f32, b: f32, c: f32) -> f32 {
    let p = f64::from(a) * f64::from(b);
    let c = f64::from(c);
    let s = p + c;
    if !s.is_finite() {
        return s as f32;
    }
    let bb = s - p;
    round_sum(s, (p - (s - bb)) + (c - bb))
}

/// `s + e` rounded to `f32`, where `s` is finite and `|e|` at most half an ulp of `s` (the
/// rounded sum and its exact error).
fn round_sum(s: f64, e: f64) -> f32 {
    let r = s as f32;
    if e == 0.0 {
        return r;
    }
    // The f32 neighbours around s, as f64 (2^128 standing for +∞ and −2^128 for −∞).
    let wide = |v: f32| if v.is_infinite() { f64::from(f32::MAX) * 2.0 * v.signum() as f64 } else { f64::from(v) };
    let rf = wide(r);
    if rf == s {
        return r;
    }
    let other = if rf > s { r.next_down() } else { r.next_up() };
    if (rf + wide(other)) * 0.5 != s {
        return r;
    }
    // s is a midpoint: the exact value lies on e's side of it.
    let (lo, hi) = if rf < s { (r, other) } else { (other, r) };
    if e > 0.0 {
        hi
    } else {
        lo
    }
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

    /// The CPU's own fused multiply-add: `vfmadd` on x86-64 CPUs with FMA (not `mul_add`,
    /// which is mingw's wrong `fmaf` on windows-gnu), `mul_add` elsewhere (aarch64's `fmadd`,
    /// or a correct libm); `None` where neither is trustworthy.
    fn hardware_fma() -> Option<fn(f32, f32, f32) -> f32> {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "fma")]
            fn vfmadd(a: f32, b: f32, c: f32) -> f32 {
                use std::arch::x86_64::*;
                _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(a), _mm_set_ss(b), _mm_set_ss(c)))
            }
            if std::arch::is_x86_feature_detected!("fma") {
                // SAFETY: the CPU has FMA (checked just above).
                return Some(|a, b, c| unsafe { vfmadd(a, b, c) });
            }
        }
        if cfg!(all(windows, target_env = "gnu")) {
            None
        } else {
            Some(|a, b, c| a.mul_add(b, c))
        }
    }

    /// The two-sum construction against the hardware's fused multiply-add (`mul_add`, which
    /// glibc's `fmaf` runs on the FMA unit): random triples across exponents, cancellations,
    /// midpoints of the f32 grid, subnormal and overflowing results.
    #[test]
    fn fma_exact_matches_the_hardware() {
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let mut next = || {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            (state >> 32) as u32
        };
        let mut bad = Vec::new();
        let specials = [0.0f32, -0.0, 1.0, -1.0, f32::MAX, f32::MIN_POSITIVE, f32::from_bits(1), f32::INFINITY, f32::NEG_INFINITY, f32::NAN, 0.5, 3.0];
        let Some(hardware) = hardware_fma() else {
            println!("no FMA unit and no trustworthy fmaf here: fma_exact not checked");
            return;
        };
        let mut check = |a: f32, b: f32, c: f32| {
            let (got, want) = (fma_exact(a, b, c), hardware(a, b, c));
            if !same(got, want) && bad.len() < 10 {
                bad.push(format!("fma({a:e}, {b:e}, {c:e}) = {got:e}, want {want:e}"));
            }
        };
        for &a in &specials {
            for &b in &specials {
                for &c in &specials {
                    check(a, b, c);
                }
            }
        }
        for i in 0..4_000_000u32 {
            let (x, y, z) = (next(), next(), next());
            let (a, b, c) = match i % 4 {
                // Any bits (NaNs and infinities included).
                0 => (f32::from_bits(x), f32::from_bits(y), f32::from_bits(z)),
                // Unit-scale values, the twins' case.
                1 => {
                    let u = |v: u32| f32::from_bits((v & 0x807f_ffff) | 0x3f00_0000);
                    (u(x), u(y), u(z))
                }
                // c close to −a·b: cancellation, and sums on the f32 grid's midpoints.
                2 => {
                    let (a, b) = (f32::from_bits((x & 0x807f_ffff) | 0x3f80_0000), f32::from_bits((y & 0x007f_ffff) | 0x3f80_0000));
                    let p = a * b;
                    (a, b, -f32::from_bits(p.to_bits().wrapping_add(z % 5).wrapping_sub(2)))
                }
                // Tiny and huge exponents: subnormal results and overflow.
                _ => {
                    let e = |v: u32, lo: u32| f32::from_bits((v & 0x807f_ffff) | ((lo + (v >> 23) % 16) << 23));
                    if x & 1 == 0 { (e(x, 40), e(y, 40), e(z, 0)) } else { (e(x, 190), e(y, 190), e(z, 240)) }
                }
            };
            check(a, b, c);
        }
        assert!(bad.is_empty(), "{}", bad.join("\n"));
    }

    /// Sums exactly halfway between two f32s, with an error either way: normal, subnormal and
    /// at the overflow threshold (what random triples almost never reach).
    #[test]
    fn halfway_sums_round_towards_their_error() {
        for (lo, hi) in [(1.0f32, 1.0f32.next_up()), (3.0f32.next_down(), 3.0), (f32::from_bits(6), f32::from_bits(7)), (f32::MAX, f32::INFINITY), (-2.5f32, (-2.5f32).next_up())] {
            let wide = |v: f32| if v.is_infinite() { f64::from(f32::MAX) * 2.0 } else { f64::from(v) };
            let mid = (wide(lo) + wide(hi)) * 0.5;
            let tiny = mid.abs() * f64::EPSILON * 0.25;
            assert!(same(round_sum(mid, tiny), hi), "{mid:e} + tiny");
            assert!(same(round_sum(mid, -tiny), lo), "{mid:e} - tiny");
            assert!(same(round_sum(mid, 0.0), mid as f32), "{mid:e} exactly: ties to even");
        }
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
