//! FP32 peak and kernel throughput on this machine: `cargo run --release --example sgemm_peak`.
//!
//! The peaks are measured with independent FMA accumulators in registers (no memory traffic),
//! one thread: the core's sustained `vfmadd231ps` rate at 256 and 512 bits, and `vdpbf16ps`
//! where the CPU has AVX512_BF16. Then each of
//! kestrel's FP32 tile kernels on one hot tile (A and B panels in L1), one thread, and the
//! whole packed conv on ResNet-50 (and UNet) layer shapes at 1 and 2 threads; `SHAPES=l3,stem`
//! times only the shapes whose names start so.
use std::time::Instant;

use kestrel::cpu::sgemm::{Init, Kernel, Tile};
use kestrel::cpu::{detect, sconv};
use kestrel::graph::{Conv2d, Precision};
use kestrel::Tensor;

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn peak256(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm256_set1_ps(1.0001), _mm256_set1_ps(0.9999));
    let mut acc = [_mm256_setzero_ps(); 12];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm256_fmadd_ps(a, b, *r);
        }
    }
    let mut s = [0f32; 8];
    _mm256_storeu_ps(s.as_mut_ptr(), acc.iter().fold(_mm256_setzero_ps(), |x, &y| _mm256_add_ps(x, y)));
    s.iter().sum()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn peak512(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    let (a, b) = (_mm512_set1_ps(1.0001), _mm512_set1_ps(0.9999));
    let mut acc = [_mm512_setzero_ps(); 24];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_fmadd_ps(a, b, *r);
        }
    }
    _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |x, &y| _mm512_add_ps(x, y)))
}

