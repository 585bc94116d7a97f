//! Workers kept awake through one call, and the parallel loops that use them.
//!
//! A rayon worker that finds no work sleeps after a few dozen rounds, and waking it costs a
//! futex wake and, on a VM, an inter-processor interrupt: 40–100 µs per fork-join measured on
//! a 2-vCPU KVM guest whenever the serial gap before it exceeded ~20 µs, against 2–16 µs with
//! the worker spinning. A network runs one or two parallel regions per layer with serial work
//! between them, so sleeping workers cost milliseconds per ResNet-50 call. ONNX Runtime spins
//! its intra-op threads for the same reason.
//!
//! [`Spinner::start`] sends every other worker of the current pool a job that takes whatever
//! work appears until the call ends, when the guard drops, or until it has found nothing for
//! [`IDLE_LIMIT`], so that a long serial stretch, or a core shared with another call, does not
//! burn a core for nothing.
//!
//! Work reaches the spinning workers two ways: rayon's (they steal through
//! `rayon::yield_now`), and [`par_for`], which the kernels' main loops use. Even with the
//! thief awake, a rayon fork-join lets the thread that finished first fall asleep while it
//! waits for the other half, and be woken by the finisher: two 33 µs halves took 48–52 µs
//! that way on the 2-vCPU guest, against 33 µs for two threads that spin-wait on atomics
//! (`examples/forkjoin_probe`). `par_for` publishes its job in the call's [`Shared`] slot; the
//! caller and the spinning workers claim its parts with one atomic add each and the caller
//! spin-waits for the parts others took. Outside a spinning call (one thread, `KESTREL_SPIN=0`,
//! a nested loop, a worker that has gone back to sleep, a core found shared) it is a rayon
//! parallel loop.
//!
//! Spinning pays only on cores of the call's own. On a core that another busy thread shares,
//! the scheduler treats a spinning worker as the CPU hog it is and takes the core from it for
//! whole time slices, often while it holds a part the caller then waits for; a worker that
//! sleeps between loops is run at once when woken. ResNet-50 on the 2-vCPU guest with another
//! process keeping one core busy: 41–43 ms spinning, 32–35 ms sleeping (34 ms on one thread).
//! So each spinning worker compares the time it waited for its core with the call's wall time
//! ([`shared_core`]); over [`OFF_CORE_PER_CENT`] % of it in [`SHARED_CALLS_IN_A_ROW`] calls, calls
//! stop spinning for [`QUIET`], and the first calls after that try again.

use std::cell::RefCell;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicPtr, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long a spinning worker waits without finding work before it goes back to rayon's
/// sleep.
pub const IDLE_LIMIT: Duration = Duration::from_millis(2);

/// The share of a call's wall time a spinning worker may spend waiting for its core (runnable,
/// another thread running: [`run_delay`]) before calls stop spinning for [`QUIET`]. Measured
/// on the 2-vCPU guest ([`run_delay`], ResNet-50 calls of 18 ms): with the cores to themselves
/// a median of 0, 90 % of calls under 60 µs, 2–3 calls in 64 over 0.9 ms (up to 3 ms); with
/// another process keeping one core busy a median of 4 ms, 63 calls in 64 over 0.9 ms.
pub const OFF_CORE_PER_CENT: u32 = 5;

/// How long calls go without spinning once a worker found its core shared.
pub const QUIET: Duration = Duration::from_secs(1);

/// Milliseconds since [`epoch_ms`]'s origin until which calls do not spin (0: they do).
static QUIET_UNTIL_MS: AtomicU64 = AtomicU64::new(0);

