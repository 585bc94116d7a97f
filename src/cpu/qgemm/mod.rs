//! INT8 GEMM: u8 activations (with a zero point) times s8 weights (symmetric per output
//! channel), accumulated exactly in i32.
//!
//! Layouts (shared by every ISA; only the kernel function and the weights' integer width change):
//! - weights, packed once for the chosen kernel ([`pack`]): `[Mpad][Kpad]` row-major,
//!   `Kpad = K` rounded up to 4 and `Mpad = M` rounded up to [`MR`], zero-filled; s8 for
//!   VNNI and scalar, widened to i16 for AVX2; `row_sums[c] = Σ_k w[c][k]` for the zero-point
//!   correction;
//! - activations, packed per call into panels: `[nblocks][Kpad/4][16 pixels][4 k]` u8, i.e. the
//!   four consecutive k of one pixel are adjacent, as `vpdpbusd` wants them; blocks
//!   [`block_stride`] bytes apart (a spare cache line after each);
//! - output: `acc[c][p] = Σ_k a[k][p] · w[c][k]` as i32, row `c` at `c · out_rs`.
//!
//! The VNNI and AMX kernels and the scalar twin also have an implicit form
//! ([`Kernel::run_rows_taps`]): no panel, 4-k group `g` of pixel `p` read in place at
//! `src[koff[g] + 4·p]`, as a conv's quad phase planes hold it; its weights are packed with
//! each 4-k group four channels of one tap ([`PackedWeights::quad_taps`], groups in
//! [`quad_group`]'s order: AMX's tap by tap, each K step's 16 offsets one stride apart).
//!
//! AMX can also store its sums tile by tile ([`Kernel::run_rows_tiles`], [`tiles_index`]):
//! 16 × 16 i32 a tile, 1 KB in a run.
//!
//! The caller applies `acc − za · row_sums[c]` and the scales. How the s8×s8-free contract maps
//! onto each ISA:
//! - VNNI: `vpdpbusd` multiplies 4 u8 × 4 s8 and adds into i32 lanes; it cannot saturate.
//! - AVX2, per layer, decided when the weights are packed ([`Kernel::packing_for`]):
//!   - `vpmaddubsw` adds two u8 × s8 products into a saturating i16; it is exact when no
//!     same-signed weight pair exceeds 128 in magnitude ([`pack::pairs_fit`]; 7-bit weights
//!     always do). Such layers take the byte kernel, 32 products per instruction;
//!   - every other layer takes the widening kernel: activations widened with `vpmovzxbw`,
//!     pre-widened i16 weights, `vpmaddwd`, whose pair sums (at most 2·255·128) fit i32:
//!     exact for every input, at half the byte kernel's width.
//! - i32 accumulation is exact for `K ≤ 65 793` (255 · 128 · K < 2³¹); [`PackedWeights::new`]
//!   refuses larger K.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;
pub mod pack;
pub mod scalar;

use std::ops::Range;

use crate::cpu::detect::{self, Isa};
use crate::error::Result;
pub use pack::{block_stride, pack_rows, pairs_fit, panel_index, panel_len, quad_group, PackedWeights, Packing};

/// Pixels per panel block (one 512-bit register of i32 accumulators).
pub const BLOCK: usize = 16;
/// Weight rows are padded to a multiple of this.
pub const MR: usize = 8;
/// Largest K for which i32 accumulation cannot overflow.
pub const MAX_K: usize = 65_793;

/// One kernel, holding the ISA token that proves the CPU can run it (checked once, when the
/// kernel is chosen, not on every call).
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    Scalar,
    Avx2(detect::Avx2),
    Avx512Vnni(detect::Avx512Vnni),
    /// AMX-INT8 tiles, on the VNNI path of CPUs that have them (`tdpbsud`, exact i32 sums
    /// like `vpdpbusd`; the VNNI code still runs every other INT8 loop, and the GEMMs of
    /// narrow layers: [`Kernel::for_shape`]).
    Amx(AmxInt8),
}

/// Proof that the CPU runs the VNNI path and AMX-INT8 tiles ([`detect::amx`]).
#[derive(Clone, Copy, Debug)]
pub struct AmxInt8(detect::Avx512Vnni, Shapes);

