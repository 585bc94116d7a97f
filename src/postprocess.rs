//! Turning model outputs into answers, and inputs into the shapes models take: softmax rows and
//! top-k of classifier logits `[N, K]`; masks of segmenter logits `[N, C, H, W]` (one channel:
//! `sigmoid(logit) > threshold`; several: the argmax class); zero padding of `[N, C, H, W]`
//! inputs to a model's spatial multiple.
//!
//! Every command and tool that post-processes (classify, segment, bench, eval, parity) uses
//! these, so they agree on ties and thresholds.

use crate::error::{Error, Result};
use crate::tensor::Tensor;

/// Indices of the `k` largest values, largest first (ties: the lower index first).
pub fn topk(row: &[f32], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..row.len()).collect();
    idx.sort_by(|&a, &b| row[b].total_cmp(&row[a]).then(a.cmp(&b)));
    idx.truncate(k);
    idx
}

/// Softmax of each row of `[N, K]` logits.
pub fn softmax_rows(logits: &Tensor) -> Result<Vec<Vec<f32>>> {
    let s = logits.shape();
    if s.len() != 2 || s[1] == 0 {
        return Err(Error::OutputShape { expected: "[N, classes] logits".into(), got: s.to_vec() });
    }
    Ok(logits
        .data()
        .chunks(s[1])
        .map(|row| {
            let m = row.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let e: Vec<f32> = row.iter().map(|v| (v - m).exp()).collect();
            let z: f32 = e.iter().sum();
            e.into_iter().map(|v| v / z).collect()
        })
        .collect())
}

/// Per-pixel class labels of an `[N, C, H, W]` logit tensor `x` of shape `s`: `logit > 0`
/// for one channel, the argmax (lowest index on ties) for several.
pub fn mask_labels(x: &[f32], s: &[usize]) -> Vec<usize> {
    let (n, c, hw) = (s[0], s[1], s[2] * s[3]);
    let mut out = Vec::with_capacity(n * hw);
    for b in 0..n {
        for p in 0..hw {
            let at = |ch: usize| x[(b * c + ch) * hw + p];
            out.push(if c == 1 {
                usize::from(at(0) > 0.0)
            } else {
                (0..c).max_by(|&i, &j| at(i).total_cmp(&at(j)).then(j.cmp(&i))).unwrap_or(0)
            });
        }
    }
    out
}

/// The logistic function.
#[inline]
pub fn sigmoid(x: f32) -> f32 {
    1.0 / (1.0 + (-x).exp())
}

/// Checks that `logits` is a `[1, C, ≥h, ≥w]` map.
fn one_map(logits: &Tensor, h: usize, w: usize) -> Result<(usize, usize, usize)> {
    let s = logits.shape();
    if s.len() != 4 || s[0] != 1 || s[2] < h || s[3] < w || s[1] == 0 {
        return Err(Error::OutputShape { expected: format!("a [1, C, ≥{h}, ≥{w}] map"), got: s.to_vec() });
    }
    Ok((s[1], s[2], s[3]))
}

/// The foreground mask of `[1, C, H, W]` logits cropped to `h`×`w`, row-major: one channel
/// `sigmoid(logit) > threshold`, several the argmax class > 0.
pub fn foreground(logits: &Tensor, h: usize, w: usize, threshold: f32) -> Result<Vec<bool>> {
    let (c, ph, pw) = one_map(logits, h, w)?;
    let d = logits.data();
    let mut out = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            let at = |k: usize| d[k * ph * pw + y * pw + x];
            out.push(if c == 1 { sigmoid(at(0)) > threshold } else { (0..c).fold(0, |b, k| if at(k) > at(b) { k } else { b }) > 0 });
        }
    }
    Ok(out)
}

/// The gray image `segment` writes for `[1, C, H, W]` logits cropped to `h`×`w`, values in
/// [0, 1]: one channel the probability (`threshold < 0`) or the mask `probability >
/// threshold`; several channels the argmax class scaled to [0, 1].
pub fn mask_image(logits: &Tensor, h: usize, w: usize, threshold: f32) -> Result<Vec<f32>> {
    let (c, _, pw) = one_map(logits, h, w)?;
    let labels = if c > 1 { mask_labels(logits.data(), logits.shape()) } else { Vec::new() };
    let d = logits.data();
    let mut vals = Vec::with_capacity(h * w);
    for y in 0..h {
        for x in 0..w {
            vals.push(if c == 1 {
                let p = sigmoid(d[y * pw + x]);
                if threshold < 0.0 {
                    p
                } else {
                    f32::from(u8::from(p > threshold))
                }
            } else {
                labels[y * pw + x] as f32 / (c - 1) as f32
            });
        }
    }
    Ok(vals)
}

/// Zero-pads `[N, C, H, W]` on the bottom and right to multiples of `mult`.
pub fn pad_to_multiple(x: &Tensor, mult: usize) -> Result<Tensor> {
    let s = x.shape();
    if s.len() != 4 {
        return Err(Error::InputShape { name: "input".into(), expected: "[N, C, H, W]".into(), got: s.to_vec() });
    }
    let (planes, h, w) = (s[0] * s[1], s[2], s[3]);
    let m = mult.max(1);
    let (ph, pw) = (h.div_ceil(m) * m, w.div_ceil(m) * m);
    if (ph, pw) == (h, w) {
        return Ok(x.clone());
    }
    let mut data = vec![0.0; planes * ph * pw];
    for p in 0..planes {
        for y in 0..h {
            let src = &x.data()[(p * h + y) * w..][..w];
            data[(p * ph + y) * pw..][..w].copy_from_slice(src);
        }
    }
    Tensor::new(vec![s[0], s[1], ph, pw], data)
}
