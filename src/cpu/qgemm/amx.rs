//! AMX-INT8 kernel: `tdpbsud` (s8 weights × u8 activations, exact i32 sums) on 16 × 16 i32
//! accumulator tiles, 32 channels × 32 pixels per step: two weight tiles (16 channels × 64 k,
//! read in place from the `[Mpad][Kpad]` s8 rows at stride `Kpad`), two activation tiles (one
//! panel block's 16 rows of 4-k groups: the panel layout *is* the tile layout; or, for convs
//! of 64·n input channels a group, 16 channel quads of one tap read in place from the quad
//! phase planes at the planes' stride, [`Acts::Taps`]) and four
//! accumulator tiles, stored straight into the output rows or, for the INT8 conv's wide
//! tasks, tile by tile ([`Store::Tiles`]: 1 KB runs the requantizing pass reads). Weights packed for it
//! ([`super::Packing::S8Amx`]) have `Kpad` a multiple of 64 (one tile of k per step, zero
//! past K) and 24 zero rows past the row count rounded to `MR`, so a 32-row step from any
//! row start the callers use stays inside them.

use std::ops::Range;

use super::{PackedWeights, BLOCK};

/// Channels (and pixels) per step: two tiles of 16.
const STEP: usize = 32;

/// How the kernel stores its sums.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Store {
    /// Output rows at a stride, as every kernel does.
    Rows,
    /// Tile by tile, as [`super::tiles_index`] lays them out.
    Tiles,
}

/// Where the kernel reads its activations: 16 rows of 64 bytes a tile, one 4-k group of 16
/// pixels a row.
#[derive(Clone, Copy, Debug)]
pub(super) enum Acts<'a> {
    /// A packed panel: block `b`'s K step `s` is the 1 KB at `b·block_stride(kpad) + 1024·s`.
    Panel(&'a [u8]),
    /// The quad phase planes in place (`Kernel::run_rows_taps`): 4-k group `g` of pixel `p` is
    /// at `src[koff[g] + 4p]`, the 16 groups of each K step equally spaced (one tap's quads).
    Taps(&'a [u8], &'a [usize]),
}

