//! Replays the fuzz seed corpus (fuzz/corpus/<target>/) and every input that ever made a
//! target fail (fuzz/regressions/<target>/) through the same target bodies the cargo-afl
//! binaries run (fuzz/targets.rs): none may panic, and none may take more than a few seconds.
//! New failures found by a campaign go into fuzz/regressions/ with the fix.
#![cfg(feature = "onnx")]

#[path = "../fuzz/targets.rs"]
mod targets;

use std::time::{Duration, Instant};

#[test]
fn corpus_and_past_failures_replay_cleanly() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    let mut total = 0;
    for (name, target) in targets::TARGETS {
        let mut files = Vec::new();
        for kind in ["corpus", "regressions"] {
            if let Ok(rd) = std::fs::read_dir(root.join(kind).join(name)) {
                files.extend(rd.map(|e| e.unwrap().path()));
            }
        }
        files.sort();
        assert!(!files.is_empty(), "no seeds for fuzz target {name}");
        for f in &files {
            let data = std::fs::read(f).unwrap();
            let t = Instant::now();
            let r = std::panic::catch_unwind(|| target(&data));
            assert!(r.is_ok(), "fuzz target {name} panicked on {}", f.display());
            assert!(t.elapsed() < Duration::from_secs(10), "fuzz target {name} took {:?} on {}", t.elapsed(), f.display());
        }
        println!("fuzz target {name}: {} inputs replayed", files.len());
        total += files.len();
    }
    assert!(total > 0);
}
