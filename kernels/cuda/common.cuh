// Shared device helpers for the kernels in this folder: warp and block reductions.
// Every block size used with them is a multiple of 32 and at most 1024.
#pragma once
#include <math.h>

#define FULL_MASK 0xffffffffu

// A reduction is an operation and its identity: the value a thread that holds nothing contributes.
struct SumOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return a + b; }
    __device__ __forceinline__ static float identity() { return 0.0f; }
};
struct MaxOp {
    __device__ __forceinline__ float operator()(float a, float b) const { return fmaxf(a, b); }
    __device__ __forceinline__ static float identity() { return -INFINITY; }
};

template <typename Op>
__device__ __forceinline__ float warp_reduce(float v) {
    for (int o = 16; o > 0; o >>= 1) v = Op()(v, __shfl_xor_sync(FULL_MASK, v, o));
    return v;
}

// The reduction over the block; `shared` holds at least 32 floats. Every thread gets the result.
template <typename Op>
__device__ __forceinline__ float block_reduce(float v, float* shared) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_reduce<Op>(v);
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = (threadIdx.x < nwarps) ? shared[threadIdx.x] : Op::identity();
    if (warp == 0) v = warp_reduce<Op>(v);
    if (threadIdx.x == 0) shared[0] = v;
    __syncthreads();
    v = shared[0];
    __syncthreads();  // `shared` may be reused by the caller's next reduction
    return v;
}

__device__ __forceinline__ float warp_sum(float v) { return warp_reduce<SumOp>(v); }
__device__ __forceinline__ float warp_max(float v) { return warp_reduce<MaxOp>(v); }
__device__ __forceinline__ float block_sum(float v, float* shared) { return block_reduce<SumOp>(v, shared); }
__device__ __forceinline__ float block_max(float v, float* shared) { return block_reduce<MaxOp>(v, shared); }

// Online softmax state (running max m, sum s of exp(x - m)) and its merge; -inf maxima stay exact.
struct MaxSum {
    float m, s;
};

__device__ __forceinline__ MaxSum maxsum_merge(MaxSum a, MaxSum b) {
    const float m = fmaxf(a.m, b.m);
    if (m == -INFINITY) return {m, 0.0f};
    return {m, a.s * expf(a.m - m) + b.s * expf(b.m - m)};
}

__device__ __forceinline__ MaxSum maxsum_add(MaxSum a, float x) {
    if (x == -INFINITY) return a;
    if (x > a.m) return {x, a.s * expf(a.m - x) + 1.0f};  // a.m = -inf gives a.s * 0 = 0
    return {a.m, a.s + expf(x - a.m)};
}

__device__ __forceinline__ MaxSum warp_maxsum(MaxSum v) {
    for (int o = 16; o > 0; o >>= 1) {
        MaxSum other{__shfl_xor_sync(FULL_MASK, v.m, o), __shfl_xor_sync(FULL_MASK, v.s, o)};
        v = maxsum_merge(v, other);
    }
    return v;
}

__device__ __forceinline__ MaxSum block_maxsum(MaxSum v, float* shared_m, float* shared_s) {
    const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5, nwarps = blockDim.x >> 5;
    v = warp_maxsum(v);
    if (lane == 0) {
        shared_m[warp] = v.m;
        shared_s[warp] = v.s;
    }
    __syncthreads();
    v = (threadIdx.x < nwarps) ? MaxSum{shared_m[threadIdx.x], shared_s[threadIdx.x]} : MaxSum{-INFINITY, 0.0f};
    if (warp == 0) v = warp_maxsum(v);
    if (threadIdx.x == 0) {
        shared_m[0] = v.m;
        shared_s[0] = v.s;
    }
    __syncthreads();
    v = {shared_m[0], shared_s[0]};
    __syncthreads();
    return v;
}
