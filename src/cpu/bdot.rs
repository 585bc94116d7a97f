//! BF16 implicit GEMM on `vdpbf16ps`: the convs [`amx::takes`] on CPUs with AVX512_BF16 and no
//! AMX tiles (AMD Zen 4, Intel Cooper Lake, Xeons whose AMX is not exposed), over the same
//! packed weights ([`amx::Packed`]) and bf16 phase planes of channel pairs as the AMX kernel:
//! no im2col, each input element rounded and copied once per call.
//!
//! Register tile: `MR` = 8 output channels × up to `NV` = 3 vectors of 16 virtual pixels (24
//! f32 accumulators); maps of exactly 4 vectors (7 × 7 outputs of a 3 × 3 conv: 63 virtual
//! pixels) take 4 channels × 4 vectors instead, so the weights stream once per image, not
//! twice. Per K step (tap `t`, channel pair `j`): the B vectors are loaded in place from pair
//! plane `j` of the tap's phase at `v0 + off(t)` (see [`amx`]'s module docs for the planes
//! and virtual pixels), the A pairs broadcast from the weights packed for this kernel
//! (`[Mpad/8][taps][Cpad/32][16 pairs][8 rows]` u32: one sequential stream per 8-row panel).
//! Pointwise convs (1×1, stride 1, no padding: [`Source::F32`]) build no planes: each part
//! rounds a pixel block's channel pairs from the f32 input into its own `[pairs][16·nv]`
//! block, the same values the planes would hold there, just before that block's panels run
//! (ResNet-50 in bf16 on Zen 5, 2 threads: 0.95–0.97 of the time; the planes were written to
//! memory whole and read back per block).
//! K order: taps, then the K step's channel pairs, the real ones only (the zero pairs that
//! pad the channels to a multiple of 32 are skipped).
//!
//! Arithmetic of an element: [`bgemm::dot_pair`] over that K order from 0 (each sum rounded
//! to nearest even, subnormals flushed: what `vdpbf16ps` computes), then
//! `act((acc + residual) + bias)`. The scalar twin ([`DotKernel::Scalar`]) computes exactly
//! that, element by element; the tests hold the two bit-identical.

use super::amx::{self, Geo, Packed};
use super::bgemm::{self, Bf16Token};
use super::parallel::{par_for, OutPtr};
use super::sgemm::{finish, Act};

/// Output channels per register tile.
pub const MR: usize = 8;
/// Vectors of 16 virtual pixels per register tile.
pub const NV: usize = 3;
/// f32 of a tile's accumulators (`MR × NV` or `4 × 4` vectors).
const BUF: usize = NV * MR * 16;
/// u32 pairs of an 8-row panel per K step (16 pairs × 8 rows).
const STEP: usize = 16 * MR;

/// The kernel's name in reports.
pub const NAME: &str = "avx512bf16 8x48 planes";

/// The `vdpbf16ps` tile, or its scalar twin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DotKernel {
    Scalar,
    Avx512Bf16(Bf16Token),
}

