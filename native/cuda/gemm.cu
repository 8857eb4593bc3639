// GEMM kernels (see gemm.cuh).
//
// Tensor-core kernel: a 128x128 output tile per block of 8 warps (2 x 4), each
// warp 64x32 = 4 x 4 mma tiles of 16x8. K advances 32 at a time: the next
// K-slab is read from global memory into registers while the current one is
// multiplied out of shared memory (two shared buffers, one barrier per slab).
// Shared tiles hold bf16 with k contiguous ([m][k] and [n][k]) and rows padded
// by 8 elements (80 bytes), which puts the 8 rows x 4 words a fragment load
// touches in 32 distinct banks.
#include <cuda_bf16.h>

#include <string>

#include "../core/error.h"
#include "check.cuh"
#include "common.cuh"
#include "cublaslt.h"
#include "gemm.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr int TC_BM = 128, TC_BN = 128, TC_BK = 32, TC_THREADS = 256;
constexpr int TC_PAD = TC_BK + 8;  // row stride of a shared tile, in bf16
constexpr int TC_WM = 64, TC_WN = 32;  // warp tile
constexpr int TC_MI = TC_WM / 16, TC_NI = TC_WN / 8;
constexpr int TC_LOADS = TC_BM * TC_BK / TC_THREADS;  // elements each thread stages per operand and slab
static_assert((TC_BM / TC_WM) * (TC_BN / TC_WN) * 32 == TC_THREADS, "warp grid must cover the block tile");
static_assert(TC_BM == TC_BN, "the staging code assumes square block tiles");
static_assert(TC_BM * TC_BK % TC_THREADS == 0, "staging must divide evenly");
static_assert(TC_THREADS % TC_BK == 0 && TC_THREADS % TC_BM == 0, "staging index math");
static_assert(TC_BK % 16 == 0, "BK must be a multiple of the mma K");
static_assert((TC_PAD * 2) % 16 == 0, "padded rows keep 16-byte alignment");
static_assert(2 * 2 * TC_BM * TC_PAD * 2 <= 48 * 1024, "static shared memory limit");

// Reads one operand slab into registers. `rows_major` = the tile's row index
// (m for A, n for B) is the contiguous one in global memory.
//   Tile element (r, k) (r in [0,128), k in [0,32)) of the operand lives at
//   rows_contig ? P[(k0+k)*ld + r0+r] : P[(r0+r)*ld + k0+k].
template <bool RowsContig>
__device__ __forceinline__ void stage_load(float (&reg)[TC_LOADS], const float* __restrict__ P, long long ld, int r0,
                                           int rmax, int k0, int kmax) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int i = 0; i < TC_LOADS; ++i) {
    int idx = tid + i * TC_THREADS;
    int r, k;
    if (RowsContig) {
      r = idx % TC_BM;
      k = idx / TC_BM;
    } else {
      r = idx / TC_BK;
      k = idx % TC_BK;
    }
    int gr = r0 + r, gk = k0 + k;
    reg[i] = (gr < rmax && gk < kmax) ? __ldg(RowsContig ? &P[(long long)gk * ld + gr] : &P[(long long)gr * ld + gk])
                                      : 0.0f;
  }
}

template <bool RowsContig>
__device__ __forceinline__ void stage_store(const float (&reg)[TC_LOADS], __nv_bfloat16* tile) {
  const int tid = threadIdx.x;
#pragma unroll
  for (int i = 0; i < TC_LOADS; ++i) {
    int idx = tid + i * TC_THREADS;
    int r, k;
    if (RowsContig) {
      r = idx % TC_BM;
      k = idx / TC_BM;
    } else {
      r = idx / TC_BK;
      k = idx % TC_BK;
    }
    tile[r * TC_PAD + k] = __float2bfloat16_rn(reg[i]);
  }
}

