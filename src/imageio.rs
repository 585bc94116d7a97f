//! Images and arrays in and out: decoding PNG/JPEG into normalised NCHW tensors
//! (resize, center-crop, mean/std), writing masks as PNG, and reading/writing `.npy` f32.

use std::path::Path;

use crate::error::{Error, Result};
use crate::tensor::{checked_numel, Tensor};

/// How an image becomes a model input.
#[derive(Clone, Debug)]
pub struct Preprocess {
    /// Resize the shorter side to this (0: no resize).
    pub resize: usize,
    /// Center-crop to this square (0: no crop).
    pub crop: usize,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Default for Preprocess {
    /// torchvision's ImageNet preprocessing: resize 256, crop 224, ImageNet mean and std.
    fn default() -> Self {
        Preprocess { resize: 256, crop: 224, mean: crate::tensor::IMAGENET_MEAN, std: crate::tensor::IMAGENET_STD }
    }
}

/// Images with more pixels than this are refused before they are decoded (`kestrel segment
/// --tile` streams larger PNGs); `KESTREL_MAX_PIXELS` changes it.
pub const MAX_PIXELS: u64 = 1 << 28;

/// The pixel limit in force: `KESTREL_MAX_PIXELS`, else [`MAX_PIXELS`].
pub fn max_pixels() -> u64 {
    std::env::var("KESTREL_MAX_PIXELS").ok().and_then(|s| s.trim().parse().ok()).unwrap_or(MAX_PIXELS)
}

/// Decodes an image file, checking the dimensions its header declares against
/// [`max_pixels`] first, and bounding the decoder's allocations (the image crate's `Limits`)
/// to what those dimensions need.
fn decode_any(path: &Path) -> Result<image::DynamicImage> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    decode_bytes(path, &bytes)
}

/// Reads only the header of an image file and refuses dimensions above [`max_pixels`], the
/// check [`decode`] makes first, so a command can refuse a huge image before it loads a model.
pub fn check_dimensions(path: &Path) -> Result<(u32, u32)> {
    let bad = |reason: String| Error::Image { path: path.to_path_buf(), reason };
    let (w, h) = if is_tiff_file(path) {
        // A TIFF's full-resolution level (`kestrel segment` streams slides; this is for
        // commands that decode an image whole).
        let l = crate::slide::levels(path)?.swap_remove(0);
        (u32::try_from(l.width).unwrap_or(u32::MAX), u32::try_from(l.height).unwrap_or(u32::MAX))
    } else {
        let reader = image::ImageReader::open(path).map_err(|e| Error::io(path, e))?.with_guessed_format().map_err(|e| bad(e.to_string()))?;
        reader.into_dimensions().map_err(|e| bad(e.to_string()))?
    };
    let (pixels, limit) = (u64::from(w) * u64::from(h), max_pixels());
    if pixels > limit {
        return Err(bad(format!("{w}×{h} is {pixels} pixels, above the limit of {limit} (KESTREL_MAX_PIXELS; `kestrel segment --tile` streams large PNGs)")));
    }
    Ok((w, h))
}

/// Whether `path` starts like a TIFF or BigTIFF file.
fn is_tiff_file(path: &Path) -> bool {
    use std::io::Read;
    let mut head = [0u8; 4];
    std::fs::File::open(path).and_then(|mut f| f.read_exact(&mut head)).is_ok() && is_tiff_bytes(&head)
}

fn is_tiff_bytes(b: &[u8]) -> bool {
    matches!(b.get(..4), Some(b"II*\0" | b"MM\0*" | b"II+\0" | b"MM\0+"))
}