/// `vdpbf16ps` (two bf16 products per f32 lane) with 24 independent accumulators.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn peak_bf16(iters: usize) -> f32 {
    use std::arch::x86_64::*;
    // SAFETY: __m512bh and __m512i are both 512-bit vectors; 0x3f80 is bf16 1.0.
    let one: __m512bh = unsafe { std::mem::transmute(_mm512_set1_epi16(0x3f80)) };
    let mut acc = [_mm512_setzero_ps(); 24];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_dpbf16_ps(*r, one, one);
        }
    }
    _mm512_reduce_add_ps(acc.iter().fold(_mm512_setzero_ps(), |x, &y| _mm512_add_ps(x, y)))
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    {
        let iters = 20_000_000;
        if detect::Avx2::new().is_some() && std::arch::is_x86_feature_detected!("fma") {
            let t = Instant::now();
            // SAFETY: AVX2 and FMA checked just above.
            let r = unsafe { peak256(iters) };
            println!("FMA peak, 256-bit, 1 thread: {:.1} GMAC/s (checksum {r:.0})", (iters * 12 * 8) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
        if detect::Avx512Vnni::new().is_some() {
            let t = Instant::now();
            // SAFETY: AVX-512F checked just above (the VNNI token implies it).
            let r = unsafe { peak512(iters) };
            println!("FMA peak, 512-bit, 1 thread: {:.1} GMAC/s (checksum {r:.0})", (iters * 24 * 16) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
        if detect::Avx512Vnni::new().is_some() && std::arch::is_x86_feature_detected!("avx512bf16") {
            let t = Instant::now();
            // SAFETY: AVX-512F and AVX512_BF16 checked just above.
            let r = unsafe { peak_bf16(iters) };
            println!("BF16 dot peak (vdpbf16ps zmm), 1 thread: {:.1} GMAC/s (checksum {r:.0})", (iters * 24 * 32) as f64 / t.elapsed().as_secs_f64() / 1e9);
        }
    }
    let kernels: Vec<Kernel> = detect::supported().into_iter().filter_map(Kernel::for_isa).collect();
    for &k in &kernels {
        let g = k.geometry();
        let a: Vec<f32> = (0..g.kc * g.mr).map(|i| (i % 7) as f32 * 0.1).collect();
        let b: Vec<f32> = (0..g.panel_len(g.kc, g.nv)).map(|i| (i % 5) as f32 * 0.1).collect();
        let mut c = vec![0f32; g.mr * g.nr()];
        let t = Tile { kc: g.kc, rows: g.mr, cols: g.nr(), nv: g.nv, ldb: g.nr(), b_rows: std::ptr::null(), ldc: g.nr(), a_next: 0, b_next: 0, b_vstride: 0, c_next: 0 };
        let iters = 200_000;
        let start = Instant::now();
        for _ in 0..iters {
            // SAFETY: a, b and c hold one full tile's panels and output.
            unsafe { k.tile(a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), t, Init::Output, None) };
        }
        let s = start.elapsed().as_secs_f64();
        println!("{:<14} hot tile {}x{} kc {}: {:6.1} GMAC/s", k.name(), g.mr, g.nr(), g.kc, (iters * g.kc * g.mr * g.nr()) as f64 / s / 1e9);
    }
    // (name, cin, cout, hw, k, stride)
    let shapes = [
        ("stem 7x7/2", 3, 64, 224, 7, 2),
        ("l1 1x1 64>64", 64, 64, 56, 1, 1),
        ("l1 3x3 64", 64, 64, 56, 3, 1),
        ("l1 1x1 64>256", 64, 256, 56, 1, 1),
        ("l1 1x1 256>64", 256, 64, 56, 1, 1),
        ("l2 3x3 128", 128, 128, 28, 3, 1),
        ("l2 1x1 512>128", 512, 128, 28, 1, 1),
        ("l3 3x3 256", 256, 256, 14, 3, 1),
        ("l3 1x1 1024>256", 1024, 256, 14, 1, 1),
        ("l4 3x3 512", 512, 512, 7, 3, 1),
        ("l4 1x1 512>2048", 512, 2048, 7, 1, 1),
        // The 3×3 stride-2 convs opening ResNet-50's layers 2–4 (torchvision v1.5).
        ("l2 3x3/2 128", 128, 128, 56, 3, 2),
        ("l3 3x3/2 256", 256, 256, 28, 3, 2),
        ("l4 3x3/2 512", 512, 512, 14, 3, 2),
        // UNet (base 32, depth 4) at 256²: its double convs and the first up conv.
        ("u 3x3 3>32 256", 3, 32, 256, 3, 1),
        ("u 3x3 32 256", 32, 32, 256, 3, 1),
        ("u 3x3 64>32 256", 64, 32, 256, 3, 1),
        ("u 3x3 64 128", 64, 64, 128, 3, 1),
        ("u 3x3 128 64", 128, 128, 64, 3, 1),
        ("u 3x3 256 32", 256, 256, 32, 3, 1),
        ("u 3x3 512 16", 512, 512, 16, 3, 1),
    ];
    // `SHAPES=l3,stem`: only the shapes whose names start with one of these.
    let only: Vec<String> = std::env::var("SHAPES").map(|v| v.split(',').map(str::to_owned).collect()).unwrap_or_default();
    for (name, cin, cout, hw, kk, s) in shapes {
        if !only.is_empty() && !only.iter().any(|p| name.starts_with(p.as_str())) {
            continue;
        }
        let pad = kk / 2;
        let w = Tensor::new(vec![cout, cin, kk, kk], (0..cout * cin * kk * kk).map(|i| ((i * 7919) % 97) as f32 * 0.01 - 0.48).collect()).unwrap_or_else(|e| panic!("{e}"));
        let c = Conv2d { weight: w, bias: None, stride: [s, s], pads: [pad; 4], dilation: [1, 1], groups: 1, act: None, residual: false, precision: Precision::F32 };
        let x: Vec<f32> = (0..cin * hw * hw).map(|i| ((i * 31) % 89) as f32 * 0.01 - 0.4).collect();
        let o = (hw + 2 * pad - kk) / s + 1;
        let mut out = vec![0f32; cout * o * o];
        let macs = (cout * o * o * cin * kk * kk) as f64;
        for threads in [1, 2] {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap_or_else(|e| panic!("{e}"));
            let mut line = format!("{name:<16} {threads}t");
            for &k in &kernels {
                let packed = sconv::pack(k, &c);
                let mut scratch = Vec::new();
                let best = pool.install(|| {
                    (0..20).map(|_| {
                        let t = Instant::now();
                        let _awake = kestrel::cpu::parallel::Spinner::start(threads);
                        sconv::conv2d(k, &c, &packed, &x, [1, cin, hw, hw], None, &mut out, [1, cout, o, o], &mut scratch, threads);
                        t.elapsed().as_secs_f64()
                    }).fold(f64::MAX, f64::min)
                });
                line += &format!("  {}: {:6.1} GMAC/s", k.name(), macs / best / 1e9);
            }
            let mut scratch = Vec::new();
            let best = pool.install(|| {
                (0..20).map(|_| {
                    let t = Instant::now();
                    let _awake = kestrel::cpu::parallel::Spinner::start(threads);
                    kestrel::cpu::conv::conv2d(&c, &x, [1, cin, hw, hw], None, &mut out, [1, cout, o, o], &mut scratch, threads);
                    t.elapsed().as_secs_f64()
                }).fold(f64::MAX, f64::min)
            });
            line += &format!("  gemm crate: {:6.1} GMAC/s", macs / best / 1e9);
            println!("{line}");
        }
    }
}
