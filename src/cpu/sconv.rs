//! FP32 convolution on kestrel's own GEMM kernels ([`crate::cpu::sgemm`](mod@crate::cpu::sgemm)), weights packed once.
//!
//! Per image and group: `out[Cout_g, OH·OW] = W[Cout_g, Cin_g·kh·kw] × col[Cin_g·kh·kw, OH·OW]`.
//! `col` never exists: each tile reads its B panel (`kc` im2col rows of a few columns) from
//! the input in place (or, for batched small maps, from a panel gathered just before use); it
//! stays in L1 while the weight panels of an M block stream past it, and the tile's epilogue (bias, activation) runs on the
//! accumulators before the one store of the last K block. How columns map to pixels
//! ([`Cols`]):
//! - `Image` (1×1 stride-1 unpadded convs): column `j` is pixel `j` of one image, and row `k` of
//!   B is input channel `k`, read in place (no packing).
//! - `Phased` (every other conv): the input is copied once, zero-padded and split by stride
//!   into phase planes `[N·Cin][sy·sx][hph][wph]` (phase `(py, px)` holds padded pixels
//!   `(r·sy + py, j·sx + px)`, as the INT8 path's `Phases`); column `v` is the virtual pixel
//!   `(v / wph, v % wph)`, and tap `(ky, kx)` of channel `ci` reads phase
//!   `(ky·dy mod sy, kx·dx mod sx)` at `v + ⌊ky·dy/sy⌋·wph + ⌊kx·dx/sx⌋`: each im2col row is one
//!   contiguous run, which the kernel reads in place (no packing). The `wph − OW` virtual
//!   columns past each row are computed into a staging buffer and dropped when it is copied
//!   out, unless the rows are (nearly) whole vectors: then tiles are aligned to output rows
//!   and write the output directly; an output exactly one vector wide (16² maps on AVX-512)
//!   has tiles of whole rows, each vector read from its own plane row (`Tile::b_vstride`).
//! - `Batched` (small maps of a batch, [`batch_columns`]): one GEMM per group whose columns run
//!   across images, into a staging buffer `[Cout][N·OH·OW]`; B panels are gathered, or
//!   permuted from whole 2×2 and 4×4 maps on AVX-512 ([`Kernel::permute_maps`]).
//!
//! A residual starts the accumulators (copied into the staging buffer first when there is
//! one), so every output element is `act(fma(…fma(residual, w, x)…) + bias)`, k in order:
//! [`crate::cpu::reference::conv2d_fma_ref`] computes the same values. The residual may also
//! be what the output buffer holds on entry ([`conv2d_onto`], the executor's in-place
//! residual): the same values, one stream less.
//!
//! A GEMM whose last vector holds a few columns (a 7² map: 49 = 3·16 + 1; a 14² map's 4 on
//! AVX-512) runs them on the narrow kernel ([`Kernel::narrow`], vectorised along the output
//! channels, the same k-order fmas) and the rest as whole-vector tiles: ResNet-50's 7² 1×1
//! convs 1.2–1.3× faster on AVX-512 (one full 48-column tile instead of two 32-column ones),
//! 1.1–1.2× on AVX2; its 14² ones 1.02–1.15× on AVX-512.
//!
//! Work: the GEMMs, each split into column ranges (or, when it has too few columns, into
//! output-channel ranges) so that every worker gets a share (one image's GEMM on two workers:
//! eight column ranges claimed from both ends, `CLAIMED_PARTS`); layers under [`PAR_MIN_MACS`]
//! run on the calling thread, without a hand-off to the other workers. A batch of at most
//! `NARROW_COLS` output pixels in all (1×1 and 2×2 maps) runs on the narrow kernel instead
//! (`conv2d_narrow`), on the calling thread.

use super::detect::Tune;
use super::parallel::OutPtr;
use super::sgemm::{finish, Epilogue, Geometry, Init, Kernel, PackedA, Tile, NARROW_COLS};
use crate::graph::Conv2d;

/// Layers with fewer multiply-adds than this run on the calling thread: below it, handing
/// work to a second worker costs about what it saves.
pub const PAR_MIN_MACS: usize = 1 << 19;

/// Output bytes of a one-K-block 1×1 conv's part above which its tiles run weight panel by
/// weight panel (see `run_part`).
const M_OUTER_BYTES: usize = 768 * 1024;
/// Bytes of B one weight panel reads from L2 in that order.
const B_L2_BYTES: usize = 1024 * 1024;
/// K of a 1×1 stride-1 conv on AVX-512 up to which it runs in one K block, and the K block
/// above it (see `run_part`). Zen 5, 2 threads, alternating call by call: ResNet-50's 1×1
/// convs with K of 256–1 024 at 0.93–0.97 of their time with 128-row blocks, K = 2 048 at
/// 0.96 with 512-row blocks against 1.02 in one block.
const IMAGE_KC_ONE: usize = 1024;
const IMAGE_KC: usize = 512;
/// Rows of such a part from which its B blocks are packed rather than read in place.
const PACK_IMAGE_ROWS: usize = 256;
/// On AVX2, rows of any 1×1 conv's part from which its B blocks are packed (see `run_part`).
const PACK_BLOCK_ROWS: usize = 128;
/// Output pixels of a 1×1 conv's map up to which its parts of `PACK_BLOCK_ROWS` rows pack
/// their B blocks on Intel's AVX-512 as well (14²; see `run_part`).
const PACK_SMALL_MAP: usize = 196;

/// Parts of one image's GEMM split by columns between two workers, claimed from both ends
/// (`conv2d_from`; 4 per worker). Every pixel's arithmetic is the same whoever runs it, so the
/// values are unchanged. The two vCPUs of the model-207 guest ran the same FMA loop up to 1.4×
/// apart from one second to the next, and with one part each the caller waited for the
/// other's half in 13 % of its samples (`perf`, ResNet-50 f32, 2 threads). Family 6 model 207,
/// alternating call by call in one process, the same bits, against one part per worker:
/// ResNet-50 0.942–1.000 of the time (median 0.981 over seven runs), ResNet-18 0.977 and
/// 1.007, UNet 0.989; alone, the stem 0.836, 56² 1×1 convs 0.94–1.00, but 28² ones and a
/// stride-2 3×3 conv onto 28² 1.01–1.05. Parts of at least 8 tiles' width only (the stem,
/// 56² maps) took ResNet-50 to 0.981–0.999 of one part's time, and this rule to 0.989 (twice)
/// of theirs. 2 parts per worker (ResNet-50 0.998) helped less, 8 per worker (0.991, 1.010)
/// no more.
const CLAIMED_PARTS: usize = 8;

/// Input rows shorter than this are copied into stride-1 phase planes whole planes at a time
/// ([`Kernel::copy_rows`]) rather than row by row.
const SHORT_ROW: usize = 32;

/// f32 elements per cache line.
pub(crate) const LINE_F32: usize = 16;

/// Bytes of weight panels one M block holds: they stay in L2 while each B panel of the
/// column block passes through L1 once per M block.
const A_BLOCK_BYTES: usize = 256 * 1024;

/// The conv's weights packed per group for `kernel`.
pub fn pack(kernel: Kernel, c: &Conv2d) -> Vec<PackedA> {
    let s = c.weight.shape();
    let (cout, kdim) = (s[0], s[1] * s[2] * s[3]);
    let cout_g = cout / c.groups.max(1);
    let mr = kernel.panel_rows(cout_g);
    let w = c.weight.data();
    (0..c.groups).map(|g| PackedA::new(&w[g * cout_g * kdim..(g + 1) * cout_g * kdim], cout_g, kdim, mr)).collect()
}

/// Whether a batch of `npix`-pixel maps runs as one GEMM per group, columns across images:
/// when one image's columns fill less than 85 % of their vectors (7² = 49 columns use 49 of
/// 64 lanes) or fewer vectors than one full tile. Not, on AVX-512, a pointwise conv (1×1,
/// stride 1, unpadded: `pointwise`) whose image fills at least one whole tile and leaves a last
/// vector the narrow kernel takes (7²: one 48-column tile and one column): its per-image
/// GEMMs read B in place where the batched ones gather it, and ResNet-50's 7² 1×1 convs run
/// faster so (Zen 5, 2 threads, call by call in one process, the same bits: batch 8
/// 0.988–0.995 of the time, batch 4 0.983; ResNet-18, without such convs, 1.001).
pub fn batch_columns(geo: Geometry, npix: usize, pointwise: bool) -> bool {
    let vectors = npix.div_ceil(geo.lanes);
    // Columns of the last vector, as `run_part` counts them for the narrow kernel.
    let tail = npix.saturating_sub(vectors.saturating_sub(1) * geo.lanes);
    if pointwise && geo.lanes >= 16 && vectors > geo.nv && tail <= narrow_tail_max(geo) {
        return false;
    }
    vectors < geo.nv || npix * 100 < 85 * vectors * geo.lanes
}

/// How a conv's GEMM columns map to output pixels.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Cols {
    Image,
    Batched,
    Phased { sy: usize, sx: usize, hph: usize, wph: usize },
}