// C = (acc ? C : 0) + op(A) op(B) (+ bias). TA: A stored [K, M]; TB: B stored [N, K].
// Gelu (fused bias + GELU, never accumulating): C gets acc + bias as usual and
// gelu_out (same ldc) gets gelu of that value, from the same registers.
template <bool TA, bool TB, bool Gelu>
__device__ __forceinline__ void gemm_bf16_tc_body(int M, int N, int K, const float* __restrict__ A, long long lda,
                                                  const float* __restrict__ B, long long ldb, float* C, long long ldc,
                                                  int accumulate, const float* __restrict__ bias,
                                                  float* __restrict__ gelu_out) {
  __shared__ __align__(16) __nv_bfloat16 As[2][TC_BM * TC_PAD];
  __shared__ __align__(16) __nv_bfloat16 Bs[2][TC_BN * TC_PAD];
  const int bm = blockIdx.y * TC_BM, bn = blockIdx.x * TC_BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / (TC_BN / TC_WN)) * TC_WM, wn = (warp % (TC_BN / TC_WN)) * TC_WN;
  const int g = lane / 4, t = lane % 4;

  float acc[TC_MI][TC_NI][4];
#pragma unroll
  for (int i = 0; i < TC_MI; ++i)
#pragma unroll
    for (int j = 0; j < TC_NI; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  // A [M, K] row-major has k contiguous (RowsContig = false); stored [K, M] has m contiguous.
  float ra[TC_LOADS], rb[TC_LOADS];
  const int nslabs = (K + TC_BK - 1) / TC_BK;
  stage_load<TA>(ra, A, lda, bm, M, 0, K);
  stage_load<!TB>(rb, B, ldb, bn, N, 0, K);
  stage_store<TA>(ra, As[0]);
  stage_store<!TB>(rb, Bs[0]);
  __syncthreads();

  for (int s = 0; s < nslabs; ++s) {
    const int cur = s & 1;
    if (s + 1 < nslabs) {
      stage_load<TA>(ra, A, lda, bm, M, (s + 1) * TC_BK, K);
      stage_load<!TB>(rb, B, ldb, bn, N, (s + 1) * TC_BK, K);
    }
    const __nv_bfloat16* as = As[cur];
    const __nv_bfloat16* bs = Bs[cur];
#pragma unroll
    for (int ks = 0; ks < TC_BK; ks += 16) {
      uint32_t af[TC_MI][4], bf[TC_NI][2];
#pragma unroll
      for (int i = 0; i < TC_MI; ++i) {
        const __nv_bfloat16* p = as + (wm + i * 16 + g) * TC_PAD + ks + 2 * t;
        af[i][0] = lds32(p);
        af[i][1] = lds32(p + 8 * TC_PAD);
        af[i][2] = lds32(p + 8);
        af[i][3] = lds32(p + 8 * TC_PAD + 8);
      }
#pragma unroll
      for (int j = 0; j < TC_NI; ++j) {
        const __nv_bfloat16* p = bs + (wn + j * 8 + g) * TC_PAD + ks + 2 * t;
        bf[j][0] = lds32(p);
        bf[j][1] = lds32(p + 8);
      }
#pragma unroll
      for (int i = 0; i < TC_MI; ++i)
#pragma unroll
        for (int j = 0; j < TC_NI; ++j) mma_bf16_16816(acc[i][j], af[i], bf[j]);
    }
    if (s + 1 < nslabs) {
      // The other buffer was last read in iteration s-1, which every thread
      // finished before the barrier that ended it.
      stage_store<TA>(ra, As[cur ^ 1]);
      stage_store<!TB>(rb, Bs[cur ^ 1]);
    }
    __syncthreads();
  }

#pragma unroll
  for (int i = 0; i < TC_MI; ++i) {
#pragma unroll
    for (int j = 0; j < TC_NI; ++j) {
      const int col = bn + wn + j * 8 + 2 * t;
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int row = bm + wm + i * 16 + g + h * 8;
        if (row >= M) continue;
#pragma unroll
        for (int e = 0; e < 2; ++e) {
          const int c = col + e;
          if (c >= N) continue;
          float v = acc[i][j][h * 2 + e];
          if (bias) v += bias[c];
          float* dst = C + (long long)row * ldc + c;
          if (Gelu) {
            *dst = v;
            gelu_out[(long long)row * ldc + c] = gelu_tanh(v);
          } else {
            *dst = accumulate ? *dst + v : v;
          }
        }
      }
    }
  }
}

