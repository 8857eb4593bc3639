// Flash attention kernels (see attention.cuh for the contract).
//
// Forward: one block of 4 warps per (query tile of 64, head, batch); each warp
// owns 16 query rows, keeps its Q fragments in registers and runs the online
// softmax over key tiles of 64. K/V tiles are pipelined: with fp32 K/V in
// memory, cp.async copies tile j+1 (fp32, as stored) into a landing buffer
// while tile j is computed; each thread then converts the chunks it copied
// into the bf16 K and V tiles ([key][d], both row-major), and the mma
// fragments come from ldmatrix (V with .trans, which gives V^T's fragments).
// Two barriers per tile: the bf16 tiles are single-buffered (a second pair
// does not fit 99 KB at D = 128 next to the fp32 landing buffer). With bf16
// K and V views (bf16 storage) the landing buffer and the conversion go:
// cp.async straight into double-buffered bf16 tiles (the second stage where
// the landing buffer was), one barrier per tile. Q is staged once with plain
// loads from either type; out is written as fp32 or, for a bf16 view,
// rounded once to bf16. The scores live in log2 units (scale * log2(e) folded
// in) so exp is one exp2. P goes from the score accumulators straight into A
// fragments: an mma C tile pair (keys 16j..16j+15) has exactly the A-fragment
// layout.
//
// Backward: attention_dvec (D = rowsum(bf16(dO)*O), O of either type, see
// there), then
// attention_bwd (one block per key tile of 64; loops over the query tiles of
// 32 that see it, computing S^T and dP^T once per tile pair so dK and dV stay
// in registers, and writing the tile's share of dQ, dS K, to its own slot of
// the dQ partials), then attention_bwd_dq_reduce (each dQ row the sum of its
// key tiles' partials, in key-tile order). 5 matmuls per tile pair (S, dP,
// dV, dK, dQ). No atomics: every output and partial element has one writer,
// and the sum's order is fixed, so results are bitwise deterministic.
//
// Shape legend: B batch, H heads, T sequence, D head size; "bh" = (b, h).
#include <cuda_bf16.h>
#include <math_constants.h>

#include <initializer_list>
#include <string>

#include "../core/error.h"
#include "attention.cuh"
#include "attention_common.cuh"
#include "attention_fp32.cuh"
#include "check.cuh"
#include "common.cuh"
#include "smem_copy.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr float kLn2 = 0.6931471805599453f;
constexpr int kThreads = 128;  // 4 warps

// Stages rows [t0, t0+ROWS) of one (b, h) slice of a strided view (either
// storage type) into shared memory as bf16, row-major [ROWS][D+8], zero past
// T (plain loads: for tiles loaded once per block). A bf16 element goes
// through fp32 and back unchanged.
template <int D, int ROWS>
__device__ __forceinline__ void stage(__nv_bfloat16* rm, const AttnRows& src, int t0, int T) {
  for (int idx = threadIdx.x; idx < ROWS * D; idx += kThreads) {
    const int r = idx / D, d = idx - (idx / D) * D;
    const int t = t0 + r;
    const float v = t < T ? src.at((long long)t * src.st + d) : 0.0f;
    rm[r * (D + 8) + d] = __float2bfloat16_rn(v);
  }
}

// cp.async staging of a bf16 view straight into a bf16 tile [ROWS][D+8] (no
// landing buffer, no conversion): 8-element (16-byte) chunks, each copied
// with the widest cp.async the view's alignment allows (`vb`, bf16_vec_bytes:
// one 16-byte copy, two 8-byte or four 4-byte ones), or element by element
// with plain loads where the view is only 2-byte aligned. Rows past T are
// zero-filled with plain stores. The copies land at this thread's
// cp_async_wait and are seen by the others after a barrier that follows it
// (the plain loads and stores after that barrier too).
__device__ __forceinline__ int bf16_vec_bytes(const uint16_t* base, long long st) {
  const uintptr_t a = reinterpret_cast<uintptr_t>(base) | static_cast<uintptr_t>(st * 2);
  return a % 16 == 0 ? 16 : a % 8 == 0 ? 8 : a % 4 == 0 ? 4 : 2;
}
template <int D, int ROWS>
__device__ __forceinline__ void copy_tile_bf16(__nv_bfloat16* tile, const uint16_t* __restrict__ base, long long st,
                                               int t0, int T, int vb) {
  constexpr int CPR = D / 8;  // chunks per row
#pragma unroll 1
  for (int c = threadIdx.x; c < ROWS * CPR; c += kThreads) {
    const int r = c / CPR, col = (c - (c / CPR) * CPR) * 8;
    const int t = t0 + r;
    __nv_bfloat16* dst = tile + r * (D + 8) + col;
    const uint16_t* src = base + (long long)t * st + col;
    if (t >= T) {
      *reinterpret_cast<uint4*>(dst) = make_uint4(0u, 0u, 0u, 0u);
    } else if (vb == 16) {
      cp_async_16(dst, src);
    } else if (vb == 8) {
      cp_async_8(dst, src);
      cp_async_8(dst + 4, src + 4);
    } else if (vb == 4) {
#pragma unroll
      for (int e = 0; e < 8; e += 2) cp_async_4(dst + e, src + e);
    } else {
      uint16_t* d16 = reinterpret_cast<uint16_t*>(dst);
#pragma unroll
      for (int e = 0; e < 8; ++e) d16[e] = src[e];
    }
  }
}

