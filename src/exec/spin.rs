//! Workers kept awake through one call.
//!
//! A rayon worker that finds no work sleeps after a few dozen rounds, and waking it costs a
//! futex wake and, on a VM, an inter-processor interrupt: 40–100 µs per fork-join measured on
//! a 2-vCPU KVM guest whenever the serial gap before it exceeded ~20 µs, against 2–16 µs with
//! the worker spinning. A network runs one or two parallel regions per layer with serial work
//! between them, so sleeping workers cost milliseconds per ResNet-50 call. ONNX Runtime spins
//! its intra-op threads for the same reason.
//!
//! [`Spinner::start`] sends every other worker of the current pool a job that takes whatever
//! work appears (`rayon::yield_now`) until the call ends, when the guard drops, or until it has
//! found nothing for [`IDLE_LIMIT`], so that a long serial stretch, or a core shared with
//! another call, does not burn a core for nothing.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How long a spinning worker waits without finding work before it goes back to rayon's
/// sleep.
pub const IDLE_LIMIT: Duration = Duration::from_millis(2);

/// Keeps the current pool's other workers awake until dropped.
pub struct Spinner {
    done: Arc<AtomicBool>,
}

impl Spinner {
    /// Starts spinning the other workers of the current rayon pool, when there are any and this
    /// thread is one of its workers.
    pub fn start(threads: usize) -> Option<Spinner> {
        let caller = rayon::current_thread_index()?;
        if threads <= 1 || rayon::current_num_threads() <= 1 || !enabled() {
            return None;
        }
        let done = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&done);
        rayon::spawn_broadcast(move |ctx| {
            // The worker running the call must never spin: it would hold the call's stack
            // until the idle limit.
            if ctx.index() == caller {
                return;
            }
            let mut idle_since = Instant::now();
            while !flag.load(Ordering::Acquire) {
                match rayon::yield_now() {
                    Some(rayon::Yield::Executed) => idle_since = Instant::now(),
                    _ if idle_since.elapsed() > IDLE_LIMIT => return,
                    _ => std::hint::spin_loop(),
                }
            }
        });
        Some(Spinner { done })
    }
}

/// Whether spinning is on: `KESTREL_SPIN=0` turns it off (workers then sleep between parallel
/// regions, as rayon's own pools do), read once per process.
pub fn enabled() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var("KESTREL_SPIN").map_or(true, |v| v.trim() != "0"))
}

impl Drop for Spinner {
    fn drop(&mut self) {
        self.done.store(true, Ordering::Release);
    }
}
