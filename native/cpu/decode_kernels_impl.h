// Per-ISA bodies of the decode kernels (decode_kernels.h), compiled once per
// path (native/sources.cmake). Only local helpers here (no std:: templates): see
// simd.h for why.
//
// Register blocking: MB rows of x (at most 8) by NV vectors of output columns
// (linear, down one chunk of rows of w; for one or two rows, whole rows of the
// tile with the sums in L1 instead) or RB rows of e (head), accumulators in
// registers across the k loop; the weights are read once for all MB rows. The
// blocking changes with M, the arithmetic of an element does not
// (decode_kernels.h).
#pragma once
#include "decode_kernels.h"
#include "simd.h"
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

namespace {

#if defined(__AVX512F__)
constexpr int kAcc = 24;  // accumulators that fit beside operands (32 zmm)
#else
constexpr int kAcc = 12;  // 16 ymm / xmm
#endif

constexpr int dk_min(int a, int b) { return a < b ? a : b; }
constexpr int dk_max(int a, int b) { return a > b ? a : b; }
// Rows of e per block (head) for MB rows of x.
constexpr int head_rb(int mb) { return dk_max(1, dk_min(8, kAcc / mb)); }

typedef uint32_t vu __attribute__((vector_size(kVecBytes)));
typedef uint32_t vu_unaligned __attribute__((vector_size(kVecBytes), aligned(4)));
typedef uint16_t vh __attribute__((vector_size(kVecBytes / 2)));
typedef uint16_t vh_unaligned __attribute__((vector_size(kVecBytes / 2), aligned(2)));

// *p in every lane, straight from memory.
inline vf dk_bcast(const float* p) {
#if defined(__AVX512F__)
  return (vf)_mm512_set1_ps(*p);
#elif defined(__AVX2__)
  return (vf)_mm256_broadcast_ss(p);
#else
  const float x = *p;
  return vf{x, x, x, x};
#endif
}

inline vf as_vf(vu u) {
  vf f;
  std::memcpy(&f, &u, sizeof(f));
  return f;
}

// W bf16 values -> W floats.
inline vf load_bf16(const uint16_t* p) {
  const vh h = *reinterpret_cast<const vh_unaligned*>(p);
  return as_vf(__builtin_convertvector(h, vu) << 16);
}

inline void prefetch(const void* p) { __builtin_prefetch(p, 0, 0); }

// Horizontal sum in a fixed order (the same shuffles every call).
inline float dk_hsum(vf v) {
#if defined(__AVX512F__)
  return _mm512_reduce_add_ps((__m512)v);
#elif defined(__AVX2__)
  __m128 h = _mm_add_ps(_mm256_castps256_ps128((__m256)v), _mm256_extractf128_ps((__m256)v, 1));
  h = _mm_add_ps(h, _mm_movehl_ps(h, h));
  h = _mm_add_ss(h, _mm_shuffle_ps(h, h, 1));
  return _mm_cvtss_f32(h);
#else
  return vhsum(v);
#endif
}

// ---- linear fp32 by chunks of rows of w (decode_kernels.h) ---------------------

// Rows k .. k+KU-1 of w into the partial sums part[m, c], columns [n0, n1),
// MB rows of x from m0: part = (first ? 0 : part) + x[m, k] w[k, c] + ... in
// order of k. The KU rows stream side by side, each read front to back.
template <int MB, int KU>
inline void lin_f32_part_rows(const DecodeArgs& a, int m0, int k, int n0, int n1, float* part, int64_t ldp,
                              bool first) {
  const int K = a.K;
  const int64_t N = a.N;
  const float* wr = a.w + int64_t(k) * N;
  const float* x = a.x + int64_t(m0) * K + k;
  vf xb[MB][KU];
#pragma GCC unroll 8
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 4
    for (int u = 0; u < KU; ++u) xb[m][u] = dk_bcast(x + int64_t(m) * K + u);
  int c = n0;
  for (; c + W <= n1; c += W) {
    vf wv[KU];
#pragma GCC unroll 4
    for (int u = 0; u < KU; ++u) wv[u] = vload(wr + u * N + c);
#pragma GCC unroll 8
    for (int m = 0; m < MB; ++m) {
      float* pp = part + int64_t(m0 + m) * ldp + c;
      vf acc = first ? vzero() : vload(pp);
#pragma GCC unroll 4
      for (int u = 0; u < KU; ++u) acc = vfma(xb[m][u], wv[u], acc);
      vstore(pp, acc);
    }
  }
  if (c < n1) {
    const int n = n1 - c;
    vf wv[KU];
    for (int u = 0; u < KU; ++u) wv[u] = vload_partial(wr + u * N + c, n);
    for (int m = 0; m < MB; ++m) {
      float* pp = part + int64_t(m0 + m) * ldp + c;
      vf acc = first ? vzero() : vload_partial(pp, n);
      for (int u = 0; u < KU; ++u) acc = vfma(xb[m][u], wv[u], acc);
      vstore_partial(pp, acc, n);
    }
  }
}

// Rows [k0, k1) of w, NV full vectors of columns from c0, MB rows of x from
// m0: the sums held in registers down the chunk, stored once.
template <int MB, int NV>
inline void lin_f32_part_tile(const DecodeArgs& a, int m0, int k0, int k1, int c0, float* part, int64_t ldp) {
  const int K = a.K;
  const int64_t N = a.N;
  vf acc[MB][NV];
#pragma GCC unroll 8
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) acc[m][v] = vzero();
  const float* x = a.x + int64_t(m0) * K;
  const float* w = a.w + c0;
  // The runs of the next tile of columns, row by row: each line once, a
  // whole tile ahead (a tile's rows are far apart: no hardware stream).
  constexpr int kLines = (NV * W * 4 + 63) / 64;
  for (int k = k0; k < k1; ++k) {
    const float* wr = w + int64_t(k) * N;
#pragma GCC unroll 8
    for (int l = 0; l < kLines; ++l) prefetch(wr + NV * W + l * 16);
    vf wv[NV];
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) wv[v] = vload(wr + v * W);
#pragma GCC unroll 8
    for (int m = 0; m < MB; ++m) {
      const vf xb = dk_bcast(x + int64_t(m) * K + k);
#pragma GCC unroll 8
      for (int v = 0; v < NV; ++v) acc[m][v] = vfma(xb, wv[v], acc[m][v]);
    }
  }
