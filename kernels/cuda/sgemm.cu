// SGEMM, C = alpha * op(A) @ op(B) + beta * C, float32, row-major, batched over blockIdx.z with element
// strides sA, sB, sC between the matrices of a batch (0 broadcasts one matrix). M x K times K x N.
// Versions, in order of sophistication (benchmarks/gpu.py times every one against cuBLAS):
//   sgemm_v1  naive: one thread per element of C, K loads of A and B each from global memory.
//   sgemm_v2  shared-memory tiling: 32 x 32 tiles of A and B staged in shared memory; each element loaded
//             from global memory is used 32 times.
//   sgemm_v3  1-D register blocking: a 64 x 64 block tile, each of 512 threads computes 8 rows of one
//             column, reusing one value of B from a register for 8 multiply-adds.
//   sgemm_v4  2-D register blocking: a 128 x 128 block tile, each of 256 threads computes an 8 x 8 patch
//             from 8 + 8 register loads per k (an outer product): 4 FMAs per shared-memory load.
//             Templated on transposition: sgemm_v4_nn / _nt / _tn (op(A) = A^T reads A stored K x M;
//             op(B) = B^T reads B stored N x K: the Linear layer's x @ W^T is _nt, its weight gradient _tn).
//   sgemm_v5  v4 with 128-bit loads: float4 from global memory, A stored transposed in shared memory so
//             the inner loop also reads it as float4 (needs K % 4 == 0 and N % 4 == 0).
//   sgemm_v6  warp tiling: each warp owns a 64 x 64 sub-tile of the 128 x 128 block tile, and each thread
//             an 8 x 16 patch inside it, so a warp's shared-memory reads fall in few banks and registers
//             hold 128 accumulators (needs K % 4 == 0 and N % 4 == 0).
//   sgemm_tf32  tensor cores (WMMA, TF32 inputs with float32 accumulation, m16n16k8): a 64 x 64 block tile,
//             4 warps of 2 x 2 fragments. TF32 keeps 10 mantissa bits: for float32 inputs when the user
//             allows reduced precision (about 1e-3 relative error).
// Production: none of these replaces cuBLAS for the library's matmuls; see docs/kernels.md.
#include <mma.h>

#define A_AT(i, k) (TA ? A[(size_t)(k) * lda + (i)] : A[(size_t)(i) * lda + (k)])
#define B_AT(k, j) (TB ? B[(size_t)(j) * ldb + (k)] : B[(size_t)(k) * ldb + (j)])

// acc += regM regN^T: the register-blocked outer product at the heart of v4, v5 and v6
template <int TM, int TN>
__device__ __forceinline__ void outer_product(float (&acc)[TM][TN], const float (&regM)[TM], const float (&regN)[TN]) {
#pragma unroll
    for (int i = 0; i < TM; ++i)
#pragma unroll
        for (int j = 0; j < TN; ++j) acc[i][j] += regM[i] * regN[j];
}

__device__ __forceinline__ void store_c(float* C, size_t idx, float acc, float alpha, float beta) {
    C[idx] = beta == 0.0f ? alpha * acc : alpha * acc + beta * C[idx];  // beta 0: C may be uninitialised
}

// ---- v1 -------------------------------------------------------------------------------------------------
extern "C" __global__ void sgemm_v1(int M, int N, int K, float alpha, const float* __restrict__ A,
                                    const float* __restrict__ B, float beta, float* __restrict__ C, long long sA,
                                    long long sB, long long sC) {
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int row = blockIdx.y * blockDim.y + threadIdx.y, col = blockIdx.x * blockDim.x + threadIdx.x;
    if (row < M && col < N) {
        float acc = 0.0f;
        for (int k = 0; k < K; ++k) acc += A[(size_t)row * K + k] * B[(size_t)k * N + col];
        store_c(C, (size_t)row * N + col, acc, alpha, beta);
    }
}

