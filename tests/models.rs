//! Native ResNet and UNet: every depth builds and runs, seeded weights give input-dependent
//! outputs, planned execution equals node-by-node interpretation, and safetensors round-trip.

mod common;

use kestrel::convert::write_safetensors;
use kestrel::exec::interpret;
use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::{load_model, LoadOptions, Options, Session, Tensor};

fn narrow_resnet(depth: usize) -> ModelConfig {
    ModelConfig::ResNet(ResNetConfig { depth, num_classes: 10, in_channels: 3, base_width: 8, image_size: 64, ..Default::default() })
}

fn narrow_unet(up: UpMode, batch_norm: bool) -> ModelConfig {
    ModelConfig::UNet(UNetConfig { in_channels: 3, out_channels: 2, base_width: 8, depth: 3, batch_norm, up, image_size: 32, ..Default::default() })
}

fn run(cfg: &ModelConfig, x: &Tensor) -> Tensor {
    let g = cfg.build(&mut SeededWeights { seed: 3 }).unwrap();
    Session::new(g, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap().run(std::slice::from_ref(x)).unwrap().remove(0)
}

#[test]
fn every_resnet_depth_builds_and_runs() {
    for depth in [18, 34, 50, 101, 152] {
        let x = synthetic_images(2, 3, 64, 64, 1);
        let y = run(&narrow_resnet(depth), &x);
        assert_eq!(y.shape(), &[2, 10], "resnet{depth}");
        assert!(y.data().iter().all(|v| v.is_finite()), "resnet{depth} output not finite");
    }
}

#[test]
fn seeded_resnet_output_depends_on_input() {
    // Realistic BatchNorm statistics keep activations alive through the whole depth.
    for depth in [18, 50, 152] {
        let cfg = narrow_resnet(depth);
        let a = run(&cfg, &synthetic_images(4, 3, 64, 64, 10));
        let rows: Vec<&[f32]> = a.data().chunks(10).collect();
        let spread: f32 = (0..10).map(|k| (rows[0][k] - rows[1][k]).abs()).sum::<f32>() / 10.0;
        let scale: f32 = rows[0].iter().map(|v| v.abs()).sum::<f32>() / 10.0;
        assert!(spread > 0.05 * scale, "resnet{depth}: output nearly independent of input ({spread} vs {scale})");
        assert!(scale > 1e-3 && scale < 1e3, "resnet{depth}: logits scale {scale} unrealistic");
    }
}

#[test]
fn unet_variants_run_and_refuse_odd_sizes() {
    for (up, bn) in [(UpMode::Transpose, true), (UpMode::Bilinear, true), (UpMode::Transpose, false), (UpMode::Bilinear, false)] {
        let cfg = narrow_unet(up, bn);
        let y = run(&cfg, &synthetic_images(1, 3, 32, 48, 2));
        assert_eq!(y.shape(), &[1, 2, 32, 48]);
        let g = cfg.build(&mut SeededWeights { seed: 3 }).unwrap();
        let s = Session::new(g, &Options::default()).unwrap();
        let err = s.run(&[Tensor::zeros(vec![1, 3, 30, 32])]).unwrap_err().to_string();
        assert!(err.contains("multiples of 8"), "{err}");
    }
    let bad = UNetConfig { image_size: 100, ..UNetConfig::default() };
    assert!(bad.build(&mut SeededWeights { seed: 0 }).unwrap_err().to_string().contains("2^depth"));
}

#[test]
fn planned_execution_equals_interpretation() {
    for cfg in [narrow_resnet(50), narrow_unet(UpMode::Bilinear, true)] {
        let g = cfg.build(&mut SeededWeights { seed: 5 }).unwrap();
        let x = synthetic_images(2, 3, 32, 32, 4);
        let plain = interpret(&g, std::slice::from_ref(&x), 2).unwrap();
        let want = plain[g.outputs[0]].clone().unwrap();
        let s = Session::new(g.clone(), &Options { threads: 2, optimize: false, ..Default::default() }).unwrap();
        let first = s.run(std::slice::from_ref(&x)).unwrap().remove(0);
        let again = s.run(std::slice::from_ref(&x)).unwrap().remove(0);
        assert_eq!(first, want, "planner changed results");
        assert_eq!(again, want, "second run (reused buffers) differs");
        // Optimised (BN folded, epilogues fused) agrees within float tolerance.
        let fused = Session::new(g, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap().run(&[x]).unwrap().remove(0);
        common::Tolerance { abs: 1e-4, rel: 1e-3 }.check("fused vs unfused", fused.data(), want.data());
    }
}

#[test]
fn winograd_convs_agree_with_direct_ones() {
    // base width 128: every 3×3 stride-1 conv has at least 128 channels (Winograd pays for
    // them on AVX2 too, `wino::pays_on`). At 64² input the stages' maps are 16², 8², 4², 2²:
    // Winograd on the first two, direct below 7×7.
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 128, image_size: 64, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 11 }).unwrap();
    for n in [1, 3] {
        let x = synthetic_images(n, 3, 64, 64, 12);
        let on = Session::new(g.clone(), &Options { threads: 2, ..Default::default() }).unwrap();
        let off = Session::new(g.clone(), &Options { threads: 2, winograd: false, ..Default::default() }).unwrap();
        let labels = on.kernel_labels(&[x.shape().to_vec()]).unwrap();
        let wino = labels.iter().filter(|l| l.contains("Winograd")).count();
        if std::env::var("KESTREL_WINOGRAD").is_ok_and(|v| v == "0") || kestrel::cpu::detect::selected().map_or(true, |i| kestrel::cpu::sgemm::Kernel::for_isa(i).is_none()) {
            assert_eq!(wino, 0, "{labels:?}");
            eprintln!("no Winograd on this path");
            continue;
        }
        // layer1's four 3×3 convs (16²) and layer2's three stride-1 ones (8²).
        assert_eq!(wino, 7, "{labels:?}");
        assert!(!off.kernel_labels(&[x.shape().to_vec()]).unwrap().iter().any(|l| l.contains("Winograd")));
        let (a, b) = (on.run(std::slice::from_ref(&x)).unwrap().remove(0), off.run(std::slice::from_ref(&x)).unwrap().remove(0));
        common::Tolerance { abs: 1e-4, rel: 1e-3 }.check("Winograd vs direct", a.data(), b.data());
        assert_ne!(a.data(), b.data(), "Winograd rounds differently from direct convolution: the two runs must not be the same path");
        // Node by node (no plan) runs Winograd on the small maps too: same values within
        // tolerance.
        let all = on.run_all(std::slice::from_ref(&x)).unwrap();
        common::Tolerance { abs: 1e-4, rel: 1e-3 }.check("planned vs node by node", a.data(), all[on.graph().outputs[0]].as_ref().unwrap().data());
    }
}