/// Which GEMMs an AMX kernel takes ([`Kernel::for_shape`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Shapes {
    /// From [`AMX_MIN_ROWS`] rows and [`AMX_MIN_K`] (sessions).
    Wide,
    /// Every shape ([`Kernel::tiles_everywhere`]: the twin tests of narrow layers).
    All,
}

impl AmxInt8 {
    /// `Some` where AMX-INT8 can run (`KESTREL_AMX=0` says no).
    pub fn new() -> Option<Self> {
        let vnni = detect::Avx512Vnni::new()?;
        detect::amx(detect::AmxKind::Int8).then_some(AmxInt8(vnni, Shapes::Wide))
    }
}

/// Weight rows (output channels per group) from which an INT8 GEMM runs on AMX tiles: a
/// tile step covers 32 rows and 64 bytes of K, and narrower layers ran slower there than on
/// `vpdpbusd` (family 6 model 207, one thread, per layer, AMX / VNNI time): the trained
/// shapes-resnet18's convs of 8–32 channels 1.44–3.76, blobs-unet's 1.0–2.6, UNet's 32-channel
/// convs at 256² 0.86–1.02 and its 3 → 32 and 32 → 2 ones 1.33 and 1.81; every conv of 64
/// channels or more in ResNet-18, ResNet-50 and UNet 0.38–0.91.
pub const AMX_MIN_ROWS: usize = 64;
/// K from which an INT8 GEMM runs on AMX tiles: one tile of K (ResNet-50's 64 → 64 1×1 conv,
/// K = 64, took 0.72 of its VNNI time; shorter K pads a tile with zeros).
pub const AMX_MIN_K: usize = 64;

/// Output pixels per image under which an INT8 conv packed for AMX tiles runs on the VNNI
/// kernel instead (the plan decides, knowing the map): one 16-pixel tile block. AMX has no
/// GEMV form and computes whole blocks; VNNI runs such maps as GEMV columns. The trained
/// shapes-resnet18's 64- and 128-channel convs on 2 × 2 and 1 × 1 maps (batch 64) took
/// 1.2–1.8× their VNNI time on AMX (family 6 model 207, one thread); ResNet-50's on 7 × 7
/// maps 0.44–0.69.
pub const AMX_MIN_PIXELS: usize = 16;

impl Kernel {
    /// The kernel a GEMM of `m` weight rows by `k` runs on: AMX tiles from [`AMX_MIN_ROWS`]
    /// rows and [`AMX_MIN_K`], below them the VNNI kernel of the same CPU; other kernels run
    /// every shape. Pack the weights for the kernel it returns.
    pub fn for_shape(self, m: usize, k: usize) -> Kernel {
        match self {
            Kernel::Amx(AmxInt8(vnni, Shapes::Wide)) if m < AMX_MIN_ROWS || k < AMX_MIN_K => Kernel::Avx512Vnni(vnni),
            kernel => kernel,
        }
    }

    /// This kernel, taking every shape on AMX tiles: for tests that run narrow layers there
    /// too (the weights, packed for it by [`Kernel::for_shape`], then all are AMX's).
    pub fn tiles_everywhere(self) -> Kernel {
        match self {
            Kernel::Amx(AmxInt8(vnni, _)) => Kernel::Amx(AmxInt8(vnni, Shapes::All)),
            kernel => kernel,
        }
    }

    /// The kernel with AMX tiles set aside (the VNNI kernel on an AMX CPU, unless it takes
    /// every shape, [`Kernel::tiles_everywhere`]): for fully
    /// connected layers, whose batch-1 rows run as GEMV columns on VNNI and as mostly empty
    /// 16-pixel tiles on AMX (ResNet-50's and ResNet-18's classifiers took 1.16 and 1.35 of
    /// their VNNI time on AMX, family 6 model 207).
    pub fn without_tiles(self) -> Kernel {
        match self {
            Kernel::Amx(AmxInt8(vnni, Shapes::Wide)) => Kernel::Avx512Vnni(vnni),
            kernel => kernel,
        }
    }

    /// The kernel that runs weights packed at `p`: on an AMX CPU, the VNNI kernel for weights
    /// [`Kernel::for_shape`] packed for it.
    pub fn for_packing(self, p: Packing) -> Kernel {
        match self {
            Kernel::Amx(AmxInt8(vnni, _)) if p != Packing::S8Amx => Kernel::Avx512Vnni(vnni),
            kernel => kernel,
        }
    }