/// The layout of one conv call: column mapping, columns per GEMM, staging rows.
#[derive(Clone, Copy, Debug)]
struct Layout {
    cols: Cols,
    /// Columns of one GEMM.
    ncols: usize,
    /// f32 elements of the zero-padded input copy and of the staging buffer.
    padded: usize,
    staged: usize,
    /// Row stride of the staging buffer: `ncols` rounded up to whole cache lines, so that its
    /// rows start on a line (the buffer itself does, see [`LINE_F32`]) and two workers
    /// writing neighbouring vectors of a row never write the same line.
    ld: usize,
    /// `Cols::Phased` with tiles aligned to output rows: vectors per output row (the row's
    /// columns rounded up to whole vectors, the rest masked), so that every tile writes one
    /// output row directly and no virtual column is computed; 0 otherwise.
    row_vectors: usize,
    /// Row-aligned tiles of an output exactly one vector wide (16² maps on AVX-512, 8² on
    /// AVX2): each vector of a tile is a whole output row, read from its padded plane row
    /// (`Tile::b_vstride = wph`), so a tile spans `nv` rows.
    span: bool,
}

impl Layout {
    fn new(geo: Geometry, c: &Conv2d, xs: [usize; 4], os: [usize; 4]) -> Layout {
        let [n, cin, h, w] = xs;
        let [_, cout, oh, ow] = os;
        let npix = oh * ow;
        let pointwise = c.kernel() == [1, 1] && c.stride == [1, 1] && c.pads == [0; 4];
        let (hp, wp) = (h + c.pads[0] + c.pads[2], w + c.pads[1] + c.pads[3]);
        // Batched columns gather through i32 indices into the whole batch.
        if n > 1 && batch_columns(geo, npix, pointwise) && n * cin * h * w <= i32::MAX as usize {
            let ld = (n * npix).next_multiple_of(LINE_F32);
            Layout { cols: Cols::Batched, ncols: n * npix, padded: 0, staged: cout * ld, ld, row_vectors: 0, span: false }
        } else if !pointwise && npix > 0 {
            let [sy, sx] = c.stride;
            let (hph, wph) = (hp.div_ceil(sy), wp.div_ceil(sx));
            let cols = Cols::Phased { sy, sx, hph, wph };
            let padded = n * cin * sy * sx * hph * wph;
            // Wide rows whose last vector is mostly full (224², 112², 256²…) run as row-aligned
            // tiles: no virtual columns, no staging. Others compute the virtual columns and
            // drop them on the way out, unless there are none (wph = OW: a 1×1 strided conv
            // without padding), where tiles write the output directly.
            let vr = ow.div_ceil(geo.lanes);
            if (vr * geo.lanes - ow) * 8 <= ow && vr >= geo.nv {
                return Layout { cols, ncols: oh * vr * geo.lanes, padded, staged: 0, ld: 0, row_vectors: vr, span: false };
            }
            // Rows of exactly one vector: tiles of nv whole rows, no virtual columns either.
            if ow == geo.lanes {
                return Layout { cols, ncols: oh * geo.lanes, padded, staged: 0, ld: 0, row_vectors: 1, span: true };
            }
            let ncols = (oh - 1) * wph + ow;
            let ld = ncols.next_multiple_of(LINE_F32);
            let staged = if wph == ow { 0 } else { n * cout * ld };
            Layout { cols, ncols, padded, staged, ld, row_vectors: 0, span: false }
        } else {
            Layout { cols: Cols::Image, ncols: npix, padded: 0, staged: 0, ld: 0, row_vectors: 0, span: false }
        }
    }

    /// The staging (or output) row of output channel `oc` of image `b`.
    fn row(&self, b: usize, oc: usize, cout: usize) -> usize {
        match self.cols {
            Cols::Batched => oc,
            _ => b * cout + oc,
        }
    }
}

/// Scratch elements [`conv2d`] needs with `threads` workers for input `xs` and output `os`:
/// the padded input, the staging buffer, and one packed B block per worker (a narrow conv:
/// its gathered columns and accumulators).
pub fn scratch_len(kernel: Kernel, c: &Conv2d, xs: [usize; 4], os: [usize; 4], threads: usize) -> usize {
    let geo = kernel.geometry();
    if is_narrow(os) {
        return narrow_scratch(c, xs, os, kernel.panel_rows(os[1] / c.groups.max(1))).1;
    }
    let l = Layout::new(geo, c, xs, os);
    LINE_F32 + l.padded.next_multiple_of(LINE_F32) + l.staged + geo.kc * geo.nc * threads.max(1)
}


/// Whether [`conv2d`] runs on the narrow kernel a conv with output `os`: at most
/// [`NARROW_COLS`] output pixels over the whole batch.
pub fn is_narrow(os: [usize; 4]) -> bool {
    os[0] * os[2] * os[3] <= NARROW_COLS
}

/// `conv2d_narrow`'s scratch elements: `(gathered columns, columns + accumulators)`.
fn narrow_scratch(c: &Conv2d, xs: [usize; 4], os: [usize; 4], mr: usize) -> (usize, usize) {
    let g = c.groups.max(1);
    let cols = os[0] * os[2] * os[3] * c.groups * (xs[1] / g * c.kernel()[0] * c.kernel()[1]);
    (cols, cols + (os[1] / g).div_ceil(mr) * NARROW_COLS * 8)
}

/// One task: output channels (in panels) and columns (in vectors) of one GEMM (an image and
/// group, or a group of the whole batch).
#[derive(Clone, Copy, Debug)]
struct Part {
    image: usize,
    group: usize,
    panels: (usize, usize),
    vectors: (usize, usize),
    /// Whether the worker that runs this part runs the same part of the next image after it
    /// (`across`), whose first B panel its last tiles then prefetch.
    then_next_image: bool,
}

/// `y = act(conv(x) + bias + residual)` for `x: [N, Cin, H, W]` into `out: [N, Cout, OH, OW]`,
/// with `packed` from [`pack`] for the same `kernel`.
#[allow(clippy::too_many_arguments)]
pub fn conv2d(
    kernel: Kernel,
    c: &Conv2d,
    packed: &[PackedA],
    x: &[f32],
    xs: [usize; 4],
    residual: Option<&[f32]>,
    out: &mut [f32],
    os: [usize; 4],
    scratch: &mut Vec<f32>,
    threads: usize,
) {
    conv2d_from(kernel, c, packed, x, xs, residual.map(Some), out, os, scratch, threads, None);
}

/// [`conv2d`] whose residual is what `out` holds on entry (the executor's in-place residual:
/// the output takes the slot of a residual read by no later node). Each element's residual
/// is read by the tile that writes it, before it does, so the values are those of
/// [`conv2d`] with the residual in a buffer of its own, bit for bit; the output's lines are
/// read once and written back, where a separate output is fetched for ownership besides.
#[allow(clippy::too_many_arguments)]
pub fn conv2d_onto(kernel: Kernel, c: &Conv2d, packed: &[PackedA], x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    conv2d_from(kernel, c, packed, x, xs, Some(None), out, os, scratch, threads, None);
}

/// Whether [`conv2d_rounded`] takes this conv: it copies its input into phase planes (every
/// conv but a 1×1 stride-1 one, and a batch of small maps), which the rounding then rides on.
pub fn rounds_in_planes(kernel: Kernel, c: &Conv2d, xs: [usize; 4], os: [usize; 4]) -> bool {
    !is_narrow(os) && matches!(Layout::new(kernel.geometry(), c, xs, os).cols, Cols::Phased { .. })
}

/// [`conv2d`] (or, `residual = Some(None)`, [`conv2d_onto`]) of `x` rounded to bf16 by
/// `round`: the phase planes are rounded in place once copied, instead of the input before,
/// so the values are those of [`conv2d`] on the rounded input, bit for bit, without a pass
/// over it (the bf16 stem, `Step::BFma`). Only where [`rounds_in_planes`].
#[allow(clippy::too_many_arguments)]
pub fn conv2d_rounded(kernel: Kernel, round: crate::cpu::bgemm::Kernel, c: &Conv2d, packed: &[PackedA], x: &[f32], xs: [usize; 4], residual: Option<Option<&[f32]>>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>, threads: usize) {
    assert!(rounds_in_planes(kernel, c, xs, os), "sconv: a conv without phase planes to round");
    conv2d_from(kernel, c, packed, x, xs, residual, out, os, scratch, threads, Some(round));
}

