//! ONNX graphs that decode but are hostile never panic: seeded structural mutations of small
//! models (a native ResNet, and the torch-style and ORT QDQ fixtures when present) go
//! through import, `Session::new` and one run; each must succeed or return an error. The
//! mutations are the classes a mutation campaign found: nodes losing or gaining inputs,
//! attributes set to extreme values (0, −1, 2⁴⁰, 1e9, ∞, NaN, empty lists), initializers with
//! lying or empty shapes, graphs without outputs, duplicate node names, inputs of another
//! rank.
#![cfg(feature = "onnx")]

mod common;

use std::panic::{catch_unwind, AssertUnwindSafe};

use kestrel::models::*;
use kestrel::onnx::{export, import, pb, ImportOptions};
use kestrel::rng::Rng;
use kestrel::{Options, Session, Tensor};
use prost::Message;

static WHERE: std::sync::Mutex<String> = std::sync::Mutex::new(String::new());

/// Inputs larger than this are not run (the import and planning are still exercised).
const MAX_INPUT: usize = 1 << 22;

fn seeds() -> Vec<(String, pb::ModelProto)> {
    let g = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 8, image_size: 32, ..Default::default() })
        .build(&mut SeededWeights { seed: 1 })
        .unwrap();
    let mut out = vec![("native resnet18".to_string(), pb::ModelProto::decode(export::to_bytes(&g).unwrap().as_slice()).unwrap())];
    for dir in ["torch_like", "ort_qdq"] {
        let Ok(rd) = std::fs::read_dir(common::fixtures().join(dir)) else { continue };
        let mut files: Vec<_> = rd.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|e| e == "onnx")).collect();
        files.sort();
        // Two of each kind keep the test quick; all of them take long in the run step.
        for p in files.into_iter().take(2) {
            let Ok(bytes) = std::fs::read(&p) else { continue };
            // Fixtures with external data are covered by their own tests.
            if let Ok(m) = pb::ModelProto::decode(bytes.as_slice()) {
                if m.graph.as_ref().is_some_and(|g| g.initializer.iter().all(|t| t.external_data.is_empty())) {
                    out.push((p.display().to_string(), m));
                }
            }
        }
    }
    out
}

fn pick<T>(r: &mut Rng, v: &[T]) -> usize {
    r.below(v.len().max(1)).min(v.len().saturating_sub(1))
}

