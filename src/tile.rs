//! Tiled, streaming segmentation of images larger than memory allows.
//!
//! The image is cut into `tile`×`tile` windows whose origins step by `tile - overlap`
//! (the last one clamped to the image edge). Tiles are batched `batch` at a time through the
//! model; their probabilities (sigmoid for one channel, softmax for several) are blended with
//! a separable window that ramps linearly over the overlap on every side that has a
//! neighbouring tile, and normalised by the summed weights. The weights are continuous, so
//! there are no seams; a side on the image border keeps weight 1.
//!
//! Memory is bounded by one band of tiles: `tile` input rows (u8 RGB), `tile` accumulator
//! rows (`W·(C + 1)` f32) and `batch` tiles in flight, never by the image. Rows are read from
//! a [`RowSource`] (PNG decoded row by row) and written to a [`RowSink`] (PNG encoded row by
//! row) as soon as no later tile can touch them.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{BufReader, BufWriter};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::imageio::Preprocess;
use crate::tensor::Tensor;

/// How to tile.
#[derive(Clone, Debug)]
pub struct TileOptions {
    /// Tile side in pixels (a multiple of the model's spatial multiple).
    pub tile: usize,
    /// Overlap between neighbouring tiles, `< tile`.
    pub overlap: usize,
    /// Tiles per forward pass.
    pub batch: usize,
    /// Foreground threshold on the probability; negative writes the probability map.
    pub threshold: f32,
    pub pre: Preprocess,
}

impl TileOptions {
    /// Checks the options against a model whose spatial dims must be multiples of `multiple`.
    pub fn check(&self, multiple: usize) -> Result<()> {
        let m = multiple.max(1);
        if self.tile == 0 || self.tile % m != 0 {
            return Err(Error::Argument(format!("--tile {} must be a positive multiple of the model's spatial multiple {m}", self.tile)));
        }
        if self.overlap >= self.tile {
            return Err(Error::Argument(format!("--overlap {} must be smaller than --tile {}", self.overlap, self.tile)));
        }
        Ok(())
    }
}

/// Rows of an RGB image, top to bottom.
pub trait RowSource {
    fn width(&self) -> usize;
    fn height(&self) -> usize;
    /// Fills `rgb` (`3·width` bytes) with the next row.
    fn next_row(&mut self, rgb: &mut [u8]) -> Result<()>;
    /// Skips the next `n` rows (a shard's rows above its first band); decoding them unless the
    /// source can seek.
    fn skip_rows(&mut self, n: usize) -> Result<()> {
        let mut row = vec![0u8; self.width() * 3];
        (0..n).try_for_each(|_| self.next_row(&mut row))
    }
}

/// Receives output rows, top to bottom: values in [0, 1] (probability, 0/1 mask, or
/// `label / (C - 1)` for multi-class models).
pub trait RowSink {
    fn write_row(&mut self, values: &[f32]) -> Result<()>;
}

/// An in-memory image as a row source.
pub struct ImageRows<'a> {
    img: &'a image::RgbImage,
    y: usize,
}

impl<'a> ImageRows<'a> {
    pub fn new(img: &'a image::RgbImage) -> Self {
        ImageRows { img, y: 0 }
    }
}

impl RowSource for ImageRows<'_> {
    fn width(&self) -> usize {
        self.img.width() as usize
    }
    fn height(&self) -> usize {
        self.img.height() as usize
    }
    fn next_row(&mut self, rgb: &mut [u8]) -> Result<()> {
        let w = self.width() * 3;
        let row = self.img.as_raw().get(self.y * w..(self.y + 1) * w).ok_or_else(|| Error::Internal("image rows: read past the last row".into()))?;
        rgb.copy_from_slice(row);
        self.y += 1;
        Ok(())
    }
}

/// A PNG file decoded row by row (non-interlaced; 8 or 16 bit; gray, gray+alpha, RGB, RGBA or palette).
pub struct PngRows {
    reader: png::Reader<BufReader<File>>,
    path: PathBuf,
    channels: usize,
    width: usize,
    height: usize,
}

/// Largest row the streaming decoder accepts, in bytes (a hostile header cannot make it allocate more).
const MAX_ROW_BYTES: usize = 256 << 20;