template <bool TA, bool TB>
__global__ void __launch_bounds__(TC_THREADS) gemm_bf16_tc_kernel(int M, int N, int K, const float* __restrict__ A,
                                                                  long long lda, const float* __restrict__ B,
                                                                  long long ldb, float* C, long long ldc,
                                                                  int accumulate, const float* __restrict__ bias) {
  gemm_bf16_tc_body<TA, TB, false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, nullptr);
}

// The MLP's c_fc: pre = A @ B + bias (NN), out = gelu(pre), in one epilogue.
__global__ void __launch_bounds__(TC_THREADS) gemm_bf16_tc_gelu_kernel(int M, int N, int K, const float* __restrict__ A,
                                                                       long long lda, const float* __restrict__ B,
                                                                       long long ldb, float* pre, long long ldc,
                                                                       const float* __restrict__ bias,
                                                                       float* __restrict__ out) {
  gemm_bf16_tc_body<false, false, true>(M, N, K, A, lda, B, ldb, pre, ldc, 0, bias, out);
}

// ---- fp32 SIMT kernel: 64x64 tile, 256 threads, 4x4 outputs each ---------
constexpr int F_BM = 64, F_BN = 64, F_BK = 16, F_THREADS = 256;
static_assert(F_BM * F_BK % F_THREADS == 0 && F_BN * F_BK % F_THREADS == 0, "fp32 staging must divide evenly");
static_assert((F_BM / 16) * (F_BN / 16) == 16, "each of 16x16 threads owns a 4x4 strided patch");

template <bool TA, bool TB, bool Gelu>
__device__ __forceinline__ void gemm_fp32_body(int M, int N, int K, const float* __restrict__ A, long long lda,
                                               const float* __restrict__ B, long long ldb, float* C, long long ldc,
                                               int accumulate, const float* __restrict__ bias,
                                               float* __restrict__ gelu_out) {
  __shared__ float As[F_BK][F_BM + 1];
  __shared__ float Bs[F_BK][F_BN + 1];
  const int bm = blockIdx.y * F_BM, bn = blockIdx.x * F_BN;
  const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
  float acc[4][4] = {};
  for (int k0 = 0; k0 < K; k0 += F_BK) {
#pragma unroll
    for (int i = 0; i < F_BM * F_BK / F_THREADS; ++i) {
      int idx = threadIdx.x + i * F_THREADS;
      int m, k;
      if (TA) { m = idx % F_BM; k = idx / F_BM; } else { m = idx / F_BK; k = idx % F_BK; }
      int gm = bm + m, gk = k0 + k;
      As[k][m] = (gm < M && gk < K) ? (TA ? A[(long long)gk * lda + gm] : A[(long long)gm * lda + gk]) : 0.0f;
    }
#pragma unroll
    for (int i = 0; i < F_BN * F_BK / F_THREADS; ++i) {
      int idx = threadIdx.x + i * F_THREADS;
      int n, k;
      if (TB) { n = idx / F_BK; k = idx % F_BK; } else { n = idx % F_BN; k = idx / F_BN; }
      int gn = bn + n, gk = k0 + k;
      Bs[k][n] = (gn < N && gk < K) ? (TB ? B[(long long)gn * ldb + gk] : B[(long long)gk * ldb + gn]) : 0.0f;
    }
    __syncthreads();
#pragma unroll
    for (int k = 0; k < F_BK; ++k) {
      float a[4], b[4];
#pragma unroll
      for (int i = 0; i < 4; ++i) a[i] = As[k][ty + 16 * i];
#pragma unroll
      for (int j = 0; j < 4; ++j) b[j] = Bs[k][tx + 16 * j];
#pragma unroll
      for (int i = 0; i < 4; ++i)
#pragma unroll
        for (int j = 0; j < 4; ++j) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
    }
    __syncthreads();
  }
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    int row = bm + ty + 16 * i;
    if (row >= M) continue;
#pragma unroll
    for (int j = 0; j < 4; ++j) {
      int col = bn + tx + 16 * j;
      if (col >= N) continue;
      float v = acc[i][j];
      if (bias) v += bias[col];
      float* dst = C + (long long)row * ldc + col;
      if (Gelu) {
        *dst = v;
        gelu_out[(long long)row * ldc + col] = gelu_tanh(v);
      } else {
        *dst = accumulate ? *dst + v : v;
      }
    }
  }
}

