//! INT8 GEMM: u8 activations (with a zero point) times s8 weights (symmetric per output
//! channel), accumulated exactly in i32.
//!
//! Layouts (shared by every ISA; only the kernel function changes):
//! - weights, packed once: `s8: [Mpad][Kpad]` row-major, `Kpad = K` rounded up to 4 and
//!   `Mpad = M` rounded up to [`MR`], zero-filled; `s16` the same widened to i16 (AVX2 path);
//!   `row_sums[c] = Σ_k w[c][k]` for the zero-point correction;
//! - activations, packed per call into panels: `[nblocks][Kpad/4][16 pixels][4 k]` u8, i.e. the
//!   four consecutive k of one pixel are adjacent, as `vpdpbusd` wants them;
//! - output: `acc[c][p] = Σ_k a[k][p] · w[c][k]` as i32, row `c` at `c · out_rs`.
//!
//! The caller applies `acc − za · row_sums[c]` and the scales. How the s8×s8-free contract maps
//! onto each ISA:
//! - VNNI: `vpdpbusd` multiplies 4 u8 × 4 s8 and adds into i32 lanes; it cannot saturate.
//! - AVX2: `vpmaddubsw` would saturate in i16 (255·127·2 > 32767), so the AVX2 kernel widens
//!   activations with `vpmovzxbw` and uses pre-widened i16 weights with `vpmaddwd`, whose pair
//!   sums (at most 2·255·128) fit i32: exact for every input, at half VNNI's width.
//! - i32 accumulation is exact for `K ≤ 65 793` (255 · 128 · K < 2³¹); [`PackedWeights::new`]
//!   refuses larger K.

#[cfg(target_arch = "x86_64")]
mod avx2;
#[cfg(target_arch = "x86_64")]
mod avx512vnni;
pub mod scalar;

use std::ops::Range;

use crate::cpu::detect::{self, Isa};
use crate::error::{Error, Result};

/// Pixels per panel block (one 512-bit register of i32 accumulators).
pub const BLOCK: usize = 16;
/// Weight rows are padded to a multiple of this.
pub const MR: usize = 8;
/// Largest K for which i32 accumulation cannot overflow.
pub const MAX_K: usize = 65_793;

/// s8 weights packed once for every kernel.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    pub m: usize,
    pub k: usize,
    pub kpad: usize,
    pub mpad: usize,
    pub s8: Vec<i8>,
    pub s16: Vec<i16>,
    pub row_sums: Vec<i32>,
}

impl PackedWeights {
    /// Packs `w: [m][k]` row-major.
    pub fn new(w: &[i8], m: usize, k: usize) -> Result<Self> {
        if k == 0 || m == 0 || w.len() != m * k {
            return Err(Error::Invalid(format!("qgemm weights: {} values for {m}x{k}", w.len())));
        }
        if k > MAX_K {
            return Err(Error::Invalid(format!("qgemm: K = {k} exceeds {MAX_K}, where i32 accumulation could overflow")));
        }
        let kpad = k.div_ceil(4) * 4;
        let mpad = m.div_ceil(MR) * MR;
        let mut s8 = vec![0i8; mpad * kpad];
        for c in 0..m {
            s8[c * kpad..c * kpad + k].copy_from_slice(&w[c * k..(c + 1) * k]);
        }
        let s16 = s8.iter().map(|&v| i16::from(v)).collect();
        let row_sums = (0..m).map(|c| w[c * k..(c + 1) * k].iter().map(|&v| i32::from(v)).sum()).collect();
        Ok(PackedWeights { m, k, kpad, mpad, s8, s16, row_sums })
    }
}

/// Bytes of a panel of `nblocks` blocks for `kpad`.
pub fn panel_len(kpad: usize, nblocks: usize) -> usize {
    nblocks * kpad * BLOCK
}

/// Index of activation `(k, p)` (p within the panel) in a packed panel.
#[inline(always)]
pub fn panel_index(kpad: usize, k: usize, p: usize) -> usize {
    let (b, pp) = (p / BLOCK, p % BLOCK);
    b * kpad * BLOCK + (k / 4) * 4 * BLOCK + pp * 4 + (k % 4)
}

/// Packs `a: [k][n]` u8 (row stride `rs`) into a panel, padding pixels and K with `fill`.
pub fn pack_rows(a: &[u8], k: usize, n: usize, rs: usize, kpad: usize, fill: u8, panel: &mut [u8]) {
    let nblocks = n.div_ceil(BLOCK);
    panel[..panel_len(kpad, nblocks)].fill(fill);
    for kk in 0..k {
        for p in 0..n {
            panel[panel_index(kpad, kk, p)] = a[kk * rs + p];
        }
    }
}

