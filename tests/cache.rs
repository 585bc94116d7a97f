//! The result cache (`--cache DIR`): a hit gives byte-identical output to a miss (classify,
//! explain, segment), eviction keeps the size bound, two processes writing at once corrupt
//! nothing, and an unwritable cache is one clear line.

use std::path::{Path, PathBuf};
use std::process::Command;

fn kestrel(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_kestrel")).args(args).output().expect("run kestrel");
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

fn models() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("models")
}

/// `n` held-out shape images.
fn shapes(dir: &Path, n: usize) -> Vec<String> {
    let data = dir.join("shapes");
    let (code, _, err) = kestrel(&["synth", "shapes", data.to_str().unwrap(), "--count", &n.to_string(), "--size", "32", "--seed", "1001"]);
    assert_eq!(code, 0, "{err}");
    let mut files: Vec<String> = std::fs::read_dir(&data).unwrap().flat_map(|d| std::fs::read_dir(d.unwrap().path()).unwrap()).map(|f| f.unwrap().path().to_string_lossy().into_owned()).collect();
    files.sort();
    files
}

fn stats(cache: &Path) -> [u64; 4] {
    let (code, out, err) = kestrel(&["cache", "stats", cache.to_str().unwrap()]);
    assert_eq!(code, 0, "{err}");
    // "DIR: E entries, B bytes, H hits, M misses"
    let nums: Vec<u64> = out.rsplit(": ").next().unwrap().split(", ").map(|p| p.split(' ').next().unwrap().parse().unwrap()).collect();
    [nums[0], nums[1], nums[2], nums[3]]
}

#[test]
fn hits_are_byte_identical_to_misses() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = shapes(dir.path(), 6);
    let cache = dir.path().join("cache");
    let c = cache.to_str().unwrap();
    let model = models().join("shapes-resnet18.safetensors");
    let m = model.to_str().unwrap();
    let mut classify = vec!["classify", m, "--resize", "32", "--crop", "32", "--top", "3", "--cache", c];
    classify.extend(imgs.iter().map(String::as_str));
    let (code, first, err) = kestrel(&classify);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stats(&cache)[..1], [6]);
    assert_eq!(stats(&cache)[2..], [0, 6]);
    let (code, second, err) = kestrel(&classify);
    assert_eq!(code, 0, "{err}");
    assert_eq!(first, second, "classify: hit differs from miss");
    assert_eq!(stats(&cache)[2..], [6, 6]);
    // A different option is a different key.
    classify[7] = "2";
    let (_, third, _) = kestrel(&classify);
    assert_ne!(third, first);
    assert_eq!(stats(&cache)[2..], [6, 12]);

    // explain: the overlay and the map, byte for byte.
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    for out in [&a, &b] {
        let mut args = vec!["explain", m, "-o", out.to_str().unwrap(), "--cache", c];
        args.extend(imgs.iter().take(3).map(String::as_str));
        let (code, _, err) = kestrel(&args);
        assert_eq!(code, 0, "{err}");
    }
    for f in std::fs::read_dir(&a).unwrap() {
        let name = f.unwrap().file_name();
        assert_eq!(std::fs::read(a.join(&name)).unwrap(), std::fs::read(b.join(&name)).unwrap(), "{name:?}");
    }
    // segment, a whole image.
    let blob = dir.path().join("blob.png");
    kestrel::dataset::synth::blob_sample(3, 0, 64).0.save(&blob).unwrap();
    let unet = models().join("blobs-unet.safetensors");
    let masks = [dir.path().join("m1.png"), dir.path().join("m2.png")];
    for mask in &masks {
        let (code, _, err) = kestrel(&["segment", unet.to_str().unwrap(), blob.to_str().unwrap(), "-o", mask.to_str().unwrap(), "--cache", c]);
        assert_eq!(code, 0, "{err}");
    }
    assert_eq!(std::fs::read(&masks[0]).unwrap(), std::fs::read(&masks[1]).unwrap());
    let [entries, _, hits, misses] = stats(&cache);
    assert_eq!((entries, hits, misses), (6 + 6 + 3 + 1, 6 + 3 + 1, 12 + 3 + 1));
    let (code, _, err) = kestrel(&["cache", "clear", c]);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stats(&cache), [0, 0, 0, 0]);
}

