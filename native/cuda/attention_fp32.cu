// fp32 SIMT flash attention (see attention_fp32.cuh for the contract).
//
// Tiles of 32 queries x 32 keys, 256 threads per block: 8 threads share one
// row of the tile, each holding 4 of its 32 scores (columns l8 + 8j) and
// DM / 8 of its head dims (dims l8 + 8i), so the row's max and sum are an
// xor-shuffle over 8 neighbouring lanes and no thread holds a whole row of
// D accumulators (D = 256 would spill). The head dim is padded to DM (32, 64,
// 128 or 256: four instantiations per kernel) with zeros in shared memory;
// dot products loop to the real D only. Shared rows are padded to DM + 1
// floats so the 4 (or 8) different rows a warp reads at one d fall in
// different banks.
//
// Kernels: forward (one block per query tile; online softmax in log2 units,
// lse saved), backward (one block per key tile; loops over the query tiles
// that see it: S^T and dP^T per thread row = key, dK and dV accumulated in
// registers, then the tile's dQ partial dS K with the thread row a query,
// into its slot for attention.cu's attention_bwd_dq_reduce to sum in a fixed
// order). With a document mask (Mask::doc) the key-tile and query-tile loops
// start and stop where the documents allow, and cut tiles mask by the rows'
// document starts too. D = rowsum(dO*O) comes from attention.cu's
// attention_dvec_kernel, in fp32 (dO not rounded) here. Every output and
// partial element has one writer: deterministic without atomics.
//
// Shape legend: B batch, H heads, T sequence, D head size; "bh" = (b, h).
#include <math_constants.h>

#include <string>

#include "../core/error.h"
#include "attention_fp32.cuh"
#include "attention_common.cuh"
#include "check.cuh"
#include "common.cuh"
#include "smem_copy.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr float kLn2 = 0.6931471805599453f;
constexpr int kThreads = 256;
constexpr int kTile = kAttnFp32Tile;    // query rows and key columns per tile
constexpr int kTpr = 8;                 // threads per tile row
constexpr int kCols = kTile / kTpr;     // scores per thread (4)
constexpr int kSp = kTile + 1;          // pitch of the 32 x 32 score tiles

// Rows [t0, t0+32) of one (b, h) slice (either storage type: bf16 widens
// exactly) into s[32][PITCH] (PITCH >= DM), zero past T and past D.
template <int DM, int PITCH = DM + 1>
__device__ __forceinline__ void stage_rows(float* s, const AttnRows& src, int t0, int T, int D) {
  for (int idx = threadIdx.x; idx < kTile * DM; idx += kThreads) {
    const int r = idx / DM, d = idx % DM;  // DM is a power of two
    const int t = t0 + r;
    s[r * PITCH + d] = (t < T && d < D) ? src.at((long long)t * src.st + d) : 0.0f;
  }
}

// The forward's K/V tiles: rows of DM + 4 floats (16-byte aligned rows for
// cp.async; the 8 rows a warp reads at one d still fall in different banks).
template <int DM>
__host__ __device__ constexpr int kv_pitch() {
  return DM + 4;
}
// The same rows with cp.async: 16-byte copies where the view allows (D a
// multiple of 4, base and strides 16-byte aligned: vec16), else one 4-byte
// copy per float; rows past T zero-filled. Columns D..DM are not written
// (zero them once: zero_pad_cols). The copies land at this thread's
// cp_async_wait; other threads see them after a barrier that follows it.
// A bf16 view is read with plain loads, widened to fp32 on the way (its
// stores, like the copies, are seen by others after the next barrier).
template <int DM>
__device__ __forceinline__ void copy_rows_async(float* s, const AttnRows& src, int t0, int T, int D, bool vec16) {
  constexpr int P = kv_pitch<DM>();
  const float* __restrict__ base = src.f;
  const long long st = src.st;
  if (src.h) {
    for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
      const int r = idx / D, d = idx - r * D;
      const int t = t0 + r;
      s[r * P + d] = t < T ? src.at((long long)t * st + d) : 0.0f;
    }
  } else if (vec16) {
    const int cpr = D / 4;  // chunks per row
    for (int idx = threadIdx.x; idx < kTile * cpr; idx += kThreads) {
      const int r = idx / cpr, col = (idx - r * cpr) * 4;
      const int t = t0 + r;
      if (t < T)
        cp_async_16(s + r * P + col, base + (long long)t * st + col);
      else
        cp_async_16_zfill(s + r * P + col, base + (long long)t0 * st, 0);
    }
  } else {
    for (int idx = threadIdx.x; idx < kTile * D; idx += kThreads) {
      const int r = idx / D, d = idx - r * D;
      const int t = t0 + r;
      if (t < T)
        cp_async_4(s + r * P + d, base + (long long)t * st + d);
      else
        s[r * P + d] = 0.0f;
    }
  }
}
template <int DM>
__device__ __forceinline__ void zero_pad_cols(float* s, int D) {
  constexpr int P = kv_pitch<DM>();
  for (int idx = threadIdx.x; idx < kTile * (DM - D); idx += kThreads) {
    const int r = idx / (DM - D);
    s[r * P + D + (idx - r * (DM - D))] = 0.0f;
  }
}
__device__ __forceinline__ bool aligned16(const float* base, const AttnTensor& x, int D) {
  return base && D % 4 == 0 && reinterpret_cast<uintptr_t>(base) % 16 == 0 && x.st % 4 == 0 && x.sh % 4 == 0 &&
         x.sb % 4 == 0;
}
// Whether the forward double-buffers K/V: two stages of K and V at DM 256
// (4 x 33 KB more) do not fit next to Q in sm_80's 163 KB.
template <int DM>
__host__ __device__ constexpr int fwd_stages() {
  return DM <= 128 ? 2 : 1;
}

