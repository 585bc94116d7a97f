//! BF16 implicit GEMM on `vdpbf16ps` with output channels on the vector lanes: the convs whose
//! weights [`amx::pack_for_map`] lays out that way ([`Lanes::Channels`](amx::Lanes::Channels): wide convs with a long
//! K on maps of at most 64 pixels, [`amx::channel_lanes_pay`]), over the same bf16 phase planes of channel
//! pairs as [`bdot`](super::bdot) (see [`amx`]'s module docs for the planes and virtual pixels; a pointwise
//! conv's planes are its input's channel pairs).
//!
//! Register tile: [`PX`] = 6 real output pixels × up to 4 vectors of 16 output channels (24
//! f32 accumulators). Per K step (tap `t`, channel pair `j`): the panel's weight vectors load
//! from `[taps][kpairs][64]` u32 (a 64-channel panel is one sequential stream; the last panel,
//! `cout mod 64` rounded up to 16 lanes, is narrower), and each pixel's pair broadcasts from
//! pair plane `j` of the tap's phase at the pixel's virtual pixel `oy·wph + ox` plus the tap's
//! offset. Every lane is a real channel of a real pixel, where [`bdot`](super::bdot)'s pixel lanes lose
//! the short last vector of a small map and a padded conv's extra columns (a 3 × 3 conv on a
//! 7 × 7 map: 49 of 64 lanes).
//!
//! Work: per image, 64-channel panels × groups of up to [`GROUP`] 6-pixel tiles, split over the
//! workers in contiguous ranges. A group runs K in chunks of [`KCHUNK`] steps, each chunk over
//! all its tiles (their accumulators kept in memory between chunks), so that a chunk's weights
//! come from memory once and serve the other tiles from L1; the tiles share out the prefetch
//! of the next chunk's lines. The epilogue transposes: each pixel's channel vectors scatter to
//! output rows `npix` apart.
//!
//! Arithmetic: that of [`bdot`](super::bdot) element by element (the same K order, [`bgemm::dot_pair`]
//! from 0, then `act((acc + residual) + bias)`; an accumulator stored between chunks and
//! loaded back is the same f32), so both tiles and the scalar twin ([`DotKernel::Scalar`])
//! give the same bits whichever lanes a conv was packed for; the tests hold them to it.

use super::amx::{self, Geo, Packed};
use super::bdot::DotKernel;
use super::bgemm;
use super::parallel::{par_for, OutPtr};
use super::sgemm::{finish, Act};

/// Output channels per panel (four vectors of 16).
pub const LANES: usize = 64;
/// Output pixels per register tile.
pub const PX: usize = 6;
/// The kernel's name in reports.
pub const NAME: &str = "avx512bf16 6x64 channel lanes";
/// The scalar twin's name in reports.
pub const TWIN_NAME: &str = "scalar emulation 6x64 channel lanes";
/// f32 of a tile's accumulators, `[PX][LANES]`.
const BUF: usize = PX * LANES;
/// Pixel tiles whose accumulators stay in memory together while the K chunks run over them.
const GROUP: usize = 16;
/// K steps (tap, channel pair) per chunk: 64 steps of a full panel's weights are 16 KiB, in
/// L1 for the group's other tiles. In ResNet-50's 7 × 7 3×3 convs, 64 ran 0.29–0.33 ms, 32
/// 0.30–0.34, 128 0.31–0.36, no chunks 0.34–0.50.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const KCHUNK: usize = 64;

