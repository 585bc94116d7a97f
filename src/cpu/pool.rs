//! Max and average pooling over NCHW, planes split over the workers, with the window taps of each
//! output row and column computed once per call. Max pooling (f32, and u8 codes of INT8
//! models) is separable: row maxima first, then a strided pass over a padded row. Pooling over
//! one or three spatial axes (`[N, C, L]`, `[N, C, D, H, W]`) takes a plain loop over the same
//! taps ([`pool_nd`]).

use rayon::prelude::*;

use crate::cpu::parallel::par_chunks_mut;
use crate::cpu::simd::{gather_stride2, gather_stride2_f32, Simd};
use crate::graph::{Pool2d, PoolNd};

/// One output's window along one axis: `count` valid input indices `first, first + d, …`
/// (inside the input), and `padded`, the taps inside the input or its padding (the divisor of
/// `count_include_pad`).
#[derive(Clone, Copy, Debug)]
struct Window {
    first: usize,
    count: usize,
    padded: usize,
}

impl Window {
    fn iter(self, d: usize) -> impl Iterator<Item = usize> {
        (0..self.count).map(move |j| self.first + j * d)
    }
}

/// The window of every output index along one axis, in O(1) per output whatever the kernel
/// size (a file may declare a window of 2^30 taps over an input of 3).
fn taps(out: usize, input: usize, k: usize, s: usize, pad: (usize, usize), d: usize) -> Vec<Window> {
    // Shape inference bounds the padded input by 2^40 and strides and dilations by 256, so
    // these fit in i64.
    let (input, k, d) = (input as i64, k as i64, d.max(1) as i64);
    (0..out)
        .map(|o| {
            let start = (o * s) as i64 - pad.0 as i64;
            // Taps t in [0, k) with 0 ≤ start + t·d < input, and with start + t·d < input + pad.1.
            let lo = if start >= 0 { 0 } else { (-start + d - 1) / d }.min(k);
            let hi = ((input - 1 - start).div_euclid(d) + 1).clamp(0, k);
            let padded = ((input + pad.1 as i64 - 1 - start).div_euclid(d) + 1).clamp(0, k);
            let count = (hi - lo).max(0);
            Window { first: if count > 0 { (start + lo * d) as usize } else { 0 }, count: count as usize, padded: padded as usize }
        })
        .collect()
}

/// Max (`is_max`) or average pooling of `x: [N, C, H, W]` into `out: [N, C, OH, OW]`. Max
/// pooling with column stride 2 over at most 3 adjacent columns (ResNet's 3×3/2, UNet's
/// 2×2/2) runs in AVX-512 or AVX2 vectors where `simd` is that level, with the same values.
pub fn pool2d(simd: Simd, p: &Pool2d, is_max: bool, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    #[cfg(target_arch = "x86_64")]
    if let (true, 2, 1, 1..=3) = (is_max, p.stride[1], p.dilation[1], p.kernel[1]) {
        let level = match simd {
            Simd::Avx512(t) => Some(S2Level::Avx512(t)),
            Simd::Avx2(t) => Some(S2Level::Avx2(t)),
            Simd::Baseline => None,
        };
        if let Some(level) = level {
            max_pool_s2(level, p, x, xs, out, os);
            return;
        }
    }
    let _ = simd;
    if is_max {
        // `f32::max` itself did not vectorise here (its NaN rule), and short rows (a 16² map)
        // ran at ~3 cycles per element. The running maximum starts at −∞ and a NaN never
        // replaces it, so this select gives `f32::max`'s values (NaN inputs ignored), and
        // compiles to one `maxps`.
        max_pool_separable(p, x, xs, out, os, f32::NEG_INFINITY, |m: f32, v: f32| if v > m { v } else { m }, Cols::Stride2(gather_stride2_f32));
        return;
    }
    let ty = taps(oh, h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0]);
    let tx = taps(ow, w, p.kernel[1], p.stride[1], (p.pads[1], p.pads[3]), p.dilation[1]);
    out.par_chunks_mut(oh * ow).zip(x.par_chunks(h * w)).with_min_len(super::min_items(h * w + oh * ow)).for_each(|(o, plane)| {
        for (oy, wy) in ty.iter().enumerate() {
            let orow = &mut o[oy * ow..(oy + 1) * ow];
            for (ox, wx) in tx.iter().enumerate() {
                let v = if is_max {
                    let mut m = f32::NEG_INFINITY;
                    for iy in wy.iter(p.dilation[0]) {
                        let row = &plane[iy * w..];
                        for ix in wx.iter(p.dilation[1]) {
                            m = m.max(row[ix]);
                        }
                    }
                    m
                } else {
                    let mut s = 0.0;
                    for iy in wy.iter(p.dilation[0]) {
                        let row = &plane[iy * w..];
                        for ix in wx.iter(p.dilation[1]) {
                            s += row[ix];
                        }
                    }
                    let count = if p.count_include_pad { wy.padded * wx.padded } else { wy.count * wx.count };
                    if count == 0 {
                        0.0
                    } else {
                        s / count as f32
                    }
                };
                orow[ox] = v;
            }
        }
    });
}