// ---- v2: launch block (32, 32) ----------------------------------------------------------------------------
extern "C" __global__ void sgemm_v2(int M, int N, int K, float alpha, const float* __restrict__ A,
                                    const float* __restrict__ B, float beta, float* __restrict__ C, long long sA,
                                    long long sB, long long sC) {
    __shared__ float As[32][32], Bs[32][32];
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int tx = threadIdx.x, ty = threadIdx.y;
    const int row = blockIdx.y * 32 + ty, col = blockIdx.x * 32 + tx;
    float acc = 0.0f;
    for (int t = 0; t < K; t += 32) {
        As[ty][tx] = (row < M && t + tx < K) ? A[(size_t)row * K + t + tx] : 0.0f;
        Bs[ty][tx] = (t + ty < K && col < N) ? B[(size_t)(t + ty) * N + col] : 0.0f;
        __syncthreads();
        for (int k = 0; k < 32; ++k) acc += As[ty][k] * Bs[k][tx];  // As[ty][k]: one address per warp (broadcast)
        __syncthreads();
    }
    if (row < M && col < N) store_c(C, (size_t)row * N + col, acc, alpha, beta);
}

// ---- v3: launch block 512, grid (ceil(N / 64), ceil(M / 64), batch) ----------------------------------------
extern "C" __global__ void sgemm_v3(int M, int N, int K, float alpha, const float* __restrict__ A,
                                    const float* __restrict__ B, float beta, float* __restrict__ C, long long sA,
                                    long long sB, long long sC) {
    constexpr int BM = 64, BN = 64, BK = 8, TM = 8;
    __shared__ float As[BM * BK], Bs[BK * BN];
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int r0 = blockIdx.y * BM, c0 = blockIdx.x * BN, tid = threadIdx.x;
    const int col = tid % BN, rowGroup = tid / BN;             // this thread: rows rowGroup*TM .. +TM of column col
    const int aRow = tid / BK, aCol = tid % BK, bRow = tid / BN, bCol = tid % BN;
    float acc[TM] = {0.0f};
    for (int k0 = 0; k0 < K; k0 += BK) {
        As[aRow * BK + aCol] = (r0 + aRow < M && k0 + aCol < K) ? A[(size_t)(r0 + aRow) * K + k0 + aCol] : 0.0f;
        Bs[bRow * BN + bCol] = (k0 + bRow < K && c0 + bCol < N) ? B[(size_t)(k0 + bRow) * N + c0 + bCol] : 0.0f;
        __syncthreads();
        for (int k = 0; k < BK; ++k) {
            const float b = Bs[k * BN + col];
            for (int i = 0; i < TM; ++i) acc[i] += As[(rowGroup * TM + i) * BK + k] * b;
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        const int r = r0 + rowGroup * TM + i, c = c0 + col;
        if (r < M && c < N) store_c(C, (size_t)r * N + c, acc[i], alpha, beta);
    }
}

// ---- v4: launch block 256, grid (ceil(N / 128), ceil(M / 128), batch) ---------------------------------------
template <bool TA, bool TB>
__device__ void sgemm_v4_body(int M, int N, int K, float alpha, const float* __restrict__ A,
                              const float* __restrict__ B, float beta, float* __restrict__ C, long long sA,
                              long long sB, long long sC) {
    constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8, NT = 256;
    __shared__ float As[BM * BK], Bs[BK * BN];
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int lda = TA ? M : K, ldb = TB ? K : N;
    const int r0 = blockIdx.y * BM, c0 = blockIdx.x * BN, tid = threadIdx.x;
    const int tRow = tid / (BN / TN), tCol = tid % (BN / TN);  // this thread: an 8 x 8 patch
    float acc[TM][TN] = {{0.0f}};
    float regM[TM], regN[TN];
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int e = tid; e < BM * BK; e += NT) {                // A tile: BM rows x BK columns
            const int i = e / BK, k = e % BK;
            As[e] = (r0 + i < M && k0 + k < K) ? A_AT(r0 + i, k0 + k) : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += NT) {                // B tile: BK rows x BN columns
            const int k = e / BN, j = e % BN;
            Bs[e] = (k0 + k < K && c0 + j < N) ? B_AT(k0 + k, c0 + j) : 0.0f;
        }
        __syncthreads();
        for (int k = 0; k < BK; ++k) {
            for (int i = 0; i < TM; ++i) regM[i] = As[(tRow * TM + i) * BK + k];
            for (int j = 0; j < TN; ++j) regN[j] = Bs[k * BN + tCol * TN + j];
            outer_product(acc, regM, regN);
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        const int r = r0 + tRow * TM + i;
        if (r >= M) continue;
        for (int j = 0; j < TN; ++j) {
            const int c = c0 + tCol * TN + j;
            if (c < N) store_c(C, (size_t)r * N + c, acc[i][j], alpha, beta);
        }
    }
}

