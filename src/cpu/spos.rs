//! FP32 convolution of a batch of small maps by output position: each output position's GEMM
//! runs over the batch, with only the kernel taps that read the input at that position.
//!
//! On a 2 × 2 map a 3 × 3 pad-1 conv reads padding through 5 of its 9 taps at every output
//! pixel; the im2col of [`crate::cpu::sconv`] multiplies those zeros all the same (a 2 × 2 map
//! does 2.25× the multiply-adds that reach the input, a 4 × 4 one 1.44×). Here, per output
//! position `p` (`oy·OW + ox`), the live taps are a window `[ky0, ky1) × [kx0, kx1)` (per axis,
//! the taps whose input row or column lies inside the map), and
//! `out[b][co][p] = act(Σ_{ci, (ky, kx) in window} W[co][ci][ky][kx] · x[b][ci][iy][ix] + bias[co]
//! (+ residual))`, a GEMM `[Cout] × [Cin·|window|]` by `[Cin·|window|] × [N]`:
//! - positions with the same window share one packed weight matrix ([`Class`]);
//! - the input is transposed once per call to `[Cin][H][W][N]`, so every B row (one channel
//!   and tap at this position) is a contiguous run of `N` floats, read in place at a per-row
//!   offset ([`crate::cpu::sgemm::Tile::b_rows`]);
//! - C is a staging buffer `[Cout][OH·OW][N]` (a residual is transposed into it first and
//!   starts the accumulators), transposed to NCHW at the end.
//!
//! Every element is `acc = residual or 0; for (ci, ky, kx) in order, live taps only: acc =
//! fma(w, x, acc)`; then `acc + bias` and the activation: [`crate::cpu::reference::conv2d_fma_ref`]'s
//! operations without the products of padding, which only add `w · 0` (so the two agree up
//! to the sign of an exactly-zero sum, as with [`crate::graph::live_taps`]).

use super::parallel::{par_for, OutPtr};
use super::sgemm::{Epilogue, Init, Kernel, PackedA, Tile};
use crate::graph::Conv2d;

/// Output maps of at most this many pixels take this path (at batch [`MIN_BATCH`] and more,
/// when some position has dead taps).
pub const MAX_PIXELS: usize = 16;

/// The plan takes this path only where at most this fraction of the multiply-adds remains
/// ([`PosConv::live_fraction`]): a 2 × 2 map of a 3 × 3 pad-1 conv keeps 0.44, and its convs
/// ran 1.5–1.7× faster inside shapes-resnet18 at batch 64 (1.9× alone, 2 threads); a 4 × 4
/// map keeps 0.69, and its convs ran 1.1–1.35× faster once the transposes were split over the
/// workers (no faster before). 8 × 8 maps keep 0.84 and ran 1.3–1.5× slower by position
/// (layer1 of the same model: 64 GEMMs of 16 rows each).
pub const PAYS_BELOW: f64 = 0.7;

/// The smallest batch that takes this path: with fewer images each position's GEMM has too few
/// columns, and the maps run in channel lanes (`cpu::slanes`) instead. shapes-resnet18 f32 on
/// Zen 4, 2 threads, by position against channel lanes (ms a batch): batch 2 0.254–0.257
/// against 0.128–0.165, 4 0.313–0.332 against 0.239–0.245, 8 0.357–0.443 against 0.338–0.341,
/// 16 0.551–0.580 against 0.576–0.592, 32 0.90–0.92 against 1.08–1.09, 64 1.82–2.03 against
/// 2.19–2.35.
pub const MIN_BATCH: usize = 16;

/// The output positions that share one window of live taps, and its weights.
#[derive(Clone, Debug)]
pub struct Class {
    /// Live taps `[ky0, ky1) × [kx0, kx1)`.
    pub ky: (usize, usize),
    pub kx: (usize, usize),
    /// Output positions `oy·OW + ox`.
    pub positions: Vec<usize>,
    /// Per position, the offset in the transposed input of each B row (channel `ci`, tap `(y,
    /// x)` of the window, in `packed`'s K order): `(ci·H·W + iy·W + ix)·N`.
    pub rows: Vec<Vec<usize>>,
    /// `[Cout][Cin·|window|]` in `(ci, ky, kx)` order, packed for the kernel.
    pub packed: PackedA,
}

