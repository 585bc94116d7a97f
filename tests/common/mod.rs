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

/// kestrel's own FP32 GEMM kernels on every ISA this CPU has (printed, so a log shows which
/// ran); an AVX-512 host must offer the AVX-512 kernel and an AVX2+FMA host the AVX2 one.
#[allow(dead_code)]
pub fn sgemm_kernels() -> Vec<kestrel::cpu::sgemm::Kernel> {
    use kestrel::cpu::detect;
    let ks: Vec<_> = detect::supported().into_iter().filter_map(kestrel::cpu::sgemm::Kernel::for_isa).collect();
    #[cfg(target_arch = "x86_64")]
    {
        use detect::Isa;
        let names: Vec<_> = ks.iter().map(|k| k.name()).collect();
        if detect::supported().contains(&Isa::Avx512Vnni) {
            assert!(names.iter().any(|n| n.starts_with("avx512")), "AVX-512 host without the AVX-512 FP32 kernel");
        }
        if std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma") {
            assert!(names.iter().any(|n| n.starts_with("avx2")), "AVX2+FMA host without the AVX2 FP32 kernel");
        }
        static ONCE: std::sync::Once = std::sync::Once::new();
        ONCE.call_once(|| eprintln!("FP32 kernels under test: {}", names.join(", ")));
    }
    ks
}

/// A valid PNG signature, IHDR declaring `w`×`h` 8-bit RGB pixels, and one small IDAT chunk,
/// then the end of the file: a few dozen bytes a decoder reads the header of.
pub fn png_header(w: u32, h: u32) -> Vec<u8> {
    fn crc32(bytes: &[u8]) -> u32 {
        let mut c = !0u32;
        for &b in bytes {
            c ^= u32::from(b);
            for _ in 0..8 {
                c = if c & 1 != 0 { 0xEDB8_8320 ^ (c >> 1) } else { c >> 1 };
            }
        }
        !c
    }
    let chunk = |kind: &[u8], data: &[u8]| {
        let mut out = (data.len() as u32).to_be_bytes().to_vec();
        let body = [kind, data].concat();
        out.extend(&body);
        out.extend(crc32(&body).to_be_bytes());
        out
    };
    let mut ihdr = w.to_be_bytes().to_vec();
    ihdr.extend(h.to_be_bytes());
    ihdr.extend([8, 2, 0, 0, 0]);
    [&b"\x89PNG\r\n\x1a\n"[..], &chunk(b"IHDR", &ihdr), &chunk(b"IDAT", &[0x78, 0x9c, 0x03, 0x00])].concat()
}