/// Max or average pooling of `x: [N, C, D1, …, Dk]` into `out: [N, C, O1, …, Ok]` over any
/// number of spatial axes, with [`pool2d`]'s taps: padding never wins a max (a window with no
/// valid tap gives −∞) and counts in an average only with `count_include_pad`.
pub fn pool_nd(p: &PoolNd, x: &[f32], xs: &[usize], out: &mut [f32], os: &[usize]) {
    let k = p.kernel.len();
    let axes: Vec<Vec<Window>> = (0..k).map(|a| taps(os[2 + a], xs[2 + a], p.kernel[a], p.stride[a], (p.pads[a], p.pads[k + a]), p.dilation[a])).collect();
    let (in_plane, out_plane) = (xs[2..].iter().product::<usize>(), os[2..].iter().product::<usize>());
    let mut stride = vec![1; k];
    for a in (0..k.saturating_sub(1)).rev() {
        stride[a] = stride[a + 1] * xs[a + 3];
    }
    out.par_chunks_mut(out_plane.max(1)).zip(x.par_chunks(in_plane.max(1))).with_min_len(super::min_items(in_plane + out_plane)).for_each(|(o, plane)| {
        let mut at = vec![0usize; k];
        for v in o.iter_mut() {
            let win: Vec<Window> = (0..k).map(|a| axes[a][at[a]]).collect();
            let (mut acc, mut count) = (if p.max { f32::NEG_INFINITY } else { 0.0 }, 0usize);
            if win.iter().all(|w| w.count > 0) {
                let mut t = vec![0usize; k];
                'taps: loop {
                    let val = plane[(0..k).map(|a| (win[a].first + t[a] * p.dilation[a]) * stride[a]).sum::<usize>()];
                    acc = if p.max { acc.max(val) } else { acc + val };
                    count += 1;
                    for a in (0..k).rev() {
                        t[a] += 1;
                        if t[a] < win[a].count {
                            continue 'taps;
                        }
                        t[a] = 0;
                    }
                    break;
                }
            }
            if !p.max {
                let divisor = if p.count_include_pad { win.iter().map(|w| w.padded).product() } else { count };
                acc = if divisor == 0 { 0.0 } else { acc / divisor as f32 };
            }
            *v = acc;
            for a in (0..k).rev() {
                at[a] += 1;
                if at[a] < os[2 + a] {
                    break;
                }
                at[a] = 0;
            }
        }
    });
}

