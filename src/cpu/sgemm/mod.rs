//! FP32 GEMM on weights packed once at prepare time: the conv path's own kernels.
//!
//! `C[m][n] = init[m][n] + Σ_k A[m][k] · B[k][n]`, then the epilogue (bias, activation) on the
//! last K block. A is the layer's weights, B the activations, C the NCHW output (row `m` is an
//! output channel, column `n` a pixel).
//!
//! Layouts (one geometry per kernel, [`Geometry`]):
//! - A, packed once ([`PackedA`]): `[Mpad/MR][K][MR]`, rows zero-padded to `Mpad`;
//! - B, `kc` rows of `nv · LANES` floats: a panel the caller packed ([`Geometry::panel_len`],
//!   columns past the real ones zero-filled), or the input read in place, at a row stride
//!   (1×1 convs) or at per-row offsets (padded phase planes; its vectors contiguous or a
//!   padded row apart), the last vector then masked;
//! - C: row `r` at `c + r · ldc`; only the tile's real rows and columns are read or written.
//!
//! Every kernel computes each element as `acc = init; for k in order: acc = fma(a, b, acc)`,
//! then `acc + bias`, then the activation: the [`scalar`] twin does the same operations one
//! element at a time with [`crate::detmath::fma`] (`f32::mul_add`), so every path is bit-identical to it.
//!
//! GEMMs of at most [`NARROW_COLS`] columns (convs over 1×1 and 2×2 maps at batch 1) run on
//! the narrow kernel ([`Kernel::narrow`]), vectorised along M: same operations, same values.
//!
//! | kernel | MR × NR (vectors) | KC (stride-1 convs with taps) | NC |
//! | --- | --- | --- | --- |
//! | scalar twin | that of the kernel it checks | — | — |
//! | AVX2 + FMA | 6 × 16 (2 ymm); 4 × 16 for GEMMs of ≤ 8 rows ([`Kernel::panel_rows`]) | 256 (256) | 384 |
//! | AVX-512F | 8 × 48 (3 zmm) | 128 (256) | 960 |
//!
//! Off x86-64 [`Kernel`] has no variant (FP32 convs run on the `gemm` crate there), so its
//! methods' matches are empty and their arguments unused: those warnings are off there.

#![cfg_attr(not(target_arch = "x86_64"), allow(unused_variables, unreachable_patterns, unused_imports))]

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512;
pub mod lanes;
#[cfg(target_arch = "x86_64")]
mod narrow;
pub mod pack;
pub mod scalar;

use crate::detmath;
use crate::cpu::detect::{self, Isa};
use crate::graph::Activation;
pub use pack::PackedA;
#[cfg(target_arch = "x86_64")]
pub(crate) use avx512::{act as act512, row_lanes, stride2_pair};

/// Tile shape of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Geometry {
    /// Rows (output channels) per tile.
    pub mr: usize,
    /// f32 lanes per vector.
    pub lanes: usize,
    /// Most vectors per tile row.
    pub nv: usize,
    /// K block: a weight panel's `kc · MR` floats stay in L1 while it runs against every
    /// B panel of a column block.
    pub kc: usize,
    /// The K block of convs with taps (3×3, 7×7 …, any stride), read in place from their
    /// phase planes: their B rows overlap, so twice the AVX-512 `kc` still fits L1, and the
    /// output is read and written half as often (ResNet-50's and UNet's 3×3 convs 2–6 %
    /// faster; the stride-2 ones and the stem 1–15 %). On Intel's AVX-512 the strided ones
    /// with more than one K block take `kc` instead (`cpu::sconv::run_part`).
    pub kc_taps: usize,
    /// Columns per block (a multiple of `lanes · nv`): one block's B panels, `kc · nc`
    /// floats, stay in L2.
    pub nc: usize,
}

impl Geometry {
    /// Columns of a full tile.
    pub fn nr(self) -> usize {
        self.lanes * self.nv
    }

    /// Elements of one B panel of `kc` rows and `nv` vectors.
    pub fn panel_len(self, kc: usize, nv: usize) -> usize {
        kc * nv * self.lanes
    }
}

