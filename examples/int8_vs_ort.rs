//! Careful latency of kestrel INT8 (static, dynamic) against ORT's quantize_static QDQ model
//! and ORT f32, on the same input and threads: 5 rounds, each a block of 20 runs per variant,
//! reporting each variant's median over all runs.
//! `. scripts/setup.sh && cargo run --release --features ort --example int8_vs_ort -- resnet50 2`

use std::time::Instant;

use kestrel::models::init::synthetic_images;
use kestrel::ort_ref::OrtModel;
use kestrel::quant::{quantize, Method, Mode, QuantizeOptions};
use kestrel::{models, Options, Session, Tensor};

fn main() -> kestrel::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("resnet50", String::as_str);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let g = models::builtin(name, 0)?;
    let s = g.input_shape(1)?;
    let calib: Vec<Tensor> = (0..8).map(|i| synthetic_images(1, s[1], s[2], s[3], 500 + i)).collect();
    let x = Tensor::randn(s.clone(), 1.0, 42);
    let dir = std::env::temp_dir().join("kestrel-int8-vs-ort");
    std::fs::create_dir_all(&dir).map_err(|e| kestrel::Error::io(&dir, e))?;
    let (f, q, c) = (dir.join("f32.onnx"), dir.join("qdq.onnx"), dir.join("calib.npy"));
    kestrel::onnx::save(&g, &f)?;
    kestrel::imageio::write_npy(&c, &Tensor::concat_batch(&calib)?)?;
    let python = std::env::var("KESTREL_PYTHON").map_err(|_| kestrel::Error::Argument("source scripts/setup.sh".into()))?;
    let shape = s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
    let st = std::process::Command::new(python).arg(concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ort_quantize.py")).arg(&f).arg(&q).arg(shape).arg(&c).status();
    if !st.is_ok_and(|s| s.success()) {
        return Err(kestrel::Error::Argument("ort_quantize.py failed".into()));
    }
    let mut variants: Vec<(String, Box<dyn FnMut() -> kestrel::Result<()>>)> = Vec::new();
    for mode in [Mode::Static, Mode::Dynamic] {
        let qg = quantize(&g, &QuantizeOptions { mode, method: Method::MinMax, threads, ..Default::default() }, &calib, &mut |_, _| {})?;
        let sess = Session::new(qg, &Options { threads, optimize: true, ..Default::default() })?;
        let x = x.clone();
        variants.push((format!("kestrel int8 {mode:?}"), Box::new(move || sess.run(std::slice::from_ref(&x)).map(|_| ()))));
    }
    for (label, path) in [("ORT int8 QDQ", &q), ("ORT f32", &f)] {
        let mut m = OrtModel::from_file(path, threads)?;
        let x = x.clone();
        variants.push((label.to_string(), Box::new(move || m.run(&x).map(|_| ()))));
    }
    let mut times: Vec<Vec<f64>> = vec![Vec::new(); variants.len()];
    for _round in 0..5 {
        for (i, (_, run)) in variants.iter_mut().enumerate() {
            run()?;
            for _ in 0..20 {
                let t = Instant::now();
                run()?;
                times[i].push(t.elapsed().as_secs_f64() * 1e3);
            }
        }
    }
    let med = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let meds: Vec<f64> = times.iter_mut().map(med).collect();
    for ((label, _), m) in variants.iter().zip(&meds) {
        println!("{name} b1 t{threads} {label:<22} {m:8.2} ms   vs ORT int8 {:.2}x", m / meds[2]);
    }
    Ok(())
}
