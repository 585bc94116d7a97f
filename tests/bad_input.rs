//! Bad input never panics: each case gets an error that names the thing at fault.

mod common;

use std::path::Path;

use kestrel::error::Error;
use kestrel::models::*;
use kestrel::{load_model, LoadOptions, Options, Session, Tensor};

fn load_err(spec: &str) -> String {
    match load_model(spec, &LoadOptions::default()) {
        Ok(_) => panic!("{spec} loaded"),
        Err(e) => e.to_string(),
    }
}

fn small_resnet() -> kestrel::Graph {
    ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 8, image_size: 64, ..Default::default() })
        .build(&mut SeededWeights { seed: 1 })
        .unwrap()
}

#[test]
fn missing_files() {
    for p in ["/nonexistent/model.onnx", "/nonexistent/model.safetensors", "nope/x.bin"] {
        let e = load_err(p);
        assert!(e.contains("/nonexistent") || e.contains("nope"), "{e}");
    }
    assert!(load_err("resnet19").contains("unknown built-in model 'resnet19'"));
    let e = kestrel::imageio::decode(Path::new("/nonexistent/cat.png")).unwrap_err().to_string();
    assert!(e.contains("/nonexistent/cat.png"), "{e}");
}

#[test]
fn truncated_and_corrupt_safetensors() {
    let dir = tempfile::tempdir().unwrap();
    let g = small_resnet();
    let good = dir.path().join("good.safetensors");
    kestrel::convert::write_safetensors(&g, None, &good).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    for (name, data) in [
        ("truncated", bytes[..bytes.len() / 2].to_vec()),
        ("header-only", bytes[..20].to_vec()),
        ("empty", vec![]),
        ("garbage", (0..4096u32).map(|i| (i * 2654435761u32 >> 13) as u8).collect()),
        ("huge-header-len", {
            let mut b = bytes.clone();
            b[..8].copy_from_slice(&u64::MAX.to_le_bytes());
            b
        }),
    ] {
        let p = dir.path().join(format!("{name}.safetensors"));
        std::fs::write(&p, data).unwrap();
        let e = load_err(p.to_str().unwrap());
        assert!(e.contains(&format!("{name}.safetensors")), "{name}: {e}");
    }
}

#[test]
fn safetensors_wrong_shape_and_missing_weight() {
    let dir = tempfile::tempdir().unwrap();
    let g = small_resnet();
    let mut dict = kestrel::convert::state_dict(&g);
    // fc.weight with the wrong shape, conv1.weight missing.
    for (n, s, _) in dict.iter_mut() {
        if n == "fc.weight" {
            *s = vec![s[1], s[0]];
        }
    }
    dict.retain(|(n, _, _)| n != "layer1.0.conv1.weight");
    let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = dict.into_iter().map(|(n, s, d)| (n, s, d.iter().flat_map(|v| v.to_le_bytes()).collect())).collect();
    let views: Vec<_> = bytes.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(safetensors::Dtype::F32, s.clone(), b).unwrap())).collect();
    let p = dir.path().join("bad.safetensors");
    safetensors::serialize_to_file(views, None, &p).unwrap();
    let cfg = dir.path().join("bad.json");
    std::fs::write(&cfg, r#"{"arch":"resnet","depth":18,"num_classes":10,"base_width":8,"image_size":64}"#).unwrap();
    let e = load_err(p.to_str().unwrap());
    assert!(e.contains("layer1.0.conv1.weight") && e.contains("missing"), "{e}");
    let mut w = SafetensorsWeights::load(&p).unwrap();
    let e = w.get("fc.weight", &[10, 512], Param::BnBeta).unwrap_err().to_string();
    assert!(e.contains("fc.weight") && e.contains("expected shape"), "{e}");
}

#[test]
fn wrong_input_shapes() {
    let s = Session::new(small_resnet(), &Options::default()).unwrap();
    for shape in [vec![1, 4, 64, 64], vec![1, 3, 64], vec![0, 3, 64, 64], vec![1, 3, 50, 64]] {
        let e = s.run(&[Tensor::zeros(shape.clone())]).unwrap_err();
        assert!(matches!(e, Error::InputShape { .. }), "{shape:?}: {e}");
        assert!(e.to_string().contains("input"), "{e}");
    }
    let e = s.run(&[]).unwrap_err().to_string();
    assert!(e.contains("1 input"), "{e}");
}