// cp.async staging of fp32 tiles (fp32 views in memory; the mma wants
// bf16): a tile of ROWS x D floats is copied as 16-byte chunks into a plain
// fp32 buffer `raw` [ROWS][D], then converted into a bf16 tile [ROWS][D+8]
// for ldmatrix. Each thread converts exactly the chunks it copied (chunk c =
// threadIdx.x + i * kThreads), so the conversion needs only that thread's
// cp.async wait, no barrier; the bf16 tile needs a barrier before others
// read it. Rows past T are zero-filled (cp.async with a source size of 0).
// vec16: the view's base and strides are multiples of 16 bytes; otherwise
// each float is its own 4-byte cp.async.
template <int D, int ROWS>
__device__ __forceinline__ void copy_tile_async(float* raw, const float* __restrict__ base, long long st, int t0,
                                                int T, bool vec16) {
  constexpr int CPR = D / 4;  // chunks per row
  static_assert((ROWS * CPR) % kThreads == 0, "every thread copies the same number of chunks");
#pragma unroll 1
  for (int i = 0; i < ROWS * CPR / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int r = c / CPR, col = (c % CPR) * 4;
    const int t = t0 + r;
    float* dst = raw + r * D + col;
    if (vec16) {
      if (t < T)
        cp_async_16(dst, base + (long long)t * st + col);
      else
        cp_async_16_zfill(dst, base + (long long)t0 * st, 0);
    } else {
#pragma unroll
      for (int e = 0; e < 4; ++e) {
        if (t < T)
          cp_async_4(dst + e, base + (long long)t * st + col + e);
        else
          dst[e] = 0.0f;
      }
    }
  }
}
template <int D, int ROWS>
__device__ __forceinline__ void convert_tile(__nv_bfloat16* tile, const float* raw) {
  constexpr int CPR = D / 4;
#pragma unroll 1
  for (int i = 0; i < ROWS * CPR / kThreads; ++i) {
    const int c = threadIdx.x + i * kThreads;
    const int r = c / CPR, col = (c % CPR) * 4;
    const float4 x = *reinterpret_cast<const float4*>(raw + r * D + col);
    *reinterpret_cast<uint2*>(tile + r * (D + 8) + col) = make_uint2(pack_bf16(x.x, x.y), pack_bf16(x.z, x.w));
  }
}
__device__ __forceinline__ bool aligned16(const float* base, const AttnTensor& x) {
  return (reinterpret_cast<uintptr_t>(base) % 16 == 0) && x.st % 4 == 0 && x.sh % 4 == 0 && x.sb % 4 == 0;
}

template <int D>
constexpr int fwd_smem_bytes() {
  // fp32 K, V landing buffer (Q's bf16 tile before it), bf16 K and V tiles.
  return 4 * 2 * 64 * D /*raw K, V*/ + 2 * 2 * 64 * (D + 8) /*K, V*/;
}
constexpr int kBwdKeys = 64;  // keys per backward block (the dQ partials' tile)
template <int D>
constexpr int bwd_smem_bytes() {
  return 2 * (2 * 64 * (D + 8) /*K, V*/ + 2 * 32 * (D + 8) /*Q, dO*/ + 32 * (64 + 8) /*dS*/) +
         4 * 2 * 32 * D /*raw Q, dO*/ + 2 * 32 * 4 /*lse, D*/;
}
constexpr int kBwdDocSmemBytes = 32 * 4;  // the document kernel's extra: the query tile's document starts
static_assert(bwd_smem_bytes<128>() + kBwdDocSmemBytes <= 99 * 1024 && fwd_smem_bytes<128>() <= 99 * 1024,
              "shared memory must fit sm_86/89's per-block opt-in limit (99 KB)");

// Whether a pair counts on a cut tile. Each kernel body is compiled twice:
// without a document mask (attention_*_kernel, the plain causal / banded
// kernels, which so carry no document code: their registers, and with them
// the occupancy, stay as they were) and with one (attention_*_doc_kernel).
template <bool DOC>
__device__ __forceinline__ bool pair_ok(const Mask& m, int i, int j, int first) {
  return DOC ? m.ok(i, j, first) : m.ok(i, j);
}

// ---------------------------------------------------------------------------
// Forward. Grid (ceil(T/64), H, B); heavy (late) query tiles first.
// out: [B,H,T,D] view; lse: [B,H,T]
// fp32 K/V (KV16 false), per key tile j: wait for tile j's cp.async, barrier
// (every warp is done with tile j-1's bf16 K/V), convert tile j into them,
// issue tile j+1's cp.async (it lands while tile j is computed), barrier,
// compute. (A bf16 K or V beside an fp32 other one is staged with plain
// loads at the conversion step instead.)
// bf16 K and V (KV16): two stages of bf16 K/V tiles, the second where the
// landing buffer is; per key tile j: wait for tile j's cp.async, one barrier
// (tile j visible to all; every warp is done with tile j-1's stage), issue
// tile j+1 into that other stage, compute tile j.
template <int D, bool DOC, bool KV16>
__device__ __forceinline__ void fwd_body(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k,
                                         AttnTensor v, int H, int T, float scale_log2, Mask mask) {
  static_assert(D % 16 == 0, "head dim must be a multiple of 16");
  constexpr int BR = 64, BC = 64, QP = D + 8;
  constexpr int KS = D / 16, DN = D / 8, NJ = BC / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* Kraw = reinterpret_cast<float*>(smem_raw);                    // [BC][D] fp32, cp.async lands here
  float* Vraw = Kraw + BC * D;                                         // [BC][D]
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);     // [BR][QP], before the first copy only
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(Vraw + BC * D);  // [BC][QP]
  __nv_bfloat16* Vs = Ks + BC * QP;                                     // [BC][QP] (ldmatrix.trans gives V^T)
  // KV16: the second stage of K and V, in the landing buffer (2 * BC * QP
  // bf16 fit in its 2 * BC * D floats).
  __nv_bfloat16* K1 = reinterpret_cast<__nv_bfloat16*>(smem_raw);
  __nv_bfloat16* V1 = K1 + BC * QP;
  static_assert(2 * BC * QP * 2 <= 2 * BC * D * 4, "the second bf16 stage must fit the landing buffer");

  const int qt = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int q0 = qt * BR;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int lr = lane % 8, lm = lane / 8;  // ldmatrix: the row this lane addresses, of matrix lm
  const AttnRows kr = attn_rows(k, b, h), vr = attn_rows(v, b, h);
  const bool kvec = !KV16 && kr.f && aligned16(kr.f, k), vvec = !KV16 && vr.f && aligned16(vr.f, v);
  const int kvb = KV16 ? bf16_vec_bytes(kr.h, k.st) : 0, vvb = KV16 ? bf16_vec_bytes(vr.h, v.st) : 0;

  stage<D, BR>(Qs, attn_rows(q, b, h), q0, T);
  __syncthreads();
  uint32_t qf[KS][4];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks)
    ldmatrix_x4(qf[ks], Qs + (warp * 16 + (lane % 16)) * QP + ks * 16 + (lane / 16) * 8);

  float o[DN][4];
