//! Seeded generators. [`Rng`] (SplitMix64) makes synthetic weights and inputs, deterministic
//! across platforms (integer steps, and [`crate::detmath`]'s logarithm, sine and cosine in place
//! of the platform's libm), so that a seed names the same model everywhere. [`Mt19937`] is numpy's
//! legacy `RandomState`, for the ops whose ONNX reference draws from it (seeded Dropout).

use crate::detmath;

/// SplitMix64 with uniform and normal sampling.
#[derive(Clone, Debug)]
pub struct Rng {
    state: u64,
    spare: Option<f32>,
}

impl Rng {
    /// A generator for `seed`.
    pub fn new(seed: u64) -> Self {
        Rng { state: seed ^ 0x9E37_79B9_7F4A_7C15, spare: None }
    }

    /// A generator derived from `seed` and a name, so each tensor gets its own stream.
    pub fn for_name(seed: u64, name: &str) -> Self {
        // FNV-1a over the name keeps streams independent of build order.
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for b in name.bytes() {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x1000_0000_01b3);
        }
        Rng::new(seed.wrapping_mul(0x2545_F491_4F6C_DD1D) ^ h)
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn uniform(&mut self) -> f32 {
        (self.next_u64() >> 40) as f32 * (1.0 / (1u64 << 24) as f32)
    }

    /// Uniform in [lo, hi).
    pub fn range(&mut self, lo: f32, hi: f32) -> f32 {
        lo + (hi - lo) * self.uniform()
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f32 {
        if let Some(s) = self.spare.take() {
            return s;
        }
        let u1 = self.uniform().max(1e-7);
        let u2 = self.uniform();
        let r = (-2.0 * detmath::ln(u1)).sqrt();
        let t = 2.0 * std::f32::consts::PI * u2;
        let (sin, cos) = detmath::sin_cos(t);
        self.spare = Some(r * sin);
        r * cos
    }

    /// Uniform integer in [0, n).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }
}

/// The Mersenne Twister MT19937 as numpy's legacy `RandomState(seed)` runs it: seeded by
/// `init_genrand(seed)`, doubles from two 32-bit draws (`(a >> 5, b >> 6)`, 53 bits), as
/// `RandomState.uniform(0, 1)` and `random_sample` return them.
#[derive(Clone)]
pub struct Mt19937 {
    state: [u32; 624],
    pos: usize,
}

impl Mt19937 {
    /// The generator `numpy.random.RandomState(seed)` starts from.
    pub fn new(seed: u32) -> Self {
        let mut state = [0u32; 624];
        state[0] = seed;
        for i in 1..624 {
            let prev = state[i - 1];
            state[i] = 1_812_433_253u32.wrapping_mul(prev ^ (prev >> 30)).wrapping_add(i as u32);
        }
        Mt19937 { state, pos: 624 }
    }

    fn twist(&mut self) {
        const UPPER: u32 = 0x8000_0000;
        const LOWER: u32 = 0x7fff_ffff;
        for i in 0..624 {
            let y = (self.state[i] & UPPER) | (self.state[(i + 1) % 624] & LOWER);
            let mut v = self.state[(i + 397) % 624] ^ (y >> 1);
            if y & 1 != 0 {
                v ^= 0x9908_b0df;
            }
            self.state[i] = v;
        }
        self.pos = 0;
    }

    /// Next 32 random bits (tempered).
    pub fn next_u32(&mut self) -> u32 {
        if self.pos >= 624 {
            self.twist();
        }
        let mut y = self.state[self.pos];
        self.pos += 1;
        y ^= y >> 11;
        y ^= (y << 7) & 0x9d2c_5680;
        y ^= (y << 15) & 0xefc6_0000;
        y ^ (y >> 18)
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn next_f64(&mut self) -> f64 {
        let a = f64::from(self.next_u32() >> 5);
        let b = f64::from(self.next_u32() >> 6);
        (a * 67_108_864.0 + b) / 9_007_199_254_740_992.0
    }
}

#[cfg(test)]
mod tests {
    use super::{Mt19937, Rng};

    /// FNV-1a over the bits of `n` normals of `Rng::new(seed)`.
    fn normals_fingerprint(seed: u64, n: usize) -> u64 {
        let mut r = Rng::new(seed);
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for _ in 0..n {
            for b in r.normal().to_bits().to_le_bytes() {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x1000_0000_01b3);
            }
        }
        h
    }

    /// The same normals on every platform: these bits were printed on x86-64 Linux, and the
    /// test runs on aarch64 too (README, "Tests"). A libm `ln`, `sin` or `cos` in `normal`
    /// breaks it on platforms whose libm rounds differently.
    #[test]
    fn normals_are_the_same_bits_everywhere() {
        let mut r = Rng::new(0);
        let first: Vec<u32> = (0..4).map(|_| r.normal().to_bits()).collect();
        assert_eq!(first, [0x3fa3_aa44, 0x3e5b_7c15, 0x3e43_676f, 0x3e1a_3c97]);
        assert_eq!(normals_fingerprint(0, 100_000), 0x110d_648f_968c_9006);
        assert_eq!(normals_fingerprint(12345, 100_000), 0xac49_5f30_6f5f_914c);
    }

    /// Values printed by numpy 2 (`RandomState(0).random_sample(3)`, `RandomState(12345)
    /// .uniform(0, 1, 1000)[999]`, `RandomState(0).randint(0, 2**32, 2, dtype=uint64)`).
    #[test]
    fn mt19937_matches_numpy_random_state() {
        let mut r = Mt19937::new(0);
        assert_eq!([r.next_f64(), r.next_f64(), r.next_f64()], [0.5488135039273248, 0.7151893663724195, 0.6027633760716439]);
        let mut r = Mt19937::new(12345);
        let last = (0..1000).map(|_| r.next_f64()).last();
        assert_eq!(last, Some(0.30860519994571));
        let mut r = Mt19937::new(0);
        assert_eq!([r.next_u32(), r.next_u32()], [2_357_136_044, 2_546_248_239]);
    }
}
