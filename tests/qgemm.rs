//! INT8 GEMM kernels: every ISA this CPU supports matches the scalar twin and the plain
//! reference exactly (`assert_eq!`), over tail sizes, extreme values and zero-point-shifted
//! data, then proptest. Prints which ISA ran; the VNNI path is never skipped on a VNNI host.

use kestrel::cpu::detect::{self, Isa};
use kestrel::cpu::qgemm::{self, pack_rows, panel_len, qgemm_reference, PackedWeights, BLOCK};
use kestrel::rng::Rng;
use proptest::prelude::*;

fn isas() -> Vec<Isa> {
    let s = detect::supported();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vnni") {
        assert!(s.contains(&Isa::Avx512Vnni), "VNNI host but the VNNI path is not offered");
    }
    s
}

/// Runs `isa` on unpacked `a: [k][n]`, `w: [m][k]`, with garbage prefill of the output.
fn run(isa: Isa, a: &[u8], w: &[i8], m: usize, k: usize, n: usize, fill: u8) -> Vec<i32> {
    let kernel = qgemm::kernel(isa).unwrap();
    let pw = PackedWeights::new(w, m, k, kernel.packing()).unwrap();
    let nb = n.div_ceil(BLOCK);
    let mut panel = vec![0u8; panel_len(pw.kpad, nb)];
    pack_rows(a, k, n, n, pw.kpad, fill, &mut panel);
    let rs = nb * BLOCK + 3;
    let mut out = vec![i32::MIN; m * rs];
    kernel.run(&pw, &panel, nb, &mut out, rs);
    let mut got = vec![0; m * n];
    for c in 0..m {
        got[c * n..(c + 1) * n].copy_from_slice(&out[c * rs..c * rs + n]);
    }
    got
}

fn check(a: &[u8], w: &[i8], m: usize, k: usize, n: usize, what: &str) {
    let want = qgemm_reference(a, w, m, k, n);
    for isa in isas() {
        for fill in [0u8, 255] {
            let got = run(isa, a, w, m, k, n, fill);
            assert_eq!(got, want, "{} {what} m{m} k{k} n{n} fill{fill}", isa.name());
        }
    }
}

fn data(m: usize, k: usize, n: usize, zp: u8, seed: u64) -> (Vec<u8>, Vec<i8>) {
    let mut r = Rng::new(seed);
    // Activations cluster around the zero point, as quantized post-ReLU data does.
    let a = (0..k * n).map(|_| (i32::from(zp) + (r.normal() * 40.0) as i32).clamp(0, 255) as u8).collect();
    let w = (0..m * k).map(|_| (r.below(255) as i32 - 127) as i8).collect();
    (a, w)
}

#[test]
fn dispatch_runs_every_supported_isa() {
    for isa in isas() {
        let (a, w) = data(9, 33, 17, 128, 1);
        assert_eq!(run(isa, &a, &w, 9, 33, 17, 0), qgemm_reference(&a, &w, 9, 33, 17));
        println!("qgemm dispatch: ran {} (selected by default: {})", isa.name(), detect::selected().unwrap().name());
    }
}

#[test]
fn tails_and_zero_points() {
    let mut seed = 0;
    for &m in &[1usize, 3, 7, 8, 9, 17, 63, 65] {
        for &k in &[1usize, 2, 3, 4, 5, 7, 15, 17, 63, 65] {
            for &n in &[1usize, 15, 16, 17, 33, 65] {
                for &zp in &[0u8, 1, 127, 128, 255] {
                    seed += 1;
                    if seed % 3 != 0 && !(m == 65 || k == 65) {
                        continue; // a deterministic third of the grid, plus every 65 edge
                    }
                    let (a, w) = data(m, k, n, zp, seed);
                    check(&a, &w, m, k, n, &format!("zp{zp}"));
                }
            }
        }
    }
}

#[test]
fn extremes_never_saturate() {
    // 255 × −128 and 255 × 127 everywhere: vpmaddubsw would clip these pair sums in i16.
    for &(av, wv) in &[(255u8, -128i8), (255, 127), (0, -128), (128, -1)] {
        for &k in &[4usize, 64, 1000, 4608] {
            let (m, n) = (9, 17);
            let a = vec![av; k * n];
            let w = vec![wv; m * k];
            check(&a, &w, m, k, n, &format!("a={av} w={wv}"));
        }
    }
}

#[test]
fn refuses_k_that_could_overflow() {
    for packing in [qgemm::Packing::S8, qgemm::Packing::S16] {
        assert!(PackedWeights::new(&vec![1i8; 70_000], 1, 70_000, packing).is_err());
    }
}

/// Weights are packed for the kernel that runs them: handing a kernel the other layout is a
/// bug the kernel refuses loudly, never a silent fallback.
#[test]
fn weights_packed_for_another_kernel_are_refused() {
    let (a, w) = data(8, 16, 16, 3, 9);
    let mut panel = vec![0u8; panel_len(16, 1)];
    pack_rows(&a, 16, 16, 16, 16, 0, &mut panel);
    for isa in isas() {
        let kernel = qgemm::kernel(isa).unwrap();
        let other = match kernel.packing() {
            qgemm::Packing::S8 => qgemm::Packing::S16,
            qgemm::Packing::S16 => qgemm::Packing::S8,
        };
        let pw = PackedWeights::new(&w, 8, 16, other).unwrap();
        let mut out = vec![0i32; 8 * 16];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kernel.run(&pw, &panel, 1, &mut out, 16)));
        assert!(r.is_err(), "{} ran weights packed as {other:?}", isa.name());
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn qgemm_proptest(m in 1usize..40, k in 1usize..80, n in 1usize..70, zp in any::<u8>(), seed in any::<u64>()) {
        let (a, w) = data(m, k, n, zp, seed);
        check(&a, &w, m, k, n, "proptest");
    }
}
