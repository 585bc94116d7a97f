//! FP32 3×3 stride-1 convolution by Winograd's minimal filtering F(2×2, 3×3): 16 multiplies
//! per 2×2 output tile and channel pair instead of 36 (2.25× fewer), the rest additions.
//!
//! Each image's output is cut into 2×2 tiles, `TH × TW = ⌈OH/2⌉ × ⌈OW/2⌉` of them, tile
//! `t = ty·TW + tx`; tile `t` reads the 4×4 input patch at `(2ty − pad_top, 2tx − pad_left)`
//! (zero outside the image). With `Bᵀ = [1 0 −1 0; 0 1 1 0; 0 −1 1 0; 0 1 0 −1]`,
//! `G = [1 0 0; ½ ½ ½; ½ −½ ½; 0 0 1]` and `Aᵀ = [1 1 1 0; 0 1 −1 −1]`:
//! `Y = Aᵀ [ Σ_ci (G g G ᵀ) ⊙ (Bᵀ d B) ] A`, which is 16 GEMMs, one per transform position
//! `ξ = 4a + b`: `M_ξ[Cout][tiles] = U_ξ[Cout][Cin] · V_ξ[Cin][tiles]`.
//!
//! Layouts:
//! - U ([`Packed`]), transformed once at prepare time (in f64, rounded once) and packed for
//!   the FP32 kernel: 16 × [`PackedA`] `[Cout/MR][Cin][MR]`.
//! - A block of `nb` consecutive tiles of the batch (image after image: one worker's part,
//!   all or some of the output channels) has its own
//!   `V: [16][Cin][ld]` and `M: [16][Cout][ld]` (`ld` = `nb` rounded up to whole vectors),
//!   sized to stay in L2 ([`BLOCK_BYTES`]): input transform → 16 GEMMs on
//!   [`Kernel::tile`] (B read in place at stride `ld`) → output transform, bias, residual and
//!   activation, stored straight into the NCHW output. When a block's output channels are
//!   split over the workers (too few tiles: 14² and 7² maps), its input is transformed once,
//!   each worker taking a chunk of the input channels, into a V the parts share (`Work`);
//!   in f32 (in bf16 only with the workers on cores that share no cache) each chunk's lines
//!   are evicted from the caches first ([`super::evict`]: both cores read all of V, and a
//!   store to a line the other core holds waits for its copy), except on an Intel mesh, where
//!   that cost more than it saved.
//!   A block's last few tiles past whole vectors (a 14² map's 49 = 3·16 + 1) run on
//!   [`Kernel::narrow`] with the same k-order fmas, as in `sconv` (ResNet's 14² convs
//!   1.1–1.2× faster on AVX-512).
//!
//! Bᵀ and Aᵀ hold only ±1, so both transforms are sums and differences in a fixed order;
//! they run over a block's tiles as plain loops on contiguous arrays, compiled per ISA
//! (`Transforms`): each input row is first split by column parity (AVX-512 / AVX2 permutes,
//! data movement only), so that tile j's four columns are element j of four arrays, and the
//! output rows are put back together the same way. On AVX-512 both transforms skip those
//! arrays: 16 tiles of a tile row at a time, the P input rows' columns are split by permutes
//! in registers and `Bᵀ d B` goes straight into V (`input_rows_avx512`,
//! `input4_rows_avx512`), and `Aᵀ M A` goes from M straight into the M output rows, with the
//! residual, bias and activation (`output_rows_avx512`, `output4_rows_avx512`): the same
//! operations in the same order, so the same bits (Zen 5, 2 threads, new / old alternating,
//! input side: ResNet-18 0.96, ResNet-50 0.98, UNet 256² 0.94, blobs-unet 0.94–0.96 of the
//! time; output side after it: 0.95–0.96, 0.96, 0.90, 0.97).
//! The scalar build of the same loops with
//! [`crate::cpu::sgemm::scalar::tile`] is the twin ([`Exec::Twin`]), bit for bit. Against
//! direct convolution the values differ by rounding only (the products are of transformed
//! operands): tests hold them to the f64 reference within a stated tolerance.
//!
//! Per element: `y = act((Aᵀ M A) + residual + bias)`, the residual added before the bias.
//!
//! F(4×4, 3×3) ([`Variant::F4`], [`pack_f4`], chosen by [`prefers_f4`]) is the same with 4×4
//! output tiles read from 6×6 patches at `(4ty − pad_top, 4tx − pad_left)`, 36 positions
//! `ξ = 6a + b` (`V: [36][Cin][ld]`, `M: [36][Cout][ld]`) and the transforms of points 0, ±1,
//! ±2, ∞ (`bt_row`, `at_row`, and `G` in [`pack_f4`]): 36 multiplies per 16 outputs instead of
//! 144, its input rows split by column mod 4 (two rounds of the parity split). Its transforms
//! multiply by up to 8 and divide by up to 24, so it rounds about twice as much as F(2×2).
//!
//! In bf16 (`--precision bf16`, [`pack_bf16`], [`Exec::Bf16`]) the transforms are the same f32
//! ones; U is rounded to bf16 once, and V is held as bf16 pairs only (`[ξ][⌈nb/NR⌉ column
//! panels][⌈Cin/2⌉][NR]`, [`crate::cpu::bgemm`]'s B layout, [`pairs_len`]): each two input
//! channels are transformed into a small f32 buffer and rounded into their pairs right away
//! ([`transform_pairs`]), then the GEMMs run on the `vdpbf16ps` tile kernel, so the products are
//! of bf16-rounded *transformed* operands, accumulated in f32. Twin: the same with the scalar
//! emulation ([`crate::cpu::bgemm::Kernel::Scalar`]), bit for bit.

use super::bgemm::{self, PackedBf16};
use super::detect::Tune;
use super::parallel::OutPtr;
use super::sgemm::{finish, Epilogue, Geometry, Init, Kernel, PackedA, Tile, NARROW_COLS};
use crate::graph::Conv2d;

/// Transform positions of a 4×4 tile.
pub const XI: usize = 16;

/// Which minimal filtering: output tiles of 2×2 from 4×4 input patches (F(2×2, 3×3), 16
/// products per tile and channel pair, 2.25× fewer than direct), or of 4×4 from 6×6 patches
/// (F(4×4, 3×3), 36 products, 4× fewer; larger transforms and weights, more rounding).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    F2,
    F4,
}

impl Variant {
    /// Output tile side.
    pub fn m(self) -> usize {
        match self {
            Variant::F2 => 2,
            Variant::F4 => 4,
        }
    }

    /// Input patch side.
    fn p(self) -> usize {
        self.m() + 2
    }

    /// Transform positions (GEMMs per block).
    pub fn xi(self) -> usize {
        self.p() * self.p()
    }

    /// Floats of a part's transform scratch: F2 `d: [4][4][nb + 1]` then `w: [4][nb]` (20nb +
    /// 16; the output's `q: [2][4][nb]` and two rows of nb fit in it), F4 `d: [6][6][nb + 1]`,
    /// `w: [6][nb]` and two deinterleave halves of nb + 1 (44nb + 38, more than the output's
    /// `q: [4][6][nb]`, four rows and two interleave halves of 2nb: 32nb).
    fn scratch(self, nb: usize) -> usize {
        match self {
            Variant::F2 => 20 * nb + 16,
            Variant::F4 => 36 * (nb + 1) + 6 * nb + 4 * (nb + 1),
        }
    }
}

/// Bytes of one part's `V` and `M` blocks together: they stay in L2 (1–2 MiB per core on the
/// hosts we run) between the transforms and the GEMMs, next to the input rows and the output
/// the transforms stream through. 384 KiB measured best of 256, 384, 768 and 1 536 KiB on
/// Zen 4 (ResNet-50's 64-channel 56² conv 94–96 → 106–128 G/s against 768, 2 threads).
pub const BLOCK_BYTES: usize = 384 << 10;

/// Whether `c` is a conv this module computes: 3×3, stride 1, dilation 1, one group, FP32.
pub fn takes(c: &Conv2d) -> bool {
    c.kernel() == [3, 3] && c.stride == [1, 1] && c.dilation == [1, 1] && c.groups == 1 && c.precision.int8().is_none()
}

/// Output maps with fewer pixels than this run on the direct kernels: 7×7 (16 tiles, one
/// vector of AVX-512 columns; ResNet's last stage, 1.3× faster than direct at 512 channels)
/// is the smallest measured to gain.
pub const MIN_PIXELS: usize = 49;

/// Whether a conv [`takes`] gains from Winograd (at maps of at least [`MIN_PIXELS`]): with
/// fewer than 32 input or output channels the transforms and the short GEMMs cost more than
/// the products saved (shapes-resnet18's 16-channel convs on 8² maps at batch 64 ran 2.5×
/// slower; UNet's 32-channel ones at 256² 1.1–1.2× faster).
pub fn pays(c: &Conv2d) -> bool {
    let s = c.weight.shape();
    takes(c) && s[0] >= 32 && s[1] >= 32
}

/// Whether an FP32 conv that [`pays`] runs by Winograd on `kernel` with output maps of
/// `[oh, ow]` (at least [`MIN_PIXELS`]) rather than on the direct kernels: always on AVX-512;
/// on AVX2 (8 lanes: per tile the transforms weigh twice as much against the GEMMs) maps of
/// 28² and more, or at least 128 input and output channels. Measured on Zen 3 (2 threads,
/// `wino_variants`, G direct-MAC/s, direct → the better of F2 and F4): ResNet-50's 64–512
/// channels at 56² to 7² 60–70 → 100–121, 32 channels at 256² 60 → 83, 128 at 14² (batch
/// 8) 55–64 → 92–94, 64 at 28² (batch 8) 59–64 → 88; but blobs-unet's 32 and 64 channels at
/// 16² and 8² 41–68 → 30–61 (batches 1 and 16), 64 at 8² (batch 64) 71–74 → 56–62.
pub fn pays_on(kernel: Kernel, c: &Conv2d, [oh, ow]: [usize; 2]) -> bool {
    let s = c.weight.shape();
    kernel.geometry().lanes > 8 || (oh >= 28 && ow >= 28) || (s[0] >= 128 && s[1] >= 128)
}

/// The 16 transformed weight matrices `U_ξ`, packed for the FP32 kernels or rounded to bf16
/// and packed for the bf16 ones.
#[derive(Clone, Debug)]
pub enum Weights {
    F32(Vec<PackedA>),
    Bf16(Vec<PackedBf16>),
}

/// Whether a conv [`takes`] and [`pays`] for runs faster by F(4×4, 3×3) than by F(2×2, 3×3)
/// on output maps of `[oh, ow]`: maps of 56² and more, or of 16² and more with at least 256
/// input and output channels. Measured on Zen 4 (2 threads, the variants alternating in one
/// process, G direct-MAC/s F2 → F4): 64 channels at 56² 89.8 → 95.7, at 128² 74.7 → 98.6;
/// 32 at 256² 80.6 → 99.2; 128 at 64² 96.3 → 135.5, at 128² 99.3 → 151.7; 256 at 32² 97.0 →
/// 119.7; 512 at 16² 93.2 → 118.0; but 128 at 28² 103.5 → 84.5 (49 tiles of 4×4, one part),
/// 256 at 14² 92.8 → 92.2 and 512 at 7² 85.9 → 38.3 (36 weight matrices streamed for 4 tiles).
/// On AVX2 (`kernel` of 8 lanes) the bounds are 28² and 14²: on Zen 3 (`wino_variants`, F4 /
/// F2) 128 channels at 28² 1.09–1.18, 64 at 28² (batch 8) 1.11–1.16, 256 at 14² 1.01–1.10,
/// 512 at 16² 1.45; but 128 at 14² (batch 8) 0.90–0.92 and 512 at 7² 0.53–0.59.
pub fn prefers_f4(kernel: Kernel, c: &Conv2d, [oh, ow]: [usize; 2]) -> bool {
    let s = c.weight.shape();
    let (big, wide) = if kernel.geometry().lanes > 8 { (56, 16) } else { (28, 14) };
    pays(c) && ((oh >= big && ow >= big) || (oh >= wide && ow >= wide && s[0] >= 256 && s[1] >= 256))
}

/// Whether a conv [`takes`] gains from Winograd in bf16 ([`Exec::Bf16`]) on a CPU of family
/// `tune`, given batches of at least [`BF16_MIN_TILES`] tiles: the bf16 GEMMs run twice as fast
/// as the FP32 ones while the transforms stay f32, so the transforms must be shared by more
/// channels: at least 128 input and output channels, on Zen 4 at least 64. Measured against
/// the direct bf16 conv in the same runs (2 threads), while V still went through an f32 block
/// before its pairs: on Zen 4 64-channel convs 3–6 % slower (ResNet-50 at 56²) and 45 % slower
/// (UNet at 256²); 128 channels 20 % faster at 28² (ResNet-50) but 2–10 % slower at 128²
/// (UNet, whose maps leave the cache); 256–1024 channels at 64² to 16² 4–34 % faster; on Zen
/// 5 ResNet-50's 64-channel convs 0.33–0.35 against 0.28 ms. With the pairs rounded straight
/// from the transform ([`transform_pairs`]), on Zen 4 (per layer, ResNet-50 bf16, 2 threads,
/// the three 64-channel 56² convs together): 1.53–1.55 ms against 1.78 direct and 1.66–1.71 by
/// the FP32 F(4×4); not measured again on Zen 5.
pub fn pays_bf16(c: &Conv2d, tune: Tune) -> bool {
    let s = c.weight.shape();
    let least = match tune {
        Tune::Generic | Tune::Intel => 128,
        Tune::Zen4 => 64,
    };
    takes(c) && s[0] >= least && s[1] >= least
}