/// Milliseconds since the first call of this function (a process-wide monotonic clock).
fn epoch_ms() -> u64 {
    static ORIGIN: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    u64::try_from(ORIGIN.get_or_init(Instant::now).elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// Time the calling thread has spent runnable but waiting for its core (the second field of
/// Linux's `/proc/thread-self/schedstat`): another thread of this OS had the core. A
/// hypervisor's steal is not in it, as it would be in the thread's CPU time against the wall
/// clock: measured that way, calls on the 2-vCPU guest stopped spinning whenever the host was
/// loaded from outside too, and ran 2–5 % slower there.
#[cfg(target_os = "linux")]
fn run_delay() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns: u64 = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// Not known off Linux: calls always spin there.
#[cfg(not(target_os = "linux"))]
fn run_delay() -> Option<Duration> {
    None
}

/// Whether a spinning worker that spent `wall` in its loop, `waited` of it for its core, shared
/// that core: more than [`OFF_CORE_PER_CENT`] % of at least a millisecond.
pub fn shared_core(wall: Duration, waited: Duration) -> bool {
    wall >= Duration::from_millis(1) && waited.as_nanos() * 100 > wall.as_nanos() * u128::from(OFF_CORE_PER_CENT)
}

/// Counts a call in which this worker found its core shared, or not: the
/// [`SHARED_CALLS_IN_A_ROW`]th in a row quiets calls for [`QUIET`]. Two in a row, so that a lone
/// call that waited (a kernel thread, a migration: 2–3 calls in 64 with the cores to
/// themselves) does not turn spinning off.
fn record_call(shared: bool) {
    let in_a_row = SHARED_CALLS.with(|n| {
        n.set(if shared { n.get() + 1 } else { 0 });
        n.get() >= SHARED_CALLS_IN_A_ROW
    });
    if in_a_row {
        SHARED_CALLS.with(|n| n.set(0));
        QUIET_UNTIL_MS.fetch_max(epoch_ms().saturating_add(u64::try_from(QUIET.as_millis()).unwrap_or(u64::MAX)), Ordering::Relaxed);
    }
}

/// Whether calls skip spinning now: a worker found its core shared within [`QUIET`].
pub fn quiet() -> bool {
    epoch_ms() < QUIET_UNTIL_MS.load(Ordering::Relaxed)
}

/// What one call shares with its spinning workers.
struct Shared {
    /// The call is over.
    done: AtomicBool,
    /// The [`par_for`] job being run, or null.
    job: AtomicPtr<Job<'static>>,
    /// Workers that registered to read `job` and have not left it yet.
    inside: AtomicUsize,
    /// Workers still in their spinning loop.
    alive: AtomicUsize,
}

/// One [`par_for`]: parts `0..parts`, part 0 the caller's, the others claimed through `next`.
struct Job<'a> {
    parts: usize,
    next: AtomicUsize,
    finished: AtomicUsize,
    run: &'a (dyn Fn(usize) + Sync),
    panic: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

impl Job<'_> {
    /// Claims and runs parts until none is left. A panicking part is recorded (the caller
    /// re-raises it) and still counts as finished, so that nobody waits for it forever.
    fn work(&self) {
        loop {
            let i = self.next.fetch_add(1, Ordering::AcqRel);
            if i >= self.parts {
                return;
            }
            self.run_part(i);
        }
    }

    fn run_part(&self, i: usize) {
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| (self.run)(i))) {
            if let Ok(mut slot) = self.panic.lock() {
                slot.get_or_insert(p);
            }
        }
        self.finished.fetch_add(1, Ordering::Release);
    }
}

/// Calls in a row in which a worker must find its core shared before calls stop spinning.
pub const SHARED_CALLS_IN_A_ROW: u32 = 2;

thread_local! {
    /// Calls in a row in which this worker found its core shared ([`shared_core`]).
    static SHARED_CALLS: std::cell::Cell<u32> = const { std::cell::Cell::new(0) };
    /// The spinning call this thread is running, while it is not inside a [`par_for`].
    static CURRENT: RefCell<Option<Arc<Shared>>> = const { RefCell::new(None) };
}

/// Keeps the current pool's other workers awake until dropped.
pub struct Spinner {
    shared: Arc<Shared>,
    /// What `CURRENT` held before (a nested session call's spinner restores its caller's).
    outer: Option<Arc<Shared>>,
}