template <bool TA, bool TB>
__global__ void __launch_bounds__(F_THREADS) gemm_fp32_kernel(int M, int N, int K, const float* __restrict__ A,
                                                               long long lda, const float* __restrict__ B,
                                                               long long ldb, float* C, long long ldc, int accumulate,
                                                               const float* __restrict__ bias) {
  gemm_fp32_body<TA, TB, false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, nullptr);
}

__global__ void __launch_bounds__(F_THREADS) gemm_fp32_gelu_kernel(int M, int N, int K, const float* __restrict__ A,
                                                                    long long lda, const float* __restrict__ B,
                                                                    long long ldb, float* pre, long long ldc,
                                                                    const float* __restrict__ bias,
                                                                    float* __restrict__ out) {
  gemm_fp32_body<false, false, true>(M, N, K, A, lda, B, ldb, pre, ldc, 0, bias, out);
}

// ---- deterministic column sums: partial sums per 256-row chunk, then a
// second pass adds the chunks in order ---------------------------------------
constexpr int CS_ROWS = 256;

__global__ void colsum_partial_kernel(float* __restrict__ partial, const float* __restrict__ x, int M, int N) {
  __shared__ float red[8][33];
  const int tx = threadIdx.x % 32, ty = threadIdx.x / 32;  // 32 x 8
  const int col = blockIdx.x * 32 + tx;
  const int r0 = blockIdx.y * CS_ROWS;
  const int r1 = min(M, r0 + CS_ROWS);
  float s = 0.0f;
  if (col < N)
    for (int r = r0 + ty; r < r1; r += 8) s += x[(long long)r * N + col];
  red[ty][tx] = s;
  __syncthreads();
  if (ty == 0 && col < N) {
    float tot = 0.0f;
#pragma unroll
    for (int i = 0; i < 8; ++i) tot += red[i][tx];
    partial[(long long)blockIdx.y * N + col] = tot;
  }
}

__global__ void colsum_finish_kernel(float* __restrict__ out, const float* __restrict__ partial, int chunks, int N) {
  int col = blockIdx.x * blockDim.x + threadIdx.x;
  if (col >= N) return;
  float s = 0.0f;
  for (int c = 0; c < chunks; ++c) s += partial[(long long)c * N + col];
  out[col] += s;
}

template <bool TA, bool TB>
void launch(int M, int N, int K, const float* A, long long lda, const float* B, long long ldb, float* C,
            long long ldc, bool accumulate, const float* bias, Precision p, cudaStream_t s) {
  if (p == Precision::BF16) {
    dim3 grid(ceil_div(N, TC_BN), ceil_div(M, TC_BM));
    gemm_bf16_tc_kernel<TA, TB><<<grid, TC_THREADS, 0, s>>>(M, N, K, A, lda, B, ldb, C, ldc, accumulate ? 1 : 0, bias);
    CUDA_CHECK_LAUNCH("matmul (bf16 tensor-core kernel)");
  } else {
    dim3 grid(ceil_div(N, F_BN), ceil_div(M, F_BM));
    gemm_fp32_kernel<TA, TB><<<grid, F_THREADS, 0, s>>>(M, N, K, A, lda, B, ldb, C, ldc, accumulate ? 1 : 0, bias);
    CUDA_CHECK_LAUNCH("matmul (fp32 kernel)");
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, const float* A, long long lda, const float* B,
          long long ldb, float* C, long long ldc, bool accumulate, const float* bias, Precision p, cudaStream_t s) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul: negative dimension");
  if (M == 0 || N == 0) return;
  if (!(trans_a && trans_b) &&
      cublaslt_gemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p, s))
    return;
  gemm_own(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p, s);
}