#pragma unroll
  for (int i = 0; i < DN; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float mrow[2] = {-CUDART_INF_F, -CUDART_INF_F}, lrow[2] = {0.0f, 0.0f};
  const int row0 = q0 + warp * 16 + g;  // rows row0 and row0 + 8
  const int32_t* ds = DOC ? mask.docs(b) : nullptr;
  const int first[2] = {mask.first(ds, row0), mask.first(ds, row0 + 8)};  // the rows' document starts

  const int hi = min(T, q0 + BR);
  const int lo = mask.key_lo(ds, q0);
  __syncthreads();  // Q's fragments are in registers: its tile (the landing buffer) may be overwritten
  if (KV16) {
    copy_tile_bf16<D, BC>(Ks, kr.h, k.st, (lo / BC) * BC, T, kvb);
    copy_tile_bf16<D, BC>(Vs, vr.h, v.st, (lo / BC) * BC, T, vvb);
  } else {
    if (kr.f) copy_tile_async<D, BC>(Kraw, kr.f, k.st, (lo / BC) * BC, T, kvec);
    if (vr.f) copy_tile_async<D, BC>(Vraw, vr.f, v.st, (lo / BC) * BC, T, vvec);
  }
  cp_async_commit();
  for (int kt = lo / BC; kt * BC < hi; ++kt) {
    const int k0 = kt * BC;
    const bool second = KV16 && ((kt - lo / BC) & 1);  // KV16: tile kt is in the second stage
    const __nv_bfloat16* Kc = second ? K1 : Ks;
    const __nv_bfloat16* Vc = second ? V1 : Vs;
    cp_async_wait<0>();  // this thread's chunks of tile kt have landed
    __syncthreads();     // KV16: tile kt is visible; both: every warp is done with the previous tile
    if (KV16) {
      if ((kt + 1) * BC < hi) {  // tile kt+1 into the other stage (free: the previous tile's)
        copy_tile_bf16<D, BC>(second ? Ks : K1, kr.h, k.st, k0 + BC, T, kvb);
        copy_tile_bf16<D, BC>(second ? Vs : V1, vr.h, v.st, k0 + BC, T, vvb);
        cp_async_commit();
      }
    } else {
      if (kr.f)
        convert_tile<D, BC>(Ks, Kraw);
      else
        stage<D, BC>(Ks, kr, k0, T);
      if (vr.f)
        convert_tile<D, BC>(Vs, Vraw);
      else
        stage<D, BC>(Vs, vr, k0, T);
      if ((kt + 1) * BC < hi) {  // prefetch the next tile into the landing buffer (own chunks: converted above)
        if (kr.f) copy_tile_async<D, BC>(Kraw, kr.f, k.st, k0 + BC, T, kvec);
        if (vr.f) copy_tile_async<D, BC>(Vraw, vr.f, v.st, k0 + BC, T, vvec);
        cp_async_commit();
      }
      __syncthreads();  // Ks, Vs of tile kt are complete
    }

    float s[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int j = 0; j < NJ; j += 2) {
        // Keys j*8.. and (j+1)*8.., d ks*16 + 0..7 and 8..15: B fragments of both.
        uint32_t bf[4];
        ldmatrix_x4(bf, Kc + ((j + lm / 2) * 8 + lr) * QP + ks * 16 + (lm % 2) * 8);
        const uint32_t b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
        mma_bf16_16816(s[j], qf[ks], b0);
        mma_bf16_16816(s[j + 1], qf[ks], b1);
      }
    }
    const bool cut = mask.cuts(ds, q0, BR, k0, BC);
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        float x = s[j][c] * scale_log2;
        if (cut && !pair_ok<DOC>(mask, row0 + (c / 2) * 8, k0 + j * 8 + 2 * t + (c % 2), first[c / 2]))
          x = -CUDART_INF_F;
        s[j][c] = x;
      }
    // Online softmax per row (c/2 selects row0 or row0+8); the 4 threads of a
    // quad hold one row between them.
