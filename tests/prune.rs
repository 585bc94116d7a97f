//! Structured pruning: dependency groups on the architectures we run, physical removal that
//! keeps every graph consistent, recovery, and clean errors for bad options.

mod common;

use kestrel::graph::*;
use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::prune::groups::{Groups, Role};
use kestrel::prune::{prune, Importance, PruneOptions, Recovery, Reduce, RoundTo, Target};
use kestrel::{Options, Session, Tensor};

fn resnet(depth: usize, width: usize) -> Graph {
    ModelConfig::ResNet(ResNetConfig { depth, num_classes: 10, base_width: width, image_size: 32, ..Default::default() }).build(&mut SeededWeights { seed: 3 }).unwrap()
}

fn unet(up: UpMode) -> Graph {
    ModelConfig::UNet(UNetConfig { base_width: 8, depth: 2, image_size: 32, up, ..Default::default() }).build(&mut SeededWeights { seed: 4 }).unwrap()
}

fn run(g: &Graph, x: &Tensor) -> Tensor {
    Session::new(g.clone(), &Options { threads: 2, optimize: true, ..Default::default() }).unwrap().run(std::slice::from_ref(x)).unwrap().remove(0)
}

/// The group whose producers include node `name`.
fn group_of<'a>(g: &Graph, groups: &'a Groups, name: &str) -> &'a kestrel::prune::groups::Group {
    let n = g.nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"));
    groups.groups.iter().find(|gr| gr.members.contains(&(n, Role::Producer))).unwrap_or_else(|| panic!("{name} produces no group"))
}

fn names(g: &Graph, gr: &kestrel::prune::groups::Group, role: fn(&Role) -> bool) -> Vec<String> {
    let mut v: Vec<String> = gr.members.iter().filter(|(_, r)| role(r)).map(|(n, _)| g.nodes[*n].name.clone()).collect();
    v.sort();
    v
}

#[test]
fn groups_of_basic_and_bottleneck_resnets() {
    // BasicBlock: layer1's stream runs from the stem through both blocks' conv2; layer2's
    // stream joins the downsample conv with both blocks' conv2.
    let g = resnet(18, 8);
    let groups = Groups::new(&g, &[]).unwrap();
    print!("{}", groups.explain(&g));
    let stream1 = group_of(&g, &groups, "conv1");
    assert_eq!(names(&g, stream1, |r| *r == Role::Producer), ["conv1", "layer1.0.conv2", "layer1.1.conv2"]);
    assert!(stream1.prunable());
    let stream2 = group_of(&g, &groups, "layer2.0.downsample.0");
    assert_eq!(names(&g, stream2, |r| *r == Role::Producer), ["layer2.0.conv2", "layer2.0.downsample.0", "layer2.1.conv2"]);
    let readers = names(&g, stream2, |r| matches!(r, Role::Consumer { .. }));
    assert_eq!(readers, ["layer2.1.conv1", "layer3.0.conv1", "layer3.0.downsample.0"]);
    // The last stream feeds the classifier through GAP + Flatten: one feature per channel.
    let stream4 = group_of(&g, &groups, "layer4.0.downsample.0");
    let fc = g.nodes.iter().position(|n| n.name == "fc").unwrap();
    assert!(stream4.members.contains(&(fc, Role::Consumer { offset: 0, inner: 1 })));
    // Inner block widths are their own groups; the classes and the input are kept whole.
    assert!(group_of(&g, &groups, "layer3.1.conv1").prunable());
    assert!(group_of(&g, &groups, "fc").blocked.as_deref().unwrap().contains("output"));
    // Bottleneck: conv3 and the downsample share the stream; conv1 and conv2 are alone.
    let g = resnet(50, 8);
    let groups = Groups::new(&g, &[]).unwrap();
    let s = group_of(&g, &groups, "layer1.0.downsample.0");
    assert_eq!(names(&g, s, |r| *r == Role::Producer), ["layer1.0.conv3", "layer1.0.downsample.0", "layer1.1.conv3", "layer1.2.conv3"]);
    let bn = names(&g, s, |r| matches!(r, Role::PerChannel { .. }));
    assert!(bn.contains(&"layer1.0.downsample.1".to_string()) && bn.contains(&"layer1.2.bn3".to_string()), "{bn:?}");
    assert_eq!(names(&g, group_of(&g, &groups, "layer2.3.conv2"), |r| *r == Role::Producer), ["layer2.3.conv2"]);
}

