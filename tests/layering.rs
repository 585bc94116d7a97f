//! The crate's import rule (README, Layout): a module imports only modules on lower layers,
//! so no two modules import each other and the portable IR depends on no backend. Checked on
//! the source text: every `crate::X` (and, in the binary, `kestrel::X`) names a top-level
//! module `X`, whose layer must be lower than the importer's.

use std::collections::BTreeMap;
use std::path::Path;

/// Top-level modules, lowest layer first; a module may import any module of a lower layer.
const LAYERS: &[&[&str]] = &[
    &["error", "detmath"],
    &["rng", "stats", "metrics", "qparams"],
    &["tensor"],
    &["slide"],
    &["postprocess", "imageio", "cache"],
    &["graph", "compare"],
    &["cpu", "cuda"],
    &["exec"],
    &["models", "onnx", "ort_ref"],
    &["load", "convert", "dataset"],
    &["quant"],
    &["engine"],
    &["prune"],
    &["parity", "eval", "explain", "bench", "tile"],
    &["prune_report"],
    &["reference"],
    &["report"],
    &["bin"],
];

fn layer(m: &str) -> Option<usize> {
    LAYERS.iter().position(|l| l.contains(&m))
}

fn rust_files(dir: &Path, out: &mut Vec<std::path::PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p);
        }
    }
}

#[test]
fn imports_point_down() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut edges: BTreeMap<(String, String), String> = BTreeMap::new();
    for f in &files {
        let rel = f.strip_prefix(&src).unwrap().to_string_lossy().replace('\\', "/");
        let module = if rel.starts_with("bin/") { "bin".to_string() } else { rel.split(['/', '.']).next().unwrap().to_string() };
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(f).unwrap();
        for line in text.lines() {
            let code = line.split("//").next().unwrap_or("");
            for prefix in ["crate::", "kestrel::"] {
                for part in code.split(prefix).skip(1) {
                    let name: String = part.chars().take_while(|c| c.is_ascii_lowercase() || *c == '_').collect();
                    if !name.is_empty() && name != module && layer(&name).is_some() {
                        edges.entry((module.clone(), name)).or_insert_with(|| rel.clone());
                    }
                }
            }
        }
        assert!(layer(&module).is_some(), "{rel}: module '{module}' has no layer in tests/layering.rs");
    }
    let bad: Vec<String> = edges
        .iter()
        .filter(|((from, to), _)| layer(to) >= layer(from))
        .map(|((from, to), file)| format!("{from} (layer {:?}) imports {to} (layer {:?}) in src/{file}", layer(from), layer(to)))
        .collect();
    assert!(bad.is_empty(), "imports that do not point down:\n{}", bad.join("\n"));
    assert!(edges.len() > 50, "only {} imports found: is the scan broken?", edges.len());
}
