//! Packing for the INT8 GEMM: weights once, when a session is prepared, for the kernel it
//! chose ([`PackedWeights`]); activations per call into panels ([`pack_rows`],
//! [`panel_index`]). Layouts are in the parent module's docs.

use super::{BLOCK, MAX_K, MR};
use crate::cpu::aligned::Aligned;
use crate::error::{Error, Result};

/// The integer width packed weights are stored at: what the kernel loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Packing {
    /// s8, as `vpdpbusd` and the scalar kernel read them.
    S8,
    /// s8 proven not to saturate `vpmaddubsw` ([`pairs_fit`]), as the AVX2 byte kernel reads
    /// them (the scalar and VNNI kernels read them too).
    S8Paired,
    /// s8 widened to i16, as the AVX2 kernel's `vpmaddwd` reads them.
    S16,
    /// s8 with `Kpad` a multiple of 64 and 24 zero rows past `M` rounded to `MR`, as the
    /// AMX-INT8 kernel's 16 × 64-byte weight tiles read them.
    S8Amx,
}

#[derive(Clone, Debug)]
enum Data {
    S8(Aligned<i8>, Packing),
    S16(Aligned<i16>),
}

/// s8 weights packed once for one kernel: `[Mpad][Kpad]` row-major, zero-filled, plus the
/// row sums for the zero-point correction.
#[derive(Clone, Debug)]
pub struct PackedWeights {
    pub m: usize,
    pub k: usize,
    pub kpad: usize,
    pub mpad: usize,
    data: Data,
    pub row_sums: Vec<i32>,
    /// 0 for the plain K order; else the conv taps per channel of weights packed by
    /// [`PackedWeights::quad_taps`], whose 4-k groups are (channel quad, tap) pairs.
    pub taps: usize,
}

/// The 4-k group of channel quad `q` and tap `t` in weights packed by
/// [`PackedWeights::quad_taps`] (`cq` quads, `taps` taps): quad by quad, each quad's taps
/// together (`q·taps + t`), for `vpdpbusd` and the scalar twin; for AMX tap by tap, each tap's
/// quads together (`t·cq + q`), so that one 64-byte step of K is 16 quads of one tap, 16
/// rows of a tile at one stride in the quad planes (`cq` a multiple of 16).
pub fn quad_group(packing: Packing, q: usize, t: usize, cq: usize, taps: usize) -> usize {
    match packing {
        Packing::S8Amx => t * cq + q,
        _ => q * taps + t,
    }
}

impl PackedWeights {
    /// Packs `w: [m][k]` row-major at `packing`; [`Packing::S8Paired`] is refused for weights
    /// whose pairs could saturate.
    pub fn new(w: &[i8], m: usize, k: usize, packing: Packing) -> Result<Self> {
        if k == 0 || m == 0 || w.len() != m * k {
            return Err(Error::BadTensor { name: "INT8 weights".into(), reason: format!("{} values for {m}x{k}", w.len()) });
        }
        if packing == Packing::S8Paired && !pairs_fit(w, m, k) {
            return Err(Error::Internal("INT8 weights packed for vpmaddubsw have a same-signed pair above 128 in magnitude".into()));
        }
        if k > MAX_K {
            return Err(Error::Unsupported { what: format!("an INT8 layer with K = {k}"), hint: format!("i32 accumulation could overflow above K = {MAX_K}; exclude the layer from quantization") });
        }
        let (kpad, mpad) = match packing {
            Packing::S8Amx => (k.div_ceil(64) * 64, m.div_ceil(MR) * MR + 24),
            _ => (k.div_ceil(4) * 4, m.div_ceil(MR) * MR),
        };
        // On a cache line: AMX loads each 64-byte row of a weight tile (see `cpu::aligned`).
        let mut s8 = Aligned::<i8>::zeroed(mpad * kpad);
        for c in 0..m {
            s8[c * kpad..c * kpad + k].copy_from_slice(&w[c * k..(c + 1) * k]);
        }
        let row_sums = (0..m).map(|c| w[c * k..(c + 1) * k].iter().map(|&v| i32::from(v)).sum()).collect();
        let data = match packing {
            Packing::S8 | Packing::S8Paired | Packing::S8Amx => Data::S8(s8, packing),
            Packing::S16 => Data::S16(Aligned::from_slice(&s8.iter().map(|&v| i16::from(v)).collect::<Vec<_>>())),
        };
        Ok(PackedWeights { m, k, kpad, mpad, data, row_sums, taps: 0 })
    }