/// Max pooling of u8 codes `x: [N, C, H, W]` into `out: [N, C, OH, OW]` (padding taps are
/// skipped, as in [`pool2d`]; a window with no valid tap yields 0). Columns of stride 2,
/// dilation 1 and 1–3 taps (ResNet's 3×3/2 pool, UNet's 2×2/2) take all their taps at once in
/// vectors on AVX2 and AVX-512 (`cols_s2_u8_avx2`, `cols_s2_u8_avx512`); `simd` chooses.
pub fn max_pool2d_u8(simd: Simd, p: &Pool2d, x: &[u8], xs: [usize; 4], out: &mut [u8], os: [usize; 4]) {
    #[cfg(target_arch = "x86_64")]
    if let (2, 1, kx @ 1..=3) = (p.stride[1], p.dilation[1], p.kernel[1]) {
        // SAFETY (both closures): the level's token proves the CPU has AVX-512F/BW (and with
        // them AVX2), or AVX2; kx is 1–3; the functions check the row's length themselves.
        match simd {
            Simd::Avx512(_) => {
                let cols = move |row: &[u8], o: &mut [u8]| unsafe { cols_s2_u8_avx512(row, kx, o) };
                return max_pool_separable(p, x, xs, out, os, 0, u8::max, Cols::All(&cols));
            }
            Simd::Avx2(_) => {
                let cols = move |row: &[u8], o: &mut [u8]| unsafe { cols_s2_u8_avx2(row, kx, o) };
                return max_pool_separable(p, x, xs, out, os, 0, u8::max, Cols::All(&cols));
            }
            Simd::Baseline => {}
        }
    }
    let _ = simd;
    max_pool_separable(p, x, xs, out, os, 0, u8::max, Cols::Stride2(gather_stride2));
}

/// `o[j] = max(row[2j], …, row[2j + kx − 1])` for u8, 32 outputs a step: a 64-byte load read
/// as 32 words holds taps 0 (low bytes) and 1 (high bytes) of 32 outputs, a load 2 bytes on
/// tap 2; `vpmaxuw` over them and `vpmovwb` back to bytes. A last partial step overlaps the
/// one before (the same values again); rows under 32 outputs go to the AVX2 version.
///
/// # Safety
/// The CPU has AVX-512F/BW (and AVX2). `kx` is 1–3; `row` must hold every tap
/// (`2·(o.len() − 1) + kx` bytes; the vector steps, asserted, read up to `2·o.len() + 2`:
/// `max_pool_separable`'s padded row holds 32 more than its taps).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw,avx2")]
unsafe fn cols_s2_u8_avx512(row: &[u8], kx: usize, o: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = o.len();
    if n < 32 {
        // SAFETY: the caller's contract, which covers the AVX2 version's.
        return unsafe { cols_s2_u8_avx2(row, kx, o) };
    }
    assert!(row.len() >= 2 * n + 2, "max pool: padded row shorter than its taps");
    let lo = _mm512_set1_epi16(0x00ff);
    let step = |j: usize, o: &mut [u8]| {
        // SAFETY: j + 32 ≤ n, so the loads read row[2j .. 2j + 66] ⊆ row[..2n + 2] (asserted
        // above); the store writes o[j .. j + 32].
        unsafe {
            let w = _mm512_loadu_si512(row.as_ptr().add(2 * j).cast());
            let mut m = _mm512_and_si512(w, lo);
            if kx >= 2 {
                m = _mm512_max_epu16(m, _mm512_srli_epi16::<8>(w));
            }
            if kx >= 3 {
                m = _mm512_max_epu16(m, _mm512_and_si512(_mm512_loadu_si512(row.as_ptr().add(2 * j + 2).cast()), lo));
            }
            _mm256_storeu_si256(o.as_mut_ptr().add(j).cast(), _mm512_cvtepi16_epi8(m));
        }
    };
    let mut j = 0;
    while j + 32 <= n {
        step(j, o);
        j += 32;
    }
    if j < n {
        step(n - 32, o);
    }
}

