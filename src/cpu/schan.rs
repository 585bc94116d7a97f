//! FP32 direct convolution of small maps with a long K, the output channels in the vector
//! lanes and K in chunks: the f32 counterpart of [`crate::cpu::bchan`].
//!
//! On a 7 × 7 output the GEMM path of [`crate::cpu::sconv`] fills 49 of 64 pixel lanes (a
//! padded 3 × 3 conv computes 55 virtual columns: a 48-column tile and a 16-column one that
//! does a third of its work per broadcast), and [`crate::cpu::slanes`]' 16-pixel tiles read a
//! slice's whole `K · 64`-byte weights from L2 for every few pixels. Here a register tile
//! holds [`PX`] output pixels × up to [`VECS`] vectors of 16 output channels (21 accumulators);
//! per K step it loads one weight vector per channel vector and broadcasts each pixel's input
//! from the padded planes ([`LanesConv`]'s `koff`, the pixel's window corner added), so every
//! lane is a real channel of a real pixel. The weights are [`LanesConv`]'s `[slices][K][16]`
//! (a tile reads `V` slices side by side).
//!
//! Work: each worker takes a contiguous range of 16-channel slices (so two workers stream
//! disjoint halves of the weights), cut into panels of up to [`VECS`] slices; the batch's
//! pixels form one list of tiles, and a panel runs over groups of up to [`GROUP`] of them,
//! K in chunks of [`KCHUNK`] steps, each chunk over all the group's tiles (their
//! accumulators kept in memory between chunks): a chunk's weights come from memory once and
//! serve the group's other tiles from L1, and the tiles share out the prefetch of the next
//! chunk's lines. The epilogue adds the bias, applies the activation and writes each channel's
//! pixels into its NCHW output row.
//!
//! Arithmetic: `acc = residual or 0; for k in order: acc = fma(w, x, acc)`, then `acc + bias`
//! and the activation, as [`crate::cpu::reference::conv2d_fma_ref`] (with the products of the
//! padding, as every tile of `sconv` and `slanes`); an accumulator stored between chunks and
//! loaded back is the same f32, so the AVX-512 tile and the scalar twin agree bit for bit.

use crate::detmath;
use super::parallel::{par_for, OutPtr};
use super::sconv::PAR_MIN_MACS;
use super::sgemm::lanes::LANES;
use super::sgemm::{finish, Act, Kernel};
use super::slanes::LanesConv;
use crate::graph::Conv2d;

/// Output pixels per register tile.
pub const PX: usize = 7;
/// Vectors of 16 output channels per register tile.
pub const VECS: usize = 3;
/// Pixel tiles whose accumulators stay in memory together while the K chunks run over them.
const GROUP: usize = 16;
/// K steps per chunk: 64 steps of a 48-channel panel's weights are 12 KiB, in L1 for the
/// group's other tiles.
const KCHUNK: usize = 64;
/// f32 of a tile's accumulators, `[PX][VECS · 16]`.
const BUF: usize = PX * VECS * LANES;
/// The kernel's name in reports.
pub const NAME: &str = "avx512f 7x48 channel lanes, K chunks";

/// Output pixels up to which a conv runs here: ResNet-50's 3×3 stride-2 conv onto 7 × 7 ran
/// 0.78–0.85 of the GEMM path's time (Zen 5, 2 threads, in the model); its 3×3 stride-2 conv
/// onto 14 × 14 the same time as there.
pub const MAX_PIXELS: usize = 64;
/// Output pixels of the whole batch up to which a conv runs here (batch 2 of 7 × 7 maps):
/// with more, the GEMM path's 48-column tiles are full and its K blocks long. ResNet-50's
/// `layer4.0.conv2` (Zen 5, 2 threads, in the model): batch 2 1.22 ms here against 1.43,
/// batch 4 3.11 against 2.81, batch 8 4.80 against 4.46 (whole model 0.983 of the time).
pub const MAX_BATCH_PIXELS: usize = 128;
/// K from which a conv runs here: shorter, the GEMM path's weight stream is no burden.
pub const MIN_K: usize = 512;

