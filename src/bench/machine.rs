//! The machine fingerprint every report carries, and process memory from `/proc`.

use serde::Serialize;

/// Where and with what a measurement was taken.
#[derive(Clone, Debug, Serialize)]
pub struct Fingerprint {
    pub cpu: String,
    pub logical_cpus: usize,
    /// The INT8 kernel path kestrel selected (`KESTREL_ISA` or the best the CPU has), named
    /// `avx512vnni + amx-int8` where its GEMM runs on AMX tiles.
    pub isa: String,
    /// Every INT8 path the CPU supports.
    pub isa_supported: Vec<String>,
    /// The CPU family whose plan rules were followed (`KESTREL_TUNE` or CPUID).
    pub tune: String,
    pub threads: usize,
    pub kestrel_version: String,
    pub kestrel_commit: String,
    pub ort_version: Option<String>,
    pub os: String,
    pub date_utc: String,
    /// The median round trip, in ns, of a cache line handed between two of this process's
    /// threads when the report was made ([`cross_core_round_trip_ns`]); with one thread, or
    /// where no second core answered, none.
    pub cross_core_round_trip_ns: Option<f64>,
}

pub use crate::cpu::placement::FAR_ROUND_TRIP_NS;

/// The median round trip, in ns, of one cache line handed back and forth between this thread
/// and a second one (10 batches of 200 hand-overs), as a kernel's two workers would see it:
/// two vCPUs of a VM may share an L3 or not, minute by minute, and kestrel's two-thread
/// runs are up to a quarter slower when they do not (README, "Sessions and threads";
/// `examples/core_link` pins the two threads and measures more). `None` when the second
/// thread cannot be started or does not answer in time (one core, or a busy machine).
pub fn cross_core_round_trip_ns() -> Option<f64> {
    cross_core_round_trip_ns_with(200, 10, || {})
}

/// [`cross_core_round_trip_ns`] with `batches` batches of `per_batch` hand-overs (the median
/// of the batches' means), the second thread running `on_other` first (`core_link` pins it
/// there). Gives up, `None`, after 20 ms and 1 µs per hand-over (three far round trips).
pub fn cross_core_round_trip_ns_with(per_batch: u64, batches: usize, on_other: impl FnOnce() + Send + 'static) -> Option<f64> {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};
    let per_batch = per_batch.max(1);
    let batches = batches.max(1);
    let flag = Arc::new(AtomicU64::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let (f2, s2) = (Arc::clone(&flag), Arc::clone(&stop));
    let other = std::thread::Builder::new()
        .name("kestrel-core-link".into())
        .spawn(move || {
            on_other();
            crate::cpu::placement::answer(&f2, u64::MAX, || s2.load(Ordering::Relaxed));
        })
        .ok()?;
    let deadline = Instant::now() + Duration::from_millis(20) + Duration::from_micros(per_batch * batches as u64);
    let mut trips = Vec::with_capacity(batches);
    for batch in 0..batches as u64 {
        let t = Instant::now();
        if !crate::cpu::placement::lead(&flag, batch * per_batch..(batch + 1) * per_batch, deadline) {
            break;
        }
        trips.push(t.elapsed().as_secs_f64() * 1e9 / per_batch as f64);
    }
    stop.store(true, Ordering::Relaxed);
    let _ = other.join();
    if trips.len() < batches {
        return None;
    }
    trips.sort_by(f64::total_cmp);
    Some(trips[batches / 2])
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| t.lines().find(|l| l.starts_with("model name")).and_then(|l| l.split_once(':')).map(|(_, v)| v.trim().to_string()))
        .unwrap_or_else(|| std::env::consts::ARCH.to_string())
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian (Howard Hinnant's algorithm).
fn civil(days: i64) -> (i64, u32, u32) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// The current UTC time as `YYYY-MM-DD HH:MM`.
pub fn now_utc() -> String {
    let secs = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs() as i64);
    let (y, m, d) = civil(secs.div_euclid(86_400));
    let s = secs.rem_euclid(86_400);
    format!("{y:04}-{m:02}-{d:02} {:02}:{:02} UTC", s / 3600, (s % 3600) / 60)
}

impl Fingerprint {
    /// This machine, with `threads` worker threads.
    pub fn collect(threads: usize) -> Fingerprint {
        #[cfg(feature = "ort")]
        let ort_version = crate::ort_ref::version().ok();
        #[cfg(not(feature = "ort"))]
        let ort_version = None;
        let os = std::fs::read_to_string("/proc/sys/kernel/osrelease").map_or_else(|_| std::env::consts::OS.to_string(), |r| format!("linux {}", r.trim()));
        Fingerprint {
            cpu: cpu_model(),
            logical_cpus: std::thread::available_parallelism().map_or(1, |n| n.get()),
            isa: crate::cpu::kernels::Kernels::select().map_or_else(|e| format!("invalid ({e})"), |k| k.qgemm.name().to_string()),
            isa_supported: crate::cpu::detect::supported().into_iter().map(|i| i.name().to_string()).collect(),
            tune: crate::cpu::detect::tune().map_or_else(|e| format!("invalid ({e})"), |t| t.name().to_string()),
            threads,
            kestrel_version: env!("CARGO_PKG_VERSION").to_string(),
            kestrel_commit: option_env!("KESTREL_COMMIT").unwrap_or("unknown").to_string(),
            ort_version,
            os,
            date_utc: now_utc(),
            cross_core_round_trip_ns: if threads > 1 { cross_core_round_trip_ns() } else { None },
        }
    }
}

fn status_kib(key: &str) -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident set size of this process in bytes (`VmHWM`), if the OS reports it.
pub fn peak_rss_bytes() -> Option<u64> {
    status_kib("VmHWM:").map(|k| k * 1024)
}

/// Current resident set size in bytes (`VmRSS`).
pub fn rss_bytes() -> Option<u64> {
    status_kib("VmRSS:").map(|k| k * 1024)
}

#[cfg(test)]
mod tests {
    /// The probe ends (answered or timed out) and, when answered, gives a plausible time.
    #[test]
    fn cross_core_round_trip_ends() {
        let t = std::time::Instant::now();
        let r = super::cross_core_round_trip_ns();
        println!("cross-core round trip: {r:?} ns");
        assert!(r.is_none_or(|ns| ns.is_finite() && ns > 0.0 && ns < 20e6));
        assert!(t.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_413), (2025, 11, 21));
        assert_eq!(super::civil(11_016), (2000, 2, 29));
    }
}
