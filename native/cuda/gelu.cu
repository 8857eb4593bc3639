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

template <typename Out, typename In>
__global__ void gelu_forward_kernel(Out* __restrict__ out, const In* __restrict__ inp, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    store_f32(out, i, gelu_tanh(load_f32(inp, i)));
  }
}

template <typename In>
__global__ void gelu_backward_kernel(float* __restrict__ dinp, const In* __restrict__ inp,
                                     const float* __restrict__ dout, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    float x = load_f32(inp, i);
    float u = kSqrt2OverPi * (x + 0.044715f * x * x * x);
    float th = tanhf(u);
    float sech2 = 1.0f - th * th;
    float du = kSqrt2OverPi * (1.0f + 3.0f * 0.044715f * x * x);
    dinp[i] = dout[i] * (0.5f * (1.0f + th) + 0.5f * x * sech2 * du);
  }
}

}  // namespace

void gelu_forward(TensorRef out, CTensorRef inp, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const unsigned g = elementwise_blocks(n, 256);
  using bf = __nv_bfloat16;
  if (!out.bf16() && !inp.bf16())
    gelu_forward_kernel<float, float><<<g, 256, 0, s>>>(static_cast<float*>(out.ptr), static_cast<const float*>(inp.ptr), n);
  else if (out.bf16() && !inp.bf16())
    gelu_forward_kernel<bf, float><<<g, 256, 0, s>>>(static_cast<bf*>(out.ptr), static_cast<const float*>(inp.ptr), n);
  else if (!out.bf16() && inp.bf16())
    gelu_forward_kernel<float, bf><<<g, 256, 0, s>>>(static_cast<float*>(out.ptr), static_cast<const bf*>(inp.ptr), n);
  else
    gelu_forward_kernel<bf, bf><<<g, 256, 0, s>>>(static_cast<bf*>(out.ptr), static_cast<const bf*>(inp.ptr), n);
  CUDA_CHECK_LAUNCH("gelu_forward");
}

void gelu_backward(float* dinp, CTensorRef inp, const float* dout, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  const unsigned g = elementwise_blocks(n, 256);
  if (inp.bf16())
    gelu_backward_kernel<__nv_bfloat16><<<g, 256, 0, s>>>(dinp, static_cast<const __nv_bfloat16*>(inp.ptr), dout, n);
  else
    gelu_backward_kernel<float><<<g, 256, 0, s>>>(dinp, static_cast<const float*>(inp.ptr), dout, n);
  CUDA_CHECK_LAUNCH("gelu_backward");
}

}  // namespace cuda
}  // namespace gpt
