//! Running one node: its step's kernel on typed values. Inputs and outputs are f32 slices or
//! u8 code slices as the prepare stage typed them; an f32 kernel never sees codes, and codes
//! never travel through an f32 slice.

use super::plan::Scratch;
use super::prepare::Step;
use crate::cpu::kernels::Kernels;
use crate::cpu::qconv::{self, QIn, QOut, Ranges, Residual};
use crate::cpu::{amx, bconv, blinear, conv, conv_transpose, elementwise, linear, pad, pool, resize, sconv, slanes, spos, wino};
use crate::error::{Error, Result};
use crate::graph::{Node, Op};
use crate::qparams::QParams;

/// A value a node reads.
#[derive(Clone, Copy, Debug)]
pub enum ValueRef<'a> {
    F32(&'a [f32]),
    /// u8 codes and the parameters that dequantize them.
    U8(&'a [u8], QParams),
    /// The node's output buffer, which holds this value on entry (f32, or u8 codes with these
    /// parameters): a conv's residual that the planner placed in the output's slot
    /// ([`super::plan::Plan::in_place`]).
    Output(Option<QParams>),
}

/// The value a node writes.
#[derive(Debug)]
pub enum ValueMut<'a> {
    F32(&'a mut [f32]),
    /// u8 codes to write with these parameters.
    U8(&'a mut [u8], QParams),
}

fn dims4(s: &[usize]) -> [usize; 4] {
    [s[0], s[1], s[2], s[3]]
}

/// An internal error: the prepare stage typed a value differently from what a kernel reads.
fn mistyped(n: &Node, what: &str) -> Error {
    Error::Internal(format!("node '{}' ({}): {what} has the wrong storage type", n.name.escape_debug(), n.op.kind()))
}

/// `x` rounded to bf16 into `buf` (the FP32 kernels' input in a bf16 session:
/// [`Step::BFma`], [`Step::BLanes`], [`Step::BPos`]).
fn rounded_input<'a>(round: crate::cpu::bgemm::Kernel, x: &[f32], buf: &'a mut Vec<f32>) -> &'a [f32] {
    buf.resize(x.len(), 0.0);
    round.round_slice(x, buf);
    buf
}

