//! The u8 input of an INT8 conv rearranged into zero-point-padded stride-phase planes, so
//! that every im2col row is one contiguous run, and the packing of qgemm panels from those
//! runs (or, for 1×1 stride-1 convs and transposed convs, straight from the u8 planes); or,
//! for the implicit GEMM, into quad planes `[N][sy·sx][quads][plane][4]` that the kernel
//! reads in place ([`Phases::build_quads`]).


use super::{SERIAL_BYTES, SERIAL_ROWS};
use crate::cpu::codec::quantize_slice;
use crate::cpu::parallel::{OutPtr, PARTS_PER_WORKER};
use crate::cpu::qgemm::{block_stride, panel_index, quad_group, Packing, BLOCK};
use crate::cpu::simd::{gather_stride2, Simd};
use crate::graph::Conv2d;
use crate::qparams::QParams;

/// What the phase planes are built from: u8 codes, or f32 values quantized on the way.
#[derive(Clone, Copy)]
pub(crate) enum Source<'a> {
    U8(&'a [u8]),
    F32(&'a [f32], QParams),
}

/// The u8 input of a conv rearranged so that every im2col row is one contiguous run.
///
/// The zero-point padded input `[Cin, Hp, Wp]` is split by stride into `sy·sx` phase planes
/// per channel, phase `(py, px)` holding padded pixels `(r·sy + py, j·sx + px)`:
/// `[N][sy·sx][Cin][hph][wph]`, `hph = ⌈Hp/sy⌉`, `wph = ⌈Wp/sx⌉`. Output pixel `(oy, ox)` is
/// *virtual* pixel `v = oy·wph + ox`; tap `(ky, kx)` of channel `ci` reads phase
/// `(ky·dy mod sy, kx·dx mod sx)` at `v + ⌊ky·dy/sy⌋·wph + ⌊kx·dx/sx⌋`. Virtual columns
/// `ox ≥ OW` are computed and discarded (`wph − OW` per row), and a slack after the last
/// plane keeps their reads in bounds.
pub(crate) struct Phases {
    sy: usize,
    sx: usize,
    pub wph: usize,
    pub plane: usize,
    pub image_len: usize,
    pub slack: usize,
    pub virtual_pixels: usize,
    /// Which phases some tap reads (a 1×1 stride-2 conv reads only phase (0, 0)).
    pub used: Vec<bool>,
}

impl Phases {
    pub fn new(c: &Conv2d, cin: usize, [h, w]: [usize; 2], [oh, ow]: [usize; 2]) -> Phases {
        let [sy, sx] = c.stride;
        let [kh, kw] = c.kernel();
        let [dy, dx] = c.dilation;
        let (hp, wp) = (h + c.pads[0] + c.pads[2], w + c.pads[1] + c.pads[3]);
        let (hph, wph) = (hp.div_ceil(sy), wp.div_ceil(sx));
        let plane = hph * wph;
        let image_len = sy * sx * cin * plane;
        let virtual_pixels = (oh.max(1) - 1) * wph + ow;
        let mut used = vec![false; sy * sx];
        for ky in 0..kh {
            for kx in 0..kw {
                used[(ky * dy % sy) * sx + kx * dx % sx] = true;
            }
        }
        // Largest tap offset within an image, plus the padded last panel block.
        let max_off = image_len - plane + ((kh - 1) * dy / sy) * wph + (kw - 1) * dx / sx;
        let reach = max_off + virtual_pixels.div_ceil(BLOCK) * BLOCK;
        Phases { sy, sx, wph, plane, image_len, slack: reach.saturating_sub(image_len), virtual_pixels, used }
    }

    /// Writes the phase planes of all `n` images of `src: [N, Cin, H, W]` into `out`.
    ///
    /// Planes of u8 codes with a column stride of 1 or 2 on AVX-512 are built by
    /// [`phase_plane_avx512`], 64 input columns a load; the others row by row through
    /// [`Phases::row_filler`], the twin it is tested against.
    #[allow(clippy::too_many_arguments)]
    pub fn build(&self, simd: Simd, src: Source, n: usize, cin: usize, hw: [usize; 2], pads: [usize; 4], zp: u8, out: &mut [u8]) {
        self.build_with(simd, true, src, n, cin, hw, pads, zp, out);
    }

    /// [`Phases::build`], the whole-row path allowed or not (`fast`).
    #[allow(clippy::too_many_arguments)]
    fn build_with(&self, simd: Simd, fast: bool, src: Source, n: usize, cin: usize, [h, w]: [usize; 2], pads: [usize; 4], zp: u8, out: &mut [u8]) {
        let (sy, sx, wph, plane) = (self.sy, self.sx, self.wph, self.plane);
        let (planes, slack) = out.split_at_mut(n * self.image_len);
        slack.fill(zp);
        let row_of = self.row_filler(simd, src, cin, [h, w], pads, zp);
        #[cfg(target_arch = "x86_64")]
        let whole = match (fast, simd, src) {
            (true, Simd::Avx512(_), Source::U8(xq)) if sx <= 2 => {
                assert!(xq.len() >= n * cin * h * w, "build: input shorter than its shape");
                Some(xq)
            }
            _ => None,
        };
        #[cfg(target_arch = "x86_64")]
        let hph = plane / wph.max(1);
        #[cfg(not(target_arch = "x86_64"))]
        let _ = fast;
        // Plane `ci` of image `b`, phase `ph`, into `dst` (`plane` bytes).
        let plane_of = |b: usize, ph: usize, ci: usize, dst: &mut [u8]| {
            #[cfg(target_arch = "x86_64")]
            if let Some(xq) = whole {
                let at = (b * cin + ci) * h * w;
                // SAFETY: `whole` is set only at the AVX-512 level, whose token proves
                // AVX-512F/BW; the channel plane lies inside `xq` (asserted above) and `dst`
                // holds `hph·wph` bytes.
                unsafe { phase_plane_avx512(&xq[at..at + h * w], [h, w], [pads[0], pads[1]], [sy, sx], [ph / sx, ph % sx], [hph, wph], zp, dst) };
                return;
            }
            for (r, row) in dst.chunks_exact_mut(wph).enumerate() {
                row_of(b, ph, ci, r, row);
            }
        };
        // Only the phases some tap reads: runs of `cin` planes, one per (image, used phase),
        // each at planes[(b·sy·sx + ph)·cin·plane ..].
        let runs: Vec<(usize, usize)> = (0..n).flat_map(|b| (0..sy * sx).filter(|&ph| self.used[ph]).map(move |ph| (b, ph))).collect();
        let total = runs.len() * cin;
        // Planes `u0..u1` of the used ones, walking (run, channel) without dividing per plane.
        let range = |u0: usize, u1: usize, base: &OutPtr<u8>| {
            let (mut run, mut ci) = (u0 / cin.max(1), u0 % cin.max(1));
            for _ in u0..u1 {
                let (b, ph) = runs[run];
                let at = ((b * sy * sx + ph) * cin + ci) * plane;
                // SAFETY: plane (b, ph, ci) lies inside `planes` (b < n, ph < sy·sx, ci < cin,
                // and planes.len() = n·sy·sx·cin·plane); each used plane is visited by one
                // range only, and `planes` is borrowed mutably for the whole call.
                let dst = unsafe { std::slice::from_raw_parts_mut(base.0.add(at), plane) };
                plane_of(b, ph, ci, dst);
                ci += 1;
                if ci == cin {
                    (run, ci) = (run + 1, 0);
                }
            }
        };
        let base = OutPtr(planes.as_mut_ptr());
        split_planes(total, plane, plane / wph.max(1), |u0, u1| range(u0, u1, &base));
    }

    /// Bytes of one image's quad planes for `quads` channel quads in all (see
    /// [`Phases::build_quads`]).
    pub fn quad_image_len(&self, quads: usize) -> usize {
        self.sy * self.sx * quads * self.plane * 4
    }

    /// Bytes past the last image's quad planes that the implicit-GEMM kernel may read: the
    /// largest tap offset from the start of the last plane plus the virtual pixels rounded up
    /// to whole blocks, beyond the image.
    pub fn quad_slack(&self, c: &Conv2d, quads: usize) -> usize {
        let image = self.quad_image_len(quads);
        let reach = image - self.plane * 4 + 4 * self.tap_shift(c, c.kernel()[0] - 1, c.kernel()[1] - 1) + self.virtual_pixels.div_ceil(BLOCK) * BLOCK * 4;
        reach.saturating_sub(image)
    }

    /// Where tap `(ky, kx)` reads, in pixels from the start of its phase plane.
    fn tap_shift(&self, c: &Conv2d, ky: usize, kx: usize) -> usize {
        (ky * c.dilation[0] / self.sy) * self.wph + kx * c.dilation[1] / self.sx
    }

    /// Where each tap `t = ky·kw + kx` of channel 0 reads, in elements from the image's first
    /// plane: its phase's planes start `phase_stride` apart, then the tap's shift.
    fn tap_starts(&self, c: &Conv2d, phase_stride: usize) -> Vec<usize> {
        let [_, kw] = c.kernel();
        let [dy, dx] = c.dilation;
        (0..c.kernel()[0] * kw)
            .map(|t| {
                let (ky, kx) = (t / kw, t % kw);
                let ph = (ky * dy % self.sy) * self.sx + kx * dx % self.sx;
                ph * phase_stride + self.tap_shift(c, ky, kx)
            })
            .collect()
    }

    /// The byte offset of each 4-k group of group 0 in an image's quad planes, in the order
    /// [`crate::cpu::qgemm::PackedWeights::quad_taps`] packs weights at `packing`
    /// ([`quad_group`]): group `(q, tap)` reads quad `q` of the tap's phase at the tap's
    /// shift. `quads` counts the quads of all groups (the planes' stride between phases), `cq`
    /// those of one group.
    pub fn quad_offsets(&self, c: &Conv2d, quads: usize, cq: usize, packing: Packing) -> Vec<usize> {
        let taps: Vec<usize> = self.tap_starts(c, quads * self.plane).into_iter().map(|t| t * 4).collect();
        let mut out = vec![0; cq * taps.len()];
        for q in 0..cq {
            for (t, &at) in taps.iter().enumerate() {
                out[quad_group(packing, q, t, cq, taps.len())] = at + q * self.plane * 4;
            }
        }
        out
    }

    /// Writes the quad phase planes of all `n` images of `src: [N, Cin, H, W]` into `out`:
    /// `[N][sy·sx][groups·cq][plane][4]` bytes, `cq = ⌈cin_g/4⌉` quads per group, quad `q` of
    /// group `gi` holding channels `gi·cin_g + 4q + j` (j < 4) pixel by pixel, so that 16
    /// pixels of one quad are the 64 bytes `vpdpbusd` reads as 16 × 4 k. Channels past
    /// `cin_g` in a group's last quad, and the slack after the last image, hold the zero
    /// point (their weights are zero).
    ///
    /// Planes of u8 codes with a column stride of 1 or 2 on AVX-512 are built by
    /// [`quad_plane_avx512`], a padded row of four channels at a time (masked loads, one
    /// interleave per 16 pixels); the others row by row through [`Phases::row_filler`], which
    /// is also the twin it is tested against.
    #[allow(clippy::too_many_arguments)]
    pub fn build_quads(&self, simd: Simd, src: Source, n: usize, cin: usize, groups: usize, hw: [usize; 2], pads: [usize; 4], zp: u8, out: &mut [u8]) {
        self.build_quads_with(simd, true, src, n, cin, groups, hw, pads, zp, out);
    }

    /// [`Phases::build_quads`], the whole-row path allowed or not (`fast`).
    #[allow(clippy::too_many_arguments)]
    fn build_quads_with(&self, simd: Simd, fast: bool, src: Source, n: usize, cin: usize, groups: usize, [h, w]: [usize; 2], pads: [usize; 4], zp: u8, out: &mut [u8]) {
        let (sy, sx, wph, plane) = (self.sy, self.sx, self.wph, self.plane);
        let cin_g = cin / groups.max(1);
        let cq = cin_g.div_ceil(4);
        let quads = groups * cq;
        let image = self.quad_image_len(quads);
        let (planes, slack) = out.split_at_mut(n * image);
        slack.fill(zp);
        let row_of = self.row_filler(simd, src, cin, [h, w], pads, zp);
        // Units (image, used phase, quad), each one quad plane of `plane · 4` bytes.
        let runs: Vec<(usize, usize)> = (0..n).flat_map(|b| (0..sy * sx).filter(|&ph| self.used[ph]).map(move |ph| (b, ph))).collect();
        let total = runs.len() * quads;
        #[cfg(not(target_arch = "x86_64"))]
        let _ = fast;
        #[cfg(target_arch = "x86_64")]
        if let (true, Simd::Avx512(_), Source::U8(xq), 1 | 2) = (fast, simd, src, sx) {
            assert!(xq.len() >= n * cin * h * w, "build_quads: input shorter than its shape");
            let hph = plane / wph.max(1);
            let range = |u0: usize, u1: usize, base: &OutPtr<u8>| {
                for u in u0..u1 {
                    let ((b, ph), qg) = (runs[u / quads], u % quads);
                    let (gi, q) = (qg / cq, qg % cq);
                    let chans: [Option<usize>; 4] = std::array::from_fn(|j| (4 * q + j < cin_g).then(|| (b * cin + gi * cin_g + 4 * q + j) * h * w));
                    let at = ((b * sy * sx + ph) * quads + qg) * plane * 4;
                    // SAFETY: quad plane (b, ph, qg) lies inside `planes` (b < n, ph < sy·sx,
                    // qg < quads, planes.len() = n·sy·sx·quads·plane·4); each unit is visited
                    // by one range only, and `planes` is borrowed mutably for the whole call.
                    let dst = unsafe { std::slice::from_raw_parts_mut(base.0.add(at), plane * 4) };
                    let geo = QuadGeo { hw: [h, w], pads: [pads[0], pads[1]], stride: [sy, sx], phase: [ph / sx, ph % sx], plane: [hph, wph] };
                    // SAFETY: the level's token proves AVX-512F/BW; every channel plane
                    // `chans[j]..+h·w` lies inside `xq` (asserted above), `dst` holds
                    // `hph·wph·4` bytes, and the column stride is 1 or 2 (matched above).
                    unsafe { quad_plane_avx512(xq, chans, geo, zp, dst) };
                }
            };
            let base = OutPtr(planes.as_mut_ptr());
            split_planes(total, plane * 4, plane / wph.max(1), |u0, u1| range(u0, u1, &base));
            return;
        }
        let range = |u0: usize, u1: usize, base: &OutPtr<u8>| {
            let mut rows = vec![zp; 4 * wph];
            for u in u0..u1 {
                let ((b, ph), qg) = (runs[u / quads], u % quads);
                let (gi, q) = (qg / cq, qg % cq);
                let at = ((b * sy * sx + ph) * quads + qg) * plane * 4;
                // SAFETY: quad plane (b, ph, qg) lies inside `planes` (b < n, ph < sy·sx,
                // qg < quads, planes.len() = n·sy·sx·quads·plane·4); each unit is visited by
                // one range only, and `planes` is borrowed mutably for the whole call.
                let dst = unsafe { std::slice::from_raw_parts_mut(base.0.add(at), plane * 4) };
                for (r, drow) in dst.chunks_exact_mut(wph * 4).enumerate() {
                    for (j, row) in rows.chunks_exact_mut(wph).enumerate() {
                        let ci = 4 * q + j;
                        if ci < cin_g {
                            row_of(b, ph, gi * cin_g + ci, r, row);
                        } else {
                            row.fill(zp);
                        }
                    }
                    let (r0, rest) = rows.split_at(wph);
                    let (r1, rest) = rest.split_at(wph);
                    let (r2, r3) = rest.split_at(wph);
                    interleave_rows([r0, r1, r2, r3], drow);
                }
            }
        };
        let base = OutPtr(planes.as_mut_ptr());
        split_planes(total, plane * 4, plane / wph.max(1), |u0, u1| range(u0, u1, &base));
    }

    /// Writes row `r` (`wph` bytes) of phase `ph` of channel `ci` of image `b` of `src:
    /// [N, Cin, H, W]`: the input's codes (quantized on the way from f32), zero point in the
    /// padding.
    fn row_filler<'a>(&'a self, simd: Simd, src: Source<'a>, cin: usize, [h, w]: [usize; 2], pads: [usize; 4], zp: u8) -> impl Fn(usize, usize, usize, usize, &mut [u8]) + Sync + 'a {
        let (pt, pl) = (pads[0], pads[1]);
        let (sy, sx, wph) = (self.sy, self.sx, self.wph);
        // Per phase (py, px): the phase columns j with an input column, j·sx + px − pl ∈
        // [0, w), as `jlo..jhi`, and the input column of `jlo`. Computed once per call, not
        // per plane: with runtime divisors those divisions cost more than copying a 7² plane.
        let cols: Vec<(usize, usize, usize, usize)> = (0..sy * sx)
            .map(|ph| {
                let (py, px) = (ph / sx, ph % sx);
                let jlo = pl.saturating_sub(px).div_ceil(sx).min(wph);
                let jhi = (w + pl).saturating_sub(px).div_ceil(sx).clamp(jlo, wph);
                (py, jlo, jhi, (jlo * sx + px).saturating_sub(pl))
            })
            .collect();
        move |b: usize, ph: usize, ci: usize, r: usize, row: &mut [u8]| {
            let (py, jlo, jhi, x0) = cols[ph];
            let at = (b * cin + ci) * h * w;
            let iy = (r * sy + py).wrapping_sub(pt);
            if iy >= h || jlo == jhi {
                row.fill(zp);
                return;
            }
            fill_pad(&mut row[..jlo], zp);
            fill_pad(&mut row[jhi..], zp);
            let dst = &mut row[jlo..jhi];
            let line = at + iy * w;
            match src {
                Source::U8(xq) => {
                    // To the end of the input: the stride-2 gather may load past the row.
                    let src = &xq[line + x0..];
                    if sx == 1 {
                        dst.copy_from_slice(&src[..dst.len()]);
                    } else if sx == 2 {
                        gather_stride2(src, dst);
                    } else {
                        for (d, &v) in dst.iter_mut().zip(src.iter().step_by(sx)) {
                            *d = v;
                        }
                    }
                }
                Source::F32(x, p) => {
                    let srow = &x[line + x0..line + w];
                    if sx == 1 {
                        quantize_slice(simd, p, &srow[..dst.len()], dst);
                    } else {
                        // Strided values gathered into a small buffer, then quantized
                        // vectorised.
                        let mut buf = [0f32; 64];
                        let mut vals = srow.iter().step_by(sx);
                        for d in dst.chunks_mut(64) {
                            for (b, &v) in buf.iter_mut().zip(vals.by_ref()) {
                                *b = v;
                            }
                            quantize_slice(simd, p, &buf[..d.len()], d);
                        }
                    }
                }
            }
        }
    }

    /// Offset of each of the `kpad` im2col rows of group 0 in an image's phase planes
    /// (`k = ci·kh·kw + ky·kw + kx`); the padding rows meet zero weights and read offset 0.
    pub fn tap_offsets(&self, c: &Conv2d, cin: usize, kpad: usize) -> Vec<usize> {
        // The offsets of channel 0's taps; channel ci adds ci planes. No division per row:
        // with runtime divisors that cost 36 µs per call for a 3×3 conv over 392 channels.
        let taps = self.tap_starts(c, cin * self.plane);
        let cin_g = c.weight.shape()[1];
        let mut out = Vec::with_capacity(kpad);
        for ci in 0..cin_g {
            out.extend(taps.iter().map(|&t| t + ci * self.plane));
        }
        out.resize(kpad, 0);
        out
    }
}

/// Phase `(py, px)` of one channel's plane `src: [h][w]`: `dst[r·wph + j]` = the code at input
/// pixel `(r·sy + py − pt, j·sx + px − pl)`, the zero point where that lies in the padding;
/// column stride `sx` 1 or 2. Each 64 input columns are one masked load (the padding lanes
/// masked off, filled with the zero point); at stride 2 the phase's columns are the load's
/// even bytes, taken by truncating its 16-bit lanes (`vpmovwb`).
///
/// # Safety
/// The CPU must support AVX-512F/BW; `src.len() ≥ h·w`, `dst.len() ≥ hph·wph`, `sx ∈ {1, 2}`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
#[allow(clippy::too_many_arguments)]
unsafe fn phase_plane_avx512(src: &[u8], [h, w]: [usize; 2], [pt, pl]: [usize; 2], [sy, sx]: [usize; 2], [py, px]: [usize; 2], [hph, wph]: [usize; 2], zp: u8, dst: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(src.len() >= h * w && dst.len() >= hph * wph && (sx == 1 || sx == 2));
    let zpv = _mm512_set1_epi8(zp as i8);
    // Output columns per load.
    let step = 64 / sx;
    let out = dst.as_mut_ptr();
    for r in 0..hph {
        let iy = (r * sy + py).wrapping_sub(pt);
        let row = if iy < h { iy * w } else { 0 };
        let mut j0 = 0;
        while j0 < wph {
            let cnt = (wph - j0).min(step);
            // Lane l of the load is input column x0 + l; those inside [0, w) are read.
            let x0 = (j0 * sx + px) as isize - pl as isize;
            let lo = (-x0).clamp(0, 64) as u32;
            let hi = (w as isize - x0).clamp(lo as isize, 64) as u32;
            let lanes = |n: u32| if n >= 64 { u64::MAX } else { (1u64 << n) - 1 };
            let mask = if iy < h { lanes(hi) & !lanes(lo) } else { 0 };
            // Masked-off lanes are never read, so the address may lie outside `src`.
            let p = src.as_ptr().wrapping_offset(row as isize + x0) as *const i8;
            // SAFETY: only the lanes in `mask` are read: columns x0 + l in [0, w) of row
            // iy < h, inside `src`.
            let v = unsafe { _mm512_mask_loadu_epi8(zpv, mask, p) };
            let o = out.wrapping_add(r * wph + j0) as *mut i8;
            // SAFETY: the `cnt` bytes at `o` lie inside `dst` (r < hph, j0 + cnt ≤ wph).
            unsafe {
                if sx == 1 {
                    _mm512_mask_storeu_epi8(o, lanes(cnt as u32), v);
                } else {
                    _mm512_mask_cvtepi16_storeu_epi8(o, lanes(cnt as u32) as u32, v);
                }
            }
            j0 += step;
        }
    }
}

/// Where one quad phase plane reads its input: the input map `[h, w]`, the top and left
/// padding, the stride `[sy, sx]`, the phase `[py, px]` and the plane's `[hph, wph]`.
#[cfg(target_arch = "x86_64")]
#[derive(Clone, Copy)]
struct QuadGeo {
    hw: [usize; 2],
    pads: [usize; 2],
    stride: [usize; 2],
    phase: [usize; 2],
    plane: [usize; 2],
}

/// One quad phase plane, `dst[(r·wph + j)·4 + c]` = channel `c`'s code at input pixel
/// `(r·sy + py − pt, j·sx + px − pl)`, the zero point where that lies in the padding or where
/// `chans[c]` is `None` (a group's last quad past its channels); `chans[c]` is where channel
/// `c`'s `h·w` plane starts in `xq`. Sixteen plane pixels of the four rows at a time: each
/// row's codes by one masked load of `16·sx` input columns (the padding lanes masked off,
/// filled with the zero point; at column stride 2 the phase's columns are the load's even
/// bytes, taken by truncating its 16-bit lanes, `vpmovwb`), then interleaved.
///
/// # Safety
/// The CPU must support AVX-512F/BW; `chans[c] + h·w ≤ xq.len()` for each channel given,
/// `dst.len() ≥ hph·wph·4`, and `sx` is 1 or 2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn quad_plane_avx512(xq: &[u8], chans: [Option<usize>; 4], g: QuadGeo, zp: u8, dst: &mut [u8]) {
    use std::arch::x86_64::*;
    let ([h, w], [pt, pl], [sy, sx], [py, px], [hph, wph]) = (g.hw, g.pads, g.stride, g.phase, g.plane);
    debug_assert!(dst.len() >= hph * wph * 4 && chans.iter().flatten().all(|&c| c + h * w <= xq.len()) && (sx == 1 || sx == 2));
    let zpv = _mm512_set1_epi8(zp as i8);
    // Channel c's plane and the lanes it may read: none for a missing channel. Masked-off
    // lanes are never read, so the addresses below may point outside the slice
    // (`wrapping_*`).
    let base = chans.map(|c| xq.as_ptr().wrapping_add(c.unwrap_or(0)) as *const i8);
    let live = chans.map(|c| if c.is_some() { u64::MAX } else { 0 });
    let out = dst.as_mut_ptr();
    for r in 0..hph {
        let iy = (r * sy + py).wrapping_sub(pt);
        let line = if iy < h { iy * w } else { 0 };
        let mut j0 = 0;
        while j0 < wph {
            let cnt = (wph - j0).min(16);
            // Byte lane l of a load is input column x0 + l (l < span); those inside [0, w),
            // on an input row, are read.
            let x0 = (j0 * sx + px) as isize - pl as isize;
            let span = (cnt * sx) as isize;
            let lo = (-x0).clamp(0, span);
            let hi = (w as isize - x0).clamp(lo, span);
            let mask: u64 = if iy < h && lo < hi { ((1u64 << hi) - 1) & !((1u64 << lo) - 1) } else { 0 };
            let at = line as isize + x0;
            let row = |c: usize| {
                // SAFETY: only the lanes in `mask & live[c]` are read: columns x0 + l in
                // [0, w) of row iy < h of channel c's plane, inside `xq`.
                let v = unsafe { _mm512_mask_loadu_epi8(zpv, mask & live[c], base[c].wrapping_offset(at)) };
                if sx == 1 {
                    _mm512_castsi512_si128(v)
                } else {
                    _mm256_castsi256_si128(_mm512_cvtepi16_epi8(v))
                }
            };
            let (a, b, c, d) = (row(0), row(1), row(2), row(3));
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let (q0, q1, q2, q3) = (_mm_unpacklo_epi16(ab_lo, cd_lo), _mm_unpackhi_epi16(ab_lo, cd_lo), _mm_unpacklo_epi16(ab_hi, cd_hi), _mm_unpackhi_epi16(ab_hi, cd_hi));
            let o = out.wrapping_add((r * wph + j0) * 4);
            // SAFETY: the 4·cnt bytes at `o` lie inside `dst` (r < hph, j0 + cnt ≤ wph).
            unsafe {
                if cnt == 16 {
                    _mm_storeu_si128(o as *mut __m128i, q0);
                    _mm_storeu_si128(o.add(16) as *mut __m128i, q1);
                    _mm_storeu_si128(o.add(32) as *mut __m128i, q2);
                    _mm_storeu_si128(o.add(48) as *mut __m128i, q3);
                } else {
                    let v = _mm512_inserti32x4::<3>(_mm512_inserti32x4::<2>(_mm512_inserti32x4::<1>(_mm512_castsi128_si512(q0), q1), q2), q3);
                    _mm512_mask_storeu_epi8(o as *mut i8, (1u64 << (4 * cnt)) - 1, v);
                }
            }
            j0 += 16;
        }
    }
}