#pragma unroll
    for (int r = 0; r < 2; ++r) {
      float mx = -CUDART_INF_F;
#pragma unroll
      for (int j = 0; j < NJ; ++j) mx = fmaxf(mx, fmaxf(s[j][2 * r], s[j][2 * r + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      const float mnew = fmaxf(mrow[r], mx);
      // A row with nothing visible yet keeps m = -inf: use 0 as the base so
      // exp2 gives 0 for its masked scores instead of NaN.
      const float base = mnew == -CUDART_INF_F ? 0.0f : mnew;
      const float alpha = exp2f(mrow[r] - base);  // 0 when mrow was -inf
      mrow[r] = mnew;
      float sum = 0.0f;
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        s[j][2 * r] = exp2f(s[j][2 * r] - base);
        s[j][2 * r + 1] = exp2f(s[j][2 * r + 1] - base);
        sum += s[j][2 * r] + s[j][2 * r + 1];
      }
      lrow[r] = lrow[r] * alpha + sum;  // per-thread partial; quad-reduced at the end
#pragma unroll
      for (int dn = 0; dn < DN; ++dn) {
        o[dn][2 * r] *= alpha;
        o[dn][2 * r + 1] *= alpha;
      }
    }
    // O += P V
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      uint32_t pa[4] = {pack_bf16(s[2 * kk][0], s[2 * kk][1]), pack_bf16(s[2 * kk][2], s[2 * kk][3]),
                        pack_bf16(s[2 * kk + 1][0], s[2 * kk + 1][1]), pack_bf16(s[2 * kk + 1][2], s[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < DN; dn += 2) {
        // V rows (keys) kk*16 + 0..7 and 8..15, columns dn*8.. and (dn+1)*8..,
        // transposed: B fragments (k = key, n = d) of both column groups.
        uint32_t bf[4];
        ldmatrix_x4_trans(bf, Vc + (kk * 16 + (lm % 2) * 8 + lr) * QP + (dn + lm / 2) * 8);
        const uint32_t b0[2] = {bf[0], bf[1]}, b1[2] = {bf[2], bf[3]};
        mma_bf16_16816(o[dn], pa, b0);
        mma_bf16_16816(o[dn + 1], pa, b1);
      }
    }
  }

  const long long ob = b * out.sb + h * out.sh;  // out's (b, h) slice; bf16 views get o rounded once
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    float l = lrow[r];
    l += __shfl_xor_sync(0xffffffffu, l, 1);
    l += __shfl_xor_sync(0xffffffffu, l, 2);
    const int row = row0 + r * 8;
    if (row >= T) continue;
    const float inv = 1.0f / l;  // l >= 1: the row's max element contributes exp2(0)
#pragma unroll
    for (int dn = 0; dn < DN; ++dn) {
      const long long at = ob + (long long)row * out.st + dn * 8 + 2 * t;
      attn_store(out, at, o[dn][2 * r] * inv);
      attn_store(out, at + 1, o[dn][2 * r + 1] * inv);
    }
    if (t == 0) lse[((long long)b * H + h) * T + row] = (mrow[r] + log2f(l)) * kLn2;
  }
}