/// [`cols_s2_u8_avx512`] on AVX2: 16 outputs a step from 32-byte loads, packed back to bytes
/// by `vpackuswb` and a lane permute; rows under 16 outputs one output at a time.
///
/// # Safety
/// The CPU has AVX2. As [`cols_s2_u8_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn cols_s2_u8_avx2(row: &[u8], kx: usize, o: &mut [u8]) {
    use std::arch::x86_64::*;
    let n = o.len();
    if n < 16 {
        for (j, d) in o.iter_mut().enumerate() {
            *d = row[2 * j..2 * j + kx].iter().copied().fold(0, u8::max);
        }
        return;
    }
    assert!(row.len() >= 2 * n + 2, "max pool: padded row shorter than its taps");
    let lo = _mm256_set1_epi16(0x00ff);
    let step = |j: usize, o: &mut [u8]| {
        // SAFETY: j + 16 ≤ n, so the loads read row[2j .. 2j + 34] ⊆ row[..2n + 2] (asserted
        // above); the store writes o[j .. j + 16].
        unsafe {
            let w = _mm256_loadu_si256(row.as_ptr().add(2 * j).cast());
            let mut m = _mm256_and_si256(w, lo);
            if kx >= 2 {
                m = _mm256_max_epu16(m, _mm256_srli_epi16::<8>(w));
            }
            if kx >= 3 {
                m = _mm256_max_epu16(m, _mm256_and_si256(_mm256_loadu_si256(row.as_ptr().add(2 * j + 2).cast()), lo));
            }
            // Bytes 0–7 and 8–15 of the packed vector's two lanes are words 0–7 and 8–15.
            let packed = _mm256_permute4x64_epi64::<0b00_00_10_00>(_mm256_packus_epi16(m, m));
            _mm_storeu_si128(o.as_mut_ptr().add(j).cast(), _mm256_castsi256_si128(packed));
        }
    };
    let mut j = 0;
    while j + 16 <= n {
        step(j, o);
        j += 16;
    }
    if j < n {
        step(n - 16, o);
    }
}

/// How [`max_pool_separable`] takes its column taps from a padded row: one tap at a time
/// (read at the output stride; `Stride2` gathers them where the stride is 2), or all of them
/// at once into the output row (`All(f)`: `f(padded row, output row)`).
#[derive(Clone, Copy)]
#[cfg_attr(not(target_arch = "x86_64"), allow(dead_code))]
enum Cols<'a, T> {
    Stride2(fn(&[T], &mut [T])),
    All(&'a (dyn Fn(&[T], &mut [T]) + Sync)),
}

/// Bytes a max pool allocates for itself per call, per worker: the separable loop a padded
/// row and a strided row of `elem`-byte values, the vector paths (f32 [`max_pool_s2`], u8
/// columns taken all at once) one padded row per output row. The planner counts them against
/// the memory limit, since a file's pads and kernel can make a row of any width up to 2^40.
pub fn max_pool_row_bytes(p: &Pool2d, w: usize, [oh, ow]: [usize; 2], elem: usize, threads: usize) -> usize {
    let last = (ow.max(1) - 1).saturating_mul(p.stride[1]).saturating_add((p.kernel[1].max(1) - 1).saturating_mul(p.dilation[1])).saturating_add(1);
    let plen = last.max(p.pads[1].saturating_add(w)).saturating_add(32);
    let separable = plen.saturating_add(ow);
    // The vector paths' padded rows (`max_pool_s2`'s, longer than the u8 path's `plen`).
    let vector_plen = p.pads[1].saturating_add(w.saturating_add(15) / 16 * 16).max((ow.saturating_add(15) / 16 * 16).saturating_mul(2).saturating_add(34));
    let vector = oh.saturating_mul(vector_plen);
    separable.max(vector).saturating_mul(elem).saturating_mul(threads.max(1))
}

