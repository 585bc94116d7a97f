//! The scalar twin of every FP32 kernel: the same tile contract, one element at a time, in the
//! same operation order ([`crate::detmath::fma`], the fused multiply-add the vector kernels do), so
//! the vector kernels must match it bit for bit.

use crate::detmath;
use super::{finish, Epilogue, Geometry, Init, Tile};

/// One tile of geometry `g`, as [`super::Kernel::tile`] computes it.
///
/// # Safety
/// As for [`super::Kernel::tile`], for geometry `g`.
pub unsafe fn tile(g: Geometry, a: *const f32, b: *const f32, c: *mut f32, t: Tile, init: Init, epi: Option<&Epilogue>) {
    for r in 0..t.rows {
        for j in 0..t.cols {
            // SAFETY: r < t.rows and j < t.cols address the tile, which the caller guarantees
            // valid; a holds kc · MR floats and b rows of t.cols at stride t.ldb or at the
            // offsets t.b_rows.
            unsafe {
                let mut acc = match init {
                    Init::Zero => 0.0,
                    Init::Output => *c.add(r * t.ldc + j),
                    Init::Residual(res) => *res.add(r * t.ldc + j),
                };
                for k in 0..t.kc {
                    let at = if t.b_rows.is_null() {
                        k * t.ldb + j
                    } else if t.b_vstride > 0 {
                        *t.b_rows.add(k) + j / g.lanes * t.b_vstride + j % g.lanes
                    } else {
                        *t.b_rows.add(k) + j
                    };
                    acc = detmath::fma(*a.add(k * g.mr + r), *b.add(at), acc);
                }
                *c.add(r * t.ldc + j) = match epi {
                    Some(e) => finish(acc, e.bias.map(|b| b[r]), e.act),
                    None => acc,
                };
            }
        }
    }
}

/// `dst[j] = src[idx[j]]` where `idx[j] ≥ 0`, else 0, as [`super::Kernel::gather`] computes it.
///
/// # Safety
/// Every non-negative `idx[j]` addresses a readable element of `src`.
pub unsafe fn gather(dst: &mut [f32], src: *const f32, idx: &[i32]) {
    for (d, &i) in dst.iter_mut().zip(idx) {
        // SAFETY: the caller guarantees every non-negative index is in bounds.
        *d = if i >= 0 { unsafe { *src.add(i as usize) } } else { 0.0 };
    }
}

/// [`super::Kernel::permute_maps`], one lane at a time.
///
/// # Safety
/// The contract of [`super::Kernel::permute_maps`] (without the AVX-512 requirement).
#[allow(clippy::too_many_arguments)]
pub unsafe fn permute_maps(dst: *mut f32, src: *const f32, image_stride: usize, npix: usize, images: usize, first: usize, chunks: usize, perm: &[i32; 16], mask: u16) {
    for c in 0..chunks {
        for (l, &p) in perm.iter().enumerate() {
            let b = (first + c) * (16 / npix) + p as usize / npix;
            let live = mask >> l & 1 == 1 && b < images;
            // SAFETY: a live lane reads pixel p % npix of image b < images (contract); dst
            // holds 16 floats per chunk.
            unsafe { *dst.add(c * 16 + l) = if live { *src.add(b * image_stride + p as usize % npix) } else { 0.0 } };
        }
    }
}
