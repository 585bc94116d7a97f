//! Whole-slide images: tiled or stripped TIFF and BigTIFF, read one band of chunks at a time
//! ([`TiffRows`]), and tiled TIFF written tile by tile ([`TiffWriter`]).
//!
//! **Reading** goes through the `tiff` crate, which decodes one chunk (tile or strip) at a
//! time: uncompressed, LZW, Deflate and JPEG. A band is one row of chunks, `[chunk height]
//! [width · 3]` bytes, so memory follows the slide's width, never its area. 8-bit RGB, RGBA
//! (alpha dropped), grayscale and YCbCr (JPEG tiles as most slide scanners write them,
//! converted with the JFIF matrix) are read; other depths and colour types are refused by name.
//! Every image (IFD) of the file is a level: a pyramid's reduced-resolution copies, in file
//! order. The resolution, when the file states one (XResolution with a centimetre or inch
//! unit), gives each level's microns per pixel.
//!
//! **Tissue** ([`TissueMap`]): most of a slide is glass, bright and unsaturated. On a
//! thumbnail (a low-resolution level, or the slide box-filtered while streamed), Otsu's
//! threshold on saturation splits the pixels; a pixel is glass when it is on the unsaturated
//! side *and* bright (max channel ≥ [`GLASS_BRIGHTNESS`]), so a slide with no glass at all
//! (Otsu then splits the tissue itself) keeps every tile.
//!
//! **Writing** ([`TiffWriter`]) takes whole tiles in any order and writes the IFDs at the end:
//! one per level, with the tile offsets and byte counts, classic TIFF while the file stays
//! under 4 GiB and BigTIFF when its raw pixels could pass it.

use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use tiff::decoder::{ChunkType, Decoder, DecodingResult, Limits};
use tiff::tags::Tag;
use tiff::ColorType;

use crate::error::{Error, Result};

/// Bytes one decoded chunk may take: a 4096² RGB tile is 48 MiB.
const CHUNK_LIMIT: usize = 256 << 20;

/// One image of a TIFF file.
#[derive(Clone, Debug, PartialEq)]
pub struct Level {
    pub index: usize,
    pub width: usize,
    pub height: usize,
    /// Tile `[w, h]`, or a strip's `[width, rows]`.
    pub chunk: [usize; 2],
    pub tiled: bool,
    pub compression: String,
    pub color: String,
    /// Microns per pixel, when the file states its resolution.
    pub mpp: Option<f64>,
}

fn bad(path: &Path, e: impl std::fmt::Display) -> Error {
    Error::Image { path: path.to_path_buf(), reason: e.to_string() }
}

fn open(path: &Path) -> Result<BufReader<File>> {
    Ok(BufReader::new(File::open(path).map_err(|e| Error::io(path, e))?))
}

/// A decoder over `r` (named `path` in errors) with chunk buffers bounded by [`CHUNK_LIMIT`].
fn decoder<R: Read + Seek>(r: R, path: &Path) -> Result<Decoder<R>> {
    let mut limits = Limits::default();
    limits.decoding_buffer_size = CHUNK_LIMIT;
    limits.intermediate_buffer_size = CHUNK_LIMIT;
    Ok(Decoder::new(r).map_err(|e| bad(path, e))?.with_limits(limits))
}

fn compression_name(c: u16) -> String {
    match c {
        1 => "none".into(),
        5 => "LZW".into(),
        7 => "JPEG".into(),
        8 | 32946 => "Deflate".into(),
        32773 => "PackBits".into(),
        other => format!("compression {other}"),
    }
}

/// The current image's description.
fn describe<R: Read + Seek>(d: &mut Decoder<R>, path: &Path, index: usize) -> Result<Level> {
    let (w, h) = d.dimensions().map_err(|e| bad(path, e))?;
    let color = d.colortype().map_or_else(|e| format!("unsupported ({e})"), |c| format!("{c:?}"));
    let tiled = matches!(d.get_chunk_type(), ChunkType::Tile);
    let (cw, ch) = d.chunk_dimensions();
    let compression = d.find_tag_unsigned::<u16>(Tag::Compression).ok().flatten().map_or_else(|| "none".into(), compression_name);
    let unit = d.find_tag_unsigned::<u16>(Tag::ResolutionUnit).ok().flatten().unwrap_or(2);
    let xres = d.find_tag(Tag::XResolution).ok().flatten().and_then(|v| match v {
        tiff::decoder::ifd::Value::Rational(n, dd) if dd > 0 && n > 0 => Some(f64::from(n) / f64::from(dd)),
        _ => None,
    });
    let mpp = xres.and_then(|r| match unit {
        3 => Some(10_000.0 / r),
        2 => Some(25_400.0 / r),
        _ => None,
    });
    Ok(Level { index, width: w as usize, height: h as usize, chunk: [cw as usize, ch as usize], tiled, compression, color, mpp })
}

