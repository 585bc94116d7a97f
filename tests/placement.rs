//! The plans kestrel takes while its two workers share no cache (`cpu::placement`): a batch
//! split between the workers, each running its samples on its own, and workers that evict
//! the output lines they are about to write (f32 convs split by channels or 1×1, INT8 convs,
//! bf16 convs, Winograd outputs, the max pool), and the phase planes of f32 and bf16 convs of
//! more than one tap and bf16 Winograd's shared transform before they rebuild them.
//! They change where memory is touched, never a value: every output here is bit-identical to
//! the plan of cores that share a cache. Its own test binary, because `placement::force`
//! holds for the whole process (and its tests take turns: [`FORCE`]).

use kestrel::cpu::placement;
use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::quant::{quantize, Mode, QuantizeOptions};
use kestrel::{Options, Session, Tensor};

/// Held by each test while it forces the placement.
static FORCE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn bits(outs: &[Tensor]) -> Vec<Vec<u32>> {
    outs.iter().map(|t| t.data().iter().map(|v| v.to_bits()).collect()).collect()
}

/// Runs `x` once together, then `calls` times apart, each apart call bit for bit the
/// together one (`what` names the case), and gives the placement back to the probe.
fn same_bits_apart(session: &Session, x: &Tensor, calls: usize, what: &str) {
    placement::force(Some(false));
    let near = bits(&session.run(std::slice::from_ref(x)).unwrap());
    placement::force(Some(true));
    for call in 0..calls {
        assert_eq!(bits(&session.run(std::slice::from_ref(x)).unwrap()), near, "{what}: call {call} apart");
    }
    placement::force(None);
}

#[test]
fn far_plans_give_the_same_bits_as_near_ones() {
    let _turn = FORCE.lock().unwrap_or_else(|e| e.into_inner());
    // 256² ResNet-18 maps at width 32: a batch of 8 runs in slices together (more than
    // BATCH_BYTES of activations), four images a worker apart; its 16² and 8² stages split f32 convs by
    // output channels, its 1×1 downsamples run in place.
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 32, image_size: 256, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 21 }).unwrap();
    let s1 = g.input_shape(1).unwrap();
    let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(1, s1[1], s1[2], s1[3], 70 + i)).collect();
    let q = quantize(&g, &QuantizeOptions { mode: Mode::Static, ..Default::default() }, &calib, &mut |_, _| {}).unwrap();
    let n = 8;
    for (name, graph) in [("f32", g.clone()), ("int8-static", q)] {
        let session = Session::new(graph.clone(), &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
        let shape = graph.input_shape(n).unwrap();
        let xb = Tensor::randn(shape.clone(), 1.0, 31);
        let x1 = Tensor::randn(s1.clone(), 1.0, 32);
        placement::force(Some(false));
        assert!(!placement::far(2) && !placement::split_batches(2));
        let near_split = session.batch_split(std::slice::from_ref(&shape)).unwrap();
        let near_estimate = session.memory_estimate(&shape).unwrap();
        assert_eq!(session.per_worker(std::slice::from_ref(&shape)), None, "{name}: together, both workers run every layer");
        let (near_b, near_1) = (bits(&session.run(std::slice::from_ref(&xb)).unwrap()), bits(&session.run(std::slice::from_ref(&x1)).unwrap()));
        placement::force(Some(true));
        assert!(placement::far(2) && placement::far(4) && placement::split_batches(2));
        let far_estimate = session.memory_estimate(&shape).unwrap();
        assert_eq!(session.per_worker(std::slice::from_ref(&shape)), Some(n / 2), "{name}: apart, each worker runs half the batch");
        assert_eq!(session.per_worker(std::slice::from_ref(&s1)), None, "{name}: one image is not split");
        for round in 0..2 {
            assert_eq!(bits(&session.run(std::slice::from_ref(&xb)).unwrap()), near_b, "{name}: batch of {n} apart, round {round}");
            assert_eq!(bits(&session.run(std::slice::from_ref(&x1)).unwrap()), near_1, "{name}: one image apart, round {round}");
        }
        // Three images apart: one each, the third on both workers.
        let x3 = Tensor::randn(graph.input_shape(3).unwrap(), 1.0, 33);
        let far_3 = bits(&session.run(std::slice::from_ref(&x3)).unwrap());
        placement::force(Some(false));
        assert_eq!(bits(&session.run(std::slice::from_ref(&x3)).unwrap()), far_3, "{name}: three images");
        placement::force(Some(true));
        if name == "f32" {
            assert!(near_split.is_some(), "f32: a batch of {n} runs in slices together");
            assert!(far_estimate > near_estimate, "f32: two workers' sets {far_estimate} B, one {near_estimate} B");
        }
        // Back to the probe: the estimate covers both plans, whatever the placement.
        placement::force(None);
        assert_eq!(session.memory_estimate(&shape).unwrap(), near_estimate.max(far_estimate), "{name}");
        assert_eq!(bits(&session.run(std::slice::from_ref(&xb)).unwrap()), near_b, "{name}: batch of {n}, placement probed");
    }
    // A call too small to wake the other worker (under CALL_PAR_MIN_MACS) is not split apart
    // either: it runs on the calling thread.
    let small = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 8, image_size: 32, ..Default::default() });
    let small = small.build(&mut SeededWeights { seed: 3 }).unwrap();
    let session = Session::new(small.clone(), &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
    placement::force(Some(true));
    assert_eq!(session.per_worker(&[small.input_shape(2).unwrap()]), None);
    assert_eq!(session.per_worker(&[small.input_shape(256).unwrap()]), Some(128));
    placement::force(None);
}