/// The Winograd variant of a bf16 conv that [`pays_bf16`] on output maps of `[oh, ow]`, where
/// F(4×4, 3×3) in bf16 is allowed (`Options::winograd_bf16_f4`, off by default): F(4×4) on
/// maps of at least 32², else F(2×2, 3×3). F(4×4) has 2.25 products per output against 4, but
/// its transforms weigh more per tile and a small map wastes more of its 4×4 tiles. Measured
/// on Zen 4 only (`BF16=1` `wino_variants`, 2 threads, the variants alternating in one process, G
/// direct-MAC/s F2 → F4): 64 channels at 56² 224.7 → 277.9, 64 → 32 at 256² 179.7 → 252.0, 64
/// at 128² 261.4 → 360.2, 128 at 128² 305.3 → 451.6, 128 at 64² 329.7 → 502.8, 256 at 32²
/// 374.8 → 518.9 (each also faster than the FP32 F(4×4): 209.0, 202.4, 266.5, 312.6, 331.0,
/// 308.0); even at 128 channels at 28² (244.0 → 245.4) and 512 at 16² (361.2 → 357.9);
/// slower at 256 at 14² (258.7 → 249.0) and on batches of small maps (64 at 16², batch 16:
/// 199.9 → 150.2; 128 at 14², batch 8: 255.3 → 201.5). The price is accuracy: its transforms
/// scale the operands it rounds to bf16 by up to 100 (F(2×2): 4), so a conv's relative L2
/// error is about six times F(2×2)'s (simulated, 64 channels of normal data: 0.024 against
/// 0.0041, direct bf16 0.0024; `tests/bf16.rs` bounds both), the built-in UNet's output at
/// 256² 0.063 from f32 against 0.012 (2 % of its pixels' signs flip, against 0.4 %).
pub fn bf16_variant([oh, ow]: [usize; 2]) -> Variant {
    if oh >= 32 && ow >= 32 {
        Variant::F4
    } else {
        Variant::F2
    }
}

/// Whether this FP32 F(4×4, 3×3) conv (one [`prefers_f4`] takes) outruns the bf16 convs on
/// output maps of `[oh, ow]`, so that a `--precision bf16` session runs it so (also the more
/// exact): maps of 64² to 128² with at most 128 input and output channels, and larger maps
/// with at most 32 input channels, where F(4×4)'s four times fewer products beat
/// `vdpbf16ps`'s two bf16 products per lane. Measured on Zen 5 (2 threads, the built-in UNet
/// at 256², per layer, f32 F(4×4) against the bf16 conv the plan took, ms): 32 → 64 and 64
/// channels at 128² 0.92 and 1.53 against 1.19 and 1.87; 64 → 128 and 128 at 64² 0.68 and
/// 1.11 against 0.90 and 1.25; 128 → 64 and 64 at 128² 2.77 and 1.65 against 3.14 and 1.90;
/// 32 at 256² 2.35 and 2.50 against 2.47 and 2.52. Not: 64 → 32 at 256² 4.36 against 4.19,
/// 256 → 128 at 64² 2.30 against 2.21, maps of 32² and less 1.3–1.6× slower, ResNet-50's 64
/// channels at 56² 0.34 against 0.29.
pub fn f4_beats_bf16(c: &Conv2d, [oh, ow]: [usize; 2]) -> bool {
    let s = c.weight.shape();
    oh >= 64 && ow >= 64 && s[0] <= 128 && s[1] <= 128 && (oh * ow <= 128 * 128 || s[1] <= 32)
}

/// Tiles a batch needs for Winograd in bf16: the 16 transformed weight matrices (16/9 of the
/// direct conv's bytes) are streamed once per part, so with few tiles the bf16 convs are bound
/// by reading them. ResNet-50's 7² convs (16 tiles, 512 channels) ran 24–30 % slower than
/// direct, UNet's 16² ones (64 tiles) 19–25 % faster; its 14² ones (49 tiles, 256 channels)
/// within ±5 % while each part sharing a block rounded all of its V into pairs, and since they
/// are rounded once ([`transform_pairs`]) faster: on Zen 4 (2 threads, per layer, the five
/// together) 2.34–2.51 ms against 3.05–3.06 direct.
pub const BF16_MIN_TILES: usize = 49;

/// Whether the plan runs a Winograd conv with output `os` (`[N, Cout, OH, OW]`) that way, in
/// bf16 or f32 (else on the direct kernels).
pub fn runs_at(bf16: bool, os: [usize; 4]) -> bool {
    if bf16 {
        os[0] * os[2].div_ceil(2) * os[3].div_ceil(2) >= BF16_MIN_TILES
    } else {
        os[2] * os[3] >= MIN_PIXELS
    }
}

/// A conv's weights transformed (`U_ξ = (G g Gᵀ)[a][b]`, `ξ = 4a + b`) and packed for one
/// kernel geometry.
#[derive(Clone, Debug)]
pub struct Packed {
    pub u: Weights,
    pub variant: Variant,
    pub cout: usize,
    pub cin: usize,
}

impl Packed {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        match &self.u {
            Weights::F32(u) => u.iter().map(PackedA::bytes).sum(),
            Weights::Bf16(u) => u.iter().map(PackedBf16::bytes).sum(),
        }
    }

    /// Whether these weights are what `ex` runs: f32 ones packed for its tile rows, or bf16
    /// ones for the bf16 kernels.
    fn fits(&self, ex: Exec) -> bool {
        match (&self.u, ex) {
            (Weights::F32(u), Exec::Kernel(_) | Exec::Twin(_)) => u.len() == self.variant.xi() && u.iter().all(|u| u.mr == ex.geometry().mr),
            (Weights::Bf16(u), Exec::Bf16(_)) => u.len() == self.variant.xi(),
            _ => false,
        }
    }
}

/// Transforms `c`'s `[Cout][Cin][3][3]` weights for F(2×2, 3×3) and packs them for tiles of
/// `mr` rows.
pub fn pack(mr: usize, c: &Conv2d) -> Packed {
    let (u, cout, cin) = transformed(c);
    Packed { u: Weights::F32(u.iter().map(|m| PackedA::new(m, cout, cin, mr)).collect()), variant: Variant::F2, cout, cin }
}

/// Transforms `c`'s weights for F(4×4, 3×3) (`U_ξ = (G g Gᵀ)[a][b]`, `ξ = 6a + b`, in f64,
/// rounded once) and packs them for tiles of `mr` rows.
pub fn pack_f4(mr: usize, c: &Conv2d) -> Packed {
    let (u, cout, cin) = transformed_f4(c);
    Packed { u: Weights::F32(u.iter().map(|m| PackedA::new(m, cout, cin, mr)).collect()), variant: Variant::F4, cout, cin }
}

/// Transforms `c`'s `[Cout][Cin][3][3]` weights for `variant` and rounds them to bf16 pairs
/// for [`Exec::Bf16`].
pub fn pack_bf16(c: &Conv2d, variant: Variant) -> Packed {
    let (u, cout, cin) = match variant {
        Variant::F2 => transformed(c),
        Variant::F4 => transformed_f4(c),
    };
    Packed { u: Weights::Bf16(u.iter().map(|m| PackedBf16::new(m, cout, cin)).collect()), variant, cout, cin }
}

/// `U_ξ[Cout][Cin]` of F(4×4, 3×3) for the 36 positions (computed in f64, rounded once),
/// `Cout`, `Cin`.
fn transformed_f4(c: &Conv2d) -> (Vec<Vec<f32>>, usize, usize) {
    const G: [[f64; 3]; 6] = [[0.25, 0.0, 0.0], [-1.0 / 6.0, -1.0 / 6.0, -1.0 / 6.0], [-1.0 / 6.0, 1.0 / 6.0, -1.0 / 6.0], [1.0 / 24.0, 1.0 / 12.0, 1.0 / 6.0], [1.0 / 24.0, -1.0 / 12.0, 1.0 / 6.0], [0.0, 0.0, 1.0]];
    let s = c.weight.shape();
    let (cout, cin) = (s[0], s[1]);
    let w = c.weight.data();
    let mut u = vec![vec![0f32; cout * cin]; 36];
    for oc in 0..cout {
        for ic in 0..cin {
            let g = |r: usize, s: usize| w[((oc * cin + ic) * 3 + r) * 3 + s] as f64;
            // t = G g (6 × 3), then t Gᵀ (6 × 6).
            let t: [[f64; 3]; 6] = std::array::from_fn(|a| std::array::from_fn(|s| (0..3).map(|r| G[a][r] * g(r, s)).sum()));
            for a in 0..6 {
                for b in 0..6 {
                    u[6 * a + b][oc * cin + ic] = (0..3).map(|s| t[a][s] * G[b][s]).sum::<f64>() as f32;
                }
            }
        }
    }
    (u, cout, cin)
}

/// `U_ξ[Cout][Cin]` for the 16 positions (computed in f64, rounded once), `Cout`, `Cin`.
fn transformed(c: &Conv2d) -> (Vec<Vec<f32>>, usize, usize) {
    let s = c.weight.shape();
    let (cout, cin) = (s[0], s[1]);
    let w = c.weight.data();
    let mut u = vec![vec![0f32; cout * cin]; XI];
    for oc in 0..cout {
        for ic in 0..cin {
            let g = |r: usize, s: usize| w[((oc * cin + ic) * 3 + r) * 3 + s] as f64;
            // t = G g (4 × 3), column s of g at a time, then t Gᵀ (4 × 4) row by row.
            let col = |s: usize| {
                let (g0, g1, g2) = (g(0, s), g(1, s), g(2, s));
                [g0, (g0 + g1 + g2) / 2.0, (g0 - g1 + g2) / 2.0, g2]
            };
            let t = [col(0), col(1), col(2)];
            for a in 0..4 {
                let row = [t[0][a], t[1][a], t[2][a]];
                let v = [row[0], (row[0] + row[1] + row[2]) / 2.0, (row[0] - row[1] + row[2]) / 2.0, row[2]];
                for (b, &x) in v.iter().enumerate() {
                    u[4 * a + b][oc * cin + ic] = x as f32;
                }
            }
        }
    }
    (u, cout, cin)
}

/// What runs the GEMMs and transforms: an FP32 kernel, the scalar twin of an FP32 kernel
/// geometry, or a bf16 kernel (its scalar emulation being the bf16 twin).
#[derive(Clone, Copy, Debug)]
pub enum Exec {
    Kernel(Kernel),
    Twin(Geometry),
    Bf16(bgemm::Kernel),
}

/// The bf16 GEMMs' geometry: [`bgemm`]'s 8 × 48 tiles (three 16-lane vectors), K in blocks of
/// [`bgemm::KC2`] pairs.
const BF16_GEOMETRY: Geometry = Geometry { mr: bgemm::MR, lanes: 16, nv: bgemm::NR / 16, kc: 2 * bgemm::KC2, kc_taps: 2 * bgemm::KC2, nc: bgemm::NC };

impl Exec {
    fn geometry(self) -> Geometry {
        match self {
            Exec::Kernel(k) => k.geometry(),
            Exec::Twin(g) => g,
            Exec::Bf16(_) => BF16_GEOMETRY,
        }
    }

    /// Slots of a block's `V` of `nb` tiles (`ld` their whole vectors): f32 `[ξ][Cin][ld]`,
    /// or in bf16 the pairs ([`pairs_len`]).
    fn v_len(self, v: Variant, cin: usize, nb: usize, ld: usize) -> usize {
        match self {
            Exec::Bf16(_) => pairs_len(v, cin, nb),
            Exec::Kernel(_) | Exec::Twin(_) => v.xi() * cin * ld,
        }
    }

    /// Floats of the two input channels' `V` that [`transform_pairs`] rounds into pairs
    /// (none for the FP32 kernels).
    fn pair_tmp_len(self, v: Variant, ld: usize) -> usize {
        match self {
            Exec::Bf16(_) => 2 * v.xi() * ld,
            Exec::Kernel(_) | Exec::Twin(_) => 0,
        }
    }

    /// The units `V`'s input channels are cut in when parts share it: channels, or in bf16
    /// channel pairs.
    fn k_units(self, cin: usize) -> usize {
        match self {
            Exec::Bf16(_) => cin.div_ceil(2),
            Exec::Kernel(_) | Exec::Twin(_) => cin,
        }
    }
}

/// Column panels of a bf16 block of `nb` tiles: whole 16-lane vectors, [`bgemm::NR`] columns
/// at most, as even as they go (64 columns run as 32 + 32, not 48 + 16).
fn bf16_panels(nb: usize) -> usize {
    nb.div_ceil(16).div_ceil(bgemm::NR / 16)
}

/// Panel `j` of [`bf16_panels`]: its first column and its columns.
fn bf16_span(nb: usize, j: usize) -> (usize, usize) {
    let (vectors, panels) = (nb.div_ceil(16), bf16_panels(nb));
    let c0 = j * vectors / panels * 16;
    (c0, ((j + 1) * vectors / panels * 16).min(nb) - c0)
}