// The kernels: fp32 or mixed K/V (attention_fwd_kernel, _doc_kernel) and
// bf16 K and V (attention_fwd_kv16_kernel, _doc_kv16_kernel); Q and out of
// either type in all of them.
template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_kernel(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k, AttnTensor v, int H,
                         int T, float scale_log2, Mask mask) {
  fwd_body<D, false, false>(out, lse, q, k, v, H, T, scale_log2, mask);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_doc_kernel(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k, AttnTensor v, int H,
                             int T, float scale_log2, Mask mask) {
  fwd_body<D, true, false>(out, lse, q, k, v, H, T, scale_log2, mask);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_kv16_kernel(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k, AttnTensor v,
                              int H, int T, float scale_log2, Mask mask) {
  fwd_body<D, false, true>(out, lse, q, k, v, H, T, scale_log2, mask);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_doc_kv16_kernel(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k, AttnTensor v,
                                  int H, int T, float scale_log2, Mask mask) {
  fwd_body<D, true, true>(out, lse, q, k, v, H, T, scale_log2, mask);
}

// ---------------------------------------------------------------------------
// D[bh, i] = sum_d bf16(dO[i, d]) * O[i, d] (bf16_dout; fp32 dO otherwise).
// One warp per row. Grid (ceil(T/4), H, B).
// D stands for sum_j P_ij dP_ij, and dS_ij = P_ij (dP_ij - D_i) depends on the
// two agreeing. The bf16 kernels compute dP_ij = bf16(dO_i) . bf16(V_j) (fp32
// accumulation), so their sum_j P_ij dP_ij is bf16(dO_i) . sum_j P_ij bf16(V_j),
// and the forward's fp32 O approximates that sum (its bf16 operands are P and
// the same bf16(V)); rounding O as well only adds error. So with bf16_dout, D
// uses bf16(dO) and the fp32 O. Measured under the emulator (ops.js bf16
// backward cases, 8 seeds, O from the CUDA forward), mean relative L2 against
// the CPU of dQ / dK: fp32 dO 4.13e-3 / 4.10e-3, bf16(dO) * O 3.94e-3 /
// 3.92e-3, bf16(dO) * bf16(O) 4.03e-3 / 4.01e-3; where each query sees only
// itself (T = 1, window 1), so exact dQ and dK are 0, they went from 1.5e-3 of
// dout's scale to 4e-8. The fp32 path (attention_fp32.cu) computes dP from
// fp32 dO and V: bf16_dout false, D exact in fp32.
__global__ void attention_dvec_kernel(float* __restrict__ dvec, AttnTensor out, AttnTensor dout, int H, int T, int D,
                                      bool bf16_dout) {
  const int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
  const int h = blockIdx.y, b = blockIdx.z;
  if (row >= T) return;
  const AttnRows o = attn_rows(out, b, h);  // O of either type (a bf16 O: the forward's rounded one)
  const long long orow = (long long)row * out.st;
  const float* d = dout.ptr + b * dout.sb + h * dout.sh + (long long)row * dout.st;
  float s = 0.0f;
  for (int i = lane; i < D; i += 32)
    s += o.at(orow + i) * (bf16_dout ? __bfloat162float(__float2bfloat16_rn(d[i])) : d[i]);
  s = warp_sum(s);
  if (lane == 0) dvec[((long long)b * H + h) * T + row] = s;
}

// ---------------------------------------------------------------------------
// Backward in one pass: one block per key tile of 64 (each warp 16 keys).
// Grid (ceil(T/64), H, B). Per query tile of 32 that sees the key tile, S^T
// and dP^T are computed once (K Q^T and V dO^T), P^T and dS^T formed in
// registers, then dV += P^T dO and dK += dS^T Q (kept in registers across
// the loop) and this key tile's share of dQ, dS K, written to its slot of the
// dQ partials (dqp; summed in a fixed order by attention_bwd_dq_reduce). 5
// matmuls per tile pair. dS goes through shared memory for dS K because a
// warp holds dS for its own 16 keys only. K and V are staged once; the query
// tiles (Q, dO) are pipelined as in the forward: tile i+1's cp.async lands
// while tile i is computed. Every operand is one row-major bf16 tile read
// with ldmatrix (.trans where the mma wants it the other way round). With a
// bf16 Q (Q16) its tiles are copied straight into two bf16 Q tiles (the
// second where Q's landing buffer is) and used in turn; dO is fp32 always.
template <int D, bool DOC, bool Q16>
__device__ __forceinline__ void bwd_body(AttnTensor dk, AttnTensor dv, DqPartials dqp,
                                         AttnTensor q, AttnTensor k, AttnTensor v, const float* __restrict__ lse,
                                         const float* __restrict__ dvec, AttnTensor dout, int H, int T, float scale,
                                         float scale_log2, Mask mask) {
  constexpr int BC = kBwdKeys, BR = 32, RP = D + 8, KP = BC + 8;
  constexpr int KS = D / 16, DN = D / 8, NJ = BR / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [BC][RP]
  __nv_bfloat16* Vs = Ks + BC * RP;                                   // [BC][RP]
  __nv_bfloat16* Qs = Vs + BC * RP;                                   // [BR][RP]
  __nv_bfloat16* dOs = Qs + BR * RP;                                  // [BR][RP]
  __nv_bfloat16* dSs = dOs + BR * RP;                                 // [BR][KP] dS, query-major
  float* Qraw = reinterpret_cast<float*>(dSs + BR * KP);              // [BR][D] fp32, cp.async lands here
  float* dOraw = Qraw + BR * D;                                       // [BR][D]
  float* lse2_s = dOraw + BR * D;                                     // [BR], log2 units
  float* dvec_s = lse2_s + BR;                                        // [BR]
  int32_t* first_s = reinterpret_cast<int32_t*>(dvec_s + BR);         // [BR] document starts (DOC only)

  const int kt = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int k0 = kt * BC;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const int lr = lane % 8, lm = lane / 8;  // ldmatrix: the row this lane addresses, of matrix lm
  const long long bh = (long long)b * H + h;
  const AttnRows qr = attn_rows(q, b, h);
  const float* dob = dout.ptr + b * dout.sb + h * dout.sh;
  const bool qvec = !Q16 && aligned16(qr.f, q), dovec = aligned16(dob, dout);
  const int qvb = Q16 ? bf16_vec_bytes(qr.h, q.st) : 0;
  // Q16: query tile qt's bf16 Q is Qs for even qt - qlo / BR, Q1 for odd.
  __nv_bfloat16* Q1 = reinterpret_cast<__nv_bfloat16*>(Qraw);
  static_assert(BR * RP * 2 <= BR * D * 4, "the second bf16 Q tile must fit Q's landing buffer");
  // This key tile's slot of the dQ partials: [T][D] for this (b, h).
  float* dqs = dqp.tile_rows(bh, kt);

  // Queries that see a key in [k0, k0+BC): i >= k0, i < j + window when
  // banded, and (documents) up to the end of the last key's document. Only
  // rows below qhi get a dQ partial (the rows attention_bwd_dq_reduce reads
  // from this tile's slot).
  const int32_t* ds = DOC ? mask.docs(b) : nullptr;
  const int qlo = k0;
  const int qhi = DOC ? mask.query_hi(ds, k0, BC) : mask.banded ? min(T, k0 + BC - 1 + mask.window) : T;
  if (Q16)
    copy_tile_bf16<D, BR>(Qs, qr.h, q.st, qlo, T, qvb);
  else
    copy_tile_async<D, BR>(Qraw, qr.f, q.st, qlo, T, qvec);
  copy_tile_async<D, BR>(dOraw, dob, dout.st, qlo, T, dovec);
  cp_async_commit();
  stage<D, BC>(Ks, attn_rows(k, b, h), k0, T);
  stage<D, BC>(Vs, attn_rows(v, b, h), k0, T);

  float dka[DN][4], dva[DN][4];
#pragma unroll
  for (int i = 0; i < DN; ++i)
#pragma unroll
    for (int c = 0; c < 4; ++c) dka[i][c] = dva[i][c] = 0.0f;
  const int key0 = k0 + warp * 16 + g;  // this thread's keys: key0, key0 + 8
  // The dQ step: this warp's 16 query rows and half of the head dims.
  const int dq_r0 = (warp & 1) * 16;
  const int dq_dn0 = (warp >> 1) * (DN / 2);

  for (int qt = qlo / BR; qt * BR < qhi; ++qt) {
    const int q0 = qt * BR;
    // No barrier here: after the previous tile's last barrier (dS complete)
    // the warps read only dS and K, and this writes Q, dO, lse and D (and
    // the landing buffer: this thread's own chunks; Q16: the other bf16 Q
    // tile, last read before that barrier).
    const bool odd = Q16 && ((qt - qlo / BR) & 1);
    const __nv_bfloat16* Qc = odd ? Q1 : Qs;
    cp_async_wait<0>();  // this thread's chunks of query tile qt have landed
    if (!Q16) convert_tile<D, BR>(Qs, Qraw);
    convert_tile<D, BR>(dOs, dOraw);
    if ((qt + 1) * BR < qhi) {  // prefetch the next query tile (own chunks: converted above)
      if (Q16)
        copy_tile_bf16<D, BR>(odd ? Qs : Q1, qr.h, q.st, q0 + BR, T, qvb);
      else
        copy_tile_async<D, BR>(Qraw, qr.f, q.st, q0 + BR, T, qvec);
      copy_tile_async<D, BR>(dOraw, dob, dout.st, q0 + BR, T, dovec);
      cp_async_commit();
    }
    if (threadIdx.x < BR) {
      const int i = q0 + threadIdx.x;
      lse2_s[threadIdx.x] = i < T ? lse[bh * T + i] * kLog2e : CUDART_INF_F;
      dvec_s[threadIdx.x] = i < T ? dvec[bh * T + i] : 0.0f;
      if (DOC) first_s[threadIdx.x] = mask.first(ds, i);
    }
    __syncthreads();  // Qs, dOs, lse, D of query tile qt are complete (and K, V on the first pass)

    // S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys x BR queries.
    float st_[NJ][4], dpt[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) st_[j][c] = dpt[j][c] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t ka[4], va[4];
#pragma unroll
      for (int j = 0; j < NJ; j += 2) {
        // Queries j*8.. and (j+1)*8.., d ks*16 + 0..7 and 8..15.
        uint32_t qf[4], df[4];
        ldmatrix_x4(qf, Qc + ((j + lm / 2) * 8 + lr) * RP + ks * 16 + (lm % 2) * 8);
        ldmatrix_x4(df, dOs + ((j + lm / 2) * 8 + lr) * RP + ks * 16 + (lm % 2) * 8);
        if (j == 0) {  // (after Q's first fragments: the emulator then reads the tile right after the barrier)
          ldmatrix_x4(ka, Ks + (warp * 16 + (lane % 16)) * RP + ks * 16 + (lane / 16) * 8);
          ldmatrix_x4(va, Vs + (warp * 16 + (lane % 16)) * RP + ks * 16 + (lane / 16) * 8);
        }
        const uint32_t q0f[2] = {qf[0], qf[1]}, q1f[2] = {qf[2], qf[3]};
        const uint32_t d0f[2] = {df[0], df[1]}, d1f[2] = {df[2], df[3]};
        mma_bf16_16816(st_[j], ka, q0f);
        mma_bf16_16816(st_[j + 1], ka, q1f);
        mma_bf16_16816(dpt[j], va, d0f);
        mma_bf16_16816(dpt[j + 1], va, d1f);
      }
    }
    // P^T and dS^T in place. Element c: key key0 + (c/2)*8, query q0 + j*8 + 2t + c%2.
    const bool cut = mask.cuts(ds, q0, BR, k0, BC);
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) {
        const int qi = j * 8 + 2 * t + (c % 2);
        float p = exp2f(st_[j][c] * scale_log2 - lse2_s[qi]);
        if (cut && !pair_ok<DOC>(mask, q0 + qi, key0 + (c / 2) * 8, DOC ? first_s[qi] : 0)) p = 0.0f;
        st_[j][c] = p;
        dpt[j][c] = p * (dpt[j][c] - dvec_s[qi]);
      }
    // dV += P^T dO, dK += dS^T Q (k index = query; dO and Q through ldmatrix.trans).
#pragma unroll
    for (int kk = 0; kk < BR / 16; ++kk) {
      uint32_t pa[4] = {pack_bf16(st_[2 * kk][0], st_[2 * kk][1]), pack_bf16(st_[2 * kk][2], st_[2 * kk][3]),
                        pack_bf16(st_[2 * kk + 1][0], st_[2 * kk + 1][1]),
                        pack_bf16(st_[2 * kk + 1][2], st_[2 * kk + 1][3])};
      uint32_t sa[4] = {pack_bf16(dpt[2 * kk][0], dpt[2 * kk][1]), pack_bf16(dpt[2 * kk][2], dpt[2 * kk][3]),
                        pack_bf16(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                        pack_bf16(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < DN; dn += 2) {
        uint32_t df[4], qf[4];
        ldmatrix_x4_trans(df, dOs + (kk * 16 + (lm % 2) * 8 + lr) * RP + (dn + lm / 2) * 8);
        ldmatrix_x4_trans(qf, Qc + (kk * 16 + (lm % 2) * 8 + lr) * RP + (dn + lm / 2) * 8);
        const uint32_t d0f[2] = {df[0], df[1]}, d1f[2] = {df[2], df[3]};
        const uint32_t q0f[2] = {qf[0], qf[1]}, q1f[2] = {qf[2], qf[3]};
        mma_bf16_16816(dva[dn], pa, d0f);
        mma_bf16_16816(dva[dn + 1], pa, d1f);
        mma_bf16_16816(dka[dn], sa, q0f);
        mma_bf16_16816(dka[dn + 1], sa, q1f);
      }
    }
    // dS into shared memory, query-major, for dS K (written last, right
    // before the barrier, so that a missing barrier shows under the emulator).
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c)
        dSs[(j * 8 + 2 * t + (c % 2)) * KP + warp * 16 + g + (c / 2) * 8] = __float2bfloat16_rn(dpt[j][c]);
    __syncthreads();  // the tile's whole dS (all four warps' keys) is in shared memory

    // dQ partial = dS K for this warp's 16 queries x D/2 dims, over the 64 keys.
    uint32_t sf[BC / 16][4];
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk)
      ldmatrix_x4(sf[kk], dSs + (dq_r0 + (lane % 16)) * KP + kk * 16 + (lane / 16) * 8);
    const int row = q0 + dq_r0 + g;  // rows row and row + 8
#pragma unroll
    for (int n = 0; n < DN / 2; ++n) {
      const int dn = dq_dn0 + n;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int kk = 0; kk < BC / 16; ++kk) {
        // K rows (keys) kk*16 + 0..7 and 8..15, columns dn*8..: transposed, the B fragment.
        uint32_t kbf[2];
        ldmatrix_x2_trans(kbf, Ks + (kk * 16 + (lm % 2) * 8 + lr) * RP + dn * 8);
        mma_bf16_16816(acc, sf[kk], kbf);
      }
      if (row < qhi) *reinterpret_cast<float2*>(dqs + (long long)row * D + dn * 8 + 2 * t) = make_float2(acc[0], acc[1]);
      if (row + 8 < qhi)
        *reinterpret_cast<float2*>(dqs + (long long)(row + 8) * D + dn * 8 + 2 * t) = make_float2(acc[2], acc[3]);
    }
  }

  float* dkb = dk.ptr + b * dk.sb + h * dk.sh;
  float* dvb = dv.ptr + b * dv.sb + h * dv.sh;
#pragma unroll
  for (int r = 0; r < 2; ++r) {
    const int key = key0 + r * 8;
    if (key >= T) continue;
#pragma unroll
    for (int dn = 0; dn < DN; ++dn) {
      float* pk = dkb + (long long)key * dk.st + dn * 8 + 2 * t;
      float* pv = dvb + (long long)key * dv.st + dn * 8 + 2 * t;
      pk[0] = dka[dn][2 * r] * scale;
      pk[1] = dka[dn][2 * r + 1] * scale;
      pv[0] = dva[dn][2 * r];
      pv[1] = dva[dn][2 * r + 1];
    }
  }
}

