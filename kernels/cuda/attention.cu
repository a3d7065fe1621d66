// Fused scaled dot-product attention, FlashAttention style: the (L, S) score matrix is never stored; the
// softmax is computed online over tiles of keys, and the backward recomputes p from the saved per-row
// log-sum-exp. Extra memory is O(L) per head (lse and D), not O(L S).
// Shapes (contiguous float32): q (BH, L, D), k and v (BH, S, D), out (BH, L, D), lse (BH, L); mask: null or
// additive (Bm, Lm, S) with Bm in {1, BH} and Lm in {1, L} (-inf blocks a key); causal: query i sees keys
// j <= i. A query that sees no key gets out = 0 and lse = -inf, as the NumPy reference.
// Versions (one per head size D in {16, 32, 64, 128}, as template instances flash_*_d<D>):
//   flash_fwd_d*    grid (ceil(L / BR), BH), one thread per query row: the block's queries sit in shared
//                   memory, tiles of BC keys and values are staged in shared memory and read by every
//                   thread at once (broadcast); per tile the running max, sum and rescaled output
//                   accumulator are updated (online softmax). Causal tiles above the diagonal are skipped.
//   flash_bwd_prep  D_i = sum_d dout[i, d] out[i, d], one warp per row.
//   flash_bwd_dkdv_d*  grid (ceil(S / BC), BH), one thread per key row, accumulating dk and dv in
//                   registers over tiles of queries: p = exp(s - lse), dv += p dout_i, ds = p (dout_i . v_j - D_i),
//                   dk += scale ds q_i.
//   flash_bwd_dq_d*  grid (ceil(L / BR), BH), one thread per query row: dq += scale ds k_j over tiles of keys.
//                   Two kernels instead of atomics on dq: every output element has one writer.
#include "common.cuh"

__device__ __forceinline__ float mask_at(const float* mask, int Bm, int Lm, int S, int bh, int i, int j) {
    return mask == nullptr ? 0.0f : mask[((size_t)(Bm > 1 ? bh : 0) * Lm + (Lm > 1 ? i : 0)) * S + j];
}

template <int D, int BR, int BC>
__device__ void flash_fwd(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                          const float* __restrict__ mask, float* __restrict__ out, float* __restrict__ lse, int L,
                          int S, int Bm, int Lm, float scale, int causal) {
    __shared__ float Qs[BR][D + 1];  // +1: threads reading down a column hit different banks
    __shared__ float Ks[BC][D], Vs[BC][D];
    const int bh = blockIdx.y, i0 = blockIdx.x * BR, t = threadIdx.x, i = i0 + t;
    const float* qb = q + (size_t)bh * L * D;
    const float* kb = k + (size_t)bh * S * D;
    const float* vb = v + (size_t)bh * S * D;
    for (int e = t; e < BR * D; e += BR) {
        const int r = e / D, d = e % D;
        Qs[r][d] = (i0 + r < L) ? qb[(size_t)(i0 + r) * D + d] : 0.0f;
    }
    float o[D];
    for (int d = 0; d < D; ++d) o[d] = 0.0f;
    float m = -INFINITY, l = 0.0f;
    const int last_row = min(i0 + BR, L) - 1;
    const int s_end = causal ? min(S, last_row + 1) : S;  // causal: no key beyond the block's last query
    for (int j0 = 0; j0 < s_end; j0 += BC) {
        __syncthreads();  // the previous tile is no longer read
        for (int e = t; e < BC * D; e += BR) {
            const int c = e / D, d = e % D;
            const bool in = j0 + c < S;
            Ks[c][d] = in ? kb[(size_t)(j0 + c) * D + d] : 0.0f;
            Vs[c][d] = in ? vb[(size_t)(j0 + c) * D + d] : 0.0f;
        }
        __syncthreads();
        if (i >= L) continue;
        float s[BC];
        float tile_max = -INFINITY;
        for (int c = 0; c < BC; ++c) {
            const int j = j0 + c;
            float x = -INFINITY;
            if (j < S && !(causal && j > i)) {
                float acc = 0.0f;
                for (int d = 0; d < D; ++d) acc += Qs[t][d] * Ks[c][d];
                x = acc * scale + mask_at(mask, Bm, Lm, S, bh, i, j);
            }
            s[c] = x;
            tile_max = fmaxf(tile_max, x);
        }
        const float m_new = fmaxf(m, tile_max);
        if (m_new == -INFINITY) continue;  // every key so far blocked
        const float corr = expf(m - m_new);  // m = -inf: 0, and l, o are still 0
        l *= corr;
        for (int d = 0; d < D; ++d) o[d] *= corr;
        for (int c = 0; c < BC; ++c) {
            const float p = expf(s[c] - m_new);  // exp(-inf) = 0 for a blocked key
            l += p;
            for (int d = 0; d < D; ++d) o[d] += p * Vs[c][d];
        }
        m = m_new;
    }
    if (i < L) {
        const float inv = l > 0.0f ? 1.0f / l : 0.0f;
        float* ob = out + ((size_t)bh * L + i) * D;
        for (int d = 0; d < D; ++d) ob[d] = o[d] * inv;
        lse[(size_t)bh * L + i] = l > 0.0f ? m + logf(l) : -INFINITY;
    }
}