// The 8 lanes of one tile row are lanes 8k..8k+7 of a warp.
__device__ __forceinline__ float row_max8(float v) {
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 1));
  v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 2));
  return fmaxf(v, __shfl_xor_sync(0xffffffffu, v, 4));
}
__device__ __forceinline__ float row_sum8(float v) {
  v += __shfl_xor_sync(0xffffffffu, v, 1);
  v += __shfl_xor_sync(0xffffffffu, v, 2);
  return v + __shfl_xor_sync(0xffffffffu, v, 4);
}

// Dynamic shared memory of each kernel (floats -> bytes).
template <int DM>
constexpr int fwd_smem_bytes() {
  return 4 * (kTile * kSp /*P*/ + kTile * (DM + 1) /*Q*/ + 2 * fwd_stages<DM>() * kTile * kv_pitch<DM>() /*K, V*/);
}
// The backward's Q/dO stages: two (the next query tile is copied while this
// one is computed) up to DM 64; one above, where two would take DM 128 past
// the 99 KB sm_86/89 allow per block (107 KB) and DM 256 past sm_80's 163 KB.
template <int DM>
__host__ __device__ constexpr int bwd_stages() {
  return DM <= 64 ? 2 : 1;
}
template <int DM>
constexpr int bwd_smem_bytes() {
  return 4 * (2 * bwd_stages<DM>() * kTile * kv_pitch<DM>() /*Q, dO*/ + 2 * kTile * (DM + 1) /*K, V*/ +
              2 * kTile * kSp /*P, dS*/ + 2 * bwd_stages<DM>() * kTile /*lse, D*/);
}
// With a document mask the kernel also stages the query tiles' document
// starts (so a launch without one asks for what it always did).
template <int DM>
constexpr int bwd_doc_smem_bytes() {
  return 4 * bwd_stages<DM>() * kTile;
}
static_assert(bwd_smem_bytes<256>() + bwd_doc_smem_bytes<256>() <= 163 * 1024 &&
                  bwd_smem_bytes<128>() + bwd_doc_smem_bytes<128>() <= 99 * 1024 &&
                  fwd_smem_bytes<128>() <= 99 * 1024,
              "must fit sm_80's per-block opt-in shared memory");

