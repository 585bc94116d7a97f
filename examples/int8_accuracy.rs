//! INT8 accuracy against f32 for kestrel and for ORT, on the same model, calibration data and
//! test inputs: `. scripts/setup.sh && cargo run --release --features ort --example int8_accuracy`.
//!
//! Built-in models (seeded weights): calibration on 16 seeded image-like inputs (kestrel MinMax
//! static; ORT quantize_static MinMax on the same 16 via scripts/ort_quantize.py), test on 32
//! others. Trained reference models (models/): calibration on 32 images of their training
//! distribution, test on the first 256 (shapes) or 64 (blobs) images of their held-out set.
//! kestrel's rows name their weight bits (8: [-127, 127]; 7: [-64, 64], what AVX2's
//! vpmaddubsw kernel runs exactly); ORT's model has 8-bit weights.

use kestrel::models::init::synthetic_images;
use kestrel::ort_ref::OrtModel;
use kestrel::parity::compare;
use kestrel::qparams::WeightBits;
use kestrel::quant::{quantize, Method, Mode, QuantizeOptions};
use kestrel::{models, Options, Session, Tensor};

fn main() -> kestrel::Result<()> {
    let threads = 2;
    let python = std::env::var("KESTREL_PYTHON").map_err(|_| kestrel::Error::Argument("source scripts/setup.sh first".into()))?;
    let dir = std::env::temp_dir().join("kestrel-int8-accuracy");
    std::fs::create_dir_all(&dir).map_err(|e| kestrel::Error::io(&dir, e))?;
    println!("| model | variant | cosine vs f32 | rel L2 vs f32 | top-1 agreement / mask IoU vs f32 |");
    println!("| --- | --- | ---: | ---: | ---: |");
    let mut cases: Vec<(String, kestrel::Graph, Vec<Tensor>, Vec<Tensor>)> = Vec::new();
    for name in ["resnet18", "resnet50", "unet"] {
        let g = models::builtin(name, 0)?;
        let s = g.input_shape(1)?;
        let calib: Vec<Tensor> = (0..16).map(|i| synthetic_images(1, s[1], s[2], s[3], 9000 + i)).collect();
        let test: Vec<Tensor> = (0..32).map(|i| synthetic_images(1, s[1], s[2], s[3], 100 + i)).collect();
        cases.push((name.to_string(), g, calib, test));
    }
    for r in kestrel::reference::reference_models() {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models").join(format!("{}.safetensors", r.name));
        let g = kestrel::load_model(&path.to_string_lossy(), &kestrel::LoadOptions::default())?.graph;
        let pre = r.preprocess();
        let calib = (0..32).map(|i| kestrel::imageio::preprocess(&r.sample(r.train_seed, 1_000_000 + i), &pre)).collect();
        let n = if r.dataset == "shapes" { 256 } else { 64 };
        let test = (0..n).map(|i| kestrel::imageio::preprocess(&r.sample(r.test_seed, i), &pre)).collect();
        cases.push((r.name.to_string(), g, calib, test));
    }
    for (name, g, calib, test) in cases {
        let name = name.as_str();
        let s = g.input_shape(1)?;
        let test = Tensor::concat_batch(&test)?;
        let f32s = Session::new(g.clone(), &Options { threads, optimize: true, ..Default::default() })?;
        let want = f32s.run(std::slice::from_ref(&test))?.remove(0);
        let row = |variant: &str, got: &Tensor, want: &Tensor| {
            let m = compare(want, got);
            let agree = m.top1.map(|t| format!("top-1 {t:.3}")).or(m.iou.map(|i| format!("IoU {i:.4}"))).unwrap_or_default();
            println!("| {name} | {variant} | {:.5} | {:.4} | {agree} |", m.cosine, m.rel_l2);
        };
        let (w8, w7) = (Some(WeightBits::Eight), Some(WeightBits::Seven));
        for (label, mode, f32_residual, weight_bits) in [
            ("kestrel int8 static", Mode::Static, false, w8),
            ("kestrel int8 static, 7-bit weights", Mode::Static, false, w7),
            ("kestrel int8 static, f32 residual", Mode::Static, true, w8),
            ("kestrel int8 dynamic", Mode::Dynamic, false, w8),
            ("kestrel int8 dynamic, 7-bit weights", Mode::Dynamic, false, w7),
        ] {
            let q = quantize(&g, &QuantizeOptions { mode, method: Method::MinMax, f32_residual, weight_bits, threads, ..Default::default() }, &calib, &mut |_, _| {})?;
            let got = Session::new(q, &Options { threads, optimize: true, ..Default::default() })?.run(std::slice::from_ref(&test))?.remove(0);
            row(label, &got, &want);
        }
        // ORT: its f32 run of our export is the reference for its int8 drift.
        let (f, q, c) = (dir.join(format!("{name}.onnx")), dir.join(format!("{name}_qdq.onnx")), dir.join(format!("{name}_calib.npy")));
        kestrel::onnx::save(&g, &f)?;
        kestrel::imageio::write_npy(&c, &Tensor::concat_batch(&calib)?)?;
        let shape = s.iter().map(|d| d.to_string()).collect::<Vec<_>>().join(",");
        let st = std::process::Command::new(&python)
            .args([concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/ort_quantize.py")])
            .arg(&f)
            .arg(&q)
            .arg(shape)
            .arg(&c)
            .status()
            .map_err(|e| kestrel::Error::Argument(e.to_string()))?;
        if !st.success() {
            return Err(kestrel::Error::Argument("ort_quantize.py failed".into()));
        }
        let ort_f32 = OrtModel::from_file(&f, threads)?.run(&test)?.remove(0).1;
        let ort_q = OrtModel::from_file(&q, threads)?.run(&test)?.remove(0).1;
        row("ORT int8 (quantize_static QDQ) vs ORT f32", &ort_q, &ort_f32);
    }
    Ok(())
}
