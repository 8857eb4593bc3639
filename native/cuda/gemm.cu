// GEMM kernels (see gemm.cuh).
//
// Tensor-core kernel: a 128x128 output tile per block of 8 warps (2 x 4), each
// warp 64x32 = 4 x 4 mma tiles of 16x8, K advancing 32 at a time (a slab).
// Operands are fp32 in device memory and bf16 in the mma, so a slab takes two
// steps through shared memory:
//   1. 16-byte cp.async copies of the fp32 slab into a ring of two fp32
//      stages. Each thread owns 4 chunks of 4 floats per operand and always
//      the same ones, so it alone reads them back: its own cp.async wait is
//      all the synchronisation the ring needs.
//   2. Each thread rounds its chunks to bf16 and stores them into one of two
//      bf16 tiles, which the warps read with ldmatrix (.trans for the operands
//      whose contiguous dimension is m or n).
// Slab s is multiplied out of bf16 tile s&1 while slabs s+1 and s+2 are in
// flight; then slab s+1 is converted into the other tile, slab s+3 issued
// into the stage it left, and one barrier ends the slab.
// Shared memory: 2 x 32 KiB of fp32 stages + 2 x 16 KiB of bf16 tiles =
// 96 KiB of dynamic shared memory (within sm_86/89's 99 KiB per block).
// bf16 tiles are XOR-swizzled in 16-byte chunks, without padding, so that the
// 8 rows of every ldmatrix matrix and every warp's conversion stores fall in
// distinct banks:
//   k-major tile [r][k] (k contiguous, 64 B rows): chunk k/8 ^ (r/2)%4;
//   r-major tile [k][r] (r contiguous, 256 B rows): chunk r/8 ^ k%8.
// Unaligned operands (pointer not 16-byte aligned or a leading dimension not
// a multiple of 4) and chunks cut by the edge of M, N or K are copied 4 bytes
// at a time, the elements past the edge stored as zeros (a chunk wholly past
// it as one 16-byte zero store), so edge tiles need no other case.
#include <cuda_bf16.h>

#include <atomic>
#include <stdint.h>
#include <string>

#include "../core/error.h"
#include "check.cuh"
#include "common.cuh"
#include "cublaslt.h"
#include "gemm.cuh"
#include "ops.cuh"
#include "smem_copy.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr int TC_BM = 128, TC_BN = 128, TC_BK = 32, TC_THREADS = 256;
constexpr int TC_WM = 64, TC_WN = 32;  // warp tile
constexpr int TC_MI = TC_WM / 16, TC_NI = TC_WN / 8;
constexpr int TC_CHUNKS = TC_BM * TC_BK / 4;           // 4-float chunks per operand and slab
constexpr int TC_CPT = TC_CHUNKS / TC_THREADS;         // chunks each thread copies per operand and slab
constexpr int TC_STAGES = 2;                           // fp32 stages (plus the bf16 tile: 3 slabs resident)
constexpr int TC_TILE = TC_BM * TC_BK;                 // bf16 elements of one operand tile
constexpr int TC_SMEM = TC_STAGES * 2 * TC_CHUNKS * 16 + 2 * 2 * TC_TILE * 2;
static_assert((TC_BM / TC_WM) * (TC_BN / TC_WN) * 32 == TC_THREADS, "warp grid must cover the block tile");
static_assert(TC_BM == TC_BN, "the staging code assumes square block tiles");
static_assert(TC_CHUNKS % TC_THREADS == 0, "staging must divide evenly");
static_assert(TC_BK == 32 && TC_BM == 128, "the chunk maps and swizzles assume 128 x 32 operand tiles");
static_assert(TC_NI % 2 == 0, "B fragments are loaded two n8 tiles at a time");
static_assert(TC_SMEM <= 99 * 1024, "must fit sm_86/89's per-block opt-in limit");

