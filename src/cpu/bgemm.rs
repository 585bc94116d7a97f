//! BF16 GEMM for `--precision bf16`: weights rounded to bf16 and packed once, activations
//! rounded to bf16 as each B block is packed, products by `vdpbf16ps` (AVX512_BF16),
//! accumulation in f32. The conv driver is [`crate::cpu::bconv`].
//!
//! Layouts (`MR` = 8 rows, `NR` = 48 columns per tile; a "pair" is one u32 holding the bf16
//! of an even k in its low half and of the next k in its high half, zero past K):
//! - A ([`PackedBf16`]): `[Mpad/MR][K2][MR]` pairs, rows zero-padded to `Mpad`;
//! - B panel: `[K2 of the block][NR]` pairs, columns past the real ones zero;
//! - C: f32 rows at stride `ldc`; only the tile's real rows and columns are read or written.
//!
//! Arithmetic of every element: `acc = init`; for each pair `acc = acc + a₁·b₁`, then
//! `acc = acc + a₀·b₀` (the high product first), each sum rounded to nearest even and flushed
//! to zero when subnormal, the products of two bf16 values exact in f32; then `acc + bias` and
//! the activation ([`crate::cpu::sgemm::finish`]). That is what `vdpbf16ps` computes: the
//! order was checked bit for bit on this project's AVX512_BF16 host over 320 000 random
//! pairs, and the tests compare the kernel with the scalar twin ([`Kernel::Scalar`]) bit for
//! bit. bf16 inputs are rounded from f32 to nearest even ([`to_bf16`]), subnormals to zero.

use super::aligned::Aligned;
use super::sgemm::{finish, Act, Init};
use crate::cpu::detect::Isa;

/// Rows of a tile.
pub const MR: usize = 8;
/// Columns of a tile (three 16-lane vectors).
pub const NR: usize = 48;
/// Pairs (two k each) per K block: a B panel of `KC2 · NR` pairs (24 KiB) stays in L1.
pub const KC2: usize = 128;
/// Columns per column block: its B panels, `KC2 · NC` pairs (240 KiB), stay in L2.
pub const NC: usize = 480;

/// f32 → bf16, rounded to nearest even; subnormals become signed zero, NaN stays NaN.
#[inline(always)]
pub fn to_bf16(x: f32) -> u16 {
    let b = x.to_bits();
    if x.is_nan() {
        return ((b >> 16) | 0x40) as u16;
    }
    if b & 0x7f80_0000 == 0 {
        return ((b >> 16) & 0x8000) as u16;
    }
    (b.wrapping_add(0x7fff + ((b >> 16) & 1)) >> 16) as u16
}

/// bf16 → f32 (exact); a subnormal bf16 reads as zero, as `vdpbf16ps` reads it.
#[inline(always)]
pub fn from_bf16(h: u16) -> f32 {
    let b = u32::from(h) << 16;
    if b & 0x7f80_0000 == 0 {
        f32::from_bits(b & 0x8000_0000)
    } else {
        f32::from_bits(b)
    }
}

/// The pair of `lo` (even k) and `hi` (odd k).
#[inline(always)]
pub fn pair(lo: f32, hi: f32) -> u32 {
    u32::from(to_bf16(lo)) | (u32::from(to_bf16(hi)) << 16)
}

/// A weight matrix `[M][K]` rounded to bf16 and packed for the kernels.
#[derive(Clone, Debug)]
pub struct PackedBf16 {
    pub m: usize,
    pub k: usize,
    /// `[Mpad/MR][K2][MR]` pairs, on a cache line (`cpu::aligned`).
    pub data: Aligned<u32>,
}

impl PackedBf16 {
    /// Packs `w` (`m` rows of `k`, row-major).
    pub fn new(w: &[f32], m: usize, k: usize) -> PackedBf16 {
        let k2 = k.div_ceil(2);
        let panels = m.div_ceil(MR);
        let mut data = Aligned::<u32>::zeroed(panels * k2 * MR);
        for r in 0..m {
            let row = &w[r * k..(r + 1) * k];
            for kk in 0..k2 {
                let hi = row.get(2 * kk + 1).copied().unwrap_or(0.0);
                data[((r / MR) * k2 + kk) * MR + r % MR] = pair(row[2 * kk], hi);
            }
        }
        PackedBf16 { m, k, data }
    }

    /// Pairs per row.
    pub fn k2(&self) -> usize {
        self.k.div_ceil(2)
    }

