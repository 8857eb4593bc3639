// Token + position embedding, forward and backward.
// Backward is deterministic without atomics: dwpe sums over the batch in
// order, and dwte is computed per distinct token from a host-built grouping
// of the rows (cuda_backend.cu sorts the tokens), each group adding its rows
// in row order.
#include "check.cuh"
#include "common.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

// Flat grid-stride over M*C elements.
__global__ void embedding_forward_kernel(float* __restrict__ out, const int32_t* __restrict__ tokens,
                                         const float* __restrict__ wte, const float* __restrict__ wpe, int64_t n,
                                         int T, int C) {
  for (int64_t i = blockIdx.x * (int64_t)blockDim.x + threadIdx.x; i < n; i += (int64_t)gridDim.x * blockDim.x) {
    const int64_t row = i / C;
    const int c = (int)(i - row * C);
    const int tok = tokens[row];
    const int t = (int)(row % T);
    out[i] = wte[(int64_t)tok * C + c] + wpe[(int64_t)t * C + c];
  }
}

// Grid (ceil(C/256), T).
__global__ void embedding_backward_wpe_kernel(float* __restrict__ dwpe, const float* __restrict__ dout, int B, int T,
                                              int C) {
  const int t = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int b = 0; b < B; ++b) s += dout[((int64_t)b * T + t) * C + c];
  dwpe[(int64_t)t * C + c] += s;
}

// Grid (ceil(C/256), ngroups).
__global__ void embedding_backward_wte_kernel(float* __restrict__ dwte, const float* __restrict__ dout,
                                              const int32_t* __restrict__ order, const int32_t* __restrict__ starts,
                                              const int32_t* __restrict__ group_tok, int C) {
  const int grp = blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  float s = 0.0f;
  for (int i = starts[grp]; i < starts[grp + 1]; ++i) s += dout[(int64_t)order[i] * C + c];
  dwte[(int64_t)group_tok[grp] * C + c] += s;
}

}  // namespace

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T, int C,
                       cudaStream_t s) {
  const int64_t n = (int64_t)B * T * C;
  if (n <= 0) return;
  embedding_forward_kernel<<<elementwise_blocks(n, 256), 256, 0, s>>>(out, tokens, wte, wpe, n, T, C);
  CUDA_CHECK_LAUNCH("embedding_forward");
}

void embedding_backward_wpe(float* dwpe, const float* dout, int B, int T, int C, cudaStream_t s) {
  if (B <= 0 || T <= 0 || C <= 0) return;
  GPT_CHECK_ARG(T <= 65535, "embedding_backward: sequence longer than 65535");
  embedding_backward_wpe_kernel<<<dim3(ceil_div(C, 256), T), 256, 0, s>>>(dwpe, dout, B, T, C);
  CUDA_CHECK_LAUNCH("embedding_backward (dwpe)");
}

void embedding_backward_wte(float* dwte, const float* dout, const int32_t* order, const int32_t* starts,
                            const int32_t* group_tok, int ngroups, int C, cudaStream_t s) {
  if (ngroups <= 0 || C <= 0) return;
  for (int g0 = 0; g0 < ngroups; g0 += 65535) {
    const int n = ngroups - g0 < 65535 ? ngroups - g0 : 65535;
    embedding_backward_wte_kernel<<<dim3(ceil_div(C, 256), n), 256, 0, s>>>(dwte, dout, order, starts + g0,
                                                                            group_tok + g0, C);
    CUDA_CHECK_LAUNCH("embedding_backward (dwte)");
  }
}

}  // namespace cuda
}  // namespace gpt
