//! Fast FP32 kernels against their reference twins: deterministic sweeps over tails,
//! strides, pads, dilations and groups, then proptest.

mod common;

use common::{data, Tolerance};
use kestrel::cpu::simd::Simd;
use kestrel::cpu::{conv, conv_transpose, elementwise, linear, pool, reference, resize, schan, sconv, sgemm, slanes};
use kestrel::graph::shape::{conv_transpose_nd_out, matmul_out, pool_nd_out, pool_out, resize_out, window_out};
use kestrel::graph::*;
use kestrel::Tensor;
use proptest::prelude::*;

/// [`schan`]'s conv prepared as `lc` on `kernel` at 1 and 2 threads, against the fma twin's
/// `fma` (`!=`: as for `slanes`), and onto its residual bit for bit.
#[allow(clippy::too_many_arguments)]
fn check_chunked(kernel: kestrel::cpu::sgemm::Kernel, c: &Conv2d, lc: &slanes::LanesConv, x: &[f32], xs: [usize; 4], res: Option<&[f32]>, os: [usize; 4], fma: &[f32], what: &str) {
    let mut scratch = Vec::new();
    for threads in [1, 2] {
        let mut got = vec![f32::NAN; fma.len()];
        slanes::conv2d(kernel, c, lc, x, xs, res, &mut got, os, &mut scratch, threads);
        if let Some(i) = (0..got.len()).find(|&i| got[i] != fma[i]) {
            panic!("{what} schan {} t{threads}: element {i} is {} but the fma twin gives {}", kernel.name(), got[i], fma[i]);
        }
        if let Some(r) = res {
            let mut onto = r.to_vec();
            slanes::conv2d_onto(kernel, c, lc, x, xs, &mut onto, os, &mut scratch, threads);
            if let Some(i) = (0..onto.len()).find(|&i| onto[i].to_bits() != got[i].to_bits()) {
                panic!("{what} schan {} t{threads} onto its residual: element {i} is {} but with a separate residual {}", kernel.name(), onto[i], got[i]);
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn check_conv(n: usize, cin: usize, cout: usize, hw: [usize; 2], k: [usize; 2], stride: usize, pad: [usize; 4], dil: usize, groups: usize, act: Option<Activation>, residual: bool, seed: u64) {
    let w = Tensor::new(vec![cout, cin / groups, k[0], k[1]], data(cout * cin / groups * k[0] * k[1], seed)).unwrap();
    let c = Conv2d {
        weight: w,
        bias: Some(data(cout, seed + 1)),
        stride: [stride, stride],
        pads: pad,
        dilation: [dil, dil],
        groups,
        act,
        residual,
        precision: Precision::F32,
    };
    let (Some(oh), Some(ow)) = (
        window_out(hw[0], k[0], stride, (pad[0], pad[2]), dil, false),
        window_out(hw[1], k[1], stride, (pad[1], pad[3]), dil, false),
    ) else {
        return;
    };
    let xs = [n, cin, hw[0], hw[1]];
    let os = [n, cout, oh, ow];
    let x = data(xs.iter().product(), seed + 2);
    let r = data(os.iter().product(), seed + 3);
    let res = residual.then_some(r.as_slice());
    let mut want = vec![f32::NAN; os.iter().product()];
    reference::conv2d_ref(&c, &x, xs, res, &mut want, os);
    let mut got = vec![f32::NAN; want.len()]; // garbage prefill catches unwritten outputs
    let mut scratch = Vec::new();
    conv::conv2d(&c, &x, xs, res, &mut got, os, &mut scratch, 2);
    let what = format!("conv n{n} cin{cin} cout{cout} hw{hw:?} k{k:?} s{stride} p{pad:?} d{dil} g{groups} {act:?} res{residual}");
    Tolerance { abs: 1e-4, rel: 1e-4 }.check(&what, &got, &want);
    // kestrel's own FP32 conv, on every kernel this CPU has: within the tolerance of the f64
    // reference, and equal to its fused-multiply-add twin value for value.
    let mut fma = vec![f32::NAN; want.len()];
    reference::conv2d_fma_ref(&c, &x, xs, res, &mut fma, os);
    let mut lanes_bits: Option<(&str, Vec<u32>)> = None;
    for kernel in common::sgemm_kernels() {
        let packed = sconv::pack(kernel, &c);
        for threads in [1, 2] {
            let mut got = vec![f32::NAN; want.len()];
            sconv::conv2d(kernel, &c, &packed, &x, xs, res, &mut got, os, &mut scratch, threads);
            let what = format!("{what} sconv {} t{threads}", kernel.name());
            Tolerance { abs: 1e-4, rel: 1e-4 }.check(&what, &got, &want);
            if let Some(i) = (0..got.len()).find(|&i| got[i] != fma[i]) {
                panic!("{what}: element {i} is {} but the fma twin gives {}", got[i], fma[i]);
            }
            // The residual already in the output buffer (the executor's in-place residual):
            // the same values, bit for bit.
            if residual {
                let mut onto = r.clone();
                sconv::conv2d_onto(kernel, &c, &packed, &x, xs, &mut onto, os, &mut scratch, threads);
                if let Some(i) = (0..onto.len()).find(|&i| onto[i].to_bits() != got[i].to_bits()) {
                    panic!("{what} onto its residual: element {i} is {} but with a separate residual {}", onto[i], got[i]);
                }
            }
        }
        // By output position (small maps: only the live taps of each position): the same
        // values (`!=` counts a zero of either sign as the same, as dropping `w · 0` may flip
        // the sign of an exactly-zero sum).
        if let Some(pc) = kestrel::cpu::spos::prepare(kernel, &c, xs, [oh, ow]) {
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; want.len()];
                kestrel::cpu::spos::conv2d(kernel, &c, &pc, &x, xs, res, &mut got, os, &mut scratch, threads);
                if let Some(i) = (0..got.len()).find(|&i| got[i] != fma[i]) {
                    panic!("{what} spos {} t{threads} ({} classes): element {i} is {} but the fma twin gives {}", kernel.name(), pc.classes.len(), got[i], fma[i]);
                }
            }
        }
        // A batch's small maps with the output channels in the lanes (`cpu::slanes`; on a
        // kernel without its vector tile, the scalar twin): the fma twin's values (`!=`: it
        // multiplies the padding too, as the tiles above), at 1 and 2 threads, the residual
        // apart or in the output; and the same bits on every kernel.
        if let Some(lc) = slanes::prepare(&c, xs, os) {
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; want.len()];
                slanes::conv2d(kernel, &c, &lc, &x, xs, res, &mut got, os, &mut scratch, threads);
                if let Some(i) = (0..got.len()).find(|&i| got[i] != fma[i]) {
                    panic!("{what} slanes {} t{threads}: element {i} is {} but the fma twin gives {}", kernel.name(), got[i], fma[i]);
                }
                if residual {
                    let mut onto = r.clone();
                    slanes::conv2d_onto(kernel, &c, &lc, &x, xs, &mut onto, os, &mut scratch, threads);
                    if let Some(i) = (0..onto.len()).find(|&i| onto[i].to_bits() != got[i].to_bits()) {
                        panic!("{what} slanes {} t{threads} onto its residual: element {i} is {} but with a separate residual {}", kernel.name(), onto[i], got[i]);
                    }
                }
                match &lanes_bits {
                    None => lanes_bits = Some((kernel.name(), bits(&got))),
                    Some((first, b)) => {
                        if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != b[i]) {
                            panic!("{what} slanes {} t{threads}: element {i} is {} but {first} gives {}", kernel.name(), got[i], f32::from_bits(b[i]));
                        }
                    }
                }
            }
        }
        // Channel lanes in K chunks (`cpu::schan`, one group; on a kernel without its AVX-512
        // tile, the scalar twin): the fma twin's values, residual apart or in the output.
        if let Some(lc) = schan::prepare(&c, xs, os) {
            check_chunked(kernel, &c, &lc, &x, xs, res, os, &fma, &what);
        }
        // Winograd F(2×2, 3×3) (3×3 stride-1 convs): within the tolerance of the f64
        // reference, and equal to its scalar twin value for value.
        if kestrel::cpu::wino::takes(&c) {
            use kestrel::cpu::wino::{self, Exec};
            let packed = wino::pack(kernel.geometry().mr, &c);
            let mut twin = vec![f32::NAN; want.len()];
            wino::conv2d(Exec::Twin(kernel.geometry()), &c, &packed, &x, xs, res, &mut twin, os, &mut scratch, 1);
            let what = format!("{what} wino twin of {}", kernel.name());
            Tolerance { abs: 2e-4, rel: 2e-4 }.check(&what, &twin, &want);
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; want.len()];
                wino::conv2d(Exec::Kernel(kernel), &c, &packed, &x, xs, res, &mut got, os, &mut scratch, threads);
                if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != twin[i].to_bits()) {
                    panic!("{what} wino {} t{threads}: element {i} is {} but the twin gives {}", kernel.name(), got[i], twin[i]);
                }
            }
        }
        // Winograd F(4×4, 3×3): within a looser tolerance of the f64 reference (its transforms
        // multiply by up to 8 and divide by 24), and equal to its scalar twin value for value.
        if kestrel::cpu::wino::takes(&c) {
            use kestrel::cpu::wino::{self, Exec};
            let packed = wino::pack_f4(kernel.geometry().mr, &c);
            let mut twin = vec![f32::NAN; want.len()];
            wino::conv2d(Exec::Twin(kernel.geometry()), &c, &packed, &x, xs, res, &mut twin, os, &mut scratch, 1);
            let what = format!("{what} wino F4 twin of {}", kernel.name());
            let scale = want.iter().fold(1f32, |m, v| if v.is_finite() { m.max(v.abs()) } else { m });
            Tolerance { abs: WINO_F4_TOL * scale, rel: 0.0 }.check(&what, &twin, &want);
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; want.len()];
                wino::conv2d(Exec::Kernel(kernel), &c, &packed, &x, xs, res, &mut got, os, &mut scratch, threads);
                if let Some(i) = (0..got.len()).find(|&i| got[i].to_bits() != twin[i].to_bits()) {
                    panic!("{what} wino F4 {} t{threads}: element {i} is {} but the twin gives {}", kernel.name(), got[i], twin[i]);
                }
            }
        }
        // Cropped to the taps that read the input (what a plan runs on maps smaller than the
        // window): the same values.
        if let Some(small) = kestrel::graph::live_taps::crop_dead_taps(&c, hw, [oh, ow]) {
            let mut got = vec![f32::NAN; want.len()];
            sconv::conv2d(kernel, &small, &sconv::pack(kernel, &small), &x, xs, res, &mut got, os, &mut scratch, 2);
            if let Some(i) = (0..got.len()).find(|&i| got[i] != fma[i]) {
                panic!("{what} cropped to {:?}: element {i} is {} but the fma twin gives {}", small.kernel(), got[i], fma[i]);
            }
        }
    }
}