/// A conv prepared for one input and output size: its classes of positions.
#[derive(Clone, Debug)]
pub struct PosConv {
    pub classes: Vec<Class>,
    /// The input `[N, Cin, H, W]` and output `[OH, OW]` the classes were made for.
    pub xs: [usize; 4],
    pub ohw: [usize; 2],
    /// Taps of the whole kernel.
    pub taps: usize,
}

impl PosConv {
    /// The fraction of the direct conv's multiply-adds this one does: live taps summed over
    /// the positions, over positions × taps.
    pub fn live_fraction(&self) -> f64 {
        let live: usize = self.classes.iter().map(|c| c.positions.len() * (c.ky.1 - c.ky.0) * (c.kx.1 - c.kx.0)).sum();
        live as f64 / (self.ohw[0] * self.ohw[1] * self.taps) as f64
    }

    /// Bytes of packed weights.
    pub fn bytes(&self) -> usize {
        self.classes.iter().map(|c| c.packed.bytes()).sum()
    }
}

/// The live taps `[t0, t1)` of output coordinate `o` on an axis of `len` input pixels.
fn window(o: usize, len: usize, k: usize, s: usize, d: usize, pad: usize) -> (usize, usize) {
    let live = |t: usize| (o * s + t * d).checked_sub(pad).is_some_and(|i| i < len);
    let t0 = (0..k).find(|&t| live(t)).unwrap_or(k);
    let t1 = (t0..k).find(|&t| !live(t)).unwrap_or(k);
    (t0, t1)
}

/// The conv `c` by output position for input `[n, cin, h, w]` and output `[oh, ow]` on `kernel`, or
/// `None` where it does not pay or does not apply: a grouped conv, a map of more than
/// [`MAX_PIXELS`] pixels, no dead tap anywhere, or an output that reads only padding.
pub fn prepare(kernel: Kernel, c: &Conv2d, xs: [usize; 4], [oh, ow]: [usize; 2]) -> Option<PosConv> {
    let [n, _, h, w] = xs;
    let [kh, kw] = c.kernel();
    if c.groups != 1 || oh * ow > MAX_PIXELS || oh * ow == 0 || xs[1] != c.in_channels() {
        return None;
    }
    let (cout, cin) = (c.out_channels(), c.in_channels());
    let rows: Vec<(usize, usize)> = (0..oh).map(|o| window(o, h, kh, c.stride[0], c.dilation[0], c.pads[0])).collect();
    let cols: Vec<(usize, usize)> = (0..ow).map(|o| window(o, w, kw, c.stride[1], c.dilation[1], c.pads[1])).collect();
    // Nothing to gain with every tap live; an output that reads only padding (an empty
    // window) is left to the im2col path.
    if rows.iter().chain(&cols).any(|r| r.0 == r.1) || (rows.iter().all(|&r| r == (0, kh)) && cols.iter().all(|&r| r == (0, kw))) {
        return None;
    }
    let wt = c.weight.data();
    let mut classes: Vec<Class> = Vec::new();
    for p in 0..oh * ow {
        let (ky, kx) = (rows[p / ow], cols[p % ow]);
        let (oy, ox) = (p / ow, p % ow);
        let mut offs = Vec::with_capacity(cin * (ky.1 - ky.0) * (kx.1 - kx.0));
        for ch in 0..cin {
            for y in ky.0..ky.1 {
                // The window's taps are live: the subtraction stays in the map.
                let iy = oy * c.stride[0] + y * c.dilation[0] - c.pads[0];
                for xx in kx.0..kx.1 {
                    let ix = ox * c.stride[1] + xx * c.dilation[1] - c.pads[1];
                    offs.push((ch * h * w + iy * w + ix) * n);
                }
            }
        }
        if let Some(cl) = classes.iter_mut().find(|cl| cl.ky == ky && cl.kx == kx) {
            cl.positions.push(p);
            cl.rows.push(offs);
            continue;
        }
        let taps = (ky.1 - ky.0) * (kx.1 - kx.0);
        let mut sub = Vec::with_capacity(cout * cin * taps);
        for co in 0..cout {
            for ci in 0..cin {
                for y in ky.0..ky.1 {
                    for x in kx.0..kx.1 {
                        sub.push(wt[((co * cin + ci) * kh + y) * kw + x]);
                    }
                }
            }
        }
        let packed = PackedA::new(&sub, cout, cin * taps, kernel.geometry().mr);
        classes.push(Class { ky, kx, positions: vec![p], rows: vec![offs], packed });
    }
    Some(PosConv { classes, xs, ohw: [oh, ow], taps: kh * kw })
}