/// [`conv2d`] with `residual` as in `run_part`: `Some(Some(r))` from `r`, `Some(None)` from
/// what `out` holds.
#[allow(clippy::too_many_arguments)]
fn conv2d_from(
    kernel: Kernel,
    c: &Conv2d,
    packed: &[PackedA],
    x: &[f32],
    xs: [usize; 4],
    residual: Option<Option<&[f32]>>,
    out: &mut [f32],
    os: [usize; 4],
    scratch: &mut Vec<f32>,
    threads: usize,
    round: Option<crate::cpu::bgemm::Kernel>,
) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let groups = c.groups;
    let (cout_g, kdim) = (cout / groups, cin / groups * c.kernel()[0] * c.kernel()[1]);
    let npix = oh * ow;
    let geo = kernel.geometry();
    let mr = kernel.panel_rows(cout_g);
    let panels = cout_g.div_ceil(mr);
    assert!(packed.len() == groups && packed.iter().all(|p| p.m == cout_g && p.k == kdim && p.mr == mr), "sconv: weights not packed for this conv and kernel");
    assert!(x.len() >= n * cin * h * w && out.len() >= n * cout * npix && residual.flatten().is_none_or(|r| r.len() >= n * cout * npix), "sconv: input, output or residual too small");
    if n == 0 || cout_g == 0 || npix == 0 {
        return;
    }
    if is_narrow(os) {
        conv2d_narrow(kernel, c, packed, x, xs, residual, out, os, scratch);
        return;
    }
    let macs = n * cout * npix * kdim;
    let workers = if threads <= 1 || macs < PAR_MIN_MACS { 1 } else { threads };
    let layout = Layout::new(geo, c, xs, os);
    let gemms = if layout.cols == Cols::Batched { groups } else { n * groups };
    let vectors = layout.ncols.div_ceil(geo.lanes);
    // Split each GEMM only as much as it takes to give every worker a share; but a batch of
    // maps whose GEMMs a lone image would split by output channels (14² maps, and on AVX-512
    // 7² ones of 1×1 convs; the other 7² ones run as batched columns) splits every image's
    // GEMM so, each worker taking the same channels of
    // every image in turn (no claiming): its share of the weights then stays in its cache from
    // one image to the next. ResNet-50 at batch 8 (Zen 5, 2 threads, alternating call by call,
    // 16 rounds): layer3's expanding 1×1 convs 0.92 of the time, the other layers unchanged.
    let across = n > 1 && workers > 1 && layout.cols != Cols::Batched && vectors < workers * 8 * geo.nv && panels >= 2 * workers;
    let splits = if across { workers } else { workers.div_ceil(gemms) };
    let parts: Vec<Part> = (0..gemms)
        .flat_map(|ig| {
            let (image, group) = (ig / groups, ig % groups);
            // Wide GEMMs split by columns; narrow ones (14², 7² maps) by output channels, so
            // that each worker reads only its share of the weights.
            // Batched columns are packed per part, so splitting them by output channels would
            // pack every B panel in each worker: they split by columns as soon as each worker
            // gets a full tile's width.
            let min_vectors = if layout.cols == Cols::Batched { geo.nv } else { 8 * geo.nv };
            let by_columns = vectors >= splits * min_vectors || panels < 2 * splits;
            (0..splits).filter_map(move |s| {
                let total = if by_columns { vectors } else { panels };
                let range = (s * total / splits, (s + 1) * total / splits);
                let then_next_image = across && groups == 1 && image + 1 < n;
                (range.0 < range.1).then_some(if by_columns {
                    Part { image, group, panels: (0, panels), vectors: range, then_next_image }
                } else {
                    Part { image, group, panels: range, vectors: (0, vectors), then_next_image }
                })
            })
        })
        .collect();
    let per = geo.kc * geo.nc;
    // The regions start on cache lines: the staging rows (and the B blocks) are then
    // line-aligned, whatever the allocator returned.
    let padded_len = layout.padded.next_multiple_of(LINE_F32);
    let need = LINE_F32 + padded_len + layout.staged + per * workers;
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let first = scratch.as_ptr().align_offset(LINE_F32 * 4).min(LINE_F32);
    let (padded, rest) = scratch[first..].split_at_mut(padded_len);
    let padded = &mut padded[..layout.padded];
    let (staged, blocks) = rest.split_at_mut(layout.staged);
    if let Cols::Phased { sy, sx, hph, wph } = layout.cols {
        // Both workers' tiles read every channel's planes (parts split by columns or by
        // output channels): apart, the planes' lines are dropped before they are rewritten,
        // where the conv has more than one tap (a 1×1 stride-2 conv's one plane per channel
        // built so took longer: see `phase_input`).
        let evict = workers > 1 && c.kernel() != [1, 1] && crate::cpu::placement::far(workers);
        phase_input(kernel, c, &x[..n * cin * h * w], [h, w], [sy, sx], [hph, wph], padded, workers, evict);
        if let Some(r) = round {
            // Planes a tap never reads hold whatever they held: rounded too, never read.
            r.round_in_place(padded);
        }
    }
    let src: &[f32] = if layout.padded > 0 { padded } else { x };
    // Where each B row starts: phase-plane offsets of the im2col rows (`Cols::Phased`), or,
    // for batched small maps, each tap's input pixel per output pixel (−1 in the padding).
    let [kh, kw] = c.kernel();
    let [dh, dw] = c.dilation;
    let row_offsets: Vec<usize> = match layout.cols {
        Cols::Phased { sy, sx, hph, wph } => {
            // k = (ci·kh + ky)·kw + kx, in order (no divisions: this runs on every call).
            let mut offs = Vec::with_capacity(kdim);
            for ci in 0..kdim / (kh * kw) {
                for ky in 0..kh {
                    for kx in 0..kw {
                        let phase = (ky * dh % sy) * sx + kx * dw % sx;
                        offs.push(((ci * sy * sx + phase) * hph + ky * dh / sy) * wph + kx * dw / sx);
                    }
                }
            }
            offs
        }
        _ => Vec::new(),
    };
    // Batched maps of 4 or 16 pixels that keep their size (any stride and padding that do)
    // are packed by permuting whole maps on AVX-512 (`Kernel::permute_maps`), others by gathers.
    let permuted = layout.cols == Cols::Batched && kernel.permutes_maps() && (npix == 4 || npix == 16) && [oh, ow] == [h, w];
    let perms = if permuted { perm_table(c, [h, w]) } else { Vec::new() };
    let taps: Vec<i32> = if layout.cols == Cols::Batched && !permuted { tap_table(c, [n, cin, h, w], [oh, ow]) } else { Vec::new() };
    // A residual starts the accumulators: staged convs copy it into the staging rows first.
    let staged_rows = |buf: &mut [f32], copy_in: bool, res_or_out: OutPtr<f32>| {
        let body = |(row, srow): (usize, &mut [f32])| {
            let res_or_out = res_or_out;
            let (b, oc) = if layout.cols == Cols::Batched { (0, row) } else { (row / cout, row % cout) };
            // The row's real pixels as `rows` runs of `cols`: output rows of one image
            // (`wph` apart in the staging row), or each image's map (batched columns).
            let (at, rows, cols, lds, ldd) = match layout.cols {
                Cols::Phased { wph, .. } => ((b * cout + oc) * npix, oh, ow, wph, ow),
                Cols::Batched => (oc * npix, n, npix, npix, cout * npix),
                Cols::Image => ((b * cout + oc) * npix, 1, npix, npix, npix),
            };
            // SAFETY: the runs `at + r·ldd .. + cols` (r < rows) are image r's (or b's)
            // output rows of channel oc, inside the output and the residual (same shape,
            // both checked above); the staging row holds `ncols` ≥ its last run's end;
            // rows are disjoint, so concurrent rows touch disjoint runs.
            unsafe {
                if copy_in {
                    kernel.copy_rows(res_or_out.0.add(at), ldd, srow.as_mut_ptr(), lds, rows, cols);
                } else {
                    kernel.copy_rows(srow.as_ptr(), lds, res_or_out.0.add(at), ldd, rows, cols);
                }
            }
        };
        if workers > 1 {
            // Rows in groups, a few per worker, each group one claim.
            let rows = buf.len() / layout.ld.max(1);
            let group = rows.div_ceil(8 * workers).max(1);
            crate::cpu::parallel::par_chunks_mut(buf, group * layout.ld, |g, rows| rows.chunks_mut(layout.ld).enumerate().for_each(|(j, srow)| body((g * group + j, srow))));
        } else {
            buf.chunks_mut(layout.ld).enumerate().for_each(body);
        }
    };
    if let (true, Some(r)) = (layout.staged > 0, residual) {
        // Only read through: the pointer is mutable for the copy-out direction's sake.
        staged_rows(staged, true, OutPtr(r.map_or(out.as_mut_ptr(), |r| r.as_ptr() as *mut f32)));
    }
    let (dst, ldc) = if layout.staged > 0 { (OutPtr(staged.as_mut_ptr()), layout.ld) } else { (OutPtr(out.as_mut_ptr()), npix) };
    // Unstaged convs read the residual as the tiles' start; staged ones already hold it.
    let res = if layout.staged > 0 { residual.map(|_| None) } else { residual };
    // More parts than workers (a batch of images): each worker claims the next part when
    // it is done with one, so that a worker slowed down (a shared core) takes fewer; a worker
    // never waits at the end for more than one part of the other's. Parts split `across` the
    // images stay with their worker (part i with worker i mod workers).
    let next = std::sync::atomic::AtomicUsize::new(0);
    // One image's GEMM split by columns between two workers (parts of at least one full tile
    // each): in `CLAIMED_PARTS` parts claimed from both ends (`TwoEnds`), so that a worker
    // whose vCPU is slowed down for a while hands the other its last parts.
    let two_ended = workers == 2 && gemms == 1 && parts.len() == 2 && parts.iter().all(|p| p.panels == (0, panels)) && vectors >= CLAIMED_PARTS * geo.nv;
    let parts: Vec<Part> = if two_ended {
        (0..CLAIMED_PARTS).map(|s| Part { vectors: (s * vectors / CLAIMED_PARTS, (s + 1) * vectors / CLAIMED_PARTS), ..parts[0] }).collect()
    } else {
        parts
    };
    let ends = crate::cpu::parallel::TwoEnds::new(parts.len());
    let dynamic = parts.len() > workers && !across && !two_ended;
    // Workers on cores that share no cache drop the lines of what they are about to write
    // (see `evict_part`).
    let evicting = workers > 1 && layout.staged == 0 && layout.cols != Cols::Batched && crate::cpu::placement::far(workers);
    let run = |wi: usize, block: &mut [f32]| {
        let dst = dst;
        let rows = Rows { offsets: &row_offsets, taps: &taps, perms: &perms, images: n };
        // The parts this worker runs: claimed from its end (`two_ended`: worker 0, the caller,
        // from the front, worker 1 from the back), claimed in order (`dynamic`), or dealt.
        let mut dealt = parts.iter().skip(wi).step_by(workers);
        let mut mine = || {
            if two_ended {
                ends.claim(wi == 0).and_then(|i| parts.get(i))
            } else if dynamic {
                parts.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
            } else {
                dealt.next()
            }
        };
        while let Some(part) = mine() {
            if evicting {
                evict_part(dst, &layout, [cout, cout_g, npix, mr, geo.lanes], part);
            }
            run_part(kernel, c, &packed[part.group], src, [cin, h, w], &layout, rows, res, dst, ldc, os, *part, block);
        }
    };
    if workers == 1 {
        run(0, &mut blocks[..per]);
    } else {
        crate::cpu::parallel::par_chunks_mut(&mut blocks[..per * workers], per, run);
    }
    if layout.staged > 0 {
        staged_rows(staged, false, OutPtr(out.as_mut_ptr()));
    }
}