/// Tolerance of Winograd F(4×4, 3×3) against the f64 reference, as a fraction of the largest
/// output magnitude (at least 1): its transforms multiply by up to 8 and divide by up to 24,
/// so a large output's rounding reaches its small neighbours (6.3e-5 the worst seen, 96 input
/// channels; F(2×2, 3×3) stays within 2e-4 of each element).
const WINO_F4_TOL: f32 = 2e-4;

#[test]
fn conv_sweep_tails_strides_pads() {
    let mut seed = 1;
    for &hw in &[1usize, 3, 7, 15, 17] {
        for &(k, pad) in &[(1, 0), (3, 1), (3, 0), (5, 2), (7, 3)] {
            for &stride in &[1, 2, 3] {
                for &(cin, cout) in &[(1, 1), (3, 7), (17, 15)] {
                    seed += 1;
                    // Batches of 1 and 3: small maps of a batch run as one GEMM across images.
                    check_conv(1 + 2 * (seed as usize % 2), cin, cout, [hw, hw + 2], [k, k], stride, [pad; 4], 1, 1, None, false, seed);
                }
            }
        }
    }
}

/// GEMMs whose last vector holds a few columns (a 7² map: 49 = 3·16 + 1; 17 or 33 columns;
/// on AVX-512 up to 4: a 14² map's 196 = 12·16 + 4, 35 columns) run them on the narrow kernel: 1×1 convs read in place
/// (several K blocks, residual, every activation, parts split by output channels at 2
/// threads), strided and padded ones from phase planes (staged or written directly), batches,
/// against the f64 reference and the fma twin (`check_conv`).
#[test]
fn conv_last_column_narrow() {
    let acts = [None, Some(Activation::Relu), Some(Activation::Sigmoid), Some(Activation::Clip(0.0, 6.0))];
    let mut seed = 9500;
    for &(n, cin, cout, hw, k, stride, pad) in &[
        (1usize, 64usize, 72usize, [7usize, 7usize], 1usize, 1usize, 0usize),
        (1, 300, 40, [7, 7], 1, 1, 0),
        (2, 24, 17, [1, 17], 1, 1, 0),
        (1, 16, 130, [3, 11], 1, 1, 0),
        (1, 24, 64, [14, 14], 1, 2, 0),
        (1, 40, 33, [13, 13], 3, 2, 1),
        (1, 8, 24, [9, 9], 3, 1, 1),
        (3, 20, 48, [33, 1], 1, 1, 0),
        (1, 200, 48, [14, 14], 1, 1, 0),
        (2, 24, 20, [5, 7], 1, 1, 0),
        (1, 16, 40, [28, 28], 1, 2, 0),
    ] {
        for (i, &act) in acts.iter().enumerate() {
            seed += 1;
            check_conv(n, cin, cout, hw, [k, k], stride, [pad; 4], 1, 1, act, i % 2 == 0, seed);
        }
    }
}

/// 1×1 convs whose output is too big for L2 with 256 rows or more per part (ResNet-50's
/// expanding convs at 56² and 28²) pack their B blocks, and on AVX2 so do other 1×1 convs with
/// 128 rows or more per part, strided ones from their phase plane; fewer rows read B in place. Both with
/// a residual, batches and every activation, against the reference and the fma twin.
#[test]
fn conv_big_pointwise_packed_blocks() {
    let mut seed = 9700;
    for &(n, cin, cout, hw, act) in &[
        (1usize, 64usize, 256usize, [56usize, 56usize], Some(Activation::Relu)),
        (1, 128, 512, [28, 28], None),
        (2, 40, 264, [30, 29], Some(Activation::Clip(0.0, 6.0))),
        (1, 64, 152, [56, 56], Some(Activation::Relu)),
        // Past L2 with fewer than 128 rows per part: in place, weight panel by weight panel.
        (1, 64, 100, [64, 64], None),
        // Several K blocks, or 14² and 7² maps, with at least 128 rows per part: packed in
        // the B-panel order on AVX2 (a masked column tail, the narrow 49th column, batches).
        (1, 300, 260, [14, 14], Some(Activation::Relu)),
        (1, 520, 264, [7, 7], None),
        (2, 272, 136, [28, 28], Some(Activation::LeakyRelu(0.1))),
    ] {
        seed += 1;
        check_conv(n, cin, cout, hw, [1, 1], 1, [0; 4], 1, 1, act, true, seed);
    }
    // Strided 1×1 convs without padding (ResNet's downsamples) read one phase plane that
    // holds exactly their output's pixels; on AVX2, parts of 128 rows or more pack their B
    // blocks from it: one and several K blocks, odd sizes, stride 3, the narrow last column
    // of a 7² map, a batch.
    for &(n, cin, cout, hw, stride, act) in &[
        (1usize, 256usize, 512usize, [56usize, 56usize], 2usize, Some(Activation::Relu)),
        (1, 300, 260, [28, 28], 2, None),
        (1, 520, 264, [14, 14], 2, Some(Activation::Relu)),
        (2, 72, 136, [27, 29], 2, Some(Activation::Clip(0.0, 6.0))),
        (1, 40, 130, [17, 20], 3, None),
    ] {
        seed += 1;
        check_conv(n, cin, cout, hw, [1, 1], stride, [0; 4], 1, 1, act, seed % 2 == 0, seed);
    }
}

/// 1×1 stride-1 convs whose K runs in one block up to 1 024 on AVX-512 and in 512-row blocks
/// above (`sconv::run_part`, B read in place), and in 128- or 256-row blocks elsewhere: K just
/// past each step (129, 257, 513, 1 025), the limits themselves, a K of 2 100 (five blocks of
/// 420), with residuals, batches, the narrow last column of 7² and 14² maps. Parts of at least
/// 128 rows on maps of at most 14² pack their B blocks under `KESTREL_TUNE=intel` (Intel's
/// rule; scripts/test.sh runs this file under the other family's rules too): 264 and 520
/// output channels, 14², 7² and 13 × 15 maps, K of 1 024, 257 and 130.
#[test]
fn conv_pointwise_long_k_blocks() {
    let mut seed = 9750;
    println!("tune: {:?}", kestrel::cpu::detect::tune());
    for &(n, cin, cout, hw, act) in &[
        (1usize, 129usize, 40usize, [14usize, 14usize], Some(Activation::Relu)),
        (1, 257, 24, [7, 7], None),
        (2, 513, 17, [9, 5], Some(Activation::Relu)),
        (1, 1024, 33, [7, 7], Some(Activation::LeakyRelu(0.1))),
        (1, 1025, 48, [14, 14], None),
        (1, 2100, 20, [7, 7], Some(Activation::Relu)),
        (1, 1024, 264, [14, 14], Some(Activation::Relu)),
        (2, 257, 520, [7, 7], None),
        (1, 130, 264, [13, 15], Some(Activation::Relu)),
    ] {
        seed += 1;
        check_conv(n, cin, cout, hw, [1, 1], 1, [0; 4], 1, 1, act, true, seed);
        check_conv(n, cin, cout, hw, [1, 1], 1, [0; 4], 1, 1, act, false, seed + 50);
    }
}

/// Batches of small maps as one GEMM whose columns run across images (`sconv`'s batched
/// columns), with K longer than a 128-row block: on AVX-512 the K blocks grow with the room
/// the part's columns leave in the packed-B buffer (up to 512 rows). 1×1 and 3×3, permuted
/// 4×4 maps, gathered 7² and 5×3 maps, strides, residuals.
#[test]
fn conv_batched_columns_long_k() {
    let mut seed = 9780;
    for &(n, cin, cout, hw, k, stride, pad, act, residual) in &[
        (8usize, 520usize, 40usize, [7usize, 7usize], 1usize, 1usize, 0usize, Some(Activation::Relu), true),
        (3, 1030, 24, [7, 7], 1, 1, 0, None, false),
        // 1×1 convs on maps that stay batched on AVX-512 too (6² = 3 vectors, no whole tile
        // before the last; 5 × 7 = 35 columns), where 7² maps run per image (below).
        (8, 520, 40, [6, 6], 1, 1, 0, Some(Activation::Relu), true),
        (3, 1030, 24, [5, 7], 1, 1, 0, None, false),
        (2, 70, 33, [7, 7], 3, 1, 1, Some(Activation::Relu), true),
        (4, 200, 16, [4, 4], 3, 1, 1, None, true),
        (5, 150, 20, [5, 3], 3, 1, 1, Some(Activation::LeakyRelu(0.1)), false),
        (2, 300, 48, [14, 14], 1, 2, 0, None, true),
    ] {
        seed += 1;
        check_conv(n, cin, cout, hw, [k, k], stride, [pad; 4], 1, 1, act, residual, seed);
    }
}

/// Convs over phase planes whose tiles are aligned to output rows, with outputs past L2, run
/// weight panel by weight panel (`sconv::run_part`'s `m_outer`): a ResNet-style 7×7/2 stem, a
/// UNet-style first 3×3 conv, a masked last vector per row (45 of 48 columns), a stride-2
/// conv with a residual over a batch. With one thread (or per image) each part's output is past
/// the threshold; with two, the larger ones still are.
#[test]
fn conv_big_row_aligned_maps() {
    let mut seed = 9800;
    for &(n, cin, cout, hw, k, stride, pad, act, residual) in &[
        (1usize, 3usize, 64usize, [160usize, 160usize], 7usize, 2usize, 3usize, Some(Activation::Relu), false),
        (1, 3, 32, [120, 128], 3, 1, 1, Some(Activation::Relu), false),
        (1, 5, 72, [140, 45], 3, 1, 1, None, true),
        (2, 4, 40, [300, 96], 3, 2, 1, Some(Activation::LeakyRelu(0.1)), true),
        (1, 6, 17, [200, 64], 3, 1, 1, Some(Activation::Clip(0.0, 6.0)), false),
        // At least 256 rows per part: B still read from the planes in place (the 1×1 convs
        // of that size pack theirs).
        (1, 3, 264, [48, 48], 3, 1, 1, Some(Activation::Relu), false),
    ] {
        seed += 1;
        check_conv(n, cin, cout, hw, [k, k], stride, [pad; 4], 1, 1, act, residual, seed);
    }
}

