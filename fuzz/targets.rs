#![allow(dead_code)]
//! The fuzz targets' bodies: each takes arbitrary bytes and must return without panicking,
//! hanging or allocating past the limits; an error is the expected outcome for most inputs.
//! Shared by the cargo-afl binaries (`fuzz/src/bin/*.rs`) and by the corpus replay test
//! (`tests/fuzz_replay.rs`, in README's test command), which includes this file.
//!
//! | target | what the bytes are | what runs |
//! | --- | --- | --- |
//! | `onnx` | an ONNX model | protobuf decode, import (graph rewrites, shape inference) |
//! | `qdq` | a QDQ ONNX model | the same, seeded with quantized models (Q/DQ folding) |
//! | `session` | an ONNX model | import, `Session::new` (prepare, weight packing), the plan's memory estimate, and a run on a seeded input when the plan is small |
//! | `precisions` | an ONNX model | import, then sessions at 2, 3 and 1 threads in f32, at 2 in bf16 (where the CPU has it), at 2 and 1 in INT8 static and dynamic (calibrated on a seeded input), each run on a batch of 2 when the graph is small: the parallel splits, batch paths and kernels every precision chooses |
//! | `safetensors` | a safetensors file | header and offsets, config metadata or name recognition, model build |
//! | `image` | an image file | format guess, header limits, decode, classify preprocessing |
//! | `npy` | a .npy file | header parse, shape checks, data |
//! | `tiff` | a TIFF file | levels, then every row of level 0 (and of the last level) band by band |

use std::path::Path;

use kestrel::imageio::{decode_bytes, npy_from_bytes, preprocess, Preprocess};
use kestrel::models::{ModelConfig, SafetensorsWeights};
use kestrel::onnx::{import, proto, ImportOptions};
use kestrel::{Graph, Options, Session, Tensor};

/// Every target by name, as the corpus folders are named.
pub const TARGETS: &[(&str, fn(&[u8]))] = &[("onnx", onnx), ("qdq", onnx), ("session", session), ("precisions", precisions), ("safetensors", safetensors), ("image", image), ("npy", npy), ("tiff", tiff)];

/// Plans above this many bytes, or graphs above this many MACs, are prepared but not run.
const RUN_LIMIT_BYTES: usize = 16 << 20;
const RUN_LIMIT_MACS: u64 = 20_000_000;

pub fn onnx(data: &[u8]) {
    if let Ok(m) = proto::decode(Path::new("fuzz.onnx"), data) {
        let _ = import::import(&m, &ImportOptions::default());
    }
}

pub fn session(data: &[u8]) {
    let Ok(m) = proto::decode(Path::new("fuzz.onnx"), data) else { return };
    let Ok(g) = import::import(&m, &ImportOptions::default()) else { return };
    let Ok(shape) = g.input_shape(1) else { return };
    let macs = g.macs(&shape);
    let Ok(s) = Session::new(g, &Options { threads: 1, optimize: true, ..Default::default() }) else { return };
    let Ok(bytes) = s.memory_estimate(&shape) else { return };
    if bytes <= RUN_LIMIT_BYTES && macs.is_ok_and(|m| m <= RUN_LIMIT_MACS) {
        let n: usize = shape.iter().product();
        let x: Vec<f32> = (0..n).map(|i| ((i * 7919 % 255) as f32 - 127.0) / 64.0).collect();
        if let Ok(x) = Tensor::new(shape, x) {
            let _ = s.run(&[x]);
        }
    }
}

pub fn precisions(data: &[u8]) {
    use kestrel::quant::{quantize, Mode, QuantizeOptions};
    let Ok(m) = proto::decode(Path::new("fuzz.onnx"), data) else { return };
    let Ok(g) = import::import(&m, &ImportOptions::default()) else { return };
    let (Ok(one), Ok(two)) = (g.input_shape(1), g.input_shape(2)) else { return };
    // The inputs are built before any plan is checked: their size is bounded first.
    let elems = two.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
    if !g.macs(&two).is_ok_and(|m| m <= RUN_LIMIT_MACS) || !elems.is_some_and(|e| e <= RUN_LIMIT_BYTES / 4) {
        return;
    }
    let input = |shape: &Vec<usize>, seed: usize| {
        let n: usize = shape.iter().product();
        Tensor::new(shape.clone(), (0..n).map(|i| (((i + seed) * 7919 % 255) as f32 - 127.0) / 64.0).collect())
    };
    let (Ok(x1), Ok(x2)) = (input(&one, 0), input(&two, 3)) else { return };
    let run = |g: Graph, threads: usize, bf16: bool| {
        let Ok(s) = Session::new(g, &Options { threads, optimize: true, bf16, ..Default::default() }) else { return };
        if s.memory_estimate(&two).is_ok_and(|b| b <= RUN_LIMIT_BYTES) {
            let _ = s.run(std::slice::from_ref(&x2));
        }
    };
    // One thread after two: run alone on this thread, whose own pool has two workers.
    for (threads, bf16) in [(2, false), (3, false), (1, false), (2, true)] {
        run(g.clone(), threads, bf16);
    }
    for mode in [Mode::Static, Mode::Dynamic] {
        if let Ok(q) = quantize(&g, &QuantizeOptions { mode, threads: 2, ..Default::default() }, std::slice::from_ref(&x1), &mut |_, _| {}) {
            run(q.clone(), 2, false);
            run(q, 1, false);
        }
    }
}

pub fn safetensors(data: &[u8]) {
    let path = Path::new("fuzz.safetensors");
    let Ok(mut w) = SafetensorsWeights::from_bytes(path, data) else { return };
    let cfg = match &w.config_json {
        Some(j) => serde_json::from_str::<ModelConfig>(j).ok(),
        None => kestrel::load::recognise(&w),
    };
    if let Some(cfg) = cfg {
        let _ = cfg.build(&mut w);
    }
}

pub fn image(data: &[u8]) {
    if let Ok(img) = decode_bytes(Path::new("fuzz.img"), data) {
        let _ = preprocess(&img.to_rgb8(), &Preprocess::default());
    }
}

pub fn npy(data: &[u8]) {
    let _ = npy_from_bytes(Path::new("fuzz.npy"), data);
}

pub fn tiff(data: &[u8]) {
    let path = Path::new("fuzz.tif");
    let Ok(levels) = kestrel::slide::levels_of(std::io::Cursor::new(data), path) else { return };
    for level in [0, levels.len() - 1] {
        let Ok(mut rows) = kestrel::slide::TiffRows::from_reader(std::io::Cursor::new(data), path, level) else { continue };
        // Rows past a few megapixels are skipped: decoding them is work, not new paths.
        if rows.width().saturating_mul(rows.height()) > 1 << 22 {
            continue;
        }
        let mut row = vec![0u8; rows.width() * 3];
        for _ in 0..rows.height() {
            if rows.next_row(&mut row).is_err() {
                break;
            }
        }
    }
}
