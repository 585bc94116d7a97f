//! INT8 GEMM kernels: every ISA this CPU supports matches the scalar twin and the plain
//! reference exactly (`assert_eq!`), over tail sizes, extreme values and zero-point-shifted
//! data, then proptest, with 8-bit and 7-bit weights (AVX2 runs the latter on its
//! `vpmaddubsw` kernel, the former mostly on its widening one). Prints which paths ran; the
//! VNNI path is never skipped on a VNNI host.

use kestrel::cpu::detect::{self, Isa};
use kestrel::cpu::qgemm::{self, pack_rows, panel_len, qgemm_reference, Kernel, PackedWeights, Packing, BLOCK};
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

/// Every kernel of every supported ISA: on a VNNI host the `vpdpbusd` kernel and, where the
/// CPU has AMX-INT8, the AMX tile kernel too (sessions take the latter by default).
fn kernels() -> Vec<Kernel> {
    let ks: Vec<Kernel> = isas().into_iter().flat_map(qgemm::variants).collect();
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx512vnni") {
        assert!(ks.iter().any(|k| matches!(k, Kernel::Avx512Vnni(_))), "VNNI host but the VNNI kernel is not offered");
    }
    ks
}

/// Runs `kernel` on unpacked `a: [k][n]`, `w: [m][k]`, with garbage prefill of the output.
fn run(kernel: Kernel, a: &[u8], w: &[i8], m: usize, k: usize, n: usize, fill: u8) -> Vec<i32> {
    let pw = PackedWeights::new(w, m, k, kernel.packing_for(w, m, k)).unwrap();
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
    for kernel in kernels() {
        for fill in [0u8, 255] {
            let got = run(kernel, a, w, m, k, n, fill);
            assert_eq!(got, want, "{} {what} m{m} k{k} n{n} fill{fill}", kernel.path(kernel.packing_for(w, m, k)));
        }
    }
}

fn data(m: usize, k: usize, n: usize, zp: u8, seed: u64) -> (Vec<u8>, Vec<i8>) {
    data_bits(m, k, n, zp, seed, 8)
}

/// Weights uniform in `[-127, 127]` (8 bits) or `[-64, 64]` (7 bits).
fn data_bits(m: usize, k: usize, n: usize, zp: u8, seed: u64, bits: u32) -> (Vec<u8>, Vec<i8>) {
    let mut r = Rng::new(seed);
    // Activations cluster around the zero point, as quantized post-ReLU data does.
    let a = (0..k * n).map(|_| (i32::from(zp) + (r.normal() * 40.0) as i32).clamp(0, 255) as u8).collect();
    let q = if bits == 7 { 64 } else { 127 };
    let w = (0..m * k).map(|_| (r.below(2 * q + 1) as i32 - q as i32) as i8).collect();
    (a, w)
}

/// The path each supported kernel takes for `w`.
fn paths(w: &[i8], m: usize, k: usize) -> Vec<&'static str> {
    kernels().into_iter().map(|kern| kern.path(kern.packing_for(w, m, k))).collect()
}

#[test]
fn dispatch_runs_every_supported_isa() {
    for kernel in kernels() {
        let (a, w) = data(9, 33, 17, 128, 1);
        assert_eq!(run(kernel, &a, &w, 9, 33, 17, 0), qgemm_reference(&a, &w, 9, 33, 17));
        println!("qgemm dispatch: ran {} on the {} path (selected by default: {})", kernel.path(kernel.packing_for(&w, 9, 33)), kernel.isa().name(), detect::selected().unwrap().name());
    }
}

