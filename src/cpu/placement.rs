//! Whether a call's two workers share a cache: measured in the call, a few µs at most every
//! [`EVERY`].
//!
//! Two vCPUs of a VM sit on one L3 or on two (on Zen, two CCDs), and which one changes minute
//! by minute (README, "Sessions and threads"). Apart, a store to a line the other core has
//! read waits for that copy to be invalidated, one line at a time, and kestrel's two-worker
//! calls run up to a quarter slower. Some plans win apart and lose together; they ask [`far`].
//! On the 2-vCPU Zen 4 guest (BENCHMARKS.md, eighteenth and nineteenth sessions; alternating
//! call by call):
//! - a batch split between the workers, each running its half alone
//!   (`exec::session::Session::run_by_workers`): the blobs UNet's four 256² tiles 0.56–0.58
//!   of the time of workers sharing each layer apart, ResNet-50 at batch 8 0.84 (f32) and
//!   0.885 (INT8); 1.08–1.15 together;
//! - f32 conv workers evicting the output lines they are about to write (`cpu::sconv`, parts
//!   split by output channels and 1×1 convs): ResNet-50 f32 0.96–0.98 apart (taken together
//!   too, in the seventeenth session: 1.008–1.016);
//! - INT8 conv workers doing the same (`cpu::qconv`): ResNet-50 INT8 0.98 apart;
//! - bf16 conv workers (`cpu::bdot`, `cpu::bchan`), the Winograd output (`cpu::wino`, f32 and
//!   bf16) and the max pool (`cpu::pool`) doing the same: ResNet-50 bf16 0.95–0.96 apart, f32
//!   0.99 (the twenty-eighth session);
//! - small calls of one image on one worker where their plan's calls ran faster that way
//!   (`exec::session`'s `Apart`): the trained blobs-unet on 64² inputs 0.72 of the time of two
//!   workers apart.
//!
//! None of them changes a value, only the order memory is touched in.
//!
//! [`observe`] hands one cache line back and forth between the calling thread and a spinning
//! worker of the current call ([`par_for`] with two parts), [`TRIPS`] times, and keeps the
//! verdict until the next probe, or for [`STALE`] where no probe answers. The probe runs in
//! calls of exactly two workers only; with more, a call's workers may sit on several caches at
//! once and no single verdict fits, so [`far`] answers `false` for them (the plans of cores
//! that share a cache).
//!
//! What a round trip means depends on how the CPU links its cores ([`Fabric`], by CPUID
//! vendor). On AMD the probe tells one CCD from two. On Intel every core of a socket shares
//! its L3 over a mesh, and the probe read 153–386 ns (median 208–216) between two vCPUs of one
//! L3 on the model-207 guest, astride [`FAR_ROUND_TRIP_NS`]: there the evicting plans cost
//! 4–6 % (ResNet-50 at batch 1, f32 and INT8) and are never taken on Intel, while splitting a
//! batch between the workers ([`split_batches`]) paid or cost nothing measurable
//! (shapes-resnet18 at batch 64 0.74–0.77, batch 4 0.85–0.88; ResNet-50 at batch 8 0.99,
//! UNet's four 256² tiles 0.98–1.0; single windows of 1.03–1.06 in the host's noise), so on
//! Intel it is taken above [`SLOW_ROUND_TRIP_NS`] (BENCHMARKS.md, "Intel model 207 with AMX
//! exposed").

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::time::{Duration, Instant};

use super::parallel::par_for;

/// A round trip above this many ns means the two cores share no cache: on the 2-vCPU Zen 4
/// guests of BENCHMARKS.md 52–90 ns on one L3, 210–376 ns on two CCDs.
pub const FAR_ROUND_TRIP_NS: f64 = 200.0;

/// Round trips per probe, in batches of [`PER_BATCH`]: the fastest batch counts, so that an
/// interrupt in one batch does not make cores that share a cache look apart.
pub const TRIPS: usize = 16;
const PER_BATCH: usize = 4;

/// The least time between two probes. The placement holds for minutes; a probe costs about
/// 1 µs together and 5 µs apart, plus up to [`ARRIVAL`] while a worker wakes up.
pub const EVERY: Duration = Duration::from_millis(250);

