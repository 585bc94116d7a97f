//! BF16 convolution as an implicit GEMM with no im2col: on AMX tiles (`tdpbf16ps`, Intel
//! Sapphire Rapids and later) where the CPU has AMX-BF16, else on `vdpbf16ps` register tiles
//! ([`crate::cpu::bdot`], over the same packed weights and planes): the `--precision bf16`
//! path of the convs [`takes`].
//!
//! Per image: `out[Cout, OH·OW] = W[Cout, taps·Cin] × X[taps·Cin, OH·OW]`, on AMX in 32 × 32
//! blocks of four 16 × 16 f32 accumulator tiles (two output-channel halves × two pixel halves;
//! [`bdot`] documents its register tiles).
//!
//! Layouts:
//! - Weights, packed once for the kernel that runs them ([`Packed`]): for AMX
//!   `[Mpad/16][kh·kw][Cpad/32][16][32]` bf16, output channels padded to `Mpad` (a multiple of
//!   32) and input channels to `Cpad` (a multiple of 32) with zeros: one A tile (16 channels ×
//!   32 k) is 1 KiB, contiguous; for [`bdot`] `[Mpad/8][kh·kw][Cpad/32][16 pairs][8 rows]` u32
//!   (`Mpad` a multiple of 8), or with output channels on its lanes ([`bchan`], [`Lanes`])
//!   `[Mpad/64][kh·kw][Cin/2][64]` u32 (`Mpad` a multiple of 16, the last panel `Mpad mod 64`
//!   wide when not 0). Below 16 input channels the kernel's columns fold into the
//!   channels: `kh` taps instead of `kh·kw`, over K step channels `kx·cin + ci` (see
//!   [`Packed`]).
//! - Activations: the input is copied once per call, rounded to bf16, zero-padded and split by
//!   stride into phase planes of channel pairs, `[N][sy·sx][Cpad/2][P]` u32 (folded:
//!   `[N][sy][Cpad/2][P]`, plane `kx·cin + ci` shifted by `kx·dx` columns, its rows `wph =
//!   OW` wide; a pair holds
//!   channel `2i` in its low half, `2i + 1` in its high half; `P ≥ hph·wph`), as
//!   `cpu::sconv`'s `Phased` columns: virtual pixel `v = oy·wph + ox` (`ox < wph`) of tap
//!   `(ky, kx)` reads phase `(ky·dy mod sy, kx·dx mod sx)` at `v + ⌊ky·dy/sy⌋·wph +
//!   ⌊kx·dx/sx⌋`. So a B tile (16 channel pairs × 16 virtual pixels) is 16 runs of 64 bytes
//!   at the plane stride, loaded in place by `tileloadd`. Virtual columns `ox ≥ OW` are
//!   computed and dropped. On `vdpbf16ps`, pointwise convs build no planes
//!   ([`Geo::pointwise`]; [`bdot`] rounds each pixel block's pairs as it runs).
//! - Output: NCHW f32. The epilogue reads each accumulator tile back (`tilestored` into a
//!   4 KiB buffer), adds the residual and the bias, applies the activation and stores the
//!   real pixels.
//!
//! Arithmetic: the products of two bf16 values are exact in f32; `tdpbf16ps` sums them in an
//! order and with intermediate roundings that Intel does not specify (measured on this
//! project's host: no sequential or pairwise f32 model reproduces it bit for bit), so this
//! path is not bit-identical to the scalar bf16 emulation ([`crate::cpu::bgemm`]). Its error
//! against the exact sum of the same bf16 products is that of an f32 sum in some order; the
//! tests hold it to [`error_bound`]. Every output element is computed by one thread in a fixed
//! k order, so results do not depend on the thread count.

use super::aligned::Aligned;
use super::{bchan, bdot};
use super::bgemm::{self, to_bf16};
use super::detect::{self, AmxKind};
use super::parallel::{par_chunks_mut, par_for, OutPtr, PARTS_PER_WORKER};
use super::sgemm::{Act, Epilogue};
use crate::graph::Conv2d;

/// The kernel's name in reports.
pub const NAME: &str = "amx-bf16 32x32";

/// Output channels and virtual pixels of one block (two tiles each way).
const BLOCK: usize = 32;
/// Input channels per K step (one A tile row: 32 bf16).
const KSTEP: usize = 32;

/// Proof that the CPU has AMX-TILE and AMX-BF16, that the kernel let this process use the
/// tile data state (Linux `arch_prctl(ARCH_REQ_XCOMP_PERM)`), and that AVX512_BF16 is there
/// for the activations' rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AmxToken(bgemm::Bf16Token);

impl AmxToken {
    /// `Some` where AMX-BF16 can run ([`detect::amx`]; `KESTREL_AMX=0` turns this path off,
    /// and the bf16 convs then run on `vdpbf16ps`).
    pub fn new() -> Option<Self> {
        let bf16 = bgemm::Bf16Token::new()?;
        detect::amx(AmxKind::Bf16).then_some(AmxToken(bf16))
    }

    fn bf16(self) -> bgemm::Kernel {
        #[cfg(target_arch = "x86_64")]
        return bgemm::Kernel::Avx512Bf16(self.0);
        #[cfg(not(target_arch = "x86_64"))]
        bgemm::Kernel::Scalar
    }
}

/// Whether the implicit path takes a conv: ungrouped, with at least 16 input channels, or
/// fewer and a kernel wider than 1, whose columns are then folded into the channels
/// ([`Packed`]). The rest (grouped convs, 1×1 convs of few channels) run on
/// [`crate::cpu::bconv`]'s im2col.
pub fn takes(c: &Conv2d) -> bool {
    c.groups == 1 && (c.in_channels() >= FOLD_BELOW || c.kernel()[1] > 1)
}

/// Convs of fewer input channels than this fold their kernel columns into the channels.
const FOLD_BELOW: usize = 16;

/// The kernel an implicit bf16 conv runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PlaneKernel {
    /// AMX tiles, 32 × 32 blocks.
    Amx(AmxToken),
    /// `vdpbf16ps` 8 × 48 register tiles, or their scalar twin ([`bdot`]).
    Dot(bdot::DotKernel),
}

