//! Quantization: ONNX rounding and saturation, the INT8 conv against its direct twin on every
//! ISA, and whole models against f32.

mod common;

use common::data;
use kestrel::cpu::kernels::Kernels;
use kestrel::cpu::qconv::{self, QIn, QOut, Ranges};
use kestrel::cpu::reference;
use kestrel::graph::shape::window_out;
use kestrel::graph::*;
use kestrel::models::init::synthetic_images;
use kestrel::models::*;
use kestrel::qparams::{quantize_symmetric, QParams, WeightBits};
use kestrel::quant::{quantize, Method, Mode, QuantizeOptions};
use kestrel::{Options, Session, Tensor};
use proptest::prelude::*;

#[test]
fn rounding_is_half_to_even_then_saturate() {
    let q = QParams { scale: 1.0, zero_point: 0 };
    assert_eq!([0.5, 1.5, 2.5, 3.5, 254.5, 255.5, 300.0, -3.0].map(|v| q.quantize(v)), [0, 2, 2, 4, 254, 255, 255, 0]);
    let q = QParams { scale: 0.5, zero_point: 128 };
    assert_eq!([0.25, 0.75, -0.25, -0.75, -64.0, -64.5, 63.5, 64.0].map(|v| q.quantize(v)), [128, 130, 128, 126, 0, 0, 255, 255]);
    assert_eq!(q.quantize(f32::NAN), 0);
    let (s, w) = quantize_symmetric(&[1.0, -1.0, 0.5 / 127.0, 1.5 / 127.0, -2.5 / 127.0], WeightBits::Eight);
    assert_eq!(s, 1.0 / 127.0);
    assert_eq!(w, vec![127, -127, 0, 2, -2]);
    let (s, w) = quantize_symmetric(&[-2.0, 1.0, 0.5 / 32.0, 1.5 / 32.0, -2.5 / 32.0], WeightBits::Seven);
    assert_eq!(s, 2.0 / 64.0);
    assert_eq!(w, vec![-64, 32, 0, 2, -2]);
}

