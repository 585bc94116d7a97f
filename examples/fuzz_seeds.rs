//! Writes the fuzz seed corpus (fuzz/corpus/<target>/): tiny seeded models as ONNX, QDQ ONNX
//! and safetensors (with and without the config metadata), small images, TIFF files and .npy
//! files.
//! `cargo run --release --features onnx --example fuzz_seeds -- fuzz/corpus`; README's
//! "Fuzzing" section lists what else goes in (conformance node models, an ORT-made QDQ model).
//! Seeds are kept small: AFL mutates every byte, and a 2 KB model runs far more often than a
//! 2 MB one.

use std::path::{Path, PathBuf};

use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::qparams::WeightBits;
use kestrel::quant::{quantize, Mode, QuantizeOptions};
use kestrel::{Graph, Tensor};

fn configs() -> Vec<(&'static str, ModelConfig)> {
    let resnet = |depth| ModelConfig::ResNet(ResNetConfig { depth, num_classes: 3, in_channels: 3, base_width: 2, image_size: 32, ..Default::default() });
    let unet = |up| ModelConfig::UNet(UNetConfig { in_channels: 3, out_channels: 1, base_width: 2, depth: 2, batch_norm: true, up, image_size: 16, ..Default::default() });
    vec![("resnet18", resnet(18)), ("resnet50", resnet(50)), ("unet_transpose", unet(UpMode::Transpose)), ("unet_bilinear", unet(UpMode::Bilinear))]
}

/// `x: [1, cin, side, side]` → 3×3 conv to `mid` channels (ReLU) → 3×3 conv (the residual
/// added, ReLU) → 3×3 stride-2 conv → 1×1 conv to `2·mid` → global average pool → flatten →
/// fully connected to 5: seeded weights, biases on every conv.
fn conv_stack(cin: usize, mid: usize, side: usize) -> kestrel::Result<Graph> {
    use kestrel::graph::{Activation, Conv2d, Linear, Op};
    let mut g = Graph::default();
    let x = g.add_input("x", vec![1, cin, side, side]);
    let conv = |cout: usize, cin: usize, k: usize, stride: usize, seed: u64| -> kestrel::Result<Conv2d> {
        let w = Tensor::randn(vec![cout, cin, k, k], (2.0 / (cin * k * k) as f32).sqrt(), seed);
        let mut c = Conv2d::new(w, stride, k / 2, 1);
        c.bias = Some((0..cout).map(|i| (i as f32 * 0.37).sin() * 0.1).collect());
        Ok(c)
    };
    let a = g.push("c1", Op::Conv(conv(mid, cin, 3, 1, 11)?), vec![x]);
    let a = g.push("r1", Op::Act(Activation::Relu), vec![a]);
    let b = g.push("c2", Op::Conv(conv(mid, mid, 3, 1, 12)?), vec![a]);
    let b = g.push("add", Op::Add, vec![b, a]);
    let b = g.push("r2", Op::Act(Activation::Relu), vec![b]);
    let c = g.push("c3", Op::Conv(conv(mid, mid, 3, 2, 13)?), vec![b]);
    let c = g.push("c4", Op::Conv(conv(2 * mid, mid, 1, 1, 14)?), vec![c]);
    let p = g.push("gap", Op::GlobalAveragePool, vec![c]);
    let f = g.push("flat", Op::Flatten { axis: 1 }, vec![p]);
    let fc = Linear::new(Tensor::randn(vec![5, 2 * mid], 0.1, 15), Some(vec![0.01; 5]));
    let y = g.push("fc", Op::Linear(fc), vec![f]);
    g.outputs.push(y);
    Ok(g)
}

