// Flash attention kernels (see attention.cuh for the contract).
//
// Forward: one block of 4 warps per (query tile of 64, head, batch); each warp
// owns 16 query rows, keeps its Q fragments in registers and runs the online
// softmax over key tiles of 64 staged in shared memory (K as [key][d], V
// transposed as [d][key] so both mma operands are 32-bit shared loads). The
// scores live in log2 units (scale * log2(e) folded in) so exp is one exp2.
// P goes from the score accumulators straight into A fragments: an mma C
// tile pair (keys 16j..16j+15) has exactly the A-fragment layout.
//
// Backward: attention_dvec (D = rowsum(bf16(dO)*O), see there), then
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

#include <string>

#include "../core/error.h"
#include "attention.cuh"
#include "attention_common.cuh"
#include "attention_fp32.cuh"
#include "check.cuh"
#include "common.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr float kLn2 = 0.6931471805599453f;
constexpr int kThreads = 128;  // 4 warps

// Stages rows [t0, t0+ROWS) of one (b, h) slice of a strided view into shared
// memory as bf16, zero past T: row-major [ROWS][D+8] into `rm` and/or
// transposed [D][ROWS+8] into `tr` (either may be null).
template <int D, int ROWS>
__device__ __forceinline__ void stage(__nv_bfloat16* rm, __nv_bfloat16* tr, const float* __restrict__ base,
                                      long long st, int t0, int T) {
  for (int idx = threadIdx.x; idx < ROWS * D; idx += kThreads) {
    const int r = idx / D, d = idx - (idx / D) * D;
    const int t = t0 + r;
    const float v = t < T ? __ldg(base + (long long)t * st + d) : 0.0f;
    const __nv_bfloat16 b = __float2bfloat16_rn(v);
    if (rm) rm[r * (D + 8) + d] = b;
    if (tr) tr[d * (ROWS + 8) + r] = b;
  }
}