/// Drops from the caches the output lines `part` is about to write, where they can be named
/// cheaply: whole channel planes (a part split by output channels) or, for a 1×1 conv, its
/// pixel range of each channel. Run by workers on cores that share no cache
/// ([`crate::cpu::placement::far`]): the buffer's lines were last read by both workers (an
/// earlier layer's input), and overwriting lines the other core holds costs one invalidation
/// round trip each, where lines fetched from memory stream (`cpu::evict`). Unstaged layouts
/// only: `dst` is the output, `npix` elements per channel row. `[cout, cout_g, npix, mr,
/// lanes]`: output channels, of them per group, pixels per channel, weight panel rows, lanes
/// per vector.
fn evict_part(dst: OutPtr<f32>, layout: &Layout, [cout, cout_g, npix, mr, lanes]: [usize; 5], part: &Part) {
    let first = part.group * cout_g + part.panels.0 * mr;
    let end = part.group * cout_g + (part.panels.1 * mr).min(cout_g);
    let (c0, c1) = (part.vectors.0 * lanes, (part.vectors.1 * lanes).min(npix));
    if first >= end || c0 >= c1 {
        return;
    }
    let row0 = layout.row(part.image, first, cout);
    if (c0, c1) == (0, npix) {
        // SAFETY: rows `row0 .. row0 + (end − first)` of `npix` elements are the planes of
        // output channels `first..end` of this image, inside the output (checked by the
        // caller); evicting reads no element and changes no memory.
        let planes = unsafe { std::slice::from_raw_parts(dst.0.add(row0 * npix) as *const f32, (end - first) * npix) };
        crate::cpu::evict::evict(planes);
    } else if layout.cols == Cols::Image {
        // SAFETY: pixels `c0..c1` of each of those planes, as above.
        unsafe { crate::cpu::evict::evict_rows(dst.0.add(row0 * npix + c0) as *const f32, end - first, npix, c1 - c0) };
    }
}

/// [`conv2d`] when the whole batch has at most [`NARROW_COLS`] output pixels (ResNet's last
/// stages on 32² and 64² inputs: 1×1 and 2×2 maps), on the calling thread: the im2col
/// columns are gathered (`[groups][columns][K]`, 0 in the padding), and the narrow kernel
/// runs them against every weight panel, vectorised along the output channels. The tiles
/// would spread 1–4 columns over 48 lanes (a 3×3 conv from 2² to 1² took 12.6 µs that way).
/// Same operations as the tiles: residual (or 0), the products in k order, bias, activation.
#[allow(clippy::too_many_arguments)]
fn conv2d_narrow(kernel: Kernel, c: &Conv2d, packed: &[PackedA], x: &[f32], xs: [usize; 4], residual: Option<Option<&[f32]>>, out: &mut [f32], os: [usize; 4], scratch: &mut Vec<f32>) {
    let [n, cin, h, w] = xs;
    let [_, cout, oh, ow] = os;
    let (groups, npix, cols) = (c.groups, oh * ow, n * oh * ow);
    let (cin_g, cout_g) = (cin / groups, cout / groups);
    let [kh, kw] = c.kernel();
    let ([sy, sx], [dy, dx], [pt, pl]) = (c.stride, c.dilation, [c.pads[0], c.pads[1]]);
    let kdim = cin_g * kh * kw;
    let mr = kernel.panel_rows(cout_g);
    let panels = cout_g.div_ceil(mr);
    let (col_len, need) = narrow_scratch(c, xs, os, mr);
    if scratch.len() < need {
        scratch.resize(need, 0.0);
    }
    let (col, acc) = scratch[..need].split_at_mut(col_len);
    // Each column `[Cin_g][kh][kw]`: its live taps (inside the input), found once per column,
    // each copied for every input channel (a stride of `kh·kw` here, of a plane there); the
    // padding's taps 0. On 2×2 maps most taps are padding: one branch per element spent
    // as much time as the kernel (shapes-resnet18's 2² convs at batch 1, `perf`).
    let (khw, plane) = (kh * kw, h * w);
    let mut live: Vec<(usize, usize)> = Vec::with_capacity(khw);
    for (gj, dst) in col.chunks_exact_mut(kdim.max(1)).enumerate() {
        let (g, j) = (gj / cols, gj % cols);
        let (b, oy, ox) = (j / npix, j % npix / ow, j % ow);
        live.clear();
        for ky in 0..kh {
            let Some(iy) = Some((oy * sy + ky * dy).wrapping_sub(pt)).filter(|&iy| iy < h) else { continue };
            for kx in 0..kw {
                if let Some(ix) = Some((ox * sx + kx * dx).wrapping_sub(pl)).filter(|&ix| ix < w) {
                    live.push((ky * kw + kx, iy * w + ix));
                }
            }
        }
        if live.len() < khw {
            dst.fill(0.0);
        }
        let planes = &x[(b * cin + g * cin_g) * plane..][..cin_g * plane];
        for (taps, src) in dst.chunks_exact_mut(khw.max(1)).zip(planes.chunks_exact(plane.max(1))) {
            for &(t, at) in &live {
                taps[t] = src[at];
            }
        }
    }
    let (act, post) = Epilogue::split(c.act);
    // Output element of row `oc` (of the whole conv) and column j: `base[j] + oc·npix`.
    let base: [usize; NARROW_COLS] = std::array::from_fn(|j| j / npix * cout * npix + j % npix);
    let at = |oc: usize, j: usize| base[j] + oc * npix;
    for (g, a) in packed.iter().enumerate() {
        let b: [&[f32]; NARROW_COLS] = std::array::from_fn(|j| &col[(g * cols + j.min(cols - 1)) * kdim..][..kdim]);
        let b = &b[..cols];
        for p in 0..panels {
            for j in 0..cols {
                for r in 0..mr.min(cout_g - p * mr) {
                    let at = at(g * cout_g + p * mr + r, j);
                    acc[(p * NARROW_COLS + j) * 8 + r] = residual.map_or(0.0, |res| res.map_or(out[at], |res| res[at]));
                }
            }
        }
        kernel.narrow(a, 0..panels, b, acc);
        for p in 0..panels {
            for j in 0..cols {
                for r in 0..mr.min(cout_g - p * mr) {
                    let oc = g * cout_g + p * mr + r;
                    let y = finish(acc[(p * NARROW_COLS + j) * 8 + r], c.bias.as_ref().map(|bias| bias[oc]), act);
                    out[at(oc, j)] = match (post, c.act) {
                        (true, Some(f)) => f.apply(y),
                        _ => y,
                    };
                }
            }
        }
    }
}