/// The activation the kernels apply in their epilogue. Sigmoid is not among them: callers
/// apply it to the stored tile (see [`Epilogue::split`]).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Act {
    None,
    /// `max(y, 0) + slope · min(y, 0)`: ReLU (slope 0) and LeakyReLU.
    Leaky(f32),
    /// `min(max(y, lo), hi)`.
    Clip(f32, f32),
}

/// What the last K block does before storing.
#[derive(Clone, Copy, Debug)]
pub struct Epilogue<'a> {
    /// `[rows of the tile]`, added to each row.
    pub bias: Option<&'a [f32]>,
    pub act: Act,
}

impl Epilogue<'_> {
    /// The in-kernel activation for a graph activation, and whether the caller must apply the
    /// graph's activation to the stored values afterwards.
    pub fn split(act: Option<Activation>) -> (Act, bool) {
        match act {
            None => (Act::None, false),
            Some(Activation::Relu) => (Act::Leaky(0.0), false),
            Some(Activation::LeakyRelu(a)) => (Act::Leaky(a), false),
            Some(Activation::Clip(lo, hi)) => (Act::Clip(lo, hi), false),
            Some(_) => (Act::None, true),
        }
    }
}

/// One tile's arguments. `a` is the A panel from the block's first k (`[kc][MR]`), `b` the
/// B panel (`kc` rows of `nv · LANES` at stride `ldb`), `c` the tile's first output element.
#[derive(Clone, Copy, Debug)]
pub struct Tile {
    pub kc: usize,
    /// Real rows (≤ MR) and columns (≤ nv · LANES) of the tile.
    pub rows: usize,
    pub cols: usize,
    /// Vectors per B panel row.
    pub nv: usize,
    /// Row stride of B: `nv · LANES` for a packed panel, or a 1×1 conv's input row when the
    /// kernel reads the input in place (then columns past `cols` are never read).
    pub ldb: usize,
    /// When not null, B row `k` starts at `b + b_rows[k]` instead (`kc` offsets): a
    /// stride-1 conv reads its zero-padded input in place, one run per im2col row.
    pub b_rows: *const usize,
    pub ldc: usize,
    /// Floats from `a` to the weights the next tile will read (the next weight panel at the
    /// same k), prefetched into L1 one line per k; 0 for none. Never dereferenced.
    pub a_next: usize,
    /// Floats from each B row to the same row of the B panel a later tile will read first
    /// (the next column panel read in place, or the next K block's, column block's or image's
    /// first), whose `nv · LANES` floats are prefetched into L2 as this tile reads the row; 0
    /// for none. Never dereferenced.
    pub b_next: usize,
    /// With `b_rows`: floats from one B vector of a row to the next (each vector then one
    /// output row of a map `LANES` pixels wide, read from its padded plane row); 0 when the
    /// vectors are contiguous. Ignored for packed or strided B.
    pub b_vstride: usize,
    /// Floats from `c` to the first output element of the tile that runs next, whose rows
    /// (`rows` of `nv · LANES` floats at stride `ldc`) the AVX-512 kernel prefetches into L2
    /// as this tile starts (the others ignore it); 0 for none. Never dereferenced.
    pub c_next: isize,
}

/// Where a tile's accumulators start.
#[derive(Clone, Copy, Debug)]
pub enum Init {
    Zero,
    /// From C itself (a K block after the first).
    Output,
    /// From a residual laid out like C (same `ldc`).
    Residual(*const f32),
}

/// One FP32 kernel, holding the ISA token that proves the CPU runs it.
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    #[cfg(target_arch = "x86_64")]
    Avx2Fma(detect::Avx2),
    #[cfg(target_arch = "x86_64")]
    Avx512(detect::Avx512Vnni),
}

/// AVX2 kernels need FMA too; every AVX2 CPU we know of has it, but it is a separate flag.
#[cfg(target_arch = "x86_64")]
fn has_fma() -> bool {
    std::arch::is_x86_feature_detected!("fma")
}

