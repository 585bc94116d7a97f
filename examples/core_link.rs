//! How far apart two cores are, as the data between a kernel's two workers sees it:
//! `cargo run --release --example core_link -- [CPU_A CPU_B] [SECONDS]` (default 0 1, one shot).
//!
//! Two threads, pinned to the two CPUs, measure
//! - the round trip of one cache line handed back and forth (one atomic store each way), the
//!   median of 20 batches of 20 000;
//! - the rate at which one thread reads 512 KiB the other has just written (a layer's input
//!   that the other worker produced), the median of 400 rounds;
//! - the rate at which it overwrites 512 KiB the other has just written (a layer's output in
//!   a buffer the other worker wrote last), every word, the median of 400 rounds;
//! - the rate at which it overwrites 512 KiB it wrote and the other has just read (a region
//!   both workers read, rewritten by one: each store waits for the other core's copy to be
//!   invalidated), as it is and with the lines evicted first (`kestrel::cpu::evict`), the
//!   medians of 200 rounds each.
//!
//! On the 2-vCPU KVM guests kestrel is measured on, the two vCPUs sometimes share an L3 (round
//! trip 50–90 ns, 70–75 GB/s) and sometimes do not (330–380 ns, 24–27 GB/s), minute by minute,
//! with no steal time in `/proc/stat`. Two-thread timings of the second kind are not
//! comparable with those of the first (BENCHMARKS.md, "near and far vCPUs"). With SECONDS,
//! one line per second for that long, to see the placement change.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const LINE_ROUNDS: u64 = 20_000;
const BATCHES: usize = 20;
const BYTES: usize = 512 * 1024;
const READ_ROUNDS: usize = 400;

/// Pins the calling thread to `cpu`; false where the OS refuses (or, off Linux, cannot).
#[cfg(not(target_os = "linux"))]
fn pin(_cpu: usize) -> bool {
    false
}

/// Pins the calling thread to `cpu`; false where the OS refuses.
#[cfg(target_os = "linux")]
fn pin(cpu: usize) -> bool {
    // SAFETY: a zeroed cpu_set_t is a valid empty set; CPU_SET writes inside it (cpu checked
    // against its size); sched_setaffinity reads `size_of::<cpu_set_t>()` bytes of it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        if cpu >= 8 * std::mem::size_of::<libc::cpu_set_t>() {
            return false;
        }
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// What [`measure`] reads: round trip ns, then GB/s: cross-core read, overwrite of what the
/// other wrote, overwrite of what the other read (plain, evicted first).
struct Link {
    trip: f64,
    read: f64,
    over_written: f64,
    over_read: f64,
    over_read_evicted: f64,
}

/// Pins the calling thread to `cpu`, or ends the program: two threads on one CPU would hand
/// the line over once per time slice.
fn pin_or_exit(cpu: usize) {
    if !pin(cpu) {
        eprintln!("core_link: cannot pin to CPU {cpu}");
        std::process::exit(2);
    }
}