/// Runs `n` as `step` on `ins` (values with their shapes) into `out` of shape `os`. `range`
/// is the input's recorded `(min, max)` and whether to record the output's; returns the
/// recorded range.
#[allow(clippy::too_many_arguments)]
pub(crate) fn run(
    kernels: &Kernels,
    n: &Node,
    step: &Step,
    ins: &[(ValueRef, &[usize])],
    out: ValueMut,
    os: &[usize],
    range: Ranges,
    scratch: &mut Scratch,
    threads: usize,
) -> Result<Option<(f32, f32)>> {
    let f32_in = |i: usize| match ins.get(i) {
        Some((ValueRef::F32(x), s)) => Ok((*x, *s)),
        _ => Err(mistyped(n, &format!("input {i}"))),
    };
    match (step, &n.op) {
        (Step::QConv(packed), Op::Conv(c)) => {
            let q = c.precision.int8().ok_or_else(|| mistyped(n, "the INT8 weights"))?;
            let (x, xs) = match ins[0] {
                (ValueRef::F32(x), s) => (QIn::F32(x), s),
                (ValueRef::U8(x, _), s) => (QIn::U8(x), s),
                (ValueRef::Output(_), _) => return Err(mistyped(n, "input 0")),
            };
            let residual = match (c.residual, ins.get(1)) {
                (false, _) => None,
                (true, Some((ValueRef::F32(r), _))) => Some(Residual::F32(r)),
                (true, Some((ValueRef::U8(r, p), _))) => Some(Residual::U8(r, *p)),
                (true, Some((ValueRef::Output(Some(p)), _))) if matches!(out, ValueMut::U8(..)) => Some(Residual::Output(*p)),
                (true, None | Some((ValueRef::Output(_), _))) => return Err(mistyped(n, "the residual")),
            };
            let out = match out {
                ValueMut::F32(o) => QOut::F32(o),
                ValueMut::U8(o, p) => QOut::U8(o, p),
            };
            Ok(qconv::qconv2d(kernels, c, q, packed, x, dims4(xs), residual, out, dims4(os), range, &mut scratch.q, threads))
        }
        (Step::QConvTranspose(packed), Op::ConvTranspose(c)) => {
            let q = c.precision.int8().ok_or_else(|| mistyped(n, "the INT8 weights"))?;
            let (x, xs) = f32_in(0)?;
            let ValueMut::F32(out) = out else { return Err(mistyped(n, "the output")) };
            qconv::qconv_transpose2d(kernels, c, q, packed, x, dims4(xs), out, dims4(os), &mut scratch.q, &mut scratch.f32, threads);
            Ok(None)
        }
        (Step::QLinear(packed), Op::Linear(l)) => {
            let q = l.precision.int8().ok_or_else(|| mistyped(n, "the INT8 weights"))?;
            let (x, xs) = f32_in(0)?;
            let ValueMut::F32(out) = out else { return Err(mistyped(n, "the output")) };
            qconv::qlinear(kernels, l, q, packed, x, xs[0], out, &mut scratch.q, threads);
            Ok(None)
        }
        (Step::BLinear(packed), Op::Linear(l)) => {
            let k = kernels.conv_bf16.ok_or_else(|| mistyped(n, "the bf16 weights"))?;
            let (x, xs) = f32_in(0)?;
            let ValueMut::F32(out) = out else { return Err(mistyped(n, "the output")) };
            blinear::linear(k, packed, l.bias.as_deref(), x, xs[0], out, threads);
            Ok(None)
        }
        // Convs on packed f32 or bf16 weights: f32 in (and residual), f32 out.
        (Step::SConv(_) | Step::Wino(_) | Step::SPos(_) | Step::SLanes(_) | Step::BConv(_) | Step::BWino(_) | Step::BImplicit(_) | Step::BFma(_) | Step::BLanes(_) | Step::BPos(_), Op::Conv(c)) => {
            let (x, xs) = f32_in(0)?;
            let ValueMut::F32(out) = out else { return Err(mistyped(n, "the output")) };
            let (xs, os) = (dims4(xs), dims4(os));
            // A residual already in the output buffer (`onto`): only the packed FP32 and bf16
            // direct steps take it there (the planner places it for no other).
            let onto = c.residual && matches!(ins.get(1), Some((ValueRef::Output(None), _)));
            if onto && !matches!(step, Step::SConv(_) | Step::SLanes(_) | Step::BConv(_) | Step::BImplicit(_) | Step::BFma(_) | Step::BLanes(_)) {
                return Err(mistyped(n, "the in-place residual"));
            }
            let residual = if c.residual && !onto { Some(f32_in(1)?.0) } else { None };
            match step {
                Step::SConv(packed) => {
                    let kernel = kernels.sgemm.ok_or_else(|| mistyped(n, "the packed f32 weights"))?;
                    if onto {
                        sconv::conv2d_onto(kernel, c, packed, x, xs, out, os, &mut scratch.f32, threads);
                    } else {
                        sconv::conv2d(kernel, c, packed, x, xs, residual, out, os, &mut scratch.f32, threads);
                    }
                }
                Step::BConv(packed) => {
                    let kernel = kernels.conv_bf16.ok_or_else(|| mistyped(n, "the packed bf16 weights"))?;
                    if onto {
                        bconv::conv2d_onto(kernel, c, packed, x, xs, out, os, threads);
                    } else {
                        bconv::conv2d(kernel, c, packed, x, xs, residual, out, os, threads);
                    }
                }
                Step::Wino(packed) => {
                    let kernel = kernels.sgemm.ok_or_else(|| mistyped(n, "the Winograd-transformed f32 weights"))?;
                    wino::conv2d(wino::Exec::Kernel(kernel), c, packed, x, xs, residual, out, os, &mut scratch.f32, threads);
                }
                Step::BWino(packed) => {
                    let kernel = kernels.conv_bf16.ok_or_else(|| mistyped(n, "the Winograd-transformed bf16 weights"))?;
                    wino::conv2d(wino::Exec::Bf16(kernel), c, packed, x, xs, residual, out, os, &mut scratch.f32, threads);
                }
                Step::SPos(pc) => {
                    let kernel = kernels.sgemm.ok_or_else(|| mistyped(n, "the by-position f32 weights"))?;
                    spos::conv2d(kernel, c, pc, x, xs, residual, out, os, &mut scratch.f32, threads);
                }
                Step::SLanes(lc) => {
                    let kernel = kernels.sgemm.ok_or_else(|| mistyped(n, "the lane-packed f32 weights"))?;
                    if onto {
                        slanes::conv2d_onto(kernel, c, lc, x, xs, out, os, &mut scratch.f32, threads);
                    } else {
                        slanes::conv2d(kernel, c, lc, x, xs, residual, out, os, &mut scratch.f32, threads);
                    }
                }
                Step::BFma(packed) => {
                    let (Some(kernel), Some(round)) = (kernels.sgemm, kernels.conv_bf16) else { return Err(mistyped(n, "the bf16-rounded f32 weights")) };
                    // Convs that copy their input into phase planes round the planes instead.
                    if sconv::rounds_in_planes(kernel, c, xs, os) {
                        let residual = if onto { Some(None) } else { residual.map(Some) };
                        sconv::conv2d_rounded(kernel, round, c, packed, x, xs, residual, out, os, &mut scratch.f32, threads);
                        return Ok(None);
                    }
                    let rounded = rounded_input(round, x, &mut scratch.bf16_in);
                    if onto {
                        sconv::conv2d_onto(kernel, c, packed, rounded, xs, out, os, &mut scratch.f32, threads);
                    } else {
                        sconv::conv2d(kernel, c, packed, rounded, xs, residual, out, os, &mut scratch.f32, threads);
                    }
                }
                Step::BLanes(_) | Step::BPos(_) => {
                    let (Some(kernel), Some(round)) = (kernels.sgemm, kernels.conv_bf16) else { return Err(mistyped(n, "the bf16-rounded f32 weights")) };
                    let rounded = rounded_input(round, x, &mut scratch.bf16_in);
                    match step {
                        Step::BLanes(lc) if onto => slanes::conv2d_onto(kernel, c, lc, rounded, xs, out, os, &mut scratch.f32, threads),
                        Step::BLanes(lc) => slanes::conv2d(kernel, c, lc, rounded, xs, residual, out, os, &mut scratch.f32, threads),
                        Step::BPos(pc) => spos::conv2d(kernel, c, pc, rounded, xs, residual, out, os, &mut scratch.f32, threads),
                        _ => return Err(mistyped(n, "the bf16-rounded f32 weights")),
                    }
                }
                Step::BImplicit(packed) => {
                    let k = kernels.conv_planes.ok_or_else(|| mistyped(n, "the plane-packed bf16 weights"))?;
                    if onto {
                        amx::conv2d_onto(k, c, packed, x, xs, out, os, &mut scratch.f32, threads);
                    } else {
                        amx::conv2d(k, c, packed, x, xs, residual, out, os, &mut scratch.f32, threads);
                    }
                }
                _ => return Err(mistyped(n, "the packed conv weights")),
            }
            Ok(None)
        }
        (Step::SConvT(ct), Op::ConvTranspose(c)) => {
            let ValueMut::F32(out) = out else { return Err(mistyped(n, "the output")) };
            let (x, xs) = f32_in(0)?;
            conv_transpose::conv_transpose2d_packed(c, ct, x, dims4(xs), out, dims4(os), &mut scratch.cols, &mut scratch.f32, threads);
            Ok(None)
        }
        (Step::MaxPoolU8, Op::MaxPool(p)) => {
            let ((ValueRef::U8(x, _), xs), ValueMut::U8(out, _)) = (ins[0], out) else { return Err(mistyped(n, "the u8 max-pool")) };
            pool::max_pool2d_u8(kernels.simd, p, x, dims4(xs), out, dims4(os));
            Ok(None)
        }
        (Step::F32, op) => {
            let ValueMut::F32(out) = out else { return Err(mistyped(n, "the output")) };
            let (x, xs) = f32_in(0)?;
            match op {
                Op::Conv(c) => {
                    let residual = if c.residual { Some(f32_in(1)?.0) } else { None };
                    conv::conv2d(c, x, dims4(xs), residual, out, dims4(os), &mut scratch.f32, threads);
                }
                Op::ConvTranspose(c) => conv_transpose::conv_transpose2d(c, x, dims4(xs), out, dims4(os), &mut scratch.f32, threads),
                Op::BatchNorm(b) => {
                    let (scale, shift) = b.affine();
                    let inner = xs[2..].iter().product();
                    elementwise::channel_affine(x, xs[1], inner, &scale, &shift, out);
                }
                Op::Act(a) => elementwise::activation(*a, x, out),
                Op::Add | Op::Mul | Op::Sub | Op::Div | Op::Pow | Op::PRelu => {
                    let op = match op {
                        Op::Add => elementwise::Binary::Add,
                        Op::Mul => elementwise::Binary::Mul,
                        Op::Sub => elementwise::Binary::Sub,
                        Op::Div => elementwise::Binary::Div,
                        Op::Pow => elementwise::Binary::Pow,
                        _ => elementwise::Binary::PRelu,
                    };
                    let (y, ys) = f32_in(1)?;
                    elementwise::binary(op, x, xs, y, ys, out, os);
                }
                Op::MaxPool(p) => pool::pool2d(kernels.simd, p, true, x, dims4(xs), out, dims4(os)),
                Op::AveragePool(p) => pool::pool2d(kernels.simd, p, false, x, dims4(xs), out, dims4(os)),
                Op::PoolNd(p) => pool::pool_nd(p, x, xs, out, os),
                Op::ConvTransposeNd(c) => conv_transpose::conv_transpose_nd(c, x, xs, out, os),
                Op::MatMul { b } => linear::matmul(x, xs, b.data(), b.shape(), out, threads),
                Op::Dropout { ratio, seed } => elementwise::dropout(*ratio, *seed, x, out),
                Op::GlobalAveragePool => pool::global_avg_pool(x, xs[2] * xs[3], out),
                Op::GlobalMaxPool => pool::global_max_pool(x, xs[2] * xs[3], out),
                Op::Pad(p) => pad::pad(p, x, xs, out, os),
                Op::Reduce(r) => elementwise::reduce(r, x, xs, out),
                Op::Slice { spec } => pad::slice(spec, x, xs, out, os),
                Op::Transpose { perm } => pad::transpose(perm, x, xs, out, os),
                Op::InstanceNorm { scale, bias, eps } => elementwise::instance_norm(scale, bias, *eps, x, xs[1], xs[2..].iter().product(), out),
                Op::Flatten { .. } | Op::Reshape { .. } | Op::Identity => out.copy_from_slice(x),
                Op::Linear(l) => linear::linear(kernels.simd, l, x, xs[0], out, threads),
                Op::Concat { axis } => {
                    let parts = (0..ins.len()).map(f32_in).collect::<Result<Vec<_>>>()?;
                    elementwise::concat(&parts, *axis, out, threads);
                }
                Op::Resize(r) => resize::resize(r, x, dims4(xs), out, dims4(os)),
                Op::Softmax { axis } => elementwise::softmax(x, xs, *axis, out),
                Op::FakeQuant(q) => {
                    let p = qconv::input_params(kernels.simd, *q, x);
                    out.iter_mut().zip(x).for_each(|(o, &v)| *o = p.fake(v));
                }
            }
            Ok(None)
        }
        _ => Err(Error::Internal(format!("node '{}' ({}): the {} step does not fit the op", n.name.escape_debug(), n.op.kind(), step.name()))),
    }
}