/// u32 slots of a bf16 block's `V` of `nb` tiles as pairs, [`bgemm`]'s B layout:
/// `[ξ][panels][⌈Cin/2⌉][NR]`, or with the pairs in `chunks` (parts sharing the block, see
/// [`Work`]) chunk `q` (pairs `kq0..kq1`, [`chunk_range`]) at `ξ · panels · NR · kq0`, laid out
/// `[ξ][panels][kq1 − kq0][NR]`.
fn pairs_len(v: Variant, cin: usize, nb: usize) -> usize {
    v.xi() * bf16_panels(nb) * cin.div_ceil(2) * bgemm::NR
}

/// Parts of at least this many tiles (4 AVX-512 vectors of columns), however large `V` and
/// `M` grow: each part streams all 16 transformed weight matrices once, so a part of few
/// columns pays that stream for few products (ResNet-50's 14² convs, 256 channels and 49
/// tiles, run as one part, its output channels split over the workers, rather than as three
/// parts of 17 tiles). Not separately measured: the host's noise hid any difference.
pub const MIN_TILES: usize = 64;

/// How the batch's `tiles` split into parts by tiles: `(parts, vectors)`, the parts taking
/// whole vectors of columns, `vectors = ⌈tiles / LANES⌉` of them in all, as evenly as they go
/// (part p: vectors `p·vectors/parts ..`). As many parts as keep a part's `V` and `M` in
/// [`BLOCK_BYTES`] (but parts of at least [`MIN_TILES`]), and one per worker when each
/// still gets that many.
fn tile_parts(geo: Geometry, xi: usize, cin: usize, cout: usize, tiles: usize, workers: usize) -> (usize, usize) {
    let vectors = tiles.div_ceil(geo.lanes).max(1);
    let fit = (BLOCK_BYTES / (xi * (cin + cout) * 4)).max(MIN_TILES);
    let mut parts = tiles.div_ceil(fit);
    // A 4×4 tile holds four times the outputs of a 2×2 one: F(4×4) splits a map among the
    // workers down to a quarter of the tiles (ResNet's 28² convs, 49 tiles: two parts rather
    // than one whose output channels the workers share, each transforming the whole input).
    let split_min = if xi > XI { MIN_TILES / 4 } else { MIN_TILES };
    if parts < workers && tiles.div_ceil(workers) >= split_min {
        parts = workers;
    }
    (parts.clamp(1, vectors), vectors)
}

/// Tiles of part `p` of [`tile_parts`]'s split: `g0..g1`.
fn part_tiles(geo: Geometry, (parts, vectors): (usize, usize), tiles: usize, p: usize) -> (usize, usize) {
    ((p * vectors / parts * geo.lanes).min(tiles), ((p + 1) * vectors / parts * geo.lanes).min(tiles))
}

/// Scratch floats one worker needs: its V (in bf16, as pairs) and M blocks, the transforms'
/// row buffers and, in bf16, two channels' V before they are rounded into pairs.
fn part_len(ex: Exec, v: Variant, cin: usize, cout: usize, nb: usize, tw: usize) -> usize {
    let ld = nb.next_multiple_of(ex.geometry().lanes);
    ex.v_len(v, cin, nb, ld) + v.xi() * cout * ld + 2 * (v.m() * (tw + 1) + 2) + v.scratch(ld) + ex.pair_tmp_len(v, ld)
}

/// How one call's work splits: blocks of tiles (`split`: [`tile_parts`]), each block's
/// output channels in `csplits` parts, `parts = blocks · csplits` of them over `workers`.
/// When a block's channels are split (too few tiles for the workers: ResNet's 14² and 7²
/// maps at batch 1), each block's input is transformed once, `chunks` workers taking a share
/// of its input channels each, into a `V` the parts then share (`shared_len`); before, every
/// part transformed the whole input again (at 14², 256 channels: 0.26 of 1.46 ms at one
/// thread, done twice at two). Shared, at two threads on Zen 4: ResNet-50's 14² convs 0.86
/// of the time, its 7² ones 0.87; whole ResNet-18 0.95, ResNet-50 0.97–0.99; ResNet-50 in
/// bf16 0.99 while its GEMMs still rounded the shared V into bf16 pairs per part; the pairs are
/// now what the parts share, rounded once (chunks of channel pairs).
#[derive(Clone, Copy, Debug)]
struct Work {
    split: (usize, usize),
    /// Tiles of the largest block, rounded up to whole vectors.
    nb: usize,
    csplits: usize,
    parts: usize,
    workers: usize,
    /// Chunks of a shared `V`'s input channels (in bf16, of channel pairs; 1: each part
    /// transforms its own input).
    chunks: usize,
}

impl Work {
    fn new(ex: Exec, v: Variant, cin: usize, cout: usize, total: usize, workers: usize) -> Work {
        let geo = ex.geometry();
        let split = tile_parts(geo, v.xi(), cin, cout, total, workers);
        let (blocks, nb) = (split.0, split.1.div_ceil(split.0) * geo.lanes);
        // Too few tiles for every worker (7² maps at batch 1): parts split the output channels too.
        let mpanels = cout.div_ceil(geo.mr);
        let csplits = if blocks < workers { workers.div_ceil(blocks).min(mpanels) } else { 1 };
        let parts = blocks * csplits;
        let chunks = if csplits > 1 { csplits.min(ex.k_units(cin)).max(1) } else { 1 };
        Work { split, nb, csplits, parts, workers: workers.min(parts), chunks }
    }

    /// Slots of the shared `V`s, one per block, `v_len` apart: f32 `[ξ][Cin][nb]` in
    /// `chunks` channel chunks (`chunk_range`), chunk `q` laid out `[ξ][its channels][ld]`
    /// from `ξ · c0 · ld`; in bf16 the pairs in chunks of pairs ([`pairs_len`]).
    fn shared_len(&self, ex: Exec, v: Variant, cin: usize) -> usize {
        if self.chunks > 1 {
            self.split.0 * ex.v_len(v, cin, self.nb, self.nb)
        } else {
            0
        }
    }
}

/// Units (input channels, or in bf16 channel pairs) of chunk `q` of `chunks`: `c0..c1`.
fn chunk_range(cin: usize, chunks: usize, q: usize) -> (usize, usize) {
    (cin * q / chunks, cin * (q + 1) / chunks)
}