/// One seeded structural mutation; returns what it did.
fn mutate(m: &mut pb::ModelProto, r: &mut Rng) -> String {
    let g = m.graph.as_mut().unwrap();
    let n = pick(r, &g.node);
    let ints = [0i64, -1, 1 << 40, i64::MAX, 3];
    let floats = [0f32, -1.0, 1e9, f32::INFINITY, f32::NAN, 1e-30];
    match r.below(12) {
        10 => {
            // Small float initializers are Resize scales, Clip bounds, Q/DQ scales: extreme
            // values for them.
            let small: Vec<usize> = (0..g.initializer.len()).filter(|&i| g.initializer[i].data_type == 1 && g.initializer[i].dims.iter().product::<i64>() <= 8).collect();
            if small.is_empty() {
                return "no small float initializer".into();
            }
            let t = &mut g.initializer[small[r.below(small.len())]];
            let v = floats[r.below(floats.len())];
            let n = t.dims.iter().product::<i64>().max(1) as usize;
            t.float_data.clear();
            t.raw_data = std::iter::repeat_n(v, n).flat_map(|f| f.to_le_bytes()).collect();
            format!("initializer {} = {v}", t.name)
        }
        11 => {
            // A quantization parameter with no values.
            let q: Vec<usize> = (0..g.initializer.len()).filter(|&i| g.initializer[i].name.contains("scale") || g.initializer[i].name.contains("zero_point")).collect();
            if q.is_empty() {
                return "no quantization parameter".into();
            }
            let t = &mut g.initializer[q[r.below(q.len())]];
            t.dims = vec![0];
            t.raw_data.clear();
            t.float_data.clear();
            t.int32_data.clear();
            format!("initializer {} emptied", t.name)
        }
        0 if !g.node.is_empty() => {
            let k = r.below(3);
            let node = &mut g.node[n];
            match k {
                0 => node.input.clear(),
                1 => {
                    node.input.pop();
                }
                _ => node.input.push(node.input.first().cloned().unwrap_or_default()),
            }
            format!("node {} ({}) inputs {k}", node.name, node.op_type)
        }
        1 | 2 if !g.node.is_empty() => {
            let node = &mut g.node[n];
            if node.attribute.is_empty() {
                return "no attribute".into();
            }
            let a = pick(r, &node.attribute);
            let at = &mut node.attribute[a];
            let what = r.below(4);
            match what {
                0 => {
                    at.i = ints[r.below(ints.len())];
                    for v in at.ints.iter_mut() {
                        *v = ints[r.below(ints.len())];
                    }
                }
                1 => {
                    at.f = floats[r.below(floats.len())];
                    for v in at.floats.iter_mut() {
                        *v = floats[r.below(floats.len())];
                    }
                }
                2 => {
                    at.ints.clear();
                    at.floats.clear();
                }
                _ => at.s = [&b"SAME_UPPER"[..], b"VALID", b"SAME_LOWER", b"garbage", b""][r.below(5)].to_vec(),
            }
            format!("node {} ({}) attribute {} kind {what}", node.name, node.op_type, at.name)
        }
        3 if !g.initializer.is_empty() => {
            let t = pick(r, &g.initializer);
            let init = &mut g.initializer[t];
            match r.below(3) {
                0 => init.dims = vec![0],
                1 => {
                    init.dims.clear();
                    init.raw_data.clear();
                    init.float_data.clear();
                    init.int64_data.clear();
                    init.int32_data.clear();
                }
                _ => init.dims.push(1),
            }
            format!("initializer {}", init.name)
        }
        4 => {
            g.output.clear();
            "no outputs".into()
        }
        5 if g.node.len() > 1 => {
            let name = g.node[0].name.clone();
            g.node[n].name = name.clone();
            format!("duplicate name {name}")
        }
        6 if !g.input.is_empty() => {
            let vi = &mut g.input[0];
            if let Some(pb::type_proto::Value::TensorType(tt)) = vi.r#type.as_mut().and_then(|t| t.value.as_mut()) {
                if let Some(s) = tt.shape.as_mut() {
                    match r.below(3) {
                        0 => {
                            s.dim.pop();
                        }
                        1 => s.dim.push(pb::tensor_shape_proto::Dimension { value: Some(pb::tensor_shape_proto::dimension::Value::DimValue(2)), ..Default::default() }),
                        _ => {
                            if let Some(d) = s.dim.last_mut() {
                                d.value = Some(pb::tensor_shape_proto::dimension::Value::DimValue([0i64, 1, 1 << 33][r.below(3)]));
                            }
                        }
                    }
                }
            }
            "input rank or size".into()
        }
        7 if !g.node.is_empty() => {
            let ops = ["Concat", "Add", "Mul", "Resize", "DequantizeLinear", "QuantizeLinear", "Conv", "ConvTranspose", "MaxPool", "Flatten", "Gemm", "Reshape", "Softmax", "GlobalAveragePool"];
            let op = ops[r.below(ops.len())];
            g.node[n].op_type = op.into();
            format!("node {} became {op}", g.node[n].name)
        }
        8 if !g.node.is_empty() => {
            // An input that names a value nobody produces, or the node's own output.
            let node = &mut g.node[n];
            let v = if r.below(2) == 0 { "no_such_value".to_string() } else { node.output.first().cloned().unwrap_or_default() };
            if let Some(i) = node.input.first_mut() {
                *i = v.clone();
            }
            format!("node {} reads {v}", node.name)
        }
        _ => {
            // Several attribute hits on one node at once.
            let mut s = String::new();
            for _ in 0..3 {
                s += &mutate(m, r);
                s += "; ";
            }
            s
        }
    }
}

/// Import, prepare and run; `Ok` or `Err` are both fine, a panic is not. Returns how far it
/// got: 0 refused at import, 1 imported, 2 prepared, 3 ran (with or without an error).
fn exercise(m: &pb::ModelProto) -> std::thread::Result<usize> {
    catch_unwind(AssertUnwindSafe(|| {
        let Ok(g) = import::import(m, &ImportOptions::default()) else { return 0 };
        let Ok(shape) = g.input_shape(1) else { return 1 };
        let Ok(s) = Session::new(g, &Options { threads: 1, optimize: true, ..Default::default() }) else { return 1 };
        let n = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
        if n.is_some_and(|n| n > 0 && n <= MAX_INPUT) {
            let x = Tensor::randn(shape, 1.0, 3);
            let _ = s.run(&[x]);
            return 3;
        }
        2
    }))
}