// Offset (in bf16) of operand tile element (r, k): r in [0,128) is m for A
// and n for B. RowsContig: the tile is r-major ([k][r]), else k-major ([r][k]).
template <bool RowsContig>
__device__ __forceinline__ int tile_off(int r, int k) {
  if (RowsContig) return k * TC_BM + ((((r >> 3) ^ (k & 7))) << 3) + (r & 7);
  return r * TC_BK + ((((k >> 3) ^ ((r >> 1) & 3))) << 3) + (k & 7);
}

// Chunk c of a slab: 4 elements contiguous in global memory. RowsContig (r is
// contiguous in memory: A stored [K, M], B stored [K, N]): (k, r..r+3);
// else (r, k..k+3). Consecutive threads take consecutive chunks (coalesced).
template <bool RowsContig>
__device__ __forceinline__ void chunk_rk(int c, int& r, int& k) {
  if (RowsContig) {
    k = c / (TC_BM / 4);
    r = (c % (TC_BM / 4)) * 4;
  } else {
    r = c / (TC_BK / 4);
    k = (c % (TC_BK / 4)) * 4;
  }
}

// Issues this thread's copies of one operand slab into an fp32 stage (not
// committed). Tile element (r, k) lives at
//   RowsContig ? P[(k0+k)*ld + r0+r] : P[(r0+r)*ld + k0+k].
// vec: P is 16-byte aligned and ld a multiple of 4, so every chunk is too.
template <bool RowsContig>
__device__ __forceinline__ void issue_slab(float* stage, const float* __restrict__ P, long long ld, int r0, int rmax,
                                           int k0, int kmax, bool vec) {
#pragma unroll
  for (int i = 0; i < TC_CPT; ++i) {
    const int c = threadIdx.x + i * TC_THREADS;
    int r, k;
    chunk_rk<RowsContig>(c, r, k);
    const int gr = r0 + r, gk = k0 + k;
    // Valid elements of the chunk along its contiguous dimension.
    const int n = RowsContig ? (gk < kmax ? min(max(rmax - gr, 0), 4) : 0)
                             : (gr < rmax ? min(max(kmax - gk, 0), 4) : 0);
    float* dst = stage + 4 * c;
    if (n == 0) {
      *reinterpret_cast<float4*>(dst) = make_float4(0.0f, 0.0f, 0.0f, 0.0f);
      continue;
    }
    const float* src = RowsContig ? P + (long long)gk * ld + gr : P + (long long)gr * ld + gk;
    if (vec && n == 4) {
      cp_async_16(dst, src);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (e < n)
          cp_async_4(dst + e, src + e);
        else
          dst[e] = 0.0f;
      }
    }
  }
}

// Rounds this thread's chunks of a landed fp32 stage to bf16 into a tile.
template <bool RowsContig>
__device__ __forceinline__ void convert_slab(const float* stage, __nv_bfloat16* tile) {
#pragma unroll
  for (int i = 0; i < TC_CPT; ++i) {
    const int c = threadIdx.x + i * TC_THREADS;
    int r, k;
    chunk_rk<RowsContig>(c, r, k);
    const float4 v = *reinterpret_cast<const float4*>(stage + 4 * c);
    __nv_bfloat162 lo = __floats2bfloat162_rn(v.x, v.y), hi = __floats2bfloat162_rn(v.z, v.w);
    uint2 packed;
    packed.x = *reinterpret_cast<const uint32_t*>(&lo);
    packed.y = *reinterpret_cast<const uint32_t*>(&hi);
    *reinterpret_cast<uint2*>(tile + tile_off<RowsContig>(r, k)) = packed;
  }
}

// Four 8x8 bf16 matrices of an operand tile with one ldmatrix: rows r..r+7 of
// the tile at k..k+7 as a k-major (non-transposed) read, or, for an r-major
// tile, .trans of rows k..k+7 at r..r+7; (r, k) is this lane's row address.
template <bool RowsContig>
__device__ __forceinline__ void ldm_x4(uint32_t* regs, const __nv_bfloat16* tile, int r, int k) {
  if (RowsContig)
    ldmatrix_x4_trans(regs, tile + tile_off<true>(r, k));
  else
    ldmatrix_x4(regs, tile + tile_off<false>(r, k));
}

