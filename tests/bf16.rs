//! `--precision bf16`: the AVX512_BF16 tile kernel against its scalar twin bit for bit (where
//! the CPU has it), the bf16 conv against the f64 reference conv on bf16-rounded inputs and
//! weights over kernel sizes, strides, pads, dilations, groups, residuals and activations,
//! and whole models against f32.

mod common;

use common::data;
use kestrel::cpu::bgemm::{from_bf16, to_bf16, Epi, Kernel, PackedBf16, MR, NR};
use kestrel::cpu::sgemm::{Act, Init};
use kestrel::cpu::amx::{Lanes, PlaneKernel};
use kestrel::cpu::bdot::DotKernel;
use kestrel::cpu::detect::Tune;
use kestrel::cpu::{amx, bconv, reference};
use kestrel::graph::{Activation, Conv2d};
use kestrel::models::{ModelConfig, ResNetConfig, SeededWeights};
use kestrel::{Options, Session, Tensor};

fn bf16_host() -> Option<Kernel> {
    let k = Kernel::native(kestrel::cpu::detect::Isa::Avx512Vnni);
    if k.is_none() {
        eprintln!("SKIP the AVX512_BF16 kernel: this CPU lacks it (the scalar twin still runs)");
    }
    k
}

/// Whether the ISA path the session takes (`KESTREL_ISA` may force one) runs bf16: a forced
/// AVX2 path refuses it on any CPU.
fn selected_path_has_bf16() -> bool {
    kestrel::cpu::detect::selected().is_ok_and(|i| Kernel::for_isa(i).is_some())
}

#[test]
fn rounding_is_nearest_even_and_flushes_subnormals() {
    assert_eq!(to_bf16(1.0), 0x3f80);
    // 1 + 2^-8 is halfway between 1 and 1 + 2^-7: to even (1); 1 + 3·2^-8 rounds up.
    assert_eq!(to_bf16(1.0 + 1.0 / 256.0), 0x3f80);
    assert_eq!(to_bf16(1.0 + 3.0 / 256.0), 0x3f82);
    assert_eq!(to_bf16(-2.5), 0xc020);
    assert_eq!(to_bf16(1e-40), 0);
    assert_eq!(to_bf16(-1e-40), 0x8000);
    assert!(from_bf16(to_bf16(f32::NAN)).is_nan());
    assert_eq!(from_bf16(to_bf16(f32::INFINITY)), f32::INFINITY);
    assert_eq!(from_bf16(0x0001), 0.0);
    for &v in &[0.1f32, -3.7, 1234.5, 6.1e-5] {
        assert!(((from_bf16(to_bf16(v)) - v) / v).abs() <= 1.0 / 256.0, "{v}");
    }
}