#[test]
fn undecodable_image_and_bad_npy() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("broken.png");
    let mut png = b"\x89PNG\r\n\x1a\n".to_vec();
    png.extend_from_slice(&[0, 0, 0, 13, b'I', b'H', b'D', b'R', 1, 2]);
    std::fs::write(&p, png).unwrap();
    let e = kestrel::imageio::decode(&p).unwrap_err().to_string();
    assert!(e.contains("broken.png") && e.contains("cannot decode"), "{e}");
    let n = dir.path().join("x.npy");
    kestrel::imageio::write_npy(&n, &Tensor::new(vec![2, 3], vec![1.0; 6]).unwrap()).unwrap();
    assert_eq!(kestrel::imageio::read_npy(&n).unwrap().shape(), &[2, 3]);
    let mut b = std::fs::read(&n).unwrap();
    b.truncate(b.len() - 4);
    std::fs::write(&n, b).unwrap();
    let e = kestrel::imageio::read_npy(&n).unwrap_err().to_string();
    assert!(e.contains("x.npy") && e.contains("needs 24 bytes"), "{e}");
}

/// Image headers are checked against the pixel limit before decoding; an elongated image is
/// cropped before it is resized, so a 100000×1 PNG classifies in little memory.
#[test]
fn huge_and_elongated_images() {
    let dir = tempfile::tempdir().unwrap();
    // A valid PNG header declaring 100000×100000 RGB pixels (decoders read up to the first IDAT).
    let file = common::png_header(100_000, 100_000);
    let huge = dir.path().join("huge.png");
    std::fs::write(&huge, file).unwrap();
    let t = std::time::Instant::now();
    let e = kestrel::imageio::decode(&huge).unwrap_err().to_string();
    assert!(e.contains("huge.png") && e.contains("100000×100000") && e.contains("above the limit"), "{e}");
    assert!(t.elapsed().as_secs_f64() < 1.0);
    // 100000×1: decoded (1e5 pixels), then preprocessed to 224×224 without a 25.6 M-pixel resize.
    let long = dir.path().join("long.png");
    image::RgbImage::from_fn(100_000, 1, |x, _| image::Rgb([(x % 251) as u8, 9, 200])).save(&long).unwrap();
    let img = kestrel::imageio::decode(&long).unwrap();
    let x = kestrel::imageio::preprocess(&img, &Default::default());
    assert_eq!(x.shape(), &[1, 3, 224, 224][..]);
    assert!(x.data().iter().all(|v| v.is_finite()));
}

#[cfg(feature = "onnx")]
mod onnx {
    use super::*;
    use kestrel::onnx::{export, pb};
    use prost::Message;

    fn model_bytes() -> Vec<u8> {
        export::to_bytes(&small_resnet()).unwrap()
    }

    fn write(dir: &Path, name: &str, b: &[u8]) -> String {
        let p = dir.join(name);
        std::fs::write(&p, b).unwrap();
        p.to_str().unwrap().to_string()
    }

    #[test]
    fn truncated_and_corrupt_onnx() {
        let dir = tempfile::tempdir().unwrap();
        let b = model_bytes();
        for (name, data) in [("trunc.onnx", b[..b.len() / 3].to_vec()), ("junk.onnx", vec![0xff; 100]), ("empty.onnx", vec![])] {
            let e = load_err(&write(dir.path(), name, &data));
            assert!(e.contains(name), "{name}: {e}");
        }
    }

