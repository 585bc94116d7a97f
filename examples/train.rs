//! Trains kestrel's reference models with candle's autograd, on the crate's own synthetic data
//! (`kestrel::dataset::synth`), and writes them to `models/` with their test metrics.
//!
//! ```text
//! cargo run --release --features train --example train -- shapes   # ResNet-18 (width 16), 10 classes, 32×32
//! cargo run --release --features train --example train -- blobs    # UNet (depth 3, width 8), 1 class, 64×64
//! cargo run --release --features train --example train -- all
//! ```
//!
//! Every training batch is freshly generated (sample indices `step·B .. (step+1)·B` of the
//! training seed), so there is no fixed training set to overfit. The held-out set is another
//! seed of the same generator; its metrics are computed by kestrel's own engine on the saved
//! file (the numbers `kestrel eval` reports) and written to `models/manifest.json`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Module, ModuleT, Tensor as CTensor, D};
use candle_nn::{BatchNorm, BatchNormConfig, Conv2d, Conv2dConfig, ConvTranspose2d, ConvTranspose2dConfig, Linear, Optimizer, VarBuilder, VarMap};
use kestrel::dataset::synth;
use kestrel::imageio::{self, Preprocess};
use kestrel::models::{ModelConfig, ResNetConfig, UNetConfig, UpMode};

type R<T> = Result<T, Box<dyn std::error::Error>>;

fn bn(c: usize, vb: VarBuilder) -> candle_core::Result<BatchNorm> {
    candle_nn::batch_norm(c, BatchNormConfig { eps: 1e-5, remove_mean: true, affine: true, momentum: 0.1 }, vb)
}

fn conv(cin: usize, cout: usize, k: usize, stride: usize, pad: usize, bias: bool, vb: VarBuilder) -> candle_core::Result<Conv2d> {
    let cfg = Conv2dConfig { padding: pad, stride, dilation: 1, groups: 1, cudnn_fwd_algo: None };
    if bias {
        candle_nn::conv2d(cin, cout, k, cfg, vb)
    } else {
        candle_nn::conv2d_no_bias(cin, cout, k, cfg, vb)
    }
}

/// torchvision BasicBlock with the same parameter names.
struct Block {
    conv1: Conv2d,
    bn1: BatchNorm,
    conv2: Conv2d,
    bn2: BatchNorm,
    down: Option<(Conv2d, BatchNorm)>,
}

impl Block {
    fn new(cin: usize, cout: usize, stride: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let down = if stride != 1 || cin != cout {
            Some((conv(cin, cout, 1, stride, 0, false, vb.pp("downsample.0"))?, bn(cout, vb.pp("downsample.1"))?))
        } else {
            None
        };
        Ok(Block {
            conv1: conv(cin, cout, 3, stride, 1, false, vb.pp("conv1"))?,
            bn1: bn(cout, vb.pp("bn1"))?,
            conv2: conv(cout, cout, 3, 1, 1, false, vb.pp("conv2"))?,
            bn2: bn(cout, vb.pp("bn2"))?,
            down,
        })
    }
    fn forward_t(&self, x: &CTensor, train: bool) -> candle_core::Result<CTensor> {
        let h = self.bn1.forward_t(&self.conv1.forward(x)?, train)?.relu()?;
        let h = self.bn2.forward_t(&self.conv2.forward(&h)?, train)?;
        let id = match &self.down {
            Some((c, b)) => b.forward_t(&c.forward(x)?, train)?,
            None => x.clone(),
        };
        (h + id)?.relu()
    }
}

/// ResNet-18 in torchvision's layout (names match `kestrel::models::resnet`).
struct ResNet {
    conv1: Conv2d,
    bn1: BatchNorm,
    blocks: Vec<Block>,
    fc: Linear,
}

impl ResNet {
    fn new(cfg: &ResNetConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let w = cfg.base_width;
        let mut blocks = Vec::new();
        let mut cin = w;
        for stage in 0..4 {
            for i in 0..2 {
                let stride = if stage > 0 && i == 0 { 2 } else { 1 };
                blocks.push(Block::new(cin, w << stage, stride, vb.pp(format!("layer{}.{i}", stage + 1)))?);
                cin = w << stage;
            }
        }
        Ok(ResNet {
            conv1: conv(cfg.in_channels, w, 7, 2, 3, false, vb.pp("conv1"))?,
            bn1: bn(w, vb.pp("bn1"))?,
            blocks,
            fc: candle_nn::linear(cin, cfg.num_classes, vb.pp("fc"))?,
        })
    }
    fn forward_t(&self, x: &CTensor, train: bool) -> candle_core::Result<CTensor> {
        let h = self.bn1.forward_t(&self.conv1.forward(x)?, train)?.relu()?;
        let mut h = max_pool_3x3_s2_p1(&h)?;
        for b in &self.blocks {
            h = b.forward_t(&h, train)?;
        }
        self.fc.forward(&h.mean(D::Minus1)?.mean(D::Minus1)?)
    }
}

