//! A UNet in the layout of the common PyTorch implementation (milesial/Pytorch-UNet):
//! `inc`, `down{i}.maxpool_conv.1`, `up{i}.up`, `up{i}.conv`, `outc.conv`, each DoubleConv a
//! `double_conv` Sequential. Level `i` has `base · 2^i` channels. Input `[N, Cin, H, W]` with
//! H and W multiples of `2^depth`; output logits `[N, Cout, H, W]`.

use std::collections::BTreeMap;

use super::builder::Builder;
use super::weights::WeightSource;
use crate::error::{Error, Result};
use crate::graph::*;

/// How the decoder upsamples.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum UpMode {
    /// ConvTranspose2d, kernel 2, stride 2, halving the channels.
    Transpose,
    /// Bilinear ×2 resize (align_corners = true), channels unchanged.
    Bilinear,
}

/// A UNet configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct UNetConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub base_width: usize,
    /// Number of down (and up) steps.
    pub depth: usize,
    pub batch_norm: bool,
    pub up: UpMode,
    /// Default input side, a multiple of `2^depth`.
    pub image_size: usize,
    /// Output channels of individual convs by layer name, where they differ from the
    /// architecture's (a pruned model's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub widths: BTreeMap<String, usize>,
}

impl Default for UNetConfig {
    fn default() -> Self {
        UNetConfig {
            in_channels: 3,
            out_channels: 1,
            base_width: 32,
            depth: 4,
            batch_norm: true,
            up: UpMode::Transpose,
            image_size: 256,
            widths: BTreeMap::new(),
        }
    }
}

impl UNetConfig {
    /// Builds the graph with weights from `src`.
    pub fn build(&self, src: &mut dyn WeightSource) -> Result<Graph> {
        if self.depth == 0 || self.depth > 8 || self.base_width == 0 || self.in_channels == 0 || self.out_channels == 0 {
            return Err(Error::Config(format!(
                "UNet needs depth 1..=8 and non-zero widths (depth {}, base {})",
                self.depth, self.base_width
            )));
        }
        let multiple = 1usize << self.depth;
        if self.image_size == 0 || self.image_size % multiple != 0 {
            return Err(Error::Config(format!(
                "UNet image size {} is not a multiple of 2^depth = {multiple}",
                self.image_size
            )));
        }
        let ch = |i: usize| self.base_width << i;
        let mut b = Builder::new(src, &self.widths);
        let x = b.input("input", self.in_channels, self.image_size);
        let mut skips = vec![self.double_conv(&mut b, "inc", x, self.in_channels, ch(0))?];
        for i in 1..=self.depth {
            let p = b.maxpool(&format!("down{i}.maxpool_conv.0"), skips[i - 1], 2, 2, 0);
            let h = self.double_conv(&mut b, &format!("down{i}.maxpool_conv.1"), p, ch(i - 1), ch(i))?;
            skips.push(h);
        }
        let mut h = skips[self.depth];
        for j in 1..=self.depth {
            let level = self.depth - j;
            let (up, up_ch) = match self.up {
                UpMode::Transpose => (b.conv_transpose(&format!("up{j}.up"), h, ch(level + 1), ch(level), 2)?, ch(level)),
                UpMode::Bilinear => {
                    let r = Resize::new(ResizeMode::Linear, CoordMode::AlignCorners, ResizeTarget::Scales([2.0, 2.0]));
                    (b.push(format!("up{j}.up"), Op::Resize(r), vec![h]), ch(level + 1))
                }
            };
            let cat = b.push(format!("up{j}.cat"), Op::Concat { axis: 1 }, vec![skips[level], up]);
            h = self.double_conv(&mut b, &format!("up{j}.conv"), cat, ch(level) + up_ch, ch(level))?;
        }
        let out = b.conv("outc.conv", h, ch(0), self.out_channels, 1, 1, 0, true)?;
        b.g.outputs.push(out);
        b.g.spatial_multiple = Some(multiple);
        Ok(b.g)
    }

    /// `(conv3×3 → [BN] → ReLU) × 2` named `{name}.double_conv.{i}`.
    fn double_conv(&self, b: &mut Builder, name: &str, x: ValueId, cin: usize, cout: usize) -> Result<ValueId> {
        let bn = self.batch_norm;
        let step = if bn { 3 } else { 2 };
        let mut h = x;
        for (k, c_in) in [(0, cin), (step, cout)] {
            h = b.conv(&format!("{name}.double_conv.{k}"), h, c_in, cout, 3, 1, 1, !bn)?;
            if bn {
                h = b.bn(&format!("{name}.double_conv.{}", k + 1), h, cout, false)?;
            }
            h = b.relu(&format!("{name}.double_conv.{}", k + step - 1), h);
        }
        Ok(h)
    }
}