/// Whether the plan runs conv `c` (input `xs`, output `os`) here on `kernel`: AVX-512, one
/// group of at least 64 output channels, an output of at most [`MAX_PIXELS`], a
/// column stride of 1 or 2, a K of at least [`MIN_K`], and a kernel larger than 1 × 1 (the
/// 1 × 1 stride-2 downsample onto 7 × 7 ran 1.09× the GEMM path's time; stride-1 ones
/// are GEMMs reading their input in place), and at most [`MAX_BATCH_PIXELS`] over the batch,
/// whose pixels form one list of tiles.
pub fn pays(kernel: Kernel, c: &Conv2d, xs: [usize; 4], os: [usize; 4]) -> bool {
    #[cfg(target_arch = "x86_64")]
    let wide = matches!(kernel, Kernel::Avx512(_));
    #[cfg(not(target_arch = "x86_64"))]
    let wide = { let _ = kernel; false };
    let kdim = xs[1] * c.kernel()[0] * c.kernel()[1];
    let npix = os[2] * os[3];
    wide && c.groups.max(1) == 1
        && os[1] >= 64
        && npix <= MAX_PIXELS
        && os[0] * npix <= MAX_BATCH_PIXELS
        && !super::sconv::is_narrow(os)
        && kdim >= MIN_K
        && c.kernel() != [1, 1]
        && (1..=2).contains(&c.stride[1])
}

/// Packs conv `c` for input `xs` and output `os` to run here (through
/// [`crate::cpu::slanes::conv2d`]): [`crate::cpu::slanes::prepare`]'s packing, one group only.
pub fn prepare(c: &Conv2d, xs: [usize; 4], os: [usize; 4]) -> Option<LanesConv> {
    if c.groups.max(1) != 1 {
        return None;
    }
    let mut lc = super::slanes::prepare(c, xs, os)?;
    lc.chunked = true;
    Some(lc)
}

