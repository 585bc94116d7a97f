// Layout conversion at the graph's edges: NCHW f32 (what callers hand kestrel) to NHWC f16
// (what the tensor-core kernels read), and back. One thread per element; reads of the NCHW side
// are coalesced along W, writes of the NHWC side along C.
#include "common.cuh"

extern "C" __global__ void nchw_f32_to_nhwc_f16(const float* __restrict__ x, f16* __restrict__ y, int n, int c, int h, int w) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * c * h * w;
    if (i >= total) return;
    int b, iy, ix, ch;
    split_nhwc(i, h, w, c, b, iy, ix, ch);  // i indexes the NHWC output
    y[i] = to_f16(x[(((long long)b * c + ch) * h + iy) * w + ix]);
}

extern "C" __global__ void nhwc_f16_to_nchw_f32(const f16* __restrict__ x, float* __restrict__ y, int n, int c, int h, int w) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * c * h * w;
    if (i >= total) return;
    int b, ch, iy, ix;
    split_nchw(i, c, h, w, b, ch, iy, ix);  // i indexes the NCHW output
    y[i] = from_f16(x[(((long long)b * h + iy) * w + ix) * c + ch]);
}
