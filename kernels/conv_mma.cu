// FP16 convolution on tensor cores: an implicit GEMM over NHWC f16 activations and KRSC f16
// filters, `mma.sync.aligned.m16n8k16` with f32 accumulators, and a fused epilogue (bias,
// residual, activation), f16 out.
//
// GEMM view: rows are output pixels (M = N·OH·OW), columns output channels (Cout), the
// reduction K = kh·kw·Cin in (ky, kx, ci) order, which is KRSC's row order. Alignment the host
// must check (else it takes conv2d_nhwc_f16_direct): groups = 1, Cin % 16 == 0 (a 16-wide K
// step then lies in one tap, and 32-bit loads of two halves are aligned), Cout % 8 == 0.
//
// Work: a block of 4 warps covers 64 pixels × 32 channels; each warp 16 pixels × 4 n-tiles
// of 8 channels, reusing its A fragment across them. Fragments are loaded straight from
// global memory (no shared-memory staging yet): the baseline the tiled kernel will be
// measured against. Fragment layouts are PTX's for m16n8k16 .f16 (groupID = lane / 4,
// t = lane % 4): A rows groupID and groupID + 8, columns 2t, 2t + 1 (+8); B rows (k) 2t, 2t + 1
// (+8), column groupID; C rows groupID and groupID + 8, columns 2t, 2t + 1.
#include "common.cuh"

// Two consecutive halves as one 32-bit register (the lower address in the low half).
__device__ __forceinline__ unsigned int load_pair(const f16* p) {
    return *reinterpret_cast<const unsigned int*>(p);
}

extern "C" __global__ void __launch_bounds__(128) conv2d_nhwc_f16_mma(const f16* __restrict__ x, const f16* __restrict__ wt,
                                                                      const float* __restrict__ bias, const f16* __restrict__ residual,
                                                                      f16* __restrict__ y, int n, int h, int w, int cin, int oh,
                                                                      int ow, int cout, int kh, int kw, int sy, int sx, int pt,
                                                                      int pl, int dy, int dx, int act, float alpha, float beta) {
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    const int group = lane / 4, t = lane % 4;
    const long long m_total = (long long)n * oh * ow;
    const long long m0 = (long long)blockIdx.x * 64 + warp * 16;
    const int n0 = blockIdx.y * 32;
    const int k_total = kh * kw * cin;

    // The two pixel rows this lane's A fragment covers: (image, iy0, ix0) of each, or invalid.
    int pb[2], py[2], px[2];
    bool pvalid[2];
    for (int r = 0; r < 2; ++r) {
        long long m = m0 + group + 8 * r;
        pvalid[r] = m < m_total;
        long long q = pvalid[r] ? m : 0;
        int ox = (int)(q % ow);
        q /= ow;
        int oy = (int)(q % oh);
        pb[r] = (int)(q / oh);
        py[r] = oy * sy - pt;
        px[r] = ox * sx - pl;
    }

    float acc[4][4];
    for (int j = 0; j < 4; ++j)
        for (int e = 0; e < 4; ++e) acc[j][e] = 0.0f;

    for (int k0 = 0; k0 < k_total; k0 += 16) {
        const int tap = k0 / cin, ci0 = k0 % cin;
        const int ky = tap / kw, kx = tap % kw;
        // A: rows group and group + 8, columns 2t, 2t + 1 and 2t + 8, 2t + 9 of this K step.
        unsigned int a[4];
        for (int r = 0; r < 2; ++r) {
            int iy = py[r] + ky * dy, ix = px[r] + kx * dx;
            bool in = pvalid[r] && iy >= 0 && iy < h && ix >= 0 && ix < w;
            const f16* row = x + (((long long)pb[r] * h + (in ? iy : 0)) * w + (in ? ix : 0)) * cin + ci0;
            a[r] = in ? load_pair(row + 2 * t) : 0u;
            a[r + 2] = in ? load_pair(row + 2 * t + 8) : 0u;
        }
        for (int j = 0; j < 4; ++j) {
            const int co = n0 + j * 8 + group;
            if (n0 + j * 8 >= cout) break;
            // B: column co, rows (k) 2t, 2t + 1 and 2t + 8, 2t + 9 of this K step.
            const f16* wrow = wt + (long long)co * k_total + k0;
            unsigned int b0 = load_pair(wrow + 2 * t), b1 = load_pair(wrow + 2 * t + 8);
            asm volatile("mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, {%8,%9}, {%0,%1,%2,%3};"
                         : "+f"(acc[j][0]), "+f"(acc[j][1]), "+f"(acc[j][2]), "+f"(acc[j][3])
                         : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
        }
    }

    // C: rows group (acc 0, 1) and group + 8 (acc 2, 3), columns 2t and 2t + 1 of each n-tile.
    for (int j = 0; j < 4; ++j) {
        if (n0 + j * 8 >= cout) break;
        for (int r = 0; r < 2; ++r) {
            if (!pvalid[r]) continue;
            const long long m = m0 + group + 8 * r;
            for (int e = 0; e < 2; ++e) {
                const int co = n0 + j * 8 + 2 * t + e;
                float v = acc[j][2 * r + e];
                if (bias) v += bias[co];
                if (residual) v += from_f16(residual[m * cout + co]);
                y[m * cout + co] = to_f16(activate(v, act, alpha, beta));
            }
        }
    }
}