#[test]
fn groups_of_unets_follow_concat_skips_and_transpose_convs() {
    let g = unet(UpMode::Transpose);
    let groups = Groups::new(&g, &[]).unwrap();
    // The first level's output is read by the down path and, through the last Concat at
    // offset 0, by the last decoder conv.
    let skip = group_of(&g, &groups, "inc.double_conv.3");
    let readers = names(&g, skip, |r| matches!(r, Role::Consumer { offset: 0, .. }));
    assert_eq!(readers, ["down1.maxpool_conv.1.double_conv.0", "up2.conv.double_conv.0"]);
    // A ConvTranspose's outputs (weight axis 1) land after the skip's 8 channels.
    let up = group_of(&g, &groups, "up2.up");
    let n = g.nodes.iter().position(|n| n.name == "up2.conv.double_conv.0").unwrap();
    assert!(up.members.contains(&(n, Role::Consumer { offset: 8, inner: 1 })), "{:?}", up.members);
    assert!(up.prunable());
    // Bilinear upsampling passes channels through: the deepest level feeds the Concat.
    let g = unet(UpMode::Bilinear);
    let groups = Groups::new(&g, &[]).unwrap();
    let deep = group_of(&g, &groups, "down2.maxpool_conv.1.double_conv.3");
    let n = g.nodes.iter().position(|n| n.name == "up1.conv.double_conv.0").unwrap();
    assert!(deep.members.contains(&(n, Role::Consumer { offset: 16, inner: 1 })), "{:?}", deep.members);
    // The output channel is kept.
    assert!(group_of(&g, &groups, "outc.conv").blocked.is_some());
}

/// conv → depthwise conv → grouped conv → conv → flatten (2×2) → gemm.
fn small_graph() -> Graph {
    let mut g = Graph::default();
    let x = g.add_input("input", vec![1, 3, 8, 8]);
    let w = |shape: Vec<usize>, seed| Tensor::randn(shape.clone(), (2.0 / shape[1..].iter().product::<usize>() as f32).sqrt(), seed);
    let c = |g: &mut Graph, name: &str, x, cin, cout, groups, stride, seed| {
        let mut cv = Conv2d::new(w(vec![cout, cin / groups, 3, 3], seed), stride, 1, groups);
        cv.bias = Some(vec![0.1; cout]);
        g.push(name, Op::Conv(cv), vec![x])
    };
    let a = c(&mut g, "a", x, 3, 8, 1, 1, 1);
    let a = g.push("a.relu", Op::Act(Activation::Relu), vec![a]);
    let dw = c(&mut g, "dw", a, 8, 8, 8, 1, 2);
    let gc = c(&mut g, "gc", dw, 8, 8, 2, 1, 3);
    let b = c(&mut g, "b", gc, 8, 6, 1, 2, 4);
    let b = g.push("b.relu", Op::Act(Activation::Relu), vec![b]);
    let p = g.push("pool", Op::MaxPool(Pool2d { kernel: [2, 2], stride: [2, 2], pads: [0; 4], dilation: [1, 1], ceil_mode: false, count_include_pad: false }), vec![b]);
    let f = g.push("flatten", Op::Flatten { axis: 1 }, vec![p]);
    let l = Linear::new(w(vec![5, 24], 5), Some(vec![0.0; 5]));
    let o = g.push("fc", Op::Linear(l), vec![f]);
    g.outputs.push(o);
    g
}

