//! Plain element loops compiled for wider vectors, chosen at run time. kestrel is built for
//! baseline x86-64 (no `target-cpu=native`), so auto-vectorised loops would otherwise stay
//! SSE2. [`multiversion!`] compiles one body three times (baseline, AVX2, AVX-512F/BW) and
//! dispatches per call on the CPU's features. The bodies use no FMA and the same operations
//! in every version, so results are bit-identical across versions. Also small SSE2 helpers
//! that the baseline always has ([`gather_stride2`]).

/// Defines `pub fn $name(args)` whose body is compiled for baseline, AVX2 and AVX-512.
macro_rules! multiversion {
    ($(#[$m:meta])* $vis:vis fn $name:ident($($arg:ident: $ty:ty),* $(,)?) $body:block) => {
        $(#[$m])*
        $vis fn $name($($arg: $ty),*) {
            #[inline(always)]
            fn body($($arg: $ty),*) $body
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f,avx512bw")]
                unsafe fn v512($($arg: $ty),*) { body($($arg),*) }
                #[target_feature(enable = "avx2")]
                unsafe fn v256($($arg: $ty),*) { body($($arg),*) }
                if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") {
                    // SAFETY: the CPU supports AVX-512F/BW (checked on this line).
                    return unsafe { v512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked on this line).
                    return unsafe { v256($($arg),*) };
                }
            }
            body($($arg),*)
        }
    };
}

pub(crate) use multiversion;

/// `dst[i] = src[2·i]` (`src` holds at least `2·dst.len() − 1` bytes; bytes past those may
/// be read, never used, so a row can be passed with the rest of its plane behind it).
pub(crate) fn gather_stride2(src: &[u8], dst: &mut [u8]) {
    let n = dst.len();
    let mut i = 0;
    #[cfg(target_arch = "x86_64")]
    {
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
    }
    for (d, &v) in dst[i..].iter_mut().zip(src[2 * i..].iter().step_by(2)) {
        *d = v;
    }
}
