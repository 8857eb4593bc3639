// Token + position embedding, forward and backward.
// Backward is deterministic without atomics: dwpe sums over the batch in
// order, and dwte is computed per distinct token from a grouping of the rows
// built on the device (a bitonic sort of (token, row) keys, unique, so the
// order is the one stable sort by token gives), each group adding its rows in
// row order. Nothing is copied to the host.
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

// keys[i] = (token << 32 | row) for i < M, all-ones padding up to P.
__global__ void embedding_keys_kernel(uint64_t* __restrict__ keys, const int32_t* __restrict__ tokens, int M, int P) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < P; i += gridDim.x * blockDim.x)
    keys[i] = i < M ? ((uint64_t)(uint32_t)tokens[i] << 32) | (uint32_t)i : ~(uint64_t)0;
}

// One compare-exchange pass of a bitonic sort of P (a power of two) keys:
// stage k (block size of the merge), distance j.
__global__ void bitonic_pass_kernel(uint64_t* __restrict__ keys, int P, int k, int j) {
  for (int i = blockIdx.x * blockDim.x + threadIdx.x; i < P; i += gridDim.x * blockDim.x) {
    const int l = i ^ j;
    if (l <= i) continue;
    const uint64_t a = keys[i], b = keys[l];
    const bool up = (i & k) == 0;
    if (up ? a > b : a < b) {
      keys[i] = b;
      keys[l] = a;
    }
  }
}

// Grid (ceil(C/256), n): block y is sorted position p0 + y; only the first
// position of each token's run sums the run (its rows in row order).
__global__ void embedding_backward_wte_sorted_kernel(float* __restrict__ dwte, const float* __restrict__ dout,
                                                     const uint64_t* __restrict__ keys, int p0, int M, int C) {
  const int pos = p0 + (int)blockIdx.y;
  const int c = blockIdx.x * blockDim.x + threadIdx.x;
  if (c >= C) return;
  const uint32_t tok = (uint32_t)(keys[pos] >> 32);
  if (pos > 0 && (uint32_t)(keys[pos - 1] >> 32) == tok) return;
  float s = 0.0f;
  for (int i = pos; i < M && (uint32_t)(keys[i] >> 32) == tok; ++i)
    s += dout[(int64_t)(uint32_t)keys[i] * C + c];
  dwte[(int64_t)tok * C + c] += s;
}

}  // namespace

size_t embedding_backward_wte_scratch_bytes(int M) {
  size_t P = 1;
  while (P < (size_t)M) P <<= 1;
  return P * sizeof(uint64_t);
}

void embedding_backward_wte_device(float* dwte, const float* dout, const int32_t* tokens, int M, int C,
                                   void* scratch, cudaStream_t s) {
  if (M <= 0 || C <= 0) return;
  GPT_CHECK_ARG(M <= (1 << 30), "embedding_backward: more than 2^30 rows");
  int P = 1;
  while (P < M) P <<= 1;
  uint64_t* keys = static_cast<uint64_t*>(scratch);
  const unsigned blocks = elementwise_blocks(P, 256);
  embedding_keys_kernel<<<blocks, 256, 0, s>>>(keys, tokens, M, P);
  CUDA_CHECK_LAUNCH("embedding_backward (keys)");
  for (int k = 2; k <= P; k <<= 1)
    for (int j = k >> 1; j > 0; j >>= 1) {
      bitonic_pass_kernel<<<blocks, 256, 0, s>>>(keys, P, k, j);
      CUDA_CHECK_LAUNCH("embedding_backward (sort)");
    }
  for (int p0 = 0; p0 < M; p0 += 65535) {
    const int n = M - p0 < 65535 ? M - p0 : 65535;
    embedding_backward_wte_sorted_kernel<<<dim3(ceil_div(C, 256), n), 256, 0, s>>>(dwte, dout, keys, p0, M, C);
    CUDA_CHECK_LAUNCH("embedding_backward (dwte)");
  }
}

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

}  // namespace cuda
}  // namespace gpt
