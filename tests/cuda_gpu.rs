//! The CUDA kernels on a GPU (feature `cuda`): every kernel of `kernels/` against its CPU
//! reference twin (`kestrel::cpu::reference`, `kestrel::cpu::pool`) on seeded data that is not
//! all zero, over tails (pixel counts off the 64-row tile, channels off the 32-wide tile),
//! strides, pads (asymmetric too), dilations, groups and every fused epilogue. Inputs are
//! rounded to f16 before the CPU twin sees them, so both compute on the same values.
//!
//! Tolerances, per op:
//! - layout conversion, channel copy, nearest resize, max pooling: bit for bit;
//! - FP16 convs (tensor-core and direct) and the transposed conv: `|y − ref| ≤ 2⁻¹⁰·|ref| +
//!   10⁻⁴·Σ|x·w|` (the f16 output's rounding plus f32 accumulation in another order);
//! - the f32 analytic conv: `≤ 10⁻⁵·Σ|x·w| + 10⁻⁶`;
//! - average pooling, bilinear resize: one f16 step (`2⁻¹⁰·|ref|`) plus 10⁻⁶;
//! - global average pooling, linear, softmax (f32 out): `10⁻⁵` relative to the row's scale.
//!
//! Without a GPU (no driver, no device) or without NVRTC each test prints SKIP and returns,
//! unless `KESTREL_REQUIRE_GPU` is set (the GPU machine's script sets it), where that fails.
#![cfg(feature = "cuda")]

use std::sync::OnceLock;

use kestrel::cpu::reference::{conv2d_ref, conv_transpose2d_ref, linear_ref, pool2d_ref, resize_ref};
use kestrel::cuda::cudarc::driver::{CudaSlice, LaunchConfig, PushKernelArg};
use kestrel::cuda::{Gpu, Nvrtc};
use kestrel::graph::{Activation, CoordMode, Conv2d, ConvTranspose2d, Linear, NearestMode, Pool2d, Precision, Resize, ResizeMode, ResizeTarget};
use kestrel::rng::Rng;
use kestrel::Tensor;

fn gpu(test: &str) -> Option<&'static Gpu> {
    static GPU: OnceLock<Result<Gpu, String>> = OnceLock::new();
    let g = GPU.get_or_init(|| {
        let nvrtc = Nvrtc::load().map_err(|e| e.to_string())?;
        let g = Gpu::open(0, &nvrtc).map_err(|e| e.to_string())?;
        let (major, minor) = nvrtc.version().map_err(|e| e.to_string())?;
        println!("GPU: {} (sm_{}{}, {:.1} GiB), NVRTC {major}.{minor} from {}", g.info.name, g.info.capability.0, g.info.capability.1, g.info.memory_bytes as f64 / (1u64 << 30) as f64, nvrtc.path);
        Ok(g)
    });
    match g {
        Ok(g) => Some(g),
        Err(e) => {
            assert!(std::env::var_os("KESTREL_REQUIRE_GPU").is_none(), "{test}: a GPU is required (KESTREL_REQUIRE_GPU): {e}");
            eprintln!("SKIP {test}: {e}");
            None
        }
    }
}

/// `len` values uniform in [-1, 1], rounded to f16 (what the kernels store).
fn data16(rng: &mut Rng, len: usize) -> Vec<f32> {
    (0..len).map(|_| round16(rng.range(-1.0, 1.0))).collect()
}

fn round16(v: f32) -> f32 {
    half::f16::from_f32(v).to_f32()
}

fn to_nhwc(x: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut y = vec![0.0; x.len()];
    for b in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                y[(b * h * w + p) * c + ch] = x[(b * c + ch) * h * w + p];
            }
        }
    }
    y
}

fn to_nchw(y: &[f32], [n, c, h, w]: [usize; 4]) -> Vec<f32> {
    let mut x = vec![0.0; y.len()];
    for b in 0..n {
        for ch in 0..c {
            for p in 0..h * w {
                x[(b * c + ch) * h * w + p] = y[(b * h * w + p) * c + ch];
            }
        }
    }
    x
}