// ---------------------------------------------------------------------------
// Forward. Grid (ceil(T/32), H, B); heavy (late) query tiles first.
// out: [B,H,T,D] view; lse: [B,H,T]
// K/V pipeline (two stages, DM <= 128): per key tile j, wait for its
// cp.async, one barrier (tile j visible to all; every thread is done with
// tile j-1's stage), issue tile j+1 into that other stage, compute tile j.
// DM 256 has one stage: a second barrier before the next copy, no overlap.
template <int DM>
__global__ void __launch_bounds__(kThreads, 2)
    attention_fp32_fwd_kernel(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k, AttnTensor v, int H,
                              int T, int D, float scale_log2, Mask mask) {
  constexpr int P = DM + 1, KP = kv_pitch<DM>(), ND = DM / kTpr, NS = fwd_stages<DM>();
  extern __shared__ __align__(16) float smem_f32[];
  float* Ps = smem_f32;                    // [32][kSp] probabilities of the current key tile
  float* Qs = Ps + kTile * kSp;            // [32][P]
  float* KVs = Qs + kTile * P;             // NS stages of K [32][KP] then V [32][KP]
  static_assert((kTile * kSp + kTile * P) % 4 == 0 && KP % 4 == 0, "K/V rows must be 16-byte aligned");

  const int qt = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int q0 = qt * kTile;
  const int r = threadIdx.x / kTpr, l8 = threadIdx.x % kTpr;
  const int row = q0 + r;
  const AttnRows kb = attn_rows(k, b, h), vb = attn_rows(v, b, h);
  const bool kvec = aligned16(kb.f, k, D), vvec = aligned16(vb.f, v, D);

  const int32_t* ds = mask.docs(b);
  const int first = mask.first(ds, row);  // this row's document start

  const int hi = min(T, q0 + kTile);
  const int lo = mask.key_lo(ds, q0);
  if (D < DM)
    for (int i = 0; i < 2 * NS; ++i) zero_pad_cols<DM>(KVs + i * kTile * KP, D);
  copy_rows_async<DM>(KVs, kb, (lo / kTile) * kTile, T, D, kvec);
  copy_rows_async<DM>(KVs + kTile * KP, vb, (lo / kTile) * kTile, T, D, vvec);
  cp_async_commit();
  stage_rows<DM>(Qs, attn_rows(q, b, h), q0, T, D);

  float o[ND];
#pragma unroll
  for (int i = 0; i < ND; ++i) o[i] = 0.0f;
  float m = -CUDART_INF_F, l = 0.0f;  // running max (log2 units) and this thread's partial sum

  for (int kt = lo / kTile; kt * kTile < hi; ++kt) {
    const int k0 = kt * kTile;
    const float* Ks = KVs + ((kt - lo / kTile) % NS) * 2 * kTile * KP;
    const float* Vs = Ks + kTile * KP;
    if (NS == 1 && kt > lo / kTile) {
      __syncthreads();  // one stage: everyone is done with the previous tile before it is refilled
      copy_rows_async<DM>(KVs, kb, k0, T, D, kvec);
      copy_rows_async<DM>(KVs + kTile * KP, vb, k0, T, D, vvec);
      cp_async_commit();
    }
    cp_async_wait<0>();  // this thread's copies of tile kt have landed
    __syncthreads();     // tile kt is visible to all (and Q is staged); the other stage is free
    if (NS == 2 && (kt + 1) * kTile < hi) {
      float* nk = KVs + ((kt + 1 - lo / kTile) % NS) * 2 * kTile * KP;
      copy_rows_async<DM>(nk, kb, k0 + kTile, T, D, kvec);
      copy_rows_async<DM>(nk + kTile * KP, vb, k0 + kTile, T, D, vvec);
      cp_async_commit();
    }

    float s[kCols];
#pragma unroll
    for (int j = 0; j < kCols; ++j) s[j] = 0.0f;
    const float* qr = Qs + r * P;
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      const float x = qr[d];
#pragma unroll
      for (int j = 0; j < kCols; ++j) s[j] = fmaf(x, Ks[(l8 + kTpr * j) * KP + d], s[j]);
    }
    const bool cut = mask.cuts(ds, q0, kTile, k0, kTile);
    float mx = -CUDART_INF_F;
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      float x = s[j] * scale_log2;
      if (cut && !mask.ok(row, k0 + l8 + kTpr * j, first)) x = -CUDART_INF_F;
      s[j] = x;
      mx = fmaxf(mx, x);
    }
    mx = row_max8(mx);
    const float mnew = fmaxf(m, mx);
    // A row with nothing visible yet keeps m = -inf: use 0 as the base so its
    // masked scores give exp2(-inf) = 0 instead of NaN.
    const float base = mnew == -CUDART_INF_F ? 0.0f : mnew;
    const float alpha = exp2f(m - base);  // 0 while m was -inf
    m = mnew;
    float sum = 0.0f;
    // A row's P is written and read by its own 8 lanes (one warp): __syncwarp
    // orders this write after the previous tile's reads, and the reads below after it.
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const float p = exp2f(s[j] - base);
      Ps[r * kSp + l8 + kTpr * j] = p;
      sum += p;
    }
    l = l * alpha + sum;