/// Batches of 14²-sized maps, whose per-image GEMMs a lone image would split by output
/// channels: every image's GEMM split so, each worker taking the same channels of every image
/// (`sconv`'s `across`); in place, with packed B blocks (AVX2's 1×1 convs of 128 rows and
/// more), staged strided convs, the narrow last column, residuals, batches of 2–8; and the
/// 1×1 convs on 7² maps that run per image too on AVX-512.
#[test]
fn conv_batches_split_by_channels_across_images() {
    let mut seed = 9900;
    for &(n, cin, cout, hw, k, stride, pad, act, residual) in &[
        (3usize, 64usize, 80usize, [14usize, 14usize], 1usize, 1usize, 0usize, Some(Activation::Relu), true),
        (2, 32, 48, [16, 16], 3, 2, 1, None, false),
        (2, 32, 272, [14, 14], 1, 1, 0, Some(Activation::LeakyRelu(0.1)), true),
        (5, 40, 72, [13, 11], 3, 1, 1, Some(Activation::Relu), false),
        (2, 48, 40, [28, 28], 1, 2, 0, None, true),
        // 1×1 convs on 7² maps (on AVX-512 per image: one 48-column tile and the narrow last
        // column; batched on AVX2), long and short K, 8-row panel tails, residuals; 4 × 17 =
        // 68 columns (4 whole vectors and 4 narrow ones).
        (8, 520, 40, [7, 7], 1, 1, 0, Some(Activation::Relu), true),
        (4, 2048, 36, [7, 7], 1, 1, 0, None, false),
        (3, 24, 130, [7, 7], 1, 1, 0, Some(Activation::Clip(0.0, 6.0)), true),
        (2, 96, 17, [4, 17], 1, 1, 0, None, true),
    ] {
        seed += 1;
        check_conv(n, cin, cout, hw, [k, k], stride, [pad; 4], 1, 1, act, residual, seed);
    }
}

/// Winograd F(2×2, 3×3) and F(4×4, 3×3) shapes (`cpu::wino`, run by `check_conv` on every
/// 3×3 stride-1 conv): channel tails against the kernels' 8 and 6 rows, odd and even maps (a partial last
/// tile row and column), pads 0–2, maps whose tiles fill one vector or a few (parts then split
/// the output channels), batches whose blocks cross images, residuals and every activation.
#[test]
fn conv_winograd_shapes() {
    let acts = [None, Some(Activation::Relu), Some(Activation::LeakyRelu(0.1)), Some(Activation::Sigmoid), Some(Activation::Clip(0.0, 6.0))];
    let mut seed = 9000;
    for &(n, cin, cout, hw, pad) in &[
        (1usize, 32usize, 32usize, [7usize, 7usize], 1usize),
        (1, 33, 65, [8, 9], 1),
        (3, 64, 40, [15, 17], 1),
        (2, 48, 33, [28, 28], 0),
        (1, 40, 72, [14, 14], 2),
        (5, 32, 48, [7, 9], 1),
        (1, 96, 64, [30, 62], 1),
        (2, 17, 35, [12, 5], 1),
        // F(4×4): 42 tiles of one image split in two parts among the workers.
        (1, 64, 48, [28, 24], 1),
    ] {
        for (i, act) in acts.iter().enumerate() {
            seed += 1;
            check_conv(n, cin, cout, hw, [3, 3], 1, [pad; 4], 1, 1, *act, i % 2 == 1, seed);
        }
    }
}

/// Batches of small maps, where some output positions read padding through some taps (the
/// plan then runs them by output position, `cpu::spos`): map sizes 1–5, kernels 1–5, strides,
/// pads, dilations, channel tails, batches up to 65 (one vector and a tail of columns past a
/// full tile), residuals and every fused activation kind.
#[test]
fn conv_small_maps_by_position() {
    let mut seed = 7000;
    for &(n, cin, cout, hw, k, stride, pad, dil) in &[
        (2usize, 3usize, 5usize, [2usize, 2usize], 3usize, 1usize, 1usize, 1usize),
        (3, 17, 9, [4, 4], 3, 1, 1, 1),
        (64, 16, 16, [2, 2], 3, 1, 1, 1),
        (65, 8, 17, [4, 4], 3, 1, 1, 1),
        (17, 7, 8, [3, 5], 3, 1, 1, 1),
        (5, 4, 7, [4, 4], 3, 2, 1, 1),
        (9, 6, 3, [5, 5], 5, 1, 2, 1),
        (4, 5, 8, [4, 4], 3, 1, 2, 2),
        (49, 1, 1, [1, 3], 3, 1, 1, 1),
        (7, 33, 15, [2, 3], 3, 1, 1, 1),
        (16, 9, 24, [3, 3], 2, 1, 1, 1),
    ] {
        for (act, residual) in [(None, false), (Some(Activation::Relu), true), (Some(Activation::Clip(-0.5, 0.5)), false), (Some(Activation::Sigmoid), true)] {
            seed += 1;
            check_conv(n, cin, cout, hw, [k, k], stride, [pad; 4], dil, 1, act, residual, seed);
        }
    }
}

/// Shapes the plan runs with the output channels in the lanes (`cpu::slanes`: batches of maps
/// up to 16 × 16): row widths that cut into every piece size (16, 8, 4, 2, 1 and sums of
/// them), rows past the batch's last, channel tails (8, 17, 33 of 16-lane slices), strides 1,
/// 2 and 3 (the last on the scalar twin), pads and none (the input read in place), dilation,
/// groups, a ResNet stem, 1 × 1 convs (strided, and on 1 × 1 maps, whose channel vectors are
/// stored untransposed), residuals and every fused activation kind. `check_conv` compares it
/// with the fma twin on every kernel; a conv without a bias is checked here.
#[test]
fn conv_small_maps_channels_in_lanes() {
    let mut seed = 9000;
    for &(n, cin, cout, hw, k, stride, pad, dil, groups) in &[
        (2usize, 3usize, 16usize, [32usize, 32usize], 7usize, 2usize, 3usize, 1usize, 1usize),
        (3, 16, 16, [8, 8], 3, 1, 1, 1, 1),
        (5, 16, 32, [8, 8], 3, 2, 1, 1, 1),
        (2, 8, 17, [15, 15], 3, 1, 1, 1, 1),
        (7, 5, 33, [4, 7], 3, 1, 1, 1, 1),
        (9, 4, 8, [2, 3], 3, 1, 1, 1, 1),
        (3, 6, 24, [11, 13], 3, 2, 0, 1, 1),
        (2, 4, 16, [9, 9], 3, 3, 1, 1, 1),
        (4, 8, 32, [10, 6], 3, 1, 2, 2, 2),
        (17, 2, 9, [3, 1], 2, 1, 0, 1, 1),
        (2, 32, 64, [5, 5], 3, 2, 1, 1, 1),
        (6, 20, 40, [1, 1], 1, 1, 0, 1, 1),
        (5, 8, 16, [2, 2], 1, 2, 0, 1, 1),
        (3, 16, 32, [8, 8], 1, 2, 0, 1, 1),
    ] {
        for (act, residual) in [(Some(Activation::Relu), true), (None, false), (Some(Activation::Clip(-0.5, 0.5)), true), (Some(Activation::Sigmoid), false)] {
            seed += 1;
            check_conv(n, cin, cout, hw, [k, k], stride, [pad; 4], dil, groups, act, residual, seed);
        }
        // Without a bias (a conv before a BatchNorm the graph did not fold).
        let mut c = Conv2d::new(Tensor::new(vec![cout, cin / groups, k, k], data(cout * cin / groups * k * k, seed)).unwrap(), stride, pad, groups);
        c.dilation = [dil, dil];
        let o = |len: usize| window_out(len, k, stride, (pad, pad), dil, false);
        let (Some(oh), Some(ow)) = (o(hw[0]), o(hw[1])) else { continue };
        let (xs, os) = ([n, cin, hw[0], hw[1]], [n, cout, oh, ow]);
        let x = data(xs.iter().product(), seed + 2);
        let mut want = vec![f32::NAN; os.iter().product()];
        reference::conv2d_fma_ref(&c, &x, xs, None, &mut want, os);
        let lc = slanes::prepare(&c, xs, os).unwrap();
        for kernel in common::sgemm_kernels() {
            let mut got = vec![f32::NAN; want.len()];
            slanes::conv2d(kernel, &c, &lc, &x, xs, None, &mut got, os, &mut Vec::new(), 2);
            assert!((0..got.len()).all(|i| got[i] == want[i]), "slanes {} without a bias, shape {xs:?} → {os:?}", kernel.name());
        }
    }
}