    /// Panel `p` from pair `kk0` on.
    pub fn panel_from(&self, p: usize, kk0: usize) -> &[u32] {
        &self.data[(p * self.k2() + kk0) * MR..(p + 1) * self.k2() * MR]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        4 * self.data.len()
    }
}

/// The fused part of a tile's epilogue (see [`crate::cpu::sgemm::Epilogue`]).
#[derive(Clone, Copy, Debug)]
pub struct Epi<'a> {
    /// `[rows of the tile]`.
    pub bias: Option<&'a [f32]>,
    pub act: Act,
}

/// One BF16 kernel: the AVX512_BF16 one, or the scalar twin that emulates it (run where
/// `KESTREL_ISA=scalar` forces the scalar path, and by the twin tests).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    Scalar,
    #[cfg(target_arch = "x86_64")]
    Avx512Bf16(Bf16Token),
}

/// K steps ahead of the one running whose weights the `vdpbf16ps` tiles (this module's and
/// [`crate::cpu::bdot`]'s) prefetch: 4 KiB of a panel's stream. A model's later layers read
/// their weights from memory (ResNet-50's are 50 MB in bf16), one sequential stream per panel
/// that the hardware prefetchers followed too slowly. Zen 5, 2 threads, with / without
/// (alternating in one process): ResNet-50 bf16 0.90–0.91 (the planes' tiles; 32 steps ahead
/// 0.92–0.94, 512 0.90), UNet 256² bf16 0.97–0.99 (the Winograd GEMMs on this tile).
pub const PREFETCH_STEPS: usize = 128;

/// Proof that the CPU has AVX-512F, AVX-512BW and AVX512_BF16 (every CPU with AVX512_BF16 has
/// BW).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Bf16Token(());

impl Bf16Token {
    /// `Some` only on CPUs with AVX-512F, AVX-512BW and AVX512_BF16.
    pub fn new() -> Option<Self> {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") && std::arch::is_x86_feature_detected!("avx512bw") && std::arch::is_x86_feature_detected!("avx512bf16") {
            return Some(Bf16Token(()));
        }
        None
    }
}

impl Kernel {
    /// The BF16 kernel of `isa`: the emulation on the scalar path, `vdpbf16ps` on the AVX-512
    /// path when the CPU has AVX512_BF16, else `None` (bf16 is then refused).
    pub fn for_isa(isa: Isa) -> Option<Kernel> {
        match isa {
            Isa::Scalar => Some(Kernel::Scalar),
            Isa::Avx2 => None,
            #[cfg(target_arch = "x86_64")]
            Isa::Avx512Vnni => Bf16Token::new().map(Kernel::Avx512Bf16),
            #[cfg(not(target_arch = "x86_64"))]
            _ => None,
        }
    }

    /// Whether this is the CPU's own bf16 arithmetic (`vdpbf16ps`), not the scalar emulation.
    pub fn is_native(self) -> bool {
        !matches!(self, Kernel::Scalar)
    }

    /// The CPU's own bf16 kernel on the path of `isa`, if it has one (the emulation is a twin,
    /// not a kernel to time or offer).
    pub fn native(isa: Isa) -> Option<Kernel> {
        Kernel::for_isa(isa).filter(|k| k.is_native())
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Scalar => "scalar emulation 8x48",
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => "avx512bf16 8x48",
        }
    }

    /// Runs one tile: `rows` ≤ MR, `cols` ≤ NR (`cols ≥ 1`), `k2` pairs.
    ///
    /// # Safety
    /// `a` holds `k2 · MR` pairs and `b` `k2 · NR`; `c` (and the residual in `init`) is valid
    /// for rows `0..rows` of `cols` elements at stride `ldc`, with no other reference to those
    /// elements alive; `epi.bias`, when given, holds `rows` values.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub unsafe fn tile(self, a: *const u32, b: *const u32, k2: usize, c: *mut f32, ldc: usize, rows: usize, cols: usize, init: Init, epi: Option<&Epi>) {
        debug_assert!((1..=MR).contains(&rows) && (1..=NR).contains(&cols));
        match self {
            // SAFETY: the caller's contract covers the pointers.
            Kernel::Scalar => unsafe { tile_scalar(a, b, k2, c, ldc, rows, cols, init, epi) },
            // SAFETY: the token proves AVX-512F and AVX512_BF16; the caller's contract covers
            // the pointers.
            // A narrow tile (the last columns of a row of pixels) runs only the vectors it has.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe {
                match cols.div_ceil(16) {
                    1 => avx512::tile::<1>(a, b, k2, c, ldc, rows, cols, init, epi),
                    2 => avx512::tile::<2>(a, b, k2, c, ldc, rows, cols, init, epi),
                    _ => avx512::tile::<3>(a, b, k2, c, ldc, rows, cols, init, epi),
                }
            },
        }
    }
}