impl Spinner {
    /// Starts spinning the other workers of the current rayon pool, when there are any, this
    /// thread is one of its workers, and no worker found its core shared lately ([`quiet`]).
    pub fn start(threads: usize) -> Option<Spinner> {
        let caller = rayon::current_thread_index()?;
        if threads <= 1 || rayon::current_num_threads() <= 1 || !enabled() || quiet() {
            return None;
        }
        let helpers = rayon::current_num_threads() - 1;
        let shared = Arc::new(Shared { done: AtomicBool::new(false), job: AtomicPtr::new(std::ptr::null_mut()), inside: AtomicUsize::new(0), alive: AtomicUsize::new(helpers) });
        let sh = Arc::clone(&shared);
        rayon::spawn_broadcast(move |ctx| {
            // The worker running the call must never spin: it would hold the call's stack
            // until the idle limit.
            if ctx.index() == caller {
                return;
            }
            let mut idle_since = Instant::now();
            let (start, waited0) = (idle_since, run_delay());
            while !sh.done.load(Ordering::Acquire) {
                if !sh.job.load(Ordering::Acquire).is_null() {
                    // Register before reading the job again: the caller clears it and then
                    // waits for `inside` to drop to 0 before its stack frame goes.
                    sh.inside.fetch_add(1, Ordering::SeqCst);
                    let job = sh.job.load(Ordering::SeqCst);
                    if !job.is_null() {
                        // SAFETY: a non-null job read while registered lives until this
                        // worker leaves (`par_for` waits for `inside` to be 0 after clearing it).
                        unsafe { &*job }.work();
                        idle_since = Instant::now();
                    }
                    sh.inside.fetch_sub(1, Ordering::SeqCst);
                }
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => idle_since = Instant::now(),
                    _ if idle_since.elapsed() > IDLE_LIMIT => break,
                    _ => std::hint::spin_loop(),
                }
            }
            sh.alive.fetch_sub(1, Ordering::AcqRel);
            if let (Some(w0), Some(w1)) = (waited0, run_delay()) {
                record_call(shared_core(start.elapsed(), w1.saturating_sub(w0)));
            }
        });
        let outer = CURRENT.with(|c| c.borrow_mut().replace(Arc::clone(&shared)));
        Some(Spinner { shared, outer })
    }
}

thread_local! {
    /// Whether this thread's loops run on it alone ([`alone`]).
    static ALONE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Runs `f` with this thread's [`par_for`] loops (and [`par_chunks_mut`]'s, and the rayon
/// iterators bounded by [`min_len`]) on this thread alone, even inside a pool with idle
/// workers: a worker that runs samples of its own while the pool's other worker runs others
/// (`exec::session::Session::run_by_workers`) keeps its parts, and the data they touch, on
/// its own core; a one-thread session called from a thread whose pool has more workers runs
/// on that thread with none of them (`exec::session::Session::in_pool`). The previous state
/// is restored when `f` returns or panics.
pub fn alone<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALONE.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ALONE.with(|a| a.replace(true)));
    f()
}

/// `n`, or `usize::MAX` inside [`alone`]: the `with_min_len` of a rayon parallel iterator
/// whose jobs would otherwise go to `n` items, so that such a loop is not split, and so stays
/// on the calling thread, where it runs alone.
pub fn min_len(n: usize) -> usize {
    if is_alone() {
        usize::MAX
    } else {
        n
    }
}

/// Whether this thread runs inside [`alone`].
pub fn is_alone() -> bool {
    ALONE.with(|a| a.get())
}