/// Builds `total` planes of `bytes` bytes and `rows` rows each, `build(u0, u1)` writing planes
/// `u0..u1`: on the calling thread when they are small (the 14² and 7² stages cost less than
/// a parallel region), unless they have many short rows (a 7² plane per channel of a
/// 392-channel 3×3 conv), else in parts over the workers.
fn split_planes(total: usize, bytes: usize, rows: usize, build: impl Fn(usize, usize) + Sync) {
    if total * bytes < SERIAL_BYTES && total * rows < SERIAL_ROWS {
        build(0, total);
    } else {
        let parts = total.min(PARTS_PER_WORKER * rayon::current_num_threads().max(1));
        crate::cpu::parallel::par_for(parts, |g| build(g * total / parts, (g + 1) * total / parts));
    }
}

/// `row.fill(zp)` for the few padding bytes at a row's ends, without a `memset` call per row
/// (that call dominated building the planes of the small 14² and 7² stages).
#[inline(always)]
fn fill_pad(row: &mut [u8], zp: u8) {
    match row {
        [] => {}
        [a] => *a = zp,
        [a, b] => (*a, *b) = (zp, zp),
        [a, b, c] => (*a, *b, *c) = (zp, zp, zp),
        _ => row.fill(zp),
    }
}

/// Packs `blocks` blocks of virtual pixels starting at `phases[base..]` into a qgemm panel:
/// row `k` of the im2col is the run at `base + koff[k]`. On AVX-512 four blocks at a time
/// ([`interleave4x64_avx512`]).
pub(crate) fn pack_taps(simd: Simd, phases: &[u8], base: usize, koff: &[usize], blocks: usize, kpad: usize, panel: &mut [u8]) {
    for (k4, offs) in koff.chunks_exact(4).enumerate().take(kpad / 4) {
        let rows: [&[u8]; 4] = std::array::from_fn(|j| &phases[base + offs[j]..base + offs[j] + blocks * BLOCK]);
        let wide = interleave_wide(simd, rows, kpad, 4 * k4, blocks, panel);
        for b in wide..blocks {
            let at = panel_index(kpad, 4 * k4, b * BLOCK);
            interleave4x16(rows.map(|r| &r[b * BLOCK..(b + 1) * BLOCK]), &mut panel[at..at + 4 * BLOCK]);
        }
    }
}