/// MaxPool 3×3, stride 2, padding 1 as the maximum of nine strided views (candle has no
/// backward for overlapping pooling windows). Zero padding equals -inf padding after a ReLU.
fn max_pool_3x3_s2_p1(x: &CTensor) -> candle_core::Result<CTensor> {
    let (h, w) = (x.dim(2)?, x.dim(3)?);
    let (ho, wo) = ((h - 1) / 2 + 1, (w - 1) / 2 + 1);
    let xp = x.pad_with_zeros(2, 1, 1)?.pad_with_zeros(3, 1, 1)?;
    let idx = |n: usize, off: usize| CTensor::new((0..n).map(|i| (2 * i + off) as u32).collect::<Vec<_>>(), x.device());
    let mut out: Option<CTensor> = None;
    for dy in 0..3 {
        let rows = xp.index_select(&idx(ho, dy)?, 2)?;
        for dx in 0..3 {
            let v = rows.index_select(&idx(wo, dx)?, 3)?;
            out = Some(match out {
                Some(o) => o.maximum(&v)?,
                None => v,
            });
        }
    }
    out.ok_or_else(|| candle_core::Error::Msg("empty pool".into()))
}

/// milesial UNet with BatchNorm and ConvTranspose up-sampling (names match `kestrel::models::unet`).
struct DoubleConv {
    c0: Conv2d,
    b1: BatchNorm,
    c3: Conv2d,
    b4: BatchNorm,
}

impl DoubleConv {
    fn new(cin: usize, cout: usize, vb: VarBuilder) -> candle_core::Result<Self> {
        let vb = vb.pp("double_conv");
        Ok(DoubleConv {
            c0: conv(cin, cout, 3, 1, 1, false, vb.pp("0"))?,
            b1: bn(cout, vb.pp("1"))?,
            c3: conv(cout, cout, 3, 1, 1, false, vb.pp("3"))?,
            b4: bn(cout, vb.pp("4"))?,
        })
    }
    fn forward_t(&self, x: &CTensor, train: bool) -> candle_core::Result<CTensor> {
        let h = self.b1.forward_t(&self.c0.forward(x)?, train)?.relu()?;
        self.b4.forward_t(&self.c3.forward(&h)?, train)?.relu()
    }
}

struct UNet {
    inc: DoubleConv,
    downs: Vec<DoubleConv>,
    ups: Vec<(ConvTranspose2d, DoubleConv)>,
    outc: Conv2d,
}

impl UNet {
    fn new(cfg: &UNetConfig, vb: VarBuilder) -> candle_core::Result<Self> {
        let ch = |i: usize| cfg.base_width << i;
        let downs = (1..=cfg.depth).map(|i| DoubleConv::new(ch(i - 1), ch(i), vb.pp(format!("down{i}.maxpool_conv.1")))).collect::<candle_core::Result<_>>()?;
        let t = ConvTranspose2dConfig { padding: 0, output_padding: 0, stride: 2, dilation: 1 };
        let ups = (1..=cfg.depth)
            .map(|j| {
                let level = cfg.depth - j;
                Ok((
                    candle_nn::conv_transpose2d(ch(level + 1), ch(level), 2, t, vb.pp(format!("up{j}.up")))?,
                    DoubleConv::new(2 * ch(level), ch(level), vb.pp(format!("up{j}.conv")))?,
                ))
            })
            .collect::<candle_core::Result<_>>()?;
        Ok(UNet {
            inc: DoubleConv::new(cfg.in_channels, ch(0), vb.pp("inc"))?,
            downs,
            ups,
            outc: conv(ch(0), cfg.out_channels, 1, 1, 0, true, vb.pp("outc.conv"))?,
        })
    }
    fn forward_t(&self, x: &CTensor, train: bool) -> candle_core::Result<CTensor> {
        let mut skips = vec![self.inc.forward_t(x, train)?];
        for d in &self.downs {
            let p = skips[skips.len() - 1].max_pool2d(2)?;
            skips.push(d.forward_t(&p, train)?);
        }
        let mut h = skips.pop().ok_or_else(|| candle_core::Error::Msg("no levels".into()))?;
        for (up, dc) in &self.ups {
            let u = up.forward(&h)?;
            let s = skips.pop().ok_or_else(|| candle_core::Error::Msg("skip".into()))?;
            h = dc.forward_t(&CTensor::cat(&[&s, &u], 1)?, train)?;
        }
        self.outc.forward(&h)
    }
}