// The kernels: fp32 Q (attention_bwd_kernel, _doc_kernel) and bf16 Q
// (attention_bwd_q16_kernel, _doc_q16_kernel); K, V of either type in all.
#define GPT_ATTN_BWD_KERNEL(NAME, DOC, Q16)                                                                         \
  template <int D>                                                                                                 \
  __global__ void __launch_bounds__(kThreads)                                                                      \
      NAME(AttnTensor dk, AttnTensor dv, DqPartials dqp, AttnTensor q, AttnTensor k, AttnTensor v,                 \
           const float* __restrict__ lse, const float* __restrict__ dvec, AttnTensor dout, int H, int T, float scale, \
           float scale_log2, Mask mask) {                                                                          \
    bwd_body<D, DOC, Q16>(dk, dv, dqp, q, k, v, lse, dvec, dout, H, T, scale, scale_log2, mask);                   \
  }
GPT_ATTN_BWD_KERNEL(attention_bwd_kernel, false, false)
GPT_ATTN_BWD_KERNEL(attention_bwd_doc_kernel, true, false)
GPT_ATTN_BWD_KERNEL(attention_bwd_q16_kernel, false, true)
GPT_ATTN_BWD_KERNEL(attention_bwd_doc_q16_kernel, true, true)
#undef GPT_ATTN_BWD_KERNEL