/// Every image of the TIFF file at `path`, in file order.
pub fn levels(path: &Path) -> Result<Vec<Level>> {
    levels_of(open(path)?, path)
}

/// Every image of the TIFF data `r` (named `path` in errors), in file order.
pub fn levels_of<R: Read + Seek>(r: R, path: &Path) -> Result<Vec<Level>> {
    let mut d = decoder(r, path)?;
    let mut out = vec![describe(&mut d, path, 0)?];
    while d.more_images() {
        d.next_image().map_err(|e| bad(path, e))?;
        let i = out.len();
        out.push(describe(&mut d, path, i)?);
        if out.len() > 4096 {
            return Err(bad(path, "more than 4096 images in one file"));
        }
    }
    Ok(out)
}

/// Whether `path` names a TIFF file (by extension).
pub fn is_tiff(path: &Path) -> bool {
    path.extension().is_some_and(|e| e.eq_ignore_ascii_case("tif") || e.eq_ignore_ascii_case("tiff") || e.eq_ignore_ascii_case("svs"))
}

/// The level to read: `level` when given (checked), else the one whose microns per pixel are
/// closest to `mpp` (every level must state its resolution), else level 0.
pub fn pick_level(path: &Path, all: &[Level], level: Option<usize>, mpp: Option<f64>) -> Result<usize> {
    match (level, mpp) {
        (Some(l), _) if l < all.len() => Ok(l),
        (Some(l), _) => Err(Error::Argument(format!("--level {l}: {} has {} level(s), 0..={}", path.display(), all.len(), all.len().saturating_sub(1)))),
        (None, Some(m)) if m.is_finite() && m > 0.0 => {
            let with: Vec<(usize, f64)> = all.iter().filter_map(|l| l.mpp.map(|p| (l.index, p))).collect();
            if with.len() < all.len() {
                return Err(Error::Argument(format!("--mpp {m}: {} does not state the resolution of every level; use --level", path.display())));
            }
            Ok(with.iter().min_by(|a, b| (a.1 - m).abs().total_cmp(&(b.1 - m).abs())).map_or(0, |l| l.0))
        }
        (None, Some(m)) => Err(Error::Argument(format!("--mpp {m}: must be a positive number of microns per pixel"))),
        (None, None) => Ok(0),
    }
}

/// One level of a TIFF file as 8-bit RGB rows, top to bottom, one band of chunks in memory.
pub struct TiffRows<R: Read + Seek = BufReader<File>> {
    decoder: Decoder<R>,
    path: PathBuf,
    width: usize,
    height: usize,
    chunk: [usize; 2],
    across: usize,
    color: ColorType,
    /// `[chunk rows][width · 3]`: the band holding rows `band_y..band_y + chunk[1]`.
    band: Vec<u8>,
    band_y: Option<usize>,
    y: usize,
    /// The decoded chunk, reused.
    chunk_buf: DecodingResult,
}

impl TiffRows {
    /// Opens level `level` of `path`.
    pub fn open(path: &Path, level: usize) -> Result<Self> {
        TiffRows::from_reader(open(path)?, path, level)
    }
}

