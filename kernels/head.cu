// The classifier head and the channel copies of Concat.
// - linear_f32: y[N, out] = x[N, in] · Wᵀ + b, f32, one warp per output value, the dot product
//   split over the warp's lanes and reduced by shuffles (the head is a GEMV at batch 1).
// - softmax_rows_f32: softmax of each row of [rows, cols], one block of exactly 256 threads per row,
//   max and sum reduced in shared memory (2 KiB), exp of (x − max).
// - copy_channels_nhwc_f16: a producer's [P, Cs] channels into channels offset..offset + Cs of
//   a [P, Cd] buffer (Concat along channels where the producer could not write in place).
#include "common.cuh"

extern "C" __global__ void linear_f32(const float* __restrict__ x, const float* __restrict__ wt, const float* __restrict__ bias,
                                      float* __restrict__ y, int n, int in, int out) {
    long long warp = ((long long)blockIdx.x * blockDim.x + threadIdx.x) / 32;
    int lane = threadIdx.x % 32;
    if (warp >= (long long)n * out) return;
    int o = (int)(warp % out), b = (int)(warp / out);
    const float* xr = x + (long long)b * in;
    const float* wr = wt + (long long)o * in;
    float s = 0.0f;
    for (int k = lane; k < in; k += 32) s = fmaf(xr[k], wr[k], s);
    for (int off = 16; off > 0; off >>= 1) s += __shfl_down_sync(0xffffffffu, s, off);
    if (lane == 0) y[warp] = s + (bias ? bias[o] : 0.0f);
}

extern "C" __global__ void softmax_rows_f32(const float* __restrict__ x, float* __restrict__ y, int rows, int cols) {
    __shared__ float red[256];
    __shared__ float stat[2];
    int r = blockIdx.x;
    if (r >= rows) return;
    const float* xr = x + (long long)r * cols;
    float m = -__int_as_float(0x7f800000);
    for (int j = threadIdx.x; j < cols; j += blockDim.x) m = fmaxf(m, xr[j]);
    red[threadIdx.x] = m;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] = fmaxf(red[threadIdx.x], red[threadIdx.x + s]);
        __syncthreads();
    }
    if (threadIdx.x == 0) stat[0] = red[0];
    __syncthreads();
    float sum = 0.0f;
    for (int j = threadIdx.x; j < cols; j += blockDim.x) sum += __expf(xr[j] - stat[0]);
    red[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) red[threadIdx.x] += red[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) stat[1] = red[0];
    __syncthreads();
    for (int j = threadIdx.x; j < cols; j += blockDim.x) y[(long long)r * cols + j] = __expf(xr[j] - stat[0]) / stat[1];
}

extern "C" __global__ void copy_channels_nhwc_f16(const f16* __restrict__ src, f16* __restrict__ dst, long long pixels, int cs, int cd, int offset) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= pixels * cs) return;
    long long p = i / cs;
    int ch = (int)(i % cs);
    dst[p * cd + offset + ch] = src[i];
}