/// One part's tiles, the BLIS way: for each block of at most `NC` columns and each K block,
/// every B panel of the block is packed once (the block stays in L2); then, per M block of
/// weight panels (in L2), each B panel (in L1) runs against every weight panel of the block.
/// `residual` is `Some(Some(r))` when tiles start from `r` (laid out like `dst`), `Some(None)`
/// when they start from what `dst` already holds.
#[allow(clippy::too_many_arguments)]
fn run_part(
    kernel: Kernel,
    c: &Conv2d,
    a: &PackedA,
    x: &[f32],
    [cin, h, w]: [usize; 3],
    layout: &Layout,
    rows_of: Rows,
    residual: Option<Option<&[f32]>>,
    dst: OutPtr<f32>,
    ldc: usize,
    os: [usize; 4],
    part: Part,
    block: &mut [f32],
) {
    let [_, cout, oh, ow] = os;
    let geo = kernel.geometry();
    // Whether Intel's measured rules apply (asked only where they decide; a bad KESTREL_TUNE
    // failed the session's build).
    let intel = || super::detect::tune().is_ok_and(|t| t == Tune::Intel);
    let npix = oh * ow;
    let (cin_g, cout_g) = (cin / c.groups, cout / c.groups);
    let (act, post) = Epilogue::split(c.act);
    let bias = c.bias.as_ref().map(|b| &b[part.group * cout_g..(part.group + 1) * cout_g]);
    let kdim = a.k;
    // A last vector of a few columns (a 7² map's 49th pixel: 49 = 3·16 + 1; a 14² map's 4)
    // runs on the narrow kernel (`narrow_tail`), the rest as whole-vector tiles: 3 vectors in
    // one full tile instead of 4 spread over two half-empty ones.
    let total_vectors = layout.ncols.div_ceil(geo.lanes);
    let tail = layout.ncols.saturating_sub(total_vectors.saturating_sub(1) * geo.lanes);
    let narrow = layout.cols != Cols::Batched && layout.row_vectors == 0 && part.vectors.1 == total_vectors && part.vectors.1 - part.vectors.0 >= 2 && tail <= narrow_tail_max(geo);
    // The narrow columns run after the tiles: each of their passes over the part's weight
    // panels then finds them in cache, where before the tiles it fetched them from memory a
    // dozen panel streams at a time, with nothing to hide the misses (Zen 5, 2 threads,
    // alternating: ResNet-50 0.97 of the time, ResNet-18 1.00).
    let whole = part;
    let part = if narrow { Part { vectors: (part.vectors.0, part.vectors.1 - 1), ..part } } else { part };
    // Convs with taps read overlapping B rows (the taps of one channel share plane rows, per
    // phase under a stride), so a longer K block still fits L1 and halves the passes over
    // their output: strided ones too (the stem's K = 147 in one block, ResNet's 3×3 stride-2
    // convs: 1.01–1.15× at 1 and 2 threads, measured alternating in one process).
    // A 1×1 stride-1 conv on AVX-512 reads B in place (`Cols::Image`, unpacked: `m_outer`
    // parts pack only K ≤ `kc`) and runs K in one block up to `IMAGE_KC_ONE`, else in blocks
    // of `IMAGE_KC`: each further K block reads and writes the whole output once more, while
    // a longer B panel (up to 1 024 rows × 48 columns, 192 KiB) streams from L2 fast enough
    // for its tiles.
    // On Intel (`Tune::Intel`), though, a 1×1 stride-1 conv on a map of at most
    // `PACK_SMALL_MAP` pixels whose part has at least `PACK_BLOCK_ROWS` rows packs its B
    // blocks of `kc` rows, as on AVX2 (below): read in place, each 16-float run of a 14² or 7²
    // row straddles two lines. Family 6 model 207, alternating call by call, per layer:
    // ResNet-50's 14² and 7² 1×1 convs 0.88–0.96 of their time at 2 threads (the whole model
    // 0.980), 0.85–0.96 at 1 (0.967); 512 → 128 at 28² lost 5–8 % this way, and blocks of
    // 256 rows gained no more than 128.
    // On Intel's AVX-512 the strided convs with taps and more than one K block take blocks of
    // `kc`, not `kc_taps`: a stride-2 3×3 conv's B panel of 256 rows reads about 18 lines per
    // input channel (four phases, each tap's run shifted), 33 KiB per panel, which with the
    // weight panel streaming past it overflows the 48 KiB L1. Family 6 model 207, 2 threads,
    // one conv alternating call by call in one process, the same bits: ResNet-50's 128- and
    // 256-channel ones 0.946–0.952 of their time, ResNet-18's 0.954–0.968, UNet-style
    // 64- and 128-channel ones 0.949–0.955 (blocks of 96: 0.933–0.968, of 64: 0.956–1.020,
    // of 192: 0.960–1.002); at 1 thread 0.966–0.993. Stride-1 convs lost 0.4–2.8 % so
    // (their taps share more lines), and those of one block (the stem, K = 147) keep it.
    let mr = a.mr;
    let part_rows = (part.panels.1 - part.panels.0) * mr;
    let pack_small = geo.lanes >= 16 && layout.cols == Cols::Image && npix <= PACK_SMALL_MAP && part_rows >= PACK_BLOCK_ROWS && intel();
    let kc_max = match layout.cols {
        _ if pack_small => geo.kc,
        Cols::Phased { .. } if c.kernel() != [1, 1] && c.stride != [1, 1] && kdim > geo.kc_taps && geo.lanes >= 16 && intel() => geo.kc,
        Cols::Phased { .. } if c.kernel() != [1, 1] => geo.kc_taps,
        Cols::Image if geo.lanes >= 16 && kdim <= IMAGE_KC_ONE => kdim,
        Cols::Image if geo.lanes >= 16 => IMAGE_KC,
        // Batched columns pack their B blocks into the worker's `kc · nc` buffer: K blocks as
        // long as the part's columns leave room for, up to `IMAGE_KC` (ResNet-50's layer4
        // 1×1 convs at batch 8, 392 columns in two parts, when they ran batched: 512 rows
        // instead of 128, 0.92–0.96 of their time; they now run per image, `batch_columns`).
        Cols::Batched if geo.lanes >= 16 => {
            let cols = (part.vectors.1 - part.vectors.0).min(geo.nc / geo.lanes) * geo.lanes;
            (geo.kc * geo.nc / cols.max(1)).clamp(geo.kc, IMAGE_KC)
        }
        _ => geo.kc,
    };
    // K blocks as even as they go under `kc_max`: a K of 147 under 128 ran as 74 + 73, not
    // 128 + 19, whose short second block reloads and stores the whole output for 19 products
    // per element (the stem 63 → 66–68 GMAC/s at one thread, 110 → 117–124 at two,
    // `sgemm_peak`, before it took `kc_taps` and one block).
    let kc_even = kdim.div_ceil(kdim.div_ceil(kc_max).max(1)).max(1);
    // The input planes of this part's group in image b (all phases of one channel for `Cols::Phased`).
    let plane = plane_of(layout, [h, w]);
    let xg = |b: usize| &x[(b * cin + part.group * cin_g) * plane..][..cin_g * plane];
    // A 1×1 conv with one K block whose output (and residual) is too big for L2 (ResNet's
    // expanding convs and downsample at 56², 28²: 256–512 rows of 784–3136 pixels) runs each
    // weight panel across all of its columns: the tiles then read and write the output 8 rows
    // at a time, front to back, streams the prefetchers follow, instead of touching every
    // output row for each 48-pixel B panel (each row's next lines a miss: 1.7–1.9 ms against
    // 0.9–1.0 ms for ResNet-50's layer1 conv3 at one thread). B, read in place, then comes
    // from L2 once per weight panel, so the column block is bounded by `B_L2_BYTES`. Convs
    // with several K blocks lost 10 % this way (each K block rewrites the output) and keep
    // the B-panel order. So do convs over phase planes with one K block whose tiles are
    // aligned to output rows and whose output is as big (ResNet's 7×7/2 stem, 3.2 MB at
    // 112², and UNet's first 3×3 conv at 256²): each weight panel then sweeps the column
    // block (its B from the planes in L2) writing 8 output rows front to back, where the
    // B-panel order wrote a few lines of every output channel per panel. Zen 5, 2 threads,
    // per layer: the stem 0.85–0.94 → 0.74–0.90 ms, UNet's first conv 0.90 → 0.56 ms, the
    // layers after them unchanged; whole models alternating call by call, ResNet-50
    // 0.992–0.995, UNet 256² 0.982–0.994 of the time.
    // Rows per weight panel (`mr`, above): the geometry's, or fewer for a conv with few output
    // channels (`Kernel::panel_rows`).
    let part_cols = (part.vectors.1 - part.vectors.0) * geo.lanes;
    let big_out = part_rows * part_cols * 4 > M_OUTER_BYTES;
    let rows_aligned = layout.row_vectors > 0 && !layout.span;
    let m_outer = big_out && ((layout.cols == Cols::Image && kdim <= geo.kc) || (rows_aligned && kdim <= kc_max));
    // Batched columns are packed, and so are the B blocks of `m_outer` parts with many weight
    // panels (ResNet-50's expanding convs and downsamples at 56² and 28², 256–512 rows): their
    // tiles otherwise read B in place, one stream per input channel, 64–128 streams beside the
    // output's and the residual's, which the prefetchers do not follow; packed, each block is
    // read front to back by every weight panel (same values; at one thread 1.1–1.2× on
    // AVX-512 and AVX2, at two 0.96–1.03× and 0.88–0.94× in two runs, in the host's noise;
    // with 32–152 rows the copy cost about what it saved). On AVX2 every 1×1 conv's part
    // with at least `PACK_BLOCK_ROWS` rows packs its B blocks, in either order (ResNet-50's
    // convs with several K blocks, all of its 14² and 7² ones, and 256 → 128 at 56²): read
    // in place, a panel's rows are `npix` floats apart, and at 14² and 7² each 16-float run
    // straddles two lines, so a K block of B spans twice L1; packed, it is 16 KiB that stays
    // there (Zen 3, new / old alternating at two threads: 14² 0.85–0.89 of the time, 7²
    // 0.73–0.79, 28² with two K blocks 0.80–0.94, 256 → 128 at 56² 0.85–0.86, the rest
    // 0.97–1.03; measured on AVX2 only, so AVX-512 keeps its rule). On Intel's AVX-512
    // (`Tune::Intel`) the `m_outer` parts read B in place instead (family 6 model 207,
    // alternating call by call, ResNet-50's 56² expanding convs and downsample: 0.91–0.98 of
    // their time at 2 threads, 0.93–0.95 at 1) and only `pack_small` parts pack. Otherwise `Image`
    // (1×1 stride-1 convs) reads the input in place at stride npix, `Phased` its phase planes
    // at the row offsets.
    let pack_image = match geo.lanes {
        8 => layout.cols == Cols::Image && part_rows >= PACK_BLOCK_ROWS,
        _ => pack_small || (layout.cols == Cols::Image && m_outer && part_rows >= PACK_IMAGE_ROWS && !intel()),
    };
    // A strided 1×1 conv without padding reads its one phase plane, which holds exactly its
    // output's pixels (`wph = OW`: no virtual columns), so on AVX2 its parts of at least
    // `PACK_BLOCK_ROWS` rows pack their B blocks from that plane as the `Image` ones do from
    // the input, and for the same reason: in place, the 14² and 7² plane rows straddle lines
    // and a K block of B spans more than L1. Zen 4 with the AVX2 kernel forced, alternating
    // call by call in one process, the same bits: ResNet-50's three downsamples 0.80, 0.83,
    // 0.89 of their time at one thread and 0.80–0.97 at two (the model 0.978–0.986 at one
    // thread, 0.977–0.984 at two, 0.990–0.995 at batch 8), ResNet-18's 0.88–1.00; on
    // AVX-512 they measured 0.97–1.02 and read in place as before. The 3×3 stride-2 convs
    // packed the same way gained at one thread (0.92–0.99) but not at two where their maps are
    // 14² or 7² (0.99–1.02): left in place.
    let pack_phased = geo.lanes == 8 && c.kernel() == [1, 1] && matches!(layout.cols, Cols::Phased { wph, .. } if wph == ow) && layout.row_vectors == 0 && part_rows >= PACK_BLOCK_ROWS;
    let packed = layout.cols == Cols::Batched || pack_image || pack_phased;
    // A packed block fits the worker's `block` buffer (kc · nc floats).
    let block_vectors = match (m_outer, pack_image) {
        (true, true) => (geo.kc * geo.nc / (kdim * geo.lanes)).min(B_L2_BYTES / (kdim * 4 * geo.lanes)).max(geo.nv),
        (true, false) => (B_L2_BYTES / (kdim * 4 * geo.lanes)).max(geo.nv),
        _ => geo.nc / geo.lanes,
    };
    // Tiles in the B-panel order step down 8 output rows at a time: 8 streams the hardware
    // prefetchers do not follow, so each tile prefetches the next one's output rows
    // (`Tile::c_next`) over outputs read in place or packed: ResNet-50's 1×1 convs at 14² and
    // the batched 7² ones at batch 8, 0.87–0.96 of their time (a 1 MB in-place residual per
    // image comes from L3), at batch 1 0.93–0.96. Convs over phase planes lost up to 11 %
    // (UNet's 64² 3×3 convs) and `m_outer` parts, whose tiles step along the rows, 7–9 %.
    let prefetch_next = !m_outer && matches!(layout.cols, Cols::Image | Cols::Batched);
    let mut vb = part.vectors.0;
    while vb < part.vectors.1 {
        let ve = (vb + block_vectors).min(part.vectors.1);
        // The block's panels: (first vector, vectors, real columns). The fewest panels that
        // cover the block, with their widths as even as they go (a 4-vector block runs as two
        // 2-vector tiles, not a full one and a 1-vector one that is mostly loads).
        // Row-aligned tiles split the block at output rows first.
        let mut panels: Vec<(usize, usize, usize)> = Vec::new();
        let mut s0 = vb;
        while s0 < ve {
            let s1 = if layout.row_vectors > 0 && !layout.span { ((s0 / layout.row_vectors + 1) * layout.row_vectors).min(ve) } else { ve };
            let count = (s1 - s0).div_ceil(geo.nv);
            panels.extend((0..count).map(|i| {
                let (v0, v1) = (s0 + i * (s1 - s0) / count, s0 + (i + 1) * (s1 - s0) / count);
                let cols = match layout.row_vectors {
                    _ if layout.span => (v1 - v0) * geo.lanes,
                    0 => ((v1 - v0) * geo.lanes).min(layout.ncols - v0 * geo.lanes),
                    vr => ((v1 - v0) * geo.lanes).min(ow - (v0 % vr) * geo.lanes),
                };
                (v0, v1 - v0, cols)
            }));
            s0 = s1;
        }
        // Where panel column v0 starts in B (from the group's input base) and in its output row.
        let at = |v0: usize| match (layout.cols, layout.row_vectors) {
            (Cols::Phased { wph, .. }, vr) if vr > 0 => {
                let (oy, ox) = (v0 / vr, (v0 % vr) * geo.lanes);
                (oy * wph + ox, oy * ow + ox)
            }
            _ => (v0 * geo.lanes, v0 * geo.lanes),
        };
        let mut k0 = 0;
        while k0 < kdim {
            let kc = kc_even.min(kdim - k0);
            let last = k0 + kc == kdim;
            // Where each packed B panel of this K block starts in `block`.
            let panel_at: Vec<usize> = if packed {
                panels
                    .iter()
                    .scan(0, |off, &(_, nv, _)| {
                        let at = *off;
                        *off += geo.panel_len(kc, nv);
                        Some(at)
                    })
                    .collect()
            } else {
                Vec::new()
            };
            if packed {
                for (&(v0, nv, cols), &off) in panels.iter().zip(&panel_at) {
                    let width = nv * geo.lanes;
                    let panel = &mut block[off..off + geo.panel_len(kc, nv)];
                    if pack_image || pack_phased {
                        // B row k starts at k·npix of the input, or at its phase plane's
                        // offset, where column v0·LANES is the plane's pixel v0·LANES (no
                        // virtual columns).
                        let xi = xg(part.image);
                        let row_at = |k: usize| if pack_phased { rows_of.offsets[k] } else { k * npix };
                        for (kk, row) in panel.chunks_exact_mut(width).take(kc).enumerate() {
                            row[..cols].copy_from_slice(&xi[row_at(k0 + kk) + v0 * geo.lanes..][..cols]);
                        }
                    } else {
                        pack_batched(kernel, c, x, [cin, h, w], rows_of, part.group, k0, kc, v0 * geo.lanes, cols, width, panel);
                    }
                    for row in panel.chunks_exact_mut(width) {
                        row[cols..].fill(0.0);
                    }
                }
            }
            // Each B panel (kc · NR floats) stays in L1 while the weight panels of an M block
            // (at most A_BLOCK_BYTES, in L2) stream past it.
            let mc = (A_BLOCK_BYTES / (kc * mr * 4)).max(1);
            let mut m0 = part.panels.0;
            while m0 < part.panels.1 {
                let m1 = (m0 + mc).min(part.panels.1);
                // (B panel, weight panel) pairs: each B panel against every weight panel of
                // the M block, or, `m_outer`, each weight panel against every B panel.
                let pairs: Box<dyn Iterator<Item = (usize, usize)>> = if m_outer {
                    Box::new((m0..m1).flat_map(|p| (0..panels.len()).map(move |i| (i, p))))
                } else {
                    Box::new((0..panels.len()).flat_map(|i| (m0..m1).map(move |p| (i, p))))
                };
                for (i, p) in pairs {
                    let (v0, nv, cols) = panels[i];
                    let width = nv * geo.lanes;
                    let (bp, ldb, b_rows) = match layout.cols {
                        Cols::Image if !packed => (xg(part.image)[k0 * npix + v0 * geo.lanes..].as_ptr(), npix, std::ptr::null()),
                        Cols::Phased { .. } if !packed => (xg(part.image)[at(v0).0..].as_ptr(), 0, rows_of.offsets[k0..k0 + kc].as_ptr()),
                        // Batched columns, and blocks packed from the input or a phase plane.
                        _ => (block[panel_at[i]..].as_ptr(), width, std::ptr::null()),
                    };
                    let rows = mr.min(cout_g - p * mr);
                    let ap = a.panel_from(p, k0).as_ptr();
                    // Prefetch the next weight panel while this tile runs (`m_outer`: the
                    // next tile reads this one again, from L1).
                    let a_next = if p + 1 < m1 && !m_outer { kdim * mr } else { 0 };
                    let o_of = |i: usize, p: usize| layout.row(part.image, part.group * cout_g + p * mr, cout) * ldc + at(panels[i].0).1;
                    let o = o_of(i, p);
                    // The next tile in the B-panel order (the next weight panel, else the
                    // next B panel's first), whose output rows are prefetched while this one
                    // runs (`prefetch_next`).
                    let next = if !prefetch_next {
                        None
                    } else if p + 1 < m1 {
                        Some((i, p + 1))
                    } else if i + 1 < panels.len() {
                        Some((i + 1, m0))
                    } else {
                        None
                    };
                    let c_next = next.map_or(0, |(i, p)| o_of(i, p) as isize - o as isize);
                    let init = match (k0, residual) {
                        (0, Some(Some(r))) => Init::Residual(r[o..].as_ptr()),
                        (0, None) => Init::Zero,
                        _ => Init::Output,
                    };
                    let epi = Epilogue { bias: bias.map(|b| &b[p * mr..p * mr + rows]), act };
                    // The first tile on each B panel (of this M block) prefetches the next
                    // panel's rows into L2: B read in place comes one row per plane, too many
                    // streams for the hardware prefetchers to follow.
                    let b_next = match layout.cols {
                        _ if packed => 0,
                        Cols::Image | Cols::Phased { .. } if p == m0 && i + 1 < panels.len() && !layout.span => at(panels[i + 1].0).0 - at(v0).0,
                        // The last B panel's first tile prefetches the B panel read next: the
                        // first of the next K block, else of the next column block, else, in
                        // the `across` split, of the next image, which at batch 8 comes from L3
                        // (ResNet-50's 1×1 convs on 14² and 7² maps; Zen 4, 2 threads,
                        // alternating call by call: batch 8 0.987–0.991 of the time with the
                        // vCPUs sharing an L3, 0.994–1.005 without; batch 1 and ResNet-18's
                        // batch 8 1.000–1.002).
                        Cols::Image if p == m0 => {
                            let here = k0 * npix + v0 * geo.lanes;
                            let next = if k0 + kc < kdim {
                                Some((k0 + kc) * npix + panels[0].0 * geo.lanes)
                            } else if ve < part.vectors.1 {
                                Some(ve * geo.lanes)
                            } else if part.then_next_image {
                                Some(cin * npix + part.vectors.0 * geo.lanes)
                            } else {
                                None
                            };
                            next.and_then(|n| n.checked_sub(here)).unwrap_or(0)
                        }
                        _ => 0,
                    };
                    let b_vstride = match layout.cols {
                        Cols::Phased { wph, .. } if layout.span => wph,
                        _ => 0,
                    };
                    let t = Tile { kc, rows, cols, nv, ldb, b_rows, ldc, a_next, b_next, b_vstride, c_next };
                    // SAFETY: the packed weight panel holds K · mr floats from k0 on (kc of
                    // them read); B (the panel at `panel_at[i]`, kc · nv · LANES floats, or the
                    // input in place: rows k0..k0 + kc of `cols` floats at stride npix, or
                    // runs of `cols` floats at the padded plane's row offsets, which end
                    // inside the group's planes: the largest virtual column plus the
                    // largest tap offset is the plane's last pixel; with `b_vstride`, one
                    // 16-float run per output row of the tile, the same bound) is in bounds; rows < `rows` and columns < `cols` of the tile lie inside
                    // this GEMM's rows of `dst` (the output, or the staging buffer of
                    // `layout.staged` floats, both sized by `conv2d`) and of a residual of
                    // the same layout; no other part writes them (parts are disjoint in
                    // GEMM, channel panels or columns) and nothing else borrows them
                    // meanwhile; the bias slice holds `rows` values.
                    unsafe { kernel.tile_rows(mr, ap, bp, dst.0.add(o), t, init, last.then_some(&epi)) };
                    if last && post {
                        if let Some(f) = c.act {
                            for r in 0..rows {
                                // SAFETY: as above, row r of the tile this part just wrote.
                                let row = unsafe { std::slice::from_raw_parts_mut(dst.0.add(o + r * ldc), cols) };
                                row.iter_mut().for_each(|v| *v = f.apply(*v));
                            }
                        }
                    }
                }
                m0 = m1;
            }
            k0 += kc;
        }
        vb = ve;
    }
    if narrow {
        narrow_tail(kernel, c, a, x, plane_of(layout, [h, w]), layout, rows_of, residual, dst, ldc, cout, whole, (total_vectors - 1) * geo.lanes, tail);
    }
}