#[test]
fn hostile_graphs_never_panic() {
    // Quiet the default hook (failures are listed below), keeping where each panic was.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|info| {
        if let Some(l) = info.location() {
            *WHERE.lock().unwrap_or_else(|e| e.into_inner()) = format!("{}:{}", l.file(), l.line());
        }
    }));
    let per_seed: usize = std::env::var("KESTREL_HOSTILE_CASES").ok().and_then(|s| s.parse().ok()).unwrap_or(150);
    let mut failures = Vec::new();
    let mut total = 0;
    let mut reached = [0usize; 4];
    for (name, seed) in seeds() {
        let mut r = Rng::for_name(7, &name);
        for case in 0..per_seed {
            let mut m = seed.clone();
            let what = mutate(&mut m, &mut r);
            total += 1;
            match exercise(&m) {
                Ok(stage) => reached[stage] += 1,
                Err(p) => {
                let msg = p.downcast_ref::<String>().cloned().or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                let at = WHERE.lock().unwrap_or_else(|e| e.into_inner()).clone();
                failures.push(format!("{name} case {case} ({what}): {msg} at {at}"));
                }
            }
        }
    }
    std::panic::set_hook(hook);
    eprintln!("hostile graphs: {total} mutants: {} refused at import, {} imported, {} prepared, {} ran; {} panics", reached[0], reached[1], reached[2], reached[3], failures.len());
    assert!(failures.is_empty(), "{} of {total} mutants panicked:\n{}", failures.len(), failures.join("\n"));
}

/// Pooling windows and pads of 2^36 taps over a 1-pixel input: the average pools answer at
/// once (windows are computed per output, not per tap), and the max pool's padded row (256
/// GiB) is refused by the planner's memory limit instead of being allocated.
#[test]
fn huge_pooling_windows_are_cheap_or_refused() {
    use kestrel::error::Error;
    use kestrel::graph::{Graph, Op, Pool2d, PoolNd};
    let k = 1usize << 36;
    let run = |op: Op, shape: Vec<usize>| {
        let mut g = Graph::default();
        let x = g.add_input("x", shape.clone());
        let y = g.push("pool", op, vec![x]);
        g.outputs.push(y);
        Session::new(g, &Options { threads: 1, optimize: true, ..Default::default() }).and_then(|s| s.run(&[Tensor::randn(shape, 1.0, 5)]))
    };
    let p2 = Pool2d { kernel: [1, k], stride: [1, 1], pads: [0, 0, 0, k], dilation: [1, 1], ceil_mode: false, count_include_pad: false };
    let out = run(Op::AveragePool(p2.clone()), vec![1, 1, 1, 1]).unwrap();
    assert_eq!(out[0].shape(), &[1, 1, 1, 2]);
    let e = run(Op::MaxPool(p2), vec![1, 1, 1, 1]).unwrap_err();
    assert!(matches!(e, Error::MemoryLimit { .. }), "{e}");
    // A column-stride-2 max pool (the AVX2 and AVX-512 vector paths keep one padded row per
    // output row) with 2^31 output rows of one pixel: the output fits 8 GiB, its padded rows
    // would take 2^31 · 66 floats (528 GiB) per worker: refused, not allocated.
    let tall = Pool2d { kernel: [1, 1], stride: [1, 2], pads: [(1 << 31) - 1, 0, 0, 0], dilation: [1, 1], ceil_mode: false, count_include_pad: false };
    let e = run(Op::MaxPool(tall), vec![1, 1, 1, 1]).unwrap_err();
    assert!(matches!(e, Error::MemoryLimit { .. }), "{e}");
    for max in [false, true] {
        let p = PoolNd { max, kernel: vec![k], stride: vec![1], pads: vec![0, k], dilation: vec![1], ceil_mode: false, count_include_pad: true };
        let out = run(Op::PoolNd(p), vec![1, 1, 1]).unwrap();
        assert_eq!(out[0].shape(), &[1, 1, 2]);
        assert!(out[0].data().iter().all(|v| v.is_finite() || (max && *v == f32::NEG_INFINITY)), "{:?}", out[0].data());
    }
}