    /// Packs conv weights `w: [m][cin · taps]` (K = channel·taps + tap) in the order the
    /// implicit-GEMM kernel reads its activations ([`super::Kernel::run_rows_taps`]): each
    /// 4-k group is four channels of one tap, as the quad phase planes hold them, the groups
    /// in [`quad_group`]'s order for `packing`; the channels past `cin` of the last quad are
    /// zero. The row sums are the same as in the plain order.
    pub fn quad_taps(w: &[i8], m: usize, cin: usize, taps: usize, packing: Packing) -> Result<Self> {
        let k = cin * taps;
        if k == 0 || m == 0 || w.len() != m * k || packing == Packing::S8Amx && cin % 64 != 0 {
            return Err(Error::BadTensor { name: "INT8 weights".into(), reason: format!("{} values for {m}x{cin}x{taps} ({packing:?})", w.len()) });
        }
        let (cq, kq) = (cin.div_ceil(4), cin.div_ceil(4) * 4 * taps);
        let mut r = vec![0i8; m * kq];
        for (row, dst) in w.chunks_exact(k).zip(r.chunks_exact_mut(kq)) {
            for ci in 0..cin {
                for t in 0..taps {
                    dst[quad_group(packing, ci / 4, t, cq, taps) * 4 + ci % 4] = row[ci * taps + t];
                }
            }
        }
        let mut p = PackedWeights::new(&r, m, kq, packing)?;
        p.taps = taps;
        Ok(p)
    }

    /// The layout the weights are stored at.
    pub fn packing(&self) -> Packing {
        match self.data {
            Data::S8(_, p) => p,
            Data::S16(_) => Packing::S16,
        }
    }

    /// Stored weight values (`Mpad · Kpad`).
    pub fn len(&self) -> usize {
        match &self.data {
            Data::S8(v, _) => v.len(),
            Data::S16(v) => v.len(),
        }
    }

    /// Whether nothing is stored (never, for weights `new` accepted).
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        let weights = match &self.data {
            Data::S8(v, _) => v.len(),
            Data::S16(v) => 2 * v.len(),
        };
        weights + 4 * self.row_sums.len()
    }

    /// The s8 weights, when packed so.
    pub fn s8(&self) -> Option<&[i8]> {
        match &self.data {
            Data::S8(v, _) => Some(v),
            Data::S16(_) => None,
        }
    }

    /// The i16 weights, when packed so.
    pub fn s16(&self) -> Option<&[i16]> {
        match &self.data {
            Data::S16(v) => Some(v),
            Data::S8(..) => None,
        }
    }
}

/// Whether `vpmaddubsw` is exact on `w: [m][k]` for every u8 input: it adds the two products
/// of the k pairs `(2j, 2j + 1)` of a row (the packed layout keeps them adjacent; an odd
/// last k pairs with a zero) into a saturating i16. Pairs of opposite signs stay within
/// `255 · 128`; same-signed pairs fit when `|w₁| + |w₂| ≤ 128`, since `255 · 128 ≤ 32 767`.
/// 7-bit weights (`[−64, 64]`) always fit.
pub fn pairs_fit(w: &[i8], m: usize, k: usize) -> bool {
    w.len() == m * k
        && w.chunks(k.max(1)).all(|row| {
            row.chunks(2).all(|p| {
                let (a, b) = (i32::from(p[0]), i32::from(p.get(1).copied().unwrap_or(0)));
                a.signum() * b.signum() < 0 || a.abs() + b.abs() <= 128
            })
        })
}

/// Bytes from one panel block to the next for `kpad`: the block's `kpad · 16` bytes and one
/// spare cache line. Blocks a multiple of 4 KiB apart (K = 256, 512, 1024 …) put the same
/// 4-k group of every block in one L1 set, and the packers, which write that group across all
/// the blocks before the next, then missed L1 on nearly every line: packing a ResNet-50 1×1
/// conv's panel (K = 256–1024) took 1.4–2× as long as with the spare line (Zen 4).
#[inline(always)]
pub fn block_stride(kpad: usize) -> usize {
    kpad * BLOCK + 64
}

/// Bytes of a panel of `nblocks` blocks for `kpad`.
pub fn panel_len(kpad: usize, nblocks: usize) -> usize {
    nblocks * block_stride(kpad)
}

/// Index of activation `(k, p)` (p within the panel) in a packed panel.
#[inline(always)]
pub fn panel_index(kpad: usize, k: usize, p: usize) -> usize {
    let (b, pp) = (p / BLOCK, p % BLOCK);
    b * block_stride(kpad) + (k / 4) * 4 * BLOCK + pp * 4 + (k % 4)
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