#define SGEMM_V4(name, ta, tb)                                                                                   \
    extern "C" __global__ void __launch_bounds__(256) name(int M, int N, int K, float alpha, const float* A,      \
                                                           const float* B, float beta, float* C, long long sA,    \
                                                           long long sB, long long sC) {                          \
        sgemm_v4_body<ta, tb>(M, N, K, alpha, A, B, beta, C, sA, sB, sC);                                        \
    }
SGEMM_V4(sgemm_v4_nn, false, false)
SGEMM_V4(sgemm_v4_nt, false, true)
SGEMM_V4(sgemm_v4_tn, true, false)

// ---- v5: launch block 256, grid (ceil(N / 128), ceil(M / 128), batch); K % 4 == 0, N % 4 == 0 ---------------
extern "C" __global__ void __launch_bounds__(256) sgemm_v5(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                           const float* __restrict__ B, float beta,
                                                           float* __restrict__ C, long long sA, long long sB,
                                                           long long sC) {
    constexpr int BM = 128, BN = 128, BK = 8, TM = 8, TN = 8;
    __shared__ __align__(16) float As[BK * BM];  // transposed: As[k * BM + i]
    __shared__ __align__(16) float Bs[BK * BN];
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int r0 = blockIdx.y * BM, c0 = blockIdx.x * BN, tid = threadIdx.x;
    const int tRow = tid / (BN / TN), tCol = tid % (BN / TN);
    const int aRow = tid / (BK / 4), aCol = (tid % (BK / 4)) * 4;  // one float4 of A per thread: 128 rows x 2
    const int bRow = tid / (BN / 4), bCol = (tid % (BN / 4)) * 4;  // one float4 of B per thread: 8 rows x 32
    float acc[TM][TN] = {{0.0f}};
    float regM[TM], regN[TN];
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int k0 = 0; k0 < K; k0 += BK) {
        const float4 a = (r0 + aRow < M && k0 + aCol < K)
                             ? *reinterpret_cast<const float4*>(&A[(size_t)(r0 + aRow) * K + k0 + aCol]) : zero;
        As[(aCol + 0) * BM + aRow] = a.x;
        As[(aCol + 1) * BM + aRow] = a.y;
        As[(aCol + 2) * BM + aRow] = a.z;
        As[(aCol + 3) * BM + aRow] = a.w;
        *reinterpret_cast<float4*>(&Bs[bRow * BN + bCol]) =
            (k0 + bRow < K && c0 + bCol < N) ? *reinterpret_cast<const float4*>(&B[(size_t)(k0 + bRow) * N + c0 + bCol])
                                              : zero;
        __syncthreads();
        for (int k = 0; k < BK; ++k) {
            for (int i = 0; i < TM; i += 4) {
                const float4 m = *reinterpret_cast<const float4*>(&As[k * BM + tRow * TM + i]);
                regM[i] = m.x; regM[i + 1] = m.y; regM[i + 2] = m.z; regM[i + 3] = m.w;
            }
            for (int j = 0; j < TN; j += 4) {
                const float4 n = *reinterpret_cast<const float4*>(&Bs[k * BN + tCol * TN + j]);
                regN[j] = n.x; regN[j + 1] = n.y; regN[j + 2] = n.z; regN[j + 3] = n.w;
            }
            outer_product(acc, regM, regN);
        }
        __syncthreads();
    }
    for (int i = 0; i < TM; ++i) {
        const int r = r0 + tRow * TM + i;
        if (r >= M) continue;
        for (int j = 0; j < TN; j += 4) {
            const int c = c0 + tCol * TN + j;
            if (c >= N) continue;  // N % 4 == 0: the four columns are all inside or all outside
            float4* dst = reinterpret_cast<float4*>(&C[(size_t)r * N + c]);
            const float4 old = beta == 0.0f ? zero : *dst;
            *dst = make_float4(alpha * acc[i][j] + beta * old.x, alpha * acc[i][j + 1] + beta * old.y,
                               alpha * acc[i][j + 2] + beta * old.z, alpha * acc[i][j + 3] + beta * old.w);
        }
    }
}