/// Node-by-node evaluation (`Session::run_all`, which INT8 calibration and the parity tools
/// use) keeps every value: a graph whose values, or one node's scratch, would exceed the memory
/// limit is refused before anything is allocated, as a plan is (a `precisions` fuzzing find,
/// 2026-12-06: a Resize to 2^34 rows aborted calibration on a 412 GB allocation;
/// `fuzz/regressions/precisions/resize_of_412_gb_in_calibration.onnx`).
#[test]
fn node_by_node_evaluation_refuses_what_does_not_fit() {
    use kestrel::error::Error;
    use kestrel::graph::{CoordMode, Graph, NearestMode, Op, Resize, ResizeMode, ResizeTarget};
    let mut g = Graph::default();
    let x = g.add_input("x", vec![1, 1, 2, 2]);
    let up = Resize::new(ResizeMode::Nearest(NearestMode::Floor), CoordMode::Asymmetric, ResizeTarget::Sizes([1 << 34, 6]));
    let y = g.push("up", Op::Resize(up), vec![x]);
    g.outputs.push(y);
    let s = Session::new(g, &Options { threads: 1, optimize: true, ..Default::default() }).unwrap();
    let x = Tensor::randn(vec![1, 1, 2, 2], 1.0, 5);
    let e = s.run_all(std::slice::from_ref(&x)).unwrap_err();
    assert!(matches!(e, Error::MemoryLimit { .. }), "{e}");
    let e = s.run(std::slice::from_ref(&x)).unwrap_err();
    assert!(matches!(e, Error::MemoryLimit { .. }), "{e}");
}

/// A layer whose bias does not hold one value per output channel is refused with an error, not
/// indexed past its end: a ConvTranspose in an ONNX file whose bias is shorter than its
/// `Cout/group · group` output channels (a `session` fuzzing find, 2026-12-05:
/// `fuzz/regressions/session/convtranspose_bias_shorter_than_groups_outputs.onnx`), and graphs
/// built in code with a Conv, ConvTranspose or fully connected bias of the wrong length.
#[test]
fn biases_of_the_wrong_length_are_refused() {
    use kestrel::graph::{Conv2d, ConvTranspose2d, Graph, Linear, Op, Precision};
    let ct = |bias: usize, groups: usize| ConvTranspose2d {
        weight: Tensor::randn(vec![4, 3, 2, 2], 0.1, 3),
        bias: Some(vec![0.5; bias]),
        stride: [2, 2],
        pads: [0; 4],
        output_padding: [0, 0],
        dilation: [1, 1],
        groups,
        precision: Precision::F32,
    };
    let graph = |op: Op, shape: Vec<usize>| {
        let mut g = Graph::default();
        let x = g.add_input("x", shape);
        let y = g.push("layer", op, vec![x]);
        g.outputs.push(y);
        g
    };
    // The file: exported with a right bias, then its bias initializer cut to 2 values.
    let good = graph(Op::ConvTranspose(ct(6, 2)), vec![1, 4, 5, 5]);
    let mut m = pb::ModelProto::decode(export::to_bytes(&good).unwrap().as_slice()).unwrap();
    let gp = m.graph.as_mut().unwrap();
    let bias_name = gp.node.iter().find(|n| n.op_type == "ConvTranspose").unwrap().input[2].clone();
    let init = gp.initializer.iter_mut().find(|t| t.name == bias_name).unwrap();
    let (data, raw) = (init.float_data.clone(), init.raw_data.clone());
    init.dims = vec![2];
    if data.is_empty() {
        init.raw_data = raw[..8].to_vec();
    } else {
        init.float_data = data[..2].to_vec();
    }
    let e = import::import(&m, &ImportOptions::default()).unwrap_err().to_string();
    assert!(e.contains("ConvTranspose") && e.contains("bias length 2"), "{e}");
    // Graphs built in code: refused by shape inference (at the session or its first run),
    // for every layer kind.
    let x = vec![1, 4, 5, 5];
    let mut conv = Conv2d::new(Tensor::randn(vec![6, 4, 3, 3], 0.1, 4), 1, 1, 1);
    conv.bias = Some(vec![0.1; 5]);
    let cases = [
        ("ConvTranspose, groups 2, bias of Cout/group", graph(Op::ConvTranspose(ct(3, 2)), x.clone())),
        ("ConvTranspose, bias too long", graph(Op::ConvTranspose(ct(4, 1)), x.clone())),
        ("Conv", graph(Op::Conv(conv), x)),
        ("Linear", graph(Op::Linear(Linear::new(Tensor::randn(vec![3, 8], 0.1, 5), Some(vec![0.0; 2]))), vec![2, 8])),
    ];
    for (what, g) in cases {
        let shape = g.inputs[0].shape.clone();
        let run = Session::new(g, &Options { threads: 1, ..Default::default() }).and_then(|s| s.run(&[Tensor::randn(shape, 1.0, 7)]));
        let e = run.err().unwrap_or_else(|| panic!("{what}: accepted"));
        assert!(e.to_string().contains("bias of"), "{what}: {e}");
    }
    // The right lengths run.
    let s = Session::new(good, &Options { threads: 1, ..Default::default() }).unwrap();
    assert_eq!(s.run(&[Tensor::randn(vec![1, 4, 5, 5], 1.0, 6)]).unwrap()[0].shape(), &[1, 6, 10, 10]);
}
