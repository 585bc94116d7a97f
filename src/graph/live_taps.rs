//! Dead kernel taps: a conv whose feature map is smaller than its window reads only padding
//! through some taps, for every output pixel (a 3×3 pad-1 conv on a 1×1 map reads the input
//! through its centre tap alone). [`crop_dead_taps`] rewrites such a conv, for one input size,
//! to the bounding window of its live taps: the weights `[Cout, Cin/g, kh, kw]` (and INT8
//! codes `[Cout][Cin/g·kh·kw]`) keep only that window and the pads shrink by what was cut, so
//! every output pixel reads the same input pixels through the same weights, in the same
//! order.
//!
//! A dead tap only ever multiplies padding, which is 0 in f32 and the zero point in INT8 (an
//! exact 0 after the zero-point correction), so the cropped conv computes the same sums: in
//! f32 an `fma(w, 0, acc)` is `acc`, up to the sign of a zero sum; INT8 is exact.

use super::{Conv2d, Int8, Precision, QWeights};
use crate::tensor::Tensor;

/// The live taps `[first, last]` of one axis of a window of `k` taps at dilation `d` and
/// stride `s`, with `pad` before the input of `len` pixels and `out` outputs; `None` when no
/// tap ever reads the input.
fn live(len: usize, k: usize, s: usize, d: usize, pad: usize, out: usize) -> Option<(usize, usize)> {
    let reads = |t: usize| (0..out).any(|o| (o * s + t * d).checked_sub(pad).is_some_and(|i| i < len));
    let first = (0..k).find(|&t| reads(t))?;
    let last = (0..k).rev().find(|&t| reads(t))?;
    Some((first, last))
}

/// `c` cropped to the window of taps that read the input of size `[h, w]` (output `[oh, ow]`),
/// or `None` when every tap is live (nothing to gain) or none is, or when the cut would need a
/// negative pad.
pub fn crop_dead_taps(c: &Conv2d, [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> Option<Conv2d> {
    let [kh, kw] = c.kernel();
    let (y0, y1) = live(h, kh, c.stride[0], c.dilation[0], c.pads[0], oh)?;
    let (x0, x1) = live(w, kw, c.stride[1], c.dilation[1], c.pads[1], ow)?;
    let (nkh, nkw) = (y1 - y0 + 1, x1 - x0 + 1);
    if nkh == kh && nkw == kw {
        return None;
    }
    // Cutting t taps from the front moves the window's start by t·d: the pad before shrinks
    // by as much, and the pad after by the cut at the back, so the output size is unchanged.
    let pads = [
        c.pads[0].checked_sub(y0 * c.dilation[0])?,
        c.pads[1].checked_sub(x0 * c.dilation[1])?,
        c.pads[2].checked_sub((kh - 1 - y1) * c.dilation[0])?,
        c.pads[3].checked_sub((kw - 1 - x1) * c.dilation[1])?,
    ];
    let s = c.weight.shape();
    let (cout, cin_g) = (s[0], s[1]);
    let keep = |k: usize| {
        let (ky, kx) = ((k / kw) % kh, k % kw);
        (y0..=y1).contains(&ky) && (x0..=x1).contains(&kx)
    };
    let crop = |row: &[f32]| row.iter().enumerate().filter(|(k, _)| keep(*k)).map(|(_, &v)| v).collect::<Vec<f32>>();
    let kdim = cin_g * kh * kw;
    let data: Vec<f32> = c.weight.data().chunks_exact(kdim).flat_map(crop).collect();
    let weight = Tensor::new(vec![cout, cin_g, nkh, nkw], data).ok()?;
    let precision = match &c.precision {
        Precision::F32 => Precision::F32,
        Precision::Int8(q) => {
            let codes: Vec<i8> = q.weights.q.chunks_exact(kdim).flat_map(|row| row.iter().enumerate().filter(|(k, _)| keep(*k)).map(|(_, &v)| v)).collect();
            Precision::Int8(Int8 { weights: QWeights { q: codes, ..q.weights.clone() }, input: q.input })
        }
    };
    Some(Conv2d { weight, pads, precision, ..c.clone() })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conv(k: usize, stride: usize, pad: usize) -> Conv2d {
        let n = 2 * 3 * k * k;
        let weight = Tensor::new(vec![2, 3, k, k], (0..n).map(|i| i as f32).collect()).unwrap();
        Conv2d { weight, bias: None, stride: [stride; 2], pads: [pad; 4], dilation: [1; 2], groups: 1, act: None, residual: false, precision: Precision::F32 }
    }

    #[test]
    fn centre_tap_of_a_one_pixel_map() {
        let c = crop_dead_taps(&conv(3, 1, 1), [1, 1], [1, 1]).unwrap();
        assert_eq!(c.kernel(), [1, 1]);
        assert_eq!(c.pads, [0; 4]);
        // Channel-major rows keep the centre weight of each input channel.
        assert_eq!(c.weight.data(), &[4.0, 13.0, 22.0, 31.0, 40.0, 49.0]);
    }

    #[test]
    fn strided_two_by_two_to_one() {
        // Output (0, 0) of a stride-2 pad-1 3×3 conv on 2×2 reads rows and columns −1, 0, 1.
        let c = crop_dead_taps(&conv(3, 2, 1), [2, 2], [1, 1]).unwrap();
        assert_eq!(c.kernel(), [2, 2]);
        assert_eq!(c.pads, [0, 0, 1, 1]);
    }

    #[test]
    fn live_windows_are_left_alone() {
        assert!(crop_dead_taps(&conv(3, 1, 1), [2, 2], [2, 2]).is_none());
        assert!(crop_dead_taps(&conv(3, 1, 1), [8, 8], [8, 8]).is_none());
        assert!(crop_dead_taps(&conv(1, 1, 0), [1, 1], [1, 1]).is_none());
    }
}