    /// The layout to pack `w: [m][k]` at for this kernel: s8, except on AVX2, where weights
    /// whose pairs provably cannot saturate `vpmaddubsw` are s8 for the byte kernel and all
    /// others are widened to i16.
    pub fn packing_for(self, w: &[i8], m: usize, k: usize) -> Packing {
        match self {
            Kernel::Avx2(_) if pack::pairs_fit(w, m, k) => Packing::S8Paired,
            Kernel::Avx2(_) => Packing::S16,
            Kernel::Scalar | Kernel::Avx512Vnni(_) => Packing::S8,
            Kernel::Amx(_) => Packing::S8Amx,
        }
    }

    /// Whether the kernel runs weights packed at `p`.
    pub fn reads(self, p: Packing) -> bool {
        match self {
            Kernel::Avx2(_) => matches!(p, Packing::S8Paired | Packing::S16),
            Kernel::Scalar | Kernel::Avx512Vnni(_) => matches!(p, Packing::S8 | Packing::S8Paired),
            Kernel::Amx(_) => p == Packing::S8Amx,
        }
    }

    /// The instruction path weights packed at `p` take, for per-layer reports.
    pub fn path(self, p: Packing) -> &'static str {
        match (self, p) {
            (Kernel::Scalar, _) => "scalar",
            (Kernel::Avx2(_), Packing::S8Paired) => "avx2 vpmaddubsw",
            (Kernel::Avx2(_), _) => "avx2 vpmaddwd (widened)",
            (Kernel::Avx512Vnni(_), _) => "avx512vnni",
            (Kernel::Amx(_), Packing::S8Amx) => "amx-int8",
            (Kernel::Amx(_), _) => "avx512vnni",
        }
    }

    /// The kernel's name in reports: its ISA path's name, or `avx512vnni + amx-int8` where
    /// the VNNI path's GEMM runs on AMX tiles.
    pub fn name(self) -> &'static str {
        match self {
            Kernel::Amx(_) => "avx512vnni + amx-int8",
            k => k.isa().name(),
        }
    }

    /// The ISA the kernel runs on.
    pub fn isa(self) -> Isa {
        match self {
            Kernel::Scalar => Isa::Scalar,
            Kernel::Avx2(_) => Isa::Avx2,
            Kernel::Avx512Vnni(_) | Kernel::Amx(_) => Isa::Avx512Vnni,
        }
    }

    /// `acc[c][p]` for all `c < m`, all `16 · nblocks` pixels of `panel`, row stride `out_rs`.
    #[inline]
    pub fn run(self, w: &PackedWeights, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
        self.run_rows(w, 0..w.m, panel, nblocks, out, out_rs);
    }

    /// [`Kernel::run`] for weight rows `rows` only (`rows.start` a multiple of [`MR`]); row
    /// `c` goes to output row `c − rows.start`. Lets callers consume the i32 tile a few
    /// channels at a time, while it is still in cache.
    #[inline]
    pub fn run_rows(self, w: &PackedWeights, rows: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
        check_args(self, w, &rows, panel, nblocks, out, out_rs);
        match (self, w.s8(), w.s16()) {
            (Kernel::Scalar, Some(s8), _) => scalar::qgemm_u8s8_scalar(w, s8, rows, panel, nblocks, out, out_rs),
            // SAFETY: the token proves the CPU supports AVX2, and check_args above proved every
            // slice large enough for the kernel's loads and stores (weights padded to Mpad rows,
            // stored as i16).
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2(_), _, Some(s16)) => unsafe { avx2::qgemm_u8s8_avx2_2x16(w, s16, rows, panel, nblocks, out, out_rs) },
            // SAFETY: as above, for s8 weights; check_args proved them packed as S8Paired, which
            // `PackedWeights::new` only accepts for weights that cannot saturate.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2(_), Some(s8), _) => unsafe { avx2::qgemm_u8s8_avx2_maddubs_4x16(w, s8, rows, panel, nblocks, out, out_rs) },
            // SAFETY: as above, for AVX-512F/BW/VNNI and s8 weights.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx512Vnni(_), Some(s8), _) => unsafe { avx512vnni::qgemm_u8s8_avx512vnni_8x32(w, s8, rows, panel, nblocks, out, out_rs) },
            // SAFETY: the token proves AMX-TILE/AMX-INT8 with the tile state granted; check_args
            // proved the slices large enough and the weights packed as S8Amx (Kpad a multiple
            // of 64, 24 spare zero rows).
            #[cfg(target_arch = "x86_64")]
            (Kernel::Amx(_), Some(s8), _) => unsafe { amx::qgemm_u8s8_amx_32x32(w, s8, rows, amx::Acts::Panel(panel), nblocks, out, out_rs, amx::Store::Rows) },
            // check_args proved the packing matches the kernel.
            _ => unreachable!("qgemm: weights not packed for the {} kernel", self.isa().name()),
        }
    }
}