impl<R: Read + Seek> TiffRows<R> {
    /// Level `level` of the TIFF data `r` (named `path` in errors).
    pub fn from_reader(r: R, path: &Path, level: usize) -> Result<Self> {
        let mut d = decoder(r, path)?;
        if level > 0 && d.seek_to_image(level).is_err() {
            // Out of range, or a directory that does not read: the levels say which.
            let inner = d.inner();
            inner.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
            let count = levels_of(inner, path)?.len();
            return Err(Error::Argument(format!("--level {level}: {} has {count} level(s), 0..={}", path.display(), count.saturating_sub(1))));
        }
        let (w, h) = d.dimensions().map_err(|e| bad(path, e))?;
        let color = d.colortype().map_err(|e| bad(path, e))?;
        if !matches!(color, ColorType::RGB(8) | ColorType::RGBA(8) | ColorType::Gray(8) | ColorType::GrayA(8) | ColorType::YCbCr(8)) {
            return Err(Error::Unsupported { what: format!("{}: TIFF colour type {color:?}", path.display()), hint: "8-bit RGB, RGBA, grayscale or YCbCr".into() });
        }
        if d.find_tag_unsigned::<u16>(Tag::PlanarConfiguration).ok().flatten() == Some(2) {
            return Err(Error::Unsupported { what: format!("{}: planar (separate) TIFF samples", path.display()), hint: "interleaved (chunky) samples".into() });
        }
        let (cw, ch) = d.chunk_dimensions();
        let (width, height, chunk) = (w as usize, h as usize, [cw.max(1) as usize, ch.max(1) as usize]);
        let across = width.div_ceil(chunk[0]);
        let band_len = chunk[1].checked_mul(width).and_then(|v| v.checked_mul(3)).filter(|&b| b <= CHUNK_LIMIT).ok_or_else(|| bad(path, format!("a band of {}x{} pixels is too large", width, chunk[1])))?;
        Ok(TiffRows { decoder: d, path: path.to_path_buf(), width, height, chunk, across, color, band: vec![0; band_len], band_y: None, y: 0, chunk_buf: DecodingResult::U8(Vec::new()) })
    }

    pub fn width(&self) -> usize {
        self.width
    }

    pub fn height(&self) -> usize {
        self.height
    }

    /// Decodes the band of chunks holding row `y`.
    fn load_band(&mut self, y: usize) -> Result<()> {
        let by = y / self.chunk[1];
        let rows = self.chunk[1].min(self.height - by * self.chunk[1]);
        for cx in 0..self.across {
            let idx = u32::try_from(by * self.across + cx).map_err(|_| bad(&self.path, "chunk index past 2^32"))?;
            let (dw, dh) = self.decoder.chunk_data_dimensions(idx);
            let (dw, dh) = (dw as usize, dh as usize);
            // Whole chunk rows (the padding of an edge tile included): the tiff crate reads
            // them in one piece, where its row-by-row path for cropped edge tiles fails on some
            // valid LZW streams ("no lzw end code found").
            let spp = match self.color {
                ColorType::RGBA(_) => 4,
                ColorType::Gray(_) => 1,
                ColorType::GrayA(_) => 2,
                _ => 3,
            };
            let stride_px = self.chunk[0].max(dw);
            // The output row stride, in bytes.
            self.decoder.read_chunk_to_buffer(&mut self.chunk_buf, idx, stride_px * spp).map_err(|e| bad(&self.path, format!("chunk {idx}: {e}")))?;
            let data = match &self.chunk_buf {
                DecodingResult::U8(v) => v,
                _ => return Err(bad(&self.path, format!("chunk {idx} is not 8-bit"))),
            };
            let x0 = cx * self.chunk[0];
            let cols = dw.min(self.width - x0);
            if data.len() < (dh.max(1) - 1) * stride_px * spp + dw * spp {
                return Err(bad(&self.path, format!("chunk {idx} holds {} bytes, not {dw}x{dh}x{spp}", data.len())));
            }
            for r in 0..rows.min(dh) {
                let src = &data[r * stride_px * spp..][..cols * spp];
                let dst = &mut self.band[(r * self.width + x0) * 3..][..cols * 3];
                for (d, s) in dst.chunks_exact_mut(3).zip(src.chunks_exact(spp)) {
                    match self.color {
                        ColorType::Gray(_) | ColorType::GrayA(_) => d.fill(s[0]),
                        ColorType::YCbCr(_) => d.copy_from_slice(&ycbcr_to_rgb(s[0], s[1], s[2])),
                        _ => d.copy_from_slice(&s[..3]),
                    }
                }
            }
        }
        self.band_y = Some(by * self.chunk[1]);
        Ok(())
    }

    /// Skips `n` rows without decoding them (bands are decoded when a row is read).
    pub fn skip_rows(&mut self, n: usize) -> Result<()> {
        self.y = self.y.checked_add(n).filter(|&y| y <= self.height).ok_or_else(|| bad(&self.path, "skipped past the last row"))?;
        Ok(())
    }