#[test]
fn depthwise_ties_grouped_blocks_and_gemm_reads_a_block_per_channel() {
    let g = small_graph();
    let groups = Groups::new(&g, &[]).unwrap();
    print!("{}", groups.explain(&g));
    let a = group_of(&g, &groups, "a");
    // The depthwise conv keeps a's channels (per channel); the grouped conv blocks them.
    assert!(names(&g, a, |r| matches!(r, Role::PerChannel { .. })).contains(&"dw".to_string()));
    assert!(a.blocked.as_deref().unwrap().contains("grouped conv 'gc'"), "{:?}", a.blocked);
    // b's 6 channels reach the Gemm as 4 features each (2×2 after the pool).
    let b = group_of(&g, &groups, "b");
    let fc = g.nodes.iter().position(|n| n.name == "fc").unwrap();
    assert!(b.members.contains(&(fc, Role::Consumer { offset: 0, inner: 4 })));
    assert!(b.prunable());
    let x = Tensor::randn(vec![2, 3, 8, 8], 1.0, 9);
    let before = run(&g, &x);
    let p = prune(&g, &PruneOptions { target: Target::Ratio(0.5), ..Default::default() }, &[]).unwrap();
    let fc_w = p.graph.nodes.iter().find_map(|n| match &n.op {
        Op::Linear(l) => Some(l.weight.shape().to_vec()),
        _ => None,
    });
    assert_eq!(fc_w, Some(vec![5, 12]), "3 of b's 6 channels kept, 4 features each");
    assert_eq!(run(&p.graph, &x).shape(), before.shape());
}

#[test]
fn ratio_zero_changes_no_output_bit() {
    for g in [resnet(18, 8), resnet(50, 8), unet(UpMode::Transpose), unet(UpMode::Bilinear), small_graph()] {
        let x = Tensor::randn(g.input_shape(2).unwrap(), 1.0, 5);
        let p = prune(&g, &PruneOptions { target: Target::Ratio(0.0), ..Default::default() }, &[]).unwrap();
        assert_eq!(p.params_after, p.params_before);
        assert_eq!(run(&p.graph, &x), run(&g, &x));
    }
}

#[test]
fn pruned_models_are_smaller_and_consistent() {
    for (g, name) in [(resnet(18, 16), "resnet18"), (resnet(50, 8), "resnet50"), (unet(UpMode::Transpose), "unet"), (unet(UpMode::Bilinear), "unet-bilinear")] {
        let x = Tensor::randn(g.input_shape(1).unwrap(), 1.0, 6);
        for (global, round) in [(false, RoundTo::Multiple(1)), (true, RoundTo::Multiple(4)), (false, RoundTo::Auto)] {
            let opts = PruneOptions { target: Target::Ratio(0.5), global, round_to: round, ..Default::default() };
            let p = prune(&g, &opts, &[]).unwrap();
            println!("{name} global={global} {round:?}: params {} -> {}, MACs {} -> {}", p.params_before, p.params_after, p.macs_before, p.macs_after);
            assert!(p.macs_after < p.macs_before && p.params_after < p.params_before, "{name}: nothing removed");
            let y = run(&p.graph, &x);
            assert_eq!(y.shape(), run(&g, &x).shape());
            assert!(y.data().iter().all(|v| v.is_finite()));
            if let RoundTo::Multiple(m) = round {
                for (k, gr) in p.kept.iter().zip(&Groups::new(&g, &[]).unwrap().groups) {
                    assert!(k.len() == gr.width || k.len() % m == 0, "{name}: {} kept of {}", k.len(), gr.width);
                }
            }
        }
    }
}