/// Scratch elements [`conv2d`] needs: the transposed input and the staging buffer.
pub fn scratch_len(xs: [usize; 4], os: [usize; 4]) -> usize {
    xs.iter().product::<usize>() + os.iter().product::<usize>()
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`
/// with `pc` from [`prepare`] for this conv, these sizes and `kernel`.
///
/// # Panics
/// When a buffer is smaller than its shape says or `pc` was made for other sizes.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(kernel: Kernel, c: &Conv2d, pc: &PosConv, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let (hw, npix) = (h * w, oh * ow);
    let geo = kernel.geometry();
    // Each class's K must be its positions' B row offsets: the tile reads exactly that many.
    let fits = |cl: &Class| cl.packed.m == cout && cl.packed.mr == geo.mr && cl.rows.iter().all(|r| r.len() == cl.packed.k);
    assert!(pc.xs == xs && pc.ohw == [oh, ow] && pc.classes.iter().all(fits), "spos: prepared for another size, conv or kernel");
    assert!(x.len() >= n * cin * hw && out.len() >= n * cout * npix && residual.is_none_or(|r| r.len() >= n * cout * npix), "spos: input, output or residual too small");
    if n == 0 || cout == 0 {
        return;
    }
    let need = scratch_len(xs, os);
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (xt, st) = scratch[..need].split_at_mut(n * cin * hw);
    let macs = n * cout * pc.classes.iter().map(|cl| cl.positions.len() * cl.packed.k).sum::<usize>();
    let workers = if threads <= 1 || macs < super::sconv::PAR_MIN_MACS { 1 } else { threads };
    // [N][C·HW] → [C·HW][N].
    transpose(kernel, &x[..n * cin * hw], n, cin * hw, xt, workers);
    if let Some(r) = residual {
        transpose(kernel, &r[..n * cout * npix], n, cout * npix, st, workers);
    }
    let (act, post) = Epilogue::split(c.act);
    // One unit per (position, panel range): every worker gets positions, or panels of one.
    let panels = cout.div_ceil(geo.mr);
    // (class, index of the position in it)
    let units: Vec<(usize, usize)> = pc.classes.iter().enumerate().flat_map(|(i, cl)| (0..cl.positions.len()).map(move |q| (i, q))).collect();
    let psplit = if units.len() >= 2 * workers { 1 } else { (2 * workers).div_ceil(units.len()).min(panels) };
    let (xt, stp) = (&*xt, OutPtr(st.as_mut_ptr()));
    let run = |u: usize| {
        let stp = &stp;
        let ((ci, q), s) = (units[u / psplit], u % psplit);
        let cl = &pc.classes[ci];
        let (p, offs) = (cl.positions[q], &cl.rows[q]);
        let k = cl.packed.k;
        let (p0, p1) = (s * panels / psplit, (s + 1) * panels / psplit);
        let nr = geo.nr();
        for panel in p0..p1 {
            let rows = (cout - panel * geo.mr).min(geo.mr);
            let epi = Epilogue { bias: c.bias.as_ref().map(|bs| &bs[panel * geo.mr..panel * geo.mr + rows]), act };
            let mut k0 = 0;
            while k0 < k {
                let kc = geo.kc.min(k - k0);
                let last = k0 + kc == k;
                let a = cl.packed.panel_from(panel, k0).as_ptr();
                let mut j0 = 0;
                while j0 < n {
                    let cols = nr.min(n - j0);
                    let t = Tile { kc, rows, cols, nv: cols.div_ceil(geo.lanes), ldb: 0, b_rows: offs[k0..].as_ptr(), ldc: npix * n, a_next: 0, b_next: 0, b_vstride: 0, c_next: 0 };
                    let init = if k0 > 0 || residual.is_some() { Init::Output } else { Init::Zero };
                    // SAFETY: A holds k − k0 ≥ kc rows of this panel; B row r is the run of n
                    // floats at offs[k0 + r] in `xt` (offsets of in-map pixels, so runs end
                    // inside it), columns j0..j0 + cols < n of it; C rows panel·mr..+rows of
                    // the staging buffer at position p, columns j0..j0 + cols, stride npix·n,
                    // which this unit alone writes (units are disjoint in (position, panel)).
                    unsafe { kernel.tile(a, xt.as_ptr().add(j0), stp.0.add((panel * geo.mr * npix + p) * n + j0), t, init, last.then_some(&epi)) };
                    j0 += cols;
                }
                k0 += kc;
            }
        }
    };
    if workers > 1 {
        par_for(units.len() * psplit, run);
    } else {
        (0..units.len() * psplit).for_each(run);
    }
    // [Cout·OH·OW][N] → [N][Cout·OH·OW].
    let out = &mut out[..n * cout * npix];
    transpose(kernel, &scratch[n * cin * hw..need], cout * npix, n, out, workers);
    if post {
        if let Some(f) = c.act {
            out.iter_mut().for_each(|v| *v = f.apply(*v));
        }
    }
}

/// `dst[j][i] = src[i][j]` for `src: [rows][cols]`, in 16 × 16 blocks (each block's reads and
/// writes stay within 16 lines), the column blocks split over `workers`. Whole blocks are
/// transposed in registers on the kernel's ISA (`block16_avx512`, or four 8 × 8 `block8_avx2`);
/// blocks cut by the matrix's edge go element by element (`block_plain`). Data movement only,
/// so the same values whichever way (`transposes_match_the_plain_loop`). The plain loop alone
/// held 8 % of shapes-resnet18's profile at batch 128 on Zen 4 (three transposes per conv).
/// (Off x86-64 `Kernel` has no variant: only the plain arm remains, and `whole` goes unused.)
#[cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, unreachable_patterns))]
fn transpose(kernel: Kernel, src: &[f32], rows: usize, cols: usize, dst: &mut [f32], workers: usize) {
    const B: usize = 16;
    assert!(src.len() >= rows * cols && dst.len() >= rows * cols, "spos: transpose buffers too small");
    let blocks = cols.div_ceil(B);
    let parts = if workers > 1 { (2 * workers).min(blocks) } else { 1 };
    let out = OutPtr(dst.as_mut_ptr());
    let part = |pi: usize| {
        let out = &out;
        for jb in pi * blocks / parts..(pi + 1) * blocks / parts {
            let j0 = jb * B;
            for i0 in (0..rows).step_by(B) {
                let whole = i0 + B <= rows && j0 + B <= cols;
                // SAFETY: the block's rows i0..i0 + 16 < rows and columns j0..j0 + 16 ≤ cols
                // (whole), so its reads lie in `src` (rows · cols floats) and its writes, rows
                // j of dst from i0, in `dst`; each part writes the rows j of its own column
                // blocks only. The kernel's token proves its ISA.
                match kernel {
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx512(_) if whole => unsafe { block16_avx512(src.as_ptr().add(i0 * cols + j0), cols, out.0.add(j0 * rows + i0), rows) },
                    #[cfg(target_arch = "x86_64")]
                    Kernel::Avx2Fma(_) if whole => unsafe {
                        for (di, dj) in [(0, 0), (0, 8), (8, 0), (8, 8)] {
                            block8_avx2(src.as_ptr().add((i0 + di) * cols + j0 + dj), cols, out.0.add((j0 + dj) * rows + i0 + di), rows);
                        }
                    },
                    _ => block_plain(src, rows, cols, out, [i0, j0], B),
                }
            }
        }
    };
    if parts > 1 {
        par_for(parts, part);
    } else {
        part(0);
    }
}

/// The plain transpose of the block at `(i0, j0)` (at most `b × b`, cut by the edges).
fn block_plain(src: &[f32], rows: usize, cols: usize, out: &OutPtr<f32>, [i0, j0]: [usize; 2], b: usize) {
    let j1 = (j0 + b).min(cols);
    for i in i0..(i0 + b).min(rows) {
        for (j, &v) in src[i * cols + j0..i * cols + j1].iter().enumerate().map(|(d, v)| (j0 + d, v)) {
            // SAFETY: j < cols and i < rows, so j·rows + i < rows·cols ≤ dst.len() (the
            // caller's `out`); the caller's part owns the rows j of this block.
            unsafe { *out.0.add(j * rows + i) = v };
        }
    }
}

/// One 16 × 16 block: 16 rows of `src` (row stride `ls`) into 16 rows of `dst` (stride `ld`),
/// `dst[c][r] = src[r][c]`, transposed in registers by the FP32 lane kernels' 16 × 16 transpose.
///
/// # Safety
/// AVX-512F; `src` readable for 16 rows of 16 floats at stride `ls`, `dst` writable likewise
/// at stride `ld`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn block16_avx512(src: *const f32, ls: usize, dst: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the contract.
    let mut m: [__m512; 16] = std::array::from_fn(|i| unsafe { _mm512_loadu_ps(src.add(i * ls)) });
    super::sgemm::lanes::transpose16(&mut m);
    for (c, v) in m.iter().enumerate() {
        // SAFETY: the contract; column c of the block goes to dst row c.
        unsafe { _mm512_storeu_ps(dst.add(c * ld), *v) };
    }
}

/// One 8 × 8 block on AVX2, as [`block16_avx512`]: the FP32 lane kernels' transpose of the
/// 4 × 4 blocks of each half (rows 0–3, then 4–7), then the 128-bit halves exchanged.
///
/// # Safety
/// AVX2; `src` readable for 8 rows of 8 floats at stride `ls`, `dst` writable likewise at
/// stride `ld`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn block8_avx2(src: *const f32, ls: usize, dst: *mut f32, ld: usize) {
    use std::arch::x86_64::*;
    // SAFETY: the contract.
    let r: [__m256; 8] = std::array::from_fn(|i| unsafe { _mm256_loadu_ps(src.add(i * ls)) });
    // top[k] / bottom[k]: half L holds column 4L + k of rows 0–3 / 4–7.
    let top = super::sgemm::lanes::transpose4([r[0], r[1], r[2], r[3]]);
    let bottom = super::sgemm::lanes::transpose4([r[4], r[5], r[6], r[7]]);
    for k in 0..4 {
        // SAFETY: the contract; column c of the block goes to dst row c.
        unsafe {
            _mm256_storeu_ps(dst.add(k * ld), _mm256_permute2f128_ps::<0x20>(top[k], bottom[k]));
            _mm256_storeu_ps(dst.add((4 + k) * ld), _mm256_permute2f128_ps::<0x31>(top[k], bottom[k]));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kernel this CPU has transposes exactly as the plain loop does: matrices of 1 to
    /// 65 rows and columns around the 8- and 16-element blocks, on 1 and 2 workers.
    #[test]
    fn transposes_match_the_plain_loop() {
        let kernels: Vec<Kernel> = crate::cpu::detect::supported().into_iter().filter_map(Kernel::for_isa).collect();
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().expect("a pool of 2");
        let sizes = [1usize, 3, 7, 8, 15, 16, 17, 31, 32, 33, 63, 65];
        for &rows in &sizes {
            for &cols in &sizes {
                let src: Vec<f32> = (0..rows * cols).map(|i| i as f32 * 0.5 - 7.0).collect();
                let mut want = vec![f32::NAN; rows * cols];
                let out = OutPtr(want.as_mut_ptr());
                for j0 in (0..cols).step_by(16) {
                    for i0 in (0..rows).step_by(16) {
                        block_plain(&src, rows, cols, &out, [i0, j0], 16);
                    }
                }
                assert!((0..rows).all(|i| (0..cols).all(|j| want[j * rows + i] == src[i * cols + j])), "plain transpose {rows}x{cols}");
                for &k in &kernels {
                    for workers in [1, 2] {
                        let mut got = vec![f32::NAN; rows * cols];
                        pool.install(|| transpose(k, &src, rows, cols, &mut got, workers));
                        assert_eq!(got, want, "transpose {rows}x{cols} on {} with {workers} workers", k.name());
                    }
                }
            }
        }
    }
}
