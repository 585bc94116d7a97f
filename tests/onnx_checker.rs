//! Our ONNX exports pass `onnx.checker` (full check, with shape inference) from the pip
//! `onnx` package that scripts/setup.sh installs (KESTREL_PYTHON).
#![cfg(feature = "onnx")]

mod common;

use kestrel::models::*;

#[test]
fn exports_pass_onnx_checker() {
    let Ok(python) = std::env::var("KESTREL_PYTHON") else {
        assert!(std::env::var("KESTREL_REQUIRE_FIXTURES").is_err(), "KESTREL_PYTHON unset under scripts/test.sh");
        eprintln!("SKIP exports_pass_onnx_checker: KESTREL_PYTHON unset (run scripts/test.sh)");
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let mut files = Vec::new();
    for (name, cfg) in [
        ("resnet18", ModelConfig::ResNet(ResNetConfig { depth: 18, base_width: 8, num_classes: 10, image_size: 64, ..Default::default() })),
        ("resnet50", ModelConfig::ResNet(ResNetConfig { depth: 50, base_width: 8, num_classes: 10, image_size: 64, ..Default::default() })),
        ("unet", ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 64, ..Default::default() })),
        ("unet_bilinear", ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 64, up: UpMode::Bilinear, ..Default::default() })),
    ] {
        let g = cfg.build(&mut SeededWeights { seed: 1 }).unwrap();
        let p = dir.path().join(format!("{name}.onnx"));
        kestrel::onnx::save(&g, &p).unwrap();
        // The fused graph too: epilogues are written back as Conv + Add + activation.
        let s = kestrel::Session::new(g, &kestrel::Options::default()).unwrap();
        let q = dir.path().join(format!("{name}_fused.onnx"));
        kestrel::onnx::save(s.graph(), &q).unwrap();
        files.push(p);
        files.push(q);
    }
    let script = "import sys, onnx\nfor f in sys.argv[1:]:\n    m = onnx.load(f)\n    onnx.checker.check_model(m, full_check=True)\n    assert m.ir_version <= 10 and m.opset_import[0].version == 17\nprint('checked', len(sys.argv) - 1)";
    let out = std::process::Command::new(python).arg("-c").arg(script).args(&files).output().unwrap();
    assert!(out.status.success(), "onnx.checker: {}", String::from_utf8_lossy(&out.stderr));
    println!("{}", String::from_utf8_lossy(&out.stdout));
}
