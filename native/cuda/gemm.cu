// GEMM kernels (see gemm.cuh).
//
// Tensor-core kernel: a 128x128 output tile per block of 8 warps (2 x 4), each
// warp 64x32 = 4 x 4 mma tiles of 16x8, K advancing 32 at a time (a slab).
// Each operand is fp32 or bf16 in device memory and bf16 in the mma.
// An fp32 operand takes two steps through shared memory per slab:
//   1. 16-byte cp.async copies of the fp32 slab into a ring of two fp32
//      stages. Each thread owns 4 chunks of 4 floats per operand and always
//      the same ones, so it alone reads them back: its own cp.async wait is
//      all the synchronisation the ring needs.
//   2. Each thread rounds its chunks to bf16 and stores them into one of two
//      bf16 tiles, which the warps read with ldmatrix (.trans for the operands
//      whose contiguous dimension is m or n).
// A bf16 operand is copied by cp.async straight into a ring of four bf16
// tiles (2 chunks of 8 elements per thread and slab), which live in the
// memory its fp32 stages would use: slab j in ring tile j % 4, so the tile a
// slab is issued into was last read by the mma two slabs earlier, which every
// warp finished before the barrier that ended that slab.
// Slab s is multiplied out of its bf16 tile while slabs s+1 and s+2 are in
// flight; then slab s+1 (fp32 operands) is converted into the other tile,
// slab s+3 issued, and one barrier ends the slab. Rounding an fp32 operand
// while staging gives the tile its bf16 copy would: the same bits out.
// Shared memory: 2 x 32 KiB of fp32 stages (or bf16 rings) + 2 x 16 KiB of
// bf16 tiles = 96 KiB of dynamic shared memory (within sm_86/89's 99 KiB per
// block).
// bf16 tiles are XOR-swizzled in 16-byte chunks, without padding, so that the
// 8 rows of every ldmatrix matrix and every warp's conversion stores fall in
// distinct banks:
//   k-major tile [r][k] (k contiguous, 64 B rows): chunk k/8 ^ (r/2)%4;
//   r-major tile [k][r] (r contiguous, 256 B rows): chunk r/8 ^ k%8.
// Unaligned operands and chunks cut by the edge of M, N or K: an fp32 chunk
// is copied 4 bytes at a time; a bf16 chunk by the widest copies its
// alignment allows (16 bytes zero-filled past the edge, else 8, 4 or 2 bytes);
// elements past the edge are stored as zeros (a chunk wholly past it as one
// 16-byte zero store), so edge tiles need no other case.
// Epilogue: bias (fp32) is added to the fp32 accumulator, which is stored as
// fp32 or rounded once to bf16 (C; the GELU output is the GELU of the fp32
// value).
// Block order: grouped along the larger operand (tc_block_tile below).
#include <cuda_bf16.h>

#include <atomic>
#include <stdint.h>
#include <string>
#include <type_traits>
#include <vector>

#include "../core/error.h"
#include "check.cuh"
#include "common.cuh"
#include "cublaslt.h"
#include "gemm.cuh"
#include "gemm_order.h"
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