/// Re-initialises every weight from kestrel's seeded generator (candle's CPU initialisers draw
/// from an unseeded thread RNG): He-normal over fan-in (`prod(dims[1..])`, which is PyTorch's
/// fan-in for Conv, ConvTranspose and Linear), zero biases; BatchNorm keeps (1, 0, 0, 1).
fn seeded_init(varmap: &VarMap, seed: u64) -> R<()> {
    let data = varmap.data().lock().map_err(|_| "varmap lock")?;
    for (name, var) in data.iter() {
        let dims = var.dims().to_vec();
        let is_bn = data.contains_key(&name.replace(".bias", ".running_mean").replace(".weight", ".running_mean"));
        if is_bn {
            continue;
        }
        let n: usize = dims.iter().product();
        let values: Vec<f32> = if dims.len() >= 2 {
            let fan_in: usize = dims[1..].iter().product();
            let gain = if name.starts_with("fc.") { 1.0 } else { 2.0 };
            let std = (gain / fan_in.max(1) as f32).sqrt();
            let mut rng = kestrel::rng::Rng::for_name(seed, name);
            (0..n).map(|_| rng.normal() * std).collect()
        } else {
            vec![0.0; n]
        };
        var.set(&CTensor::from_vec(values, dims, var.device())?)?;
    }
    Ok(())
}

/// Normalisation shared with `kestrel eval` for the reference models.
fn preprocess(size: usize) -> Preprocess {
    Preprocess { resize: size, crop: size, ..Preprocess::default() }
}

fn batch_tensor(imgs: &[image::RgbImage], size: usize, dev: &Device) -> R<CTensor> {
    let pre = preprocess(size);
    let mut data = Vec::with_capacity(imgs.len() * 3 * size * size);
    for img in imgs {
        data.extend_from_slice(imageio::to_tensor(img, &pre).data());
    }
    Ok(CTensor::from_vec(data, (imgs.len(), 3, size, size), dev)?)
}

fn cosine_lr(base: f64, step: usize, total: usize) -> f64 {
    let warm = total / 20;
    if step < warm {
        return base * (step + 1) as f64 / warm as f64;
    }
    0.5 * base * (1.0 + (std::f64::consts::PI * (step - warm) as f64 / (total - warm).max(1) as f64).cos())
}

/// Writes the VarMap as f32 safetensors with the kestrel config in the metadata.
fn save(varmap: &VarMap, cfg: &ModelConfig, path: &Path) -> R<()> {
    let data = varmap.data().lock().map_err(|_| "varmap lock")?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    let mut owned: Vec<(String, Vec<usize>, Vec<u8>)> = Vec::new();
    for n in names {
        let t = data[n].as_tensor();
        let v: Vec<f32> = t.flatten_all()?.to_vec1()?;
        owned.push((n.clone(), t.dims().to_vec(), v.iter().flat_map(|x| x.to_le_bytes()).collect()));
    }
    let views = owned
        .iter()
        .map(|(n, s, b)| Ok((n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b)?)))
        .collect::<R<Vec<_>>>()?;
    let meta = HashMap::from([("kestrel_config".to_string(), serde_json::to_string(cfg)?)]);
    safetensors::serialize_to_file(views, Some(meta), path)?;
    Ok(())
}

struct Plan {
    name: &'static str,
    steps: usize,
    batch: usize,
    lr: f64,
    seed: u64,
}