/// Interleaves the 4-k group `k` of the first blocks of `rows` (each at least `blocks` blocks
/// long) into the panel four blocks at a time where the CPU has AVX-512, and returns how many
/// blocks it did (a multiple of 4; 0 elsewhere).
#[inline(always)]
fn interleave_wide(simd: Simd, rows: [&[u8]; 4], kpad: usize, k: usize, blocks: usize, panel: &mut [u8]) -> usize {
    #[cfg(target_arch = "x86_64")]
    if let Simd::Avx512(_) = simd {
        let quads = blocks / 4;
        for q in 0..quads {
            let at = panel_index(kpad, k, 4 * q * BLOCK);
            let src = rows.map(|r| &r[4 * q * BLOCK..(4 * q + 4) * BLOCK]);
            // SAFETY: the level's token proves AVX-512F/BW; each row slice holds the 64 bytes
            // read, and the panel the four 64-byte groups written (blocks 4q..4q + 4 of it).
            unsafe { interleave4x64_avx512(src, &mut panel[at..], block_stride(kpad)) };
        }
        return 4 * quads;
    }
    let _ = (simd, rows, kpad, k, blocks, panel);
    0
}

/// [`interleave4x16`] of four consecutive blocks: `dst[j·stride + p·4 + i] = rows[i][16j + p]`
/// for blocks `j < 4` and pixels `p < 16`. Each 128-bit lane of the byte and word unpacks
/// is one block's [`interleave4x16`]; a 4 × 4 transpose of the lanes then gathers each
/// block's four lanes into one 64-byte store.
///
/// # Safety
/// The CPU must support AVX-512F/BW.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn interleave4x64_avx512(rows: [&[u8]; 4], dst: &mut [u8], stride: usize) {
    use std::arch::x86_64::*;
    assert!(rows.iter().all(|r| r.len() >= 64) && dst.len() >= 3 * stride + 64);
    // SAFETY: the assert above proves the four 64-byte loads and stores in bounds.
    unsafe {
        let [a, b, c, d] = rows.map(|r| _mm512_loadu_si512(r.as_ptr() as *const _));
        let (ab_lo, ab_hi) = (_mm512_unpacklo_epi8(a, b), _mm512_unpackhi_epi8(a, b));
        let (cd_lo, cd_hi) = (_mm512_unpacklo_epi8(c, d), _mm512_unpackhi_epi8(c, d));
        // Lane j of o_i: bytes 16i..16i + 16 of block j.
        let (o0, o1) = (_mm512_unpacklo_epi16(ab_lo, cd_lo), _mm512_unpackhi_epi16(ab_lo, cd_lo));
        let (o2, o3) = (_mm512_unpacklo_epi16(ab_hi, cd_hi), _mm512_unpackhi_epi16(ab_hi, cd_hi));
        let (t0, t1) = (_mm512_shuffle_i64x2::<0x44>(o0, o1), _mm512_shuffle_i64x2::<0xEE>(o0, o1));
        let (t2, t3) = (_mm512_shuffle_i64x2::<0x44>(o2, o3), _mm512_shuffle_i64x2::<0xEE>(o2, o3));
        let blocks = [_mm512_shuffle_i64x2::<0x88>(t0, t2), _mm512_shuffle_i64x2::<0xDD>(t0, t2), _mm512_shuffle_i64x2::<0x88>(t1, t3), _mm512_shuffle_i64x2::<0xDD>(t1, t3)];
        for (j, v) in blocks.into_iter().enumerate() {
            _mm512_storeu_si512(dst.as_mut_ptr().add(j * stride) as *mut _, v);
        }
    }
}