// D_i = rowsum(dout * out): one warp per row of (rows, D)
extern "C" __global__ void flash_bwd_prep(const float* __restrict__ dout, const float* __restrict__ out,
                                          float* __restrict__ Dvec, long long rows, int D) {
    const long long row = blockIdx.x * (long long)(blockDim.x / 32) + threadIdx.x / 32;
    if (row >= rows) return;
    const int lane = threadIdx.x & 31;
    float acc = 0.0f;
    for (int d = lane; d < D; d += 32) acc += dout[row * D + d] * out[row * D + d];
    acc = warp_sum(acc);
    if (lane == 0) Dvec[row] = acc;
}

template <int D, int BR, int BC>
__device__ void flash_bwd_dkdv(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                               const float* __restrict__ mask, const float* __restrict__ dout,
                               const float* __restrict__ lse, const float* __restrict__ Dvec, float* __restrict__ dk,
                               float* __restrict__ dv, int L, int S, int Bm, int Lm, float scale, int causal) {
    __shared__ float Ks[BC][D + 1], Vs[BC][D + 1];
    __shared__ float Qs[BR][D], dOs[BR][D], ls[BR], Ds[BR];
    const int bh = blockIdx.y, j0 = blockIdx.x * BC, t = threadIdx.x, j = j0 + t;
    const float* qb = q + (size_t)bh * L * D;
    const float* dob = dout + (size_t)bh * L * D;
    for (int e = t; e < BC * D; e += BC) {
        const int c = e / D, d = e % D;
        const bool in = j0 + c < S;
        Ks[c][d] = in ? k[((size_t)bh * S + j0 + c) * D + d] : 0.0f;
        Vs[c][d] = in ? v[((size_t)bh * S + j0 + c) * D + d] : 0.0f;
    }
    float dkr[D], dvr[D];
    for (int d = 0; d < D; ++d) dkr[d] = dvr[d] = 0.0f;
    const int i_start = causal ? (j0 / BR) * BR : 0;  // causal: queries before the block's first key see none of it
    for (int r0 = i_start; r0 < L; r0 += BR) {
        __syncthreads();
        for (int e = t; e < BR * D; e += BC) {
            const int r = e / D, d = e % D;
            const bool in = r0 + r < L;
            Qs[r][d] = in ? qb[(size_t)(r0 + r) * D + d] : 0.0f;
            dOs[r][d] = in ? dob[(size_t)(r0 + r) * D + d] : 0.0f;
        }
        for (int r = t; r < BR; r += BC) {
            const bool in = r0 + r < L;
            ls[r] = in ? lse[(size_t)bh * L + r0 + r] : -INFINITY;
            Ds[r] = in ? Dvec[(size_t)bh * L + r0 + r] : 0.0f;
        }
        __syncthreads();
        if (j >= S) continue;
        for (int r = 0; r < BR; ++r) {
            const int i = r0 + r;
            if (i >= L || ls[r] == -INFINITY || (causal && j > i)) continue;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; ++d) {
                s += Qs[r][d] * Ks[t][d];
                dp += dOs[r][d] * Vs[t][d];
            }
            const float p = expf(s * scale + mask_at(mask, Bm, Lm, S, bh, i, j) - ls[r]);
            const float ds = p * (dp - Ds[r]) * scale;
            for (int d = 0; d < D; ++d) {
                dvr[d] += p * dOs[r][d];
                dkr[d] += ds * Qs[r][d];
            }
        }
    }
    if (j < S) {
        for (int d = 0; d < D; ++d) {
            dk[((size_t)bh * S + j) * D + d] = dkr[d];
            dv[((size_t)bh * S + j) * D + d] = dvr[d];
        }
    }
}