impl Kernel {
    /// The kernel of `isa`, or `None` where kestrel has no FP32 kernel of its own for it (the
    /// scalar path, or AVX2 without FMA), where convs run on the `gemm` crate.
    pub fn for_isa(isa: Isa) -> Option<Kernel> {
        match isa {
            Isa::Scalar => None,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx2 => detect::Avx2::new().filter(|_| has_fma()).map(Kernel::Avx2Fma),
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => detect::Avx512Vnni::new().map(Kernel::Avx512),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => "avx2-fma 6x16",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => "avx512f 8x48",
        }
    }

    pub fn geometry(self) -> Geometry {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => avx2::GEOMETRY,
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => avx512::GEOMETRY,
        }
    }

    /// Runs one tile of the geometry's `MR` rows ([`Kernel::tile_rows`] with `geometry().mr`).
    ///
    /// # Safety
    /// As for [`Kernel::tile_rows`].
    #[inline]
    pub unsafe fn tile(self, a: *const f32, b: *const f32, c: *mut f32, t: Tile, init: Init, epi: Option<&Epilogue>) {
        // SAFETY: forwarded contract, with the geometry's rows.
        unsafe { self.tile_rows(self.geometry().mr, a, b, c, t, init, epi) }
    }

    /// Rows per weight panel for a GEMM of `m` rows (a conv's output channels per group):
    /// the geometry's `MR`, or on AVX2 4 when `m ≤ 8` and that pads fewer rows (an
    /// 8-channel conv as two 4-row panels instead of 12 rows: UNet-style convs at 64² on Zen 3
    /// 0.81–0.89 of their time; 16 and 32 channels, 16 rows instead of 18 and 32 instead of
    /// 36, measured 0.95–1.08 and keep 6). [`PackedA`] then holds panels of that many rows,
    /// and [`Kernel::tile_rows`] runs them.
    pub fn panel_rows(self, m: usize) -> usize {
        let mr = self.geometry().mr;
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) if m <= 8 && m.div_ceil(4) * 4 < m.div_ceil(mr) * mr => 4,
            _ => mr,
        }
    }

    /// Runs one tile of `mr` rows: the geometry's `MR`, or what [`Kernel::panel_rows`] gave.
    ///
    /// # Safety
    /// `mr` must be the geometry's `MR` or a [`Kernel::panel_rows`] value; `a` must hold
    /// `kc · mr` floats, `b` rows `0..kc` of `t.cols` floats at stride `t.ldb`
    /// or at the offsets `t.b_rows` (which then holds `kc` of them; a row's vectors then
    /// `t.b_vstride` apart when that is not 0), each row a full
    /// `nv · LANES` floats when `t.cols` is a whole number of vectors; `c` (and a residual in `init`)
    /// must be valid for rows `0..t.rows` of `t.cols` elements at stride `t.ldc`, with no other
    /// reference to those elements alive; `epi.bias`, when given, holds `t.rows` values.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    pub unsafe fn tile_rows(self, mr: usize, a: *const f32, b: *const f32, c: *mut f32, t: Tile, init: Init, epi: Option<&Epilogue>) {
        let g = self.geometry();
        debug_assert!(t.rows >= 1 && t.rows <= mr && t.nv >= 1 && t.nv <= g.nv);
        debug_assert!(t.cols >= 1 && t.cols <= t.nv * g.lanes && t.cols > (t.nv - 1) * g.lanes);
        match self {
            // SAFETY: the token proves AVX2 and FMA; the caller's contract covers the pointers
            // (`mr` is 6 or 4).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => unsafe { avx2::tile(mr, a, b, c, t, init, epi) },
            // SAFETY: the token proves AVX-512F; the caller's contract covers the pointers
            // (`mr` is the geometry's: AVX-512 has no other).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe {
                debug_assert_eq!(mr, g.mr);
                avx512::tile(a, b, c, t, init, epi)
            },
        }
    }
}