/// Scratch elements [`conv2d`] needs on `ex` with `threads` workers for input `xs` and output
/// `os`.
pub fn scratch_len(ex: Exec, v: Variant, xs: [usize; 4], os: [usize; 4], threads: usize) -> usize {
    let [n, cin, ..] = xs;
    let [_, cout, oh, ow] = os;
    let (th, tw) = (oh.div_ceil(v.m()), ow.div_ceil(v.m()));
    // `conv2d` may run a small conv on one worker, with larger parts.
    [1, threads.max(1)]
        .into_iter()
        .map(|workers| {
            let w = Work::new(ex, v, cin, cout, n * th * tw, workers);
            let per = part_len(ex, v, cin, cout, w.nb, tw).next_multiple_of(super::sconv::LINE_F32);
            w.shared_len(ex, v, cin) + per * w.workers + super::sconv::LINE_F32
        })
        .max()
        .unwrap_or(0)
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`,
/// `c` a conv [`takes`] accepts and `packed` from [`pack`] for the same geometry (from
/// [`pack_bf16`] for [`Exec::Bf16`]).
#[allow(clippy::too_many_arguments)]
pub fn conv2d(ex: Exec, c: &Conv2d, packed: &Packed, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let geo = ex.geometry();
    assert!(takes(c) && packed.cin == cin && packed.cout == cout && packed.fits(ex), "wino: weights not transformed for this conv and kernel");
    assert!(x.len() >= n * cin * h * w && out.len() >= n * cout * oh * ow && residual.is_none_or(|r| r.len() >= n * cout * oh * ow), "wino: input, output or residual too small");
    if n == 0 || cout == 0 || oh == 0 || ow == 0 {
        return;
    }
    let v = packed.variant;
    let (th, tw) = (oh.div_ceil(v.m()), ow.div_ceil(v.m()));
    let tiles = th * tw;
    let macs = n * cout * oh * ow * cin * 9;
    let workers = if threads <= 1 || macs < super::sconv::PAR_MIN_MACS { 1 } else { threads };
    // Blocks run over the batch's tiles, image after image: small maps of a batch fill
    // their GEMMs' columns across images.
    let total = n * tiles;
    let work = Work::new(ex, v, cin, cout, total, workers);
    let Work { split, nb, csplits, parts, workers, chunks } = work;
    let mpanels = cout.div_ceil(geo.mr);
    let per = part_len(ex, v, cin, cout, nb, tw).next_multiple_of(super::sconv::LINE_F32);
    let shared_len = work.shared_len(ex, v, cin);
    let need = shared_len + per * workers + super::sconv::LINE_F32;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let first = scratch.as_ptr().align_offset(super::sconv::LINE_F32 * 4).min(super::sconv::LINE_F32);
    let dst = OutPtr(out.as_mut_ptr());
    let next = std::sync::atomic::AtomicUsize::new(0);
    let batch = Batch { x: &x[..n * cin * h * w], h, w, pads: [c.pads[0], c.pads[1]], oh, ow, tw, tiles };
    let (area, shared) = scratch[first..first + per * workers + shared_len].split_at_mut(per * workers);
    let vlen = ex.v_len(v, cin, nb, nb);
    if chunks > 1 {
        // Each block's input transformed once, a chunk of its channels (bf16: channel pairs)
        // per item, into the block's shared V.
        let vp = OutPtr(shared.as_mut_ptr());
        let far = workers > 1 && super::placement::far(workers);
        crate::cpu::parallel::par_for(split.0 * chunks, |i| {
            let vp = &vp;
            let (blk, q) = (i / chunks, i % chunks);
            let (g0, g1) = part_tiles(geo, split, total, blk);
            let (c0, c1) = chunk_range(ex.k_units(cin), chunks, q);
            let ld = (g1 - g0).next_multiple_of(geo.lanes);
            // Chunk q's slots: f32 ξ · (c1 − c0) · ld from ξ · c0 · ld, or its pairs from
            // ξ · panels · NR · c0 (`pairs_len`).
            let (at, len) = match ex {
                Exec::Bf16(_) => {
                    let per = v.xi() * bf16_panels(g1 - g0) * bgemm::NR;
                    (per * c0, per * (c1 - c0))
                }
                Exec::Kernel(_) | Exec::Twin(_) => (v.xi() * c0 * ld, v.xi() * (c1 - c0) * ld),
            };
            assert!(at + len <= vlen, "wino: shared V smaller than its chunks");
            // SAFETY: block blk's V starts at blk · vlen (`shared` holds `blocks · vlen`
            // slots; a block's V of ld ≤ nb columns fits in vlen, asserted for this chunk),
            // and chunk q's `len` slots from `at` within it; the items' regions are disjoint.
            let vq = unsafe { std::slice::from_raw_parts_mut(vp.0.add(blk * vlen + at), len) };
            // Both workers read all of V in the GEMMs, so each line of it is shared by both
            // cores when the next conv comes to write it: dropped first, the lines are
            // fetched from memory instead of invalidated one at a time (`cpu::evict`).
            // ResNet-50 f32 on Zen 4, 2 threads: 0.964 of the time with the vCPUs on two CCDs,
            // 0.993–1.0 on one L3. In bf16 (V of pairs, half the bytes) 0.988 on two CCDs but
            // 1.007 on one, so only with the workers apart (`placement::far`): there four of
            // its five 14² convs' transforms 0.24 → 0.13 ms each (per loop, medians of 60
            // rounds of 40 calls; 0.08–0.09 on one L3). Not on an Intel mesh (`placement::Fabric::Mesh`),
            // whose L3 both cores share: without the flush ResNet-50's 14² convs took 0.93–0.95 of
            // their time, ResNet-50, ResNet-18 and UNet 256² 0.988, 0.986 and 0.996 (family 6
            // model 207, alternating call by call).
            if (!matches!(ex, Exec::Bf16(_)) || far) && super::placement::fabric() == super::placement::Fabric::Groups {
                super::evict::evict(vq);
            }
            let mut e = vec![0f32; v.scratch(g1 - g0)];
            let mut row = vec![0f32; v.m() * (tw + 1) + 2];
            let segs = segments(batch, [g0, g1]);
            match ex {
                Exec::Bf16(k) => {
                    let mut tmp = vec![0f32; ex.pair_tmp_len(v, ld)];
                    transform_pairs(k, Transforms::of(ex), v, batch, cin, &segs, [g0, g1, ld], [c0, c1], bytemuck::cast_slice_mut(vq), &mut tmp, &mut e, &mut row);
                }
                Exec::Kernel(_) | Exec::Twin(_) => transform_input(Transforms::of(ex), v, batch, cin, &segs, [g0, g1, ld], [c0, c1], vq, &mut e, &mut row),
            }
        });
    }
    let shared: &[f32] = shared;
    // Workers on cores that share no cache drop the output lines of each part before they
    // write them (`run_part`).
    let evicting = workers > 1 && super::placement::far(workers);
    // In bf16, two workers claim blocks of tiles from both ends (the caller from the front), so
    // that each mostly takes the pixels its core holds from the 1×1 conv before, whose parts
    // are claimed so too (`cpu::bdot`). ResNet-50 bf16 on Zen 4: with the vCPUs on two CCDs
    // its 56² convs 0.06 ms faster each, the whole model 0.988 of the time; 1.000 on one L3. In
    // f32 (parts claimed in turn by `sconv` too) 0.996 on two CCDs but 1.002 on one: not taken.
    let two_ended = workers == 2 && csplits == 1 && parts >= 4 && matches!(ex, Exec::Bf16(_));
    let ends = crate::cpu::parallel::TwoEnds::new(parts);
    let run = |wi: usize, buf: &mut [f32]| {
        loop {
            let i = if two_ended { ends.claim(wi == 0).unwrap_or(parts) } else { next.fetch_add(1, std::sync::atomic::Ordering::Relaxed) };
            if i >= parts {
                break;
            }
            let (blk, cs) = (i / csplits, i % csplits);
            let panels = [cs * mpanels / csplits, (cs + 1) * mpanels / csplits];
            let (g0, g1) = part_tiles(geo, split, total, blk);
            let own = (chunks > 1).then(|| &shared[blk * vlen..(blk + 1) * vlen]);
            run_part(ex, c, packed, batch, residual, dst, [g0, g1], panels, buf, own.map(|v| (v, chunks)), evicting);
        }
    };
    if workers == 1 {
        run(0, area);
    } else {
        crate::cpu::parallel::par_chunks_mut(area, per, run);
    }
}

/// The batch's input and output geometry.
#[derive(Clone, Copy)]
struct Batch<'a> {
    /// `[N][Cin][H][W]`.
    x: &'a [f32],
    h: usize,
    w: usize,
    /// Top and left padding.
    pads: [usize; 2],
    oh: usize,
    ow: usize,
    /// Tiles per tile row, and per image.
    tw: usize,
    tiles: usize,
}

/// The tile rows of tiles `g0..g1`, each as (image, ty, tx0, tx1, first column in the block).
fn segments(img: Batch, [g0, g1]: [usize; 2]) -> Vec<(usize, usize, usize, usize, usize)> {
    let mut s = Vec::new();
    let mut g = g0;
    while g < g1 {
        let (b, t) = (g / img.tiles, g % img.tiles);
        let (ty, tx0) = (t / img.tw, t % img.tw);
        let tx1 = img.tw.min(tx0 + (g1 - g));
        s.push((b, ty, tx0, tx1, g - g0));
        g += tx1 - tx0;
    }
    s
}

/// The input transform of tiles `g0..g1` (tile rows `segments`), input channels `k0..k1` of
/// `cin`, into `v: [ξ][k1 − k0][ld]`; `e` and `row` are the scratch of [`run_part`]'s layout.
#[allow(clippy::too_many_arguments)]
fn transform_input(tf: Transforms, var: Variant, img: Batch, cin: usize, segments: &[(usize, usize, usize, usize, usize)], [g0, g1, ld]: [usize; 3], [k0, k1]: [usize; 2], v: &mut [f32], e: &mut [f32], row: &mut [f32]) {
    let (mt, pt) = (var.m(), var.p());
    let nb = g1 - g0;
    let n1 = nb + 1;
    for ci in k0..k1 {
        // On AVX-512 each tile row's P input rows go straight into V, 16 tiles a step, without
        // the column planes `d` and the row sums `w` in memory.
        #[cfg(target_arch = "x86_64")]
        if let Transforms::Avx512 = tf {
            for &(b, ty, tx0, tx1, col) in segments {
                let plane = &img.x[(b * cin + ci) * img.h * img.w..][..img.h * img.w];
                let nt = tx1 - tx0;
                let x0 = (mt * tx0) as isize - img.pads[1] as isize;
                let (at, vstride) = ((ci - k0) * ld + col, (k1 - k0) * ld);
                assert!((pt * pt - 1) * vstride + at + nt <= v.len(), "wino: V smaller than the tiles");
                let y = |r: usize| (mt * ty + r) as isize - img.pads[0] as isize;
                let mut rows: [&[f32]; 6] = [&[]; 6];
                // A segment of one step of tiles reads its rows in place under masks (none
                // for a padding row), zero outside the image; longer ones copy their edge
                // rows first, so that their many loads stay aligned (UNet 256² 1.04–1.07×
                // slower in place; ResNet-18 0.97, ResNet-50 0.99, blobs-unet 0.95 this way).
                let in_place = nt <= 16;
                let x0 = if in_place {
                    for (r, slot) in rows.iter_mut().enumerate().take(pt) {
                        if (0..img.h as isize).contains(&y(r)) {
                            *slot = &plane[y(r) as usize * img.w..][..img.w];
                        }
                    }
                    x0
                } else {
                    let len = mt * (nt + 1);
                    assert!(pt * len <= e.len(), "wino: scratch smaller than the tiles");
                    for (r, (slot, buf)) in rows.iter_mut().zip(e.chunks_exact_mut(len)).take(pt).enumerate() {
                        *slot = tile_row(plane, &img, y(r), x0, buf);
                    }
                    0
                };
                // SAFETY: `Transforms::Avx512` is only made from an AVX-512 kernel token; the
                // kernels read the rows only inside them (masks), V the P² runs of nt
                // (asserted).
                unsafe {
                    match var {
                        Variant::F2 => input_rows_avx512([rows[0], rows[1], rows[2], rows[3]], x0, nt, v, at, vstride),
                        Variant::F4 => input4_rows_avx512(rows, x0, nt, v, at, vstride),
                    }
                }
            }
            continue;
        }
        let (d, rest) = e.split_at_mut(pt * pt * n1);
        let (w, halves) = rest.split_at_mut(pt * nb);
        for &(b, ty, tx0, tx1, col) in segments {
            let plane = &img.x[(b * cin + ci) * img.h * img.w..][..img.h * img.w];
            let nt = tx1 - tx0;
            // The P input rows of the tile row, columns M·tx0 − left .. + M·(nt + 1), zero
            // outside, split into the columns each tile j reads: d[r][c][col + j] = column
            // M·j + c (the last M·(nt + 1) − (M·nt + 2) columns land only in the spare tile).
            let len = mt * (nt + 1);
            let x0 = (mt * tx0) as isize - img.pads[1] as isize;
            for r in 0..pt {
                let y = (mt * ty + r) as isize - img.pads[0] as isize;
                let src = tile_row(plane, &img, y, x0, &mut row[..len]);
                let dr = &mut d[r * pt * n1..(r + 1) * pt * n1];
                // nt + 1 columns per phase: the last lands on the next segment's first column
                // (or the spare one past nb), rewritten by the next segment after it is copied
                // below.
                let (c01, rest) = dr.split_at_mut(2 * n1);
                let (c0, c1) = c01.split_at_mut(n1);
                let (c0, c1) = (&mut c0[col..col + nt + 1], &mut c1[col..col + nt + 1]);
                let shifted = match var {
                    Variant::F2 => {
                        tf.deinterleave(src, c0, c1);
                        rest
                    }
                    Variant::F4 => {
                        // By 2, then each half by 2: columns 4j, 4j + 2 and 4j + 1, 4j + 3.
                        let (c23, shifted) = rest.split_at_mut(2 * n1);
                        let (c2, c3) = c23.split_at_mut(n1);
                        let (ev, od) = halves.split_at_mut(2 * (nb + 1));
                        let (ev, od) = (&mut ev[..2 * (nt + 1)], &mut od[..2 * (nt + 1)]);
                        tf.deinterleave(src, ev, od);
                        tf.deinterleave(ev, c0, &mut c2[col..col + nt + 1]);
                        tf.deinterleave(od, c1, &mut c3[col..col + nt + 1]);
                        shifted
                    }
                };
                // Columns M and M + 1 of tile j are columns 0 and 1 of tile j + 1.
                let (cm, cm1) = shifted.split_at_mut(n1);
                cm[col..col + nt].copy_from_slice(&c0[1..nt + 1]);
                cm1[col..col + nt].copy_from_slice(&c1[1..nt + 1]);
            }
        }
        match var {
            Variant::F2 => tf.input(d, nb, w, v, (ci - k0) * ld, (k1 - k0) * ld),
            Variant::F4 => tf.input4(d, nb, w, v, (ci - k0) * ld, (k1 - k0) * ld),
        }
    }
}

/// Row `y` (of the padded image: `y` < 0 or ≥ H is padding) of `plane`, columns `x0 ..
/// x0 + buf.len()`, zero outside the image: in place when it lies inside, else copied into
/// `buf`.
fn tile_row<'a>(plane: &'a [f32], img: &Batch, y: isize, x0: isize, buf: &'a mut [f32]) -> &'a [f32] {
    let len = buf.len();
    let inside = y >= 0 && y < img.h as isize;
    if inside && x0 >= 0 && x0 + len as isize <= img.w as isize {
        return &plane[y as usize * img.w + x0 as usize..][..len];
    }
    if inside {
        // Columns x0 + j for j in lo..hi lie in the image; zeros either side.
        let src = &plane[y as usize * img.w..][..img.w];
        let lo = (-x0).clamp(0, len as isize) as usize;
        let hi = (img.w as isize - x0).clamp(lo as isize, len as isize) as usize;
        buf[..lo].fill(0.0);
        buf[hi..].fill(0.0);
        buf[lo..hi].copy_from_slice(&src[(x0 + lo as isize) as usize..(x0 + hi as isize) as usize]);
    } else {
        buf.fill(0.0);
    }
    buf
}

/// Tiles `g0..g1` of the batch (tile `g` is tile `g mod tiles` of image `g / tiles`), output
/// channel panels `p0..p1` (of MR channels): input transform, 16 GEMMs, output transform into
/// `out` (`[N][Cout][OH][OW]`, with `residual` of the same layout). With `shared` the input
/// transform is already done: `V` is that slice, in that many channel chunks (see [`Work`]).
#[allow(clippy::too_many_arguments)]
fn run_part(ex: Exec, c: &Conv2d, packed: &Packed, img: Batch, residual: Option<&[f32]>, out: OutPtr<f32>, [g0, g1]: [usize; 2], [p0, p1]: [usize; 2], buf: &mut [f32], shared: Option<(&[f32], usize)>, evicting: bool) {
    let geo = ex.geometry();
    let (cin, cout, tw) = (packed.cin, packed.cout, img.tw);
    let var = packed.variant;
    let (mt, pt, xi) = (var.m(), var.p(), var.xi());
    let nb = g1 - g0;
    let ld = nb.next_multiple_of(geo.lanes);
    let (own_v, rest) = buf.split_at_mut(ex.v_len(var, cin, nb, ld));
    let (m, rest) = rest.split_at_mut(xi * cout * ld);
    let (tmp, rest) = rest.split_at_mut(ex.pair_tmp_len(var, ld));
    let rl = mt * (tw + 1) + 2;
    let (row, rest) = rest.split_at_mut(rl);
    let (yrow, rest) = rest.split_at_mut(rl);
    // Input: `d: [P rows][P columns][nb + 1]`, then `w: [P][nb]` (and, F4, two halves of
    // nb + 1); output: `q: [M][P][nb]`, then the M output columns `[M][nb]` (and, F4, two
    // halves of 2nb). See [`Variant::scratch`].
    let e = &mut rest[..var.scratch(nb)];
    let segments = segments(img, [g0, g1]);
    if evicting {
        // The part's output lines were last read by either core (an earlier layer's input):
        // overwriting those the other core holds costs an invalidation round trip each, lines
        // dropped first stream from memory (`cpu::evict`, as `cpu::sconv` does). ResNet-50 on
        // Zen 4 with the vCPUs on two CCDs (per layer, against no flush in the same run):
        // f32 14² convs 0.08 ms faster each (F(2×2), 1.13× their time on one L3 against 1.24×).
        for oc in p0 * geo.mr..(p1 * geo.mr).min(cout) {
            for &(b, ty, tx0, tx1, _) in &segments {
                let (ox0, ox1) = (mt * tx0, (mt * tx1).min(img.ow));
                let at = ((b * cout + oc) * img.oh + mt * ty) * img.ow + ox0;
                // SAFETY: as for the stores below: output rows mt·ty .. < OH of channel oc of
                // image b, columns ox0..ox1 ≤ OW, inside `out`.
                unsafe { super::evict::evict_rows(out.0.add(at) as *const f32, mt.min(img.oh.saturating_sub(mt * ty)), img.ow, ox1 - ox0) };
            }
        }
    }
    let tf = Transforms::of(ex);
    let (v, chunks): (&[f32], usize) = match shared {
        Some((v, chunks)) => (v, chunks),
        None => {
            match ex {
                Exec::Bf16(k) => transform_pairs(k, tf, var, img, cin, &segments, [g0, g1, ld], [0, cin.div_ceil(2)], bytemuck::cast_slice_mut(own_v), tmp, e, row),
                Exec::Kernel(_) | Exec::Twin(_) => transform_input(tf, var, img, cin, &segments, [g0, g1, ld], [0, cin], own_v, e, row),
            }
            (own_v, 1)
        }
    };
    match (&packed.u, ex) {
        (Weights::Bf16(u), Exec::Bf16(k)) => gemms_bf16(k, u, bytemuck::cast_slice(v), m, [cin, cout, ld, nb], [p0, p1], chunks),
        (Weights::F32(u), Exec::Kernel(_) | Exec::Twin(_)) => gemms(ex, u, v, m, [cin, cout, ld, nb], [p0, p1], chunks),
        // `conv2d` checked that the weights fit the kernel.
        _ => unreachable!("wino: weights not transformed for this kernel"),
    }
    let (act, post) = Epilogue::split(c.act);
    let (q, rest) = e.split_at_mut(mt * pt * nb);
    let (cols, halves) = rest.split_at_mut(mt * nb);
    for oc in p0 * geo.mr..(p1 * geo.mr).min(cout) {
        let bias = c.bias.as_ref().map(|b| b[oc]);
        // On AVX-512 each tile row's M output rows come straight from M, 16 tiles a step,
        // without `q`, the column arrays and the interleaved row in memory.
        #[cfg(target_arch = "x86_64")]
        if let Transforms::Avx512 = tf {
            for &(b, ty, tx0, tx1, col) in &segments {
                let (ox0, ox1) = (mt * tx0, (mt * tx1).min(img.ow));
                let mut outs: [Option<&mut [f32]>; 4] = [None, None, None, None];
                let mut res: [Option<&[f32]>; 4] = [None; 4];
                for i in (0..mt).filter(|i| mt * ty + i < img.oh) {
                    let at = ((b * cout + oc) * img.oh + mt * ty + i) * img.ow + ox0;
                    // SAFETY: output row mt·ty + i < OH of channel oc of image b < N, columns
                    // ox0..ox1 ≤ OW: inside `out` (`conv2d` checked its N·Cout·OH·OW floats),
                    // in this part's tiles and channels, which no other part writes; the M
                    // rows are distinct rows.
                    outs[i] = Some(unsafe { std::slice::from_raw_parts_mut(out.0.add(at), ox1 - ox0) });
                    res[i] = residual.map(|r| &r[at..at + (ox1 - ox0)]);
                }
                let (at, mstride) = (oc * ld + col, cout * ld);
                assert!((var.xi() - 1) * mstride + at + (tx1 - tx0) <= m.len(), "wino: M smaller than its tiles");
                // SAFETY: `Transforms::Avx512` is only made from an AVX-512 kernel token; M
                // holds the ξ runs of the segment's tiles (asserted), each output row the
                // segment's ox1 − ox0 columns.
                unsafe {
                    match var {
                        Variant::F2 => output_rows_avx512(m, at, mstride, tx1 - tx0, &mut outs, &res, bias, act),
                        Variant::F4 => output4_rows_avx512(m, at, mstride, tx1 - tx0, &mut outs, &res, bias, act),
                    }
                }
                if post {
                    if let Some(f) = c.act {
                        outs.iter_mut().flatten().for_each(|o| o.iter_mut().for_each(|v| *v = f.apply(*v)));
                    }
                }
            }
            continue;
        }
        match var {
            Variant::F2 => tf.output(m, oc * ld, cout * ld, nb, q),
            Variant::F4 => tf.output4(m, oc * ld, cout * ld, nb, q),
        }
        for i in 0..mt {
            match var {
                Variant::F2 => {
                    let (ev, od) = cols.split_at_mut(nb);
                    tf.row(q, i, nb, ev, &mut od[..nb]);
                }
                Variant::F4 => tf.row4(q, i, nb, cols),
            }
            for &(b, ty, tx0, tx1, col) in &segments {
                let oy = mt * ty + i;
                if oy >= img.oh {
                    continue;
                }
                let nt = tx1 - tx0;
                let (ox0, ox1) = (mt * tx0, (mt * tx1).min(img.ow));
                let at_col = |k: usize| &cols[k * nb + col..k * nb + col + nt];
                match var {
                    Variant::F2 => tf.interleave(at_col(0), at_col(1), &mut yrow[..2 * nt]),
                    Variant::F4 => {
                        // Columns 0 and 2, 1 and 3, then the two: y[4j + k] = column k of tile j.
                        let (a, bh) = halves.split_at_mut(2 * nb);
                        let (a, bh) = (&mut a[..2 * nt], &mut bh[..2 * nt]);
                        tf.interleave(at_col(0), at_col(2), a);
                        tf.interleave(at_col(1), at_col(3), bh);
                        tf.interleave(a, bh, &mut yrow[..4 * nt]);
                    }
                }
                let at = ((b * cout + oc) * img.oh + oy) * img.ow + ox0;
                let y = &yrow[..ox1 - ox0];
                // SAFETY: output row oy of channel oc of image b < N, columns ox0..ox1 < OW:
                // inside `out` (`conv2d` checked its N·Cout·OH·OW floats), and in this part's
                // tiles and channels, which no other part writes.
                let o = unsafe { std::slice::from_raw_parts_mut(out.0.add(at), ox1 - ox0) };
                let r = residual.map(|r| &r[at..at + (ox1 - ox0)]);
                tf.store(y, r, bias, act, o);
                if post {
                    if let Some(f) = c.act {
                        o.iter_mut().for_each(|v| *v = f.apply(*v));
                    }
                }
            }
        }
    }
}

/// `M_ξ = U_ξ · V_ξ` for the 16 positions on an FP32 kernel (or its twin): one column panel
/// (≤ nv vectors) at a time, K in even blocks, output-channel panels `p0..p1`. `v: [16][Cin][ld]`
/// (in `chunks` input-channel chunks, see `Work`), `m: [16][Cout][ld]`, `nb` real columns.
fn gemms(ex: Exec, u: &[PackedA], v: &[f32], m: &mut [f32], [cin, cout, ld, nb]: [usize; 4], [p0, p1]: [usize; 2], chunks: usize) {
    let geo = ex.geometry();
    let nxi = u.len();
    // V's input channels in `chunks` chunks (`Work`): row k of V_ξ, k in chunk c0..c1, at
    // (ξ·c0 + ξ·(c1 − c0) + k − c0)·ld; one chunk is the plain `[ξ][Cin][ld]`.
    let ranges: Vec<(usize, usize)> = (0..chunks.max(1)).map(|q| chunk_range(cin, chunks.max(1), q)).collect();
    let row_at = |xi: usize, (c0, c1): (usize, usize), k: usize| (nxi * c0 + xi * (c1 - c0) + k - c0) * ld;
    // The block's last few tiles (a 14² map's 49 = 3·16 + 1 at F(2×2)) on the narrow kernel,
    // as the direct convs' last columns (`sconv`): the others then fill whole-vector tiles.
    let all = nb.div_ceil(geo.lanes);
    let tail = nb.saturating_sub(all.saturating_sub(1) * geo.lanes);
    let narrow = match ex {
        Exec::Kernel(k) if all >= 2 && tail <= super::sconv::narrow_tail_max(geo) => Some(k),
        _ => None,
    };
    let vectors = if narrow.is_some() { all - 1 } else { ld / geo.lanes };
    let count = vectors.div_ceil(geo.nv);
    let mut cols_buf = vec![0f32; if narrow.is_some() { tail * cin } else { 0 }];
    let mut acc = vec![0f32; if narrow.is_some() { (p1 - p0) * NARROW_COLS * 8 } else { 0 }];
    for (xi, a) in u.iter().enumerate() {
        let mx = &mut m[xi * cout * ld..(xi + 1) * cout * ld];
        for i in 0..count {
            let (v0, v1) = (i * vectors / count, (i + 1) * vectors / count);
            let cols = ((v1 - v0) * geo.lanes).min(nb - v0 * geo.lanes);
            for &r in &ranges {
                // K in even blocks within the chunk (the same k-order fmas however it is cut).
                let cw = r.1 - r.0;
                let kc_even = cw.div_ceil(cw.div_ceil(geo.kc).max(1)).max(1);
                let mut k0 = r.0;
                while k0 < r.1 {
                    let kc = kc_even.min(r.1 - k0);
                    for p in p0..p1 {
                        let rows = geo.mr.min(cout - p * geo.mr);
                        let a_next = if p + 1 < p1 { cin * geo.mr } else { 0 };
                        let t = Tile { kc, rows, cols, nv: v1 - v0, ldb: ld, b_rows: std::ptr::null(), ldc: ld, a_next, b_next: 0, b_vstride: 0, c_next: 0 };
                        let init = if k0 == 0 { Init::Zero } else { Init::Output };
                        let ap = a.panel_from(p, k0).as_ptr();
                        let bp = v[row_at(xi, r, k0) + v0 * geo.lanes..].as_ptr();
                        let cp = mx[p * geo.mr * ld + v0 * geo.lanes..].as_mut_ptr();
                        // SAFETY: the panel holds Cin · MR floats from k0 on (kc read); B rows
                        // k0..k0 + kc of V_ξ (one chunk: consecutive rows `ld` apart) hold `ld`
                        // floats each, `cols` of them real and the row a whole number of
                        // vectors (ld is), from v0·LANES; C rows p·MR .. + rows of M_ξ (`ld`
                        // each, `cols` from v0·LANES) are this part's own and borrowed by
                        // nothing else.
                        unsafe {
                            match ex {
                                Exec::Kernel(k) => k.tile(ap, bp, cp, t, init, None),
                                _ => super::sgemm::scalar::tile(geo, ap, bp, cp, t, init, None),
                            }
                        }
                    }
                    k0 += kc;
                }
            }
        }
        // The narrow columns after the tiles, which leave U_ξ in cache for them (Zen 5, 2
        // threads, alternating: ResNet-18 0.98 of the time, ResNet-50 0.99–1.00).
        if let Some(k) = narrow {
            let c0 = vectors * geo.lanes;
            for (j, col) in cols_buf.chunks_exact_mut(cin).enumerate() {
                for &r in &ranges {
                    for kk in r.0..r.1 {
                        col[kk] = v[row_at(xi, r, kk) + c0 + j];
                    }
                }
            }
            let b: Vec<&[f32]> = cols_buf.chunks_exact(cin).collect();
            acc.fill(0.0);
            k.narrow(a, p0..p1, &b, &mut acc);
            for p in p0..p1 {
                for j in 0..tail {
                    for r in 0..geo.mr.min(cout - p * geo.mr) {
                        mx[(p * geo.mr + r) * ld + c0 + j] = acc[((p - p0) * NARROW_COLS + j) * 8 + r];
                    }
                }
            }
        }
    }
}

/// [`gemms`] in bf16 over `V` already rounded into pairs ([`transform_pairs`], laid out as
/// [`pairs_len`] says, in `chunks` chunks of pairs): one column panel at a time, K in even
/// blocks of pairs within each chunk (the same order of products however K is cut: the tile
/// goes on from its f32 sums in `M`), on the bf16 tile kernel.
fn gemms_bf16(k: bgemm::Kernel, u: &[PackedBf16], pairs: &[u32], m: &mut [f32], [cin, cout, ld, nb]: [usize; 4], [p0, p1]: [usize; 2], chunks: usize) {
    use bgemm::{MR, NR};
    let k2 = cin.div_ceil(2);
    let (nxi, chunks, panels) = (u.len(), chunks.max(1), bf16_panels(nb));
    assert!(pairs.len() >= nxi * panels * k2 * NR, "wino: bf16 pairs smaller than V");
    let kc_even = k2.div_ceil(k2.div_ceil(bgemm::KC2).max(1)).max(1);
    for (xi, a) in u.iter().enumerate() {
        let mx = &mut m[xi * cout * ld..(xi + 1) * cout * ld];
        for j in 0..panels {
            let (c0, cols) = bf16_span(nb, j);
            for q in 0..chunks {
                let (q0, q1) = chunk_range(k2, chunks, q);
                // Pair q0 + i of panel j of V_ξ in chunk q.
                let base = nxi * panels * NR * q0 + (xi * panels + j) * (q1 - q0) * NR;
                let mut kk0 = q0;
                while kk0 < q1 {
                    let kc = kc_even.min(q1 - kk0);
                    for p in p0..p1 {
                        let rows = MR.min(cout - p * MR);
                        let init = if kk0 == 0 { Init::Zero } else { Init::Output };
                        let ap = a.panel_from(p, kk0).as_ptr();
                        let bp = pairs[base + (kk0 - q0) * NR..][..kc * NR].as_ptr();
                        let cp = mx[p * MR * ld + c0..].as_mut_ptr();
                        // SAFETY: the weight panel holds ⌈Cin/2⌉ · MR pairs from kk0 on (kc
                        // read); the pair rows kk0..kk0 + kc of panel j (kc · NR slots, sliced
                        // above; the `cols` real columns written by `transform_pairs`, the others
                        // never read into real outputs); C rows p·MR .. + rows of M_ξ (`ld`
                        // floats each, `cols` from c0 ≤ ld) are this part's own and borrowed by
                        // nothing else.
                        unsafe { k.tile(ap, bp, kc, cp, ld, rows, cols, init, None) };
                    }
                    kk0 += kc;
                }
            }
        }
    }
}

/// The input transform of tiles `g0..g1` (tile rows `segments`), channel pairs `kk0..kk1`,
/// rounded into bf16 pairs: `pairs` is that chunk of pairs of the block's V
/// (`[ξ][panels][kk1 − kk0][NR]`, see [`pairs_len`]; a missing odd channel pairs with zeros).
/// Each pair's two channels (one for an odd last channel) are transformed into `tmp`
/// (`[ξ][2][ld]`, `[ξ][1][ld]`) and rounded right
/// after, while they are in L1, instead of going through a whole f32 V in L2 (ResNet-50's 14²
/// convs on Zen 4, 2 threads: where two parts shared a block, each rounded all of its V).
#[allow(clippy::too_many_arguments)]
fn transform_pairs(k: bgemm::Kernel, tf: Transforms, var: Variant, img: Batch, cin: usize, segments: &[(usize, usize, usize, usize, usize)], [g0, g1, ld]: [usize; 3], [kk0, kk1]: [usize; 2], pairs: &mut [u32], tmp: &mut [f32], e: &mut [f32], row: &mut [f32]) {
    use bgemm::NR;
    const ZEROS: [f32; NR] = [0.0; NR];
    let (nb, xi, kn) = (g1 - g0, var.xi(), kk1 - kk0);
    let panels = bf16_panels(nb);
    assert!(pairs.len() >= xi * panels * kn * NR && tmp.len() >= 2 * xi * ld, "wino: bf16 pair buffers too small");
    for kk in kk0..kk1 {
        let (c0, c1) = (2 * kk, (2 * kk + 2).min(cin));
        let w = c1 - c0;
        transform_input(tf, var, img, cin, segments, [g0, g1, ld], [c0, c1], &mut tmp[..xi * w * ld], e, row);
        for x in 0..xi {
            for j in 0..panels {
                let (col, cols) = bf16_span(nb, j);
                let lo = &tmp[x * w * ld + col..][..cols];
                let hi = if w == 2 { &tmp[(x * w + 1) * ld + col..][..cols] } else { &ZEROS[..cols] };
                k.pack_pairs(lo, hi, &mut pairs[((x * panels + j) * kn + kk - kk0) * NR..][..cols]);
            }
        }
    }
}

/// The transforms, compiled for one ISA (or plain, for the twin and hosts without one).
#[derive(Clone, Copy)]
enum Transforms {
    Plain,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

/// Calls the transform compiled for `$t`'s ISA: `$plain` (the twin, and hosts without a
/// kernel of ours), or its `target_feature` build.
macro_rules! on_isa {
    ($t:expr, $plain:ident, $avx2:ident, $avx512:ident, ($($arg:expr),*)) => {
        match $t {
            Transforms::Plain => $plain($($arg),*),
            // SAFETY: `Transforms::Avx2` is only made from an AVX2+FMA kernel token.
            #[cfg(target_arch = "x86_64")]
            Transforms::Avx2 => unsafe { $avx2($($arg),*) },
            // SAFETY: `Transforms::Avx512` is only made from an AVX-512 kernel token.
            #[cfg(target_arch = "x86_64")]
            Transforms::Avx512 => unsafe { $avx512($($arg),*) },
        }
    };
}

impl Transforms {
    fn of(ex: Exec) -> Transforms {
        match ex {
            Exec::Twin(_) => Transforms::Plain,
            #[cfg(target_arch = "x86_64")]
            Exec::Kernel(Kernel::Avx2Fma(_)) => Transforms::Avx2,
            #[cfg(target_arch = "x86_64")]
            Exec::Kernel(Kernel::Avx512(_)) => Transforms::Avx512,
            Exec::Bf16(bgemm::Kernel::Scalar) => Transforms::Plain,
            // The bf16 token proves AVX-512F too.
            #[cfg(target_arch = "x86_64")]
            Exec::Bf16(bgemm::Kernel::Avx512Bf16(_)) => Transforms::Avx512,
        }
    }

    /// `Bᵀ d B` of `nb` tiles, `d: [4 rows][4 columns][nb + 1]` (`d[r][c][j]` is the input
    /// under tap row r, column c of tile j), into `v[ξ·vstride + at + j]`; `w` (`4·nb`
    /// floats) is scratch.
    fn input(self, d: &[f32], nb: usize, w: &mut [f32], v: &mut [f32], at: usize, vstride: usize) {
        on_isa!(self, input_body, input_avx2, input_avx512, (d, nb, w, v, at, vstride))
    }

    /// [`Transforms::input`] for F(4×4, 3×3): `d: [6][6][nb + 1]`, `w` 6·nb floats, 36
    /// positions `ξ = 6a + b`.
    fn input4(self, d: &[f32], nb: usize, w: &mut [f32], v: &mut [f32], at: usize, vstride: usize) {
        on_isa!(self, input4_body, input4_avx2, input4_avx512, (d, nb, w, v, at, vstride))
    }

    /// [`Transforms::output`] for F(4×4, 3×3): `q: [4][6][nt]`.
    fn output4(self, m: &[f32], at: usize, mstride: usize, nt: usize, q: &mut [f32]) {
        on_isa!(self, output4_body, output4_avx2, output4_avx512, (m, at, mstride, nt, q))
    }

    /// Output row `i` (0..4) of F(4×4, 3×3)'s `nt` tiles: its four columns of each tile into
    /// `cols: [4][nt]`.
    fn row4(self, q: &[f32], i: usize, nt: usize, cols: &mut [f32]) {
        on_isa!(self, row4_body, row4_avx2, row4_avx512, (q, i, nt, cols))
    }

    /// `Aᵀ M` (the column sums) of `nt` tiles of one output channel, `m[ξ·mstride + at + j]`,
    /// into `q: [2][4][nt]`.
    fn output(self, m: &[f32], at: usize, mstride: usize, nt: usize, q: &mut [f32]) {
        on_isa!(self, output_body, output_avx2, output_avx512, (m, at, mstride, nt, q))
    }

    /// Output row `i` (0 or 1) of the `nt` tiles, `(Aᵀ M) A`: its even columns into `ev`,
    /// its odd ones into `od` (`nt` each).
    fn row(self, q: &[f32], i: usize, nt: usize, ev: &mut [f32], od: &mut [f32]) {
        on_isa!(self, row_body, row_avx2, row_avx512, (q, i, nt, ev, od))
    }

    /// `even[j] = src[2j]`, `odd[j] = src[2j + 1]` for `j < even.len() = odd.len()`
    /// (`src.len() = 2·even.len()`). Moves data only.
    fn deinterleave(self, src: &[f32], even: &mut [f32], odd: &mut [f32]) {
        let n = even.len().min(odd.len()).min(src.len() / 2);
        let done = match self {
            Transforms::Plain => 0,
            // SAFETY: the variant's kernel token proves the ISA (see `on_isa!`); the loop
            // reads src[..2n] and writes even[..n], odd[..n].
            #[cfg(target_arch = "x86_64")]
            Transforms::Avx2 => unsafe { deinterleave_avx2(&src[..2 * n], &mut even[..n], &mut odd[..n]) },
            // SAFETY: the variant's kernel token proves the ISA (see `on_isa!`); the loop
            // reads src[..2n] and writes even[..n], odd[..n].
            #[cfg(target_arch = "x86_64")]
            Transforms::Avx512 => unsafe { deinterleave_avx512(&src[..2 * n], &mut even[..n], &mut odd[..n]) },
        };
        for j in done..n {
            even[j] = src[2 * j];
            odd[j] = src[2 * j + 1];
        }
    }

    /// `dst[2j] = even[j]`, `dst[2j + 1] = odd[j]`. Moves data only.
    fn interleave(self, even: &[f32], odd: &[f32], dst: &mut [f32]) {
        let n = even.len().min(odd.len()).min(dst.len() / 2);
        let done = match self {
            Transforms::Plain => 0,
            // SAFETY: the variant's kernel token proves the ISA (see `on_isa!`); the loop
            // reads even[..n], odd[..n] and writes dst[..2n].
            #[cfg(target_arch = "x86_64")]
            Transforms::Avx2 => unsafe { interleave_avx2(&even[..n], &odd[..n], &mut dst[..2 * n]) },
            // SAFETY: the variant's kernel token proves the ISA (see `on_isa!`); the loop
            // reads even[..n], odd[..n] and writes dst[..2n].
            #[cfg(target_arch = "x86_64")]
            Transforms::Avx512 => unsafe { interleave_avx512(&even[..n], &odd[..n], &mut dst[..2 * n]) },
        };
        for j in done..n {
            dst[2 * j] = even[j];
            dst[2 * j + 1] = odd[j];
        }
    }

    /// `o = act(y + residual + bias)`.
    fn store(self, y: &[f32], r: Option<&[f32]>, bias: Option<f32>, act: super::sgemm::Act, o: &mut [f32]) {
        on_isa!(self, store_body, store_avx2, store_avx512, (y, r, bias, act, o))
    }
}

/// `dst[j] = f(a[j], b[j])` for `j < dst.len()`: one plain loop over the block's tiles, which
/// the compiler vectorises (an explicit 16-wide chunking was vectorised across chunks instead,
/// with gathers, 2.5× slower on 256² maps).
#[inline(always)]
fn map2(dst: &mut [f32], a: &[f32], b: &[f32], f: impl Fn(f32, f32) -> f32 + Copy) {
    dst.iter_mut().zip(a.iter().zip(b)).for_each(|(d, (&x, &y))| *d = f(x, y));
}

/// `dst[j] = f(a[j], b[j], c[j])`, as [`map2`].
#[inline(always)]
fn map3(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], f: impl Fn(f32, f32, f32) -> f32 + Copy) {
    dst.iter_mut().zip(a.iter().zip(b.iter().zip(c))).for_each(|(d, (&x, (&y, &z)))| *d = f(x, y, z));
}

/// The input transform of `nb` tiles from `d: [4 rows][4 columns][nb + 1]`: first `Bᵀ d`
/// down the rows, into `w: [4 columns][nb]` one output row `a` at a time, then `· B` along
/// them into `v[4a + b]`. Every loop runs over the block's tiles, contiguous.
#[inline(always)]
fn input_body(d: &[f32], nb: usize, w: &mut [f32], v: &mut [f32], at: usize, vstride: usize) {
    let n1 = nb + 1;
    let col = |r: usize, c: usize| &d[(r * 4 + c) * n1..][..nb];
    let (sub, add) = (|x: f32, y: f32| x - y, |x: f32, y: f32| x + y);
    for a in 0..4 {
        for (c, dst) in w[..4 * nb].chunks_exact_mut(nb).enumerate() {
            let (r0, r1, r2, r3) = (col(0, c), col(1, c), col(2, c), col(3, c));
            match a {
                0 => map2(dst, r0, r2, sub),
                1 => map2(dst, r1, r2, add),
                2 => map2(dst, r2, r1, sub),
                _ => map2(dst, r1, r3, sub),
            }
        }
        let (w0, w1, w2, w3) = (&w[..nb], &w[nb..2 * nb], &w[2 * nb..3 * nb], &w[3 * nb..4 * nb]);
        for b in 0..4 {
            let dst = &mut v[(4 * a + b) * vstride + at..][..nb];
            match b {
                0 => map2(dst, w0, w2, sub),
                1 => map2(dst, w1, w2, add),
                2 => map2(dst, w2, w1, sub),
                _ => map2(dst, w1, w3, sub),
            }
        }
    }
}

#[inline(always)]
fn output_body(m: &[f32], at: usize, mstride: usize, nt: usize, q: &mut [f32]) {
    for s in 0..4 {
        let mm = |a: usize| &m[(4 * a + s) * mstride + at..][..nt];
        let (m0, m1, m2, m3) = (mm(0), mm(1), mm(2), mm(3));
        let (q0, q1) = q.split_at_mut(4 * nt);
        map3(&mut q0[s * nt..(s + 1) * nt], m0, m1, m2, |a, b, c| a + b + c);
        map3(&mut q1[s * nt..(s + 1) * nt], m1, m2, m3, |a, b, c| a - b - c);
    }
}

/// Row `i` of the output transform: the even output columns into `ev`, the odd into `od`.
#[inline(always)]
fn row_body(q: &[f32], i: usize, nt: usize, ev: &mut [f32], od: &mut [f32]) {
    let qi = &q[i * 4 * nt..(i + 1) * 4 * nt];
    let (q0, q1, q2, q3) = (&qi[..nt], &qi[nt..2 * nt], &qi[2 * nt..3 * nt], &qi[3 * nt..]);
    map3(&mut ev[..nt], q0, q1, q2, |a, b, c| a + b + c);
    map3(&mut od[..nt], q1, q2, q3, |a, b, c| a - b - c);
}

#[inline(always)]
fn store_body(y: &[f32], r: Option<&[f32]>, bias: Option<f32>, act: super::sgemm::Act, o: &mut [f32]) {
    match r {
        Some(r) => map2(o, y, r, |y, r| finish(y + r, bias, act)),
        None => map2(o, y, y, |y, _| finish(y, bias, act)),
    }
}

/// `dst[j] = f(a[j], b[j], c[j], d[j])`, as [`map2`].
#[inline(always)]
fn map4(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], d: &[f32], f: impl Fn(f32, f32, f32, f32) -> f32 + Copy) {
    dst.iter_mut().zip(a.iter().zip(b.iter().zip(c.iter().zip(d)))).for_each(|(o, (&x, (&y, (&z, &t))))| *o = f(x, y, z, t));
}

