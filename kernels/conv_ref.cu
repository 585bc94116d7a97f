// The plain "analytic" FP32 convolution (as CUTLASS keeps one): NCHW f32 input, [Cout, Cin/g,
// kh, kw] f32 weights, one thread per output element, taps in (ci, ky, kx) order, then bias,
// residual and the activation. The reference the tensor-core kernels are checked against on a
// GPU; never fast.
#include "common.cuh"

extern "C" __global__ void conv2d_ref_f32(const float* __restrict__ x, const float* __restrict__ wt, const float* __restrict__ bias,
                                          const float* __restrict__ residual, float* __restrict__ y,
                                          int n, int cin, int h, int w, int cout, int oh, int ow, int kh, int kw,
                                          int sy, int sx, int pt, int pl, int dy, int dx, int groups,
                                          int act, float alpha, float beta) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * cout * oh * ow;
    if (i >= total) return;
    int b, co, oy, ox;
    split_nchw(i, cout, oh, ow, b, co, oy, ox);
    int cin_g = cin / groups, cout_g = cout / groups, g = co / cout_g;
    float acc = 0.0f;
    for (int ci = 0; ci < cin_g; ++ci) {
        for (int ky = 0; ky < kh; ++ky) {
            int iy = oy * sy - pt + ky * dy;
            if (iy < 0 || iy >= h) continue;
            for (int kx = 0; kx < kw; ++kx) {
                int ix = ox * sx - pl + kx * dx;
                if (ix < 0 || ix >= w) continue;
                acc = fmaf(x[(((long long)b * cin + g * cin_g + ci) * h + iy) * w + ix], wt[(((long long)co * cin_g + ci) * kh + ky) * kw + kx], acc);
            }
        }
    }
    if (bias) acc += bias[co];
    if (residual) acc += residual[i];
    y[i] = activate(acc, act, alpha, beta);
}
