//! One INT8 conv of each ResNet-50 layer shape, timed whole (input quantize or u8 input,
//! phase planes, packing, kernel, epilogue) with 1 and 2 threads, next to the selected qgemm
//! kernel alone on a packed panel of the same size (1 thread). Best of 500 runs; each
//! two-thread run keeps its other worker spinning for the call, as a session call does.
//! `cargo run --release --example qconv_layers [NAME]`
//!
//! Columns: `f32 io` = f32 input quantized per call and f32 output; `u8 io` = u8 codes in and
//! out (the static-mode hand-off between INT8 convs); `ideal 2t` = MACs at 2 × 234 G MAC/s,
//! the VNNI peak measured by `qgemm_peak` on the reference machine.

use std::time::Instant;

use kestrel::cpu::kernels::Kernels;
use kestrel::cpu::parallel::Spinner;
use kestrel::cpu::qconv::{self, QIn, QOut, Ranges};
use kestrel::cpu::qgemm;
use kestrel::graph::{ActQuant, Activation, Conv2d};
use kestrel::qparams::QParams;
use kestrel::Tensor;

/// (name, Cin, Cout, H = W, kernel, stride) of ResNet-50 convs at 224².
const LAYERS: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("conv1_7x7s2", 3, 64, 224, 7, 2),
    ("l1_1x1_reduce", 64, 64, 56, 1, 1),
    ("l1_3x3", 64, 64, 56, 3, 1),
    ("l1_1x1_expand", 64, 256, 56, 1, 1),
    ("l2_3x3s2", 128, 128, 56, 3, 2),
    ("l2_3x3", 128, 128, 28, 3, 1),
    ("l2_downsample", 256, 512, 56, 1, 2),
    ("l3_3x3", 256, 256, 14, 3, 1),
    ("l3_1x1_reduce", 1024, 256, 14, 1, 1),
    ("l3_1x1_expand", 256, 1024, 14, 1, 1),
    ("l4_3x3", 512, 512, 7, 3, 1),
    ("l4_1x1_expand", 512, 2048, 7, 1, 1),
    ("l4_downsample", 1024, 2048, 14, 1, 2),
    ("l3_3x3s2", 256, 256, 28, 3, 2),
    ("l4_3x3s2", 512, 512, 14, 3, 2),
];

fn best<F: FnMut()>(mut f: F) -> f64 {
    let mut b = f64::MAX;
    for _ in 0..500 {
        let t = Instant::now();
        f();
        b = b.min(t.elapsed().as_secs_f64() * 1e3);
    }
    b
}

fn main() -> kestrel::Result<()> {
    let only = std::env::args().nth(1);
    let pool = |n| rayon::ThreadPoolBuilder::new().num_threads(n).build().map_err(|e| kestrel::Error::Argument(e.to_string()));
    let (p1, p2) = (pool(1)?, pool(2)?);
    let kernels = Kernels::select()?;
    let kern = kernels.qgemm;
    println!("ISA {}", kernels.isa.name());
    println!("{:<14} {:>7} {:>9} {:>9} {:>9} {:>9} {:>9} {:>9}", "layer", "MMAC", "kernel 1t", "f32io 1t", "f32io 2t", "u8io 1t", "u8io 2t", "ideal 2t");
    for &(name, cin, cout, hw, k, stride) in LAYERS {
        if only.as_deref().is_some_and(|o| o != name) {
            continue;
        }
        let pad = k / 2;
        let w = Tensor::randn(vec![cout, cin, k, k], (2.0 / (cin * k * k) as f32).sqrt(), 3);
        let mut f = Conv2d::new(w, stride, pad, 1);
        f.bias = Some(vec![0.1; cout]);
        f.act = Some(Activation::Relu);
        let qc = f.quantized(ActQuant::Static(QParams { scale: 0.02, zero_point: 100 }), true, kestrel::quant::auto_weight_bits())?;
        let q = qc.precision.int8().ok_or_else(|| kestrel::Error::Internal("not INT8".into()))?;
        let packed = qconv::pack_conv(&kernels, &qc, q)?;
        let o = (hw + 2 * pad - k) / stride + 1;
        let (xs, os) = ([1, cin, hw, hw], [1, cout, o, o]);
        let x = Tensor::randn(xs.to_vec(), 1.0, 4);
        let mut out = vec![0f32; cout * o * o];
        let macs = (cout * cin * k * k * o * o) as f64;
        let mut s = qconv::QScratch::default();
        let mut run = |x: QIn, out: QOut, t: usize| {
            qconv::qconv2d(&kernels, &qc, q, &packed, x, xs, None, out, os, Ranges::default(), &mut s, t);
        };
        let f1 = p1.install(|| best(|| run(QIn::F32(x.data()), QOut::F32(&mut out), 1)));
        // Two threads as a session call runs them: the other worker spinning through the call.
        let f2 = p2.install(|| {
            best(|| {
                let _awake = Spinner::start(2);
                run(QIn::F32(x.data()), QOut::F32(&mut out), 2)
            })
        });
        // u8 codes in and out, as INT8 convs hand them to each other.
        let xu: Vec<u8> = (0..x.numel()).map(|i| (i * 7 % 251) as u8).collect();
        let mut out_u8 = vec![0u8; out.len()];
        let oq = QParams { scale: 0.05, zero_point: 3 };
        let u1 = p1.install(|| best(|| run(QIn::U8(&xu), QOut::U8(&mut out_u8, oq), 1)));
        let u2 = p2.install(|| {
            best(|| {
                let _awake = Spinner::start(2);
                run(QIn::U8(&xu), QOut::U8(&mut out_u8, oq), 2)
            })
        });
        let pw = &packed[0];
        let blocks = (o * o).div_ceil(qgemm::BLOCK);
        let panel: Vec<u8> = (0..qgemm::panel_len(pw.kpad, blocks)).map(|i| (i * 13 % 256) as u8).collect();
        let mut acc = vec![0i32; pw.mpad * blocks * qgemm::BLOCK];
        let k1 = best(|| kern.run(pw, &panel, blocks, &mut acc, blocks * qgemm::BLOCK));
        println!("{name:<14} {:>7.1} {k1:>9.3} {f1:>9.3} {f2:>9.3} {u1:>9.3} {u2:>9.3} {:>9.3}", macs / 1e6, macs / 468e6);
    }
    Ok(())
}