/// `w: [m][k]` packed for `kernel`, and `a: [k][n]` packed into a panel (padding k filled with
/// 9), with its block count.
fn packed(kernel: Kernel, a: &[u8], w: &[i8], m: usize, k: usize, n: usize) -> (PackedWeights, Vec<u8>, usize) {
    let pw = PackedWeights::new(w, m, k, kernel.packing_for(w, m, k)).unwrap();
    let nb = n.div_ceil(BLOCK);
    let mut panel = vec![0u8; panel_len(pw.kpad, nb)];
    pack_rows(a, k, n, n, pw.kpad, 9, &mut panel);
    (pw, panel, nb)
}

/// `run_rows` over row ranges that start at any multiple of `MR` (the INT8 conv's channel
/// split and its `ROWS_PER_CALL` chunks), ending anywhere: rows outside the range are never
/// written, the others equal the reference.
#[test]
fn row_ranges_from_any_multiple_of_mr() {
    let (m, k, n) = (71, 130, 49);
    let (a, w) = data(m, k, n, 3, 77);
    let want = qgemm_reference(&a, &w, m, k, n);
    for kernel in kernels() {
        let (pw, panel, nb) = packed(kernel, &a, &w, m, k, n);
        for start in (0..m).step_by(qgemm::MR) {
            for end in [start + 1, (start + 17).min(m), (start + 40).min(m), m] {
                let rs = nb * BLOCK + 5;
                let mut out = vec![i32::MIN; (end - start) * rs + 7];
                kernel.run_rows(&pw, start..end, &panel, nb, &mut out, rs);
                for c in start..end {
                    assert_eq!(&out[(c - start) * rs..(c - start) * rs + n], &want[c * n..(c + 1) * n], "{} rows {start}..{end} row {c}", kernel.path(pw.packing()));
                    assert!(out[(c - start) * rs + nb * BLOCK..(c - start + 1) * rs.min(out.len())].iter().all(|&v| v == i32::MIN), "wrote past the row");
                }
                assert!(out[(end - start) * rs..].iter().all(|&v| v == i32::MIN), "wrote past the range");
            }
        }
    }
}

