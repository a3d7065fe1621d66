// Layer norm over the rows of a contiguous (N, C) float32 matrix.
// Versions:
//   layernorm_forward   one block per row: the mean, then the variance of (x - mean) (two passes: the
//                       one-pass E[x^2] - E[x]^2 cancels badly when |mean| >> std), block reductions by
//                       warp shuffles; writes out and the per-row mean and rstd for the backward.
//   layernorm_backward_dx  one block per row: with xhat = (x - mean) rstd and g = dout * weight,
//                       dx = rstd (g - mean(g) - xhat mean(g xhat)).
//   layernorm_backward_dwdb  dweight = sum_rows dout * xhat, dbias = sum_rows dout, without atomics: a block
//                       owns 32 columns, its 32 x 8 threads walk the rows 8 at a time (each warp reads 32
//                       consecutive floats of a row: coalesced), keep partial sums in registers and combine
//                       the 8 partials per column in shared memory. No two blocks write the same column.
// weight and bias may be null (no affine part); has_weight / has_bias say which.
#include "common.cuh"

extern "C" __global__ void layernorm_forward(const float* __restrict__ x, const float* __restrict__ weight,
                                             const float* __restrict__ bias, float* __restrict__ out,
                                             float* __restrict__ mean_out, float* __restrict__ rstd_out,
                                             int N, int C, float eps) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * C;
    float s = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) s += x[off + i];
    const float mean = block_sum(s, sh) / C;
    float v = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float d = x[off + i] - mean;
        v += d * d;
    }
    const float rstd = rsqrtf(block_sum(v, sh) / C + eps);  // biased variance, as PyTorch
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        float y = (x[off + i] - mean) * rstd;
        if (weight != nullptr) y *= weight[i];
        if (bias != nullptr) y += bias[i];
        out[off + i] = y;
    }
    if (threadIdx.x == 0) {
        mean_out[blockIdx.x] = mean;
        rstd_out[blockIdx.x] = rstd;
    }
}

extern "C" __global__ void layernorm_backward_dx(const float* __restrict__ dout, const float* __restrict__ x,
                                                 const float* __restrict__ weight, const float* __restrict__ mean,
                                                 const float* __restrict__ rstd, float* __restrict__ dx, int N,
                                                 int C) {
    __shared__ float sh[32];
    const size_t off = (size_t)blockIdx.x * C;
    const float mu = mean[blockIdx.x], rs = rstd[blockIdx.x];
    float sg = 0.0f, sgx = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float g = weight != nullptr ? dout[off + i] * weight[i] : dout[off + i];
        sg += g;
        sgx += g * (x[off + i] - mu) * rs;
    }
    const float mean_g = block_sum(sg, sh) / C;
    const float mean_gx = block_sum(sgx, sh) / C;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float g = weight != nullptr ? dout[off + i] * weight[i] : dout[off + i];
        const float xhat = (x[off + i] - mu) * rs;
        dx[off + i] = rs * (g - mean_g - xhat * mean_gx);
    }
}

// launch: grid (ceil(C / 32)), block (32, 8)
extern "C" __global__ void layernorm_backward_dwdb(const float* __restrict__ dout, const float* __restrict__ x,
                                                   const float* __restrict__ mean, const float* __restrict__ rstd,
                                                   float* __restrict__ dweight, float* __restrict__ dbias, int N,
                                                   int C) {
    __shared__ float sw[8][33], sb[8][33];  // +1 column: no bank conflicts when reading down a column
    const int col = blockIdx.x * 32 + threadIdx.x;
    float pw = 0.0f, pb = 0.0f;
    if (col < C) {
        for (int r = threadIdx.y; r < N; r += 8) {
            const float d = dout[(size_t)r * C + col];
            pw += d * (x[(size_t)r * C + col] - mean[r]) * rstd[r];
            pb += d;
        }
    }
    sw[threadIdx.y][threadIdx.x] = pw;
    sb[threadIdx.y][threadIdx.x] = pb;
    __syncthreads();
    if (threadIdx.y == 0 && col < C) {
        float tw = 0.0f, tb = 0.0f;
        for (int j = 0; j < 8; ++j) {
            tw += sw[j][threadIdx.x];
            tb += sb[j][threadIdx.x];
        }
        dweight[col] = tw;
        dbias[col] = tb;
    }
}
