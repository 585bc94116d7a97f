//! Single-thread throughput of each qgemm kernel on one panel: `cargo run --release --example qgemm_peak`.
use std::time::Instant;

use kestrel::cpu::{detect, qgemm};

fn main() {
    for &(m, k, nb) in &[(256usize, 2304usize, 5usize), (64, 576, 21), (512, 4608, 2), (2048, 512, 16)] {
        let w: Vec<i8> = (0..m * k).map(|i| ((i * 7919) % 255) as i8).collect();
        let pw = qgemm::PackedWeights::new(&w, m, k).unwrap();
        let panel: Vec<u8> = (0..qgemm::panel_len(pw.kpad, nb)).map(|i| (i * 31 % 251) as u8).collect();
        let rs = nb * 16;
        let mut out = vec![0i32; pw.mpad * rs];
        for isa in detect::supported() {
            let kern = qgemm::kernel(isa).unwrap();
            let iters = if isa == detect::Isa::Scalar { 2 } else { 200 };
            kern(&pw, &panel, nb, &mut out, rs);
            let t = Instant::now();
            for _ in 0..iters {
                kern(&pw, &panel, nb, &mut out, rs);
            }
            let s = t.elapsed().as_secs_f64() / iters as f64;
            println!("m{m} k{k} n{}: {:<11} {:7.1} GMAC/s", nb * 16, isa.name(), (m * k * nb * 16) as f64 / s / 1e9);
        }
    }
}
