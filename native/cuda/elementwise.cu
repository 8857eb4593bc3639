// Residual add, in-place scaling and type conversion: grid-stride loops over flat arrays.
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

template <typename Out, typename In>
__global__ void convert_kernel(Out* __restrict__ out, const In* __restrict__ inp, int64_t n) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x)
    store_f32(out, i, load_f32(inp, i));
}

}  // namespace

void convert(TensorRef dst, CTensorRef src, int64_t n, cudaStream_t s) {
  if (n <= 0) return;
  if (dst.dtype == src.dtype) {
    CUDA_CHECK(cudaMemcpyAsync(dst.ptr, src.ptr, static_cast<size_t>(n) * dtype_size(dst.dtype),
                               cudaMemcpyDeviceToDevice, s),
               "convert (a copy)");
    return;
  }
  const unsigned g = elementwise_blocks(n, 256);
  if (dst.bf16())
    convert_kernel<__nv_bfloat16, float><<<g, 256, 0, s>>>(static_cast<__nv_bfloat16*>(dst.ptr), static_cast<const float*>(src.ptr), n);
  else
    convert_kernel<float, __nv_bfloat16><<<g, 256, 0, s>>>(static_cast<float*>(dst.ptr), static_cast<const __nv_bfloat16*>(src.ptr), n);
  CUDA_CHECK_LAUNCH("convert");
}

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
