//! The CLI: errors are one readable line with a non-zero exit; commands run end to end.

use std::process::Command;

fn kestrel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(args).output().expect("run kestrel");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn errors_are_one_line_and_non_zero() {
    for args in [
        vec!["info", "/nonexistent/model.onnx"],
        vec!["info", "resnet19"],
        vec!["classify", "resnet18", "/nonexistent/cat.png"],
    ] {
        let (code, _, err) = kestrel(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.starts_with("kestrel: error: "), "{err}");
    }
}

#[test]
fn info_classify_segment_convert() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = kestrel(&["info", "resnet50"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("parameters 25557032"), "{out}");
    let img = dir.path().join("img.png");
    let mut im = image::RgbImage::new(300, 260);
    for (x, y, p) in im.enumerate_pixels_mut() {
        *p = image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x * y) % 256) as u8]);
    }
    im.save(&img).unwrap();
    let img_s = img.to_str().unwrap();
    let (code, out, err) = kestrel(&["classify", "resnet18", img_s, img_s, "--top", "3", "--batch", "2"]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(out.lines().count(), 2, "{out}");
    let mask = dir.path().join("mask.png");
    let (code, _, err) = kestrel(&["segment", "unet", img_s, "-o", mask.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(image::open(&mask).unwrap().to_luma8().dimensions(), (300, 260));
    let st = dir.path().join("r.safetensors");
    let (code, _, err) = kestrel(&["convert", "resnet18", "-o", st.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    let (code, out, err) = kestrel(&["info", st.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("parameters 11689512"), "{out}");
}