#[test]
fn ranges_include_zero_and_round_trip_within_half_a_step() {
    for &(lo, hi) in &[(-1.0f32, 3.0f32), (0.5, 7.0), (-5.0, -1.0), (0.0, 0.0), (-1e-3, 1e-3)] {
        let q = QParams::from_range(lo, hi);
        assert_eq!(q.dequantize(q.quantize(0.0)), 0.0, "zero not exact for [{lo}, {hi}]");
        for i in 0..=100 {
            let x = lo.min(0.0) + (hi.max(0.0) - lo.min(0.0)) * i as f32 / 100.0;
            assert!((q.fake(x) - x).abs() <= q.scale / 2.0 * 1.0001 + 1e-7, "[{lo}, {hi}] x={x}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]
    #[test]
    fn quantize_matches_onnx_formula(x in -1e6f32..1e6, scale in 1e-4f32..10.0, zp in any::<u8>()) {
        let q = QParams { scale, zero_point: zp };
        let want = ((x / scale).round_ties_even() + f32::from(zp)).clamp(0.0, 255.0) as u8;
        prop_assert_eq!(q.quantize(x), want);
        let tie = (x.round() + 0.5) * scale;
        let want = ((tie / scale).round_ties_even() + f32::from(zp)).clamp(0.0, 255.0) as u8;
        prop_assert_eq!(q.quantize(tie), want);
    }

    #[test]
    fn quantize_dequantize_round_trip(lo in -100.0f32..0.0, span in 0.01f32..200.0, t in 0.0f32..1.0) {
        let q = QParams::from_range(lo, lo + span);
        let x = lo + span * t;
        prop_assert!((q.fake(x) - x).abs() <= q.scale * 0.5001 + 1e-6);
        prop_assert_eq!(q.quantize(q.fake(x)), q.quantize(x));
    }
}

fn check_qconv(n: usize, cin: usize, cout: usize, hw: [usize; 2], k: usize, stride: usize, pad: usize, groups: usize, input: ActQuant, residual: bool, seed: u64) {
    let w = Tensor::new(vec![cout, cin / groups, k, k], data(cout * cin / groups * k * k, seed)).unwrap();
    let mut c = Conv2d::new(w, stride, pad, groups);
    c.bias = Some(data(cout, seed + 1));
    c.act = Some(Activation::Relu);
    c.residual = residual;
    check_qconv_with(c, n, cin, hw, input, seed);
}

/// The session's kernels and, on an AMX CPU, the same with AMX tiles taking every layer
/// (sessions run narrow layers on VNNI: `qgemm::AMX_MIN_ROWS`).
fn kernel_sets() -> Vec<Kernels> {
    let kernels = Kernels::select().unwrap();
    let mut sets = vec![kernels];
    if matches!(kernels.qgemm, kestrel::cpu::qgemm::Kernel::Amx(_)) {
        sets.push(Kernels { qgemm: kernels.qgemm.tiles_everywhere(), ..kernels });
    }
    sets
}

/// Any conv geometry (strides, pads and dilations per axis) against the twin, on each of
/// [`kernel_sets`].
fn check_qconv_with(c: Conv2d, n: usize, cin: usize, hw: [usize; 2], input: ActQuant, seed: u64) {
    for kernels in kernel_sets() {
        check_qconv_on(&kernels, c.clone(), n, cin, hw, input, seed);
    }
}

fn check_qconv_on(kernels: &Kernels, c: Conv2d, n: usize, cin: usize, hw: [usize; 2], input: ActQuant, seed: u64) {
    let [kh, kw] = c.kernel();
    let cout = c.out_channels();
    let oh = window_out(hw[0], kh, c.stride[0], (c.pads[0], c.pads[2]), c.dilation[0], false);
    let ow = window_out(hw[1], kw, c.stride[1], (c.pads[1], c.pads[3]), c.dilation[1], false);
    let residual = c.residual;
    // Half the cases with 7-bit weights: AVX2 runs those on its vpmaddubsw kernel.
    let wbits = if seed % 2 == 0 { WeightBits::Seven } else { WeightBits::Eight };
    let qc = c.quantized(input, true, wbits).unwrap();
    let q = qc.precision.int8().unwrap();
    let packed = qconv::pack_conv(kernels, &qc, q).unwrap();
    let (Some(oh), Some(ow)) = (oh, ow) else { return };
    let (xs, os) = ([n, cin, hw[0], hw[1]], [n, cout, oh, ow]);
    let x: Vec<f32> = data(xs.iter().product(), seed + 2).iter().map(|v| v * 3.0 + 0.5).collect();
    let mut r = data(os.iter().product(), seed + 3);
    // Non-finite and huge residuals: the epilogues must saturate them exactly as the twin.
    let len = r.len();
    for (i, v) in [(0, f32::NAN), (len / 2, f32::INFINITY), (len - 1, f32::NEG_INFINITY), (len / 3, 3e38), (len / 5, -3e38)] {
        if len > 8 {
            r[i] = v;
        }
    }
    // A residual as u8 codes (an INT8 producer's output): the twin adds their dequantization.
    let rp = QParams { scale: 0.021, zero_point: (seed * 31 % 256) as u8 };
    let r_codes: Vec<u8> = r.iter().map(|&v| rp.quantize(v)).collect();
    let r_deq: Vec<f32> = r_codes.iter().map(|&c| rp.dequantize(c)).collect();
    let cases: Vec<(Option<qconv::Residual>, Option<&[f32]>)> = if residual {
        vec![(Some(qconv::Residual::F32(&r)), Some(&r)), (Some(qconv::Residual::U8(&r_codes, rp)), Some(&r_deq))]
    } else {
        vec![(None, None)]
    };
    let c = &qc;
    let what = format!("qconv n{n} cin{cin} cout{cout} hw{hw:?} k{:?} s{:?} p{:?} d{:?} g{} {input:?} res{residual} {}-bit {}", c.kernel(), c.stride, c.pads, c.dilation, c.groups, wbits.bits(), kernels.qgemm.path(packed[0].packing()));
    let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
    let run = |x: QIn, res, out: QOut, ranges: Ranges| qconv::qconv2d(kernels, &qc, q, &packed, x, xs, res, out, os, ranges, &mut Default::default(), 2);
    for (res, res_ref) in cases {
        let what = format!("{what} residual {:?}", res.map(|r| matches!(r, qconv::Residual::U8(..))));
        let mut want = vec![f32::NAN; os.iter().product()];
        reference::qconv2d_ref(&qc, q, &x, xs, res_ref, &mut want, os);
        let mut got = vec![f32::NAN; want.len()];
        // The f32 output's range, recorded for a dynamic reader, is the output's own.
        let recorded = run(QIn::F32(&x), res, QOut::F32(&mut got), Ranges { input: None, record_output: true });
        assert_eq!(bits(&got), bits(&want), "{what}");
        let finite = want.iter().filter(|v| !v.is_nan()).fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        assert_eq!(recorded, Some(finite), "{what}: recorded range");
        // u8 codes for the next INT8 layer (the requantizing epilogue): the twin's floats quantized.
        let oq = QParams { scale: 0.037, zero_point: (seed * 59 % 256) as u8 };
        let mut codes = vec![0u8; want.len()];
        assert_eq!(run(QIn::F32(&x), res, QOut::U8(&mut codes, oq), Ranges { input: None, record_output: true }), None, "{what}: a u8 output records no range");
        let want8: Vec<u8> = want.iter().map(|&v| oq.quantize(v)).collect();
        assert_eq!(codes, want8, "{what} u8 out {oq:?}");
        // The u8 residual already in the u8 output buffer (the executor's in-place residual):
        // the same codes.
        if let Some(qconv::Residual::U8(rc, rp)) = res {
            let mut onto = rc.to_vec();
            run(QIn::F32(&x), Some(qconv::Residual::Output(rp)), QOut::U8(&mut onto, oq), Ranges::default());
            assert_eq!(onto, want8, "{what}: u8 residual in the output buffer");
        }
        match q.input {
            // Input codes from the previous INT8 layer: the same as quantizing here.
            ActQuant::Static(pa) => {
                let xq: Vec<u8> = x.iter().map(|&v| pa.quantize(v)).collect();
                let mut got_u8 = vec![f32::NAN; want.len()];
                run(QIn::U8(&xq), res, QOut::F32(&mut got_u8), Ranges::default());
                assert_eq!(bits(&got_u8), bits(&want), "{what}: u8 input");
            }
            // The input's range handed over by its producer: the same as measuring it.
            ActQuant::Dynamic => {
                let xr = x.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
                let mut got_r = vec![f32::NAN; want.len()];
                run(QIn::F32(&x), res, QOut::F32(&mut got_r), Ranges { input: Some(xr), record_output: false });
                assert_eq!(bits(&got_r), bits(&want), "{what}: handed range");
            }
        }
    }
}

#[test]
fn qconv_matches_its_twin_exactly() {
    println!("qconv ISA: {}", Kernels::select().unwrap().isa.name());
    let statics = [QParams { scale: 0.02, zero_point: 0 }, QParams { scale: 0.03, zero_point: 1 }, QParams { scale: 0.05, zero_point: 127 }, QParams { scale: 0.04, zero_point: 128 }, QParams { scale: 0.01, zero_point: 255 }];
    let mut seed = 0;
    for &hw in &[1usize, 3, 7, 15, 17] {
        for &(k, pad) in &[(1, 0), (3, 1), (7, 3)] {
            for &stride in &[1, 2] {
                for (i, p) in statics.iter().enumerate() {
                    seed += 1;
                    let input = if i == 0 { ActQuant::Dynamic } else { ActQuant::Static(*p) };
                    check_qconv(1 + seed as usize % 2, 5, 7, [hw, hw + 2], k, stride, pad, 1, input, seed % 3 == 0, seed);
                }
            }
        }
    }
    check_qconv(1, 8, 12, [9, 9], 3, 1, 1, 4, ActQuant::Dynamic, true, 99);
    check_qconv(1, 65, 63, [40, 41], 3, 1, 1, 1, ActQuant::Dynamic, false, 98);
    check_qconv(1, 3, 16, [65, 67], 7, 2, 3, 1, ActQuant::Dynamic, false, 97);
    // Tasks of at least `qconv::TILES_MIN_BLOCKS` pixel blocks with u8 codes out: AMX stores
    // its sums tile by tile for the requantizing pass. A 1×1 conv (one run of pixels from a
    // block's start per task), and a 3×3 conv whose rows of virtual pixels start inside blocks,
    // 40 channels (part of a 16-row group; on AMX with tiles everywhere).
    check_qconv(1, 64, 72, [48, 48], 1, 1, 0, 1, ActQuant::Static(statics[1]), true, 74);
    check_qconv(2, 8, 40, [30, 50], 3, 1, 1, 1, ActQuant::Dynamic, true, 73);
    // K = 2304 over 105 pixel blocks: several panel-sized tasks per worker.
    check_qconv(1, 256, 16, [40, 40], 3, 1, 1, 1, ActQuant::Static(statics[2]), true, 90);
    // Few pixel blocks, many channels: the workers split the output channels instead.
    check_qconv(1, 16, 72, [5, 5], 3, 1, 1, 1, ActQuant::Static(statics[3]), true, 96);
    check_qconv(1, 24, 40, [3, 3], 1, 1, 0, 1, ActQuant::Dynamic, false, 95);
    // A 14² map (14 blocks of virtual pixels) split by channels too, 16 + 24 of 40.
    check_qconv(1, 24, 40, [14, 14], 3, 1, 1, 1, ActQuant::Static(statics[1]), true, 87);
    check_qconv(1, 24, 64, [7, 7], 1, 2, 0, 1, ActQuant::Static(statics[2]), false, 94);
    // Maps whose last block holds at most 4 pixels: those run as GEMV columns on a kernel with
    // a GEMV form (VNNI), from the packed panel (1×1 at 7², 14²; a 1×1 stride 2 to 7²) or the
    // quad planes (a 3×3 at 5²: 33 virtual pixels), over channel-split tasks and batches; a
    // 2×2 map has no GEMM block at all.
    check_qconv(2, 64, 72, [7, 7], 1, 1, 0, 1, ActQuant::Static(statics[1]), true, 86);
    check_qconv(1, 40, 48, [14, 14], 1, 1, 0, 1, ActQuant::Dynamic, true, 85);
    check_qconv(2, 32, 40, [14, 13], 1, 2, 0, 1, ActQuant::Static(statics[4]), false, 84);
    check_qconv(3, 32, 24, [5, 5], 3, 1, 1, 1, ActQuant::Static(statics[3]), true, 83);
    check_qconv(3, 20, 17, [2, 2], 1, 1, 0, 1, ActQuant::Static(statics[2]), true, 82);
    // Maps of at most 4 pixels, one image: GEMV columns only, no panel packed. Strided 1×1
    // convs gather their columns straight from the input (onto 1 × 1, 2 × 2, and a padded 1×1
    // onto 3 × 1) and 3×3 convs (in the weights' quad-tap K order; with 6 channels, channel by
    // channel); 1×1 stride-1 convs from the input planes. 16 output channels and more with at
    // most 2 columns requantize 16 channels a vector; f32 outputs of at most 4 columns are
    // computed channel by channel within each column.
    check_qconv(1, 32, 40, [2, 2], 1, 2, 0, 1, ActQuant::Static(statics[1]), true, 71);
    check_qconv(1, 48, 24, [3, 4], 1, 2, 0, 1, ActQuant::Dynamic, true, 70);
    check_qconv(1, 64, 33, [1, 2], 1, 1, 0, 1, ActQuant::Static(statics[3]), true, 69);
    check_qconv(1, 16, 24, [1, 1], 3, 1, 1, 1, ActQuant::Static(statics[2]), true, 68);
    check_qconv(1, 20, 32, [2, 2], 3, 1, 1, 1, ActQuant::Static(statics[4]), true, 67);
    check_qconv(1, 6, 20, [2, 2], 3, 1, 1, 1, ActQuant::Dynamic, false, 66);
    check_qconv(1, 24, 17, [2, 1], 3, 2, 1, 1, ActQuant::Static(statics[1]), true, 65);
    // A map split in two pixel chunks whose second is a few GEMV columns: gathered from the
    // dense offsets (16 channels, 5 × 4), the plain phase planes (6 channels, 3 × 5 out of 19
    // virtual pixels) and the input planes (a 1×1 conv on 3 × 6).
    check_qconv(1, 16, 24, [5, 4], 3, 1, 1, 1, ActQuant::Static(statics[1]), true, 61);
    check_qconv(1, 6, 24, [3, 5], 3, 1, 1, 1, ActQuant::Dynamic, true, 60);
    check_qconv(1, 24, 20, [3, 6], 1, 1, 0, 1, ActQuant::Static(statics[3]), false, 59);
    let w = Tensor::new(vec![18, 12, 1, 1], data(18 * 12, 64)).unwrap();
    let mut c = Conv2d::new(w, 1, 0, 1);
    (c.pads, c.residual) = ([1, 0, 1, 0], true);
    c.bias = Some(data(18, 63));
    check_qconv_with(c, 1, 12, [1, 1], ActQuant::Static(statics[2]), 62);
    // Batches of small maps under 1×1 convs: one GEMM over the batch's pixels (1 × 1 maps of
    // wide layers, a 4 × 4 map, a grouped conv, a dynamic input).
    check_qconv(5, 64, 72, [1, 1], 1, 1, 0, 1, ActQuant::Static(statics[3]), true, 81);
    check_qconv(4, 24, 40, [4, 4], 1, 1, 0, 1, ActQuant::Static(statics[1]), true, 80);
    check_qconv(3, 16, 24, [3, 3], 1, 1, 0, 4, ActQuant::Dynamic, true, 79);
    check_qconv(2, 130, 66, [1, 3], 1, 1, 0, 1, ActQuant::Dynamic, false, 78);
    // Strided ones (downsamples onto small maps): the pixels the stride reads, gathered; a
    // dynamic input still quantized with the whole input's range.
    check_qconv(3, 32, 64, [4, 4], 1, 2, 0, 1, ActQuant::Dynamic, true, 77);
    check_qconv(2, 16, 24, [7, 5], 1, 2, 0, 1, ActQuant::Static(statics[4]), false, 76);
    check_qconv(2, 8, 16, [5, 8], 1, 3, 0, 2, ActQuant::Dynamic, true, 75);
    // Phase planes built in parallel from many short rows, over two images, split across
    // workers in mid-image: a 1×1 stride-2 conv (one phase of four used) and a 3×3 stride 2.
    check_qconv(2, 37, 24, [14, 14], 1, 2, 0, 1, ActQuant::Static(statics[1]), true, 89);
    check_qconv(2, 45, 16, [20, 22], 3, 2, 1, 1, ActQuant::Dynamic, false, 88);
    // Wide f32 inputs of convs that skip phases: quantized while the planes are built.
    check_qconv(2, 6, 9, [9, 60], 1, 2, 0, 1, ActQuant::Dynamic, true, 93);
    check_qconv(1, 6, 9, [5, 75], 1, 3, 0, 1, ActQuant::Static(statics[4]), false, 92);
    let w = Tensor::new(vec![8, 5, 3, 1], data(8 * 5 * 3, 91)).unwrap();
    let mut c = Conv2d::new(w, 1, 0, 1);
    (c.stride, c.pads) = ([1, 2], [1, 0, 1, 0]);
    c.act = Some(Activation::Relu);
    check_qconv_with(c, 1, 5, [6, 70], ActQuant::Static(statics[1]), 91);
    // Per-axis strides, asymmetric pads and dilations: every phase-plane offset and the
    // discarded virtual columns.
    for (i, &(k, stride, pads, dil)) in [
        ([3, 3], [2, 1], [0, 1, 1, 0], [1, 1]),
        ([3, 1], [1, 2], [1, 0, 0, 0], [1, 1]),
        ([3, 3], [1, 1], [2, 2, 2, 2], [2, 2]),
        ([3, 3], [2, 2], [2, 1, 2, 3], [2, 3]),
        ([5, 3], [3, 2], [2, 1, 0, 1], [1, 2]),
        ([1, 1], [2, 2], [0, 0, 0, 0], [1, 1]),
        ([1, 1], [1, 1], [1, 0, 1, 0], [1, 1]),
        ([2, 2], [2, 2], [0, 0, 1, 1], [1, 1]),
    ]
    .iter()
    .enumerate()
    {
        for &hw in &[[1, 1], [4, 3], [9, 16], [17, 15]] {
            let seed = 200 + i as u64 * 10 + hw[0] as u64;
            let w = Tensor::new(vec![9, 6, k[0], k[1]], data(9 * 6 * k[0] * k[1], seed)).unwrap();
            let mut c = Conv2d::new(w, 1, 0, 1);
            (c.stride, c.pads, c.dilation) = (stride, pads, dil);
            c.bias = Some(data(9, seed + 1));
            c.act = (i % 4 != 2).then_some(Activation::Relu);
            c.residual = i % 2 == 0;
            let input = if i % 3 == 0 { ActQuant::Dynamic } else { ActQuant::Static(QParams { scale: 0.03, zero_point: 37 }) };
            check_qconv_with(c, 1 + i % 2, 6, hw, input, seed);
        }
    }
}

/// Convs with taps (stride 1, or strided with more than one tap) and at least 16 (or a
/// multiple of 4) input channels per group run the VNNI kernel's implicit GEMM over quad
/// planes (AMX's, tap by tap, for 64·n channels a group): quad tails (17, 20, 36 channels), groups, dilations, asymmetric pads, non-square
/// kernels and strides (per axis; column stride 3 builds its quad planes row by row, a
/// dilation as large as the stride reads one phase), against the twin. Maps whose planes'
/// padding columns are at least 5 % of their pixels (4×3 to 17×15 here) pack dense panels
/// from the planes instead; 1×1 and 40×128 maps read the planes in place. (Other ISAs run the
/// same cases on packed panels.)
#[test]
fn implicit_gemm_convs_match_the_twin() {
    let cases = [
        (20, 1, [3, 3], [1, 1, 1, 1], [1, 1], [1, 1]),
        (8, 1, [3, 3], [2, 2, 2, 2], [2, 2], [1, 1]),
        (32, 2, [3, 1], [1, 0, 0, 0], [1, 1], [1, 1]),
        (36, 1, [5, 3], [2, 1, 0, 1], [1, 2], [1, 1]),
        (17, 1, [2, 2], [0, 0, 1, 1], [1, 1], [1, 1]),
        (20, 1, [3, 3], [1, 1, 1, 1], [1, 1], [2, 2]),
        (36, 2, [3, 3], [0, 1, 2, 1], [1, 1], [2, 1]),
        (17, 1, [3, 3], [1, 1, 1, 1], [1, 1], [1, 2]),
        (24, 1, [3, 3], [2, 2, 2, 2], [2, 2], [2, 2]),
        (20, 1, [3, 2], [1, 0, 1, 1], [1, 1], [3, 2]),
        (32, 1, [3, 3], [1, 1, 1, 1], [1, 1], [1, 3]),
        // 64 channels a group: AMX reads its quad planes in place too (tap by tap).
        (64, 1, [3, 3], [1, 1, 1, 1], [1, 1], [1, 1]),
        (128, 2, [3, 3], [1, 1, 1, 1], [1, 1], [2, 2]),
        (64, 1, [3, 3], [0, 1, 2, 1], [2, 1], [1, 1]),
    ];
    for (i, &(cin, groups, k, pads, dil, stride)) in cases.iter().enumerate() {
        for &hw in &[[1, 1], [4, 3], [9, 16], [17, 15], [40, 128]] {
            let seed = 400 + i as u64 * 10 + hw[0] as u64;
            let cout = 10;
            let w = Tensor::new(vec![cout, cin / groups, k[0], k[1]], data(cout * cin / groups * k[0] * k[1], seed)).unwrap();
            let mut c = Conv2d::new(w, 1, 0, groups);
            (c.pads, c.dilation, c.stride) = (pads, dil, stride);
            c.bias = Some(data(cout, seed + 1));
            c.act = (i % 2 == 0).then_some(Activation::Relu);
            c.residual = i % 2 == 1;
            let input = if i % 3 == 0 { ActQuant::Dynamic } else { ActQuant::Static(QParams { scale: 0.03, zero_point: 200 }) };
            check_qconv_with(c, 1 + i % 2, cin, hw, input, seed);
        }
    }
}

#[test]
fn qlinear_matches_its_twin_exactly() {
    println!("qlinear ISA: {}", Kernels::select().unwrap().isa.name());
    for kernels in kernel_sets() {
        qlinear_on(&kernels);
    }
}

fn qlinear_on(kernels: &Kernels) {
    let mut seed = 700;
    for &(n, o, i) in &[(1usize, 1usize, 1usize), (1, 7, 3), (3, 9, 17), (1, 65, 63), (17, 16, 64), (2, 1000, 130), (1, 1000, 2048), (4, 33, 200), (5, 12, 70)] {
        for &threads in &[1, 2, 3] {
            seed += 1;
            let l = Linear::new(Tensor::new(vec![o, i], data(o * i, seed)).unwrap(), Some(data(o, seed + 1)));
            let input = if seed % 2 == 0 { ActQuant::Dynamic } else { ActQuant::Static(QParams { scale: 0.02, zero_point: (seed * 37 % 256) as u8 }) };
            let wbits = if seed % 4 < 2 { WeightBits::Seven } else { WeightBits::Eight };
            let ql = l.quantized(input, seed % 3 != 0, wbits).unwrap();
            let q = ql.precision.int8().unwrap();
            let packed = qconv::pack_linear(kernels, &ql, q).unwrap();
            let x: Vec<f32> = data(n * i, seed + 2).iter().map(|v| v * 2.0 + 0.3).collect();
            let mut want = vec![f32::NAN; n * o];
            reference::qlinear_ref(&ql, q, &x, n, &mut want);
            let mut got = vec![f32::NAN; n * o];
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| qconv::qlinear(kernels, &ql, q, &packed, &x, n, &mut got, &mut Default::default(), threads));
            assert_eq!(got, want, "qlinear n{n} o{o} i{i} threads {threads} {input:?} {}", kernels.qgemm.path(packed.packing()));
        }
    }
}

fn narrow_resnet(depth: usize) -> ModelConfig {
    ModelConfig::ResNet(ResNetConfig { depth, num_classes: 10, in_channels: 3, base_width: 16, image_size: 64, ..Default::default() })
}

#[test]
fn int8_models_track_f32() {
    let calib: Vec<Tensor> = (0..8).map(|i| synthetic_images(4, 3, 64, 64, 100 + i)).collect();
    let test = synthetic_images(8, 3, 64, 64, 7);
    for cfg in [narrow_resnet(18), narrow_resnet(50), ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 64, ..Default::default() })] {
        let g = cfg.build(&mut SeededWeights { seed: 1 }).unwrap();
        let want = Session::new(g.clone(), &Options::default()).unwrap().run(std::slice::from_ref(&test)).unwrap().remove(0);
        for (mode, method) in [(Mode::Static, Method::MinMax), (Mode::Static, Method::Percentile(99.99)), (Mode::Static, Method::Entropy), (Mode::Static, Method::Mse), (Mode::Dynamic, Method::MinMax)] {
            let opts = QuantizeOptions { mode, method, ..Default::default() };
            let q = quantize(&g, &opts, &calib, &mut |_, _| {}).unwrap();
            assert!(q.nodes.iter().any(|n| n.op.conv().is_some_and(|c| c.precision.int8().is_some())));
            let got = Session::new(q, &Options::default()).unwrap().run(std::slice::from_ref(&test)).unwrap().remove(0);
            let m = kestrel::parity::compare(&want, &got);
            println!("{cfg:?} {mode:?} {method:?}: cosine {:.5} rel L2 {:.4} top1 {:?} mask {:?}", m.cosine, m.rel_l2, m.top1, m.mask_agreement);
            // Narrow seeded models: entropy clips signed inputs hardest, so its bound is looser.
            let bound = if method == Method::Entropy { 0.97 } else { 0.98 };
            assert!(m.cosine >= bound, "{mode:?} {method:?}: cosine {}", m.cosine);
        }
    }
}