/// Packs output pixels `p0..p0 + cnt` of a conv into a qgemm panel straight from its quad
/// phase planes, skipping the planes' padding columns: 4-k group `g` of pixel `p` is the
/// 4 bytes at `src[koff[g] + at[p]]` (`at[p] = 4·(oy·wph + ox)`, [`dense_offsets`]). The
/// pixels past `cnt` in the last block repeat the last one (their sums are never stored).
/// On AVX-512 each block's group is two loads and a permute ([`gather_block_avx512`]).
///
/// # Panics
/// When a read or the panel's blocks would fall outside the slices.
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_quads_dense(simd: Simd, src: &[u8], koff: &[usize], at: &[u32], p0: usize, cnt: usize, kpad: usize, panel: &mut [u8]) {
    let blocks = cnt.div_ceil(BLOCK);
    let groups = kpad / 4;
    let reach = koff[..groups].iter().max().copied().unwrap_or(0) + at[p0..p0 + cnt].iter().max().map_or(0, |&a| a as usize) + 4;
    assert!(cnt > 0 && koff.len() >= groups && reach <= src.len() && panel.len() >= crate::cpu::qgemm::panel_len(kpad, blocks), "pack_quads_dense: outside the planes or the panel");
    #[cfg(not(target_arch = "x86_64"))]
    let _ = simd;
    for b in 0..blocks {
        let idx: [u32; BLOCK] = std::array::from_fn(|j| at[p0 + (b * BLOCK + j).min(cnt - 1)]);
        let blk = &mut panel[b * block_stride(kpad)..][..kpad * BLOCK];
        #[cfg(target_arch = "x86_64")]
        if let Simd::Avx512(_) = simd {
            // SAFETY: the level's token proves AVX-512F; every lane reads the 4 bytes at
            // koff[g] + idx[j] < reach ≤ src.len() (asserted), and each store writes the 64
            // bytes of group g inside the block.
            unsafe { gather_block_avx512(src, &koff[..groups], &idx, blk) };
            continue;
        }
        for (g, &k) in koff[..groups].iter().enumerate() {
            for (j, &a) in idx.iter().enumerate() {
                let from = k + a as usize;
                blk[g * 4 * BLOCK + j * 4..][..4].copy_from_slice(&src[from..from + 4]);
            }
        }
    }
}

