//! The INT8 conv epilogue over one output channel's i32 tile row:
//! `y = (acc − corr)·mult + bias (+ residual)`, ReLU when asked, stored as f32 or quantized
//! to u8 codes with the next layer's parameters ([`QParams::quantize`]: divide, round half
//! to even, add the zero point, saturate).
//!
//! A task's valid output pixels are a few contiguous runs ([`Seg`]) of its tile row. The
//! plain bodies are compiled per level by `multiversion!`; the u8 one also has an AVX-512
//! twin (run at the [`Simd::Avx512`] level) whose codes are bit-identical: the same float
//! operations in the same order, with the rounding and saturation done by `vcvtps2dq` (round
//! to nearest even) and `vpackus` (`vpmovusdb` for a row's last few lanes). A residual of u8
//! codes ([`requant_segs_codes`]) is dequantized inside that pass, from its own slice or from
//! the output it is added into.
//! [`requant_rows`] runs a kernel call's channel rows (up to 32) in one pass, every segment
//! of a row inside it (a 3×3 conv's row has one per output row); it is the AVX-512 version of
//! every u8 epilogue here. ResNet-50 INT8 (Zen 5, 2 threads, the ways alternating in one
//! process, the same codes): 0.98–0.99 of the time with a row's segments in one call, then
//! 0.97 with a call's rows in one.

use crate::cpu::simd::Simd;
use crate::qparams::QParams;

/// `out = store((acc − corr)·mult + bias (+ res))`, with ReLU before `store` when `relu`:
/// the shared body of [`dequant_run`] and [`requant_run`], one branch-free loop per case.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn epilogue_run<T>(acc: &[i32], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, out: &mut [T], store: impl Fn(f32) -> T) {
    match (res, relu) {
        (Some(r), true) => {
            for ((o, &a), &rv) in out.iter_mut().zip(acc).zip(r) {
                *o = store(((a - corr) as f32 * mult + bias + rv).max(0.0));
            }
        }
        (Some(r), false) => {
            for ((o, &a), &rv) in out.iter_mut().zip(acc).zip(r) {
                *o = store((a - corr) as f32 * mult + bias + rv);
            }
        }
        (None, true) => {
            for (o, &a) in out.iter_mut().zip(acc) {
                *o = store(((a - corr) as f32 * mult + bias).max(0.0));
            }
        }
        (None, false) => {
            for (o, &a) in out.iter_mut().zip(acc) {
                *o = store((a - corr) as f32 * mult + bias);
            }
        }
    }
}

/// `out = (acc − corr)·mult + bias (+ res)`, then ReLU when `relu`.
#[inline(always)]
fn dequant_run(acc: &[i32], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, out: &mut [f32]) {
    epilogue_run(acc, corr, mult, bias, res, relu, out, |y| y);
}

/// The values of [`dequant_run`] quantized with `oq` ([`QParams::quantize`]), in one pass.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn requant_run(acc: &[i32], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, oq: QParams, out: &mut [u8]) {
    epilogue_run(acc, corr, mult, bias, res, relu, out, |y| oq.quantize(y));
}

crate::cpu::simd::multiversion! {
    /// [`dequant_run`] over one row.
    pub(crate) fn dequant_row(acc: &[i32], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, out: &mut [f32]) {
        dequant_run(acc, corr, mult, bias, res, relu, out);
    }
}

/// A run of valid output pixels of one task: i32 tile columns `acc..acc + len` go to elements
/// `out..out + len` of the task's output region (and its residual).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Seg {
    pub acc: usize,
    pub out: usize,
    pub len: usize,
}

crate::cpu::simd::multiversion! {
    /// [`dequant_run`] over every segment of one channel.
    pub(crate) fn dequant_segs(acc: &[i32], segs: &[Seg], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, out: &mut [f32]) {
        for sg in segs {
            let r = res.map(|r| &r[sg.out..sg.out + sg.len]);
            dequant_run(&acc[sg.acc..sg.acc + sg.len], corr, mult, bias, r, relu, &mut out[sg.out..sg.out + sg.len]);
        }
    }
}

crate::cpu::simd::multiversion! {
    /// [`requant_run`] over every segment of one channel.
    fn requant_segs_plain(acc: &[i32], segs: &[Seg], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, oq: QParams, out: &mut [u8]) {
        for sg in segs {
            let r = res.map(|r| &r[sg.out..sg.out + sg.len]);
            requant_run(&acc[sg.acc..sg.acc + sg.len], corr, mult, bias, r, relu, oq, &mut out[sg.out..sg.out + sg.len]);
        }
    }
}

/// [`requant_run`] over every segment of one channel; the [`Simd::Avx512`] level runs the
/// AVX-512 version ([`requant_rows`] of one row).
#[allow(clippy::too_many_arguments)]
#[inline]
pub(crate) fn requant_segs(simd: Simd, acc: &[i32], segs: &[Seg], corr: i32, mult: f32, bias: f32, res: Option<&[f32]>, relu: bool, oq: QParams, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx512(_) = simd {
        let rows = res.map_or(RowRes::None, RowRes::F32);
        // SAFETY: one row, the whole of `out`, borrowed mutably for the call.
        unsafe { requant_rows(simd, acc, Sums::Rows(acc.len()), &[(corr, mult, bias)], segs, rows, oq, relu, oq, out.as_mut_ptr(), out.len(), out.len()) };
        return;
    }
    requant_segs_plain(simd, acc, segs, corr, mult, bias, res, relu, oq, out);
}

/// Where a u8 residual's codes are: their own slice (of the output's length), or the
/// output itself, each code read before its element is overwritten (a residual added in
/// place).
#[derive(Clone, Copy, Debug)]
pub(crate) enum ResCodes<'a> {
    Own(&'a [u8]),
    InOutput,
}