/// Where [`Kernel::run_rows_tiles`] puts the sum of row `r` (from the range's start) and
/// pixel `p` of a call over `nblocks` blocks: 16-row groups of 16 × 16 tiles, each tile's rows
/// of 16 sums one after another, the AMX accumulator tile as it is.
#[inline]
pub fn tiles_index(nblocks: usize, r: usize, p: usize) -> usize {
    (r / 16 * nblocks + p / BLOCK) * 256 + r % 16 * BLOCK + p % BLOCK
}

/// The i32 values [`Kernel::run_rows_tiles`] writes for `rows` rows over `nblocks` blocks:
/// every row group's tiles whole.
pub fn tiles_len(rows: usize, nblocks: usize) -> usize {
    rows.div_ceil(16) * nblocks * 256
}

impl Kernel {
    /// Whether [`Kernel::run_rows_tiles`] runs: AMX, whose tile stores write 16 rows of 64
    /// bytes; 1 KB in a run costs less than 16 rows of a wide output apart (where the INT8
    /// conv uses it: `qconv::TILES_MIN_BLOCKS`).
    pub fn stores_tiles(self) -> bool {
        matches!(self, Kernel::Amx(_))
    }

    /// [`Kernel::run_rows`] with the sums laid out as [`tiles_index`] says (only where
    /// [`Kernel::stores_tiles`]); `out` holds at least [`tiles_len`] values, and the values
    /// of rows past `rows.end` in the last group are left unspecified.
    #[inline]
    pub fn run_rows_tiles(self, w: &PackedWeights, rows: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32]) {
        check_inputs(self, w, &rows, panel, nblocks);
        assert!(out.len() >= tiles_len(rows.len(), nblocks), "qgemm: tile output too small");
        match (self, w.s8()) {
            // SAFETY: the token proves AMX-TILE/AMX-INT8 with the tile state granted;
            // check_inputs proved the row range, the panel large enough and the weights packed
            // as S8Amx (Kpad a multiple of 64, 24 spare zero rows), and `out` holds every
            // group's tiles (asserted above).
            #[cfg(target_arch = "x86_64")]
            (Kernel::Amx(_), Some(s8)) => unsafe { amx::qgemm_u8s8_amx_32x32(w, s8, rows, amx::Acts::Panel(panel), nblocks, out, nblocks * BLOCK, amx::Store::Tiles) },
            _ => unreachable!("qgemm: the {} kernel stores no tiles", self.name()),
        }
    }

    /// [`Kernel::run_rows_taps`] with the sums laid out as [`tiles_index`] says, as
    /// [`Kernel::run_rows_tiles`] does.
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn run_rows_taps_tiles(self, w: &PackedWeights, rows: Range<usize>, src: &[u8], koff: &[usize], nblocks: usize, out: &mut [i32]) {
        check_taps_inputs(self, w, &rows, src, koff, nblocks);
        assert!(out.len() >= tiles_len(rows.len(), nblocks), "qgemm: tile output too small");
        match (self, w.s8()) {
            // SAFETY: as in `run_rows_tiles`; check_taps_inputs proved every tile row's load
            // (64 bytes at koff[g] + 64·b for b < nblocks) inside src and each K step's 16
            // offsets equally spaced.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Amx(_), Some(s8)) => unsafe { amx::qgemm_u8s8_amx_32x32(w, s8, rows, amx::Acts::Taps(src, koff), nblocks, out, nblocks * BLOCK, amx::Store::Tiles) },
            _ => unreachable!("qgemm: the {} kernel stores no tiles", self.name()),
        }
    }
}