    /// Fills `rgb` (`3 · width` bytes) with the next row.
    pub fn next_row(&mut self, rgb: &mut [u8]) -> Result<()> {
        if self.y >= self.height {
            return Err(bad(&self.path, "read past the last row"));
        }
        if self.band_y.is_none_or(|b| self.y >= b + self.chunk[1]) {
            self.load_band(self.y)?;
        }
        let r = self.y - self.band_y.unwrap_or(0);
        rgb.copy_from_slice(&self.band[r * self.width * 3..(r + 1) * self.width * 3]);
        self.y += 1;
        Ok(())
    }
}

/// Least brightness (max of R, G, B) of a glass pixel.
pub const GLASS_BRIGHTNESS: u8 = 200;

/// Otsu's threshold of a 256-bin histogram: the level `t` that maximises the between-class
/// variance of `[0, t]` and `(t, 255]`.
pub fn otsu(hist: &[u64; 256]) -> u8 {
    let total: u64 = hist.iter().sum();
    let sum: f64 = hist.iter().enumerate().map(|(i, &n)| i as f64 * n as f64).sum();
    let (mut w0, mut s0, mut best, mut at) = (0u64, 0f64, -1f64, 0u8);
    for (t, &n) in hist.iter().enumerate() {
        w0 += n;
        s0 += t as f64 * n as f64;
        let w1 = total - w0;
        if w0 == 0 || w1 == 0 {
            continue;
        }
        let (m0, m1) = (s0 / w0 as f64, (sum - s0) / w1 as f64);
        let between = w0 as f64 * w1 as f64 * (m0 - m1) * (m0 - m1);
        if between > best {
            best = between;
            at = t as u8;
        }
    }
    at
}

/// Which parts of a slide hold tissue, on a thumbnail of it.
#[derive(Clone, Debug)]
pub struct TissueMap {
    pub width: usize,
    pub height: usize,
    /// `[height][width]`.
    pub tissue: Vec<bool>,
    /// Otsu's saturation threshold (0–255).
    pub threshold: u8,
}

impl TissueMap {
    /// The map of an RGB thumbnail `rgb` of `width × height`.
    pub fn from_rgb(rgb: &[u8], width: usize, height: usize) -> TissueMap {
        let sat = |p: &[u8]| {
            let (mx, mn) = (p[0].max(p[1]).max(p[2]), p[0].min(p[1]).min(p[2]));
            if mx == 0 { 0 } else { ((u32::from(mx - mn) * 255) / u32::from(mx)) as u8 }
        };
        let mut hist = [0u64; 256];
        for p in rgb.chunks_exact(3) {
            hist[usize::from(sat(p))] += 1;
        }
        let threshold = otsu(&hist);
        let tissue = rgb.chunks_exact(3).map(|p| sat(p) > threshold || p[0].max(p[1]).max(p[2]) < GLASS_BRIGHTNESS).collect();
        TissueMap { width, height, tissue, threshold }
    }

    /// Whether the rectangle `[x0, x1) × [y0, y1)` of an image of `[iw, ih]` pixels (the level
    /// being segmented) holds tissue on the map: at least `min_fraction` of the map pixels it
    /// covers, and at least one.
    pub fn covers(&self, [x0, y0, x1, y1]: [usize; 4], [iw, ih]: [usize; 2], min_fraction: f64) -> bool {
        let sx = |x: usize| (x * self.width / iw.max(1)).min(self.width);
        let sy = |y: usize| (y * self.height / ih.max(1)).min(self.height);
        let (mx0, my0) = (sx(x0), sy(y0));
        let (mx1, my1) = (sx(x1).max(mx0 + 1).min(self.width), sy(y1).max(my0 + 1).min(self.height));
        let (mut hit, mut all) = (0usize, 0usize);
        for y in my0..my1 {
            for x in mx0..mx1 {
                all += 1;
                hit += usize::from(self.tissue[y * self.width + x]);
            }
        }
        hit > 0 && hit as f64 >= min_fraction * all as f64
    }

    /// Fraction of the map that is tissue.
    pub fn fraction(&self) -> f64 {
        self.tissue.iter().filter(|&&t| t).count() as f64 / self.tissue.len().max(1) as f64
    }
}

