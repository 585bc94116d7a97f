//! Scoring a model on labelled data: an [`crate::dataset::ImageFolder`] for classification or [`SegPairs`]
//! for binary segmentation, through any `run` function (a kestrel session or ORT), so every
//! variant is scored by the same code on the same inputs.
//!
//! Classification inputs are decoded, resized and centre-cropped to the model's input side
//! with the given mean/std; scores are softmax probabilities. Segmentation inputs keep their
//! size (zero-padded to the model's spatial multiple, prediction cropped back); the mask is
//! `sigmoid(logit) > threshold` for one output channel, or argmax > 0 for several, and a true
//! mask pixel is foreground when non-zero.

use std::path::PathBuf;

use crate::dataset::SegPairs;
use crate::error::{Error, Result};
use crate::imageio::{self, Preprocess};
use crate::metrics::{Classification, Segmentation};
use crate::postprocess::{foreground, pad_to_multiple, softmax_rows};
use crate::tensor::Tensor;

/// A model under evaluation: one batch in, logits out.
pub type RunFn<'a> = dyn FnMut(&Tensor) -> Result<Tensor> + 'a;

/// Classification metrics of `run` over `items` (path, label) of `folder`.
pub fn classification(
    run: &mut RunFn<'_>,
    classes: &[String],
    items: &[(PathBuf, usize)],
    pre: &Preprocess,
    batch: usize,
    progress: &mut dyn FnMut(usize),
) -> Result<Classification> {
    let mut labels = Vec::with_capacity(items.len());
    let mut scores = Vec::with_capacity(items.len());
    for chunk in items.chunks(batch.max(1)) {
        let xs = chunk.iter().map(|(p, _)| imageio::decode(p).map(|i| imageio::preprocess(&i, pre))).collect::<Result<Vec<_>>>()?;
        let probs = softmax_rows(&run(&Tensor::concat_batch(&xs)?)?)?;
        if probs.len() != chunk.len() {
            return Err(Error::OutputShape { expected: format!("{} rows, one per image of the batch", chunk.len()), got: vec![probs.len()] });
        }
        if let Some(p) = probs.first() {
            if p.len() != classes.len() {
                return Err(Error::ClassCount { model: p.len(), data: classes.len() });
            }
        }
        labels.extend(chunk.iter().map(|(_, l)| *l));
        scores.extend(probs);
        progress(chunk.len());
    }
    Ok(Classification::compute(classes, &labels, &scores))
}

/// Binary segmentation metrics of `run` over `pairs`.
pub fn segmentation(
    run: &mut RunFn<'_>,
    pairs: &SegPairs,
    pre: &Preprocess,
    multiple: usize,
    threshold: f32,
    progress: &mut dyn FnMut(usize),
) -> Result<Segmentation> {
    let mut seg = Segmentation::default();
    for (img_path, mask_path) in &pairs.items {
        let img = imageio::decode(img_path)?;
        let truth = imageio::decode_gray(mask_path)?;
        if truth.dimensions() != img.dimensions() {
            return Err(Error::Data { path: mask_path.clone(), reason: format!("mask is {:?}, image {} is {:?}", truth.dimensions(), img_path.display(), img.dimensions()) });
        }
        let (w, h) = (img.width() as usize, img.height() as usize);
        let x = pad_to_multiple(&imageio::to_tensor(&img, pre), multiple)?;
        let pred = foreground(&run(&x)?, h, w, threshold)?;
        let t: Vec<bool> = truth.pixels().map(|p| p[0] > 0).collect();
        seg.add(&pred, &t);
        progress(1);
    }
    Ok(seg)
}

/// Metrics of one variant on a dataset.
#[derive(Clone, Debug, serde::Serialize)]
#[serde(untagged)]
pub enum Metrics {
    Classification(Classification),
    Segmentation(SegmentationSummary),
}

/// The headline figures of a [`Segmentation`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct SegmentationSummary {
    pub images: u64,
    pub dice: f64,
    pub iou: f64,
    pub pixel_accuracy: f64,
    pub mean_dice: f64,
}