/// Launches `kernel` with the arguments `$body` pushes onto `$b`, then waits for it.
macro_rules! launch {
    ($g:expr, $kernel:expr, $cfg:expr, |$b:ident| $body:block) => {{
        let kernel: &str = $kernel;
        let f = $g.function(kernel).unwrap();
        let mut $b = $g.stream.launch_builder(f);
        $body
        // SAFETY: the body pushes exactly the kernel's parameters in order (device buffers
        // sized by the caller for the shapes it passes, i32 shapes, f32 scalars, a u64 0 for a
        // null pointer).
        unsafe { $b.launch($cfg) }.unwrap_or_else(|e| panic!("{kernel}: launch: {e}"));
        $g.synchronize().unwrap_or_else(|e| panic!("{kernel}: {e}"));
    }};
}

/// Pushes a conv kernel's parameters: input, weights, bias and residual (each `Option`, a null
/// pointer when absent), output, the i32 shape arguments, then the epilogue's activation code
/// and its two constants.
macro_rules! conv_args {
    ($b:ident, $x:ident, $w:ident, $bias:ident, $res:ident, $y:ident, $ints:expr, $act:ident, $alpha:ident, $beta:ident) => {{
        $b.arg(&$x).arg(&$w);
        match &$bias {
            Some(d) => $b.arg(d),
            None => $b.arg(&NULL),
        };
        match &$res {
            Some(d) => $b.arg(d),
            None => $b.arg(&NULL),
        };
        $b.arg(&mut $y);
        for v in $ints {
            $b.arg(v);
        }
        $b.arg(&$act).arg(&$alpha).arg(&$beta);
    }};
}

fn elems(total: usize) -> LaunchConfig {
    LaunchConfig { grid_dim: (total.div_ceil(256) as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }
}

/// Asserts `|got − want| ≤ tol(i)` everywhere; prints the largest error against its bound.
fn check(what: &str, got: &[f32], want: &[f32], tol: impl Fn(usize) -> f32) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0.0f32, 0usize);
    for i in 0..got.len() {
        let (e, t) = ((got[i] - want[i]).abs(), tol(i));
        assert!(e <= t, "{what}: element {i}: GPU {} against the CPU twin's {} (error {e:e}, bound {t:e})", got[i], want[i]);
        if t > 0.0 && e / t > worst.0 {
            worst = (e / t, i);
        }
    }
    assert!(want.iter().any(|&v| v != 0.0), "{what}: the reference is all zero");
    println!("  {what}: {} values, worst error {:.2} of its bound", got.len(), worst.0);
}

const NULL: u64 = 0;

/// One conv case: `[n, cin, h, w]`, cout, kernel, stride, pads `[top, left, bottom, right]`,
/// dilation, groups, bias, residual, activation.
#[derive(Clone, Copy, Debug)]
struct ConvCase {
    x: [usize; 4],
    cout: usize,
    k: [usize; 2],
    stride: [usize; 2],
    pads: [usize; 4],
    dilation: [usize; 2],
    groups: usize,
    bias: bool,
    residual: bool,
    act: Option<Activation>,
}

impl ConvCase {
    fn out(&self) -> [usize; 4] {
        let [n, _, h, w] = self.x;
        let o = |len: usize, k: usize, s: usize, d: usize, p0: usize, p1: usize| (len + p0 + p1 - d * (k - 1) - 1) / s + 1;
        [n, self.cout, o(h, self.k[0], self.stride[0], self.dilation[0], self.pads[0], self.pads[2]), o(w, self.k[1], self.stride[1], self.dilation[1], self.pads[1], self.pads[3])]
    }

    /// The conv, its input, its residual (NCHW) and Σ|x·w| per output, the scale of its
    /// rounding error.
    fn build(&self, rng: &mut Rng) -> (Conv2d, Vec<f32>, Option<Vec<f32>>, Vec<f32>) {
        let [_, cin, _, _] = self.x;
        let wshape = vec![self.cout, cin / self.groups, self.k[0], self.k[1]];
        let weight = data16(rng, wshape.iter().product());
        let conv = Conv2d {
            weight: Tensor::new(wshape, weight).unwrap(),
            bias: self.bias.then(|| (0..self.cout).map(|_| rng.range(-0.5, 0.5)).collect()),
            stride: self.stride,
            pads: self.pads,
            dilation: self.dilation,
            groups: self.groups,
            act: self.act,
            residual: self.residual,
            precision: Precision::F32,
        };
        let x = data16(rng, self.x.iter().product());
        let os = self.out();
        let residual = self.residual.then(|| data16(rng, os.iter().product()));
        let absx: Vec<f32> = x.iter().map(|v| v.abs()).collect();
        let abs_conv = Conv2d { weight: Tensor::new(conv.weight.shape().to_vec(), conv.weight.data().iter().map(|v| v.abs()).collect()).unwrap(), bias: None, act: None, residual: false, ..conv.clone() };
        let mut scale = vec![0.0; os.iter().product()];
        conv2d_ref(&abs_conv, &absx, self.x, None, &mut scale, os);
        (conv, x, residual, scale)
    }
}