impl PngRows {
    /// Opens `path`; interlaced PNGs are refused (they cannot be streamed by rows).
    pub fn open(path: &Path) -> Result<Self> {
        let bad = |reason: String| Error::Image { path: path.to_path_buf(), reason };
        let f = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut dec = png::Decoder::new_with_limits(BufReader::new(f), png::Limits { bytes: MAX_ROW_BYTES });
        dec.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let reader = dec.read_info().map_err(|e| bad(e.to_string()))?;
        let info = reader.info();
        if info.interlaced {
            return Err(bad("interlaced PNG cannot be streamed row by row; re-encode it without interlacing".into()));
        }
        let (width, height) = (info.width as usize, info.height as usize);
        let channels = match reader.output_color_type().0 {
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Indexed => return Err(bad("palette was not expanded".into())),
        };
        if width.checked_mul(channels).is_none_or(|b| b > MAX_ROW_BYTES) || width == 0 || height == 0 {
            return Err(bad(format!("unsupported size {width}x{height}")));
        }
        Ok(PngRows { reader, path: path.to_path_buf(), channels, width, height })
    }
}

impl RowSource for PngRows {
    fn width(&self) -> usize {
        self.width
    }
    fn height(&self) -> usize {
        self.height
    }
    fn next_row(&mut self, rgb: &mut [u8]) -> Result<()> {
        let row = self
            .reader
            .next_row()
            .map_err(|e| Error::Image { path: self.path.clone(), reason: e.to_string() })?
            .ok_or_else(|| Error::Image { path: self.path.clone(), reason: "truncated: fewer rows than the header declares".into() })?;
        let data = row.data();
        let c = self.channels;
        if data.len() < self.width * c {
            return Err(Error::Image { path: self.path.clone(), reason: "short row".into() });
        }
        for (x, px) in rgb.chunks_exact_mut(3).enumerate() {
            let p = &data[x * c..];
            match c {
                1 | 2 => px.copy_from_slice(&[p[0], p[0], p[0]]),
                _ => px.copy_from_slice(&p[..3]),
            }
        }
        Ok(())
    }
}

/// An 8-bit grayscale PNG written row by row.
pub struct PngSink {
    writer: png::StreamWriter<'static, BufWriter<File>>,
    path: PathBuf,
    row: Vec<u8>,
}

impl PngSink {
    pub fn create(path: &Path, width: usize, height: usize) -> Result<Self> {
        let bad = |e: png::EncodingError| Error::Image { path: path.to_path_buf(), reason: e.to_string() };
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut enc = png::Encoder::new(BufWriter::new(f), width as u32, height as u32);
        enc.set_color(png::ColorType::Grayscale);
        enc.set_depth(png::BitDepth::Eight);
        let writer = enc.write_header().map_err(bad)?.into_stream_writer().map_err(bad)?;
        Ok(PngSink { writer, path: path.to_path_buf(), row: vec![0; width] })
    }

    /// Flushes the image end.
    pub fn finish(self) -> Result<()> {
        let path = self.path.clone();
        self.writer.finish().map_err(|e| Error::Image { path, reason: e.to_string() })
    }
}

