//! One `Session` shared by concurrent callers, measured against the host's own scaling, all
//! in one run:
//!
//! 1. **Host scaling**: a plain CPU-bound loop (integer mixing, no memory traffic) on one
//!    thread, then two copies at once; the ratio of their throughputs is what two independent
//!    workers can get on this machine.
//! 2. **Two single-thread callers on one session**: a session built with 1 thread, called
//!    from one thread, then from two at once (batch 1); the throughput ratio, and its share of
//!    the host's scaling.
//! 3. **A small call during a big one**: a session built with every core; one thread loops
//!    batch-16 calls while another makes batch-1 calls. The batch-1 latency is reported
//!    against the batch-16 call's and against batch 1 alone.
//!
//! `cargo run --release --example concurrency -- [MODEL] [f32|int8-static|int8-dynamic] [SECONDS]`
//! (default: resnet50 int8-static 4). Run it with nothing else on the machine.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use kestrel::models::init::synthetic_images;
use kestrel::quant::{quantize, Method, Mode, QuantizeOptions};
use kestrel::{models, Graph, Options, Session, Tensor};

/// Iterations of the plain loop per second on each of `threads` threads at once (mean).
fn spin_rate(threads: usize, seconds: f64) -> f64 {
    let work = |stop: &AtomicBool| -> f64 {
        let t0 = Instant::now();
        let (mut x, mut n) = (0x9e37_79b9_7f4a_7c15u64, 0u64);
        while !stop.load(Ordering::Relaxed) {
            for _ in 0..10_000 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
            }
            n += 1;
        }
        std::hint::black_box(x);
        n as f64 / t0.elapsed().as_secs_f64()
    };
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..threads).map(|_| s.spawn(|| work(&stop))).collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum::<f64>()
    })
}

/// Calls per second of `callers` threads calling `session.run(x)` in a loop for `seconds`.
fn call_rate(session: &Session, x: &Tensor, callers: usize, seconds: f64) -> f64 {
    let stop = AtomicBool::new(false);
    std::thread::scope(|s| {
        let hs: Vec<_> = (0..callers)
            .map(|_| {
                s.spawn(|| {
                    let t0 = Instant::now();
                    let mut n = 0u64;
                    while !stop.load(Ordering::Relaxed) {
                        session.run(std::slice::from_ref(x)).expect("run");
                        n += 1;
                    }
                    n as f64 / t0.elapsed().as_secs_f64()
                })
            })
            .collect();
        std::thread::sleep(Duration::from_secs_f64(seconds));
        stop.store(true, Ordering::Relaxed);
        hs.into_iter().map(|h| h.join().unwrap_or(0.0)).sum::<f64>()
    })
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> kestrel::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let name = args.get(1).map_or("resnet50", String::as_str);
    let variant = args.get(2).map_or("int8-static", String::as_str);
    let seconds: f64 = args.get(3).and_then(|s| s.parse().ok()).unwrap_or(4.0);
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let g = models::builtin(name, 0)?;
    let s = g.input_shape(1)?;
    let graph: Graph = match variant {
        "f32" => g,
        "int8-static" | "int8-dynamic" => {
            let mode = if variant == "int8-static" { Mode::Static } else { Mode::Dynamic };
            let calib: Vec<Tensor> = (0..8).map(|i| synthetic_images(1, s[1], s[2], s[3], 500 + i)).collect();
            quantize(&g, &QuantizeOptions { mode, method: Method::MinMax, ..Default::default() }, &calib, &mut |_, _| {})?
        }
        other => return Err(kestrel::Error::Argument(format!("variant {other}: use f32, int8-static or int8-dynamic"))),
    };
    let x1 = Tensor::randn(s.clone(), 1.0, 42);
    let x16 = Tensor::randn(g_shape(&s, 16), 1.0, 43);
    println!("model {name} {variant}, {cores} cores, {seconds} s per measurement");

    let one = spin_rate(1, seconds);
    let two = spin_rate(2, seconds);
    let host = two / one;
    println!("host scaling, plain loop: 1 thread {one:.0}/s, 2 threads {two:.0}/s: {host:.2}x");

    let single = Session::new(graph.clone(), &Options { threads: 1, optimize: true, ..Default::default() })?;
    single.run(std::slice::from_ref(&x1))?;
    let r1 = call_rate(&single, &x1, 1, seconds);
    let r2 = call_rate(&single, &x1, 2, seconds);
    let scaling = r2 / r1;
    println!(
        "one session (1 thread), batch 1: 1 caller {r1:.2} calls/s, 2 callers {r2:.2} calls/s: {scaling:.2}x, {:.2} of the host's {host:.2}x",
        scaling / host
    );

    let wide = Session::new(graph, &Options { threads: cores, optimize: true, ..Default::default() })?;
    wide.run(std::slice::from_ref(&x1))?;
    wide.run(std::slice::from_ref(&x16))?;
    let mut alone: Vec<f64> = (0..10)
        .map(|_| {
            let t = Instant::now();
            wide.run(std::slice::from_ref(&x1)).map(|_| t.elapsed().as_secs_f64() * 1e3)
        })
        .collect::<kestrel::Result<_>>()?;
    let stop = AtomicBool::new(false);
    let (mut big, mut small) = std::thread::scope(|sc| -> kestrel::Result<(Vec<f64>, Vec<f64>)> {
        let bg = sc.spawn(|| -> kestrel::Result<Vec<f64>> {
            let mut t16 = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let t = Instant::now();
                wide.run(std::slice::from_ref(&x16))?;
                t16.push(t.elapsed().as_secs_f64() * 1e3);
            }
            Ok(t16)
        });
        let mut t1 = Vec::new();
        let t0 = Instant::now();
        while t0.elapsed().as_secs_f64() < seconds {
            // Start each small call at a different point of the big one.
            std::thread::sleep(Duration::from_millis(7));
            let t = Instant::now();
            wide.run(std::slice::from_ref(&x1))?;
            t1.push(t.elapsed().as_secs_f64() * 1e3);
        }
        stop.store(true, Ordering::Relaxed);
        let t16 = bg.join().map_err(|_| kestrel::Error::Argument("batch-16 thread panicked".into()))??;
        Ok((t16, t1))
    })?;
    let (a, b, c) = (median(&mut alone), median(&mut big), median(&mut small));
    println!(
        "one session ({cores} threads): batch 1 alone {a:.2} ms; during batch-16 calls ({b:.2} ms each): batch 1 {c:.2} ms median over {} calls = {:.2}x the big call, {:.2}x alone",
        small.len(),
        c / b,
        c / a
    );
    Ok(())
}

fn g_shape(s: &[usize], batch: usize) -> Vec<usize> {
    let mut v = s.to_vec();
    v[0] = batch;
    v
}
