// GELU, tanh form (GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// The bias that precedes it in the MLP is added in the GEMM epilogue
// (gemm.cu), so bias + GELU costs one pass over the activations.
#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr float kSqrt2OverPi = 0.7978845608028654f;

__global__ void gelu_forward_kernel(float* __restrict__ out, const float* __restrict__ inp, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    out[i] = gelu_tanh(inp[i]);
  }
}

__global__ void gelu_backward_kernel(float* __restrict__ dinp, const float* __restrict__ inp,
                                     const float* __restrict__ dout, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float x = inp[i];
    float u = kSqrt2OverPi * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float du = kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = dout[i] * (0.5f * (1.0f + th) + 0.5f * x * sech2 * du);
  }
}

}  // namespace

void gelu_forward(float* out, const float* inp, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  gelu_forward_kernel<<<elementwise_blocks(n, 256), 256, 0, s>>>(out, inp, n);
  CUDA_CHECK_LAUNCH("gelu_forward");
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  gelu_backward_kernel<<<elementwise_blocks(n, 256), 256, 0, s>>>(dinp, inp, dout, n);
  CUDA_CHECK_LAUNCH("gelu_backward");
}

}  // namespace cuda
}  // namespace gpt
