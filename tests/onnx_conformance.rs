//! The ONNX conformance node cases for every op kestrel imports
//! (scripts/onnx_node_cases.py, from `onnx.backend.test.case.node.collect_testcases()`). A case
//! kestrel imports must match the case's expected output (the spec's, from the onnx package),
//! and every case must pass: a refusal (a clean error) fails the test too, it is a gap.
//! Every case that passes also passes through `kestrel run` (the CLI) and through kestrel's
//! own ONNX export and import, bit for bit. Where ONNX Runtime is available it runs kestrel's
//! export too; the cases where ORT's output departs from the spec's are listed by name (the
//! spec rules: they do not fail the test).
#![cfg(feature = "onnx")]

mod common;

use std::path::Path;

use kestrel::error::Error;
use kestrel::imageio::read_npy;
use kestrel::onnx::{export, import, load, proto, ImportOptions};
use kestrel::{Options, Session, Tensor};

fn close(got: &Tensor, want: &Tensor) -> bool {
    got.shape() == want.shape() && got.data().iter().zip(want.data()).all(|(g, w)| (g - w).abs() <= 1e-4 + 1e-3 * w.abs() || (g.is_nan() && w.is_nan()) || g == w)
}

fn summary(t: &Tensor) -> String {
    format!("{:?} {:?}…", t.shape(), &t.data()[..t.numel().min(4)])
}

#[test]
fn every_node_case_passes() {
    let Some(dir) = common::fixture("node_cases", "every_node_case_passes") else { return };
    let mut cases: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    cases.sort();
    let (mut passed, mut refused, mut failed) = (Vec::new(), Vec::new(), Vec::new());
    for case in &cases {
        let name = case.file_name().unwrap().to_string_lossy().to_string();
        let x = read_npy(&case.join("input.npy")).unwrap();
        let want = read_npy(&case.join("output.npy")).unwrap();
        let opts = ImportOptions { input_shape: Some(x.shape().to_vec()), base_dir: None };
        let result = load(&case.join("model.onnx"), &opts).and_then(|g| {
            let s = Session::new(g.clone(), &Options { threads: 1, optimize: true, ..Default::default() })?;
            Ok((g, s.run(std::slice::from_ref(&x))?))
        });
        match result {
            Ok((g, out)) => {
                if !close(&out[0], &want) {
                    failed.push(format!("{name}: got {} want {}", summary(&out[0]), summary(&want)));
                    continue;
                }
                // kestrel's own export of the imported graph, imported again: the same bits.
                let round = export::to_bytes(&g).and_then(|bytes| {
                    let m = proto::decode(Path::new("mem.onnx"), &bytes)?;
                    let back = import::import(&m, &opts)?;
                    Ok((Session::new(back, &Options { threads: 1, optimize: true, ..Default::default() })?.run(std::slice::from_ref(&x))?, bytes))
                });
                let (again, bytes) = match round {
                    Ok(r) => r,
                    Err(e) => {
                        failed.push(format!("{name}: export and import: {e}"));
                        continue;
                    }
                };
                if again != out {
                    failed.push(format!("{name}: export and import changed the output: {} vs {}", summary(&again[0]), summary(&out[0])));
                    continue;
                }
                passed.push((name, case.clone(), bytes));
            }
            Err(e @ (Error::OnnxUnsupported { .. } | Error::InputShape { .. } | Error::Shape { .. } | Error::Config(_))) => {
                refused.push(format!("{name}: {e}"));
            }
            Err(e) => failed.push(format!("{name}: unexpected error kind: {e}")),
        }
    }
    println!("ONNX node cases: {} passed, {} refused as out of scope, {} failed", passed.len(), refused.len(), failed.len());
    for r in &refused {
        println!("  refused {r}");
    }
    assert!(failed.is_empty(), "{} node cases failed:\n{}", failed.len(), failed.join("\n"));
    // Every case of every imported op passes (onnx 1.23.2: 292 cases); a refusal is a gap.
    assert!(refused.is_empty(), "{} node cases refused:\n{}", refused.len(), refused.join("\n"));
    assert!(passed.len() >= 292, "only {} cases passed", passed.len());

    // The CLI on every passing case: `kestrel run MODEL --input X.npy -o OUT.npy`.
    let tmp = tempfile::tempdir().unwrap();
    for (name, case, _) in &passed {
        let out = tmp.path().join(format!("{name}.npy"));
        let run = std::process::Command::new(env!("CARGO_BIN_EXE_kestrel"))
            .args(["run", case.join("model.onnx").to_str().unwrap(), "--input", case.join("input.npy").to_str().unwrap(), "--threads", "1", "-o", out.to_str().unwrap()])
            .output()
            .unwrap();
        assert!(run.status.success(), "kestrel run {name}: {}", String::from_utf8_lossy(&run.stderr));
        let (got, want) = (read_npy(&out).unwrap(), read_npy(&case.join("output.npy")).unwrap());
        assert!(close(&got, &want), "kestrel run {name}: got {} want {}", summary(&got), summary(&want));
    }
    println!("kestrel run: all {} passing cases match the expected outputs", passed.len());

    #[cfg(feature = "ort")]
    if common::ort_ready("every_node_case_passes (ORT on kestrel's export)") {
        let mut differ = Vec::new();
        for (name, case, bytes) in &passed {
            let x = read_npy(&case.join("input.npy")).unwrap();
            let want = read_npy(&case.join("output.npy")).unwrap();
            match kestrel::ort_ref::OrtModel::from_bytes(bytes, 1).and_then(|mut m| m.run(&x)) {
                Ok(o) if close(&o[0].1, &want) => {}
                Ok(o) => differ.push(format!("{name}: ORT {} vs spec {}", summary(&o[0].1), summary(&want))),
                Err(e) => differ.push(format!("{name}: ORT refuses kestrel's export: {e}")),
            }
        }
        println!("ORT on kestrel's export: {} of {} cases match the spec; where it departs, the spec's output rules:", passed.len() - differ.len(), passed.len());
        for d in &differ {
            println!("  {d}");
        }
    }
}