/// One block of [`pack_quads_dense`]. Sixteen output pixels span at most 32 of the planes'
/// pixels when few padding columns fall between them (`idx` within 128 bytes of its first):
/// group `g` is then two 64-byte loads from `src + koff[g] + min(idx)` (masked to the span)
/// and one `vpermt2d`; otherwise a 16-lane dword gather. (A gather for every block cost more
/// than the padding columns it saved on 14² maps.)
///
/// # Safety
/// The CPU must support AVX-512F; `koff[g] + idx[j] + 4 ≤ src.len()` for all `g`, `j`, and
/// `blk.len() ≥ 64·koff.len()`.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn gather_block_avx512(src: &[u8], koff: &[usize], idx: &[u32; BLOCK], blk: &mut [u8]) {
    use std::arch::x86_64::*;
    let first = idx.iter().min().copied().unwrap_or(0);
    let span = idx.iter().max().copied().unwrap_or(0) - first;
    if span < 128 {
        // Dword lane j of the two loads is the plane pixel at byte first + 4·j (j < 32); the
        // loads read only the lanes up to the span's last pixel.
        let rel: [i32; BLOCK] = std::array::from_fn(|j| ((idx[j] - first) / 4) as i32);
        let last = span / 4;
        let lo: __mmask16 = if last >= 15 { 0xffff } else { ((1u32 << (last + 1)) - 1) as u16 };
        let hi: __mmask16 = if last < 16 { 0 } else { ((1u32 << (last - 15)) - 1) as u16 };
        // SAFETY: `rel` holds 16 i32s.
        let vrel = unsafe { _mm512_loadu_si512(rel.as_ptr() as *const _) };
        for (g, &k) in koff.iter().enumerate() {
            let p = src.as_ptr().wrapping_add(k + first as usize) as *const i32;
            // SAFETY: the lanes read are the bytes first + 4·j … + 3 for j ≤ span / 4, the
            // largest of them koff[g] + max(idx) + 3 < src.len() (the caller's bound); the
            // store writes group g's 64 bytes inside `blk`.
            unsafe {
                let a = _mm512_maskz_loadu_epi32(lo, p);
                let b = _mm512_maskz_loadu_epi32(hi, p.wrapping_add(16));
                _mm512_storeu_si512(blk.as_mut_ptr().add(g * 64) as *mut _, _mm512_permutex2var_epi32(a, vrel, b));
            }
        }
        return;
    }
    // SAFETY: `idx` holds 16 u32s (64 bytes).
    let vidx = unsafe { _mm512_loadu_si512(idx.as_ptr() as *const _) };
    for (g, &k) in koff.iter().enumerate() {
        // SAFETY: the caller's bounds: every lane reads inside `src`, the store inside `blk`.
        unsafe {
            let v = _mm512_i32gather_epi32::<1>(vidx, src.as_ptr().add(k) as *const _);
            _mm512_storeu_si512(blk.as_mut_ptr().add(g * 64) as *mut _, v);
        }
    }
}