#pragma GCC unroll 8
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 8
    for (int v = 0; v < NV; ++v) vstore(part + int64_t(m0 + m) * ldp + c0 + v * W, acc[m][v]);
}

template <int MB>
void lin_f32_part(const DecodeArgs& a, int m0, int k0, int k1, int n0, int n1, float* part, int64_t ldp) {
  if (MB <= 2) {
    // Few rows: whole rows of the tile, KU side by side, the sums in L1.
    constexpr int KU = 4;
    int k = k0;
    bool first = true;
    for (; k + KU <= k1; k += KU, first = false) lin_f32_part_rows<MB, KU>(a, m0, k, n0, n1, part, ldp, first);
    for (; k < k1; ++k, first = false) lin_f32_part_rows<MB, 1>(a, m0, k, n0, n1, part, ldp, first);
    return;
  }
  // More rows: register blocks of NV vectors down the chunk.
  constexpr int NV = dk_max(1, dk_min(8, kAcc / MB));
  int c = n0;
  for (; c + NV * W <= n1; c += NV * W) lin_f32_part_tile<MB, NV>(a, m0, k0, k1, c, part, ldp);
  for (; c + W <= n1; c += W) lin_f32_part_tile<MB, 1>(a, m0, k0, k1, c, part, ldp);
  if (c < n1) {
    bool first = true;
    for (int k = k0; k < k1; ++k, first = false) lin_f32_part_rows<MB, 1>(a, m0, k, c, n1, part, ldp, first);
  }
}

// ---- linear bf16 on the packed tiles ------------------------------------------

