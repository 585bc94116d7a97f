//! One conv at a time against ONNX Runtime: each of ResNet-50's conv shapes (the stem, the
//! stride-2 3×3 and 1×1 convs, the 1×1 convs at every map size) as a one-node model with bias
//! and ReLU, kestrel f32 and ORT f32 on the same input and threads, alternating call by call
//! (ORT's workers not spinning, as in `kestrel bench`: a spinning ORT pool keeps the cores
//! busy into kestrel's next call, 1.5–2× its time on a 2-vCPU guest). Prints each engine's
//! median, GMAC/s, the median of the pair ratios with its quartiles, and the relative L2
//! between the two outputs.
//!
//! `. scripts/setup.sh && cargo run --release --features ort --example conv_vs_ort -- [threads] [iters] [name filter]`

use std::time::Instant;

use kestrel::graph::{Activation, Conv2d, Graph, Op};
use kestrel::ort_ref::{OrtModel, OrtOptions};
use kestrel::{Options, Session, Tensor};

/// (name, Cin, Cout, input side, kernel, stride): ResNet-50's conv shapes at 224².
const SHAPES: &[(&str, usize, usize, usize, usize, usize)] = &[
    ("stem_7x7s2", 3, 64, 224, 7, 2),
    ("l2_3x3s2", 128, 128, 56, 3, 2),
    ("l3_3x3s2", 256, 256, 28, 3, 2),
    ("l4_3x3s2", 512, 512, 14, 3, 2),
    ("l2_ds_1x1s2", 256, 512, 56, 1, 2),
    ("l3_ds_1x1s2", 512, 1024, 28, 1, 2),
    ("l4_ds_1x1s2", 1024, 2048, 14, 1, 2),
    ("p56_64to64", 64, 64, 56, 1, 1),
    ("p56_64to256", 64, 256, 56, 1, 1),
    ("p56_256to64", 256, 64, 56, 1, 1),
    ("p56_256to128", 256, 128, 56, 1, 1),
    ("p28_512to128", 512, 128, 28, 1, 1),
    ("p28_128to512", 128, 512, 28, 1, 1),
    ("p28_512to256", 512, 256, 28, 1, 1),
    ("p14_1024to256", 1024, 256, 14, 1, 1),
    ("p14_256to1024", 256, 1024, 14, 1, 1),
    ("p14_1024to512", 1024, 512, 14, 1, 1),
    ("p7_2048to512", 2048, 512, 7, 1, 1),
    ("p7_512to2048", 512, 2048, 7, 1, 1),
    ("l1_3x3", 64, 64, 56, 3, 1),
    ("l3_3x3", 256, 256, 14, 3, 1),
];

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn main() -> kestrel::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let threads: usize = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2);
    let iters: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(150).max(4);
    let filter = args.get(3).cloned();
    println!("{threads} threads, {iters} pairs per conv; ratio = kestrel / ORT (median of pairs, p25–p75)");
    for &(name, cin, cout, hw, k, stride) in SHAPES {
        if filter.as_deref().is_some_and(|f| !name.contains(f)) {
            continue;
        }
        let mut g = Graph::default();
        let x = g.add_input("x", vec![1, cin, hw, hw]);
        let mut c = Conv2d::new(Tensor::randn(vec![cout, cin, k, k], (2.0 / (cin * k * k) as f32).sqrt(), 3), stride, k / 2, 1);
        c.bias = Some((0..cout).map(|i| 0.01 * (i % 7) as f32 - 0.02).collect());
        c.act = Some(Activation::Relu);
        let y = g.push("conv", Op::Conv(c), vec![x]);
        g.outputs.push(y);
        let bytes = kestrel::onnx::export::to_bytes(&g)?;
        let sess = Session::new(g, &Options { threads, optimize: true, ..Default::default() })?;
        let mut ort = OrtModel::with_options(&bytes, &OrtOptions { spinning: false, ..OrtOptions::threads(threads) })?;
        let input = Tensor::randn(vec![1, cin, hw, hw], 1.0, 4);
        let ours = sess.run(std::slice::from_ref(&input))?;
        let theirs = ort.run(&input)?;
        let (a, b) = (ours[0].data(), theirs[0].1.data());
        let diff: f64 = a.iter().zip(b).map(|(p, q)| f64::from(p - q).powi(2)).sum();
        let norm: f64 = b.iter().map(|q| f64::from(*q).powi(2)).sum();
        let (mut tk, mut to, mut r) = (Vec::new(), Vec::new(), Vec::new());
        for i in 0..iters + 10 {
            let t = Instant::now();
            sess.run(std::slice::from_ref(&input))?;
            let ms_k = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            ort.run(&input)?;
            let ms_o = t.elapsed().as_secs_f64() * 1e3;
            if i >= 10 {
                tk.push(ms_k);
                to.push(ms_o);
                r.push(ms_k / ms_o);
            }
        }
        let (mk, mo, mr) = (median(&mut tk), median(&mut to), median(&mut r));
        let gmacs = (cout * cin * k * k * hw.div_ceil(stride) * hw.div_ceil(stride)) as f64 / 1e6;
        println!(
            "{name:14} kestrel {mk:6.3} ms ({:5.1} GMAC/s)  ORT {mo:6.3} ms ({:5.1})  ratio {mr:.3} ({:.3}–{:.3})  rel L2 {:.1e}",
            gmacs / mk,
            gmacs / mo,
            r[r.len() / 4],
            r[3 * r.len() / 4],
            (diff / norm.max(f64::MIN_POSITIVE)).sqrt()
        );
    }
    Ok(())
}
