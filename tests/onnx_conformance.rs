//! The ONNX conformance node cases for every op kestrel imports
//! (scripts/onnx_node_cases.py). A case kestrel imports must match the expected output; a
//! case outside kestrel's scope must be refused with a clean error, never answered wrongly.
#![cfg(feature = "onnx")]

mod common;

use kestrel::error::Error;
use kestrel::imageio::read_npy;
use kestrel::onnx::{load, ImportOptions};
use kestrel::{Options, Session};

#[test]
fn node_cases_pass_or_are_refused() {
    let Some(dir) = common::fixture("node_cases", "node_cases_pass_or_are_refused") else { return };
    let mut cases: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let (mut passed, mut refused, mut failed) = (0, Vec::new(), Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let x = read_npy(&case.join("input.npy")).unwrap();
        let want = read_npy(&case.join("output.npy")).unwrap();
        let opts = ImportOptions { input_shape: Some(x.shape().to_vec()), base_dir: None };
        let result = load(&case.join("model.onnx"), &opts).and_then(|g| {
            let s = Session::new(g, &Options { threads: 1, optimize: true })?;
            s.run(std::slice::from_ref(&x))
        });
        match result {
            Ok(out) => {
                let got = &out[0];
                let ok = got.shape() == want.shape()
                    && got.data().iter().zip(want.data()).all(|(g, w)| (g - w).abs() <= 1e-4 + 1e-3 * w.abs() || (g.is_nan() && w.is_nan()) || g == w);
                if ok {
                    passed += 1;
                } else {
                    failed.push(format!("{name}: got {:?} {:?}… want {:?} {:?}…", got.shape(), &got.data()[..got.numel().min(4)], want.shape(), &want.data()[..want.numel().min(4)]));
                }
            }
            Err(e @ (Error::OnnxUnsupported { .. } | Error::InputShape { .. } | Error::Shape { .. } | Error::Config(_))) => {
                refused.push(format!("{name}: {e}"));
            }
            Err(e) => failed.push(format!("{name}: unexpected error kind: {e}")),
        }
    }
    println!("ONNX node cases: {passed} passed, {} refused as out of scope, {} failed", refused.len(), failed.len());
    for r in &refused {
        println!("  refused {r}");
    }
    assert!(failed.is_empty(), "{} node cases failed:\n{}", failed.len(), failed.join("\n"));
    assert!(passed >= 80, "only {passed} cases passed");
}