#if defined(__AVX512BF16__)
// MB rows from m0, TB tiles from t0, AVX512_BF16: two zmm per row per tile.
template <int MB, int TB>
inline void lin_dp_tiles(const DecodeArgs& a, int m0, int t0) {
  static_assert(W == 16, "zmm kernel");
  const int KP = (a.K + 1) / 2;
  const uint32_t* wb = static_cast<const uint32_t*>(a.wb) + int64_t(t0) * KP * kDecodeTile;
  vf acc[MB][TB][2];
#pragma GCC unroll 8
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 4
    for (int t = 0; t < TB; ++t) acc[m][t][0] = acc[m][t][1] = vzero();
  const uint32_t* xp = a.xp + int64_t(m0) * a.ldxp;
  constexpr int PD = 16;  // in kp steps (128 bytes each)
  for (int kp = 0; kp < KP; ++kp) {
    __m512bh w0[TB], w1[TB];
#pragma GCC unroll 4
    for (int t = 0; t < TB; ++t) {
      const uint32_t* p = wb + (int64_t(t) * KP + kp) * kDecodeTile;
      if (kp + PD < KP) {
        prefetch(p + PD * kDecodeTile);
        prefetch(p + PD * kDecodeTile + 16);
      }
      w0[t] = (__m512bh)_mm512_loadu_si512(p);
      w1[t] = (__m512bh)_mm512_loadu_si512(p + 16);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MB; ++m) {
      const __m512bh xb = (__m512bh)_mm512_set1_epi32(static_cast<int>(xp[int64_t(m) * a.ldxp + kp]));
#pragma GCC unroll 4
      for (int t = 0; t < TB; ++t) {
        acc[m][t][0] = (vf)_mm512_dpbf16_ps((__m512)acc[m][t][0], xb, w0[t]);
        acc[m][t][1] = (vf)_mm512_dpbf16_ps((__m512)acc[m][t][1], xb, w1[t]);
      }
    }
  }
  const int64_t N = a.N;
#pragma GCC unroll 8
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 4
    for (int t = 0; t < TB; ++t)
      for (int h = 0; h < 2; ++h) {
        const int c0 = (t0 + t) * kDecodeTile + h * 16;
        if (c0 >= N) continue;
        const int n = N - c0 < 16 ? static_cast<int>(N - c0) : 16;
        float* o = a.out + int64_t(m0 + m) * N + c0;
        if (n == 16) {
          vstore(o, a.bias ? acc[m][t][h] + vload(a.bias + c0) : acc[m][t][h]);
        } else {
          const vf r = a.bias ? acc[m][t][h] + vload_partial(a.bias + c0, n) : acc[m][t][h];
          vstore_partial(o, r, n);
        }
      }
}

template <int MB>
void lin_dp_rows(const DecodeArgs& a, int m0, int t0, int t1) {
  constexpr int TB = dk_max(1, dk_min(4, 8 / MB));
  int t = t0;
  for (; t + TB <= t1; t += TB) lin_dp_tiles<MB, TB>(a, m0, t);
  for (; t < t1; ++t) lin_dp_tiles<MB, 1>(a, m0, t);
}
#endif

// Without AVX512_BF16: one row, one tile; the bf16 values of x (a.x holds
// them rounded, [M, 2 * KP]) times those of w, in fp32.
inline void lin_bf16_fallback(const DecodeArgs& a, int m, int t) {
  constexpr int NV = kDecodeTile / W;
  const int KP = (a.K + 1) / 2;
  const uint32_t* wb = static_cast<const uint32_t*>(a.wb) + int64_t(t) * KP * kDecodeTile;
  const float* xr = a.x + int64_t(m) * a.ldxp * 2;
  vf acc[NV];
  for (int v = 0; v < NV; ++v) acc[v] = vzero();
  const vu hi_mask = vu{} + 0xffff0000u;
  for (int kp = 0; kp < KP; ++kp) {
    const vf x0 = dk_bcast(xr + 2 * kp), x1 = dk_bcast(xr + 2 * kp + 1);
    const uint32_t* p = wb + int64_t(kp) * kDecodeTile;
    for (int v = 0; v < NV; ++v) {
      const vu u = *reinterpret_cast<const vu_unaligned*>(p + v * W);
      acc[v] = vfma(x0, as_vf(u << 16), acc[v]);
      acc[v] = vfma(x1, as_vf(u & hi_mask), acc[v]);
    }
  }
  const int64_t N = a.N;
  for (int v = 0; v < NV; ++v) {
    const int c0 = t * kDecodeTile + v * W;
    if (c0 >= N) break;
    const int n = N - c0 < W ? static_cast<int>(N - c0) : W;
    float* o = a.out + int64_t(m) * N + c0;
    if (n == W) {
      vstore(o, a.bias ? acc[v] + vload(a.bias + c0) : acc[v]);
    } else {
      vstore_partial(o, a.bias ? acc[v] + vload_partial(a.bias + c0, n) : acc[v], n);
    }
  }
}

