// Fused AdamW over one flat tensor with fp32 master weights and fp32 moments,
// in PyTorch's order (torch.optim.AdamW): decoupled decay first, then the
// moment updates and the bias-corrected step. The gradient is multiplied by
// grad_scale (the clipping factor) on the fly, so clipping costs no pass.
#include <cmath>

#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, float lr, float beta1, float beta2, float eps,
                             float decay_factor, float step_size, float inv_sqrt_bc2, float grad_scale) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float p = param[i] * decay_factor;
    param[i] = p - step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
  }
}

}  // namespace

void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a, cudaStream_t s) {
  if (n <= 0) return;
  const double bc1 = 1.0 - std::pow((double)a.beta1, (double)a.step);
  const double bc2 = 1.0 - std::pow((double)a.beta2, (double)a.step);
  const float step_size = (float)(a.lr / bc1);
  const float inv_sqrt_bc2 = (float)(1.0 / std::sqrt(bc2));
  const float decay_factor = 1.0f - a.lr * a.weight_decay;
  adamw_kernel<<<elementwise_blocks(n, 256), 256, 0, s>>>(param, grad, m, v, n, a.lr, a.beta1, a.beta2, a.eps,
                                                          decay_factor, step_size, inv_sqrt_bc2, a.grad_scale);
  CUDA_CHECK_LAUNCH("adamw");
}

}  // namespace cuda
}  // namespace gpt