/// A small call apart (under `Apart::MAX_MACS` multiply-adds, over `CALL_PAR_MIN_MACS`) runs on
/// one worker or two by their times: the same bits either way, call after call, as together.
#[test]
fn small_calls_apart_give_the_same_bits_on_one_worker_or_two() {
    let _turn = FORCE.lock().unwrap_or_else(|e| e.into_inner());
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, base_width: 16, image_size: 64, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 5 }).unwrap();
    let q = quantize(&g, &QuantizeOptions { mode: Mode::Static, ..Default::default() }, &[synthetic_images(1, 3, 64, 64, 9)], &mut |_, _| {}).unwrap();
    for (name, graph) in [("f32", g), ("int8-static", q)] {
        let session = Session::new(graph.clone(), &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
        let x = Tensor::randn(graph.input_shape(1).unwrap(), 1.0, 41);
        same_bits_apart(&session, &x, 40, name);
    }
}

/// bf16 sessions apart: the `vdpbf16ps` convs (pointwise and over planes, in place or not, in
/// channel lanes), bf16 and f32 Winograd and the max pool evict their output lines first (the
/// stem's and the stride-2 3×3 convs' planes and Winograd's shared transform too), and
/// the pointwise parts are claimed from both ends together or apart: the same bits as
/// together, on one image and on a batch of three.
#[test]
fn bf16_plans_apart_give_the_same_bits_as_together() {
    if kestrel::cpu::bgemm::Bf16Token::new().is_none() {
        println!("skipped: no AVX512_BF16 on this CPU");
        return;
    }
    let _turn = FORCE.lock().unwrap_or_else(|e| e.into_inner());
    // A half-width ResNet-50 at 224²: 1×1 convs at 56² and 28² split by pixels, 3×3 ones by
    // Winograd at 28² and 14² (128 channels), the 7² maps' wide convs in channel lanes.
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 50, num_classes: 10, base_width: 32, image_size: 224, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 8 }).unwrap();
    let session = Session::new(g.clone(), &Options { threads: 2, optimize: true, bf16: true, ..Default::default() }).unwrap();
    if kestrel::cpu::amx::AmxToken::new().is_none() {
        let labels = session.kernel_labels(&[g.input_shape(1).unwrap()]).unwrap();
        for kernel in ["bf16 conv avx512bf16 8x48 planes", "bf16 conv Winograd F(2x2,3x3) avx512bf16", "bf16 conv avx512bf16 6x64 channel lanes"] {
            assert!(labels.iter().any(|l| l.starts_with(kernel)), "no '{kernel}' in {labels:?}");
        }
    }
    for n in [1, 3] {
        let x = Tensor::randn(g.input_shape(n).unwrap(), 1.0, 50 + n as u64);
        same_bits_apart(&session, &x, 3, &format!("batch {n}"));
    }
}
