//! The placement plans (`cpu::placement`) against the plans of cores that share a cache, call
//! by call in one process: `cargo run --release --example placement_ab -- [MODEL] [BATCH]
//! [PAIRS] [int8] [size=N] [far]` (ResNet-50, batch 1, 400 pairs by default; `int8` quantizes
//! it statically first; `size=N` feeds N×N images instead of the model's own size, as
//! `segment`'s tiles do). A is `placement::force(Some(false))` (near plans), B the probe's own
//! verdict (`force(None)`), or the far plans whatever the probe says with `far`; each window
//! of 40 call pairs prints the medians and B/A, and the
//! placement `core_link` would report is told by the window's times (far windows are 15–30 %
//! slower). Both plans must give the same bits: checked first.

use std::time::Instant;

use kestrel::cpu::placement;
use kestrel::models::init::synthetic_images;
use kestrel::quant::{quantize, Method, Mode, QuantizeOptions};
use kestrel::{Options, Session, Tensor};

const WINDOW: usize = 40;

fn main() -> kestrel::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let name = args.first().cloned().unwrap_or_else(|| "resnet50".into());
    let batch: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let pairs: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(400);
    let int8 = args.iter().any(|a| a == "int8");
    let b_far = args.iter().any(|a| a == "far");
    let size: Option<usize> = args.iter().find_map(|a| a.strip_prefix("size=")).and_then(|s| s.parse().ok());
    let threads = 2;
    let g = kestrel::load::load_model(&name, &Default::default())?.graph;
    let g = if int8 {
        let s1 = g.input_shape(1)?;
        let calib: Vec<Tensor> = (0..8).map(|i| synthetic_images(1, s1[1], s1[2], s1[3], 500 + i)).collect();
        quantize(&g, &QuantizeOptions { mode: Mode::Static, method: Method::MinMax, threads, ..Default::default() }, &calib, &mut |_, _| {})?
    } else {
        g
    };
    let mut shape = g.input_shape(batch)?;
    if let (Some(n), 4) = (size, shape.len()) {
        shape[2] = n;
        shape[3] = n;
    }
    let x = Tensor::randn(shape, 1.0, 42);
    let session = Session::new(g, &Options { threads, optimize: true, ..Default::default() })?;
    let xs = std::slice::from_ref(&x);
    println!("memory estimate {:.1} MB", session.memory_estimate(x.shape())? as f64 / 1e6);
    let set = |near: bool| placement::force(if near { Some(false) } else if b_far { Some(true) } else { None });
    set(true);
    let a = session.run(xs)?;
    placement::force(Some(true));
    let far = session.run(xs)?;
    set(false);
    let b = session.run(xs)?;
    let same = |p: &[Tensor], q: &[Tensor]| p.iter().zip(q).all(|(p, q)| p.data().iter().zip(q.data()).all(|(u, v)| u.to_bits() == v.to_bits()));
    println!("{name} batch {batch}{}: same bits near / far / probed: {}", if int8 { " int8" } else { "" }, same(&a, &far) && same(&a, &b));
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    let (mut ta, mut tb) = (Vec::new(), Vec::new());
    for i in 0..pairs {
        for near in if i % 2 == 0 { [true, false] } else { [false, true] } {
            set(near);
            let t = Instant::now();
            session.run(xs)?;
            let ms = t.elapsed().as_secs_f64() * 1e3;
            if near { ta.push(ms) } else { tb.push(ms) }
        }
        if ta.len() == WINDOW {
            let (a, b) = (median(&mut ta), median(&mut tb));
            println!("A (near plans) {a:8.3} ms  B ({}) {b:8.3} ms  B/A {:.4}", if b_far { "far plans" } else { "probed" }, b / a);
            ta.clear();
            tb.clear();
        }
    }
    Ok(())
}