template <int D, int BR, int BC>
__device__ void flash_bwd_dq(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                             const float* __restrict__ mask, const float* __restrict__ dout,
                             const float* __restrict__ lse, const float* __restrict__ Dvec, float* __restrict__ dq,
                             int L, int S, int Bm, int Lm, float scale, int causal) {
    __shared__ float Qs[BR][D + 1], dOs[BR][D + 1];
    __shared__ float Ks[BC][D], Vs[BC][D];
    const int bh = blockIdx.y, i0 = blockIdx.x * BR, t = threadIdx.x, i = i0 + t;
    for (int e = t; e < BR * D; e += BR) {
        const int r = e / D, d = e % D;
        const bool in = i0 + r < L;
        Qs[r][d] = in ? q[((size_t)bh * L + i0 + r) * D + d] : 0.0f;
        dOs[r][d] = in ? dout[((size_t)bh * L + i0 + r) * D + d] : 0.0f;
    }
    const float li = i < L ? lse[(size_t)bh * L + i] : -INFINITY;
    const float Di = i < L ? Dvec[(size_t)bh * L + i] : 0.0f;
    float dqr[D];
    for (int d = 0; d < D; ++d) dqr[d] = 0.0f;
    const int last_row = min(i0 + BR, L) - 1;
    const int s_end = causal ? min(S, last_row + 1) : S;
    for (int j0 = 0; j0 < s_end; j0 += BC) {
        __syncthreads();
        for (int e = t; e < BC * D; e += BR) {
            const int c = e / D, d = e % D;
            const bool in = j0 + c < S;
            Ks[c][d] = in ? k[((size_t)bh * S + j0 + c) * D + d] : 0.0f;
            Vs[c][d] = in ? v[((size_t)bh * S + j0 + c) * D + d] : 0.0f;
        }
        __syncthreads();
        if (i >= L || li == -INFINITY) continue;
        for (int c = 0; c < BC; ++c) {
            const int j = j0 + c;
            if (j >= S || (causal && j > i)) continue;
            float s = 0.0f, dp = 0.0f;
            for (int d = 0; d < D; ++d) {
                s += Qs[t][d] * Ks[c][d];
                dp += dOs[t][d] * Vs[c][d];
            }
            const float p = expf(s * scale + mask_at(mask, Bm, Lm, S, bh, i, j) - li);
            const float ds = p * (dp - Di) * scale;
            for (int d = 0; d < D; ++d) dqr[d] += ds * Ks[c][d];
        }
    }
    if (i < L)
        for (int d = 0; d < D; ++d) dq[((size_t)bh * L + i) * D + d] = dqr[d];
}

// Tile sizes per head size: static shared memory stays under 48 KB.
#define FLASH_KERNELS(DD, FBR, FBC, KBR, KBC, QBR, QBC)                                                          \
    extern "C" __global__ void __launch_bounds__(FBR) flash_fwd_d##DD(                                           \
        const float* q, const float* k, const float* v, const float* mask, float* out, float* lse, int L, int S,  \
        int Bm, int Lm, float scale, int causal) {                                                               \
        flash_fwd<DD, FBR, FBC>(q, k, v, mask, out, lse, L, S, Bm, Lm, scale, causal);                            \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(KBC) flash_bwd_dkdv_d##DD(                                      \
        const float* q, const float* k, const float* v, const float* mask, const float* dout, const float* lse,  \
        const float* Dvec, float* dk, float* dv, int L, int S, int Bm, int Lm, float scale, int causal) {         \
        flash_bwd_dkdv<DD, KBR, KBC>(q, k, v, mask, dout, lse, Dvec, dk, dv, L, S, Bm, Lm, scale, causal);       \
    }                                                                                                            \
    extern "C" __global__ void __launch_bounds__(QBR) flash_bwd_dq_d##DD(                                        \
        const float* q, const float* k, const float* v, const float* mask, const float* dout, const float* lse,  \
        const float* Dvec, float* dq, int L, int S, int Bm, int Lm, float scale, int causal) {                   \
        flash_bwd_dq<DD, QBR, QBC>(q, k, v, mask, dout, lse, Dvec, dq, L, S, Bm, Lm, scale, causal);             \
    }

//            D   fwd BR, BC   dkdv BR, BC   dq BR, BC
FLASH_KERNELS(16, 64, 64, 32, 64, 64, 64)
FLASH_KERNELS(32, 64, 64, 32, 64, 64, 32)
FLASH_KERNELS(64, 64, 32, 16, 64, 64, 16)
FLASH_KERNELS(128, 32, 16, 8, 32, 32, 8)