/// `cpu::schan` (channel lanes in K chunks: 7-pixel tiles × 3 vectors, K in chunks of 64)
/// on the shapes the plan gives it — K ≥ 512, maps of at most 64 pixels, ResNet-50's
/// 3×3 stride-2 conv onto 7 × 7 scaled down — and around them: K not a multiple of the chunk
/// (576 = 9 · 64, 600, 1 000), output channels off the 16- and 48-channel steps (17, 40, 72,
/// 100), pixel counts off the 7-pixel tile (1, 3, 15, 17, 63, 64 → 10 tiles of 6 and 7),
/// strides 1 and 2, asymmetric pads, dilation, a batch of 2 and every fused activation;
/// `check_conv` also runs it on every conv of the sweeps and the proptest. The plan takes it
/// for the first shape on an AVX-512 host.
#[test]
fn conv_chunked_channel_lanes() {
    let mut seed = 9500;
    for &(n, cin, cout, hw, k, stride, pad, dil) in &[
        (1usize, 64usize, 72usize, [14usize, 14usize], 3usize, 2usize, [1usize, 1, 1, 1], 1usize),
        (1, 64, 100, [7, 7], 3, 1, [1, 1, 1, 1], 1),
        (1, 600, 17, [1, 1], 1, 2, [0, 0, 0, 0], 1),
        (1, 120, 40, [3, 5], 3, 1, [1, 0, 1, 2], 1),
        (2, 40, 48, [9, 11], 5, 2, [2, 2, 2, 2], 1),
        (1, 72, 64, [8, 8], 3, 1, [2, 2, 2, 2], 2),
        (1, 1000, 33, [15, 15], 1, 2, [0, 0, 0, 0], 1),
        (1, 64, 16, [17, 3], 3, 1, [1, 1, 1, 1], 1),
        (3, 64, 64, [14, 14], 3, 2, [1, 1, 1, 1], 1),
    ] {
        for (act, residual) in [(Some(Activation::Relu), true), (None, false), (Some(Activation::Clip(-0.5, 0.5)), true), (Some(Activation::Sigmoid), true), (Some(Activation::LeakyRelu(0.1)), false)] {
            seed += 1;
            let c = Conv2d {
                weight: Tensor::new(vec![cout, cin, k, k], data(cout * cin * k * k, seed)).unwrap(),
                bias: (seed % 3 != 0).then(|| data(cout, seed + 1)),
                stride: [stride, stride],
                pads: pad,
                dilation: [dil, dil],
                groups: 1,
                act,
                residual,
                precision: Precision::F32,
            };
            let (Some(oh), Some(ow)) = (window_out(hw[0], k, stride, (pad[0], pad[2]), dil, false), window_out(hw[1], k, stride, (pad[1], pad[3]), dil, false)) else { continue };
            let (xs, os) = ([n, cin, hw[0], hw[1]], [n, cout, oh, ow]);
            let x = data(xs.iter().product(), seed + 2);
            let r = data(os.iter().product(), seed + 3);
            let res = residual.then_some(r.as_slice());
            let mut fma = vec![f32::NAN; os.iter().product()];
            reference::conv2d_fma_ref(&c, &x, xs, res, &mut fma, os);
            let mut want = vec![f32::NAN; fma.len()];
            reference::conv2d_ref(&c, &x, xs, res, &mut want, os);
            Tolerance { abs: 1e-4, rel: 1e-4 }.check("schan shape's fma twin", &fma, &want);
            let lc = schan::prepare(&c, xs, os).unwrap();
            let what = format!("schan n{n} cin{cin} cout{cout} hw{hw:?} k{k} s{stride} p{pad:?} d{dil} {act:?} res{residual}");
            for kernel in common::sgemm_kernels() {
                println!("{what}: {}", kernel.name());
                check_chunked(kernel, &c, &lc, &x, xs, res, os, &fma, &what);
            }
        }
    }
    // The plan's choice: ResNet-50's layer4.0.conv2 shape on AVX-512, nothing else here.
    for kernel in common::sgemm_kernels() {
        let c = Conv2d::new(Tensor::new(vec![512, 512, 3, 3], data(512 * 512 * 9, 1)).unwrap(), 2, 1, 1);
        let wide = kernel.name().contains("avx512");
        assert_eq!(schan::pays(kernel, &c, [1, 512, 14, 14], [1, 512, 7, 7]), wide, "{}", kernel.name());
        assert_eq!(schan::pays(kernel, &c, [2, 512, 14, 14], [2, 512, 7, 7]), wide, "batch 2, {}", kernel.name());
        assert!(!schan::pays(kernel, &c, [4, 512, 14, 14], [4, 512, 7, 7]), "batch 4, {}", kernel.name());
        assert!(!schan::pays(kernel, &c, [1, 512, 28, 28], [1, 512, 14, 14]), "14 × 14");
        let one = Conv2d::new(Tensor::new(vec![2048, 1024, 1, 1], data(2048 * 1024, 2)).unwrap(), 2, 0, 1);
        assert!(!schan::pays(kernel, &one, [1, 1024, 14, 14], [1, 2048, 7, 7]), "1 × 1");
    }
}

#[test]
fn conv_dilation_groups_epilogue_batch() {
    let acts = [None, Some(Activation::Relu), Some(Activation::LeakyRelu(0.1)), Some(Activation::Sigmoid), Some(Activation::Clip(0.0, 6.0))];
    let mut seed = 100;
    for &dil in &[1, 2, 3] {
        for &groups in &[1, 2, 4] {
            for (i, act) in acts.iter().enumerate() {
                seed += 1;
                check_conv(2, 8, 12, [9, 11], [3, 3], 1 + i % 2, [2, 1, 0, 2], dil, groups, *act, i % 2 == 0, seed);
            }
        }
    }
    // Large enough for the blocked im2col path (Cin·kh·kw·OH·OW above COL_BUDGET).
    check_conv(2, 16, 8, [64, 70], [3, 3], 1, [1; 4], 1, 1, Some(Activation::Relu), true, 11);
    check_conv(1, 32, 12, [67, 65], [3, 3], 2, [1, 0, 2, 1], 1, 2, None, false, 12);
    check_conv(1, 3, 17, [130, 131], [7, 7], 2, [3; 4], 1, 1, Some(Activation::Relu), false, 13);
    // Strided 3×3 convs with K past `kc_taps` (K = 360, 576, 1 152): on Intel's AVX-512
    // (`Tune::Intel`) they run in K blocks of `kc`, elsewhere of `kc_taps`; the script runs
    // these under both rules. 28² and 29 × 31 maps, residual in the output, two batches.
    check_conv(1, 40, 24, [29, 31], [3, 3], 2, [1; 4], 1, 1, Some(Activation::Relu), true, 32);
    check_conv(2, 64, 17, [28, 28], [3, 3], 2, [1; 4], 1, 1, None, false, 33);
    check_conv(1, 128, 9, [14, 15], [3, 3], 2, [1, 0, 1, 0], 1, 1, Some(Activation::Relu), true, 34);
    // Columns across images, with K past one block (two K blocks through the tile buffer),
    // sigmoid after the scatter, and a map just under the batching threshold.
    check_conv(5, 300, 20, [3, 3], [1, 1], 1, [0; 4], 1, 1, Some(Activation::Sigmoid), true, 14);
    check_conv(3, 40, 18, [7, 7], [3, 3], 1, [1; 4], 1, 2, Some(Activation::Relu), true, 15);
    check_conv(2, 8, 9, [15, 17], [3, 3], 1, [1; 4], 1, 1, None, false, 16);
    // Rows wide enough for row-aligned tiles (no virtual columns): stride 1 and a strided stem,
    // with a masked row tail (OW = 100), a residual and a sigmoid.
    check_conv(1, 5, 9, [20, 96], [3, 3], 1, [1; 4], 1, 1, Some(Activation::Sigmoid), true, 17);
    check_conv(1, 3, 17, [30, 96], [7, 7], 2, [3; 4], 1, 1, Some(Activation::Relu), false, 18);
    check_conv(2, 4, 6, [9, 100], [3, 3], 1, [1; 4], 2, 2, None, true, 19);
    // Every tap but one in the padding, on a 1×1 image (found by conv_proptest).
    check_conv(1, 1, 1, [1, 1], [1, 3], 1, [2; 4], 2, 1, Some(Activation::Relu), false, 0);
    check_conv(1, 2, 3, [1, 2], [3, 3], 1, [2; 4], 2, 1, None, true, 14);
    // Grouped, batched 2×2 maps that keep their size at stride 3, every output reading only
    // padding, and 4×4 maps that keep theirs at stride 2 (found by conv_proptest in CI: the
    // whole-map permutes assumed stride 1).
    check_conv(2, 12, 12, [2, 2], [1, 1], 3, [1; 4], 1, 3, Some(Activation::Relu), false, 3);
    check_conv(4, 6, 10, [4, 4], [3, 3], 2, [3; 4], 1, 2, None, true, 4);
    // Depthwise and a 65-channel pointwise tail.
    check_conv(1, 16, 16, [10, 10], [3, 3], 1, [1; 4], 1, 16, Some(Activation::Relu), false, 7);
    check_conv(2, 65, 63, [5, 7], [1, 1], 1, [0; 4], 1, 1, None, true, 8);
    check_conv(1, 3, 5, [8, 8], [1, 3], 2, [0, 1, 0, 1], 1, 1, None, false, 9);
    // 1×1 convs of one K block whose output is past L2 run weight panel by weight panel (at 1
    // and 2 threads): with a residual, a partial last panel (140 rows) and a masked column
    // tail (57·55 pixels), without one, and groups.
    check_conv(1, 64, 140, [57, 55], [1, 1], 1, [0; 4], 1, 1, Some(Activation::Relu), true, 20);
    check_conv(1, 33, 136, [56, 56], [1, 1], 1, [0; 4], 1, 1, None, false, 21);
    check_conv(1, 64, 512, [28, 28], [1, 1], 1, [0; 4], 1, 2, Some(Activation::LeakyRelu(0.1)), true, 22);
    // At most 4 output pixels in the whole batch (the narrow kernel): 1×1, 1×2 and 2×2 maps,
    // batches of 1–4, tails of the weight panels (13 and 70 rows: 8 panels side by side, then
    // the rest), groups, padding, a residual and a sigmoid after the store.
    check_conv(1, 64, 70, [2, 2], [3, 3], 2, [1; 4], 1, 1, Some(Activation::Relu), false, 24);
    check_conv(4, 17, 13, [1, 1], [3, 3], 1, [1; 4], 1, 1, None, true, 25);
    check_conv(2, 12, 30, [1, 2], [3, 3], 1, [1; 4], 1, 3, Some(Activation::Sigmoid), true, 26);
    check_conv(1, 33, 40, [2, 2], [3, 3], 1, [1; 4], 1, 1, Some(Activation::LeakyRelu(0.1)), true, 27);
    check_conv(3, 9, 7, [1, 1], [1, 1], 1, [0; 4], 1, 1, Some(Activation::Clip(0.0, 6.0)), false, 28);
    check_conv(1, 20, 9, [4, 4], [3, 3], 2, [1; 4], 1, 1, None, true, 29);
    // Dilated taps and asymmetric pads on the narrow kernel (its columns gather only the taps
    // inside the input, the rest 0): a 2×2 output of a dilation-2 3×3 conv, whose corner
    // taps read padding at every pixel, and 1×3 / 1×1 outputs of uneven pads.
    check_conv(1, 10, 12, [2, 2], [3, 3], 1, [2; 4], 2, 1, Some(Activation::Relu), true, 36);
    check_conv(1, 6, 9, [2, 5], [3, 3], 2, [1, 0, 1, 2], 1, 1, None, false, 37);
    check_conv(1, 7, 11, [3, 2], [2, 3], 3, [0, 2, 1, 0], 1, 1, Some(Activation::Clip(-0.5, 0.5)), true, 38);
    // Batched maps of 16 and 4 pixels that keep their size, packed by permuting whole maps
    // on AVX-512: K past one block, a residual, groups, a batch that leaves the last chunk
    // part empty (7 maps of 4 pixels), 1×3 and dilated kernels, non-square maps.
    check_conv(5, 20, 12, [4, 4], [3, 3], 1, [1; 4], 1, 1, Some(Activation::Relu), true, 30);
    check_conv(7, 40, 18, [2, 2], [3, 3], 1, [1; 4], 1, 2, None, true, 31);
    check_conv(3, 9, 10, [1, 4], [1, 3], 1, [0, 1, 0, 1], 1, 1, Some(Activation::LeakyRelu(0.1)), false, 32);
    check_conv(6, 8, 17, [2, 8], [3, 3], 1, [2; 4], 2, 1, None, false, 33);
    check_conv(9, 33, 8, [4, 4], [1, 1], 1, [0; 4], 1, 1, Some(Activation::Sigmoid), true, 34);
    check_conv(64, 16, 16, [4, 4], [3, 3], 1, [1; 4], 1, 1, Some(Activation::Relu), true, 35);
    // Stride-1 phase planes of short rows (whole planes zeroed, then the image copied in)
    // with asymmetric pads, and a batch of 8² maps with a residual (staging copied in and out
    // in vectors).
    check_conv(2, 6, 5, [5, 9], [3, 3], 1, [0, 2, 1, 1], 1, 1, None, true, 36);
    check_conv(16, 16, 16, [8, 8], [3, 3], 1, [1; 4], 1, 1, Some(Activation::Relu), true, 37);
    // Outputs exactly one vector wide (16 on AVX-512, 8 on AVX2): tiles of whole rows, each
    // vector read from its own padded plane row. A 32² stem (7×7/2 → 16²), stride 1 with a
    // residual, dilation, one output row, a row count no tile width divides.
    check_conv(3, 3, 16, [32, 32], [7, 7], 2, [3; 4], 1, 1, Some(Activation::Relu), false, 38);
    check_conv(2, 12, 10, [13, 16], [3, 3], 1, [1; 4], 1, 1, None, true, 39);
    check_conv(1, 5, 9, [16, 16], [3, 3], 1, [2; 4], 2, 1, Some(Activation::Sigmoid), true, 40);
    check_conv(2, 4, 6, [1, 16], [1, 3], 1, [0, 1, 0, 1], 1, 2, None, false, 41);
    check_conv(1, 7, 11, [7, 8], [3, 3], 1, [1; 4], 1, 1, Some(Activation::Relu), true, 42);
    check_conv(2, 6, 9, [16, 16], [3, 3], 2, [1; 4], 1, 1, None, true, 43);
    // A stride-1 3×3 conv over three of its longer K blocks (576 = 256 + 256 + 64).
    check_conv(1, 64, 20, [13, 11], [3, 3], 1, [1; 4], 1, 1, Some(Activation::Relu), true, 23);
}