fn main() -> kestrel::Result<()> {
    let out = PathBuf::from(std::env::args().nth(1).unwrap_or_else(|| "fuzz/corpus".into()));
    let dir = |t: &str| -> kestrel::Result<PathBuf> {
        let d = out.join(t);
        std::fs::create_dir_all(&d).map_err(|e| kestrel::Error::io(&d, e))?;
        Ok(d)
    };
    for (name, cfg) in configs() {
        let g: Graph = cfg.build(&mut SeededWeights { seed: 1 })?;
        for t in ["onnx", "session"] {
            kestrel::onnx::save(&g, &dir(t)?.join(format!("{name}.onnx")))?;
        }
        let shape = g.input_shape(1)?;
        let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(1, shape[1], shape[2], shape[3], 40 + i)).collect();
        for (mode, bits) in [(Mode::Static, WeightBits::Eight), (Mode::Dynamic, WeightBits::Seven)] {
            let q = quantize(&g, &QuantizeOptions { mode, weight_bits: Some(bits), threads: 1, ..Default::default() }, &calib, &mut |_, _| {})?;
            kestrel::onnx::save(&q, &dir("qdq")?.join(format!("{name}_{mode:?}.onnx").to_lowercase()))?;
        }
        let st = dir("safetensors")?;
        kestrel::convert::write_safetensors(&g, Some(&cfg), &st.join(format!("{name}_config.safetensors")))?;
        kestrel::convert::write_safetensors(&g, None, &st.join(format!("{name}_names.safetensors")))?;
    }
    // The `precisions` target's own seeds: conv stacks wide enough for the kernels each
    // precision picks by shape (Winograd, bf16 Winograd from 64 channels, phase planes, dense
    // INT8 panels, GEMV columns, channel-split work), plus the tiny models above.
    let pr = dir("precisions")?;
    for (name, cin, mid, side) in [("convs_16x14", 16, 32, 14), ("convs_64x10", 64, 64, 10), ("convs_8x30", 8, 16, 30)] {
        kestrel::onnx::save(&conv_stack(cin, mid, side)?, &pr.join(format!("{name}.onnx")))?;
    }
    for (name, cfg) in configs() {
        let g: Graph = cfg.build(&mut SeededWeights { seed: 1 })?;
        kestrel::onnx::save(&g, &pr.join(format!("{name}.onnx")))?;
    }
    let img = dir("image")?;
    let rgb = image::RgbImage::from_fn(12, 9, |x, y| image::Rgb([(x * 20) as u8, (y * 25) as u8, ((x + y) * 9) as u8]));
    save(&rgb, &img.join("rgb.png"))?;
    save(&rgb, &img.join("rgb.jpg"))?;
    save(&image::GrayImage::from_fn(5, 7, |x, y| image::Luma([(x * 40 + y) as u8])), &img.join("gray.png"))?;
    save(&image::RgbaImage::from_fn(3, 3, |x, y| image::Rgba([x as u8 * 80, y as u8 * 80, 7, 200])), &img.join("rgba.png"))?;
    // Tiled pyramids from kestrel's writer (every compression, edge tiles), and stripped files
    // from the tiff crate's encoder (RGB, grayscale, 16-bit).
    let tif = dir("tiff")?;
    let px: Vec<u8> = (0..40 * 24 * 3).map(|i| (i * 37 % 251) as u8).collect();
    for c in [kestrel::slide::Compression::None, kestrel::slide::Compression::Lzw, kestrel::slide::Compression::Deflate, kestrel::slide::Compression::Jpeg] {
        let path = tif.join(format!("tiled_{c:?}.tif").to_lowercase());
        let mut w = kestrel::slide::TiffWriter::create(&path, &[[40, 24], [20, 12]], 16, 3, c, Some(0.25))?;
        for level in 0..2 {
            let [across, down] = w.grid(level);
            for ty in 0..down {
                for tx in 0..across {
                    let tile: Vec<u8> = (0..16 * 16 * 3).map(|i| px[(i + tx * 48 + ty * 7) % px.len()]).collect();
                    w.write_tile(level, tx, ty, &tile)?;
                }
            }
        }
        w.finish()?;
    }
    let strip = |name: &str, f: &dyn Fn(&mut tiff::encoder::TiffEncoder<std::fs::File>) -> tiff::TiffResult<()>| -> kestrel::Result<()> {
        let path = tif.join(name);
        let file = std::fs::File::create(&path).map_err(|e| kestrel::Error::io(&path, e))?;
        let bad = |e: tiff::TiffError| kestrel::Error::Image { path: path.clone(), reason: e.to_string() };
        let mut enc = tiff::encoder::TiffEncoder::new(file).map_err(bad)?;
        f(&mut enc).map_err(bad)
    };
    strip("strips_rgb.tif", &|e| e.write_image::<tiff::encoder::colortype::RGB8>(12, 9, &px[..12 * 9 * 3]))?;
    strip("strips_gray.tif", &|e| e.write_image::<tiff::encoder::colortype::Gray8>(7, 5, &px[..35]))?;
    strip("strips_gray16.tif", &|e| e.write_image::<tiff::encoder::colortype::Gray16>(4, 4, &[7u16; 16]))?;
    // The image target decodes TIFF too (a TIFF's level 0, whole): a few of the TIFF seeds.
    for name in ["tiled_lzw.tif", "strips_gray.tif", "strips_gray16.tif"] {
        let (from, to) = (tif.join(name), img.join(name));
        std::fs::copy(&from, &to).map_err(|e| kestrel::Error::io(&to, e))?;
    }
    let npy = dir("npy")?;
    kestrel::imageio::write_npy(&npy.join("image.npy"), &synthetic_images(1, 3, 4, 4, 3))?;
    kestrel::imageio::write_npy(&npy.join("vector.npy"), &Tensor::new(vec![5], vec![1.0, -2.0, 0.5, 3.0, 0.0])?)?;
    kestrel::imageio::write_npy(&npy.join("scalar.npy"), &Tensor::new(vec![], vec![4.0])?)?;
    println!("wrote the seed corpus under {}", out.display());
    Ok(())
}

fn save<P: image::PixelWithColorType, C: std::ops::Deref<Target = [P::Subpixel]>>(img: &image::ImageBuffer<P, C>, path: &Path) -> kestrel::Result<()>
where
    [P::Subpixel]: image::EncodableLayout,
{
    img.save(path).map_err(|e| kestrel::Error::Image { path: path.to_path_buf(), reason: e.to_string() })
}