/// `dst[j] = f(a[j], …, e[j])`, as [`map2`].
#[inline(always)]
fn map5(dst: &mut [f32], a: &[f32], b: &[f32], c: &[f32], d: &[f32], e: &[f32], f: impl Fn(f32, f32, f32, f32, f32) -> f32 + Copy) {
    dst.iter_mut().zip(a.iter().zip(b.iter().zip(c.iter().zip(d.iter().zip(e))))).for_each(|(o, (&x, (&y, (&z, (&t, &u)))))| *o = f(x, y, z, t, u));
}

/// Row `a` of F(4×4, 3×3)'s `Bᵀ` (points 0, ±1, ±2, ∞) applied to six arrays, element by
/// element: `[4 0 −5 0 1 0; 0 −4 −4 1 1 0; 0 4 −4 −1 1 0; 0 −2 −1 2 1 0; 0 2 −1 −2 1 0;
/// 0 4 0 −5 0 1]`.
#[inline(always)]
fn bt_row(a: usize, dst: &mut [f32], x: [&[f32]; 6]) {
    match a {
        0 => map3(dst, x[0], x[2], x[4], |p, q, r| (4.0 * p - 5.0 * q) + r),
        1 => map4(dst, x[1], x[2], x[3], x[4], |p, q, r, t| (r + t) - 4.0 * (p + q)),
        2 => map4(dst, x[1], x[2], x[3], x[4], |p, q, r, t| 4.0 * (p - q) + (t - r)),
        3 => map4(dst, x[1], x[2], x[3], x[4], |p, q, r, t| 2.0 * (r - p) + (t - q)),
        4 => map4(dst, x[1], x[2], x[3], x[4], |p, q, r, t| 2.0 * (p - r) + (t - q)),
        _ => map3(dst, x[1], x[3], x[5], |p, q, r| (4.0 * p - 5.0 * q) + r),
    }
}

