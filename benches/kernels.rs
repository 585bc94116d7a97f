//! Kernel throughput on ResNet-50's layer shapes, as GEMMs (M = Cout, K = Cin·kh·kw,
//! N = OH·OW), MACs as the throughput unit:
//! - `qgemm/<isa>`: the INT8 micro-kernels on pre-packed panels, one thread; on the 7²
//!   shapes also `gemv-<kernel>`, one column by GEMV, next to the one 16-pixel block it
//!   replaces (`u8s8-<kernel>-one-block`);
//! - `sgemm/f32`: the f32 GEMM kestrel's FP32 convs use, one thread;
//! - `conv/*`: whole int8 and f32 convolutions (packing, epilogue), `KESTREL_BENCH_THREADS`
//!   (each call with its other workers spinning, as in a session):
//!   `f32` is im2col + the `gemm` crate, `f32-<kernel>` kestrel's own FP32 kernels on weights
//!   packed once (`cpu::sconv`), `wino-<kernel>` Winograd F(2×2, 3×3) on them and `wino4-<kernel>` F(4×4, 3×3) (`cpu::wino`,
//!   3×3 stride-1 shapes, throughput in the direct conv's MACs), `bf16-<kernel>` the bf16
//!   conv (`cpu::bconv`, AVX512_BF16 hosts; `bf16-amx-bf16-32x32` the AMX tile conv,
//!   `cpu::amx`, on AMX-BF16 hosts; `wino-bf16-<kernel>` bf16 by Winograd), on every
//!   ResNet-50 layer shape;
//! - `conv_transpose/*`: UNet's 2×2 stride-2 up-convs (the built-in UNet at 256², base width
//!   32), `gemm-crate` (its GEMM on the `gemm` crate) against `<kernel>` (a 1×1 conv on
//!   kestrel's FP32 kernel, `cpu::conv_transpose::pack`), col2im included, throughput in the
//!   GEMM's multiply-adds. The hosts' FMA and `vdpbf16ps` peaks, for the efficiency column:
//!   `cargo run --release --example sgemm_peak`;
//! - `max_pool/*`: ResNet's 3×3/2 and UNet's 2×2/2 max pools, `f32-<level>` and `u8-<level>`
//!   (INT8 codes) at every SIMD level the host has, throughput in input elements.
//!
//! `cargo bench --bench kernels`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kestrel::cpu::kernels::Kernels;
use kestrel::cpu::{conv, detect, qconv, qgemm, sconv, sgemm};
use kestrel::graph::{ActQuant, Conv2d};
use kestrel::qparams::QParams;
use kestrel::rng::Rng;
use kestrel::Tensor;

/// (name, M, K, N) of ResNet-50 convs at 224².
const SHAPES: &[(&str, usize, usize, usize)] = &[
    ("conv1_7x7s2", 64, 147, 12544),
    ("l1_3x3", 64, 576, 3136),
    ("l1_1x1_expand", 256, 64, 3136),
    ("l2_3x3", 128, 1152, 784),
    ("l3_3x3", 256, 2304, 196),
    ("l3_1x1_reduce", 256, 1024, 196),
    ("l4_3x3", 512, 4608, 49),
    ("l4_1x1_expand", 2048, 512, 49),
];

/// `f` on `pool`'s workers as a session call runs a layer: the other workers spinning for the
/// call (`cpu::parallel::Spinner`), so that the kernels' parallel loops hand their parts over
/// directly instead of waking sleeping rayon workers (tens of µs a loop on a VM).
fn on_workers<R: Send>(pool: &rayon::ThreadPool, threads: usize, f: impl FnOnce() -> R + Send) -> R {
    pool.install(|| {
        let _awake = kestrel::cpu::parallel::Spinner::start(threads);
        f()
    })
}

