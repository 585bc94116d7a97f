// Resize of NHWC f16, as kestrel's CPU Resize (cpu::resize) for the modes CNNs use: nearest
// (floor, round_prefer_floor, round_prefer_ceil, ceil) and bilinear, with the coordinate
// transforms half_pixel (0), align_corners (1), asymmetric (2) and pytorch_half_pixel (3).
// One thread per output element; f32 arithmetic.
#include "common.cuh"

__device__ __forceinline__ float source_coord(int o, int in, int out, int coord) {
    float scale = (float)out / (float)in;
    switch (coord) {
    case 1: return out > 1 ? (float)o * (float)(in - 1) / (float)(out - 1) : 0.0f;
    case 2: return (float)o / scale;
    case 3: return out > 1 ? ((float)o + 0.5f) / scale - 0.5f : 0.0f;
    default: return ((float)o + 0.5f) / scale - 0.5f;
    }
}

__device__ __forceinline__ int nearest_index(float s, int in, int rounding) {
    float r;
    switch (rounding) {
    case 1: r = (s - floorf(s) == 0.5f) ? floorf(s) : rintf(s); break;  // round_prefer_floor
    case 2: r = (s - floorf(s) == 0.5f) ? ceilf(s) : rintf(s); break;   // round_prefer_ceil
    case 3: r = ceilf(s); break;
    default: r = floorf(s); break;
    }
    int i = (int)r;
    return i < 0 ? 0 : (i >= in ? in - 1 : i);
}

extern "C" __global__ void resize_nhwc_f16(const f16* __restrict__ x, f16* __restrict__ y, int n, int h, int w, int c, int oh, int ow,
                                           int bilinear, int coord, int rounding) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    long long total = (long long)n * oh * ow * c;
    if (i >= total) return;
    int b, oy, ox, ch;
    split_nhwc(i, oh, ow, c, b, oy, ox, ch);
    float sy = source_coord(oy, h, oh, coord), sx = source_coord(ox, w, ow, coord);
    const f16* plane = x + (long long)b * h * w * c + ch;
    float v;
    if (!bilinear) {
        int iy = nearest_index(sy, h, rounding), ix = nearest_index(sx, w, rounding);
        v = from_f16(plane[((long long)iy * w + ix) * c]);
    } else {
        sy = fminf(fmaxf(sy, 0.0f), (float)(h - 1));
        sx = fminf(fmaxf(sx, 0.0f), (float)(w - 1));
        int y0 = (int)floorf(sy), x0 = (int)floorf(sx);
        int y1 = y0 + 1 < h ? y0 + 1 : h - 1, x1 = x0 + 1 < w ? x0 + 1 : w - 1;
        float fy = sy - (float)y0, fx = sx - (float)x0;
        float a = from_f16(plane[((long long)y0 * w + x0) * c]), bb = from_f16(plane[((long long)y0 * w + x1) * c]);
        float cc = from_f16(plane[((long long)y1 * w + x0) * c]), d = from_f16(plane[((long long)y1 * w + x1) * c]);
        v = (a * (1.0f - fx) + bb * fx) * (1.0f - fy) + (cc * (1.0f - fx) + d * fx) * fy;
    }
    y[i] = to_f16(v);
}
