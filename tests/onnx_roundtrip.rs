//! Export to ONNX and import back gives bit-identical outputs.
#![cfg(feature = "onnx")]

use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::onnx::{export, import, proto, ImportOptions};
use kestrel::{Options, Session};

#[test]
fn export_import_is_bit_identical() {
    let cfgs = [
        ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 8, image_size: 64, ..Default::default() }),
        ModelConfig::ResNet(ResNetConfig { depth: 50, num_classes: 10, in_channels: 3, base_width: 8, image_size: 64, ..Default::default() }),
        ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 32, ..UNetConfig::default() }),
        ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 32, up: UpMode::Bilinear, batch_norm: false, ..UNetConfig::default() }),
    ];
    for cfg in cfgs {
        let g = cfg.build(&mut SeededWeights { seed: 4 }).unwrap();
        let x = synthetic_images(2, 3, 64, 64, 8);
        for optimize in [false, true] {
            let s = Session::new(g.clone(), &Options { threads: 2, optimize, ..Default::default() }).unwrap();
            let want = s.run(std::slice::from_ref(&x)).unwrap();
            // Export what the session executes (fused epilogues included) and the raw graph.
            let bytes = export::to_bytes(if optimize { s.graph() } else { &g }).unwrap();
            let m = proto::decode(std::path::Path::new("mem.onnx"), &bytes).unwrap();
            assert_eq!(m.ir_version, 8);
            assert_eq!(m.opset_import[0].version, 17);
            let back = import::import(&m, &ImportOptions::default()).unwrap();
            let got = Session::new(back, &Options { threads: 2, optimize, ..Default::default() }).unwrap().run(std::slice::from_ref(&x)).unwrap();
            assert_eq!(got, want, "{cfg:?} optimize={optimize}");
        }
    }
}
