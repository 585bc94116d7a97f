// Transposed convolution over NHWC f16 with f32 accumulation, gathered per output element
// (no atomics): output (oy, ox) takes tap (ky, kx) from input (iy, ix) when
// oy + pt − ky·dy = iy·sy (and likewise for x). Weights [Cin][kh][kw][Cout/g] f16 (the ONNX
// [Cin, Cout/g, kh, kw] with the output channels innermost), bias f32, any stride, pad,
// dilation, output padding (in oh, ow) and groups; 2×2 stride 2 is the UNet case.
#include "common.cuh"

extern "C" __global__ void conv_transpose2d_nhwc_f16(const f16* __restrict__ x, const f16* __restrict__ wt, const float* __restrict__ bias,
                                                     f16* __restrict__ y, int n, int h, int w, int cin, int oh, int ow, int cout,
                                                     int kh, int kw, int sy, int sx, int pt, int pl, int dy, int dx, int groups) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * oh * ow * cout;
    if (i >= total) return;
    int b, oy, ox, co;
    split_nhwc(i, oh, ow, cout, b, oy, ox, co);
    int cin_g = cin / groups, cout_g = cout / groups, g = co / cout_g, cg = co % cout_g;
    float acc = bias ? bias[co] : 0.0f;
    for (int ky = 0; ky < kh; ++ky) {
        int ty = oy + pt - ky * dy;
        if (ty < 0 || ty % sy != 0) continue;
        int iy = ty / sy;
        if (iy >= h) continue;
        for (int kx = 0; kx < kw; ++kx) {
            int tx = ox + pl - kx * dx;
            if (tx < 0 || tx % sx != 0) continue;
            int ix = tx / sx;
            if (ix >= w) continue;
            const f16* xp = x + (((long long)b * h + iy) * w + ix) * cin + g * cin_g;
            for (int ci = 0; ci < cin_g; ++ci) {
                float wv = from_f16(wt[((((long long)(g * cin_g + ci)) * kh + ky) * kw + kx) * cout_g + cg]);
                acc = fmaf(from_f16(xp[ci]), wv, acc);
            }
        }
    }
    y[i] = to_f16(acc);
}