/// One kernel, holding the ISA token that proves the CPU can run it (checked once, when the
/// kernel is chosen, not on every call).
#[derive(Clone, Copy, Debug)]
pub enum Kernel {
    Scalar,
    Avx2(detect::Avx2),
    Avx512Vnni(detect::Avx512Vnni),
}

impl Kernel {
    /// The AVX-512 VNNI token when this is that kernel (other AVX-512 code, such as the u8
    /// epilogue, follows the kernel's selection).
    pub fn avx512vnni(self) -> Option<detect::Avx512Vnni> {
        match self {
            Kernel::Avx512Vnni(t) => Some(t),
            _ => None,
        }
    }

    /// `acc[c][p]` for all `c < m`, all `16 · nblocks` pixels of `panel`, row stride `out_rs`.
    #[inline]
    pub fn run(self, w: &PackedWeights, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
        self.run_rows(w, 0..w.m, panel, nblocks, out, out_rs);
    }

    /// [`Kernel::run`] for weight rows `rows` only (`rows.start` a multiple of [`MR`]); row
    /// `c` goes to output row `c − rows.start`. Lets callers consume the i32 tile a few
    /// channels at a time, while it is still in cache.
    #[inline]
    pub fn run_rows(self, w: &PackedWeights, rows: Range<usize>, panel: &[u8], nblocks: usize, out: &mut [i32], out_rs: usize) {
        check_args(w, &rows, panel, nblocks, out, out_rs);
        match self {
            Kernel::Scalar => scalar::qgemm_u8s8_scalar(w, rows, panel, nblocks, out, out_rs),
            // SAFETY: the token proves the CPU supports AVX2, and check_args above proved every
            // slice large enough for the kernel's loads and stores (weights padded to Mpad rows).
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2(_) => unsafe { avx2::qgemm_u8s8_avx2_2x16(w, rows, panel, nblocks, out, out_rs) },
            // SAFETY: as above, for AVX-512F/BW/VNNI.
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512Vnni(_) => unsafe { avx512vnni::qgemm_u8s8_avx512vnni_8x32(w, rows, panel, nblocks, out, out_rs) },
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::Avx2(_) | Kernel::Avx512Vnni(_) => scalar::qgemm_u8s8_scalar(w, rows, panel, nblocks, out, out_rs),
        }
    }
}

/// The kernel of `isa`, or an error if the CPU lacks it.
pub fn kernel(isa: Isa) -> Result<Kernel> {
    let k = match isa {
        Isa::Scalar => Some(Kernel::Scalar),
        Isa::Avx2 => detect::Avx2::new().map(Kernel::Avx2),
        Isa::Avx512Vnni => detect::Avx512Vnni::new().map(Kernel::Avx512Vnni),
    };
    k.ok_or_else(|| Error::Invalid(format!("this CPU does not support {}", isa.name())))
}

/// Checks the slice sizes and the row range every kernel relies on ([`Kernel::run_rows`]
/// calls it once, before any kernel).
pub(crate) fn check_args(w: &PackedWeights, rows: &Range<usize>, panel: &[u8], nblocks: usize, out: &[i32], out_rs: usize) {
    assert!(rows.start % MR == 0 && rows.start <= rows.end && rows.end <= w.m, "qgemm: bad row range");
    assert!(panel.len() >= panel_len(w.kpad, nblocks), "qgemm: panel too small");
    assert!(out_rs >= nblocks * BLOCK, "qgemm: output row stride too small");
    assert!(rows.is_empty() || out.len() >= (rows.len() - 1) * out_rs + nblocks * BLOCK, "qgemm: output too small");
    assert!(w.s8.len() == w.mpad * w.kpad && w.s16.len() == w.s8.len(), "qgemm: weights not packed");
}

/// Plain reference: `acc[c][p] = Σ_k a[k][p] · w[c][k]` over unpacked `a: [k][n]`, `w: [m][k]`.
pub fn qgemm_reference(a: &[u8], w: &[i8], m: usize, k: usize, n: usize) -> Vec<i32> {
    let mut out = vec![0i32; m * n];
    for c in 0..m {
        for p in 0..n {
            out[c * n + p] = (0..k).map(|kk| i32::from(a[kk * n + p]) * i32::from(w[c * k + kk])).sum();
        }
    }
    out
}
