//! Deterministic synthetic datasets: the data the reference models are trained on and the
//! held-out sets `kestrel eval` scores them on.
//!
//! - Classification ([`shape_sample`]): ten classes of shapes and textures
//!   ([`SHAPE_CLASSES`]) in random colours, sizes and positions, with Gaussian pixel noise.
//!   Sample `i` has class `i % 10`, so every prefix of a set is balanced.
//! - Segmentation ([`blob_sample`]): rotated elliptical "cells" on a shaded, noisy
//!   background, with small debris that is *not* foreground; the mask is the union of the cells.
//!
//! Sample `i` of seed `s` is a pure function of `(s, i)`: any subset can be regenerated alone,
//! on any platform (the rotations' sine and cosine are [`crate::detmath`]'s, not libm's).

use std::path::Path;

use crate::error::{Error, Result};
use crate::rng::Rng;

/// Class names of the shape dataset, in label order.
pub const SHAPE_CLASSES: [&str; 10] =
    ["circle", "square", "triangle", "plus", "ring", "hstripes", "vstripes", "checker", "diagonal", "xcross"];

fn sample_rng(seed: u64, index: u64) -> Rng {
    Rng::new(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ index.wrapping_mul(0xD1B5_4A32_D192_ED03).rotate_left(17))
}

fn colour(rng: &mut Rng) -> [f32; 3] {
    [rng.range(0.0, 1.0), rng.range(0.0, 1.0), rng.range(0.0, 1.0)]
}