// Which output tile a block computes. The grid stays (tiles of N, tiles of
// M); the linear block id (blockIdx.x fastest, the order blocks start in)
// goes through grouped_tile (gemm_order.h): groups of TC_GROUP tiles along
// the dimension of the larger operand (M x K of A against N x K of B, in
// bytes; K is common), each group walked down the other dimension whole.
// The group's strip of the large operand (TC_GROUP x 128 x K elements) stays
// in L2 while the whole small operand streams past it; that operand is read
// from L2 once per group, from DRAM about once when it fits L2.
// The LM head (matmul_nt, A = lnf [BT, 768] bf16, B = wte [50304, 768] bf16;
// BT = 8192: 64 x 393 tiles; an operand tile is 128 x 768 x 2 B = 192 KiB;
// 132 SMs, one block each, so a wave is 132 blocks):
//   row-major (the old order): a wave is 1 A tile + 132 wte tiles (25 MiB),
//     each wte tile used by one block; a row of 393 tiles reads all of wte
//     (74 MiB, past a 50 MB L2) before the next row starts again, so wte
//     comes from DRAM once per row of tiles: 64 x 77 MB = 4.9 GB a call;
//   grouped along N (wte is the larger, so this order): a wave is 8 wte
//     tiles + 17 A tiles (132 / 8 = 16.5 rows; 25 tiles, 4.7 MiB), each wte
//     tile shared by 16-17 blocks at once; the group walks all 64 rows
//     (512 blocks, ~4 waves) with its 8 wte tiles (1.5 MiB) in L2, so wte
//     comes from DRAM once (77 MB) and A (12 MiB, fits L2) about once:
//     ~90 MB a call;
//   grouped along M (the other way): the same 4.7 MiB wave, but every group
//     of 8 rows streams all of wte: 8 passes, 0.6 GB.
// With TC_GROUP or fewer tiles in the group dimension the order is plain
// row-major (grouped along N) or column-major (along M). Which tile a block
// computes changes nothing in its arithmetic: C is bitwise the same.
constexpr int TC_GROUP = 8;

// Every tile exactly once (checked here at compile time): single tiles, one
// row or column of tiles, ragged last groups, exact multiples of the group.
inline constexpr bool tc_order_checked() {
  const int sizes[] = {1, 2, 3, 7, 8, 9, 10, 15, 16, 17, 23};
  const int groups[] = {1, 3, TC_GROUP};
  for (int r : sizes)
    for (int c : sizes)
      for (int g : groups)
        if (!grouped_tile_is_bijection(r, c, g)) return false;
  return true;
}
static_assert(tc_order_checked(), "grouped_tile must map the block ids onto every tile exactly once");
// The order the comment above counts on (the LM head: N's 393 tiles the
// group dimension, M's 64 the other): blocks 0-7 take wte tiles 0-7 against
// A's row tile 0, block 8 the same wte tiles against row tile 1, and the
// second group (wte tiles 8-15) starts at block 8 x 64.
static_assert(grouped_tile(7, 393, 64, TC_GROUP).major == 7 && grouped_tile(7, 393, 64, TC_GROUP).minor == 0 &&
                  grouped_tile(8, 393, 64, TC_GROUP).major == 0 && grouped_tile(8, 393, 64, TC_GROUP).minor == 1 &&
                  grouped_tile(8 * 64, 393, 64, TC_GROUP).major == 8 &&
                  grouped_tile(8 * 64, 393, 64, TC_GROUP).minor == 0,
              "grouped_tile must walk a group's tiles fastest");

// This block's tile origin (bm, bn). Block ids stay within int: C holds
// 16384 elements per block.
template <typename AT, typename BT>
__device__ __forceinline__ void tc_block_tile(int M, int N, int& bm, int& bn) {
  const int mt = static_cast<int>(gridDim.y), nt = static_cast<int>(gridDim.x);
  const int id = static_cast<int>(blockIdx.y) * nt + static_cast<int>(blockIdx.x);
  if (static_cast<long long>(N) * sizeof(BT) >= static_cast<long long>(M) * sizeof(AT)) {
    const GemmTile t = grouped_tile(id, nt, mt, TC_GROUP);  // B the larger: groups of N tiles
    bm = t.minor * TC_BM;
    bn = t.major * TC_BN;
  } else {
    const GemmTile t = grouped_tile(id, mt, nt, TC_GROUP);  // A the larger: groups of M tiles
    bm = t.major * TC_BM;
    bn = t.minor * TC_BN;
  }
}

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

// bf16 operands: chunk c of a slab is 8 elements contiguous in global memory
// (16 bytes), mapped as chunk_rk does with 8 in place of 4.
constexpr int TC_CHUNKS16 = TC_BM * TC_BK / 8;  // 8-element chunks per operand and slab
constexpr int TC_CPT16 = TC_CHUNKS16 / TC_THREADS;
static_assert(TC_CHUNKS16 % TC_THREADS == 0, "bf16 staging must divide evenly");
constexpr int TC_RING = 4;  // bf16 ring tiles of a bf16 operand
static_assert(TC_RING * TC_TILE * 2 == TC_STAGES * TC_CHUNKS * 16, "a bf16 ring fills its operand's fp32 stages");