/// Where the tiles read B.
#[derive(Clone, Copy)]
pub(super) enum Source<'a> {
    /// The phase planes, built for the call's geometry.
    Planes(&'a [u32]),
    /// A pointwise conv's f32 input `[N][cin][oh·ow]` ([`Geo::pointwise`]): each part rounds
    /// a pixel block's channel pairs into its own block of pair rows (the planes' values for
    /// those pixels) before that block's panels run, while the block is in cache.
    F32 { x: &'a [f32], cin: usize },
}

thread_local! {
    /// One pixel block's channel pairs per thread ([`Source::F32`]).
    static BLOCK: std::cell::RefCell<Vec<u32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs the conv's tiles over `src` (planes built for `g`, or the pointwise input) into `out`
/// (`[n][cout][oh·ow]`, every real pixel written), `residual` of the output's shape added
/// before the bias.
#[allow(clippy::too_many_arguments)]
pub(super) fn run(k: DotKernel, p: &Packed, src: Source, g: Geo, taps: &[(usize, usize)], [n, cout, oh, ow]: [usize; 4], bias: Option<&[f32]>, act: Act, residual: Option<Option<&[f32]>>, out: &mut [f32], threads: usize) {
    let npix = oh * ow;
    let nvec = g.nvirt.div_ceil(16);
    let (mr, nblk) = if nvec == 4 { (4, 1) } else { (MR, nvec.div_ceil(NV)) };
    let panels = cout.div_ceil(mr);
    let kpairs = p.kstep_channels().div_ceil(2);
    // Parts: ranges of (image, pixel block), each over every channel panel; with too few of
    // those for the workers, the panels are split too.
    let units = n * nblk;
    let want = if threads > 1 { 4 * threads } else { 1 };
    let msplit = if units >= want { 1 } else { want.div_ceil(units).min(panels) };
    let uparts = units.min(want.div_ceil(msplit)).max(1);
    let dst = OutPtr(out.as_mut_ptr());
    let res = amx::residual_at(residual, dst);
    let img_len = g.planes_len(1);
    let round = match k {
        #[cfg(target_arch = "x86_64")]
        DotKernel::Avx512Bf16(t) => bgemm::Kernel::Avx512Bf16(t),
        _ => bgemm::Kernel::Scalar,
    };
    // Workers on cores that share no cache drop the output lines of each part before they
    // write them (see `evict_part`), except where the residual is the output itself: those
    // lines are read first, and dropped they come back from memory (ResNet-50's in-place 1×1
    // convs 0.05–0.28 ms slower each, Zen 4, two CCDs).
    let evicting = threads > 1 && !matches!(residual, Some(None)) && crate::cpu::placement::far(threads);
    // Two workers and pixel parts only: claimed from both ends, so that a worker mostly takes
    // the pixels it took in the layer before (whose lines its core holds), not every other
    // part; the parts shrink towards the middle, where the two meet. ResNet-50 bf16 on Zen 4
    // (per layer, against the parts in turn in the same run): its 56² and 28² 1×1 convs
    // 0.02–0.19 ms faster each with the vCPUs on two CCDs (the in-place ones 1.16–1.19× their
    // time on one L3 against 1.3–1.7×), 0.97–1.01 of it on one L3.
    let two_ended = threads == 2 && msplit == 1 && uparts >= 4;
    let body = |[u0, u1]: [usize; 2], mp: usize| BLOCK.with(|cell| {
        let dst = &dst;
        let residual = res.map(|r| r.0 as *const f32);
        let (m0, m1) = (mp * panels / msplit, (mp + 1) * panels / msplit);
        if evicting {
            evict_part(dst, g, [u0, u1], [nblk, nvec], [m0 * mr, (m1 * mr).min(cout)], [cout, npix, ow]);
        }
        let mut buf = [0f32; BUF];
        let mut block = cell.borrow_mut();
        for u in u0..u1 {
            let (b, blk) = (u / nblk, u % nblk);
            let (vec0, vec1) = (blk * nvec / nblk, (blk + 1) * nvec / nblk);
            let v0 = vec0 * 16;
            // Where the tiles read B: the image's planes at pixel v0, or this block's pairs
            // at pixel 0 (`tg` its geometry).
            let (img, tg, tv0) = match src {
                Source::Planes(planes) => (&planes[b * img_len..(b + 1) * img_len], g, v0),
                Source::F32 { x, cin } => {
                    let width = 16 * (vec1 - vec0);
                    let cols = width.min(npix - v0);
                    if block.len() < kpairs * width {
                        block.resize(kpairs * width, 0);
                    }
                    round.pack_pair_rows(&x[b * cin * npix + v0..], npix, cin, kpairs, cols, width, &mut block[..kpairs * width]);
                    (&block[..kpairs * width], g.block(width, kpairs), 0)
                }
            };
            // Built once per pixel block, not per panel: each copy of these is a `memcpy` call
            // (3–5 % of the folded stem's perf samples when built per tile, though its time
            // did not move beyond the noise).
            let at = Block { img, g, taps, v0, nv: vec1 - vec0, mr, kpairs, csteps: p.csteps() };
            // The tile's view: `at` itself, or over this block's pairs.
            let tile_at = match src {
                Source::Planes(_) => at,
                Source::F32 { .. } => Block { g: tg, taps: &[(0, 0)], v0: tv0, ..at },
            };
            for pp in m0..m1 {
                let rows = (cout - pp * mr).min(mr);
                let a = p.panel(pp * mr);
                let (row0, bias) = (b * cout + pp * mr, bias.map(|bs| &bs[pp * mr..pp * mr + rows]));
                match k {
                    DotKernel::Scalar => {
                        tile_at.scalar(a, &mut buf);
                        // SAFETY: rows row0..row0 + rows of `out` and `residual` hold npix
                        // elements (checked by the caller), and this part alone writes this
                        // panel's rows at these pixels.
                        unsafe { epilogue_scalar(&buf, at, rows, [row0, npix, ow], bias, act, residual, dst.0) };
                    }
                    #[cfg(target_arch = "x86_64")]
                    DotKernel::Avx512Bf16(_) => {
                        // SAFETY: the token proves AVX-512F and AVX512_BF16; `tile` checks
                        // its reads of `a` and of the planes.
                        unsafe {
                            match (mr, at.nv) {
                                (4, _) => tile::<4, 4>(a, &tile_at, &mut buf),
                                (_, 1) => tile::<MR, 1>(a, &tile_at, &mut buf),
                                (_, 2) => tile::<MR, 2>(a, &tile_at, &mut buf),
                                _ => tile::<MR, 3>(a, &tile_at, &mut buf),
                            }
                        }
                        // Every virtual pixel is a real one (1×1 convs and folded ones: no
                        // padded columns): the tile stores straight to the output.
                        if g.wph == ow {
                            // SAFETY: AVX-512F (token); rows row0..row0 + rows of `out` and
                            // `residual` hold npix elements (checked by the caller), and this
                            // part alone writes this panel's rows at these pixels.
                            unsafe { epilogue_direct(&buf, [v0, at.nv, mr], rows, [row0, npix], bias, act, residual, dst.0) };
                            continue;
                        }
                        for v in 0..at.nv {
                            let vs = v0 + 16 * v;
                            if vs >= g.nvirt {
                                break;
                            }
                            // SAFETY: AVX-512F (token); rows row0..row0 + rows of `out` and
                            // `residual` hold npix elements (checked by the caller), and this
                            // part alone writes this panel's rows at these pixels.
                            unsafe { amx::epilogue(&buf[v * mr * 16..(v + 1) * mr * 16], vs, g, rows, [row0, npix, ow], bias, act, residual, dst.0) };
                        }
                    }
                    // No token can be made off x86_64: the twin's arithmetic stands in.
                    #[cfg(not(target_arch = "x86_64"))]
                    DotKernel::Avx512Bf16(_) => {
                        tile_at.scalar(a, &mut buf);
                        // SAFETY: rows row0..row0 + rows of `out` and `residual` hold npix
                        // elements (checked by the caller), and this part alone writes this
                        // panel's rows at these pixels.
                        unsafe { epilogue_scalar(&buf, at, rows, [row0, npix, ow], bias, act, residual, dst.0) };
                    }
                }
            }
        }
    });
    if two_ended {
        // Shares falling towards the middle (uparts = 8: 4, 3, 2, 1, 1, 2, 3, 4 units of work),
        // claimed from both ends: the caller from the front, the worker from the back.
        let w = |i: usize| uparts.div_ceil(2) - i.min(uparts - 1 - i);
        let s = |i: usize| (0..i).map(w).sum::<usize>();
        let total = s(uparts);
        let ends = crate::cpu::parallel::TwoEnds::new(uparts);
        par_for(2, |wi| {
            while let Some(up) = ends.claim(wi == 0) {
                body([units * s(up) / total, units * s(up + 1) / total], 0);
            }
        });
    } else {
        par_for(uparts * msplit, |part| {
            let (up, mp) = (part / msplit, part % msplit);
            // Shares falling linearly (uparts, uparts − 1, …, 1 units of work): the parts
            // claimed last are the smallest, so the worker that finishes first waits less for
            // the other (ResNet-50 bf16, Zen 5, 2 threads: 0.97–0.98 of the time against equal
            // parts).
            let s = |i: usize| i * uparts - i * i.saturating_sub(1) / 2;
            body([units * s(up) / s(uparts), units * s(up + 1) / s(uparts)], mp);
        });
    }
}

/// Drops from the caches the output lines a part is about to write: rows `r0..r1` of each
/// image the part's units `u0..u1` (pixel blocks of `nvec` vectors in `nblk` blocks per
/// image) cover, at those blocks' real pixels. Run by workers on cores that share no cache
/// ([`crate::cpu::placement::far`]): overwriting lines the other core holds costs one
/// invalidation round trip each, where lines fetched from memory stream ([`crate::cpu::evict`]).
fn evict_part(dst: &OutPtr<f32>, g: Geo, [u0, u1]: [usize; 2], [nblk, nvec]: [usize; 2], [r0, r1]: [usize; 2], [cout, npix, ow]: [usize; 3]) {
    // The output pixel of virtual pixel `v` (or the next real one after it).
    let real = |v: usize| ((v / g.wph) * ow + (v % g.wph).min(ow)).min(npix);
    let mut u = u0;
    while u < u1 {
        let b = u / nblk;
        let last = u1.min((b + 1) * nblk);
        let (p0, p1) = (real(16 * ((u % nblk) * nvec / nblk)), real((16 * ((last - b * nblk) * nvec / nblk)).min(g.nvirt)));
        if p0 < p1 {
            // SAFETY: pixels `p0..p1 ≤ npix` of rows `b·cout + r0 .. b·cout + r1` of the
            // output, which holds `n · cout` rows of `npix` elements (checked by the caller).
            unsafe { crate::cpu::evict::evict_rows(dst.0.add((b * cout + r0) * npix + p0) as *const f32, r1 - r0, npix, p1 - p0) };
        }
        u = last;
    }
}

/// One register tile's inputs: the image's planes, the pixel block and the K extent.
#[derive(Clone, Copy)]
struct Block<'a> {
    img: &'a [u32],
    g: Geo,
    taps: &'a [(usize, usize)],
    /// First virtual pixel and vectors of 16 from it.
    v0: usize,
    nv: usize,
    /// Output channels of the tile (`MR`, or 4 with 4 vectors).
    mr: usize,
    /// Real channel pairs per tap, and K steps of 16 pairs per tap.
    kpairs: usize,
    csteps: usize,
}

impl Block<'_> {
    /// Whether every B read (pair planes below `kpairs`, lanes up to `v0 + 16·nv` plus the
    /// largest tap offset) lies inside the image's planes.
    fn in_planes(&self) -> bool {
        let end = self.v0 + 16 * self.nv;
        self.taps.iter().all(|&(ph, off)| off + end <= self.g.plane && (ph * self.g.pairs + self.kpairs.max(1)) * self.g.plane <= self.img.len())
    }

    /// The twin: `buf[v][r][l]` = the dot of row `r` and virtual pixel `v0 + 16·v + l`.
    fn scalar(&self, a: &[u32], buf: &mut [f32; BUF]) {
        assert!(self.in_planes(), "bdot: tile reads past the planes");
        for r in 0..self.mr {
            for l in 0..16 * self.nv {
                let mut acc = 0f32;
                for (t, &(ph, off)) in self.taps.iter().enumerate() {
                    for q in 0..self.csteps {
                        let at = &a[(t * self.csteps + q) * STEP + r..];
                        let bt = (ph * self.g.pairs + q * 16) * self.g.plane + self.v0 + off + l;
                        for j in 0..self.kpairs.saturating_sub(q * 16).min(16) {
                            acc = bgemm::dot_pair(acc, at[j * MR], self.img[bt + j * self.g.plane]);
                        }
                    }
                }
                buf[((l / 16) * self.mr + r) * 16 + l % 16] = acc;
            }
        }
    }
}