/// Output maps of 56² at the declared input size take Winograd F(4×4, 3×3)
/// (`wino::prefers_f4`): a narrow ResNet-18 at 224² runs layer1's four 3×3 convs by it (on
/// AVX2 layer2's three 28² ones too), the other stages by F(2×2, 3×3), and agrees with
/// direct convolution within the tolerance of the F(2×2) test above.
#[test]
fn winograd_f4_runs_on_large_maps() {
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 32, image_size: 224, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 13 }).unwrap();
    let x = synthetic_images(1, 3, 224, 224, 14);
    let on = Session::new(g.clone(), &Options { threads: 2, ..Default::default() }).unwrap();
    let labels = on.kernel_labels(&[x.shape().to_vec()]).unwrap();
    if std::env::var("KESTREL_WINOGRAD").is_ok_and(|v| v == "0" || v == "f2") || kestrel::cpu::detect::selected().map_or(true, |i| kestrel::cpu::sgemm::Kernel::for_isa(i).is_none()) {
        assert!(labels.iter().all(|l| !l.contains("F(4x4")), "{labels:?}");
        eprintln!("no Winograd F(4x4) on this path");
        return;
    }
    // The kernel's lanes: 16 on AVX-512, 8 on AVX2 (F(4×4) from 28² maps; Winograd at all
    // below 28² only from 128 channels).
    let wide = kestrel::cpu::detect::selected().ok().and_then(kestrel::cpu::sgemm::Kernel::for_isa).is_some_and(|k| k.geometry().lanes > 8);
    let count = |ls: &[String], what: &str| ls.iter().filter(|l| l.contains(what)).count();
    let (f4, f2) = if wide { (4, 9) } else { (7, 6) };
    println!("Winograd on the {} kernel: F(4x4) {f4}, F(2x2) {f2} at 224²", if wide { "AVX-512" } else { "AVX2" });
    assert_eq!(count(&labels, "Winograd F(4x4,3x3)"), f4, "{labels:?}");
    assert_eq!(count(&labels, "Winograd F(2x2,3x3)"), f2, "{labels:?}");
    let off = Session::new(g.clone(), &Options { threads: 2, winograd: false, ..Default::default() }).unwrap();
    let (a, b) = (on.run(std::slice::from_ref(&x)).unwrap().remove(0), off.run(std::slice::from_ref(&x)).unwrap().remove(0));
    let worst = a.data().iter().zip(b.data()).map(|(p, q)| (p - q).abs()).fold(0f32, f32::max);
    let scale = b.data().iter().fold(0f32, |m, v| m.max(v.abs()));
    println!("F(4x4) ResNet-18 224²: max |winograd − direct| {worst:e} on logits up to {scale}");
    common::Tolerance { abs: 1e-4, rel: 1e-3 }.check("Winograd F4 vs direct", a.data(), b.data());
    // The variant follows the run's maps, not the declared size: at 128² layer1's maps are
    // 32² (F(2×2), packed by the plan; layer4's 4² maps direct; on AVX2 layer1 F(4×4) and
    // layer2's 64 channels at 16² direct); a model declared at 64² run at 224² takes F(4×4).
    let small = on.kernel_labels(&[vec![1, 3, 128, 128]]).unwrap();
    let (f4, f2) = if wide { (0, 10) } else { (4, 3) };
    assert!(count(&small, "F(4x4") == f4 && count(&small, "F(2x2,3x3)") == f2, "{small:?}");
    let mut g64 = g;
    g64.inputs[0].shape = vec![1, 3, 64, 64];
    let s64 = Session::new(g64, &Options { threads: 2, ..Default::default() }).unwrap();
    assert_eq!(s64.kernel_labels(&[x.shape().to_vec()]).unwrap(), labels, "declared 64², run at 224²");
    assert_eq!(s64.run(std::slice::from_ref(&x)).unwrap().remove(0), a, "the same weights and input give the same values whatever the declared size");
}