template <bool RowsContig>
__device__ __forceinline__ void chunk16_rk(int c, int& r, int& k) {
  if (RowsContig) {
    k = c / (TC_BM / 8);
    r = (c % (TC_BM / 8)) * 8;
  } else {
    r = c / (TC_BK / 8);
    k = (c % (TC_BK / 8)) * 8;
  }
}

// Bytes every chunk of a bf16 operand is aligned to (16, 8, 4 or 2): chunks
// start 8 elements apart within a row, rows ld elements apart.
__device__ __forceinline__ int bf16_align(const void* P, long long ld) {
  const unsigned a = static_cast<unsigned>(reinterpret_cast<uintptr_t>(P) | static_cast<uintptr_t>(ld * 2)) | 16u;
  return static_cast<int>(a & (0u - a));
}

// Issues this thread's copies of one bf16 operand slab straight into a bf16
// tile (not committed). Element (r, k) as in issue_slab.
template <bool RowsContig>
__device__ __forceinline__ void issue_slab(__nv_bfloat16* tile, const __nv_bfloat16* __restrict__ P, long long ld,
                                           int r0, int rmax, int k0, int kmax, int align) {
#pragma unroll
  for (int i = 0; i < TC_CPT16; ++i) {
    const int c = threadIdx.x + i * TC_THREADS;
    int r, k;
    chunk16_rk<RowsContig>(c, r, k);
    const int gr = r0 + r, gk = k0 + k;
    const int n = RowsContig ? (gk < kmax ? min(max(rmax - gr, 0), 8) : 0)
                             : (gr < rmax ? min(max(kmax - gk, 0), 8) : 0);
    uint16_t* dst = reinterpret_cast<uint16_t*>(tile + tile_off<RowsContig>(r, k));
    if (n == 0) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
      continue;
    }
    const uint16_t* src =
        reinterpret_cast<const uint16_t*>(RowsContig ? P + (long long)gk * ld + gr : P + (long long)gr * ld + gk);
    if (align >= 16) {
      if (n == 8)
        cp_async_16(dst, src);
      else
        cp_async_16_zfill(dst, src, 2 * n);
      continue;
    }
    int e = 0;
    if (align >= 8)
      for (; e + 4 <= n; e += 4) cp_async_8(dst + e, src + e);
    if (align >= 4)
      for (; e + 2 <= n; e += 2) cp_async_4(dst + e, src + e);
    for (; e < n; ++e) dst[e] = src[e];  // 2-byte aligned: plain loads
    for (; e < 8; ++e) dst[e] = 0;
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
// AT, BT: float or __nv_bfloat16 operands; CT: float or __nv_bfloat16 C (a
// bf16 C never accumulates: the launchers refuse it).
// Gelu (fused bias + GELU, never accumulating): C gets acc + bias as usual and
// gelu_out (same ldc and type) gets gelu of that value, from the same registers.
template <bool TA, bool TB, typename AT, typename BT, typename CT, bool Gelu>
__device__ __forceinline__ void gemm_bf16_tc_body(int M, int N, int K, const AT* __restrict__ A, long long lda,
                                                  const BT* __restrict__ B, long long ldb, CT* C, long long ldc,
                                                  int accumulate, const float* __restrict__ bias,
                                                  CT* __restrict__ gelu_out) {
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
  constexpr bool A16 = std::is_same<AT, __nv_bfloat16>::value, B16 = std::is_same<BT, __nv_bfloat16>::value;
  // Ring tile q (0..3) of a bf16 operand: in its fp32 stage q / 2.
  auto ring_a = [&](int q) { return reinterpret_cast<__nv_bfloat16*>(stage_a(q >> 1)) + (q & 1) * TC_TILE; };
  auto ring_b = [&](int q) { return reinterpret_cast<__nv_bfloat16*>(stage_b(q >> 1)) + (q & 1) * TC_TILE; };
  // The bf16 tile slab j is multiplied out of.
  auto mma_a = [&](int j) { return A16 ? ring_a(j % TC_RING) : tile_a(j & 1); };
  auto mma_b = [&](int j) { return B16 ? ring_b(j % TC_RING) : tile_b(j & 1); };

  int bm, bn;
  tc_block_tile<AT, BT>(M, N, bm, bn);
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
  const int wm = (warp / (TC_BN / TC_WN)) * TC_WM, wn = (warp % (TC_BN / TC_WN)) * TC_WN;
  const int g = lane / 4, t = lane % 4;
  // fp32: every 4-float chunk 16-byte aligned; bf16: the bytes every chunk is aligned to.
  const int vec_a = A16 ? bf16_align(A, lda) : ((reinterpret_cast<uintptr_t>(A) & 15) == 0 && (lda & 3) == 0);
  const int vec_b = B16 ? bf16_align(B, ldb) : ((reinterpret_cast<uintptr_t>(B) & 15) == 0 && (ldb & 3) == 0);

  float acc[TC_MI][TC_NI][4];
#pragma unroll
  for (int i = 0; i < TC_MI; ++i)
#pragma unroll
    for (int j = 0; j < TC_NI; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) acc[i][j][c] = 0.0f;

  // Slab j of an fp32 operand goes to fp32 stage j % 2 and bf16 tile j & 1;
  // of a bf16 operand, to ring tile j % 4. One commit group per slab, empty
  // past the last, so cp_async_wait<1> always means "all but the newest slab
  // landed".
  const int nslabs = (K + TC_BK - 1) / TC_BK;
  auto issue = [&](int j) {
    if (j < nslabs) {
      if constexpr (A16)
        issue_slab<AR>(ring_a(j % TC_RING), A, lda, bm, M, j * TC_BK, K, vec_a);
      else
        issue_slab<AR>(stage_a(j % TC_STAGES), A, lda, bm, M, j * TC_BK, K, vec_a != 0);
      if constexpr (B16)
        issue_slab<BR>(ring_b(j % TC_RING), B, ldb, bn, N, j * TC_BK, K, vec_b);
      else
        issue_slab<BR>(stage_b(j % TC_STAGES), B, ldb, bn, N, j * TC_BK, K, vec_b != 0);
    }
    cp_async_commit();
  };
  // The fp32 operands of landed slab j into their bf16 tiles.
  auto convert = [&](int j) {
    if constexpr (!A16) convert_slab<AR>(stage_a(j % TC_STAGES), tile_a(j & 1));
    if constexpr (!B16) convert_slab<BR>(stage_b(j % TC_STAGES), tile_b(j & 1));
  };
  if (nslabs > 0) {
    issue(0);
    issue(1);
    cp_async_wait<1>();  // slab 0 (this thread's chunks)
    convert(0);
    issue(2);  // into stage 0, just read back by this thread (or ring tile 2)
    __syncthreads();
  }

  for (int s = 0; s < nslabs; ++s) {
    const __nv_bfloat16* as = mma_a(s);
    const __nv_bfloat16* bs = mma_b(s);
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
      convert(s + 1);
    }
    // fp32: into the stage slab s+1 just left (this thread's own chunks);
    // bf16: into ring tile (s+3) % 4 = (s-1) % 4, read by slab s-1's mma.
    issue(s + 3);
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
          const long long o = (long long)row * ldc + c;
          if (Gelu) {
            store_f32(C, o, v);
            store_f32(gelu_out, o, gelu_tanh(v));
          } else {
            store_f32(C, o, accumulate ? load_f32(C, o) + v : v);
          }
        }
      }
    }
  }
}