fn act_code(a: Option<Activation>) -> (i32, f32, f32) {
    match a {
        None => (0, 0.0, 0.0),
        Some(Activation::Relu) => (1, 0.0, 0.0),
        Some(Activation::LeakyRelu(al)) => (2, al, 0.0),
        Some(Activation::Sigmoid) => (3, 0.0, 0.0),
        Some(Activation::Clip(lo, hi)) => (4, lo, hi),
        Some(other) => panic!("no GPU epilogue for {other:?}"),
    }
}

/// Runs an FP16 NHWC conv kernel (`conv2d_nhwc_f16_mma` or `_direct`) on `case` and checks it
/// against `conv2d_ref` on the same f16 values.
fn check_f16_conv(g: &Gpu, kernel: &str, case: ConvCase, seed: u64) {
    let mut rng = Rng::new(seed);
    let (conv, x, residual, scale) = case.build(&mut rng);
    let os = case.out();
    let mut want = vec![0.0; os.iter().product()];
    conv2d_ref(&conv, &x, case.x, residual.as_deref(), &mut want, os);
    let [n, cin, h, w] = case.x;
    let [_, cout, oh, ow] = os;
    // KRSC: [cout][kh][kw][cin/g].
    let (cin_g, [kh, kw]) = (cin / case.groups, case.k);
    let wd = conv.weight.data();
    let mut krsc = vec![0.0; wd.len()];
    for co in 0..cout {
        for ci in 0..cin_g {
            for t in 0..kh * kw {
                krsc[(co * kh * kw + t) * cin_g + ci] = wd[(co * cin_g + ci) * kh * kw + t];
            }
        }
    }
    let dx = g.upload_f16(&to_nhwc(&x, case.x)).unwrap();
    let dw = g.upload_f16(&krsc).unwrap();
    let db = conv.bias.as_ref().map(|b| g.upload_f32(b).unwrap());
    let dr = residual.as_ref().map(|r| g.upload_f16(&to_nhwc(r, os)).unwrap());
    let mut dy: CudaSlice<u16> = g.zeros(want.len()).unwrap();
    let (act, alpha, beta) = act_code(case.act);
    let ints = [n, h, w, cin, oh, ow, cout, kh, kw, case.stride[0], case.stride[1], case.pads[0], case.pads[1], case.dilation[0], case.dilation[1], case.groups].map(|v| v as i32);
    let mma = kernel == "conv2d_nhwc_f16_mma";
    let cfg = if mma { LaunchConfig { grid_dim: ((n * oh * ow).div_ceil(64) as u32, cout.div_ceil(32) as u32, 1), block_dim: (128, 1, 1), shared_mem_bytes: 0 } } else { elems(want.len()) };
    // The tensor-core kernel takes no groups argument (groups = 1 only).
    launch!(g, kernel, cfg, |b| {
        conv_args!(b, dx, dw, db, dr, dy, if mma { &ints[..15] } else { &ints[..] }, act, alpha, beta);
    });
    let got = to_nchw(&g.download_f16(&dy).unwrap(), os);
    check(&format!("{kernel} {case:?}"), &got, &want, |i| want[i].abs() / 1024.0 + 1e-4 * scale[i] + 1e-6);
}

fn conv(x: [usize; 4], cout: usize, k: usize, stride: usize, pad: usize, dilation: usize, groups: usize) -> ConvCase {
    ConvCase { x, cout, k: [k, k], stride: [stride; 2], pads: [pad; 4], dilation: [dilation; 2], groups, bias: true, residual: false, act: None }
}