/// `run_rows_tiles` (AMX: sums stored tile by tile) puts every sum of every row range where
/// `qgemm::tiles_index` says, over odd and even block counts (a last block without a pair)
/// and ranges ending inside a 16-row group, and writes nothing past `tiles_len`. Prints a
/// SKIP line on CPUs without AMX-INT8, whose kernels store rows only.
#[test]
fn tile_stores_match_the_reference() {
    let tiled: Vec<Kernel> = kernels().into_iter().filter(|k| k.stores_tiles()).collect();
    if tiled.is_empty() {
        println!("SKIP tile stores: no kernel here stores AMX tiles");
        return;
    }
    for kernel in tiled {
        for (m, k, n) in [(71usize, 130usize, 49usize), (64, 64, 16), (40, 147, 545), (96, 576, 80)] {
            let (a, w) = data(m, k, n, 5, (m * k + n) as u64);
            let want = qgemm_reference(&a, &w, m, k, n);
            let (pw, panel, nb) = packed(kernel, &a, &w, m, k, n);
            for start in (0..m).step_by(qgemm::MR) {
                for end in [start + 1, (start + 17).min(m), (start + 40).min(m), m] {
                    let len = qgemm::tiles_len(end - start, nb);
                    let mut out = vec![i32::MIN; len + 300];
                    kernel.run_rows_tiles(&pw, start..end, &panel, nb, &mut out);
                    for c in start..end {
                        for p in 0..n {
                            assert_eq!(out[qgemm::tiles_index(nb, c - start, p)], want[c * n + p], "{} m{m} k{k} n{n} rows {start}..{end} row {c} pixel {p}", kernel.path(pw.packing()));
                        }
                    }
                    assert!(out[len..].iter().all(|&v| v == i32::MIN), "wrote past the tiles");
                }
            }
        }
        println!("tile stores: {} matched", kernel.path(Packing::S8Amx));
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
                    for bits in [8, 7] {
                        let (a, w) = data_bits(m, k, n, zp, seed, bits);
                        check(&a, &w, m, k, n, &format!("zp{zp} {bits}-bit"));
                    }
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
    for packing in [Packing::S8, Packing::S8Paired, Packing::S16, Packing::S8Amx] {
        assert!(PackedWeights::new(&vec![1i8; 70_000], 1, 70_000, packing).is_err());
    }
}

/// Packed weights start on a 64-byte cache line at every packing and size, clones too: AMX
/// loads each 64-byte row of a weight tile, and a row across two lines cost 1.10–1.25× per
/// conv (BENCHMARKS.md, "twenty-fourth session").
#[test]
fn packed_weights_start_on_a_cache_line() {
    for packing in [Packing::S8, Packing::S8Paired, Packing::S16, Packing::S8Amx] {
        for (m, k) in [(1, 1), (3, 7), (17, 63), (64, 576), (65, 147)] {
            let w: Vec<i8> = (0..m * k).map(|i| (i % 61) as i8 - 30).collect();
            let pw = PackedWeights::new(&w, m, k, packing).unwrap();
            let at = pw.s8().map(|d| d.as_ptr() as usize).or(pw.s16().map(|d| d.as_ptr() as usize)).unwrap();
            assert_eq!(at % 64, 0, "{packing:?} {m}x{k}");
            let c = pw.clone();
            let at = c.s8().map(|d| d.as_ptr() as usize).or(c.s16().map(|d| d.as_ptr() as usize)).unwrap();
            assert_eq!(at % 64, 0, "clone of {packing:?} {m}x{k}");
        }
    }
}

/// Weights are packed for the kernel that runs them: handing a kernel a layout it does not
/// read is a bug the kernel refuses loudly, never a silent fallback.
#[test]
fn weights_packed_for_another_kernel_are_refused() {
    let (a, w) = data(8, 16, 16, 3, 9);
    let mut panel = vec![0u8; panel_len(16, 1)];
    pack_rows(&a, 16, 16, 16, 16, 0, &mut panel);
    for kernel in kernels() {
        let other = [Packing::S8, Packing::S8Paired, Packing::S16, Packing::S8Amx].into_iter().find(|p| !kernel.reads(*p)).unwrap();
        let w7: Vec<i8> = w.iter().map(|&v| v / 2).collect();
        let pw = PackedWeights::new(&w7, 8, 16, other).unwrap();
        let mut out = vec![0i32; 8 * 16];
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| kernel.run(&pw, &panel, 1, &mut out, 16)));
        assert!(r.is_err(), "{} ran weights packed as {other:?}", kernel.path(other));
    }
}

/// Same-signed pairs at `|w1| + |w2| = 128` with activations of 255 reach 32 640, the most
/// an i16 pair sum may hold here: the byte kernel takes them and stays exact. One more in
/// any pair and the layer must take the widening kernel, exactly, and packing it for the
/// byte kernel is refused.
#[test]
fn saturation_proof_choice_of_the_avx2_kernel() {
    let (m, k, n) = (9, 66, 33);
    let edge: [(i8, i8); 8] = [(64, 64), (-64, -64), (127, 1), (1, 127), (-128, 0), (0, -128), (-127, -1), (127, -128)];
    let fit: Vec<i8> = (0..m * k / 2).flat_map(|i| { let (x, y) = edge[i % edge.len()]; [x, y] }).collect();
    for av in [255u8, 254, 0] {
        let a = vec![av; k * n];
        check(&a, &fit, m, k, n, &format!("boundary pairs, a={av}"));
    }
    assert!(qgemm::pairs_fit(&fit, m, k));
    for bad in [(127i8, 2i8), (-128, -1), (100, 29), (-65, -64), (65, 64)] {
        for at in [0, 31, m * k / 2 - 1] {
            let mut w = fit.clone();
            (w[2 * at], w[2 * at + 1]) = bad;
            assert!(!qgemm::pairs_fit(&w, m, k), "{bad:?} at pair {at}");
            assert!(PackedWeights::new(&w, m, k, Packing::S8Paired).is_err());
            let a = vec![255u8; k * n];
            check(&a, &w, m, k, n, &format!("saturating pair {bad:?} at {at}"));
            if let Some(isa) = isas().into_iter().find(|i| *i == Isa::Avx2) {
                let kern = qgemm::kernel(isa).unwrap();
                assert_eq!(kern.packing_for(&w, m, k), Packing::S16);
                assert_eq!(kern.packing_for(&fit, m, k), Packing::S8Paired);
            }
        }
    }
    // An odd K pairs its last weight with the zero padding.
    let odd: Vec<i8> = vec![-128; 3 * 5];
    assert!(!qgemm::pairs_fit(&odd, 3, 5));
    assert!(qgemm::pairs_fit(&[64, 64, -128], 1, 3));
    println!("qgemm paths for 7-bit weights: {:?}; for 8-bit: {:?}", paths(&fit, m, k), paths(&data(m, k, n, 0, 1).1, m, k));
}

