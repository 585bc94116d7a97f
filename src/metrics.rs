//! Accuracy metrics for `kestrel eval`.
//!
//! Classification ([`Classification`]): confusion matrix `[true][predicted]`, accuracy,
//! per-class precision / recall (= sensitivity) / specificity / F1 and their macro means, and
//! AUROC one-vs-rest per class (binary AUROC is class 1's entry for two classes). A ratio with
//! a zero denominator is reported as 0 (precision, recall, F1) or `None` (AUROC without both
//! positives and negatives), matching scikit-learn's `zero_division=0`.
//!
//! AUROC is the Mann–Whitney statistic with mid-ranks for ties: a positive and a negative
//! with equal scores count one half, as `sklearn.metrics.roc_auc_score` does.
//!
//! Segmentation ([`Segmentation`]): pixel counts summed over the set, giving Dice
//! `2TP / (2TP + FP + FN)`, IoU `TP / (TP + FP + FN)` and pixel accuracy, plus the mean of
//! per-image Dice (an image with an empty mask and an empty prediction scores 1).

use serde::Serialize;

/// AUROC of `scores` for `positive[i]` labels, with ties counted one half.
/// `None` when either class is absent.
pub fn auroc(scores: &[f32], positive: &[bool]) -> Option<f64> {
    let n_pos = positive.iter().filter(|&&p| p).count();
    let n_neg = positive.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || scores.len() != positive.len() {
        return None;
    }
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Mid-ranks (1-based) over runs of equal scores.
    let mut rank_sum_pos = 0.0f64;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum_pos += mid * idx[i..=j].iter().filter(|&&k| positive[k]).count() as f64;
        i = j + 1;
    }
    let (p, n) = (n_pos as f64, n_neg as f64);
    Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n))
}

fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 {
        0.0
    } else {
        a as f64 / b as f64
    }
}

/// Per-class classification figures.
#[derive(Clone, Debug, Serialize)]
pub struct ClassStats {
    pub name: String,
    pub support: u64,
    pub precision: f64,
    /// Recall, also called sensitivity or true-positive rate.
    pub recall: f64,
    pub specificity: f64,
    pub f1: f64,
    /// One-vs-rest AUROC of this class's probability.
    pub auroc: Option<f64>,
}

/// Classification metrics over a labelled set.
#[derive(Clone, Debug, Serialize)]
pub struct Classification {
    pub count: u64,
    pub accuracy: f64,
    pub macro_precision: f64,
    pub macro_recall: f64,
    pub macro_specificity: f64,
    pub macro_f1: f64,
    /// Mean of the defined one-vs-rest AUROCs (`None` if none is defined).
    pub macro_auroc: Option<f64>,
    /// `confusion[true][predicted]`.
    pub confusion: Vec<Vec<u64>>,
    pub per_class: Vec<ClassStats>,
}

impl Classification {
    /// Metrics from true `labels` and per-sample class `scores` (`scores[i].len()` = classes;
    /// prediction = argmax, first index on ties).
    pub fn compute(classes: &[String], labels: &[usize], scores: &[Vec<f32>]) -> Classification {
        let k = classes.len();
        let mut confusion = vec![vec![0u64; k]; k];
        for (&t, s) in labels.iter().zip(scores) {
            let pred = s.iter().enumerate().fold(0, |best, (i, &v)| if v > s[best] { i } else { best });
            if t < k && pred < k {
                confusion[t][pred] += 1;
            }
        }
        let n: u64 = confusion.iter().flatten().sum();
        let correct: u64 = (0..k).map(|i| confusion[i][i]).sum();
        let per_class: Vec<ClassStats> = (0..k)
            .map(|c| {
                let tp = confusion[c][c];
                let support: u64 = confusion[c].iter().sum();
                let predicted: u64 = confusion.iter().map(|r| r[c]).sum();
                let (fp, fn_) = (predicted - tp, support - tp);
                let tn = n - tp - fp - fn_;
                let (precision, recall) = (ratio(tp, tp + fp), ratio(tp, tp + fn_));
                let f1 = if precision + recall > 0.0 { 2.0 * precision * recall / (precision + recall) } else { 0.0 };
                let col: Vec<f32> = scores.iter().map(|s| s.get(c).copied().unwrap_or(f32::NEG_INFINITY)).collect();
                let pos: Vec<bool> = labels.iter().map(|&l| l == c).collect();
                ClassStats { name: classes[c].clone(), support, precision, recall, specificity: ratio(tn, tn + fp), f1, auroc: auroc(&col, &pos) }
            })
            .collect();
        let mean = |f: &dyn Fn(&ClassStats) -> f64| if k == 0 { 0.0 } else { per_class.iter().map(f).sum::<f64>() / k as f64 };
        let aucs: Vec<f64> = per_class.iter().filter_map(|c| c.auroc).collect();
        Classification {
            count: n,
            accuracy: ratio(correct, n),
            macro_precision: mean(&|c| c.precision),
            macro_recall: mean(&|c| c.recall),
            macro_specificity: mean(&|c| c.specificity),
            macro_f1: mean(&|c| c.f1),
            macro_auroc: if aucs.is_empty() { None } else { Some(aucs.iter().sum::<f64>() / aucs.len() as f64) },
            confusion,
            per_class,
        }
    }
}

/// Accumulated binary-segmentation counts.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Segmentation {
    pub images: u64,
    pub tp: u64,
    pub fp: u64,
    pub fn_: u64,
    pub tn: u64,
    dice_sum: f64,
}