#[test]
fn tensor_core_conv_matches_the_cpu_twin() {
    let Some(g) = gpu("tensor_core_conv_matches_the_cpu_twin") else { return };
    let relu = Some(Activation::Relu);
    let cases = [
        conv([1, 16, 8, 8], 8, 3, 1, 1, 1, 1),
        // 126 pixels (off the 64-row tile), 24 channels (n-tile 3 of 4 absent).
        conv([2, 32, 9, 7], 24, 3, 1, 1, 1, 1),
        // 1×1 over 14², 40 channels: a second column block with one n-tile.
        ConvCase { act: relu, ..conv([1, 64, 14, 14], 40, 1, 1, 0, 1, 1) },
        conv([1, 16, 15, 17], 16, 3, 2, 1, 1, 1),
        conv([1, 32, 10, 10], 8, 3, 1, 2, 2, 1),
        // Residual and ReLU, as a bottleneck's last conv.
        ConvCase { residual: true, act: relu, ..conv([3, 48, 5, 5], 72, 3, 1, 1, 1, 1) },
        ConvCase { act: Some(Activation::LeakyRelu(0.1)), ..conv([1, 16, 7, 7], 8, 5, 1, 2, 1, 1) },
        // The stride-2 1×1 downsample, no bias.
        ConvCase { bias: false, ..conv([2, 32, 6, 6], 16, 1, 2, 0, 1, 1) },
        // Asymmetric pads, a non-square kernel, Sigmoid and Clip.
        ConvCase { k: [3, 1], pads: [0, 1, 2, 0], act: Some(Activation::Sigmoid), ..conv([1, 16, 6, 9], 32, 3, 1, 0, 1, 1) },
        ConvCase { act: Some(Activation::Clip(0.0, 0.5)), ..conv([1, 64, 3, 3], 64, 3, 1, 1, 1, 1) },
        // One pixel, and ResNet-50's layer-3 3×3 shape.
        conv([1, 16, 1, 1], 8, 1, 1, 0, 1, 1),
        ConvCase { act: relu, ..conv([1, 256, 14, 14], 256, 3, 1, 1, 1, 1) },
    ];
    for (i, c) in cases.into_iter().enumerate() {
        check_f16_conv(g, "conv2d_nhwc_f16_mma", c, 100 + i as u64);
    }
}

#[test]
fn direct_conv_matches_the_cpu_twin() {
    let Some(g) = gpu("direct_conv_matches_the_cpu_twin") else { return };
    let cases = [
        // ResNet's stem: 3 channels, 7×7 / 2, pad 3.
        ConvCase { act: Some(Activation::Relu), ..conv([1, 3, 29, 31], 13, 7, 2, 3, 1, 1) },
        conv([2, 5, 9, 6], 7, 3, 1, 1, 1, 1),
        // Grouped and depthwise.
        conv([1, 12, 8, 8], 18, 3, 1, 1, 1, 3),
        ConvCase { act: Some(Activation::Clip(-0.2, 0.3)), ..conv([1, 17, 9, 9], 17, 3, 2, 1, 1, 17) },
        // Dilation 2, asymmetric pads, residual, Sigmoid.
        ConvCase { pads: [1, 0, 2, 1], residual: true, act: Some(Activation::Sigmoid), ..conv([2, 6, 11, 7], 9, 3, 1, 0, 2, 1) },
        ConvCase { bias: false, act: Some(Activation::LeakyRelu(0.2)), ..conv([1, 1, 5, 5], 1, 1, 1, 0, 1, 1) },
    ];
    for (i, c) in cases.into_iter().enumerate() {
        check_f16_conv(g, "conv2d_nhwc_f16_direct", c, 200 + i as u64);
    }
}

