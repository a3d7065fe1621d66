// GELU and bias + GELU, elementwise over n float32 values (bias of length M broadcast along rows of M).
// Versions:
//   gelu_forward / gelu_backward            y = v g with the gate g = Phi(v) (exact: 0.5 erfc(-v / sqrt 2))
//                                           or sigmoid(2u), u = sqrt(2/pi)(v + 0.044715 v^3) (tanh form);
//                                           the gate is written for the backward: dv = dy (g + v g'(v)).
//   bias_gelu_forward / bias_gelu_backward  the same on v = x + bias[col]: the Linear's bias add fused in.
// erfcf keeps full relative precision in the far negative tail, where 1 + erf cancels.
#define SQRT_2_OVER_PI 0.7978845608028654f
#define INV_SQRT_2 0.7071067811865476f
#define INV_SQRT_2PI 0.3989422804014327f

__device__ __forceinline__ float gelu_gate(float v, int tanh_form) {
    if (tanh_form) {
        const float u2 = 2.0f * SQRT_2_OVER_PI * (v + 0.044715f * v * v * v);
        return 1.0f / (1.0f + expf(-u2));  // (1 + tanh u) / 2
    }
    return 0.5f * erfcf(-v * INV_SQRT_2);
}

__device__ __forceinline__ float gelu_grad(float v, float g, int tanh_form) {
    if (tanh_form) {
        const float du = SQRT_2_OVER_PI * (1.0f + 3.0f * 0.044715f * v * v);
        return g + 2.0f * v * g * (1.0f - g) * du;
    }
    return g + v * INV_SQRT_2PI * expf(-0.5f * v * v);
}

extern "C" __global__ void bias_gelu_forward(const float* __restrict__ x, const float* __restrict__ bias,
                                             float* __restrict__ y, float* __restrict__ gate, long long n, int M,
                                             int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i] + (bias != nullptr ? bias[i % M] : 0.0f);
        const float g = gelu_gate(v, tanh_form);
        gate[i] = g;
        y[i] = v * g;
    }
}

extern "C" __global__ void bias_gelu_backward(const float* __restrict__ dy, const float* __restrict__ x,
                                              const float* __restrict__ bias, const float* __restrict__ gate,
                                              float* __restrict__ dx, long long n, int M, int tanh_form) {
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
        const float v = x[i] + (bias != nullptr ? bias[i % M] : 0.0f);
        dx[i] = dy[i] * gelu_grad(v, gate[i], tanh_form);
    }
}