impl PlaneKernel {
    /// The richest this CPU has for bf16 kernel `k`: AMX where it can run, `vdpbf16ps` with
    /// AVX512_BF16, the scalar twin on the scalar path.
    pub fn for_bf16(k: bgemm::Kernel) -> PlaneKernel {
        match k {
            #[cfg(target_arch = "x86_64")]
            bgemm::Kernel::Avx512Bf16(t) => AmxToken::new().map_or(PlaneKernel::Dot(bdot::DotKernel::Avx512Bf16(t)), PlaneKernel::Amx),
            bgemm::Kernel::Scalar => PlaneKernel::Dot(bdot::DotKernel::Scalar),
        }
    }

    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            PlaneKernel::Amx(_) => NAME,
            PlaneKernel::Dot(bdot::DotKernel::Avx512Bf16(_)) => bdot::NAME,
            PlaneKernel::Dot(bdot::DotKernel::Scalar) => "scalar emulation 8x48 planes",
        }
    }

    /// Its name in reports for weights `p`, whose lanes may hold channels ([`bchan`]).
    pub fn name_for(self, p: &Packed) -> &'static str {
        match (self, p.lanes) {
            (PlaneKernel::Dot(bdot::DotKernel::Avx512Bf16(_)), Lanes::Channels) => bchan::NAME,
            (PlaneKernel::Dot(bdot::DotKernel::Scalar), Lanes::Channels) => bchan::TWIN_NAME,
            _ => self.name(),
        }
    }

    /// The kernel that rounds the activations into the planes.
    fn bf16(self) -> bgemm::Kernel {
        match self {
            PlaneKernel::Amx(t) => t.bf16(),
            #[cfg(target_arch = "x86_64")]
            PlaneKernel::Dot(bdot::DotKernel::Avx512Bf16(t)) => bgemm::Kernel::Avx512Bf16(t),
            _ => bgemm::Kernel::Scalar,
        }
    }
}

/// A conv's weights for the implicit kernels (see the module docs for the layout).
#[derive(Clone, Debug)]
pub struct Packed {
    pub cout: usize,
    pub cin: usize,
    /// Kernel columns folded into the channels: K step channel `kx·cin + ci` is input channel
    /// `ci` at column `kx`, and the taps are the kernel rows only. A 3-channel 7×7 stem then
    /// runs 7 K steps of 21 channels (padded to 32) instead of 49 of 3.
    fold: bool,
    /// Kernel rows (folded) or `kh·kw`.
    pub taps: usize,
    /// `Cpad / 32`.
    csteps: usize,
    /// Channels per tap that hold weights (`cin`, or `kw · cin` folded).
    taps_channels: usize,
    /// Laid out for [`bdot`] (`[Mpad/8][taps][Cpad/32][16 pairs][8 rows]` u32, `Mpad` a
    /// multiple of 8: each 8-row panel one sequential stream), not for the AMX tiles.
    dot: bool,
    /// What the `vdpbf16ps` tiles' lanes hold ([`Lanes`]); `Pixels` for AMX.
    lanes: Lanes,
    /// The bf16 values two by two (a u32 holds k step channels `2i`, `2i + 1` of one row).
    data: Aligned<u32>,
}

impl Packed {
    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }

    /// The A tile of 16 output channels `mt·16..`, tap `t`, input channels `q·32..`.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn tile(&self, mt: usize, t: usize, q: usize) -> *const u32 {
        self.data[((mt * self.taps + t) * self.csteps + q) * 16 * KSTEP / 2..].as_ptr()
    }

    /// [`bdot`]'s weights of output channel `co` (a multiple of 4) and the rows after it in
    /// its 8-row panel: tap `t`'s K step `q` pair `j` of row `co + r` at `(t·csteps + q)·128 +
    /// j·8 + r`.
    pub(super) fn panel(&self, co: usize) -> &[u32] {
        let len = self.taps * self.csteps * 16 * bdot::MR;
        &self.data[(co / bdot::MR) * len + co % bdot::MR..(co / bdot::MR + 1) * len]
    }

    /// [`bchan`]'s weights of the 64-channel panel `pn`, and their lane count `w` (64, or
    /// `Mpad − 64·pn` for the last): tap `t`'s pair `j` of channel `64·pn + l` at `(t·kpairs +
    /// j)·w + l`.
    pub(super) fn channel_panel(&self, pn: usize) -> (&[u32], usize) {
        let kpairs = self.cin.div_ceil(2);
        let w = (self.cout.next_multiple_of(16) - 64 * pn).min(bchan::LANES);
        let at = bchan::LANES * pn * self.taps * kpairs;
        (&self.data[at..at + self.taps * kpairs * w], w)
    }

    /// What the tiles' lanes hold.
    pub fn lanes(&self) -> Lanes {
        self.lanes
    }

    /// K steps of 32 channels per tap.
    pub(super) fn csteps(&self) -> usize {
        self.csteps
    }

    /// Channels per tap that hold weights: the input channels, or with the columns folded
    /// `kw · cin`.
    pub(super) fn kstep_channels(&self) -> usize {
        self.taps_channels
    }
}

/// What the `vdpbf16ps` register tiles hold on their 16 vector lanes: the same K order and
/// arithmetic either way, so the same values bit for bit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lanes {
    /// Output pixels ([`bdot`]: 8 channels × 48 virtual pixels).
    Pixels,
    /// Output channels ([`bchan`]: 6 real pixels × 64 channels): no lanes spent on padded
    /// columns or a short last pixel vector, which small maps waste (see [`channel_lanes_pay`]).
    Channels,
}