impl From<&Segmentation> for SegmentationSummary {
    fn from(s: &Segmentation) -> Self {
        SegmentationSummary { images: s.images, dice: s.dice(), iou: s.iou(), pixel_accuracy: s.pixel_accuracy(), mean_dice: s.mean_dice() }
    }
}

impl Metrics {
    /// The headline score: accuracy, or Dice.
    pub fn headline(&self) -> (&'static str, f64) {
        match self {
            Metrics::Classification(c) => ("accuracy", c.accuracy),
            Metrics::Segmentation(s) => ("dice", s.dice),
        }
    }
}

/// One variant's evaluation.
#[derive(Clone, Debug, serde::Serialize)]
pub struct VariantEval {
    pub variant: String,
    pub engine: String,
    pub metrics: Metrics,
    /// Headline score minus the first variant's (negative = worse).
    pub delta_vs_first: f64,
    /// Total forward seconds over the set.
    pub forward_s: f64,
    /// First variant's forward time over this one's.
    pub speedup_vs_first: f64,
}

/// Evaluation of several variants of one model on one dataset.
#[derive(Clone, Debug, serde::Serialize)]
pub struct EvalReport {
    pub model: String,
    pub data: String,
    pub shard: String,
    pub items: usize,
    pub variants: Vec<VariantEval>,
    pub skipped: Vec<(String, String)>,
}

/// What `eval` runs.
pub struct EvalOptions<'a> {
    pub variants: &'a [crate::engine::Kind],
    pub threads: usize,
    pub batch: usize,
    pub threshold: f32,
    pub shard: crate::dataset::Shard,
    /// Calibration inputs for static INT8 variants.
    pub calib: &'a [Tensor],
}

/// Evaluates every variant of `model` on `data` (an ImageFolder, or images/ + masks/).
pub fn run_variants(
    model: &crate::load::LoadedModel,
    data: &std::path::Path,
    opts: &EvalOptions<'_>,
    progress: &mut dyn FnMut(usize, usize, &str),
) -> Result<EvalReport> {
    use crate::engine::{Context, Variant};
    let input = model.graph.input_shape(1)?;
    let side = input.get(2).copied().unwrap_or(0).min(input.get(3).copied().unwrap_or(0));
    let pre_cls = Preprocess { resize: side, crop: side, ..Preprocess::default() };
    let pre_seg = Preprocess { resize: 0, crop: 0, ..Preprocess::default() };
    enum Data {
        Cls(crate::dataset::ImageFolder),
        Seg(SegPairs),
    }
    let d = if SegPairs::detect(data) {
        let mut p = SegPairs::open(data)?;
        p.items = opts.shard.select(p.items);
        Data::Seg(p)
    } else {
        let mut f = crate::dataset::ImageFolder::open(data)?;
        f.items = opts.shard.select(f.items);
        Data::Cls(f)
    };
    let items = match &d {
        Data::Cls(f) => f.items.len(),
        Data::Seg(p) => p.items.len(),
    };
    let threads = if opts.threads == 0 { std::thread::available_parallelism().map_or(1, |n| n.get()) } else { opts.threads };
    let ctx = Context::new(model, threads, opts.calib);
    let mut out = EvalReport {
        model: model.name.clone(),
        data: data.display().to_string(),
        shard: opts.shard.to_string(),
        items,
        variants: Vec::new(),
        skipped: Vec::new(),
    };
    for &k in opts.variants {
        let mut v = match Variant::build(k, &ctx) {
            Ok(v) => v,
            Err(e) => {
                out.skipped.push((k.name().to_string(), e.to_string()));
                continue;
            }
        };
        let mut forward = 0.0;
        let mut done = 0;
        let name = k.name();
        let mut run = |x: &Tensor| {
            let t = std::time::Instant::now();
            let r = v.run(x);
            forward += t.elapsed().as_secs_f64();
            r
        };
        let mut tick = |n: usize| {
            done += n;
            progress(done, items, name);
        };
        let metrics = match &d {
            Data::Cls(f) => Metrics::Classification(classification(&mut run, &f.classes, &f.items, &pre_cls, opts.batch, &mut tick)?),
            Data::Seg(p) => {
                let mult = model.graph.spatial_multiple.unwrap_or(1);
                Metrics::Segmentation((&segmentation(&mut run, p, &pre_seg, mult, opts.threshold, &mut tick)?).into())
            }
        };
        let engine = v.engine.clone();
        out.variants.push(VariantEval { variant: name.to_string(), engine, metrics, delta_vs_first: 0.0, forward_s: forward, speedup_vs_first: 1.0 });
    }
    if let Some(first) = out.variants.first().cloned() {
        for v in &mut out.variants {
            v.delta_vs_first = v.metrics.headline().1 - first.metrics.headline().1;
            v.speedup_vs_first = if v.forward_s > 0.0 { first.forward_s / v.forward_s } else { 0.0 };
        }
    }
    Ok(out)
}

