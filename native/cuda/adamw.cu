// Fused AdamW over one flat tensor with fp32 master weights and fp32 moments,
// written as the CPU kernel (native/cpu/ops_impl.h op_adamw) writes it:
// p -= lr * (mhat / (sqrt(vhat) + eps) + wd * p), which is PyTorch's AdamW. The gradient is multiplied by
// grad_scale (the clipping factor) on the fly, so clipping costs no pass; in
// a training step that factor is read from device memory (grad_scale_at),
// where grad_scale_of left it, so the update waits for no value from the host,
// and so are lr, the betas, eps, the weight decay and the bias corrections
// (hyper_at, written by the step before its work), so that the step's
// launches carry no per-step value and replay as a CUDA graph.
#include <cmath>

#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

__global__ void adamw_kernel(float* __restrict__ param, const float* __restrict__ grad, float* __restrict__ m,
                             float* __restrict__ v, int64_t n, float lr, float beta1, float beta2, float eps,
                             float wd, float rbc1, float rbc2, float grad_scale,
                             const float* __restrict__ grad_scale_at, const StepScalars* __restrict__ hyper_at,
                             int decay, __nv_bfloat16* __restrict__ param_bf16) {
  if (hyper_at) {
    // The same float values as the host computes for the arguments below.
    lr = hyper_at->lr;
    beta1 = hyper_at->beta1;
    beta2 = hyper_at->beta2;
    eps = hyper_at->eps;
    wd = decay ? hyper_at->weight_decay : 0.0f;
    rbc1 = 1.0f / (float)hyper_at->bias1;
    rbc2 = 1.0f / (float)hyper_at->bias2;
  }
  if (grad_scale_at) {
    grad_scale = *grad_scale_at;
    // Not finite (exponent all ones): a skipped step, nothing changes.
    if ((__float_as_uint(grad_scale) & 0x7f800000u) == 0x7f800000u) return;
  }
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const float g = grad[i] * grad_scale;
    const float mi = beta1 * m[i] + (1.0f - beta1) * g;
    const float vi = beta2 * v[i] + (1.0f - beta2) * g * g;
    m[i] = mi;
    v[i] = vi;
    const float upd = (mi * rbc1) / (sqrtf(vi * rbc2) + eps);
    const float p = param[i] - lr * (upd + wd * param[i]);
    param[i] = p;
    if (param_bf16) param_bf16[i] = __float2bfloat16_rn(p);  // the weights' bf16 copy (AdamWParams::param_bf16)
  }
}

}  // namespace

void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a, cudaStream_t s) {
  if (n <= 0) return;
  float rbc1 = 1.0f, rbc2 = 1.0f;
  if (!a.hyper_at) {
    const double bc1 = 1.0 - std::pow((double)a.beta1, (double)a.step);
    const double bc2 = 1.0 - std::pow((double)a.beta2, (double)a.step);
    rbc1 = 1.0f / (float)bc1;
    rbc2 = 1.0f / (float)bc2;
  }
  adamw_kernel<<<elementwise_blocks(n, 256), 256, 0, s>>>(param, grad, m, v, n, a.lr, a.beta1, a.beta2, a.eps,
                                                          a.weight_decay, rbc1, rbc2, a.grad_scale,
                                                          a.grad_scale_at, a.hyper_at, a.decay ? 1 : 0,
                                                          reinterpret_cast<__nv_bfloat16*>(a.param_bf16));
  CUDA_CHECK_LAUNCH("adamw");
}

}  // namespace cuda
}  // namespace gpt
