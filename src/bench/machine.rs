//! The machine fingerprint every report carries, and process memory from `/proc`.

use serde::Serialize;

/// Where and with what a measurement was taken.
#[derive(Clone, Debug, Serialize)]
pub struct Fingerprint {
    pub cpu: String,
    pub logical_cpus: usize,
    /// The INT8 kernel path kestrel selected (`KESTREL_ISA` or the best the CPU has).
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
            isa: crate::cpu::detect::selected().map_or_else(|e| format!("invalid ({e})"), |i| i.name().to_string()),
            isa_supported: crate::cpu::detect::supported().into_iter().map(|i| i.name().to_string()).collect(),
            tune: crate::cpu::detect::tune().map_or_else(|e| format!("invalid ({e})"), |t| t.name().to_string()),
            threads,
            kestrel_version: env!("CARGO_PKG_VERSION").to_string(),
            kestrel_commit: option_env!("KESTREL_COMMIT").unwrap_or("unknown").to_string(),
            ort_version,
            os,
            date_utc: now_utc(),
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
    #[test]
    fn civil_dates() {
        assert_eq!(super::civil(0), (1970, 1, 1));
        assert_eq!(super::civil(20_413), (2025, 11, 21));
        assert_eq!(super::civil(11_016), (2000, 2, 29));
    }
}
