use std::time::Instant;
use kestrel::{models, Options, Session, Tensor};

fn main() -> kestrel::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("resnet50", String::as_str);
    let batch: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let vars: Vec<String> = args.get(3).map_or(vec![], |s| s.split(',').map(String::from).collect());
    let rounds: usize = args.get(4).and_then(|s| s.parse().ok()).unwrap_or(20);
    let g = if name.ends_with(".safetensors") || name.ends_with(".onnx") { kestrel::load::load_model(name, &Default::default())?.graph } else { models::builtin(name, 0)? };
    let s = g.input_shape(batch)?;
    let x = Tensor::randn(s.clone(), 1.0, 42);
    let mut sess = Vec::new();
    for old in [false, true] {
        for v in &vars { if old { std::env::set_var(v, "1") } else { std::env::remove_var(v) } }
        let se = Session::new(g.clone(), &Options { threads: 2, optimize: true, ..Default::default() })?;
        se.run(std::slice::from_ref(&x))?;
        let lanes = se.kernel_labels(&[s.clone()])?.iter().filter(|l| l.contains("lanes")).count();
        println!("{} session: {lanes} layers in lanes", if old { "old" } else { "new" });
        sess.push(se);
    }
    for v in &vars { std::env::remove_var(v) }
    let o0 = sess[0].run(std::slice::from_ref(&x))?; let o1 = sess[1].run(std::slice::from_ref(&x))?;
    let d = o0[0].data().iter().zip(o1[0].data()).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
    let mut t = [Vec::new(), Vec::new()];
    for _ in 0..rounds {
        for (i, se) in sess.iter().enumerate() {
            let st = Instant::now();
            se.run(std::slice::from_ref(&x))?;
            t[i].push(st.elapsed().as_secs_f64() * 1e3);
        }
    }
    let mut r: Vec<f64> = t[0].iter().zip(&t[1]).map(|(a, b)| a / b).collect();
    r.sort_by(f64::total_cmp);
    for v in t.iter_mut() { v.sort_by(f64::total_cmp); }
    println!("{name} b{batch}: new p50 {:.3} ms, old p50 {:.3} ms, new/old pairs p25 {:.3} p50 {:.3} p75 {:.3} (max |diff| {d:.2e})", t[0][rounds / 2], t[1][rounds / 2], r[rounds / 4], r[rounds / 2], r[3 * rounds / 4]);
    Ok(())
}
