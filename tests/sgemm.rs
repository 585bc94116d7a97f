//! kestrel's FP32 GEMM tiles: every kernel this CPU has against the scalar twin of the same
//! geometry, value for value, over every panel height the kernel packs (its `MR`, and on AVX2
//! the 4-row panels of convs with few channels) and tile shape (rows 1..=MR, columns across each vector
//! tail), K lengths 1 to past one block, the three starts (zero, output, residual) and every
//! epilogue, B packed, read in place at a row stride or at irregular row offsets (its vectors
//! contiguous or a padded row apart); also that a
//! tile writes nothing outside itself. Then proptest.

mod common;

use kestrel::cpu::sgemm::{scalar, Act, Epilogue, Init, Kernel, Tile};
use proptest::prelude::*;

const LDC: usize = 101;

/// The panel heights `kernel` packs weights in: its geometry's `MR` and every
/// `Kernel::panel_rows` value.
fn panel_heights(kernel: Kernel) -> Vec<usize> {
    let mut h: Vec<usize> = (1..=256).map(|m| kernel.panel_rows(m)).chain([kernel.geometry().mr]).collect();
    h.sort_unstable();
    h.dedup();
    h
}

/// Runs `kernel` and the twin on the same random data, tiles of `mr`-row weight panels;
/// returns (kernel, twin) outputs.
fn run_both(kernel: Kernel, mr: usize, t: Tile, init: u8, epi: Option<(bool, Act)>, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let g = kestrel::cpu::sgemm::Geometry { mr, ..kernel.geometry() };
    let a = common::data(t.kc * g.mr, seed);
    let b = common::data((t.kc - 1) * t.ldb + t.cols.max(t.nv * g.lanes) + 64, seed + 1);
    // B rows at irregular offsets (a padded plane read in place) when asked: row k at
    // k·ldb + (k·7 mod 5), inside `b` (64 spare floats).
    let offsets: Vec<usize> = (0..t.kc).map(|k| k * t.ldb + (k * 7) % 5).collect();
    let t = if t.b_rows.is_null() { t } else { Tile { b_rows: offsets.as_ptr(), ..t } };
    let res = common::data(g.mr * LDC, seed + 2);
    let start = common::data(g.mr * LDC, seed + 3);
    let bias = common::data(t.rows, seed + 4);
    let e = epi.map(|(with_bias, act)| Epilogue { bias: with_bias.then_some(&bias[..]), act });
    let mut outs = Vec::new();
    for twin in [false, true] {
        let mut c = start.clone();
        let init = match init {
            0 => Init::Zero,
            1 => Init::Output,
            _ => Init::Residual(res.as_ptr()),
        };
        // SAFETY: a, b hold kc·MR and kc·nv·LANES floats; c and res hold MR rows of LDC ≥ cols.
        unsafe {
            if twin {
                scalar::tile(g, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), t, init, e.as_ref());
            } else {
                kernel.tile_rows(mr, a.as_ptr(), b.as_ptr(), c.as_mut_ptr(), t, init, e.as_ref());
            }
        }
        for (i, (&v, &s)) in c.iter().zip(&start).enumerate() {
            let (r, j) = (i / LDC, i % LDC);
            if r >= t.rows || j >= t.cols {
                assert_eq!(v.to_bits(), s.to_bits(), "{} wrote outside its tile at row {r} column {j} ({t:?})", kernel.name());
            }
        }
        outs.push(c);
    }
    let twin = outs.pop().unwrap_or_default();
    (outs.pop().unwrap_or_default(), twin)
}

fn check(kernel: Kernel, mr: usize, t: Tile, init: u8, epi: Option<(bool, Act)>, seed: u64) {
    let (got, want) = run_both(kernel, mr, t, init, epi, seed);
    if let Some(i) = (0..got.len()).find(|&i| got[i] != want[i]) {
        panic!("{} {mr}-row panels {t:?} init {init} epi {epi:?}: element {i} is {} but the twin gives {}", kernel.name(), got[i], want[i]);
    }
}