impl RowSink for PngSink {
    fn write_row(&mut self, values: &[f32]) -> Result<()> {
        use std::io::Write;
        for (o, v) in self.row.iter_mut().zip(values) {
            *o = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
        self.writer.write_all(&self.row).map_err(|e| Error::io(&self.path, e))
    }
}

impl<R: std::io::Read + std::io::Seek> RowSource for crate::slide::TiffRows<R> {
    fn width(&self) -> usize {
        crate::slide::TiffRows::width(self)
    }
    fn height(&self) -> usize {
        crate::slide::TiffRows::height(self)
    }
    fn next_row(&mut self, rgb: &mut [u8]) -> Result<()> {
        crate::slide::TiffRows::next_row(self, rgb)
    }
    fn skip_rows(&mut self, n: usize) -> Result<()> {
        crate::slide::TiffRows::skip_rows(self, n)
    }
}

/// Rows decoded ahead on a thread of their own: the pipeline that overlaps decoding with the
/// forward passes. Blocks of rows travel through a bounded channel, so at most
/// [`PREFETCH_BYTES`] (and at least two blocks) are decoded ahead of the reader.
pub struct Prefetch {
    rx: std::sync::mpsc::Receiver<Result<Vec<u8>>>,
    width: usize,
    height: usize,
    block: Vec<u8>,
    /// Next row of `block` to hand out, and the rows it holds.
    at: usize,
    rows: usize,
    read: usize,
    /// Rows the decoding thread skipped before its first block, not yet accounted for.
    skipped: usize,
}

/// Bytes of decoded rows the decoding thread may hold ahead of the model.
pub const PREFETCH_BYTES: usize = 32 << 20;

impl Prefetch {
    /// Starts decoding `src` on a thread of `scope`, from row `skip` on (the rows above are
    /// skipped by the source itself; [`RowSource::skip_rows`] of exactly `skip` rows first is
    /// then free).
    pub fn start<'scope, 'env>(scope: &'scope std::thread::Scope<'scope, 'env>, mut src: Box<dyn RowSource + Send + 'env>, skip: usize) -> Prefetch {
        let (width, height) = (src.width(), src.height());
        let skip = skip.min(height);
        let row = width * 3;
        let per_block = (1 << 20) / row.max(1) + 1;
        let depth = (PREFETCH_BYTES / (per_block * row).max(1)).max(2);
        let (tx, rx) = std::sync::mpsc::sync_channel(depth);
        scope.spawn(move || {
            let mut y = skip;
            if let Err(e) = src.skip_rows(skip) {
                let _ = tx.send(Err(e));
                return;
            }
            while y < height {
                let n = per_block.min(height - y);
                let mut block = vec![0u8; n * row];
                let res = block.chunks_exact_mut(row).try_for_each(|r| src.next_row(r)).map(|_| block);
                let failed = res.is_err();
                // The reader went away (an error downstream): stop decoding.
                if tx.send(res).is_err() || failed {
                    return;
                }
                y += n;
            }
        });
        Prefetch { rx, width, height, block: Vec::new(), at: 0, rows: 0, read: 0, skipped: skip }
    }
}

impl RowSource for Prefetch {
    fn width(&self) -> usize {
        self.width
    }
    fn height(&self) -> usize {
        self.height
    }
    fn skip_rows(&mut self, n: usize) -> Result<()> {
        if self.read == 0 && n == self.skipped {
            self.read = n;
            self.skipped = 0;
            return Ok(());
        }
        let mut row = vec![0u8; self.width * 3];
        (0..n).try_for_each(|_| self.next_row(&mut row))
    }
    fn next_row(&mut self, rgb: &mut [u8]) -> Result<()> {
        if self.skipped > 0 {
            return Err(Error::Internal("rows read before the skipped ones were accounted for".into()));
        }
        if self.at == self.rows {
            if self.read >= self.height {
                return Err(Error::Internal("read past the last row".into()));
            }
            self.block = self.rx.recv().map_err(|_| Error::Internal("the decoding thread stopped".into()))??;
            self.rows = self.block.len() / (self.width * 3).max(1);
            self.at = 0;
        }
        let row = self.width * 3;
        rgb.copy_from_slice(&self.block[self.at * row..(self.at + 1) * row]);
        self.at += 1;
        self.read += 1;
        Ok(())
    }
}

/// An 8-bit grayscale tiled TIFF (Deflate tiles of [`TIFF_TILE`]²) written row by row: one
/// band of tiles is held, and written when its last row arrives.
pub struct TiffSink {
    writer: crate::slide::TiffWriter,
    width: usize,
    height: usize,
    /// `[TIFF_TILE][across · TIFF_TILE]`.
    band: Vec<u8>,
    y: usize,
}

/// Tile side of the masks [`TiffSink`] writes.
pub const TIFF_TILE: usize = 256;

impl TiffSink {
    pub fn create(path: &Path, width: usize, height: usize) -> Result<Self> {
        let writer = crate::slide::TiffWriter::create(path, &[[width, height]], TIFF_TILE, 1, crate::slide::Compression::Deflate, None)?;
        let across = width.div_ceil(TIFF_TILE);
        Ok(TiffSink { writer, width, height, band: vec![0; TIFF_TILE * across * TIFF_TILE], y: 0 })
    }

    fn flush_band(&mut self) -> Result<()> {
        let across = self.width.div_ceil(TIFF_TILE);
        let ty = (self.y - 1) / TIFF_TILE;
        let stride = across * TIFF_TILE;
        let mut tile = vec![0u8; TIFF_TILE * TIFF_TILE];
        for tx in 0..across {
            for (r, row) in tile.chunks_exact_mut(TIFF_TILE).enumerate() {
                row.copy_from_slice(&self.band[r * stride + tx * TIFF_TILE..][..TIFF_TILE]);
            }
            self.writer.write_tile(0, tx, ty, &tile)?;
        }
        self.band.fill(0);
        Ok(())
    }