// Off x86-64 there is no FP32 kernel of kestrel's own: the loop over them is empty.
#[cfg_attr(not(target_arch = "x86_64"), allow(unreachable_code, unused_variables))]
fn check_conv_transpose(cin: usize, cout: usize, hw: [usize; 2], k: usize, stride: usize, pad: [usize; 4], opad: usize, dil: usize, groups: usize, seed: u64) {
    let c = ConvTranspose2d {
        weight: Tensor::new(vec![cin, cout / groups, k, k], data(cin * cout / groups * k * k, seed)).unwrap(),
        bias: Some(data(cout, seed + 1)),
        stride: [stride; 2],
        pads: pad,
        output_padding: [opad; 2],
        dilation: [dil; 2],
        groups,
        precision: Precision::F32,
    };
    let dim = |i: usize, pb: usize, pe: usize| (stride * (i - 1) + opad + (k - 1) * dil + 1).checked_sub(pb + pe);
    let (Some(oh), Some(ow)) = (dim(hw[0], pad[0], pad[2]), dim(hw[1], pad[1], pad[3])) else { return };
    if oh == 0 || ow == 0 {
        return;
    }
    let xs = [2, cin, hw[0], hw[1]];
    let os = [2, cout, oh, ow];
    let x = data(xs.iter().product(), seed + 2);
    let mut want = vec![f32::NAN; os.iter().product()];
    reference::conv_transpose2d_ref(&c, &x, xs, &mut want, os);
    let mut got = vec![f32::NAN; want.len()];
    conv_transpose::conv_transpose2d(&c, &x, xs, &mut got, os, &mut Vec::new(), 2);
    Tolerance::KERNEL.check(&format!("convT cin{cin} cout{cout} hw{hw:?} k{k} s{stride} p{pad:?} op{opad} d{dil} g{groups}"), &got, &want);
    // The GEMM on each of kestrel's FP32 kernels this CPU has (a 1×1 conv of Cout·k² outputs),
    // at 1 and 2 threads, with scratch left over from a larger call.
    for kernel in kestrel::cpu::detect::supported().into_iter().filter_map(sgemm::Kernel::for_isa) {
        let p = conv_transpose::pack(kernel, &c).expect("a [Cin, Cout/g, k, k] weight packs");
        for threads in [1, 2] {
            let (mut cols, mut scratch) = (vec![f32::NAN; 7], vec![f32::NAN; 1 << 12]);
            let mut got = vec![f32::NAN; want.len()];
            conv_transpose::conv_transpose2d_packed(&c, &p, &x, xs, &mut got, os, &mut cols, &mut scratch, threads);
            Tolerance::KERNEL.check(&format!("convT on {} t{threads} cin{cin} cout{cout} hw{hw:?} k{k} s{stride} p{pad:?} op{opad} d{dil} g{groups}", kernel.name()), &got, &want);
        }
    }
}

#[test]
fn conv_transpose_sweep() {
    let mut seed = 500;
    for &hw in &[1usize, 3, 7, 8] {
        for &(k, stride) in &[(2, 2), (3, 1), (3, 2), (4, 2)] {
            for &pad in &[0usize, 1] {
                for &groups in &[1, 2] {
                    seed += 1;
                    check_conv_transpose(4, 6, [hw, hw + 1], k, stride, [pad, pad, pad + 1, pad], usize::from(stride > 1 && pad > 0), 1, groups, seed);
                }
            }
        }
    }
    check_conv_transpose(3, 5, [5, 5], 3, 2, [1; 4], 1, 2, 1, 42);
    // Taps that tile the output exactly (kernel = stride, no padding: each output written
    // once), UNet's 2×2 stride 2 and a 3×3 stride 3, odd sizes and groups.
    for (i, &(k, hw)) in [(2, [1, 1]), (2, [3, 5]), (2, [8, 7]), (3, [4, 3]), (1, [3, 3])].iter().enumerate() {
        for groups in [1, 2] {
            check_conv_transpose(4, 6, hw, k, k, [0; 4], 0, 1, groups, 600 + 2 * i as u64 + groups as u64);
        }
    }
    // Wider ones on the packed GEMM's tails: 17 and 63 input channels (K), 9 · 4 and 65 · 4
    // output rows (8-row panels), maps of 17 and 65 columns (vector tails), UNet's 64 → 32.
    for (i, &(cin, cout, hw, groups)) in [(17, 9, [5, 17], 1), (63, 65, [3, 13], 1), (34, 18, [4, 65], 2), (64, 32, [16, 16], 1)].iter().enumerate() {
        check_conv_transpose(cin, cout, hw, 2, 2, [0; 4], 0, 1, groups, 700 + i as u64);
        check_conv_transpose(cin, cout, hw, 3, 2, [1; 4], 1, 1, groups, 710 + i as u64);
    }
}

fn check_pool(p: &Pool2d, is_max: bool, hw: [usize; 2], seed: u64) {
    let Some([oh, ow]) = pool_out(p, hw[0], hw[1]) else { return };
    let xs = [2, 3, hw[0], hw[1]];
    let os = [2, 3, oh, ow];
    let x = data(xs.iter().product(), seed);
    let mut want = vec![f32::NAN; os.iter().product()];
    reference::pool2d_ref(p, is_max, &x, xs, &mut want, os);
    for simd in simd_levels() {
        let mut got = vec![f32::NAN; want.len()];
        pool::pool2d(simd, p, is_max, &x, xs, &mut got, os);
        Tolerance::KERNEL.check(&format!("pool max={is_max} {p:?} hw{hw:?} {simd:?}"), &got, &want);
    }
    if is_max {
        // The u8 max-pool (INT8 models' codes) against the reference on the same codes as f32: exact.
        let codes: Vec<u8> = x.iter().map(|v| ((v + 1.0) * 127.5) as u8).collect();
        let codes_f: Vec<f32> = codes.iter().map(|&c| f32::from(c)).collect();
        let mut want = vec![f32::NAN; os.iter().product()];
        reference::pool2d_ref(p, true, &codes_f, xs, &mut want, os);
        for simd in simd_levels() {
            let mut got = vec![0xAAu8; want.len()];
            pool::max_pool2d_u8(simd, p, &codes, xs, &mut got, os);
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                if w.is_finite() {
                    assert_eq!(f32::from(*g), *w, "u8 max-pool {p:?} hw{hw:?} {simd:?} at {i}");
                }
            }
        }
    }
}

#[test]
fn pool_sweep() {
    let mut seed = 900;
    // 40 and 67: rows long enough for the u8 pool's vector stride-2 path, with a tail.
    for &hw in &[1usize, 3, 7, 15, 17, 40, 67] {
        for &(k, s, pad) in &[(1, 1, 0), (2, 2, 0), (3, 2, 1), (3, 1, 1), (5, 3, 2)] {
            for &ceil in &[false, true] {
                for &cip in &[false, true] {
                    for &dil in &[1, 2] {
                        seed += 1;
                        let p = Pool2d { kernel: [k, k], stride: [s, s], pads: [pad; 4], dilation: [dil, dil], ceil_mode: ceil, count_include_pad: cip };
                        check_pool(&p, true, [hw, hw + 1], seed);
                        check_pool(&p, false, [hw, hw + 1], seed);
                    }
                }
            }
        }
    }
}

/// The AVX-512 and AVX2 max pools (column stride 2, 1–3 column taps) against the generic
/// separable one, bit for bit: row and column tails around the 8- and 16-lane vectors, pads, row strides and
/// dilations, ceil mode, with ±0.0 and NaN planted (NaNs are ignored, and which zero wins
/// depends on the order of the maxima, which both keep).
#[test]
fn max_pool_vector_path_matches_the_generic_bit_for_bit() {
    let levels: Vec<Simd> = simd_levels().into_iter().filter(|s| !matches!(s, Simd::Baseline)).collect();
    if levels.is_empty() {
        println!("max pool vector path: no AVX2 or AVX-512 on this host, not run");
        return;
    }
    println!("max pool vector path: {} against baseline", levels.iter().map(|s| if matches!(s, Simd::Avx512(_)) { "avx512" } else { "avx2" }).collect::<Vec<_>>().join(", "));
    let mut seed = 7000;
    for &(h, w) in &[(1usize, 1usize), (3, 7), (7, 15), (8, 8), (16, 16), (17, 17), (9, 33), (5, 63), (4, 65), (2, 112)] {
        for &(ky, kx) in &[(3usize, 3usize), (1, 1), (2, 2), (3, 2), (4, 3)] {
            for &(sy, dy) in &[(2usize, 1usize), (1, 1), (3, 2)] {
                for &pad in &[0usize, 1, 2] {
                    for &ceil in &[false, true] {
                        if pad >= kx.max(ky) {
                            continue;
                        }
                        seed += 1;
                        let p = Pool2d { kernel: [ky, kx], stride: [sy, 2], pads: [pad, pad, pad + usize::from(ceil), pad], dilation: [dy, 1], ceil_mode: ceil, count_include_pad: false };
                        let Some([oh, ow]) = pool_out(&p, h, w) else { continue };
                        let (xs, os) = ([2, 3, h, w], [2, 3, oh, ow]);
                        let mut x = data(xs.iter().product(), seed);
                        for (i, v) in x.iter_mut().enumerate() {
                            match i % 11 {
                                3 => *v = 0.0,
                                5 => *v = -0.0,
                                9 if i % 3 == 0 => *v = f32::NAN,
                                _ => {}
                            }
                        }
                        let mut want = vec![1.5f32; os.iter().product()];
                        pool::pool2d(Simd::Baseline, &p, true, &x, xs, &mut want, os);
                        for &simd in &levels {
                            let mut got = vec![2.5f32; want.len()];
                            pool::pool2d(simd, &p, true, &x, xs, &mut got, os);
                            let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                            assert_eq!(bits(&got), bits(&want), "max pool {p:?} on {h}x{w}");
                        }
                    }
                }
            }
        }
    }
}