/// Channels whose BatchNorm γ is zero output their shift β whatever the input: removing them
/// (BN γ ranks them lowest) with bias folding changes nothing where their consumer sees every
/// pixel (Bottleneck conv2 → 1×1 conv3, the last stream → GAP → Gemm).
#[test]
fn constant_channels_are_removed_without_changing_outputs() {
    let mut g = resnet(50, 8);
    let mut zeroed = 0;
    for n in &mut g.nodes {
        if let Op::BatchNorm(bn) = &mut n.op {
            if n.name.ends_with(".bn2") {
                for c in 0..bn.gamma.len() / 2 {
                    bn.gamma[2 * c] = 0.0;
                    bn.beta[2 * c] = if c % 2 == 0 { 0.7 } else { -0.4 };
                    zeroed += 1;
                }
            }
        }
    }
    let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(2, 3, 32, 32, 20 + i)).collect();
    let x = synthetic_images(3, 3, 32, 32, 30);
    let groups = Groups::new(&g, &[]).unwrap();
    let total: usize = groups.groups.iter().filter(|gr| gr.prunable()).map(|gr| gr.width).sum();
    let opts = PruneOptions {
        target: Target::Ratio(zeroed as f64 / total as f64 + 1e-9),
        global: true,
        importance: Importance::BnGamma,
        recovery: Recovery { bias_fold: true, least_squares: false, bn_recalibration: false },
        ..Default::default()
    };
    let p = prune(&g, &opts, &calib).unwrap();
    assert_eq!(p.widths.iter().zip(&p.kept).map(|(w, k)| w - k.len()).sum::<usize>(), zeroed);
    let (want, got) = (run(&g, &x), run(&p.graph, &x));
    let m = kestrel::compare::compare(&want, &got);
    println!("{zeroed} constant channels removed: rel L2 {:.2e}, {} biases folded", m.rel_l2, p.recovery.biases_folded);
    assert!(m.rel_l2 <= 1e-5, "rel L2 {}", m.rel_l2);
    // Without the fold the shift is lost.
    let p = prune(&g, &PruneOptions { recovery: Recovery::NONE, ..opts }, &calib).unwrap();
    assert!(kestrel::compare::compare(&want, &run(&p.graph, &x)).rel_l2 > 1e-3);
}

/// `--sensitivity`: channels made constant on purpose cost nothing to remove (their reader is
/// a 1×1 conv, where the bias fold is exact), so a ratio of exactly their number removes them
/// and nothing else, outputs unchanged.
#[test]
fn sensitivity_allocation_removes_the_free_channels_first() {
    let mut g = resnet(50, 8);
    let mut zeroed = Vec::new();
    for n in &mut g.nodes {
        if let (Op::BatchNorm(bn), "layer2.0.bn2") = (&mut n.op, n.name.as_str()) {
            for c in (0..bn.gamma.len()).step_by(3) {
                bn.gamma[c] = 0.0;
                bn.beta[c] = 0.3 - 0.2 * c as f32;
                zeroed.push(c);
            }
        }
    }
    let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(4, 3, 32, 32, 60 + i)).collect();
    let x = synthetic_images(3, 3, 32, 32, 70);
    let groups = Groups::new(&g, &[]).unwrap();
    let total: usize = groups.groups.iter().filter(|gr| gr.prunable()).map(|gr| gr.width).sum();
    // Bias folding alone, as in the test above: exact for these channels (a least-squares
    // refit of the reader would add its regularisation's small bias).
    let recovery = Recovery { bias_fold: true, least_squares: false, bn_recalibration: false };
    let opts = PruneOptions { target: Target::Ratio(zeroed.len() as f64 / total as f64 + 1e-9), sensitivity: true, recovery, ..Default::default() };
    let p = prune(&g, &opts, &calib).unwrap();
    let target = groups.groups.iter().position(|gr| gr.members.iter().any(|(n, r)| *r == Role::Producer && g.nodes[*n].name == "layer2.0.conv2")).unwrap();
    let curves = p.sensitivity.as_ref().unwrap();
    for (gi, c) in curves.iter().enumerate() {
        if let Some(c) = c {
            println!("group {gi} (width {}): removed {:?} cost {:?}", p.widths[gi], c.removed, c.cost.iter().map(|v| format!("{v:.2e}")).collect::<Vec<_>>());
            assert!(c.removed[0] == 0 && c.removed.windows(2).all(|w| w[0] < w[1]) && c.cost.iter().all(|v| v.is_finite() && *v >= 0.0));
        }
    }
    let kept: Vec<usize> = (0..p.widths[target]).filter(|c| !zeroed.contains(c)).collect();
    assert_eq!(p.kept[target], kept, "the constant channels of layer2.0.bn2 go first");
    for (gi, k) in p.kept.iter().enumerate() {
        assert!(gi == target || k.len() == p.widths[gi], "group {gi} lost channels");
    }
    let m = kestrel::compare::compare(&run(&g, &x), &run(&p.graph, &x));
    println!("{} constant channels removed by sensitivity: rel L2 {:.2e}", zeroed.len(), m.rel_l2);
    assert!(m.rel_l2 <= 1e-5, "rel L2 {}", m.rel_l2);
    // A larger ratio takes more, from the groups whose curves rise least.
    let first = p.sensitivity.clone().map(std::sync::Arc::new);
    let p = prune(&g, &PruneOptions { target: Target::Ratio(0.25), ..opts.clone() }, &calib).unwrap();
    let gone: usize = p.widths.iter().zip(&p.kept).map(|(w, k)| w - k.len()).sum();
    assert_eq!(gone, (0.25 * total as f64).floor() as usize);
    // Curves handed back (as a sweep does) give the same model without measuring again.
    let reused = prune(&g, &PruneOptions { target: Target::Ratio(0.25), curves: first, ..opts.clone() }, &calib).unwrap();
    assert_eq!(reused.kept, p.kept);
    // A MAC target weighs the costs against the MACs each group's channels save, and is met.
    let p = prune(&g, &PruneOptions { target: Target::Macs(0.6), ..opts }, &calib).unwrap();
    let f = p.macs_after as f64 / p.macs_before as f64;
    println!("MAC target 0.6 by sensitivity: {f:.3}");
    assert!(f <= 0.6 && f > 0.45, "{f}");
    assert!(p.sensitivity.as_ref().unwrap().iter().flatten().all(|c| c.saved_macs.windows(2).all(|w| w[0] < w[1])));
}