    /// Writes the last band and the file's directory.
    pub fn finish(mut self) -> Result<()> {
        if self.y != self.height {
            return Err(Error::Internal(format!("TIFF mask: {} of {} rows written", self.y, self.height)));
        }
        if self.y % TIFF_TILE != 0 {
            self.flush_band()?;
        }
        self.writer.finish()
    }
}

impl RowSink for TiffSink {
    fn write_row(&mut self, values: &[f32]) -> Result<()> {
        let stride = self.width.div_ceil(TIFF_TILE) * TIFF_TILE;
        let r = self.y % TIFF_TILE;
        for (o, v) in self.band[r * stride..r * stride + self.width].iter_mut().zip(values) {
            *o = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
        }
        self.y += 1;
        if self.y % TIFF_TILE == 0 {
            self.flush_band()?;
        }
        Ok(())
    }
}

/// A mask written row by row: a tiled TIFF ([`TiffSink`]) for a `.tif`/`.tiff` path, else a
/// PNG ([`PngSink`]).
pub enum MaskSink {
    Png(PngSink),
    Tiff(TiffSink),
}

impl MaskSink {
    pub fn create(path: &Path, width: usize, height: usize) -> Result<Self> {
        Ok(if crate::slide::is_tiff(path) { MaskSink::Tiff(TiffSink::create(path, width, height)?) } else { MaskSink::Png(PngSink::create(path, width, height)?) })
    }