/// The implicit GEMM (`run_rows_taps`): weights packed in the quad-tap order
/// (`PackedWeights::quad_taps`), activations read in place at per-4-k-group offsets, against
/// the plain sum over the original `[m][cin·taps]` weights, on the scalar twin and on every
/// kernel with that form (VNNI), over channel tails (quads padded with zero weights), tap
/// counts, row tails, row ranges from each multiple of 8, and odd block counts.
#[test]
fn implicit_gemm_matches_the_plain_sum() {
    let mut ran = vec!["scalar"];
    let mut seed = 7;
    for &cin in &[1usize, 3, 4, 5, 17, 64, 65] {
        for &taps in &[1usize, 9] {
            for &(m, nblocks) in &[(1usize, 1usize), (7, 2), (9, 3), (40, 7)] {
                seed += 1;
                let mut r = Rng::new(seed);
                let quads = cin.div_ceil(4);
                let npix = nblocks * BLOCK;
                // Offsets spread over a buffer (unaligned, overlapping as taps' runs do).
                let koff: Vec<usize> = (0..quads * taps).map(|_| r.below(300)).collect();
                let src: Vec<u8> = (0..300 + 4 * npix).map(|_| r.below(256) as u8).collect();
                let w: Vec<i8> = (0..m * cin * taps).map(|_| (r.below(255) as i32 - 127) as i8).collect();
                let mut want = vec![0i32; m * npix];
                for c in 0..m {
                    for p in 0..npix {
                        want[c * npix + p] = (0..cin)
                            .flat_map(|ci| (0..taps).map(move |t| (ci, t)))
                            .map(|(ci, t)| i32::from(w[c * cin * taps + ci * taps + t]) * i32::from(src[koff[(ci / 4) * taps + t] + 4 * p + ci % 4]))
                            .sum();
                    }
                }
                let mut ks = vec![Kernel::Scalar];
                ks.extend(kernels().into_iter().filter(|k| matches!(k, Kernel::Avx512Vnni(_))));
                for kernel in ks {
                    let pw = PackedWeights::quad_taps(&w, m, cin, taps, kernel.packing_for(&w, m, cin * taps)).unwrap();
                    assert_eq!((pw.taps, pw.kpad), (taps, quads * 4 * taps));
                    for start in (0..m).step_by(8) {
                        let rs = npix + 5;
                        let mut out = vec![i32::MIN; (m - start) * rs];
                        kernel.run_rows_taps(&pw, start..m, &src, &koff, nblocks, &mut out, rs);
                        for c in start..m {
                            assert_eq!(&out[(c - start) * rs..(c - start) * rs + npix], &want[c * npix..(c + 1) * npix], "{} cin{cin} taps{taps} m{m} blocks{nblocks} rows from {start}, row {c}", kernel.name());
                        }
                    }
                    if !ran.contains(&kernel.name()) {
                        ran.push(kernel.name());
                    }
                }
            }
        }
    }
    println!("implicit GEMM kernels run: {ran:?}");
}