#[test]
fn eviction_keeps_the_bound_and_concurrent_writers_corrupt_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = shapes(dir.path(), 20);
    let model = models().join("shapes-resnet18.safetensors");
    let m = model.to_str().unwrap();
    // Explain entries are a few KB each: a 20 KB bound holds only some of 20.
    let cache = dir.path().join("small");
    let o = dir.path().join("o");
    let mut args = vec!["explain", m, "-o", o.to_str().unwrap(), "--cache", cache.to_str().unwrap(), "--cache-size", "20K"];
    args.extend(imgs.iter().map(String::as_str));
    let (code, _, err) = kestrel(&args);
    assert_eq!(code, 0, "{err}");
    let [entries, bytes, ..] = stats(&cache);
    assert!(bytes <= 20 * 1024 && entries > 0 && entries < 20, "{entries} entries, {bytes} bytes");

    // Two processes on one cache, the same images, at once.
    let shared = dir.path().join("shared");
    let run = |out: &str| {
        let mut a = vec!["explain".to_string(), m.to_string(), "-o".into(), dir.path().join(out).to_string_lossy().into_owned(), "--cache".into(), shared.to_string_lossy().into_owned()];
        a.extend(imgs.iter().cloned());
        Command::new(env!("CARGO_BIN_EXE_kestrel")).args(&a).stdout(std::process::Stdio::null()).spawn().unwrap()
    };
    let (mut p, mut q) = (run("p"), run("q"));
    assert!(p.wait().unwrap().success() && q.wait().unwrap().success());
    let [entries, _, hits, misses] = stats(&shared);
    assert_eq!(entries, 20);
    assert_eq!(hits + misses, 40);
    // Every entry reads back whole: a third run is all hits, identical to the first two.
    let r = dir.path().join("r");
    let mut a = vec!["explain", m, "-o", r.to_str().unwrap(), "--cache", shared.to_str().unwrap()];
    a.extend(imgs.iter().map(String::as_str));
    let (code, _, err) = kestrel(&a);
    assert_eq!(code, 0, "{err}");
    assert_eq!(stats(&shared)[2], hits + 20);
    for f in std::fs::read_dir(dir.path().join("p")).unwrap() {
        let name = f.unwrap().file_name();
        let p = std::fs::read(dir.path().join("p").join(&name)).unwrap();
        assert_eq!(p, std::fs::read(dir.path().join("q").join(&name)).unwrap(), "{name:?}");
        assert_eq!(p, std::fs::read(dir.path().join("r").join(&name)).unwrap(), "{name:?}");
    }
}

#[test]
fn bad_caches_are_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let imgs = shapes(dir.path(), 1);
    let model = models().join("shapes-resnet18.safetensors");
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"x").unwrap();
    let o = dir.path().join("o");
    for (args, needle) in [
        (vec!["classify", model.to_str().unwrap(), imgs[0].as_str(), "--cache", "/proc/kestrel-cache"], "--cache /proc/kestrel-cache"),
        (vec!["classify", model.to_str().unwrap(), imgs[0].as_str(), "--cache", file.to_str().unwrap()], "a-file"),
        (vec!["explain", model.to_str().unwrap(), imgs[0].as_str(), "-o", o.to_str().unwrap(), "--cache", o.to_str().unwrap(), "--cache-size", "lots"], "--cache-size lots"),
        (vec!["cache", "stats", "/nonexistent/cache"], "/nonexistent/cache"),
        (vec!["cache", "purge", dir.path().to_str().unwrap()], "cache purge"),
        (vec!["segment", "unet", imgs[0].as_str(), "-o", o.to_str().unwrap(), "--tile", "64", "--cache", o.to_str().unwrap()], "not cached"),
    ] {
        let (code, _, err) = kestrel(&args);
        assert_eq!(code, 2, "{args:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{args:?}: {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
}