/// Many planes, split into uneven groups over two workers (ResNet's stem pool in small).
#[test]
fn max_pool_splits_planes_over_workers() {
    let pool2 = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let p = Pool2d { kernel: [3, 3], stride: [2, 2], pads: [1; 4], dilation: [1, 1], ceil_mode: false, count_include_pad: false };
    for (planes, hw) in [(74usize, [30usize, 31usize]), (3, [120, 97]), (201, [9, 9])] {
        let [oh, ow] = pool_out(&p, hw[0], hw[1]).expect("pool shape");
        let (xs, os) = ([2, planes / 2 + planes % 2, hw[0], hw[1]], [2, planes / 2 + planes % 2, oh, ow]);
        let mut x = data(xs.iter().product(), planes as u64);
        // NaN inputs are ignored, as `f32::max` ignores them (the u8 codes below never see one).
        for i in (0..x.len()).step_by(97) {
            x[i] = f32::NAN;
        }
        let mut want = vec![f32::NAN; os.iter().product()];
        reference::pool2d_ref(&p, true, &x, xs, &mut want, os);
        for simd in simd_levels() {
            let mut got = vec![f32::NAN; want.len()];
            pool2.install(|| pool::pool2d(simd, &p, true, &x, xs, &mut got, os));
            assert_eq!(got, want, "f32 max-pool {xs:?} {simd:?}");
        }
        let codes: Vec<u8> = x.iter().map(|v| if v.is_nan() { 7 } else { ((v + 1.0) * 127.5) as u8 }).collect();
        let want8: Vec<u8> = {
            let f: Vec<f32> = codes.iter().map(|&c| f32::from(c)).collect();
            let mut w = vec![f32::NAN; os.iter().product()];
            reference::pool2d_ref(&p, true, &f, xs, &mut w, os);
            w.iter().map(|&v| v as u8).collect()
        };
        for simd in simd_levels() {
            let mut got8 = vec![0xAAu8; want8.len()];
            pool2.install(|| pool::max_pool2d_u8(simd, &p, &codes, xs, &mut got8, os));
            assert_eq!(got8, want8, "u8 max-pool {xs:?} {simd:?}");
        }
    }
}

/// The u8 max pool's vector columns (stride 2, 1–3 taps: 16 outputs a step on AVX2, 32 on
/// AVX-512, a last step overlapping the one before) against the reference on the same codes,
/// exactly, at every level this CPU has: output rows of 1 to 65 columns around both vector
/// widths, pads 0 and 1 on either side, row strides 1 and 2, codes over the whole 0–255 range.
#[test]
fn u8_max_pool_vector_columns_match_the_reference() {
    let levels = simd_levels();
    println!("u8 max pool: SIMD levels {levels:?}");
    let mut checked = 0;
    for kx in 1..=3usize {
        for &(left, right) in &[(0usize, 0usize), (1, 1), (0, 1)] {
            for &ow in &[1usize, 3, 7, 15, 16, 17, 31, 32, 33, 63, 64, 65] {
                for &(ky, sy) in &[(kx, 2usize), (1, 1)] {
                    let w = (2 * (ow - 1) + kx).saturating_sub(left + right).max(1);
                    let h = 5;
                    let p = Pool2d { kernel: [ky, kx], stride: [sy, 2], pads: [ky / 2, left, ky / 2, right], dilation: [1, 1], ceil_mode: false, count_include_pad: false };
                    let Some([oh, ow2]) = pool_out(&p, h, w) else { continue };
                    let (xs, os) = ([2, 3, h, w], [2, 3, oh, ow2]);
                    let codes: Vec<u8> = data(xs.iter().product(), (kx * 1000 + ow * 7 + left) as u64).iter().map(|v| ((v + 1.0) * 127.5).clamp(0.0, 255.0) as u8).collect();
                    let f: Vec<f32> = codes.iter().map(|&c| f32::from(c)).collect();
                    let mut want = vec![f32::NAN; os.iter().product()];
                    reference::pool2d_ref(&p, true, &f, xs, &mut want, os);
                    for &simd in &levels {
                        let mut got = vec![0xAAu8; want.len()];
                        pool::max_pool2d_u8(simd, &p, &codes, xs, &mut got, os);
                        for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                            let w = if w.is_finite() { *w } else { 0.0 };
                            assert_eq!(f32::from(*g), w, "u8 max-pool kx{kx} pads ({left},{right}) ow{ow2} {simd:?} at {i}");
                        }
                        checked += 1;
                    }
                }
            }
        }
    }
    println!("u8 max pool: {checked} cases");
    assert!(checked >= 3 * 3 * 12 * 2, "only {checked} cases ran");
}

/// Pooling over 1 and 3 spatial axes ([`PoolNd`]) against the 2-D reference on the same data
/// with a unit axis added: `[N, C, L]` as `[N, C, 1, L]`, and `[N, C, 1, H, W]` as
/// `[N, C, H, W]`; and over 2 axes directly.
#[test]
fn pool_nd_agrees_with_the_2d_reference() {
    let (mut seed, mut checked) = (1900, 0);
    for &hw in &[1usize, 3, 7, 15, 17] {
        for &(k, s, pad) in &[(1, 1, 0), (2, 2, 0), (3, 2, 1), (3, 1, 1), (5, 3, 2)] {
            for &ceil in &[false, true] {
                for &cip in &[false, true] {
                    for &dil in &[1, 2] {
                        for &max in &[true, false] {
                            seed += 1;
                            let p2 = Pool2d { kernel: [k, k], stride: [s, s], pads: [pad, pad, pad + 1, pad], dilation: [dil, dil], ceil_mode: ceil, count_include_pad: cip };
                            let Some([oh, ow]) = pool_out(&p2, hw, hw + 1) else { continue };
                            let x = data(2 * 3 * hw * (hw + 1), seed);
                            let mut want = vec![f32::NAN; 2 * 3 * oh * ow];
                            reference::pool2d_ref(&p2, max, &x, [2, 3, hw, hw + 1], &mut want, [2, 3, oh, ow]);
                            let what = format!("pool_nd max={max} {p2:?} hw{hw}");
                            // 2-D, and 3-D with a leading unit axis.
                            for lift in [false, true] {
                                let u = usize::from(lift);
                                let axis = |v: usize, unit: usize| if lift { vec![unit, v, v] } else { vec![v, v] };
                                let pads = if lift { vec![0, pad, pad, 0, pad + 1, pad] } else { vec![pad, pad, pad + 1, pad] };
                                let p = PoolNd { max, kernel: axis(k, 1), stride: axis(s, 1), pads, dilation: axis(dil, 1), ceil_mode: ceil, count_include_pad: cip };
                                let xs: Vec<usize> = [&[2, 3][..], &vec![1; u], &[hw, hw + 1]].concat();
                                let os = pool_nd_out(&p, &xs).unwrap();
                                assert_eq!(os.iter().product::<usize>(), want.len(), "{what}: shape {os:?}");
                                let mut got = vec![f32::NAN; want.len()];
                                pool::pool_nd(&p, &x, &xs, &mut got, &os);
                                Tolerance::KERNEL.check(&format!("{what} lift={lift}"), &got, &want);
                                checked += 1;
                            }
                            // 1-D along W against the 2-D reference with a 1-tap H window.
                            let p1 = Pool2d { kernel: [1, k], stride: [1, s], pads: [0, pad, 0, pad], ..p2 };
                            let Some([_, ow1]) = pool_out(&p1, 1, hw) else { continue };
                            let x1 = data(2 * 3 * hw, seed + 7);
                            let mut want = vec![f32::NAN; 2 * 3 * ow1];
                            reference::pool2d_ref(&p1, max, &x1, [2, 3, 1, hw], &mut want, [2, 3, 1, ow1]);
                            let p = PoolNd { max, kernel: vec![k], stride: vec![s], pads: vec![pad, pad], dilation: vec![dil], ceil_mode: ceil, count_include_pad: cip };
                            let os = pool_nd_out(&p, &[2, 3, hw]).unwrap();
                            let mut got = vec![f32::NAN; want.len()];
                            pool::pool_nd(&p, &x1, &[2, 3, hw], &mut got, &os);
                            Tolerance::KERNEL.check(&format!("1-D {what}"), &got, &want);
                            checked += 1;
                        }
                    }
                }
            }
        }
    }
    assert!(checked > 500, "only {checked} pooling cases ran");
}