/// Where each output pixel's 4 bytes start in a conv's quad planes, relative to where its
/// tap reads (the tap's phase plane and shift): `4·(oy·wph + ox)` for the `oh·ow` pixels in order.
pub(crate) fn dense_offsets(wph: usize, [oh, ow]: [usize; 2]) -> Vec<u32> {
    (0..oh).flat_map(|oy| (0..ow).map(move |ox| (4 * (oy * wph + ox)) as u32)).collect()
}

/// 1×1 stride-1 convs: the u8 input planes already are the `col` rows, so full blocks are
/// interleaved straight from them; only a partial last block goes through a padded copy (on
/// AVX-512 by one masked load per row: the copies cost more than the full blocks of a 14²
/// or 7² map, whose every 4-k group has such a block).
#[allow(clippy::too_many_arguments)]
pub(crate) fn pack_pointwise(simd: Simd, xq: &[u8], npix: usize, kdim: usize, p0: usize, cnt: usize, kpad: usize, panel: &mut [u8]) {
    const ZERO: [u8; BLOCK] = [0; BLOCK];
    let full = cnt / BLOCK;
    let mut tail = [[0u8; BLOCK]; 4];
    for k4 in 0..kpad / 4 {
        let row = |j: usize| -> Option<&[u8]> {
            let k = k4 * 4 + j;
            (k < kdim).then(|| &xq[k * npix + p0..k * npix + p0 + cnt])
        };
        let rows = [row(0), row(1), row(2), row(3)];
        // Groups with rows past K (zeros) take the 16-pixel path.
        let wide = match rows {
            [Some(a), Some(b), Some(c), Some(d)] => interleave_wide(simd, [a, b, c, d].map(|r| &r[..full * BLOCK]), kpad, 4 * k4, full, panel),
            _ => 0,
        };
        for b in wide..full {
            let src = rows.map(|r| r.map_or(&ZERO[..], |r| &r[b * BLOCK..(b + 1) * BLOCK]));
            let at = panel_index(kpad, 4 * k4, b * BLOCK);
            interleave4x16(src, &mut panel[at..at + 4 * BLOCK]);
        }
        if cnt % BLOCK != 0 {
            let at = panel_index(kpad, 4 * k4, full * BLOCK);
            #[cfg(target_arch = "x86_64")]
            if let Simd::Avx512(_) = simd {
                let rows = rows.map(|r| r.map(|r| &r[full * BLOCK..]));
                // SAFETY: the level's token proves AVX-512F/BW; each row holds the
                // `cnt % BLOCK` bytes read, and the panel the 64 written.
                unsafe { interleave_tail_avx512(rows, &mut panel[at..at + 4 * BLOCK]) };
                continue;
            }
            for (t, r) in tail.iter_mut().zip(&rows) {
                t.fill(0);
                if let Some(r) = r {
                    t[..cnt % BLOCK].copy_from_slice(&r[full * BLOCK..]);
                }
            }
            interleave4x16([&tail[0][..], &tail[1][..], &tail[2][..], &tail[3][..]], &mut panel[at..at + 4 * BLOCK]);
        }
    }
}

/// [`interleave4x16`] of rows shorter than 16 bytes (all of one length; a missing row is
/// zeros), zero-filled past their end: each row by one masked load.
///
/// # Safety
/// The CPU must support AVX-512F/BW; the rows hold at most 16 bytes each and `dst` at least 64.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn interleave_tail_avx512(rows: [Option<&[u8]>; 4], dst: &mut [u8]) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= 64 && rows.iter().flatten().all(|r| r.len() <= 16));
    // (A function, not a closure: closures do not inherit the target features.)
    #[target_feature(enable = "avx512f,avx512bw")]
    #[inline]
    fn load(r: Option<&[u8]>) -> __m128i {
        match r {
            // SAFETY: only the row's own bytes are loaded (the mask covers r.len() ≤ 16 lanes).
            Some(r) => unsafe { _mm512_castsi512_si128(_mm512_maskz_loadu_epi8((1u64 << r.len()) - 1, r.as_ptr() as *const i8)) },
            None => _mm_setzero_si128(),
        }
    }
    let (a, b, c, d) = (load(rows[0]), load(rows[1]), load(rows[2]), load(rows[3]));
    let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
    let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
    let o = dst.as_mut_ptr() as *mut __m128i;
    // SAFETY: `dst` holds the 64 bytes stored (asserted above).
    unsafe {
        _mm_storeu_si128(o, _mm_unpacklo_epi16(ab_lo, cd_lo));
        _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
        _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
        _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
    }
}

/// `dst[p·4 + j] = rows[j][p]` for every pixel of four rows of equal length.
fn interleave_rows(rows: [&[u8]; 4], dst: &mut [u8]) {
    let len = rows[0].len();
    let full = len / 16 * 16;
    for p in (0..full).step_by(16) {
        interleave4x16(rows.map(|r| &r[p..p + 16]), &mut dst[p * 4..p * 4 + 64]);
    }
    // The tail through a 16-pixel copy: byte by byte it cost more than the rest of a 29-pixel
    // row (stride-2 planes, 7² and 28² maps have such tails).
    if full < len {
        let n = len - full;
        let mut t = [[0u8; 16]; 4];
        for (t, r) in t.iter_mut().zip(&rows) {
            t[..n].copy_from_slice(&r[full..]);
        }
        let mut o = [0u8; 64];
        interleave4x16([&t[0][..], &t[1][..], &t[2][..], &t[3][..]], &mut o);
        dst[full * 4..len * 4].copy_from_slice(&o[..n * 4]);
    }
}