#[test]
fn u8_handoff_between_int8_convs_changes_nothing() {
    let calib: Vec<Tensor> = (0..2).map(|i| synthetic_images(2, 3, 64, 64, 300 + i)).collect();
    let x = synthetic_images(2, 3, 64, 64, 5);
    for cfg in [narrow_resnet(50), ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 64, batch_norm: false, ..Default::default() })] {
        let g = cfg.build(&mut SeededWeights { seed: 2 }).unwrap();
        let q = quantize(&g, &QuantizeOptions::default(), &calib, &mut |_, _| {}).unwrap();
        let s = Session::new(q.clone(), &Options::default()).unwrap();
        let p = s.prepared();
        let u8_values = |n: &Node| matches!(p.dtypes[n.output], kestrel::exec::DType::U8(_));
        let handoffs = s.graph().nodes.iter().filter(|n| n.op.int8().is_some() && u8_values(n)).count();
        assert!(handoffs > 0, "no u8 hand-off formed in {cfg:?}");
        if matches!(cfg, ModelConfig::ResNet(_)) {
            assert!(p.steps.iter().any(|st| matches!(st, kestrel::exec::Step::MaxPoolU8)), "stem max-pool not run on u8 codes");
        }
        let got = s.run(std::slice::from_ref(&x)).unwrap().remove(0);
        // The same INT8 graph without the hand-off (passes off, node by node).
        let want = kestrel::exec::interpret(&q, std::slice::from_ref(&x), 2).unwrap()[q.outputs[0]].clone().unwrap();
        let residual_handoffs = s.graph().nodes.iter().filter(|n| n.op.conv().is_some_and(|c| c.residual) && matches!(p.dtypes[n.inputs[1]], kestrel::exec::DType::U8(_))).count();
        if matches!(cfg, ModelConfig::ResNet(_)) {
            assert!(residual_handoffs > 0, "no residual taken as u8 codes in {cfg:?}");
            assert!(!s.graph().nodes.iter().any(|n| matches!(n.op, Op::FakeQuant(_))), "a residual QuantizeDequantize was left in f32");
        }
        // Every pass but the hand-off, so the residual QuantizeDequantize nodes run in f32.
        let mut fused_only = q.clone();
        {
            use kestrel::graph::passes::*;
            drop_identity(&mut fused_only);
            fold_batchnorm(&mut fused_only);
            fuse_residual_add(&mut fused_only);
            fuse_activation(&mut fused_only);
            remove_dead(&mut fused_only);
        }
        let no_handoff = Session::new(fused_only, &Options { optimize: false, ..Default::default() }).unwrap().run(std::slice::from_ref(&x)).unwrap().remove(0);
        assert_eq!(got, no_handoff, "u8 hand-off changed outputs ({handoffs} hand-offs, {residual_handoffs} into residuals)");
        common::Tolerance { abs: 1e-4, rel: 1e-3 }.check("fused vs node-by-node", got.data(), want.data());
    }
}