/// Whether a conv with output map `map` runs faster with output channels on the lanes
/// ([`Lanes::Channels`]) than with pixels on them: maps of at most 64 pixels, where [`bdot`]'s
/// pixel vectors are emptiest (a 7 × 7 map of a padded 3 × 3 conv: 49 of 64 lanes), at least
/// 1024 products per output (taps × input channels: the transposing epilogue needs a long K
/// behind it) and at least 256 output channels (four 64-channel panels for the workers to
/// split). Measured in ResNet-50 in bf16 on Zen 5 (2 threads, per layer, channel against pixel
/// lanes): the 7 × 7 3×3 convs 0.29–0.33 ms against 0.38–0.42, the stride-2 one 0.36–0.38
/// against 0.44–0.45, the 2048 → 512 1×1 convs 0.15 against 0.19, the 1024 → 2048 stride-2
/// downsample 0.35 against 0.37; the 512 → 2048 1×1 convs (512 products) 0.19 against 0.18,
/// layer3's 3×3 convs on 14 × 14 maps 0.35–0.44 against 0.29–0.31, and shapes-resnet18's
/// 16-channel 3×3 convs on 8 × 8 maps (one panel, one worker) 4.2–4.7 µs against 2.5–2.7.
/// Convs whose kernel columns fold into the channels (few input channels) stay on pixels.
pub fn channel_lanes_pay(c: &Conv2d, [oh, ow]: [usize; 2]) -> bool {
    let [kh, kw] = c.kernel();
    !folds(c) && kh * kw * c.in_channels() >= 1024 && oh * ow <= 64 && c.out_channels() >= 4 * bchan::LANES
}

/// Whether `c` folds its kernel columns into the K step channels.
fn folds(c: &Conv2d) -> bool {
    c.in_channels() < FOLD_BELOW && c.kernel()[1] > 1
}

/// Rounds and packs `c`'s weights (an ungrouped conv, [`takes`]) for `kernel`, pixels on the
/// lanes of the `vdpbf16ps` tiles.
pub fn pack(c: &Conv2d, kernel: PlaneKernel) -> Packed {
    pack_with(c, kernel, Lanes::Pixels)
}

/// [`pack`] for a conv whose output map is `map` at the session's declared input size: output
/// channels on the `vdpbf16ps` tiles' lanes where [`channel_lanes_pay`] says so.
pub fn pack_for_map(c: &Conv2d, kernel: PlaneKernel, map: Option<[usize; 2]>) -> Packed {
    let lanes = if map.is_some_and(|m| channel_lanes_pay(c, m)) { Lanes::Channels } else { Lanes::Pixels };
    pack_with(c, kernel, lanes)
}

/// [`pack`] with the `vdpbf16ps` tiles' lanes holding `lanes` (AMX, and convs that fold their
/// kernel columns, always take [`Lanes::Pixels`]).
pub fn pack_with(c: &Conv2d, kernel: PlaneKernel, lanes: Lanes) -> Packed {
    let s = c.weight.shape();
    let (cout, cin, kh, kw) = (s[0], s[1], s[2], s[3]);
    let fold = folds(c);
    let (taps, kstep_ch) = if fold { (kh, cin * kw) } else { (kh * kw, cin) };
    let dot = matches!(kernel, PlaneKernel::Dot(_));
    let lanes = if dot && !fold { lanes } else { Lanes::Pixels };
    let csteps = kstep_ch.div_ceil(KSTEP);
    let kpairs = cin.div_ceil(2);
    let rows = if dot { cout.next_multiple_of(bdot::MR) } else { cout.div_ceil(BLOCK) * BLOCK };
    let len = match lanes {
        Lanes::Pixels => rows * taps * csteps * KSTEP / 2,
        Lanes::Channels => cout.next_multiple_of(16) * taps * kpairs,
    };
    // On a cache line: the tiles' and `vdpbf16ps`'s 64-byte weight rows (`cpu::aligned`).
    let mut data = Aligned::<u32>::zeroed(len);
    let halves: &mut [u16] = bytemuck::cast_slice_mut(&mut data[..]);
    let w = c.weight.data();
    for co in 0..cout {
        for ci in 0..cin {
            for ky in 0..kh {
                for kx in 0..kw {
                    let (t, ch) = if fold { (ky, kx * cin + ci) } else { (ky * kw + kx, ci) };
                    let (q, pair, half) = (ch / KSTEP, (ch % KSTEP) / 2, ch % 2);
                    let i = if lanes == Lanes::Channels {
                        // [Mpad/64][taps][kpairs][64] u32, the last panel `Mpad mod 64` wide.
                        let (pn, l) = (co / bchan::LANES, co % bchan::LANES);
                        let width = (cout.next_multiple_of(16) - bchan::LANES * pn).min(bchan::LANES);
                        2 * (bchan::LANES * pn * taps * kpairs + (t * kpairs + ch / 2) * width + l) + half
                    } else if dot {
                        // [Mpad/8][taps][csteps][16 pairs][8 rows] u32.
                        2 * (((((co / bdot::MR) * taps + t) * csteps + q) * 16 + pair) * bdot::MR + co % bdot::MR) + half
                    } else {
                        ((((co / 16) * taps + t) * csteps + q) * 16 + co % 16) * KSTEP + ch % KSTEP
                    };
                    halves[i] = to_bf16(w[((co * cin + ci) * kh + ky) * kw + kx]);
                }
            }
        }
    }
    Packed { cout, cin, fold, dot, lanes, taps, csteps, taps_channels: kstep_ch, data }
}

/// The geometry of one call.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geo {
    sy: usize,
    sx: usize,
    /// Column phases: `sx`, or 1 when the kernel's columns are folded into the channels.
    pxs: usize,
    fold: bool,
    hph: usize,
    pub(super) wph: usize,
    /// u32 per plane.
    pub(super) plane: usize,
    /// Channel pairs per phase (`Cpad / 2`).
    pub(super) pairs: usize,
    /// Virtual pixels per image (`OH · wph`) and their 32-pixel blocks.
    pub(super) nvirt: usize,
    blocks: usize,
}