// ---- v6: launch block 128, grid (ceil(N / 128), ceil(M / 128), batch); K % 4 == 0, N % 4 == 0 ---------------
extern "C" __global__ void __launch_bounds__(128) sgemm_v6(int M, int N, int K, float alpha, const float* __restrict__ A,
                                                           const float* __restrict__ B, float beta,
                                                           float* __restrict__ C, long long sA, long long sB,
                                                           long long sC) {
    constexpr int BM = 128, BN = 128, BK = 16, NT = 128;
    constexpr int WM = 64, WN = 64, WNITER = 4, TM = 8, TN = 4;
    constexpr int WMITER = (WM * WN) / (32 * TM * TN * WNITER);   // 1
    constexpr int WSUBM = WM / WMITER, WSUBN = WN / WNITER;       // 64, 16
    __shared__ __align__(16) float As[BK * BM];                  // transposed: As[k * BM + i]
    __shared__ __align__(16) float Bs[BK * BN];
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int r0 = blockIdx.y * BM, c0 = blockIdx.x * BN, tid = threadIdx.x;
    const int warp = tid / 32, lane = tid % 32;
    const int warpRow = warp / (BN / WN), warpCol = warp % (BN / WN);
    const int tRowInWarp = lane / (WSUBN / TN), tColInWarp = lane % (WSUBN / TN);  // 8 x 4 threads per sub-tile
    const int aRow = tid / (BK / 4), aCol = (tid % (BK / 4)) * 4;
    constexpr int aStride = NT * 4 / BK;                           // 32 rows of A per pass
    const int bRow = tid / (BN / 4), bCol = (tid % (BN / 4)) * 4;
    constexpr int bStride = NT / (BN / 4);                         // 4 rows of B per pass
    float acc[WMITER * TM][WNITER * TN] = {{0.0f}};
    float regM[WMITER * TM], regN[WNITER * TN];
    const float4 zero = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int off = 0; off < BM; off += aStride) {
            const int r = aRow + off;
            const float4 a = (r0 + r < M && k0 + aCol < K)
                                 ? *reinterpret_cast<const float4*>(&A[(size_t)(r0 + r) * K + k0 + aCol]) : zero;
            As[(aCol + 0) * BM + r] = a.x;
            As[(aCol + 1) * BM + r] = a.y;
            As[(aCol + 2) * BM + r] = a.z;
            As[(aCol + 3) * BM + r] = a.w;
        }
        for (int off = 0; off < BK; off += bStride) {
            const int k = bRow + off;
            *reinterpret_cast<float4*>(&Bs[k * BN + bCol]) =
                (k0 + k < K && c0 + bCol < N) ? *reinterpret_cast<const float4*>(&B[(size_t)(k0 + k) * N + c0 + bCol])
                                               : zero;
        }
        __syncthreads();
        for (int k = 0; k < BK; ++k) {
            for (int ws = 0; ws < WMITER; ++ws)
                for (int i = 0; i < TM; ++i)
                    regM[ws * TM + i] = As[k * BM + warpRow * WM + ws * WSUBM + tRowInWarp * TM + i];
            for (int ws = 0; ws < WNITER; ++ws)
                for (int j = 0; j < TN; ++j)
                    regN[ws * TN + j] = Bs[k * BN + warpCol * WN + ws * WSUBN + tColInWarp * TN + j];
            outer_product(acc, regM, regN);
        }
        __syncthreads();
    }
    for (int ws = 0; ws < WMITER; ++ws)
        for (int i = 0; i < TM; ++i) {
            const int r = r0 + warpRow * WM + ws * WSUBM + tRowInWarp * TM + i;
            if (r >= M) continue;
            for (int wn = 0; wn < WNITER; ++wn) {
                const int c = c0 + warpCol * WN + wn * WSUBN + tColInWarp * TN;  // TN == 4: one float4
                if (c >= N) continue;
                float4* dst = reinterpret_cast<float4*>(&C[(size_t)r * N + c]);
                const float4 old = beta == 0.0f ? zero : *dst;
                const float* a = &acc[ws * TM + i][wn * TN];
                *dst = make_float4(alpha * a[0] + beta * old.x, alpha * a[1] + beta * old.y,
                                   alpha * a[2] + beta * old.z, alpha * a[3] + beta * old.w);
            }
        }
}