/// Max pooling, separable: the elementwise maximum over each window's rows, written into a row
/// padded with `lowest` (so padding taps never win, and a window with no valid tap yields
/// `lowest`), then over its columns: for each tap, the padded row read at the output stride
/// (`stride2` when given and the stride is 2) and maxed into the output row.
#[allow(clippy::too_many_arguments)]
fn max_pool_separable<T: Copy + Send + Sync>(
    p: &Pool2d,
    x: &[T],
    xs: [usize; 4],
    out: &mut [T],
    os: [usize; 4],
    lowest: T,
    max: impl Fn(T, T) -> T + Sync,
    cols: Cols<T>,
) {
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    let ty = taps(oh, h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0]);
    let (kx, sx, dx, left) = (p.kernel[1], p.stride[1], p.dilation[1], p.pads[1]);
    // Padded row: `left` pads, the row maxima, then pads up to the last tap of the last output
    // (and 32 more, so a vector gather may read past its last element).
    let last = (ow.max(1) - 1) * sx + (kx.max(1) - 1) * dx + 1;
    let plen = last.max(left + w) + 32;
    // Chunks of at least `min_items` planes (smaller work stays on the calling thread), through
    // `par_chunks_mut` as the kernels' loops, so that a session's spinning workers take them.
    let (ohw, hw) = (oh * ow, h * w);
    if ohw == 0 || hw == 0 {
        return;
    }
    let per = super::min_items(hw + ohw);
    let planes = (out.len() / ohw).min(x.len() / hw);
    par_chunks_mut(&mut out[..planes * ohw], per * ohw, |ci, chunk| {
        // `Cols::All` takes one padded row per output row, all of a plane's window maxima
        // written before any is read back, so that its wide loads do not wait on the narrower
        // stores' forwarding (as in `max_pool_s2`); the tap-by-tap loop reuses one.
        let (mut padded, mut strided, mut rows) = match cols {
            Cols::All(_) => (Vec::new(), Vec::new(), vec![lowest; oh * plen]),
            Cols::Stride2(_) => (vec![lowest; plen], vec![lowest; ow], Vec::new()),
        };
        for (k, o) in chunk.chunks_mut(ohw).enumerate() {
            let plane = &x[(ci * per + k) * hw..][..hw];
            if let Cols::All(f) = cols {
                for (wy, row) in ty.iter().zip(rows.chunks_exact_mut(plen)) {
                    let rowmax = &mut row[left..left + w];
                    rowmax.fill(lowest);
                    for iy in wy.iter(p.dilation[0]) {
                        for (m, &v) in rowmax.iter_mut().zip(&plane[iy * w..(iy + 1) * w]) {
                            *m = max(*m, v);
                        }
                    }
                }
                for (row, orow) in rows.chunks_exact(plen).zip(o.chunks_exact_mut(ow)) {
                    f(row, orow);
                }
                continue;
            }
            for (oy, wy) in ty.iter().enumerate() {
                let rowmax = &mut padded[left..left + w];
                rowmax.fill(lowest);
                for iy in wy.iter(p.dilation[0]) {
                    for (m, &v) in rowmax.iter_mut().zip(&plane[iy * w..(iy + 1) * w]) {
                        *m = max(*m, v);
                    }
                }
                let orow = &mut o[oy * ow..(oy + 1) * ow];
                orow.fill(lowest);
                for t in 0..kx {
                    let src = &padded[t * dx..];
                    let taps: &[T] = match (sx, &cols) {
                        (1, _) => &src[..ow],
                        (2, Cols::Stride2(gather)) => {
                            gather(src, &mut strided);
                            &strided
                        }
                        _ => {
                            strided.iter_mut().zip(src.iter().step_by(sx)).for_each(|(d, &v)| *d = v);
                            &strided
                        }
                    };
                    for (d, &v) in orow.iter_mut().zip(taps) {
                        *d = max(*d, v);
                    }
                }
            }
        }
    });
}

/// The vector level of [`max_pool_s2`], holding the token that proves the CPU runs it.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
enum S2Level {
    Avx512(crate::cpu::detect::Avx512Vnni),
    Avx2(crate::cpu::detect::Avx2),
}