/// Runs `f(i)` for every `i` in `0..parts`, each exactly once, on the calling thread and the
/// call's spinning workers (or a rayon loop where there are none; see the module), and
/// returns when all have run. A part's panic is raised again here once every part is done.
pub fn par_for(parts: usize, f: impl Fn(usize) + Sync) {
    if parts <= 1 || is_alone() {
        (0..parts).for_each(f);
        return;
    }
    let Some(shared) = CURRENT.with(|c| c.borrow_mut().take()) else {
        use rayon::prelude::*;
        (0..parts).into_par_iter().for_each(&f);
        return;
    };
    // Restores `CURRENT` (taken so that a nested loop goes to rayon, not into this job's
    // slot) and clears the slot, waiting until no worker can still read the job: also when a
    // part of this thread panics.
    struct Publish<'s> {
        shared: &'s Arc<Shared>,
    }
    impl Drop for Publish<'_> {
        fn drop(&mut self) {
            self.shared.job.store(std::ptr::null_mut(), Ordering::SeqCst);
            while self.shared.inside.load(Ordering::SeqCst) > 0 {
                std::hint::spin_loop();
            }
            CURRENT.with(|c| *c.borrow_mut() = Some(Arc::clone(self.shared)));
        }
    }
    if shared.alive.load(Ordering::Acquire) == 0 {
        let _restore = Publish { shared: &shared };
        use rayon::prelude::*;
        (0..parts).into_par_iter().for_each(&f);
        return;
    }
    // Part 0 is the caller's, always: with one part per worker, each layer then gives a
    // worker the same share as the last one did (the pixels or channels whose inputs the
    // previous layer left in that core's cache). The others claim parts 1, 2, … in turn.
    let job = Job { parts, next: AtomicUsize::new(1), finished: AtomicUsize::new(0), run: &f, panic: Mutex::new(None) };
    {
        let _published = Publish { shared: &shared };
        // The pointer's 'static is a lie the slot needs; `Publish` retracts it, and waits for
        // every reader to leave, before `job` goes out of scope.
        shared.job.store(&job as *const Job as *mut Job<'static>, Ordering::SeqCst);
        job.run_part(0);
        job.work();
        while job.finished.load(Ordering::Acquire) < parts {
            std::hint::spin_loop();
        }
    }
    if let Some(p) = job.panic.into_inner().ok().flatten() {
        resume_unwind(p);
    }
}

/// [`par_for`] over the chunks of `data` (`chunk` elements each, the last one shorter):
/// `f(index, chunk)` for every chunk. Consecutive chunks go together, at most
/// [`PARTS_PER_WORKER`] groups per worker, so that a loop over 2048 small planes costs a few
/// claims, not 2048.
pub fn par_chunks_mut<T: Send>(data: &mut [T], chunk: usize, f: impl Fn(usize, &mut [T]) + Sync) {
    let chunk = chunk.max(1);
    let (len, base) = (data.len(), OutPtr(data.as_mut_ptr()));
    let chunks = len.div_ceil(chunk);
    let parts = chunks.min(PARTS_PER_WORKER * rayon::current_num_threads().max(1));
    par_for(parts, |g| {
        let base = &base;
        for i in g * chunks / parts..(g + 1) * chunks / parts {
            let start = i * chunk;
            // SAFETY: chunk i belongs to group g alone and each group is run exactly once;
            // its range [start, start + n) lies inside `data` and is disjoint from every
            // other chunk's; `data` is borrowed mutably for the whole loop, so nothing else
            // reaches it meanwhile.
            let part = unsafe { std::slice::from_raw_parts_mut(base.0.add(start), chunk.min(len - start)) };
            f(i, part);
        }
    });
}

/// Groups of chunks per worker in [`par_chunks_mut`]: a few, so that a worker that got a
/// slower share is helped by the others.
pub const PARTS_PER_WORKER: usize = 4;

/// Parts `0..n` claimed from both ends by two workers: the first takes 0, 1, … and the second
/// n − 1, n − 2, … until they meet, each part exactly once. When both run at the same speed,
/// each ends up with the contiguous half it would have had as one part (the pixels the
/// previous layer left in its core's cache); when one is slowed down (a vCPU whose core the
/// host shares for a while), the other takes over its last parts instead of waiting for them.
pub(crate) struct TwoEnds {
    /// The unclaimed range `lo..hi`: `lo` in the low 32 bits, `hi` in the high ones.
    range: AtomicU64,
}

