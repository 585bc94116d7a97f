//! Calibration inputs for static INT8: a folder of images or `.npy` inputs, items spread over
//! a labelled dataset, or seeded synthetic image-like batches. Images are preprocessed to the
//! model's input side (`[1, C, H, W]` each: resize the shorter side, centre-crop, ImageNet
//! mean and std), as `classify` and `eval` feed them.

use std::path::{Path, PathBuf};

use super::{ImageFolder, SegPairs, Shard};
use crate::error::{Error, Result};
use crate::imageio::{self, Preprocess};
use crate::tensor::Tensor;

/// The preprocessing of calibration images for an input of `shape` `[N, C, H, W]`.
fn preprocess_for(shape: &[usize]) -> Preprocess {
    let side = shape[2].min(shape[3]);
    Preprocess { resize: side, crop: side, ..Preprocess::default() }
}

fn check_shape(shape: &[usize]) -> Result<()> {
    if shape.len() == 4 {
        Ok(())
    } else {
        Err(Error::InputShape { name: "input".into(), expected: "[N, C, H, W] for calibration".into(), got: shape.to_vec() })
    }
}

/// `samples` seeded synthetic image-like inputs of `shape`'s channels and size.
pub fn synthetic(samples: usize, shape: &[usize]) -> Result<Vec<Tensor>> {
    check_shape(shape)?;
    Ok((0..samples.max(1)).map(|i| crate::models::init::synthetic_images(1, shape[1], shape[2], shape[3], 7000 + i as u64)).collect())
}

/// Image and `.npy` files under `dir`, recursively (at most 4 levels).
fn files_under(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) -> Result<()> {
    for e in std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))? {
        let p = e.map_err(|e| Error::io(dir, e))?.path();
        if p.is_dir() {
            if depth < 4 {
                files_under(&p, depth + 1, out)?;
            }
        } else if p.extension().and_then(|e| e.to_str()).is_some_and(|e| ["png", "jpg", "jpeg", "npy"].contains(&e.to_ascii_lowercase().as_str())) {
            out.push(p);
        }
    }
    Ok(())
}

/// Every image (PNG, JPEG) or `.npy` file of `dir` and its subfolders (an ImageFolder's
/// classes; of a segmentation folder, `images/` only), sorted by path.
pub fn from_folder(dir: &Path, shape: &[usize]) -> Result<Vec<Tensor>> {
    check_shape(shape)?;
    let root = if SegPairs::detect(dir) { dir.join("images") } else { dir.to_path_buf() };
    let mut files = Vec::new();
    files_under(&root, 0, &mut files)?;
    files.sort();
    if files.is_empty() {
        return Err(Error::Data { path: dir.to_path_buf(), reason: "no .png, .jpg or .npy calibration files".into() });
    }
    let pre = preprocess_for(shape);
    files
        .iter()
        .map(|p| if p.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) { imageio::read_npy(p) } else { imageio::decode(p).map(|i| imageio::preprocess(&i, &pre)) })
        .collect()
}

/// `dir` when given, else `samples` synthetic inputs.
pub fn from_folder_or_synthetic(dir: Option<&Path>, samples: usize, shape: &[usize]) -> Result<Vec<Tensor>> {
    match dir {
        Some(d) => from_folder(d, shape),
        None => synthetic(samples, shape),
    }
}

/// Up to `samples` images of the labelled dataset at `data` (an ImageFolder or images/ +
/// masks/), this shard's, spread evenly over its sorted items so that every class is seen.
pub fn from_dataset(data: &Path, shard: Shard, samples: usize, shape: &[usize]) -> Result<Vec<Tensor>> {
    check_shape(shape)?;
    let files: Vec<PathBuf> = if SegPairs::detect(data) {
        SegPairs::open(data)?.items.into_iter().map(|p| p.0).collect()
    } else {
        ImageFolder::open(data)?.items.into_iter().map(|p| p.0).collect()
    };
    let files = shard.select(files);
    let pre = preprocess_for(shape);
    let stride = (files.len() / samples.max(1)).max(1);
    files.iter().step_by(stride).take(samples.max(1)).map(|p| imageio::decode(p).map(|i| imageio::preprocess(&i, &pre))).collect()
}
