// Fused classifier: softmax + cross-entropy + its gradient in one kernel, one
// block per row, chunked over the vocabulary (each thread walks its strided
// columns keeping a running max and sum, so a row of 50k logits is read once
// for the statistics and once to write the gradient in place; no second
// [M, Vp] buffer exists).
#include <math_constants.h>

#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr int kThreads = 512;

// Merges two (max, sum of exp(x - max)) pairs.
__device__ __forceinline__ void merge(float& m, float& s, float m2, float s2) {
  const float mn = fmaxf(m, m2);
  if (mn == -CUDART_INF_F) return;  // both empty
  s = s * expf(m - mn) + s2 * expf(m2 - mn);
  m = mn;
}

__global__ void __launch_bounds__(kThreads) crossentropy_kernel(float* __restrict__ logits,
                                                                const int32_t* __restrict__ targets,
                                                                double* __restrict__ row_loss,
                                                                int32_t* __restrict__ row_valid, int V, int Vp,
                                                                float dscale) {
  __shared__ float sm[kThreads / 32], ss[kThreads / 32];
  __shared__ float stat[2];
  const int64_t row = blockIdx.x;
  float* x = logits + row * Vp;
  const int target = targets[row];
  const bool valid = target >= 0;

  float m = -CUDART_INF_F, s = 0.0f;
  if (valid)
    for (int c = threadIdx.x; c < V; c += kThreads) {
      const float v = x[c];
      if (v > m) {
        s = s * expf(m - v) + 1.0f;
        m = v;
      } else {
        s += expf(v - m);
      }
    }
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) {
    const float m2 = __shfl_xor_sync(0xffffffffu, m, o), s2 = __shfl_xor_sync(0xffffffffu, s, o);
    merge(m, s, m2, s2);
  }
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  if (lane == 0) {
    sm[warp] = m;
    ss[warp] = s;
  }
  __syncthreads();
  if (threadIdx.x == 0) {
    float M = -CUDART_INF_F, S = 0.0f;
    for (int w = 0; w < kThreads / 32; ++w) merge(M, S, sm[w], ss[w]);
    stat[0] = M;
    stat[1] = S;
    if (valid) {
      // Read the target's logit before anyone overwrites the row.
      const float xt = target < V ? x[target] : CUDART_NAN_F;
      row_loss[row] = (double)M + (double)logf(S) - (double)xt;
      if (row_valid) row_valid[row] = 1;
    } else {
      row_loss[row] = 0.0;
      if (row_valid) row_valid[row] = 0;
    }
  }
  __syncthreads();
  if (dscale == 0.0f) return;
  const float M = stat[0], inv = 1.0f / stat[1];
  for (int c = threadIdx.x; c < Vp; c += kThreads) {
    float gr = 0.0f;
    if (valid && c < V) gr = (expf(x[c] - M) * inv - (c == target ? 1.0f : 0.0f)) * dscale;
    x[c] = gr;
  }
}

constexpr int kSumThreads = 256;

// One block: thread t sums rows t, t + 256, ... with a target, in order,
// then a fixed tree over the threads; out[0] = the loss sum, out[1] = the
// count (as a double). Deterministic, no atomics.
__global__ void __launch_bounds__(kSumThreads) loss_sum_kernel(const double* __restrict__ row_loss,
                                                              const int32_t* __restrict__ targets, int M,
                                                              double* __restrict__ out) {
  __shared__ double ss[kSumThreads], sc[kSumThreads];
  double s = 0.0, c = 0.0;
  for (int r = threadIdx.x; r < M; r += kSumThreads)
    if (targets[r] >= 0) {
      s += row_loss[r];
      c += 1.0;
    }
  ss[threadIdx.x] = s;
  sc[threadIdx.x] = c;
  __syncthreads();
  for (int o = kSumThreads / 2; o > 0; o >>= 1) {
    if (threadIdx.x < o) {
      ss[threadIdx.x] += ss[threadIdx.x + o];
      sc[threadIdx.x] += sc[threadIdx.x + o];
    }
    __syncthreads();
  }
  if (threadIdx.x == 0) {
    out[0] = ss[0];
    out[1] = sc[0];
  }
}

}  // namespace

void loss_sum(double* out, const double* row_loss, const int32_t* targets, int M, cudaStream_t s) {
  GPT_CHECK_ARG(M >= 0, "loss_sum: expected M >= 0");
  loss_sum_kernel<<<1, kSumThreads, 0, s>>>(row_loss, targets, M, out);
  CUDA_CHECK_LAUNCH("loss_sum");
}

void crossentropy(float* logits, const int32_t* targets, double* row_loss, int32_t* row_valid, int M, int V, int Vp,
                  float dlogits_scale, cudaStream_t s) {
  if (M <= 0) return;
  GPT_CHECK_ARG(V >= 1 && Vp >= V, "crossentropy: expected 1 <= V <= Vp");
  crossentropy_kernel<<<M, kThreads, 0, s>>>(logits, targets, row_loss, row_valid, V, Vp, dlogits_scale);
  CUDA_CHECK_LAUNCH("crossentropy");
}

}  // namespace cuda
}  // namespace gpt