/// Every tile shape (rows 1..=8, column tails, pair counts), start and epilogue: the AVX512_BF16
/// kernel writes exactly what the scalar twin writes.
#[test]
fn tile_kernel_matches_the_scalar_twin_bit_for_bit() {
    let Some(fast) = bf16_host() else { return };
    println!("bf16 tile kernel: {} against {}", fast.name(), Kernel::Scalar.name());
    let mut seed = 40;
    let mut checked = 0;
    for &k in &[1usize, 2, 3, 7, 16, 63, 257] {
        let k2 = k.div_ceil(2);
        for &rows in &[1usize, 3, 7, 8] {
            for &cols in &[1usize, 3, 15, 16, 17, 33, 47, 48] {
                for init_kind in 0..3 {
                    for epi_kind in 0..4 {
                        seed += 1;
                        let w = data(MR * k, seed);
                        let a = PackedBf16::new(&w, MR, k);
                        let bvals = data(2 * k2 * NR, seed + 1);
                        let b: Vec<u32> = bvals.chunks(2).map(|p| kestrel::cpu::bgemm::pair(p[0], p[1])).collect();
                        let ldc = cols + 5;
                        let start = data(rows * ldc, seed + 2);
                        let bias = data(rows, seed + 3);
                        let epi = match epi_kind {
                            0 => None,
                            1 => Some(Epi { bias: Some(&bias), act: Act::Leaky(0.0) }),
                            2 => Some(Epi { bias: None, act: Act::Leaky(0.1) }),
                            _ => Some(Epi { bias: Some(&bias), act: Act::Clip(-0.5, 0.25) }),
                        };
                        let mut outs = Vec::new();
                        for kernel in [Kernel::Scalar, fast] {
                            let mut c = start.clone();
                            let init = match init_kind {
                                0 => Init::Zero,
                                1 => Init::Output,
                                _ => Init::Residual(start.as_ptr()),
                            };
                            // SAFETY: `a` holds k2 · MR pairs, `b` k2 · NR, `c` rows · ldc floats
                            // (cols < ldc), the residual the same; bias holds `rows` values.
                            unsafe { kernel.tile(a.panel_from(0, 0).as_ptr(), b.as_ptr(), k2, c.as_mut_ptr(), ldc, rows, cols, init, epi.as_ref()) };
                            outs.push(c);
                        }
                        let (twin, got) = (&outs[0], &outs[1]);
                        for (i, (x, y)) in twin.iter().zip(got).enumerate() {
                            assert_eq!(x.to_bits(), y.to_bits(), "k{k} rows{rows} cols{cols} init{init_kind} epi{epi_kind} at {i}: twin {x} kernel {y}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("{checked} tiles bit-identical");
}

/// A seeded conv case of batch 2: the conv (bias, activation, residual flag), input and
/// output shapes, the input and, when `residual`, the residual.
struct Case {
    c: Conv2d,
    xs: [usize; 4],
    os: [usize; 4],
    x: Vec<f32>,
    res: Option<Vec<f32>>,
}

#[allow(clippy::too_many_arguments)]
fn case(cin: usize, cout: usize, hw: [usize; 2], k: usize, stride: usize, pad: usize, dil: usize, groups: usize, act: Option<Activation>, residual: bool, seed: u64) -> Case {
    let mut c = Conv2d::new(Tensor::new(vec![cout, cin / groups, k, k], data(cout * cin / groups * k * k, seed)).unwrap(), stride, pad, groups);
    c.dilation = [dil; 2];
    c.bias = Some(data(cout, seed + 1));
    c.act = act;
    c.residual = residual;
    let eff = (k - 1) * dil + 1;
    let (oh, ow) = ((hw[0] + 2 * pad - eff) / stride + 1, (hw[1] + 2 * pad - eff) / stride + 1);
    let xs = [2, cin, hw[0], hw[1]];
    let os = [2, cout, oh, ow];
    let x = data(xs.iter().product(), seed + 2);
    let res = residual.then(|| data(os.iter().product(), seed + 3));
    Case { c, xs, os, x, res }
}

fn rounded(v: &[f32]) -> Vec<f32> {
    v.iter().map(|&x| from_bf16(to_bf16(x))).collect()
}

/// The bf16 conv equals the f64 reference conv run on the bf16-rounded input and weights, up
/// to f32 accumulation order (1e-4 of the output's scale), on both kernels.
#[test]
fn bf16_conv_matches_the_reference_on_rounded_operands() {
    let mut kernels = vec![Kernel::Scalar];
    kernels.extend(bf16_host());
    let mut seed = 700;
    let mut checked = 0;
    let cases: &[(usize, usize, [usize; 2], usize, usize, usize, usize, usize)] = &[
        // (cin, cout, hw, k, stride, pad, dil, groups)
        (3, 8, [9, 11], 3, 1, 1, 1, 1),
        (16, 17, [7, 7], 3, 2, 1, 1, 1),
        (5, 9, [15, 17], 1, 1, 0, 1, 1),
        (8, 8, [6, 5], 3, 1, 2, 2, 1),
        (8, 12, [9, 9], 3, 1, 1, 1, 4),
        (6, 6, [8, 8], 3, 1, 1, 1, 6),
        (3, 16, [23, 21], 7, 2, 3, 1, 1),
        (64, 33, [3, 3], 3, 1, 1, 1, 1),
        (300, 9, [4, 4], 1, 1, 0, 1, 1),
        (2, 65, [31, 33], 2, 2, 0, 1, 1),
    ];
    for &(cin, cout, hw, k, stride, pad, dil, groups) in cases {
        for &(act, residual) in &[(None, false), (Some(Activation::Relu), true), (Some(Activation::Sigmoid), false), (Some(Activation::Clip(0.0, 6.0)), true)] {
            seed += 1;
            let Case { c, xs, os, x, res } = case(cin, cout, hw, k, stride, pad, dil, groups, act, residual, seed);
            let mut cr = c.clone();
            cr.weight = Tensor::new(c.weight.shape().to_vec(), rounded(c.weight.data())).unwrap();
            let mut want = vec![f32::NAN; os.iter().product()];
            reference::conv2d_ref(&cr, &rounded(&x), xs, res.as_deref(), &mut want, os);
            let scale = want.iter().fold(0f32, |m, v| m.max(v.abs())).max(1.0);
            let packed = bconv::pack(&c);
            for &kernel in &kernels {
                for threads in [1, 2] {
                    let mut got = vec![f32::NAN; want.len()];
                    bconv::conv2d(kernel, &c, &packed, &x, xs, res.as_deref(), &mut got, os, threads);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert!((g - w).abs() <= 1e-4 * scale, "{} cin{cin} cout{cout} hw{hw:?} k{k} s{stride} p{pad} d{dil} g{groups} {act:?} res{residual} t{threads} at {i}: {g} vs {w}", kernel.name());
                    }
                    // The residual already in the output buffer (the executor's in-place
                    // residual): the same values, bit for bit.
                    if let Some(r) = &res {
                        let mut onto = r.clone();
                        bconv::conv2d_onto(kernel, &c, &packed, &x, xs, &mut onto, os, threads);
                        if let Some(i) = (0..onto.len()).find(|&i| onto[i].to_bits() != got[i].to_bits()) {
                            panic!("{} cin{cin} cout{cout} hw{hw:?} k{k} t{threads} onto its residual: element {i} is {} but {} with a separate residual", kernel.name(), onto[i], got[i]);
                        }
                    }
                    checked += 1;
                }
            }
        }
    }
    println!("bf16 conv: {checked} cases on {:?}", kernels.iter().map(|k| k.name()).collect::<Vec<_>>());
}

/// A seeded ResNet-18 at 64² in bf16 against f32: the same outputs to bf16 precision.
#[test]
fn a_resnet_in_bf16_agrees_with_f32() {
    let g = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 16, image_size: 64, ..Default::default() }).build(&mut SeededWeights { seed: 3 }).unwrap();
    let x = Tensor::randn(vec![2, 3, 64, 64], 1.0, 9);
    let f32_out = Session::new(g.clone(), &Options { threads: 2, ..Default::default() }).unwrap().run(std::slice::from_ref(&x)).unwrap();
    let s = match Session::new(g, &Options { threads: 2, bf16: true, ..Default::default() }) {
        Ok(s) => s,
        Err(e) => {
            assert!(bf16_host().is_none() || !selected_path_has_bf16(), "bf16 refused on a CPU with AVX512_BF16: {e}");
            assert!(e.to_string().contains("AVX512_BF16"), "{e}");
            return;
        }
    };
    let labels = s.kernel_labels(&[vec![2, 3, 64, 64]]).unwrap();
    assert!(labels.iter().any(|l| l.contains("bf16 conv")), "{labels:?}");
    let out = s.run(&[x]).unwrap();
    let (a, b) = (f32_out[0].data(), out[0].data());
    let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
    let na: f64 = a.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let nb: f64 = b.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    let cosine = dot / (na * nb);
    println!("resnet18 64² bf16 against f32: cosine {cosine:.6}");
    assert!(cosine > 0.999, "cosine {cosine}");
}

/// A bf16 conv on a map of at most 16 pixels, or of at most 4 input channels (a stem), or
/// where the FP32 plan takes a small-map path, runs on the FP32 kernels over bf16-rounded
/// weights and input (`Step::BFma` on the packed kernel, `Step::BLanes` in channel lanes,
/// `Step::BPos` by position): it then equals the f32 reference conv (same FMA order,
/// `conv2d_fma_ref`) on the rounded operands bit for bit, 1 and 2 threads, a batch (16 of the
/// maps of at most 16 pixels, 3 of the others), a residual and an activation, 3×3 on 8×8 (also stride 2), 4×4 and 2×2 maps and 1×1 on 1×1
/// (plus a dead-tap crop on 1×1), and 7×7/2 stems of 3 channels on 64² and 232×224 maps
/// (the second with output rows of whole vectors, run weight panel by weight panel). Under the
/// Zen 4 rules the stems fold wide enough for the phase planes instead (`KESTREL_TUNE`;
/// bit-identical to their twin in `implicit_conv_matches_the_reference_on_rounded_operands`;
/// not on AMX tiles): there they must take the planes and agree with the same reference up to
/// the f32 order of the sums (1e-5 of the absolute sum of the products).
#[test]
fn tiny_maps_run_bf16_on_the_fma_kernel_exactly() {
    let kernels = kestrel::cpu::kernels::Kernels::select().unwrap();
    if kernels.sgemm.is_none() || Kernel::native(kernels.isa).is_none() {
        eprintln!("SKIP bf16 on the FMA kernel: the selected ISA path ({}) has no AVX512_BF16 or no FP32 kernel", kernels.isa.name());
        return;
    }
    let mut paths = Vec::new();
    for &(cin, cout, [hh, hw], k, stride, pad, seed) in &[
        (32usize, 24usize, [4usize, 4usize], 3usize, 1usize, 1usize, 9500u64),
        (17, 40, [2, 2], 3, 1, 1, 9510),
        (64, 33, [1, 1], 1, 1, 0, 9520),
        (48, 16, [1, 1], 3, 1, 1, 9530),
        (3, 24, [64, 64], 7, 2, 3, 9540),
        (3, 64, [232, 224], 7, 2, 3, 9550),
        (16, 16, [8, 8], 3, 1, 1, 9560),
        (16, 32, [8, 8], 3, 2, 1, 9570),
        (64, 48, [2, 2], 3, 1, 1, 9580),
    ] {
        // Maps of at most 16 pixels at a batch of 16, which takes them by position
        // (`spos::MIN_BATCH`); the others at 3.
        let n = if hh * hw <= 16 { 16 } else { 3 };
        let mut g = kestrel::Graph::default();
        let x = g.add_input("input", vec![n, cin, hh, hw]);
        let mut c = Conv2d::new(Tensor::new(vec![cout, cin, k, k], data(cout * cin * k * k, seed)).unwrap(), stride, pad, 1);
        c.bias = Some(data(cout, seed + 1));
        let y = g.push("conv", kestrel::graph::Op::Conv(c.clone()), vec![x]);
        let y = g.push("relu", kestrel::graph::Op::Act(Activation::Relu), vec![y]);
        g.outputs.push(y);
        let input = Tensor::new(vec![n, cin, hh, hw], data(n * cin * hh * hw, seed + 2)).unwrap();
        let os = [n, cout, (hh + 2 * pad - k) / stride + 1, (hw + 2 * pad - k) / stride + 1];
        let mut plain = c.clone();
        plain.weight = Tensor::new(c.weight.shape().to_vec(), rounded(c.weight.data())).unwrap();
        let mut want = vec![0f32; os.iter().product()];
        reference::conv2d_fma_ref(&plain, &rounded(input.data()), [n, cin, hh, hw], None, &mut want, os);
        want.iter_mut().for_each(|v| *v = v.max(0.0));
        let planes = kernels.tune == Tune::Zen4 && amx::AmxToken::new().is_none() && cin <= 4 && cin * k >= 16;
        let mut abs_conv = plain.clone();
        abs_conv.weight = Tensor::new(c.weight.shape().to_vec(), plain.weight.data().iter().map(|v| v.abs()).collect()).unwrap();
        abs_conv.bias = c.bias.as_ref().map(|b| b.iter().map(|v| v.abs()).collect());
        let mut abs_sum = vec![0f32; want.len()];
        reference::conv2d_fma_ref(&abs_conv, &rounded(input.data()).iter().map(|v| v.abs()).collect::<Vec<_>>(), [n, cin, hh, hw], None, &mut abs_sum, os);
        for threads in [1, 2] {
            let s = Session::new(g.clone(), &Options { threads, bf16: true, ..Default::default() }).unwrap();
            let labels = s.kernel_labels(&[vec![n, cin, hh, hw]]).unwrap();
            let what = format!("cin{cin} cout{cout} {hh}x{hw} k{k} s{stride} t{threads}");
            let got = s.run(std::slice::from_ref(&input)).unwrap();
            if planes {
                assert!(labels[0].contains("planes"), "{what}: {labels:?}");
                for ((&g, &w), &a) in got[0].data().iter().zip(&want).zip(&abs_sum) {
                    assert!((g - w).abs() <= 1e-5 * a, "{what}: {g} against {w} (absolute sum {a})");
                }
            } else {
                assert!(labels[0].contains("bf16 conv on f32 FMA"), "{labels:?}");
                let same = got[0].data().iter().zip(&want).all(|(a, b)| a.to_bits() == b.to_bits());
                assert!(same, "{what}: differs from the f32 reference on rounded operands");
                paths.push(labels[0].clone());
            }
        }
    }
    // On a kernel with the lanes tile, the 8² maps ran in channel lanes and the batch of 16
    // 2² maps by position.
    println!("{paths:?}");
    if kernels.sgemm.is_some_and(|k| k.runs_lanes()) {
        assert!(paths.iter().any(|l| l.contains("channels in lanes")) && paths.iter().any(|l| l.contains("by position")), "{paths:?}");
    }
}

/// The vector rounding of a slice equals [`to_bf16`] then [`from_bf16`] on every value:
/// halfway cases, subnormals, NaN, infinities, tails of every length.
#[test]
fn slice_rounding_matches_the_scalar_rounding() {
    let Some(fast) = bf16_host() else { return };
    let mut x: Vec<f32> = data(1000, 77);
    x.extend([1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -0.0, 1e-40, -1e-39, f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::MAX, f32::MIN_POSITIVE]);
    for n in (0..40).chain([x.len()]) {
        let (mut a, mut b) = (vec![0f32; n], vec![0f32; n]);
        Kernel::Scalar.round_slice(&x[..n], &mut a);
        fast.round_slice(&x[..n], &mut b);
        assert!(a.iter().zip(&b).all(|(p, q)| p.to_bits() == q.to_bits() || (p.is_nan() && q.is_nan())), "length {n}");
        assert!(a.iter().zip(&x[..n]).all(|(p, &v)| p.to_bits() == from_bf16(to_bf16(v)).to_bits() || (p.is_nan() && v.is_nan())), "length {n}");
    }
}

/// The vector pair packing rounds exactly as [`to_bf16`]: halfway cases, subnormals, NaN,
/// infinities and tails of every length.
#[test]
fn pair_packing_matches_the_scalar_rounding() {
    let Some(fast) = bf16_host() else { return };
    let mut vals: Vec<f32> = vec![1.0 + 1.0 / 256.0, 1.0 + 3.0 / 256.0, -(1.0 + 1.0 / 256.0), 1e-40, -1e-40, f32::NAN, -f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, f32::MAX, f32::MIN_POSITIVE, 3.4e38];
    vals.extend(data(200, 77));
    vals.extend((0..64).map(|i| f32::from_bits(0x3f80_7fff + i)));
    // Random bit patterns: every class (subnormals, NaNs with any payload, ties) at random.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    vals.extend((0..4096).map(|_| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        f32::from_bits((state >> 16) as u32)
    }));
    for n in [1usize, 3, 15, 16, 17, 47, 48, 1000, vals.len() - 1] {
        let (lo, hi) = (&vals[..n], &vals[vals.len() - n..]);
        let mut want = vec![0u32; n];
        Kernel::Scalar.pack_pairs(lo, hi, &mut want);
        let mut got = vec![0xdead_beefu32; n];
        fast.pack_pairs(lo, hi, &mut got);
        assert_eq!(got, want, "{n} columns");
    }
}

/// A stride-2 plane row's channel pairs straight from two input rows: the values of
/// `stride2_row` then `pack_pairs`, on every width, start (left padding, both rows' starts
/// apart as in the folded stem) and tail, without a high row too; and both column phases from
/// one pass (`pack_pairs_stride2_both`), each equal to its own call.
#[test]
fn stride2_pair_rows_match_the_row_then_the_packing() {
    let mut kernels = vec![Kernel::Scalar];
    kernels.extend(bf16_host());
    let mut x = data(2 * 70, 93);
    x[..6].copy_from_slice(&[1.0 + 1.0 / 256.0, f32::NAN, 1e-40, f32::INFINITY, -f32::INFINITY, -(1.0 + 3.0 / 256.0)]);
    for w in [1usize, 2, 7, 14, 15, 16, 17, 31, 33, 56, 70] {
        let (lo, hi) = (&x[..w], &x[70..70 + w]);
        for n in [1usize, 3, 7, 8, 15, 16, 17, 29, 36] {
            for (lx, hx) in [(0isize, 0isize), (-1, -1), (-3, -3), (1, 1), (-1, 2), (0, -2)] {
                for with_hi in [true, false] {
                    let (mut l, mut h) = (vec![f32::NAN; n], vec![0f32; n]);
                    Kernel::Scalar.stride2_row(&mut l, lo, lx);
                    if with_hi {
                        Kernel::Scalar.stride2_row(&mut h, hi, hx);
                    }
                    let mut want = vec![0u32; n];
                    Kernel::Scalar.pack_pairs(&l, &h, &mut want);
                    for &k in &kernels {
                        let mut got = vec![0xdead_beefu32; n];
                        k.pack_pairs_stride2((lo, lx), with_hi.then_some((hi, hx)), &mut got);
                        assert_eq!(got, want, "{k:?}: width {w}, {n} columns, starts {lx} {hx}, high row {with_hi}");
                        // Both column phases in one pass: the even one as above, the odd one
                        // as a call one column further.
                        let mut odd_want = vec![0u32; n];
                        Kernel::Scalar.pack_pairs_stride2((lo, lx + 1), with_hi.then_some((hi, hx + 1)), &mut odd_want);
                        let (mut even, mut odd) = (vec![0xdead_beefu32; n], vec![0xdead_beefu32; n]);
                        k.pack_pairs_stride2_both((lo, lx), with_hi.then_some((hi, hx)), &mut even, &mut odd);
                        assert_eq!((even, odd), (want.clone(), odd_want), "{k:?}: both phases, width {w}, {n} columns, starts {lx} {hx}, high row {with_hi}");
                    }
                }
            }
        }
    }
}

/// A block's channel pairs in one call: the scalar pair packing row pair by row pair, an odd
/// row count's last high half 0, the columns past `cols` 0, on every width and tail.
#[test]
fn pair_rows_match_the_pair_packing() {
    let Some(fast) = bf16_host() else { return };
    let mut x = data(7 * 70, 91);
    // Rounding ties, a NaN, a subnormal and infinities among them.
    x[..6].copy_from_slice(&[1.0 + 1.0 / 256.0, f32::NAN, 1e-40, f32::INFINITY, -f32::INFINITY, -(1.0 + 3.0 / 256.0)]);
    for (rows, cols, width) in [(7usize, 49usize, 64usize), (6, 48, 48), (1, 1, 16), (5, 17, 32), (7, 33, 48), (2, 16, 16)] {
        let (stride, pairs) = (70, rows.div_ceil(2));
        let mut want = vec![0u32; pairs * width];
        let zeros = vec![0f32; cols];
        for j in 0..pairs {
            let hi = if 2 * j + 1 < rows { &x[(2 * j + 1) * stride..][..cols] } else { &zeros[..] };
            Kernel::Scalar.pack_pairs(&x[2 * j * stride..][..cols], hi, &mut want[j * width..j * width + cols]);
        }
        for k in [Kernel::Scalar, fast] {
            let mut got = vec![0xdead_beefu32; pairs * width];
            k.pack_pair_rows(&x, stride, rows, pairs, cols, width, &mut got);
            assert_eq!(got, want, "{k:?}: {rows} rows, {cols} of {width} columns");
        }
    }
}

/// The implicit bf16 conv on every kernel this host has (the `vdpbf16ps` register tile and its
/// scalar twin; AMX tiles where the CPU has AMX-BF16) against the f64 reference on the
/// bf16-rounded input and weights, within [`amx::error_bound`] of each element's absolute
/// sum: channel tails around the 4-, 8- and 16-row tiles and the 32-channel K steps, kernel
/// sizes, strides, pads, dilations, maps narrower and wider than one and three 16-pixel
/// vectors, batches, residuals, activations, 1 and 2 threads. A dropped, shifted or doubled
/// tap breaks the bound by orders of magnitude. The `vdpbf16ps` tiles, with pixels and with
/// channels on their lanes, must also equal the scalar twin bit for bit, and so must the
/// twin over channel-lane weights.
#[test]
fn implicit_conv_matches_the_reference_on_rounded_operands() {
    let twin = PlaneKernel::Dot(DotKernel::Scalar);
    let mut kernels = vec![twin];
    match kestrel::cpu::bgemm::Bf16Token::new() {
        Some(t) => kernels.push(PlaneKernel::Dot(DotKernel::Avx512Bf16(t))),
        None => eprintln!("SKIP the vdpbf16ps implicit conv: this CPU lacks AVX512_BF16 (its scalar twin runs)"),
    }
    match amx::AmxToken::new() {
        Some(t) => kernels.push(PlaneKernel::Amx(t)),
        None => eprintln!("SKIP the AMX bf16 conv: this CPU (or OS) has no AMX-BF16, or KESTREL_AMX=0"),
    }
    println!("bf16 implicit conv kernels: {:?}", kernels.iter().map(|k| k.name()).collect::<Vec<_>>());
    let mut seed = 9100;
    let (mut checked, mut worst) = (0, 0f64);
    let cases: &[(usize, usize, [usize; 2], usize, usize, usize, usize)] = &[
        // (cin, cout, hw, k, stride, pad, dil)
        (16, 16, [9, 11], 3, 1, 1, 1),
        (17, 33, [7, 7], 3, 2, 1, 1),
        (32, 1, [15, 17], 1, 1, 0, 1),
        (33, 17, [6, 5], 3, 1, 2, 2),
        (64, 64, [14, 14], 3, 1, 1, 1),
        (64, 31, [3, 3], 3, 1, 1, 1),
        (48, 65, [1, 1], 1, 1, 0, 1),
        (40, 24, [2, 2], 3, 1, 1, 1),
        (96, 40, [23, 21], 7, 2, 3, 1),
        (64, 130, [28, 28], 1, 2, 0, 1),
        (20, 7, [31, 33], 2, 2, 0, 1),
        (128, 32, [8, 40], 3, 1, 1, 1),
        // Few input channels: the kernel's columns fold into the K steps.
        (3, 64, [37, 35], 7, 2, 3, 1),
        (3, 32, [19, 20], 3, 1, 1, 1),
        (1, 5, [12, 9], 3, 1, 2, 2),
        (5, 17, [11, 13], 2, 2, 0, 1),
        (15, 33, [10, 10], 5, 1, 2, 1),
        // Maps of 1, 2, 3, 4 and 5 vectors of virtual pixels; 8-row panel tails.
        (32, 9, [4, 4], 3, 1, 1, 1),
        (16, 23, [5, 5], 3, 1, 1, 1),
        (34, 8, [7, 7], 3, 1, 1, 1),
        (64, 25, [6, 12], 1, 1, 0, 1),
        (18, 7, [8, 9], 3, 1, 1, 1),
        // 4 vectors (7 × 7 of a 3 × 3 conv): 4-channel tiles, a channel tail of 1.
        (40, 13, [7, 7], 3, 1, 1, 1),
        (16, 4, [16, 16], 3, 2, 1, 1),
        // Pointwise convs, whose pixel blocks are rounded from the input as they run: an odd
        // channel count (the last pair's high half zero), 4-vector maps on 4-channel tiles,
        // three K steps, a short last block, more channels than pixels.
        (33, 20, [7, 7], 1, 1, 0, 1),
        (17, 40, [9, 13], 1, 1, 0, 1),
        (70, 24, [5, 11], 1, 1, 0, 1),
        (256, 16, [3, 5], 1, 1, 0, 1),
        // Over 128 pairs (over 8 K steps), an odd channel count on 4-channel tiles.
        (300, 24, [5, 9], 1, 1, 0, 1),
        (513, 12, [7, 7], 1, 1, 0, 1),
        // Channel lanes: three 64-channel panels and one of 16 lanes with 8 real channels,
        // 6-pixel tiles with a short last tile (49 = 8·6 + 1, 14 = 2·6 + 2).
        (64, 200, [7, 7], 3, 1, 1, 1),
        (130, 72, [2, 7], 1, 1, 0, 1),
    ];
    for &(cin, cout, hw, k, stride, pad, dil) in cases {
        for &(act, residual) in &[(None, false), (Some(Activation::Relu), true), (Some(Activation::Sigmoid), false), (Some(Activation::Clip(0.0, 6.0)), true)] {
            seed += 1;
            let Case { c, xs, os, x, res } = case(cin, cout, hw, k, stride, pad, dil, 1, act, residual, seed);
            assert!(amx::takes(&c));
            // The reference before the activation, and each element's absolute sum.
            let mut plain = c.clone();
            plain.act = None;
            plain.weight = Tensor::new(c.weight.shape().to_vec(), rounded(c.weight.data())).unwrap();
            let mut want = vec![f32::NAN; os.iter().product()];
            reference::conv2d_ref(&plain, &rounded(&x), xs, res.as_deref(), &mut want, os);
            let mut abs_conv = plain.clone();
            abs_conv.weight = Tensor::new(c.weight.shape().to_vec(), rounded(c.weight.data()).iter().map(|v| v.abs()).collect()).unwrap();
            abs_conv.bias = c.bias.as_ref().map(|b| b.iter().map(|v| v.abs()).collect());
            let abs_res = res.as_ref().map(|r| r.iter().map(|v| v.abs()).collect::<Vec<_>>());
            let mut abs_sum = vec![0f32; want.len()];
            reference::conv2d_ref(&abs_conv, &rounded(&x).iter().map(|v| v.abs()).collect::<Vec<_>>(), xs, abs_res.as_deref(), &mut abs_sum, os);
            let mut twin_out = Vec::new();
            // Each `vdpbf16ps` kernel with pixels and with channels on its lanes (convs that
            // fold their kernel columns keep pixels).
            let runs = kernels.iter().flat_map(|&k| {
                let lanes: &[Lanes] = if matches!(k, PlaneKernel::Dot(_)) { &[Lanes::Pixels, Lanes::Channels] } else { &[Lanes::Pixels] };
                lanes.iter().map(move |&l| (k, l))
            });
            for (kernel, lanes) in runs {
                for threads in [1, 2] {
                    let mut got = vec![f32::NAN; want.len()];
                    let mut scratch = Vec::new();
                    let packed = amx::pack_with(&c, kernel, lanes);
                    let fold = cin < 16 && k > 1;
                    assert_eq!(packed.lanes(), if fold { Lanes::Pixels } else { lanes });
                    let name = kernel.name_for(&packed);
                    amx::conv2d(kernel, &c, &packed, &x, xs, res.as_deref(), &mut got, os, &mut scratch, threads);
                    // The residual already in the output buffer (the executor's in-place
                    // residual): the same values, bit for bit.
                    if let Some(r) = &res {
                        let mut onto = r.clone();
                        amx::conv2d_onto(kernel, &c, &packed, &x, xs, &mut onto, os, &mut scratch, threads);
                        if let Some(i) = (0..onto.len()).find(|&i| onto[i].to_bits() != got[i].to_bits()) {
                            panic!("{name} cin{cin} cout{cout} hw{hw:?} k{k} s{stride} t{threads} onto its residual: element {i} is {} but {} with a separate residual", onto[i], got[i]);
                        }
                    }
                    for (i, ((&g, &w), &s)) in got.iter().zip(&want).zip(&abs_sum).enumerate() {
                        let w = act.map_or(w, |a| a.apply(w));
                        let bound = amx::error_bound(cin * k * k, f64::from(s));
                        let err = (f64::from(g) - f64::from(w)).abs();
                        assert!(err <= bound, "{name} cin{cin} cout{cout} hw{hw:?} k{k} s{stride} p{pad} d{dil} {act:?} res{residual} t{threads} at {i}: {g} vs {w} (bound {bound:e})");
                        worst = worst.max(err / (f64::from(f32::EPSILON) / 2.0 * f64::from(s)).max(f64::MIN_POSITIVE));
                    }
                    if kernel == twin && lanes == Lanes::Pixels {
                        twin_out = got;
                    } else if matches!(kernel, PlaneKernel::Dot(_)) {
                        let same = got.iter().zip(&twin_out).all(|(a, b)| a.to_bits() == b.to_bits());
                        assert!(same, "{name} differs from the scalar twin on pixel lanes: cin{cin} cout{cout} hw{hw:?} k{k} s{stride} p{pad} d{dil} {act:?} res{residual} t{threads}");
                    }
                    checked += 1;
                }
            }
        }
    }
    // Grouped convs and 1×1 convs of few channels stay on the vdpbf16ps path.
    assert!(!amx::takes(&Conv2d::new(Tensor::new(vec![8, 2, 3, 3], data(144, 1)).unwrap(), 1, 1, 4)));
    assert!(!amx::takes(&Conv2d::new(Tensor::new(vec![8, 8, 1, 1], data(64, 1)).unwrap(), 1, 0, 1)));
    println!("implicit bf16 conv: {checked} runs within the bound; worst error {worst:.2} units of 2^-24 of the absolute sum");
}

/// Winograd F(2×2, 3×3) and F(4×4, 3×3) in bf16 (`cpu::wino` on the bf16 kernels): the
/// `vdpbf16ps` build equal to its scalar twin bit for bit, 1, 2 and 3 threads (parts sharing a
/// block's pairs in 2 or 3 chunks), and both within a bound of the f64
/// reference conv on the *unrounded* operands: the products are of bf16-rounded transformed
/// operands, so each output is off by at most a few bf16 roundings of its terms, stated as
/// `bound · 2⁻⁸ · Σ|w·x|` (the absolute sum of the direct conv's products, bias and
/// residual): 2 for F(2×2) (worst seen 0.59), 16 for F(4×4), whose transforms scale the
/// rounded operands by up to 100 (worst seen 10.6). Channel tails around the 8-row panels and
/// the 128-pair K blocks (odd channel counts pair the last row with zeros), column panels of
/// 1–3 vectors, batches crossing images, pads 0–2, residuals and activations.
#[test]
fn winograd_bf16_matches_its_twin_and_the_reference() {
    use kestrel::cpu::wino::{self, Exec};
    const VARIANTS: [(wino::Variant, f64); 2] = [(wino::Variant::F2, 2.0), (wino::Variant::F4, 16.0)];
    let mut kernels = vec![Kernel::Scalar];
    kernels.extend(bf16_host());
    let mut seed = 9300;
    let (mut checked, mut worst) = (0, [0f64; 2]);
    let cases: &[(usize, usize, usize, [usize; 2], usize)] = &[
        // (n, cin, cout, hw, pad)
        (1, 128, 128, [16, 16], 1),
        (2, 33, 17, [7, 9], 1),
        (1, 257, 130, [10, 12], 1),
        (3, 64, 72, [5, 6], 0),
        (1, 300, 9, [14, 14], 2),
        (1, 16, 40, [40, 38], 1),
        // 100 tiles in two blocks of 48 and 52 (one and two column panels, the shared V sized
        // for 64), each block's output channels split and its V shared in chunks of pairs at
        // 3 threads.
        (1, 64, 64, [20, 20], 1),
    ];
    for &(n, cin, cout, hw, pad) in cases {
        for &(act, residual) in &[(None, false), (Some(Activation::Relu), true), (Some(Activation::Sigmoid), false)] {
            seed += 1;
            let Case { c, os, x, res, .. } = case(cin, cout, hw, 3, 1, pad, 1, 1, act, residual, seed);
            let (xs, os) = ([n, cin, hw[0], hw[1]], [n, cout, os[2], os[3]]);
            let x: Vec<f32> = x.iter().cycle().take(xs.iter().product()).copied().collect();
            let res: Option<Vec<f32>> = res.map(|r| r.iter().cycle().take(os.iter().product()).copied().collect());
            let mut plain = c.clone();
            plain.act = None;
            let mut want = vec![f32::NAN; os.iter().product()];
            reference::conv2d_ref(&plain, &x, xs, res.as_deref(), &mut want, os);
            let mut abs_conv = plain.clone();
            abs_conv.weight = Tensor::new(c.weight.shape().to_vec(), c.weight.data().iter().map(|v| v.abs()).collect()).unwrap();
            abs_conv.bias = c.bias.as_ref().map(|b| b.iter().map(|v| v.abs()).collect());
            let abs_res = res.as_ref().map(|r| r.iter().map(|v| v.abs()).collect::<Vec<_>>());
            let mut abs_sum = vec![0f32; want.len()];
            reference::conv2d_ref(&abs_conv, &x.iter().map(|v| v.abs()).collect::<Vec<_>>(), xs, abs_res.as_deref(), &mut abs_sum, os);
            for (vi, &(variant, bound)) in VARIANTS.iter().enumerate() {
                let packed = wino::pack_bf16(&c, variant);
                let mut twin_out: Vec<f32> = Vec::new();
                for &kernel in &kernels {
                    for threads in [1, 2, 3] {
                        let mut got = vec![f32::NAN; want.len()];
                        let mut scratch = Vec::new();
                        wino::conv2d(Exec::Bf16(kernel), &c, &packed, &x, xs, res.as_deref(), &mut got, os, &mut scratch, threads);
                        let what = format!("{} {variant:?} n{n} cin{cin} cout{cout} hw{hw:?} p{pad} {act:?} res{residual} t{threads}", kernel.name());
                        for (i, ((&g, &w), &s)) in got.iter().zip(&want).zip(&abs_sum).enumerate() {
                            let w = act.map_or(w, |a| a.apply(w));
                            let unit = f64::from(s) / 256.0;
                            let err = (f64::from(g) - f64::from(w)).abs();
                            assert!(err <= bound * unit, "{what} at {i}: {g} vs {w} (bound {:e})", bound * unit);
                            worst[vi] = worst[vi].max(err / unit.max(f64::MIN_POSITIVE));
                        }
                        if twin_out.is_empty() {
                            twin_out = got;
                        } else {
                            let same = got.iter().zip(&twin_out).all(|(a, b)| a.to_bits() == b.to_bits());
                            assert!(same, "{what}: differs from the scalar twin");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("bf16 Winograd: {checked} runs on {:?} within the bounds; worst error F(2x2) {:.3}, F(4x4) {:.3} units of 2^-8 of the absolute sum", kernels.iter().map(|k| k.name()).collect::<Vec<_>>(), worst[0], worst[1]);
}

/// The plan takes bf16 Winograd on the 3×3 stride-1 convs of at least 128 channels (under the
/// Zen 4 rules 64) whose batch has at least `BF16_MIN_TILES` tiles, and the direct bf16 convs
/// elsewhere: a ResNet-18 of base width 64 at 64² has its 64-channel convs at 16² (64 tiles per
/// image) and its 128-channel ones at 8² (16), so batch 1 takes none (Zen 4: layer1's four)
/// and batch 4 takes layer2's three (Zen 4: and layer1's four). Both agree with f32 and with
/// bf16 without Winograd.
#[test]
fn bf16_winograd_runs_where_it_pays() {
    let g = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 64, image_size: 64, ..Default::default() }).build(&mut SeededWeights { seed: 5 }).unwrap();
    let on = match Session::new(g.clone(), &Options { threads: 2, bf16: true, ..Default::default() }) {
        Ok(s) => s,
        Err(e) => {
            assert!(bf16_host().is_none() || !selected_path_has_bf16(), "bf16 refused on a CPU with AVX512_BF16: {e}");
            return;
        }
    };
    let off = Session::new(g.clone(), &Options { threads: 2, bf16: true, winograd: false, ..Default::default() }).unwrap();
    let f32s = Session::new(g, &Options { threads: 2, ..Default::default() }).unwrap();
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (n(a) * n(b))
    };
    // None where Winograd is off (`KESTREL_WINOGRAD=0`, or a path without kestrel's FP32
    // kernels, as `KESTREL_ISA=scalar`) or the direct convs run on AMX tiles.
    let wino_on = std::env::var("KESTREL_WINOGRAD").map_or(true, |v| v != "0")
        && kestrel::cpu::detect::selected().is_ok_and(|i| kestrel::cpu::sgemm::Kernel::for_isa(i).is_some())
        && amx::AmxToken::new().is_none();
    if !wino_on {
        eprintln!("SKIP the bf16 Winograd plan choice: Winograd off on this path, or AMX tiles take the bf16 convs");
    }
    let zen4 = kestrel::cpu::detect::tune().unwrap() == Tune::Zen4;
    let layer1 = if wino_on && zen4 { 4 } else { 0 };
    for (batch, expect) in [(1usize, layer1), (4, layer1 + if wino_on { 3 } else { 0 })] {
        let shape = vec![batch, 3, 64, 64];
        let labels = on.kernel_labels(std::slice::from_ref(&shape)).unwrap();
        let wino = labels.iter().filter(|l| l.contains("bf16 conv Winograd")).count();
        assert_eq!(wino, expect, "batch {batch}: {labels:?}");
        assert!(off.kernel_labels(std::slice::from_ref(&shape)).unwrap().iter().all(|l| !l.contains("Winograd")));
        let x = Tensor::randn(shape, 1.0, 11);
        let y = on.run(std::slice::from_ref(&x)).unwrap();
        let (yo, yf) = (off.run(std::slice::from_ref(&x)).unwrap(), f32s.run(std::slice::from_ref(&x)).unwrap());
        let (c_off, c_f32) = (cosine(y[0].data(), yo[0].data()), cosine(y[0].data(), yf[0].data()));
        println!("batch {batch}: {wino} bf16 Winograd convs; cosine against bf16 direct {c_off:.6}, against f32 {c_f32:.6}");
        assert!(c_off > 0.999 && c_f32 > 0.999, "batch {batch}: cosine {c_off} (bf16 direct), {c_f32} (f32)");
    }
}

/// bf16 Winograd F(4×4, 3×3) is opt-in (`Options::winograd_bf16_f4`, it rounds about six
/// times as much as F(2×2)) and then runs on the maps of 32² and more (`wino::bf16_variant`),
/// chosen by the run's maps: a ResNet-18 of base width 64 declared at 128² has layer1's four
/// 64-channel convs at 32² (bf16 Winograd under the Zen 4 rules only) and layer2's three
/// 128-channel ones at 16². Opted in, Zen 4 runs layer1's by F(4×4) and layer2's by F(2×2);
/// the same session at 64² (layer1 at 16², layer2 at 8², too few tiles) layer1's by F(2×2)
/// only; not opted in, F(2×2) only. Every
/// run agrees with f32 (cosine ≥ 0.999).
#[test]
fn bf16_winograd_f4_is_opt_in_and_follows_the_maps() {
    let g = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 64, image_size: 128, ..Default::default() }).build(&mut SeededWeights { seed: 7 }).unwrap();
    let opted = match Session::new(g.clone(), &Options { threads: 2, bf16: true, winograd_bf16_f4: true, ..Default::default() }) {
        Ok(s) => s,
        Err(e) => {
            assert!(bf16_host().is_none() || !selected_path_has_bf16(), "bf16 refused on a CPU with AVX512_BF16: {e}");
            return;
        }
    };
    let plain = Session::new(g.clone(), &Options { threads: 2, bf16: true, ..Default::default() }).unwrap();
    let f32s = Session::new(g, &Options { threads: 2, ..Default::default() }).unwrap();
    let env = std::env::var("KESTREL_WINOGRAD");
    let f4_on = env.as_ref().map_or(true, |v| v != "0" && v != "f2")
        && kestrel::cpu::detect::selected().is_ok_and(|i| kestrel::cpu::sgemm::Kernel::for_isa(i).is_some())
        && amx::AmxToken::new().is_none();
    if !f4_on {
        eprintln!("SKIP the bf16 F(4x4) plan choice: Winograd or F(4x4) off on this path, or AMX tiles take the bf16 convs");
    }
    let zen4 = kestrel::cpu::detect::tune().unwrap() == Tune::Zen4;
    let count = |ls: &[String], what: &str| ls.iter().filter(|l| l.contains(what)).count();
    let cosine = |a: &[f32], b: &[f32]| {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (n(a) * n(b))
    };
    // (session, side, bf16 F(4x4) convs, bf16 F(2x2) convs) where F(4×4) is on.
    let layer1 = usize::from(zen4) * 4;
    let env_f4 = env.is_ok_and(|v| v == "f4-bf16");
    for (name, s, side, f4, f2) in [("opted in", &opted, 128, layer1, 3), ("opted in", &opted, 64, 0, layer1), ("not opted in", &plain, 128, if env_f4 { layer1 } else { 0 }, if env_f4 { 3 } else { 3 + layer1 })] {
        let shape = vec![1, 3, side, side];
        let labels = s.kernel_labels(std::slice::from_ref(&shape)).unwrap();
        let (got4, got2) = (count(&labels, "bf16 conv Winograd F(4x4,3x3)"), count(&labels, "bf16 conv Winograd F(2x2,3x3)"));
        if f4_on {
            assert_eq!((got4, got2), (f4, f2), "{name} at {side}²: {labels:?}");
        } else {
            assert_eq!(got4, 0, "{name} at {side}²: {labels:?}");
        }
        let x = Tensor::randn(shape, 1.0, 12);
        let (y, yf) = (s.run(std::slice::from_ref(&x)).unwrap(), f32s.run(std::slice::from_ref(&x)).unwrap());
        let c = cosine(y[0].data(), yf[0].data());
        println!("{name} at {side}²: bf16 Winograd F(4x4) {got4}, F(2x2) {got2}; cosine against f32 {c:.6}");
        assert!(c > 0.999, "{name} at {side}²: cosine {c}");
    }
}

/// A bf16 session runs the 3×3 convs that FP32 Winograd F(4×4) runs faster
/// (`wino::f4_beats_bf16`: maps of 64² to 128² with at most 128 channels, larger ones with at
/// most 32 input channels) on it, chosen by the run's maps whatever the declared size chose:
/// the built-in UNet (declared 256², base width 32) at 256² takes it for `inc`'s 32-channel
/// conv and `down1`'s, not for `up4`'s 64 → 32 one or `down3`'s (32² maps); at 128² for
/// `up4`'s too, not for `down2`'s (32²); at 64² not for `down1`'s (32²). Each size agrees
/// with f32.
#[test]
fn bf16_sessions_take_f32_f4_where_it_is_faster() {
    let g = kestrel::models::builtin("unet", 0).unwrap();
    let on = match Session::new(g.clone(), &Options { threads: 2, bf16: true, ..Default::default() }) {
        Ok(s) => s,
        Err(e) => {
            assert!(bf16_host().is_none() || !selected_path_has_bf16(), "bf16 refused on a CPU with AVX512_BF16: {e}");
            return;
        }
    };
    // (`KESTREL_WINOGRAD=f4-bf16` runs the wide ones by bf16 F(4×4) instead.)
    let f4_on = std::env::var("KESTREL_WINOGRAD").map_or(true, |v| v != "0" && v != "f2" && v != "f4-bf16")
        && kestrel::cpu::detect::selected().is_ok_and(|i| kestrel::cpu::sgemm::Kernel::for_isa(i).is_some_and(|k| k.geometry().lanes > 8))
        && amx::AmxToken::new().is_none();
    if !f4_on {
        eprintln!("SKIP the bf16 plan's F(4×4) choice: F(4×4) off on this path (or bf16 F(4×4) on), or AMX tiles take the bf16 convs");
        return;
    }
    let f32s = Session::new(g, &Options { threads: 2, ..Default::default() }).unwrap();
    let names: Vec<String> = on.graph().nodes.iter().map(|n| n.name.clone()).collect();
    let label = |labels: &[String], name: &str| labels[names.iter().position(|n| n == name).unwrap_or_else(|| panic!("no node {name}"))].clone();
    let f4 = |l: &str| l.starts_with("f32 conv Winograd F(4x4");
    let cases: [(usize, &[&str], &[&str]); 3] = [
        (256, &["inc.double_conv.3", "down1.maxpool_conv.1.double_conv.0", "up4.conv.double_conv.3"], &["up4.conv.double_conv.0", "down3.maxpool_conv.1.double_conv.0"]),
        (128, &["inc.double_conv.3", "up4.conv.double_conv.0", "up4.conv.double_conv.3"], &["down2.maxpool_conv.1.double_conv.0"]),
        (64, &["inc.double_conv.3", "up4.conv.double_conv.0"], &["down1.maxpool_conv.1.double_conv.0"]),
    ];
    for (hw, want, not) in cases {
        let shape = vec![1, 3, hw, hw];
        let labels = on.kernel_labels(std::slice::from_ref(&shape)).unwrap();
        for name in want {
            assert!(f4(&label(&labels, name)), "{hw}²: {name} runs on {}", label(&labels, name));
        }
        for name in not {
            let l = label(&labels, name);
            assert!(!f4(&l) && l.contains("bf16"), "{hw}²: {name} runs on {l}");
        }
        let x = Tensor::randn(shape, 1.0, 21);
        let (y, yf) = (on.run(std::slice::from_ref(&x)).unwrap(), f32s.run(std::slice::from_ref(&x)).unwrap());
        let dot: f64 = y[0].data().iter().zip(yf[0].data()).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum();
        let norm = |v: &[f32]| v.iter().map(|a| f64::from(*a).powi(2)).sum::<f64>().sqrt();
        let cosine = dot / (norm(y[0].data()) * norm(yf[0].data()));
        println!("UNet {hw}² in bf16: {} convs on f32 F(4×4); cosine against f32 {cosine:.6}", labels.iter().filter(|l| f4(l)).count());
        assert!(cosine > 0.999, "{hw}²: cosine {cosine}");
    }
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig { cases: 32, ..proptest::prelude::ProptestConfig::default() })]

    /// The `vdpbf16ps` conv with channels on its lanes (where the CPU has it; else its scalar
    /// twin over the same weights) equals the scalar twin with pixels on its lanes bit for bit:
    /// channel and pixel tails, kernels, strides, pads, dilations, residuals, 1 and 2 threads.
    #[test]
    fn channel_lanes_match_the_pixel_lane_twin(
        cin in 16usize..80, cout in 1usize..140, h in 1usize..13, w in 1usize..13, k in 1usize..4,
        stride in 1usize..3, pad in 0usize..3, dil in 1usize..3, residual in proptest::prelude::any::<bool>(), threads in 1usize..3, seed in 0u64..1000,
    ) {
        let eff = (k - 1) * dil + 1;
        proptest::prop_assume!(h + 2 * pad >= eff && w + 2 * pad >= eff);
        let Case { c, xs, os, x, res } = case(cin, cout, [h, w], k, stride, pad, dil, 1, Some(Activation::Relu), residual, seed);
        let twin = PlaneKernel::Dot(DotKernel::Scalar);
        let fast = kestrel::cpu::bgemm::Bf16Token::new().map_or(twin, |t| PlaneKernel::Dot(DotKernel::Avx512Bf16(t)));
        let run = |kernel: PlaneKernel, lanes: Lanes| {
            let packed = amx::pack_with(&c, kernel, lanes);
            let mut got = vec![f32::NAN; os.iter().product()];
            amx::conv2d(kernel, &c, &packed, &x, xs, res.as_deref(), &mut got, os, &mut Vec::new(), threads);
            got
        };
        let want = run(twin, Lanes::Pixels);
        for (kernel, lanes) in [(fast, Lanes::Channels), (twin, Lanes::Channels)] {
            let got = run(kernel, lanes);
            let diff = got.iter().zip(&want).position(|(a, b)| a.to_bits() != b.to_bits());
            proptest::prop_assert!(diff.is_none(), "{} cin{cin} cout{cout} {h}x{w} k{k} s{stride} p{pad} d{dil} res{residual} t{threads}: element {diff:?}", kernel.name_for(&amx::pack_with(&c, kernel, lanes)));
        }
    }
}