#pragma unroll
    for (int i = 0; i < ND; ++i) o[i] *= alpha;
    __syncwarp();  // the row's P is in shared memory

    // O += P V (keys past T or outside the mask have P = 0 and V = 0).
    const float* pr = Ps + r * kSp;
    for (int c = 0; c < kTile; ++c) {
      const float p = pr[c];
      const float* vr = Vs + c * KP + l8;
#pragma unroll
      for (int i = 0; i < ND; ++i) o[i] = fmaf(p, vr[kTpr * i], o[i]);
    }
  }

  l = row_sum8(l);
  if (row >= T) return;
  const float inv = 1.0f / l;  // l >= 1: the row's max contributes exp2(0)
  const long long orow = b * out.sb + h * out.sh + (long long)row * out.st;  // bf16 out: rounded once
#pragma unroll
  for (int i = 0; i < ND; ++i) {
    const int d = l8 + kTpr * i;
    if (d < D) attn_store(out, orow + d, o[i] * inv);
  }
  if (l8 == 0) lse[((long long)b * H + h) * T + row] = (m + log2f(l)) * kLn2;
}

// ---------------------------------------------------------------------------
// Backward in one pass: one block per key tile of 32 (tile row = key), looping
// over the query tiles that see it: S^T and dP^T once per tile pair, dV and dK
// accumulated in registers, and the tile's share of dQ (dS K, unscaled) written
// to its slot of the partials dqp (tile row = query for that step).
// Grid (ceil(T/32), H, B).
template <int DM>
__global__ void __launch_bounds__(kThreads, 2)
    attention_fp32_bwd_kernel(AttnTensor dk, AttnTensor dv, DqPartials dqp, AttnTensor q,
                              AttnTensor k, AttnTensor v,
                                   const float* __restrict__ lse, const float* __restrict__ dvec, AttnTensor dout,
                                   int H, int T, int D, float scale, float scale_log2, Mask mask) {
  constexpr int P = DM + 1, KP = kv_pitch<DM>(), ND = DM / kTpr, NS = bwd_stages<DM>();
  extern __shared__ __align__(16) float smem_f32[];
  float* QdO = smem_f32;                   // NS stages of Q [32][KP] then dO [32][KP]
  float* Ks = QdO + NS * 2 * kTile * KP;   // [32][P]
  float* Vs = Ks + kTile * P;              // [32][P]
  float* Ps = Vs + kTile * P;              // [32 keys][kSp queries]
  float* dSs = Ps + kTile * kSp;           // [32 keys][kSp queries]
  float* lse2_all = dSs + kTile * kSp;     // [NS][32] log2 units
  float* dvec_all = lse2_all + NS * kTile;  // [NS][32]
  int32_t* first_all = reinterpret_cast<int32_t*>(dvec_all + NS * kTile);  // [NS][32] document starts (documents only)

  const int kt = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int k0 = kt * kTile;
  const int c = threadIdx.x / kTpr, l8 = threadIdx.x % kTpr;
  const int key = k0 + c;
  const long long bh = (long long)b * H + h;
  const AttnRows qb = attn_rows(q, b, h), dob = attn_rows(dout, b, h);
  const bool qvec = aligned16(qb.f, q, D), dovec = aligned16(dob.f, dout, D);
  // This key tile's slot of the dQ partials: [T][D] for this (b, h).
  float* dqs = dqp.tile_rows(bh, kt);

  // Queries that see a key in [k0, k0+32): i >= k0, i < j + window when
  // banded, and (documents) up to the end of the last key's document.
  const int32_t* ds = mask.docs(b);
  const int qhi = mask.query_hi(ds, k0, kTile);
  const int qt0 = k0 / kTile;
  // Query tile qt into stage st: Q and dO by cp.async, lse, D and the
  // document starts by plain loads (all seen by others after the next barrier).
  auto fetch = [&](int qt, int st) {
    const int q0 = qt * kTile;
    float* Qd = QdO + st * 2 * kTile * KP;
    copy_rows_async<DM>(Qd, qb, q0, T, D, qvec);
    copy_rows_async<DM>(Qd + kTile * KP, dob, q0, T, D, dovec);
    cp_async_commit();
    if (threadIdx.x < kTile) {
      const int i = q0 + threadIdx.x;
      lse2_all[st * kTile + threadIdx.x] = i < T ? lse[bh * T + i] * kLog2e : CUDART_INF_F;
      dvec_all[st * kTile + threadIdx.x] = i < T ? dvec[bh * T + i] : 0.0f;
      if (ds) first_all[st * kTile + threadIdx.x] = mask.first(ds, i);
    }
  };
  if (D < DM)
    for (int i = 0; i < 2 * NS; ++i) zero_pad_cols<DM>(QdO + i * kTile * KP, D);
  fetch(qt0, 0);
  stage_rows<DM>(Ks, attn_rows(k, b, h), k0, T, D);
  stage_rows<DM>(Vs, attn_rows(v, b, h), k0, T, D);

  float dka[ND], dva[ND];
#pragma unroll
  for (int i = 0; i < ND; ++i) dka[i] = dva[i] = 0.0f;

  for (int qt = qt0; qt * kTile < qhi; ++qt) {
    const int q0 = qt * kTile, st = (qt - qt0) % NS;
    if (NS == 1 && qt > qt0) {
      __syncthreads();  // one stage: everyone is done with the previous query tile before it is refilled
      fetch(qt, 0);
    }
    cp_async_wait<0>();  // this thread's copies of query tile qt have landed
    __syncthreads();     // tile qt (and K, V) visible to all; the previous tile's stage, P and dS are consumed
    if (NS == 2 && (qt + 1) * kTile < qhi) fetch(qt + 1, 1 - st);
    const float* Qs = QdO + st * 2 * kTile * KP;
    const float* dOs = Qs + kTile * KP;
    const float* lse2_s = lse2_all + st * kTile;
    const float* dvec_s = dvec_all + st * kTile;
    const int32_t* first_s = first_all + st * kTile;

    // S^T and dP^T: this thread's key against queries l8 + 8j.
    float s[kCols], dp[kCols];
#pragma unroll
    for (int j = 0; j < kCols; ++j) s[j] = dp[j] = 0.0f;
    const float* kr = Ks + c * P;
    const float* vr = Vs + c * P;
#pragma unroll 4
    for (int d = 0; d < D; ++d) {
      const float kx = kr[d], vx = vr[d];
#pragma unroll
      for (int j = 0; j < kCols; ++j) {
        s[j] = fmaf(kx, Qs[(l8 + kTpr * j) * KP + d], s[j]);
        dp[j] = fmaf(vx, dOs[(l8 + kTpr * j) * KP + d], dp[j]);
      }
    }
    const bool cut = mask.cuts(ds, q0, kTile, k0, kTile);
#pragma unroll
    for (int j = 0; j < kCols; ++j) {
      const int qi = l8 + kTpr * j;
      float p = exp2f(s[j] * scale_log2 - lse2_s[qi]);
      if (cut && !mask.ok(q0 + qi, key, ds ? first_s[qi] : 0)) p = 0.0f;
      Ps[c * kSp + qi] = p;
      dSs[c * kSp + qi] = p * (dp[j] - dvec_s[qi]);
    }
    __syncthreads();  // the key's whole row of P and dS is in shared memory

    // dV += P^T dO, dK += dS^T Q over the tile's queries, in query order.
    const float* pr = Ps + c * kSp;
    const float* sr = dSs + c * kSp;
    for (int qi = 0; qi < kTile; ++qi) {
      const float p = pr[qi], dsv = sr[qi];
      const float* dor = dOs + qi * KP + l8;
      const float* qrow = Qs + qi * KP + l8;
#pragma unroll
      for (int i = 0; i < ND; ++i) {
        dva[i] = fmaf(p, dor[kTpr * i], dva[i]);
        dka[i] = fmaf(dsv, qrow[kTpr * i], dka[i]);
      }
    }

    // dQ partial for query q0 + c (this thread's row now a query): dS K over
    // the tile's keys in key order, 4 head dims at a time (few registers
    // beside dK, dV). Only rows the tile's keys are seen by (below qhi).
    const int qrow_i = q0 + c;
    if (qrow_i < qhi) {
      float* dst = dqs + (long long)qrow_i * D;
#pragma unroll
      for (int i0 = 0; i0 < ND; i0 += 4) {
        float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
        for (int kc = 0; kc < kTile; ++kc) {
          const float dsv = dSs[kc * kSp + c];
          const float* kr2 = Ks + kc * P + l8;
#pragma unroll
          for (int i = 0; i < 4; ++i) acc[i] = fmaf(dsv, kr2[kTpr * (i0 + i)], acc[i]);
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
          const int d = l8 + kTpr * (i0 + i);
          if (d < D) dst[d] = acc[i];
        }
      }
    }
  }

  if (key >= T) return;
  float* dkr = dk.ptr + b * dk.sb + h * dk.sh + (long long)key * dk.st;
  float* dvr = dv.ptr + b * dv.sb + h * dv.sh + (long long)key * dv.st;
#pragma unroll
  for (int i = 0; i < ND; ++i) {
    const int d = l8 + kTpr * i;
    if (d < D) {
      dkr[d] = dka[i] * scale;
      dvr[d] = dva[i];
    }
  }
}