/// Runs conv `lc` over the padded planes `padded` (`[N·Cin][hp][wp]`, or the input itself
/// without padding) into `out` (`[N][Cout][OH·OW]`, every element written), the residual
/// (elements of the output's shape, possibly `out` itself: read before written) starting the
/// accumulators. `act` is the fused activation.
///
/// # Safety
/// `padded` holds every tap of every output pixel (as [`LanesConv`]'s `koff` and planes
/// describe it); `out` and a residual hold `N · Cout · OH · OW` elements that no other thread
/// touches during the call, and outlive it.
pub(crate) unsafe fn run(kernel: Kernel, lc: &LanesConv, padded: &[f32], act: Act, residual: Option<OutPtr<f32>>, out: OutPtr<f32>, threads: usize) {
    let [n, cin, _, _] = lc.xs;
    let [_, cout, oh, ow] = lc.os;
    let [sy, sx, hp, wp] = lc.planes;
    let (npix, kdim, slices) = (oh * ow, lc.kdim, lc.slices);
    let image = cin * hp * wp;
    let weights = &lc.weights[0];
    let bias = lc.bias[0].as_slice();
    assert!(lc.weights.len() == 1 && weights.len() >= slices * kdim * LANES && padded.len() >= n * image && lc.koff.len() == kdim, "schan: planes or weights do not match the conv");
    if n == 0 || npix == 0 || cout == 0 {
        return;
    }
    // Every pixel of the batch: its window corner in the planes, and its output offset; the
    // pixel tiles (as even as PX allows) run in groups of at most GROUP.
    let total = n * npix;
    let corner: Vec<usize> = (0..total).map(|i| (i / npix) * image + (i % npix / ow) * sy * wp + (i % npix % ow) * sx).collect();
    let at_out: Vec<usize> = (0..total).map(|i| (i / npix) * cout * npix + i % npix).collect();
    // The farthest K offset, found once (the tiles check their reads against it).
    let koff_max = lc.koff.iter().copied().max().unwrap_or(0);
    let img = &padded[..n * image];
    let tiles = total.div_ceil(PX);
    let groups = tiles.div_ceil(GROUP);
    let macs = n * cout * npix * kdim;
    let workers = if threads <= 1 || macs < PAR_MIN_MACS { 1 } else { threads.min(slices) };
    let part = |wi: usize| {
        // Whole wrappers, not their raw pointer fields, go into the closure.
        let (out, residual) = (&out, &residual);
        let (s0, s1) = (slices * wi / workers, slices * (wi + 1) / workers);
        let mut acc = [[0f32; BUF]; GROUP];
        let mut p0 = s0;
        while p0 < s1 {
            let v = VECS.min(s1 - p0);
            // The panel after this one (for the prefetch of its first chunk).
            let next = (p0 + v < s1).then(|| (p0 + v, VECS.min(s1 - p0 - v)));
            for gi in 0..groups {
                let (t0, t1) = (tiles * gi / groups, tiles * (gi + 1) / groups);
                let tile_px = |t: usize| (total * t / tiles, total * (t + 1) / tiles);
                // Start: the residual or zero.
                for t in t0..t1 {
                    let (i0, i1) = tile_px(t);
                    let buf = &mut acc[t - t0];
                    for (q, i) in (i0..i1).enumerate() {
                        for l in 0..v * LANES {
                            let co = p0 * LANES + l;
                            buf[q * VECS * LANES + l] = match (residual, co < cout) {
                                // SAFETY: a real channel and pixel of the residual (the
                                // caller's contract).
                                (Some(r), true) => unsafe { *r.0.add(at_out[i] + co * npix) },
                                _ => 0.0,
                            };
                        }
                    }
                }
                for k0 in (0..kdim.max(1)).step_by(KCHUNK) {
                    let k1 = (k0 + KCHUNK).min(kdim);
                    // The next chunk's weight lines: this panel's, or the next panel's first.
                    let (pf_slice, pf_v, pf_k, pf_len) = if k1 < kdim {
                        (p0, v, k1, KCHUNK.min(kdim - k1))
                    } else if let (Some((q0, qv)), true) = (next, gi + 1 == groups) {
                        (q0, qv, 0, KCHUNK.min(kdim))
                    } else {
                        (p0, 0, 0, 0)
                    };
                    for t in t0..t1 {
                        let (i0, i1) = tile_px(t);
                        let np = i1 - i0;
                        let mut px = [0usize; PX];
                        for (q, p) in px.iter_mut().enumerate() {
                            *p = corner[i0 + q.min(np - 1)];
                        }
                        let at = Tile {
                            w: &weights[p0 * kdim * LANES..],
                            wstride: kdim * LANES,
                            img,
                            koff: &lc.koff,
                            koff_max,
                            px,
                            pf: weights[pf_slice * kdim * LANES..].as_ptr(),
                            pf_lines: pf_v * pf_len,
                            pf_len: pf_len.max(1),
                            pf_k,
                            pf_slot: (t - t0) * (k1 - k0),
                        };
                        let buf = &mut acc[t - t0];
                        match kernel {
                            // SAFETY: the token proves AVX-512F; `tile` checks its reads.
                            #[cfg(target_arch = "x86_64")]
                            Kernel::Avx512(_) => unsafe { dispatch(np, v, &at, [k0, k1], buf) },
                            #[allow(unreachable_patterns)]
                            _ => at.scalar(np, v, [k0, k1], buf),
                        }
                    }
                }
                for t in t0..t1 {
                    let (i0, i1) = tile_px(t);
                    let buf = &acc[t - t0];
                    for (q, i) in (i0..i1).enumerate() {
                        for l in 0..(v * LANES).min(cout - p0 * LANES) {
                            let co = p0 * LANES + l;
                            let y = finish(buf[q * VECS * LANES + l], bias.get(co).copied(), act);
                            // SAFETY: a real channel and pixel of the output, which only this
                            // part writes (its slices), after every read of the residual at
                            // this element (the start above).
                            unsafe { *out.0.add(at_out[i] + co * npix) = y };
                        }
                    }
                }
            }
            p0 += v;
        }
    };
    if workers == 1 {
        part(0);
    } else {
        par_for(workers, part);
    }
}

/// One register tile's inputs.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile<'a> {
    /// The panel's first slice `[K][16]`, the next slices `wstride` floats apart.
    w: &'a [f32],
    wstride: usize,
    /// The image's padded planes, each K step's offset in them, and each tile pixel's window
    /// corner (a short tile repeats its last).
    img: &'a [f32],
    koff: &'a [usize],
    /// The largest of `koff`.
    koff_max: usize,
    px: [usize; PX],
    /// Prefetch of the next chunk: its first slice (`wstride` apart), its lines (`pf_len` per
    /// slice, from K step `pf_k`), and this tile's first line of them.
    pf: *const f32,
    pf_lines: usize,
    pf_len: usize,
    pf_k: usize,
    pf_slot: usize,
}

