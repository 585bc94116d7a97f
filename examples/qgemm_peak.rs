//! INT8 peak and kernel throughput on this machine:
//! `cargo run --release --example qgemm_peak`.
//!
//! The peaks are measured with independent accumulators in registers (no memory traffic), one
//! thread: 16 `vpdpbusd zmm` for VNNI, 6 `vpmaddubsw`+`vpmaddwd`+`vpaddd ymm` chains for
//! AVX2's byte kernel: the core's sustained issue rate of each. Kernels run 8-bit weights
//! and 7-bit ones (`[-64, 64]`), which AVX2 runs on its byte kernel.
use std::time::Instant;

use kestrel::cpu::{detect, qgemm};

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx512vnni")]
unsafe fn vnni_peak(iters: usize) -> i32 {
    use std::arch::x86_64::*;
    let a = _mm512_set1_epi8(3);
    let b = _mm512_set1_epi8(-2);
    let mut acc = [_mm512_setzero_si512(); 16];
    for _ in 0..iters {
        for r in acc.iter_mut() {
            *r = _mm512_dpbusd_epi32(*r, a, b);
        }
    }
    let mut s = _mm512_setzero_si512();
    for r in acc {
        s = _mm512_add_epi32(s, r);
    }
    _mm512_reduce_add_epi32(s)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn maddubs_peak(iters: usize) -> i32 {
    use std::arch::x86_64::*;
    let a = _mm256_set1_epi8(3);
    // One weight vector per chain: the same product in every chain would be computed once.
    let b: [__m256i; 6] = std::array::from_fn(|i| _mm256_set1_epi8(-2 - i as i8));
    let ones = _mm256_set1_epi16(1);
    let mut acc = [_mm256_setzero_si256(); 6];
    for _ in 0..iters {
        // Opaque each iteration, so the products cannot be hoisted out of the loop.
        let a = std::hint::black_box(a);
        for (r, b) in acc.iter_mut().zip(&b) {
            *r = _mm256_add_epi32(*r, _mm256_madd_epi16(_mm256_maddubs_epi16(a, *b), ones));
        }
    }
    let mut s = _mm256_setzero_si256();
    for r in acc {
        s = _mm256_add_epi32(s, r);
    }
    let mut lanes = [0i32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr() as *mut _, s);
    lanes.iter().sum()
}

fn main() {
    #[cfg(target_arch = "x86_64")]
    if detect::Avx2::new().is_some() {
        let iters = 20_000_000;
        let t = Instant::now();
        // SAFETY: the CPU has AVX2 (checked just above).
        let r = unsafe { maddubs_peak(iters) };
        let s = t.elapsed().as_secs_f64();
        println!("AVX2 vpmaddubsw peak, 1 thread: {:.1} GMAC/s (checksum {r})", (iters * 6 * 32) as f64 / s / 1e9);
    }
    #[cfg(target_arch = "x86_64")]
    if detect::Avx512Vnni::new().is_some() {
        let iters = 20_000_000;
        let t = Instant::now();
        // SAFETY: the CPU has AVX-512 VNNI (checked just above).
        let r = unsafe { vnni_peak(iters) };
        let s = t.elapsed().as_secs_f64();
        println!("VNNI peak, 1 thread: {:.1} GMAC/s ({:.2} G vpdpbusd/s, checksum {r})", (iters * 16 * 64) as f64 / s / 1e9, (iters * 16) as f64 / s / 1e9);
    }
    for &(m, k, nb) in &[(256usize, 2304usize, 5usize), (64, 576, 21), (512, 4608, 2), (2048, 512, 16)] {
        let w: Vec<i8> = (0..m * k).map(|i| ((i * 7919) % 255) as i8).collect();
        let panel: Vec<u8> = (0..qgemm::panel_len(k.div_ceil(64) * 64, nb)).map(|i| (i * 31 % 251) as u8).collect();
        let rs = nb * 16;
        let mut out = vec![0i32; m.next_multiple_of(qgemm::MR) * rs];
        let w7: Vec<i8> = w.iter().map(|&v| (v / 2).max(-64)).collect();
        for kern in detect::supported().into_iter().flat_map(qgemm::variants) {
            let isa = kern.isa();
            for (bits, wv) in [("8-bit", &w), ("7-bit", &w7)] {
                let packing = kern.packing_for(wv, m, k);
                let pw = qgemm::PackedWeights::new(wv, m, k, packing).unwrap();
                let iters = if isa == detect::Isa::Scalar { 2 } else { 200 };
                kern.run(&pw, &panel, nb, &mut out, rs);
                let t = Instant::now();
                for _ in 0..iters {
                    kern.run(&pw, &panel, nb, &mut out, rs);
                }
                let s = t.elapsed().as_secs_f64() / iters as f64;
                println!("m{m} k{k} n{}: {bits} {:<24} {:7.1} GMAC/s", nb * 16, kern.path(packing), (m * k * nb * 16) as f64 / s / 1e9);
            }
        }
    }
}