    #[test]
    fn tensor_size_mismatch_is_refused_before_allocation() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        let name = m.graph.as_ref().unwrap().initializer[0].name.clone();
        m.graph.as_mut().unwrap().initializer[0].dims = vec![1 << 40, 1 << 30];
        let e = load_err(&write(dir.path(), "lie.onnx", &m.encode_to_vec()));
        assert!(e.contains(&name) && (e.contains("declare") || e.contains("overflow")), "{e}");
        m.graph.as_mut().unwrap().initializer[0].dims = vec![3];
        let e = load_err(&write(dir.path(), "lie2.onnx", &m.encode_to_vec()));
        assert!(e.contains("declare 3 values"), "{e}");
    }

    /// Moves every initializer into `data`, as torch's exporter does for large models.
    fn externalise(m: &mut pb::ModelProto, data: &str) -> Vec<u8> {
        let mut blob = Vec::new();
        for t in &mut m.graph.as_mut().unwrap().initializer {
            let kv = |k: &str, v: String| pb::StringStringEntryProto { key: k.into(), value: v };
            t.external_data = vec![kv("location", data.into()), kv("offset", blob.len().to_string()), kv("length", t.raw_data.len().to_string())];
            blob.append(&mut t.raw_data);
            t.data_location = 1;
        }
        blob
    }

    #[test]
    fn external_data_loads_and_hostile_locations_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let g = small_resnet();
        let x = kestrel::models::init::synthetic_images(1, 3, 64, 64, 1);
        let want = Session::new(g.clone(), &Options::default()).unwrap().run(std::slice::from_ref(&x)).unwrap();
        let mut m = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        let blob = externalise(&mut m, "w.bin");
        std::fs::write(dir.path().join("w.bin"), &blob).unwrap();
        let p = write(dir.path(), "ext.onnx", &m.encode_to_vec());
        let got = load_model(&p, &LoadOptions::default()).unwrap();
        assert_eq!(Session::new(got.graph, &Options::default()).unwrap().run(&[x]).unwrap(), want);
        // Truncated data file: refused before reading.
        std::fs::write(dir.path().join("w.bin"), &blob[..blob.len() - 8]).unwrap();
        let e = load_err(&p);
        assert!(e.contains("runs past the end"), "{e}");
        // Escaping the model's directory.
        let mut m2 = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        externalise(&mut m2, "../w.bin");
        let e = load_err(&write(dir.path(), "escape.onnx", &m2.encode_to_vec()));
        assert!(e.contains("plain relative path"), "{e}");
        let mut m3 = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        externalise(&mut m3, "missing.bin");
        let e = load_err(&write(dir.path(), "missing.onnx", &m3.encode_to_vec()));
        assert!(e.contains("missing.bin"), "{e}");
    }

    #[test]
    fn unsupported_op_and_attribute_name_the_node() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        let g = m.graph.as_mut().unwrap();
        let relu = g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
        relu.op_type = "Gelu".into();
        let name = relu.name.clone();
        let e = load_err(&write(dir.path(), "op.onnx", &m.encode_to_vec()));
        assert!(e.contains(&name) && e.contains("Gelu"), "{e}");

        let mut m = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        let g = m.graph.as_mut().unwrap();
        let conv = g.node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
        conv.attribute.push(pb::AttributeProto { name: "frobnicate".into(), r#type: 2, i: 1, ..Default::default() });
        let name = conv.name.clone();
        let e = load_err(&write(dir.path(), "attr.onnx", &m.encode_to_vec()));
        assert!(e.contains(&name) && e.contains("frobnicate") && e.contains("Conv"), "{e}");
    }

    /// Names from the file are printed escaped: a newline or a terminal escape in a node name
    /// leaves the CLI's error one line, with nothing obeyed.
    #[test]
    fn control_characters_in_names_stay_escaped() {
        let dir = tempfile::tempdir().unwrap();
        let mut m = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        let g = m.graph.as_mut().unwrap();
        let relu = g.node.iter_mut().find(|n| n.op_type == "Relu").unwrap();
        relu.op_type = "Gelu".into();
        relu.name = "evil\nkestrel: ok\x1b[31mred".into();
        let path = write(dir.path(), "names.onnx", &m.encode_to_vec());
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kestrel")).args(["info", &path]).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.starts_with("kestrel: error: ") && err.contains("evil\\nkestrel: ok\\u{1b}[31mred") && !err.contains('\x1b'), "{err}");
    }

    /// The classes a CLI mutation campaign found (issue "The front door"), one case each: every
    /// one was a panic or an unbounded allocation before.
    #[test]
    fn hostile_graph_classes_are_errors() {
        let load = |m: &pb::ModelProto| kestrel::onnx::import::import(m, &Default::default());
        let base = pb::ModelProto::decode(model_bytes().as_slice()).unwrap();
        // A Concat with no inputs (the native model has none: add one).
        let mut m = base.clone();
        let g = m.graph.as_mut().unwrap();
        let out = g.node.last().unwrap().output[0].clone();
        g.node.push(pb::NodeProto { name: "cat".into(), op_type: "Concat".into(), output: vec!["c".into()], attribute: vec![pb::AttributeProto { name: "axis".into(), r#type: 2, i: 1, ..Default::default() }], ..Default::default() });
        let e = load(&m).unwrap_err().to_string();
        assert!(e.contains("cat") && e.contains("no inputs"), "{e}");
        let _ = out;
        // Pads and strides far past any image.
        for (attr, v) in [("pads", vec![1i64 << 40; 4]), ("strides", vec![1i64 << 40; 2])] {
            let mut m = base.clone();
            let conv = m.graph.as_mut().unwrap().node.iter_mut().find(|n| n.op_type == "Conv").unwrap();
            let name = conv.name.clone();
            match conv.attribute.iter_mut().find(|a| a.name == attr) {
                Some(a) => a.ints = v.clone(),
                None => conv.attribute.push(pb::AttributeProto { name: attr.into(), r#type: 7, ints: v.clone(), ..Default::default() }),
            }
            let r = load(&m).and_then(|g| {
                let s = g.input_shape(1)?;
                Session::new(g, &Options::default())?.run(&[Tensor::randn(s, 1.0, 1)])
            });
            let e = r.unwrap_err().to_string();
            assert!(e.contains(&name) && (e.contains("2^40") || e.contains("strides")), "{attr}: {e}");
        }
        // A graph without outputs: refused when the session is built.
        let mut m = base.clone();
        m.graph.as_mut().unwrap().output.clear();
        let e = load(&m).and_then(|g| Session::new(g, &Options::default()).map(|_| ())).unwrap_err();
        assert!(matches!(e, Error::NoOutput), "{e}");
    }

    #[test]
    fn duplicate_node_names_are_refused_by_convert() {
        let mut g = small_resnet();
        let first = g.nodes.iter().position(|n| n.op.conv().is_some()).unwrap();
        let second = g.nodes.iter().rposition(|n| n.op.conv().is_some()).unwrap();
        g.nodes[second].name = g.nodes[first].name.clone();
        let dir = tempfile::tempdir().unwrap();
        let e = kestrel::convert::write_safetensors(&g, None, &dir.path().join("x.safetensors")).unwrap_err().to_string();
        assert!(e.contains("two tensors named"), "{e}");
    }
}

/// `Tensor::from_rgb8`, the embedder's way in without the image crates: interleaved RGB rows
/// become the CLI's normalised `[1, 3, H, W]` tensor bit for bit (`imageio::to_tensor` of the
/// same pixels, and the plain per-pixel formula), on a 7×5 image whose every byte differs from
/// its neighbours'; a buffer of the wrong length, short or long, and a size that overflows
/// are errors naming the image.
#[test]
fn rgb8_pixels_become_the_cli_tensor() {
    let (w, h) = (5usize, 7usize);
    let img = image::RgbImage::from_fn(w as u32, h as u32, |x, y| image::Rgb([(x * 37 + y * 11) as u8, (x * 5 + y * 53 + 7) as u8, (255 - x * 19 - y * 3) as u8]));
    let p = kestrel::imageio::Preprocess::default();
    let t = Tensor::from_rgb8(img.as_raw(), [h, w], p.mean, p.std).unwrap();
    assert_eq!(t.shape(), &[1, 3, h, w]);
    assert_eq!(t, kestrel::imageio::to_tensor(&img, &p));
    for (x, y, px) in img.enumerate_pixels() {
        for c in 0..3 {
            let want = (f32::from(px[c]) / 255.0 - p.mean[c]) / p.std[c];
            assert_eq!(t.data()[c * h * w + y as usize * w + x as usize].to_bits(), want.to_bits(), "pixel ({x}, {y}) channel {c}");
        }
    }
    let raw = img.as_raw();
    for bytes in [&raw[..raw.len() - 1], &[raw.as_slice(), &[0u8]].concat()[..], &[][..]] {
        let e = Tensor::from_rgb8(bytes, [h, w], p.mean, p.std).unwrap_err().to_string();
        assert!(e.contains("RGB image") && e.contains(&format!("got {}", bytes.len())), "{e}");
    }
    let e = Tensor::from_rgb8(&[], [usize::MAX, 2], p.mean, p.std).unwrap_err().to_string();
    assert!(e.contains("overflow"), "{e}");
    let empty = Tensor::from_rgb8(&[], [0, 4], p.mean, p.std).unwrap();
    assert_eq!(empty.shape(), &[1, 3, 0, 4]);
}