/// Two colours at least `min_dist` apart (Euclidean, in [0, 1]³).
fn contrasting(rng: &mut Rng, min_dist: f32) -> ([f32; 3], [f32; 3]) {
    loop {
        let (a, b) = (colour(rng), colour(rng));
        let d = a.iter().zip(&b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
        if d >= min_dist {
            return (a, b);
        }
    }
}

fn to_u8(v: f32) -> u8 {
    (v.clamp(0.0, 1.0) * 255.0).round() as u8
}

/// Whether the point `(dx, dy)`, in units of the shape's radius around its centre, is inside
/// class `class`'s figure (texture period `period` in the same units).
fn inside(class: usize, dx: f32, dy: f32, period: f32) -> bool {
    let in_square = dx.abs() <= 0.9 && dy.abs() <= 0.9;
    let band = |t: f32| ((t + 4.0) / period).floor() as i64 % 2 == 0;
    match class {
        0 => dx * dx + dy * dy <= 1.0,
        1 => dx.abs() <= 0.8 && dy.abs() <= 0.8,
        2 => (-0.9..=0.8).contains(&dy) && dx.abs() <= (dy + 0.9) / 1.7 * 0.95,
        3 => (dx.abs() <= 0.28 && dy.abs() <= 0.95) || (dy.abs() <= 0.28 && dx.abs() <= 0.95),
        4 => (0.3..=1.0).contains(&(dx * dx + dy * dy)),
        5 => in_square && band(dy),
        6 => in_square && band(dx),
        7 => in_square && (band(dx) ^ band(dy)),
        8 => in_square && band((dx + dy) * std::f32::consts::FRAC_1_SQRT_2),
        _ => in_square && ((dx - dy).abs() <= 0.3 || (dx + dy).abs() <= 0.3),
    }
}

/// Where sample `index` of the shape set `seed` draws its figure: class, centre and radius in
/// pixels, texture period in radii.
#[derive(Clone, Copy, Debug)]
pub struct ShapeGeometry {
    pub class: usize,
    pub cx: f32,
    pub cy: f32,
    pub r: f32,
    pub period: f32,
}

impl ShapeGeometry {
    /// Whether pixel `(x, y)` (its centre) is part of the drawn figure.
    pub fn covers(&self, x: usize, y: usize) -> bool {
        inside(self.class, (x as f32 + 0.5 - self.cx) / self.r, (y as f32 + 0.5 - self.cy) / self.r, self.period)
    }
}

/// The figure of sample `index` (as [`shape_sample`] draws it), without drawing it.
pub fn shape_geometry(seed: u64, index: u64, size: usize) -> ShapeGeometry {
    shape_setup(seed, index, size).0
}

/// The sample's geometry, its colours and noise, and the generator positioned for the pixels.
fn shape_setup(seed: u64, index: u64, size: usize) -> (ShapeGeometry, [[f32; 3]; 2], f32, Rng) {
    let class = (index % SHAPE_CLASSES.len() as u64) as usize;
    let mut rng = sample_rng(seed, index);
    let (bg, fg) = contrasting(&mut rng, 0.45);
    let s = size as f32;
    let r = rng.range(0.24, 0.42) * s;
    let (cx, cy) = (rng.range(r, s - r), rng.range(r, s - r));
    let period = rng.range(0.3, 0.5);
    let noise = rng.range(0.02, 0.10);
    (ShapeGeometry { class, cx, cy, r, period }, [bg, fg], noise, rng)
}

/// Sample `index` of the shape-classification set `seed`: a `size`×`size` RGB image and its class.
pub fn shape_sample(seed: u64, index: u64, size: usize) -> (image::RgbImage, usize) {
    let (geo, [bg, fg], noise, mut rng) = shape_setup(seed, index, size);
    let class = geo.class;
    let mut img = image::RgbImage::new(size as u32, size as u32);
    for (x, y, px) in img.enumerate_pixels_mut() {
        let c = if geo.covers(x as usize, y as usize) { fg } else { bg };
        for k in 0..3 {
            px[k] = to_u8(c[k] + noise * rng.normal());
        }
    }
    (img, class)
}

/// Sample `index` of the blob-segmentation set `seed`: a `size`×`size` RGB image and its
/// binary mask (255 = cell).
pub fn blob_sample(seed: u64, index: u64, size: usize) -> (image::RgbImage, image::GrayImage) {
    let mut rng = sample_rng(seed ^ 0xB10B, index);
    let s = size as f32;
    let (bg, cell) = contrasting(&mut rng, 0.35);
    let shade = [rng.range(-0.2, 0.2), rng.range(-0.2, 0.2)];
    let noise = rng.range(0.03, 0.10);
    let n_cells = 1 + rng.below(6);
    let cells: Vec<[f32; 6]> = (0..n_cells)
        .map(|_| {
            let a = rng.range(0.06, 0.2) * s;
            let b = a * rng.range(0.5, 1.0);
            // centre x, centre y, semi-axes a and b, rotation, per-cell brightness.
            [rng.range(0.0, s), rng.range(0.0, s), a, b, rng.range(0.0, std::f32::consts::PI), rng.range(-0.12, 0.12)]
        })
        .collect();
    let debris: Vec<[f32; 3]> = (0..rng.below(8)).map(|_| [rng.range(0.0, s), rng.range(0.0, s), rng.range(0.8, 1.8)]).collect();
    let mut img = image::RgbImage::new(size as u32, size as u32);
    let mut mask = image::GrayImage::new(size as u32, size as u32);
    for y in 0..size {
        for x in 0..size {
            let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
            let mut hit = None;
            for c in &cells {
                let (dx, dy) = (px - c[0], py - c[1]);
                let (sn, cs) = crate::detmath::sin_cos(c[4]);
                let (u, v) = ((dx * cs + dy * sn) / c[2], (-dx * sn + dy * cs) / c[3]);
                if u * u + v * v <= 1.0 {
                    hit = Some(c[5]);
                }
            }
            let on_debris = debris.iter().any(|d| (px - d[0]).powi(2) + (py - d[1]).powi(2) <= d[2] * d[2]);
            let base = match hit {
                Some(b) => cell.map(|v| v + b),
                None if on_debris => cell,
                None => {
                    let g = shade[0] * (px / s - 0.5) + shade[1] * (py / s - 0.5);
                    bg.map(|v| v + g)
                }
            };
            let p = img.get_pixel_mut(x as u32, y as u32);
            for k in 0..3 {
                p[k] = to_u8(base[k] + noise * rng.normal());
            }
            mask.put_pixel(x as u32, y as u32, image::Luma([if hit.is_some() { 255 } else { 0 }]));
        }
    }
    (img, mask)
}

fn save(img: image::DynamicImage, path: &Path) -> Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    }
    img.save_with_format(path, image::ImageFormat::Png).map_err(|e| Error::Image { path: path.to_path_buf(), reason: e.to_string() })
}

/// The ImageFolder directory of class `k`: `{k:02}-{name}`, so that sorted order is label order.
pub fn shape_class_dir(k: usize) -> String {
    format!("{k:02}-{}", SHAPE_CLASSES[k])
}

/// Writes `n` shape samples as an ImageFolder: `dir/{k:02}-{class}/{index:05}.png`.
pub fn write_shapes(dir: &Path, seed: u64, n: usize, size: usize) -> Result<()> {
    for i in 0..n as u64 {
        let (img, class) = shape_sample(seed, i, size);
        save(img.into(), &dir.join(shape_class_dir(class)).join(format!("{i:05}.png")))?;
    }
    Ok(())
}

/// Writes `n` blob samples as pairs `dir/images/{index:05}.png`, `dir/masks/{index:05}.png`.
pub fn write_blobs(dir: &Path, seed: u64, n: usize, size: usize) -> Result<()> {
    for i in 0..n as u64 {
        let (img, mask) = blob_sample(seed, i, size);
        save(img.into(), &dir.join("images").join(format!("{i:05}.png")))?;
        save(mask.into(), &dir.join("masks").join(format!("{i:05}.png")))?;
    }
    Ok(())
}