// ---- TF32 tensor cores: launch block 128, grid (ceil(N / 64), ceil(M / 64), batch) -------------------------
extern "C" __global__ void __launch_bounds__(128) sgemm_tf32(int M, int N, int K, float alpha,
                                                             const float* __restrict__ A, const float* __restrict__ B,
                                                             float beta, float* __restrict__ C, long long sA,
                                                             long long sB, long long sC) {
    using namespace nvcuda;
    constexpr int BM = 64, BN = 64, BK = 16, PAD = 4, NT = 128;
    __shared__ __align__(32) float As[BM][BK + PAD];
    __shared__ __align__(32) float Bs[BK][BN + PAD];
    __shared__ __align__(32) float Cs[BM][BN + PAD];
    A += blockIdx.z * sA;
    B += blockIdx.z * sB;
    C += blockIdx.z * sC;
    const int r0 = blockIdx.y * BM, c0 = blockIdx.x * BN, tid = threadIdx.x, warp = tid / 32;
    const int wr = (warp / 2) * 32, wc = (warp % 2) * 32;          // this warp's 32 x 32 quarter
    wmma::fragment<wmma::accumulator, 16, 16, 8, float> acc[2][2];
    for (int i = 0; i < 2; ++i)
        for (int j = 0; j < 2; ++j) wmma::fill_fragment(acc[i][j], 0.0f);
    for (int k0 = 0; k0 < K; k0 += BK) {
        for (int e = tid; e < BM * BK; e += NT) {
            const int i = e / BK, k = e % BK;
            As[i][k] = (r0 + i < M && k0 + k < K) ? A[(size_t)(r0 + i) * K + k0 + k] : 0.0f;
        }
        for (int e = tid; e < BK * BN; e += NT) {
            const int k = e / BN, j = e % BN;
            Bs[k][j] = (k0 + k < K && c0 + j < N) ? B[(size_t)(k0 + k) * N + c0 + j] : 0.0f;
        }
        __syncthreads();
        for (int kk = 0; kk < BK; kk += 8) {
            wmma::fragment<wmma::matrix_a, 16, 16, 8, wmma::precision::tf32, wmma::row_major> a[2];
            wmma::fragment<wmma::matrix_b, 16, 16, 8, wmma::precision::tf32, wmma::row_major> b[2];
            for (int i = 0; i < 2; ++i) {
                wmma::load_matrix_sync(a[i], &As[wr + 16 * i][kk], BK + PAD);
                for (int t = 0; t < a[i].num_elements; ++t) a[i].x[t] = wmma::__float_to_tf32(a[i].x[t]);
            }
            for (int j = 0; j < 2; ++j) {
                wmma::load_matrix_sync(b[j], &Bs[kk][wc + 16 * j], BN + PAD);
                for (int t = 0; t < b[j].num_elements; ++t) b[j].x[t] = wmma::__float_to_tf32(b[j].x[t]);
            }
            for (int i = 0; i < 2; ++i)
                for (int j = 0; j < 2; ++j) wmma::mma_sync(acc[i][j], a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 2; ++i)                                    // through shared memory: C's edges need checks
        for (int j = 0; j < 2; ++j)
            wmma::store_matrix_sync(&Cs[wr + 16 * i][wc + 16 * j], acc[i][j], BN + PAD, wmma::mem_row_major);
    __syncthreads();
    for (int e = tid; e < BM * BN; e += NT) {
        const int i = e / BN, j = e % BN;
        if (r0 + i < M && c0 + j < N) store_c(C, (size_t)(r0 + i) * N + c0 + j, Cs[i][j], alpha, beta);
    }
}
