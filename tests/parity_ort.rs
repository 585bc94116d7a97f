//! kestrel against ONNX Runtime 1.31.1 on 32 random inputs: relative L2 ≤ 1e-4 and identical
//! top-1, for torch-style exports (scripts/torch_like_fixtures.py) and our own exports.
#![cfg(feature = "ort")]

mod common;

use kestrel::models::*;
use kestrel::onnx::{export, import, ImportOptions};
use kestrel::ort_ref::{OrtModel, OrtOptions};
use kestrel::parity::{compare, per_layer, Tolerance};
use kestrel::{Graph, Options, Session, Tensor};

fn check(name: &str, g: Graph, bytes: &[u8], batch: usize) {
    let shape = g.input_shape(batch).unwrap();
    let x = Tensor::randn(shape, 1.0, 77);
    let ours = Session::new(g, &Options { threads: 2, optimize: true, ..Default::default() }).unwrap().run(std::slice::from_ref(&x)).unwrap();
    let theirs = OrtModel::from_bytes(bytes, 2).unwrap().run(&x).unwrap();
    for (o, (_, r)) in ours.iter().zip(&theirs) {
        let m = compare(r, o);
        println!("{name}: rel L2 {:.2e} max abs {:.2e} top1 {:?} mask {:?}", m.rel_l2, m.max_abs, m.top1, m.mask_agreement);
        assert!(Tolerance::default().violation(&m).is_none(), "{name}: {:?}", Tolerance::default().violation(&m));
    }
}

#[test]
fn torch_like_exports_match_ort() {
    if !common::ort_ready("torch_like_exports_match_ort") {
        return;
    }
    let Some(dir) = common::fixture("torch_like", "torch_like_exports_match_ort") else { return };
    let models = common::onnx_fixtures(&dir);
    for (p, bytes, _, g) in &models {
        check(&p.display().to_string(), g.clone(), bytes, 32);
    }
    assert_eq!(models.len(), 6, "expected the six torch-like fixtures");
}

#[test]
fn own_exports_match_ort() {
    if !common::ort_ready("own_exports_match_ort") {
        return;
    }
    let cfgs = [
        ("resnet18", ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 16, image_size: 64, ..Default::default() })),
        ("resnet50", ModelConfig::ResNet(ResNetConfig { depth: 50, num_classes: 10, base_width: 8, image_size: 64, ..Default::default() })),
        ("unet", ModelConfig::UNet(UNetConfig { base_width: 8, depth: 4, image_size: 64, ..Default::default() })),
        ("unet-bilinear", ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 64, up: UpMode::Bilinear, ..Default::default() })),
    ];
    for (name, cfg) in cfgs {
        let g = cfg.build(&mut SeededWeights { seed: 11 }).unwrap();
        let bytes = export::to_bytes(&g).unwrap();
        check(name, g, &bytes, 32);
    }
}

#[test]
fn per_layer_names_the_first_diverging_layer() {
    if !common::ort_ready("per_layer_names_the_first_diverging_layer") {
        return;
    }
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 8, image_size: 64, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 2 }).unwrap();
    let model = export::to_model(&g).unwrap();
    let x = Tensor::randn(g.input_shape(2).unwrap(), 1.0, 5);
    let clean = per_layer(&model, &import::import(&model, &ImportOptions::default()).unwrap(), &x, &Tolerance::default(), &OrtOptions::threads(2)).unwrap();
    assert!(clean.iter().all(|l| l.within), "clean model diverges");
    assert!(clean.len() > 30);
    // Perturb one weight of layer2.0.conv2 on kestrel's side only.
    let mut bad = import::import(&model, &ImportOptions::default()).unwrap();
    let node = bad.nodes.iter_mut().find(|n| n.name == "layer2.0.conv2").unwrap();
    if let kestrel::graph::Op::Conv(c) = &mut node.op {
        c.weight.data_mut()[0] += 0.5;
    }
    let layers = per_layer(&model, &bad, &x, &Tolerance::default(), &OrtOptions::threads(2)).unwrap();
    let first = layers.iter().find(|l| !l.within).unwrap();
    assert_eq!(first.node, "layer2.0.conv2");
}

/// `parity --precision bf16`: a ResNet-18 with its convs in bf16 against ORT in f32 passes the
/// bf16 tolerance whole and layer by layer (where the CPU has AVX512_BF16).
#[test]
fn bf16_parity_against_ort() {
    if !common::ort_ready("bf16_parity_against_ort") {
        return;
    }
    if kestrel::cpu::bgemm::Bf16Token::new().is_none() {
        eprintln!("SKIP bf16_parity_against_ort: no AVX512_BF16 on this CPU");
        return;
    }
    if !kestrel::cpu::detect::selected().is_ok_and(|i| kestrel::cpu::bgemm::Kernel::for_isa(i).is_some()) {
        // A forced path without bf16 refuses it cleanly (tests/bf16.rs and tests/cli.rs).
        eprintln!("SKIP bf16_parity_against_ort: KESTREL_ISA forces a path without bf16");
        return;
    }
    let model = kestrel::load_model("resnet18", &Default::default()).unwrap();
    let mut opts = kestrel::parity::ParityOptions::for_model(&model.graph, 2);
    opts.bf16 = true;
    (opts.tolerance, opts.layer_tolerance, opts.per_layer) = (Tolerance::bf16(), Tolerance::bf16(), true);
    let x = Tensor::randn(model.graph.input_shape(1).unwrap(), 1.0, 5);
    let r = kestrel::parity::check(&model, &x, &opts).unwrap();
    let m = &r.outputs[0].kestrel_vs_ort;
    println!("resnet18 bf16 against ORT f32: rel L2 {:.2e}, cosine {:.6}; kestrel path {}", m.rel_l2, m.cosine, r.kestrel_isa);
    assert!(r.kestrel_isa.contains("bf16"), "{}", r.kestrel_isa);
    assert!(r.passed, "{:?} first diverging layer {:?}", r.outputs[0].violation, r.first_diverging_layer);
    // bf16 really ran: an f32 session would be within 1e-4.
    assert!(m.rel_l2 > 1e-4, "rel L2 {:.2e}", m.rel_l2);
}