fn threads() -> usize {
    std::env::var("KESTREL_BENCH_THREADS").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn gemms(c: &mut Criterion) {
    let mut group = c.benchmark_group("qgemm");
    group.sample_size(10);
    let mut rng = Rng::new(1);
    for &(name, m, k, n) in SHAPES {
        let w: Vec<i8> = (0..m * k).map(|_| (rng.below(255) as i32 - 127) as i8).collect();
        let blocks = n.div_ceil(qgemm::BLOCK);
        // Room for the widest K padding (the AMX kernel's, a multiple of 64).
        let kpad = k.div_ceil(64) * 64;
        let panel: Vec<u8> = (0..qgemm::panel_len(kpad, blocks)).map(|_| rng.below(256) as u8).collect();
        let mut out = vec![0i32; m.next_multiple_of(qgemm::MR) * blocks * qgemm::BLOCK];
        group.throughput(Throughput::Elements((m * k * n) as u64));
        // 7-bit weights ([-64, 64]) take AVX2's vpmaddubsw kernel; 8-bit ones its widening one.
        let w7: Vec<i8> = w.iter().map(|&v| (v / 2).max(-64)).collect();
        for kern in detect::supported().into_iter().filter(|i| *i != detect::Isa::Scalar || m * k * n < 20_000_000).flat_map(qgemm::variants) {
            let mut paths = Vec::new();
            for wv in [&w, &w7] {
                let packing = kern.packing_for(wv, m, k);
                if paths.contains(&kern.path(packing)) {
                    continue;
                }
                paths.push(kern.path(packing));
                let pw = qgemm::PackedWeights::new(wv, m, k, packing).unwrap();
                let id = BenchmarkId::new(format!("u8s8-{}", kern.path(packing).replace(' ', "-")), format!("{name}_{m}x{k}x{n}"));
                group.bench_function(id, |b| b.iter(|| kern.run(&pw, &panel, blocks, &mut out, blocks * qgemm::BLOCK)));
            }
        }
        // One column by GEMV (the classifier at batch 1, a map's last few pixels) against the
        // GEMM's 16-pixel block it replaces; throughput in the column's own MACs.
        if n == 49 {
            let x: Vec<u8> = (0..kpad).map(|_| rng.below(256) as u8).collect();
            for kern in detect::supported().into_iter().flat_map(qgemm::variants).filter(|k| k.has_gemv()) {
                let pw = qgemm::PackedWeights::new(&w, m, k, kern.packing_for(&w, m, k)).unwrap();
                let mut col = vec![0i32; m];
                group.throughput(Throughput::Elements((m * k) as u64));
                group.bench_function(BenchmarkId::new(format!("gemv-{}", kern.name()), format!("{name}_{m}x{k}x1")), |b| b.iter(|| kern.gemv_rows(&pw, 0..m, &x, &mut col, 1)));
                group.bench_function(BenchmarkId::new(format!("u8s8-{}-one-block", kern.name()), format!("{name}_{m}x{k}x1")), |b| b.iter(|| kern.run(&pw, &panel, 1, &mut out, qgemm::BLOCK)));
                group.throughput(Throughput::Elements((m * k * n) as u64));
            }
        }
        let wf: Vec<f32> = (0..m * k).map(|_| rng.normal()).collect();
        let xf: Vec<f32> = (0..k * n).map(|_| rng.normal()).collect();
        let mut of = vec![0f32; m * n];
        group.bench_function(BenchmarkId::new("f32-gemm", format!("{name}_{m}x{k}x{n}")), |b| {
            b.iter(|| {
                // SAFETY: row-major [m,k]·[k,n] → [m,n], all slices sized exactly for these strides.
                unsafe {
                    gemm::gemm(m, n, k, of.as_mut_ptr(), 1, n as isize, false, wf.as_ptr(), 1, k as isize, xf.as_ptr(), 1, n as isize, 1.0, 1.0, false, false, false, gemm::Parallelism::None)
                }
            })
        });
    }
    group.finish();
}

fn convs(c: &mut Criterion) {
    let threads = threads();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut group = c.benchmark_group("conv");
    group.sample_size(10);
    // (name, cin, cout, hw, k, stride)
    let convs: &[(&str, usize, usize, usize, usize, usize)] = &[
        ("conv1_7x7s2", 3, 64, 224, 7, 2),
        ("l1_1x1_reduce", 64, 64, 56, 1, 1),
        ("l1_3x3", 64, 64, 56, 3, 1),
        ("l1_1x1_expand", 64, 256, 56, 1, 1),
        ("l2_3x3", 128, 128, 28, 3, 1),
        ("l2_3x3s2", 128, 128, 56, 3, 2),
        ("l3_3x3s2", 256, 256, 28, 3, 2),
        // ResNet-50's downsamples: strided 1×1 convs over one phase plane (packed on AVX2).
        ("l2_1x1s2_down", 256, 512, 56, 1, 2),
        ("l3_1x1s2_down", 512, 1024, 28, 1, 2),
        ("l4_1x1s2_down", 1024, 2048, 14, 1, 2),
        ("l2_1x1_reduce", 512, 128, 28, 1, 1),
        ("l3_3x3", 256, 256, 14, 3, 1),
        ("l3_1x1_reduce", 1024, 256, 14, 1, 1),
        ("l4_3x3", 512, 512, 7, 3, 1),
        ("l4_1x1_expand", 512, 2048, 7, 1, 1),
        ("unet_3x3_32_256", 32, 32, 256, 3, 1),
        ("unet_3x3_64to32_256", 64, 32, 256, 3, 1),
        ("unet_3x3_128_64", 128, 128, 64, 3, 1),
        ("unet_3x3_512_16", 512, 512, 16, 3, 1),
        // blobs-unet's 8-channel convs at 64² (4-row weight panels on AVX2).
        ("blobs_3x3_8_64", 8, 8, 64, 3, 1),
        ("blobs_3x3_16to8_64", 16, 8, 64, 3, 1),
    ];
    for &(name, cin, cout, hw, k, stride) in convs {
        let pad = k / 2;
        let w = Tensor::randn(vec![cout, cin, k, k], (2.0 / (cin * k * k) as f32).sqrt(), 3);
        let mut f = Conv2d::new(w, stride, pad, 1);
        f.bias = Some(vec![0.1; cout]);
        f.act = Some(kestrel::graph::Activation::Relu);
        let x = Tensor::randn(vec![1, cin, hw, hw], 1.0, 4);
        let o = (hw + 2 * pad - k) / stride + 1;
        let (xs, os) = ([1, cin, hw, hw], [1, cout, o, o]);
        let mut out = vec![0f32; cout * o * o];
        group.throughput(Throughput::Elements((cout * cin * k * k * o * o) as u64));
        let label = format!("{name}/t{threads}");
        let mut scratch = Vec::new();
        group.bench_function(BenchmarkId::new("f32", &label), |b| b.iter(|| on_workers(&pool, threads, || conv::conv2d(&f, x.data(), xs, None, &mut out, os, &mut scratch, threads))));
        for kernel in detect::supported().into_iter().filter_map(sgemm::Kernel::for_isa) {
            let packed = sconv::pack(kernel, &f);
            group.bench_function(BenchmarkId::new(format!("f32-{}", kernel.name().replace(' ', "-")), &label), |b| {
                b.iter(|| on_workers(&pool, threads, || sconv::conv2d(kernel, &f, &packed, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
            });
        }
        // Winograd F(2×2, 3×3) on the same kernels (3×3 stride-1 shapes; throughput in the
        // direct conv's multiply-adds).
        if kestrel::cpu::wino::takes(&f) {
            use kestrel::cpu::wino::{self, Exec};
            for kernel in detect::supported().into_iter().filter_map(sgemm::Kernel::for_isa) {
                let packed = wino::pack(kernel.geometry().mr, &f);
                group.bench_function(BenchmarkId::new(format!("wino-{}", kernel.name().replace(' ', "-")), &label), |b| {
                    b.iter(|| on_workers(&pool, threads, || wino::conv2d(Exec::Kernel(kernel), &f, &packed, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
                });
                let packed = wino::pack_f4(kernel.geometry().mr, &f);
                group.bench_function(BenchmarkId::new(format!("wino4-{}", kernel.name().replace(' ', "-")), &label), |b| {
                    b.iter(|| on_workers(&pool, threads, || wino::conv2d(Exec::Kernel(kernel), &f, &packed, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
                });
            }
        }
        // bf16 where the CPU has AVX512_BF16 (the scalar emulation is a twin, not timed).
        if let Some(kernel) = kestrel::cpu::bgemm::Kernel::native(kestrel::cpu::detect::Isa::Avx512Vnni) {
            let packed = kestrel::cpu::bconv::pack(&f);
            group.bench_function(BenchmarkId::new(format!("bf16-{}", kernel.name().replace(' ', "-")), &label), |b| {
                b.iter(|| on_workers(&pool, threads, || kestrel::cpu::bconv::conv2d(kernel, &f, &packed, x.data(), xs, None, &mut out, os, threads)))
            });
        }
        // bf16 as an implicit GEMM over phase planes: on `vdpbf16ps` register tiles, and on
        // AMX tiles where the CPU has AMX-BF16.
        if let Some(t) = kestrel::cpu::bgemm::Bf16Token::new().filter(|_| kestrel::cpu::amx::takes(&f)) {
            use kestrel::cpu::amx::{self, PlaneKernel};
            let dot = PlaneKernel::Dot(kestrel::cpu::bdot::DotKernel::Avx512Bf16(t));
            // `vdpbf16ps` with pixels and with output channels on its lanes, AMX.
            let runs = [(dot, amx::Lanes::Pixels), (dot, amx::Lanes::Channels)].into_iter().chain(amx::AmxToken::new().map(|t| (PlaneKernel::Amx(t), amx::Lanes::Pixels)));
            for (k, lanes) in runs {
                let packed = amx::pack_with(&f, k, lanes);
                if packed.lanes() != lanes {
                    continue;
                }
                group.bench_function(BenchmarkId::new(format!("bf16-{}", k.name_for(&packed).replace(' ', "-")), &label), |b| {
                    b.iter(|| on_workers(&pool, threads, || amx::conv2d(k, &f, &packed, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
                });
            }
        }
        // bf16 by Winograd F(2×2, 3×3) on the `vdpbf16ps` tile (every 3×3 stride-1 shape, also
        // those the plan leaves on the direct bf16 convs).
        if let Some(kernel) = kestrel::cpu::bgemm::Kernel::native(kestrel::cpu::detect::Isa::Avx512Vnni).filter(|_| kestrel::cpu::wino::takes(&f)) {
            use kestrel::cpu::wino::{self, Exec};
            let packed = wino::pack_bf16(&f, wino::Variant::F2);
            group.bench_function(BenchmarkId::new(format!("wino-bf16-{}", kernel.name().replace(' ', "-")), &label), |b| {
                b.iter(|| on_workers(&pool, threads, || wino::conv2d(Exec::Bf16(kernel), &f, &packed, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
            });
        }
        let kernels = Kernels::select().unwrap();
        let (lo, hi) = kestrel::cpu::codec::min_max(kernels.simd, x.data());
        for (mode, input) in [("int8-static", ActQuant::Static(QParams::from_range(lo, hi))), ("int8-dynamic", ActQuant::Dynamic)] {
            let qc = f.clone().quantized(input, true, kestrel::quant::auto_weight_bits()).unwrap();
            let q = qc.precision.int8().unwrap();
            let packed = qconv::pack_conv(&kernels, &qc, q).unwrap();
            let mut qs = qconv::QScratch::default();
            group.bench_function(BenchmarkId::new(format!("{mode}-{}", kernels.isa.name()), &label), |b| {
                b.iter(|| {
                    on_workers(&pool, threads, || {
                        qconv::qconv2d(&kernels, &qc, q, &packed, qconv::QIn::F32(x.data()), xs, None, qconv::QOut::F32(&mut out), os, qconv::Ranges::default(), &mut qs, threads)
                    })
                })
            });
        }
    }
    group.finish();
}

/// Batches of small maps (shapes-resnet18's convs at batch 64) and its smallest maps at batch
/// 1: the GEMM paths of `sconv` against the by-position GEMMs of `spos` and the
/// channels-in-lanes direct conv of `slanes`, on the richest FP32 kernel, and the session's
/// INT8 conv with u8 codes in and out (`qconv-u8`: GEMV columns gathered from the input on
/// maps of at most 4 pixels, one GEMM over a batch's 1×1 maps). Throughput in the direct
/// conv's multiply-adds, so all read alike.
fn tiny_maps(c: &mut Criterion) {
    let threads = threads();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut group = c.benchmark_group("conv_tiny_maps");
    group.sample_size(20);
    let Some(kernel) = detect::supported().into_iter().filter_map(sgemm::Kernel::for_isa).last() else { return };
    // shapes-resnet18 at batch 64: its 7×7 stem, a 16-channel 8² conv, a stride-2 3×3, the
    // 4² and 2² convs, a stride-2 downsample, and a 1×1 map's conv (layer4's, cropped).
    let shapes = [
        ("b64_stem_3to16_32x32_s2", 64usize, 3usize, 16usize, 32usize, 7usize, 2usize, 3usize),
        ("b64_16ch_8x8", 64, 16, 16, 8, 3, 1, 1),
        ("b64_16to32_8x8_s2", 64, 16, 32, 8, 3, 2, 1),
        ("b64_32ch_4x4", 64, 32, 32, 4, 3, 1, 1),
        ("b64_64ch_2x2", 64, 64, 64, 2, 3, 1, 1),
        ("b64_16to32_1x1_s2", 64, 16, 32, 8, 1, 2, 0),
        ("b64_128ch_1x1_on_1x1", 64, 128, 128, 1, 1, 1, 0),
        ("b1_128ch_2x2", 1, 128, 128, 2, 3, 1, 1),
        ("b1_128ch_2x2_s2", 1, 128, 128, 2, 3, 2, 1),
        ("b1_64to128_1x1_s2_4x4", 1, 64, 128, 4, 1, 2, 0),
        ("b1_128ch_1x1_on_1x1", 1, 128, 128, 1, 1, 1, 0),
    ];
    let kernels = Kernels::select().unwrap();
    for &(name, n, cin, cout, hw, k, stride, pad) in &shapes {
        let mut f = Conv2d::new(Tensor::randn(vec![cout, cin, k, k], (2.0 / (cin * k * k) as f32).sqrt(), 3), stride, pad, 1);
        f.bias = Some(vec![0.1; cout]);
        f.act = Some(kestrel::graph::Activation::Relu);
        let x = Tensor::randn(vec![n, cin, hw, hw], 1.0, 4);
        let o = (hw + 2 * pad - k) / stride + 1;
        let (xs, os) = ([n, cin, hw, hw], [n, cout, o, o]);
        let mut out = vec![0f32; n * cout * o * o];
        let mut scratch = Vec::new();
        group.throughput(Throughput::Elements((n * cout * o * o * cin * k * k) as u64));
        let label = format!("{name}/t{threads}");
        let packed = sconv::pack(kernel, &f);
        group.bench_function(BenchmarkId::new(format!("sconv-{}", kernel.name().replace(' ', "-")), &label), |b| {
            b.iter(|| on_workers(&pool, threads, || sconv::conv2d(kernel, &f, &packed, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
        });
        if let Some(pc) = kestrel::cpu::spos::prepare(kernel, &f, xs, [o, o]) {
            group.bench_function(BenchmarkId::new(format!("spos-{}", kernel.name().replace(' ', "-")), &label), |b| {
                b.iter(|| on_workers(&pool, threads, || kestrel::cpu::spos::conv2d(kernel, &f, &pc, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
            });
        }
        if let Some(lc) = kestrel::cpu::slanes::prepare(&f, xs, os) {
            let path = if kernel.runs_lanes() { kernel.name().replace(' ', "-") } else { "twin".into() };
            group.bench_function(BenchmarkId::new(format!("slanes-{path}"), &label), |b| {
                b.iter(|| on_workers(&pool, threads, || kestrel::cpu::slanes::conv2d(kernel, &f, &lc, x.data(), xs, None, &mut out, os, &mut scratch, threads)))
            });
        }
        let (lo, hi) = kestrel::cpu::codec::min_max(kernels.simd, x.data());
        let (pa, po) = (QParams::from_range(lo, hi), QParams::from_range(0.0, 4.0));
        let xq: Vec<u8> = x.data().iter().map(|&v| pa.quantize(v)).collect();
        let qc = f.clone().quantized(ActQuant::Static(pa), true, kestrel::quant::auto_weight_bits()).unwrap();
        let q = qc.precision.int8().unwrap();
        let qpacked = qconv::pack_conv(&kernels, &qc, q).unwrap();
        let (mut qs, mut o8) = (qconv::QScratch::default(), vec![0u8; n * cout * o * o]);
        group.bench_function(BenchmarkId::new(format!("qconv-u8-{}", kernels.isa.name()), &label), |b| {
            b.iter(|| on_workers(&pool, threads, || qconv::qconv2d(&kernels, &qc, q, &qpacked, qconv::QIn::U8(&xq), xs, None, qconv::QOut::U8(&mut o8, po), os, qconv::Ranges::default(), &mut qs, threads)))
        });
    }
    group.finish();
}

/// UNet's up-convs (ConvTranspose 2×2, stride 2): the `gemm` crate's GEMM and kestrel's.
fn conv_transposes(c: &mut Criterion) {
    use kestrel::cpu::conv_transpose;
    use kestrel::graph::{ConvTranspose2d, Precision};
    let threads = threads();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut group = c.benchmark_group("conv_transpose");
    group.sample_size(10);
    // (name, cin, cout, input side)
    for &(name, cin, cout, hw) in &[("unet_up1_512to256_16", 512usize, 256usize, 16usize), ("unet_up2_256to128_32", 256, 128, 32), ("unet_up3_128to64_64", 128, 64, 64), ("unet_up4_64to32_128", 64, 32, 128)] {
        let ct = ConvTranspose2d {
            weight: Tensor::randn(vec![cin, cout, 2, 2], (1.0 / cin as f32).sqrt(), 3),
            bias: Some(vec![0.1; cout]),
            stride: [2, 2],
            pads: [0; 4],
            output_padding: [0, 0],
            dilation: [1, 1],
            groups: 1,
            precision: Precision::F32,
        };
        let x = Tensor::randn(vec![1, cin, hw, hw], 1.0, 4);
        let (xs, os) = ([1, cin, hw, hw], [1, cout, 2 * hw, 2 * hw]);
        let mut out = vec![0f32; cout * 4 * hw * hw];
        group.throughput(Throughput::Elements((cin * cout * 4 * hw * hw) as u64));
        let label = format!("{name}/t{threads}");
        let (mut cols, mut scratch) = (Vec::new(), Vec::new());
        group.bench_function(BenchmarkId::new("gemm-crate", &label), |b| b.iter(|| on_workers(&pool, threads, || conv_transpose::conv_transpose2d(&ct, x.data(), xs, &mut out, os, &mut cols, threads))));
        for kernel in detect::supported().into_iter().filter_map(sgemm::Kernel::for_isa) {
            let Some(packed) = conv_transpose::pack(kernel, &ct) else { continue };
            group.bench_function(BenchmarkId::new(kernel.name().replace(' ', "-"), &label), |b| {
                b.iter(|| on_workers(&pool, threads, || conv_transpose::conv_transpose2d_packed(&ct, &packed, x.data(), xs, &mut out, os, &mut cols, &mut scratch, threads)))
            });
        }
    }
    group.finish();
}

/// Max pooling, f32 and u8 codes (INT8 models), at every SIMD level the host has: ResNet's
/// 3×3/2 pad-1 pool over 64 channels at 112², and UNet's 2×2/2 over 32 channels at 256²;
/// throughput in input elements.
fn max_pools(c: &mut Criterion) {
    use kestrel::cpu::pool;
    use kestrel::cpu::simd::Simd;
    use kestrel::graph::Pool2d;
    let threads = threads();
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let mut group = c.benchmark_group("max_pool");
    group.sample_size(20);
    let mut levels = vec![Simd::Baseline];
    levels.extend(detect::supported().into_iter().filter_map(Simd::for_isa).filter(|s| !matches!(s, Simd::Baseline)));
    for &(name, ch, hw, k, pad) in &[("resnet_3x3s2_64x112", 64usize, 112usize, 3usize, 1usize), ("unet_2x2s2_32x256", 32, 256, 2, 0)] {
        let p = Pool2d { kernel: [k, k], stride: [2, 2], pads: [pad; 4], dilation: [1, 1], ceil_mode: false, count_include_pad: false };
        let o = (hw + 2 * pad - k) / 2 + 1;
        let (xs, os) = ([1, ch, hw, hw], [1, ch, o, o]);
        let x = Tensor::randn(vec![1, ch, hw, hw], 1.0, 5);
        let codes: Vec<u8> = x.data().iter().map(|v| ((v + 2.0) * 60.0).clamp(0.0, 255.0) as u8).collect();
        let (mut out, mut out8) = (vec![0f32; ch * o * o], vec![0u8; ch * o * o]);
        group.throughput(Throughput::Elements((ch * hw * hw) as u64));
        let label = format!("{name}/t{threads}");
        for &simd in &levels {
            let level = format!("{simd:?}").split('(').next().unwrap_or("level").to_lowercase();
            group.bench_function(BenchmarkId::new(format!("f32-{level}"), &label), |b| b.iter(|| pool2.install(|| pool::pool2d(simd, &p, true, x.data(), xs, &mut out, os))));
            group.bench_function(BenchmarkId::new(format!("u8-{level}"), &label), |b| b.iter(|| pool2.install(|| pool::max_pool2d_u8(simd, &p, &codes, xs, &mut out8, os))));
        }
    }
    group.finish();
}

criterion_group!(benches, gemms, convs, tiny_maps, conv_transposes, max_pools);
criterion_main!(benches);