#[test]
fn tiles_match_the_scalar_twin() {
    let acts = [Act::None, Act::Leaky(0.0), Act::Leaky(0.1), Act::Clip(-0.5, 0.7)];
    let mut seed = 1;
    for kernel in common::sgemm_kernels() {
        let g = kernel.geometry();
        println!("tiles: {} in panels of {:?} rows", kernel.name(), panel_heights(kernel));
        for mr in panel_heights(kernel) {
        for nv in 1..=g.nv {
            let lanes = g.lanes;
            for cols in [(nv - 1) * lanes + 1, (nv - 1) * lanes + lanes / 2 + 1, nv * lanes - 1, nv * lanes] {
                for rows in 1..=mr {
                    for kc in [1, 3, 17, g.kc] {
                        for init in 0..3u8 {
                            let epi = match seed % 6 {
                                0 => None,
                                s => Some((s % 2 == 0, acts[s as usize % acts.len()])),
                            };
                            seed += 1;
                            // B packed (ldb = the panel width), read in place (a wider row), or
                            // at irregular row offsets.
                            let ldb = if seed % 2 == 0 { nv * lanes } else { nv * lanes + 37 };
                            let b_rows = if seed % 3 == 0 { std::ptr::NonNull::dangling().as_ptr() } else { std::ptr::null() };
                            check(kernel, mr, Tile { kc, rows, cols, nv, ldb, b_rows, ldc: LDC, a_next: 1 << 40, b_next: if seed % 5 == 0 { 0 } else { 1 << 40 }, b_vstride: if !b_rows.is_null() && seed % 4 == 1 { g.lanes + 3 } else { 0 }, c_next: if seed % 3 == 0 { 0 } else { -(1 << 40) } }, init, epi, seed);
                        }
                    }
                }
            }
        }
        }
    }
}

/// `Kernel::copy_rows` copies exactly the rows' `cols` floats, over vector tails, and
/// writes nothing between or after them.
#[test]
fn copy_rows_copies_exactly_the_rows() {
    for kernel in common::sgemm_kernels() {
        for cols in [0usize, 1, 3, 7, 8, 9, 15, 16, 17, 31, 33, 63, 65, 100] {
            for rows in [1usize, 2, 5] {
                let (lds, ldd) = (cols + 3, cols + 11);
                let src = common::data(rows * lds + 16, cols as u64);
                let mut dst = vec![f32::NAN; rows * ldd + 16];
                // SAFETY: rows · lds and rows · ldd (plus spare) floats, distinct buffers.
                unsafe { kernel.copy_rows(src.as_ptr(), lds, dst.as_mut_ptr(), ldd, rows, cols) };
                for (i, v) in dst.iter().enumerate() {
                    let (r, j) = (i / ldd, i % ldd);
                    if r < rows && j < cols {
                        assert_eq!(v.to_bits(), src[r * lds + j].to_bits(), "{} copy_rows {rows}x{cols}: element {i}", kernel.name());
                    } else {
                        assert!(v.is_nan(), "{} copy_rows {rows}x{cols}: wrote element {i} outside the rows", kernel.name());
                    }
                }
            }
        }
    }
}

/// `Kernel::stride2_row` (a row of a stride-2 phase plane) against its definition: every
/// output column written, 0 where the input column lies outside the row, over vector tails
/// and negative starts (left padding).
#[test]
fn stride2_row_matches_its_definition() {
    for kernel in common::sgemm_kernels() {
        for w in [1usize, 2, 3, 7, 16, 17, 31, 32, 33, 63, 65, 112] {
            let src = common::data(w, w as u64);
            for n in [0usize, 1, 3, 8, 15, 16, 17, 33, 57, 60] {
                for x0 in -4isize..4 {
                    let mut dst = vec![f32::NAN; n];
                    kernel.stride2_row(&mut dst, &src, x0);
                    for (j, v) in dst.iter().enumerate() {
                        let x = x0 + 2 * j as isize;
                        let want = if x >= 0 && (x as usize) < w { src[x as usize] } else { 0.0 };
                        assert_eq!(v.to_bits(), want.to_bits(), "{} stride2_row w {w} n {n} x0 {x0}: column {j}", kernel.name());
                    }
                }
            }
        }
    }
}

