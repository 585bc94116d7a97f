// Shared helpers of kestrel's CUDA kernels. No toolkit header is included: the kernels compile
// with libnvrtc alone (the pip wheel), so half precision is stored as `unsigned short` and
// converted with inline PTX (round to nearest even), as `cuda_fp16.h` would.
#pragma once

typedef unsigned short f16;

__device__ __forceinline__ f16 to_f16(float x) {
    f16 h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(x));
    return h;
}

__device__ __forceinline__ float from_f16(f16 h) {
    float x;
    asm("cvt.f32.f16 %0, %1;" : "=f"(x) : "h"(h));
    return x;
}

// The coordinates of flat index i of an NHWC tensor [*, h, w, c]: image b, row y, column x,
// channel ch (one thread per element is how every elementwise-shaped kernel here indexes).
__device__ __forceinline__ void split_nhwc(long long i, int h, int w, int c, int& b, int& y, int& x, int& ch) {
    ch = (int)(i % c);
    long long p = i / c;
    x = (int)(p % w);
    p /= w;
    y = (int)(p % h);
    b = (int)(p / h);
}

// The same for an NCHW tensor [*, c, h, w].
__device__ __forceinline__ void split_nchw(long long i, int c, int h, int w, int& b, int& ch, int& y, int& x) {
    x = (int)(i % w);
    long long p = i / w;
    y = (int)(p % h);
    p /= h;
    ch = (int)(p % c);
    b = (int)(p / c);
}

// Epilogue activations, as kestrel's CPU `Activation` (0 none, 1 relu, 2 leaky relu(alpha),
// 3 sigmoid, 4 clip(alpha, beta)).
__device__ __forceinline__ float activate(float y, int act, float alpha, float beta) {
    switch (act) {
    case 1: return fmaxf(y, 0.0f);
    case 2: return y < 0.0f ? y * alpha : y;
    case 3: return 1.0f / (1.0f + __expf(-y));
    case 4: return fminf(fmaxf(y, alpha), beta);
    default: return y;
    }
}