/// [`decode`] of an image already in memory; `path` names it in errors.
pub fn decode_bytes(path: &Path, bytes: &[u8]) -> Result<image::DynamicImage> {
    let bad = |reason: String| Error::Image { path: path.to_path_buf(), reason };
    if is_tiff_bytes(bytes) {
        // A TIFF decoded whole: its full-resolution level, band by band, under the same limit.
        let mut rows = crate::slide::TiffRows::from_reader(std::io::Cursor::new(bytes), path, 0)?;
        let (w, h) = (rows.width(), rows.height());
        let (pixels, limit) = ((w as u64).saturating_mul(h as u64), max_pixels());
        if pixels > limit {
            return Err(bad(format!("{w}×{h} is {pixels} pixels, above the limit of {limit} (KESTREL_MAX_PIXELS; `kestrel segment` streams TIFF slides)")));
        }
        let mut rgb = vec![0u8; w * h * 3];
        for row in rgb.chunks_exact_mut(w * 3) {
            rows.next_row(row)?;
        }
        let img = image::RgbImage::from_raw(w as u32, h as u32, rgb).ok_or_else(|| bad("TIFF size".into()))?;
        return Ok(image::DynamicImage::ImageRgb8(img));
    }
    let reader = || image::ImageReader::new(std::io::Cursor::new(bytes)).with_guessed_format().map_err(|e| bad(e.to_string()));
    let (w, h) = reader()?.into_dimensions().map_err(|e| bad(e.to_string()))?;
    let (pixels, limit) = (u64::from(w) * u64::from(h), max_pixels());
    if pixels > limit {
        return Err(bad(format!("{w}×{h} is {pixels} pixels, above the limit of {limit} (KESTREL_MAX_PIXELS; `kestrel segment --tile` streams large PNGs)")));
    }
    let mut r = reader()?;
    let mut limits = image::Limits::default();
    // Up to 16-bit RGBA, plus the decoder's own buffers.
    limits.max_alloc = Some(pixels.saturating_mul(8).saturating_add(64 << 20));
    r.limits(limits);
    r.decode().map_err(|e| bad(e.to_string()))
}

/// Decodes an image file as RGB8.
pub fn decode(path: &Path) -> Result<image::RgbImage> {
    Ok(decode_any(path)?.to_rgb8())
}

/// Decodes an image file as 8-bit grayscale (masks).
pub fn decode_gray(path: &Path) -> Result<image::GrayImage> {
    Ok(decode_any(path)?.to_luma8())
}

/// Resizes, crops and normalises an RGB image into `[1, 3, H, W]`.
pub fn preprocess(img: &image::RgbImage, p: &Preprocess) -> Tensor {
    let mut img = img.clone();
    if p.resize > 0 {
        let (w, h) = img.dimensions();
        let s = p.resize as f32 / w.min(h).max(1) as f32;
        if p.crop > 0 && (w.max(h) as f32 * s) > (4 * p.resize) as f32 {
            // An elongated image (100000×1 would resize to 25.6 M × 256 pixels): keep only the
            // centre the crop will see, plus a margin for the filter, before resizing.
            let keep = (p.crop as f32 / s).ceil() as u32 + 4;
            let (cw, ch) = (keep.min(w), keep.min(h));
            img = image::imageops::crop_imm(&img, (w - cw) / 2, (h - ch) / 2, cw, ch).to_image();
        }
        let (w, h) = img.dimensions();
        let (nw, nh) = (((w as f32 * s).round() as u32).max(1), ((h as f32 * s).round() as u32).max(1));
        img = image::imageops::resize(&img, nw, nh, image::imageops::FilterType::Triangle);
    }
    if p.crop > 0 {
        let (w, h) = img.dimensions();
        let c = (p.crop as u32).min(w).min(h);
        img = image::imageops::crop_imm(&img, (w - c) / 2, (h - c) / 2, c, c).to_image();
    }
    to_tensor(&img, p)
}

/// Normalises an RGB image into `[1, 3, H, W]` without resizing.
pub fn to_tensor(img: &image::RgbImage, p: &Preprocess) -> Tensor {
    let (w, h) = (img.width() as usize, img.height() as usize);
    // An RgbImage holds at least w·h·3 bytes, row after row.
    let pixels = img.as_raw().get(..3usize.saturating_mul(w).saturating_mul(h)).unwrap_or(&[]);
    Tensor::from_rgb8(pixels, [h, w], p.mean, p.std).unwrap_or_else(|_| Tensor::zeros(vec![1, 3, h, w]))
}

/// Writes an 8-bit grayscale PNG from `[H, W]` values in [0, 1].
pub fn write_gray(path: &Path, values: &[f32], h: usize, w: usize) -> Result<()> {
    let buf: Vec<u8> = values.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round() as u8).collect();
    let img = image::GrayImage::from_raw(w as u32, h as u32, buf)
        .ok_or_else(|| Error::Internal(format!("mask of {h}x{w} has {} values", values.len())))?;
    img.save(path).map_err(|e| Error::Image { path: path.to_path_buf(), reason: e.to_string() })
}

