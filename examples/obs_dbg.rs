use kestrel::quant::observe::{Method, Observer};
use kestrel::rng::Rng;
fn main() {
    let mut r = Rng::new(1);
    for n in [10_000usize, 1_000_000] {
        let x: Vec<f32> = (0..n).map(|_| r.normal().max(0.0)).collect();
        let mut o = Observer::default();
        o.see_range(kestrel::cpu::simd::Simd::best(), &x);
        o.see_histogram(&x);
        for m in [Method::MinMax, Method::Percentile(99.99), Method::Entropy, Method::Mse] {
            let p = o.params(m);
            println!("n={n} {m:?}: max {:.3} -> hi {:.3}", o.max, p.scale * (255.0 - p.zero_point as f32));
        }
    }
}
