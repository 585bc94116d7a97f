//! INT8 against f32 on a built-in model: accuracy and latency on this machine.
//! `cargo run --release --example int8_speed -- resnet50 [threads]`.

use std::time::Instant;

use kestrel::models::init::synthetic_images;
use kestrel::quant::{quantize, Method, Mode, QuantizeOptions};
use kestrel::{models, Options, Session};

fn main() -> kestrel::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("resnet50", String::as_str);
    let threads: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(2);
    let g = models::builtin(name, 0)?;
    let shape = g.input_shape(1)?;
    let calib: Vec<_> = (0..8).map(|i| synthetic_images(1, shape[1], shape[2], shape[3], 1000 + i)).collect();
    let x = synthetic_images(1, shape[1], shape[2], shape[3], 5);
    let time = |s: &Session| -> kestrel::Result<f64> {
        s.run(std::slice::from_ref(&x))?;
        let mut v = Vec::new();
        for _ in 0..(if std::env::var("ONLY_STATIC").is_ok() { 200 } else { 15 }) {
            let t = Instant::now();
            s.run(std::slice::from_ref(&x))?;
            v.push(t.elapsed().as_secs_f64() * 1e3);
        }
        v.sort_by(f64::total_cmp);
        Ok(v[v.len() / 2])
    };
    let f = Session::new(g.clone(), &Options { threads, optimize: true, ..Default::default() })?;
    let want = f.run(std::slice::from_ref(&x))?.remove(0);
    if std::env::var("ONLY_STATIC").is_err() {
        println!("{name} f32: {:.2} ms", time(&f)?);
    }
    let modes = if std::env::var("ONLY_STATIC").is_ok() { vec![Mode::Static] } else { vec![Mode::Static, Mode::Dynamic] };
    for mode in modes {
        let q = quantize(&g, &QuantizeOptions { mode, method: Method::MinMax, threads, ..Default::default() }, &calib, &mut |_, _| {})?;
        let s = Session::new(q, &Options { threads, optimize: true, ..Default::default() })?;
        let got = s.run(std::slice::from_ref(&x))?.remove(0);
        let m = kestrel::parity::compare(&want, &got);
        println!("{name} int8 {mode:?}: {:.2} ms  cosine {:.5}  top1 {:?}", time(&s)?, m.cosine, m.top1);
    }
    Ok(())
}