// ---------------------------------------------------------------------------
// dQ[i] = scale * sum of the key tiles' partials for row i, in key-tile
// order (fixed: bitwise the same every run). Row i's key tiles run from the
// one holding its first visible key (band start, document start) to the one
// holding i; tile kt's partial is at DqPartials::tile_rows. One warp per row.
// Grid (ceil(T/4), H, B).
__global__ void attention_bwd_dq_reduce_kernel(AttnTensor dq, DqPartials dqp, int H, int T, int D, float scale,
                                               Mask mask) {
  const int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
  const int h = blockIdx.y, b = blockIdx.z;
  if (row >= T) return;
  const long long bh = (long long)b * H + h;
  const int kt_lo = mask.key_lo(mask.docs(b), row) / dqp.tile, kt_hi = row / dqp.tile;
  float* dst = dq.ptr + b * dq.sb + h * dq.sh + (long long)row * dq.st;
  for (int d = lane; d < D; d += 32) {
    float s = 0.0f;
    for (int kt = kt_lo; kt <= kt_hi; ++kt) s += dqp.tile_rows(bh, kt)[(long long)row * D + d];
    dst[d] = s * scale;
  }
}

void check_shape(const AttnShape& s, const char* op) {
  GPT_CHECK_ARG(s.batch >= 1 && s.heads >= 1 && s.seq >= 1, std::string(op) + ": batch, heads and seq must be >= 1");
  GPT_CHECK_ARG(s.batch <= 65535 && s.heads <= 65535, std::string(op) + ": batch and heads must be <= 65535 on CUDA");
  if (s.head_dim < 1 || s.head_dim > kAttnFp32MaxHeadDim)
    throw GptError(ErrorCode::InvalidArgument, std::string(op) + ": head_dim " + std::to_string(s.head_dim) +
                                                   " is not supported by the CUDA attention kernels (1 to 256; "
                                                   "64, 80, 96 and 128 run on bf16 tensor cores)");
  GPT_CHECK_ARG(s.pattern != AttnPattern::Banded || s.window >= 1,
                std::string(op) + ": banded attention needs window >= 1");
}

// (Each launch names its kernel: the emulator's launch rewrite needs the name.)
// Each view has exactly one of ptr (fp32) and bf16 set; `f32_only` views
// (dO, dQ, dK, dV: fp32 always) must be fp32.
struct NamedView {
  const char* name;
  AttnTensor t;
};
void check_views(std::initializer_list<NamedView> any, std::initializer_list<NamedView> f32_only, const char* op) {
  for (const NamedView& v : any)
    if ((v.t.ptr == nullptr) == (v.t.bf16 == nullptr))
      throw GptError(ErrorCode::InvalidArgument, std::string(op) + ": " + v.name +
                                                     " must have exactly one of an fp32 and a bf16 pointer");
  for (const NamedView& v : f32_only) {
    if (v.t.is_bf16())
      throw GptError(ErrorCode::InvalidArgument, std::string(op) + ": " + v.name +
                                                     " is a bf16 view; it must be fp32 (only q, k, v and out may be bf16)");
    if (v.t.ptr == nullptr)
      throw GptError(ErrorCode::InvalidArgument, std::string(op) + ": " + v.name + " has no fp32 pointer");
  }
}

template <int D>
void fwd(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v, cudaStream_t st) {
  static std::atomic<bool> ok[4] = {{false}, {false}, {false}, {false}};
  constexpr int bytes = fwd_smem_bytes<D>();  // the same for all four
  const char* what = "attention_forward (shared-memory limit)";
  const dim3 grid(ceil_div(s.seq, 64), s.heads, s.batch);
  const float sl2 = s.scale * kLog2e;
  const Mask m = make_mask(s);
  const bool kv16 = k.is_bf16() && v.is_bf16();
  if (s.doc_start && kv16) {
    allow_smem(attention_fwd_doc_kv16_kernel<D>, bytes, ok[0], D, what);
    attention_fwd_doc_kv16_kernel<D><<<grid, kThreads, bytes, st>>>(out, lse, q, k, v, s.heads, s.seq, sl2, m);
  } else if (s.doc_start) {
    allow_smem(attention_fwd_doc_kernel<D>, bytes, ok[1], D, what);
    attention_fwd_doc_kernel<D><<<grid, kThreads, bytes, st>>>(out, lse, q, k, v, s.heads, s.seq, sl2, m);
  } else if (kv16) {
    allow_smem(attention_fwd_kv16_kernel<D>, bytes, ok[2], D, what);
    attention_fwd_kv16_kernel<D><<<grid, kThreads, bytes, st>>>(out, lse, q, k, v, s.heads, s.seq, sl2, m);
  } else {
    allow_smem(attention_fwd_kernel<D>, bytes, ok[3], D, what);
    attention_fwd_kernel<D><<<grid, kThreads, bytes, st>>>(out, lse, q, k, v, s.heads, s.seq, sl2, m);
  }
  CUDA_CHECK_LAUNCH("attention_forward");
}

