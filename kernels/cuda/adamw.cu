// Fused Adam / AdamW over every parameter of a model in one launch.
// Versions:
//   adam_update  the parameter list is described by device arrays of pointers (p, grad, m, v) and the
//                prefix sums of their sizes (offsets, n_tensors + 1 entries); a grid-stride loop walks the
//                concatenated index space and finds each element's tensor by binary search in offsets.
//                Per element it reads p, g, m, v and writes p, m, v once (7 numbers), as the Numba kernel.
//                step_size = lr / (1 - beta1^t) and bc2_sqrt = sqrt(1 - beta2^t) come from the host.
//                decoupled = 1 is AdamW (p *= 1 - lr wd), 0 is Adam's L2 (g += wd p).
extern "C" __global__ void adam_update(const unsigned long long* __restrict__ params,
                                       const unsigned long long* __restrict__ grads,
                                       const unsigned long long* __restrict__ exp_avgs,
                                       const unsigned long long* __restrict__ exp_avg_sqs,
                                       const long long* __restrict__ offsets, int n_tensors, float lr, float beta1,
                                       float beta2, float eps, float weight_decay, int decoupled, float step_size,
                                       float bc2_sqrt, int maximize) {
    const long long total = offsets[n_tensors];
    for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < total; i += (long long)gridDim.x * blockDim.x) {
        int lo = 0, hi = n_tensors - 1;  // the tensor j with offsets[j] <= i < offsets[j + 1]
        while (lo < hi) {
            const int mid = (lo + hi + 1) >> 1;
            if (offsets[mid] <= i) lo = mid; else hi = mid - 1;
        }
        const long long k = i - offsets[lo];
        float* p = reinterpret_cast<float*>(params[lo]);
        const float* gp = reinterpret_cast<const float*>(grads[lo]);
        float* m = reinterpret_cast<float*>(exp_avgs[lo]);
        float* v = reinterpret_cast<float*>(exp_avg_sqs[lo]);
        float g = maximize ? -gp[k] : gp[k];
        float w = p[k];
        if (weight_decay != 0.0f) {
            if (decoupled) w *= 1.0f - lr * weight_decay;
            else g += weight_decay * w;
        }
        const float mk = beta1 * m[k] + (1.0f - beta1) * g;
        const float vk = beta2 * v[k] + (1.0f - beta2) * g * g;
        m[k] = mk;
        v[k] = vk;
        p[k] = w - step_size * mk / (sqrtf(vk) / bc2_sqrt + eps);
    }
}
