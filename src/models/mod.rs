//! Native model definitions. Each is a `Config` that builds a [`Graph`] from a
//! [`WeightSource`], naming its nodes after the PyTorch module paths so that a
//! `state_dict()` saved to safetensors loads unchanged.

pub mod builder;
pub mod init;
pub mod resnet;
pub mod unet;
pub mod weights;

pub use resnet::ResNetConfig;
pub use unet::{UNetConfig, UpMode};
pub use weights::{Param, SafetensorsWeights, SeededWeights, WeightSource};

use crate::error::{Error, Result};
use crate::graph::Graph;

/// A model architecture kestrel knows natively.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(tag = "arch", rename_all = "lowercase")]
pub enum ModelConfig {
    ResNet(ResNetConfig),
    UNet(UNetConfig),
}

impl ModelConfig {
    /// Builds the graph, calibrating BatchNorm statistics when the source asks for it.
    pub fn build(&self, src: &mut dyn WeightSource) -> Result<Graph> {
        let mut g = match self {
            ModelConfig::ResNet(c) => c.build(src)?,
            ModelConfig::UNet(c) => c.build(src)?,
        };
        if src.needs_bn_calibration() {
            init::calibrate_batchnorm(&mut g, 0x5eed)?;
        }
        Ok(g)
    }

    /// The built-in configuration called `name` (`resnet18` … `resnet152`, `unet`, `unet-bilinear`).
    pub fn builtin(name: &str) -> Result<Self> {
        let resnet = |depth| ModelConfig::ResNet(ResNetConfig { depth, ..ResNetConfig::default() });
        Ok(match name {
            "resnet18" => resnet(18),
            "resnet34" => resnet(34),
            "resnet50" => resnet(50),
            "resnet101" => resnet(101),
            "resnet152" => resnet(152),
            "unet" => ModelConfig::UNet(UNetConfig::default()),
            "unet-bilinear" => ModelConfig::UNet(UNetConfig { up: UpMode::Bilinear, ..UNetConfig::default() }),
            _ => {
                return Err(Error::Config(format!(
                    "unknown built-in model '{name}' (resnet18, resnet34, resnet50, resnet101, resnet152, unet, unet-bilinear)"
                )))
            }
        })
    }

    /// Default NCHW input shape at batch 1.
    pub fn input_shape(&self) -> Vec<usize> {
        match self {
            ModelConfig::ResNet(c) => vec![1, c.in_channels, c.image_size, c.image_size],
            ModelConfig::UNet(c) => vec![1, c.in_channels, c.image_size, c.image_size],
        }
    }
}

/// The built-in model `name` with seeded weights.
pub fn builtin(name: &str, seed: u64) -> Result<Graph> {
    ModelConfig::builtin(name)?.build(&mut SeededWeights { seed })
}
