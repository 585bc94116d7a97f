//! Where the trained `shapes-resnet18` looks: the fraction of held-out images whose Grad-CAM
//! peak (the centre, in input pixels, of the map's largest cell) falls on the drawn figure,
//! and inside its bounding square, per layer, beside the chance of a uniformly random pixel.
//! `cargo run --release --example cam_shapes [COUNT]`.

use kestrel::dataset::synth::{shape_geometry, shape_sample};
use kestrel::explain::{self, Class, Method};
use kestrel::imageio::{self, Preprocess};
use kestrel::{load_model, LoadOptions, Options, Session};

fn main() -> kestrel::error::Result<()> {
    let count: u64 = std::env::args().nth(1).and_then(|a| a.parse().ok()).unwrap_or(200);
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shapes-resnet18.safetensors");
    let model = load_model(path, &LoadOptions::default())?;
    let session = Session::new(model.graph, &Options { threads: 1, optimize: true, ..Default::default() })?;
    let pre = Preprocess { resize: 32, crop: 32, ..Preprocess::default() };
    println!("layer      map   on figure   in its square   (of {count} held-out images, seed 1001; correct predictions only in brackets)");
    for layer in ["layer1", "layer2", "layer3"] {
        let (mut on, mut boxed, mut right, mut on_right) = (0, 0, 0, 0);
        let (mut chance_on, mut chance_box) = (0.0, 0.0);
        let mut hw = [0, 0];
        for i in 0..count {
            let (img, class) = shape_sample(1001, i, 32);
            let geo = shape_geometry(1001, i, 32);
            let x = imageio::preprocess(&img, &pre);
            let e = explain::explain(&session, &x, Some(layer), Class::Top, Method::GradCam)?;
            hw = e.map_hw;
            let (px, py) = explain::peak_pixel(&e, [32, 32]);
            chance_on += (0..32 * 32).filter(|p| geo.covers(p % 32, p / 32)).count() as f64 / 1024.0;
            chance_box += ((2.0 * geo.r).min(32.0) / 32.0).powi(2) as f64;
            let hit = geo.covers(px, py);
            on += usize::from(hit);
            boxed += usize::from((px as f32 + 0.5 - geo.cx).abs() <= geo.r && (py as f32 + 0.5 - geo.cy).abs() <= geo.r);
            if e.class == class {
                right += 1;
                on_right += usize::from(hit);
            }
        }
        let pct = |a: usize, b: usize| 100.0 * a as f64 / b.max(1) as f64;
        println!("{layer:<10} {}x{}  {:>6.1} %     {:>6.1} %        ({:.1} % of {right})", hw[0], hw[1], pct(on, count as usize), pct(boxed, count as usize), pct(on_right, right));
        if layer == "layer3" {
            println!("chance           {:>6.1} %     {:>6.1} %", 100.0 * chance_on / count as f64, 100.0 * chance_box / count as f64);
        }
    }
    Ok(())
}
