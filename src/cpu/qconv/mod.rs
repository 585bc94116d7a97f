//! INT8 convolution, transposed convolution and fully connected layers over NCHW tensors,
//! run on the qgemm kernels ([`conv`], [`transpose`], [`linear`]), with the input's
//! rearrangement into stride-phase planes in [`phases`].
//!
//! Each layer is a graph op at INT8 precision (its [`Int8`](crate::graph::op::Int8) data: weight codes and scales,
//! input parameters) plus its s8 weights packed once, when a session is prepared, for the
//! kernel the session chose (`pack_*`). Values arrive and leave typed: the input as f32 or as
//! the previous INT8 layer's u8 codes ([`QIn`]), the output as f32 or as u8 codes for the next
//! ([`QOut`]), a residual as f32 or codes ([`Residual`]). A dynamic layer takes its input's
//! range from its producer when that recorded it, and records its own f32 output's range for
//! a dynamic reader ([`Ranges`]): arguments and return values, never shared state.

pub mod conv;
pub mod linear;
pub(crate) mod phases;
pub mod transpose;


use crate::cpu::aligned::Aligned;
use crate::cpu::codec::{min_max, quantize_slice};
use crate::cpu::qgemm::MR;
use crate::cpu::simd::Simd;
use crate::graph::ActQuant;
use crate::qparams::QParams;

pub use conv::{batched_bytes, batches_columns, gathers_columns, pack_conv, qconv2d, BATCH_MAP_PIXELS};
pub use linear::{pack_linear, qlinear};
pub use transpose::{pack_conv_transpose, qconv_transpose2d};

/// Target panel size in bytes: a worker's panel and i32 tile stay within a 1 MB L2. Fewer,
/// larger tasks also mean fewer passes over the weights per worker; on the reference Zen 4
/// this took ResNet-50's 14² 3×3 convs from 0.47 to 0.39 ms (2 threads) against 192 KB.
const PANEL_TARGET: usize = 512 * 1024;
/// The panel size for convs whose packed weights fit in [`SMALL_WEIGHTS`]: re-reading such
/// weights per task costs little, and smaller panels (with their smaller i32 tiles) kept
/// ResNet-50's stem (K = 148, 12 544 pixels, 40–64 channels) at 0.30–0.43 ms inside a
/// session at 2 threads against 0.45–0.52 ms with 4 tasks of 476 KB panels.
const SMALL_PANEL_TARGET: usize = 128 * 1024;
/// Packed weight bytes (`mpad · kpad`) up to which [`SMALL_PANEL_TARGET`] applies.
const SMALL_WEIGHTS: usize = 64 * 1024;
/// The same for ConvTranspose, whose i32 tile holds all `Cout·kh·kw` rows at once.
const CONVT_PANEL_TARGET: usize = 192 * 1024;
/// Output channels per kernel call: the epilogue reads their i32 tile (at most
/// `ROWS_PER_CALL · 16 · blocks` values) while it is still in cache. A multiple of `MR`.
const ROWS_PER_CALL: usize = 32;
const _: () = assert!(ROWS_PER_CALL % MR == 0);
/// Pixel blocks a task spans from which AMX stores its sums tile by tile for the requantizing
/// pass ([`crate::cpu::qgemm::Kernel::run_rows_tiles`]) rather than into rows of the task's
/// width: 16 rows 64 bytes apart at a 2 KB or wider row stride cost the tile store more than
/// the pass pays for reading 16-column blocks 1 KB apart. ResNet-50 INT8 on family 6 model
/// 207, the layouts alternating in one process: 56² 1×1 convs (98–196 blocks a task) and the
/// stem 0.80–0.88 and 0.95–0.98 of their time; with tiles everywhere, 14² and 7² layers (4–13
/// blocks) took 1.05–1.19 of theirs in the pruned model.
pub const TILES_MIN_BLOCKS: usize = 32;
/// Below this many output bytes, input quantization and phase planes are built on the calling
/// thread: cheaper than waking the pool.
const SERIAL_BYTES: usize = 64 * 1024;
/// Phase planes with at least this many rows are built in parallel even when smaller than
/// [`SERIAL_BYTES`]: each row costs a few calls (pads, copy), and ResNet-50's 7² 3×3 convs
/// have 9 rows per channel (3 528 rows for 392 channels).
const SERIAL_ROWS: usize = 256;