fn train_shapes(out: &Path, plan: &Plan) -> R<serde_json::Value> {
    let dev = Device::Cpu;
    let size = 32;
    let cfg = ResNetConfig { depth: 18, num_classes: synth::SHAPE_CLASSES.len(), in_channels: 3, base_width: 16, image_size: size, ..Default::default() };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = ResNet::new(&cfg, vb)?;
    seeded_init(&varmap, plan.seed)?;
    let mut opt = candle_nn::AdamW::new(varmap.all_vars(), candle_nn::ParamsAdamW { lr: plan.lr, weight_decay: 1e-4, ..Default::default() })?;
    let t0 = std::time::Instant::now();
    for step in 0..plan.steps {
        let (imgs, labels): (Vec<_>, Vec<u32>) =
            (0..plan.batch).map(|i| synth::shape_sample(plan.seed, (step * plan.batch + i) as u64, size)).map(|(im, c)| (im, c as u32)).unzip();
        let x = batch_tensor(&imgs, size, &dev)?;
        let y = CTensor::new(labels, &dev)?;
        let logits = model.forward_t(&x, true)?;
        let loss = candle_nn::loss::cross_entropy(&logits, &y)?;
        opt.set_learning_rate(cosine_lr(plan.lr, step, plan.steps));
        opt.backward_step(&loss)?;
        if step % 50 == 0 || step + 1 == plan.steps {
            let acc = logits.argmax(D::Minus1)?.eq(&y)?.to_dtype(DType::F32)?.mean_all()?.to_scalar::<f32>()?;
            eprintln!("[{}] step {step:5} loss {:.4} batch acc {acc:.3} ({:.0}s)", plan.name, loss.to_scalar::<f32>()?, t0.elapsed().as_secs_f64());
        }
    }
    let path = out.join(format!("{}.safetensors", plan.name));
    save(&varmap, &ModelConfig::ResNet(cfg.clone()), &path)?;
    Ok(serde_json::json!({"train_seconds": t0.elapsed().as_secs_f64()}))
}

fn train_blobs(out: &Path, plan: &Plan) -> R<serde_json::Value> {
    let dev = Device::Cpu;
    let size = 64;
    let cfg = UNetConfig { in_channels: 3, out_channels: 1, base_width: 8, depth: 3, batch_norm: true, up: UpMode::Transpose, image_size: size, ..Default::default() };
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, DType::F32, &dev);
    let model = UNet::new(&cfg, vb)?;
    seeded_init(&varmap, plan.seed)?;
    let mut opt = candle_nn::AdamW::new(varmap.all_vars(), candle_nn::ParamsAdamW { lr: plan.lr, weight_decay: 1e-4, ..Default::default() })?;
    let t0 = std::time::Instant::now();
    for step in 0..plan.steps {
        let (imgs, masks): (Vec<_>, Vec<_>) = (0..plan.batch).map(|i| synth::blob_sample(plan.seed, (step * plan.batch + i) as u64, size)).unzip();
        let x = batch_tensor(&imgs, size, &dev)?;
        let m: Vec<f32> = masks.iter().flat_map(|m| m.pixels().map(|p| f32::from(u8::from(p[0] > 127))).collect::<Vec<_>>()).collect();
        let y = CTensor::from_vec(m, (plan.batch, 1, size, size), &dev)?;
        let logits = model.forward_t(&x, true)?;
        let loss = candle_nn::loss::binary_cross_entropy_with_logit(&logits, &y)?;
        opt.set_learning_rate(cosine_lr(plan.lr, step, plan.steps));
        opt.backward_step(&loss)?;
        if step % 50 == 0 || step + 1 == plan.steps {
            eprintln!("[{}] step {step:5} loss {:.4} ({:.0}s)", plan.name, loss.to_scalar::<f32>()?, t0.elapsed().as_secs_f64());
        }
    }
    let path = out.join(format!("{}.safetensors", plan.name));
    save(&varmap, &ModelConfig::UNet(cfg.clone()), &path)?;
    Ok(serde_json::json!({"train_seconds": t0.elapsed().as_secs_f64()}))
}

fn main() -> R<()> {
    let which = std::env::args().nth(1).unwrap_or_else(|| "all".into());
    let out = PathBuf::from(std::env::var("KESTREL_MODELS").unwrap_or_else(|_| "models".into()));
    std::fs::create_dir_all(&out)?;
    let plans = kestrel::reference::reference_models();
    let mut entries = Vec::new();
    for r in &plans {
        if which != "all" && which != r.dataset {
            continue;
        }
        let plan = Plan { name: r.name, steps: r.train_steps, batch: r.train_batch, lr: r.train_lr, seed: r.train_seed };
        let extra = match r.dataset {
            "shapes" => train_shapes(&out, &plan)?,
            _ => train_blobs(&out, &plan)?,
        };
        let path = out.join(format!("{}.safetensors", r.name));
        let entry = kestrel::reference::manifest_entry(r, &path, extra)?;
        eprintln!("{}", serde_json::to_string_pretty(&entry)?);
        entries.push(entry);
    }
    kestrel::reference::update_manifest(&out.join("manifest.json"), entries)?;
    Ok(())
}
