// Softmax over the rows of a contiguous (N, C) float32 matrix, and its backward; one block per row.
// Versions, in order of sophistication (benchmarks/gpu.py times all of them):
//   softmax_v1  shared-memory tree reductions for the max and the sum; three passes over the row.
//   softmax_v2  warp-shuffle reductions (one shared slot per warp instead of a log2(blockDim) tree of
//               __syncthreads), still three passes.
//   softmax_v3  online softmax: each thread keeps a running (max, sum of exp(x - max)) pair, rescaling the
//               sum when the max grows, merged across the block with shuffles: the max and the sum in one
//               pass over x, then one pass that writes y. Two reads of x instead of three. Production.
//   softmax_backward  dx = y * (dy - sum(dy * y)), warp-shuffle reduction.
// A row that is all -inf gives NaN, as the NumPy reference does.
#include "common.cuh"

extern "C" __global__ void softmax_v1(const float* __restrict__ x, float* __restrict__ y, int N, int C) {
    extern __shared__ float sh[];  // blockDim.x floats; blockDim.x is a power of two
    const float* xr = x + (size_t)blockIdx.x * C;
    float* yr = y + (size_t)blockIdx.x * C;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, xr[i]);
    sh[threadIdx.x] = m;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] = fmaxf(sh[threadIdx.x], sh[threadIdx.x + s]);
        __syncthreads();
    }
    m = sh[0];
    __syncthreads();
    float sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) sum += expf(xr[i] - m);  // max subtracted: no overflow
    sh[threadIdx.x] = sum;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) sh[threadIdx.x] += sh[threadIdx.x + s];
        __syncthreads();
    }
    const float inv = 1.0f / sh[0];
    for (int i = threadIdx.x; i < C; i += blockDim.x) yr[i] = expf(xr[i] - m) * inv;
}

extern "C" __global__ void softmax_v2(const float* __restrict__ x, float* __restrict__ y, int N, int C) {
    __shared__ float sh[32];
    const float* xr = x + (size_t)blockIdx.x * C;
    float* yr = y + (size_t)blockIdx.x * C;
    float m = -INFINITY;
    for (int i = threadIdx.x; i < C; i += blockDim.x) m = fmaxf(m, xr[i]);
    m = block_max(m, sh);
    float sum = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) sum += expf(xr[i] - m);
    const float inv = 1.0f / block_sum(sum, sh);
    for (int i = threadIdx.x; i < C; i += blockDim.x) yr[i] = expf(xr[i] - m) * inv;
}

extern "C" __global__ void softmax_v3(const float* __restrict__ x, float* __restrict__ y, int N, int C) {
    __shared__ float sm[32], ss[32];
    const float* xr = x + (size_t)blockIdx.x * C;
    float* yr = y + (size_t)blockIdx.x * C;
    MaxSum st{-INFINITY, 0.0f};
    for (int i = threadIdx.x; i < C; i += blockDim.x) st = maxsum_add(st, xr[i]);
    st = block_maxsum(st, sm, ss);
    const float inv = 1.0f / st.s;
    for (int i = threadIdx.x; i < C; i += blockDim.x) yr[i] = expf(xr[i] - st.m) * inv;
}

extern "C" __global__ void softmax_backward(const float* __restrict__ dy, const float* __restrict__ y,
                                            float* __restrict__ dx, int N, int C) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * C;
    float dot = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) dot += dy[off + i] * y[off + i];
    dot = block_sum(dot, sh);
    for (int i = threadIdx.x; i < C; i += blockDim.x) dx[off + i] = y[off + i] * (dy[off + i] - dot);
}