template <int D>
void bwd(const AttnShape& s, AttnTensor dk, AttnTensor dv, DqPartials dqp, AttnTensor q, AttnTensor k,
         AttnTensor v, const float* lse, const float* dvec, AttnTensor dout, cudaStream_t st) {
  static std::atomic<bool> ok[4] = {{false}, {false}, {false}, {false}};
  const int bytes = bwd_smem_bytes<D>() + (s.doc_start ? kBwdDocSmemBytes : 0);
  const char* what = "attention_backward (shared-memory limit)";
  const dim3 grid(ceil_div(s.seq, kBwdKeys), s.heads, s.batch);
  const float sl2 = s.scale * kLog2e;
  const Mask m = make_mask(s);
  if (s.doc_start && q.is_bf16()) {
    allow_smem(attention_bwd_doc_q16_kernel<D>, bytes, ok[0], D, what);
    attention_bwd_doc_q16_kernel<D><<<grid, kThreads, bytes, st>>>(dk, dv, dqp, q, k, v, lse, dvec, dout, s.heads,
                                                                   s.seq, s.scale, sl2, m);
  } else if (s.doc_start) {
    allow_smem(attention_bwd_doc_kernel<D>, bytes, ok[1], D, what);
    attention_bwd_doc_kernel<D><<<grid, kThreads, bytes, st>>>(dk, dv, dqp, q, k, v, lse, dvec, dout, s.heads, s.seq,
                                                               s.scale, sl2, m);
  } else if (q.is_bf16()) {
    allow_smem(attention_bwd_q16_kernel<D>, bytes, ok[2], D, what);
    attention_bwd_q16_kernel<D><<<grid, kThreads, bytes, st>>>(dk, dv, dqp, q, k, v, lse, dvec, dout, s.heads, s.seq,
                                                               s.scale, sl2, m);
  } else {
    allow_smem(attention_bwd_kernel<D>, bytes, ok[3], D, what);
    attention_bwd_kernel<D><<<grid, kThreads, bytes, st>>>(dk, dv, dqp, q, k, v, lse, dvec, dout, s.heads, s.seq,
                                                           s.scale, sl2, m);
  }
  CUDA_CHECK_LAUNCH("attention_backward (dK, dV, dQ partials)");
}

// fp32 SIMT kernels (attention_fp32.cu) when fp32 was asked for or the head
// size has no tensor-core instantiation; bf16 tensor cores otherwise.
bool use_fp32(const AttnShape& s) {
  return s.precision == Precision::FP32 || !attention_head_dim_supported(s.head_dim);
}

}  // namespace

bool attention_head_dim_supported(int d) { return d == 64 || d == 80 || d == 96 || d == 128; }

void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v,
                       cudaStream_t st) {
  check_shape(s, "attention_forward");
  check_views({{"q", q}, {"k", k}, {"v", v}, {"out", out}}, {}, "attention_forward");
  if (use_fp32(s)) return attention_fp32_forward(s, out, lse, q, k, v, st);
  switch (s.head_dim) {
    case 64: fwd<64>(s, out, lse, q, k, v, st); break;
    case 80: fwd<80>(s, out, lse, q, k, v, st); break;
    case 96: fwd<96>(s, out, lse, q, k, v, st); break;
    case 128: fwd<128>(s, out, lse, q, k, v, st); break;
  }
}

// The scratch: D = rowsum(dO*O) ([B, H, T]), then (16-byte aligned) the dQ
// partials (DqPartials, attention_common.cuh).
namespace {
size_t dvec_floats(const AttnShape& s) { return ((size_t)s.batch * s.heads * s.seq + 3) / 4 * 4; }
int bwd_tile_keys(const AttnShape& s) { return use_fp32(s) ? kAttnFp32Tile : kBwdKeys; }
}  // namespace

size_t attention_backward_scratch_floats(const AttnShape& s) {
  check_shape(s, "attention_backward");
  return dvec_floats(s) + dq_partials_floats(make_dq_partials(s, make_mask(s), bwd_tile_keys(s), nullptr), s);
}

void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q, AttnTensor k,
                        AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout, float* scratch,
                        cudaStream_t st) {
  check_shape(s, "attention_backward");
  check_views({{"q", q}, {"k", k}, {"v", v}, {"out", out}}, {{"dout", dout}, {"dq", dq}, {"dk", dk}, {"dv", dv}},
              "attention_backward");
  float* dvec = scratch;
  const Mask m = make_mask(s);
  const DqPartials dqp = make_dq_partials(s, m, bwd_tile_keys(s), scratch + dvec_floats(s));
  attention_dvec_kernel<<<dim3(ceil_div(s.seq, 4), s.heads, s.batch), 128, 0, st>>>(dvec, out, dout, s.heads, s.seq,
                                                                                    s.head_dim, !use_fp32(s));
  CUDA_CHECK_LAUNCH("attention_backward (D = rowsum(dO*O))");
  if (use_fp32(s)) {
    attention_fp32_backward(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st);
  } else {
    switch (s.head_dim) {
      case 64: bwd<64>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st); break;
      case 80: bwd<80>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st); break;
      case 96: bwd<96>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st); break;
      case 128: bwd<128>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st); break;
    }
  }
  attention_bwd_dq_reduce_kernel<<<dim3(ceil_div(s.seq, 4), s.heads, s.batch), 128, 0, st>>>(
      dq, dqp, s.heads, s.seq, s.head_dim, s.scale, m);
  CUDA_CHECK_LAUNCH("attention_backward (dQ = sum of the partials)");
}

}  // namespace cuda
}  // namespace gpt