/// The AVX-512 tile of `R` channels (see the module docs), `buf[v][r][16]` for `v < N`.
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16 (`a` and the planes are checked here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile<const R: usize, const N: usize>(a: &[u32], at: &Block, buf: &mut [f32; BUF]) {
    use std::arch::x86_64::*;
    assert!(R * N * 16 <= BUF && at.mr == R && at.nv == N, "bdot: tile shape");
    assert!(at.in_planes() && a.len() + STEP >= at.taps.len() * at.csteps * STEP + 15 * MR + R, "bdot: tile reads past the planes or the weights");
    let (g, img) = (at.g, at.img.as_ptr());
    // SAFETY (whole body): B loads read lanes v0 + off .. + 16·N of pair planes below kpairs
    // (`in_planes` above), A reads u32 (t·csteps + q)·STEP + j·MR + r ≤ (taps·csteps − 1)·STEP
    // + 15·MR + R − 1 < a.len() (asserted).
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); N]; R];
        for (t, &(ph, off)) in at.taps.iter().enumerate() {
            let bt = img.add(ph * g.pairs * g.plane + at.v0 + off);
            for q in 0..at.csteps {
                let ap = a.as_ptr().add((t * at.csteps + q) * STEP);
                let bq = bt.add(q * 16 * g.plane);
                for j in 0..at.kpairs.saturating_sub(q * 16).min(16) {
                    // Past the panel's end this touches the next panel's weights: a prefetch
                    // never faults.
                    _mm_prefetch::<_MM_HINT_T0>(ap.wrapping_add((j + bgemm::PREFETCH_STEPS) * MR) as *const i8);
                    let bp = bq.add(j * g.plane);
                    let bv: [__m512bh; N] = std::array::from_fn(|v| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(16 * v) as *const __m512i)));
                    for (r, row) in acc.iter_mut().enumerate() {
                        let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*ap.add(j * MR + r) as i32));
                        for v in 0..N {
                            row[v] = _mm512_dpbf16_ps(row[v], av, bv[v]);
                        }
                    }
                }
            }
        }
        for (r, row) in acc.iter().enumerate() {
            for (v, &y) in row.iter().enumerate() {
                _mm512_storeu_ps(buf.as_mut_ptr().add((v * R + r) * 16), y);
            }
        }
    }
}

