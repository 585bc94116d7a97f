//! What two threads can give on this machine, and what a fork-join costs:
//! `cargo run --release --example forkjoin_probe` (`NOSPIN=1`: without kestrel's spinner).
//!
//! Two chunks of a dependent scalar multiply-add chain (no memory traffic) run on a 2-worker
//! pool built as a session builds it (the calling thread is worker 0, the other spinning
//! through the call as `cpu::parallel` keeps it), as a rayon parallel loop and as
//! `cpu::parallel::par_for`, against the same two chunks on one thread.
//! `overhead` is the parallel time minus half the serial time: the fork-join's cost for short
//! chunks, and for long ones what the second core gives less than the first (a VM whose two
//! vCPUs do not run at the same speed together as alone).
use rayon::prelude::*;
use std::time::Instant;

fn chain(c: &mut [f32], work: usize) {
    let mut x = c[0];
    for i in 0..work {
        x = x * 1.000001 + i as f32;
    }
    c[0] = x;
}

fn main() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).use_current_thread().build().unwrap_or_else(|e| panic!("{e}"));
    pool.install(|| {
        // A spinner gives up after 2 ms without work, so each timed loop starts its own.
        let spin = || if std::env::var("NOSPIN").is_ok() { None } else { kestrel::cpu::parallel::Spinner::start(2) };
        let mut buf = vec![0f32; 2 * 1024];
        for work in [200usize, 2000, 20_000, 200_000] {
            let iters = if work >= 200_000 { 500 } else { 20_000 };
            let awake = spin();
            let t = Instant::now();
            for _ in 0..iters {
                buf.par_chunks_mut(1024).for_each(|c| chain(c, work));
            }
            let par = t.elapsed().as_secs_f64() / iters as f64 * 1e6;
            drop(awake);
            let awake = spin();
            let t = Instant::now();
            for _ in 0..iters {
                kestrel::cpu::parallel::par_chunks_mut(&mut buf, 1024, |_, c| chain(c, work));
            }
            let own = t.elapsed().as_secs_f64() / iters as f64 * 1e6;
            drop(awake);
            let t = Instant::now();
            for _ in 0..iters {
                buf.chunks_mut(1024).for_each(|c| chain(c, work));
            }
            let ser = t.elapsed().as_secs_f64() / iters as f64 * 1e6;
            println!("chain {work:>7}: 1 thread {ser:8.2} µs; rayon {par:8.2} µs ({:.2}×, overhead {:5.2} µs); par_for {own:8.2} µs ({:.2}×, overhead {:5.2} µs)", ser / par, par - ser / 2.0, ser / own, own - ser / 2.0);
        }
        println!("(checksum {})", buf[0]);
    });
}