#[test]
fn every_importance_and_recovery_runs() {
    let g = resnet(18, 8);
    let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(4, 3, 32, 32, 40 + i)).collect();
    let x = synthetic_images(4, 3, 32, 32, 50);
    let want = run(&g, &x);
    let mut errs = Vec::new();
    for imp in [Importance::L1(Reduce::Mean), Importance::L1(Reduce::Max), Importance::L2(Reduce::Max), Importance::BnGamma, Importance::Activation, Importance::Reconstruction, Importance::Random(1)] {
        for rec in [Recovery::NONE, Recovery::ALL] {
            let p = prune(&g, &PruneOptions { target: Target::Ratio(0.3), importance: imp, recovery: rec, ..Default::default() }, &calib).unwrap();
            let m = kestrel::compare::compare(&want, &run(&p.graph, &x));
            println!("{imp:?} recovery {}: rel L2 {:.3} (refitted {}, BN {})", rec.any(), m.rel_l2, p.recovery.layers_refitted, p.recovery.batchnorms_reestimated);
            if rec.any() {
                assert!(p.recovery.layers_refitted > 0 && p.recovery.batchnorms_reestimated > 0);
            }
            errs.push((imp, rec.any(), m.rel_l2));
        }
    }
    // How much recovery helps is measured on the trained models (BENCHMARKS.md): a seeded
    // narrow network's logits are too sensitive to mean it.
    assert!(errs.iter().all(|e| e.2.is_finite()));
}

