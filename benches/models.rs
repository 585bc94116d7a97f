//! Whole-model latency: kestrel f32 against ONNX Runtime f32, same inputs, same threads.
//!
//! `cargo bench --bench models --features ort` (ORT_DYLIB_PATH from scripts/setup.sh).
//! Threads: `KESTREL_BENCH_THREADS` (default: all cores), used for both engines.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kestrel::models::ModelConfig;
use kestrel::{models, Options, Session, Tensor};

fn threads() -> usize {
    std::env::var("KESTREL_BENCH_THREADS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

fn bench_model(c: &mut Criterion, name: &str, batches: &[usize]) {
    let threads = threads();
    let cfg = ModelConfig::builtin(name).expect("built-in model");
    let graph = models::builtin(name, 0).expect("build");
    let session = Session::new(graph.clone(), &Options { threads, optimize: true }).expect("session");
    #[cfg(feature = "ort")]
    let mut ort = match kestrel::onnx::export::to_bytes(&graph).and_then(|b| kestrel::ort_ref::OrtModel::from_bytes(&b, threads)) {
        Ok(m) => Some(m),
        Err(e) => {
            eprintln!("ORT skipped for {name}: {e}");
            None
        }
    };
    #[cfg(not(feature = "ort"))]
    eprintln!("ORT skipped for {name}: built without the 'ort' feature");
    let mut group = c.benchmark_group(name);
    group.sample_size(10);
    for &b in batches {
        let mut shape = cfg.input_shape();
        shape[0] = b;
        let x = Tensor::randn(shape.clone(), 1.0, 42);
        let macs = graph.macs(&shape).expect("macs");
        group.throughput(Throughput::Elements(macs));
        let label = format!("b{b}x{}x{}/t{threads}", shape[2], shape[3]);
        group.bench_with_input(BenchmarkId::new("kestrel-f32", &label), &x, |bch, x| {
            bch.iter(|| session.run(std::slice::from_ref(x)).expect("run"))
        });
        #[cfg(feature = "ort")]
        if let Some(m) = ort.as_mut() {
            group.bench_with_input(BenchmarkId::new("ort-f32", &label), &x, |bch, x| bch.iter(|| m.run(x).expect("ort run")));
        }
    }
    group.finish();
}

fn models(c: &mut Criterion) {
    bench_model(c, "resnet18", &[1, 8]);
    bench_model(c, "resnet50", &[1, 8]);
    bench_model(c, "unet", &[1]);
}

criterion_group!(benches, models);
criterion_main!(benches);