    /// Writes what is left and closes the file.
    pub fn finish(self) -> Result<()> {
        match self {
            MaskSink::Png(s) => s.finish(),
            MaskSink::Tiff(s) => s.finish(),
        }
    }
}

impl RowSink for MaskSink {
    fn write_row(&mut self, values: &[f32]) -> Result<()> {
        match self {
            MaskSink::Png(s) => s.write_row(values),
            MaskSink::Tiff(s) => s.write_row(values),
        }
    }
}

/// Collects output rows in memory (tests, small images).
#[derive(Default)]
pub struct VecSink {
    pub values: Vec<f32>,
}

impl RowSink for VecSink {
    fn write_row(&mut self, values: &[f32]) -> Result<()> {
        self.values.extend_from_slice(values);
        Ok(())
    }
}

/// Tile origins along an axis whose length, padded to the model's multiple, is `len`, for
/// tiles of `t` stepping by `step`: `0, step, 2·step, …`, the last clamped to end at `len`.
/// With `t`, `step` and `len` multiples of the model's multiple, every origin is too, so
/// pooling windows line up with a whole-image run; and no tile reaches past the padded
/// extent, where a whole-image run would see the convolutions' own zero padding.
pub fn origins(len: usize, t: usize, step: usize) -> Vec<usize> {
    if len <= t {
        return vec![0];
    }
    let mut out = vec![0];
    let mut o = 0;
    while o + t < len {
        o = (o + step.max(1)).min(len - t);
        out.push(o);
    }
    out
}

/// Blending weight of position `i` in a tile of `t` at `origin` on an axis of `len`, for
/// neighbouring tiles overlapping by `overlap`. On a side with a neighbour the weight is
/// (almost) zero within `overlap / 4` of the edge, where the zero padding the tile sees
/// differs most from the true context, then rises linearly to 1 at `3·overlap / 4`. In every
/// overlap one tile is past its ramp where the other is still inside its margin, so the
/// weights never sum to zero, and they are continuous, so the blend has no seams.
pub fn window(i: usize, t: usize, origin: usize, len: usize, overlap: usize) -> f32 {
    if overlap == 0 {
        return 1.0;
    }
    let o = overlap as f32;
    let ramp = |d: f32| ((d + 0.5 - o / 4.0) / (o / 2.0)).clamp(1e-3, 1.0);
    let mut w = 1.0f32;
    if origin > 0 {
        w = w.min(ramp(i as f32));
    }
    if origin + t < len {
        w = w.min(ramp((t - 1 - i) as f32));
    }
    w
}

/// Figures of a tiled run.
#[derive(Clone, Debug, serde::Serialize)]
pub struct TileStats {
    pub width: usize,
    pub height: usize,
    pub tiles: usize,
    pub tile_h: usize,
    pub tile_w: usize,
    pub channels: usize,
    /// Tiles not run: no tissue ([`segment_tiled_skipping`]); their output is background.
    pub skipped: usize,
    /// The output rows written, `[first, end)`: all of them, or one shard's.
    pub rows: [usize; 2],
}

/// The tile-row bands of an image of `height` rows (padded to `multiple`) in tiles of
/// `opts`: their origins, as [`segment_tiled`] runs them.
pub fn band_origins(height: usize, opts: &TileOptions, multiple: usize) -> Vec<usize> {
    let m = multiple.max(1);
    let th = if height >= opts.tile { opts.tile } else { height.div_ceil(m) * m };
    let step = ((opts.tile - opts.overlap) / m * m).max(m);
    origins(height.div_ceil(m) * m, th, step)
}

/// The first input row a run writing output rows `[rows[0], …)` reads: the origin of the
/// first band whose tiles reach `rows[0]`.
pub fn first_row_read(height: usize, opts: &TileOptions, multiple: usize, rows: [usize; 2]) -> usize {
    let m = multiple.max(1);
    let th = if height >= opts.tile { opts.tile } else { height.div_ceil(m) * m };
    band_origins(height, opts, multiple).into_iter().find(|&y0| y0 + th > rows[0]).unwrap_or(height).min(height)
}

/// The output rows `[first, end)` shard `index` of `count` writes: the rows finished by its
/// share of the bands (bands `[index·B/count, (index+1)·B/count)`), so that the shards' rows
/// are disjoint, in order, and cover the image.
pub fn shard_rows(height: usize, opts: &TileOptions, multiple: usize, index: usize, count: usize) -> [usize; 2] {
    let ys = band_origins(height, opts, multiple);
    let b = ys.len();
    let (lo, hi) = (index * b / count.max(1), (index + 1) * b / count.max(1));
    let at = |i: usize| if i == 0 { 0 } else if i >= b { height } else { ys[i].min(height) };
    [at(lo), at(hi)]
}

/// Segments `src` into `sink` through `run` (`[B, 3, th, tw]` → `[B, C, th, tw]` logits).
/// `multiple` is the model's spatial multiple; `progress(done_rows, height)`.
pub fn segment_tiled(
    run: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    src: &mut dyn RowSource,
    sink: &mut dyn RowSink,
    opts: &TileOptions,
    multiple: usize,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TileStats> {
    segment_tiled_skipping(run, src, sink, opts, multiple, None, None, progress)
}

/// [`segment_tiled`], not running the tiles for which `skip` holds (given the tile's
/// `[x0, y0, x1, y1]` in the image): they are background, blended with their neighbours as
/// a run tile would be (probability 0, or class 0 with probability 1). With `rows`
/// (`[first, end)`, from [`shard_rows`]), only those output rows go to `sink`, and only the
/// bands whose tiles reach them run: each shard's rows are exactly those of a whole run.
#[allow(clippy::too_many_arguments)]
pub fn segment_tiled_skipping(
    run: &mut dyn FnMut(&Tensor) -> Result<Tensor>,
    src: &mut dyn RowSource,
    sink: &mut dyn RowSink,
    opts: &TileOptions,
    multiple: usize,
    skip: Option<&dyn Fn([usize; 4]) -> bool>,
    rows_out: Option<[usize; 2]>,
    progress: &mut dyn FnMut(usize, usize),
) -> Result<TileStats> {
    let (w, h) = (src.width(), src.height());
    let m = multiple.max(1);
    opts.check(m)?;
    // A side shorter than the tile gets one tile padded up to the multiple.
    let th = if h >= opts.tile { opts.tile } else { h.div_ceil(m) * m };
    let tw = if w >= opts.tile { opts.tile } else { w.div_ceil(m) * m };
    // Origins stay on the model's grid (multiples of `m`) so pooling windows line up with a
    // whole-image run.
    let step = ((opts.tile - opts.overlap) / m * m).max(m);
    let ramp = opts.tile - step;
    let (hp, wp) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
    let (ys, xs) = (origins(hp, th, step), origins(wp, tw, step));
    let wx: Vec<Vec<f32>> = xs.iter().map(|&x0| (0..tw).map(|i| window(i, tw, x0, wp, ramp)).collect()).collect();
    let pre = &opts.pre;
    let scale: [f32; 3] = [1.0 / (255.0 * pre.std[0]), 1.0 / (255.0 * pre.std[1]), 1.0 / (255.0 * pre.std[2])];
    let shift: [f32; 3] = [-pre.mean[0] / pre.std[0], -pre.mean[1] / pre.std[1], -pre.mean[2] / pre.std[2]];

    let [row_lo, row_hi] = rows_out.unwrap_or([0, h]);
    if row_lo > row_hi || row_hi > h {
        return Err(Error::Internal(format!("tile rows {row_lo}..{row_hi} of {h}")));
    }
    // The bands whose tiles reach the rows to write; rows above the first are skipped.
    let first_band = ys.iter().position(|&y0| y0 + th > row_lo).unwrap_or(ys.len());
    let last_band = ys.iter().rposition(|&y0| y0 < row_hi).map_or(0, |b| b + 1);
    let start = ys.get(first_band).copied().unwrap_or(h).min(h);
    debug_assert_eq!(start, first_row_read(h, opts, multiple, [row_lo, row_hi]));
    src.skip_rows(start)?;
    let mut rows: VecDeque<Vec<u8>> = VecDeque::new(); // input rows [in_first, in_first + len)
    let mut in_first = start;
    let mut read = start;
    let mut acc: VecDeque<(Vec<f32>, Vec<f32>)> = VecDeque::new(); // (probs W·C, weights W) for rows [acc_first, …)
    let mut acc_first = start;
    let mut channels = 0usize;
    let mut emitted = start;
    let mut out_row = vec![0.0f32; w];
    let mut tiles = 0usize;
    let mut skipped = 0usize;
    if skip.is_some() {
        // A skipped tile adds background to the accumulators, whose width needs the number of
        // classes: one blank tile tells it.
        let out = run(&Tensor::new(vec![1, 3, th, tw], vec![0.0; 3 * th * tw])?)?;
        channels = out.shape().get(1).copied().filter(|&c| c > 0).ok_or_else(|| Error::OutputShape { expected: format!("a [1, C, {th}, {tw}] map"), got: out.shape().to_vec() })?;
    }

    for (bi, &y0) in ys.iter().enumerate() {
        if bi < first_band || bi >= last_band.max(first_band) {
            continue;
        }
        let y_end = (y0 + th).min(h);
        while read < y_end {
            let mut r = vec![0u8; w * 3];
            src.next_row(&mut r)?;
            rows.push_back(r);
            read += 1;
        }
        while in_first < y0 {
            rows.pop_front();
            in_first += 1;
        }
        let wy: Vec<f32> = (0..th).map(|i| window(i, th, y0, hp, ramp)).collect();
        let mut todo: Vec<(usize, &usize)> = Vec::with_capacity(xs.len());
        for (xi, x0) in xs.iter().enumerate() {
            if skip.is_some_and(|f| f([*x0, y0, (*x0 + tw).min(w), y_end])) {
                let c = channels;
                while acc_first + acc.len() < y_end {
                    acc.push_back((vec![0.0; w * c], vec![0.0; w]));
                }
                for yy in 0..(y_end - y0) {
                    let (probs, weights) = &mut acc[y0 + yy - acc_first];
                    for xx in 0..((*x0 + tw).min(w) - x0) {
                        let wt = wy[yy] * wx[xi][xx];
                        if c > 1 {
                            probs[(x0 + xx) * c] += wt;
                        }
                        weights[x0 + xx] += wt;
                    }
                }
                skipped += 1;
            } else {
                todo.push((xi, x0));
            }
        }
        for chunk in todo.chunks(opts.batch.max(1)) {
            let b = chunk.len();
            let mut data = vec![0.0f32; b * 3 * th * tw];
            for (k, &(_, &x0)) in chunk.iter().enumerate() {
                let x_end = (x0 + tw).min(w);
                for yy in 0..(y_end - y0) {
                    let row = &rows[y0 + yy - in_first];
                    for c in 0..3 {
                        let dst = &mut data[((k * 3 + c) * th + yy) * tw..][..x_end - x0];
                        for (d, px) in dst.iter_mut().zip(row[x0 * 3..x_end * 3].chunks_exact(3)) {
                            *d = f32::from(px[c]) * scale[c] + shift[c];
                        }
                    }
                }
            }
            let out = run(&Tensor::new(vec![b, 3, th, tw], data)?)?;
            let s = out.shape();
            if s.len() != 4 || s[0] != b || s[2] != th || s[3] != tw || s[1] == 0 {
                return Err(Error::OutputShape { expected: format!("a [{b}, C, {th}, {tw}] map"), got: s.to_vec() });
            }
            let c = s[1];
            if channels == 0 {
                channels = c;
            }
            if c != channels {
                return Err(Error::OutputShape { expected: format!("{channels} classes, as the first tile"), got: s.to_vec() });
            }
            while acc_first + acc.len() < y_end {
                acc.push_back((vec![0.0; w * c], vec![0.0; w]));
            }
            let od = out.data();
            for (k, &(xi, &x0)) in chunk.iter().enumerate() {
                let x_end = (x0 + tw).min(w);
                for yy in 0..(y_end - y0) {
                    let (probs, weights) = &mut acc[y0 + yy - acc_first];
                    for xx in 0..(x_end - x0) {
                        let wt = wy[yy] * wx[xi][xx];
                        let at = |ch: usize| od[((k * c + ch) * th + yy) * tw + xx];
                        let x = x0 + xx;
                        if c == 1 {
                            probs[x] += wt / (1.0 + (-at(0)).exp());
                        } else {
                            let mx = (0..c).map(at).fold(f32::NEG_INFINITY, f32::max);
                            let z: f32 = (0..c).map(|ch| (at(ch) - mx).exp()).sum();
                            for ch in 0..c {
                                probs[x * c + ch] += wt * (at(ch) - mx).exp() / z;
                            }
                        }
                        weights[x] += wt;
                    }
                }
            }
            tiles += b;
        }
        // Rows above the next band's origin are final.
        let done_to = if bi + 1 == last_band { row_hi.max(emitted) } else { ys.get(bi + 1).copied().unwrap_or(h).min(row_hi) };
        while emitted < done_to {
            let (probs, weights) = acc.pop_front().ok_or_else(|| Error::Internal("tile accumulator underflow".into()))?;
            acc_first += 1;
            for x in 0..w {
                let wsum = weights[x].max(f32::MIN_POSITIVE);
                out_row[x] = if channels == 1 {
                    let p = probs[x] / wsum;
                    if opts.threshold < 0.0 { p } else { f32::from(u8::from(p > opts.threshold)) }
                } else {
                    let best = (0..channels).fold(0, |b, ch| if probs[x * channels + ch] > probs[x * channels + b] { ch } else { b });
                    best as f32 / (channels - 1) as f32
                };
            }
            if emitted >= row_lo {
                sink.write_row(&out_row)?;
            }
            emitted += 1;
        }
        progress(emitted, h);
    }
    Ok(TileStats { width: w, height: h, tiles, tile_h: th, tile_w: tw, channels, skipped, rows: [row_lo, row_hi] })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_cover_the_axis() {
        assert_eq!(origins(100, 128, 96), vec![0]);
        assert_eq!(origins(128, 128, 96), vec![0]);
        assert_eq!(origins(304, 128, 96), vec![0, 96, 176]);
        for len in [136, 264, 1000, 1032] {
            let o = origins(len, 128, 96);
            assert_eq!(*o.last().unwrap() + 128, len);
            assert!(o.iter().all(|x| x % 8 == 0), "{o:?}");
            assert!(o.windows(2).all(|p| p[1] > p[0] && p[1] - p[0] <= 96));
        }
    }

    #[test]
    fn window_is_positive_and_flat_at_borders() {
        for i in 0..64 {
            assert!(window(i, 64, 32, 200, 16) > 0.0);
            assert_eq!(window(i, 64, 0, 64, 16), 1.0);
        }
        assert_eq!(window(0, 64, 0, 200, 16), 1.0);
        assert!(window(63, 64, 0, 200, 16) < 0.01);
        // Across an overlap, one of two neighbours always has full weight or the sum is positive.
        for i in 0..16 {
            let (a, b) = (window(48 + i, 64, 0, 200, 16), window(i, 64, 48, 200, 16));
            assert!(a + b > 0.5, "{i}: {a} + {b}");
        }
    }
}
