//! Per-layer wall time of a built-in model, for kernel tuning:
//! `cargo run --release --example layer_times -- resnet50 [batch] [threads]`; `INT8=static|dynamic`
//! quantizes first. A .safetensors or .onnx path works in place of the built-in name.

use std::time::Instant;

use kestrel::{models, Options, Session, Tensor};

fn main() -> kestrel::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("resnet50", String::as_str);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let threads: usize = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(2);
    let mut g = if name.ends_with(".safetensors") || name.ends_with(".onnx") { kestrel::load::load_model(name, &Default::default())?.graph } else { models::builtin(name, 0)? };
    if let Ok(mode) = std::env::var("INT8") {
        use kestrel::quant::{quantize, Mode, QuantizeOptions};
        let mode = if mode == "dynamic" { Mode::Dynamic } else { Mode::Static };
        let s = g.input_shape(1)?;
        let calib = vec![kestrel::models::init::synthetic_images(1, s[1], s[2], s[3], 9)];
        g = quantize(&g, &QuantizeOptions { mode, threads, ..Default::default() }, &calib, &mut |_, _| {})?;
    }
    let s = Session::new(g, &Options { threads, optimize: true, ..Default::default() })?;
    let g = s.graph();
    let x = Tensor::randn(g.input_shape(batch)?, 1.0, 1);
    let mut values: Vec<Option<Tensor>> = vec![None; g.values.len()];
    values[g.inputs[0].id] = Some(x.clone());
    let mut rows = Vec::new();
    for (index, n) in g.nodes.iter().enumerate() {
        let mut best = f64::MAX;
        let mut out = None;
        for _ in 0..5 {
            let t = Instant::now();
            let o = s.run_node(index, &values)?;
            best = best.min(t.elapsed().as_secs_f64() * 1e3);
            out = Some(o);
        }
        values[n.output] = out;
        rows.push((n.name.clone(), n.op.kind(), best));
    }
    let total: f64 = rows.iter().map(|r| r.2).sum();
    for (name, op, t) in &rows {
        println!("{name:<32} {op:<18} {t:8.3} ms");
    }
    let t = Instant::now();
    for _ in 0..10 {
        s.run(std::slice::from_ref(&x))?;
    }
    println!("sum of layers {total:.2} ms; session run {:.2} ms", t.elapsed().as_secs_f64() * 1e2);
    Ok(())
}
