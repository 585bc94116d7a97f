//! The sources of `kernels/`, embedded in the binary: the CUDA backend compiles them at run
//! time, so a kestrel binary needs no file beside it.

/// Kernel translation units: (file name, source).
pub const SOURCES: &[(&str, &str)] = &[
    ("layout.cu", include_str!("../../kernels/layout.cu")),
    ("pool.cu", include_str!("../../kernels/pool.cu")),
    ("conv_ref.cu", include_str!("../../kernels/conv_ref.cu")),
    ("conv_mma.cu", include_str!("../../kernels/conv_mma.cu")),
    ("conv_direct.cu", include_str!("../../kernels/conv_direct.cu")),
    ("conv_transpose.cu", include_str!("../../kernels/conv_transpose.cu")),
    ("resize.cu", include_str!("../../kernels/resize.cu")),
    ("head.cu", include_str!("../../kernels/head.cu")),
];

/// Headers the sources include, handed to NVRTC by name: (include name, source).
pub const HEADERS: &[(&str, &str)] = &[("common.cuh", include_str!("../../kernels/common.cuh"))];

/// Static shared memory one block may use without opting in (48 KiB on every architecture
/// since sm_70): the budget the compile test holds every kernel to.
pub const SMEM_BUDGET: usize = 48 * 1024;

/// The `extern "C" __global__` entry points a source defines, in order of appearance.
pub fn entry_points(source: &str) -> Vec<&str> {
    source
        .split("extern \"C\" __global__ void")
        .skip(1)
        .filter_map(|rest| {
            let rest = rest.trim_start();
            // `__launch_bounds__(…)` may stand between the return type and the name.
            let rest = match rest.strip_prefix("__launch_bounds__") {
                Some(r) => r.split_once(')').map(|(_, after)| after.trim_start())?,
                None => rest,
            };
            let end = rest.find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))?;
            (end > 0).then(|| &rest[..end])
        })
        .collect()
}