impl Kernel {
    /// `dst[j] = src[idx[j]]` where `idx[j] ≥ 0`, else 0 (for `j < min(dst.len(), idx.len())`):
    /// the vector gather that packs a batch's small maps into B panels. Twin:
    /// [`scalar::gather`].
    ///
    /// # Safety
    /// Every non-negative `idx[j]` addresses a readable element of `src`.
    #[inline]
    pub unsafe fn gather(self, dst: &mut [f32], src: *const f32, idx: &[i32]) {
        match self {
            // SAFETY: the token proves AVX2; the caller's contract covers the indices.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => unsafe { avx2::gather(dst, src, idx) },
            // SAFETY: the token proves AVX-512F; the caller's contract covers the indices.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe { avx512::gather(dst, src, idx) },
        }
    }
}

impl Kernel {
    /// Copies `rows` rows of `cols` floats from `src` (row stride `lds`) to `dst` (row stride
    /// `ldd`) in vectors, the tail under a mask: the staging copies and padded planes of
    /// small maps, whose rows (8 or 16 pixels) cost a `memcpy` call each otherwise.
    ///
    /// # Safety
    /// Each source row `src + r·lds` must be readable and each destination row `dst + r·ldd`
    /// writable for `cols` floats, `r < rows`, with no other reference to the destination
    /// alive; source and destination do not overlap.
    #[inline]
    pub unsafe fn copy_rows(self, src: *const f32, lds: usize, dst: *mut f32, ldd: usize, rows: usize, cols: usize) {
        match self {
            // SAFETY: the token proves AVX2; the caller's contract covers the rows.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => unsafe { avx2::copy_rows(src, lds, dst, ldd, rows, cols) },
            // SAFETY: the token proves AVX-512F; the caller's contract covers the rows.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe { avx512::copy_rows(src, lds, dst, ldd, rows, cols) },
        }
    }
}

/// [`Kernel::stride2_row`]'s AVX-512 row, for the bf16 kernels' phase planes.
///
/// # Safety
/// The CPU has AVX-512F.
#[cfg(target_arch = "x86_64")]
pub(crate) unsafe fn stride2_row_avx512(dst: &mut [f32], src: &[f32], x0: isize) {
    // SAFETY: AVX-512F (the caller's contract); the lengths are the slices'.
    unsafe { avx512::stride2_row(dst.as_mut_ptr(), std::ptr::null_mut(), dst.len(), src.as_ptr(), src.len(), x0) }
}

impl Kernel {
    /// `dst[j] = src[x0 + 2·j]` where that column lies in `src`, 0 elsewhere: one row of a
    /// stride-2 phase plane (as `cpu::strided_row` with step 2, which the AVX2 kernel runs).
    /// On AVX-512, 16 columns per `vpermt2ps` from two masked loads.
    pub fn stride2_row(self, dst: &mut [f32], src: &[f32], x0: isize) {
        match self {
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => crate::cpu::strided_row(dst, src, x0, 2),
            // SAFETY: the token proves AVX-512F; the lengths are the slices'.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe { avx512::stride2_row(dst.as_mut_ptr(), std::ptr::null_mut(), dst.len(), src.as_ptr(), src.len(), x0) },
        }
    }