template <int DM>
void fwd(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v, cudaStream_t st) {
  static std::atomic<bool> smem_ok{false};
  constexpr int bytes = fwd_smem_bytes<DM>();
  allow_smem(attention_fp32_fwd_kernel<DM>, bytes, smem_ok, s.head_dim, "attention_forward (fp32, shared memory)");
  dim3 grid(ceil_div(s.seq, kTile), s.heads, s.batch);
  attention_fp32_fwd_kernel<DM><<<grid, kThreads, bytes, st>>>(out, lse, q, k, v, s.heads, s.seq, s.head_dim,
                                                               s.scale * kLog2e, make_mask(s));
  CUDA_CHECK_LAUNCH("attention_forward (fp32)");
}

template <int DM>
void bwd(const AttnShape& s, AttnTensor dk, AttnTensor dv, DqPartials dqp, AttnTensor q, AttnTensor k,
         AttnTensor v, const float* lse, const float* dvec, AttnTensor dout, cudaStream_t st) {
  static std::atomic<bool> smem_ok{false};
  const int bytes = bwd_smem_bytes<DM>() + (s.doc_start ? bwd_doc_smem_bytes<DM>() : 0);
  // The limit is raised once, to what a launch with documents needs.
  allow_smem(attention_fp32_bwd_kernel<DM>, bwd_smem_bytes<DM>() + bwd_doc_smem_bytes<DM>(), smem_ok, s.head_dim,
             "attention_backward (fp32, shared memory)");
  dim3 grid(ceil_div(s.seq, kTile), s.heads, s.batch);
  attention_fp32_bwd_kernel<DM><<<grid, kThreads, bytes, st>>>(dk, dv, dqp, q, k, v, lse, dvec, dout, s.heads,
                                                               s.seq, s.head_dim, s.scale, s.scale * kLog2e,
                                                               make_mask(s));
  CUDA_CHECK_LAUNCH("attention_backward (fp32 dK, dV, dQ partials)");
}

}  // namespace

