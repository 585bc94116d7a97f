// The general FP16 convolution: NHWC f16 input, [Cout][kh][kw][Cin/g] (KRSC) f16 weights, NHWC
// f16 output, f32 accumulation, then bias, residual (NHWC f16, or null) and the activation —
// the path for shapes the tensor-core kernel's alignment rules exclude (channels not a
// multiple of 8, the 3-channel stem). One thread per output element, channels innermost, so
// neighbouring threads write neighbouring channels of one pixel.
#include "common.cuh"

extern "C" __global__ void conv2d_nhwc_f16_direct(const f16* __restrict__ x, const f16* __restrict__ wt, const float* __restrict__ bias,
                                                  const f16* __restrict__ residual, f16* __restrict__ y,
                                                  int n, int h, int w, int cin, int oh, int ow, int cout, int kh, int kw,
                                                  int sy, int sx, int pt, int pl, int dy, int dx, int groups,
                                                  int act, float alpha, float beta) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * oh * ow * cout;
    if (i >= total) return;
    int b, oy, ox, co;
    split_nhwc(i, oh, ow, cout, b, oy, ox, co);
    int cin_g = cin / groups, cout_g = cout / groups, g = co / cout_g;
    float acc = 0.0f;
    for (int ky = 0; ky < kh; ++ky) {
        int iy = oy * sy - pt + ky * dy;
        if (iy < 0 || iy >= h) continue;
        for (int kx = 0; kx < kw; ++kx) {
            int ix = ox * sx - pl + kx * dx;
            if (ix < 0 || ix >= w) continue;
            const f16* xp = x + (((long long)b * h + iy) * w + ix) * cin + g * cin_g;
            const f16* wp = wt + (((long long)co * kh + ky) * kw + kx) * cin_g;
            for (int ci = 0; ci < cin_g; ++ci) acc = fmaf(from_f16(xp[ci]), from_f16(wp[ci]), acc);
        }
    }
    if (bias) acc += bias[co];
    if (residual) acc += from_f16(residual[i]);
    y[i] = to_f16(activate(acc, act, alpha, beta));
}