#[test]
fn dead_taps_cropped_on_small_maps_change_nothing() {
    // A 32² ResNet-18 reaches 1×1 maps in its last stage, where a 3×3 pad-1 conv reads the
    // input through its centre tap only and the stride-2 one through 2×2 taps. The planned run
    // crops those convs; node-by-node evaluation runs them whole. (Without Winograd, which
    // the plan leaves for direct convolution on small maps and node-by-node evaluation
    // does not.)
    let g = narrow_resnet(18).build(&mut SeededWeights { seed: 6 }).unwrap();
    let x = synthetic_images(2, 3, 32, 32, 7);
    let calib = synthetic_images(4, 3, 32, 32, 8);
    let q = kestrel::quant::quantize(&g, &Default::default(), &[calib], &mut |_, _| {}).unwrap();
    // The scalar ISA's FP32 convs run on the `gemm` crate, which is not cropped (`KESTREL_ISA
    // =scalar`); its INT8 convs are.
    let own_f32 = kestrel::cpu::detect::selected().is_ok_and(|i| kestrel::cpu::sgemm::Kernel::for_isa(i).is_some());
    for (what, g, crops) in [("f32", g, own_f32), ("int8", q, true)] {
        let s = Session::new(g, &Options { threads: 2, optimize: true, winograd: false, ..Default::default() }).unwrap();
        let labels = s.kernel_labels(&[x.shape().to_vec()]).unwrap();
        let (one, two) = if crops { (3, 1) } else { (0, 0) };
        println!("{what}: {} ({one} convs cropped to their centre tap expected)", labels.join(", "));
        assert_eq!(labels.iter().filter(|l| l.ends_with("taps 1x1 of 3x3")).count(), one, "{what}: {labels:?}");
        assert_eq!(labels.iter().filter(|l| l.ends_with("taps 2x2 of 3x3")).count(), two, "{what}: {labels:?}");
        let got = s.run(std::slice::from_ref(&x)).unwrap().remove(0);
        let all = s.run_all(std::slice::from_ref(&x)).unwrap();
        let want = all[s.graph().outputs[0]].clone().unwrap();
        // Equal as numbers (an f32 sum may differ in the sign of an exact zero only).
        assert!(got.data().iter().zip(want.data()).all(|(a, b)| a == b), "{what}: cropped run differs");
        // At 64² every tap of those convs reads the image: nothing is cropped.
        let big = synthetic_images(1, 3, 64, 64, 9);
        assert!(!s.kernel_labels(&[big.shape().to_vec()]).unwrap().iter().any(|l| l.contains("taps")), "{what}");
    }
}