impl Geo {
    fn new(c: &Conv2d, p: &Packed, [_, _, h, w]: [usize; 4], [_, _, oh, ow]: [usize; 4]) -> Geo {
        let (sy, sx) = (c.stride[0].max(1), c.stride[1].max(1));
        let [kh, kw] = c.kernel();
        let (hp, wp) = (h + c.pads[0] + c.pads[2], w + c.pads[1] + c.pads[3]);
        // Folded, the kernel's columns are channels: no tap reads past its own column, so a
        // plane row holds exactly the output's columns, every virtual pixel is a real one and
        // the tiles store straight to the output (the 7×7 stride-2 stem: 112 columns, not
        // 115; 0.93–0.94 of its time on Zen 4 at 1 and 2 threads, 3 → 32 channels at 256²
        // 0.95).
        let (hph, wph) = (hp.div_ceil(sy), if p.fold { ow } else { wp.div_ceil(sx) });
        let nvirt = oh * wph;
        let blocks = nvirt.div_ceil(BLOCK);
        let max_off = ((kh - 1) * c.dilation[0] / sy) * wph + if p.fold { 0 } else { (kw - 1) * c.dilation[1] / sx };
        // Every B tile read (up to the last block's end plus the largest tap offset) stays in
        // the plane; a whole number of cache lines per plane.
        let plane = (hph * wph).max(blocks * BLOCK + max_off).next_multiple_of(16);
        let pxs = if p.fold { 1 } else { sx };
        Geo { sy, sx, pxs, fold: p.fold, hph, wph, plane, pairs: p.csteps * KSTEP / 2, nvirt, blocks }
    }
}

impl Geo {
    /// u32 (= f32 elements of scratch) of the phase planes of `n` images.
    pub(super) fn planes_len(self, n: usize) -> usize {
        n * self.sy * self.pxs * self.pairs * self.plane
    }

    /// Whether the conv reads its input as it is (1×1, stride 1, no padding: one phase, and
    /// virtual pixels are the output pixels), so that [`bdot`] can round each pixel block's
    /// channel pairs itself instead of reading planes.
    pub(super) fn pointwise(self, taps: &[(usize, usize)], [h, w]: [usize; 2]) -> bool {
        taps == [(0, 0)] && self.sy == 1 && self.sx == 1 && !self.fold && self.hph == h && self.wph == w
    }

    /// The geometry of one packed pixel block ([`bdot`]'s per-block pairs): `kpairs` planes
    /// of `width` pixels, the block's first pixel at 0.
    pub(super) fn block(self, width: usize, kpairs: usize) -> Geo {
        Geo { plane: width, pairs: kpairs.max(1), hph: 1, wph: width, nvirt: width, blocks: 1, ..self }
    }
}

/// f32 elements of scratch [`conv2d`] needs (its phase planes).
pub fn scratch_len(c: &Conv2d, p: &Packed, xs: [usize; 4], os: [usize; 4]) -> usize {
    let g = Geo::new(c, p, xs, os);
    if p.dot && p.lanes == Lanes::Pixels && g.pointwise(&tap_offsets(c, g), [xs[2], xs[3]]) {
        return 0;
    }
    g.planes_len(xs[0])
}

