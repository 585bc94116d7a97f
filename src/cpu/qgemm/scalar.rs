//! The scalar ISA's INT8 kernels, in plain safe Rust on the same packed layouts: the path of
//! CPUs without AVX2 (and of every CPU other than x86-64: 64-bit ARM runs these), and the twin
//! the implicit-GEMM and GEMV kernels are tested against. Every kernel, these included, is
//! checked against the unpacked [`super::qgemm_reference`] (`tests/qgemm.rs`).
//!
//! The GEMM first rewrites each panel block's `[K/4][16 pixels][4 k]` bytes as `[K][16
//! pixels]` i16, once for all the call's rows, so that its innermost loop multiplies 16
//! contiguous pixels by one weight into one row's 16 i32 sums, which the compiler vectorizes
//! (SSE2 on baseline x86-64; on aarch64 it emits NEON multiplies for it too). Integer sums, so
//! any order gives the same i32 values. INT8 at batch 1 on the scalar path (Zen 4, forced with
//! `KESTREL_ISA=scalar`, 2 threads, the two builds alternating), against summing one pixel's K
//! at a time: ResNet-18 645–656 → 240–241 ms a call, shapes-resnet18 3.90 → 1.56–1.59 ms,
//! blobs-unet 13.1–14.8 → 5.2–5.3 ms. Not timed on ARM hardware.

use std::ops::Range;

use super::{block_stride, PackedWeights, BLOCK};

/// `acc[c − rows.start][p]` for every channel in `rows` and every pixel of the panel (plain
/// indexing: bad sizes panic on a bounds check rather than corrupt memory).
pub fn qgemm_u8s8_scalar(w: &PackedWeights, s8: &[i8], rows: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
    let kpad = w.kpad;
    let r0 = rows.start;
    // One block's activations as i16, `[k][16 pixels]`.
    let mut xs = vec![0i16; kpad * BLOCK];
    for b in 0..nblocks {
        let blk = &panel[b * block_stride(kpad)..][..kpad * BLOCK];
        for (x, xk) in blk.chunks_exact(4 * BLOCK).zip(xs.chunks_exact_mut(4 * BLOCK)) {
            for (p, x4) in x.chunks_exact(4).enumerate() {
                for (j, &v) in x4.iter().enumerate() {
                    xk[j * BLOCK + p] = i16::from(v);
                }
            }
        }
        for c in rows.clone() {
            let mut acc = [0i32; BLOCK];
            for (xk, &wk) in xs.chunks_exact(BLOCK).zip(&s8[c * kpad..(c + 1) * kpad]) {
                // |u8 · s8| ≤ 255 · 128 fits i16: one 16-bit multiply, then widened.
                let wk = i16::from(wk);
                for (a, &x) in acc.iter_mut().zip(xk) {
                    *a += i32::from(x * wk);
                }
            }
            let at = (c - r0) * out_rs + b * BLOCK;
            out[at..at + BLOCK].copy_from_slice(&acc);
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