/// Runs the conv's tiles over `planes` (built for `g`, `taps` from the same geometry) into
/// `out` (`[n][cout][oh·ow]`, every pixel written), `residual` of the output's shape added
/// before the bias (`Some(None)`: what `out` holds on entry).
#[allow(clippy::too_many_arguments)]
pub(super) fn run(k: DotKernel, p: &Packed, planes: &[u32], g: Geo, taps: &[(usize, usize)], [n, cout, oh, ow]: [usize; 4], bias: Option<&[f32]>, act: Act, residual: Option<Option<&[f32]>>, out: &mut [f32], threads: usize) {
    let npix = oh * ow;
    let kpairs = p.cin.div_ceil(2);
    #[cfg(target_arch = "x86_64")]
    let ksteps = taps.len() * kpairs;
    let panels = cout.div_ceil(LANES);
    let tiles = npix.div_ceil(PX);
    let groups = tiles.div_ceil(GROUP);
    let per_image = panels * groups;
    let units = n * per_image;
    let parts = if threads > 1 { units.min(4 * threads) } else { 1 };
    let img_len = g.planes_len(1);
    assert!(planes.len() >= n * img_len && bias.is_none_or(|b| b.len() >= cout), "bchan: planes or bias too small");
    // Each tap's first u32 in an image's planes: its phase's pair plane 0, shifted.
    let tap_at: Vec<usize> = taps.iter().map(|&(ph, off)| ph * g.pairs * g.plane + off).collect();
    // The scattering epilogue addresses a vector's 16 rows by i32 offsets.
    #[cfg(target_arch = "x86_64")]
    let scatter = (16 * npix) < i32::MAX as usize;
    let dst = OutPtr(out.as_mut_ptr());
    let res = amx::residual_at(residual, dst);
    // Workers on cores that share no cache drop the output lines of each unit before they
    // write them (as `bdot` does), not where the residual is the output itself.
    let evicting = threads > 1 && !matches!(residual, Some(None)) && crate::cpu::placement::far(threads);
    par_for(parts, |part| {
        let dst = &dst;
        let residual = res.map(|r| r.0 as *const f32);
        let (u0, u1) = (units * part / parts, units * (part + 1) / parts);
        let mut acc = [[0f32; BUF]; GROUP];
        for u in u0..u1 {
            let (b, pn, gi) = (u / per_image, (u % per_image) / groups, u % groups);
            let (t0, t1) = (tiles * gi / groups, tiles * (gi + 1) / groups);
            let (a, w) = p.channel_panel(pn);
            let tile_at = |tile: usize| {
                let (i0, np) = (tile * PX, (npix - tile * PX).min(PX));
                let at = Tile {
                    a,
                    w,
                    img: &planes[b * img_len..(b + 1) * img_len],
                    px: std::array::from_fn(|q| {
                        let i = i0 + q.min(np - 1);
                        (i / ow) * g.wph + i % ow
                    }),
                    tap_at: &tap_at,
                    plane: g.plane,
                    kpairs,
                    pf_at: 0,
                    pf_lines: 0,
                    pf_slot: 0,
                };
                (at, i0, np)
            };
            let rows = (cout - pn * LANES).min(LANES);
            let row0 = b * cout + pn * LANES;
            if evicting {
                let (p0, p1) = (t0 * PX, (t1 * PX).min(npix));
                // SAFETY: pixels p0..p1 ≤ npix of output rows row0..row0 + rows (`out` holds
                // n·cout rows of npix, checked by the caller).
                unsafe { crate::cpu::evict::evict_rows(dst.0.add(row0 * npix + p0) as *const f32, rows, npix, p1.saturating_sub(p0)) };
            }
            let bias = bias.map(|bs| &bs[pn * LANES..pn * LANES + rows]);
            match k {
                #[cfg(target_arch = "x86_64")]
                DotKernel::Avx512Bf16(_) => {
                    // K in chunks, each run over the group's tiles: a chunk's weights, read
                    // from memory by the first tile, serve the others from L1.
                    // (No K steps at all: one empty chunk writes the zero accumulators.)
                    for k0 in (0..ksteps.max(1)).step_by(KCHUNK) {
                        let k1 = (k0 + KCHUNK).min(ksteps);
                        for tile in t0..t1 {
                            let (mut at, _, np) = tile_at(tile);
                            // The group's tiles share out the prefetch of the next chunk's
                            // weight lines, step by step: the first tile of a chunk would
                            // otherwise wait on memory for every line (0.34–0.50 ms against
                            // 0.29–0.33 for ResNet-50's 7 × 7 3×3 convs).
                            at.pf_at = k1 * w;
                            at.pf_lines = (KCHUNK.min(ksteps - k1) * w) / 16;
                            at.pf_slot = (tile - t0) * (k1 - k0);
                            // SAFETY: the token proves AVX-512F and AVX512_BF16; `tile`
                            // checks its reads of the weights and the planes.
                            unsafe { dispatch(np, w / 16, &at, [k0, k1], &mut acc[tile - t0]) };
                        }
                    }
                }
                _ => {
                    for tile in t0..t1 {
                        let (at, _, np) = tile_at(tile);
                        at.scalar(np, &mut acc[tile - t0]);
                    }
                }
            }
            for tile in t0..t1 {
                let (_, i0, np) = tile_at(tile);
                let buf = &acc[tile - t0];
                #[cfg(target_arch = "x86_64")]
                if scatter && matches!(k, DotKernel::Avx512Bf16(_)) {
                    // SAFETY: AVX-512F (token); rows row0..row0 + rows of `out` and
                    // `residual` hold npix elements (checked by the caller), pixels i0..i0 +
                    // np < npix, and this part alone writes them.
                    unsafe { epilogue_scatter(buf, [i0, np], rows, [row0, npix], bias, act, residual, dst.0) };
                    continue;
                }
                // SAFETY: as above.
                unsafe { epilogue_scalar(buf, [i0, np], rows, [row0, npix], bias, act, residual, dst.0) };
            }
        }
    });
}

