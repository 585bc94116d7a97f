// Pooling over NHWC f16 with f32 arithmetic, the CPU pooling's semantics (kestrel::cpu::pool):
// padding never wins a max (a window with no valid tap gives -inf) and counts in an average only
// with count_include_pad. One thread per output element (channels innermost: coalesced).
#include "common.cuh"

extern "C" __global__ void pool2d_nhwc_f16(const f16* __restrict__ x, f16* __restrict__ y, int n, int c, int h, int w, int oh, int ow,
                                           int kh, int kw, int sy, int sx, int pt, int pl, int pb, int pr, int dy, int dx,
                                           int is_max, int count_include_pad) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * oh * ow * c;
    if (i >= total) return;
    int b, oy, ox, ch;
    split_nhwc(i, oh, ow, c, b, oy, ox, ch);
    float acc = is_max ? -__int_as_float(0x7f800000) : 0.0f;
    int valid = 0, padded = 0;
    for (int ky = 0; ky < kh; ++ky) {
        int iy = oy * sy - pt + ky * dy;
        for (int kx = 0; kx < kw; ++kx) {
            int ix = ox * sx - pl + kx * dx;
            if (iy < h + pb && ix < w + pr) ++padded;
            if (iy < 0 || ix < 0 || iy >= h || ix >= w) continue;
            float v = from_f16(x[(((long long)b * h + iy) * w + ix) * c + ch]);
            acc = is_max ? fmaxf(acc, v) : acc + v;
            ++valid;
        }
    }
    if (!is_max) {
        int div = count_include_pad ? padded : valid;
        acc = div == 0 ? 0.0f : acc / (float)div;
    }
    y[i] = to_f16(acc);
}

// Global average over H·W of NHWC f16 into [N, C] f32 (the classifier head reads f32): one
// block per image, threads across channels, each summing its channel in f32.
extern "C" __global__ void global_avg_pool_nhwc_f16(const f16* __restrict__ x, float* __restrict__ y, int n, int c, int hw) {
    int b = blockIdx.x;
    for (int ch = threadIdx.x; ch < c; ch += blockDim.x) {
        float s = 0.0f;
        for (int p = 0; p < hw; ++p) s += from_f16(x[((long long)b * hw + p) * c + ch]);
        y[(long long)b * c + ch] = s / (float)hw;
    }
}
