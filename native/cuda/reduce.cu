// Global gradient norm: sum of squares in double with a fixed reduction tree.
// The grid size depends only on n, each block sums its grid-stride share and
// a fixed-order tree, and one thread adds the block partials in order, so
// the result is the same on every run.
#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr int kThreads = 256, kMaxBlocks = 1024;

int blocks_for(int64_t n) {
  int64_t b = (n + kThreads * 8 - 1) / (kThreads * 8);
  if (b < 1) b = 1;
  if (b > kMaxBlocks) b = kMaxBlocks;
  return (int)b;
}

__global__ void __launch_bounds__(kThreads) sum_squares_partial_kernel(double* __restrict__ partial,
                                                                       const float* __restrict__ g, int64_t n) {
  __shared__ double red[kThreads / 32];
  double s = 0.0;
  for (int64_t i = blockIdx.x * (int64_t)kThreads + threadIdx.x; i < n; i += (int64_t)gridDim.x * kThreads) {
    const double v = g[i];
    s += v * v;
  }
  s = warp_sum_d(s);
  if (threadIdx.x % 32 == 0) red[threadIdx.x / 32] = s;
  __syncthreads();
  if (threadIdx.x == 0) {
    double t = 0.0;
    for (int w = 0; w < kThreads / 32; ++w) t += red[w];
    partial[blockIdx.x] = t;
  }
}

__global__ void sum_squares_finish_kernel(double* __restrict__ result, const double* __restrict__ partial, int nb) {
  double t = 0.0;
  for (int i = 0; i < nb; ++i) t += partial[i];
  *result = t;
}

// One thread: the step's scale from the sum of squares (Backend::grad_scale_of);
// inv_count and grad_clip from *at when it is set.
__global__ void grad_scale_kernel(float* __restrict__ scale, const double* __restrict__ sumsq, double inv_count,
                                  double grad_clip, const StepScalars* __restrict__ at) {
  if (at) {
    inv_count = at->inv_count;
    grad_clip = at->grad_clip;
  }
  const double norm = sqrt(*sumsq) * inv_count;
  if (!(norm <= 1.7976931348623157e308)) {  // NaN or infinite
    *scale = __int_as_float(0x7fc00000);
    return;
  }
  const double clip = grad_clip > 0 && norm > grad_clip ? grad_clip / norm : 1.0;
  *scale = (float)(inv_count * clip);
}

}  // namespace

void grad_scale(float* scale, const double* sumsq, double inv_count, double grad_clip, cudaStream_t s) {
  grad_scale_kernel<<<1, 1, 0, s>>>(scale, sumsq, inv_count, grad_clip, nullptr);
  CUDA_CHECK_LAUNCH("grad_scale_of");
}

void grad_scale(float* scale, const double* sumsq, const StepScalars* at, cudaStream_t s) {
  grad_scale_kernel<<<1, 1, 0, s>>>(scale, sumsq, 0.0, 0.0, at);
  CUDA_CHECK_LAUNCH("grad_scale_of");
}

size_t sum_squares_scratch_doubles(int64_t n) { return (size_t)blocks_for(n); }

void sum_squares(double* result, const float* g, int64_t n, double* scratch, cudaStream_t s) {
  const int nb = blocks_for(n);
  sum_squares_partial_kernel<<<nb, kThreads, 0, s>>>(scratch, g, n < 0 ? 0 : n);
  CUDA_CHECK_LAUNCH("sum_squares (partial sums)");
  sum_squares_finish_kernel<<<1, 1, 0, s>>>(result, scratch, nb);
  CUDA_CHECK_LAUNCH("sum_squares (final sum)");
}

}  // namespace cuda
}  // namespace gpt