/// One register tile's inputs.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Tile<'a> {
    /// The panel's weights, `[taps][kpairs][w]` u32.
    a: &'a [u32],
    w: usize,
    /// The image's planes, and each tile pixel's virtual pixel (a short tile repeats its last).
    img: &'a [u32],
    px: [usize; PX],
    tap_at: &'a [usize],
    plane: usize,
    kpairs: usize,
    /// The next chunk's first u32 in `a`, its lines, and this tile's first line of them.
    pf_at: usize,
    pf_lines: usize,
    pf_slot: usize,
}

impl Tile<'_> {
    /// Whether every read lies inside the weights and the planes.
    fn in_bounds(&self) -> bool {
        let far = |v: &[usize]| v.iter().copied().max().unwrap_or(0);
        let b_end = far(self.tap_at) + self.kpairs.saturating_sub(1) * self.plane + far(&self.px);
        self.w.is_multiple_of(16) && self.w <= LANES && self.a.len() >= self.tap_at.len() * self.kpairs * self.w && (self.kpairs == 0 || b_end < self.img.len())
    }

    /// The twin: `buf[q][l]` = the dot of the panel's channel `l < w` and pixel `q < np`.
    fn scalar(&self, np: usize, buf: &mut [f32; BUF]) {
        assert!(self.in_bounds(), "bchan: tile reads past the weights or the planes");
        for q in 0..np {
            for l in 0..self.w {
                let mut acc = 0f32;
                for (t, &off) in self.tap_at.iter().enumerate() {
                    for j in 0..self.kpairs {
                        acc = bgemm::dot_pair(acc, self.a[(t * self.kpairs + j) * self.w + l], self.img[off + j * self.plane + self.px[q]]);
                    }
                }
                buf[q * LANES + l] = acc;
            }
        }
    }
}

/// [`tile`] of `np` pixels and `nv` vectors.
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn dispatch(np: usize, nv: usize, at: &Tile, ks: [usize; 2], buf: &mut [f32; BUF]) {
    macro_rules! by_vectors {
        ($p:literal) => {
            // SAFETY: the caller's CPU contract.
            unsafe {
                match nv {
                    1 => tile::<$p, 1>(at, ks, buf),
                    2 => tile::<$p, 2>(at, ks, buf),
                    3 => tile::<$p, 3>(at, ks, buf),
                    _ => tile::<$p, 4>(at, ks, buf),
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
        _ => by_vectors!(6),
    }
}

/// The AVX-512 tile of `P` pixels × `V` vectors of channels (see the module docs) over K
/// steps `k0..k1` (step `t·kpairs + j`: tap `t`, pair `j`), from zero at `k0 = 0`, else from
/// `buf`; into `buf[q][16·v..]` for `q < P`, `v < V`.
///
/// # Safety
/// The CPU has AVX-512F and AVX512_BF16 (the reads are checked here).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bf16")]
unsafe fn tile<const P: usize, const V: usize>(at: &Tile, [k0, k1]: [usize; 2], buf: &mut [f32; BUF]) {
    use std::arch::x86_64::*;
    assert!(P <= PX && V * 16 <= at.w && k1 <= at.tap_at.len() * at.kpairs && at.in_bounds(), "bchan: tile reads past the weights or the planes");
    let (a, img) = (at.a.as_ptr(), at.img.as_ptr());
    // SAFETY (whole body): A loads read u32 (t·kpairs + j)·w + 16·v .. + 16 ≤ taps·kpairs·w ≤
    // a.len(); B reads u32 tap_at[t] + j·plane + px[q] < img.len() (`in_bounds` above); buf
    // lanes q·LANES + 16·v + 16 ≤ BUF.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); V]; P];
        if k0 > 0 {
            for (q, row) in acc.iter_mut().enumerate() {
                for (v, y) in row.iter_mut().enumerate() {
                    *y = _mm512_loadu_ps(buf.as_ptr().add(q * LANES + 16 * v));
                }
            }
        }
        let mut k = k0;
        while k < k1 {
            let (t, j0) = (k / at.kpairs, k % at.kpairs);
            let j1 = at.kpairs.min(j0 + k1 - k);
            let b_t = img.add(at.tap_at[t]);
            for j in j0..j1 {
                let ap = a.add((t * at.kpairs + j) * at.w);
                // Past the panel's end this touches the next panel's weights: a prefetch
                // never faults.
                // This tile's share of the next chunk's weight lines.
                let line = at.pf_slot + (j - j0) + (k - k0);
                if line < at.pf_lines {
                    _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add(at.pf_at + 16 * line) as *const i8);
                }
                let av: [__m512bh; V] = std::array::from_fn(|v| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(ap.add(16 * v) as *const __m512i)));
                let bj = b_t.add(j * at.plane);
                for (q, row) in acc.iter_mut().enumerate() {
                    let bv = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*bj.add(at.px[q]) as i32));
                    for v in 0..V {
                        row[v] = _mm512_dpbf16_ps(row[v], av[v], bv);
                    }
                }
            }
            k += j1 - j0;
        }
        for (q, row) in acc.iter().enumerate() {
            for (v, &y) in row.iter().enumerate() {
                _mm512_storeu_ps(buf.as_mut_ptr().add(q * LANES + 16 * v), y);
            }
        }
    }
}

