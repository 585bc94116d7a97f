//! A CUDA device ready to run kestrel's kernels: a context and its stream, and every entry
//! point of `kernels/*.cu` compiled by NVRTC for the device's own architecture (`sm_XY` from
//! its compute capability, through the CUBIN cache) and loaded by name. Tensors cross as
//! plain slices: f32, or f16 stored as `u16` bits (`half`'s round-to-nearest-even, the
//! kernels' `cvt.rn.f16.f32`).

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaSlice, CudaStream, DriverError};
use cudarc::nvrtc::Ptx;

use super::device::{probe, DeviceInfo};
use super::kernels;
use super::nvrtc::Nvrtc;
use crate::error::{Error, Result};

/// One device, its default stream and its loaded kernels.
pub struct Gpu {
    pub info: DeviceInfo,
    pub ctx: Arc<CudaContext>,
    pub stream: Arc<CudaStream>,
    functions: HashMap<String, CudaFunction>,
}

fn driver(what: &str) -> impl Fn(DriverError) -> Error + '_ {
    move |e| Error::Cuda(format!("{what}: {e}"))
}

impl Gpu {
    /// Opens device `ordinal` ([`probe`]'s errors where there is none) and compiles and loads
    /// every kernel for it.
    pub fn open(ordinal: usize, nvrtc: &Nvrtc) -> Result<Gpu> {
        let info = probe(ordinal)?;
        let (major, minor) = info.capability;
        let arch = u32::try_from(major * 10 + minor).map_err(|_| Error::Cuda(format!("compute capability {major}.{minor}")))?;
        let ctx = CudaContext::new(ordinal).map_err(driver("creating a context"))?;
        let stream = ctx.default_stream();
        let mut functions = HashMap::new();
        for (file, src) in kernels::SOURCES {
            let cubin = nvrtc.compile_cached(file, src, kernels::HEADERS, arch)?;
            let module = ctx.load_module(Ptx::from_binary(cubin)).map_err(|e| Error::Cuda(format!("loading {file} for sm_{arch}: {e}")))?;
            for entry in kernels::entry_points(src) {
                let f = module.load_function(entry).map_err(|e| Error::Cuda(format!("{file}: no kernel {entry}: {e}")))?;
                functions.insert(entry.to_string(), f);
            }
        }
        Ok(Gpu { info, ctx, stream, functions })
    }

    /// The kernel named `name` (its `extern "C"` entry).
    pub fn function(&self, name: &str) -> Result<&CudaFunction> {
        self.functions.get(name).ok_or_else(|| Error::Cuda(format!("no CUDA kernel named {name}")))
    }

    /// Copies f32 values to the device.
    pub fn upload_f32(&self, x: &[f32]) -> Result<CudaSlice<f32>> {
        self.stream.clone_htod(x).map_err(driver("copying to the device"))
    }

    /// Copies f32 values to the device as f16 (rounded to nearest even).
    pub fn upload_f16(&self, x: &[f32]) -> Result<CudaSlice<u16>> {
        let bits: Vec<u16> = x.iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        self.stream.clone_htod(&bits).map_err(driver("copying to the device"))
    }

    /// A zeroed device buffer of `len` elements.
    pub fn zeros<T: cudarc::driver::DeviceRepr + cudarc::driver::ValidAsZeroBits>(&self, len: usize) -> Result<CudaSlice<T>> {
        self.stream.alloc_zeros(len).map_err(driver("allocating device memory"))
    }

    /// Copies f32 values back (waits for the stream).
    pub fn download_f32(&self, x: &CudaSlice<f32>) -> Result<Vec<f32>> {
        self.stream.clone_dtoh(x).map_err(driver("copying from the device"))
    }

    /// Copies f16 values back as f32 (waits for the stream).
    pub fn download_f16(&self, x: &CudaSlice<u16>) -> Result<Vec<f32>> {
        let bits = self.stream.clone_dtoh(x).map_err(driver("copying from the device"))?;
        Ok(bits.into_iter().map(|b| half::f16::from_bits(b).to_f32()).collect())
    }

    /// Waits for everything queued on the stream; a kernel's fault surfaces here.
    pub fn synchronize(&self) -> Result<()> {
        self.stream.synchronize().map_err(driver("running on the device"))
    }
}