/// The bound the tests hold this path to, before the activation (ReLU, LeakyReLU, Clip and
/// Sigmoid change no difference into a larger one): `|amx − reference|` for one output element
/// of `k` products, where the reference sums the same bf16 products exactly (f64) and rounds
/// once, and `abs_sum` is the sum of the absolute values of every term (products, bias,
/// residual). An f32 sum of `k + 2` terms in any order lies within `(k + 2)·2⁻²⁴·abs_sum` of
/// the exact sum (to first order); the reference's three roundings and a margin for the
/// second-order terms make `k + 8`.
pub fn error_bound(k: usize, abs_sum: f64) -> f64 {
    (k as f64 + 8.0) * f64::from(f32::EPSILON) / 2.0 * abs_sum
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`
/// (`residual` of the output's shape), with `p` from [`pack`] of the same conv.
///
/// # Panics
/// When a buffer is smaller than its shape says or `p` is not this conv's.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(kernel: PlaneKernel, c: &Conv2d, p: &Packed, x: &[f32], xs: [usize; 4], residual: Option<&[f32]>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    conv2d_from(kernel, c, p, x, xs, residual.map(Some), out, os, scratch, threads);
}

/// [`conv2d`] whose residual is what `out` holds on entry (the executor's in-place residual,
/// as [`crate::cpu::sconv::conv2d_onto`]): the epilogue reads each element's residual just
/// before it stores the element, so the values are [`conv2d`]'s bit for bit.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_onto(kernel: PlaneKernel, c: &Conv2d, p: &Packed, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    conv2d_from(kernel, c, p, x, xs, Some(None), out, os, scratch, threads);
}

/// [`conv2d`] with `residual` `Some(Some(r))` from `r`, `Some(None)` from what `out` holds.
#[allow(clippy::too_many_arguments)]
fn conv2d_from(kernel: PlaneKernel, c: &Conv2d, p: &Packed, x: &[f32], xs: [usize; 4], residual: Option<Option<&[f32]>>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let npix = oh * ow;
    let [kh, kw] = c.kernel();
    assert!(cin == p.cin && cout == p.cout && p.taps == if p.fold { kh } else { kh * kw }, "bf16 implicit conv: weights packed for another conv");
    assert!(p.dot == matches!(kernel, PlaneKernel::Dot(_)), "bf16 implicit conv: weights packed for another kernel");
    assert!(x.len() >= n * cin * h * w && out.len() >= n * cout * npix && residual.flatten().is_none_or(|r| r.len() >= n * cout * npix), "bf16 implicit conv: input, output or residual too small");
    if n * npix == 0 || cout == 0 {
        return;
    }
    let g = Geo::new(c, p, xs, os);
    let tap_offsets = tap_offsets(c, g);
    let (act, post) = Epilogue::split(c.act);
    match kernel {
        // A pointwise conv on `vdpbf16ps` rounds each pixel block's pairs straight from the
        // input as it runs: no planes written to memory and read back.
        PlaneKernel::Dot(k) if p.lanes == Lanes::Pixels && g.pointwise(&tap_offsets, [h, w]) => {
            bdot::run(k, p, bdot::Source::F32 { x, cin }, g, &tap_offsets, [n, cout, oh, ow], c.bias.as_deref(), act, residual, out, threads)
        }
        _ => {
            let need = g.planes_len(n);
            if scratch.len() < need {
                scratch.resize(need, 0.0);
            }
            let planes: &mut [u32] = bytemuck::cast_slice_mut(&mut scratch[..need]);
            if g.pointwise(&tap_offsets, [h, w]) {
                // One phase whose planes are the input's channel pairs, row for row.
                pointwise_planes(kernel.bf16(), g, x, [n, cin, npix], planes, threads);
            } else {
                // Apart, the workers drop the lines of the planes they rewrite, where both
                // workers' `vdpbf16ps` tiles read every plane and the conv has more than one
                // tap: the last call left each line shared by both cores, and overwriting such
                // a line waits for the other's copy to be invalidated (`cpu::evict`). ResNet-50
                // bf16 on Zen 4 with the vCPUs on two CCDs, per loop (medians of 60 rounds of
                // 40 calls): the stem's planes 0.21 → 0.16 ms, the stride-2 3×3 convs' onto
                // 28² and 14² 0.19–0.20 → 0.14; 1×1 stride-2 convs' and those of channel lanes
                // (`bchan`: 7² maps of 64 pixels) took longer so (layer4's 0.07 → 0.15, 0.14
                // → 0.21).
                let evict = threads > 1 && tap_offsets.len() > 1 && p.lanes == Lanes::Pixels && matches!(kernel, PlaneKernel::Dot(_)) && super::placement::far(threads);
                build_planes(kernel.bf16(), c, g, &tap_offsets, x, xs, planes, threads, evict);
            }
            let planes: &[u32] = planes;
            match kernel {
                PlaneKernel::Amx(tok) => run_amx(tok, p, planes, g, &tap_offsets, [n, cout, oh, ow], c.bias.as_deref(), act, residual, out, threads),
                PlaneKernel::Dot(k) if p.lanes == Lanes::Channels => bchan::run(k, p, planes, g, &tap_offsets, [n, cout, oh, ow], c.bias.as_deref(), act, residual, out, threads),
                PlaneKernel::Dot(k) => bdot::run(k, p, bdot::Source::Planes(planes), g, &tap_offsets, [n, cout, oh, ow], c.bias.as_deref(), act, residual, out, threads),
            }
        }
    }
    if post {
        if let Some(f) = c.act {
            out[..n * cout * npix].iter_mut().for_each(|v| *v = f.apply(*v));
        }
    }
}

/// Where the epilogues read the residual: `residual`'s own buffer, or the output `dst` itself
/// (`Some(None)`: in place, each element read just before it is stored). A pointer, not a
/// slice, since in place it points into the output the parts write.
pub(super) fn residual_at(residual: Option<Option<&[f32]>>, dst: OutPtr<f32>) -> Option<OutPtr<f32>> {
    residual.map(|r| r.map_or(dst, |r| OutPtr(r.as_ptr() as *mut f32)))
}

/// The AMX kernel's parts over the planes (`_tok`: the proof the tile instructions run).
#[allow(clippy::too_many_arguments)]
fn run_amx(_tok: AmxToken, p: &Packed, planes: &[u32], g: Geo, tap_offsets: &[(usize, usize)], [n, cout, oh, ow]: [usize; 4], bias: Option<&[f32]>, act: Act, residual: Option<Option<&[f32]>>, out: &mut [f32], threads: usize) {
    let mblocks = cout.div_ceil(BLOCK);
    // Parts: ranges of (image, pixel block), each over every channel block; with too few of
    // those for the workers, channel blocks are split too.
    let units = n * g.blocks;
    let want = if threads > 1 { 4 * threads } else { 1 };
    let msplit = if units >= want { 1 } else { want.div_ceil(units).min(mblocks) };
    let uparts = units.min(want.div_ceil(msplit)).max(1);
    let dst = OutPtr(out.as_mut_ptr());
    let res = residual_at(residual, dst);
    par_for(uparts * msplit, |part| {
        let (up, mp) = (part / msplit, part % msplit);
        let (u0, u1) = (up * units / uparts, (up + 1) * units / uparts);
        let (m0, m1) = (mp * mblocks / msplit, (mp + 1) * mblocks / msplit);
        let dst = &dst;
        #[cfg(target_arch = "x86_64")]
        // SAFETY: the token proves AMX-TILE/AMX-BF16 (and the tile state granted) and
        // AVX-512F; every block of this part writes its own output elements (disjoint
        // channel and pixel ranges across parts); reads stay inside `planes` and `p` (see
        // `Geo::plane`), the output and residual inside their checked lengths.
        unsafe { run_part(p, planes, g, tap_offsets, [u0, u1], [m0, m1], [cout, oh, ow], bias, act, res.map(|r| r.0 as *const f32), dst.0) };
        #[cfg(not(target_arch = "x86_64"))]
        let _ = (dst, [u0, u1, m0, m1], act, res, tap_offsets, bias, p, planes, [oh, ow]);
    });
}

/// `(phase index, offset)` of each tap, `t = ky·kw + kx`.
fn tap_offsets(c: &Conv2d, g: Geo) -> Vec<(usize, usize)> {
    let [kh, kw] = c.kernel();
    let kw = if g.fold { 1 } else { kw };
    let mut v = Vec::with_capacity(kh * kw);
    for ky in 0..kh {
        for kx in 0..kw {
            let (yy, xx) = (ky * c.dilation[0], kx * c.dilation[1]);
            v.push(((yy % g.sy) * g.pxs + xx % g.sx, (yy / g.sy) * g.wph + xx / g.sx));
        }
    }
    v
}

/// The planes of a pointwise conv ([`Geo::pointwise`]: one phase, virtual pixels = pixels):
/// pair plane `j` of image `b` holds the pairs of input channels `2j`, `2j + 1`, zero from
/// `npix` to the plane's end; only the `cin / 2` (rounded up) planes that hold channels are
/// written, the ones [`bchan`] reads. Blocks of 16 pairs per part, rounded by
/// [`bgemm::Kernel::pack_pair_rows`] (one call per block, not one per row).
fn pointwise_planes(k: bgemm::Kernel, g: Geo, x: &[f32], [n, cin, npix]: [usize; 3], planes: &mut [u32], threads: usize) {
    const PAIRS: usize = 16;
    let kpairs = cin.div_ceil(2);
    let per_image = kpairs.div_ceil(PAIRS);
    let (img_len, len) = (g.planes_len(1), planes.len());
    let dst = OutPtr(planes.as_mut_ptr());
    let block = |i: usize| {
        let dst = &dst;
        let (b, j0) = (i / per_image, (i % per_image) * PAIRS);
        let pairs = (kpairs - j0).min(PAIRS);
        let at = b * img_len + j0 * g.plane;
        assert!(at + pairs * g.plane <= len && x.len() >= (b + 1) * cin * npix, "bf16 planes: input or planes too small");
        // SAFETY: the range at..at + pairs·plane lies in `planes` (asserted), and block i
        // alone writes it (blocks are disjoint pair ranges of disjoint images).
        let dst = unsafe { std::slice::from_raw_parts_mut(dst.0.add(at), pairs * g.plane) };
        k.pack_pair_rows(&x[(b * cin + 2 * j0) * npix..(b + 1) * cin * npix], npix, cin - 2 * j0, pairs, npix, g.plane, dst);
    };
    if threads > 1 {
        par_for(n * per_image, block);
    } else {
        (0..n * per_image).for_each(block);
    }
}

thread_local! {
    /// Two rows of f32 per thread for [`build_planes`]' gathered row pairs.
    static ROWS: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Fills the phase planes some tap reads (`taps` from [`tap_offsets`]; every element of them:
/// padding, unused pairs and the tail are zero). The planes of phases no tap reads (a 1×1
/// stride-2 conv reads one of its four) are left as they were. With `evict`, each worker first
/// drops the lines of the planes it is about to write (`conv2d_from` says where).
#[allow(clippy::too_many_arguments)]
fn build_planes(k: bgemm::Kernel, c: &Conv2d, g: Geo, taps: &[(usize, usize)], x: &[f32], [_, cin, h, w]: [usize; 4], planes: &mut [u32], threads: usize, evict: bool) {
    let (pt, pl) = (c.pads[0], c.pads[1]);
    let nph = g.sy * g.pxs;
    let kstep_ch = if g.fold { cin * c.kernel()[1] } else { cin };
    let mut read = vec![false; nph];
    taps.iter().for_each(|&(ph, _)| read[ph] = true);
    let build = |i: usize, plane: &mut [u32]| {
        let (b, ph, pair) = (i / (nph * g.pairs), (i / g.pairs) % nph, i % g.pairs);
        if !read[ph] {
            return;
        }
        let (py, px) = (ph / g.pxs, ph % g.pxs);
        // K step channel `ch` → (input channel, padded column of phase column 0).
        let member = |ch: usize| (ch < kstep_ch).then(|| if g.fold { (ch % cin, (ch / cin) * c.dilation[1]) } else { (ch, px) });
        let (lo, hi) = (member(2 * pair), member(2 * pair + 1));
        if lo.is_none() {
            plane.fill(0);
            return;
        }
        // Phase columns j_lo..j_hi read input columns j·sx + x0 − pl, inside 0..w.
        let cols = |x0: usize| {
            let j_lo = pl.saturating_sub(x0).div_ceil(g.sx).min(g.wph);
            (j_lo, (w + pl).saturating_sub(x0).div_ceil(g.sx).clamp(j_lo, g.wph))
        };
        // Stride 1 with both channels at the same columns packs straight from the input rows;
        // the other planes gather each row pair into this thread's two row buffers first (a
        // batch of small maps builds thousands of planes: no allocation per plane).
        let direct = g.sx == 1 && hi.is_none_or(|(_, x1)| Some(x1) == lo.map(|l| l.1));
        ROWS.with(|cell| {
            let mut buf = cell.borrow_mut();
            if buf.len() < 2 * g.wph {
                buf.resize(2 * g.wph, 0.0);
            }
            let (r0, r1) = buf.split_at_mut(g.wph);
            let mut rows = [r0, &mut r1[..g.wph]];
            // A missing odd channel packs as zeros.
            rows[1].fill(0.0);
            for r in 0..g.hph {
                let row = &mut plane[r * g.wph..(r + 1) * g.wph];
                let Some(iy) = (r * g.sy + py).checked_sub(pt).filter(|&iy| iy < h) else {
                    row.fill(0);
                    continue;
                };
                let src_row = |ci: usize| &x[((b * cin + ci) * h + iy) * w..][..w];
                // Stride 2 (the strided convs, the folded stem): each pair straight from the
                // two input rows' even columns.
                if let (2, Some((c0, x0))) = (g.sx, lo) {
                    k.pack_pairs_stride2((src_row(c0), x0 as isize - pl as isize), hi.map(|(c1, x1)| (src_row(c1), x1 as isize - pl as isize)), row);
                    continue;
                }
                if let (true, Some((c0, x0))) = (direct, lo) {
                    let (j_lo, j_hi) = cols(x0);
                    row[..j_lo].fill(0);
                    row[j_hi..].fill(0);
                    let (ix0, n) = (j_lo + x0 - pl, j_hi - j_lo);
                    if n > 0 {
                        let hi_src = match hi {
                            Some((c1, _)) => &src_row(c1)[ix0..ix0 + n],
                            None => &rows[1][..n],
                        };
                        k.pack_pairs(&src_row(c0)[ix0..ix0 + n], hi_src, &mut row[j_lo..j_hi]);
                    }
                    continue;
                }
                for (dst, m) in rows.iter_mut().zip([lo, hi]) {
                    dst.fill(0.0);
                    let Some((ci, x0)) = m else { continue };
                    let (j_lo, j_hi) = cols(x0);
                    if j_hi == j_lo {
                        continue;
                    }
                    let src = src_row(ci);
                    let ix0 = j_lo * g.sx + x0 - pl;
                    let d = &mut dst[j_lo..j_hi];
                    if g.sx == 1 {
                        d.copy_from_slice(&src[ix0..ix0 + d.len()]);
                    } else {
                        d.iter_mut().zip(src[ix0..].iter().step_by(g.sx)).for_each(|(d, &s)| *d = s);
                    }
                }
                k.pack_pairs(rows[0], rows[1], row);
            }
        });
        plane[g.hph * g.wph..].fill(0);
    };
    // Column stride 2, unfolded, on `vdpbf16ps`: a phase row's two column phases (planes
    // (py, 0) and (py, 1) of a pair) from one pass over its input rows, where each plane read
    // them for itself (ResNet-50's stride-2 3×3 convs).
    if g.sx == 2 && !g.fold && k.is_native() {
        // Units (image, phase row, pair): planes i0 = ((b·sy + py)·2)·pairs + pair and
        // i0 + pairs.
        let units = planes.len() / (2 * g.plane).max(1);
        // Whether some tap reads phase row py's even and its odd column phase.
        let reads = |py: usize| (read[2 * py], read[2 * py + 1]);
        let base = OutPtr(planes.as_mut_ptr());
        let unit = |u: usize| {
            let base = &base;
            let (bpy, pair) = (u / g.pairs, u % g.pairs);
            let py = bpy % g.sy;
            let i0 = 2 * bpy * g.pairs + pair;
            // SAFETY: planes i0 and i0 + pairs (g.plane u32 each, inside `planes`: i0 + pairs
            // < 2·units·… = the planes' count) belong to unit u alone, and `planes` is borrowed
            // mutably for the whole call.
            let (even, odd) = unsafe { (std::slice::from_raw_parts_mut(base.0.add(i0 * g.plane), g.plane), std::slice::from_raw_parts_mut(base.0.add((i0 + g.pairs) * g.plane), g.plane)) };
            let (read_even, read_odd) = reads(py);
            if evict && read_even {
                super::evict::evict(even);
            }
            if evict && read_odd {
                super::evict::evict(odd);
            }
            let (c0, c1) = (2 * pair, 2 * pair + 1);
            if !(read_even && read_odd) || c0 >= cin {
                build(i0, even);
                build(i0 + g.pairs, odd);
                return;
            }
            let b = bpy / g.sy;
            for r in 0..g.hph {
                let (e, o) = (&mut even[r * g.wph..(r + 1) * g.wph], &mut odd[r * g.wph..(r + 1) * g.wph]);
                let Some(iy) = (r * g.sy + py).checked_sub(pt).filter(|&iy| iy < h) else {
                    e.fill(0);
                    o.fill(0);
                    continue;
                };
                let src_row = |ci: usize| &x[((b * cin + ci) * h + iy) * w..][..w];
                k.pack_pairs_stride2_both((src_row(c0), -(pl as isize)), (c1 < cin).then(|| (src_row(c1), -(pl as isize))), e, o);
            }
            even[g.hph * g.wph..].fill(0);
            odd[g.hph * g.wph..].fill(0);
        };
        // The units some tap reads, dealt evenly: a 1×1 stride-2 conv reads one phase of four,
        // whose planes a split of all of them gave to one worker.
        let busy: Vec<usize> = (0..units).filter(|&u| reads((u / g.pairs) % g.sy) != (false, false)).collect();
        let parts = busy.len().min(PARTS_PER_WORKER * threads.max(1));
        if threads > 1 && parts > 1 {
            par_for(parts, |p| busy[p * busy.len() / parts..(p + 1) * busy.len() / parts].iter().for_each(|&u| unit(u)));
        } else {
            busy.iter().for_each(|&u| unit(u));
        }
        return;
    }
    if threads > 1 {
        par_chunks_mut(planes, g.plane, |i, p| {
            if evict && read[(i / g.pairs) % nph] {
                super::evict::evict(p);
            }
            build(i, p)
        });
    } else {
        planes.chunks_mut(g.plane).enumerate().for_each(|(i, p)| build(i, p));
    }
}

/// The tile configuration: palette 1, tiles 0–7 all 16 rows of 64 bytes.
#[repr(C, align(64))]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct TileConfig([u8; 64]);

impl TileConfig {
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn all_16x64() -> TileConfig {
        let mut b = [0u8; 64];
        b[0] = 1;
        for t in 0..8 {
            b[16 + 2 * t] = 64;
            b[48 + t] = 16;
        }
        TileConfig(b)
    }
}

/// Blocks `(image, pixel block)` in `u0..u1` × channel blocks `m0..m1`.
///
/// # Safety
/// The CPU has AMX-TILE, AMX-BF16 and AVX-512F, and this thread may use the tile state;
/// `planes` is built for `g`, `p` is the conv's; `out` (and `residual`) hold `[N][cout][oh·ow]`
/// and no other thread writes this part's elements.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn run_part(p: &Packed, planes: &[u32], g: Geo, taps: &[(usize, usize)], [u0, u1]: [usize; 2], [m0, m1]: [usize; 2], [cout, oh, ow]: [usize; 3], bias: Option<&[f32]>, act: Act, residual: Option<*const f32>, out: *mut f32) {
    let cfg = TileConfig::all_16x64();
    let mut acc = Acc([0f32; 4 * 256]);
    let nph = g.sy * g.pxs;
    let npix = oh * ow;
    let bstride = g.plane * 4;
    // SAFETY (whole body): see the function's contract; tile loads read 16 rows of 64 bytes:
    // A tiles inside `p.data` (a whole tile per (mt, t, q)), B tiles at `v0 + off + 16·h`
    // (< blocks·32 + max_off ≤ plane) of pair rows q·16..q·16 + 16 (< pairs) of one plane.
    unsafe {
        std::arch::asm!("ldtilecfg [{}]", in(reg) cfg.0.as_ptr(), options(nostack, readonly));
        for u in u0..u1 {
            let (b, blk) = (u / g.blocks, u % g.blocks);
            let v0 = blk * BLOCK;
            let img_planes = planes.as_ptr().add(b * nph * g.pairs * g.plane);
            for mb in m0..m1 {
                std::arch::asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                for (t, &(ph, off)) in taps.iter().enumerate() {
                    let bt = img_planes.add(ph * g.pairs * g.plane + v0 + off);
                    for q in 0..p.csteps {
                        let (a0, a1) = (p.tile(2 * mb, t, q), p.tile(2 * mb + 1, t, q));
                        let b0 = bt.add(q * 16 * g.plane);
                        std::arch::asm!(
                            "tileloadd tmm4, [{a0} + {sa}*1]",
                            "tileloadd tmm5, [{a1} + {sa}*1]",
                            "tileloadd tmm6, [{b0} + {sb}*1]",
                            "tileloadd tmm7, [{b1} + {sb}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            a0 = in(reg) a0, a1 = in(reg) a1, b0 = in(reg) b0, b1 = in(reg) b0.add(16),
                            sa = in(reg) 64usize, sb = in(reg) bstride,
                            options(nostack, readonly),
                        );
                    }
                }
                let ap = acc.0.as_mut_ptr();
                std::arch::asm!(
                    "tilestored [{c0} + {s}*1], tmm0",
                    "tilestored [{c1} + {s}*1], tmm1",
                    "tilestored [{c2} + {s}*1], tmm2",
                    "tilestored [{c3} + {s}*1], tmm3",
                    c0 = in(reg) ap, c1 = in(reg) ap.add(256), c2 = in(reg) ap.add(512), c3 = in(reg) ap.add(768),
                    s = in(reg) 64usize, options(nostack),
                );
                for half in 0..4 {
                    let (mh, vh) = (half / 2, half % 2);
                    let co0 = mb * BLOCK + mh * 16;
                    let rows = cout.saturating_sub(co0).min(16);
                    let vs = v0 + vh * 16;
                    if rows == 0 || vs >= g.nvirt {
                        continue;
                    }
                    epilogue(&acc.0[half * 256..(half + 1) * 256], vs, g, rows, [b * cout + co0, npix, ow], bias.map(|bs| &bs[co0..co0 + rows]), act, residual, out);
                }
            }
        }
        std::arch::asm!("tilerelease", options(nostack, nomem));
    }
}

#[repr(C, align(64))]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
struct Acc([f32; 1024]);

/// Stores one 16 × 16 accumulator tile (`[channel][virtual pixel vs..vs + 16]`): the real
/// pixels' `act(acc + residual + bias)`, as runs of consecutive output pixels.
///
/// # Safety
/// AVX-512F; rows `row0..row0 + rows` of `out` (and of `residual`) hold `npix` elements each.
#[allow(clippy::too_many_arguments)]
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn epilogue(acc: &[f32], vs: usize, g: Geo, rows: usize, [row0, npix, ow]: [usize; 3], bias: Option<&[f32]>, act: Act, residual: Option<*const f32>, out: *mut f32) {
    use std::arch::x86_64::*;
    let mut j = 0;
    while j < 16 {
        let v = vs + j;
        if v >= g.nvirt {
            break;
        }
        let (oy, ox) = (v / g.wph, v % g.wph);
        if ox >= ow {
            j += g.wph - ox;
            continue;
        }
        let run = (ow - ox).min(16 - j).min(g.nvirt - v);
        let mask: __mmask16 = ((1u32 << run) - 1) as u16;
        let o = oy * ow + ox;
        for r in 0..rows {
            // SAFETY: lanes < run read acc[r·16 + j..] (j + run ≤ 16) and the output row's
            // elements o..o + run (< npix); masked-off lanes are not touched.
            unsafe {
                let mut y = _mm512_maskz_loadu_ps(mask, acc.as_ptr().add(r * 16 + j));
                let at = (row0 + r) * npix + o;
                if let Some(res) = residual {
                    y = _mm512_add_ps(y, _mm512_maskz_loadu_ps(mask, res.add(at)));
                }
                if let Some(bs) = bias {
                    y = _mm512_add_ps(y, _mm512_set1_ps(bs[r]));
                }
                _mm512_mask_storeu_ps(out.add(at), mask, super::sgemm::act512(y, act));
            }
        }
        j += run;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tile_config_is_palette_1_all_16x64() {
        let c = TileConfig::all_16x64();
        assert_eq!(c.0[0], 1);
        assert!((0..8).all(|t| c.0[16 + 2 * t] == 64 && c.0[48 + t] == 16));
    }

    /// A conv that folds its kernel's columns into the channels has no virtual columns: plane
    /// rows as wide as the output's, so every tile stores straight to the output; an unfolded
    /// one keeps the padded phase width.
    #[test]
    fn folded_planes_are_as_wide_as_the_output() {
        // (cin, k, stride, pad, dilation, input side): the 7×7 stride-2 stem, a 3×3 stride-1
        // first conv, a dilated stride-2 one, and an unfolded 3×3 of 16 channels.
        for (cin, k, s, pad, dil, hw) in [(3, 7, 2, 3, 1, 224), (3, 3, 1, 1, 1, 33), (5, 3, 2, 2, 2, 17), (16, 3, 1, 1, 1, 20)] {
            let mut c = Conv2d::new(crate::Tensor::randn(vec![8, cin, k, k], 0.1, 5), s, pad, 1);
            c.dilation = [dil; 2];
            let p = pack(&c, PlaneKernel::Dot(bdot::DotKernel::Scalar));
            let o = (hw + 2 * pad - dil * (k - 1) - 1) / s + 1;
            let g = Geo::new(&c, &p, [1, cin, hw, hw], [1, 8, o, o]);
            let padded = (hw + 2 * pad).div_ceil(s);
            assert_eq!((p.fold, g.wph, g.nvirt), (cin < 16, if cin < 16 { o } else { padded }, o * g.wph), "cin {cin} k {k} s {s}");
        }
    }

    /// The packed bf16 weights start on a cache line in every layout (the tiles' and
    /// `vdpbf16ps`'s 64-byte rows), clones too.
    #[test]
    fn packed_weights_start_on_a_cache_line() {
        for (cout, cin, k) in [(1, 1, 1), (3, 7, 3), (64, 3, 7), (65, 33, 3)] {
            let c = Conv2d::new(crate::Tensor::randn(vec![cout, cin, k, k], 0.1, 5), 1, k / 2, 1);
            for lanes in [Lanes::Pixels, Lanes::Channels] {
                let p = pack_with(&c, PlaneKernel::Dot(bdot::DotKernel::Scalar), lanes);
                assert_eq!(p.data.as_ptr() as usize % 64, 0, "{cout}x{cin}x{k}x{k} {lanes:?}");
                assert_eq!(p.clone().data.as_ptr() as usize % 64, 0);
            }
        }
    }
}