#[test]
fn passes_fold_and_fuse() {
    let g = narrow_resnet(18).build(&mut SeededWeights { seed: 1 }).unwrap();
    let s = Session::new(g.clone(), &Options::default()).unwrap();
    let kinds: Vec<&str> = s.graph().nodes.iter().map(|n| n.op.kind()).collect();
    assert!(!kinds.contains(&"BatchNormalization"), "BatchNorm left after folding: {kinds:?}");
    assert!(!kinds.contains(&"Add") && !kinds.contains(&"Relu"), "unfused Add/Relu: {kinds:?}");
    assert!(s.graph().nodes.len() < g.nodes.len() / 2);
}

#[test]
fn safetensors_round_trip_and_recognition() {
    let dir = tempfile::tempdir().unwrap();
    for (i, cfg) in [narrow_resnet(18), narrow_resnet(50), narrow_unet(UpMode::Transpose, true), narrow_unet(UpMode::Bilinear, false)].iter().enumerate() {
        let g = cfg.build(&mut SeededWeights { seed: 9 }).unwrap();
        let x = synthetic_images(1, 3, 64, 64, 3);
        let want = Session::new(g.clone(), &Options::default()).unwrap().run(std::slice::from_ref(&x)).unwrap().remove(0);
        // With config metadata.
        let p = dir.path().join(format!("m{i}.safetensors"));
        write_safetensors(&g, Some(cfg), &p).unwrap();
        let m = load_model(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let got = Session::new(m.graph, &Options::default()).unwrap().run(std::slice::from_ref(&x)).unwrap().remove(0);
        assert_eq!(got, want, "safetensors round trip of {cfg:?}");
        // Without metadata, as `safetensors.torch.save_file(model.state_dict())` writes it.
        let p2 = dir.path().join(format!("plain{i}.safetensors"));
        write_safetensors(&g, None, &p2).unwrap();
        let m2 = load_model(p2.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let got2 = Session::new(m2.graph, &Options::default()).unwrap().run(std::slice::from_ref(&x)).unwrap().remove(0);
        assert_eq!(got2, want, "state-dict recognition of {cfg:?}");
    }
}

#[test]
fn f16_and_bf16_safetensors_convert_on_load() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = narrow_resnet(18);
    let g = cfg.build(&mut SeededWeights { seed: 2 }).unwrap();
    for (dt, name) in [(safetensors::Dtype::F16, "f16"), (safetensors::Dtype::BF16, "bf16")] {
        let dict = kestrel::convert::state_dict(&g);
        let bytes: Vec<(String, Vec<usize>, Vec<u8>)> = dict
            .iter()
            .map(|(n, s, d)| {
                let b = d
                    .iter()
                    .flat_map(|v| if name == "f16" { half::f16::from_f32(*v).to_le_bytes() } else { half::bf16::from_f32(*v).to_le_bytes() })
                    .collect();
                (n.clone(), s.clone(), b)
            })
            .collect();
        let views: Vec<(String, safetensors::tensor::TensorView)> =
            bytes.iter().map(|(n, s, b)| (n.clone(), safetensors::tensor::TensorView::new(dt, s.clone(), b).unwrap())).collect();
        let p = dir.path().join(format!("{name}.safetensors"));
        safetensors::serialize_to_file(views, None, &p).unwrap();
        let m = load_model(p.to_str().unwrap(), &LoadOptions::default()).unwrap();
        let x = synthetic_images(1, 3, 64, 64, 1);
        let want = Session::new(g.clone(), &Options::default()).unwrap().run(std::slice::from_ref(&x)).unwrap().remove(0);
        let got = Session::new(m.graph, &Options::default()).unwrap().run(&[x]).unwrap().remove(0);
        let tol = if name == "f16" { 0.05 } else { 0.2 };
        let m = kestrel::parity::compare(&want, &got);
        assert!(m.rel_l2 < tol, "{name}: rel L2 {} ≥ {tol}", m.rel_l2);
    }
}

#[cfg(feature = "candle")]
#[test]
fn candle_interop_round_trips() {
    let t = Tensor::randn(vec![2, 3, 4], 1.0, 5);
    let c = t.to_candle().unwrap();
    assert_eq!(c.dims(), &[2, 3, 4]);
    assert_eq!(Tensor::from_candle(&c).unwrap(), t);
}

/// A 1×1 conv with a residual writes its output over the residual when nothing later reads
/// it (`Plan::in_place`), with the values of a separate output bit for bit; a residual that
/// is also the conv's input, a graph output, or read by a later node keeps its own buffer.
#[test]
fn in_place_residuals_keep_values() {
    use kestrel::exec::plan::Plan;
    use kestrel::graph::{Conv2d, Graph, Op, Precision};
    let conv = |cin: usize, cout: usize, residual: bool, seed: u64| {
        Op::Conv(Conv2d {
            weight: Tensor::new(vec![cout, cin, 1, 1], common::data(cout * cin, seed)).unwrap(),
            bias: Some(common::data(cout, seed + 1)),
            stride: [1, 1],
            pads: [0; 4],
            dilation: [1, 1],
            groups: 1,
            act: None,
            residual,
            precision: Precision::F32,
        })
    };
    let mut g = Graph::default();
    // 40² maps, 24 channels: well past the 1×1 convs' tile widths, on every ISA.
    let x = g.add_input("x", vec![1, 16, 40, 40]);
    let a = g.push("a", conv(16, 24, false, 1), vec![x]);
    let b = g.push("b", conv(16, 24, false, 3), vec![x]);
    // b read by nothing later: in place.
    let c = g.push("c", conv(24, 24, true, 5), vec![a, b]);
    // Its own input as the residual: not in place.
    let d = g.push("d", conv(24, 24, true, 7), vec![c, c]);
    // e's residual a is read again by g: not in place.
    let e = g.push("e", conv(24, 24, true, 9), vec![d, a]);
    let f = g.push("f", conv(24, 24, false, 11), vec![e]);
    // A graph output as the residual: not in place.
    let h = g.push("h", conv(24, 24, true, 13), vec![f, e]);
    let out = g.push("g", conv(24, 24, true, 15), vec![h, a]);
    g.outputs = vec![out, e];
    let s = Session::new(g, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
    let xt = synthetic_images(1, 16, 40, 40, 6);
    let plan = Plan::new(s.prepared(), &[vec![1, 16, 40, 40]], 2).unwrap();
    let placed: Vec<&str> = s.graph().nodes.iter().zip(&plan.in_place).filter(|(_, &p)| p).map(|(n, _)| n.name.as_str()).collect();
    if s.prepared().kernels.sgemm.is_some() {
        assert_eq!(placed, ["c", "g"], "convs run onto their residual");
    } else {
        assert!(placed.is_empty(), "no packed FP32 kernel, no in-place residual: {placed:?}");
    }
    // Against node-by-node evaluation of the same prepared steps, each value in its own
    // buffer, twice (the second run on reused buffers); in bf16 too where the CPU has it.
    let bf16 = Session::new(s.graph().clone(), &Options { threads: 2, bf16: true, ..Default::default() }).ok();
    for s in std::iter::once(&s).chain(bf16.as_ref()) {
        let all = s.run_all(std::slice::from_ref(&xt)).unwrap();
        for _ in 0..2 {
            let got = s.run(std::slice::from_ref(&xt)).unwrap();
            for (i, &o) in s.graph().outputs.iter().enumerate() {
                let want = all[o].as_ref().unwrap();
                assert!(got[i].data().iter().zip(want.data()).all(|(a, b)| a.to_bits() == b.to_bits()), "output {i} differs from node-by-node evaluation");
            }
        }
    }
    if let Some(b) = &bf16 {
        let plan = Plan::new(b.prepared(), &[vec![1, 16, 40, 40]], 2).unwrap();
        println!("bf16: {} of {} convs onto their residual", plan.in_place.iter().filter(|&&p| p).count(), plan.in_place.len());
    }
    // Static INT8, u8 codes in and out: c runs onto its residual, with the codes of a
    // separate buffer; g, whose output is a graph output (f32), does not.
    use kestrel::quant::{quantize, Mode, QuantizeOptions};
    let q = quantize(s.graph(), &QuantizeOptions { mode: Mode::Static, threads: 2, ..Default::default() }, &[synthetic_images(2, 16, 40, 40, 8)], &mut |_, _| {}).unwrap();
    let s = Session::new(q, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
    let plan = Plan::new(s.prepared(), &[vec![1, 16, 40, 40]], 2).unwrap();
    let placed: Vec<&str> = s.graph().nodes.iter().zip(&plan.in_place).filter(|(_, &p)| p).map(|(n, _)| n.name.as_str()).collect();
    assert_eq!(placed, ["c"], "INT8 convs run onto their u8 residual");
    let all = s.run_all(std::slice::from_ref(&xt)).unwrap();
    let got = s.run(std::slice::from_ref(&xt)).unwrap();
    for (i, &o) in s.graph().outputs.iter().enumerate() {
        let want = all[o].as_ref().unwrap();
        assert!(got[i].data().iter().zip(want.data()).all(|(a, b)| a.to_bits() == b.to_bits()), "INT8 output {i} differs from node-by-node evaluation");
    }
}

/// A batch of small maps (a ResNet-18 of base width 16 on 32 × 32 inputs, as the trained
/// `shapes-resnet18`) runs its small convs with the output channels in the lanes where the
/// CPU has the vector tile, as does one image, and each image's output is what it gets alone.
#[test]
fn a_batch_of_small_maps_runs_in_lanes_with_each_images_values() {
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 16, image_size: 32, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 5 }).unwrap();
    let s = Session::new(g, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
    let x = synthetic_images(6, 3, 32, 32, 4);
    let labels = s.kernel_labels(&[x.shape().to_vec()]).unwrap();
    let lanes = labels.iter().filter(|l| l.contains("channels in lanes")).count();
    let vector_tile = s.prepared().kernels.sgemm.is_some_and(|k| k.runs_lanes());
    println!("{lanes} of {} layers in lanes (the session's FP32 kernel has the vector tile: {vector_tile})", labels.len());
    // One image's too (the trained model classifying one image at a time).
    let one = s.kernel_labels(&[vec![1, 3, 32, 32]]).unwrap();
    let lanes_one = one.iter().filter(|l| l.contains("channels in lanes")).count();
    println!("one image: {lanes_one} of {} layers in lanes", one.len());
    if vector_tile {
        assert!(lanes >= 5, "a batch of 32² inputs should run its stem, layer1 and stride-2 convs in lanes: {labels:?}");
        assert!(lanes_one >= 5, "one 32² input should run its stem, layer1 and stride-2 convs in lanes: {one:?}");
    }
    let batch = s.run(std::slice::from_ref(&x)).unwrap().remove(0);
    let per = x.numel() / 6;
    for i in 0..6 {
        let one = Tensor::new(vec![1, 3, 32, 32], x.data()[i * per..(i + 1) * per].to_vec()).unwrap();
        let alone = s.run(&[one]).unwrap().remove(0);
        let m = kestrel::parity::compare(&alone, &Tensor::new(vec![1, 10], batch.data()[i * 10..(i + 1) * 10].to_vec()).unwrap());
        assert!(m.rel_l2 < 1e-5, "image {i}: rel L2 {} between the batch and the image alone", m.rel_l2);
    }
}