// C = (acc ? C : 0) + op(A) op(B) (+ bias). TA: A stored [K, M]; TB: B stored [N, K].
// Gelu (fused bias + GELU, never accumulating): C gets acc + bias as usual and
// gelu_out (same ldc) gets gelu of that value, from the same registers.
template <bool TA, bool TB, bool Gelu>
__device__ __forceinline__ void gemm_bf16_tc_body(int M, int N, int K, const float* __restrict__ A, long long lda,
                                                  const float* __restrict__ B, long long ldb, float* C, long long ldc,
                                                  int accumulate, const float* __restrict__ bias,
                                                  float* __restrict__ gelu_out) {
  // A [M, K] row-major has k contiguous; stored [K, M] (TA) m contiguous.
  // B [K, N] row-major has n contiguous; stored [N, K] (TB) k contiguous.
  constexpr bool AR = TA, BR = !TB;  // operand tile is r-major
  extern __shared__ __align__(16) unsigned char gemm_smem[];
  float* stages = reinterpret_cast<float*>(gemm_smem);  // [TC_STAGES][2][TC_CHUNKS * 4]
  __nv_bfloat16* tiles = reinterpret_cast<__nv_bfloat16*>(gemm_smem + TC_STAGES * 2 * TC_CHUNKS * 16);  // [2][2][TC_TILE]
  auto stage_a = [&](int st) { return stages + (st * 2 + 0) * TC_CHUNKS * 4; };
  auto stage_b = [&](int st) { return stages + (st * 2 + 1) * TC_CHUNKS * 4; };
  auto tile_a = [&](int b) { return tiles + (b * 2 + 0) * TC_TILE; };
  auto tile_b = [&](int b) { return tiles + (b * 2 + 1) * TC_TILE; };

  const int bm = blockIdx.y * TC_BM, bn = blockIdx.x * TC_BN;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / (TC_BN / TC_WN)) * TC_WM, wn = (warp % (TC_BN / TC_WN)) * TC_WN;
  const int g = lane / 4, t = lane % 4;
  const bool vec_a = (reinterpret_cast<uintptr_t>(A) & 15) == 0 && (lda & 3) == 0;
  const bool vec_b = (reinterpret_cast<uintptr_t>(B) & 15) == 0 && (ldb & 3) == 0;

  float acc[TC_MI][TC_NI][4];
#pragma unroll
  for (int i = 0; i < TC_MI; ++i)