/// f32 max pooling whose columns have stride 2, dilation 1 and 1–3 taps, in vectors: per
/// output row, the window rows' maxima go into a row padded with −∞, then each 16 (AVX-512)
/// or 8 (AVX2) outputs take their taps `2·ox + t` from two vectors (`vpermt2ps`; on AVX2
/// `vshufps` and a lane permute). The operations and their order are
/// [`max_pool_separable`]'s with the select `v > m ? v : m` (`vmaxps(v, m)`), so the values
/// are the same, −0.0 against 0.0 and ignored NaNs included. On Zen 3 (AVX2) blobs-unet's
/// 2×2/2 pools at batch 16 took 0.235/0.151/0.129 ms on the generic loop.
#[cfg(target_arch = "x86_64")]
fn max_pool_s2(level: S2Level, p: &Pool2d, x: &[f32], xs: [usize; 4], out: &mut [f32], os: [usize; 4]) {
    let [_, _, h, w] = xs;
    let [_, _, oh, ow] = os;
    let ty = taps(oh, h, p.kernel[0], p.stride[0], (p.pads[0], p.pads[2]), p.dilation[0]);
    let (kx, left) = (p.kernel[1], p.pads[1]);
    let (ohw, hw) = (oh * ow, h * w);
    if ohw == 0 || hw == 0 {
        return;
    }
    // Padded row: `left` pads, the row maxima, then −∞ past every read: the last vector of
    // outputs reads 34 floats from 2·ox0 with ox0 < ow (and the maxima run in whole vectors).
    let plen = (left + w.next_multiple_of(16)).max(2 * ow.next_multiple_of(16) + 34);
    let per = super::min_items(hw + ohw);
    let planes = (out.len() / ohw).min(x.len() / hw);
    // Workers on cores that share no cache drop their output planes' lines before writing
    // them, as the convs do (`cpu::evict`): ResNet-50's max pool on Zen 4 with the vCPUs on
    // two CCDs 0.03 (f32) to 0.09 ms (bf16) faster, about 1.7× its time on one L3 against 2.0×.
    let workers = rayon::current_num_threads();
    let evicting = workers > 1 && planes > per && !crate::cpu::parallel::is_alone() && crate::cpu::placement::far(workers);
    par_chunks_mut(&mut out[..planes * ohw], per * ohw, |ci, chunk| {
        if evicting {
            crate::cpu::evict::evict(chunk);
        }
        // One padded row per output row: all the window maxima of a plane are written before
        // any is read back, so the reads (across two of the writes) do not stall waiting for
        // store forwarding, as they did row by row (~2× slower).
        let mut padded = vec![f32::NEG_INFINITY; oh * plen];
        for (k, o) in chunk.chunks_mut(ohw).enumerate() {
            let plane = &x[(ci * per + k) * hw..][..hw];
            assert!(o.len() == ohw && ty.len() == oh && padded.len() == oh * plen, "max pool: plane buffers");
            match level {
                // SAFETY: the token proves AVX-512F; the buffers are as `max_plane_s2_avx512`
                // requires (asserted above; the window rows lie inside the plane by `taps`).
                S2Level::Avx512(_) => unsafe { max_plane_s2_avx512(plane, w, &ty, p.dilation[0], &mut padded, plen, left, kx, o, ow) },
                // SAFETY: the token proves AVX2; the buffers are as `max_plane_s2_avx2`
                // requires (the same bounds, for 8-lane vectors).
                S2Level::Avx2(_) => unsafe { max_plane_s2_avx2(plane, w, &ty, p.dilation[0], &mut padded, plen, left, kx, o, ow) },
            }
        }
    });
}

/// One plane of [`max_pool_s2`] on AVX-512: the window maxima of every output row into its row
/// of `padded` (`plen` floats each, the maxima at `left..left + w`, −∞ elsewhere), then every
/// output row from them. One call per plane, so that the row helpers inline.
///
/// # Safety
/// AVX-512F; `ty` holds one window per output row, each inside the plane's `plane.len() / w`
/// rows; `padded` holds `ty.len() · plen` floats with `plen ≥ left + w` and
/// `plen ≥ 2·ow.next_multiple_of(16) + 34`, −∞ outside the maxima; `o` holds `ty.len() · ow`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[allow(clippy::too_many_arguments)]
unsafe fn max_plane_s2_avx512(plane: &[f32], w: usize, ty: &[Window], dy: usize, padded: &mut [f32], plen: usize, left: usize, kx: usize, o: &mut [f32], ow: usize) {
    // SAFETY: row oy of `padded` (plen floats from oy·plen) takes the maxima at left..left + w
    // and is read at 2·ox0 .. 2·ox0 + 34 with ox0 < ow (plen covers both); the output row is
    // o[oy·ow..][..ow]; loads and stores past w and ow are masked (the contract).
    unsafe {
        for (oy, wy) in ty.iter().enumerate() {
            max_rows_avx512(plane.as_ptr(), w, *wy, dy, padded.as_mut_ptr().add(oy * plen + left));
        }
        for oy in 0..ty.len() {
            max_cols_s2_avx512(padded.as_ptr().add(oy * plen), kx, o.as_mut_ptr().add(oy * ow), ow);
        }
    }
}