/// Reusable byte, i32 and f32 buffers of the INT8 layers, owned by one call's buffers.
#[derive(Default, Debug)]
pub struct QScratch {
    /// A conv's shared inputs, written by the workers in turn and read by all: an f32
    /// input's codes and the phase planes (a Gemm's and a transposed conv's panels too).
    pub u8: Vec<u8>,
    pub i32: Vec<i32>,
    /// Each conv worker's own panel, sums and residual row ([`WorkerScratch`]).
    pub own: WorkerScratch,
}

/// The buffers only one worker of a conv writes, at the same addresses from layer to layer.
///
/// A panel and the sums are written over and over by their worker alone. Carved from one
/// buffer shared by the workers, at offsets that change with each layer's sizes, a line one
/// worker wrote in a layer would be the other's in the next, and each first write would move
/// it between the cores' caches. Measured on Zen 4 at 2 threads, alternating call by call:
/// ResNet-50 INT8 takes 0.98–0.99 of the shared buffer's time with the two vCPUs on one L3
/// (the pool's worker no longer trailing the caller by 10–20 % on the stem and layer1's 1×1
/// convs), 0.92 with them on two CCDs. (f32's and bf16's per-worker blocks, given buffers of
/// their own the same way, measured 0.99–1.01: not done.)
#[derive(Default, Debug)]
pub struct WorkerScratch {
    workers: Vec<Own>,
}

/// One worker's buffers; the panel and the sums start on cache lines ([`Aligned`]).
#[derive(Default, Debug)]
struct Own {
    panel: Aligned<u8>,
    sums: Aligned<i32>,
    /// A u8 residual dequantized one channel row at a time.
    res: Vec<f32>,
}

impl WorkerScratch {
    /// Each of `workers` workers' panel of `panel` bytes and sums of `sums` values, both
    /// starting on a cache line (the kernels load them 64 bytes at a time; AMX stores its sums
    /// 64 bytes a row), and its residual row of `res` values; a buffer shorter than asked is
    /// replaced by a longer one, a longer one kept.
    pub fn take(&mut self, workers: usize, [panel, sums, res]: [usize; 3]) -> impl Iterator<Item = (&mut [u8], &mut [i32], &mut [f32])> {
        if self.workers.len() < workers {
            self.workers.resize_with(workers, Own::default);
        }
        self.workers[..workers].iter_mut().map(move |o| {
            if o.panel.len() < panel {
                o.panel = Aligned::zeroed(panel);
            }
            if o.sums.len() < sums {
                o.sums = Aligned::zeroed(sums);
            }
            if o.res.len() < res {
                o.res.resize(res, 0.0);
            }
            (&mut o.panel[..panel], &mut o.sums[..sums], &mut o.res[..res])
        })
    }
}

