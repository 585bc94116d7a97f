//! AMX-INT8 kernel: `tdpbsud` (s8 weights × u8 activations, exact i32 sums) on 16 × 16 i32
//! accumulator tiles, 32 channels × 32 pixels per step: two weight tiles (16 channels × 64 k,
//! read in place from the `[Mpad][Kpad]` s8 rows at stride `Kpad`), two activation tiles (one
//! panel block's 16 rows of 4-k groups: the panel layout *is* the tile layout) and four
//! accumulator tiles, stored straight into the output rows. Weights packed for it
//! ([`super::Packing::S8Amx`]) have `Kpad` a multiple of 64 (one tile of k per step, zero
//! past K) and 24 zero rows past the row count rounded to `MR`, so a 32-row step from any
//! row start the callers use stays inside them.

use std::ops::Range;

use super::{PackedWeights, BLOCK};

/// Channels (and pixels) per step: two tiles of 16.
const STEP: usize = 32;

/// Palette 1, tiles 0–7 all 16 rows of 64 bytes.
#[repr(C, align(64))]
struct TileConfig([u8; 64]);

/// `acc[c − rows.start][p]` for the channels in `rows` and every pixel of the panel.
///
/// # Safety
/// The CPU must support AMX-TILE and AMX-INT8 with the tile state granted to this process,
/// and the arguments must satisfy `qgemm::check_args` for weights packed as
/// [`super::Packing::S8Amx`].
pub(super) unsafe fn qgemm_u8s8_amx_32x32(w: &PackedWeights, s8: &[i8], range: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
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
    // b and b + 1 < nblocks, inside the panel (check_args: ≥ nblocks · kpad · 16 bytes);
    // whole accumulator tiles are stored only where their 16 rows lie in `range` (out holds
    // (rows − 1)·out_rs + 16·nblocks values, check_args), the others go through `spill`.
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        let mut c0 = range.start;
        while c0 < range.end {
            let a0 = s8.as_ptr().add(c0 * w.kpad);
            let a1 = a0.add(16 * w.kpad);
            let mut b = 0;
            while b < nblocks {
                let pair = b + 1 < nblocks;
                let b0 = panel.as_ptr().add(b * pstride);
                std::arch::asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                for ks in 0..ksteps {
                    let (ka0, ka1, kb0) = (a0.add(ks * 64), a1.add(ks * 64), b0.add(ks * 1024));
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
                            a0 = in(reg) ka0, a1 = in(reg) ka1, b0 = in(reg) kb0, b1 = in(reg) kb0.add(pstride),
                            sa = in(reg) w.kpad, sb = in(reg) 64usize,
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
                            sa = in(reg) w.kpad, sb = in(reg) 64usize,
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