/// The window rows' maxima of one output row of [`max_pool_s2`], into `dst[..w]`.
///
/// # Safety
/// AVX-512F; `plane` holds the window's rows (`rows.iter(dy)`) of `w` floats each; `dst` is
/// writable for `w` floats.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn max_rows_avx512(plane: *const f32, w: usize, rows: Window, dy: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    let lowest = _mm512_set1_ps(f32::NEG_INFINITY);
    let mut x0 = 0;
    while x0 < w {
        let m: __mmask16 = if w - x0 >= 16 { 0xffff } else { ((1u32 << (w - x0)) - 1) as u16 };
        let mut acc = lowest;
        // SAFETY: the contract; masked-off lanes are neither read nor written.
        unsafe {
            for iy in rows.iter(dy) {
                acc = _mm512_max_ps(_mm512_mask_loadu_ps(lowest, m, plane.add(iy * w + x0)), acc);
            }
            _mm512_mask_storeu_ps(dst.add(x0), m, acc);
        }
        x0 += 16;
    }
}

/// One output row of [`max_pool_s2`] from its padded row of maxima: output `ox` is
/// the maximum of `padded[2·ox + t]`, `t < kx`, in that order.
///
/// # Safety
/// AVX-512F; `padded` holds `2·ow.next_multiple_of(16) + 34` floats; `orow` holds `ow`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
#[inline]
unsafe fn max_cols_s2_avx512(padded: *const f32, kx: usize, orow: *mut f32, ow: usize) {
    use std::arch::x86_64::*;
    let lowest = _mm512_set1_ps(f32::NEG_INFINITY);
    let even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
    let odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
    let mut ox0 = 0;
    while ox0 < ow {
        // SAFETY: the contract: reads end at 2·ox0 + 34; the store is masked past ow.
        unsafe {
            let src = padded.add(2 * ox0);
            let (a, b) = (_mm512_loadu_ps(src), _mm512_loadu_ps(src.add(16)));
            let mut acc = _mm512_max_ps(_mm512_permutex2var_ps(a, even, b), lowest);
            if kx > 1 {
                acc = _mm512_max_ps(_mm512_permutex2var_ps(a, odd, b), acc);
            }
            if kx > 2 {
                let (c, d) = (_mm512_loadu_ps(src.add(2)), _mm512_loadu_ps(src.add(18)));
                acc = _mm512_max_ps(_mm512_permutex2var_ps(c, even, d), acc);
            }
            let m: __mmask16 = if ow - ox0 >= 16 { 0xffff } else { ((1u32 << (ow - ox0)) - 1) as u16 };
            _mm512_mask_storeu_ps(orow.add(ox0), m, acc);
        }
        ox0 += 16;
    }
}

/// One plane of [`max_pool_s2`] on AVX2: as [`max_plane_s2_avx512`], 8 lanes per vector.
///
/// # Safety
/// AVX2; the contract of [`max_plane_s2_avx512`] (whose `plen` bound covers the 8-lane reads,
/// which end at `2·ow.next_multiple_of(8) + 18`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[allow(clippy::too_many_arguments)]
unsafe fn max_plane_s2_avx2(plane: &[f32], w: usize, ty: &[Window], dy: usize, padded: &mut [f32], plen: usize, left: usize, kx: usize, o: &mut [f32], ow: usize) {
    // SAFETY: as in `max_plane_s2_avx512`, for 8-lane vectors; tails go through scalars.
    unsafe {
        for (oy, wy) in ty.iter().enumerate() {
            max_rows_avx2(plane.as_ptr(), w, *wy, dy, padded.as_mut_ptr().add(oy * plen + left));
        }
        for oy in 0..ty.len() {
            max_cols_s2_avx2(padded.as_ptr().add(oy * plen), kx, o.as_mut_ptr().add(oy * ow), ow);
        }
    }
}

