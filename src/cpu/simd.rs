//! Plain element loops compiled for wider vectors. kestrel is built for baseline x86-64 (no
//! `target-cpu=native`), so auto-vectorised loops would otherwise stay SSE2.
//! [`multiversion!`] compiles one body three times (baseline, AVX2, AVX-512F/BW); the
//! function it defines takes a [`Simd`] level first and runs that version. A session chooses
//! the level once, with its kernels (`cpu::kernels`), so `KESTREL_ISA` decides it like every
//! other kernel and nothing is looked up per call. The bodies use no FMA and the same
//! operations in every version, so results are bit-identical across levels. Also small SSE2
//! helpers that the baseline always has ([`gather_stride2`], [`gather_stride2_f32`]).

use crate::cpu::detect::{Avx2, Avx512Vnni, Isa};

/// Which compiled version of a [`multiversion!`] loop runs. Holding an `Avx2` or `Avx512`
/// level proves the CPU has those features.
#[derive(Clone, Copy, Debug)]
pub enum Simd {
    /// Baseline x86-64 (SSE2), or plain code on other targets.
    Baseline,
    Avx2(Avx2),
    /// AVX-512F/BW (proved by the AVX-512 VNNI token, which requires both).
    Avx512(Avx512Vnni),
}

impl Simd {
    /// The level of an INT8 kernel path: scalar runs the baseline loops.
    pub fn for_isa(isa: Isa) -> Option<Simd> {
        match isa {
            Isa::Scalar => Some(Simd::Baseline),
            Isa::Avx2 => Avx2::new().map(Simd::Avx2),
            Isa::Avx512Vnni => Avx512Vnni::new().map(Simd::Avx512),
        }
    }

    /// The richest level this CPU has.
    pub fn best() -> Simd {
        Avx512Vnni::new().map(Simd::Avx512).or_else(|| Avx2::new().map(Simd::Avx2)).unwrap_or(Simd::Baseline)
    }
}

/// Defines `pub fn $name(simd: Simd, args)` whose body is compiled for baseline, AVX2 and
/// AVX-512, running the version `simd` names.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name(simd: $crate::cpu::simd::Simd, $($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn v512($($arg: $ty),*) { body($($arg),*) }
                #[target_feature(enable = "avx2")]
                unsafe fn v256($($arg: $ty),*) { body($($arg),*) }
                match simd {
                    // SAFETY: the level's token proves the CPU supports AVX-512F/BW.
                    $crate::cpu::simd::Simd::Avx512(_) => return unsafe { v512($($arg),*) },
                    // SAFETY: the level's token proves the CPU supports AVX2.
                    $crate::cpu::simd::Simd::Avx2(_) => return unsafe { v256($($arg),*) },
                    $crate::cpu::simd::Simd::Baseline => {}
                }
            }
            let _ = simd;
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// `dst[i] = src[2·i]` (`src` holds at least `2·dst.len() − 1` bytes; bytes past those may
/// be read, never used, so a row can be passed with the rest of its plane behind it).
pub(crate) fn gather_stride2(src: &[u8], dst: &mut [u8]) {
    // Elements before `i` were written by the vector loop.
    #[cfg(not(target_arch = "x86_64"))]
    let i = 0;
    #[cfg(target_arch = "x86_64")]
    let i = {
        let (n, mut i) = (dst.len(), 0);
        use std::arch::x86_64::*;
        // SAFETY (both uses): SSE2 is part of the x86-64 baseline; callers check that the two
        // 16-byte loads at 2·at lie within src and the 16-byte store at `at` within dst.
        let step = |at: usize, dst: &mut [u8]| unsafe {
            let mask = _mm_set1_epi16(0x00ff);
            let a = _mm_and_si128(_mm_loadu_si128(src.as_ptr().add(2 * at) as *const __m128i), mask);
            let b = _mm_and_si128(_mm_loadu_si128(src.as_ptr().add(2 * at + 16) as *const __m128i), mask);
            _mm_storeu_si128(dst.as_mut_ptr().add(at) as *mut __m128i, _mm_packus_epi16(a, b));
        };
        while i + 16 <= n && 2 * i + 32 <= src.len() {
            step(i, dst);
            i += 16;
        }
        // The tail as one more (overlapping) vector when the source reaches that far.
        if i < n && n >= 16 && 2 * (n - 16) + 32 <= src.len() {
            step(n - 16, dst);
            i = n;
        }
        i
    };
    for (d, &v) in dst[i..].iter_mut().zip(src[2 * i..].iter().step_by(2)) {
        *d = v;
    }
}

/// `dst[i] = src[2·i]` for f32, four at a time with SSE2 (`shufps` keeps the even lanes of two
/// loads): the f32 max pool's stride-2 taps, which a scalar strided copy made most of its
/// time. `src` must hold `2·dst.len() − 1` values.
pub(crate) fn gather_stride2_f32(src: &[f32], dst: &mut [f32]) {
    // Elements before `i` were written by the vector loop.
    #[cfg(not(target_arch = "x86_64"))]
    let i = 0;
    #[cfg(target_arch = "x86_64")]
    let i = {
        let (n, mut i) = (dst.len(), 0);
        use std::arch::x86_64::*;
        while i + 4 <= n && 2 * i + 8 <= src.len() {
            // SAFETY: SSE2 is part of the x86-64 baseline; the two 4-float loads at 2·i lie
            // within src and the 4-float store at i within dst (both checked by the loop).
            unsafe {
                let a = _mm_loadu_ps(src.as_ptr().add(2 * i));
                let b = _mm_loadu_ps(src.as_ptr().add(2 * i + 4));
                _mm_storeu_ps(dst.as_mut_ptr().add(i), _mm_shuffle_ps::<0b10_00_10_00>(a, b));
            }
            i += 4;
        }
        i
    };
    for (d, &v) in dst[i..].iter_mut().zip(src[2 * i..].iter().step_by(2)) {
        *d = v;
    }
}

#[cfg(test)]
mod stride2_tests {
    use super::*;

    #[test]
    fn f32_stride2_gather_takes_the_even_elements() {
        for n in [0usize, 1, 3, 4, 5, 7, 8, 15, 16, 17, 56, 63] {
            for extra in [0usize, 1, 9] {
                let src: Vec<f32> = (0..(2 * n).saturating_sub(1) + extra).map(|i| i as f32 * 0.5 - 3.0).collect();
                let mut dst = vec![f32::NAN; n];
                gather_stride2_f32(&src, &mut dst);
                let want: Vec<f32> = src.iter().step_by(2).take(n).copied().collect();
                assert_eq!(dst, want, "n {n} extra {extra}");
            }
        }
    }
}
