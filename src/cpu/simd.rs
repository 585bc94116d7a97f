//! Plain element loops compiled for wider vectors, chosen at run time. kestrel is built for
//! baseline x86-64 (no `target-cpu=native`), so auto-vectorised loops would otherwise stay
//! SSE2. [`multiversion!`] compiles one body three times (baseline, AVX2, AVX-512F/BW) and
//! dispatches per call on the CPU's features. The bodies use no FMA and the same operations
//! in every version, so results are bit-identical across versions.

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