/// Columns of a GEMM's last vector at most which run on the narrow kernel ([`narrow_tail`]):
/// four of AVX-512's 16 lanes (14² maps: 196 = 12·16 + 4, their 1×1 convs 1.02–1.15× faster
/// at 2 threads), one of AVX2's 8 (four measured within ±8 %, this host's noise).
pub(crate) fn narrow_tail_max(geo: Geometry) -> usize {
    if geo.lanes >= 16 {
        4
    } else {
        1
    }
}

/// The input planes' size per channel: all phases of one channel for `Cols::Phased`.
fn plane_of(layout: &Layout, [h, w]: [usize; 2]) -> usize {
    match layout.cols {
        Cols::Phased { sy, sx, hph, wph } => sy * sx * hph * wph,
        _ => h * w,
    }
}

/// Columns `col0..col0 + count` of one part (an image and group, its weight panels
/// `part.panels`) on the narrow kernel: each column's K values gathered (B row `k` of an
/// `Image` or `Phased` layout, as the tiles read it), then, per row, the tiles' operations:
/// the residual (or what `dst` holds, or 0), the products in k order over the whole K, bias
/// and activation, written to `dst` (row stride `ldc`).
#[allow(clippy::too_many_arguments)]
fn narrow_tail(kernel: Kernel, c: &Conv2d, a: &PackedA, x: &[f32], plane: usize, layout: &Layout, rows_of: Rows, residual: Option<Option<&[f32]>>, dst: OutPtr<f32>, ldc: usize, cout: usize, part: Part, col0: usize, count: usize) {
    let (kdim, mr) = (a.k, a.mr);
    let cin = kdim / (c.kernel()[0] * c.kernel()[1]);
    let cout_g = a.m;
    let xg = &x[(part.image * c.groups * cin + part.group * cin) * plane..][..cin * plane];
    let cols: Vec<Vec<f32>> = (0..count)
        .map(|j| {
            (0..kdim)
                .map(|k| match layout.cols {
                    Cols::Phased { .. } => xg[rows_of.offsets[k] + col0 + j],
                    _ => xg[k * plane + col0 + j],
                })
                .collect()
        })
        .collect();
    let b: Vec<&[f32]> = cols.iter().map(Vec::as_slice).collect();
    let (p0, p1) = part.panels;
    let mut acc = vec![0f32; (p1 - p0) * NARROW_COLS * 8];
    // Output element of group row `row` and tail column j.
    let at = |row: usize, j: usize| layout.row(part.image, part.group * cout_g + row, cout) * ldc + col0 + j;
    for p in p0..p1 {
        for j in 0..count {
            for r in 0..mr.min(cout_g - p * mr) {
                let o = at(p * mr + r, j);
                acc[((p - p0) * NARROW_COLS + j) * 8 + r] = match residual {
                    Some(Some(res)) => res[o],
                    // SAFETY: element o of this part's rows and columns in `dst` (see the
                    // tiles' contract in `run_part`), written by no one else.
                    Some(None) => unsafe { *dst.0.add(o) },
                    None => 0.0,
                };
            }
        }
    }
    kernel.narrow(a, p0..p1, &b, &mut acc);
    let (act, post) = Epilogue::split(c.act);
    for p in p0..p1 {
        for j in 0..count {
            for r in 0..mr.min(cout_g - p * mr) {
                let row = p * mr + r;
                let y = finish(acc[((p - p0) * NARROW_COLS + j) * 8 + r], c.bias.as_ref().map(|bias| bias[part.group * cout_g + row]), act);
                let y = match (post, c.act) {
                    (true, Some(f)) => f.apply(y),
                    _ => y,
                };
                // SAFETY: as above.
                unsafe { *dst.0.add(at(row, j)) = y };
            }
        }
    }
}

