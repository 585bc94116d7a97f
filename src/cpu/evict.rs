//! Dropping the cache lines of a region that both workers read, before one of them rewrites it.
//!
//! A store to a line of which the other worker's core holds a shared copy (it read the line)
//! waits for that copy to be invalidated, and those waits hardly overlap. `examples/core_link`
//! on the Zen 4 KVM guests of BENCHMARKS.md (2026-12-05): overwriting 512 KiB that the other
//! core had read ran at 2.2–2.3 GB/s with the two vCPUs on different CCDs and 8.3–8.7 GB/s on
//! one L3, against 25–27 and 52 GB/s for lines the other core had written; `prefetchw` ahead
//! of the stores changed nothing (a scratch probe). With the lines evicted first
//! (`clflushopt`, which the CPU pipelines) and then written, fetched from memory: 15–16.5 GB/s
//! either way. [`evict`] is that flush, for regions the workers share and one of them
//! rewrites on every call (the Winograd transform's shared `V`, `cpu::wino`, but not on an
//! Intel mesh, `cpu::placement::Fabric`, where it measured slower), and, while the
//! two workers sit on cores that share no cache (`cpu::placement`), for the output lines a
//! conv worker is about to write (`cpu::sconv`, `cpu::qconv`): which of those lines the other
//! core holds depends on which layers used the buffer before, and on cores that share an L3
//! the flush costs more than it saves. A flush never changes memory (dirty lines are written
//! back first), so it only ever changes speed; where the CPU lacks `clflushopt` it does
//! nothing.

/// Whether the CPU has `clflushopt`: 0 not known yet, 1 no, 2 yes.
#[cfg(target_arch = "x86_64")]
static CLFLUSHOPT: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

#[cfg(target_arch = "x86_64")]
fn has_clflushopt() -> bool {
    use std::sync::atomic::Ordering;
    match CLFLUSHOPT.load(Ordering::Relaxed) {
        0 => {
            // CPUID leaf 7 exists on every x86-64 CPU with clflushopt; EBX bit 23 announces it.
            let max = super::detect::cpuid(0, 0).eax;
            let yes = max >= 7 && super::detect::cpuid(7, 0).ebx & (1 << 23) != 0;
            CLFLUSHOPT.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
        v => v == 2,
    }
}

/// Writes back and drops from every cache the lines that hold `data`, so that the next writer
/// fetches them from memory instead of invalidating other cores' copies one line at a time.
pub fn evict<T>(data: &[T]) {
    // An empty slice may point anywhere (a dangling, well-aligned address): nothing to drop.
    #[cfg(target_arch = "x86_64")]
    if !data.is_empty() && has_clflushopt() {
        let start = data.as_ptr() as usize & !63;
        let end = data.as_ptr() as usize + std::mem::size_of_val(data);
        for line in (start..end).step_by(64) {
            // SAFETY: each line from `start` holds at least one byte of `data`, a live,
            // non-empty slice, so it is mapped; `clflushopt` writes it back if dirty and
            // invalidates it, leaving memory unchanged. The CPU has the instruction (CPUID).
            unsafe { std::arch::asm!("clflushopt [{0}]", in(reg) line as *const u8, options(nostack, preserves_flags)) };
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = data;
}

/// [`evict`] of `rows` runs of `len` elements, `stride` elements apart, the first at `first`:
/// a part's pixels in each of its output rows.
///
/// # Safety
/// Every run `first + r·stride .. + len` (`r < rows`) lies inside one live allocation.
pub unsafe fn evict_rows<T>(first: *const T, rows: usize, stride: usize, len: usize) {
    for r in 0..rows {
        // SAFETY: run r lies inside a live allocation (the caller's contract); evicting reads
        // no element and changes no memory.
        evict(unsafe { std::slice::from_raw_parts(first.add(r * stride), len) });
    }
}

#[cfg(test)]
mod tests {
    use super::evict;

    /// Evicting changes no value, whatever the alignment and length.
    #[test]
    fn eviction_keeps_every_value() {
        let data: Vec<f32> = (0..1000).map(|i| i as f32 * 0.5 - 7.0).collect();
        for (a, b) in [(0, 1000), (1, 2), (3, 17), (15, 65), (999, 1000), (500, 500)] {
            evict(&data[a..b]);
            assert!(data.iter().enumerate().all(|(i, &v)| v == i as f32 * 0.5 - 7.0));
        }
        evict::<f32>(&[]);
    }
}