/// Row `i` of F(4×4, 3×3)'s `Aᵀ` applied to six arrays: `[1 1 1 1 1 0; 0 1 −1 2 −2 0;
/// 0 1 1 4 4 0; 0 1 −1 8 −8 1]`.
#[inline(always)]
fn at_row(i: usize, dst: &mut [f32], x: [&[f32]; 6]) {
    match i {
        0 => map5(dst, x[0], x[1], x[2], x[3], x[4], |a, b, c, d, e| (a + (b + c)) + (d + e)),
        1 => map4(dst, x[1], x[2], x[3], x[4], |b, c, d, e| (b - c) + 2.0 * (d - e)),
        2 => map4(dst, x[1], x[2], x[3], x[4], |b, c, d, e| (b + c) + 4.0 * (d + e)),
        _ => map5(dst, x[1], x[2], x[3], x[4], x[5], |b, c, d, e, f| ((b - c) + 8.0 * (d - e)) + f),
    }
}

/// F(4×4, 3×3)'s input transform of `nb` tiles from `d: [6 rows][6 columns][nb + 1]`: `Bᵀ d`
/// down the rows into `w: [6 columns][nb]`, one output row `a` at a time, then `· B` along
/// them into `v[6a + b]`.
#[inline(always)]
fn input4_body(d: &[f32], nb: usize, w: &mut [f32], v: &mut [f32], at: usize, vstride: usize) {
    let n1 = nb + 1;
    let col = |r: usize, c: usize| &d[(r * 6 + c) * n1..][..nb];
    for a in 0..6 {
        for (c, dst) in w[..6 * nb].chunks_exact_mut(nb).enumerate() {
            bt_row(a, dst, std::array::from_fn(|r| col(r, c)));
        }
        let ws: [&[f32]; 6] = std::array::from_fn(|c| &w[c * nb..(c + 1) * nb]);
        for b in 0..6 {
            bt_row(b, &mut v[(6 * a + b) * vstride + at..][..nb], ws);
        }
    }
}