/// [`requant_segs`] with a residual given as u8 codes with parameters `rq`, dequantized on
/// the way ([`QParams::dequantize`], the values [`crate::cpu::codec::dequantize_slice`]
/// gives): one pass over the row instead of dequantizing it into a buffer first. The
/// [`Simd::Avx512`] level runs the AVX-512 version, the [`Simd::Avx2`] level the AVX2 one on
/// whole vectors; the others (and the AVX2 tails) dequantize 64 codes at a time into a buffer
/// and run [`requant_segs`], the twin they are tested against.
#[allow(clippy::too_many_arguments)]
pub(crate) fn requant_segs_codes(simd: Simd, acc: &[i32], segs: &[Seg], corr: i32, mult: f32, bias: f32, res: ResCodes, rq: QParams, relu: bool, oq: QParams, out: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx512(_) = simd {
        let rows = match res {
            ResCodes::Own(r) => RowRes::Own(r),
            ResCodes::InOutput => RowRes::InOutput,
        };
        // SAFETY: one row, the whole of `out`, borrowed mutably for the call.
        unsafe { requant_rows(simd, acc, Sums::Rows(acc.len()), &[(corr, mult, bias)], segs, rows, rq, relu, oq, out.as_mut_ptr(), out.len(), out.len()) };
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx2(_) = simd {
        for sg in segs {
            let (a, o) = (&acc[sg.acc..sg.acc + sg.len], &mut out[sg.out..sg.out + sg.len]);
            // SAFETY: the level's token proves AVX2; `a`, `o` and an own residual have the
            // same length (`requant_codes` asserts it).
            let done = unsafe {
                match (res, relu) {
                    (ResCodes::Own(r), true) => avx2::requant_codes::<false, true>(a, corr, mult, bias, &r[sg.out..sg.out + sg.len], rq, oq, o),
                    (ResCodes::Own(r), false) => avx2::requant_codes::<false, false>(a, corr, mult, bias, &r[sg.out..sg.out + sg.len], rq, oq, o),
                    (ResCodes::InOutput, true) => avx2::requant_codes::<true, true>(a, corr, mult, bias, &[], rq, oq, o),
                    (ResCodes::InOutput, false) => avx2::requant_codes::<true, false>(a, corr, mult, bias, &[], rq, oq, o),
                }
            };
            let tail = Seg { acc: sg.acc + done, out: sg.out + done, len: sg.len - done };
            codes_via_buffer(simd, acc, &[tail], corr, mult, bias, res, rq, relu, oq, out);
        }
        return;
    }
    codes_via_buffer(simd, acc, segs, corr, mult, bias, res, rq, relu, oq, out);
}

/// [`requant_segs_codes`] by dequantizing 64 codes at a time into a buffer and running
/// [`requant_segs`] on them: the plain levels, and the AVX2 version's tails.
#[allow(clippy::too_many_arguments)]
fn codes_via_buffer(simd: Simd, acc: &[i32], segs: &[Seg], corr: i32, mult: f32, bias: f32, res: ResCodes, rq: QParams, relu: bool, oq: QParams, out: &mut [u8]) {
    let mut buf = [0f32; 64];
    for sg in segs {
        for start in (0..sg.len).step_by(64) {
            let l = (sg.len - start).min(64);
            let (a, o) = (sg.acc + start, sg.out + start);
            let codes = match res {
                ResCodes::Own(r) => &r[o..o + l],
                ResCodes::InOutput => &out[o..o + l],
            };
            crate::cpu::codec::dequantize_slice(simd, rq, codes, &mut buf[..l]);
            let one = [Seg { acc: 0, out: 0, len: l }];
            requant_segs(simd, &acc[a..a + l], &one, corr, mult, bias, Some(&buf[..l]), relu, oq, &mut out[o..o + l]);
        }
    }
}

/// The residual of [`requant_rows`]: none, u8 codes in a slice of their own (row `r` at
/// `r·stride` from its start, as the output rows), the codes the output rows hold, or f32
/// values laid out as the codes of their own.
#[derive(Clone, Copy, Debug)]
pub(crate) enum RowRes<'a> {
    None,
    Own(&'a [u8]),
    InOutput,
    F32(&'a [f32]),
}

/// How a kernel call's i32 sums lie in its tile: `rs` columns a row (16-column blocks), row
/// after row or as AMX stores its tiles.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Sums {
    /// Row `r`'s columns at `r·rs..(r + 1)·rs`.
    Rows(usize),
    /// Tile by tile ([`crate::cpu::qgemm::tiles_index`] over `rs / 16` blocks).
    Tiles(usize),
}

impl Sums {
    /// Columns a row.
    fn rs(self) -> usize {
        match self {
            Sums::Rows(rs) | Sums::Tiles(rs) => rs,
        }
    }

    /// Where row `r`'s column 0 is.
    fn row(self, r: usize) -> usize {
        match self {
            Sums::Rows(rs) => r * rs,
            Sums::Tiles(rs) => r / 16 * 16 * rs + r % 16 * 16,
        }
    }

    /// How far apart a row's 16-column blocks are.
    #[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
    fn block_stride(self) -> usize {
        match self {
            Sums::Rows(_) => 16,
            Sums::Tiles(_) => 256,
        }
    }

    /// The values `rows` rows take.
    fn len(self, rows: usize) -> usize {
        match self {
            Sums::Rows(rs) => rows * rs,
            Sums::Tiles(rs) => rows.div_ceil(16) * 16 * rs,
        }
    }
}

/// Columns (output pixels of a call's rows) up to which the AVX-512 [`requant_rows`] puts 16
/// rows in a vector, column by column, when it has at least 16 rows.
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
const COLS_BY_LANES: usize = 2;

/// [`requant_segs`] without a residual, or [`requant_segs_codes`], over `affine.len()` channel
/// rows in one call: row `r`'s sums are row `r` of `acc`, laid out as `sums` says (its valid
/// columns `segs`), its constants `affine[r] = (corr, mult, bias)`, its output region the `region` codes at
/// `out + r·stride`, its residual (with `rq`) as `res` says. The same codes as the calls row
/// by row; on AVX-512 one call for all the rows, whose constants are set up once: ResNet-50's
/// 7² and 14² convs have 4–13 vectors per row, and a call per row cost about as much as the
/// row.
///
/// # Safety
/// For every row `r`, the `region` bytes at `out + r·stride` are valid for reads and writes
/// and nothing else reads or writes them during the call. (The slices and the segments are
/// checked.)
#[allow(clippy::too_many_arguments)]
pub(crate) unsafe fn requant_rows(simd: Simd, acc: &[i32], sums: Sums, affine: &[(i32, f32, f32)], segs: &[Seg], res: RowRes, rq: QParams, relu: bool, oq: QParams, out: *mut u8, stride: usize, region: usize) {
    let rows = affine.len();
    if rows == 0 {
        return;
    }
    let (span, rs) = ((rows - 1) * stride + region, sums.rs());
    assert!(rs % 16 == 0 || matches!(sums, Sums::Rows(_)), "requant_rows: tiles of part of a block");
    assert!(acc.len() >= sums.len(rows) && segs.iter().all(|sg| sg.acc + sg.len <= rs && sg.out + sg.len <= region), "requant_rows: segments outside the rows");
    assert!(!matches!(res, RowRes::Own(r) if r.len() < span) && !matches!(res, RowRes::F32(r) if r.len() < span), "requant_rows: residual shorter than its rows");
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx512(_) = simd {
        let (codes, values) = match res {
            RowRes::Own(r) => (r.as_ptr(), std::ptr::null()),
            RowRes::F32(r) => (std::ptr::null(), r.as_ptr()),
            _ => (std::ptr::null(), std::ptr::null()),
        };
        // The AVX-512 pass for this residual kind and activation: `$pass::<RES, RELU>`.
        macro_rules! by_kind {
            ($pass:ident) => {
                match (res, relu) {
                    (RowRes::None, true) => avx512::$pass::<0, true>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                    (RowRes::None, false) => avx512::$pass::<0, false>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                    (RowRes::Own(_), true) => avx512::$pass::<1, true>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                    (RowRes::Own(_), false) => avx512::$pass::<1, false>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                    (RowRes::InOutput, true) => avx512::$pass::<2, true>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                    (RowRes::InOutput, false) => avx512::$pass::<2, false>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                    (RowRes::F32(_), true) => avx512::$pass::<3, true>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                    (RowRes::F32(_), false) => avx512::$pass::<3, false>(acc, sums, affine, segs, [codes, values.cast::<u8>()], rq, oq, out, stride),
                }
            };
        }
        // A few columns of many rows (1 × 1 and 1 × 2 maps of small models' last stages): 16
        // rows a vector, column by column, rather than a vector per row for its few lanes. One
        // thread, Zen 4: a 1×1 conv of 128 channels on a 1 × 1 map 1.65 → 1.36 µs; at 4
        // columns either way took the same time.
        let cols: usize = segs.iter().map(|sg| sg.len).sum();
        // SAFETY: the level's token proves AVX-512F/BW; the rows of `acc` and of a residual of
        // their own, and the segments, were checked above; the output rows are the caller's.
        unsafe {
            if rows >= 16 && cols <= COLS_BY_LANES {
                by_kind!(requant_cols)
            } else {
                by_kind!(requant_rows)
            }
        }
        return;
    }
    let mut row = Vec::new();
    for (r, &(corr, mult, bias)) in affine.iter().enumerate() {
        // SAFETY: row r's output region is the caller's alone (see # Safety).
        let o = unsafe { std::slice::from_raw_parts_mut(out.add(r * stride), region) };
        let a = match sums {
            Sums::Rows(rs) => &acc[r * rs..(r + 1) * rs],
            Sums::Tiles(rs) => {
                // The plain levels gather a row of tiles first (AMX comes with AVX-512).
                row.clear();
                row.extend((0..rs / 16).flat_map(|b| &acc[sums.row(r) + b * 256..][..16]));
                &row[..]
            }
        };
        match res {
            RowRes::None => requant_segs(simd, a, segs, corr, mult, bias, None, relu, oq, o),
            RowRes::Own(codes) => requant_segs_codes(simd, a, segs, corr, mult, bias, ResCodes::Own(&codes[r * stride..r * stride + region]), rq, relu, oq, o),
            RowRes::InOutput => requant_segs_codes(simd, a, segs, corr, mult, bias, ResCodes::InOutput, rq, relu, oq, o),
            RowRes::F32(values) => requant_segs(simd, a, segs, corr, mult, bias, Some(&values[r * stride..r * stride + region]), relu, oq, o),
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use std::arch::x86_64::*;

    use crate::qparams::QParams;

    /// The AVX-512 version's operations ([`super::avx512::requant_rows`]) on 8 lanes, over
    /// the whole vectors of the row: returns how many elements it did (a multiple of 8), the
    /// caller runs the rest. `vcvtps2dq` rounds to nearest even (the MXCSR default, which
    /// nothing here changes); the codes (at most 1024 + 255) narrow to u8 by two `vpackus`
    /// (signed input, unsigned saturation: negatives become 0) and a lane permute.
    ///
    /// # Safety
    /// The CPU must support AVX2 (lengths are checked).
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx2")]
    pub(super) unsafe fn requant_codes<const IN_OUT: bool, const RELU: bool>(acc: &[i32], corr: i32, mult: f32, bias: f32, res: &[u8], rq: QParams, oq: QParams, out: &mut [u8]) -> usize {
        let n = out.len();
        assert!(acc.len() == n && (IN_OUT || res.len() == n), "requant: slice lengths differ");
        let full = n / 8 * 8;
        let (vc, vm, vb, vs) = (_mm256_set1_epi32(corr), _mm256_set1_ps(mult), _mm256_set1_ps(bias), _mm256_set1_ps(oq.scale));
        let (lim, zp) = (_mm256_set1_ps(1024.0), _mm256_set1_epi32(i32::from(oq.zero_point)));
        let (rzp, rs) = (_mm256_set1_epi32(i32::from(rq.zero_point)), _mm256_set1_ps(rq.scale));
        // Byte 0–3 of each 128-bit lane hold the lane's four codes after the packs.
        let pick = _mm256_setr_epi32(0, 4, 0, 0, 0, 0, 0, 0);
        let src = if IN_OUT { out.as_ptr() } else { res.as_ptr() };
        for i in (0..full).step_by(8) {
            // SAFETY: i + 8 ≤ full ≤ n, the length of `acc`, `out` and (unless IN_OUT) `res`.
            let (a, codes) = unsafe { (_mm256_loadu_si256(acc.as_ptr().add(i) as *const __m256i), _mm_loadl_epi64(src.add(i) as *const __m128i)) };
            let r = _mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(_mm256_cvtepu8_epi32(codes), rzp)), rs);
            // Multiply then add, unfused, as the plain loop does.
            let mut y = _mm256_add_ps(_mm256_add_ps(_mm256_mul_ps(_mm256_cvtepi32_ps(_mm256_sub_epi32(a, vc)), vm), vb), r);
            if RELU {
                // `max` returns its second operand for a NaN lane: 0, as `f32::max` does.
                y = _mm256_max_ps(y, _mm256_setzero_ps());
            }
            // `min` returns its second operand for a NaN lane, so NaN stays NaN (and converts
            // to i32::MIN, then 0).
            let v = _mm256_min_ps(lim, _mm256_div_ps(y, vs));
            // Negative codes saturate to 0 in the first (signed) pack: no `max` needed.
            let q = _mm256_add_epi32(_mm256_cvtps_epi32(v), zp);
            let w = _mm256_packus_epi32(q, q);
            let b = _mm256_permutevar8x32_epi32(_mm256_packus_epi16(w, w), pick);
            // SAFETY: as above; the store comes after these lanes' codes were read.
            unsafe { _mm_storel_epi64(out.as_mut_ptr().add(i) as *mut __m128i, _mm256_castsi256_si128(b)) };
        }
        full
    }
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use std::arch::x86_64::*;

    use super::Seg;
    use crate::qparams::QParams;

    /// The constants of one call: the output's parameters and a residual's.
    struct Out {
        lim: __m512,
        scale: __m512,
        /// ReLU's `max` is left out: with the output's zero point 0 it changes no code. A
        /// negative `y` then rounds to a code ≤ 0 and saturates to 0, −∞ and NaN convert to
        /// `i32::MIN` and saturate to 0, −0 rounds to 0: the code of `max(y, 0)` each time.
        /// Calibrated ReLU outputs (range [0, max]) have zero point 0. One vector operation of
        /// a dozen or more: ResNet-50's INT8 convs on AMX, one alone, 2 threads, alternating
        /// call by call with the same codes, 0.97–1.00 of their time (its expanding 1×1 convs,
        /// whose epilogue is most of them, 0.97–0.99; family 6 model 207).
        skip_relu: bool,
        zp: __m512i,
        rzp: __m512i,
        rsc: __m512,
    }

    /// The sums of columns `p..p + 16` of a row whose 16-column blocks start `bs` values
    /// apart from `row` (16: one run; 256: AMX tiles), the lanes past `m` zeros. Columns that
    /// start inside a block take the rest of it and the start of the next: two masked loads.
    ///
    /// # Safety
    /// The lanes of `m` lie inside the row's blocks.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn sums(row: *const i32, p: usize, m: __mmask16, bs: usize) -> __m512i {
        let (blk, o) = (row.wrapping_add(p / 16 * bs), p % 16);
        // SAFETY: each lane of `m` is read from its column's place in its block (the caller's
        // promise); masked-off lanes never fault.
        unsafe {
            if bs == 16 || o == 0 {
                return _mm512_maskz_loadu_epi32(m, blk.wrapping_add(o));
            }
            // Lane l is column p + l: lanes below 16 − o from this block, the rest from the
            // next one's start.
            let first = ((1u32 << (16 - o)) - 1) as __mmask16;
            let here = _mm512_maskz_loadu_epi32(m & first, blk.wrapping_add(o));
            let next = _mm512_maskz_loadu_epi32(m & !first, blk.wrapping_add(bs + o).wrapping_sub(16));
            _mm512_or_si512(here, next)
        }
    }

    impl Out {
        /// The constants of a call writing codes with `oq` and reading a residual's with `rq`.
        #[inline]
        #[target_feature(enable = "avx512f,avx512bw")]
        fn new(rq: QParams, oq: QParams) -> Out {
            Out {
                lim: _mm512_set1_ps(1024.0),
                scale: _mm512_set1_ps(oq.scale),
                skip_relu: oq.zero_point == 0,
                zp: _mm512_set1_epi32(i32::from(oq.zero_point)),
                rzp: _mm512_set1_epi32(i32::from(rq.zero_point)),
                rsc: _mm512_set1_ps(rq.scale),
            }
        }
    }

    /// The codes before the u8 saturation, in `[i32::MIN, 1279]`, of 16 lanes: sums `a`, and
    /// the lanes at `i` of row pointers `c` (residual codes) and `v` (residual values), the
    /// lanes past `m` zeros.
    ///
    /// # Safety
    /// The lanes of `m` at `i` lie inside the rows the pointers point into.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn lane_codes<const RES: u8, const RELU: bool>(a: __m512i, c: *const u8, v: *const f32, i: usize, m: __mmask16, (vc, vm, vb): (__m512i, __m512, __m512), k: &Out) -> __m512i {
        let mut y = _mm512_add_ps(_mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(a, vc)), vm), vb);
        if RES == 1 || RES == 2 {
            // SAFETY: as above.
            let q = unsafe { _mm512_castsi512_si128(_mm512_maskz_loadu_epi8(u64::from(m), c.add(i) as *const i8)) };
            y = _mm512_add_ps(y, _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_sub_epi32(_mm512_cvtepu8_epi32(q), k.rzp)), k.rsc));
        } else if RES == 3 {
            // SAFETY: as above.
            y = _mm512_add_ps(y, unsafe { _mm512_maskz_loadu_ps(m, v.add(i)) });
        }
        if RELU && !k.skip_relu {
            y = _mm512_max_ps(y, _mm512_setzero_ps());
        }
        // `min` returns its second operand for a NaN lane, so NaN stays NaN (and converts to
        // `i32::MIN`, a negative code).
        let v = _mm512_min_ps(k.lim, _mm512_div_ps(y, k.scale));
        _mm512_add_epi32(_mm512_cvt_roundps_epi32::<{ _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC }>(v), k.zp)
    }

    /// The 64 codes of four vectors of codes in `[i32::MIN, 1279]`, in order, saturated to
    /// 0…255: two rounds of `vpackus` (signed saturation, so negatives become 0 without a
    /// `max`; 1279 fits i16) and one dword permute, which interleave 128-bit lanes. A
    /// `vpmovusdb` to memory per vector, which the compiler makes of a narrowing and a store,
    /// and the `max` before it held a third of the epilogue's time on Zen 4 (a 32-row tile
    /// of 512 columns: 0.174 → 0.122 ns a code without a residual, 0.245 → 0.190 with one in
    /// the output).
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn narrow4(q: [__m512i; 4]) -> __m512i {
        let b = _mm512_packus_epi16(_mm512_packus_epi32(q[0], q[1]), _mm512_packus_epi32(q[2], q[3]));
        // Dword 4·l + j of `b` holds codes 16·j + 4·l … + 3.
        _mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15), b)
    }

    /// [`narrow4`] of one vector: its 16 codes in the low 128 bits.
    #[inline]
    #[target_feature(enable = "avx512f,avx512bw")]
    fn narrow1(q: __m512i) -> __m128i {
        let w = _mm512_packus_epi32(q, q);
        let b = _mm512_packus_epi16(w, w);
        _mm512_castsi512_si128(_mm512_permutexvar_epi32(_mm512_setr_epi32(0, 4, 8, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0), b))
    }

    /// [`super::requant_rows`]: `RES` 0 no residual, 1 codes at `codes + r·stride`, 2 codes in
    /// the output rows (each lane's code read before its store), 3 f32 values at `values +
    /// r·stride`; row after row, 64 lanes at a time, then 16, the tail under a mask. `y =
    /// (acc − corr)·mult + bias`, multiplied then added unfused as the plain loop does, plus the
    /// residual (a code dequantized as [`QParams::dequantize`] does: `(code − zp)` to f32,
    /// times the scale), then ReLU (`max` returns its second operand for a NaN lane: 0, as
    /// `f32::max` does), then quantized: `min(1024, y / scale)` (NaN stays NaN, +∞ clamps),
    /// rounded to nearest even, the zero point added, saturated to 0…255 (NaN and −∞
    /// convert to `i32::MIN`, then 0), exactly as [`QParams::quantize`] does.
    ///
    /// # Safety
    /// The CPU must support AVX-512F/BW; `acc` holds `affine.len()` rows laid out as `sums`
    /// says and the segments lie inside its `rs` columns and every output row (and residual
    /// row), as [`super::requant_rows`] checks and its caller promises.
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn requant_rows<const RES: u8, const RELU: bool>(acc: &[i32], sums: super::Sums, affine: &[(i32, f32, f32)], segs: &[Seg], [codes, values]: [*const u8; 2], rq: QParams, oq: QParams, out: *mut u8, stride: usize) {
        let k = Out::new(rq, oq);
        for (r, &(corr, mult, bias)) in affine.iter().enumerate() {
            let aff = (_mm512_set1_epi32(corr), _mm512_set1_ps(mult), _mm512_set1_ps(bias));
            let arow = acc.as_ptr().wrapping_add(sums.row(r));
            let bs = sums.block_stride();
            let orow = out.wrapping_add(r * stride);
            let src = if RES == 2 { orow as *const u8 } else { codes.wrapping_add(r * stride) };
            let vrow = values.cast::<f32>().wrapping_add(r * stride);
            for sg in segs {
                let n = sg.len;
                let (o0, c0, v0) = (orow.wrapping_add(sg.out), src.wrapping_add(sg.out), vrow.wrapping_add(sg.out));
                let mut i = 0;
                while i + 64 <= n {
                    // SAFETY: the 64 lanes at i lie inside row r of `acc` (at its columns
                    // sg.acc + i.., wherever `sums` puts them), of the output and of the residual
                    // (see # Safety); a residual in the output is read before the store.
                    unsafe {
                        let lanes = |j| lane_codes::<RES, RELU>(self::sums(arow, sg.acc + i + j, 0xffff, bs), c0, v0, i + j, 0xffff, aff, &k);
                        let q = [lanes(0), lanes(16), lanes(32), lanes(48)];
                        _mm512_storeu_si512(o0.add(i) as *mut _, narrow4(q));
                    }
                    i += 64;
                }
                while i < n {
                    let m: __mmask16 = if n - i >= 16 { 0xffff } else { ((1u32 << (n - i)) - 1) as u16 };
                    // SAFETY: as above; lanes past `n − i` are masked off (masked-off lanes
                    // never fault).
                    unsafe {
                        let q = lane_codes::<RES, RELU>(self::sums(arow, sg.acc + i, m, bs), c0, v0, i, m, aff, &k);
                        if m == 0xffff {
                            _mm_storeu_si128(o0.add(i) as *mut __m128i, narrow1(q));
                        } else {
                            _mm512_mask_cvtusepi32_storeu_epi8(o0.add(i) as *mut i8, m, _mm512_max_epi32(q, _mm512_setzero_si512()));
                        }
                    }
                    i += 16;
                }
            }
        }
    }

    /// [`requant_rows`] with the rows in the lanes: for each column of `segs`, 16 rows at a
    /// time, their sums, constants and residual lanes gathered into one vector each, the
    /// codes computed by the same [`lane_codes`] (so the same codes, lane for lane) and
    /// stored row by row. Pays where a row has only a few columns (a 1×1 map: one lane of
    /// 16 per row otherwise).
    ///
    /// # Safety
    /// As [`requant_rows`].
    #[allow(clippy::too_many_arguments)]
    #[target_feature(enable = "avx512f,avx512bw")]
    pub(super) unsafe fn requant_cols<const RES: u8, const RELU: bool>(acc: &[i32], sums: super::Sums, affine: &[(i32, f32, f32)], segs: &[Seg], [codes, values]: [*const u8; 2], rq: QParams, oq: QParams, out: *mut u8, stride: usize) {
        let k = Out::new(rq, oq);
        let bs = sums.block_stride();
        for (g, group) in affine.chunks(16).enumerate() {
            let (r0, n) = (16 * g, group.len());
            let m = if n == 16 { 0xffff } else { ((1u32 << n) - 1) as __mmask16 };
            let (mut vc, mut vm, mut vb) = ([0i32; 16], [0f32; 16], [0f32; 16]);
            for (l, &(corr, mult, bias)) in group.iter().enumerate() {
                (vc[l], vm[l], vb[l]) = (corr, mult, bias);
            }
            // SAFETY: 16 values each, in bounds.
            let aff = unsafe { (_mm512_loadu_si512(vc.as_ptr() as *const _), _mm512_loadu_ps(vm.as_ptr()), _mm512_loadu_ps(vb.as_ptr())) };
            for sg in segs {
                for j in 0..sg.len {
                    let (col, o) = (sg.acc + j, sg.out + j);
                    let mut a = [0i32; 16];
                    for (l, v) in a.iter_mut().enumerate().take(n) {
                        *v = acc[sums.row(r0 + l) + col / 16 * bs + col % 16];
                    }
                    let (mut rc, mut rv) = ([0u8; 16], [0f32; 16]);
                    for l in 0..n {
                        let at = (r0 + l) * stride + o;
                        // SAFETY: element `o` of row r0 + l lies inside that row's output and
                        // residual (see # Safety); a residual in the output is read here, before
                        // the store below.
                        unsafe {
                            match RES {
                                1 => rc[l] = *codes.add(at),
                                2 => rc[l] = *out.add(at),
                                3 => rv[l] = *values.cast::<f32>().add(at),
                                _ => {}
                            }
                        }
                    }
                    let mut b = [0u8; 16];
                    // SAFETY: the 16-lane buffers hold every lane read (`i` = 0); the lanes of
                    // `m` are stored to `b`, 16 bytes.
                    unsafe {
                        let q = lane_codes::<RES, RELU>(_mm512_loadu_si512(a.as_ptr() as *const _), rc.as_ptr(), rv.as_ptr(), 0, m, aff, &k);
                        _mm512_mask_cvtusepi32_storeu_epi8(b.as_mut_ptr() as *mut i8, m, _mm512_max_epi32(q, _mm512_setzero_si512()));
                    }
                    for (l, &code) in b.iter().enumerate().take(n) {
                        // SAFETY: as above, this element's store.
                        unsafe { *out.add((r0 + l) * stride + o) = code };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The AVX-512 level, or `None` with a SKIP line naming `what` on a CPU without it.
    fn avx512_or_skip(what: &str) -> Option<Simd> {
        let simd = Simd::for_isa(crate::cpu::detect::Isa::Avx512Vnni).filter(|s| matches!(s, Simd::Avx512(_)));
        if simd.is_none() {
            eprintln!("SKIP the AVX-512 {what}: this CPU lacks AVX-512 VNNI");
        }
        simd
    }

    /// The AVX-512 requantizing epilogue (16-lane vectors, masked tails) gives the codes of
    /// the plain one, [`QParams::quantize`] of [`dequant_run`]'s values, on every
    /// length 0–200, with and without a residual (NaN, ±∞ and huge values in it) and ReLU,
    /// over several segments of one row.
    #[test]
    fn avx512_requant_matches_the_plain_codes() {
        let Some(simd) = avx512_or_skip("requant") else {
            return;
        };
        let mut state = 0x2545_f491_4f6c_dd1du64;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for len in 0..=200usize {
            let acc: Vec<i32> = (0..len).map(|_| (next() % 200_001) as i32 - 100_000).collect();
            let mut res: Vec<f32> = (0..len).map(|_| ((next() % 20_001) as f32 - 10_000.0) * 1e-3).collect();
            for (k, v) in [(3, f32::NAN), (70, f32::INFINITY), (130, f32::NEG_INFINITY), (150, 3e38), (190, -3e38)] {
                if k < len {
                    res[k] = v;
                }
            }
            let (corr, mult, bias) = ((next() % 1000) as i32 - 500, 1.7e-4, 0.25);
            let random_zp = (next() % 256) as u8;
            let segs = two_segments(len);
            let outs: usize = segs.iter().map(|s| s.len).sum();
            // Zero point 0 with ReLU leaves out the `max` (`Out::skip_relu`).
            for (relu, zp) in [(false, random_zp), (true, random_zp), (false, 0), (true, 0)] {
                let oq = QParams { scale: 0.043, zero_point: zp };
                for with_res in [false, true] {
                    let r = with_res.then_some(&res[..outs]);
                    let mut want_f = vec![0f32; outs];
                    dequant_segs(Simd::Baseline, &acc, &segs, corr, mult, bias, r, relu, &mut want_f);
                    let want: Vec<u8> = want_f.iter().map(|&v| oq.quantize(v)).collect();
                    let mut got = vec![0xaau8; outs];
                    requant_segs(simd, &acc, &segs, corr, mult, bias, r, relu, oq, &mut got);
                    assert_eq!(got, want, "len {len} relu {relu} zero point {zp} residual {with_res}");
                }
            }
        }
    }

    /// The AVX-512 epilogue's codes at and a few ulps around every half-integer and integer
    /// quotient from −1100 to 1100, for ordinary, tiny, subnormal and huge scales and zero
    /// points 0, 128, 255, with NaN, ±∞ and ±0 beside them, with and without ReLU: the plain
    /// division's codes, in a row long enough for the 64-lane step.
    #[test]
    fn quotients_near_half_integers_match_the_division() {
        let Some(simd) = avx512_or_skip("quotients") else {
            return;
        };
        let mut checked = 0usize;
        for scale in [0.043f32, 1.0 / 3.0, 0.1, 1e-3, 7.7e-6, 1.0, 3.0, 2e-20, 1e-38, 1e-39, f32::MIN_POSITIVE, 3e38, 0.017_234] {
            let mut ys = Vec::new();
            for k in -1100i32..=1100 {
                for at in [k as f32 + 0.5, k as f32] {
                    let y = at * scale;
                    for d in -4i32..=4 {
                        let b = (y.to_bits() as i32 + d) as u32;
                        ys.push(f32::from_bits(b));
                    }
                }
            }
            ys.extend([f32::NAN, f32::INFINITY, f32::NEG_INFINITY, 0.0, -0.0, 1e-45, 3e38, -3e38]);
            for zp in [0u8, 128, 255] {
                let oq = QParams { scale, zero_point: zp };
                // y = (0 − 0)·0 + 0 + residual: the residual itself.
                let acc = vec![0i32; ys.len()];
                let segs = [Seg { acc: 0, out: 0, len: ys.len() }];
                // With ReLU too: at zero point 0 the AVX-512 pass leaves out the `max`
                // (`Out::skip_relu`), and the negatives, −0, −∞ and NaN here must still give 0.
                for relu in [false, true] {
                    let want: Vec<u8> = ys.iter().map(|&y| oq.quantize(if relu { y.max(0.0) } else { y })).collect();
                    let mut got = vec![0xaau8; ys.len()];
                    requant_segs(simd, &acc, &segs, 0, 0.0, 0.0, Some(&ys), relu, oq, &mut got);
                    for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                        assert_eq!(g, w, "scale {scale:e} zero point {zp} relu {relu} y {:e} ({:#x})", ys[i], ys[i].to_bits());
                    }
                }
                checked += ys.len();
            }
        }
        println!("{checked} quotients checked");
    }

    /// [`requant_rows`] gives, row for row, the codes of [`requant_segs`] (no residual, an f32
    /// one) and [`requant_segs_codes`] (codes of their own, codes in the output) at every level
    /// this CPU has: 1–9 rows of 0–200 columns in two segments, rows further apart than their
    /// region (the bytes between them untouched), with and without ReLU.
    #[test]
    fn requant_rows_matches_row_by_row() {
        let levels = levels_here();
        println!("requant rows at {levels:?}");
        let mut rng = crate::rng::Rng::new(0x5851_f42d_4c95_7f2d);
        let mut next = || rng.next_u64();
        for &simd in &levels {
            // 16 rows and more with at most `COLS_BY_LANES` columns take the rows-in-lanes pass.
            for rows in [1usize, 2, 7, 9, 16, 17, 40] {
                for len in [0usize, 1, 2, 3, 4, 5, 6, 15, 16, 17, 49, 70, 131, 200] {
                    let segs = two_segments(len);
                    let (rs, region) = (len + 3, segs.iter().map(|s| s.len).sum::<usize>());
                    let stride = region + 5;
                    let acc: Vec<i32> = (0..rows * rs).map(|_| (next() % 200_001) as i32 - 100_000).collect();
                    let affine: Vec<(i32, f32, f32)> = (0..rows).map(|r| ((next() % 1000) as i32 - 500, 1.7e-4 * (r + 1) as f32, 0.25 - 0.1 * r as f32)).collect();
                    let codes: Vec<u8> = (0..rows * stride).map(|_| next() as u8).collect();
                    let values: Vec<f32> = (0..rows * stride).map(|_| ((next() % 20_001) as f32 - 10_000.0) * 1e-3).collect();
                    let (rq, oq) = (QParams { scale: 0.031, zero_point: 17 }, QParams { scale: 0.043, zero_point: (next() % 256) as u8 });
                    for relu in [false, true] {
                        for mode in 0..4 {
                            let mut want = codes.clone();
                            for (r, &(corr, mult, bias)) in affine.iter().enumerate() {
                                let (a, o) = (&acc[r * rs..(r + 1) * rs], r * stride);
                                match mode {
                                    0 => requant_segs(Simd::Baseline, a, &segs, corr, mult, bias, None, relu, oq, &mut want[o..o + region]),
                                    1 => requant_segs_codes(Simd::Baseline, a, &segs, corr, mult, bias, ResCodes::Own(&codes[o..o + region]), rq, relu, oq, &mut want[o..o + region]),
                                    2 => requant_segs_codes(Simd::Baseline, a, &segs, corr, mult, bias, ResCodes::InOutput, rq, relu, oq, &mut want[o..o + region]),
                                    _ => requant_segs(Simd::Baseline, a, &segs, corr, mult, bias, Some(&values[o..o + region]), relu, oq, &mut want[o..o + region]),
                                }
                            }
                            let mut got = codes.clone();
                            let res = [RowRes::None, RowRes::Own(&codes), RowRes::InOutput, RowRes::F32(&values)][mode];
                            // SAFETY: `got` holds every row's region (rows · stride bytes), and
                            // nothing else touches it during the call.
                            unsafe { requant_rows(simd, &acc, Sums::Rows(rs), &affine, &segs, res, rq, relu, oq, got.as_mut_ptr(), stride, region) };
                            assert_eq!(got, want, "{simd:?} rows {rows} len {len} relu {relu} mode {mode}");
                        }
                    }
                }
            }
        }
    }

    /// Sums laid out as AMX stores its tiles ([`Sums::Tiles`]) give the codes of the same sums
    /// in rows, at every level this CPU has: 1–40 rows (part of a 16-row group), 1–13 blocks,
    /// segments that start inside a block and cross into the next (a 3×3 conv's rows of
    /// virtual pixels) or on a block's start, every residual kind, with and without ReLU.
    #[test]
    fn tiles_of_sums_give_the_codes_of_rows() {
        let levels = levels_here();
        let mut rng = crate::rng::Rng::new(0x2545_f491_4f6c_dd1d);
        let mut next = || rng.next_u64();
        let mut checked = 0;
        for &simd in &levels {
            for rows in [1usize, 7, 16, 17, 40] {
                for nblocks in [1usize, 2, 5, 13] {
                    let rs = nblocks * 16;
                    let seg_sets = [
                        vec![Seg { acc: 0, out: 0, len: rs }],
                        vec![Seg { acc: 0, out: 0, len: rs - 5 }],
                        (0..rs / 7).map(|i| Seg { acc: i * 7, out: i * 5, len: 5 }).collect(),
                        vec![Seg { acc: 3, out: 0, len: rs - 3 }],
                        vec![Seg { acc: 9, out: 0, len: (rs - 9).min(31) }, Seg { acc: rs - 1, out: 40, len: 1 }],
                        // At most `COLS_BY_LANES` columns (rows in the lanes from 16 rows), on
                        // both sides of a block's start.
                        vec![Seg { acc: rs - 2, out: 1, len: 2 }],
                        vec![Seg { acc: 15, out: 0, len: 1 }, Seg { acc: 16.min(rs - 1), out: 2, len: 1 }],
                    ];
                    for segs in seg_sets {
                        let region = segs.iter().map(|s| s.out + s.len).max().unwrap_or(0);
                        let stride = region + 3;
                        let by_rows: Vec<i32> = (0..rows * rs).map(|_| (next() % 200_001) as i32 - 100_000).collect();
                        let mut tiles = vec![i32::MIN; Sums::Tiles(rs).len(rows)];
                        for r in 0..rows {
                            for p in 0..rs {
                                tiles[crate::cpu::qgemm::tiles_index(nblocks, r, p)] = by_rows[r * rs + p];
                            }
                        }
                        let affine: Vec<(i32, f32, f32)> = (0..rows).map(|r| ((next() % 1000) as i32 - 500, 1.3e-4 * (r + 1) as f32, 0.25 - 0.01 * r as f32)).collect();
                        let codes: Vec<u8> = (0..rows * stride).map(|_| next() as u8).collect();
                        let values: Vec<f32> = (0..rows * stride).map(|_| ((next() % 20_001) as f32 - 10_000.0) * 1e-3).collect();
                        let (rq, oq) = (QParams { scale: 0.029, zero_point: 31 }, QParams { scale: 0.041, zero_point: (next() % 256) as u8 });
                        for relu in [false, true] {
                            for mode in 0..4 {
                                let res = [RowRes::None, RowRes::Own(&codes), RowRes::InOutput, RowRes::F32(&values)][mode];
                                let (mut want, mut got) = (codes.clone(), codes.clone());
                                // SAFETY: each output holds every row's region (rows · stride
                                // bytes), and nothing else touches it during the calls.
                                unsafe {
                                    requant_rows(simd, &by_rows, Sums::Rows(rs), &affine, &segs, res, rq, relu, oq, want.as_mut_ptr(), stride, region);
                                    requant_rows(simd, &tiles, Sums::Tiles(rs), &affine, &segs, res, rq, relu, oq, got.as_mut_ptr(), stride, region);
                                }
                                assert_eq!(got, want, "{simd:?} rows {rows} blocks {nblocks} segments {segs:?} relu {relu} mode {mode}");
                                checked += 1;
                            }
                        }
                    }
                }
            }
        }
        println!("tiles of sums: {checked} calls at {levels:?}");
    }

    /// The levels this CPU runs: plain, AVX2, AVX-512.
    fn levels_here() -> Vec<Simd> {
        [crate::cpu::detect::Isa::Scalar, crate::cpu::detect::Isa::Avx2, crate::cpu::detect::Isa::Avx512Vnni].into_iter().filter_map(Simd::for_isa).collect()
    }

    /// Two segments of a `len`-column row: the first third, then the rest after a gap of one
    /// column (one segment for `len` ≤ 1).
    fn two_segments(len: usize) -> Vec<Seg> {
        let cut = len / 3;
        if len > 1 {
            vec![Seg { acc: 0, out: 0, len: cut }, Seg { acc: cut + 1, out: cut, len: len - cut - 1 }]
        } else {
            vec![Seg { acc: 0, out: 0, len }]
        }
    }

    /// The residual as u8 codes, dequantized on the way, in its own slice and in the output
    /// itself, gives the codes of dequantizing it first ([`crate::cpu::codec::dequantize_slice`])
    /// and requantizing with the f32 residual, at every level this CPU has: lengths 0–200,
    /// two segments, codes spread over 0–255, zero points 0, 128 and 255, with and without
    /// ReLU.
    #[test]
    fn requant_with_residual_codes_matches_dequantizing_first() {
        let levels = levels_here();
        println!("residual codes at {levels:?}");
        let mut rng = crate::rng::Rng::new(0x9e37_79b9_7f4a_7c15);
        let mut next = || rng.next_u64();
        for &simd in &levels {
            for len in 0..=200usize {
                let acc: Vec<i32> = (0..len).map(|_| (next() % 200_001) as i32 - 100_000).collect();
                let segs = two_segments(len);
                let outs: usize = segs.iter().map(|s| s.len).sum();
                let codes: Vec<u8> = (0..outs).map(|i| (i * 97 + len) as u8).collect();
                let (corr, mult, bias) = ((next() % 1000) as i32 - 500, 1.7e-4, -0.25);
                let oq = QParams { scale: 0.043, zero_point: (next() % 256) as u8 };
                for rq in [QParams { scale: 0.031, zero_point: 0 }, QParams { scale: 0.5, zero_point: 128 }, QParams { scale: 1e-3, zero_point: 255 }] {
                    let mut deq = vec![0f32; outs];
                    crate::cpu::codec::dequantize_slice(Simd::Baseline, rq, &codes, &mut deq);
                    for relu in [false, true] {
                        let mut want = vec![0u8; outs];
                        requant_segs(Simd::Baseline, &acc, &segs, corr, mult, bias, Some(&deq), relu, oq, &mut want);
                        let mut own = vec![0xaau8; outs];
                        requant_segs_codes(simd, &acc, &segs, corr, mult, bias, ResCodes::Own(&codes), rq, relu, oq, &mut own);
                        assert_eq!(own, want, "{simd:?} len {len} relu {relu} {rq:?}, own residual");
                        let mut inout = codes.clone();
                        requant_segs_codes(simd, &acc, &segs, corr, mult, bias, ResCodes::InOutput, rq, relu, oq, &mut inout);
                        assert_eq!(inout, want, "{simd:?} len {len} relu {relu} {rq:?}, residual in the output");
                    }
                }
            }
        }
    }
}