    /// The rows of both column phases of a stride-2 plane from one input row (`even` and
    /// `odd` of the same length): `even[j] = src[x0 + 2·j]`, `odd[j] = src[x0 + 2·j + 1]`, 0
    /// outside `src` ([`Kernel::stride2_row`] at `x0` and `x0 + 1`). On AVX-512 both from the
    /// same loads (the phase planes took 5–11 % of a stride-2 3×3 conv's time at one thread
    /// on Zen 5).
    pub fn stride2_rows(self, even: &mut [f32], odd: &mut [f32], src: &[f32], x0: isize) {
        match self {
            // SAFETY: the token proves AVX-512F; the rows hold `n` floats each (the shorter's
            // length), `src` its length.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe {
                let n = even.len().min(odd.len());
                avx512::stride2_row(even.as_mut_ptr(), odd.as_mut_ptr(), n, src.as_ptr(), src.len(), x0)
            },
            _ => {
                self.stride2_row(even, src, x0);
                self.stride2_row(odd, src, x0 + 1);
            }
        }
    }

    /// A stride-2 phase plane `[hph][wph]` (and, with `odd`, its odd-column twin) of the
    /// image `src: [h][w]` (`h = src.len() / w`): plane row `r` is input row `y0 + r·sy`, read
    /// as [`Kernel::stride2_rows`] (or [`Kernel::stride2_row`]) from column `x0`, zeros outside
    /// the image. One call per plane: ResNet-50's 14 × 14 downsample input took 88 µs row by
    /// row (7 168 rows of 7).
    #[allow(clippy::too_many_arguments)]
    pub fn stride2_plane(self, even: &mut [f32], odd: Option<&mut [f32]>, wph: usize, src: &[f32], w: usize, [y0, sy]: [isize; 2], x0: isize) {
        let hph = even.len() / wph.max(1);
        let h = src.len() / w.max(1);
        assert!(odd.as_ref().is_none_or(|o| o.len() >= hph * wph), "stride2_plane: odd plane shorter than the even one");
        match self {
            // SAFETY: the token proves AVX-512F; the planes hold hph · wph floats (asserted for
            // `odd`), `src` h · w.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe {
                let odd = odd.map_or(std::ptr::null_mut(), |o| o.as_mut_ptr());
                avx512::stride2_plane(even.as_mut_ptr(), odd, [hph, wph], src.as_ptr(), [h, w], [y0, sy], x0)
            },
            #[allow(unreachable_patterns)]
            _ => {
                let mut odd = odd;
                for (r, row) in even.chunks_exact_mut(wph).enumerate() {
                    let iy = y0 + r as isize * sy;
                    let odd_row = odd.as_deref_mut().map(|o| &mut o[r * wph..(r + 1) * wph]);
                    if iy < 0 || iy >= h as isize {
                        row.fill(0.0);
                        if let Some(o) = odd_row {
                            o.fill(0.0);
                        }
                        continue;
                    }
                    let s = &src[iy as usize * w..(iy as usize + 1) * w];
                    match odd_row {
                        Some(o) => self.stride2_rows(row, o, s, x0),
                        None => self.stride2_row(row, s, x0),
                    }
                }
            }
        }
    }

    /// Whether [`Kernel::permute_maps`] runs in vectors on this kernel (AVX-512; the AVX2
    /// kernel runs its scalar twin).
    pub fn permutes_maps(self) -> bool {
        #[cfg(target_arch = "x86_64")]
        return matches!(self, Kernel::Avx512(_));
        #[cfg(not(target_arch = "x86_64"))]
        false
    }

    /// One B row of batched small maps (`npix` = 4 or 16 pixels, the conv's input and
    /// output the same size), 16 columns (`16 / npix` whole images) per chunk: for chunks
    /// `first..first + chunks`, lane `l` of chunk `c` is `map[perm[l]]` where `mask` has bit
    /// `l`, else 0, `map` being the input planes of images `(first + c)·16/npix …` side by
    /// side (image `b`'s at `src + b·image_stride`, `npix` floats; images `≥ images` read as
    /// 0). One permute per 16 columns, where [`Kernel::gather`] takes a gather each: the
    /// same values.
    ///
    /// # Safety
    /// `npix` is 4 or 16, every `perm[l] < 16`; image `b < images` has
    /// `npix` readable floats at `src + b·image_stride`; `dst` is writable for `chunks · 16`
    /// floats and overlaps no source.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub unsafe fn permute_maps(self, dst: *mut f32, src: *const f32, image_stride: usize, npix: usize, images: usize, first: usize, chunks: usize, perm: &[i32; 16], mask: u16) {
        debug_assert!((npix == 4 || npix == 16) && perm.iter().all(|&p| (0..16).contains(&p)));
        match self {
            // SAFETY: the caller's contract.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => unsafe { scalar::permute_maps(dst, src, image_stride, npix, images, first, chunks, perm, mask) },
            // SAFETY: the token proves AVX-512F; the caller's contract covers the rest.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe { avx512::permute_maps(dst, src, image_stride, npix, images, first, chunks, perm, mask) },
        }
    }
}

impl Kernel {
    /// Whether [`Kernel::lanes_tile`] runs in vectors on this kernel (both x86 kernels do).
    pub fn runs_lanes(self) -> bool {
        cfg!(target_arch = "x86_64")
    }