#[test]
fn analytic_f32_conv_matches_the_cpu_twin() {
    let Some(g) = gpu("analytic_f32_conv_matches_the_cpu_twin") else { return };
    let cases = [
        ConvCase { residual: true, act: Some(Activation::Relu), ..conv([2, 8, 9, 7], 12, 3, 1, 1, 1, 1) },
        conv([1, 3, 17, 15], 5, 7, 2, 3, 1, 1),
        ConvCase { pads: [0, 2, 1, 0], ..conv([1, 6, 8, 8], 9, 3, 1, 0, 2, 3) },
    ];
    for (i, case) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(300 + i as u64);
        let (conv, x, residual, scale) = case.build(&mut rng);
        let os = case.out();
        let mut want = vec![0.0; os.iter().product()];
        conv2d_ref(&conv, &x, case.x, residual.as_deref(), &mut want, os);
        let [n, cin, h, w] = case.x;
        let [_, cout, oh, ow] = os;
        let dx = g.upload_f32(&x).unwrap();
        let dw = g.upload_f32(conv.weight.data()).unwrap();
        let db = conv.bias.as_ref().map(|b| g.upload_f32(b).unwrap());
        let dr = residual.as_ref().map(|r| g.upload_f32(r).unwrap());
        let mut dy: CudaSlice<f32> = g.zeros(want.len()).unwrap();
        let (act, alpha, beta) = act_code(case.act);
        let ints = [n, cin, h, w, cout, oh, ow, case.k[0], case.k[1], case.stride[0], case.stride[1], case.pads[0], case.pads[1], case.dilation[0], case.dilation[1], case.groups].map(|v| v as i32);
        launch!(g, "conv2d_ref_f32", elems(want.len()), |b| {
            conv_args!(b, dx, dw, db, dr, dy, &ints[..], act, alpha, beta);
        });
        let got = g.download_f32(&dy).unwrap();
        check(&format!("conv2d_ref_f32 {case:?}"), &got, &want, |i| 1e-5 * scale[i] + 1e-6);
    }
}

#[test]
fn transposed_conv_matches_the_cpu_twin() {
    let Some(g) = gpu("transposed_conv_matches_the_cpu_twin") else { return };
    // ([n, cin, h, w], cout, k, stride, pad, output padding, dilation, groups)
    let cases = [
        ([1, 16, 5, 7], 8, 2, 2, 0, 0, 1, 1),
        ([2, 6, 4, 4], 5, 3, 2, 1, 1, 1, 1),
        ([1, 4, 5, 3], 6, 3, 1, 1, 0, 2, 2),
        ([1, 3, 6, 6], 3, 4, 2, 1, 0, 1, 1),
    ];
    for (i, (xs, cout, k, s, p, op, d, groups)) in cases.into_iter().enumerate() {
        let mut rng = Rng::new(400 + i as u64);
        let [n, cin, h, w] = xs;
        let cout_g = cout / groups;
        let wshape = vec![cin, cout_g, k, k];
        let weight = data16(&mut rng, wshape.iter().product());
        let bias: Vec<f32> = (0..cout).map(|_| rng.range(-0.5, 0.5)).collect();
        let ct = ConvTranspose2d { weight: Tensor::new(wshape, weight.clone()).unwrap(), bias: Some(bias.clone()), stride: [s; 2], pads: [p; 4], output_padding: [op; 2], dilation: [d; 2], groups, precision: Precision::F32 };
        let o = |len: usize| (len - 1) * s + d * (k - 1) + 1 + op - 2 * p;
        let os = [n, cout, o(h), o(w)];
        let x = data16(&mut rng, xs.iter().product());
        let mut want = vec![0.0; os.iter().product()];
        conv_transpose2d_ref(&ct, &x, xs, &mut want, os);
        let abs = ConvTranspose2d { weight: Tensor::new(ct.weight.shape().to_vec(), weight.iter().map(|v| v.abs()).collect()).unwrap(), bias: None, ..ct.clone() };
        let mut scale = vec![0.0; want.len()];
        conv_transpose2d_ref(&abs, &x.iter().map(|v| v.abs()).collect::<Vec<_>>(), xs, &mut scale, os);
        // [cin][cout/g][kh][kw] → [cin][kh][kw][cout/g].
        let mut packed = vec![0.0; weight.len()];
        for ci in 0..cin {
            for c in 0..cout_g {
                for t in 0..k * k {
                    packed[(ci * k * k + t) * cout_g + c] = weight[(ci * cout_g + c) * k * k + t];
                }
            }
        }
        let dx = g.upload_f16(&to_nhwc(&x, xs)).unwrap();
        let dw = g.upload_f16(&packed).unwrap();
        let db = g.upload_f32(&bias).unwrap();
        let mut dy: CudaSlice<u16> = g.zeros(want.len()).unwrap();
        let ints = [n, h, w, cin, os[2], os[3], cout, k, k, s, s, p, p, d, d, groups].map(|v| v as i32);
        launch!(g, "conv_transpose2d_nhwc_f16", elems(want.len()), |b| {
            b.arg(&dx).arg(&dw).arg(&db).arg(&mut dy);
            for v in &ints {
                b.arg(v);
            }
        });
        let got = to_nchw(&g.download_f16(&dy).unwrap(), os);
        check(&format!("conv_transpose2d_nhwc_f16 {xs:?} cout {cout} k {k} s {s} p {p} op {op} d {d} g {groups}"), &got, &want, |i| want[i].abs() / 1024.0 + 1e-4 * scale[i] + 1e-6);
    }
}

