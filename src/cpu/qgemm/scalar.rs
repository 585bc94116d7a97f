//! The scalar twin of the INT8 kernels: the same packed layouts, plain loops.

use super::{check_args, PackedWeights, BLOCK};

/// `acc[c][p]` for every channel and every pixel of the panel.
pub fn qgemm_u8s8_scalar(w: &PackedWeights, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
    check_args(w, panel, nblocks, out, out_rs);
    let k4n = w.kpad / 4;
    for c in 0..w.m {
        let row = &w.s8[c * w.kpad..(c + 1) * w.kpad];
        for b in 0..nblocks {
            let blk = &panel[b * k4n * 4 * BLOCK..(b + 1) * k4n * 4 * BLOCK];
            for p in 0..BLOCK {
                let mut acc = 0i32;
                for k4 in 0..k4n {
                    for j in 0..4 {
                        acc += i32::from(blk[k4 * 4 * BLOCK + p * 4 + j]) * i32::from(row[k4 * 4 + j]);
                    }
                }
                out[c * out_rs + b * BLOCK + p] = acc;
            }
        }
    }
}