impl Kernel {
    /// `dst[j] = from_bf16(to_bf16(x[j]))`: `x` rounded to bf16 values, kept in f32 (for the
    /// FP32 kernels, whose products of two bf16 values are then exact). Bit-identical to the
    /// scalar rounding on every path.
    pub fn round_slice(self, x: &[f32], dst: &mut [f32]) {
        assert!(x.len() == dst.len(), "round_slice: lengths differ");
        match self {
            Kernel::Scalar => dst.iter_mut().zip(x).for_each(|(d, &v)| *d = from_bf16(to_bf16(v))),
            // SAFETY: the token proves AVX-512F; lengths checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe { avx512::round_slice(x, dst) },
        }
    }

    /// [`Kernel::round_slice`] of `x` onto itself.
    pub fn round_in_place(self, x: &mut [f32]) {
        match self {
            Kernel::Scalar => x.iter_mut().for_each(|v| *v = from_bf16(to_bf16(*v))),
            // SAFETY: the token proves AVX-512F; one slice, read and written lane by lane.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe { avx512::round_in_place(x) },
        }
    }

    /// `dst[j] = src[x0 + 2·j]` where that column lies in `src`, 0 elsewhere: one row of a
    /// stride-2 phase plane before rounding (`cpu::strided_row` with step 2; on AVX-512 the
    /// FP32 kernel's `vpermt2ps` row).
    pub fn stride2_row(self, dst: &mut [f32], src: &[f32], x0: isize) {
        match self {
            Kernel::Scalar => crate::cpu::strided_row(dst, src, x0, 2),
            // SAFETY: the token proves AVX-512F.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe { crate::cpu::sgemm::stride2_row_avx512(dst, src, x0) },
        }
    }

    /// The channel pairs of one block of pixels: for pair `j < pairs`, `dst[j·width + c] =
    /// pair(x[2j·stride + c], x[(2j + 1)·stride + c])` for `c < cols` (the high half 0 past
    /// `rows` rows), and 0 for `cols ≤ c < width`: [`Kernel::pack_pairs`] row pair by row pair,
    /// in one call rather than one per pair of short rows.
    ///
    /// # Panics
    /// When `x` is shorter than its `rows` rows of `cols` at `stride`, `dst` than `pairs ·
    /// width`, `cols > width`, or a pair lies past `rows`.
    #[allow(clippy::too_many_arguments)]
    pub fn pack_pair_rows(self, x: &[f32], stride: usize, rows: usize, pairs: usize, cols: usize, width: usize, dst: &mut [u32]) {
        assert!(cols <= width && dst.len() >= pairs * width && 2 * pairs <= rows + 1, "pack_pair_rows: block shape");
        assert!(rows == 0 || x.len() >= (rows - 1) * stride + cols, "pack_pair_rows: input shorter than its rows");
        match self {
            Kernel::Scalar => {
                let zeros = vec![0f32; cols];
                for (j, row) in dst[..pairs * width].chunks_exact_mut(width).enumerate() {
                    let hi = if 2 * j + 1 < rows { &x[(2 * j + 1) * stride..][..cols] } else { &zeros[..] };
                    Kernel::Scalar.pack_pairs(&x[2 * j * stride..][..cols], hi, &mut row[..cols]);
                    row[cols..].fill(0);
                }
            }
            // SAFETY: the token proves AVX-512F, BW and BF16; the shapes are checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe { avx512::pack_pair_rows(x, stride, rows, pairs, cols, width, dst) },
        }
    }