impl Kernel {
    /// Whether the kernel has an implicit-GEMM form ([`Kernel::run_rows_taps`]) that convs with
    /// taps and `cin_g` input channels a group use instead of packing panels: `vpdpbusd`,
    /// whose 4-k groups the quad phase planes hold as they are, and AMX for a multiple of 64
    /// channels (a tile's 16 rows are 16 quads of one tap). (The scalar twin has one too, for
    /// tests; AVX2 packs panels.)
    pub fn reads_taps(self, cin_g: usize) -> bool {
        match self {
            Kernel::Avx512Vnni(_) => true,
            Kernel::Amx(_) => cin_g % 64 == 0,
            _ => false,
        }
    }

    /// [`Kernel::run_rows`] with activations read in place instead of from a panel: 4-k group
    /// `g` (of `w.kpad / 4`) of pixel `p < 16·nblocks` is the 4 bytes at `src[koff[g] + 4·p]`.
    /// Weights packed by [`PackedWeights::quad_taps`] (any K order works; that is the one the
    /// quad phase planes give).
    #[allow(clippy::too_many_arguments)]
    #[inline]
    pub fn run_rows_taps(self, w: &PackedWeights, rows: Range<usize>, src: &[u8], koff: &[usize], nblocks: usize, out: &mut [i32], out_rs: usize) {
        check_taps_args(self, w, &rows, src, koff, nblocks, out, out_rs);
        match (self, w.s8()) {
            (Kernel::Scalar, Some(s8)) => scalar::qgemm_u8s8_taps_scalar(w, s8, rows, src, koff, nblocks, out, out_rs),
            // SAFETY: the token proves AMX-TILE/AMX-INT8 with the tile state granted;
            // check_taps_args proved the row range, the weights packed as S8Amx, every tile
            // row's load (64 bytes at koff[g] + 64·b for b < nblocks) inside src, each K
            // step's 16 offsets equally spaced and the stores inside out.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Amx(_), Some(s8)) => unsafe { amx::qgemm_u8s8_amx_32x32(w, s8, rows, amx::Acts::Taps(src, koff), nblocks, out, out_rs, amx::Store::Rows) },
            // SAFETY: the token proves AVX-512F/BW/VNNI; check_taps_args proved every load
            // (64 bytes at koff[g] + 64·b for b < nblocks) inside src, the weight rows inside
            // the packed s8 weights and the stores inside out.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx512Vnni(_), Some(s8)) => unsafe { avx512vnni::qgemm_u8s8_avx512vnni_8x32_taps(w, s8, rows, src, koff, nblocks, out, out_rs) },
            _ => unreachable!("qgemm: the {} kernel has no implicit-GEMM form", self.name()),
        }
    }
}

impl Kernel {
    /// Whether the kernel has a GEMV form faster than a 16-pixel block for a few columns
    /// ([`Kernel::gemv_rows`]): `vpdpbusd` with K along the lanes on VNNI, `vpmaddubsw` or
    /// `vpmaddwd` (by the weights' packing) on AVX2. (The scalar twin has one too, for tests;
    /// AMX runs the GEMM.)
    pub fn has_gemv(self) -> bool {
        matches!(self, Kernel::Avx512Vnni(_) | Kernel::Avx2(_))
    }

    /// One column: `out[(c − rows.start)·out_rs] = Σ_k w[c][k] · x[k]` for the channels in
    /// `rows`, over the `Kpad` k of weights packed in any K order (`x` in the same order,
    /// at least `Kpad` bytes; the padding k meet zero weights). Exact, like the GEMM: the same
    /// i32 as column `p` of [`Kernel::run_rows`] on a panel holding `x` at pixel `p`.
    pub fn gemv_rows(self, w: &PackedWeights, rows: Range<usize>, x: &[u8], out: &mut [i32], out_rs: usize) {
        check_gemv_args(self, w, &rows, x, 1, out, out_rs);
        match (self, w.s8(), w.s16()) {
            (Kernel::Scalar, Some(s8), _) => scalar::gemv_u8s8_scalar(w, s8, rows, x, out, out_rs),
            // SAFETY: the token proves AVX-512F/BW/VNNI; check_gemv_args proved `x` at least
            // Kpad bytes (the kernel's last, masked load ends there), every row of `rows`
            // inside the packed s8 weights and every store inside `out`.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx512Vnni(_), Some(s8), _) => unsafe { avx512vnni::gemv_u8s8_avx512vnni(w, s8, rows, x, out, out_rs) },
            // SAFETY: the token proves AVX2; check_gemv_args proved the slices as above (the
            // vector loads end at or before Kpad) and the weights packed for this kernel:
            // s8 only at S8Paired, which `PackedWeights::new` accepts only for pairs that
            // cannot saturate `vpmaddubsw`.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2(_), Some(s8), _) => unsafe { avx2::gemv_u8s8_avx2_maddubs(w, s8, rows, x, out, out_rs) },
            // SAFETY: as above, for i16 weights.
            #[cfg(target_arch = "x86_64")]
            (Kernel::Avx2(_), _, Some(s16)) => unsafe { avx2::gemv_u8s8_avx2_widen(w, s16, rows, x, out, out_rs) },
            _ => unreachable!("qgemm: the {} kernel has no GEMV form", self.name()),
        }
    }
}