/// `act((acc + residual) + bias)` of channels `row0..row0 + rows` at pixels `i0..i0 + np` from
/// `buf[q][l]`: per pixel and vector of 16 channels, a gather of the residual and a scatter to
/// the 16 output rows.
///
/// # Safety
/// AVX-512F; `16·npix < 2³¹`; rows `row0..row0 + rows` of `out` and of `residual` hold `npix`
/// elements, `i0 + np ≤ npix`, and no other thread touches these elements.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn epilogue_scatter(buf: &[f32; BUF], [i0, np]: [usize; 2], rows: usize, [row0, npix]: [usize; 2], bias: Option<&[f32]>, act: Act, residual: Option<*const f32>, out: *mut f32) {
    use std::arch::x86_64::*;
    let rows16 = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15), _mm512_set1_epi32(npix as i32));
    for v in 0..rows.div_ceil(16) {
        let live = rows - 16 * v;
        let m: __mmask16 = if live >= 16 { 0xffff } else { ((1u32 << live) - 1) as u16 };
        // SAFETY: lanes of `m` are channels below `rows` of `bias`.
        let b = bias.map(|bs| unsafe { _mm512_maskz_loadu_ps(m, bs.as_ptr().add(16 * v)) });
        for q in 0..np {
            let at = (row0 + 16 * v) * npix + i0 + q;
            // SAFETY: lane l of `m` addresses element (row0 + 16·v + l)·npix + i0 + q of a real
            // row and pixel (the caller's contract; offsets l·npix < 2³¹); buf lanes are in
            // row q.
            unsafe {
                let mut y = _mm512_loadu_ps(buf.as_ptr().add(q * LANES + 16 * v));
                if let Some(res) = residual {
                    y = _mm512_add_ps(y, _mm512_mask_i32gather_ps::<4>(_mm512_setzero_ps(), m, rows16, res.add(at)));
                }
                if let Some(b) = b {
                    y = _mm512_add_ps(y, b);
                }
                _mm512_mask_i32scatter_ps::<4>(out.add(at), m, rows16, crate::cpu::sgemm::act512(y, act));
            }
        }
    }
}

/// The twin of [`epilogue_scatter`]: each element's `finish(acc + residual, bias, act)`.
///
/// # Safety
/// Rows `row0..row0 + rows` of `out` and of `residual` hold `npix` elements, `i0 + np ≤
/// npix`, and no other thread touches these elements.
#[allow(clippy::too_many_arguments)]
unsafe fn epilogue_scalar(buf: &[f32; BUF], [i0, np]: [usize; 2], rows: usize, [row0, npix]: [usize; 2], bias: Option<&[f32]>, act: Act, residual: Option<*const f32>, out: *mut f32) {
    for r in 0..rows {
        for q in 0..np {
            let i = (row0 + r) * npix + i0 + q;
            let acc = buf[q * LANES + r];
            // SAFETY: a real row and pixel of the caller's output and residual, which this
            // part alone writes.
            unsafe { *out.add(i) = finish(residual.map_or(acc, |res| acc + *res.add(i)), bias.map(|b| b[r]), act) };
        }
    }
}
