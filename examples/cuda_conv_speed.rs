//! Times kestrel's FP16 tensor-core conv (`kernels/conv_mma.cu`) on ResNet-50 and UNet layer
//! shapes (NHWC f16, f32 accumulation, bias + ReLU epilogue) and prints TFLOP/s per shape; a GPU
//! is needed. `scripts/cuda_torch_conv.py` times PyTorch (cuDNN, f16, channels_last) on the
//! same list, so both can run in one call on the GPU machine:
//!
//! `cargo run --release --features cuda --example cuda_conv_speed [iterations]`
//!
//! Each shape: 3 warm-up launches, then `iterations` (default 20) timed launches between two
//! stream synchronisations; seeded data in [-1, 1], never zeros.

use std::time::Instant;

use kestrel::cuda::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use kestrel::cuda::{Gpu, Nvrtc};
use kestrel::rng::Rng;

/// (name, batch, cin, h = w, cout, k, stride): `scripts/cuda_torch_conv.py` reads this list
/// from this file (one tuple per line, as written here).
pub const SHAPES: &[(&str, usize, usize, usize, usize, usize, usize)] = &[
    ("r50 layer1 3x3", 32, 64, 56, 64, 3, 1),
    ("r50 layer1 1x1 expand", 32, 64, 56, 256, 1, 1),
    ("r50 layer1 1x1 reduce", 32, 256, 56, 64, 1, 1),
    ("r50 layer2 3x3", 32, 128, 28, 128, 3, 1),
    ("r50 layer3 3x3", 32, 256, 14, 256, 3, 1),
    ("r50 layer3 1x1 reduce", 32, 1024, 14, 256, 1, 1),
    ("r50 layer4 3x3", 32, 512, 7, 512, 3, 1),
    ("r50 layer2 3x3 s2", 32, 128, 56, 128, 3, 2),
    ("unet 512 3x3 c32", 8, 32, 512, 32, 3, 1),
    ("unet 256 3x3 c64", 8, 64, 256, 64, 3, 1),
];

fn main() -> kestrel::Result<()> {
    let iters: usize = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(20);
    let nvrtc = Nvrtc::load()?;
    let g = Gpu::open(0, &nvrtc)?;
    println!("kestrel conv2d_nhwc_f16_mma on {} (sm_{}{}), {iters} iterations per shape", g.info.name, g.info.capability.0, g.info.capability.1);
    let f = g.function("conv2d_nhwc_f16_mma")?;
    let mut rng = Rng::new(7);
    for &(name, n, cin, hw, cout, k, s) in SHAPES {
        let pad = k / 2;
        let o = (hw + 2 * pad - k) / s + 1;
        let x: Vec<f32> = (0..n * hw * hw * cin).map(|_| rng.range(-1.0, 1.0)).collect();
        let w: Vec<f32> = (0..cout * k * k * cin).map(|_| rng.range(-0.1, 0.1)).collect();
        let b: Vec<f32> = (0..cout).map(|_| rng.range(-0.1, 0.1)).collect();
        let (dx, dw, db) = (g.upload_f16(&x)?, g.upload_f16(&w)?, g.upload_f32(&b)?);
        let mut dy: CudaSlice<u16> = g.zeros(n * o * o * cout)?;
        let ints = [n, hw, hw, cin, o, o, cout, k, k, s, s, pad, pad, 1, 1].map(|v| v as i32);
        let (null, act, alpha, beta) = (0u64, 1i32, 0.0f32, 0.0f32);
        let cfg = LaunchConfig { grid_dim: ((n * o * o).div_ceil(64) as u32, cout.div_ceil(32) as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 };
        let mut run = |times: usize| -> kestrel::Result<f64> {
            g.synchronize()?;
            let t = Instant::now();
            for _ in 0..times {
                let mut l = g.stream.launch_builder(f);
                l.arg(&dx).arg(&dw).arg(&db).arg(&null).arg(&mut dy);
                for v in &ints {
                    l.arg(v);
                }
                l.arg(&act).arg(&alpha).arg(&beta);
                // SAFETY: the parameters are conv2d_nhwc_f16_mma's, in order; every buffer is
                // sized for the shapes passed (cin % 16 == 0, cout % 8 == 0 as it requires).
                unsafe { l.launch(cfg) }.map_err(|e| kestrel::Error::Cuda(format!("launch: {e}")))?;
            }
            g.synchronize()?;
            Ok(t.elapsed().as_secs_f64() / times as f64)
        };
        run(3)?;
        let secs = run(iters)?;
        let flops = 2.0 * (n * o * o) as f64 * cout as f64 * (k * k * cin) as f64;
        println!("{name:<24} n {n:>3} {cin:>4}->{cout:<4} {hw:>3}^2 k{k} s{s}: {:>8.3} ms  {:>7.1} TFLOP/s", secs * 1e3, flops / secs / 1e12);
    }
    Ok(())
}