/// AMX's implicit GEMM (`run_rows_taps`, `run_rows_taps_tiles`): weights of 64 and 128
/// channels packed tap by tap (`qgemm::quad_group`), each K step's 16 quads read at one
/// stride from offsets as the quad planes give them (each tap somewhere in the buffer, a
/// quad a plane after the last), against the plain sum, over 1 and 9 taps, row tails, odd
/// block counts and row ranges from each multiple of 8; offsets of unequal spacing are
/// refused. Prints a SKIP line on CPUs without AMX-INT8.
#[test]
fn amx_reads_quad_planes_in_place() {
    let Some(kernel) = kernels().into_iter().find(|k| matches!(k, Kernel::Amx(_))) else {
        println!("SKIP AMX implicit GEMM: this CPU has no AMX-INT8");
        return;
    };
    let mut seed = 91;
    for &cin in &[64usize, 128] {
        for &taps in &[1usize, 9] {
            for &(m, nblocks) in &[(9usize, 1usize), (40, 3), (64, 33)] {
                seed += 1;
                let mut r = Rng::new(seed);
                let (cq, npix) = (cin / 4, nblocks * BLOCK);
                let plane = npix * 4 + 4 * r.below(9);
                let tap_at: Vec<usize> = (0..taps).map(|_| r.below(200)).collect();
                let mut koff = vec![0; cq * taps];
                for q in 0..cq {
                    for (t, &at) in tap_at.iter().enumerate() {
                        koff[qgemm::quad_group(Packing::S8Amx, q, t, cq, taps)] = at + q * plane;
                    }
                }
                let src: Vec<u8> = (0..200 + cq * plane + 4 * npix).map(|_| r.below(256) as u8).collect();
                let w: Vec<i8> = (0..m * cin * taps).map(|_| (r.below(255) as i32 - 127) as i8).collect();
                let at = |ci: usize, t: usize| tap_at[t] + (ci / 4) * plane + ci % 4;
                let want: Vec<i32> = (0..m * npix)
                    .map(|i| {
                        let (c, p) = (i / npix, i % npix);
                        (0..cin).flat_map(|ci| (0..taps).map(move |t| (ci, t))).map(|(ci, t)| i32::from(w[c * cin * taps + ci * taps + t]) * i32::from(src[at(ci, t) + 4 * p])).sum()
                    })
                    .collect();
                let pw = PackedWeights::quad_taps(&w, m, cin, taps, Packing::S8Amx).unwrap();
                assert_eq!((pw.taps, pw.kpad), (taps, cin * taps));
                for start in (0..m).step_by(8) {
                    let what = format!("cin{cin} taps{taps} m{m} blocks{nblocks} rows from {start}");
                    let rs = npix + 5;
                    let mut out = vec![i32::MIN; (m - start) * rs];
                    kernel.run_rows_taps(&pw, start..m, &src, &koff, nblocks, &mut out, rs);
                    let mut tiles = vec![i32::MIN; qgemm::tiles_len(m - start, nblocks)];
                    kernel.run_rows_taps_tiles(&pw, start..m, &src, &koff, nblocks, &mut tiles);
                    for c in start..m {
                        assert_eq!(&out[(c - start) * rs..(c - start) * rs + npix], &want[c * npix..(c + 1) * npix], "{what}, row {c}");
                        for p in 0..npix {
                            assert_eq!(tiles[qgemm::tiles_index(nblocks, c - start, p)], want[c * npix + p], "{what}, tiles, row {c} pixel {p}");
                        }
                    }
                }
                let mut uneven = koff.clone();
                uneven[5] += 4;
                let refused = std::panic::catch_unwind(|| kernel.run_rows_taps(&pw, 0..m, &src, &uneven, nblocks, &mut vec![0; m * npix], npix));
                assert!(refused.is_err(), "offsets of unequal spacing taken");
            }
        }
    }
    println!("AMX implicit GEMM matched");
}