/// The report as Markdown.
pub fn markdown(r: &EvalReport) -> String {
    use std::fmt::Write as _;
    let mut s = String::new();
    let _ = writeln!(s, "### {} on {} ({} items, shard {})\n", r.model, r.data, r.items, r.shard);
    let first = r.variants.first().map_or("-", |v| v.variant.as_str());
    match r.variants.first().map(|v| &v.metrics) {
        Some(Metrics::Classification(_)) => {
            let _ = writeln!(s, "| variant | engine | accuracy | Δ vs {first} | macro P | macro R | macro F1 | macro specificity | macro AUROC | forward s | speedup |");
            let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
        }
        _ => {
            let _ = writeln!(s, "| variant | engine | Dice | Δ vs {first} | IoU | pixel acc | mean Dice | forward s | speedup |");
            let _ = writeln!(s, "|---|---|---:|---:|---:|---:|---:|---:|---:|");
        }
    }
    for v in &r.variants {
        match &v.metrics {
            Metrics::Classification(c) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.4} | {:+.4} | {:.4} | {:.4} | {:.4} | {:.4} | {} | {:.2} | {:.2}x |",
                    v.variant,
                    v.engine,
                    c.accuracy,
                    v.delta_vs_first,
                    c.macro_precision,
                    c.macro_recall,
                    c.macro_f1,
                    c.macro_specificity,
                    c.macro_auroc.map_or("-".into(), |a| format!("{a:.4}")),
                    v.forward_s,
                    v.speedup_vs_first
                );
            }
            Metrics::Segmentation(m) => {
                let _ = writeln!(
                    s,
                    "| {} | {} | {:.4} | {:+.4} | {:.4} | {:.4} | {:.4} | {:.2} | {:.2}x |",
                    v.variant, v.engine, m.dice, v.delta_vs_first, m.iou, m.pixel_accuracy, m.mean_dice, v.forward_s, v.speedup_vs_first
                );
            }
        }
    }
    if let Some(Metrics::Classification(c)) = r.variants.first().map(|v| &v.metrics) {
        let _ = writeln!(s, "\nPer class ({first}):\n\n| class | support | precision | recall (sensitivity) | specificity | F1 | AUROC (one-vs-rest) |\n|---|---:|---:|---:|---:|---:|---:|");
        for k in &c.per_class {
            let _ = writeln!(
                s,
                "| {} | {} | {:.4} | {:.4} | {:.4} | {:.4} | {} |",
                k.name,
                k.support,
                k.precision,
                k.recall,
                k.specificity,
                k.f1,
                k.auroc.map_or("-".into(), |a| format!("{a:.4}"))
            );
        }
        let _ = writeln!(s, "\nConfusion matrix ({first}; rows true, columns predicted):\n");
        let _ = writeln!(s, "| | {} |", c.per_class.iter().map(|k| k.name.as_str()).collect::<Vec<_>>().join(" | "));
        let _ = writeln!(s, "|---|{}", "---:|".repeat(c.per_class.len()));
        for (k, row) in c.per_class.iter().zip(&c.confusion) {
            let _ = writeln!(s, "| {} | {} |", k.name, row.iter().map(u64::to_string).collect::<Vec<_>>().join(" | "));
        }
    }
    for (n, why) in &r.skipped {
        let _ = writeln!(s, "\n- skipped {n}: {why}");
    }
    s
}