// ---- head fp32: out[m, n] = x[m] . e[n] ----------------------------------------

template <int MB, int RB>
inline void head_f32_block(const DecodeArgs& a, int m0, int n0) {
  const int K = a.K;
  vf acc[MB][RB];
#pragma GCC unroll 8
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) acc[m][r] = vzero();
  const float* x = a.x + int64_t(m0) * K;
  const float* e = a.w + int64_t(n0) * K;
  int k = 0;
  for (; k + W <= K; k += W) {
    vf ev[RB];
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) {
      prefetch(e + int64_t(r + RB) * K + k);
      ev[r] = vload(e + int64_t(r) * K + k);
    }
#pragma GCC unroll 8
    for (int m = 0; m < MB; ++m) {
      const vf xv = vload(x + int64_t(m) * K + k);
#pragma GCC unroll 8
      for (int r = 0; r < RB; ++r) acc[m][r] = vfma(xv, ev[r], acc[m][r]);
    }
  }
  if (k < K) {
    const int n = K - k;
    for (int r = 0; r < RB; ++r) {
      const vf ev = vload_partial(e + int64_t(r) * K + k, n);
      for (int m = 0; m < MB; ++m) acc[m][r] = vfma(vload_partial(x + int64_t(m) * K + k, n), ev, acc[m][r]);
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < RB; ++r) a.out[int64_t(m0 + m) * a.N + n0 + r] = dk_hsum(acc[m][r]);
}

template <int MB>
void head_f32_rows(const DecodeArgs& a, int m0, int n0, int n1) {
  constexpr int RB = head_rb(MB);
  int n = n0;
  for (; n + RB <= n1; n += RB) head_f32_block<MB, RB>(a, m0, n);
  for (; n < n1; ++n) head_f32_block<MB, 1>(a, m0, n);
}

// ---- head bf16: rows of e packed to Kp bf16 values, x as bf16 pairs ------------

#if defined(__AVX512BF16__)
template <int MB, int RB>
inline void head_dp_block(const DecodeArgs& a, int m0, int n0) {
  const int KP2 = static_cast<int>(a.ldxp);  // Kp / 2 pairs per row
  const uint32_t* e = static_cast<const uint32_t*>(a.wb) + int64_t(n0) * KP2;
  const uint32_t* x = a.xp + int64_t(m0) * a.ldxp;
  vf acc[MB][RB];
#pragma GCC unroll 8
  for (int m = 0; m < MB; ++m)
#pragma GCC unroll 8
    for (int r = 0; r < RB; ++r) acc[m][r] = vzero();
  // Row after row: the block is one stream read front to back. (Its rows are
  // short; read side by side they measured ~1.6x slower per byte. The fp32
  // rows, twice as long, measured best side by side.)
#pragma GCC unroll 8
  for (int r = 0; r < RB; ++r) {
    const uint32_t* er = e + int64_t(r) * KP2;
    for (int k = 0; k < KP2; k += 16) {
      const __m512bh ev = (__m512bh)_mm512_loadu_si512(er + k);
#pragma GCC unroll 8
      for (int m = 0; m < MB; ++m) {
        const __m512bh xv = (__m512bh)_mm512_loadu_si512(x + int64_t(m) * a.ldxp + k);
        acc[m][r] = (vf)_mm512_dpbf16_ps((__m512)acc[m][r], xv, ev);
      }
    }
  }
  for (int m = 0; m < MB; ++m)
    for (int r = 0; r < RB; ++r) a.out[int64_t(m0 + m) * a.N + n0 + r] = dk_hsum(acc[m][r]);
}

template <int MB>
void head_dp_rows(const DecodeArgs& a, int m0, int n0, int n1) {
  constexpr int RB = head_rb(MB);
  int n = n0;
  for (; n + RB <= n1; n += RB) head_dp_block<MB, RB>(a, m0, n);
  for (; n < n1; ++n) head_dp_block<MB, 1>(a, m0, n);
}
#endif

