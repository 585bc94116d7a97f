//! The scalar twin of the INT8 kernels: the same packed layouts, plain loops.

use std::ops::Range;

use super::{block_stride, PackedWeights, BLOCK};

/// `acc[c − rows.start][p]` for every channel in `rows` and every pixel of the panel (plain
/// indexing: bad sizes panic on a bounds check rather than corrupt memory).
pub fn qgemm_u8s8_scalar(w: &PackedWeights, s8: &[i8], rows: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
    let k4n = w.kpad / 4;
    let r0 = rows.start;
    for c in rows {
        let row = &s8[c * w.kpad..(c + 1) * w.kpad];
        for b in 0..nblocks {
            let blk = &panel[b * block_stride(w.kpad)..][..k4n * 4 * BLOCK];
            for p in 0..BLOCK {
                let mut acc = 0i32;
                for k4 in 0..k4n {
                    for j in 0..4 {
                        acc += i32::from(blk[k4 * 4 * BLOCK + p * 4 + j]) * i32::from(row[k4 * 4 + j]);
                    }
                }
                out[(c - r0) * out_rs + b * BLOCK + p] = acc;
            }
        }
    }
}

/// The twin of the implicit-GEMM kernel (`Kernel::run_rows_taps`): 4-k group `g` of pixel
/// `p` is `src[koff[g] + 4·p ..][..4]`.
#[allow(clippy::too_many_arguments)]
pub fn qgemm_u8s8_taps_scalar(w: &PackedWeights, s8: &[i8], rows: Range<usize>, src: &[u8], koff: &[usize], nblocks: usize, out: &mut [i32], out_rs: usize) {
    let r0 = rows.start;
    for c in rows {
        let row = &s8[c * w.kpad..(c + 1) * w.kpad];
        for p in 0..nblocks * BLOCK {
            let mut acc = 0i32;
            for (k4, &off) in koff.iter().enumerate() {
                for j in 0..4 {
                    acc += i32::from(src[off + p * 4 + j]) * i32::from(row[k4 * 4 + j]);
                }
            }
            out[(c - r0) * out_rs + p] = acc;
        }
    }
}

/// The twin of the GEMV kernel (`Kernel::gemv_rows`): `out[(c − rows.start)·out_rs] =
/// Σ_k w[c][k] · x[k]` over the packed row's `Kpad` k.
pub fn gemv_u8s8_scalar(w: &PackedWeights, s8: &[i8], rows: Range<usize>, x: &[u8], out: &mut [i32], out_rs: usize) {
    let r0 = rows.start;
    for c in rows {
        let row = &s8[c * w.kpad..(c + 1) * w.kpad];
        out[(c - r0) * out_rs] = row.iter().zip(&x[..w.kpad]).map(|(&a, &b)| i32::from(a) * i32::from(b)).sum();
    }
}