/// Reads a little-endian f32 (`<f4`) C-order `.npy` file.
pub fn read_npy(path: &Path) -> Result<Tensor> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    npy_from_bytes(path, &bytes)
}

/// [`read_npy`] of a file already in memory; `path` names it in errors.
pub fn npy_from_bytes(path: &Path, bytes: &[u8]) -> Result<Tensor> {
    let bad = |r: &str| Error::BadTensor { name: path.display().to_string(), reason: r.to_string() };
    if bytes.len() < 10 || &bytes[..6] != b"\x93NUMPY" {
        return Err(bad("not a .npy file"));
    }
    let (hlen, start) = if bytes[6] == 1 {
        (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10)
    } else {
        if bytes.len() < 12 {
            return Err(bad("truncated header"));
        }
        (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12)
    };
    let header = bytes.get(start..start + hlen).ok_or_else(|| bad("truncated header"))?;
    let header = String::from_utf8_lossy(header);
    if !header.contains("'descr': '<f4'") {
        return Err(bad("only little-endian float32 ('<f4') arrays are supported"));
    }
    if header.contains("'fortran_order': True") {
        return Err(bad("Fortran-order arrays are not supported"));
    }
    let shape_str = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).ok_or_else(|| bad("no shape in header"))?;
    let shape: Vec<usize> = shape_str
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let n = checked_numel(&shape).and_then(|n| n.checked_mul(4)).ok_or_else(|| bad("shape overflows"))? / 4;
    let body = &bytes[start + hlen..];
    if body.len() != n * 4 {
        return Err(bad(&format!("shape {shape:?} needs {} bytes, file has {}", n * 4, body.len())));
    }
    let data = body.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect();
    Tensor::new(shape, data)
}

/// Writes a tensor as a little-endian f32 `.npy` file.
pub fn write_npy(path: &Path, t: &Tensor) -> Result<()> {
    std::fs::write(path, npy_bytes(t)).map_err(|e| Error::io(path, e))
}

/// Writes named tensors as a `.npz` file (a ZIP of stored `.npy` entries, as `numpy.savez`
/// writes). Names become entry names: characters other than ASCII letters, digits, `_`, `-`
/// and `.` are replaced by `_`, and a repeated name gets `_2`, `_3`, … Returns the keys
/// `numpy.load` will list, in order.
pub fn write_npz(path: &Path, arrays: &[(String, Tensor)]) -> Result<Vec<String>> {
    use std::io::Write;
    let io = |e: std::io::Error| Error::io(path, e);
    let zerr = |e: zip::result::ZipError| Error::io(path, std::io::Error::other(e.to_string()));
    let file = std::fs::File::create(path).map_err(io)?;
    let mut z = zip::ZipWriter::new(std::io::BufWriter::new(file));
    let opts = zip::write::SimpleFileOptions::default().compression_method(zip::CompressionMethod::Stored).large_file(true);
    let mut keys: Vec<String> = Vec::with_capacity(arrays.len());
    for (name, t) in arrays {
        let clean: String = name.chars().map(|c| if c.is_ascii_alphanumeric() || "_-.".contains(c) { c } else { '_' }).collect();
        let base = if clean.trim_matches('_').is_empty() { "output".to_string() } else { clean };
        let mut key = base.clone();
        let mut k = 2;
        while keys.contains(&key) {
            key = format!("{base}_{k}");
            k += 1;
        }
        z.start_file(format!("{key}.npy"), opts).map_err(zerr)?;
        z.write_all(&npy_bytes(t)).map_err(io)?;
        keys.push(key);
    }
    z.finish().map_err(zerr)?.flush().map_err(io)?;
    Ok(keys)
}

/// A tensor as the bytes of a version 1.0 little-endian f32 `.npy` file.
pub fn npy_bytes(t: &Tensor) -> Vec<u8> {
    let dims: Vec<String> = t.shape().iter().map(|d| d.to_string()).collect();
    let shape = if dims.len() == 1 { format!("{},", dims[0]) } else { dims.join(", ") };
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({shape}), }}");
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = Vec::with_capacity(10 + header.len() + t.numel() * 4);
    out.extend_from_slice(b"\x93NUMPY\x01\x00");
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    for v in t.data() {
        out.extend_from_slice(&v.to_le_bytes());
    }
    out
}