/// An RGB thumbnail of level `level` of `path` (whose levels are `all`), at most `max_side` pixels on its longer side:
/// the smallest level of the file at least half that size when one is (read band by band),
/// else level `level` itself box-filtered while streamed. Returns `(rgb, width, height)`.
pub fn thumbnail(path: &Path, all: &[Level], level: usize, max_side: usize) -> Result<(Vec<u8>, usize, usize)> {
    let base = all.get(level).ok_or_else(|| Error::Argument(format!("--level {level}: {} has {} level(s)", path.display(), all.len())))?;
    // Levels of the same aspect no larger than the one segmented, smallest first.
    let small = all
        .iter()
        .filter(|l| l.width <= base.width && l.height <= base.height && l.width.max(l.height) >= max_side / 2 && l.width.max(l.height) <= 4 * max_side)
        .min_by_key(|l| l.width * l.height)
        .map_or(level, |l| l.index);
    let mut rows = TiffRows::open(path, small)?;
    let (w, h) = (rows.width(), rows.height());
    let f = w.max(h).div_ceil(max_side.max(1)).max(1);
    let (tw, th) = (w.div_ceil(f), h.div_ceil(f));
    let mut sums = vec![0u32; tw * th * 3];
    let mut counts = vec![0u32; tw * th];
    let mut row = vec![0u8; w * 3];
    for y in 0..h {
        rows.next_row(&mut row)?;
        for x in 0..w {
            let i = (y / f) * tw + x / f;
            counts[i] += 1;
            for c in 0..3 {
                sums[i * 3 + c] += u32::from(row[x * 3 + c]);
            }
        }
    }
    let rgb = sums.iter().enumerate().map(|(i, &s)| (s / counts[i / 3].max(1)) as u8).collect();
    Ok((rgb, tw, th))
}

/// JFIF's full-range YCbCr to RGB.
fn ycbcr_to_rgb(y: u8, cb: u8, cr: u8) -> [u8; 3] {
    let (y, cb, cr) = (f32::from(y), f32::from(cb) - 128.0, f32::from(cr) - 128.0);
    let c = |v: f32| v.round().clamp(0.0, 255.0) as u8;
    [c(y + 1.402 * cr), c(y - 0.344_136 * cb - 0.714_136 * cr), c(y + 1.772 * cb)]
}

/// How [`TiffWriter`] compresses tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compression {
    None,
    Lzw,
    Deflate,
    /// Baseline JPEG, quality 90, written as YCbCr (as slide scanners do).
    Jpeg,
}

impl Compression {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "none" => Ok(Compression::None),
            "lzw" => Ok(Compression::Lzw),
            "deflate" => Ok(Compression::Deflate),
            "jpeg" => Ok(Compression::Jpeg),
            other => Err(Error::Argument(format!("compression {}: none, lzw, deflate or jpeg", other.escape_debug()))),
        }
    }

    fn tag(self) -> u16 {
        match self {
            Compression::None => 1,
            Compression::Lzw => 5,
            Compression::Jpeg => 7,
            Compression::Deflate => 8,
        }
    }
}

struct LevelOut {
    width: usize,
    height: usize,
    offsets: Vec<u64>,
    counts: Vec<u64>,
}

/// A tiled TIFF (or BigTIFF) of one or more levels, written tile by tile.
pub struct TiffWriter {
    file: BufWriter<File>,
    path: PathBuf,
    big: bool,
    tile: usize,
    /// Samples per pixel: 3 (RGB) or 1 (grayscale).
    spp: usize,
    compression: Compression,
    mpp: Option<f64>,
    levels: Vec<LevelOut>,
    pos: u64,
}

impl TiffWriter {
    /// A file at `path` with levels of `sizes` (`[width, height]`, level 0 first), square
    /// tiles of `tile` pixels (a multiple of 16), `spp` samples per pixel (3 or 1).
    pub fn create(path: &Path, sizes: &[[usize; 2]], tile: usize, spp: usize, compression: Compression, mpp: Option<f64>) -> Result<Self> {
        Self::create_as(path, sizes, tile, spp, compression, mpp, false)
    }