    /// `dst[j] = pair(lo.0[lo.1 + 2·j], hi.0[hi.1 + 2·j])` for `j < dst.len()`, a column
    /// outside its row (and every column of a missing `hi`) 0: a row of a stride-2 phase
    /// plane's channel pairs straight from the two input rows, the values of
    /// [`Kernel::stride2_row`] then [`Kernel::pack_pairs`] (ResNet-50's stride-2 planes took
    /// 46–138 µs a call that way, one call per row each).
    pub fn pack_pairs_stride2(self, lo: (&[f32], isize), hi: Option<(&[f32], isize)>, dst: &mut [u32]) {
        match self {
            Kernel::Scalar => {
                let at = |(row, x0): (&[f32], isize), j: usize| usize::try_from(x0 + 2 * j as isize).ok().and_then(|x| row.get(x)).copied().unwrap_or(0.0);
                for (j, d) in dst.iter_mut().enumerate() {
                    *d = pair(at(lo, j), hi.map_or(0.0, |h| at(h, j)));
                }
            }
            // SAFETY: the token proves AVX-512F, BW and BF16; the rows' lengths are their
            // slices'.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe { avx512::pack_pairs_stride2(lo, hi, dst) },
        }
    }

    /// [`Kernel::pack_pairs_stride2`] of both column phases of a row at once: `even` from
    /// columns `x0 + 2·j`, `odd` from `x0 + 2·j + 1` of each row (`lo.1`, `hi.1` the rows'
    /// `x0`), the values of two calls (`odd` with `x0 + 1`), from one pass over the rows.
    ///
    /// # Panics
    /// When `even` and `odd` differ in length.
    pub fn pack_pairs_stride2_both(self, lo: (&[f32], isize), hi: Option<(&[f32], isize)>, even: &mut [u32], odd: &mut [u32]) {
        assert_eq!(even.len(), odd.len(), "pack_pairs_stride2_both: planes' rows differ in length");
        match self {
            Kernel::Scalar => {
                self.pack_pairs_stride2(lo, hi, even);
                self.pack_pairs_stride2((lo.0, lo.1 + 1), hi.map(|(r, x0)| (r, x0 + 1)), odd);
            }
            // SAFETY: the token proves AVX-512F, BW and BF16; the rows' lengths are their
            // slices', and the two outputs have the same length (asserted).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe { avx512::pack_pairs_stride2_both(lo, hi, even, odd) },
        }
    }

    /// `dst[j] = pair(lo[j], hi[j])` for `j < dst.len()` (`lo` and `hi` at least as long):
    /// an im2col row pair rounded into a B panel row. Bit-identical to [`pair`] on every path.
    pub fn pack_pairs(self, lo: &[f32], hi: &[f32], dst: &mut [u32]) {
        assert!(lo.len() >= dst.len() && hi.len() >= dst.len(), "pack_pairs: rows shorter than the panel row");
        match self {
            Kernel::Scalar => dst.iter_mut().zip(lo.iter().zip(hi)).for_each(|(d, (&l, &h))| *d = pair(l, h)),
            // SAFETY: the token proves AVX-512F; lengths checked above.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Bf16(_) => unsafe { avx512::pack_pairs(lo, hi, dst) },
        }
    }
}

/// `x` with a subnormal flushed to signed zero.
#[inline(always)]
fn ftz(x: f32) -> f32 {
    if x != 0.0 && x.abs() < f32::MIN_POSITIVE {
        f32::from_bits(x.to_bits() & 0x8000_0000)
    } else {
        x
    }
}

/// `acc` plus the products of one pair of `a` and one of `b` (see the module docs): the high
/// halves' product first, then the low halves', each sum rounded to nearest even and flushed
/// to zero when subnormal. One lane of `vdpbf16ps`.
#[inline(always)]
pub fn dot_pair(acc: f32, a: u32, b: u32) -> f32 {
    let acc = ftz(acc + from_bf16((a >> 16) as u16) * from_bf16((b >> 16) as u16));
    ftz(acc + from_bf16(a as u16) * from_bf16(b as u16))
}