#[test]
fn dynamic_ranges_recorded_by_producers_change_nothing() {
    let x = synthetic_images(2, 3, 64, 64, 6);
    for cfg in [narrow_resnet(18), ModelConfig::UNet(UNetConfig { base_width: 8, depth: 3, image_size: 64, ..Default::default() })] {
        let g = cfg.build(&mut SeededWeights { seed: 4 }).unwrap();
        let q = quantize(&g, &QuantizeOptions { mode: Mode::Dynamic, ..Default::default() }, &[], &mut |_, _| {}).unwrap();
        let s = Session::new(q, &Options::default()).unwrap();
        // Planned runs hand each dynamic conv its input's range from the producer's epilogue;
        // node-by-node runs scan the input instead. Twice, so a stale range would show.
        let got = s.run(std::slice::from_ref(&x)).unwrap().remove(0);
        let x2 = synthetic_images(2, 3, 64, 64, 8);
        let got2 = s.run(std::slice::from_ref(&x2)).unwrap().remove(0);
        let g = s.graph();
        for (input, out) in [(&x, got), (&x2, got2)] {
            let want = kestrel::exec::interpret(g, std::slice::from_ref(input), 2).unwrap()[g.outputs[0]].clone().unwrap();
            assert_eq!(out, want, "{cfg:?}: recorded ranges changed the dynamic output");
        }
    }
}