/// `dst[p·4 + j] = rows[j][p]` for 16 pixels and 4 rows.
#[inline(always)]
fn interleave4x16(rows: [&[u8]; 4], dst: &mut [u8]) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::*;
        assert!(rows.iter().all(|r| r.len() >= 16) && dst.len() >= 64);
        // SAFETY: SSE2 is part of the x86-64 baseline; the assert above proves the four
        // 16-byte loads and the four 16-byte stores are in bounds.
        unsafe {
            let [a, b, c, d] = rows.map(|r| _mm_loadu_si128(r.as_ptr() as *const __m128i));
            let (ab_lo, ab_hi) = (_mm_unpacklo_epi8(a, b), _mm_unpackhi_epi8(a, b));
            let (cd_lo, cd_hi) = (_mm_unpacklo_epi8(c, d), _mm_unpackhi_epi8(c, d));
            let o = dst.as_mut_ptr() as *mut __m128i;
            _mm_storeu_si128(o, _mm_unpacklo_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(1), _mm_unpackhi_epi16(ab_lo, cd_lo));
            _mm_storeu_si128(o.add(2), _mm_unpacklo_epi16(ab_hi, cd_hi));
            _mm_storeu_si128(o.add(3), _mm_unpackhi_epi16(ab_hi, cd_hi));
        }
    }
    #[cfg(not(target_arch = "x86_64"))]
    for p in 0..16 {
        for j in 0..4 {
            dst[p * 4 + j] = rows[j][p];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The whole-row quad builder against the row-by-row one, byte for byte over the planes
    /// and the slack (both buffers start from different garbage): widths around the 16-pixel
    /// chunks, asymmetric pads, groups with a partial last quad, dilations, zero points,
    /// strides (column stride 3 takes the row builder both ways).
    #[test]
    fn quad_planes_match_the_row_builder() {
        let simd = Simd::best();
        println!("quad planes: {}", if matches!(simd, Simd::Avx512(_)) { "AVX-512 whole rows against the row builder" } else { "no AVX-512 here: the row builder only" });
        let mut cases = 0;
        for (h, w) in [(1, 1), (2, 3), (7, 7), (5, 15), (14, 14), (3, 17), (4, 31), (6, 33), (9, 40), (2, 63), (2, 65)] {
            for pads in [[0, 0, 0, 0], [1, 1, 1, 1], [2, 0, 1, 3], [0, 3, 2, 0], [3, 17, 0, 2]] {
                for (cin_g, groups, n, dil, zp, stride) in [(1, 1, 1, 1, 0u8, [1, 1]), (3, 1, 2, 1, 9, [2, 2]), (4, 2, 1, 2, 255, [1, 1]), (5, 1, 1, 1, 128, [2, 1]), (8, 3, 2, 1, 7, [1, 2]), (13, 2, 1, 2, 1, [2, 2]), (4, 1, 1, 1, 3, [3, 2]), (6, 1, 1, 1, 77, [1, 3])] {
                    let cin = cin_g * groups;
                    let mut c = Conv2d::new(crate::tensor::Tensor::randn(vec![groups * 4, cin_g, 3, 3], 1.0, 1), 1, 0, groups);
                    c.pads = pads;
                    c.dilation = [dil, dil];
                    c.stride = stride;
                    let (hp, wp) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
                    let Some((oh, ow)) = hp.checked_sub(2 * dil + 1).zip(wp.checked_sub(2 * dil + 1)) else { continue };
                    let p = Phases::new(&c, cin, [h, w], [oh / stride[0] + 1, ow / stride[1] + 1]);
                    let quads = groups * cin_g.div_ceil(4);
                    let x: Vec<u8> = (0..n * cin * h * w).map(|i| (i * 37 % 253) as u8).collect();
                    let len = n * p.quad_image_len(quads) + p.quad_slack(&c, quads);
                    let (mut fast, mut rows) = (vec![0xaa; len], vec![0x55; len]);
                    p.build_quads_with(simd, true, Source::U8(&x), n, cin, groups, [h, w], pads, zp, &mut fast);
                    p.build_quads_with(simd, false, Source::U8(&x), n, cin, groups, [h, w], pads, zp, &mut rows);
                    // Phases no tap reads (a dilation as large as the stride) stay unwritten.
                    let phase_bytes = quads * p.plane * 4;
                    let mask = |buf: &mut Vec<u8>| {
                        for (i, chunk) in buf[..n * p.quad_image_len(quads)].chunks_exact_mut(phase_bytes.max(1)).enumerate() {
                            if !p.used[i % p.used.len()] {
                                chunk.fill(0);
                            }
                        }
                    };
                    mask(&mut fast);
                    mask(&mut rows);
                    assert!(fast == rows, "quad planes differ: {h}×{w}, pads {pads:?}, {cin_g} channels × {groups} groups, batch {n}, dilation {dil}, zero point {zp}, stride {stride:?}");
                    cases += 1;
                }
            }
        }
        assert!(cases > 250, "only {cases} cases ran");
    }

    /// Dense panels from quad planes: the best level's (two loads and a permute per block,
    /// a gather where a block spans more than 32 plane pixels) against the plain copies, byte
    /// for byte over every block: maps from 1² to 28², padding columns 1–37, starting pixels,
    /// partial last blocks, K with 1–37 groups.
    #[test]
    fn dense_quad_panels_match_the_plain_packing() {
        let simd = Simd::best();
        let mut cases = 0;
        for (wph, oh, ow) in [(9usize, 7usize, 7usize), (16, 14, 14), (30, 28, 28), (3, 1, 1), (5, 3, 3), (40, 3, 3), (18, 8, 16), (19, 17, 15), (6, 4, 3)] {
            let at = dense_offsets(wph, [oh, ow]);
            let npix = oh * ow;
            for groups in [1usize, 5, 37] {
                let koff: Vec<usize> = (0..groups).map(|g| g * (oh + 2) * wph * 4 + (g % 3) * 4).collect();
                let len = koff.iter().max().copied().unwrap_or(0) + at.iter().max().map_or(0, |&a| a as usize) + 4;
                let src: Vec<u8> = (0..len).map(|i| (i * 31 % 253) as u8).collect();
                let kpad = groups * 4;
                for p0 in [0usize, 16, 32].into_iter().filter(|&p| p < npix) {
                    for cnt in [npix - p0, (npix - p0).min(17), 1] {
                        let plen = crate::cpu::qgemm::panel_len(kpad, cnt.div_ceil(BLOCK));
                        let (mut fast, mut plain) = (vec![0xaa; plen], vec![0x55; plen]);
                        pack_quads_dense(simd, &src, &koff, &at, p0, cnt, kpad, &mut fast);
                        pack_quads_dense(Simd::Baseline, &src, &koff, &at, p0, cnt, kpad, &mut plain);
                        let blocks = |p: &[u8]| p.chunks(block_stride(kpad)).map(|b| b[..kpad * BLOCK].to_vec()).collect::<Vec<_>>();
                        assert!(blocks(&fast) == blocks(&plain), "dense panels differ: {oh}x{ow} in planes {wph} wide, {groups} groups, pixels {p0}+{cnt}");
                        // The plain packing is the definition: group g of pixel p is the 4
                        // bytes at koff[g] + at[p].
                        for p in 0..cnt {
                            for (g, &k) in koff.iter().enumerate() {
                                let from = k + at[p0 + p] as usize;
                                let to = (p / BLOCK) * block_stride(kpad) + g * 4 * BLOCK + (p % BLOCK) * 4;
                                assert_eq!(plain[to..to + 4], src[from..from + 4]);
                            }
                        }
                        cases += 1;
                    }
                }
            }
        }
        println!("dense quad panels: {cases} cases at {simd:?}");
    }

    /// The pointwise panels of the best level (on AVX-512 the partial last block by masked
    /// loads) against the plain level's, byte for byte: pixel counts around the 16- and
    /// 64-pixel steps, starting pixels, K with a partial last 4-k group, padding rows past K.
    #[test]
    fn pointwise_panels_match_the_plain_packing() {
        let simd = Simd::best();
        println!("pointwise panels: {}", if matches!(simd, Simd::Avx512(_)) { "AVX-512 tails against the plain packing" } else { "no AVX-512 here: the plain packing only" });
        for npix in [1usize, 15, 16, 17, 49, 63, 64, 65, 128, 196, 200, 3136] {
            for kdim in [1usize, 3, 4, 7, 40, 64] {
                let kpad = kdim.div_ceil(4) * 4 + if kdim == 7 { 4 } else { 0 };
                let x: Vec<u8> = (0..kdim * npix).map(|i| (i * 53 % 251) as u8).collect();
                for p0 in [0, 16, 48].into_iter().filter(|&p| p < npix) {
                    let cnt = npix - p0;
                    let len = crate::cpu::qgemm::panel_len(kpad, cnt.div_ceil(BLOCK));
                    let (mut fast, mut plain) = (vec![0xaa; len], vec![0x55; len]);
                    pack_pointwise(simd, &x, npix, kdim, p0, cnt, kpad, &mut fast);
                    pack_pointwise(Simd::Baseline, &x, npix, kdim, p0, cnt, kpad, &mut plain);
                    // Every byte of every block written alike (the spare line after each is
                    // not the packers').
                    let blocks = |p: &[u8]| p.chunks(block_stride(kpad)).map(|b| b[..kpad * BLOCK].to_vec()).collect::<Vec<_>>();
                    assert!(blocks(&fast) == blocks(&plain), "pointwise panels differ: {npix} pixels from {p0}, K {kdim} padded to {kpad}");
                }
            }
        }
    }

    /// The tap panels of the best level (four blocks at a time on AVX-512) against the plain
    /// level's, byte for byte: block counts around the four-block step, tap runs at every
    /// byte alignment and overlapping (as a 3×3 conv's taps do), bases off the line.
    #[test]
    fn tap_panels_match_the_plain_packing() {
        let simd = Simd::best();
        println!("tap panels: {}", if matches!(simd, Simd::Avx512(_)) { "AVX-512 four blocks at a time against the plain packing" } else { "no AVX-512 here: the plain packing only" });
        for blocks in [1usize, 3, 4, 5, 7, 8, 9, 12, 17] {
            for kpad in [4usize, 36, 64, 148] {
                let koff: Vec<usize> = (0..kpad).map(|k| (k * 37 + k / 3) % 101).collect();
                for base in [0usize, 5, 64] {
                    let len = base + 101 + blocks * BLOCK;
                    let phases: Vec<u8> = (0..len).map(|i| (i * 29 % 253) as u8).collect();
                    let plen = crate::cpu::qgemm::panel_len(kpad, blocks);
                    let (mut fast, mut plain) = (vec![0xaa; plen], vec![0x55; plen]);
                    pack_taps(simd, &phases, base, &koff, blocks, kpad, &mut fast);
                    pack_taps(Simd::Baseline, &phases, base, &koff, blocks, kpad, &mut plain);
                    let blocks_of = |p: &[u8]| p.chunks(block_stride(kpad)).map(|b| b[..kpad * BLOCK].to_vec()).collect::<Vec<_>>();
                    assert!(blocks_of(&fast) == blocks_of(&plain), "tap panels differ: {blocks} blocks, K {kpad}, base {base}");
                    // And the plain packing is the im2col: k-group g of pixel p holds the
                    // four bytes of rows 4g..4g + 4 at p.
                    for p in [0, blocks * BLOCK - 1] {
                        for k in [0, kpad - 1] {
                            assert_eq!(plain[panel_index(kpad, k, p)], phases[base + koff[k] + p]);
                        }
                    }
                }
            }
        }
    }

    /// The whole-row phase-plane builder against the row-by-row one, byte for byte over the
    /// planes and the slack: strides 1 and 2 in each direction (and 3 across, which takes the
    /// row builder), kernels 1×1, 3×3 and 7×7, widths around the 32- and 64-column loads,
    /// asymmetric pads, dilations, zero points.
    #[test]
    fn phase_planes_match_the_row_builder() {
        let simd = Simd::best();
        println!("phase planes: {}", if matches!(simd, Simd::Avx512(_)) { "AVX-512 whole rows against the row builder" } else { "no AVX-512 here: the row builder only" });
        let mut cases = 0;
        for (h, w) in [(1, 1), (3, 5), (7, 7), (14, 14), (5, 31), (4, 33), (3, 63), (2, 64), (3, 65), (2, 130), (9, 57)] {
            for pads in [[0, 0, 0, 0], [1, 1, 1, 1], [3, 3, 3, 3], [2, 0, 1, 3], [0, 5, 2, 1]] {
                for (stride, k, dil, cin, n, zp) in [([1, 1], 3, 1, 3, 1, 0u8), ([2, 2], 3, 1, 2, 2, 9), ([2, 2], 1, 1, 4, 1, 255), ([1, 2], 3, 2, 1, 1, 128), ([2, 1], 7, 1, 3, 1, 7), ([2, 3], 3, 1, 2, 1, 1), ([2, 2], 7, 1, 3, 2, 77)] {
                    let mut c = Conv2d::new(crate::tensor::Tensor::randn(vec![4, cin, k, k], 1.0, 1), 1, 0, 1);
                    c.stride = stride;
                    c.pads = pads;
                    c.dilation = [dil, dil];
                    let (hp, wp) = (h + pads[0] + pads[2], w + pads[1] + pads[3]);
                    let span = dil * (k - 1) + 1;
                    let Some((eh, ew)) = hp.checked_sub(span).zip(wp.checked_sub(span)) else { continue };
                    let (oh, ow) = (eh / stride[0] + 1, ew / stride[1] + 1);
                    let p = Phases::new(&c, cin, [h, w], [oh, ow]);
                    let x: Vec<u8> = (0..n * cin * h * w).map(|i| (i * 41 % 251) as u8).collect();
                    let len = n * p.image_len + p.slack;
                    let (mut fast, mut rows) = (vec![0xaa; len], vec![0x55; len]);
                    // Unused phases are not written: start both alike there.
                    for (b, ph) in (0..n).flat_map(|b| (0..stride[0] * stride[1]).map(move |ph| (b, ph))) {
                        if !p.used[ph] {
                            let at = (b * stride[0] * stride[1] + ph) * cin * p.plane;
                            fast[at..at + cin * p.plane].fill(0);
                            rows[at..at + cin * p.plane].fill(0);
                        }
                    }
                    p.build_with(simd, true, Source::U8(&x), n, cin, [h, w], pads, zp, &mut fast);
                    p.build_with(simd, false, Source::U8(&x), n, cin, [h, w], pads, zp, &mut rows);
                    assert!(fast == rows, "phase planes differ: {h}×{w}, pads {pads:?}, stride {stride:?}, {k}×{k} dilation {dil}, {cin} channels, batch {n}, zero point {zp}");
                    cases += 1;
                }
            }
        }
        assert!(cases > 300, "only {cases} cases ran");
    }
}