/// How long the caller waits for a worker to take the probe's second part before it gives
/// up (the verdict then stays as it was).
pub const ARRIVAL: Duration = Duration::from_micros(200);

/// How long a verdict holds without a probe that answers: calls that do not spin (a core
/// found shared, `cpu::parallel::quiet`) cannot probe, and their placement may have changed.
pub const STALE: Duration = Duration::from_secs(5);

/// 0: not measured; 1: together; 2: apart.
static VERDICT: AtomicU8 = AtomicU8::new(0);
/// When the last probe started, µs after [`origin`] (0: never).
static LAST_US: AtomicU64 = AtomicU64::new(0);
/// When the last probe that answered started, µs after [`origin`].
static ANSWERED_US: AtomicU64 = AtomicU64::new(0);

fn origin() -> Instant {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    *ORIGIN.get_or_init(Instant::now)
}

/// How this CPU's cores reach each other's caches, which decides what a probe's round trip
/// says about them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fabric {
    /// Cores in groups that share an L3 (AMD's CCDs; also any CPU not known to be
    /// [`Fabric::Mesh`]): the probe tells one group (52–90 ns on the Zen 4 guest) from two
    /// (210–376 ns).
    Groups,
    /// Intel: the cores share the L3 of their socket (a ring on client parts, a mesh on
    /// servers, where two of them are 150–390 ns apart, as far as two CCDs), so the probe
    /// cannot tell sharing from not and the cores are taken to share it; a round trip over
    /// [`SLOW_ROUND_TRIP_NS`] only says that handing lines over is slow.
    Mesh,
}

/// On a [`Fabric::Mesh`], a round trip above this many ns makes a call's two workers split
/// its batches ([`split_batches`]): the model-207 Xeon guest's mesh read 153–386 ns (median
/// 208–216) and paid for the split there; a ring's cores answer well below it (not measured
/// here), and keep the plans of cores together.
pub const SLOW_ROUND_TRIP_NS: f64 = 120.0;

/// This CPU's [`Fabric`]: [`Fabric::Mesh`] for CPUID vendor "GenuineIntel", else
/// [`Fabric::Groups`].
pub fn fabric() -> Fabric {
    static FABRIC: std::sync::OnceLock<Fabric> = std::sync::OnceLock::new();
    *FABRIC.get_or_init(|| if super::detect::is_intel() { Fabric::Mesh } else { Fabric::Groups })
}

/// Whether a call of `workers` workers runs on cores that share no cache, and so takes the
/// plans that evict what the other core read: the last probe's verdict for two workers on a
/// [`Fabric::Groups`] CPU; `false` before any probe, for other widths, which the probe does
/// not measure, and on a [`Fabric::Mesh`]. [`force`] or `KESTREL_PLACEMENT` fix the answer
/// for every width.
pub fn far(workers: usize) -> bool {
    match forced() {
        Some(f) => f,
        None => workers == 2 && fabric() == Fabric::Groups && VERDICT.load(Ordering::Relaxed) == 2,
    }
}

/// Whether a call of `workers` workers splits a batch between them, each running its half
/// alone (`exec::session::Session::run_by_workers`): the last probe's verdict for two workers,
/// on either fabric (on a [`Fabric::Groups`] CPU where they share no cache, [`far`]; on a
/// [`Fabric::Mesh`] where they hand lines over slowly, [`SLOW_ROUND_TRIP_NS`]). [`force`] or
/// `KESTREL_PLACEMENT` fix the answer as for [`far`].
pub fn split_batches(workers: usize) -> bool {
    match forced() {
        Some(f) => f,
        None => workers == 2 && VERDICT.load(Ordering::Relaxed) == 2,
    }
}

/// Whether the next call of two spinning workers would probe the placement ([`observe`]): never
/// probed yet, or [`EVERY`] since the last probe. A caller that may run a call on one worker
/// (which cannot probe) runs that one on two.
pub fn probe_due() -> bool {
    if forced().is_some() {
        return false;
    }
    let last = LAST_US.load(Ordering::Relaxed);
    let now = origin().elapsed().as_micros() as u64;
    last == 0 || now.saturating_sub(last) >= EVERY.as_micros() as u64
}