#[test]
fn layout_conversion_and_channel_copy_are_exact() {
    let Some(g) = gpu("layout_conversion_and_channel_copy_are_exact") else { return };
    let mut rng = Rng::new(500);
    for xs in [[1, 3, 5, 7], [2, 17, 4, 3], [1, 64, 9, 9]] {
        let [n, c, h, w] = xs.map(|v| v as i32);
        // Not rounded beforehand: the kernel rounds, as `half` does (to nearest even).
        let x: Vec<f32> = (0..xs.iter().product()).map(|_| rng.range(-70000.0, 70000.0) * rng.uniform().powi(8)).collect();
        let dx = g.upload_f32(&x).unwrap();
        let mut dy: CudaSlice<u16> = g.zeros(x.len()).unwrap();
        launch!(g, "nchw_f32_to_nhwc_f16", elems(x.len()), |b| {
            b.arg(&dx).arg(&mut dy).arg(&n).arg(&c).arg(&h).arg(&w);
        });
        let got = g.stream.clone_dtoh(&dy).unwrap();
        let want: Vec<u16> = to_nhwc(&x, xs).iter().map(|&v| half::f16::from_f32(v).to_bits()).collect();
        assert_eq!(got, want, "nchw_f32_to_nhwc_f16 {xs:?}");
        let mut back: CudaSlice<f32> = g.zeros(x.len()).unwrap();
        launch!(g, "nhwc_f16_to_nchw_f32", elems(x.len()), |b| {
            b.arg(&dy).arg(&mut back).arg(&n).arg(&c).arg(&h).arg(&w);
        });
        let back = g.download_f32(&back).unwrap();
        let rounded: Vec<f32> = x.iter().map(|&v| round16(v)).collect();
        assert!(back.iter().zip(&rounded).all(|(a, b)| a.to_bits() == b.to_bits()), "nhwc_f16_to_nchw_f32 {xs:?}");
        println!("  layout {xs:?}: both directions bit for bit");
    }
    // A producer's 5 channels into channels 3..8 of a 11-channel buffer.
    let (pixels, cs, cd, offset) = (37i64, 5i32, 11i32, 3i32);
    let src = data16(&mut rng, pixels as usize * cs as usize);
    let dst0 = data16(&mut rng, pixels as usize * cd as usize);
    let ds = g.upload_f16(&src).unwrap();
    let mut dd = g.upload_f16(&dst0).unwrap();
    launch!(g, "copy_channels_nhwc_f16", elems(src.len()), |b| {
        b.arg(&ds).arg(&mut dd).arg(&pixels).arg(&cs).arg(&cd).arg(&offset);
    });
    let got = g.download_f16(&dd).unwrap();
    let mut want = dst0.clone();
    for p in 0..pixels as usize {
        for ch in 0..cs as usize {
            want[p * cd as usize + offset as usize + ch] = src[p * cs as usize + ch];
        }
    }
    assert_eq!(got, want, "copy_channels_nhwc_f16");
}