void attention_fp32_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k,
                            AttnTensor v, cudaStream_t st) {
  const int D = s.head_dim;
  GPT_CHECK_ARG(D >= 1 && D <= kAttnFp32MaxHeadDim, "attention_forward (fp32): head_dim out of range");
  if (D <= 32)
    fwd<32>(s, out, lse, q, k, v, st);
  else if (D <= 64)
    fwd<64>(s, out, lse, q, k, v, st);
  else if (D <= 128)
    fwd<128>(s, out, lse, q, k, v, st);
  else
    fwd<256>(s, out, lse, q, k, v, st);
}

void attention_fp32_backward(const AttnShape& s, AttnTensor dk, AttnTensor dv, DqPartials dqp, AttnTensor q,
                             AttnTensor k, AttnTensor v, const float* lse, const float* dvec, AttnTensor dout,
                             cudaStream_t st) {
  const int D = s.head_dim;
  GPT_CHECK_ARG(D >= 1 && D <= kAttnFp32MaxHeadDim, "attention_backward (fp32): head_dim out of range");
  if (D <= 32)
    bwd<32>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st);
  else if (D <= 64)
    bwd<64>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st);
  else if (D <= 128)
    bwd<128>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st);
  else
    bwd<256>(s, dk, dv, dqp, q, k, v, lse, dvec, dout, st);
}

}  // namespace cuda
}  // namespace gpt