/// [`max_rows_avx512`] on AVX2: 8 columns per vector, the tail one column at a time with the
/// same select.
///
/// # Safety
/// AVX2; the contract of [`max_rows_avx512`].
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn max_rows_avx2(plane: *const f32, w: usize, rows: Window, dy: usize, dst: *mut f32) {
    use std::arch::x86_64::*;
    let full = w / 8 * 8;
    // SAFETY: the contract: row iy's columns below w are readable, dst's w are writable.
    unsafe {
        for x0 in (0..full).step_by(8) {
            let mut acc = _mm256_set1_ps(f32::NEG_INFINITY);
            for iy in rows.iter(dy) {
                acc = _mm256_max_ps(_mm256_loadu_ps(plane.add(iy * w + x0)), acc);
            }
            _mm256_storeu_ps(dst.add(x0), acc);
        }
        for x in full..w {
            let mut m = f32::NEG_INFINITY;
            for iy in rows.iter(dy) {
                let v = *plane.add(iy * w + x);
                m = if v > m { v } else { m };
            }
            *dst.add(x) = m;
        }
    }
}

/// [`max_cols_s2_avx512`] on AVX2: the even and odd columns of two vectors by `vshufps`
/// (per 128-bit lane) and a 64-bit lane permute into order; the last outputs past a whole
/// vector go through a buffer.
///
/// # Safety
/// AVX2; `padded` holds `2·ow.next_multiple_of(8) + 18` floats; `orow` holds `ow`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
#[inline]
unsafe fn max_cols_s2_avx2(padded: *const f32, kx: usize, orow: *mut f32, ow: usize) {
    use std::arch::x86_64::*;
    // Columns 2j (even) or 2j + 1 (odd), j < 8, of the 16 floats from `src`, in order.
    #[inline(always)]
    unsafe fn pick<const ODD: bool>(src: *const f32) -> __m256 {
        // SAFETY: the caller's: 16 floats readable from src.
        unsafe {
            let (a, b) = (_mm256_loadu_ps(src), _mm256_loadu_ps(src.add(8)));
            let s = if ODD { _mm256_shuffle_ps::<0xdd>(a, b) } else { _mm256_shuffle_ps::<0x88>(a, b) };
            _mm256_castpd_ps(_mm256_permute4x64_pd::<0xd8>(_mm256_castps_pd(s)))
        }
    }
    let lowest = _mm256_set1_ps(f32::NEG_INFINITY);
    let mut ox0 = 0;
    while ox0 < ow {
        // SAFETY: the contract: reads end at 2·ox0 + 18 ≤ 2·ow.next_multiple_of(8) + 18;
        // whole vectors are stored below ow, the last partial one through `tail`.
        unsafe {
            let src = padded.add(2 * ox0);
            let mut acc = _mm256_max_ps(pick::<false>(src), lowest);
            if kx > 1 {
                acc = _mm256_max_ps(pick::<true>(src), acc);
            }
            if kx > 2 {
                acc = _mm256_max_ps(pick::<false>(src.add(2)), acc);
            }
            if ow - ox0 >= 8 {
                _mm256_storeu_ps(orow.add(ox0), acc);
            } else {
                let mut tail = [0f32; 8];
                _mm256_storeu_ps(tail.as_mut_ptr(), acc);
                std::ptr::copy_nonoverlapping(tail.as_ptr(), orow.add(ox0), ow - ox0);
            }
        }
        ox0 += 8;
    }
}

/// Mean over H·W of each plane: `[N, C, H, W] → [N, C, 1, 1]`.
/// `out[n·c] = max` over each `hw` plane of `x` (NaN if the plane holds one, as ONNX's
/// reference `np.max`).
pub fn global_max_pool(x: &[f32], hw: usize, out: &mut [f32]) {
    out.par_iter_mut().zip(x.par_chunks(hw.max(1))).with_min_len(super::min_items(hw)).for_each(|(o, plane)| {
        *o = plane.iter().fold(f32::NEG_INFINITY, |m, &v| if m.is_nan() || !(v <= m) { if m.is_nan() { m } else { v } } else { m });
    });
}

pub fn global_avg_pool(x: &[f32], hw: usize, out: &mut [f32]) {
    out.par_iter_mut().zip(x.par_chunks(hw.max(1))).with_min_len(super::min_items(hw)).for_each(|(o, plane)| {
        *o = plane.iter().sum::<f32>() / hw as f32;
    });
}