#[test]
fn qconv_transpose_matches_float_on_dequantized_values() {
    let mut seed = 700;
    for &(cin, cout, hw, k, stride, pad) in &[(3usize, 5usize, [1usize, 1usize], 2usize, 2usize, 0usize), (4, 6, [7, 5], 2, 2, 0), (8, 3, [9, 9], 3, 2, 1), (17, 15, [6, 7], 4, 2, 1), (5, 7, [20, 21], 3, 1, 1)] {
        for (per_channel, input) in [(true, ActQuant::Dynamic), (false, ActQuant::Static(QParams { scale: 0.03, zero_point: 100 }))] {
            seed += 1;
            let c = ConvTranspose2d {
                weight: Tensor::new(vec![cin, cout, k, k], data(cin * cout * k * k, seed)).unwrap(),
                bias: Some(data(cout, seed + 1)),
                stride: [stride; 2],
                pads: [pad; 4],
                output_padding: [0; 2],
                dilation: [1; 2],
                groups: 1,
                precision: Precision::F32,
            };
            for kernels in kernel_sets() {
                let wbits = if seed % 2 == 0 { WeightBits::Seven } else { WeightBits::Eight };
                let qc = c.clone().quantized(input, per_channel, wbits).unwrap();
                let q = qc.precision.int8().unwrap();
                let packed = qconv::pack_conv_transpose(&kernels, &qc, q).unwrap();
                let (oh, ow) = (stride * (hw[0] - 1) + k - 2 * pad, stride * (hw[1] - 1) + k - 2 * pad);
                let (xs, os) = ([2, cin, hw[0], hw[1]], [2, cout, oh, ow]);
                let x: Vec<f32> = data(xs.iter().product(), seed + 2).iter().map(|v| v * 2.0).collect();
                let pa = qconv::input_params(kernels.simd, q.input, &x);
                let xdq: Vec<f32> = x.iter().map(|&v| pa.fake(v)).collect();
                let mut want = vec![f32::NAN; os.iter().product()];
                reference::conv_transpose2d_ref(&qc, &xdq, xs, &mut want, os);
                let mut got = vec![f32::NAN; want.len()];
                let mut col = Vec::new();
                qconv::qconv_transpose2d(&kernels, &qc, q, &packed, &x, xs, &mut got, os, &mut Default::default(), &mut col, 2);
                common::Tolerance { abs: 1e-4, rel: 1e-4 }.check(&format!("qconvT cin{cin} cout{cout} hw{hw:?} k{k} s{stride} p{pad} pc{per_channel} {}", kernels.qgemm.path(packed.packing())), &got, &want);
            }
        }
    }
}