    /// One tile of the direct conv with the output channels in the lanes ([`lanes`]).
    ///
    /// # Safety
    /// [`lanes::twin`]'s contract.
    #[inline]
    pub unsafe fn lanes_tile(self, t: &lanes::LanesTile) {
        match self {
            // SAFETY: the token proves AVX2 (and `for_isa` checked FMA); the caller's
            // contract covers the rest.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2Fma(_) => unsafe { lanes::avx2(t) },
            // SAFETY: the token proves AVX-512F; the caller's contract covers the rest.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512(_) => unsafe { lanes::avx512(t) },
        }
    }
}

/// Most columns of a narrow GEMM ([`Kernel::narrow`]).
pub const NARROW_COLS: usize = 4;

impl Kernel {
    /// The narrow GEMM: for weight panels `panels` of `a` and the `b.len() ≤ NARROW_COLS`
    /// columns `b[j]` (`a.k` values each), `acc[((p − panels.start)·NARROW_COLS + j)·8 + r] =
    /// fma(a[p·MR + r][k], b[j][k], …)` over k in order, starting from the value `acc` holds,
    /// for rows `r < MR` (lanes `MR..8` are left alone). The tiles' arithmetic, vectorised
    /// along the rows: AVX2 + FMA, with a plain loop of fused multiply-adds where the CPU lacks FMA.
    ///
    /// # Panics
    /// When `b` is empty or longer than [`NARROW_COLS`], a column is shorter than `a.k`, the
    /// panels lie outside `a`, or `acc` is shorter than `panels.len() · NARROW_COLS · 8`.
    pub fn narrow(self, a: &PackedA, panels: std::ops::Range<usize>, b: &[&[f32]], acc: &mut [f32]) {
        let (np, k, mr) = (panels.len(), a.k, a.mr);
        assert!(!b.is_empty() && b.len() <= NARROW_COLS && b.iter().all(|c| c.len() >= k), "narrow: 1 to {NARROW_COLS} columns of {k} values");
        assert!(mr <= 8 && panels.end * k * mr <= a.data.len() && acc.len() >= np * NARROW_COLS * 8, "narrow: panels or accumulators out of range");
        if np == 0 || k == 0 {
            return;
        }
        #[cfg(target_arch = "x86_64")]
        if matches!(mr, 4 | 6 | 8) && (matches!(self, Kernel::Avx2Fma(_)) || has_fma()) {
            let bp: [*const f32; NARROW_COLS] = std::array::from_fn(|j| b[j.min(b.len() - 1)].as_ptr());
            let ap = a.data[panels.start * k * mr..].as_ptr();
            // SAFETY: the AVX2 token proves AVX2 and FMA, and an AVX-512 CPU has AVX2 (FMA
            // checked); the asserts above prove the panels (k · MR floats each, at stride
            // k · MR), the columns and the accumulators in bounds.
            unsafe {
                match mr {
                    8 => narrow::run::<8>(ap, k * mr, np, k, bp, b.len(), acc),
                    4 => narrow::run::<4>(ap, k * mr, np, k, bp, b.len(), acc),
                    _ => narrow::run::<6>(ap, k * mr, np, k, bp, b.len(), acc),
                }
            }
            return;
        }
        let _ = self;
        for p in 0..np {
            let panel = a.panel_from(panels.start + p, 0);
            for (j, col) in b.iter().enumerate() {
                for r in 0..mr {
                    let y = &mut acc[(p * NARROW_COLS + j) * 8 + r];
                    *y = (0..k).fold(*y, |y, kk| detmath::fma(panel[kk * mr + r], col[kk], y));
                }
            }
        }
    }
}

/// The epilogue of one value, shared by the scalar twin and the kernels' documentation:
/// `y = acc (+ bias)`, then the activation.
#[inline(always)]
pub fn finish(acc: f32, bias: Option<f32>, act: Act) -> f32 {
    let y = match bias {
        Some(b) => acc + b,
        None => acc,
    };
    match act {
        Act::None => y,
        Act::Leaky(s) => y.max(0.0) + s * y.min(0.0),
        Act::Clip(lo, hi) => y.max(lo).min(hi),
    }
}