/// Where B rows start, per conv call (see `conv2d`).
#[derive(Clone, Copy)]
struct Rows<'a> {
    offsets: &'a [usize],
    taps: &'a [i32],
    /// Per tap, the permutation and lane mask of [`Kernel::permute_maps`] (when not empty,
    /// `taps` is), and the batch's images.
    perms: &'a [([i32; 16], u16)],
    images: usize,
}

/// For each tap `(ky, kx)` and batched column `j` (pixel `p = j % (OH·OW)` of image
/// `b = j / (OH·OW)`), the input element it reads from channel 0, `b·Cin·H·W + iy·W + ix`, or
/// −1 in the padding: `[kh·kw][N·OH·OW]` (the caller keeps `N·Cin·H·W` within i32).
fn tap_table(c: &Conv2d, [n, cin, h, w]: [usize; 4], [oh, ow]: [usize; 2]) -> Vec<i32> {
    let [kh, kw] = c.kernel();
    let mut t = Vec::with_capacity(kh * kw * n * oh * ow);
    for ky in 0..kh {
        for kx in 0..kw {
            for b in 0..n {
                for oy in 0..oh {
                    for ox in 0..ow {
                        let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                        let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                        let inside = iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize;
                        t.push(if inside { (b * cin * h * w + iy as usize * w + ix as usize) as i32 } else { -1 });
                    }
                }
            }
        }
    }
    t
}

