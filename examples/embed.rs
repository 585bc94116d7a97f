//! The engine alone, as an edge binary embeds it (README, "Embedding"): the crate with
//! `default-features = false` (add `features = ["onnx"]` for ONNX files), no CLI, image or
//! plotting crates. Loads a model, optionally quantizes it to static INT8 on seeded
//! calibration inputs, runs it on an RGB image and prints the top classes and the median
//! latency.
//!
//! `cargo run --release --no-default-features --example embed -- [MODEL] [--rgb FILE] [--int8] [--threads N] [--runs N]`
//!
//! MODEL is a built-in name (`resnet18` … `resnet152`, `unet`; seeded synthetic weights), a
//! `.safetensors` file (its config in its metadata or a `.json` beside it) or, with the `onnx`
//! feature, an `.onnx` file. `--rgb FILE` holds the image as raw interleaved 8-bit RGB rows of
//! the model's input size (what a camera or a decoder hands an application); without it, a
//! gradient made here. `Tensor::from_rgb8` normalises it (ImageNet mean and std, as the CLI
//! does); decoding and resizing image files are the `app` feature's (`kestrel::imageio`).

use std::time::Instant;

use kestrel::quant::{quantize, QuantizeOptions};
use kestrel::tensor::{IMAGENET_MEAN, IMAGENET_STD};
use kestrel::{load_model, LoadOptions, Options, Session, Tensor};

fn main() {
    if let Err(e) = run() {
        eprintln!("embed: error: {e}");
        std::process::exit(2);
    }
}

fn run() -> kestrel::Result<()> {
    let mut args = std::env::args().skip(1);
    let (mut spec, mut int8, mut threads, mut runs, mut rgb) = ("resnet18".to_string(), false, 0usize, 10usize, None);
    let number = |flag: &str, v: Option<String>| v.and_then(|s| s.parse::<usize>().ok()).ok_or_else(|| kestrel::Error::Argument(format!("{flag} needs a number")));
    while let Some(a) = args.next() {
        match a.as_str() {
            "--int8" => int8 = true,
            "--rgb" => rgb = Some(args.next().ok_or_else(|| kestrel::Error::Argument("--rgb needs a file".into()))?),
            "--threads" => threads = number("--threads", args.next())?,
            "--runs" => runs = number("--runs", args.next())?.max(1),
            _ if a.starts_with("--") => return Err(kestrel::Error::Argument(format!("unknown option {a}"))),
            _ => spec = a,
        }
    }
    let model = load_model(&spec, &LoadOptions::default())?;
    let shape = model.graph.input_shape(1)?;
    let mut graph = model.graph;
    if int8 {
        // Static INT8: activation ranges from a few seeded inputs (an application passes
        // samples of its own data), weights per output channel.
        let calib: Vec<Tensor> = (0..4).map(|i| Tensor::randn(shape.clone(), 1.0, 100 + i)).collect();
        graph = quantize(&graph, &QuantizeOptions { threads, ..Default::default() }, &calib, &mut |_, _| {})?;
    }
    let session = Session::new(graph, &Options { threads, ..Default::default() })?;
    let x = match (shape.as_slice(), rgb) {
        (&[1, 3, h, w], rgb) => {
            let pixels = match rgb {
                Some(path) => std::fs::read(&path).map_err(|e| kestrel::Error::io(path.as_str(), e))?,
                None => (0..h * w).flat_map(|i| [(i % w * 255 / w) as u8, (i / w * 255 / h) as u8, 128]).collect(),
            };
            Tensor::from_rgb8(&pixels, [h, w], IMAGENET_MEAN, IMAGENET_STD)?
        }
        (_, Some(_)) => return Err(kestrel::Error::Argument(format!("--rgb needs a model of one 3-channel image, not input {shape:?}"))),
        (_, None) => Tensor::randn(shape.clone(), 1.0, 7),
    };
    let mut times = Vec::with_capacity(runs);
    let mut outputs = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        outputs = session.run(std::slice::from_ref(&x))?;
        times.push(t.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    let y = outputs.first().ok_or_else(|| kestrel::Error::Internal("the model has no output".into()))?;
    let mut report = format!("{} ({}), input {shape:?}, output {:?}: median {:.2} ms over {runs} runs\n", model.name, if int8 { "quantized to INT8 here" } else { "as loaded" }, y.shape(), times[times.len() / 2]);
    if y.shape().len() == 2 {
        // A classifier: the five largest logits of the first image.
        let classes = y.shape()[1];
        let mut top: Vec<(usize, f32)> = y.data()[..classes].iter().copied().enumerate().collect();
        top.sort_by(|a, b| b.1.total_cmp(&a.1));
        let list: Vec<String> = top.iter().take(5).map(|(c, v)| format!("{c} ({v:.3})")).collect();
        report += &format!("top classes: {}\n", list.join(", "));
    }
    // One write, and a reader that went away (`| head -1`) ends the program quietly: println!
    // would panic on the broken pipe.
    match std::io::Write::write_all(&mut std::io::stdout().lock(), report.as_bytes()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(kestrel::Error::io("<standard output>", e)),
        _ => Ok(()),
    }
}
