//! The CUDA backend without a GPU (feature `cuda`): every kernel in `kernels/` compiles through
//! NVRTC for sm_80 and sm_90 with no register spills and within its shared-memory budget; a
//! compile error carries NVRTC's log; missing NVRTC, driver or device are clean errors; the
//! CLI's `--device cuda` is one line and exit 2. NVRTC comes from the pip wheel scripts/test.sh
//! installs (`KESTREL_NVRTC`); without it (outside test.sh) the compile tests are skipped.
#![cfg(feature = "cuda")]

use kestrel::cuda::{kernels, probe, KernelUsage, Nvrtc};
use kestrel::Error;

fn nvrtc(test: &str) -> Option<Nvrtc> {
    match Nvrtc::load() {
        Ok(n) => Some(n),
        Err(e) => {
            assert!(std::env::var("KESTREL_REQUIRE_FIXTURES").is_err(), "{test}: NVRTC required under scripts/test.sh: {e}");
            eprintln!("SKIP {test}: {e}");
            None
        }
    }
}

#[test]
fn every_kernel_compiles_for_sm80_and_sm90_without_spills() {
    let Some(n) = nvrtc("every_kernel_compiles_for_sm80_and_sm90_without_spills") else { return };
    let (major, minor) = n.version().unwrap();
    println!("NVRTC {major}.{minor} from {}", n.path);
    let mut kernels_seen = 0;
    for arch in [80, 90] {
        for (name, src) in kernels::SOURCES {
            let c = n.compile(name, src, kernels::HEADERS, arch).unwrap_or_else(|e| panic!("{name} sm_{arch}: {e}"));
            assert!(c.cubin.len() > 16 && &c.cubin[..4] == b"\x7fELF", "{name} sm_{arch}: not an ELF cubin");
            let usage = KernelUsage::parse(&c.log);
            assert!(!usage.is_empty(), "{name} sm_{arch}: no ptxas report in the log:\n{}", c.log);
            for k in &usage {
                println!("  sm_{arch} {name} {}: {} registers, {} B smem, spills {}/{}", k.name, k.registers, k.smem, k.spill_stores, k.spill_loads);
                assert_eq!((k.spill_stores, k.spill_loads), (0, 0), "{name} {} spills on sm_{arch}", k.name);
                assert!(k.smem <= kernels::SMEM_BUDGET, "{name} {} uses {} B of shared memory on sm_{arch}", k.name, k.smem);
                assert!(k.registers > 0 && k.registers <= 255, "{name} {}: {} registers", k.name, k.registers);
            }
            kernels_seen += usage.len();
        }
    }
    assert!(kernels_seen >= 2 * 11, "only {kernels_seen} kernels compiled");
}

#[test]
fn every_source_names_its_entry_points() {
    let names: Vec<&str> = kernels::SOURCES.iter().flat_map(|(_, s)| kernels::entry_points(s)).collect();
    assert_eq!(names.len(), 12, "{names:?}");
    // Behind `__launch_bounds__(128)`.
    assert!(names.contains(&"conv2d_nhwc_f16_mma") && names.contains(&"copy_channels_nhwc_f16") && names.contains(&"nchw_f32_to_nhwc_f16"), "{names:?}");
    assert_eq!(kernels::entry_points("extern \"C\" __global__ void __launch_bounds__(64, 2) k_1(int* x) {}"), ["k_1"]);
}

#[test]
fn compile_errors_carry_the_log_and_the_cache_returns_the_same_cubin() {
    let Some(n) = nvrtc("compile_errors_carry_the_log_and_the_cache_returns_the_same_cubin") else { return };
    let e = n.compile("broken.cu", "extern \"C\" __global__ void k(float* x) { x[0] = undefined_name; }", &[], 80).unwrap_err();
    let msg = e.to_string();
    assert!(matches!(e, Error::Cuda(_)) && msg.contains("broken.cu") && msg.contains("undefined_name") && !msg.contains('\n'), "{msg}");
    let dir = tempfile::tempdir().unwrap();
    // Only this test compiles through the cache, so setting the variable races with no reader.
    std::env::set_var("KESTREL_CUDA_CACHE", dir.path());
    let (name, src) = kernels::SOURCES[0];
    let first = n.compile_cached(name, src, kernels::HEADERS, 80).unwrap();
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1, "one cached CUBIN");
    let again = n.compile_cached(name, src, kernels::HEADERS, 80).unwrap();
    assert_eq!(first, again);
    let other_arch = n.compile_cached(name, src, kernels::HEADERS, 90).unwrap();
    assert_ne!(first, other_arch);
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 2, "one CUBIN per architecture");
}

#[test]
fn missing_nvrtc_and_missing_driver_are_clean_errors() {
    let e = Nvrtc::load_from("/nonexistent/libnvrtc.so").err().expect("no NVRTC there");
    let msg = e.to_string();
    assert!(msg.starts_with("CUDA: NVRTC not found") && msg.contains("nvidia-cuda-nvrtc") && msg.contains("KESTREL_NVRTC"), "{msg}");
    // Not NVRTC at all: a library without its entry points.
    if let Some(libc) = ["libc.so.6", "libm.so.6"].into_iter().find(|l| Nvrtc::load_from(l).is_err()) {
        let msg = Nvrtc::load_from(libc).err().map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("is not NVRTC") || msg.contains("NVRTC not found"), "{msg}");
    }
    match probe(0) {
        Ok(d) => println!("CUDA device 0: {} sm_{}{}, {} MiB", d.name, d.capability.0, d.capability.1, d.memory_bytes >> 20),
        Err(e) => {
            let msg = e.to_string();
            println!("probe: {msg}");
            assert!(msg.starts_with("CUDA: no CUDA driver found") || msg.starts_with("CUDA: no CUDA device") || msg.starts_with("CUDA: the driver refused"), "{msg}");
        }
    }
    if probe(0).is_err() {
        let msg = probe(7).unwrap_err().to_string();
        assert!(msg.contains("CUDA"), "{msg}");
    }
}

#[test]
fn the_cli_answers_device_cuda_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    let (png, npy) = (dir.path().join("x.png"), dir.path().join("y.npy"));
    image::RgbImage::from_pixel(40, 30, image::Rgb([90, 120, 30])).save(&png).unwrap();
    for args in [vec!["classify", "resnet18", png.to_str().unwrap(), "--device", "cuda"], vec!["run", "resnet18", "--device", "cuda:1", "-o", npy.to_str().unwrap()]] {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_kestrel")).args(&args).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.starts_with("kestrel: error:") && err.contains("CUDA") && err.trim().lines().count() == 1, "{args:?}: {err}");
    }
}