/// [`amx::epilogue`] of a whole tile where virtual pixel = output pixel (`wph = ow`):
/// `act((acc + residual) + bias)` of rows `row0..row0 + rows`, pixels `v0..min(v0 + 16·nv,
/// npix)`, from `buf[v][r][16]`.
///
/// # Safety
/// AVX-512F; rows `row0..row0 + rows` of `out` and of `residual` hold `npix` elements, and no
/// other thread touches these elements.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn epilogue_direct(buf: &[f32; BUF], [v0, nv, mr]: [usize; 3], rows: usize, [row0, npix]: [usize; 2], bias: Option<&[f32]>, act: Act, residual: Option<*const f32>, out: *mut f32) {
    use std::arch::x86_64::*;
    for v in 0..nv {
        let vs = v0 + 16 * v;
        if vs >= npix {
            break;
        }
        let m: __mmask16 = if npix - vs >= 16 { 0xffff } else { ((1u32 << (npix - vs)) - 1) as u16 };
        for r in 0..rows {
            let i = (row0 + r) * npix + vs;
            // SAFETY: lane l < 16 of buf row (v, r) is inside `buf`; lanes of `m` are pixels
            // below npix of row row0 + r of the output and residual (the caller's contract).
            unsafe {
                let mut y = _mm512_loadu_ps(buf.as_ptr().add((v * mr + r) * 16));
                if let Some(res) = residual {
                    y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(m, res.add(i)));
                }
                if let Some(b) = bias {
                    y = _mm512_add_ps(y, _mm512_set1_ps(b[r]));
                }
                _mm512_mask_storeu_ps(out.add(i), m, crate::cpu::sgemm::act512(y, act));
            }
        }
    }
}