void gemm_own(bool trans_a, bool trans_b, int M, int N, int K, const float* A, long long lda, const float* B,
              long long ldb, float* C, long long ldc, bool accumulate, const float* bias, Precision p,
              cudaStream_t s) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul: negative dimension");
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // op(A) @ op(B) is zero: C = (accumulate ? C : 0) + bias, done by the
    // kernels with an empty K loop.
  }
  if (ceil_div(M, 64) > 65535) throw GptError(ErrorCode::InvalidArgument, "matmul: M = " + std::to_string(M) + " exceeds the grid limit");
  if (!trans_a && !trans_b)
    launch<false, false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p, s);
  else if (!trans_a && trans_b)
    launch<false, true>(M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p, s);
  else if (trans_a && !trans_b)
    launch<true, false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p, s);
  else
    throw GptError(ErrorCode::Internal, "matmul: the TT layout is not instantiated on CUDA");
}

void gemm_bias_gelu(int M, int N, int K, const float* A, const float* B, float* pre, float* out, const float* bias,
                    Precision p, cudaStream_t s) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul_forward_gelu: negative dimension");
  GPT_CHECK_ARG(out != pre, "matmul_forward_gelu: out must be a buffer other than pre");
  if (M == 0 || N == 0) return;
  // cuBLASLt writes pre = A @ B + bias (its bias epilogue), then our GELU
  // kernel writes out: the same tanh GELU as the own kernels' epilogue.
  if (cublaslt_gemm(false, false, M, N, K, A, K, B, N, pre, N, false, bias, p, s)) {
    gelu_forward(out, pre, static_cast<int64_t>(M) * N, s);
    return;
  }
  gemm_bias_gelu_own(M, N, K, A, B, pre, out, bias, p, s);
}

void gemm_bias_gelu_own(int M, int N, int K, const float* A, const float* B, float* pre, float* out,
                        const float* bias, Precision p, cudaStream_t s) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul_forward_gelu: negative dimension");
  GPT_CHECK_ARG(out != pre, "matmul_forward_gelu: out must be a buffer other than pre");
  if (M == 0 || N == 0) return;
  // K == 0: the empty K loop leaves the accumulators at 0, so pre = bias and
  // out = gelu(bias), as the composition gives.
  if (ceil_div(M, 64) > 65535)
    throw GptError(ErrorCode::InvalidArgument, "matmul_forward_gelu: M = " + std::to_string(M) + " exceeds the grid limit");
  if (p == Precision::BF16) {
    dim3 grid(ceil_div(N, TC_BN), ceil_div(M, TC_BM));
    gemm_bf16_tc_gelu_kernel<<<grid, TC_THREADS, 0, s>>>(M, N, K, A, K, B, N, pre, N, bias, out);
    CUDA_CHECK_LAUNCH("matmul_forward_gelu (bf16 tensor-core kernel, bias + GELU epilogue)");
  } else {
    dim3 grid(ceil_div(N, F_BN), ceil_div(M, F_BM));
    gemm_fp32_gelu_kernel<<<grid, F_THREADS, 0, s>>>(M, N, K, A, K, B, N, pre, N, bias, out);
    CUDA_CHECK_LAUNCH("matmul_forward_gelu (fp32 kernel, bias + GELU epilogue)");
  }
}

size_t colsum_scratch_floats(int M, int N) { return (size_t)ceil_div(M, CS_ROWS) * (size_t)N; }

void colsum_accumulate(float* out, const float* x, int M, int N, float* scratch, cudaStream_t s) {
  if (M <= 0 || N <= 0) return;
  int chunks = ceil_div(M, CS_ROWS);
  colsum_partial_kernel<<<dim3(ceil_div(N, 32), chunks), 256, 0, s>>>(scratch, x, M, N);
  CUDA_CHECK_LAUNCH("matmul_backward (bias gradient, partial sums)");
  colsum_finish_kernel<<<ceil_div(N, 256), 256, 0, s>>>(out, scratch, chunks, N);
  CUDA_CHECK_LAUNCH("matmul_backward (bias gradient, final sums)");
}

}  // namespace cuda
}  // namespace gpt