/// 0: not read yet; 1: measured; 2: near; 3: far.
static FORCED: AtomicU8 = AtomicU8::new(0);

/// Fixes [`far`]'s answer (`Some(true)`: apart, `Some(false)`: together) or hands it back to
/// the probe (`None`), process-wide, for every session: to compare the two kinds of plan on
/// one placement, or to pin one where the caller knows it. No answer changes a value.
/// `KESTREL_PLACEMENT=near|far` sets the same at the start.
pub fn force(placement: Option<bool>) {
    FORCED.store(
        match placement {
            None => 1,
            Some(false) => 2,
            Some(true) => 3,
        },
        Ordering::Relaxed,
    );
}

/// The answer [`force`] or `KESTREL_PLACEMENT` fixed, if any.
pub fn forced() -> Option<bool> {
    let mut v = FORCED.load(Ordering::Relaxed);
    if v == 0 {
        v = match std::env::var("KESTREL_PLACEMENT").map(|v| v.trim().to_ascii_lowercase()) {
            Ok(v) if v == "near" => 2,
            Ok(v) if v == "far" => 3,
            _ => 1,
        };
        // A concurrent `force` wins over the environment.
        v = match FORCED.compare_exchange(0, v, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => v,
            Err(now) => now,
        };
    }
    match v {
        2 => Some(false),
        3 => Some(true),
        _ => None,
    }
}

/// Probes the placement from a call of `threads` workers, when it has two, they are
/// `spinning` ([`super::parallel::Spinner`]) and the last probe is older than [`EVERY`]; a
/// call that cannot probe only drops a verdict older than [`STALE`]. Must run on the call's
/// thread, inside its pool.
pub fn observe(threads: usize, spinning: bool) {
    if threads != 2 || rayon::current_num_threads() != 2 || forced().is_some() {
        return;
    }
    let now = (origin().elapsed().as_micros() as u64).max(1);
    let last = LAST_US.load(Ordering::Relaxed);
    if last != 0 && now.saturating_sub(last) < EVERY.as_micros() as u64 {
        return;
    }
    if !spinning {
        if now.saturating_sub(ANSWERED_US.load(Ordering::Relaxed)) > STALE.as_micros() as u64 {
            VERDICT.store(0, Ordering::Relaxed);
        }
        return;
    }
    // One caller claims the probe; a concurrent call of another session skips it.
    if LAST_US.compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed).is_err() {
        return;
    }
    if let Some(ns) = round_trip_ns() {
        let line = match fabric() {
            Fabric::Groups => FAR_ROUND_TRIP_NS,
            Fabric::Mesh => SLOW_ROUND_TRIP_NS,
        };
        VERDICT.store(if ns > line { 2 } else { 1 }, Ordering::Relaxed);
        ANSWERED_US.store(now, Ordering::Relaxed);
    } else if now.saturating_sub(ANSWERED_US.load(Ordering::Relaxed)) > STALE.as_micros() as u64 {
        VERDICT.store(0, Ordering::Relaxed);
    }
}

/// The fastest batch's mean round trip, in ns, between the calling thread and the worker
/// that takes the second part of a two-part [`par_for`]; `None` when no other thread took it
/// within [`ARRIVAL`] or a hand-over took longer than that.
pub fn round_trip_ns() -> Option<f64> {
    // The line both threads write: odd values from part 0, even answers from part 1.
    #[repr(align(128))]
    struct Line(AtomicU64);
    let line = Line(AtomicU64::new(0));
    let arrived = AtomicBool::new(false);
    let gave_up = AtomicBool::new(false);
    let best = AtomicU64::new(u64::MAX);
    let caller = std::thread::current().id();
    par_for(2, |part| {
        if part == 1 {
            // The caller itself, after part 0 gave up: nobody to answer.
            if std::thread::current().id() == caller || gave_up.load(Ordering::Acquire) {
                return;
            }
            arrived.store(true, Ordering::Release);
            let deadline = Instant::now() + ARRIVAL * 4;
            answer(&line.0, 2 * TRIPS as u64 - 1, || gave_up.load(Ordering::Relaxed) || Instant::now() >= deadline);
            return;
        }
        let start = Instant::now();
        while !arrived.load(Ordering::Acquire) {
            if start.elapsed() > ARRIVAL {
                gave_up.store(true, Ordering::Release);
                return;
            }
            std::hint::spin_loop();
        }
        for batch in 0..(TRIPS / PER_BATCH) as u64 {
            let t = Instant::now();
            if !lead(&line.0, batch * PER_BATCH as u64..(batch + 1) * PER_BATCH as u64, t + ARRIVAL) {
                gave_up.store(true, Ordering::Release);
                return;
            }
            best.fetch_min((t.elapsed().as_nanos() / PER_BATCH as u128) as u64, Ordering::Relaxed);
        }
    });
    let ns = best.load(Ordering::Relaxed);
    (ns != u64::MAX && !gave_up.load(Ordering::Relaxed)).then_some(ns as f64)
}

