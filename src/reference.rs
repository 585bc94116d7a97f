//! The trained reference models shipped in `models/`: how each is trained (read by
//! `examples/train.rs`), its held-out test set (a seed of [`crate::dataset::synth`]), and
//! `models/manifest.json` (name, task, input shape, sha256, training recipe and test metrics).
//!
//! Test metrics are computed by kestrel's engine on the saved file through [`crate::eval`],
//! the same path `kestrel eval` takes, so the manifest's numbers are reproducible with it.

use std::path::Path;

use sha2::{Digest, Sha256};

use crate::dataset::{synth, ImageFolder, SegPairs};
use crate::error::{Error, Result};
use crate::exec::{Options, Session};
use crate::imageio::Preprocess;
use crate::load::{load_model, LoadOptions};

/// One reference model and its recipe.
#[derive(Clone, Debug)]
pub struct Reference {
    pub name: &'static str,
    /// `shapes` (classification) or `blobs` (segmentation).
    pub dataset: &'static str,
    /// Square input side the model is trained at.
    pub size: usize,
    pub train_seed: u64,
    pub train_steps: usize,
    pub train_batch: usize,
    pub train_lr: f64,
    pub test_seed: u64,
    pub test_count: usize,
}

/// The reference models, in manifest order.
pub fn reference_models() -> Vec<Reference> {
    vec![
        Reference {
            name: "shapes-resnet18",
            dataset: "shapes",
            size: 32,
            train_seed: 1,
            train_steps: 1500,
            train_batch: 64,
            train_lr: 2e-3,
            test_seed: 1001,
            test_count: 1000,
        },
        Reference {
            name: "blobs-unet",
            dataset: "blobs",
            size: 64,
            train_seed: 2,
            train_steps: 600,
            train_batch: 16,
            train_lr: 3e-3,
            test_seed: 1002,
            test_count: 200,
        },
    ]
}

impl Reference {
    /// Writes this model's held-out test set to `dir` (ImageFolder or images/ + masks/).
    pub fn write_test_set(&self, dir: &Path) -> Result<()> {
        match self.dataset {
            "shapes" => synth::write_shapes(dir, self.test_seed, self.test_count, self.size),
            _ => synth::write_blobs(dir, self.test_seed, self.test_count, self.size),
        }
    }

    /// Sample `index` of this model's dataset for `seed` (the image only).
    pub fn sample(&self, seed: u64, index: u64) -> image::RgbImage {
        match self.dataset {
            "shapes" => synth::shape_sample(seed, index, self.size).0,
            _ => synth::blob_sample(seed, index, self.size).0,
        }
    }

    /// The preprocessing the model is trained with (ImageNet mean/std, no resize at its size).
    pub fn preprocess(&self) -> Preprocess {
        Preprocess { resize: self.size, crop: self.size, ..Preprocess::default() }
    }

    /// Test metrics of the model file at `path`, on a freshly generated test set.
    pub fn evaluate(&self, path: &Path, threads: usize) -> Result<serde_json::Value> {
        let model = load_model(&path.to_string_lossy(), &LoadOptions::default())?;
        let session = Session::new(model.graph.clone(), &Options { threads, optimize: true, ..Default::default() })?;
        let mut run = |x: &crate::Tensor| session.run(std::slice::from_ref(x)).and_then(|o| o.into_iter().next().ok_or(crate::error::Error::NoOutput));
        let dir = std::env::temp_dir().join(format!("kestrel-{}-test-{}", self.name, std::process::id()));
        self.write_test_set(&dir)?;
        let result = match self.dataset {
            "shapes" => {
                let f = ImageFolder::open(&dir)?;
                let m = crate::eval::classification(&mut run, &f.classes, &f.items, &self.preprocess(), 64, &mut |_| {})?;
                serde_json::json!({"accuracy": m.accuracy, "macro_f1": m.macro_f1, "macro_auroc": m.macro_auroc, "chance": 1.0 / f.classes.len() as f64})
            }
            _ => {
                let p = SegPairs::open(&dir)?;
                let mult = model.graph.spatial_multiple.unwrap_or(1);
                let m = crate::eval::segmentation(&mut run, &p, &self.preprocess(), mult, 0.5, &mut |_| {})?;
                let fg = m.tp + m.fn_;
                let total = m.tp + m.fn_ + m.fp + m.tn;
                serde_json::json!({"dice": m.dice(), "iou": m.iou(), "pixel_accuracy": m.pixel_accuracy(), "mean_dice": m.mean_dice(),
                    "foreground_fraction": fg as f64 / total.max(1) as f64})
            }
        };
        let _ = std::fs::remove_dir_all(&dir);
        Ok(result)
    }
}

/// Hex sha256 of a file.
pub fn sha256_file(path: &Path) -> Result<String> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    Ok(Sha256::digest(&bytes).iter().map(|b| format!("{b:02x}")).collect())
}

/// The manifest entry of a freshly trained model file.
pub fn manifest_entry(r: &Reference, path: &Path, extra: serde_json::Value) -> Result<serde_json::Value> {
    let metrics = r.evaluate(path, 0)?;
    let bytes = std::fs::metadata(path).map_err(|e| Error::io(path, e))?.len();
    Ok(serde_json::json!({
        "name": r.name,
        "file": path.file_name().map(|f| f.to_string_lossy().into_owned()),
        "task": if r.dataset == "shapes" { "classify" } else { "segment" },
        "input_shape": [1, 3, r.size, r.size],
        "sha256": sha256_file(path)?,
        "bytes": bytes,
        "train": {"dataset": r.dataset, "seed": r.train_seed, "steps": r.train_steps, "batch": r.train_batch, "lr": r.train_lr, "extra": extra},
        "test_set": {"dataset": r.dataset, "seed": r.test_seed, "count": r.test_count, "size": r.size},
        "metrics": metrics,
    }))
}

/// Replaces the entries of `manifest` that share a name with `entries`, keeping the others.
pub fn update_manifest(manifest: &Path, entries: Vec<serde_json::Value>) -> Result<()> {
    let mut all: Vec<serde_json::Value> = match std::fs::read_to_string(manifest) {
        Ok(t) => serde_json::from_str::<serde_json::Value>(&t)
            .ok()
            .and_then(|v| v.get("models").and_then(|m| m.as_array()).cloned())
            .unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    for e in entries {
        all.retain(|o| o.get("name") != e.get("name"));
        all.push(e);
    }
    let order: Vec<&str> = reference_models().iter().map(|r| r.name).collect();
    all.sort_by_key(|e| e.get("name").and_then(|n| n.as_str()).and_then(|n| order.iter().position(|o| *o == n)).unwrap_or(usize::MAX));
    let v = serde_json::json!({
        "generator": "cargo run --release --features train --example train -- all",
        "models": all,
    });
    let text = serde_json::to_string_pretty(&v).map_err(|e| Error::Internal(format!("serialising the manifest: {e}")))?;
    std::fs::write(manifest, text + "\n").map_err(|e| Error::io(manifest, e))
}