#[test]
fn targets_are_met_or_refused() {
    let g = resnet(18, 16);
    let p = prune(&g, &PruneOptions { target: Target::Macs(0.5), global: true, ..Default::default() }, &[]).unwrap();
    let f = p.macs_after as f64 / p.macs_before as f64;
    println!("MAC target 0.5: {f:.3} at ratio {:.3}", p.ratio_used);
    assert!(f <= 0.5 && f > 0.4, "{f}");
    let p = prune(&g, &PruneOptions { target: Target::Params(0.6), ..Default::default() }, &[]).unwrap();
    assert!(p.params_after as f64 <= 0.6 * p.params_before as f64);
    // Bad options: one clear error each.
    let bad = [
        PruneOptions { target: Target::Ratio(1.0), ..Default::default() },
        PruneOptions { target: Target::Ratio(-0.1), ..Default::default() },
        PruneOptions { target: Target::Macs(0.01), global: true, max_layer_ratio: 0.5, ..Default::default() },
        PruneOptions { exclude: vec!["nonexistent*".into()], ..Default::default() },
        PruneOptions { importance: Importance::Activation, ..Default::default() },
        PruneOptions { target: Target::Ratio(0.3), sensitivity: true, ..Default::default() },
        PruneOptions { target: Target::Ratio(0.3), sensitivity: true, global: true, ..Default::default() },
    ];
    for o in bad {
        let e = prune(&g, &o, &[]).unwrap_err().to_string();
        println!("{e}");
        assert!(!e.contains('\n') && (e.contains("--") || e.contains("target")), "{e}");
    }
    // Excluding a layer keeps every group it touches whole.
    let p = prune(&g, &PruneOptions { target: Target::Ratio(0.5), exclude: vec!["layer1.*".into()], ..Default::default() }, &[]).unwrap();
    let l = p.layers.iter().find(|l| l.node == "layer1.0.conv1").unwrap();
    assert_eq!((l.in_after, l.out_after), (l.in_before, l.out_before));
}


/// Pruned models export to ONNX that ONNX Runtime runs at parity with kestrel: our own ResNet
/// and UNets (with recovery) and the torch-style fixtures (Reshape-as-flatten, Resize by
/// scales and by sizes, ConvTranspose).
#[cfg(feature = "ort")]
#[test]
fn pruned_models_run_in_ort_at_parity() {
    use kestrel::ort_ref::OrtModel;
    if !common::ort_ready("pruned_models_run_in_ort_at_parity") {
        return;
    }
    let mut models: Vec<(String, Graph)> = vec![("resnet18".into(), resnet(18, 16)), ("resnet50".into(), resnet(50, 8)), ("unet".into(), unet(UpMode::Transpose)), ("unet-bilinear".into(), unet(UpMode::Bilinear))];
    if let Some(dir) = common::fixture("torch_like", "pruned_models_run_in_ort_at_parity") {
        for (p, _, _, g) in common::onnx_fixtures(&dir) {
            models.push((p.display().to_string(), g));
        }
        assert_eq!(models.len(), 10);
    }
    for (name, g) in models {
        let s = g.input_shape(1).unwrap();
        let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(4, s[1], s[2], s[3], 60 + i)).collect();
        let p = prune(&g, &PruneOptions { target: Target::Ratio(0.3), round_to: RoundTo::Multiple(2), ..Default::default() }, &calib).unwrap();
        assert!(p.params_after < p.params_before);
        let bytes = kestrel::onnx::export::to_bytes(&p.graph).unwrap();
        let x = Tensor::randn(g.input_shape(4).unwrap(), 1.0, 70);
        let theirs = OrtModel::from_bytes(&bytes, 2).unwrap().run(&x).unwrap().remove(0).1;
        let m = kestrel::compare::compare(&theirs, &run(&p.graph, &x));
        println!("{name}: pruned {} -> {} params, ORT rel L2 {:.2e}", p.params_before, p.params_after, m.rel_l2);
        assert!(m.rel_l2 <= 1e-4, "{name}: rel L2 {}", m.rel_l2);
    }
}