/// Transposed convolution over 1, 2 and 3 spatial axes ([`ConvTransposeNd`]) against the 2-D
/// reference, with unit axes added where the rank differs; strides, pads, output padding,
/// dilations and groups.
#[test]
fn conv_transpose_nd_agrees_with_the_2d_reference() {
    let (mut seed, mut checked) = (2900, 0);
    for &hw in &[1usize, 3, 7, 8] {
        for &(k, stride) in &[(1, 1), (2, 2), (3, 1), (3, 2), (4, 3)] {
            for &pad in &[0usize, 1] {
                for &(groups, dil) in &[(1, 1), (2, 1), (1, 2)] {
                    seed += 1;
                    let (cin, cout) = (4, 6);
                    let opad = usize::from(stride > 1 && pad > 0);
                    let w = data(cin * cout / groups * k * k, seed);
                    let bias = Some(data(cout, seed + 1));
                    // 2-D, and 3-D as [.., 1, H, W].
                    let c2 = ConvTranspose2d {
                        weight: Tensor::new(vec![cin, cout / groups, k, k], w.clone()).unwrap(),
                        bias: bias.clone(),
                        stride: [stride; 2],
                        pads: [pad, pad, pad + 1, pad],
                        output_padding: [opad; 2],
                        dilation: [dil; 2],
                        groups,
                        precision: Precision::F32,
                    };
                    let nd = |lift: bool| {
                        let axis = |v: usize, unit: usize| if lift { vec![unit, v, v] } else { vec![v, v] };
                        ConvTransposeNd {
                            weight: Tensor::new([vec![cin, cout / groups], axis(k, 1)].concat(), w.clone()).unwrap(),
                            bias: bias.clone(),
                            stride: axis(stride, 1),
                            pads: if lift { vec![0, pad, pad, 0, pad + 1, pad] } else { vec![pad, pad, pad + 1, pad] },
                            output_padding: axis(opad, 0),
                            dilation: axis(dil, 1),
                            groups,
                        }
                    };
                    let xs2 = [2, cin, hw, hw + 1];
                    let Ok(os2) = conv_transpose_nd_out(&nd(false), &xs2) else { continue };
                    let x = data(xs2.iter().product(), seed + 2);
                    let mut want = vec![f32::NAN; os2.iter().product()];
                    reference::conv_transpose2d_ref(&c2, &x, xs2, &mut want, [os2[0], os2[1], os2[2], os2[3]]);
                    let what = format!("convT nd hw{hw} k{k} s{stride} p{pad} op{opad} d{dil} g{groups}");
                    for lift in [false, true] {
                        let c = nd(lift);
                        let xs: Vec<usize> = if lift { vec![2, cin, 1, hw, hw + 1] } else { xs2.to_vec() };
                        let os = conv_transpose_nd_out(&c, &xs).unwrap();
                        let mut got = vec![f32::NAN; want.len()];
                        conv_transpose::conv_transpose_nd(&c, &x, &xs, &mut got, &os);
                        Tolerance::KERNEL.check(&format!("{what} lift={lift}"), &got, &want);
                        checked += 1;
                    }
                    // 1-D along W against 2-D with a 1-tap H kernel.
                    let w1 = data(cin * cout / groups * k, seed + 3);
                    let c2 = ConvTranspose2d {
                        weight: Tensor::new(vec![cin, cout / groups, 1, k], w1.clone()).unwrap(),
                        stride: [1, stride],
                        pads: [0, pad, 0, pad + 1],
                        output_padding: [0, opad],
                        dilation: [1, dil],
                        ..c2
                    };
                    let c1 = ConvTransposeNd {
                        weight: Tensor::new(vec![cin, cout / groups, k], w1).unwrap(),
                        bias: bias.clone(),
                        stride: vec![stride],
                        pads: vec![pad, pad + 1],
                        output_padding: vec![opad],
                        dilation: vec![dil],
                        groups,
                    };
                    let Ok(os1) = conv_transpose_nd_out(&c1, &[2, cin, hw]) else { continue };
                    let x1 = data(2 * cin * hw, seed + 4);
                    let mut want = vec![f32::NAN; os1.iter().product()];
                    reference::conv_transpose2d_ref(&c2, &x1, [2, cin, 1, hw], &mut want, [2, cout, 1, os1[2]]);
                    let mut got = vec![f32::NAN; want.len()];
                    conv_transpose::conv_transpose_nd(&c1, &x1, &[2, cin, hw], &mut got, &os1);
                    Tolerance::KERNEL.check(&format!("1-D {what}"), &got, &want);
                    checked += 1;
                }
            }
        }
    }
    assert!(checked > 150, "only {checked} transposed-conv cases ran");
}

/// numpy `matmul` by a constant (1-D operands, batch broadcasting both ways) against a plain
/// triple loop.
#[test]
fn matmul_broadcasts_as_numpy() {
    let cases: &[(&[usize], &[usize])] = &[
        (&[4], &[2, 4, 3]),
        (&[2, 3, 4], &[4]),
        (&[7], &[7]),
        (&[3, 1, 3, 4], &[1, 2, 4, 2]),
        (&[2, 3, 17], &[2, 17, 15]),
        (&[1, 65], &[3, 65, 1]),
        (&[5, 2, 1, 63], &[2, 63, 7]),
    ];
    for (i, &(a_s, b_s)) in cases.iter().enumerate() {
        let os = matmul_out(a_s, b_s).unwrap();
        let a2: Vec<usize> = if a_s.len() == 1 { vec![1, a_s[0]] } else { a_s.to_vec() };
        let b2: Vec<usize> = if b_s.len() == 1 { vec![b_s[0], 1] } else { b_s.to_vec() };
        let (m, k, n) = (a2[a2.len() - 2], a2[a2.len() - 1], b2[b2.len() - 1]);
        let (a, b) = (data(a_s.iter().product(), 70 + i as u64), data(b_s.iter().product(), 90 + i as u64));
        let batch: Vec<usize> = os[..os.len() - usize::from(a_s.len() > 1) - usize::from(b_s.len() > 1)].to_vec();
        // Flat index of a batch index into an operand's batch dims, broadcasting dims of 1.
        let index = |dims: &[usize], mut bi: usize| {
            let (mut idx, mut stride) = (0, 1);
            for d in (0..batch.len()).rev() {
                let j = bi % batch[d];
                bi /= batch[d];
                if let Some(od) = (d + dims.len()).checked_sub(batch.len()) {
                    idx += if dims[od] == 1 { 0 } else { j * stride };
                    stride *= dims[od];
                }
            }
            idx
        };
        let mut want = vec![0.0f32; os.iter().product()];
        for bi in 0..batch.iter().product::<usize>() {
            let (ia, ib) = (index(&a2[..a2.len() - 2], bi), index(&b2[..b2.len() - 2], bi));
            for r in 0..m {
                for c in 0..n {
                    want[(bi * m + r) * n + c] = (0..k).map(|j| a[(ia * m + r) * k + j] * b[(ib * k + j) * n + c]).sum();
                }
            }
        }
        let mut got = vec![f32::NAN; want.len()];
        linear::matmul(&a, a_s, &b, b_s, &mut got, 2);
        Tolerance::KERNEL.check(&format!("matmul {a_s:?} x {b_s:?} -> {os:?}"), &got, &want);
    }
    assert_eq!(matmul_out(&[2, 3], &[4, 2]), None);
    assert_eq!(matmul_out(&[2, 3, 4], &[3, 4, 2]), None);
}

#[test]
fn global_avg_pool_matches_mean() {
    let x = data(2 * 3 * 7 * 5, 3);
    let mut got = vec![0.0; 6];
    pool::global_avg_pool(&x, 35, &mut got);
    let want: Vec<f32> = x.chunks(35).map(|c| c.iter().sum::<f32>() / 35.0).collect();
    Tolerance::KERNEL.check("gap", &got, &want);
}

fn check_resize(r: &Resize, hw: [usize; 2], seed: u64) {
    let [oh, ow] = resize_out(&r.target, hw[0], hw[1]);
    if oh == 0 || ow == 0 {
        return;
    }
    let xs = [1, 2, hw[0], hw[1]];
    let os = [1, 2, oh, ow];
    let x = data(xs.iter().product(), seed);
    let mut want = vec![f32::NAN; os.iter().product()];
    reference::resize_ref(r, &x, xs, &mut want, os);
    let mut got = vec![f32::NAN; want.len()];
    resize::resize(r, &x, xs, &mut got, os);
    Tolerance { abs: 1e-5, rel: 1e-5 }.check(&format!("resize {r:?} hw{hw:?}"), &got, &want);
}

#[test]
fn resize_sweep() {
    let modes = [
        ResizeMode::Linear,
        ResizeMode::Nearest(NearestMode::RoundPreferFloor),
        ResizeMode::Nearest(NearestMode::RoundPreferCeil),
        ResizeMode::Nearest(NearestMode::Floor),
        ResizeMode::Nearest(NearestMode::Ceil),
    ];
    let coords = [CoordMode::HalfPixel, CoordMode::PytorchHalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric];
    let targets = [ResizeTarget::Scales([2.0, 2.0]), ResizeTarget::Scales([0.5, 1.5]), ResizeTarget::Sizes([7, 3]), ResizeTarget::Sizes([1, 17])];
    let mut seed = 1300;
    for mode in modes {
        for coord in coords {
            for target in targets {
                for &hw in &[1usize, 3, 8] {
                    seed += 1;
                    check_resize(&Resize::new(mode, coord, target), [hw, hw + 2], seed);
                }
            }
        }
    }
}

/// The general resize path (f64 coordinates, n-tap windows: bicubic, antialias, …) and the
/// fast two-tap path agree where both apply: bilinear everywhere, nearest at power-of-two
/// scales (elsewhere f32 and f64 coordinates may round a tie differently).
#[test]
fn general_resize_path_agrees_with_the_fast_one() {
    let coords = [CoordMode::HalfPixel, CoordMode::PytorchHalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric];
    let mut seed = 1700;
    for coord in coords {
        for (mode, targets) in [
            (ResizeMode::Linear, vec![ResizeTarget::Scales([2.0, 2.0]), ResizeTarget::Scales([0.5, 1.5]), ResizeTarget::Sizes([7, 3]), ResizeTarget::Sizes([1, 17])]),
            (ResizeMode::Nearest(NearestMode::Floor), vec![ResizeTarget::Scales([2.0, 4.0]), ResizeTarget::Scales([0.5, 0.25])]),
        ] {
            for target in targets {
                for &hw in &[1usize, 4, 8] {
                    seed += 1;
                    let r = Resize::new(mode, coord, target);
                    let [oh, ow] = kestrel::graph::shape::resize_out(&target, hw, hw + 2);
                    if oh == 0 || ow == 0 {
                        continue;
                    }
                    let (xs, os) = ([2, 3, hw, hw + 2], [2, 3, oh, ow]);
                    let x = data(xs.iter().product(), seed);
                    let mut fast = vec![f32::NAN; os.iter().product()];
                    resize::resize(&r, &x, xs, &mut fast, os);
                    let mut general = vec![f32::NAN; fast.len()];
                    resize::resize_general(&r, &x, xs, &mut general, os);
                    Tolerance { abs: 1e-5, rel: 1e-5 }.check(&format!("general vs fast {r:?} hw{hw}"), &general, &fast);
                }
            }
        }
    }
}

/// Every activation fused into a conv epilogue (the FP32 kernels apply the ones their tiles
/// lack in a pass after the store) equals the conv twin with the activation applied.
#[test]
fn every_activation_fuses_into_conv() {
    let acts = [
        Activation::Relu,
        Activation::LeakyRelu(0.1),
        Activation::Sigmoid,
        Activation::Clip(-0.5, 0.7),
        Activation::Tanh,
        Activation::Elu(0.9),
        Activation::Selu(1.67, 1.05),
        Activation::HardSigmoid(0.2, 0.5),
        Activation::HardSwish,
        Activation::Mish,
        Activation::Neg,
        Activation::Exp,
        Activation::Pow(2.0),
    ];
    for (i, act) in acts.into_iter().enumerate() {
        check_conv(1, 5, 7, [9, 11], [3, 3], 1, [1, 1, 1, 1], 1, 1, Some(act), i % 2 == 0, 900 + i as u64);
    }
}

