//! ResNet-18/34/50/101/152 in the torchvision layout: BasicBlock or Bottleneck, the stride
//! on the 3×3 conv, and a 1×1 conv + BN downsample. Input `[N, 3, H, W]` with H and W
//! multiples of 32; output logits `[N, num_classes]`.

use std::collections::BTreeMap;

use super::builder::Builder;
use super::weights::WeightSource;
use crate::error::{Error, Result};
use crate::graph::{Graph, Op, ValueId};

/// A ResNet configuration.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct ResNetConfig {
    /// 18, 34, 50, 101 or 152.
    pub depth: usize,
    pub num_classes: usize,
    pub in_channels: usize,
    /// Width of the stem and of layer1 (64 in torchvision; smaller for test fixtures).
    pub base_width: usize,
    /// Default input side, a multiple of 32.
    pub image_size: usize,
    /// Output channels of individual convs by layer name, where they differ from the
    /// architecture's (a pruned model's).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub widths: BTreeMap<String, usize>,
}

impl Default for ResNetConfig {
    fn default() -> Self {
        ResNetConfig { depth: 50, num_classes: 1000, in_channels: 3, base_width: 64, image_size: 224, widths: BTreeMap::new() }
    }
}

impl ResNetConfig {
    /// Blocks per stage and whether blocks are bottlenecks.
    pub fn layout(&self) -> Result<([usize; 4], bool)> {
        Ok(match self.depth {
            18 => ([2, 2, 2, 2], false),
            34 => ([3, 4, 6, 3], false),
            50 => ([3, 4, 6, 3], true),
            101 => ([3, 4, 23, 3], true),
            152 => ([3, 8, 36, 3], true),
            d => return Err(Error::Config(format!("ResNet depth {d} (use 18, 34, 50, 101 or 152)"))),
        })
    }

    /// Builds the graph with weights from `src`.
    pub fn build(&self, src: &mut dyn WeightSource) -> Result<Graph> {
        let (blocks, bottleneck) = self.layout()?;
        if self.base_width == 0 || self.num_classes == 0 || self.in_channels == 0 {
            return Err(Error::Config("ResNet widths and class count must be non-zero".into()));
        }
        if self.image_size == 0 || self.image_size % 32 != 0 {
            return Err(Error::Config(format!("ResNet image size {} is not a multiple of 32", self.image_size)));
        }
        let expansion = if bottleneck { 4 } else { 1 };
        let w = self.base_width;
        let mut b = Builder::new(src, &self.widths);
        let x = b.input("input", self.in_channels, self.image_size);
        let mut h = b.conv("conv1", x, self.in_channels, w, 7, 2, 3, false)?;
        h = b.bn("bn1", h, w, false)?;
        h = b.relu("relu", h);
        h = b.maxpool("maxpool", h, 3, 2, 1);
        let mut cin = w;
        for (stage, &n) in blocks.iter().enumerate() {
            let planes = w << stage;
            for i in 0..n {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                let name = format!("layer{}.{i}", stage + 1);
                h = block(&mut b, &name, h, cin, planes, stride, bottleneck)?;
                cin = planes * expansion;
            }
        }
        h = b.push("avgpool", Op::GlobalAveragePool, vec![h]);
        h = b.push("flatten", Op::Flatten { axis: 1 }, vec![h]);
        h = b.linear("fc", h, cin, self.num_classes)?;
        b.g.outputs.push(h);
        b.g.spatial_multiple = Some(32);
        Ok(b.g)
    }
}

/// One BasicBlock or Bottleneck, named `layerS.I`.
fn block(b: &mut Builder, name: &str, x: ValueId, cin: usize, planes: usize, stride: usize, bottleneck: bool) -> Result<ValueId> {
    let cout = if bottleneck { planes * 4 } else { planes };
    let identity = if stride != 1 || cin != cout {
        let d = b.conv(&format!("{name}.downsample.0"), x, cin, cout, 1, stride, 0, false)?;
        b.bn(&format!("{name}.downsample.1"), d, cout, false)?
    } else {
        x
    };
    let mut h;
    if bottleneck {
        h = b.conv(&format!("{name}.conv1"), x, cin, planes, 1, 1, 0, false)?;
        h = b.bn(&format!("{name}.bn1"), h, planes, false)?;
        h = b.relu(&format!("{name}.relu1"), h);
        h = b.conv(&format!("{name}.conv2"), h, planes, planes, 3, stride, 1, false)?;
        h = b.bn(&format!("{name}.bn2"), h, planes, false)?;
        h = b.relu(&format!("{name}.relu2"), h);
        h = b.conv(&format!("{name}.conv3"), h, planes, cout, 1, 1, 0, false)?;
        h = b.bn(&format!("{name}.bn3"), h, cout, true)?;
    } else {
        h = b.conv(&format!("{name}.conv1"), x, cin, planes, 3, stride, 1, false)?;
        h = b.bn(&format!("{name}.bn1"), h, planes, false)?;
        h = b.relu(&format!("{name}.relu1"), h);
        h = b.conv(&format!("{name}.conv2"), h, planes, planes, 3, 1, 1, false)?;
        h = b.bn(&format!("{name}.bn2"), h, planes, true)?;
    }
    let s = b.push(format!("{name}.add"), Op::Add, vec![h, identity]);
    Ok(b.relu(&format!("{name}.relu"), s))
}