/// The input of an INT8 layer, `[N, Cin, H, W]`: floats to quantize, or u8 codes already
/// quantized with the layer's (static) input parameters by the previous INT8 layer.
#[derive(Clone, Copy, Debug)]
pub enum QIn<'a> {
    F32(&'a [f32]),
    U8(&'a [u8]),
}

/// The output of an INT8 layer: floats, or u8 codes with the next INT8 layers' parameters.
#[derive(Debug)]
pub enum QOut<'a> {
    F32(&'a mut [f32]),
    U8(&'a mut [u8], QParams),
}

/// The residual input of an INT8 conv, `[N, Cout, OH, OW]`: floats, or u8 codes that the
/// epilogue dequantizes with their parameters.
#[derive(Clone, Copy, Debug)]
pub enum Residual<'a> {
    F32(&'a [f32]),
    U8(&'a [u8], QParams),
    /// u8 codes with these parameters already in the (u8) output buffer: the executor's
    /// in-place residual. Each task dequantizes its share of a channel row before it writes
    /// that share, so the values are those of [`Residual::U8`] with a buffer of its own.
    Output(QParams),
}

/// The dynamic-range hand-off of one call.
#[derive(Clone, Copy, Debug, Default)]
pub struct Ranges {
    /// `(min, max)` of the f32 input, when its producer recorded it (NaNs ignored); a dynamic
    /// layer uses it instead of a pass over the input.
    pub input: Option<(f32, f32)>,
    /// Record the f32 output's `(min, max)` (a dynamic INT8 layer reads it next).
    pub record_output: bool,
}

/// The input parameters of a layer for this input: the static ones, or those of its range.
pub fn input_params(simd: Simd, q: ActQuant, x: &[f32]) -> QParams {
    input_params_with(simd, q, x, None)
}

/// [`input_params`], with the input's `(min, max)` when its producer recorded it.
pub(crate) fn input_params_with(simd: Simd, q: ActQuant, x: &[f32], range: Option<(f32, f32)>) -> QParams {
    match q {
        ActQuant::Static(p) => p,
        ActQuant::Dynamic => {
            let (lo, hi) = match range {
                Some((lo, hi)) if lo <= hi => (lo, hi),
                Some(_) => (0.0, 0.0),
                None => min_max(simd, x),
            };
            QParams::from_range(lo, hi)
        }
    }
}

/// Quantizes `x` into `out` in parallel chunks.
pub(crate) fn quantize_par(simd: Simd, p: QParams, x: &[f32], out: &mut [u8]) {
    if out.len() < SERIAL_BYTES {
        quantize_slice(simd, p, x, out);
        return;
    }
    crate::cpu::parallel::par_chunks_mut(out, 16 * 1024, |i, o| quantize_slice(simd, p, &x[i * 16 * 1024..][..o.len()], o));
}

pub(crate) use crate::cpu::parallel::OutPtr;

#[cfg(test)]
mod tests {
    use super::WorkerScratch;

    /// Each worker's buffers: the lengths asked for, starting on cache lines, apart from the
    /// other workers', and at the same addresses again for a later layer that needs no more
    /// (what keeps their lines in the one core that writes them).
    #[test]
    fn worker_buffers_stay_where_they_are() {
        let mut s = WorkerScratch::default();
        let addrs = |s: &mut WorkerScratch, sizes: [usize; 3]| -> Vec<[usize; 3]> {
            let bufs: Vec<_> = s.take(2, sizes).collect();
            for (p, a, r) in &bufs {
                assert_eq!([p.len(), a.len(), r.len()], sizes);
                assert_eq!((p.as_ptr() as usize % 64, a.as_ptr() as usize % 64), (0, 0), "cache-line starts");
            }
            bufs.iter().map(|(p, a, r)| [p.as_ptr() as usize, a.as_ptr() as usize, r.as_ptr() as usize]).collect()
        };
        let first = addrs(&mut s, [4160 * 25, 32 * 25 * 16, 1]);
        // Smaller layers after it: the same places.
        assert_eq!(addrs(&mut s, [1088 * 90, 32 * 20 * 16, 1])[..], first[..]);
        assert_eq!(addrs(&mut s, [0, 16, 1]), first);
        // Nothing of one worker's lies in another's: panels, sums and residual rows.
        for (k, bytes) in [4160 * 25, 4 * 32 * 25 * 16, 4].into_iter().enumerate() {
            let (a, b) = (first[0][k], first[1][k]);
            assert!(a + bytes <= b || b + bytes <= a, "buffer {k} shared");
        }
        // A larger one grows them; three workers add a third.
        assert_eq!(s.take(3, [1 << 20, 1 << 16, 7]).count(), 3);
        let again = addrs(&mut s, [1 << 19, 1 << 15, 7]);
        assert_eq!(again, addrs(&mut s, [1 << 20, 1 << 16, 7]));
    }
}