/// Pad beyond the input's length (numpy's values, from `np.pad`) and negative pads (crops).
#[test]
fn pad_modes_beyond_the_edge_and_crops() {
    use kestrel::cpu::pad::pad;
    use kestrel::graph::{Pad, PadMode};
    let x = [0.0f32, 1.0, 2.0];
    for (mode, want) in [
        (PadMode::Reflect, vec![0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0, 1.0, 0.0, 1.0, 2.0, 1.0]),
        (PadMode::Wrap, vec![2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0, 2.0, 0.0, 1.0]),
        (PadMode::Edge, vec![0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 2.0, 2.0, 2.0, 2.0, 2.0, 2.0]),
        (PadMode::Constant, vec![7.0, 7.0, 7.0, 7.0, 0.0, 1.0, 2.0, 7.0, 7.0, 7.0, 7.0, 7.0]),
    ] {
        let p = Pad { mode, value: 7.0, pads: vec![[4, 5]] };
        let mut out = vec![f32::NAN; 12];
        pad(&p, &x, &[3], &mut out, &[12]);
        assert_eq!(out, want, "{mode:?}");
    }
    let y: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let p = Pad { mode: PadMode::Reflect, value: 0.0, pads: vec![[1, 0], [0, 2]] };
    let mut out = vec![f32::NAN; 24];
    pad(&p, &y, &[3, 4], &mut out, &[4, 6]);
    assert_eq!(out, [4.0, 5.0, 6.0, 7.0, 6.0, 5.0, 0.0, 1.0, 2.0, 3.0, 2.0, 1.0, 4.0, 5.0, 6.0, 7.0, 6.0, 5.0, 8.0, 9.0, 10.0, 11.0, 10.0, 9.0]);
    // Crop one row at the top and one column each side, pad one constant row at the bottom.
    let p = Pad { mode: PadMode::Constant, value: -1.0, pads: vec![[-1, 1], [-1, -1]] };
    let mut out = vec![f32::NAN; 6];
    pad(&p, &y, &[3, 4], &mut out, &[3, 2]);
    assert_eq!(out, [5.0, 6.0, 9.0, 10.0, -1.0, -1.0]);
}

/// Every SIMD level this CPU runs, baseline first.
fn simd_levels() -> Vec<Simd> {
    let mut v = vec![Simd::Baseline];
    v.extend(kestrel::cpu::detect::supported().into_iter().filter_map(Simd::for_isa).filter(|s| !matches!(s, Simd::Baseline)));
    v
}

#[test]
fn linear_matches_reference() {
    let levels = simd_levels();
    println!("linear: SIMD levels {levels:?}");
    // Batch 1 takes the GEMV path: input widths around its 64 lanes, output counts around its
    // 64-feature tasks, bias or none.
    let mut cases = vec![(3, 17, 15), (8, 65, 63), (2, 512, 10)];
    for i in [1, 3, 7, 15, 17, 63, 64, 65, 127, 129, 2048] {
        for o in [1, 7, 63, 64, 65, 200] {
            cases.push((1, i, o));
        }
    }
    // Big enough to split over two workers; batches of GEMVs (up to 16 rows) and past them.
    cases.extend([(1, 2048, 300), (1, 2049, 1000), (16, 512, 1000), (5, 2048, 65), (17, 130, 70)]);
    for (c, &(n, i, o)) in cases.iter().enumerate() {
        let bias = (c % 3 != 0).then(|| data(o, 8));
        let l = Linear::new(Tensor::new(vec![o, i], data(o * i, 7)).unwrap(), bias);
        let x = data(n * i, 9);
        let mut want = vec![f32::NAN; n * o];
        reference::linear_ref(&l, &x, n, &mut want);
        let mut first: Option<Vec<f32>> = None;
        for &simd in &levels {
            for threads in [1, 2] {
                let mut got = vec![f32::NAN; n * o];
                linear::linear(simd, &l, &x, n, &mut got, threads);
                Tolerance::KERNEL.check(&format!("linear {n}x{i}->{o} {simd:?} {threads}t"), &got, &want);
                // The GEMV sums in the same order at every level and split.
                if n == 1 {
                    match &first {
                        Some(f) => assert_eq!(bits(f), bits(&got), "linear 1x{i}->{o}: {simd:?} {threads}t differs from baseline 1t"),
                        None => first = Some(got),
                    }
                } else if n <= 16 {
                    // A batch of GEMVs: each row's features are those of the row alone.
                    for (b, row) in got.chunks(o).enumerate() {
                        let mut alone = vec![f32::NAN; o];
                        linear::linear(simd, &l, &x[b * i..(b + 1) * i], 1, &mut alone, threads);
                        assert_eq!(bits(row), bits(&alone), "linear {n}x{i}->{o} {simd:?} {threads}t: row {b} differs from the row alone");
                    }
                }
            }
        }
    }
}

fn bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|x| x.to_bits()).collect()
}

#[test]
fn broadcast_fast_paths_match_general() {
    let cases: &[(&[usize], &[usize])] = &[(&[2, 3, 4, 5], &[2, 3, 4, 5]), (&[2, 3, 4, 5], &[3, 1, 1]), (&[2, 3, 4, 5], &[1, 3, 1, 1]), (&[2, 3, 4, 5], &[5]), (&[2, 1, 4, 1], &[3, 1, 5])];
    for (i, (a, b)) in cases.iter().enumerate() {
        let os = kestrel::graph::shape::broadcast(a, b).unwrap();
        let (x, y) = (data(a.iter().product(), i as u64), data(b.iter().product(), 50 + i as u64));
        for op in [elementwise::Binary::Add, elementwise::Binary::Mul] {
            let mut want = vec![f32::NAN; os.iter().product()];
            elementwise::binary_general(op, &x, a, &y, b, &mut want, &os);
            let mut got = vec![f32::NAN; want.len()];
            elementwise::binary(op, &x, a, &y, b, &mut got, &os);
            assert_eq!(got, want, "{op:?} {a:?} with {b:?}");
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn conv_proptest(
        n in 1usize..5, cg in 1usize..5, og in 1usize..5, groups in 1usize..4,
        h in 1usize..12, w in 1usize..12, kh in 1usize..4, kw in 1usize..4,
        stride in 1usize..4, pad in 0usize..3, dil in 1usize..3, residual in any::<bool>(), seed in 0u64..1000,
    ) {
        check_conv(n, cg * groups, og * groups, [h, w], [kh, kw], stride, [pad, pad, pad, pad], dil, groups, Some(Activation::Relu), residual, seed);
    }

    #[test]
    fn pool_proptest(h in 1usize..14, w in 1usize..14, k in 1usize..5, s in 1usize..4, pad in 0usize..3, ceil in any::<bool>(), cip in any::<bool>(), is_max in any::<bool>(), seed in 0u64..1000) {
        let pad = pad.min(k / 2);
        let p = Pool2d { kernel: [k, k], stride: [s, s], pads: [pad; 4], dilation: [1, 1], ceil_mode: ceil, count_include_pad: cip };
        check_pool(&p, is_max, [h, w], seed);
    }

    #[test]
    fn resize_proptest(h in 1usize..10, w in 1usize..10, oh in 1usize..20, ow in 1usize..20, linear in any::<bool>(), coord in 0usize..4, seed in 0u64..1000) {
        let coord = [CoordMode::HalfPixel, CoordMode::PytorchHalfPixel, CoordMode::AlignCorners, CoordMode::Asymmetric][coord];
        let mode = if linear { ResizeMode::Linear } else { ResizeMode::Nearest(NearestMode::RoundPreferFloor) };
        check_resize(&Resize::new(mode, coord, ResizeTarget::Sizes([oh, ow])), [h, w], seed);
    }
}

/// `elementwise::concat` on one thread and in pieces on two workers (outputs past two pieces)
/// against a plain per-element definition: every axis, parts of uneven sizes, an empty part,
/// and outputs below and above the parallel threshold.
#[test]
fn concat_in_pieces_matches_the_definition() {
    let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
    let cases: [(&[[usize; 4]], usize); 6] = [
        (&[[3, 5, 37, 41], [3, 7, 37, 41]], 1),
        (&[[16, 8, 64, 64], [16, 8, 64, 64]], 1),
        (&[[2, 3, 5, 7], [2, 4, 5, 7], [2, 1, 5, 7]], 1),
        (&[[4, 6, 33, 20], [4, 6, 33, 29], [4, 6, 33, 0], [4, 6, 33, 3]], 3),
        (&[[1, 40, 30, 31], [2, 40, 30, 31]], 0),
        (&[[5, 9, 100, 17], [5, 9, 1, 17]], 2),
    ];
    for (seed, (shapes, axis)) in cases.iter().enumerate() {
        let datas: Vec<Vec<f32>> = shapes.iter().enumerate().map(|(i, s)| data(s.iter().product(), (seed * 10 + i) as u64)).collect();
        let parts: Vec<(&[f32], &[usize])> = datas.iter().zip(shapes.iter()).map(|(d, s)| (&d[..], &s[..])).collect();
        let mut os = shapes[0];
        os[*axis] = shapes.iter().map(|s| s[*axis]).sum();
        let n: usize = os.iter().product();
        // want[idx] from the part whose slice of `axis` holds idx's coordinate there.
        let mut want = vec![0f32; n];
        for (i, w) in want.iter_mut().enumerate() {
            let mut c = [0usize; 4];
            let mut r = i;
            for d in (0..4).rev() {
                c[d] = r % os[d];
                r /= os[d];
            }
            let (mut p, mut a) = (0, c[*axis]);
            while a >= shapes[p][*axis] {
                a -= shapes[p][*axis];
                p += 1;
            }
            let s = shapes[p];
            let mut cc = c;
            cc[*axis] = a;
            *w = datas[p][((cc[0] * s[1] + cc[1]) * s[2] + cc[2]) * s[3] + cc[3]];
        }
        for threads in [1usize, 2] {
            let mut got = vec![f32::NAN; n];
            pool.install(|| elementwise::concat(&parts, *axis, &mut got, threads));
            let bad = got.iter().zip(&want).position(|(g, w)| g.to_bits() != w.to_bits());
            assert!(bad.is_none(), "concat {shapes:?} axis {axis} threads {threads}: element {bad:?} differs");
        }
    }
}