#pragma unroll
    for (int j = 0; j < TC_NI; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  // Slab j goes to fp32 stage j % 2 and bf16 tile j & 1. One commit group per
  // slab, empty past the last, so cp_async_wait<1> always means "all but the
  // newest slab landed".
  const int nslabs = (K + TC_BK - 1) / TC_BK;
  auto issue = [&](int j) {
    if (j < nslabs) {
      issue_slab<AR>(stage_a(j % TC_STAGES), A, lda, bm, M, j * TC_BK, K, vec_a);
      issue_slab<BR>(stage_b(j % TC_STAGES), B, ldb, bn, N, j * TC_BK, K, vec_b);
    }
    cp_async_commit();
  };
  if (nslabs > 0) {
    issue(0);
    issue(1);
    cp_async_wait<1>();  // slab 0 (this thread's chunks)
    convert_slab<AR>(stage_a(0), tile_a(0));
    convert_slab<BR>(stage_b(0), tile_b(0));
    issue(2);  // into stage 0, just read back by this thread
    __syncthreads();
  }

  for (int s = 0; s < nslabs; ++s) {
    const __nv_bfloat16* as = tile_a(s & 1);
    const __nv_bfloat16* bs = tile_b(s & 1);
#pragma unroll
    for (int ks = 0; ks < TC_BK; ks += 16) {
      uint32_t af[TC_MI][4], bf[TC_NI][2];
#pragma unroll
      for (int i = 0; i < TC_MI; ++i) {
        // Matrices: (m lo, k lo), (m hi, k lo), (m lo, k hi), (m hi, k hi) = a0..a3.
        const int r = wm + i * 16 + ((lane >> 3) & 1) * 8 + (AR ? 0 : (lane & 7));
        const int k = ks + (lane >> 4) * 8 + (AR ? (lane & 7) : 0);
        ldm_x4<AR>(af[i], as, r, k);
      }
#pragma unroll
      for (int j = 0; j < TC_NI; j += 2) {
        // Matrices: (n lo, k lo), (n lo, k hi), (n hi, k lo), (n hi, k hi) =
        // b0, b1 of n8 tile j, then of tile j+1.
        const int r = wn + j * 8 + (lane >> 4) * 8 + (BR ? 0 : (lane & 7));
        const int k = ks + ((lane >> 3) & 1) * 8 + (BR ? (lane & 7) : 0);
        uint32_t q[4];
        ldm_x4<BR>(q, bs, r, k);
        bf[j][0] = q[0];
        bf[j][1] = q[1];
        bf[j + 1][0] = q[2];
        bf[j + 1][1] = q[3];
      }
#pragma unroll
      for (int i = 0; i < TC_MI; ++i)
#pragma unroll
        for (int j = 0; j < TC_NI; ++j) mma_bf16_16816(acc[i][j], af[i], bf[j]);
    }
    if (s + 1 < nslabs) {
      // Slab s+1 into the other bf16 tile, last read by slab s-1's mma,
      // which every warp finished before the barrier that ended it.
      cp_async_wait<1>();
      convert_slab<AR>(stage_a((s + 1) % TC_STAGES), tile_a((s + 1) & 1));
      convert_slab<BR>(stage_b((s + 1) % TC_STAGES), tile_b((s + 1) & 1));
    }
    issue(s + 3);  // into the stage slab s+1 just left (this thread's own chunks)
    // Every warp's part of slab s+1 is in its tile before any warp reads it.
    __syncthreads();
  }
  cp_async_wait_all();  // nothing real is pending (groups past the last slab are empty)

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
__global__ void __launch_bounds__(TC_THREADS, 1) gemm_bf16_tc_kernel(int M, int N, int K, const float* __restrict__ A,
                                                                  long long lda, const float* __restrict__ B,
                                                                  long long ldb, float* C, long long ldc,
                                                                  int accumulate, const float* __restrict__ bias) {
  gemm_bf16_tc_body<TA, TB, false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, nullptr);
}

// The MLP's c_fc: pre = A @ B + bias (NN), out = gelu(pre), in one epilogue.
__global__ void __launch_bounds__(TC_THREADS, 1) gemm_bf16_tc_gelu_kernel(int M, int N, int K, const float* __restrict__ A,
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

// Raises a tensor-core kernel's dynamic shared-memory limit to TC_SMEM once
// per process and instantiation (threads racing here set the same value),
// first checking the device allows that much per block.
template <typename Kern>
void tc_allow_smem(Kern* kernel, std::atomic<bool>& done, const char* op) {
  if (done.load()) return;
  int dev = 0, optin = 0;
  CUDA_CHECK(cudaGetDevice(&dev), op);
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), op);
  if (TC_SMEM > optin)
    throw GptError(ErrorCode::Internal, std::string(op) + ": the bf16 tensor-core kernel needs " +
                                               std::to_string(TC_SMEM) + " bytes of shared memory per block, this GPU allows " +
                                               std::to_string(optin));
  CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  TC_SMEM),
             op);
  done.store(true);
}

template <bool TA, bool TB>
void launch(int M, int N, int K, const float* A, long long lda, const float* B, long long ldb, float* C,
            long long ldc, bool accumulate, const float* bias, Precision p, cudaStream_t s) {
  if (p == Precision::BF16) {
    dim3 grid(ceil_div(N, TC_BN), ceil_div(M, TC_BM));
    static std::atomic<bool> smem_done{false};
    tc_allow_smem(gemm_bf16_tc_kernel<TA, TB>, smem_done, "matmul (bf16 tensor-core kernel)");
    gemm_bf16_tc_kernel<TA, TB><<<grid, TC_THREADS, TC_SMEM, s>>>(M, N, K, A, lda, B, ldb, C, ldc, accumulate ? 1 : 0, bias);
    CUDA_CHECK_LAUNCH("matmul (bf16 tensor-core kernel)");
  } else {
    dim3 grid(ceil_div(N, F_BN), ceil_div(M, F_BM));
    gemm_fp32_kernel<TA, TB><<<grid, F_THREADS, 0, s>>>(M, N, K, A, lda, B, ldb, C, ldc, accumulate ? 1 : 0, bias);
    CUDA_CHECK_LAUNCH("matmul (fp32 kernel)");
  }
}

}  // namespace