/// The twin: the module's arithmetic one element at a time.
///
/// # Safety
/// As [`Kernel::tile`].
#[allow(clippy::too_many_arguments)]
unsafe fn tile_scalar(a: *const u32, b: *const u32, k2: usize, c: *mut f32, ldc: usize, rows: usize, cols: usize, init: Init, epi: Option<&Epi>) {
    for r in 0..rows {
        for j in 0..cols {
            // SAFETY: r < rows and j < cols lie inside the caller's tile (contract above).
            let mut acc = unsafe {
                match init {
                    Init::Zero => 0.0,
                    Init::Output => *c.add(r * ldc + j),
                    Init::Residual(res) => *res.add(r * ldc + j),
                }
            };
            for kk in 0..k2 {
                // SAFETY: kk < k2 and r < MR, j < NR inside the panels (contract above).
                let (ap, bp) = unsafe { (*a.add(kk * MR + r), *b.add(kk * NR + j)) };
                acc = dot_pair(acc, ap, bp);
            }
            let y = match epi {
                Some(e) => finish(acc, e.bias.map(|bias| bias[r]), e.act),
                None => acc,
            };
            // SAFETY: as above.
            unsafe { *c.add(r * ldc + j) = y };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::{Epi, Init, MR, NR};
    use crate::cpu::sgemm::act512 as act;

    /// [`super::to_bf16`] of 16 lanes, in the low half of each 32-bit lane.
    #[inline(always)]
    unsafe fn to_bf16(x: __m512) -> __m512i {
        let b = _mm512_castps_si512(x);
        let hi = _mm512_srli_epi32::<16>(b);
        let rounded = _mm512_srli_epi32::<16>(_mm512_add_epi32(b, _mm512_add_epi32(_mm512_set1_epi32(0x7fff), _mm512_and_si512(hi, _mm512_set1_epi32(1)))));
        let subnormal = _mm512_testn_epi32_mask(b, _mm512_set1_epi32(0x7f80_0000));
        let nan = _mm512_cmp_ps_mask::<_CMP_UNORD_Q>(x, x);
        let r = _mm512_mask_mov_epi32(rounded, subnormal, _mm512_and_si512(hi, _mm512_set1_epi32(0x8000)));
        _mm512_mask_mov_epi32(r, nan, _mm512_or_si512(hi, _mm512_set1_epi32(0x40)))
    }

    /// [`super::Kernel::round_slice`], 16 values at a time.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn round_slice(x: &[f32], dst: &mut [f32]) {
        for (j, m) in chunks16(dst.len()) {
            // SAFETY: the lanes of `m` lie below dst.len() = x.len() (checked by the caller);
            // masked-off lanes are neither read nor written.
            unsafe {
                let h = to_bf16(_mm512_maskz_loadu_ps(m, x.as_ptr().add(j)));
                // A subnormal never comes out of `to_bf16` (flushed to a signed zero), so the
                // f32 of these bits is `from_bf16`'s.
                _mm512_mask_storeu_ps(dst.as_mut_ptr().add(j), m, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h)));
            }
        }
    }

    /// [`super::Kernel::round_in_place`], 16 values at a time.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn round_in_place(x: &mut [f32]) {
        let p = x.as_mut_ptr();
        for (j, m) in chunks16(x.len()) {
            // SAFETY: the lanes of `m` lie below x.len(); masked-off lanes are neither read nor
            // written; each vector is read before it is written back.
            unsafe {
                let h = to_bf16(_mm512_maskz_loadu_ps(m, p.add(j)));
                _mm512_mask_storeu_ps(p.add(j), m, _mm512_castsi512_ps(_mm512_slli_epi32::<16>(h)));
            }
        }
    }

    /// `(j, mask)` of each run of up to 16 lanes from 0 to `n`: a full mask, the last one
    /// covering the `n − j` lanes left.
    #[inline(always)]
    fn chunks16(n: usize) -> impl Iterator<Item = (usize, __mmask16)> {
        (0..n).step_by(16).map(move |j| (j, if n - j >= 16 { 0xffff } else { ((1u32 << (n - j)) - 1) as u16 }))
    }

    /// [`super::Kernel::pack_pair_rows`]: [`pack_pairs`]' 16 columns at a time, every pair in
    /// one call.
    ///
    /// # Safety
    /// AVX-512F, BW and BF16; the shapes as [`super::Kernel::pack_pair_rows`] checks them.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_pair_rows(x: &[f32], stride: usize, rows: usize, pairs: usize, cols: usize, width: usize, dst: &mut [u32]) {
        // SAFETY: PAIRS is 64 bytes.
        let idx = unsafe { _mm512_loadu_si512(PAIRS.as_ptr() as *const __m512i) };
        for j in 0..pairs {
            let (lo, hi) = (x.as_ptr().wrapping_add(2 * j * stride), x.as_ptr().wrapping_add((2 * j + 1) * stride));
            let has_hi = 2 * j + 1 < rows;
            let d = dst[j * width..].as_mut_ptr();
            for (c, m) in chunks16(width) {
                // Lanes of `m` below `cols` are read; the others are stored as 0.
                let live: __mmask16 = m & if c >= cols { 0 } else if cols - c >= 16 { 0xffff } else { ((1u32 << (cols - c)) - 1) as u16 };
                // SAFETY: live lanes are columns below `cols` of rows 2j and 2j + 1 (< rows
                // when read), inside `x` (checked by the caller); `m`'s lanes lie below
                // `width`, inside pair j's row of `dst`.
                unsafe {
                    let l = _mm512_maskz_loadu_ps(live, lo.add(c));
                    let h = if has_hi { _mm512_maskz_loadu_ps(live, hi.add(c)) } else { _mm512_setzero_ps() };
                    _mm512_mask_storeu_epi32(d.add(c) as *mut i32, m, _mm512_maskz_mov_epi32(live, pairs16(idx, l, h)));
                }
            }
        }
    }

    /// 16 columns of two rows as bf16 pairs: both rounded by `vcvtne2ps2bf16`, then `idx`
    /// ([`PAIRS`]) puts each column's two halves side by side (low row in the low half).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    fn pairs16(idx: __m512i, lo: __m512, hi: __m512) -> __m512i {
        // SAFETY: __m512bh and __m512i are both 512-bit vectors.
        let both = unsafe { std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo)) };
        _mm512_permutexvar_epi16(idx, both)
    }

    /// Word 2j takes word j (the low row's column j), word 2j + 1 word 16 + j (the high
    /// row's).
    const PAIRS: [u16; 32] = {
        let mut idx = [0u16; 32];
        let mut j = 0;
        while j < 16 {
            idx[2 * j] = j as u16;
            idx[2 * j + 1] = 16 + j as u16;
            j += 1;
        }
        idx
    };

    /// [`super::Kernel::pack_pairs_stride2`], 16 columns at a time: each row's even columns
    /// (`sgemm`'s `stride2_pair`), then [`pack_pairs`]' rounding and word permute.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_pairs_stride2((lo, lx): (&[f32], isize), hi: Option<(&[f32], isize)>, dst: &mut [u32]) {
        // SAFETY: PAIRS is 64 bytes.
        let idx = unsafe { _mm512_loadu_si512(PAIRS.as_ptr() as *const __m512i) };
        // Columns x0 + 2j of `row` for this chunk's 16 j.
        // SAFETY: AVX-512F (this function's features); `row` is readable for its length.
        let evens = |row: &[f32], x0: isize, j: usize| unsafe { crate::cpu::sgemm::stride2_pair(row.as_ptr(), row.len(), x0 + 2 * j as isize).0 };
        for (j, m) in chunks16(dst.len()) {
            let l = evens(lo, lx, j);
            let h = hi.map_or(_mm512_setzero_ps(), |(row, x0)| evens(row, x0, j));
            // SAFETY: the lanes of `m` lie below dst.len(); masked-off lanes are not written.
            unsafe { _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(j) as *mut i32, m, pairs16(idx, l, h)) };
        }
    }

    /// [`super::Kernel::pack_pairs_stride2_both`], 16 columns of each phase at a time: each
    /// row's two loads give its even and its odd columns (`sgemm`'s `stride2_pair`), each
    /// phase then rounded and permuted as [`pack_pairs`] does.
    ///
    /// # Safety
    /// AVX-512F, BW and BF16; `odd.len() == even.len()`.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_pairs_stride2_both((lo, lx): (&[f32], isize), hi: Option<(&[f32], isize)>, even: &mut [u32], odd: &mut [u32]) {
        debug_assert_eq!(even.len(), odd.len());
        // SAFETY: PAIRS is 64 bytes.
        let idx = unsafe { _mm512_loadu_si512(PAIRS.as_ptr() as *const __m512i) };
        // Columns x0 + 2j and x0 + 2j + 1 of `row` for this chunk's 16 j.
        // SAFETY: AVX-512F (this function's features); `row` is readable for its length.
        let cols = |row: &[f32], x0: isize, j: usize| unsafe { crate::cpu::sgemm::stride2_pair(row.as_ptr(), row.len(), x0 + 2 * j as isize) };
        for (j, m) in chunks16(even.len()) {
            let (le, lo_) = cols(lo, lx, j);
            let (he, ho) = hi.map_or((_mm512_setzero_ps(), _mm512_setzero_ps()), |(row, x0)| cols(row, x0, j));
            // SAFETY: the lanes of `m` lie below even.len() = odd.len(); masked-off lanes are
            // not written.
            unsafe {
                _mm512_mask_storeu_epi32(even.as_mut_ptr().add(j) as *mut i32, m, pairs16(idx, le, he));
                _mm512_mask_storeu_epi32(odd.as_mut_ptr().add(j) as *mut i32, m, pairs16(idx, lo_, ho));
            }
        }
    }

    /// [`super::Kernel::pack_pairs`], 16 columns at a time: `vcvtne2ps2bf16` rounds both rows
    /// (to nearest even, a subnormal input to a signed zero, a NaN to `(x >> 16) | 0x40`: the
    /// rounding of [`super::to_bf16`], Intel SDM), then one word permute puts each column's
    /// two halves side by side.
    #[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
    pub(super) unsafe fn pack_pairs(lo: &[f32], hi: &[f32], dst: &mut [u32]) {
        // SAFETY: PAIRS is 64 bytes.
        let idx = unsafe { _mm512_loadu_si512(PAIRS.as_ptr() as *const __m512i) };
        for (j, m) in chunks16(dst.len()) {
            // SAFETY: the lanes of `m` lie below dst.len() ≤ lo.len(), hi.len() (checked by
            // the caller); masked-off lanes are neither read nor written.
            unsafe {
                let (l, h) = (_mm512_maskz_loadu_ps(m, lo.as_ptr().add(j)), _mm512_maskz_loadu_ps(m, hi.as_ptr().add(j)));
                // Words 0..16 from `l`, 16..32 from `h`.
                _mm512_mask_storeu_epi32(dst.as_mut_ptr().add(j) as *mut i32, m, pairs16(idx, l, h));
            }
        }
    }

    /// An 8 × 16·NV tile (NV ≤ 3): 8·NV accumulators, per pair NV B vectors (the first NV of
    /// the panel's 48 columns) and 8 broadcast A pairs.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bf16")]
    pub(super) unsafe fn tile<const NV: usize>(a: *const u32, b: *const u32, k2: usize, c: *mut f32, ldc: usize, rows: usize, cols: usize, init: Init, epi: Option<&Epi>) {
        let mut masks: [__mmask16; NV] = [0; NV];
        for (v, m) in masks.iter_mut().enumerate() {
            let n = cols.saturating_sub(v * 16).min(16);
            *m = if n == 16 { 0xffff } else { ((1u32 << n) - 1) as u16 };
        }
        // SAFETY (whole body): the caller guarantees rows < `rows` and the masked columns <
        // `cols` of `c` and of a residual are valid (masked-off lanes are neither read nor
        // written: AVX-512 masked loads and stores suppress faults there), that `a` holds
        // k2 · MR pairs and `b` k2 · NR; rows ≥ `rows` of the accumulators are never stored.
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); NV]; MR];
            let src = match init {
                Init::Zero => None,
                Init::Output => Some(c as *const f32),
                Init::Residual(r) => Some(r),
            };
            if let Some(src) = src {
                for (r, row) in acc.iter_mut().enumerate().take(rows) {
                    for v in 0..NV {
                        row[v] = _mm512_maskz_loadu_ps(masks[v], src.add(r * ldc + v * 16));
                    }
                }
            }
            for kk in 0..k2 {
                // Past the panel's end this touches the next panel's weights (or nothing we
                // own): a prefetch never faults.
                _mm_prefetch::<_MM_HINT_T0>(a.wrapping_add((kk + super::PREFETCH_STEPS) * MR) as *const i8);
                let bp = b.add(kk * NR);
                let bv: [__m512bh; NV] = std::array::from_fn(|v| std::mem::transmute::<__m512i, __m512bh>(_mm512_loadu_si512(bp.add(v * 16) as *const __m512i)));
                let ap = a.add(kk * MR);
                for (r, row) in acc.iter_mut().enumerate() {
                    let av = std::mem::transmute::<__m512i, __m512bh>(_mm512_set1_epi32(*ap.add(r) as i32));
                    for v in 0..NV {
                        row[v] = _mm512_dpbf16_ps(row[v], av, bv[v]);
                    }
                }
            }
            for (r, row) in acc.iter().enumerate().take(rows) {
                for v in 0..NV {
                    let mut y = row[v];
                    if let Some(e) = epi {
                        if let Some(bias) = e.bias {
                            y = _mm512_add_ps(y, _mm512_set1_ps(bias[r]));
                        }
                        y = act(y, e.act);
                    }
                    _mm512_mask_storeu_ps(c.add(r * ldc + v * 16), masks[v], y);
                }
            }
        }
    }
}
