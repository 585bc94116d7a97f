//! A (weights) packed once for one kernel geometry: `[Mpad/MR][K][MR]`, so that a tile's
//! K loop reads its MR weights of one k as one contiguous group.

use crate::cpu::aligned::Aligned;

/// Row-major `[m][k]` weights repacked as `[Mpad/MR][K][MR]`, zero rows past `m`.
#[derive(Clone, Debug)]
pub struct PackedA {
    pub m: usize,
    pub k: usize,
    pub mr: usize,
    /// On a cache line (`cpu::aligned`): the narrow kernels load a k's MR weights as one vector.
    pub data: Aligned<f32>,
}

impl PackedA {
    /// Packs `w: [m][k]` (row stride `k`) for tiles of `mr` rows.
    pub fn new(w: &[f32], m: usize, k: usize, mr: usize) -> PackedA {
        let panels = m.div_ceil(mr);
        let mut data = Aligned::<f32>::zeroed(panels * k * mr);
        for p in 0..panels {
            let panel = &mut data[p * k * mr..(p + 1) * k * mr];
            for r in 0..mr.min(m - p * mr) {
                let row = &w[(p * mr + r) * k..(p * mr + r + 1) * k];
                for (kk, &v) in row.iter().enumerate() {
                    panel[kk * mr + r] = v;
                }
            }
        }
        PackedA { m, k, mr, data }
    }

    /// Panel `p` from its k-th row group: `[k_len][MR]`.
    pub fn panel_from(&self, p: usize, k: usize) -> &[f32] {
        &self.data[(p * self.k + k) * self.mr..(p + 1) * self.k * self.mr]
    }

    /// Bytes held.
    pub fn bytes(&self) -> usize {
        self.data.len() * 4
    }
}