/// On an AMX CPU an INT8 layer runs on AMX tiles only where it is wide (64 output channels
/// per group and a K of 64 or more) and, for a conv, its output map holds a 16-pixel tile
/// block; narrow layers, smaller maps and fully connected layers run on the VNNI kernel of
/// the same CPU, as the per-layer labels say. (Both paths are twin-tested above.) Elsewhere
/// every shape keeps the one kernel. On every CPU a batch of small maps under a 1×1 conv is
/// labelled as running in one GEMM.
#[test]
fn amx_takes_wide_layers_on_maps_of_a_block() {
    use kestrel::cpu::qgemm::{Kernel, Packing};
    let kernels = Kernels::select().unwrap();
    let packing = |cout: usize, cin: usize, k: usize, kernels: &Kernels| {
        let w = Tensor::new(vec![cout, cin, k, k], data(cout * cin * k * k, 5)).unwrap();
        let c = Conv2d::new(w, 1, k / 2, 1).quantized(ActQuant::Dynamic, true, WeightBits::Eight).unwrap();
        qconv::pack_conv(kernels, &c, c.precision.int8().unwrap()).unwrap()[0].packing()
    };
    let amx = matches!(kernels.qgemm, Kernel::Amx(_));
    if amx {
        println!("AMX-INT8: wide layers on tiles, narrow ones on VNNI");
        // (cout, cin, kernel, on tiles): 32 outputs; 64 outputs over K = 64, 8 and 144.
        for (cout, cin, k, tiles) in [(32, 64, 3, false), (64, 64, 1, true), (64, 8, 1, false), (64, 16, 3, true), (128, 4, 3, false)] {
            assert_eq!(packing(cout, cin, k, &kernels) == Packing::S8Amx, tiles, "{cout} ← {cin}, {k}×{k}");
            let all = Kernels { qgemm: kernels.qgemm.tiles_everywhere(), ..kernels };
            assert_eq!(packing(cout, cin, k, &all), Packing::S8Amx, "{cout} ← {cin}, {k}×{k}, tiles everywhere");
        }
    } else {
        println!("SKIP AMX's layer rule: this CPU's INT8 kernel is {} (every shape on it)", kernels.qgemm.name());
        for (m, k) in [(8, 8), (64, 64), (512, 4608)] {
            assert_eq!(kernels.qgemm.for_shape(m, k).path(Packing::S8), kernels.qgemm.path(Packing::S8));
        }
    }
    // A narrow ResNet-18 at 64²: layers of 16 and 32 channels, of 64 at 4 × 4 (one block) and
    // of 128 at 2 × 2; its classifier.
    let calib = vec![synthetic_images(2, 3, 64, 64, 11)];
    let g = narrow_resnet(18).build(&mut SeededWeights { seed: 3 }).unwrap();
    let q = quantize(&g, &QuantizeOptions::default(), &calib, &mut |_, _| {}).unwrap();
    let s = Session::new(q, &Options::default()).unwrap();
    for batch in [1, 3] {
        let labels = s.kernel_labels(&[vec![batch, 3, 64, 64]]).unwrap();
        let label = |name: &str| labels[s.graph().nodes.iter().position(|n| n.name == name).unwrap_or_else(|| panic!("no node {name}"))].clone();
        if amx {
            for (name, tiles) in [("layer1.0.conv1", false), ("layer2.0.conv2", false), ("layer3.0.conv2", true), ("layer3.1.conv1", true), ("layer4.0.conv2", false), ("layer4.1.conv1", false), ("fc", false)] {
                let l = label(name);
                println!("batch {batch} {name}: {l}");
                assert_eq!(l.contains("amx-int8"), tiles, "batch {batch} {name}: {l}");
                assert!(l.contains("amx-int8") || l.contains("avx512vnni"), "{name}: {l}");
            }
        }
        // The downsample onto 2 × 2 maps: a batch of them runs as one GEMM.
        let l = label("layer4.0.downsample.0");
        println!("batch {batch} layer4.0.downsample.0: {l}");
        assert_eq!(l.contains("batch as one GEMM"), batch > 1, "{l}");
        // Image by image, the convs onto 2 × 2 maps gather their GEMV columns straight from
        // the input, with no planes, on a kernel with a GEMV form (VNNI, AVX2; AMX hosts run
        // these narrow layers on VNNI).
        let gemv = amx || kernels.qgemm.has_gemv();
        assert_eq!(l.contains("columns gathered"), gemv && batch == 1, "{l}");
        let l = label("layer4.0.conv2");
        println!("batch {batch} layer4.0.conv2: {l}");
        assert_eq!(l.contains("columns gathered"), gemv, "{l}");
        assert!(!(gemv && l.contains("quad planes")), "{l}");
    }
}