impl Segmentation {
    /// Adds one image: predicted and true foreground per pixel.
    pub fn add(&mut self, pred: &[bool], truth: &[bool]) {
        let (mut tp, mut fp, mut fn_, mut tn) = (0u64, 0u64, 0u64, 0u64);
        for (&p, &t) in pred.iter().zip(truth) {
            match (p, t) {
                (true, true) => tp += 1,
                (true, false) => fp += 1,
                (false, true) => fn_ += 1,
                (false, false) => tn += 1,
            }
        }
        self.dice_sum += if tp + fp + fn_ == 0 { 1.0 } else { 2.0 * tp as f64 / (2 * tp + fp + fn_) as f64 };
        self.images += 1;
        self.tp += tp;
        self.fp += fp;
        self.fn_ += fn_;
        self.tn += tn;
    }

    /// Dice over all pixels of the set.
    pub fn dice(&self) -> f64 {
        ratio(2 * self.tp, 2 * self.tp + self.fp + self.fn_)
    }

    /// Intersection over union over all pixels of the set.
    pub fn iou(&self) -> f64 {
        ratio(self.tp, self.tp + self.fp + self.fn_)
    }

    /// Fraction of pixels classified correctly.
    pub fn pixel_accuracy(&self) -> f64 {
        ratio(self.tp + self.tn, self.tp + self.tn + self.fp + self.fn_)
    }

    /// Mean of per-image Dice.
    pub fn mean_dice(&self) -> f64 {
        if self.images == 0 {
            0.0
        } else {
            self.dice_sum / self.images as f64
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auroc_hand_computed_with_ties() {
        // Pairs (pos, neg): pos {0.8, 0.4}, neg {0.4, 0.1}: 0.8>0.4, 0.8>0.1, 0.4=0.4 (½), 0.4>0.1 → 3.5/4.
        let s = [0.8, 0.4, 0.4, 0.1];
        let p = [true, true, false, false];
        assert_eq!(auroc(&s, &p), Some(0.875));
        // All scores tied: 0.5.
        assert_eq!(auroc(&[0.3; 4], &p), Some(0.5));
        // Perfect and inverted rankings.
        assert_eq!(auroc(&[0.9, 0.8, 0.2, 0.1], &p), Some(1.0));
        assert_eq!(auroc(&[0.1, 0.2, 0.8, 0.9], &p), Some(0.0));
        // Positives {0.35, 0.8, 0.4} against negatives {0.1, 0.4, 0.4}: 1 + 3 + (1 + ½ + ½) = 6 of 9.
        let s = [0.1, 0.4, 0.35, 0.8, 0.4, 0.4];
        let p = [false, false, true, true, false, true];
        assert!((auroc(&s, &p).unwrap() - 6.0 / 9.0).abs() < 1e-12);
        assert_eq!(auroc(&[0.1, 0.2], &[true, true]), None);
    }

    #[test]
    fn classification_hand_computed() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        // true:  a a a b b c
        // pred:  a a b b c c
        let labels = [0, 0, 0, 1, 1, 2];
        let onehot = |k: usize| (0..3).map(|i| if i == k { 0.9 } else { 0.05 }).collect::<Vec<f32>>();
        let scores: Vec<Vec<f32>> = [0, 0, 1, 1, 2, 2].iter().map(|&k| onehot(k)).collect();
        let m = Classification::compute(&classes, &labels, &scores);
        assert_eq!(m.confusion, vec![vec![2, 1, 0], vec![0, 1, 1], vec![0, 0, 1]]);
        assert!((m.accuracy - 4.0 / 6.0).abs() < 1e-12);
        let a = &m.per_class[0];
        assert_eq!((a.precision, a.recall, a.specificity), (1.0, 2.0 / 3.0, 1.0));
        assert!((a.f1 - 0.8).abs() < 1e-12);
        let b = &m.per_class[1];
        // b: tp 1, fp 1, fn 1, tn 3.
        assert_eq!((b.precision, b.recall, b.specificity), (0.5, 0.5, 0.75));
        let c = &m.per_class[2];
        assert_eq!((c.precision, c.recall, c.specificity), (0.5, 1.0, 0.8));
        assert!((m.macro_f1 - (0.8 + 0.5 + 2.0 / 3.0) / 3.0).abs() < 1e-12);
        // Class a: positives score 0.9, 0.9, 0.05; negatives 0.05 ×3 → (3 + 3 + 1.5) / 9.
        assert!((a.auroc.unwrap() - 7.5 / 9.0).abs() < 1e-12);
    }

    #[test]
    fn segmentation_hand_computed() {
        let mut s = Segmentation::default();
        // tp 2, fp 1, fn 1, tn 4.
        s.add(&[true, true, true, false, false, false, false, false], &[true, true, false, true, false, false, false, false]);
        assert!((s.dice() - 4.0 / 6.0).abs() < 1e-12);
        assert!((s.iou() - 0.5).abs() < 1e-12);
        assert!((s.pixel_accuracy() - 0.75).abs() < 1e-12);
        s.add(&[false; 4], &[false; 4]);
        assert!((s.mean_dice() - (4.0 / 6.0 + 1.0) / 2.0).abs() < 1e-12);
        assert!((s.dice() - 4.0 / 6.0).abs() < 1e-12);
    }
}