#[test]
fn pooling_matches_the_cpu_twin() {
    let Some(g) = gpu("pooling_matches_the_cpu_twin") else { return };
    // (input, kernel, stride, pads [t, l, b, r], dilation, ceil mode, max, count_include_pad)
    let cases = [
        ([1, 8, 15, 15], 3, 2, [1, 1, 1, 1], 1, false, true, false),
        ([2, 5, 8, 9], 2, 2, [0, 0, 0, 0], 1, false, true, false),
        ([1, 7, 9, 9], 3, 1, [1, 1, 1, 1], 1, false, false, false),
        ([1, 7, 9, 9], 3, 1, [1, 1, 1, 1], 1, false, false, true),
        ([1, 3, 10, 11], 3, 2, [0, 1, 1, 0], 2, false, false, true),
        ([1, 4, 9, 10], 3, 2, [1, 1, 1, 1], 1, true, false, true),
        ([1, 4, 9, 10], 2, 2, [0, 0, 0, 0], 1, true, true, false),
    ];
    let mut rng = Rng::new(600);
    for (xs, k, s, pads, d, ceil, is_max, cip) in cases {
        let p = Pool2d { kernel: [k, k], stride: [s, s], pads, dilation: [d, d], ceil_mode: ceil, count_include_pad: cip };
        let out = |len: usize, p0: usize, p1: usize| {
            let span = len + p0 + p1 - d * (k - 1) - 1;
            let mut o = if ceil { span.div_ceil(s) + 1 } else { span / s + 1 };
            // ONNX: the last window must start inside the input or its leading pad.
            if ceil && (o - 1) * s >= len + p0 {
                o -= 1;
            }
            o
        };
        let os = [xs[0], xs[1], out(xs[2], pads[0], pads[2]), out(xs[3], pads[1], pads[3])];
        let x = data16(&mut rng, xs.iter().product());
        let mut want = vec![0.0; os.iter().product()];
        pool2d_ref(&p, is_max, &x, xs, &mut want, os);
        let want: Vec<f32> = want.iter().map(|&v| round16(v)).collect();
        let dx = g.upload_f16(&to_nhwc(&x, xs)).unwrap();
        let mut dy: CudaSlice<u16> = g.zeros(want.len()).unwrap();
        let ints = [xs[0], xs[1], xs[2], xs[3], os[2], os[3], k, k, s, s, pads[0], pads[1], pads[2], pads[3], d, d, is_max as usize, cip as usize].map(|v| v as i32);
        launch!(g, "pool2d_nhwc_f16", elems(want.len()), |b| {
            b.arg(&dx).arg(&mut dy);
            for v in &ints {
                b.arg(v);
            }
        });
        let got = to_nchw(&g.download_f16(&dy).unwrap(), os);
        let what = format!("pool2d_nhwc_f16 {xs:?} k {k} s {s} pads {pads:?} d {d} ceil {ceil} max {is_max} cip {cip}");
        if is_max {
            check(&what, &got, &want, |_| 0.0);
        } else {
            check(&what, &got, &want, |i| want[i].abs() / 1024.0 + 1e-6);
        }
    }
    for xs in [[2, 37, 7, 7], [1, 300, 3, 5]] {
        let [n, c, h, w] = xs;
        let x = data16(&mut rng, xs.iter().product());
        let mut want = vec![0.0; n * c];
        kestrel::cpu::pool::global_avg_pool(&x, h * w, &mut want);
        let dx = g.upload_f16(&to_nhwc(&x, xs)).unwrap();
        let mut dy: CudaSlice<f32> = g.zeros(n * c).unwrap();
        let (ni, ci, hw) = (n as i32, c as i32, (h * w) as i32);
        launch!(g, "global_avg_pool_nhwc_f16", LaunchConfig { grid_dim: (n as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }, |b| {
            b.arg(&dx).arg(&mut dy).arg(&ni).arg(&ci).arg(&hw);
        });
        let got = g.download_f32(&dy).unwrap();
        check(&format!("global_avg_pool_nhwc_f16 {xs:?}"), &got, &want, |_| 1e-5);
    }
}

#[test]
fn resize_matches_the_cpu_twin() {
    let Some(g) = gpu("resize_matches_the_cpu_twin") else { return };
    let coords = [(CoordMode::HalfPixel, 0), (CoordMode::AlignCorners, 1), (CoordMode::Asymmetric, 2), (CoordMode::PytorchHalfPixel, 3)];
    let roundings = [(NearestMode::Floor, 0), (NearestMode::RoundPreferFloor, 1), (NearestMode::RoundPreferCeil, 2), (NearestMode::Ceil, 3)];
    let mut rng = Rng::new(700);
    for (xs, ohw) in [([1, 5, 6, 7], [12, 14]), ([2, 3, 9, 8], [4, 5]), ([1, 4, 5, 5], [11, 1]), ([1, 2, 1, 3], [3, 7])] {
        let x = data16(&mut rng, xs.iter().product());
        let os = [xs[0], xs[1], ohw[0], ohw[1]];
        let dx = g.upload_f16(&to_nhwc(&x, xs)).unwrap();
        let mut modes: Vec<(ResizeMode, i32, i32)> = roundings.iter().map(|&(m, r)| (ResizeMode::Nearest(m), 0, r)).collect();
        modes.push((ResizeMode::Linear, 1, 0));
        for &(coord, cc) in &coords {
            for &(mode, bilinear, rounding) in &modes {
                let r = Resize::new(mode, coord, ResizeTarget::Sizes(ohw));
                let mut want = vec![0.0; os.iter().product()];
                resize_ref(&r, &x, xs, &mut want, os);
                let want: Vec<f32> = want.iter().map(|&v| round16(v)).collect();
                let mut dy: CudaSlice<u16> = g.zeros(want.len()).unwrap();
                let ints = [xs[0], xs[2], xs[3], xs[1], os[2], os[3]].map(|v| v as i32);
                launch!(g, "resize_nhwc_f16", elems(want.len()), |b| {
                    b.arg(&dx).arg(&mut dy);
                    for v in &ints {
                        b.arg(v);
                    }
                    b.arg(&bilinear).arg(&cc).arg(&rounding);
                });
                let got = to_nchw(&g.download_f16(&dy).unwrap(), os);
                let what = format!("resize_nhwc_f16 {xs:?} → {ohw:?} {mode:?} {coord:?}");
                if bilinear == 0 {
                    check(&what, &got, &want, |_| 0.0);
                } else {
                    check(&what, &got, &want, |i| want[i].abs() / 1024.0 + 1e-6);
                }
            }
        }
    }
}

#[test]
fn linear_and_softmax_match_the_cpu_twin() {
    let Some(g) = gpu("linear_and_softmax_match_the_cpu_twin") else { return };
    let mut rng = Rng::new(800);
    for (n, inp, out) in [(1, 2048, 1000), (3, 37, 5), (2, 1, 33)] {
        let wt: Vec<f32> = (0..inp * out).map(|_| rng.range(-1.0, 1.0)).collect();
        let bias: Vec<f32> = (0..out).map(|_| rng.range(-1.0, 1.0)).collect();
        let x: Vec<f32> = (0..n * inp).map(|_| rng.range(-1.0, 1.0)).collect();
        let l = Linear::new(Tensor::new(vec![out, inp], wt.clone()).unwrap(), Some(bias.clone()));
        let mut want = vec![0.0; n * out];
        linear_ref(&l, &x, n, &mut want);
        let (dx, dw, db) = (g.upload_f32(&x).unwrap(), g.upload_f32(&wt).unwrap(), g.upload_f32(&bias).unwrap());
        let mut dy: CudaSlice<f32> = g.zeros(n * out).unwrap();
        let (ni, ii, oi) = (n as i32, inp as i32, out as i32);
        launch!(g, "linear_f32", elems(n * out * 32), |b| {
            b.arg(&dx).arg(&dw).arg(&db).arg(&mut dy).arg(&ni).arg(&ii).arg(&oi);
        });
        let got = g.download_f32(&dy).unwrap();
        check(&format!("linear_f32 n {n} in {inp} out {out}"), &got, &want, |_| 1e-5 * (inp as f32).sqrt());
    }
    for (rows, cols) in [(1, 1000), (5, 3), (3, 1), (2, 257)] {
        let x: Vec<f32> = (0..rows * cols).map(|_| rng.range(-8.0, 8.0)).collect();
        let mut want = vec![0.0; x.len()];
        for r in 0..rows {
            let row = &x[r * cols..(r + 1) * cols];
            let m = row.iter().fold(f64::NEG_INFINITY, |a, &v| a.max(f64::from(v)));
            let s: f64 = row.iter().map(|&v| (f64::from(v) - m).exp()).sum();
            for (j, &v) in row.iter().enumerate() {
                want[r * cols + j] = ((f64::from(v) - m).exp() / s) as f32;
            }
        }
        let dx = g.upload_f32(&x).unwrap();
        let mut dy: CudaSlice<f32> = g.zeros(x.len()).unwrap();
        let (ri, ci) = (rows as i32, cols as i32);
        launch!(g, "softmax_rows_f32", LaunchConfig { grid_dim: (rows as u32, 1, 1), block_dim: (256, 1, 1), shared_mem_bytes: 0 }, |b| {
            b.arg(&dx).arg(&mut dy).arg(&ri).arg(&ci);
        });
        let got = g.download_f32(&dy).unwrap();
        check(&format!("softmax_rows_f32 {rows}×{cols}"), &got, &want, |i| 1e-5 * want[i].abs() + 1e-7);
    }
}