template <bool TA, bool TB, typename AT, typename BT, typename CT>
__global__ void __launch_bounds__(TC_THREADS, 1) gemm_bf16_tc_kernel(int M, int N, int K, const AT* __restrict__ A,
                                                                  long long lda, const BT* __restrict__ B,
                                                                  long long ldb, CT* C, long long ldc,
                                                                  int accumulate, const float* __restrict__ bias) {
  gemm_bf16_tc_body<TA, TB, AT, BT, CT, false>(M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, nullptr);
}

// The MLP's c_fc: pre = A @ B + bias (NN), out = gelu(pre), in one epilogue.
template <typename AT, typename BT, typename CT>
__global__ void __launch_bounds__(TC_THREADS, 1) gemm_bf16_tc_gelu_kernel(int M, int N, int K, const AT* __restrict__ A,
                                                                       long long lda, const BT* __restrict__ B,
                                                                       long long ldb, CT* pre, long long ldc,
                                                                       const float* __restrict__ bias,
                                                                       CT* __restrict__ out) {
  gemm_bf16_tc_body<false, false, AT, BT, CT, true>(M, N, K, A, lda, B, ldb, pre, ldc, 0, bias, out);
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
void launch_fp32(int M, int N, int K, const float* A, long long lda, const float* B, long long ldb, float* C,
                 long long ldc, bool accumulate, const float* bias, cudaStream_t s) {
  dim3 grid(ceil_div(N, F_BN), ceil_div(M, F_BM));
  gemm_fp32_kernel<TA, TB><<<grid, F_THREADS, 0, s>>>(M, N, K, A, lda, B, ldb, C, ldc, accumulate ? 1 : 0, bias);
  CUDA_CHECK_LAUNCH("matmul (fp32 kernel)");
}

template <bool TA, bool TB, typename AT, typename BT, typename CT>
void launch_tc(int M, int N, int K, const void* A, long long lda, const void* B, long long ldb, void* C,
               long long ldc, bool accumulate, const float* bias, cudaStream_t s) {
  dim3 grid(ceil_div(N, TC_BN), ceil_div(M, TC_BM));
  static std::atomic<bool> smem_done{false};
  tc_allow_smem(gemm_bf16_tc_kernel<TA, TB, AT, BT, CT>, smem_done, "matmul (bf16 tensor-core kernel)");
  gemm_bf16_tc_kernel<TA, TB, AT, BT, CT><<<grid, TC_THREADS, TC_SMEM, s>>>(
      M, N, K, static_cast<const AT*>(A), lda, static_cast<const BT*>(B), ldb, static_cast<CT*>(C), ldc,
      accumulate ? 1 : 0, bias);
  CUDA_CHECK_LAUNCH("matmul (bf16 tensor-core kernel)");
}

typedef void (*TcLaunch)(int, int, int, const void*, long long, const void*, long long, void*, long long, bool,
                         const float*, cudaStream_t);
using bf16_t = __nv_bfloat16;

// The instantiated tensor-core GEMMs: layout and the types of A, B and C
// (what the model runs; all-fp32 for every layout).
struct TcEntry {
  bool ta, tb;
  DType a, b, c;
  TcLaunch fn;
};
constexpr DType F = DType::F32, H = DType::BF16;
const TcEntry kTcTable[] = {
    {false, false, F, F, F, launch_tc<false, false, float, float, float>},
    {false, false, H, H, H, launch_tc<false, false, bf16_t, bf16_t, bf16_t>},
    {false, false, H, H, F, launch_tc<false, false, bf16_t, bf16_t, float>},
    {false, false, F, H, F, launch_tc<false, false, float, bf16_t, float>},
    {false, true, F, F, F, launch_tc<false, true, float, float, float>},
    {false, true, F, H, F, launch_tc<false, true, float, bf16_t, float>},
    {false, true, H, H, F, launch_tc<false, true, bf16_t, bf16_t, float>},
    {true, false, F, F, F, launch_tc<true, false, float, float, float>},
    {true, false, H, F, F, launch_tc<true, false, bf16_t, float, float>},
    {true, false, F, H, F, launch_tc<true, false, float, bf16_t, float>},
    {true, false, H, H, F, launch_tc<true, false, bf16_t, bf16_t, float>},  // dW with dout rounded once (matmul_backward)
};

std::string layout_name(bool ta, bool tb) { return std::string(ta ? "T" : "N") + (tb ? "T" : "N"); }

std::string types_text(DType a, DType b, DType c) {
  return std::string("A ") + dtype_name(a) + ", B " + dtype_name(b) + ", C " + dtype_name(c);
}

}  // namespace

