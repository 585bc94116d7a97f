//! Whole-model latency, same inputs and threads for every variant:
//! - `kestrel-f32`, `kestrel-int8-static` (MinMax over 8 seeded image-like inputs),
//!   `kestrel-int8-dynamic`;
//! - `ort-f32` (our f32 export) and `ort-int8-qdq`: ORT's own `quantize_static` QDQ model of
//!   that export (u8 activations, s8 per-channel weights; scripts/ort_quantize.py, needs
//!   `KESTREL_PYTHON` from scripts/setup.sh).
//!
//! `. scripts/setup.sh && cargo bench --bench models --features ort`.
//! Threads: `KESTREL_BENCH_THREADS` (default: all cores), used for both engines.

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use kestrel::models::init::synthetic_images;
use kestrel::models::ModelConfig;
use kestrel::quant::{quantize, Method, Mode, QuantizeOptions};
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
    let session = Session::new(graph.clone(), &Options { threads, optimize: true, ..Default::default() }).expect("session");
    let s1 = cfg.input_shape();
    let calib: Vec<Tensor> = (0..8).map(|i| synthetic_images(1, s1[1], s1[2], s1[3], 500 + i)).collect();
    let int8: Vec<(&str, Session)> = [("kestrel-int8-static", Mode::Static), ("kestrel-int8-dynamic", Mode::Dynamic)]
        .into_iter()
        .map(|(label, mode)| {
            let q = quantize(&graph, &QuantizeOptions { mode, method: Method::MinMax, threads, ..Default::default() }, &calib, &mut |_, _| {}).expect("quantize");
            (label, Session::new(q, &Options { threads, optimize: true, ..Default::default() }).expect("session"))
        })
        .collect();
    #[cfg(feature = "ort")]
    let mut ort_int8 = ort_qdq(&graph, &s1, threads).map_err(|e| eprintln!("ORT int8 skipped for {name}: {e}")).ok();
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
        for (variant, s) in &int8 {
            group.bench_with_input(BenchmarkId::new(*variant, &label), &x, |bch, x| bch.iter(|| s.run(std::slice::from_ref(x)).expect("run")));
        }
        #[cfg(feature = "ort")]
        if let Some(m) = ort.as_mut() {
            group.bench_with_input(BenchmarkId::new("ort-f32", &label), &x, |bch, x| bch.iter(|| m.run(x).expect("ort run")));
        }
        #[cfg(feature = "ort")]
        if let Some(m) = ort_int8.as_mut() {
            group.bench_with_input(BenchmarkId::new("ort-int8-qdq", &label), &x, |bch, x| bch.iter(|| m.run(x).expect("ort run")));
        }
    }
    group.finish();
}

/// ORT's `quantize_static` QDQ model of our f32 export.
#[cfg(feature = "ort")]
fn ort_qdq(graph: &kestrel::Graph, shape: &[usize], threads: usize) -> kestrel::Result<kestrel::ort_ref::OrtModel> {
    let python = std::env::var("KESTREL_PYTHON").map_err(|_| kestrel::Error::Argument("KESTREL_PYTHON unset (source scripts/setup.sh)".into()))?;
    let dir = std::env::temp_dir().join(format!("kestrel-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| kestrel::Error::io(&dir, e))?;
    let (f, q) = (dir.join("f32.onnx"), dir.join("qdq.onnx"));
    kestrel::onnx::save(graph, &f)?;
    let shape = shape.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ort_quantize.py");
    let st = std::process::Command::new(python).arg(script).arg(&f).arg(&q).arg(shape).status().map_err(|e| kestrel::Error::Argument(e.to_string()))?;
    if !st.success() {
        return Err(kestrel::Error::Argument("ort_quantize.py failed".into()));
    }
    kestrel::ort_ref::OrtModel::from_file(&q, threads)
}

fn models(c: &mut Criterion) {
    bench_model(c, "resnet18", &[1, 8]);
    bench_model(c, "resnet50", &[1, 8]);
    bench_model(c, "unet", &[1]);
}

criterion_group!(benches, models);
criterion_main!(benches);