impl TwoEnds {
    /// Parts `0..n` (at most `u32::MAX`), none claimed yet.
    pub(crate) fn new(n: usize) -> TwoEnds {
        TwoEnds { range: AtomicU64::new(u64::from(u32::try_from(n).unwrap_or(u32::MAX)) << 32) }
    }

    /// The next part from the front (`front`) or from the back; `None` once all are claimed.
    pub(crate) fn claim(&self, front: bool) -> Option<usize> {
        let mut cur = self.range.load(Ordering::Acquire);
        loop {
            let (lo, hi) = (cur & u64::from(u32::MAX), cur >> 32);
            if lo >= hi {
                return None;
            }
            let (next, part) = if front { (cur + 1, lo) } else { (cur - (1 << 32), hi - 1) };
            match self.range.compare_exchange_weak(cur, next, Ordering::AcqRel, Ordering::Acquire) {
                Ok(_) => return usize::try_from(part).ok(),
                Err(now) => cur = now,
            }
        }
    }
}

/// A raw pointer shared by the parts of a parallel loop (or the tasks of a kernel) that each
/// write their own disjoint elements of the slice it points into.
#[derive(Clone, Copy)]
pub(crate) struct OutPtr<T>(pub *mut T);
// SAFETY: every user has its parts write pairwise-disjoint elements (distinct images, groups,
// pixel, channel or column ranges, chunks), and the slice outlives the parallel scope.
unsafe impl<T> Send for OutPtr<T> {}
// SAFETY: as above.
unsafe impl<T> Sync for OutPtr<T> {}