bool gemm_own_supports(bool trans_a, bool trans_b, DType a, DType b, DType c, Precision p) {
  if (trans_a && trans_b) return false;
  if (p != Precision::BF16) return a == DType::F32 && b == DType::F32 && c == DType::F32;
  for (const TcEntry& e : kTcTable)
    if (e.ta == trans_a && e.tb == trans_b && e.a == a && e.b == b && e.c == c) return true;
  return false;
}

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

void gemm_own(bool trans_a, bool trans_b, int M, int N, int K, CTensorRef A, long long lda, CTensorRef B,
              long long ldb, TensorRef C, long long ldc, bool accumulate, const float* bias, Precision p,
              cudaStream_t s) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul: negative dimension");
  if (p != Precision::BF16)
    GPT_CHECK_ARG(!A.bf16() && !B.bf16() && !C.bf16(),
                  "matmul: precision fp32 takes fp32 operands, got " + types_text(A.dtype, B.dtype, C.dtype));
  GPT_CHECK_ARG(!(accumulate && C.bf16()), "matmul: a bf16 C cannot be accumulated into (accumulate = true)");
  if (M == 0 || N == 0) return;
  if (K == 0) {
    // op(A) @ op(B) is zero: C = (accumulate ? C : 0) + bias, done by the
    // kernels with an empty K loop.
  }
  if (ceil_div(M, 64) > 65535) throw GptError(ErrorCode::InvalidArgument, "matmul: M = " + std::to_string(M) + " exceeds the grid limit");
  if (trans_a && trans_b) throw GptError(ErrorCode::Internal, "matmul: the TT layout is not instantiated on CUDA");
  if (p != Precision::BF16) {
    const float* a = static_cast<const float*>(A.ptr);
    const float* b = static_cast<const float*>(B.ptr);
    float* c = static_cast<float*>(C.ptr);
    if (!trans_a && !trans_b)
      launch_fp32<false, false>(M, N, K, a, lda, b, ldb, c, ldc, accumulate, bias, s);
    else if (!trans_a && trans_b)
      launch_fp32<false, true>(M, N, K, a, lda, b, ldb, c, ldc, accumulate, bias, s);
    else
      launch_fp32<true, false>(M, N, K, a, lda, b, ldb, c, ldc, accumulate, bias, s);
    return;
  }
  for (const TcEntry& e : kTcTable) {
    if (e.ta == trans_a && e.tb == trans_b && e.a == A.dtype && e.b == B.dtype && e.c == C.dtype) {
      e.fn(M, N, K, A.ptr, lda, B.ptr, ldb, C.ptr, ldc, accumulate, bias, s);
      return;
    }
  }
  throw GptError(ErrorCode::InvalidArgument, "matmul: layout " + layout_name(trans_a, trans_b) + " with " +
                                                 types_text(A.dtype, B.dtype, C.dtype) +
                                                 " is not instantiated on CUDA");
}

