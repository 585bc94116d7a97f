//! Latency of one conv against its output width, to find the channel counts the kernels run in
//! whole blocks (`kestrel prune --round-to auto`, `src/prune/width.rs`). A 3×3 conv, 64 input
//! channels at 28×28, output width 8..=96, one thread, best of 40 runs: f32 on each of
//! kestrel's own FP32 kernels this CPU has (what sessions run), on the `gemm` crate (the scalar
//! ISA's path), and INT8 on every INT8 path this CPU has (the VNNI path on AMX tiles where the
//! CPU has AMX-INT8, as sessions run it). One row per width, times in µs.
//! `cargo run --release --example width_steps`; `THREADS=2 HW=14 CIN=256 WIDTHS=160-224` (any
//! of them) times another conv: the steps of the workers' split of a small map's channels.
//! `SWEEP=in COUT=128` times a 1×1 conv against its input width instead (the K step).

use std::time::Instant;

use kestrel::cpu::kernels::Kernels;
use kestrel::cpu::qconv::{self, QIn, QOut, Ranges};
use kestrel::cpu::sgemm::Kernel;
use kestrel::cpu::{conv, detect, sconv};
use kestrel::graph::{ActQuant, Conv2d};
use kestrel::qparams::{QParams, WeightBits};
use kestrel::Tensor;

/// The best of 40 calls of `f`, in µs, each with the pool's other workers spinning for the
/// call, as in a session (`threads` > 1).
fn best(threads: usize, f: &mut dyn FnMut()) -> f64 {
    f();
    (0..40)
        .map(|_| {
            let t = Instant::now();
            let _awake = kestrel::cpu::parallel::Spinner::start(threads);
            f();
            t.elapsed().as_secs_f64() * 1e6
        })
        .fold(f64::MAX, f64::min)
}

fn main() -> kestrel::Result<()> {
    let var = |name: &str, default: usize| std::env::var(name).ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default);
    let (cin0, hw, threads) = (var("CIN", 64), var("HW", 28), var("THREADS", 1).max(1));
    // `SWEEP=in`: a 1×1 conv of COUT output channels against its input width instead (the K
    // step: AMX pads K to 64 bytes).
    let by_input = std::env::var("SWEEP").is_ok_and(|v| v == "in");
    let cout0 = var("COUT", 128);
    let widths = std::env::var("WIDTHS").ok().and_then(|v| v.split_once('-').and_then(|(a, b)| Some(a.trim().parse::<usize>().ok()?..=b.trim().parse::<usize>().ok()?))).unwrap_or(8..=96);
    let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().map_err(|e| kestrel::Error::System(e.to_string()))?;
    if by_input {
        println!("1×1 conv, {cout0} output channels at {hw}×{hw}, against its input channels, {threads} thread(s)");
    } else {
        println!("3×3 conv, {cin0} input channels at {hw}×{hw}, {threads} thread(s)");
    }
    let isas = detect::supported();
    let fp32: Vec<Kernel> = detect::supported().into_iter().filter_map(Kernel::for_isa).collect();
    print!("{:>5}", "width");
    for k in &fp32 {
        print!(" {:>18}", format!("f32 {} us", k.name()));
    }
    print!(" {:>14}", "f32 gemm us");
    for &isa in &isas {
        // The VNNI path runs its GEMM on AMX tiles where the CPU has them.
        let name = match Kernels::new(isa)?.qgemm {
            kestrel::cpu::qgemm::Kernel::Amx(_) => "amx-int8",
            _ => isa.name(),
        };
        print!(" {:>14}", format!("int8 {name} us"));
    }
    println!();
    for width in widths {
        let (cin, cout, kk) = if by_input { (width, cout0, 1) } else { (cin0, width, 3) };
        let x = Tensor::randn(vec![1, cin, hw, hw], 1.0, 4);
        let mut f = Conv2d::new(Tensor::randn(vec![cout, cin, kk, kk], 0.05, 3), 1, kk / 2, 1);
        f.bias = Some(vec![0.1; cout]);
        let mut out = vec![0f32; cout * hw * hw];
        let mut scratch = Vec::new();
        print!("{width:>5}");
        for &k in &fp32 {
            let packed = sconv::pack(k, &f);
            let t = pool.install(|| best(threads, &mut || sconv::conv2d(k, &f, &packed, x.data(), [1, cin, hw, hw], None, &mut out, [1, cout, hw, hw], &mut scratch, threads)));
            print!(" {t:>18.1}");
        }
        let t32 = pool.install(|| best(threads, &mut || conv::conv2d(&f, x.data(), [1, cin, hw, hw], None, &mut out, [1, cout, hw, hw], &mut scratch, threads)));
        print!(" {t32:>14.1}");
        for &isa in &isas {
            let k = Kernels::new(isa)?;
            let qc = f.clone().quantized(ActQuant::Static(QParams { scale: 0.02, zero_point: 128 }), true, WeightBits::Eight)?;
            let q = qc.precision.int8().ok_or_else(|| kestrel::Error::Internal("not INT8".into()))?;
            let packed = qconv::pack_conv(&k, &qc, q)?;
            let mut s = qconv::QScratch::default();
            let t8 = pool.install(|| best(threads, &mut || {
                qconv::qconv2d(&k, &qc, q, &packed, QIn::F32(x.data()), [1, cin, hw, hw], None, QOut::F32(&mut out), [1, cout, hw, hw], Ranges::default(), &mut s, threads);
            }));
            print!(" {t8:>14.1}");
        }
        println!();
    }
    Ok(())
}