/// Whether spinning is on: `KESTREL_SPIN=0` turns it off (workers then sleep between parallel
/// regions, as rayon's own pools do), read once per process.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("KESTREL_SPIN").map_or(true, |v| v.trim() != "0"))
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.shared.done.store(true, Ordering::Release);
        let outer = self.outer.take();
        CURRENT.with(|c| *c.borrow_mut() = outer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn two_ends_claim_every_part_once() {
        for n in [0usize, 1, 2, 3, 7, 8, 65] {
            // One claimer alone, from either end: every part, in order.
            let e = TwoEnds::new(n);
            assert_eq!(std::iter::from_fn(|| e.claim(true)).collect::<Vec<_>>(), (0..n).collect::<Vec<_>>());
            let e = TwoEnds::new(n);
            assert_eq!(std::iter::from_fn(|| e.claim(false)).collect::<Vec<_>>(), (0..n).rev().collect::<Vec<_>>());
            // Two at once: each part exactly once, the front's ascending, the back's descending,
            // every front part before every back part.
            for _ in 0..50 {
                let e = TwoEnds::new(n);
                let (front, back) = std::thread::scope(|s| {
                    let f = s.spawn(|| std::iter::from_fn(|| e.claim(true)).collect::<Vec<_>>());
                    let b = s.spawn(|| std::iter::from_fn(|| e.claim(false)).collect::<Vec<_>>());
                    (f.join().expect("front"), b.join().expect("back"))
                });
                assert_eq!(front.len() + back.len(), n);
                assert!(front.windows(2).all(|w| w[1] == w[0] + 1) && front.first().is_none_or(|&f| f == 0));
                assert!(back.windows(2).all(|w| w[1] + 1 == w[0]) && back.first().is_none_or(|&b| b + 1 == n));
                assert!(front.last().zip(back.last()).is_none_or(|(f, b)| f + 1 == *b));
            }
        }
    }

    /// A 2-worker pool whose calling thread is worker 0, as a session builds it.
    fn in_pool(f: impl FnOnce() + Send) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).use_current_thread().build().expect("pool");
        pool.install(f);
    }

    #[test]
    fn every_part_runs_once_with_and_without_spinning_workers() {
        in_pool(|| {
            for spinning in [true, false] {
                let _awake = if spinning { Spinner::start(2) } else { None };
                assert_eq!(CURRENT.with(|c| c.borrow().is_some()), _awake.is_some());
                for parts in [0, 1, 2, 3, 17, 1000] {
                    let hits: Vec<AtomicUsize> = (0..parts).map(|_| AtomicUsize::new(0)).collect();
                    par_for(parts, |i| {
                        hits[i].fetch_add(1, Ordering::Relaxed);
                    });
                    assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1), "{parts} parts, spinning {spinning}");
                }
                // Nested loops go to rayon and still run every pair once.
                let hits: Vec<AtomicUsize> = (0..64).map(|_| AtomicUsize::new(0)).collect();
                par_for(8, |i| par_for(8, |j| _ = hits[i * 8 + j].fetch_add(1, Ordering::Relaxed)));
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
                // Chunks: every element once, the last chunk shorter.
                let mut v = vec![0u32; 1001];
                par_chunks_mut(&mut v, 7, |i, c| c.iter_mut().for_each(|x| *x += 1 + i as u32));
                assert!(v.iter().enumerate().all(|(k, &x)| x == 1 + (k / 7) as u32));
            }
        });
    }

    /// A worker off its core for over 5 % of a call of at least 1 ms found its core shared;
    /// shorter calls say nothing.
    #[test]
    fn a_shared_core_is_told_by_the_time_off_it() {
        let ms = Duration::from_millis;
        let us = Duration::from_micros;
        assert!(!shared_core(ms(17), Duration::ZERO));
        assert!(!shared_core(ms(17), us(60)), "0.4 % waiting: the cores to themselves");
        assert!(shared_core(ms(40), ms(6)), "14 % waiting: another process on the core");
        assert!(!shared_core(us(900), us(800)), "under 1 ms");
        assert!(!shared_core(ms(20), ms(1)), "exactly 5 %");
        assert!(shared_core(ms(20), ms(1) + Duration::from_nanos(1)));
        match run_delay() {
            Some(d) => println!("this thread has waited {d:?} for its core"),
            None => eprintln!("SKIP: no /proc/thread-self/schedstat here: calls always spin"),
        }
    }

    /// Two calls in a row on a shared core make the next calls skip spinning; a lone one, or
    /// two with a clean call between them, do not.
    #[test]
    fn a_worker_sharing_its_core_quiets_the_next_calls() {
        QUIET_UNTIL_MS.store(0, Ordering::Relaxed);
        SHARED_CALLS.with(|n| n.set(0));
        for shared in [true, false, true, false, false] {
            record_call(shared);
            assert!(!quiet(), "after a lone shared call");
        }
        record_call(true);
        record_call(true);
        assert!(quiet(), "after two in a row");
        assert!(QUIET_UNTIL_MS.load(Ordering::Relaxed) >= epoch_ms() + 900, "for about a second");
        in_pool(|| {
            assert!(Spinner::start(2).is_none(), "no spinning while quiet");
            QUIET_UNTIL_MS.store(0, Ordering::Relaxed);
            // (Unless a worker of a test running beside this one found its core shared since.)
            let again = Spinner::start(2);
            assert!(again.is_some() || !enabled() || quiet(), "spinning again after the quiet");
        });
    }

    #[test]
    fn a_panicking_part_is_raised_in_the_caller_and_the_slot_recovers() {
        in_pool(|| {
            let _awake = Spinner::start(2);
            let done = AtomicUsize::new(0);
            let r = catch_unwind(AssertUnwindSafe(|| {
                par_for(8, |i| {
                    if i == 5 {
                        panic!("part 5");
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                })
            }));
            let msg = r.err().and_then(|p| p.downcast_ref::<&str>().map(|s| s.to_string()));
            assert_eq!(msg.as_deref(), Some("part 5"));
            assert_eq!(done.load(Ordering::Relaxed), 7, "the other parts still ran");
            assert_eq!(CURRENT.with(|c| c.borrow().is_some()), _awake.is_some(), "the call's slot is back");
            let hits: Vec<AtomicUsize> = (0..100).map(|_| AtomicUsize::new(0)).collect();
            par_for(100, |i| _ = hits[i].fetch_add(1, Ordering::Relaxed));
            assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
        });
    }
}