/// `gemv_rows` of every kernel with a GEMV form (and the scalar twin) against the plain sum,
/// one column at a time, each at the packing it takes for the weights (AVX2: `vpmaddubsw`
/// for 7-bit, widening for 8-bit): K tails around the 64-k vector (1…4608), row ranges starting
/// anywhere (not only at multiples of 4 or 8), counts 1–13 (the 4-row step's tails), an
/// output stride, extremes that would saturate `vpmaddubsw`, and `x` longer than Kpad.
fn check_gemv(a: &[u8], w: &[i8], m: usize, k: usize, what: &str) {
    let want = qgemm_reference(a, w, m, k, 1);
    let ks: Vec<Kernel> = std::iter::once(Kernel::Scalar).chain(kernels().into_iter().filter(|k| k.has_gemv())).collect();
    for kernel in ks {
        let pw = PackedWeights::new(w, m, k, kernel.packing_for(w, m, k)).unwrap();
        let mut x = vec![0xA5u8; pw.kpad + 5];
        x[..k].copy_from_slice(a);
        x[k..pw.kpad].fill(0);
        for (r0, r1) in [(0, m), (m / 3, m), (m.min(1), m.min(5)), (m / 2, m / 2)] {
            let rs = 3;
            let mut out = vec![i32::MIN; (r1 - r0) * rs + 1];
            kernel.gemv_rows(&pw, r0..r1, &x, &mut out, rs);
            for c in r0..r1 {
                assert_eq!(out[(c - r0) * rs], want[c], "{} {what} m{m} k{k} rows {r0}..{r1} row {c}", kernel.path(pw.packing()));
            }
            // Nothing written between the rows.
            assert!(out.iter().enumerate().all(|(i, &v)| i % rs == 0 && i / rs < r1 - r0 || v == i32::MIN), "{} {what}: stray store", kernel.name());
        }
    }
}

#[test]
fn gemv_matches_the_plain_sum() {
    let mut seed = 900;
    for &m in &[1usize, 3, 4, 5, 7, 8, 13] {
        for &k in &[1usize, 3, 4, 15, 17, 60, 63, 64, 65, 124, 127, 129, 200, 2048] {
            for zp in [0u8, 3, 128, 255] {
                seed += 1;
                // 8-bit weights (AVX2: the widening form) and 7-bit ones (its vpmaddubsw form).
                let bits = if seed % 2 == 0 { 7 } else { 8 };
                let (a, w) = data_bits(m, k, 1, zp, seed, bits);
                check_gemv(&a, &w, m, k, &format!("zp{zp} {bits}-bit"));
            }
        }
    }
    // Extremes: 255 × −128 (every kernel widens such weights) and 255 × ±64, the largest
    // pairs `vpmaddubsw` takes (|w₁| + |w₂| = 128 exactly).
    for &(av, wv) in &[(255u8, -128i8), (255, 127), (255, 64), (255, -64)] {
        for &k in &[4usize, 64, 1000, 4608] {
            check_gemv(&vec![av; k], &vec![wv; 9 * k], 9, k, &format!("a={av} w={wv}"));
        }
    }
    let run: Vec<&str> = kernels().into_iter().filter(|k| k.has_gemv()).map(|k| k.name()).collect();
    println!("GEMV kernels run: scalar, {run:?}");
}

