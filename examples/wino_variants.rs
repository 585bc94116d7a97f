//! FP32 3×3 stride-1 convs on this host's best FP32 kernel, direct against Winograd
//! F(2×2, 3×3) and F(4×4, 3×3), the three alternating in one process (25 rounds, medians), on
//! ResNet-50's and UNet's shapes at batch 1 and blobs-unet's at 1 and 16: G direct-MAC/s and F4 / F2. This is how
//! `wino::prefers_f4` and `wino::pays_on` were measured (criterion runs the variants one after another, which a
//! noisy host skews). With `BF16=1` (a CPU with AVX512_BF16) the three are bf16 Winograd F(2×2)
//! and F(4×4) on `vdpbf16ps` and the FP32 F(4×4), and the ratio is bf16 F4 / F2: how
//! `wino::bf16_variant` was measured.
//!
//! `T=2 cargo run --release --example wino_variants` (`T`: threads, default 2; `BF16=1`).
//! x86-64 only: elsewhere kestrel has no FP32 kernel of its own, and this stops with a message.

#![cfg_attr(not(target_arch = "x86_64"), allow(unreachable_code, unused_variables))]

use kestrel::cpu::{bgemm, detect, sconv, sgemm, wino};
use kestrel::graph::Conv2d;
use kestrel::Tensor;
use std::time::Instant;
fn main() {
    let threads: usize = std::env::var("T").ok().and_then(|s| s.parse().ok()).unwrap_or(2);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
    let kernel = detect::supported().into_iter().filter_map(sgemm::Kernel::for_isa).next_back().expect("no FP32 kernel of kestrel's own on this CPU (x86-64 only)");
    let bf16 = match std::env::var("BF16").is_ok_and(|v| v == "1") {
        false => None,
        true => match bgemm::Kernel::native(detect::Isa::Avx512Vnni) {
            Some(k) => Some(k),
            None => {
                eprintln!("BF16=1: this CPU lacks AVX512_BF16");
                std::process::exit(2);
            }
        },
    };
    // (name, batch, cin, cout, map side): ResNet-50's and UNet's at batch 1, blobs-unet's
    // (64² inputs) at batch 1 and 16.
    let shapes = [("l1 64@56", 1, 64, 64, 56), ("l2 128@28", 1, 128, 128, 28), ("l3 256@14", 1, 256, 256, 14), ("l4 512@7", 1, 512, 512, 7), ("u 32@256", 1, 32, 32, 256), ("u 64>32@256", 1, 64, 32, 256), ("u 128@64", 1, 128, 128, 64), ("u 256@32", 1, 256, 256, 32), ("u 512@16", 1, 512, 512, 16), ("u 64@128", 1, 64, 64, 128), ("u 128@128", 1, 128, 128, 128), ("b 32@16", 1, 32, 32, 16), ("b 32@16", 16, 32, 32, 16), ("b 64>32@16", 16, 64, 32, 16), ("b 32>64@8", 16, 32, 64, 8), ("b 64@8", 1, 64, 64, 8), ("b 64@8", 16, 64, 64, 8), ("b 64@16", 16, 64, 64, 16), ("r18 64@8", 64, 64, 64, 8), ("128@14", 8, 128, 128, 14), ("64@28", 8, 64, 64, 28), ("256@14", 8, 256, 256, 14)];
    for (name, n, cin, cout, hw) in shapes {
        let w = Tensor::randn(vec![cout, cin, 3, 3], 0.05, 3);
        let mut f = Conv2d::new(w, 1, 1, 1);
        f.bias = Some(vec![0.1; cout]);
        f.act = Some(kestrel::graph::Activation::Relu);
        let x = Tensor::randn(vec![n, cin, hw, hw], 1.0, 4);
        let (xs, os) = ([n, cin, hw, hw], [n, cout, hw, hw]);
        let mut out = vec![0f32; n * cout * hw * hw];
        let mut scratch = Vec::new();
        let pd = sconv::pack(kernel, &f);
        let (p2, p4) = match bf16 {
            Some(_) => (wino::pack_bf16(&f, wino::Variant::F2), wino::pack_bf16(&f, wino::Variant::F4)),
            None => (wino::pack(kernel.geometry().mr, &f), wino::pack_f4(kernel.geometry().mr, &f)),
        };
        let f4 = wino::pack_f4(kernel.geometry().mr, &f);
        let exec = bf16.map_or(wino::Exec::Kernel(kernel), wino::Exec::Bf16);
        let mut t = [vec![], vec![], vec![]];
        let reps = (2e8 as usize / (n * cin * cout * 9 * hw * hw)).clamp(1, 50);
        for _ in 0..25 {
            for (v, times) in t.iter_mut().enumerate() {
                let s = Instant::now();
                for _ in 0..reps {
                    // The other workers spinning for the call, as in a session.
                    pool.install(|| {
                        let _awake = kestrel::cpu::parallel::Spinner::start(threads);
                        match (v, bf16) {
                            (0, None) => sconv::conv2d(kernel, &f, &pd, x.data(), xs, None, &mut out, os, &mut scratch, threads),
                            (0, Some(_)) | (1, None) => wino::conv2d(exec, &f, &p2, x.data(), xs, None, &mut out, os, &mut scratch, threads),
                            (1, Some(_)) | (_, None) => wino::conv2d(exec, &f, &p4, x.data(), xs, None, &mut out, os, &mut scratch, threads),
                            _ => wino::conv2d(wino::Exec::Kernel(kernel), &f, &f4, x.data(), xs, None, &mut out, os, &mut scratch, threads),
                        }
                    });
                }
                times.push(s.elapsed().as_secs_f64() / reps as f64);
            }
        }
        let macs = (n * cin * cout * 9 * hw * hw) as f64;
        let med = |v: &mut Vec<f64>| { v.sort_by(|a, b| a.partial_cmp(b).unwrap()); v[v.len() / 2] };
        let (a, b, c) = (med(&mut t[0]), med(&mut t[1]), med(&mut t[2]));
        match bf16 {
            None => println!("{name:12} b{n:<3} direct {:6.1}  F2 {:6.1}  F4 {:6.1} G/s   F4/F2 {:.2}", macs / a / 1e9, macs / b / 1e9, macs / c / 1e9, b / c),
            Some(_) => println!("{name:12} b{n:<3} bf16 F2 {:6.1}  bf16 F4 {:6.1}  f32 F4 {:6.1} G/s   bf16 F4/F2 {:.2}", macs / a / 1e9, macs / b / 1e9, macs / c / 1e9, b / a),
        }
    }
}