/// Fills columns `0..cols` of one B panel, `dst: [kc][width]`, for batched columns
/// `col0..col0 + cols`, rows `k0..k0 + kc`: each row one vector gather of channel `ci`'s
/// elements through its tap's indices (small maps have rows of a few pixels, too short to
/// copy run by run), or, with `rows.perms`, one permute of whole maps per 16 columns.
#[allow(clippy::too_many_arguments)]
fn pack_batched(kernel: Kernel, c: &Conv2d, x: &[f32], [cin, h, w]: [usize; 3], rows: Rows, group: usize, k0: usize, kc: usize, col0: usize, cols: usize, width: usize, dst: &mut [f32]) {
    let [kh, kw] = c.kernel();
    let cin_g = cin / c.groups;
    let columns = rows.taps.len() / (kh * kw);
    for (kk, row) in dst.chunks_exact_mut(width).take(kc).enumerate() {
        let k = k0 + kk;
        let (ci, tap) = (group * cin_g + k / (kh * kw), k % (kh * kw));
        if let Some((perm, mask)) = rows.perms.get(tap) {
            assert!(col0 % 16 == 0 && width >= cols.div_ceil(16) * 16, "sconv: permuted columns not in whole chunks");
            // SAFETY: (perms is only built for 16-lane kernels, maps of 4 or 16 pixels and
            // indices below 16, see `perm_table`.) Image b < N's plane of channel ci is the
            // h·w = npix floats at ci·h·w + b·Cin·h·w, inside x (checked by `conv2d`); the
            // chunks cover columns col0..col0 + cols of the N·npix, so they read no image
            // past N; the row holds `width` ≥ chunks · 16 floats (asserted).
            unsafe { kernel.permute_maps(row.as_mut_ptr(), x[ci * h * w..].as_ptr(), cin * h * w, h * w, rows.images, col0 / 16, cols.div_ceil(16), perm, *mask) };
            continue;
        }
        let idx = &rows.taps[tap * columns + col0..tap * columns + col0 + cols];
        // SAFETY: a non-negative index is b·Cin·H·W + (a pixel of one plane) for an image
        // b < N, so from channel ci's plane it lies below N·Cin·H·W ≤ x.len() (checked by
        // `conv2d`).
        unsafe { kernel.gather(&mut row[..cols], x[ci * h * w..].as_ptr(), idx) };
    }
}

/// For each tap `(ky, kx)` of a conv whose output has its input's `h × w = npix` pixels
/// (4 or 16: `16 / npix` images per 16 columns), the permutation and lane mask that
/// [`Kernel::permute_maps`] takes: lane `l` is pixel `p = l % npix` of the chunk's image
/// `l / npix`, and reads that image's input pixel under the tap, or is 0 in the padding.
fn perm_table(c: &Conv2d, [h, w]: [usize; 2]) -> Vec<([i32; 16], u16)> {
    let [kh, kw] = c.kernel();
    let npix = h * w;
    let mut t = Vec::with_capacity(kh * kw);
    for ky in 0..kh {
        for kx in 0..kw {
            let (mut perm, mut mask) = ([0i32; 16], 0u16);
            for (l, p) in perm.iter_mut().enumerate() {
                let (i, oy, ox) = (l / npix, l % npix / w, l % w);
                let iy = (oy * c.stride[0] + ky * c.dilation[0]) as isize - c.pads[0] as isize;
                let ix = (ox * c.stride[1] + kx * c.dilation[1]) as isize - c.pads[1] as isize;
                if iy >= 0 && ix >= 0 && iy < h as isize && ix < w as isize {
                    *p = (i * npix + iy as usize * w + ix as usize) as i32;
                    mask |= 1 << l;
                }
            }
            t.push((perm, mask));
        }
    }
    t
}

/// Copies `x: [N·Cin][h][w]` into its zero-padded stride-phase planes
/// `[N·Cin][sy·sx][hph][wph]` (see [`Cols`]); rows and columns past the padded image are 0.
/// Only the phases some tap reads are written. With `evict` (workers on cores that share no
/// cache, whose tiles both read every channel's planes), each worker first drops the lines of
/// the planes it is about to write: the last call left each of them shared by both cores, and
/// overwriting such a line waits for the other core's copy to be invalidated (`cpu::evict`).
/// ResNet-50 f32 on Zen 4 with the vCPUs on two CCDs, per loop (medians over 30–80 rounds of
/// 30 calls): the phase planes of its stride-2 3×3 convs onto 28² and 14² 0.37 and 0.24 ms →
/// 0.14–0.16 and 0.12–0.13 (0.07 and 0.05 on one L3); those of its 1×1 stride-2 convs onto
/// 14² and 7² took longer so (0.08 → 0.13, 0.10 → 0.16 ms), and are not evicted.
#[allow(clippy::too_many_arguments)]
pub(crate) fn phase_input(kernel: Kernel, c: &Conv2d, x: &[f32], [h, w]: [usize; 2], [sy, sx]: [usize; 2], [hph, wph]: [usize; 2], out: &mut [f32], workers: usize, evict: bool) {
    let (pt, pl) = (c.pads[0], c.pads[1]);
    // Phases no tap reads (three of a 1×1 stride-2 conv's four) are left unwritten.
    let [kh, kw] = c.kernel();
    let [dy, dx] = c.dilation;
    let mut used = vec![false; sy * sx];
    for ky in 0..kh {
        for kx in 0..kw {
            used[(ky * dy % sy) * sx + kx * dx % sx] = true;
        }
    }
    let one = |(planes, src): (&mut [f32], &[f32])| {
        // Column stride 2 with both column phases of a phase row read: each input row once,
        // into both planes.
        if sx == 2 && used.chunks_exact(2).all(|u| u[0] == u[1]) {
            for (py, pair) in planes.chunks_exact_mut(2 * hph * wph).enumerate().filter(|(py, _)| used[2 * py]) {
                let (even, odd) = pair.split_at_mut(hph * wph);
                kernel.stride2_plane(even, Some(odd), wph, src, w, [py as isize - pt as isize, sy as isize], -(pl as isize));
            }
            return;
        }
        for (phase, plane) in planes.chunks_exact_mut(hph * wph).enumerate().filter(|(p, _)| used[*p]) {
            let (py, px) = (phase / sx, phase % sx);
            if sx == 2 {
                kernel.stride2_plane(plane, None, wph, src, w, [py as isize - pt as isize, sy as isize], px as isize - pl as isize);
                continue;
            }
            for (r, row) in plane.chunks_exact_mut(wph).enumerate() {
                // Padded row r·sy + py is input row r·sy + py − pt.
                let iy = (r * sy + py) as isize - pt as isize;
                if iy < 0 || iy >= h as isize {
                    row.fill(0.0);
                    continue;
                }
                // Column j reads input column j·sx + px − pl.
                super::strided_row(row, &src[iy as usize * w..(iy as usize + 1) * w], px as isize - pl as isize, sx);
            }
        }
    };
    let image = sy * sx * hph * wph;
    // Stride 1, short rows (small maps): zero each plane, then copy the image into it in
    // vectors; row by row, each row would cost a fill and a `memcpy` call.
    if [sy, sx] == [1, 1] && w < SHORT_ROW {
        let fill = |(plane, src): (&mut [f32], &[f32])| {
            plane.fill(0.0);
            let inner = &mut plane[pt * wph + pl..];
            assert!(src.len() >= h * w && h.saturating_sub(1) * wph + w <= inner.len(), "sconv: phase plane smaller than its image");
            // SAFETY: h rows of w floats at stride w lie in `src`, and at stride wph in
            // `inner` (asserted); the two are distinct buffers.
            unsafe { kernel.copy_rows(src.as_ptr(), w, inner.as_mut_ptr(), wph, h, w) };
        };
        if workers > 1 {
            crate::cpu::parallel::par_chunks_mut(out, image, |i, plane| {
                if evict {
                    crate::cpu::evict::evict(plane);
                }
                fill((plane, &x[i * h * w..(i + 1) * h * w]))
            });
        } else {
            out.chunks_mut(image).zip(x.chunks(h * w)).for_each(fill);
        }
        return;
    }
    if workers > 1 {
        crate::cpu::parallel::par_chunks_mut(out, image, |i, planes| {
            if evict {
                planes.chunks_exact(hph * wph).zip(&used).filter(|(_, &u)| u).for_each(|(p, _)| crate::cpu::evict::evict(p));
            }
            one((planes, &x[i * h * w..(i + 1) * h * w]))
        });
    } else {
        out.chunks_mut(image).zip(x.chunks(h * w)).for_each(one);
    }
}
