//! Folder layouts on disk and how a folder is split across machines.
//!
//! - [`ImageFolder`]: `root/{class}/*.{png,jpg,jpeg}`, classes in sorted order (label `i` is
//!   the `i`-th class directory), files sorted within each class.
//! - [`SegPairs`]: `root/images/NAME.png` with `root/masks/NAME.png` (non-zero = foreground).
//! - [`Shard`]: `--shard I/N` keeps items `k` with `k mod N == I` of the sorted list, so
//!   shards are disjoint, cover the folder, and stay balanced within one item.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

const IMAGE_EXTS: [&str; 3] = ["png", "jpg", "jpeg"];

fn is_image(p: &Path) -> bool {
    p.extension().and_then(|e| e.to_str()).is_some_and(|e| IMAGE_EXTS.contains(&e.to_ascii_lowercase().as_str()))
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut out: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| Error::io(dir, e))?
        .map(|e| e.map(|e| e.path()).map_err(|e| Error::io(dir, e)))
        .collect::<Result<_>>()?;
    out.sort();
    Ok(out)
}

/// Image files of `dir`, sorted.
pub fn images_in(dir: &Path) -> Result<Vec<PathBuf>> {
    Ok(read_dir_sorted(dir)?.into_iter().filter(|p| p.is_file() && is_image(p)).collect())
}

/// One of `count` disjoint parts of a sorted item list (`--shard index/count`, 0-based).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    pub index: usize,
    pub count: usize,
}

impl Default for Shard {
    fn default() -> Self {
        Shard { index: 0, count: 1 }
    }
}

impl std::str::FromStr for Shard {
    type Err = Error;
    /// Parses `I/N` with `0 <= I < N`.
    fn from_str(s: &str) -> Result<Self> {
        let bad = || Error::Argument(format!("--shard {s}: expected I/N with 0 <= I < N (e.g. 0/4)"));
        let (i, n) = s.split_once('/').ok_or_else(bad)?;
        let (index, count): (usize, usize) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// Keeps this shard's items of `items`, in order.
    pub fn select<T>(&self, items: Vec<T>) -> Vec<T> {
        items.into_iter().enumerate().filter(|(k, _)| k % self.count == self.index).map(|(_, t)| t).collect()
    }
}

/// A classification folder: one subdirectory per class.
#[derive(Clone, Debug)]
pub struct ImageFolder {
    pub classes: Vec<String>,
    /// (path, label) pairs, sorted by class then file name.
    pub items: Vec<(PathBuf, usize)>,
}

impl ImageFolder {
    /// Lists `root`; errors if it has no class directories or no images.
    pub fn open(root: &Path) -> Result<Self> {
        let dirs: Vec<PathBuf> = read_dir_sorted(root)?.into_iter().filter(|p| p.is_dir()).collect();
        if dirs.is_empty() {
            return Err(Error::Data { path: root.to_path_buf(), reason: "no class subdirectories (expected ROOT/CLASS/IMAGE.png)".into() });
        }
        let mut classes = Vec::new();
        let mut items = Vec::new();
        for (label, d) in dirs.iter().enumerate() {
            classes.push(d.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default());
            items.extend(images_in(d)?.into_iter().map(|p| (p, label)));
        }
        if items.is_empty() {
            return Err(Error::Data { path: root.to_path_buf(), reason: "no images in its class subdirectories".into() });
        }
        Ok(ImageFolder { classes, items })
    }
}

/// A segmentation folder: `images/` and `masks/` with matching file stems.
#[derive(Clone, Debug)]
pub struct SegPairs {
    /// (image, mask) pairs sorted by image name.
    pub items: Vec<(PathBuf, PathBuf)>,
}

impl SegPairs {
    /// Pairs every image of `root/images` with `root/masks/STEM.png`; a missing mask is an error.
    pub fn open(root: &Path) -> Result<Self> {
        let images = images_in(&root.join("images"))?;
        let masks = root.join("masks");
        let mut items = Vec::with_capacity(images.len());
        for img in images {
            let stem = img.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
            let mask = IMAGE_EXTS
                .iter()
                .map(|e| masks.join(format!("{stem}.{e}")))
                .find(|p| p.is_file())
                .ok_or_else(|| Error::Data { path: img.clone(), reason: format!("no mask {}/{stem}.png", masks.display()) })?;
            items.push((img, mask));
        }
        if items.is_empty() {
            return Err(Error::Data { path: root.to_path_buf(), reason: "no images in images/".into() });
        }
        Ok(SegPairs { items })
    }

    /// Whether `root` looks like a segmentation folder.
    pub fn detect(root: &Path) -> bool {
        root.join("images").is_dir() && root.join("masks").is_dir()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_are_disjoint_and_cover() {
        let items: Vec<usize> = (0..23).collect();
        let mut seen = Vec::new();
        for i in 0..4 {
            let s: Shard = format!("{i}/4").parse().unwrap();
            let part = s.select(items.clone());
            assert!(part.len() == 5 || part.len() == 6);
            seen.extend(part);
        }
        seen.sort_unstable();
        assert_eq!(seen, items);
        for bad in ["4/4", "1/0", "x/2", "3", "-1/2"] {
            assert!(bad.parse::<Shard>().is_err(), "{bad}");
        }
    }
}