/// The least-squares solve: a random SPD system solved to f64 precision, and a non-SPD one
/// refused.
#[test]
fn cholesky_solves_spd_systems() {
    use kestrel::prune::recover::cholesky_solve;
    let n = 37;
    let mut r = kestrel::rng::Rng::new(5);
    let a0: Vec<f64> = (0..n * n).map(|_| f64::from(r.normal())).collect();
    // A = A0ᵀA0 + I is symmetric positive definite.
    let mut a = vec![0.0; n * n];
    for i in 0..n {
        for j in 0..n {
            a[i * n + j] = (0..n).map(|k| a0[k * n + i] * a0[k * n + j]).sum::<f64>() + if i == j { 1.0 } else { 0.0 };
        }
    }
    let x: Vec<f64> = (0..n * 2).map(|_| f64::from(r.normal())).collect();
    let b: Vec<f64> = (0..n).flat_map(|i| (0..2).map(move |c| (i, c))).map(|(i, c)| (0..n).map(|k| a[i * n + k] * x[k * 2 + c]).sum()).collect();
    let got = cholesky_solve(&a, n, &b, 2).unwrap();
    let err = got.iter().zip(&x).map(|(g, w)| (g - w).abs()).fold(0.0, f64::max);
    assert!(err < 1e-9, "max error {err}");
    assert!(cholesky_solve(&[1.0, 2.0, 2.0, 1.0], 2, &[1.0, 1.0], 1).is_none());
}

/// The measured report (what `kestrel prune` prints without `--no-measure`): every pruned
/// conv has f32 and INT8 times before and after, from profiled runs of the two models
/// alternating; whole-model latencies and the MAC counts agree with the pruned graph.
#[test]
fn measured_report_times_every_layer_before_and_after() {
    let g = resnet(18, 16);
    let opts = PruneOptions { target: Target::Ratio(0.5), round_to: RoundTo::Multiple(8), ..Default::default() };
    let pruned = prune(&g, &opts, &[]).unwrap();
    let macs = pruned.macs_after;
    let r = kestrel::prune_report::report("resnet18", &g, pruned, &[], None, 2, 3).unwrap();
    let convs: Vec<_> = r.layers.iter().filter(|l| l.change.op == "Conv").collect();
    assert!(convs.len() >= 17, "{} conv rows", convs.len());
    for l in &convs {
        for (what, (b, a)) in [("f32", l.f32_ms), ("INT8", l.int8_ms)] {
            let (b, a) = (b.unwrap_or_else(|| panic!("{}: no {what} time before", l.change.node)), a.unwrap_or_else(|| panic!("{}: no {what} time after", l.change.node)));
            assert!(b > 0.0 && a > 0.0 && b.is_finite() && a.is_finite(), "{}: {what} {b} → {a} ms", l.change.node);
        }
    }
    assert!(r.latency_before.kestrel_f32 > 0.0 && r.latency_after.kestrel_f32 > 0.0 && r.latency_after.kestrel_int8.is_some_and(|t| t > 0.0));
    // The run pairs' ratios: quartiles in order, positive and finite, for both kestrel rows.
    for (what, q) in [("f32", Some(r.ratio_spread.kestrel_f32)), ("INT8", r.ratio_spread.kestrel_int8)] {
        let q = q.unwrap_or_else(|| panic!("no {what} ratio quartiles"));
        assert!(q.p25 > 0.0 && q.p25 <= q.p75 && q.p75.is_finite(), "{what}: {q:?}");
    }
    // ONNX Runtime's column, from its profiler: every conv and the Gemm, before and after.
    #[cfg(feature = "ort")]
    if common::ort_ready("measured_report_times_every_layer_before_and_after (ORT per layer)") {
        for l in r.layers.iter().filter(|l| matches!(l.change.op, "Conv" | "Gemm")) {
            let (b, a) = l.ort_ms;
            assert!(b.is_some_and(|b| b > 0.0 && b.is_finite()) && a.is_some_and(|a| a > 0.0 && a.is_finite()), "{}: ORT {b:?} → {a:?} ms", l.change.node);
        }
    }
    assert_eq!(r.pruned.macs_after, macs);
    assert!(kestrel::prune_report::markdown(&r).contains("| layer1.0.conv1 | Conv |"));
}