impl Tile<'_> {
    /// Whether every read of `v` slices and K steps below `k1` lies inside the weights and
    /// the planes.
    fn in_bounds(&self, v: usize, k1: usize) -> bool {
        let px_max = self.px.iter().copied().max().unwrap_or(0);
        v <= VECS
            && k1 <= self.koff.len()
            && (v == 0 || (v - 1) * self.wstride + k1 * LANES <= self.w.len())
            && (k1 == 0 || self.koff_max + px_max < self.img.len())
    }

    /// The twin: `buf[q][l]` continued over K steps `k0..k1` for pixels `q < np`, channels
    /// `l < 16·v`.
    fn scalar(&self, np: usize, v: usize, [k0, k1]: [usize; 2], buf: &mut [f32; BUF]) {
        assert!(np <= PX && self.in_bounds(v, k1), "schan: tile reads past the weights or the planes");
        for q in 0..np {
            for l in 0..v * LANES {
                let (s, j) = (l / LANES, l % LANES);
                let mut a = buf[q * VECS * LANES + l];
                for k in k0..k1 {
                    a = detmath::fma(self.w[s * self.wstride + k * LANES + j], self.img[self.koff[k] + self.px[q]], a);
                }
                buf[q * VECS * LANES + l] = a;
            }
        }
    }
}

/// [`tile`] of `np` pixels and `v` vectors.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn dispatch(np: usize, v: usize, at: &Tile, ks: [usize; 2], buf: &mut [f32; BUF]) {
    macro_rules! by_vectors {
        ($p:literal) => {
            // SAFETY: the caller's CPU contract.
            unsafe {
                match v {
                    1 => tile::<$p, 1>(at, ks, buf),
                    2 => tile::<$p, 2>(at, ks, buf),
                    _ => tile::<$p, 3>(at, ks, buf),
                }
            }
        };
    }
    match np {
        1 => by_vectors!(1),
        2 => by_vectors!(2),
        3 => by_vectors!(3),
        4 => by_vectors!(4),
        5 => by_vectors!(5),
        6 => by_vectors!(6),
        _ => by_vectors!(7),
    }
}

/// The AVX-512 tile of `P` pixels × `V` vectors of channels over K steps `k0..k1`, from and
/// into `buf[q][16·v..]`.
///
/// # Safety
/// The CPU has AVX-512F (the reads are checked here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn tile<const P: usize, const V: usize>(at: &Tile, [k0, k1]: [usize; 2], buf: &mut [f32; BUF]) {
    use std::arch::x86_64::*;
    assert!(P <= PX && at.in_bounds(V, k1), "schan: tile reads past the weights or the planes");
    let (w, img, koff) = (at.w.as_ptr(), at.img.as_ptr(), at.koff.as_ptr());
    // SAFETY (whole body): weight loads read floats s·wstride + 16·k .. + 16 of `w` for s < V,
    // k < k1; broadcasts read koff[k] + px[q] < img.len() (`in_bounds`); buf lanes
    // q·48 + 16·v + 16 ≤ BUF; prefetches never fault.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; P];
        for (q, row) in acc.iter_mut().enumerate() {
            for (v, y) in row.iter_mut().enumerate() {
                *y = _mm512_loadu_ps(buf.as_ptr().add(q * VECS * LANES + LANES * v));
            }
        }
        // Each pixel's window corner, and this tile's first prefetch line as (slice, row).
        let xq: [*const f32; P] = std::array::from_fn(|q| img.add(at.px[q]));
        let mut line = at.pf_slot;
        let (mut ps, mut pr) = (line / at.pf_len, line % at.pf_len);
        for k in k0..k1 {
            // This tile's share of the next chunk's weight lines.
            if line < at.pf_lines {
                _mm_prefetch::<_MM_HINT_T0>(at.pf.wrapping_add(ps * at.wstride + (at.pf_k + pr) * LANES) as *const i8);
                line += 1;
                pr += 1;
                if pr == at.pf_len {
                    (ps, pr) = (ps + 1, 0);
                }
            }
            let wv: [__m512; V] = std::array::from_fn(|v| _mm512_loadu_ps(w.add(v * at.wstride + k * LANES)));
            let off = *koff.add(k);
            for (q, row) in acc.iter_mut().enumerate() {
                let x = _mm512_set1_ps(*xq[q].add(off));
                for v in 0..V {
                    row[v] = _mm512_fmadd_ps(wv[v], x, row[v]);
                }
            }
        }
        for (q, row) in acc.iter().enumerate() {
            for (v, &y) in row.iter().enumerate() {
                _mm512_storeu_ps(buf.as_mut_ptr().add(q * VECS * LANES + LANES * v), y);
            }
        }
    }
}