    /// [`TiffWriter::create`], BigTIFF even when classic TIFF would do when `bigtiff`.
    #[allow(clippy::too_many_arguments)]
    pub fn create_as(path: &Path, sizes: &[[usize; 2]], tile: usize, spp: usize, compression: Compression, mpp: Option<f64>, bigtiff: bool) -> Result<Self> {
        if tile == 0 || tile % 16 != 0 || !(spp == 1 || spp == 3) || sizes.is_empty() || sizes.iter().any(|s| s[0] == 0 || s[1] == 0 || s[0] > u32::MAX as usize || s[1] > u32::MAX as usize) {
            return Err(Error::Argument(format!("TIFF writer: tile {tile} (a multiple of 16), {spp} samples, sizes {sizes:?}")));
        }
        if compression == Compression::Jpeg && spp != 3 {
            return Err(Error::Argument("TIFF writer: JPEG tiles are RGB".into()));
        }
        let raw: u128 = sizes.iter().map(|s| (s[0].div_ceil(tile) * tile * s[1].div_ceil(tile) * tile * spp) as u128).sum();
        let big = bigtiff || raw >= 1 << 31;
        let f = File::create(path).map_err(|e| Error::io(path, e))?;
        let mut w = TiffWriter {
            file: BufWriter::new(f),
            path: path.to_path_buf(),
            big,
            tile,
            spp,
            compression,
            mpp,
            levels: sizes.iter().map(|s| {
                let n = s[0].div_ceil(tile) * s[1].div_ceil(tile);
                LevelOut { width: s[0], height: s[1], offsets: vec![0; n], counts: vec![0; n] }
            }).collect(),
            pos: 0,
        };
        // Header; the first IFD's offset is patched in `finish`.
        let header: Vec<u8> = if big { [&b"II"[..], &43u16.to_le_bytes(), &8u16.to_le_bytes(), &0u16.to_le_bytes(), &0u64.to_le_bytes()].concat() } else { [&b"II"[..], &42u16.to_le_bytes(), &0u32.to_le_bytes()].concat() };
        w.put(&header)?;
        Ok(w)
    }

    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        self.file.write_all(bytes).map_err(|e| Error::io(&self.path, e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }

    /// Tiles across and down of `level`.
    pub fn grid(&self, level: usize) -> [usize; 2] {
        let l = &self.levels[level];
        [l.width.div_ceil(self.tile), l.height.div_ceil(self.tile)]
    }

    /// Writes tile `(tx, ty)` of `level`: `tile · tile · spp` bytes, row-major, the part past
    /// the image's edge padding.
    pub fn write_tile(&mut self, level: usize, tx: usize, ty: usize, pixels: &[u8]) -> Result<()> {
        let [across, down] = self.grid(level.min(self.levels.len() - 1));
        if level >= self.levels.len() || tx >= across || ty >= down || pixels.len() != self.tile * self.tile * self.spp {
            return Err(Error::Internal(format!("TIFF writer: tile ({tx}, {ty}) of level {level} with {} bytes", pixels.len())));
        }
        let t = self.tile;
        let data: Vec<u8> = match self.compression {
            Compression::None => pixels.to_vec(),
            Compression::Lzw => weezl::encode::Encoder::with_tiff_size_switch(weezl::BitOrder::Msb, 8).encode(pixels).map_err(|e| bad(&self.path, e))?,
            Compression::Deflate => {
                let mut z = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::fast());
                z.write_all(pixels).map_err(|e| Error::io(&self.path, e))?;
                z.finish().map_err(|e| Error::io(&self.path, e))?
            }
            Compression::Jpeg => {
                let mut out = Vec::new();
                image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, 90).encode(pixels, t as u32, t as u32, image::ExtendedColorType::Rgb8).map_err(|e| bad(&self.path, e))?;
                out
            }
        };
        let i = ty * across + tx;
        self.levels[level].offsets[i] = self.pos;
        self.levels[level].counts[i] = data.len() as u64;
        self.put(&data)
    }

    /// Writes every level's IFD and closes the file. Tiles never written read as empty (0
    /// bytes): write them all.
    pub fn finish(mut self) -> Result<()> {
        if !self.big && self.pos >= u32::MAX as u64 - (1 << 20) {
            return Err(bad(&self.path, "classic TIFF past 4 GiB (compressed tiles larger than their raw size?)"));
        }
        let mut ifds = Vec::new();
        for li in 0..self.levels.len() {
            ifds.push(self.write_ifd(li)?);
        }
        let (big, path) = (self.big, self.path.clone());
        self.file.flush().map_err(|e| Error::io(&path, e))?;
        let f = self.file.get_mut();
        // The header points at the first IFD; each IFD's last word at the next.
        let mut patch = |at: u64, v: u64| -> std::io::Result<()> {
            f.seek(SeekFrom::Start(at))?;
            f.write_all(&if big { v.to_le_bytes().to_vec() } else { (v as u32).to_le_bytes().to_vec() })
        };
        patch(if big { 8 } else { 4 }, ifds[0].0).map_err(|e| Error::io(&path, e))?;
        for pair in ifds.windows(2) {
            patch(pair[0].1, pair[1].0).map_err(|e| Error::io(&path, e))?;
        }
        f.flush().map_err(|e| Error::io(&path, e))
    }

    /// Writes level `li`'s out-of-line values and its IFD; returns the IFD's offset and where
    /// its next-IFD word lies.
    fn write_ifd(&mut self, li: usize) -> Result<(u64, u64)> {
        let big = self.big;
        let word = if big { 8 } else { 4 };
        // (tag, type, count, value bytes)
        let mut entries: Vec<(u16, u16, u64, Vec<u8>)> = Vec::new();
        let short = |v: &[u16]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let long = |v: u32| v.to_le_bytes().to_vec();
        let l = &self.levels[li];
        let offsets: Vec<u8> = if big { l.offsets.iter().flat_map(|o| o.to_le_bytes()).collect() } else { l.offsets.iter().flat_map(|&o| (o as u32).to_le_bytes()).collect() };
        let counts: Vec<u8> = if big { l.counts.iter().flat_map(|o| o.to_le_bytes()).collect() } else { l.counts.iter().flat_map(|&o| (o as u32).to_le_bytes()).collect() };
        let (off_type, n) = (if big { 16 } else { 4 }, l.offsets.len() as u64);
        let photometric = match (self.spp, self.compression) {
            (1, _) => 1,
            (_, Compression::Jpeg) => 6,
            _ => 2,
        };
        entries.push((254, 4, 1, long(u32::from(li > 0))));
        entries.push((256, 4, 1, long(l.width as u32)));
        entries.push((257, 4, 1, long(l.height as u32)));
        entries.push((258, 3, self.spp as u64, short(&vec![8; self.spp])));
        entries.push((259, 3, 1, short(&[self.compression.tag()])));
        entries.push((262, 3, 1, short(&[photometric])));
        entries.push((277, 3, 1, short(&[self.spp as u16])));
        if let Some(mpp) = self.mpp {
            // Pixels per centimetre of this level, as a rational with a 1000 denominator.
            let per_cm = (10_000.0 / (mpp * (1u64 << li.min(62)) as f64) * 1000.0).round().clamp(1.0, u32::MAX as f64) as u32;
            let rational = [per_cm.to_le_bytes(), 1000u32.to_le_bytes()].concat();
            entries.push((282, 5, 1, rational.clone()));
            entries.push((283, 5, 1, rational));
        }
        entries.push((284, 3, 1, short(&[1])));
        if self.mpp.is_some() {
            entries.push((296, 3, 1, short(&[3])));
        }
        entries.push((322, 4, 1, long(self.tile as u32)));
        entries.push((323, 4, 1, long(self.tile as u32)));
        entries.push((324, off_type, n, offsets));
        entries.push((325, off_type, n, counts));
        if photometric == 6 {
            entries.push((530, 3, 2, short(&[1, 1])));
        }
        // Values longer than a word go before the IFD, word-aligned.
        let mut inline: Vec<Vec<u8>> = Vec::with_capacity(entries.len());
        for (_, _, _, v) in &entries {
            if v.len() > word {
                if self.pos % 2 == 1 {
                    self.put(&[0])?;
                }
                let at = self.pos;
                self.put(v)?;
                inline.push(if big { at.to_le_bytes().to_vec() } else { (at as u32).to_le_bytes().to_vec() });
            } else {
                let mut w = v.clone();
                w.resize(word, 0);
                inline.push(w);
            }
        }
        if self.pos % 2 == 1 {
            self.put(&[0])?;
        }
        let at = self.pos;
        let mut ifd = Vec::new();
        if big {
            ifd.extend_from_slice(&(entries.len() as u64).to_le_bytes());
        } else {
            ifd.extend_from_slice(&(entries.len() as u16).to_le_bytes());
        }
        for ((tag, ty, count, _), value) in entries.iter().zip(&inline) {
            ifd.extend_from_slice(&tag.to_le_bytes());
            ifd.extend_from_slice(&ty.to_le_bytes());
            if big {
                ifd.extend_from_slice(&count.to_le_bytes());
            } else {
                ifd.extend_from_slice(&(*count as u32).to_le_bytes());
            }
            ifd.extend_from_slice(value);
        }
        let next_at = at + ifd.len() as u64;
        ifd.extend_from_slice(&vec![0u8; word]);
        self.put(&ifd)?;
        Ok((at, next_at))
    }
}