/// ONNX Runtime's profile names read back to the layers they fused: a conv's BatchNorm and
/// activation, ORT's `_nchwc` suffix, a residual Add and its ReLU to the block's last conv
/// (not to the conv that made the residual stream); pools and ORT's own reorders to none;
/// with a torch export's value names too.
#[test]
fn ort_profile_names_map_to_the_layers_they_fused() {
    use kestrel::ort_ref::profile::{layer_owners, layer_times, owner_of};
    let check = |g: &Graph, cases: &[(&str, Option<&str>)]| {
        let owners = layer_owners(g);
        for &(name, layer) in cases {
            assert_eq!(owner_of(&owners, name), layer, "{name}");
        }
    };
    let g = resnet(18, 16);
    check(
        &g,
        &[
            ("conv1", Some("conv1")),
            ("relu_nchwc", Some("conv1")),
            ("layer1.0.relu1_nchwc", Some("layer1.0.conv1")),
            ("layer1.0.bn2", Some("layer1.0.conv2")),
            ("layer1.0.add", Some("layer1.0.conv2")),
            ("layer1.0.relu_nchwc", Some("layer1.0.conv2")),
            ("layer2.0.downsample.1_nchwc", Some("layer2.0.downsample.0")),
            ("fc", Some("fc")),
            ("maxpool", None),
            ("ReorderInput", None),
            ("avgpool_nchwc", None),
        ],
    );
    let times = vec![("layer1.0.relu1_nchwc".to_string(), 1.0), ("maxpool".to_string(), 0.5), ("layer1.0.relu1_nchwc".to_string(), 3.0), ("layer1.0.bn2".to_string(), 2.0), ("layer1.0.relu_nchwc".to_string(), 0.25)];
    let (layers, others) = layer_times(&g, times, 1, |t| t.iter().sum::<f64>() / t.len() as f64);
    assert_eq!((layers["layer1.0.conv1"], layers["layer1.0.conv2"]), (3.0, 2.25));
    assert_eq!(others, vec![("maxpool".to_string(), 0.5)]);
    // A torch export's names: ORT names its NCHWc nodes after the chain's output value.
    let mut g = g;
    for n in &g.nodes {
        g.values[n.output] = format!("/{}/Op_output_0", n.name);
    }
    check(
        &g,
        &[
            ("/relu/Op_output_0_nchwc", Some("conv1")),
            ("/layer1.0.relu1/Op_output_0_nchwc", Some("layer1.0.conv1")),
            ("/layer1.0.conv2/Op_output_0_nchwc", Some("layer1.0.conv2")),
            ("layer1.0.add", Some("layer1.0.conv2")),
            ("/maxpool/Op_output_0", None),
            ("ReorderOutput_token_48", None),
        ],
    );
}

/// `RoundTo::Auto` for a model pruned for INT8 rounds each group to the step of the INT8
/// kernel this CPU runs: 64 channels for groups of 64 or more on AMX tiles, 8 elsewhere (and 8
/// for an f32 model everywhere on AVX-512).
#[test]
fn auto_rounding_follows_the_kernels_pruned_for() {
    let g = resnet(18, 64);
    let groups = Groups::new(&g, &[]).unwrap();
    for int8 in [false, true] {
        let steps = kestrel::prune::width::Steps::detect(int8).unwrap();
        println!("pruned for {}: {steps:?}", if int8 { "int8" } else { "f32" });
        let p = prune(&g, &PruneOptions { target: Target::Ratio(0.4), round_to: RoundTo::Auto, for_int8: int8, ..Default::default() }, &[]).unwrap();
        assert!(p.macs_after < p.macs_before);
        assert_eq!(p.rounding, RoundTo::Auto.describe(steps));
        for (k, gr) in p.kept.iter().zip(&groups.groups) {
            let m = kestrel::prune::width::auto_multiple(steps, gr.width);
            assert!(k.len() == gr.width || k.len() % m == 0, "{} kept of {} ({steps:?})", k.len(), gr.width);
            if steps.amx_int8 && gr.width >= 64 {
                assert_eq!(m, 64);
            }
        }
    }
}