impl Kernel {
    /// [`Kernel::gemv_rows`] for `ncols` columns: column `j` is `x[j·Kpad..(j + 1)·Kpad]`, its
    /// sums go to `out[(c − rows.start)·out_rs + j]`. The same i32 as `ncols` calls of
    /// [`Kernel::gemv_rows`]; on VNNI up to four columns share each load of the weights
    /// (a 14² map's last four pixels, a batch of up to four rows of a fully connected layer),
    /// elsewhere the columns run one at a time.
    pub fn gemv_cols(self, w: &PackedWeights, rows: Range<usize>, x: &[u8], ncols: usize, out: &mut [i32], out_rs: usize) {
        check_gemv_args(self, w, &rows, x, ncols, out, out_rs);
        if rows.is_empty() {
            return;
        }
        let kpad = w.kpad;
        let mut j = 0;
        while j < ncols {
            let nc = (ncols - j).min(4);
            let (xj, oj) = (&x[j * kpad..(j + nc) * kpad], &mut out[j..]);
            match (self, w.s8()) {
                // SAFETY: the token proves AVX-512F/BW/VNNI; check_gemv_args proved the
                // `nc` columns of `xj` (Kpad bytes each; the kernel's last, masked loads end
                // there), every row of `rows` inside the packed s8 weights, and every store
                // (row `r` at `r·out_rs`, `nc ≤ out_rs` lanes from `j`) inside `out`.
                #[cfg(target_arch = "x86_64")]
                (Kernel::Avx512Vnni(_), Some(s8)) => unsafe {
                    match nc {
                        4 => avx512vnni::gemv_cols_u8s8_avx512vnni::<4>(w, s8, rows.clone(), xj, oj, out_rs),
                        3 => avx512vnni::gemv_cols_u8s8_avx512vnni::<3>(w, s8, rows.clone(), xj, oj, out_rs),
                        2 => avx512vnni::gemv_cols_u8s8_avx512vnni::<2>(w, s8, rows.clone(), xj, oj, out_rs),
                        _ => avx512vnni::gemv_u8s8_avx512vnni(w, s8, rows.clone(), xj, oj, out_rs),
                    }
                },
                _ => {
                    for (c, col) in xj.chunks_exact(kpad).enumerate() {
                        self.gemv_rows(w, rows.clone(), col, &mut oj[c..], out_rs);
                    }
                }
            }
            j += nc;
        }
    }
}

/// Checks what the GEMV kernels rely on, for `ncols` columns ([`Kernel::gemv_rows`]: one).
fn check_gemv_args(kernel: Kernel, w: &PackedWeights, rows: &Range<usize>, x: &[u8], ncols: usize, out: &[i32], out_rs: usize) {
    assert!(rows.start <= rows.end && rows.end <= w.m, "qgemm: bad row range");
    assert!(kernel.reads(w.packing()) && w.packing() != Packing::S8Amx && w.len() == w.mpad * w.kpad, "qgemm: weights not packed for the {} GEMV", kernel.name());
    assert!(x.len() >= ncols * w.kpad, "qgemm: GEMV columns shorter than Kpad each");
    assert!(out_rs >= ncols, "qgemm: GEMV output row stride below the column count");
    assert!(rows.is_empty() || ncols == 0 || out.len() >= (rows.len() - 1) * out_rs + ncols, "qgemm: GEMV output too small");
}

/// Checks what [`Kernel::run_rows_taps`]'s kernels rely on.
fn check_taps_args(kernel: Kernel, w: &PackedWeights, rows: &Range<usize>, src: &[u8], koff: &[usize], nblocks: usize, out: &[i32], out_rs: usize) {
    check_taps_inputs(kernel, w, rows, src, koff, nblocks);
    assert!(out_rs >= nblocks * BLOCK, "qgemm: output row stride too small");
    assert!(rows.is_empty() || out.len() >= (rows.len() - 1) * out_rs + nblocks * BLOCK, "qgemm: output too small");
}

