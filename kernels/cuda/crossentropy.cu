// Fused softmax + cross-entropy over the rows of (N, C) float32 logits with int64 class targets.
// Versions:
//   cross_entropy_forward   one block per row, one online pass for the row's log-sum-exp (max and sum
//                           together, common.cuh), then per row: with label smoothing e,
//                           loss_r = (1 - e) (lse - x_t) + e (lse - mean_c x_c); rows whose target is
//                           ignore_index give 0. Writes loss_r and lse_r (the backward needs only lse).
//   cross_entropy_backward  dlogits[r, c] = g_r (softmax(x_r)_c - (1 - e) [c = t_r] - e / C), recomputing
//                           softmax from lse; 0 for ignored rows. g_r is the upstream gradient of row r
//                           (the caller divides by the count of rows for 'mean').
// Class weights are not handled here: the caller uses the reference for them.
#include "common.cuh"

extern "C" __global__ void cross_entropy_forward(const float* __restrict__ logits, const long long* __restrict__ target,
                                                 float* __restrict__ loss, float* __restrict__ lse_out, int N, int C,
                                                 long long ignore_index, float smoothing) {
    __shared__ float sm[32], ss[32], sh[32];
    const size_t off = (size_t)blockIdx.x * C;
    MaxSum st{-INFINITY, 0.0f};
    float total = 0.0f;
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        const float v = logits[off + i];
        st = maxsum_add(st, v);
        total += v;
    }
    st = block_maxsum(st, sm, ss);
    total = smoothing > 0.0f ? block_sum(total, sh) : 0.0f;
    if (threadIdx.x == 0) {
        const float lse = st.m + logf(st.s);
        const long long t = target[blockIdx.x];
        lse_out[blockIdx.x] = lse;
        if (t == ignore_index) {
            loss[blockIdx.x] = 0.0f;
        } else {
            loss[blockIdx.x] = (1.0f - smoothing) * (lse - logits[off + t]) + smoothing * (lse - total / C);
        }
    }
}

extern "C" __global__ void cross_entropy_backward(const float* __restrict__ logits, const long long* __restrict__ target,
                                                  const float* __restrict__ lse, const float* __restrict__ grad,
                                                  float* __restrict__ dlogits, int N, int C, long long ignore_index,
                                                  float smoothing) {
    const size_t off = (size_t)blockIdx.x * C;
    const long long t = target[blockIdx.x];
    const bool ignored = t == ignore_index;
    const float g = grad[blockIdx.x], l = lse[blockIdx.x];
    for (int i = threadIdx.x; i < C; i += blockDim.x) {
        if (ignored) {
            dlogits[off + i] = 0.0f;
        } else {
            const float p = expf(logits[off + i] - l);
            dlogits[off + i] = g * (p - (i == t ? 1.0f - smoothing : 0.0f) - smoothing / C);
        }
    }
}