/// Writes one `side`×`side` RGB PNG of blob cells, streamed by rows of 256-pixel blocks (block
/// `(by, bx)` is [`blob_sample`] `by · blocks + bx` of `seed`), so that memory stays at one
/// block row however large the image; for testing tiled segmentation.
pub fn write_big_blobs(path: &Path, seed: u64, side: usize) -> Result<()> {
    use std::io::Write;
    const BLOCK: usize = 256;
    if side == 0 || side > 1 << 20 {
        return Err(Error::Argument(format!("big-blobs side {side} must be in 1..=1048576")));
    }
    let bad = |e: png::EncodingError| Error::Image { path: path.to_path_buf(), reason: e.to_string() };
    let f = std::fs::File::create(path).map_err(|e| Error::io(path, e))?;
    let mut enc = png::Encoder::new(std::io::BufWriter::new(f), side as u32, side as u32);
    enc.set_color(png::ColorType::Rgb);
    enc.set_depth(png::BitDepth::Eight);
    enc.set_compression(png::Compression::Fast);
    let mut w = enc.write_header().map_err(bad)?.into_stream_writer().map_err(bad)?;
    let blocks = side.div_ceil(BLOCK);
    let mut band = vec![0u8; BLOCK * side * 3];
    for by in 0..blocks {
        for bx in 0..blocks {
            let (img, _) = blob_sample(seed, (by * blocks + bx) as u64, BLOCK);
            let cols = BLOCK.min(side - bx * BLOCK);
            for y in 0..BLOCK {
                let src = &img.as_raw()[y * BLOCK * 3..][..cols * 3];
                band[(y * side + bx * BLOCK) * 3..][..cols * 3].copy_from_slice(src);
            }
        }
        let rows = BLOCK.min(side - by * BLOCK);
        w.write_all(&band[..rows * side * 3]).map_err(|e| Error::io(path, e))?;
    }
    w.finish().map_err(bad)
}

/// A tiled pyramidal TIFF of the big-blobs image ([`write_big_blobs`]'s pixels): `levels`
/// levels, each half the previous one's size (2×2 box filter), in 256² tiles compressed with
/// `compression`, at 0.5 µm per pixel on level 0. With `glass`, only the discs of
/// [`slide_tissue`] hold tissue and the rest is glass, as on a real slide. Written band by
/// band: memory holds one band of tiles per level.
/// The tissue of a synthetic slide with glass ([`write_big_blobs_tiff`] with `glass`): three
/// discs at seeded places, `(cx, cy, r)` in level-0 pixels; the rest is glass.
pub fn slide_tissue(seed: u64, side: usize) -> Vec<(f32, f32, f32)> {
    let mut rng = sample_rng(seed ^ 0x5EED_61A5, 0);
    let s = side as f32;
    (0..3).map(|_| {
        let r = rng.range(0.12, 0.2) * s;
        (rng.range(r, s - r), rng.range(r, s - r), r)
    }).collect()
}

/// Whether level-0 pixel `(x, y)` lies in one of `discs`.
pub fn in_tissue(discs: &[(f32, f32, f32)], x: usize, y: usize) -> bool {
    let (px, py) = (x as f32 + 0.5, y as f32 + 0.5);
    discs.iter().any(|&(cx, cy, r)| (px - cx) * (px - cx) + (py - cy) * (py - cy) <= r * r)
}

