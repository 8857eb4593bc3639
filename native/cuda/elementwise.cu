// Residual add and in-place scaling: grid-stride loops over flat arrays.
#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

__global__ void add_kernel(float* __restrict__ out, const float* __restrict__ a, const float* __restrict__ b,
                           int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    out[i] = a[i] + b[i];
}

__global__ void scale_kernel(float* __restrict__ x, float s, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    x[i] *= s;
}

}  // namespace

void add(float* out, const float* a, const float* b, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  add_kernel<<<elementwise_blocks(n, 256), 256, 0, s>>>(out, a, b, n);
  CUDA_CHECK_LAUNCH("add");
}

void scale(float* x, float factor, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  scale_kernel<<<elementwise_blocks(n, 256), 256, 0, s>>>(x, factor, n);
  CUDA_CHECK_LAUNCH("scale");
}

}  // namespace cuda
}  // namespace gpt
