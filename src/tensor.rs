//! A dense f32 tensor in row-major order. Activations are NCHW throughout the engine.

use crate::error::{Error, Result};
use crate::rng::Rng;

/// ImageNet's per-channel RGB mean, the normalisation torchvision's classifiers (and the CLI's
/// defaults, `--mean`) expect: `(v / 255 − mean) / std` ([`Tensor::from_rgb8`]).
pub const IMAGENET_MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet's per-channel RGB standard deviation (see [`IMAGENET_MEAN`]).
pub const IMAGENET_STD: [f32; 3] = [0.229, 0.224, 0.225];

/// A dense, owned, row-major f32 tensor.
#[derive(Clone, Debug, PartialEq)]
pub struct Tensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

impl Tensor {
    /// A tensor from a shape and matching data.
    pub fn new(shape: Vec<usize>, data: Vec<f32>) -> Result<Self> {
        let n = checked_numel(&shape).ok_or_else(|| Error::BadTensor {
            name: "<tensor>".into(),
            reason: format!("shape {shape:?} overflows"),
        })?;
        if n != data.len() {
            return Err(Error::BadTensor {
                name: "<tensor>".into(),
                reason: format!("shape {shape:?} needs {n} values, got {}", data.len()),
            });
        }
        Ok(Tensor { shape, data })
    }

    /// A tensor of zeros.
    pub fn zeros(shape: Vec<usize>) -> Self {
        let n = shape.iter().product();
        Tensor { shape, data: vec![0.0; n] }
    }

    /// A tensor of seeded standard-normal values scaled by `std`.
    pub fn randn(shape: Vec<usize>, std: f32, seed: u64) -> Self {
        let n = shape.iter().product();
        let mut rng = Rng::new(seed);
        Tensor { shape, data: (0..n).map(|_| rng.normal() * std).collect() }
    }

    /// An RGB image as the networks take it: `pixels`, interleaved 8-bit RGB rows (`H·W·3`
    /// bytes, as camera and decoder buffers hold them), into `[1, 3, H, W]` with each value
    /// `(v / 255 − mean[c]) / std[c]` (torchvision's `ToTensor` then `Normalize`; the CLI's
    /// preprocessing after its resize and crop, `imageio::to_tensor`). A length other than
    /// `H·W·3`, or a size that overflows, is an error.
    pub fn from_rgb8(pixels: &[u8], [h, w]: [usize; 2], mean: [f32; 3], std: [f32; 3]) -> Result<Self> {
        let bad = |reason: String| Error::BadTensor { name: "<RGB image>".into(), reason };
        let plane = h.checked_mul(w).filter(|p| p.checked_mul(3).is_some()).ok_or_else(|| bad(format!("{h}x{w} pixels overflow")))?;
        if pixels.len() != 3 * plane {
            return Err(bad(format!("{h}x{w} RGB pixels are {} bytes, got {}", 3 * plane, pixels.len())));
        }
        let mut data = vec![0.0; 3 * plane];
        for (i, px) in pixels.chunks_exact(3).enumerate() {
            for c in 0..3 {
                data[c * plane + i] = (f32::from(px[c]) / 255.0 - mean[c]) / std[c];
            }
        }
        Ok(Tensor { shape: vec![1, 3, h, w], data })
    }

    /// The shape.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The values, row-major.
    pub fn data(&self) -> &[f32] {
        &self.data
    }

    /// The values, mutable.
    pub fn data_mut(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the tensor and returns its values.
    pub fn into_data(self) -> Vec<f32> {
        self.data
    }

    /// Number of elements.
    pub fn numel(&self) -> usize {
        self.data.len()
    }

    /// The same data under another shape with the same element count.
    pub fn reshape(mut self, shape: Vec<usize>) -> Result<Self> {
        if shape.iter().product::<usize>() != self.data.len() {
            return Err(Error::BadTensor {
                name: "<tensor>".into(),
                reason: format!("cannot reshape {:?} to {shape:?}", self.shape),
            });
        }
        self.shape = shape;
        Ok(self)
    }

    /// Splits a batch tensor `[N, ...]` into `[1, ...]` tensors.
    pub fn split_batch(&self) -> Vec<Tensor> {
        if self.shape.is_empty() || self.shape[0] == 0 {
            return vec![];
        }
        let per = self.data.len() / self.shape[0];
        let mut shape = self.shape.clone();
        shape[0] = 1;
        self.data
            .chunks(per.max(1))
            .map(|c| Tensor { shape: shape.clone(), data: c.to_vec() })
            .collect()
    }

    /// Stacks `[1, ...]` (or equal-shaped `[n, ...]`) tensors along the batch axis.
    pub fn concat_batch(parts: &[Tensor]) -> Result<Tensor> {
        let first = parts.first().ok_or_else(|| Error::Internal("concat_batch of no tensors".into()))?;
        if let Some(p) = parts.iter().find(|p| p.shape.is_empty()) {
            return Err(Error::InputShape { name: "batch".into(), expected: "a tensor with a batch axis".into(), got: p.shape.clone() });
        }
        let mut shape = first.shape.clone();
        let mut data = Vec::with_capacity(first.numel() * parts.len());
        let mut n = 0;
        for p in parts {
            if p.shape[1..] != first.shape[1..] {
                return Err(Error::InputShape {
                    name: "batch".into(),
                    expected: format!("[_, {:?}]", &first.shape[1..]),
                    got: p.shape.clone(),
                });
            }
            n += p.shape[0];
            data.extend_from_slice(&p.data);
        }
        shape[0] = n;
        Tensor::new(shape, data)
    }

    /// Converts to a candle tensor on the CPU.
    #[cfg(feature = "candle")]
    pub fn to_candle(&self) -> Result<candle_core::Tensor> {
        candle_core::Tensor::from_slice(&self.data, self.shape.as_slice(), &candle_core::Device::Cpu)
            .map_err(|e| Error::BadTensor { name: "<tensor>".into(), reason: e.to_string() })
    }

    /// Converts from any candle tensor (any float dtype, any device).
    #[cfg(feature = "candle")]
    pub fn from_candle(t: &candle_core::Tensor) -> Result<Self> {
        let bad = |e: candle_core::Error| Error::BadTensor { name: "<candle>".into(), reason: e.to_string() };
        let shape = t.dims().to_vec();
        let data = t
            .to_dtype(candle_core::DType::F32)
            .and_then(|t| t.flatten_all())
            .and_then(|t| t.to_vec1::<f32>())
            .map_err(bad)?;
        Tensor::new(shape, data)
    }
}

/// The element count of `shape`, or `None` on overflow.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}