/// The leading side of a cache-line ping-pong (this module's probe, and
/// `bench::machine::cross_core_round_trip_ns`): for each `i` of `trips` writes `2i + 1` to
/// `line` and waits for [`answer`]'s `2i + 2`. `false` once past `deadline`.
pub fn lead(line: &AtomicU64, trips: std::ops::Range<u64>, deadline: Instant) -> bool {
    for i in trips {
        let odd = 2 * i + 1;
        line.store(odd, Ordering::Release);
        while line.load(Ordering::Acquire) != odd + 1 {
            if Instant::now() > deadline {
                return false;
            }
            std::hint::spin_loop();
        }
    }
    true
}

/// The answering side: answers every odd value [`lead`] writes to `line` with the next even
/// one, until it has answered `last` or `stop()` (asked every 64 idle spins, so that waiting
/// costs no clock read per spin) says so.
pub fn answer(line: &AtomicU64, last: u64, stop: impl Fn() -> bool) {
    let (mut seen, mut idle) = (0u64, 0u32);
    while seen < last {
        let v = line.load(Ordering::Acquire);
        if v % 2 == 1 && v != seen {
            seen = v;
            line.store(v + 1, Ordering::Release);
        } else {
            idle = idle.wrapping_add(1);
            if idle % 64 == 0 && stop() {
                return;
            }
            std::hint::spin_loop();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn probe_answers_or_gives_up_without_hanging() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).use_current_thread().build().expect("pool");
        let t = Instant::now();
        let mut answered = 0;
        pool.install(|| {
            for _ in 0..20 {
                let _awake = super::super::parallel::Spinner::start(2);
                if let Some(ns) = round_trip_ns() {
                    assert!(ns > 0.0 && ns < 1e6, "round trip {ns} ns");
                    answered += 1;
                }
                observe(2, true);
            }
        });
        // Each probe waits at most ARRIVAL for the worker and ARRIVAL per batch.
        assert!(t.elapsed() < Duration::from_secs(5));
        println!("placement probe ({:?}): {answered} of 20 answered, far(2) = {}", fabric(), far(2));
    }

    #[test]
    fn a_mesh_never_evicts() {
        // Nothing forced in this test binary's unit tests (the plans' own tests live in
        // tests/placement.rs, which forces).
        if forced().is_some() {
            return;
        }
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).use_current_thread().build().expect("pool");
        pool.install(|| {
            for _ in 0..4 {
                let _awake = super::super::parallel::Spinner::start(2);
                LAST_US.store(0, Ordering::Relaxed);
                observe(2, true);
                // Only one probe's verdict to read; another test's probe may replace it at any
                // time, so only what holds whatever it says is checked.
                assert!(!split_batches(1) && !split_batches(4) && !far(1) && !far(4));
                assert!(fabric() == Fabric::Groups || !far(2), "a mesh never evicts");
            }
        });
        println!("fabric {:?}: split_batches(2) = {}, far(2) = {}", fabric(), split_batches(2), far(2));
    }

    #[test]
    fn one_thread_has_nobody_to_answer() {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(1).use_current_thread().build().expect("pool");
        let t = Instant::now();
        assert_eq!(pool.install(round_trip_ns), None);
        assert!(t.elapsed() < Duration::from_secs(1));
    }
}
