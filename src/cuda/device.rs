//! Finding a CUDA device through `cudarc`'s driver API, loaded at run time.

use crate::error::{Error, Result};

/// A CUDA device kestrel could use.
#[derive(Clone, Debug)]
pub struct DeviceInfo {
    pub ordinal: usize,
    pub name: String,
    /// Compute capability, e.g. (9, 0) for sm_90.
    pub capability: (i32, i32),
    pub memory_bytes: usize,
}

/// The device `ordinal`, or the reason there is none: "no CUDA driver found" (libcuda cannot
/// be loaded), "no CUDA device", or the driver's own error.
pub fn probe(ordinal: usize) -> Result<DeviceInfo> {
    // SAFETY: loading libcuda runs its initialisers, which is what using CUDA means; the
    // library is only probed here and dropped.
    if !unsafe { cudarc::driver::sys::is_culib_present() } {
        return Err(Error::Cuda("no CUDA driver found (libcuda.so could not be loaded; install the NVIDIA driver)".into()));
    }
    let driver = |e: cudarc::driver::DriverError| Error::Cuda(format!("the driver refused: {e}"));
    let count = cudarc::driver::CudaContext::device_count().map_err(driver)?;
    if count <= 0 {
        return Err(Error::Cuda("no CUDA device (the driver is installed but sees no GPU)".into()));
    }
    if ordinal >= count as usize {
        return Err(Error::Cuda(format!("no CUDA device {ordinal}: this machine has {count} (cuda:0 … cuda:{})", count - 1)));
    }
    let ctx = cudarc::driver::CudaContext::new(ordinal).map_err(driver)?;
    let name = ctx.name().map_err(driver)?;
    let (major, minor) = ctx.compute_capability().map_err(driver)?;
    let memory_bytes = ctx.total_mem().map_err(driver)?;
    Ok(DeviceInfo { ordinal, name, capability: (major, minor), memory_bytes })
}