/// F(4×4, 3×3)'s `Aᵀ M` of `nt` tiles of one output channel into `q: [4][6][nt]`.
#[inline(always)]
fn output4_body(m: &[f32], at: usize, mstride: usize, nt: usize, q: &mut [f32]) {
    for s in 0..6 {
        let ms: [&[f32]; 6] = std::array::from_fn(|a| &m[(6 * a + s) * mstride + at..][..nt]);
        for i in 0..4 {
            at_row(i, &mut q[(i * 6 + s) * nt..][..nt], ms);
        }
    }
}

/// Output row `i` of F(4×4, 3×3): `(Aᵀ M)[i] · A`, column k of each tile into `cols[k]`.
#[inline(always)]
fn row4_body(q: &[f32], i: usize, nt: usize, cols: &mut [f32]) {
    let qs: [&[f32]; 6] = std::array::from_fn(|s| &q[(i * 6 + s) * nt..][..nt]);
    for (k, dst) in cols[..4 * nt].chunks_exact_mut(nt).enumerate() {
        at_row(k, dst, qs);
    }
}

/// Each `name => body(args)` compiled for `feature`: the transforms' plain loops, built per ISA.
macro_rules! compiled_for {
    ($feature:literal, $($name:ident => $body:ident($($arg:ident: $ty:ty),*);)*) => {
        $(
            /// # Safety
            /// The CPU must support the target feature.
            #[cfg(target_arch = "x86_64")]
            #[target_feature(enable = $feature)]
            unsafe fn $name($($arg: $ty),*) {
                $body($($arg),*)
            }
        )*
    };
}

macro_rules! transforms_for {
    ($feature:literal, $input:ident, $output:ident, $row:ident, $store:ident, $input4:ident, $output4:ident, $row4:ident) => {
        compiled_for!($feature,
            $input => input_body(d: &[f32], nb: usize, w: &mut [f32], v: &mut [f32], at: usize, vstride: usize);
            $output => output_body(m: &[f32], at: usize, mstride: usize, nt: usize, q: &mut [f32]);
            $row => row_body(q: &[f32], i: usize, nt: usize, ev: &mut [f32], od: &mut [f32]);
            $store => store_body(y: &[f32], r: Option<&[f32]>, bias: Option<f32>, act: super::sgemm::Act, o: &mut [f32]);
            $input4 => input4_body(d: &[f32], nb: usize, w: &mut [f32], v: &mut [f32], at: usize, vstride: usize);
            $output4 => output4_body(m: &[f32], at: usize, mstride: usize, nt: usize, q: &mut [f32]);
            $row4 => row4_body(q: &[f32], i: usize, nt: usize, cols: &mut [f32]);
        );
    };
}

transforms_for!("avx2,fma", input_avx2, output_avx2, row_avx2, store_avx2, input4_avx2, output4_avx2, row4_avx2);
transforms_for!("avx512f", input_avx512, output_avx512, row_avx512, store_avx512, input4_avx512, output4_avx512, row4_avx512);

/// The mask of the first `k` (≤ 16) lanes.
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn lanes(k: usize) -> u16 {
    ((1u32 << k.min(16)) - 1) as u16
}

/// Lanes `l < limit` of `row[base + l]` where that column lies in the row, 0 elsewhere (a
/// padding column, or a padding row passed empty).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
fn padded_load(row: &[f32], base: isize, limit: usize) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let mask = super::sgemm::row_lanes(base, row.len()) & lanes(limit);
    if mask == 0 {
        // No load at all: an empty row's pointer is dangling, and loads with every lane masked
        // off there ran ResNet-18 1.17× slower.
        return _mm512_setzero_ps();
    }
    // SAFETY: only lanes of columns base + l inside the row are loaded (the mask); the wrapped
    // address of the others is never dereferenced.
    unsafe { _mm512_maskz_loadu_ps(mask, row.as_ptr().wrapping_offset(base)) }
}

/// F(2×2)'s input transform of `nt` tiles of one tile row from its four input rows (tile j
/// reads columns `x0 + 2j .. x0 + 2j + 3` of `rows[r]`, 0 where a column lies outside the row;
/// a padding row is empty), into `v[ξ·vstride + at + j]`: [`input_body`]'s operations in its
/// order (`Bᵀ d` down the rows, then `· B`), so the same bits, 16 tiles per step with the
/// columns split into even and odd by permutes.
///
/// # Safety
/// The CPU must support AVX-512F; `v` holds at least `15·vstride + at + nt` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input_rows_avx512(rows: [&[f32]; 4], x0: isize, nt: usize, v: &mut [f32], at: usize, vstride: usize) {
    use std::arch::x86_64::*;
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31);
    let vp = v.as_mut_ptr();
    let mut j0 = 0;
    while j0 < nt {
        let m = (nt - j0).min(16);
        // The group's tiles read 2m + 2 columns from 2·j0; loads past them are masked off.
        let need = 2 * m + 2;
        let mut d = [[_mm512_setzero_ps(); 4]; 4];
        for (dr, row) in d.iter_mut().zip(rows) {
            let base = x0 + 2 * j0 as isize;
            let (lo, hi) = (padded_load(row, base, need), padded_load(row, base + 16, need.saturating_sub(16)));
            let (lo2, hi2) = (padded_load(row, base + 2, need - 2), padded_load(row, base + 18, need.saturating_sub(18)));
            *dr = [_mm512_permutex2var_ps(lo, even, hi), _mm512_permutex2var_ps(lo, odd, hi), _mm512_permutex2var_ps(lo2, even, hi2), _mm512_permutex2var_ps(lo2, odd, hi2)];
        }
        let mask = lanes(m);
        for a in 0..4 {
            let w: [__m512; 4] = std::array::from_fn(|c| match a {
                0 => _mm512_sub_ps(d[0][c], d[2][c]),
                1 => _mm512_add_ps(d[1][c], d[2][c]),
                2 => _mm512_sub_ps(d[2][c], d[1][c]),
                _ => _mm512_sub_ps(d[1][c], d[3][c]),
            });
            let out = [_mm512_sub_ps(w[0], w[2]), _mm512_add_ps(w[1], w[2]), _mm512_sub_ps(w[2], w[1]), _mm512_sub_ps(w[1], w[3])];
            for (b, o) in out.into_iter().enumerate() {
                // SAFETY: lanes j0 .. j0 + m of run 4a + b, inside `v` (the caller's bound).
                _mm512_mask_storeu_ps(vp.add((4 * a + b) * vstride + at + j0), mask, o);
            }
        }
        j0 += m;
    }
}

/// `y = act((y + residual) + bias)` ([`super::sgemm::finish`]) on the first `cols` (≤ 32)
/// columns of two vectors `y`, stored to `o` from column `x`.
///
/// # Safety
/// The CPU must support AVX-512F; `o` (and `r`) hold at least `x + min(cols, 32)` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn finish_pair(y: [std::arch::x86_64::__m512; 2], r: Option<&[f32]>, bias: Option<f32>, act: super::sgemm::Act, o: &mut [f32], x: usize, cols: usize) {
    use std::arch::x86_64::*;
    for (h, mut v) in y.into_iter().enumerate() {
        let x = x + 16 * h;
        if x >= cols.min(o.len()) {
            break;
        }
        let mask = lanes(cols.min(o.len()) - x);
        if let Some(r) = r {
            // SAFETY: lanes of columns x .. x + 16 under the mask, inside `r` (as `o`).
            v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(mask, r.as_ptr().add(x)));
        }
        if let Some(b) = bias {
            v = _mm512_add_ps(v, _mm512_set1_ps(b));
        }
        // SAFETY: the same lanes of `o`.
        _mm512_mask_storeu_ps(o.as_mut_ptr().add(x), mask, super::sgemm::act512(v, act));
    }
}

/// `vpermt2ps` indices interleaving two vectors `a`, `b`: lanes 0..8 of each (`a0 b0 a1 b1 …`)
/// and lanes 8..16.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn zip_lanes() -> (std::arch::x86_64::__m512i, std::arch::x86_64::__m512i) {
    use std::arch::x86_64::*;
    (_mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31))
}

/// F(2×2)'s output transform of `nt` tiles of one tile row and output channel, `M` at
/// `m[ξ·mstride + at + j]`: output row i (0, 1) into `outs[i]` when present (columns 2j, 2j + 1
/// of tile j, as many as it holds), [`output_body`], [`row_body`] and [`store_body`]'s
/// operations in their order, so the same bits, 16 tiles per step.
///
/// # Safety
/// The CPU must support AVX-512F; `m` holds `15·mstride + at + nt` floats, each `res[i]` as
/// many as `outs[i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn output_rows_avx512(m: &[f32], at: usize, mstride: usize, nt: usize, outs: &mut [Option<&mut [f32]>; 4], res: &[Option<&[f32]>; 4], bias: Option<f32>, act: super::sgemm::Act) {
    use std::arch::x86_64::*;
    let (lo, hi) = zip_lanes();
    let mut j0 = 0;
    while j0 < nt {
        let mask = lanes(nt - j0);
        // SAFETY: lanes j0 .. nt of run ξ, inside `m` (the caller's bound).
        let mm = |xi: usize| _mm512_maskz_loadu_ps(mask, m.as_ptr().add(xi * mstride + at + j0));
        let q: [[__m512; 4]; 2] = [
            std::array::from_fn(|s| _mm512_add_ps(_mm512_add_ps(mm(s), mm(4 + s)), mm(8 + s))),
            std::array::from_fn(|s| _mm512_sub_ps(_mm512_sub_ps(mm(4 + s), mm(8 + s)), mm(12 + s))),
        ];
        for (i, o) in outs.iter_mut().take(2).enumerate() {
            let Some(o) = o else { continue };
            let qi = q[i];
            let ev = _mm512_add_ps(_mm512_add_ps(qi[0], qi[1]), qi[2]);
            let od = _mm512_sub_ps(_mm512_sub_ps(qi[1], qi[2]), qi[3]);
            let y = [_mm512_permutex2var_ps(ev, lo, od), _mm512_permutex2var_ps(ev, hi, od)];
            finish_pair(y, res[i], bias, act, o, 2 * j0, o.len());
        }
        j0 += 16;
    }
}