void gemm_bias_gelu(int M, int N, int K, CTensorRef A, CTensorRef B, TensorRef pre, TensorRef out, const float* bias,
                    Precision p, cudaStream_t s, const GemmScratch* scratch) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul_forward_gelu: negative dimension");
  GPT_CHECK_ARG(out.ptr != pre.ptr, "matmul_forward_gelu: out must be a buffer other than pre");
  if (M == 0 || N == 0) return;
  // cuBLASLt writes pre = A @ B + bias (its bias epilogue), then our GELU
  // kernel writes out: the same tanh GELU as the own kernels' epilogue. With
  // bf16 storage that GELU reads the rounded pre, as backend.h's composition
  // (matmul_forward, then gelu_forward of pre) does, where the own fused
  // kernel takes the GELU of the fp32 pre before rounding it: both are within
  // the op table's bound of the CPU, and this keeps the MLP's largest GEMM on
  // cuBLASLt.
  if (pre.dtype == out.dtype &&
      cublaslt_gemm(false, false, M, N, K, A, K, B, N, pre, N, false, bias, p, s, scratch ? scratch->ptr : nullptr,
                    scratch ? scratch->bytes : 0)) {
    gelu_forward(out, pre, static_cast<int64_t>(M) * N, s);
    return;
  }
  gemm_bias_gelu_own(M, N, K, A, B, pre, out, bias, p, s);
}