template <int D>
constexpr int fwd_smem_bytes() {
  return 2 * (64 * (D + 8) /*Q*/ + 64 * (D + 8) /*K*/ + D * (64 + 8) /*V^T*/);
}
constexpr int kBwdKeys = 64;  // keys per backward block (the dQ partials' tile)
template <int D>
constexpr int bwd_smem_bytes() {
  return 2 * (2 * 64 * (D + 8) /*K, V*/ + D * (64 + 8) /*K^T*/ + 2 * 32 * (D + 8) /*Q, dO*/ +
              2 * D * (32 + 8) /*Q^T, dO^T*/ + 32 * (64 + 8) /*dS*/) +
         2 * 32 * 4 /*lse, D*/;
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
template <int D, bool DOC>
__device__ __forceinline__ void fwd_body(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k,
                                         AttnTensor v, int H, int T, float scale_log2, Mask mask) {
  static_assert(D % 16 == 0, "head dim must be a multiple of 16");
  constexpr int BR = 64, BC = 64, QP = D + 8, VP = BC + 8;
  constexpr int KS = D / 16, DN = D / 8, NJ = BC / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* Qs = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [BR][QP]
  __nv_bfloat16* Ks = Qs + BR * QP;                                   // [BC][QP]
  __nv_bfloat16* Vt = Ks + BC * QP;                                   // [D][VP]

  const int qt = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int q0 = qt * BR;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const float* qb = q.ptr + b * q.sb + h * q.sh;
  const float* kb = k.ptr + b * k.sb + h * k.sh;
  const float* vb = v.ptr + b * v.sb + h * v.sh;

  stage<D, BR>(Qs, nullptr, qb, q.st, q0, T);
  __syncthreads();
  uint32_t qf[KS][4];
#pragma unroll
  for (int ks = 0; ks < KS; ++ks) {
    const __nv_bfloat16* p = Qs + (warp * 16 + g) * QP + ks * 16 + 2 * t;
    qf[ks][0] = lds32(p);
    qf[ks][1] = lds32(p + 8 * QP);
    qf[ks][2] = lds32(p + 8);
    qf[ks][3] = lds32(p + 8 * QP + 8);
  }

  float o[DN][4];
#pragma unroll
  for (int i = 0; i < DN; ++i) o[i][0] = o[i][1] = o[i][2] = o[i][3] = 0.0f;
  float mrow[2] = {-CUDART_INF_F, -CUDART_INF_F}, lrow[2] = {0.0f, 0.0f};
  const int row0 = q0 + warp * 16 + g;  // rows row0 and row0 + 8
  const int32_t* ds = DOC ? mask.docs(b) : nullptr;
  const int first[2] = {mask.first(ds, row0), mask.first(ds, row0 + 8)};  // the rows' document starts

  const int hi = min(T, q0 + BR);
  const int lo = mask.key_lo(ds, q0);
  for (int kt = lo / BC; kt * BC < hi; ++kt) {
    const int k0 = kt * BC;
    __syncthreads();  // everyone is done with the previous K/V tile
    stage<D, BC>(Ks, nullptr, kb, k.st, k0, T);
    stage<D, BC>(nullptr, Vt, vb, v.st, k0, T);
    __syncthreads();

    float s[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const __nv_bfloat16* p = Ks + (j * 8 + g) * QP + ks * 16 + 2 * t;
        uint32_t bf[2] = {lds32(p), lds32(p + 8)};
        mma_bf16_16816(s[j], qf[ks], bf);
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
      for (int dn = 0; dn < DN; ++dn) {
        const __nv_bfloat16* p = Vt + (dn * 8 + g) * VP + kk * 16 + 2 * t;
        uint32_t bf[2] = {lds32(p), lds32(p + 8)};
        mma_bf16_16816(o[dn], pa, bf);
      }
    }
  }

  float* ob = out.ptr + b * out.sb + h * out.sh;
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
      float* dst = ob + (long long)row * out.st + dn * 8 + 2 * t;
      dst[0] = o[dn][2 * r] * inv;
      dst[1] = o[dn][2 * r + 1] * inv;
    }
    if (t == 0) lse[((long long)b * H + h) * T + row] = (mrow[r] + log2f(l)) * kLn2;
  }
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_kernel(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k, AttnTensor v, int H,
                         int T, float scale_log2, Mask mask) {
  fwd_body<D, false>(out, lse, q, k, v, H, T, scale_log2, mask);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_fwd_doc_kernel(AttnTensor out, float* __restrict__ lse, AttnTensor q, AttnTensor k, AttnTensor v, int H,
                             int T, float scale_log2, Mask mask) {
  fwd_body<D, true>(out, lse, q, k, v, H, T, scale_log2, mask);
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
  const float* o = out.ptr + b * out.sb + h * out.sh + (long long)row * out.st;
  const float* d = dout.ptr + b * dout.sb + h * dout.sh + (long long)row * dout.st;
  float s = 0.0f;
  for (int i = lane; i < D; i += 32) s += o[i] * (bf16_dout ? __bfloat162float(__float2bfloat16_rn(d[i])) : d[i]);
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
// warp holds dS for its own 16 keys only.
template <int D, bool DOC>
__device__ __forceinline__ void bwd_body(AttnTensor dk, AttnTensor dv, float* __restrict__ dqp, int nslots,
                                         AttnTensor q, AttnTensor k, AttnTensor v, const float* __restrict__ lse,
                                         const float* __restrict__ dvec, AttnTensor dout, int H, int T, float scale,
                                         float scale_log2, Mask mask) {
  constexpr int BC = kBwdKeys, BR = 32, RP = D + 8, TP = BR + 8, KP = BC + 8;
  constexpr int KS = D / 16, DN = D / 8, NJ = BR / 8;
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __nv_bfloat16* Ks = reinterpret_cast<__nv_bfloat16*>(smem_raw);  // [BC][RP]
  __nv_bfloat16* Vs = Ks + BC * RP;                                   // [BC][RP]
  __nv_bfloat16* Kt = Vs + BC * RP;                                   // [D][KP]
  __nv_bfloat16* Qs = Kt + D * KP;                                    // [BR][RP]
  __nv_bfloat16* dOs = Qs + BR * RP;                                  // [BR][RP]
  __nv_bfloat16* Qt = dOs + BR * RP;                                  // [D][TP]
  __nv_bfloat16* dOt = Qt + D * TP;                                   // [D][TP]
  __nv_bfloat16* dSs = dOt + D * TP;                                  // [BR][KP] dS, query-major
  float* lse2_s = reinterpret_cast<float*>(dSs + BR * KP);            // [BR], log2 units
  float* dvec_s = lse2_s + BR;                                        // [BR]
  int32_t* first_s = reinterpret_cast<int32_t*>(dvec_s + BR);         // [BR] document starts (DOC only)

  const int kt = gridDim.x - 1 - blockIdx.x;
  const int h = blockIdx.y, b = blockIdx.z;
  const int k0 = kt * BC;
  const int warp = threadIdx.x / 32, lane = threadIdx.x % 32, g = lane / 4, t = lane % 4;
  const long long bh = (long long)b * H + h;
  const float* qb = q.ptr + b * q.sb + h * q.sh;
  const float* kb = k.ptr + b * k.sb + h * k.sh;
  const float* vb = v.ptr + b * v.sb + h * v.sh;
  const float* dob = dout.ptr + b * dout.sb + h * dout.sh;
  // This key tile's slot of the dQ partials: [T][D] for this (b, h).
  float* dqs = dqp + (((long long)(kt % nslots) * gridDim.z + b) * H + h) * T * D;

  stage<D, BC>(Ks, Kt, kb, k.st, k0, T);
  stage<D, BC>(Vs, nullptr, vb, v.st, k0, T);

  float dka[DN][4], dva[DN][4];
#pragma unroll
  for (int i = 0; i < DN; ++i)
#pragma unroll
    for (int c = 0; c < 4; ++c) dka[i][c] = dva[i][c] = 0.0f;
  const int key0 = k0 + warp * 16 + g;  // this thread's keys: key0, key0 + 8
  // The dQ step: this warp's 16 query rows and half of the head dims.
  const int dq_r0 = (warp & 1) * 16 + g;
  const int dq_dn0 = (warp >> 1) * (DN / 2);

  // Queries that see a key in [k0, k0+BC): i >= k0, i < j + window when
  // banded, and (documents) up to the end of the last key's document. Only
  // rows below qhi get a dQ partial (the rows attention_bwd_dq_reduce reads
  // from this tile's slot).
  const int32_t* ds = DOC ? mask.docs(b) : nullptr;
  const int qlo = k0;
  const int qhi = DOC ? mask.query_hi(ds, k0, BC) : mask.banded ? min(T, k0 + BC - 1 + mask.window) : T;
  for (int qt = qlo / BR; qt * BR < qhi; ++qt) {
    const int q0 = qt * BR;
    __syncthreads();  // previous query tile fully consumed (and K/V staged on the first pass)
    stage<D, BR>(Qs, Qt, qb, q.st, q0, T);
    stage<D, BR>(dOs, dOt, dob, dout.st, q0, T);
    if (threadIdx.x < BR) {
      const int i = q0 + threadIdx.x;
      lse2_s[threadIdx.x] = i < T ? lse[bh * T + i] * kLog2e : CUDART_INF_F;
      dvec_s[threadIdx.x] = i < T ? dvec[bh * T + i] : 0.0f;
      if (DOC) first_s[threadIdx.x] = mask.first(ds, i);
    }
    __syncthreads();

    // S^T = K Q^T and dP^T = V dO^T for this warp's 16 keys x BR queries.
    float st_[NJ][4], dpt[NJ][4];
#pragma unroll
    for (int j = 0; j < NJ; ++j)
#pragma unroll
      for (int c = 0; c < 4; ++c) st_[j][c] = dpt[j][c] = 0.0f;
#pragma unroll
    for (int ks = 0; ks < KS; ++ks) {
      uint32_t ka[4], va[4];
      const __nv_bfloat16* pk = Ks + (warp * 16 + g) * RP + ks * 16 + 2 * t;
      const __nv_bfloat16* pv = Vs + (warp * 16 + g) * RP + ks * 16 + 2 * t;
      ka[0] = lds32(pk); ka[1] = lds32(pk + 8 * RP); ka[2] = lds32(pk + 8); ka[3] = lds32(pk + 8 * RP + 8);
      va[0] = lds32(pv); va[1] = lds32(pv + 8 * RP); va[2] = lds32(pv + 8); va[3] = lds32(pv + 8 * RP + 8);
#pragma unroll
      for (int j = 0; j < NJ; ++j) {
        const __nv_bfloat16* pq = Qs + (j * 8 + g) * RP + ks * 16 + 2 * t;
        const __nv_bfloat16* pd = dOs + (j * 8 + g) * RP + ks * 16 + 2 * t;
        uint32_t qbf[2] = {lds32(pq), lds32(pq + 8)};
        uint32_t dbf[2] = {lds32(pd), lds32(pd + 8)};
        mma_bf16_16816(st_[j], ka, qbf);
        mma_bf16_16816(dpt[j], va, dbf);
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
        const float dsv = p * (dpt[j][c] - dvec_s[qi]);
        dpt[j][c] = dsv;
        dSs[qi * KP + warp * 16 + g + (c / 2) * 8] = __float2bfloat16_rn(dsv);
      }
    // dV += P^T dO, dK += dS^T Q (k index = query).
#pragma unroll
    for (int kk = 0; kk < BR / 16; ++kk) {
      uint32_t pa[4] = {pack_bf16(st_[2 * kk][0], st_[2 * kk][1]), pack_bf16(st_[2 * kk][2], st_[2 * kk][3]),
                        pack_bf16(st_[2 * kk + 1][0], st_[2 * kk + 1][1]),
                        pack_bf16(st_[2 * kk + 1][2], st_[2 * kk + 1][3])};
      uint32_t sa[4] = {pack_bf16(dpt[2 * kk][0], dpt[2 * kk][1]), pack_bf16(dpt[2 * kk][2], dpt[2 * kk][3]),
                        pack_bf16(dpt[2 * kk + 1][0], dpt[2 * kk + 1][1]),
                        pack_bf16(dpt[2 * kk + 1][2], dpt[2 * kk + 1][3])};
#pragma unroll
      for (int dn = 0; dn < DN; ++dn) {
        const __nv_bfloat16* pd = dOt + (dn * 8 + g) * TP + kk * 16 + 2 * t;
        const __nv_bfloat16* pq = Qt + (dn * 8 + g) * TP + kk * 16 + 2 * t;
        uint32_t dbf[2] = {lds32(pd), lds32(pd + 8)};
        uint32_t qbf[2] = {lds32(pq), lds32(pq + 8)};
        mma_bf16_16816(dva[dn], pa, dbf);
        mma_bf16_16816(dka[dn], sa, qbf);
      }
    }
    __syncthreads();  // the tile's whole dS (all four warps' keys) is in shared memory

    // dQ partial = dS K for this warp's 16 queries x D/2 dims, over the 64 keys.
    uint32_t sf[BC / 16][4];
#pragma unroll
    for (int kk = 0; kk < BC / 16; ++kk) {
      const __nv_bfloat16* p = dSs + dq_r0 * KP + kk * 16 + 2 * t;
      sf[kk][0] = lds32(p);
      sf[kk][1] = lds32(p + 8 * KP);
      sf[kk][2] = lds32(p + 8);
      sf[kk][3] = lds32(p + 8 * KP + 8);
    }
    const int row = q0 + dq_r0;  // rows row and row + 8
#pragma unroll
    for (int n = 0; n < DN / 2; ++n) {
      const int dn = dq_dn0 + n;
      float acc[4] = {0.0f, 0.0f, 0.0f, 0.0f};
#pragma unroll
      for (int kk = 0; kk < BC / 16; ++kk) {
        const __nv_bfloat16* pk = Kt + (dn * 8 + g) * KP + kk * 16 + 2 * t;
        uint32_t kbf[2] = {lds32(pk), lds32(pk + 8)};
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

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_kernel(AttnTensor dk, AttnTensor dv, float* __restrict__ dqp, int nslots, AttnTensor q, AttnTensor k,
                         AttnTensor v, const float* __restrict__ lse, const float* __restrict__ dvec, AttnTensor dout,
                         int H, int T, float scale, float scale_log2, Mask mask) {
  bwd_body<D, false>(dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, H, T, scale, scale_log2, mask);
}

template <int D>
__global__ void __launch_bounds__(kThreads)
    attention_bwd_doc_kernel(AttnTensor dk, AttnTensor dv, float* __restrict__ dqp, int nslots, AttnTensor q,
                             AttnTensor k, AttnTensor v, const float* __restrict__ lse, const float* __restrict__ dvec,
                             AttnTensor dout, int H, int T, float scale, float scale_log2, Mask mask) {
  bwd_body<D, true>(dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, H, T, scale, scale_log2, mask);
}

// ---------------------------------------------------------------------------
// dQ[i] = scale * sum of the key tiles' partials for row i, in key-tile
// order (fixed: bitwise the same every run). Row i's key tiles run from the
// one holding its first visible key (band start, document start) to the one
// holding i; tile kt's partial is in slot kt % nslots. One warp per row.
// Grid (ceil(T/4), H, B).
__global__ void attention_bwd_dq_reduce_kernel(AttnTensor dq, const float* __restrict__ dqp, int nslots,
                                               int tile_keys, int H, int T, int D, float scale, Mask mask) {
  const int row = blockIdx.x * 4 + threadIdx.x / 32, lane = threadIdx.x % 32;
  const int h = blockIdx.y, b = blockIdx.z;
  if (row >= T) return;
  const int kt_lo = mask.key_lo(mask.docs(b), row) / tile_keys, kt_hi = row / tile_keys;
  const long long slot_stride = (long long)gridDim.z * H * T * D;
  const float* src = dqp + (((long long)b * H + h) * T + row) * D;
  float* dst = dq.ptr + b * dq.sb + h * dq.sh + (long long)row * dq.st;
  for (int d = lane; d < D; d += 32) {
    float s = 0.0f;
    for (int kt = kt_lo; kt <= kt_hi; ++kt) s += src[(kt % nslots) * slot_stride + d];
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

template <int D, bool DOC>
void fwd_launch(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v,
                cudaStream_t st) {
  static std::atomic<bool> smem_ok{false};
  constexpr int bytes = fwd_smem_bytes<D>();
  dim3 grid(ceil_div(s.seq, 64), s.heads, s.batch);
  if constexpr (DOC) {
    allow_smem(attention_fwd_doc_kernel<D>, bytes, smem_ok, D, "attention_forward (shared-memory limit)");
    attention_fwd_doc_kernel<D><<<grid, kThreads, bytes, st>>>(out, lse, q, k, v, s.heads, s.seq, s.scale * kLog2e,
                                                               make_mask(s));
  } else {
    allow_smem(attention_fwd_kernel<D>, bytes, smem_ok, D, "attention_forward (shared-memory limit)");
    attention_fwd_kernel<D><<<grid, kThreads, bytes, st>>>(out, lse, q, k, v, s.heads, s.seq, s.scale * kLog2e,
                                                           make_mask(s));
  }
  CUDA_CHECK_LAUNCH("attention_forward");
}

template <int D>
void fwd(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v, cudaStream_t st) {
  if (s.doc_start)
    fwd_launch<D, true>(s, out, lse, q, k, v, st);
  else
    fwd_launch<D, false>(s, out, lse, q, k, v, st);
}

template <int D, bool DOC>
void bwd_launch(const AttnShape& s, AttnTensor dk, AttnTensor dv, float* dqp, int nslots, AttnTensor q, AttnTensor k,
                AttnTensor v, const float* lse, const float* dvec, AttnTensor dout, cudaStream_t st) {
  static std::atomic<bool> smem_ok{false};
  constexpr int bytes = bwd_smem_bytes<D>() + (DOC ? kBwdDocSmemBytes : 0);
  const Mask m = make_mask(s);
  dim3 grid(ceil_div(s.seq, kBwdKeys), s.heads, s.batch);
  if constexpr (DOC) {
    allow_smem(attention_bwd_doc_kernel<D>, bytes, smem_ok, D, "attention_backward (shared-memory limit)");
    attention_bwd_doc_kernel<D><<<grid, kThreads, bytes, st>>>(dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, s.heads,
                                                               s.seq, s.scale, s.scale * kLog2e, m);
  } else {
    allow_smem(attention_bwd_kernel<D>, bytes, smem_ok, D, "attention_backward (shared-memory limit)");
    attention_bwd_kernel<D><<<grid, kThreads, bytes, st>>>(dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, s.heads,
                                                           s.seq, s.scale, s.scale * kLog2e, m);
  }
  CUDA_CHECK_LAUNCH("attention_backward (dK, dV, dQ partials)");
}

template <int D>
void bwd(const AttnShape& s, AttnTensor dk, AttnTensor dv, float* dqp, int nslots, AttnTensor q, AttnTensor k,
         AttnTensor v, const float* lse, const float* dvec, AttnTensor dout, cudaStream_t st) {
  if (s.doc_start)
    bwd_launch<D, true>(s, dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, st);
  else
    bwd_launch<D, false>(s, dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, st);
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
  if (use_fp32(s)) return attention_fp32_forward(s, out, lse, q, k, v, st);
  switch (s.head_dim) {
    case 64: fwd<64>(s, out, lse, q, k, v, st); break;
    case 80: fwd<80>(s, out, lse, q, k, v, st); break;
    case 96: fwd<96>(s, out, lse, q, k, v, st); break;
    case 128: fwd<128>(s, out, lse, q, k, v, st); break;
  }
}

// The scratch: D = rowsum(dO*O) ([B, H, T]), then (16-byte aligned) the dQ
// partials, nslots x [B, H, T, D].
namespace {
size_t dvec_floats(const AttnShape& s) { return ((size_t)s.batch * s.heads * s.seq + 3) / 4 * 4; }
int bwd_tile_keys(const AttnShape& s) { return use_fp32(s) ? kAttnFp32Tile : kBwdKeys; }
}  // namespace

size_t attention_backward_scratch_floats(const AttnShape& s) {
  check_shape(s, "attention_backward");
  const int nslots = dq_partial_slots(make_mask(s), bwd_tile_keys(s));
  return dvec_floats(s) + (size_t)nslots * s.batch * s.heads * s.seq * s.head_dim;
}

void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q, AttnTensor k,
                        AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout, float* scratch,
                        cudaStream_t st) {
  check_shape(s, "attention_backward");
  float* dvec = scratch;
  float* dqp = scratch + dvec_floats(s);
  const Mask m = make_mask(s);
  const int tile_keys = bwd_tile_keys(s), nslots = dq_partial_slots(m, tile_keys);
  attention_dvec_kernel<<<dim3(ceil_div(s.seq, 4), s.heads, s.batch), 128, 0, st>>>(dvec, out, dout, s.heads, s.seq,
                                                                                    s.head_dim, !use_fp32(s));
  CUDA_CHECK_LAUNCH("attention_backward (D = rowsum(dO*O))");
  if (use_fp32(s)) {
    attention_fp32_backward(s, dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, st);
  } else {
    switch (s.head_dim) {
      case 64: bwd<64>(s, dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, st); break;
      case 80: bwd<80>(s, dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, st); break;
      case 96: bwd<96>(s, dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, st); break;
      case 128: bwd<128>(s, dk, dv, dqp, nslots, q, k, v, lse, dvec, dout, st); break;
    }
  }
  attention_bwd_dq_reduce_kernel<<<dim3(ceil_div(s.seq, 4), s.heads, s.batch), 128, 0, st>>>(
      dq, dqp, nslots, tile_keys, s.heads, s.seq, s.head_dim, s.scale, m);
  CUDA_CHECK_LAUNCH("attention_backward (dQ = sum of the partials)");
}

}  // namespace cuda
}  // namespace gpt
