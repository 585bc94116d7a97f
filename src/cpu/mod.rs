//! CPU FP32 kernels. Activations are NCHW f32. Each fast kernel here has a plain twin in
//! [`reference`](mod@reference) with the same contract, always compiled, that tests compare against.

pub mod aligned;
pub mod amx;
pub mod bchan;
pub mod bdot;
pub mod bconv;
pub mod bgemm;
pub mod blinear;
pub mod codec;
pub mod conv;
pub mod conv_transpose;
pub mod detect;
pub mod elementwise;
pub(crate) mod epilogue;
pub mod evict;
pub mod kernels;
pub mod linear;
pub mod pad;
pub mod parallel;
pub mod placement;
pub mod pool;
pub mod qconv;
pub mod qgemm;
pub mod reference;
pub mod resize;
pub mod schan;
pub mod sconv;
pub mod sgemm;
pub mod slanes;
pub mod spos;
pub mod wino;
#[macro_use]
pub mod simd;

/// Elements below which a memory-bound op (pooling, an elementwise op over planes, a copy)
/// stays on the calling thread: waking a second worker costs about what it saves, ~10 µs.
pub const PAR_MIN_ELEMS: usize = 1 << 15;

/// The fewest items of `item_elems` elements each that a parallel iterator hands one worker
/// (`with_min_len`), so that work under [`PAR_MIN_ELEMS`] is never split (nor any, inside
/// [`parallel::alone`]: [`parallel::min_len`]).
pub fn min_items(item_elems: usize) -> usize {
    parallel::min_len((PAR_MIN_ELEMS / item_elems.max(1)).max(1))
}

/// `dst[j] = src[x0 + j·step]` where that column lies in `src`, 0 elsewhere: one padded,
/// strided row of an im2col or stride-phase copy. The in-range columns `lo..hi` are computed
/// once, so no element is tested.
#[inline]
pub(crate) fn strided_row(dst: &mut [f32], src: &[f32], x0: isize, step: usize) {
    let (n, w) = (dst.len(), src.len());
    let lo = if x0 >= 0 { 0 } else { ((-x0) as usize).div_ceil(step) }.min(n);
    let hi = if x0 >= w as isize { lo } else { (((w as isize - 1 - x0) as usize) / step + 1).clamp(lo, n) };
    dst[..lo].fill(0.0);
    dst[hi..].fill(0.0);
    // A tap entirely in the padding leaves lo == hi, where `x0 + lo·step` may lie outside src.
    if lo < hi {
        let start = (x0 + (lo * step) as isize) as usize;
        if step == 1 {
            dst[lo..hi].copy_from_slice(&src[start..start + hi - lo]);
        } else {
            for (d, s) in dst[lo..hi].iter_mut().zip(src[start..].iter().step_by(step)) {
                *d = *s;
            }
        }
    }
}

/// Runs `gemm` (`dst = alpha·dst + beta·lhs·rhs`) for f32 matrices given by raw strides.
///
/// `lhs` is `[m, k]`, `rhs` is `[k, n]`, `dst` is `[m, n]`, each addressed as
/// `base + row * rs + col * cs`.
#[allow(clippy::too_many_arguments)]
pub(crate) fn sgemm(
    m: usize,
    n: usize,
    k: usize,
    dst: &mut [f32],
    dst_rs: usize,
    accumulate: bool,
    lhs: &[f32],
    (lhs_rs, lhs_cs): (usize, usize),
    rhs: &[f32],
    (rhs_rs, rhs_cs): (usize, usize),
    threads: usize,
) {
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for r in 0..m {
                dst[r * dst_rs..r * dst_rs + n].fill(0.0);
            }
        }
        return;
    }
    let last = |rs: usize, cs: usize, rows: usize, cols: usize| (rows - 1) * rs + (cols - 1) * cs;
    assert!(last(dst_rs, 1, m, n) < dst.len(), "sgemm: dst too small");
    assert!(last(lhs_rs, lhs_cs, m, k) < lhs.len(), "sgemm: lhs too small");
    assert!(last(rhs_rs, rhs_cs, k, n) < rhs.len(), "sgemm: rhs too small");
    let par = if threads > 1 && m * n * k >= 32 * 1024 {
        gemm::Parallelism::Rayon(threads)
    } else {
        gemm::Parallelism::None
    };
    // SAFETY: the asserts above prove that every element addressed by (rows, cols, strides)
    // lies inside its slice; `dst` is borrowed mutably so nothing else aliases it.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            dst_rs as isize,
            accumulate,
            lhs.as_ptr(),
            lhs_cs as isize,
            lhs_rs as isize,
            rhs.as_ptr(),
            rhs_cs as isize,
            rhs_rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            par,
        );
    }
}