void gemm_bias_gelu_own(int M, int N, int K, CTensorRef A, CTensorRef B, TensorRef pre, TensorRef out,
                        const float* bias, Precision p, cudaStream_t s) {
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "matmul_forward_gelu: negative dimension");
  GPT_CHECK_ARG(out.ptr != pre.ptr, "matmul_forward_gelu: out must be a buffer other than pre");
  if (p != Precision::BF16)
    GPT_CHECK_ARG(!A.bf16() && !B.bf16() && !pre.bf16() && !out.bf16(),
                  "matmul_forward_gelu: precision fp32 takes fp32 operands, got " +
                      types_text(A.dtype, B.dtype, pre.dtype) + ", out " + dtype_name(out.dtype));
  GPT_CHECK_ARG(pre.dtype == out.dtype, std::string("matmul_forward_gelu: pre and out must have one type, got pre ") +
                                            dtype_name(pre.dtype) + " and out " + dtype_name(out.dtype));
  if (M == 0 || N == 0) return;
  // K == 0: the empty K loop leaves the accumulators at 0, so pre = bias and
  // out = gelu(bias), as the composition gives.
  if (ceil_div(M, 64) > 65535)
    throw GptError(ErrorCode::InvalidArgument, "matmul_forward_gelu: M = " + std::to_string(M) + " exceeds the grid limit");
  if (p == Precision::BF16) {
    dim3 grid(ceil_div(N, TC_BN), ceil_div(M, TC_BM));
    const char* what = "matmul_forward_gelu (bf16 tensor-core kernel, bias + GELU epilogue)";
    if (!A.bf16() && !B.bf16() && !pre.bf16()) {
      static std::atomic<bool> smem_done{false};
      tc_allow_smem(gemm_bf16_tc_gelu_kernel<float, float, float>, smem_done, what);
      gemm_bf16_tc_gelu_kernel<float, float, float><<<grid, TC_THREADS, TC_SMEM, s>>>(
          M, N, K, static_cast<const float*>(A.ptr), K, static_cast<const float*>(B.ptr), N,
          static_cast<float*>(pre.ptr), N, bias, static_cast<float*>(out.ptr));
    } else if (A.bf16() && B.bf16() && pre.bf16()) {
      static std::atomic<bool> smem_done{false};
      tc_allow_smem(gemm_bf16_tc_gelu_kernel<bf16_t, bf16_t, bf16_t>, smem_done, what);
      gemm_bf16_tc_gelu_kernel<bf16_t, bf16_t, bf16_t><<<grid, TC_THREADS, TC_SMEM, s>>>(
          M, N, K, static_cast<const bf16_t*>(A.ptr), K, static_cast<const bf16_t*>(B.ptr), N,
          static_cast<bf16_t*>(pre.ptr), N, bias, static_cast<bf16_t*>(out.ptr));
    } else {
      throw GptError(ErrorCode::InvalidArgument, "matmul_forward_gelu: layout NN with " +
                                                     types_text(A.dtype, B.dtype, pre.dtype) + ", out " +
                                                     dtype_name(out.dtype) + " is not instantiated on CUDA");
    }
    CUDA_CHECK_LAUNCH(what);
  } else {
    dim3 grid(ceil_div(N, F_BN), ceil_div(M, F_BM));
    gemm_fp32_gelu_kernel<<<grid, F_THREADS, 0, s>>>(M, N, K, static_cast<const float*>(A.ptr), K,
                                                      static_cast<const float*>(B.ptr), N, static_cast<float*>(pre.ptr),
                                                      N, bias, static_cast<float*>(out.ptr));
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

// ---- the test entry (cublaslt.h) -------------------------------------------
namespace {

// Device buffers and a stream of one test call, freed on scope exit.
struct TestResources {
  std::vector<void*> bufs;
  cudaStream_t stream = nullptr;
  TestResources() { CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaGemm"); }
  ~TestResources() {
    cudaStreamSynchronize(stream);
    for (void* p : bufs) cudaFree(p);
    cudaStreamDestroy(stream);
    cudaGetLastError();
  }
  TestResources(const TestResources&) = delete;
  TestResources& operator=(const TestResources&) = delete;
  void* alloc(size_t bytes) {
    void* p = nullptr;
    CUDA_CHECK(cudaMalloc(&p, bytes < 16 ? 16 : bytes), "cudaGemm");
    bufs.push_back(p);
    return p;
  }
  // host[len] uploaded as `type`, starting `offset` elements into a new buffer.
  TensorRef upload(const float* host, size_t len, DType type, long long offset) {
    float* f = static_cast<float*>(alloc((len + offset) * 4));
    if (len) CUDA_CHECK(cudaMemcpyAsync(f + offset, host, len * 4, cudaMemcpyHostToDevice, stream), "cudaGemm");
    if (type == DType::F32) return TensorRef(f + offset);
    TensorRef h(alloc((len + offset) * 2), DType::BF16);
    h = h.at(offset);
    convert(h, CTensorRef(f + offset), static_cast<int64_t>(len), stream);
    return h;
  }
  // t[len] back to host fp32.
  void download(float* host, CTensorRef t, size_t len) {
    if (!len) return;
    const float* f = static_cast<const float*>(t.ptr);
    if (t.bf16()) {
      float* tmp = static_cast<float*>(alloc(len * 4));
      convert(TensorRef(tmp), t, static_cast<int64_t>(len), stream);
      f = tmp;
    }
    CUDA_CHECK(cudaMemcpyAsync(host, f, len * 4, cudaMemcpyDeviceToHost, stream), "cudaGemm");
  }
};

}  // namespace

void gemm_test_run(const GemmTestCall& t) {
  GpuInfo g = cuda_info();
  if (!g.available) throw GptError(ErrorCode::NoGpu, "cudaGemm: no usable GPU: " + g.reason);
  CUDA_CHECK(cudaSetDevice(0), "cudaGemm");
  TestResources r;
  TensorRef A = r.upload(t.a, t.a_len, t.a_type, t.a_offset);
  TensorRef B = r.upload(t.b, t.b_len, t.b_type, t.b_offset);
  TensorRef C = r.upload(t.c, t.c_len, t.c_type, t.c_offset);
  TensorRef out;
  if (t.gelu) out = r.upload(t.c, t.c_len, t.c_type, t.c_offset);
  const float* bias = nullptr;
  if (t.bias) bias = static_cast<const float*>(r.upload(t.bias, t.N, DType::F32, 0).ptr);
  GemmScratch scratch;
  if (t.scratch_bytes) {
    scratch.ptr = r.alloc(t.scratch_bytes);
    scratch.bytes = t.scratch_bytes;
  }
  if (t.gelu) {
    if (t.own)
      gemm_bias_gelu_own(t.M, t.N, t.K, A, B, C, out, bias, t.precision, r.stream);
    else
      gemm_bias_gelu(t.M, t.N, t.K, A, B, C, out, bias, t.precision, r.stream, &scratch);
  } else if (t.own) {
    gemm_own(t.trans_a, t.trans_b, t.M, t.N, t.K, A, t.lda, B, t.ldb, C, t.ldc, t.accumulate, bias, t.precision,
             r.stream);
  } else {
    gemm(t.trans_a, t.trans_b, t.M, t.N, t.K, A, t.lda, B, t.ldb, C, t.ldc, t.accumulate, bias, t.precision, r.stream,
         &scratch);
  }
  r.download(t.c, C, t.c_len);
  if (t.gelu) r.download(t.out, out, t.c_len);
  CUDA_CHECK(cudaStreamSynchronize(r.stream), "cudaGemm");
}

}  // namespace cuda
}  // namespace gpt