/// `gemv_cols` of every kernel with a GEMV form (and the scalar twin) against the plain sum:
/// 1–9 columns (VNNI runs them four, three, two or one at a time), K tails around the 64-k
/// vector, row ranges starting anywhere with counts around the 4-row step, an output stride
/// with room between the rows (nothing may be stored there), columns followed by garbage.
fn check_gemv_cols(a: &[u8], w: &[i8], m: usize, k: usize, n: usize, what: &str) {
    // `a: [k][n]`; column j of the GEMV input is a's column j, zero-padded to Kpad.
    let want = qgemm_reference(a, w, m, k, n);
    let ks: Vec<Kernel> = std::iter::once(Kernel::Scalar).chain(kernels().into_iter().filter(|k| k.has_gemv())).collect();
    for kernel in ks {
        let pw = PackedWeights::new(w, m, k, kernel.packing_for(w, m, k)).unwrap();
        let mut x = vec![0x5Au8; n * pw.kpad + 7];
        for j in 0..n {
            for kk in 0..pw.kpad {
                x[j * pw.kpad + kk] = if kk < k { a[kk * n + j] } else { 0 };
            }
        }
        for (r0, r1) in [(0, m), (m / 3, m), (m.min(1), m.min(6)), (m / 2, m / 2)] {
            let rs = n + 3;
            let mut out = vec![i32::MIN; (r1 - r0) * rs + 2];
            kernel.gemv_cols(&pw, r0..r1, &x, n, &mut out, rs);
            for c in r0..r1 {
                for j in 0..n {
                    assert_eq!(out[(c - r0) * rs + j], want[c * n + j], "{} {what} m{m} k{k} n{n} rows {r0}..{r1} row {c} column {j}", kernel.path(pw.packing()));
                }
            }
            assert!(out.iter().enumerate().all(|(i, &v)| i % rs < n && i / rs < r1 - r0 || v == i32::MIN), "{} {what} n{n}: stray store", kernel.name());
        }
    }
}

#[test]
fn gemv_columns_match_the_plain_sum() {
    let mut seed = 1900;
    for &m in &[1usize, 3, 4, 5, 9, 13] {
        for &k in &[1usize, 4, 17, 63, 64, 65, 127, 129, 300] {
            for n in 1..=9 {
                seed += 1;
                let bits = if seed % 2 == 0 { 7 } else { 8 };
                let (a, w) = data_bits(m, k, n, [0u8, 7, 128, 255][seed as usize % 4], seed, bits);
                check_gemv_cols(&a, &w, m, k, n, &format!("{bits}-bit"));
            }
        }
    }
    // The extremes of each kernel's arithmetic, four columns at once.
    for &(av, wv) in &[(255u8, -128i8), (255, 127), (255, 64), (255, -64)] {
        for &k in &[4usize, 64, 1000, 4608] {
            check_gemv_cols(&vec![av; k * 4], &vec![wv; 9 * k], 9, k, 4, &format!("a={av} w={wv}"));
        }
    }
    let run: Vec<&str> = kernels().into_iter().filter(|k| k.has_gemv()).map(|k| k.name()).collect();
    println!("GEMV column kernels run: scalar, {run:?}");
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]
    #[test]
    fn gemv_proptest(m in 1usize..40, k in 1usize..300, zp in any::<u8>(), seed in any::<u64>(), seven in any::<bool>()) {
        let (a, w) = data_bits(m, k, 1, zp, seed, if seven { 7 } else { 8 });
        check_gemv(&a, &w, m, k, "proptest");
    }

    #[test]
    fn gemv_cols_proptest(m in 1usize..24, k in 1usize..300, n in 1usize..10, zp in any::<u8>(), seed in any::<u64>(), seven in any::<bool>()) {
        let (a, w) = data_bits(m, k, n, zp, seed, if seven { 7 } else { 8 });
        check_gemv_cols(&a, &w, m, k, n, "proptest");
    }

    #[test]
    fn qgemm_proptest(m in 1usize..40, k in 1usize..80, n in 1usize..70, zp in any::<u8>(), seed in any::<u64>(), seven in any::<bool>()) {
        let (a, w) = data_bits(m, k, n, zp, seed, if seven { 7 } else { 8 });
        check(&a, &w, m, k, n, "proptest");
    }
}