/// [`check_taps_args`] but the output: on AMX also each K step's 16 offsets equally spaced,
/// increasing (its tile's rows, loaded at one stride).
fn check_taps_inputs(kernel: Kernel, w: &PackedWeights, rows: &Range<usize>, src: &[u8], koff: &[usize], nblocks: usize) {
    assert!(rows.start % MR == 0 && rows.start <= rows.end && rows.end <= w.m, "qgemm: bad row range");
    assert!(w.s8().is_some() && kernel.reads(w.packing()) && w.len() == w.mpad * w.kpad, "qgemm: weights not packed as s8 rows for the {} kernel", kernel.name());
    assert_eq!(koff.len() * 4, w.kpad, "qgemm: one offset per 4-k group");
    let reach = koff.iter().max().map_or(0, |&m| m + nblocks * BLOCK * 4);
    assert!(reach <= src.len(), "qgemm: activations too small for the offsets");
    if matches!(kernel, Kernel::Amx(_)) {
        assert!(koff.chunks(16).all(|s| s.len() == 16 && s[1] >= s[0] && s.iter().enumerate().all(|(i, &o)| o == s[0] + i * (s[1] - s[0]))), "qgemm: a K step's offsets are not one stride apart");
    }
}

/// The kernel of `isa` (on the VNNI path, the AMX one where the CPU has AMX-INT8), or an
/// error if the CPU lacks it.
pub fn kernel(isa: Isa) -> Result<Kernel> {
    let k = match isa {
        Isa::Scalar => Some(Kernel::Scalar),
        Isa::Avx2 => detect::Avx2::new().map(Kernel::Avx2),
        Isa::Avx512Vnni => AmxInt8::new().map(Kernel::Amx).or_else(|| detect::Avx512Vnni::new().map(Kernel::Avx512Vnni)),
    };
    k.ok_or_else(|| detect::unsupported(isa))
}

/// Every kernel of `isa` this CPU runs, for tests and benches: on the VNNI path the
/// `vpdpbusd` kernel and, where the CPU has AMX-INT8, the AMX one.
pub fn variants(isa: Isa) -> Vec<Kernel> {
    match isa {
        Isa::Avx512Vnni => detect::Avx512Vnni::new().map(Kernel::Avx512Vnni).into_iter().chain(AmxInt8::new().map(Kernel::Amx)).collect(),
        _ => kernel(isa).into_iter().collect(),
    }
}

/// Checks the slice sizes, the row range and the weights' packing every kernel relies on
/// ([`Kernel::run_rows`] calls it once, before any kernel).
pub(crate) fn check_args(kernel: Kernel, w: &PackedWeights, rows: &Range<usize>, panel: &[u8], nblocks: usize, out: &[i32], out_rs: usize) {
    check_inputs(kernel, w, rows, panel, nblocks);
    assert!(out_rs >= nblocks * BLOCK, "qgemm: output row stride too small");
    assert!(rows.is_empty() || out.len() >= (rows.len() - 1) * out_rs + nblocks * BLOCK, "qgemm: output too small");
}

/// [`check_args`] but the output: the row range, the panel's size and the weights' packing.
fn check_inputs(kernel: Kernel, w: &PackedWeights, rows: &Range<usize>, panel: &[u8], nblocks: usize) {
    assert!(rows.start % MR == 0 && rows.start <= rows.end && rows.end <= w.m, "qgemm: bad row range");
    assert!(panel.len() >= panel_len(w.kpad, nblocks), "qgemm: panel too small");
    assert!(kernel.reads(w.packing()) && w.len() == w.mpad * w.kpad, "qgemm: weights not packed for the {} kernel", kernel.isa().name());
}

/// Plain reference: `acc[c][p] = Σ_k a[k][p] · w[c][k]` over unpacked `a: [k][n]`, `w: [m][k]`.
pub fn qgemm_reference(a: &[u8], w: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for c in 0..m {
        for p in 0..n {
            out[c * n + p] = (0..k).map(|kk| i32::from(a[kk * n + p]) * i32::from(w[c * k + kk])).sum();
        }
    }
    out
}