/// [`Link`] between `a` (this thread) and `b`.
fn measure(a: usize, b: usize) -> Link {
    pin(a);
    // The round trip as `kestrel bench` measures it, the second thread pinned to `b`.
    let Some(trip) = kestrel::bench::machine::cross_core_round_trip_ns_with(LINE_ROUNDS, BATCHES, move || pin_or_exit(b)) else {
        eprintln!("core_link: CPU {b} did not answer");
        std::process::exit(2);
    };
    let flag = Arc::new(AtomicU64::new(0));
    let buf: Arc<Vec<AtomicU64>> = Arc::new((0..BYTES as u64 / 8).map(AtomicU64::new).collect());
    let (f2, b2) = (Arc::clone(&flag), Arc::clone(&buf));
    let other = std::thread::spawn(move || {
        pin_or_exit(b);
        // Write the buffer whenever asked (odd turn), and hand it back (even); then read it.
        let mut sink = 0u64;
        for r in 0..3 * READ_ROUNDS as u64 {
            let turn = 2 * r + 1;
            while f2.load(Ordering::Acquire) != turn {
                std::hint::spin_loop();
            }
            if r < 2 * READ_ROUNDS as u64 {
                for (i, x) in b2.iter().enumerate() {
                    x.store(r + i as u64, Ordering::Relaxed);
                }
            } else {
                sink = sink.wrapping_add(b2.iter().step_by(8).map(|x| x.load(Ordering::Relaxed)).fold(0, u64::wrapping_add));
            }
            f2.store(turn + 1, Ordering::Release);
        }
        std::hint::black_box(sink);
    });
    let mut reads = Vec::with_capacity(READ_ROUNDS);
    let mut sink = 0u64;
    for r in 0..READ_ROUNDS as u64 {
        let turn = 2 * r + 1;
        flag.store(turn, Ordering::Release);
        while flag.load(Ordering::Acquire) != turn + 1 {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        // One load per 64-byte line, as a kernel's first touch of each line.
        sink = sink.wrapping_add(buf.iter().step_by(8).map(|x| x.load(Ordering::Relaxed)).fold(0, u64::wrapping_add));
        reads.push(BYTES as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    std::hint::black_box(sink);
    let mut writes = Vec::with_capacity(READ_ROUNDS);
    for r in READ_ROUNDS as u64..2 * READ_ROUNDS as u64 {
        let turn = 2 * r + 1;
        flag.store(turn, Ordering::Release);
        while flag.load(Ordering::Acquire) != turn + 1 {
            std::hint::spin_loop();
        }
        let t = Instant::now();
        // Every word, in order, as a kernel's output stores.
        for (i, x) in buf.iter().enumerate() {
            x.store(r ^ i as u64, Ordering::Relaxed);
        }
        writes.push(BYTES as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    // Lines this thread wrote and the other then read: shared by both cores.
    let mut shared = [Vec::with_capacity(READ_ROUNDS / 2), Vec::with_capacity(READ_ROUNDS / 2)];
    for r in 2 * READ_ROUNDS as u64..3 * READ_ROUNDS as u64 {
        for (i, x) in buf.iter().enumerate() {
            x.store(r + i as u64, Ordering::Relaxed);
        }
        let turn = 2 * r + 1;
        flag.store(turn, Ordering::Release);
        while flag.load(Ordering::Acquire) != turn + 1 {
            std::hint::spin_loop();
        }
        let evicted = r % 2 == 1;
        let t = Instant::now();
        if evicted {
            kestrel::cpu::evict::evict(&buf[..]);
        }
        for (i, x) in buf.iter().enumerate() {
            x.store(r ^ i as u64, Ordering::Relaxed);
        }
        shared[evicted as usize].push(BYTES as f64 / t.elapsed().as_secs_f64() / 1e9);
    }
    if other.join().is_err() {
        eprintln!("core_link: the second thread panicked");
    }
    let [plain, evicted] = shared;
    Link { trip, read: median(reads), over_written: median(writes), over_read: median(plain), over_read_evicted: median(evicted) }
}

fn main() {
    let args: Vec<usize> = std::env::args().skip(1).filter_map(|s| s.parse().ok()).collect();
    let (a, b) = match args.as_slice() {
        [a, b, ..] => (*a, *b),
        _ => (0, 1),
    };
    let seconds = args.get(2).copied().unwrap_or(0);
    if a == b {
        eprintln!("core_link: CPU_A and CPU_B must differ");
        std::process::exit(2);
    }
    if !pin(a) {
        eprintln!("core_link: cannot pin to CPU {a}");
        std::process::exit(2);
    }
    let start = Instant::now();
    loop {
        let l = measure(a, b);
        let state = if l.trip < 200.0 { "near (shared L3)" } else { "far (no shared L3)" };
        println!(
            "cpus {a}<->{b}: round trip {:.0} ns; GB/s: cross-core read {:.1}, overwrite what it wrote {:.1}, what it read {:.1} ({:.1} evicted first): {state}",
            l.trip, l.read, l.over_written, l.over_read, l.over_read_evicted
        );
        if start.elapsed() >= Duration::from_secs(seconds as u64) {
            break;
        }
        std::thread::sleep(Duration::from_millis(1000));
    }
}