/// The bf16 fully connected layer (`cpu::blinear`): its `vdpbf16ps` kernel equal to the scalar
/// twin bit for bit (where the CPU has it), and both within [`amx::error_bound`] of the f64
/// product of the bf16-rounded operands: no inputs (bias only), widths around the 32-channel K steps, feature
/// counts around the 4-feature groups and 64-feature tasks, batches, bias or none, 1 and 2
/// threads. A dropped or doubled pair breaks the bound.
#[test]
fn bf16_linear_matches_its_twin_and_the_reference() {
    use kestrel::cpu::blinear;
    use kestrel::graph::Linear;
    let mut kernels = vec![Kernel::Scalar];
    kernels.extend(bf16_host());
    let mut seed = 9700;
    let mut checked = 0;
    for &inp in &[0usize, 1, 3, 31, 32, 33, 100, 2048] {
        for &out in &[1usize, 3, 5, 64, 65, 130] {
            for &(n, with_bias) in &[(1usize, true), (3, false)] {
                seed += 1;
                let l = Linear::new(Tensor::new(vec![out, inp], data(out * inp, seed)).unwrap(), with_bias.then(|| data(out, seed + 1)));
                let x = data(n * inp, seed + 2);
                let (w, xr) = (rounded(l.weight.data()), rounded(&x));
                let packed = blinear::pack(&l);
                let mut twin = Vec::new();
                for &k in &kernels {
                    for threads in [1, 2] {
                        let mut got = vec![f32::NAN; n * out];
                        blinear::linear(k, &packed, l.bias.as_deref(), &x, n, &mut got, threads);
                        for b in 0..n {
                            for o in 0..out {
                                let (mut exact, mut abs) = (0f64, 0f64);
                                for i in 0..inp {
                                    let p = f64::from(w[o * inp + i]) * f64::from(xr[b * inp + i]);
                                    exact += p;
                                    abs += p.abs();
                                }
                                if let Some(bias) = &l.bias {
                                    exact += f64::from(bias[o]);
                                    abs += f64::from(bias[o]).abs();
                                }
                                let g = got[b * out + o];
                                let bound = amx::error_bound(inp, abs);
                                assert!((f64::from(g) - exact).abs() <= bound, "{} in{inp} out{out} n{n} t{threads} [{b},{o}]: {g} vs {exact} (bound {bound:e})", k.name());
                            }
                        }
                        if k == Kernel::Scalar && threads == 1 {
                            twin = got;
                        } else {
                            assert!(got.iter().zip(&twin).all(|(a, b)| a.to_bits() == b.to_bits()), "{} in{inp} out{out} n{n} t{threads} differs from the scalar twin", k.name());
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("bf16 linear: {checked} runs within the bound and equal to the twin");
}

/// Which convs `amx::pack_for_map` turns onto channel lanes: at least 1024 products per output
/// and 256 output channels on maps of at most 64 pixels (ResNet-50's layer4 3×3 convs and
/// its 2048 → 512 1×1 ones), nothing else; without a known map, pixel lanes.
#[test]
fn channel_lanes_are_chosen_for_wide_convs_on_small_maps() {
    let conv = |cin: usize, cout: usize, k: usize| Conv2d::new(Tensor::new(vec![cout, cin, k, k], data(cout * cin * k * k, 5)).unwrap(), 1, k / 2, 1);
    let kernel = PlaneKernel::Dot(DotKernel::Scalar);
    let lanes = |c: &Conv2d, map: Option<[usize; 2]>| amx::pack_for_map(c, kernel, map).lanes();
    assert_eq!(lanes(&conv(512, 512, 3), Some([7, 7])), Lanes::Channels);
    assert_eq!(lanes(&conv(384, 392, 3), Some([8, 8])), Lanes::Channels);
    assert_eq!(lanes(&conv(512, 512, 3), None), Lanes::Pixels);
    assert_eq!(lanes(&conv(256, 256, 3), Some([14, 14])), Lanes::Pixels);
    assert_eq!(lanes(&conv(16, 16, 3), Some([8, 8])), Lanes::Pixels);
    assert_eq!(lanes(&conv(2048, 512, 1), Some([7, 7])), Lanes::Channels);
    assert_eq!(lanes(&conv(512, 2048, 1), Some([7, 7])), Lanes::Pixels);
    assert_eq!(lanes(&conv(3, 512, 3), Some([7, 7])), Lanes::Pixels);
}

/// A ResNet-18 of base width 16 on 32 × 32 inputs (the trained shapes-resnet18's shape) in
/// bf16, one image and a batch of 6: its small maps take the FP32 small-map paths on rounded
/// operands (`Step::BLanes`, `Step::BPos`), the block convs onto their residual in the output
/// buffer, and the outputs stay within cosine 0.9995 of f32 (0.99996 and 0.99980 here, as
/// on the bf16 kernels' paths before; each such conv is bit for bit its reference on rounded
/// operands: `tiny_maps_run_bf16_on_the_fma_kernel_exactly`).
#[test]
fn small_maps_in_bf16_take_the_fp32_small_map_paths() {
    if bf16_host().is_none() || !selected_path_has_bf16() {
        return;
    }
    let cfg = ModelConfig::ResNet(ResNetConfig { depth: 18, num_classes: 10, in_channels: 3, base_width: 16, image_size: 32, ..Default::default() });
    let g = cfg.build(&mut SeededWeights { seed: 7 }).unwrap();
    let kernels = kestrel::cpu::kernels::Kernels::select().unwrap();
    for batch in [1, 6] {
        let x = Tensor::new(vec![batch, 3, 32, 32], data(batch * 3 * 32 * 32, 11 + batch as u64)).unwrap();
        let b = Session::new(g.clone(), &Options { threads: 2, optimize: true, bf16: true, ..Default::default() }).unwrap();
        let f = Session::new(g.clone(), &Options { threads: 2, optimize: true, ..Default::default() }).unwrap();
        let labels = b.kernel_labels(&[x.shape().to_vec()]).unwrap();
        let fma = labels.iter().filter(|l| l.contains("on f32 FMA") && (l.contains("channels in lanes") || l.contains("by position"))).count();
        println!("batch {batch}: {fma} of {} layers on the FP32 small-map paths: {labels:?}", labels.len());
        if kernels.sgemm.is_some_and(|k| k.runs_lanes()) {
            assert!(fma >= 5, "batch {batch}: {labels:?}");
        }
        let got = b.run(std::slice::from_ref(&x)).unwrap().remove(0);
        let reference = f.run(std::slice::from_ref(&x)).unwrap().remove(0);
        let m = kestrel::parity::compare(&got, &reference);
        println!("batch {batch}: cosine {} and relative L2 {} against f32", m.cosine, m.rel_l2);
        assert!(m.cosine > 0.9995, "batch {batch}: cosine {} against f32", m.cosine);
    }
}