/// Palette 1, tiles 0–7 all 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// `acc[c − rows.start][p]` for the channels in `rows` and every pixel of the activations:
/// rows at stride `out_rs` ([`Store::Rows`]), or as the tiles are ([`Store::Tiles`], see
/// [`super::tiles_index`]).
///
/// # Safety
/// The CPU must support AMX-TILE and AMX-INT8 with the tile state granted to this process,
/// and the arguments must satisfy `qgemm::check_args` (a panel) or `check_taps_args` (taps;
/// for tiles, `check_inputs` or those checks of the inputs, and an output of `tiles_len`
/// values) for weights packed as [`super::Packing::S8Amx`].
#[allow(clippy::too_many_arguments)]
pub(super) unsafe fn qgemm_u8s8_amx_32x32(w: &PackedWeights, s8: &[i8], range: Range<usize>, acts: Acts, nblocks: usize, out: &mut [i32], out_rs: usize, store: Store) {
    let mut cfg = TileConfig([0; 64]);
    cfg.0[0] = 1;
    for t in 0..8 {
        cfg.0[16 + 2 * t] = 64;
        cfg.0[48 + t] = 16;
    }
    let ksteps = w.kpad / 64;
    // Bytes between blocks of the panel, and between rows of the output.
    let pstride = super::block_stride(w.kpad);
    let ors = out_rs * 4;
    // Accumulator tiles whose rows run past `range.end` land here first.
    let mut spill = [[0i32; 256]; 2];
    // SAFETY (whole body): the caller's contract. Weight tiles read rows c0..c0 + 32 of
    // `kpad` bytes, inside the packed rows (c0 < range.end ≤ m, c0 ≡ rows.start mod 32, and
    // Mpad ≥ m rounded to MR plus 24); activation tiles read 16 rows of 64 bytes of blocks
    // b and b + 1 < nblocks, inside the panel (check_args: ≥ nblocks · kpad · 16 bytes) or,
    // in place, the 64 bytes at koff[g] + 64·b of each of the step's groups g, inside src
    // (check_taps_args: every koff[g] + 64·nblocks ≤ src.len(), the step's offsets equally
    // spaced, so that its 16 rows are the ones the tile load reads at that stride).
    // Rows: whole accumulator tiles are stored only where their 16 rows lie in `range` (out
    // holds (rows − 1)·out_rs + 16·nblocks values, check_args), the others go through
    // `spill`. Tiles: tile (g, b) of 256 values at (g·nblocks + b)·256 for row group
    // g < ⌈rows / 16⌉ and block b < nblocks, inside `out` (`tiles_len`, asserted).
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        let mut c0 = range.start;
        while c0 < range.end {
            let a0 = s8.as_ptr().add(c0 * w.kpad);
            let a1 = a0.add(16 * w.kpad);
            let mut b = 0;
            while b < nblocks {
                let pair = b + 1 < nblocks;
                let (b0, pair_at) = match acts {
                    Acts::Panel(panel) => (panel.as_ptr().add(b * pstride), pstride),
                    Acts::Taps(src, _) => (src.as_ptr().add(64 * b), 64),
                };
                std::arch::asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                for ks in 0..ksteps {
                    let (at, sb) = match acts {
                        Acts::Panel(_) => (ks * 1024, 64),
                        Acts::Taps(_, koff) => (koff[16 * ks], koff[16 * ks + 1] - koff[16 * ks]),
                    };
                    let (ka0, ka1, kb0) = (a0.add(ks * 64), a1.add(ks * 64), b0.add(at));
                    if pair {
                        std::arch::asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbsud tmm0, tmm4, tmm6",
                            "tdpbsud tmm1, tmm4, tmm7",
                            "tdpbsud tmm2, tmm5, tmm6",
                            "tdpbsud tmm3, tmm5, tmm7",
                            a0 = in(reg) ka0, a1 = in(reg) ka1, b0 = in(reg) kb0, b1 = in(reg) kb0.add(pair_at),
                            sa = in(reg) w.kpad, sb = in(reg) sb,
                            options(nostack, readonly),
                        );
                    } else {
                        std::arch::asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tdpbsud tmm0, tmm4, tmm6",
                            "tdpbsud tmm2, tmm5, tmm6",
                            a0 = in(reg) ka0, a1 = in(reg) ka1, b0 = in(reg) kb0,
                            sa = in(reg) w.kpad, sb = in(reg) sb,
                            options(nostack, readonly),
                        );
                    }
                }
                // Tile (h, v): channels c0 + 16h.., block b + v.
                for h in 0..2 {
                    let first = c0 + 16 * h;
                    if first >= range.end {
                        break;
                    }
                    if store == Store::Tiles {
                        // Whole tiles, 1 KB each: stored at 64 bytes a row, a tile's rows fill
                        // 16 consecutive lines instead of one line of 16 output rows each.
                        let d0 = out.as_mut_ptr().add(((first - range.start) / 16 * nblocks + b) * 256);
                        let (d1, s) = (d0.add(256), 64usize);
                        match (h, pair) {
                            (0, true) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm0", "tilestored [{d1} + {s}*1], tmm1", d0 = in(reg) d0, d1 = in(reg) d1, s = in(reg) s, options(nostack)),
                            (0, false) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm0", d0 = in(reg) d0, s = in(reg) s, options(nostack)),
                            (_, true) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm2", "tilestored [{d1} + {s}*1], tmm3", d0 = in(reg) d0, d1 = in(reg) d1, s = in(reg) s, options(nostack)),
                            (_, false) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm2", d0 = in(reg) d0, s = in(reg) s, options(nostack)),
                        }
                        continue;
                    }
                    let rows = (range.end - first).min(16);
                    let dst = out.as_mut_ptr().add((first - range.start) * out_rs + b * BLOCK);
                    let whole = rows == 16;
                    let (d0, d1) = if whole { (dst, dst.add(BLOCK)) } else { (spill[0].as_mut_ptr(), spill[1].as_mut_ptr()) };
                    let s = if whole { ors } else { 64 };
                    match (h, pair) {
                        (0, true) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm0", "tilestored [{d1} + {s}*1], tmm1", d0 = in(reg) d0, d1 = in(reg) d1, s = in(reg) s, options(nostack)),
                        (0, false) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm0", d0 = in(reg) d0, s = in(reg) s, options(nostack)),
                        (_, true) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm2", "tilestored [{d1} + {s}*1], tmm3", d0 = in(reg) d0, d1 = in(reg) d1, s = in(reg) s, options(nostack)),
                        (_, false) => std::arch::asm!("tilestored [{d0} + {s}*1], tmm2", d0 = in(reg) d0, s = in(reg) s, options(nostack)),
                    }
                    if !whole {
                        for r in 0..rows {
                            std::ptr::copy_nonoverlapping(spill[0].as_ptr().add(r * 16), dst.add(r * out_rs), BLOCK);
                            if pair {
                                std::ptr::copy_nonoverlapping(spill[1].as_ptr().add(r * 16), dst.add(r * out_rs + BLOCK), BLOCK);
                            }
                        }
                    }
                }
                b += 2;
            }
            c0 += STEP;
        }
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
}