// Without AVX512_BF16: bf16 rows of e widened to fp32, times x rounded
// (a.x: [M, Kp] floats).
inline void head_bf16_fallback(const DecodeArgs& a, int m, int n) {
  const int Kp = static_cast<int>(a.ldxp) * 2;
  const uint16_t* e = static_cast<const uint16_t*>(a.wb) + int64_t(n) * Kp;
  const float* x = a.x + int64_t(m) * Kp;
  vf acc = vzero();
  for (int k = 0; k < Kp; k += W) acc = vfma(vload(x + k), load_bf16(e + k), acc);
  a.out[int64_t(m) * a.N + n] = dk_hsum(acc);
}

}  // namespace

// ---- entry points ----------------------------------------------------------------

#define GPT_DK_ROWS(fn, mb, ...) \
  switch (mb) {                  \
    case 1: fn<1>(__VA_ARGS__); break; \
    case 2: fn<2>(__VA_ARGS__); break; \
    case 3: fn<3>(__VA_ARGS__); break; \
    case 4: fn<4>(__VA_ARGS__); break; \
    case 5: fn<5>(__VA_ARGS__); break; \
    case 6: fn<6>(__VA_ARGS__); break; \
    case 7: fn<7>(__VA_ARGS__); break; \
    default: fn<8>(__VA_ARGS__); break; \
  }

void decode_linear_f32_part(const DecodeArgs& a, int k0, int k1, int n0, int n1, float* part, int64_t ldp) {
  for (int m0 = 0; m0 < a.M; m0 += 8) {
    const int mb = dk_min(8, a.M - m0);
    GPT_DK_ROWS(lin_f32_part, mb, a, m0, k0, k1, n0, n1, part, ldp)
  }
}

void decode_linear_f32_sum(const DecodeArgs& a, const float* part, int chunks, int64_t chunk_stride, int64_t ldp,
                           int n0, int n1) {
  for (int m = 0; m < a.M; ++m) {
    const float* p = part + int64_t(m) * ldp;
    float* o = a.out + int64_t(m) * a.N;
    int c = n0;
    for (; c + W <= n1; c += W) {
      vf s = vload(p + c);
      for (int j = 1; j < chunks; ++j) s += vload(p + j * chunk_stride + c);
      if (a.bias) s += vload(a.bias + c);
      vstore(o + c, s);
    }
    if (c < n1) {
      const int n = n1 - c;
      vf s = vload_partial(p + c, n);
      for (int j = 1; j < chunks; ++j) s += vload_partial(p + j * chunk_stride + c, n);
      if (a.bias) s += vload_partial(a.bias + c, n);
      vstore_partial(o + c, s, n);
    }
  }
}

// n0, n1: tiles of kDecodeTile columns.
void decode_linear_bf16_cols(const DecodeArgs& a, int t0, int t1) {
#if defined(__AVX512BF16__)
  if (a.dpbf16) {
    for (int m0 = 0; m0 < a.M; m0 += 8) {
      const int mb = dk_min(8, a.M - m0);
      GPT_DK_ROWS(lin_dp_rows, mb, a, m0, t0, t1)
    }
    return;
  }
#endif
  for (int t = t0; t < t1; ++t)
    for (int m = 0; m < a.M; ++m) lin_bf16_fallback(a, m, t);
}

void decode_head_f32_rows(const DecodeArgs& a, int n0, int n1) {
  for (int m0 = 0; m0 < a.M; m0 += 8) {
    const int mb = dk_min(8, a.M - m0);
    GPT_DK_ROWS(head_f32_rows, mb, a, m0, n0, n1)
  }
}

void decode_head_bf16_rows(const DecodeArgs& a, int n0, int n1) {
#if defined(__AVX512BF16__)
  if (a.dpbf16) {
    for (int m0 = 0; m0 < a.M; m0 += 8) {
      const int mb = dk_min(8, a.M - m0);
      GPT_DK_ROWS(head_dp_rows, mb, a, m0, n0, n1)
    }
    return;
  }
#endif
  for (int n = n0; n < n1; ++n)
    for (int m = 0; m < a.M; ++m) head_bf16_fallback(a, m, n);
}

#undef GPT_DK_ROWS

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
