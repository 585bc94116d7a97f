//! The CUDA backend's foundation (feature `cuda`): the kernels of `kernels/*.cu` compiled at
//! run time by NVRTC ([`nvrtc`]), cached on disk, and the device probe ([`device`]) through
//! `cudarc`'s dynamically loaded driver API. Nothing here needs a CUDA toolkit at build time,
//! and every entry point answers a clear [`crate::Error::Cuda`] where CUDA is missing: no
//! driver, no device, no NVRTC. None of them panics: `cudarc` panics on the first call into
//! a library it cannot load, so the probe checks the library's presence first.
//!
//! Kernels store activations as NHWC f16 and compute in f32 (`kernels/common.cuh` converts
//! with inline PTX, so no toolkit header is needed: the `nvidia-cuda-nvrtc-cu12` wheel alone
//! compiles them). [`Gpu`] opens a device with every kernel compiled for its architecture and
//! loaded by name; `tests/cuda_gpu.rs` checks each kernel against its CPU twin there
//! (`scripts/gpu_checks.sh`). The executor that runs graphs on them is not built yet.

pub mod device;
pub mod gpu;
pub mod kernels;
pub mod nvrtc;

/// The `cudarc` kestrel is built with, for callers that launch its kernels themselves.
pub use cudarc;
pub use device::{probe, DeviceInfo};
pub use gpu::Gpu;
pub use nvrtc::{Compiled, KernelUsage, Nvrtc};