void gemm(bool trans_a, bool trans_b, int M, int N, int K, CTensorRef A, long long lda, CTensorRef B, long long ldb,
          TensorRef C, long long ldc, bool accumulate, const float* bias, Precision p, cudaStream_t s,
          const GemmScratch* scratch) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul: negative dimension");
  if (M == 0 || N == 0) return;
  if (!(trans_a && trans_b) &&
      cublaslt_gemm(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p, s,
                    scratch ? scratch->ptr : nullptr, scratch ? scratch->bytes : 0))
    return;
  gemm_own(trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p, s);
}

void gemm_own(bool trans_a, bool trans_b, int M, int N, int K, CTensorRef A_ref, long long lda, CTensorRef B_ref,
              long long ldb, TensorRef C_ref, long long ldc, bool accumulate, const float* bias, Precision p,
              cudaStream_t s) {
  const float* A = A_ref.f32("matmul A");
  const float* B = B_ref.f32("matmul B");
  float* C = C_ref.f32("matmul C");
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

void gemm_bias_gelu(int M, int N, int K, CTensorRef A, CTensorRef B, TensorRef pre, TensorRef out, const float* bias,
                    Precision p, cudaStream_t s, const GemmScratch* scratch) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul_forward_gelu: negative dimension");
  GPT_CHECK_ARG(out.ptr != pre.ptr, "matmul_forward_gelu: out must be a buffer other than pre");
  if (M == 0 || N == 0) return;
  // cuBLASLt writes pre = A @ B + bias (its bias epilogue), then our GELU
  // kernel writes out: the same tanh GELU as the own kernels' epilogue.
  if (cublaslt_gemm(false, false, M, N, K, A, K, B, N, pre, N, false, bias, p, s, scratch ? scratch->ptr : nullptr,
                    scratch ? scratch->bytes : 0)) {
    gelu_forward(out, pre, static_cast<int64_t>(M) * N, s);
    return;
  }
  gemm_bias_gelu_own(M, N, K, A, B, pre, out, bias, p, s);
}

void gemm_bias_gelu_own(int M, int N, int K, CTensorRef A_ref, CTensorRef B_ref, TensorRef pre_ref, TensorRef out_ref,
                        const float* bias, Precision p, cudaStream_t s) {
  const float* A = A_ref.f32("matmul_forward_gelu A");
  const float* B = B_ref.f32("matmul_forward_gelu B");
  float* pre = pre_ref.f32("matmul_forward_gelu pre");
  float* out = out_ref.f32("matmul_forward_gelu out");
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul_forward_gelu: negative dimension");
  GPT_CHECK_ARG(out != pre, "matmul_forward_gelu: out must be a buffer other than pre");
  if (M == 0 || N == 0) return;
  // K == 0: the empty K loop leaves the accumulators at 0, so pre = bias and
  // out = gelu(bias), as the composition gives.
  if (ceil_div(M, 64) > 65535)
    throw GptError(ErrorCode::InvalidArgument, "matmul_forward_gelu: M = " + std::to_string(M) + " exceeds the grid limit");
  if (p == Precision::BF16) {
    dim3 grid(ceil_div(N, TC_BN), ceil_div(M, TC_BM));
    static std::atomic<bool> smem_done{false};
    tc_allow_smem(gemm_bf16_tc_gelu_kernel, smem_done, "matmul_forward_gelu (bf16 tensor-core kernel)");
    gemm_bf16_tc_gelu_kernel<<<grid, TC_THREADS, TC_SMEM, s>>>(M, N, K, A, K, B, N, pre, N, bias, out);
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