/// A glass pixel: light grey with a little deterministic noise.
fn glass_pixel(x: usize, y: usize) -> [u8; 3] {
    let h = (x as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ (y as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
    let n = ((h >> 29) % 7) as u8;
    [236 + n, 238 + n, 240 + n]
}

pub fn write_big_blobs_tiff(path: &Path, seed: u64, side: usize, levels: usize, compression: crate::slide::Compression, glass: bool) -> Result<()> {
    const BLOCK: usize = 256;
    if side == 0 || side > 1 << 20 {
        return Err(Error::Argument(format!("big-blobs side {side} must be in 1..=1048576")));
    }
    if levels == 0 || levels > 12 || side >> (levels - 1) == 0 {
        return Err(Error::Argument(format!("--levels {levels}: 1..=12, and the last level at least 1 pixel wide")));
    }
    let sizes: Vec<[usize; 2]> = (0..levels).map(|l| [side.div_ceil(1 << l), side.div_ceil(1 << l)]).collect();
    let mut w = crate::slide::TiffWriter::create(path, &sizes, BLOCK, 3, compression, Some(0.5))?;
    // Per level: a band of BLOCK rows (`[BLOCK][width · 3]`) and how many rows it holds.
    let mut bands: Vec<(Vec<u8>, usize, usize)> = sizes.iter().map(|s| (vec![0u8; BLOCK * s[0] * 3], 0, 0)).collect();
    let blocks = side.div_ceil(BLOCK);
    let mut rows = vec![0u8; BLOCK * side * 3];
    let discs = if glass { slide_tissue(seed, side) } else { Vec::new() };
    for by in 0..blocks {
        for bx in 0..blocks {
            let cols = BLOCK.min(side - bx * BLOCK);
            let (x0, y0) = (bx * BLOCK, by * BLOCK);
            // A block wholly on glass is not drawn.
            let near = !glass || discs.iter().any(|&(cx, cy, r)| {
                let (dx, dy) = ((cx - cx.clamp(x0 as f32, (x0 + BLOCK) as f32)).abs(), (cy - cy.clamp(y0 as f32, (y0 + BLOCK) as f32)).abs());
                dx * dx + dy * dy <= r * r
            });
            let img = near.then(|| blob_sample(seed, (by * blocks + bx) as u64, BLOCK).0);
            for y in 0..BLOCK.min(side - y0) {
                for x in 0..cols {
                    let px = match &img {
                        Some(img) if !glass || in_tissue(&discs, x0 + x, y0 + y) => img.get_pixel(x as u32, y as u32).0,
                        _ => glass_pixel(x0 + x, y0 + y),
                    };
                    rows[(y * side + x0 + x) * 3..][..3].copy_from_slice(&px);
                }
            }
        }
        let n = BLOCK.min(side - by * BLOCK);
        push_rows(&mut w, &mut bands, &sizes, 0, &rows[..n * side * 3], n, by + 1 == blocks)?;
    }
    w.finish()
}

/// Appends `n` rows to level `l`'s band, writing its tiles whenever it fills (or `last`), and
/// hands each written band, halved, to level `l + 1`.
fn push_rows(w: &mut crate::slide::TiffWriter, bands: &mut [(Vec<u8>, usize, usize)], sizes: &[[usize; 2]], l: usize, rows: &[u8], n: usize, last: bool) -> Result<()> {
    const BLOCK: usize = 256;
    let width = sizes[l][0];
    let mut done = 0;
    while done < n {
        let (band, filled, ty) = &mut bands[l];
        let take = (BLOCK - *filled).min(n - done);
        band[*filled * width * 3..(*filled + take) * width * 3].copy_from_slice(&rows[done * width * 3..(done + take) * width * 3]);
        *filled += take;
        done += take;
        let end = last && done == n;
        if *filled == BLOCK || end {
            let (full, t) = (*filled, *ty);
            let mut tile = vec![0u8; BLOCK * BLOCK * 3];
            for tx in 0..width.div_ceil(BLOCK) {
                tile.fill(0);
                let cols = BLOCK.min(width - tx * BLOCK);
                for r in 0..full {
                    tile[r * BLOCK * 3..][..cols * 3].copy_from_slice(&band[(r * width + tx * BLOCK) * 3..][..cols * 3]);
                }
                w.write_tile(l, tx, t, &tile)?;
            }
            if l + 1 < sizes.len() {
                let half = halve(&band[..full * width * 3], width, full, sizes[l + 1][0]);
                let hn = full.div_ceil(2);
                let (band, _, _) = &mut bands[l];
                band.fill(0);
                push_rows(w, bands, sizes, l + 1, &half, hn, end)?;
            }
            let (_, filled, ty) = &mut bands[l];
            *filled = 0;
            *ty = t + 1;
        }
    }
    Ok(())
}

/// `rows` (`n` rows of `width` RGB pixels) downsampled 2× by a 2×2 box filter into rows of
/// `half_w` pixels (an odd last row or column averages with itself).
fn halve(rows: &[u8], width: usize, n: usize, half_w: usize) -> Vec<u8> {
    let mut out = vec![0u8; n.div_ceil(2) * half_w * 3];
    for y in 0..n.div_ceil(2) {
        let (y0, y1) = (2 * y, (2 * y + 1).min(n - 1));
        for x in 0..half_w {
            let (x0, x1) = (2 * x, (2 * x + 1).min(width - 1));
            for c in 0..3 {
                let p = |yy: usize, xx: usize| u32::from(rows[(yy * width + xx) * 3 + c]);
                out[(y * half_w + x) * 3 + c] = ((p(y0, x0) + p(y0, x1) + p(y1, x0) + p(y1, x1) + 2) / 4) as u8;
            }
        }
    }
    out
}
