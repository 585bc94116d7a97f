// Layout conversion at the graph's edges: NCHW f32 (what callers hand kestrel) to NHWC f16
// (what the tensor-core kernels read), and back. One thread per element; reads of the NCHW side
// are coalesced along W, writes of the NHWC side along C.
#include "common.cuh"

extern "C" __global__ void nchw_f32_to_nhwc_f16(const float* __restrict__ x, f16* __restrict__ y, int n, int c, int h, int w) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * c * h * w;
    if (i >= total) return;
    // i indexes the NHWC output: i = ((b·H + iy)·W + ix)·C + ch.
    int ch = (int)(i % c);
    long long p = i / c;
    int ix = (int)(p % w);
    p /= w;
    int iy = (int)(p % h);
    int b = (int)(p / h);
    y[i] = to_f16(x[(((long long)b * c + ch) * h + iy) * w + ix]);
}

extern "C" __global__ void nhwc_f16_to_nchw_f32(const f16* __restrict__ x, float* __restrict__ y, int n, int c, int h, int w) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * c * h * w;
    if (i >= total) return;
    // i indexes the NCHW output.
    int ix = (int)(i % w);
    long long p = i / w;
    int iy = (int)(p % h);
    p /= h;
    int ch = (int)(p % c);
    int b = (int)(p / c);
    y[i] = from_f16(x[(((long long)b * h + iy) * w + ix) * c + ch]);
}