/// The twin of [`amx::epilogue`] over a whole tile: each real pixel's
/// `finish(acc + residual, bias, act)`.
///
/// # Safety
/// Rows `row0..row0 + rows` of `out` and of `residual` hold `npix` elements, and no other
/// thread touches this tile's elements.
#[allow(clippy::too_many_arguments)]
unsafe fn epilogue_scalar(buf: &[f32; BUF], at: Block, rows: usize, [row0, npix, ow]: [usize; 3], bias: Option<&[f32]>, act: Act, residual: Option<*const f32>, out: *mut f32) {
    for l in 0..16 * at.nv {
        let v = at.v0 + l;
        let (oy, ox) = (v / at.g.wph, v % at.g.wph);
        if v >= at.g.nvirt || ox >= ow {
            continue;
        }
        for r in 0..rows {
            let i = (row0 + r) * npix + oy * ow + ox;
            let acc = buf[((l / 16) * at.mr + r) * 16 + l % 16];
            // SAFETY: row0 + r is a real output row and oy·ow + ox a real pixel (< npix) of the
            // caller's output and residual, which this part alone writes (see `run`).
            unsafe {
                let y = finish(residual.map_or(acc, |res| acc + *res.add(i)), bias.map(|b| b[r]), act);
                *out.add(i) = y;
            }
        }
    }
}
