//! The scalar ISA's INT8 kernels, in portable Rust on the same packed layouts (the GEMM's
//! row sums on SSE2, which every x86-64 CPU has, and plain loops elsewhere): the path of CPUs
//! without AVX2 (and of every CPU other than x86-64: 64-bit ARM runs these), and the twin the
//! implicit-GEMM and GEMV kernels are tested against. Every kernel, these included, is
//! checked against the unpacked [`super::qgemm_reference`] (`tests/qgemm.rs`).
//!
//! The GEMM first rewrites each panel block's `[K/4][16 pixels][4 k]` bytes as i16, each 4-k
//! group as two halves of `[16 pixels][2 k]`, once for all the call's rows; each row's 16 sums
//! then take, per pair of k, four SSE2 `pmaddwd` (baseline on every x86-64 CPU: the i16
//! products of two k added into i32, exactly), or elsewhere the same sums in plain Rust.
//! Integer sums, so any order gives the same i32 values. INT8 at batch 1 on the scalar path
//! (Zen 4, forced with `KESTREL_ISA=scalar`, 2 threads, builds alternating), ms a call:
//! ResNet-18 645–656 summing one pixel's K at a time, 240–256 with 16 pixels per weight in
//! 16-bit products, 55–58 with `pmaddwd`; shapes-resnet18 3.90, 1.56–2.10, 0.61–0.71;
//! blobs-unet 13.1–14.8, 5.2–7.2, 1.59–1.67. Not timed on ARM hardware (the plain loop runs
//! there).

use std::ops::Range;

use super::{block_stride, PackedWeights, BLOCK};

/// `acc[c − rows.start][p]` for every channel in `rows` and every pixel of the panel (plain
/// indexing: bad sizes panic on a bounds check rather than corrupt memory).
pub fn qgemm_u8s8_scalar(w: &PackedWeights, s8: &[i8], rows: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
    let kpad = w.kpad;
    let r0 = rows.start;
    // One block's activations as i16, each 4-k group `[2 halves][16 pixels][2 k]`: k 0 and 1
    // of every pixel, then k 2 and 3.
    let mut xs = vec![0i16; kpad * BLOCK];
    for b in 0..nblocks {
        let blk = &panel[b * block_stride(kpad)..][..kpad * BLOCK];
        for (x, xk) in blk.chunks_exact(4 * BLOCK).zip(xs.chunks_exact_mut(4 * BLOCK)) {
            for (p, x4) in x.chunks_exact(4).enumerate() {
                for (j, &v) in x4.iter().enumerate() {
                    xk[j / 2 * 2 * BLOCK + 2 * p + j % 2] = i16::from(v);
                }
            }
        }
        for c in rows.clone() {
            let at = (c - r0) * out_rs + b * BLOCK;
            row_sums(&xs, &s8[c * kpad..(c + 1) * kpad], &mut out[at..at + BLOCK]);
        }
    }
}

/// `out[p] = Σ_k x[k][p] · w[k]` over one block rewritten by [`qgemm_u8s8_scalar`], on SSE2
/// (part of every x86-64 CPU): `pmaddwd` multiplies the i16 pairs of two k and adds them into
/// i32, exactly (|255 · 128| · 2 fits), four pixels a vector.
#[cfg(target_arch = "x86_64")]
fn row_sums(xs: &[i16], w: &[i8], out: &mut [i32]) {
    use std::arch::x86_64::*;
    assert!(xs.len() >= w.len() * BLOCK && w.len() % 4 == 0 && out.len() >= BLOCK, "qgemm: scalar row sums out of bounds");
    // SAFETY (both): SSE2 is part of the x86-64 baseline; no memory is touched.
    let pair = |a: i8, b: i8| unsafe { _mm_set1_epi32(i32::from(i16::from(a) as u16) | (i32::from(i16::from(b)) << 16)) };
    let mut acc = [unsafe { _mm_setzero_si128() }; BLOCK / 4];
    for (xk, w4) in xs.chunks_exact(4 * BLOCK).zip(w.chunks_exact(4)) {
        let (w01, w23) = (pair(w4[0], w4[1]), pair(w4[2], w4[3]));
        for (q, a) in acc.iter_mut().enumerate() {
            // SAFETY: SSE2 is part of the x86-64 baseline; `xk` holds 4·16 i16, so the 8 at
            // 8·q (q < 4) and at 32 + 8·q lie inside it (unaligned loads).
            unsafe {
                let lo = _mm_loadu_si128(xk.as_ptr().add(8 * q) as *const __m128i);
                let hi = _mm_loadu_si128(xk.as_ptr().add(2 * BLOCK + 8 * q) as *const __m128i);
                *a = _mm_add_epi32(*a, _mm_add_epi32(_mm_madd_epi16(lo, w01), _mm_madd_epi16(hi, w23)));
            }
        }
    }
    for (q, a) in acc.iter().enumerate() {
        // SAFETY: SSE2 (baseline); `out` holds 16 i32 (asserted), so the 4 at 4·q fit.
        unsafe { _mm_storeu_si128(out.as_mut_ptr().add(4 * q) as *mut __m128i, *a) };
    }
}

/// [`row_sums`] in plain Rust where there is no SSE2: each pixel's pairs of k.
#[cfg(not(target_arch = "x86_64"))]
fn row_sums(xs: &[i16], w: &[i8], out: &mut [i32]) {
    let mut acc = [0i32; BLOCK];
    for (xk, w4) in xs.chunks_exact(4 * BLOCK).zip(w.chunks_exact(4)) {
        for (half, wp) in xk.chunks_exact(2 * BLOCK).zip(w4.chunks_exact(2)) {
            let (w0, w1) = (i32::from(wp[0]), i32::from(wp[1]));
            for (a, x2) in acc.iter_mut().zip(half.chunks_exact(2)) {
                *a += i32::from(x2[0]) * w0 + i32::from(x2[1]) * w1;
            }
        }
    }
    out[..BLOCK].copy_from_slice(&acc);
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