/// `Kernel::stride2_plane` (a whole stride-2 phase plane, and its odd-column twin) against
/// its definition: every element of both planes written, 0 outside the image, over plane
/// widths off the vector, row steps 1–3, rows above and below the image (padding) and
/// column starts left of it.
#[test]
fn stride2_plane_matches_its_definition() {
    for kernel in common::sgemm_kernels() {
        for (h, w) in [(1usize, 1usize), (3, 7), (7, 14), (14, 14), (5, 17), (9, 33), (4, 65), (2, 112)] {
            let src = common::data(h * w, (h * w) as u64);
            for wph in [1usize, 4, 7, 8, 16, 17, 33, 57] {
                for hph in [1usize, 3, 8] {
                    for (y0, sy) in [(0isize, 2isize), (-1, 2), (1, 2), (-2, 1), (0, 3), (-3, 2)] {
                        for x0 in -3isize..2 {
                            let at = |y: isize, x: isize| if y >= 0 && (y as usize) < h && x >= 0 && (x as usize) < w { src[y as usize * w + x as usize] } else { 0.0 };
                            let (mut even, mut odd) = (vec![f32::NAN; hph * wph], vec![f32::NAN; hph * wph]);
                            kernel.stride2_plane(&mut even, Some(&mut odd), wph, &src, w, [y0, sy], x0);
                            let mut alone = vec![f32::NAN; hph * wph];
                            kernel.stride2_plane(&mut alone, None, wph, &src, w, [y0, sy], x0);
                            for r in 0..hph {
                                for j in 0..wph {
                                    let (y, x) = (y0 + r as isize * sy, x0 + 2 * j as isize);
                                    let what = format!("{} stride2_plane {h}x{w} plane {hph}x{wph} y0 {y0} sy {sy} x0 {x0}: row {r} column {j}", kernel.name());
                                    assert_eq!(even[r * wph + j].to_bits(), at(y, x).to_bits(), "{what} (even)");
                                    assert_eq!(odd[r * wph + j].to_bits(), at(y, x + 1).to_bits(), "{what} (odd)");
                                    assert_eq!(alone[r * wph + j].to_bits(), at(y, x).to_bits(), "{what} (alone)");
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// `Kernel::permute_maps` (one permute of whole maps per 16 columns) against its scalar
/// twin, and both against the definition: maps of 4 and 16 pixels, batches that do not fill
/// the last chunk, chunk offsets, and masks with lanes off.
#[test]
fn permute_maps_matches_the_twin() {
    for kernel in common::sgemm_kernels() {
        println!("permute_maps: {} ({})", kernel.name(), if kernel.permutes_maps() { "vector" } else { "scalar twin" });
        let mut seed = 3u64;
        for npix in [4usize, 16] {
            for images in [1usize, 3, 4, 5, 7, 9] {
                let stride = npix + 5;
                let src = common::data(images * stride, seed);
                let chunks_all = (images * npix).div_ceil(16);
                for first in 0..chunks_all {
                    seed += 1;
                    let chunks = chunks_all - first;
                    let mut perm = [0i32; 16];
                    for (l, p) in perm.iter_mut().enumerate() {
                        *p = ((l as u64 * 7 + seed) % 16) as i32;
                    }
                    let mask = (0x5a3c_u32.rotate_left(seed as u32 % 16) & 0xffff) as u16;
                    let mut got = vec![f32::NAN; chunks * 16];
                    let mut twin = vec![f32::NAN; chunks * 16];
                    // SAFETY: images · stride floats of maps, npix of them per image read;
                    // chunks cover images below `images` only; chunks · 16 floats out.
                    unsafe {
                        kernel.permute_maps(got.as_mut_ptr(), src.as_ptr(), stride, npix, images, first, chunks, &perm, mask);
                        scalar::permute_maps(twin.as_mut_ptr(), src.as_ptr(), stride, npix, images, first, chunks, &perm, mask);
                    }
                    for (i, (g, t)) in got.iter().zip(&twin).enumerate() {
                        let (c, l) = (first + i / 16, i % 16);
                        let q = perm[l] as usize;
                        let b = c * (16 / npix) + q / npix;
                        let want = if mask >> l & 1 == 1 && b < images { src[b * stride + q % npix] } else { 0.0 };
                        assert_eq!((g.to_bits(), t.to_bits()), (want.to_bits(), want.to_bits()), "{} permute_maps npix {npix} images {images} first {first}: lane {i}", kernel.name());
                    }
                }
            }
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn tile_proptest(rows in 1usize..=8, nv in 1usize..=3, col_frac in 0.0f64..1.0, kc in 1usize..300, init in 0u8..3, act in 0usize..5, bias in any::<bool>(), extra in 0usize..100, seed in 0u64..1000) {
        for kernel in common::sgemm_kernels() {
            let g = kernel.geometry();
            let heights = panel_heights(kernel);
            let mr = heights[seed as usize % heights.len()];
            let nv = nv.min(g.nv);
            let cols = (nv - 1) * g.lanes + 1 + ((g.lanes - 1) as f64 * col_frac) as usize;
            let epi = [None, Some((bias, Act::None)), Some((bias, Act::Leaky(0.0))), Some((bias, Act::Leaky(0.2))), Some((bias, Act::Clip(0.0, 6.0)))][act];
            check(kernel, mr, Tile { kc, rows: rows.min(mr), cols, nv, ldb: nv * g.lanes + extra, b_rows: if extra % 2 == 1 { std::ptr::NonNull::dangling().as_ptr() } else { std::ptr::null() }, ldc: LDC, a_next: extra * 8, b_next: extra * 16, b_vstride: if extra % 2 == 1 && extra % 3 == 0 { g.lanes + extra % 7 } else { 0 }, c_next: extra as isize * 64 }, init, epi, seed);
        }
    }
}
