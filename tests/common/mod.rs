//! Shared test helpers: one float tolerance type, seeded data, fixture paths.
#![allow(dead_code)]

use std::path::PathBuf;

use kestrel::rng::Rng;

/// Float comparison: `|a − b| ≤ abs + rel · |b|` elementwise.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub abs: f32,
    pub rel: f32,
}

impl Tolerance {
    pub const KERNEL: Tolerance = Tolerance { abs: 1e-4, rel: 1e-4 };

    /// Panics with the first few mismatches and the case description.
    pub fn check(&self, what: &str, got: &[f32], want: &[f32]) {
        assert_eq!(got.len(), want.len(), "{what}: length");
        let bad: Vec<String> = got
            .iter()
            .zip(want)
            .enumerate()
            .filter(|(_, (g, w))| !((*g - *w).abs() <= self.abs + self.rel * w.abs()) && !(g.is_infinite() && g == w))
            .take(5)
            .map(|(i, (g, w))| format!("[{i}] got {g} want {w}"))
            .collect();
        assert!(bad.is_empty(), "{what}: {} mismatches, first: {}", bad.len(), bad.join("; "));
    }
}

/// Seeded non-zero data in [-1, 1).
pub fn data(n: usize, seed: u64) -> Vec<f32> {
    let mut r = Rng::new(seed);
    (0..n).map(|_| r.range(-1.0, 1.0)).collect()
}

/// Where scripts/test.sh writes generated fixtures.
pub fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("target/fixtures")
}

/// Whether ORT can be used; prints why not. Under scripts/test.sh a missing ORT fails.
#[cfg(feature = "ort")]
pub fn ort_ready(test: &str) -> bool {
    match kestrel::ort_ref::available() {
        Ok(()) => true,
        Err(e) => {
            assert!(std::env::var("KESTREL_REQUIRE_FIXTURES").is_err(), "{test}: ONNX Runtime required: {e}");
            eprintln!("SKIP {test}: {e}");
            false
        }
    }
}

/// A generated fixture directory or file; `None` (with a message) when absent outside test.sh.
pub fn fixture(rel: &str, test: &str) -> Option<PathBuf> {
    let p = fixtures().join(rel);
    if p.exists() {
        return Some(p);
    }
    assert!(std::env::var("KESTREL_REQUIRE_FIXTURES").is_err(), "{test}: fixture {} missing", p.display());
    eprintln!("SKIP {test}: {} missing (run scripts/test.sh)", p.display());
    None
}

/// Every ONNX file of a generated fixture directory: path, bytes, decoded model, imported graph.
#[cfg(feature = "onnx")]
pub fn onnx_fixtures(dir: &std::path::Path) -> Vec<(PathBuf, Vec<u8>, kestrel::onnx::pb::ModelProto, kestrel::Graph)> {
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    paths.sort();
    paths
        .into_iter()
        .map(|p| {
            let bytes = std::fs::read(&p).unwrap();
            let m = kestrel::onnx::proto::decode(&p, &bytes).unwrap();
            let g = kestrel::onnx::import::import(&m, &Default::default()).unwrap();
            (p, bytes, m, g)
        })
        .collect()
}
