//! Class activation maps: Grad-CAM's gradient against finite differences through convs,
//! residual adds, pooling and the Linear head; CAM and Grad-CAM coincide on a
//! GlobalAveragePool + Linear head; heads and options it cannot take are refused by name.

use kestrel::explain::{self, Class, Method};
use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::{Options, Session};

fn session() -> Session {
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 8, image_size: 32, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 21 }).unwrap();
    Session::new(g, &Options { threads: 1, optimize: true, ..Default::default() }).unwrap()
}

#[test]
fn grad_cam_gradient_matches_finite_differences() {
    let s = session();
    let x = synthetic_images(1, 3, 32, 32, 5);
    for (layer, k) in [("layer1", 3), ("layer2.0.conv1", 7), ("layer3", 0)] {
        let (grad, shape) = explain::gradient(&s, &x, Some(layer), k).unwrap();
        let plane: usize = shape[2..].iter().product();
        let scale = grad.iter().fold(0f32, |m, g| m.max(g.abs()));
        assert!(scale > 0.0, "{layer}: zero gradient");
        // Single elements and whole channels (what Grad-CAM's weights sum), centred
        // differences in f32.
        let mut checked = 0;
        for (i, len) in [(0, 1), (plane + 5, 1), (grad.len() / 2, 1), (grad.len() - 1, 1), (0, plane), (plane * (shape[1] / 2), plane)] {
            let eps = if len == 1 { 1e-2f32 } else { 1e-3 };
            let bump = |d: f32| move |a: &mut [f32]| a[i..i + len].iter_mut().for_each(|v| *v += d);
            let up = explain::logit_with(&s, &x, Some(layer), k, bump(eps)).unwrap();
            let down = explain::logit_with(&s, &x, Some(layer), k, bump(-eps)).unwrap();
            let fd = (up - down) / (2.0 * eps);
            let analytic: f32 = grad[i..i + len].iter().sum();
            let tol = 2e-2 * scale * (len as f32).sqrt() + 1e-3 * analytic.abs();
            assert!((fd - analytic).abs() <= tol, "{layer} class {k} elements {i}..{}: finite difference {fd}, gradient {analytic} (tolerance {tol})", i + len);
            checked += 1;
        }
        println!("{layer}: {checked} finite differences agree (gradient scale {scale:.3e})");
    }
}

#[test]
fn cam_and_grad_cam_coincide_on_a_pooled_linear_head() {
    let s = session();
    let x = synthetic_images(1, 3, 32, 32, 6);
    let cam = explain::explain(&s, &x, Some("layer3"), Class::Top, Method::Cam);
    // layer3's map goes through layer4 first: CAM is refused, Grad-CAM runs a backward pass.
    let err = cam.unwrap_err().to_string();
    assert!(err.contains("gradcam") && err.contains("layer3"), "{err}");
    assert!(explain::explain(&s, &x, Some("layer3"), Class::Top, Method::GradCam).unwrap().backward);
    // The last conv's map feeds GlobalAveragePool then the Linear: both are one weighted sum.
    let last = s.graph().nodes.iter().rev().find(|n| matches!(n.op, kestrel::graph::Op::Conv(_))).unwrap().name.clone();
    for k in [Class::Top, Class::Index(4)] {
        let cam = explain::explain(&s, &x, Some(&last), k, Method::Cam).unwrap();
        let grad = explain::explain(&s, &x, Some(&last), k, Method::GradCam).unwrap();
        assert!(!cam.backward && !grad.backward);
        let hw = (cam.map_hw[0] * cam.map_hw[1]) as f32;
        for (c, g) in cam.map.iter().zip(&grad.map) {
            assert!((c.max(0.0) / hw - g).abs() <= 1e-6 * (1.0 + g.abs()), "Grad-CAM {g} is not ReLU(CAM {c}) / {hw}");
        }
        // And the weighted sum is Grad-CAM's gradient: the backward pass through the pooling
        // and the Linear gives the same weights.
        let (gr, shape) = explain::gradient(&s, &x, Some(&last), cam.class).unwrap();
        let plane: usize = shape[2..].iter().product();
        let alpha: Vec<f32> = gr.chunks(plane).map(|p| p.iter().sum::<f32>() / plane as f32).collect();
        let lin = s.graph().nodes.iter().find_map(|n| match &n.op { kestrel::graph::Op::Linear(l) => Some(l), _ => None }).unwrap();
        let c = shape[1];
        for (a, w) in alpha.iter().zip(&lin.weight.data()[cam.class * c..(cam.class + 1) * c]) {
            assert!((a - w / plane as f32).abs() <= 1e-6, "alpha {a} vs W/hw {}", w / plane as f32);
        }
    }
}

#[test]
fn bad_requests_are_refused_by_name() {
    let s = session();
    let x = synthetic_images(1, 3, 32, 32, 7);
    let e = explain::explain(&s, &x, Some("nosuchlayer"), Class::Top, Method::GradCam).unwrap_err().to_string();
    assert!(e.contains("nosuchlayer"), "{e}");
    let e = explain::explain(&s, &x, None, Class::Index(10), Method::GradCam).unwrap_err().to_string();
    assert!(e.contains("10 classes"), "{e}");
    let two = synthetic_images(2, 3, 32, 32, 7);
    let e = explain::explain(&s, &two, None, Class::Top, Method::GradCam).unwrap_err().to_string();
    assert!(e.contains("one image"), "{e}");
    // A segmentation net has no logits: refused, not guessed.
    let unet = ModelConfig::UNet(UNetConfig { base_width: 4, depth: 2, image_size: 32, ..Default::default() }).build(&mut SeededWeights { seed: 1 }).unwrap();
    let us = Session::new(unet, &Options::default()).unwrap();
    let e = explain::explain(&us, &synthetic_images(1, 3, 32, 32, 1), None, Class::Top, Method::GradCam).unwrap_err().to_string();
    assert!(e.contains("not [1, classes]"), "{e}");
}

/// On the trained shapes model, Grad-CAM at the default layer (8×8) peaks inside the drawn
/// figure's square on most held-out images: 81.5 % of these 200 (80.4 % of 1000,
/// `examples/cam_shapes`), against 45 % for a random pixel.
#[test]
fn grad_cam_of_the_trained_model_finds_the_shape() {
    use kestrel::dataset::synth::{shape_geometry, shape_sample};
    use kestrel::imageio::{preprocess, Preprocess};
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/models/shapes-resnet18.safetensors");
    let g = kestrel::load_model(path, &kestrel::LoadOptions::default()).unwrap().graph;
    let s = Session::new(g, &Options { threads: 1, optimize: true, ..Default::default() }).unwrap();
    let pre = Preprocess { resize: 32, crop: 32, ..Preprocess::default() };
    let n = 200;
    let inside = (0..n)
        .filter(|&i| {
            let (img, _) = shape_sample(1001, i, 32);
            let geo = shape_geometry(1001, i, 32);
            let e = explain::explain(&s, &preprocess(&img, &pre), None, Class::Top, Method::GradCam).unwrap();
            assert_eq!(e.map_hw, [8, 8]);
            let (x, y) = explain::peak_pixel(&e, [32, 32]);
            (x as f32 + 0.5 - geo.cx).abs() <= geo.r && (y as f32 + 0.5 - geo.cy).abs() <= geo.r
        })
        .count();
    println!("Grad-CAM peak inside the shape's square: {inside} of {n}");
    assert!(inside * 100 >= 70 * n as usize, "only {inside} of {n} peaks inside the shape");
}