/// Row `i` of F(4×4)'s `Aᵀ` on six vectors: [`at_row`]'s operations in its order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn at_vec(i: usize, x: [std::arch::x86_64::__m512; 6]) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    match i {
        0 => _mm512_add_ps(_mm512_add_ps(x[0], _mm512_add_ps(x[1], x[2])), _mm512_add_ps(x[3], x[4])),
        1 => _mm512_add_ps(_mm512_sub_ps(x[1], x[2]), _mm512_mul_ps(_mm512_set1_ps(2.0), _mm512_sub_ps(x[3], x[4]))),
        2 => _mm512_add_ps(_mm512_add_ps(x[1], x[2]), _mm512_mul_ps(_mm512_set1_ps(4.0), _mm512_add_ps(x[3], x[4]))),
        _ => _mm512_add_ps(_mm512_add_ps(_mm512_sub_ps(x[1], x[2]), _mm512_mul_ps(_mm512_set1_ps(8.0), _mm512_sub_ps(x[3], x[4]))), x[5]),
    }
}

/// F(4×4)'s output transform of `nt` tiles of one tile row and output channel, as
/// [`output_rows_avx512`]: output rows 0..4 into `outs[i]` when present, columns 4j .. 4j + 3
/// of tile j, [`output4_body`], [`row4_body`] and [`store_body`]'s operations in their order.
///
/// # Safety
/// The CPU must support AVX-512F; `m` holds `35·mstride + at + nt` floats, each `res[i]` as
/// many as `outs[i]`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn output4_rows_avx512(m: &[f32], at: usize, mstride: usize, nt: usize, outs: &mut [Option<&mut [f32]>; 4], res: &[Option<&[f32]>; 4], bias: Option<f32>, act: super::sgemm::Act) {
    use std::arch::x86_64::*;
    let (lo, hi) = zip_lanes();
    let mut j0 = 0;
    while j0 < nt {
        let mask = lanes(nt - j0);
        // `Aᵀ M`: q[i][s] from the six runs ξ = 6a + s.
        let mut q = [[_mm512_setzero_ps(); 6]; 4];
        for s in 0..6 {
            // SAFETY: lanes j0 .. nt of run 6a + s, inside `m` (the caller's bound).
            let x: [__m512; 6] = std::array::from_fn(|a| _mm512_maskz_loadu_ps(mask, m.as_ptr().add((6 * a + s) * mstride + at + j0)));
            for (i, qi) in q.iter_mut().enumerate() {
                qi[s] = at_vec(i, x);
            }
        }
        for (i, o) in outs.iter_mut().enumerate() {
            let Some(o) = o else { continue };
            // Columns k of the tiles, then y[4j + k] = column k of tile j: (0, 2) and (1, 3)
            // interleaved, then the two.
            let c: [__m512; 4] = std::array::from_fn(|k| at_vec(k, q[i]));
            let (a, b) = ([_mm512_permutex2var_ps(c[0], lo, c[2]), _mm512_permutex2var_ps(c[0], hi, c[2])], [_mm512_permutex2var_ps(c[1], lo, c[3]), _mm512_permutex2var_ps(c[1], hi, c[3])]);
            for h in 0..2 {
                let y = [_mm512_permutex2var_ps(a[h], lo, b[h]), _mm512_permutex2var_ps(a[h], hi, b[h])];
                finish_pair(y, res[i], bias, act, o, 4 * j0 + 32 * h, o.len());
            }
        }
        j0 += 16;
    }
}

/// Row `a` of F(4×4)'s `Bᵀ` on six vectors: [`bt_row`]'s operations in its order.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn bt_vec(a: usize, x: [std::arch::x86_64::__m512; 6]) -> std::arch::x86_64::__m512 {
    use std::arch::x86_64::*;
    let (two, four, five) = (_mm512_set1_ps(2.0), _mm512_set1_ps(4.0), _mm512_set1_ps(5.0));
    match a {
        0 => _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, x[0]), _mm512_mul_ps(five, x[2])), x[4]),
        1 => _mm512_sub_ps(_mm512_add_ps(x[3], x[4]), _mm512_mul_ps(four, _mm512_add_ps(x[1], x[2]))),
        2 => _mm512_add_ps(_mm512_mul_ps(four, _mm512_sub_ps(x[1], x[2])), _mm512_sub_ps(x[4], x[3])),
        3 => _mm512_add_ps(_mm512_mul_ps(two, _mm512_sub_ps(x[3], x[1])), _mm512_sub_ps(x[4], x[2])),
        4 => _mm512_add_ps(_mm512_mul_ps(two, _mm512_sub_ps(x[1], x[3])), _mm512_sub_ps(x[4], x[2])),
        _ => _mm512_add_ps(_mm512_sub_ps(_mm512_mul_ps(four, x[1]), _mm512_mul_ps(five, x[3])), x[5]),
    }
}

/// F(4×4)'s input transform of `nt` tiles of one tile row from its six input rows (tile j
/// reads columns `x0 + 4j .. x0 + 4j + 5` of `rows[r]`, 0 outside the row, as
/// [`input_rows_avx512`]), into `v[ξ·vstride + at + j]`: [`input4_body`]'s operations in its
/// order, so the same bits, 16 tiles per step, column c of the 16 tiles picked from 64
/// consecutive floats by two permutes and a lane shuffle.
///
/// # Safety
/// The CPU must support AVX-512F; `v` holds at least `35·vstride + at + nt` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn input4_rows_avx512(rows: [&[f32]; 6], x0: isize, nt: usize, v: &mut [f32], at: usize, vstride: usize) {
    use std::arch::x86_64::*;
    // Lanes 0..8 pick elements 4j + c of a 32-float pair (the upper lanes are not used).
    let pick: [__m512i; 4] = std::array::from_fn(|c| {
        let c = c as i32;
        _mm512_setr_epi32(c, 4 + c, 8 + c, 12 + c, 16 + c, 20 + c, 24 + c, 28 + c, 0, 0, 0, 0, 0, 0, 0, 0)
    });
    let vp = v.as_mut_ptr();
    let mut j0 = 0;
    while j0 < nt {
        let m = (nt - j0).min(16);
        // The group's tiles read 4m + 2 columns from 4·j0; loads past them are masked off.
        let need = 4 * m + 2;
        // Columns 0..6 of the group's tiles in each row: columns 4 and 5 are columns 0 and 1
        // read four floats on.
        let mut d = [[_mm512_setzero_ps(); 6]; 6];
        for (dr, row) in d.iter_mut().zip(rows) {
            for shift in [0, 4] {
                let base = x0 + (4 * j0 + shift) as isize;
                let n = need - shift;
                let z: [__m512; 4] = std::array::from_fn(|q| padded_load(row, base + 16 * q as isize, n.saturating_sub(16 * q)));
                for c in 0..if shift == 0 { 4 } else { 2 } {
                    let (lo, hi) = (_mm512_permutex2var_ps(z[0], pick[c], z[1]), _mm512_permutex2var_ps(z[2], pick[c], z[3]));
                    dr[c + shift] = _mm512_shuffle_f32x4::<0b01_00_01_00>(lo, hi);
                }
            }
        }
        // `Bᵀ d` down the rows, one column at a time: w[a][c].
        let mut w = [[_mm512_setzero_ps(); 6]; 6];
        for c in 0..6 {
            let dc: [__m512; 6] = std::array::from_fn(|r| d[r][c]);
            for (a, wa) in w.iter_mut().enumerate() {
                wa[c] = bt_vec(a, dc);
            }
        }
        let mask = lanes(m);
        for (a, wa) in w.iter().enumerate() {
            for b in 0..6 {
                // SAFETY: lanes j0 .. j0 + m of run 6a + b, inside `v` (the caller's bound).
                _mm512_mask_storeu_ps(vp.add((6 * a + b) * vstride + at + j0), mask, bt_vec(b, *wa));
            }
        }
        j0 += m;
    }
}

/// Deinterleaves `src` 32 floats at a time (16 into each half), the last chunk under masks;
/// returns the pairs done (all of them).
///
/// # Safety
/// The CPU must support AVX-512F; `src.len() = 2·even.len() = 2·odd.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn deinterleave_avx512(src: &[f32], even: &mut [f32], odd: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = even.len();
    let (ie, io) = (_mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30), _mm512_setr_epi32(1, 3, 5, 7, 9, 11, 13, 15, 17, 19, 21, 23, 25, 27, 29, 31));
    let mut j = 0;
    while j < n {
        let rem = (n - j).min(16);
        let (ma, mb, mo) = (lanes(2 * rem), lanes((2 * rem).saturating_sub(16)), lanes(rem));
        // SAFETY: the masks keep the loads in src[2j .. 2j + 2·rem] and the stores in
        // even/odd[j .. j + rem], all in bounds (2j + 2·rem ≤ 2n); masked-off lanes never fault.
        unsafe {
            let (a, b) = (_mm512_maskz_loadu_ps(ma, src.as_ptr().add(2 * j)), _mm512_maskz_loadu_ps(mb, src.as_ptr().add(2 * j + 16)));
            _mm512_mask_storeu_ps(even.as_mut_ptr().add(j), mo, _mm512_permutex2var_ps(a, ie, b));
            _mm512_mask_storeu_ps(odd.as_mut_ptr().add(j), mo, _mm512_permutex2var_ps(a, io, b));
        }
        j += rem;
    }
    n
}

/// Interleaves `even` and `odd` into `dst` 16 pairs at a time, the last chunk under masks;
/// returns the pairs done (all of them).
///
/// # Safety
/// The CPU must support AVX-512F; `dst.len() = 2·even.len() = 2·odd.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn interleave_avx512(even: &[f32], odd: &[f32], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = even.len();
    let (lo, hi) = (_mm512_setr_epi32(0, 16, 1, 17, 2, 18, 3, 19, 4, 20, 5, 21, 6, 22, 7, 23), _mm512_setr_epi32(8, 24, 9, 25, 10, 26, 11, 27, 12, 28, 13, 29, 14, 30, 15, 31));
    let mut j = 0;
    while j < n {
        let rem = (n - j).min(16);
        let (mi, ma, mb) = (lanes(rem), lanes(2 * rem), lanes((2 * rem).saturating_sub(16)));
        // SAFETY: the masks keep the loads in even/odd[j .. j + rem] and the stores in
        // dst[2j .. 2j + 2·rem], all in bounds; masked-off lanes never fault.
        unsafe {
            let (e, o) = (_mm512_maskz_loadu_ps(mi, even.as_ptr().add(j)), _mm512_maskz_loadu_ps(mi, odd.as_ptr().add(j)));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(2 * j), ma, _mm512_permutex2var_ps(e, lo, o));
            _mm512_mask_storeu_ps(dst.as_mut_ptr().add(2 * j + 16), mb, _mm512_permutex2var_ps(e, hi, o));
        }
        j += rem;
    }
    n
}

/// [`deinterleave_avx512`] in 16-float chunks.
///
/// # Safety
/// The CPU must support AVX2; `src.len() = 2·even.len() = 2·odd.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn deinterleave_avx2(src: &[f32], even: &mut [f32], odd: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = even.len();
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: src[2j .. 2j + 16] and even/odd[j .. j + 8] are in bounds.
        unsafe {
            let (a, b) = (_mm256_loadu_ps(src.as_ptr().add(2 * j)), _mm256_loadu_ps(src.as_ptr().add(2 * j + 8)));
            // Within each 128-bit lane: [a0 a2 b0 b2 | a4 a6 b4 b6], then the 64-bit pairs in order.
            let e = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let o = _mm256_shuffle_ps::<0b11_01_11_01>(a, b);
            _mm256_storeu_ps(even.as_mut_ptr().add(j), _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(e))));
            _mm256_storeu_ps(odd.as_mut_ptr().add(j), _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(o))));
        }
        j += 8;
    }
    j
}

/// [`interleave_avx512`] in 8-float chunks.
///
/// # Safety
/// The CPU must support AVX2; `dst.len() = 2·even.len() = 2·odd.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn interleave_avx2(even: &[f32], odd: &[f32], dst: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let n = even.len();
    let mut j = 0;
    while j + 8 <= n {
        // SAFETY: even/odd[j .. j + 8] and dst[2j .. 2j + 16] are in bounds.
        unsafe {
            let (e, o) = (_mm256_loadu_ps(even.as_ptr().add(j)), _mm256_loadu_ps(odd.as_ptr().add(j)));
            // [e0 o0 e1 o1 | e4 o4 e5 o5] and [e2 o2 e3 o3 | e6 o6 e7 o7], then the halves in order.
            let (lo, hi) = (_mm256_unpacklo_ps(e, o), _mm256_unpackhi_ps(e, o));
            _mm256_storeu_ps(dst.as_mut_ptr().add(2 * j), _mm256_permute2f128_ps::<0x20>(lo, hi));
            _mm256_storeu_ps(dst.as_mut_ptr().add(2 * j + 8), _mm256_permute2f128_ps::<0x31>(lo, hi));
        }
        j += 8;
    }
    j
}
