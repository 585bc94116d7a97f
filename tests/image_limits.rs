//! Huge image headers are refused quickly and cheaply by the CLI: a 100 000 × 100 000 PNG and a
//! 50 000 × 50 000 JPEG (headers only, a few dozen bytes) each give one `kestrel: error:` line
//! and exit 2 in under a second, with the process's peak RSS at most 50 MB: the header is
//! checked before the model is loaded or any pixel decoded. Alone in its test binary, because
//! the peak RSS of waited children (`getrusage(RUSAGE_CHILDREN)`) covers every child the
//! process ever ran.

mod common;

use std::process::Command;
use std::time::Instant;

/// A real 16×16 baseline JPEG whose SOF0 is patched to declare `w`×`h`: all the headers a
/// decoder reads before the first scan, a few hundred bytes.
fn jpeg_header(w: u16, h: u16) -> Vec<u8> {
    let img = image::RgbImage::from_fn(16, 16, |x, y| image::Rgb([(x * 16) as u8, (y * 16) as u8, 90]));
    let mut v = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut v), image::ImageFormat::Jpeg).unwrap();
    let sof = v.windows(2).position(|m| m == [0xFF, 0xC0]).expect("a baseline SOF0");
    v[sof + 5..sof + 7].copy_from_slice(&h.to_be_bytes());
    v[sof + 7..sof + 9].copy_from_slice(&w.to_be_bytes());
    v
}

/// The peak RSS of every waited child, in MB (Linux's `ru_maxrss` is in KiB); 0 where there is
/// no `getrusage` (Windows: only the time and the message are checked there).
#[cfg(unix)]
fn children_peak_rss_mb() -> f64 {
    // SAFETY: getrusage writes one rusage struct into the zeroed value we pass.
    let ru = unsafe {
        let mut ru: libc::rusage = std::mem::zeroed();
        libc::getrusage(libc::RUSAGE_CHILDREN, &mut ru);
        ru
    };
    ru.ru_maxrss as f64 / 1024.0
}

#[cfg(not(unix))]
fn children_peak_rss_mb() -> f64 {
    0.0
}

#[test]
fn huge_headers_are_refused_fast_and_small() {
    let dir = tempfile::tempdir().unwrap();
    let png = dir.path().join("huge.png");
    std::fs::write(&png, common::png_header(100_000, 100_000)).unwrap();
    let jpg = dir.path().join("huge.jpg");
    std::fs::write(&jpg, jpeg_header(50_000, 50_000)).unwrap();
    for (args, what) in [
        (vec!["classify", "resnet18", png.to_str().unwrap()], "100000×100000"),
        (vec!["classify", "resnet18", jpg.to_str().unwrap()], "50000×50000"),
        (vec!["segment", "unet", png.to_str().unwrap(), "-o", dir.path().join("m.png").to_str().unwrap()], "100000×100000"),
        (vec!["segment", "unet", jpg.to_str().unwrap(), "-o", dir.path().join("m.png").to_str().unwrap()], "50000×50000"),
    ] {
        let t = Instant::now();
        let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(&args).output().unwrap();
        let secs = t.elapsed().as_secs_f64();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("kestrel: error: ") && err.trim().lines().count() == 1 && err.contains(what) && err.contains("above the limit"), "{args:?}: {err}");
        assert!(secs < 1.0, "{args:?} took {secs:.2} s");
        let rss = children_peak_rss_mb();
        println!("{args:?}: refused in {:.0} ms, peak RSS of the children so far {rss:.1} MB", secs * 1e3);
        assert!(rss <= 50.0, "{args:?}: peak RSS {rss:.1} MB");
    }
    // Last (it loads a model, which raises the children's peak RSS): a JPEG declaring 65040×16,
    // under the pixel limit, whose scan data stops short. Decoding stops at the end of the
    // data and preprocessing crops before it resizes, so it ends in seconds, not minutes.
    let long = dir.path().join("long.jpg");
    std::fs::write(&long, jpeg_header(65_040, 16)).unwrap();
    let t = Instant::now();
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(["classify", "resnet18", long.to_str().unwrap()]).output().unwrap();
    let secs = t.elapsed().as_secs_f64();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() || (out.status.code() == Some(2) && err.starts_with("kestrel: error: ") && err.trim().lines().count() == 1), "{err}");
    println!("classify of a 65040×16 JPEG header: exit {:?} in {secs:.2} s, peak RSS {:.0} MB", out.status.code(), children_peak_rss_mb());
    assert!(secs < 5.0, "took {secs:.2} s");
}
