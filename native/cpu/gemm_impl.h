// Per-ISA bodies of the GEMM (gemm.h): panel packing and register-blocked
// microkernels. gemm.cc plans the blocking and spreads output tiles over the
// pool; each task calls gemm_tile() here for one tile of C.
//
// Included twice over: without GPT_ISA_NS (from gemm.cc) it only declares the
// shared argument struct and the per-ISA entry points; with GPT_ISA_NS (from
// gemm_<isa>.cc) it also defines them for that instruction set.
//
// Legend: op(A) is [M, K], op(B) is [K, N], C is [M, N]. A task owns the
// tile C[m0 : m0+mc, n0 : n0+nc] and walks K in blocks of kc, in order:
//   pack op(B)[k0.., n0..] into strips of NR columns (Bp: strip, then k, then
//     column; kc x nc, stays in L2)
//   for each MR-row strip of the tile: pack op(A) for it (Ap: k, then row;
//     MR x kc, stays in L1), then for each NR strip of Bp the microkernel
//     (MR x NR accumulators in registers, kb rank-1 updates), then C += tile
//     (the first block adds the bias and, unless accumulating, overwrites).
// Each C element thus sees the same sequence of operations whichever task or
// thread computes it: results do not depend on the thread count.
//
// bf16 with AVX512_BF16: the packers round to bf16 (nearest even) and store
// pairs of consecutive k next to each other, the layout vdpbf16ps consumes
// (one 32-bit lane = (k, k+1)). Elsewhere the packers round to bf16 but keep
// fp32 storage, and the fp32 kernel multiplies the rounded values (products of
// two bf16 values are exact in fp32, so only the summation order differs).
#pragma once
#include <cstddef>
#include <cstdint>

#include "dispatch.h"

namespace gpt {
namespace cpu {

struct GemmArgs {
  bool trans_a = false, trans_b = false;
  int M = 0, N = 0, K = 0;
  const float* A = nullptr;
  int64_t lda = 0;
  const float* B = nullptr;
  int64_t ldb = 0;
  float* C = nullptr;
  int64_t ldc = 0;
  bool accumulate = false;
  const float* bias = nullptr;
  bool bf16 = false;    // round A and B to bf16 while packing
  bool dpbf16 = false;  // ... and use vdpbf16ps (AVX-512 path on an AVX512_BF16 CPU)
  int kc = 256;         // K block; even, the same for every tile
};

// Register tile of a path: MR rows x NR columns.
struct GemmKernelShape {
  int mr = 1, nr = 1;
};

// Rows of A packed at a time (a multiple of every path's MR).
constexpr int kGemmMc = 240;

// Floats of per-thread scratch gemm_tile needs for a tile nc columns wide:
// one packed B block (kc x nc), one packed A block (kGemmMc x kc), one C tile.
inline size_t gemm_scratch_floats(const GemmKernelShape& s, int nc, int kc) {
  auto up = [](size_t x, size_t m) { return (x + m - 1) / m * m; };
  size_t kcp = up(static_cast<size_t>(kc), 2);
  size_t a = up(static_cast<size_t>(kGemmMc) * kcp, 16);
  size_t b = up(up(static_cast<size_t>(nc), s.nr) * kcp, 16);
  size_t t = up(static_cast<size_t>(s.mr) * s.nr, 16);
  return a + b + t + 64;
}

}  // namespace cpu
}  // namespace gpt

GPT_DECLARE_ISA_FN(GemmKernelShape gemm_kernel_shape(bool dpbf16))
GPT_DECLARE_ISA_FN(void gemm_tile(const GemmArgs& g, int m0, int mc, int n0, int nc, float* scratch))

#ifdef GPT_ISA_NS
#include "bf16.h"
#include "simd.h"
#if defined(__AVX2__) || defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

// Register tiles. AVX-512: 12 x 32 = 24 zmm accumulators, 2 for B, 1 for the
// broadcast A value (8 x 48 and 6 x 64 measured the same within noise on
// Zen 4; 12 x 32 keeps the fewest partial tiles on GPT-2 shapes). AVX2: 6 x 16 = 12 ymm
// accumulators + 2 + 1 of 16. Portable (SSE2): 4 x 8, 8 accumulators.
#if defined(__AVX512F__)
constexpr int kMR = 12, kNV = 2;
#elif defined(__AVX2__)
constexpr int kMR = 6, kNV = 2;
#else
constexpr int kMR = 4, kNV = 2;
#endif
constexpr int kNR = kNV * W;

// Local helpers only: a std:: template instantiated here could be merged by
// the linker with another path's copy (simd.h).
static inline int imin(int a, int b) { return a < b ? a : b; }

typedef float vf_aligned __attribute__((vector_size(kVecBytes), aligned(kVecBytes)));

// *p in every lane, straight from memory (vsplat's `vf{} + x` costs an add).
static inline vf bcast(const float* p) {
#if defined(__AVX512F__)
  return (vf)_mm512_set1_ps(*p);
#elif defined(__AVX2__)
  return (vf)_mm256_broadcast_ss(p);
#else
  const float x = *p;
  return vf{x, x, x, x};
#endif
}


// ---- packing ---------------------------------------------------------------
//
// A and B panels pack the same way: P consecutive indices (MR rows of op(A),
// or NR columns of op(B)) by kb values of k. Element (idx, k) of the panel is
//   k-major:   X[(k0 + k) * ld + idx0 + idx]  (op(A) with trans_a, op(B) plain)
//   idx-major: X[(idx0 + idx) * ld + k0 + k]  (op(A) plain, op(B) with trans_b)
// The k-major case is a row copy; the idx-major case goes through W x W
// register transposes (W k values of W rows at once), so neither layout
// falls back to scalar gathers. Indices past cnt pack as 0.

enum PackMode { kPackF32 = 0, kPackF32Rounded = 1, kPackBf16Pairs = 2 };

typedef uint32_t vu __attribute__((vector_size(kVecBytes)));

// The first n (0..W) lanes of p, the rest 0; never reads past p[n-1].
static inline vf load_n(const float* p, int n) {
  if (n >= W) return vload(p);
#if defined(__AVX512F__)
  return (vf)_mm512_maskz_loadu_ps(static_cast<__mmask16>((1u << n) - 1u), p);
#elif defined(__AVX2__)
  const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  return (vf)_mm256_maskload_ps(p, m);
#else
  vf v = vzero();
  for (int i = 0; i < n; ++i) v[i] = p[i];
  return v;
#endif
}

// Stores the first n (1..W) lanes of v.
static inline void store_n(float* p, vf v, int n) {
  if (n >= W) return vstore(p, v);
#if defined(__AVX512F__)
  _mm512_mask_storeu_ps(p, static_cast<__mmask16>((1u << n) - 1u), (__m512)v);
#elif defined(__AVX2__)
  const __m256i m = _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
  _mm256_maskstore_ps(p, m, (__m256)v);
#else
  for (int i = 0; i < n; ++i) p[i] = v[i];
#endif
}

// r[i][j] -> r[j][i] for a W x W block.
static inline void transpose(vf (&r)[W]) {
#if defined(__AVX512F__)
  __m512 t[16], u[16];
  for (int i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_unpacklo_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps((__m512)r[2 * i], (__m512)r[2 * i + 1]);
  }
  // u[4i + c], 128-bit lane L: rows 4i..4i+3 of column 4L + c
  for (int i = 0; i < 4; ++i) {
    u[4 * i + 0] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm512_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm512_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    const __m512 v0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0x88), w0 = _mm512_shuffle_f32x4(u[c], u[4 + c], 0xDD);
    const __m512 v1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0x88), w1 = _mm512_shuffle_f32x4(u[8 + c], u[12 + c], 0xDD);
    r[c] = (vf)_mm512_shuffle_f32x4(v0, v1, 0x88);
    r[8 + c] = (vf)_mm512_shuffle_f32x4(v0, v1, 0xDD);
    r[4 + c] = (vf)_mm512_shuffle_f32x4(w0, w1, 0x88);
    r[12 + c] = (vf)_mm512_shuffle_f32x4(w0, w1, 0xDD);
  }
#elif defined(__AVX2__)
  __m256 t[8], u[8];
  for (int i = 0; i < 4; ++i) {
    t[2 * i] = _mm256_unpacklo_ps((__m256)r[2 * i], (__m256)r[2 * i + 1]);
    t[2 * i + 1] = _mm256_unpackhi_ps((__m256)r[2 * i], (__m256)r[2 * i + 1]);
  }
  for (int i = 0; i < 2; ++i) {
    u[4 * i + 0] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0x44);
    u[4 * i + 1] = _mm256_shuffle_ps(t[4 * i], t[4 * i + 2], 0xEE);
    u[4 * i + 2] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0x44);
    u[4 * i + 3] = _mm256_shuffle_ps(t[4 * i + 1], t[4 * i + 3], 0xEE);
  }
  for (int c = 0; c < 4; ++c) {
    r[c] = (vf)_mm256_permute2f128_ps(u[c], u[4 + c], 0x20);
    r[4 + c] = (vf)_mm256_permute2f128_ps(u[c], u[4 + c], 0x31);
  }
#else
  float t[W][W];
  for (int i = 0; i < W; ++i)
    for (int j = 0; j < W; ++j) t[j][i] = r[i][j];
  for (int i = 0; i < W; ++i)
    for (int j = 0; j < W; ++j) r[i][j] = t[i][j];
#endif
}

// bf16 (nearest even) of each lane, kept in the upper 16 bits of a 32-bit
// lane, lower 16 bits 0. Same numbers as bf16_bits() in bf16.h.
static inline vu bf16_hi(vf x) {
  vu u;
  std::memcpy(&u, &x, sizeof(u));
  const vu r = (u + 0x7fffu + ((u >> 16) & 1u)) & 0xffff0000u;
  const vu q = (u | 0x400000u) & 0xffff0000u;  // NaN stays a quiet NaN
  return (u & 0x7fffffffu) > 0x7f800000u ? q : r;
}

static inline vf round_bf16(vf x) {
  vu r = bf16_hi(x);
  vf f;
  std::memcpy(&f, &r, sizeof(f));
  return f;
}

// (bf16(lo), bf16(hi)) packed in each 32-bit lane, lo in the lower half.
static inline vf bf16_pairs(vf lo, vf hi) {
  vu p = (bf16_hi(lo) >> 16) | bf16_hi(hi);
  vf f;
  std::memcpy(&f, &p, sizeof(f));
  return f;
}

// Packs one panel (see above) into dst:
//   kPackF32 / kPackF32Rounded: dst[k * P + idx]
//   kPackBf16Pairs:             dst32[(k / 2) * P + idx] = (bf16 of k even, bf16 of k odd)
// Stores are whole vectors: when P is not a multiple of W a store spills up
// to W - 1 floats past the current k, which the next k (or the next panel,
// packed after this one) overwrites; the scratch has slack for the last.
// Writes lanes b*W .. of packed row j (a k, or a pair of k). EXACT stores
// only the lanes inside the row; otherwise a whole vector is stored and may
// spill into the next row (see pack_panel).
template <int P, int MODE, bool EXACT = false>
static inline void put(float* dst, int j, int b, vf lo, vf hi) {
  constexpr int kTail = P % W == 0 ? W : P % W;
  const vf v = MODE == kPackBf16Pairs ? bf16_pairs(lo, hi) : MODE == kPackF32Rounded ? round_bf16(lo) : lo;
  float* p = dst + (MODE == kPackBf16Pairs ? j / 2 : j) * P + b * W;
  if (EXACT && (b + 1) * W > P)
    store_n(p, v, kTail);
  else
    vstore(p, v);
}

template <int P, int MODE>
static void pack_panel(const float* X, int64_t ld, bool kmajor, int idx0, int cnt, int k0, int kb, float* dst,
                       const float* pf = nullptr, int pf_cnt = 0) {
  constexpr int NB = (P + W - 1) / W;
  constexpr int KSTEP = MODE == kPackBf16Pairs ? 2 : 1;  // k values per emitted row
  if (kmajor) {
    // Rows of X are k: each packed row is one (or, for pairs, two) loads.
    auto load = [&](int k, int b) -> vf {
      if (k >= kb) return vzero();
      const float* row = X + static_cast<int64_t>(k0 + k) * ld + idx0 + b * W;
      const int n = cnt - b * W;
      return n >= W ? vload(row) : n > 0 ? load_n(row, n) : vzero();
    };
    for (int j = 0; j < kb; j += KSTEP) {
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) put<P, MODE>(dst, j, b, load(j, b), KSTEP == 2 ? load(j + 1, b) : vzero());
    }
    return;
  }
  // Rows of X are idx: W x W transposes, W values of k at a time. Each row is
  // a short stream (kb floats) that the hardware prefetchers barely pick up
  // when X comes from memory (the head's dlogits, 200 MB): while packing
  // this strip, ask for the next strip's rows (pf_cnt rows at pf), one cache
  // line per row for every line read here.
  for (int kc0 = 0; kc0 < kb; kc0 += W) {
    const int kn = imin(W, kb - kc0);
    if (kc0 % 16 == 0)
      for (int i = 0; i < pf_cnt; ++i) __builtin_prefetch(pf + i * ld + kc0, 0, 3);
    vf R[NB][W];
#pragma GCC unroll 4
    for (int b = 0; b < NB; ++b) {
#pragma GCC unroll 16
      for (int i = 0; i < W; ++i) {
        const int idx = b * W + i;
        R[b][i] = idx < cnt ? load_n(X + static_cast<int64_t>(idx0 + idx) * ld + k0 + kc0, kn) : vzero();
      }
      transpose(R[b]);
    }
    // Lanes past kn loaded as 0, so R[b][kn] is 0 for an odd tail pair.
#pragma GCC unroll 16
    for (int j = 0; j < W; j += KSTEP) {
      if (j >= kn) break;
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) put<P, MODE>(dst, kc0 + j, b, R[b][j], KSTEP == 2 ? R[b][j + 1] : vzero());
    }
  }
}

// The k-major case for many strips at once: each row of X is read once,
// front to back, and scattered over the strips (reading one strip's 48
// bytes from each of kb rows would touch a new cache line per load).
// Strip s goes to dst + s * kstep; stores are exact, since a spill would land
// in a strip already written.
template <int P, int MODE>
static void pack_kmajor_strips(const float* X, int64_t ld, int i0, int count, int k0, int kb, int kstep, float* dst) {
  constexpr int NB = (P + W - 1) / W;
  constexpr int KSTEP = MODE == kPackBf16Pairs ? 2 : 1;
  for (int j = 0; j < kb; j += KSTEP) {
    const float* r0 = X + static_cast<int64_t>(k0 + j) * ld + i0;
    const bool two = KSTEP == 2 && j + 1 < kb;
    const float* r1 = two ? r0 + ld : r0;
    for (int s = 0; s < count; s += P) {
      float* d = dst + static_cast<size_t>(s) * kstep;
#pragma GCC unroll 4
      for (int b = 0; b < NB; ++b) {
        const int off = s + b * W, n = count - off;
        const vf lo = n >= W ? vload(r0 + off) : n > 0 ? load_n(r0 + off, n) : vzero();
        const vf hi = !two ? vzero() : n >= W ? vload(r1 + off) : n > 0 ? load_n(r1 + off, n) : vzero();
        put<P, MODE, true>(d, j, b, lo, hi);
      }
    }
  }
}

// Packs op(A)[m0 .. m0+mc, k0 .. k0+kb] as strips of MR rows, or
// op(B)[k0 .., n0 .. n0+nc] as strips of NR columns; a strip starting at
// index s sits at dst + s * kstep (kstep: kb floats, or kb/2 rounded up pairs).
// The idx-major case prefetches the next strip's rows while packing one.
template <int P, int MODE>
static void pack_strips(const float* X, int64_t ld, bool kmajor, int i0, int count, int k0, int kb, int kstep, float* dst) {
  for (int s = 0; s < count; s += P) {
    const int next = imin(P, count - s - P);
    const float* pf = kmajor || next <= 0 ? nullptr : X + static_cast<int64_t>(i0 + s + P) * ld + k0;
    pack_panel<P, MODE>(X, ld, kmajor, i0 + s, imin(P, count - s), k0, kb, dst + static_cast<size_t>(s) * kstep, pf,
                        pf ? next : 0);
  }
}

// ---- fp32 microkernel -------------------------------------------------------

// Writes the MR x NR tile: c = (load_c ? c : nothing) + acc (+ bias).
static inline void store_tile(vf (&acc)[kMR][kNV], float* c, int64_t ldc, bool load_c, const float* bias) {
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) {
      float* p = c + r * ldc + v * W;
      vf x = acc[r][v];
      if (load_c) x = vload(p) + x;
      if (bias) x = x + vload(bias + v * W);
      vstore(p, x);
    }
  }
}

// acc[r][:] = sum over k of a[k][r] * b[k][:], k in order.
static void micro_f32(int kb, const float* __restrict a, const float* __restrict b, float* c, int64_t ldc, bool load_c,
                      const float* bias) {
  vf acc[kMR][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) acc[r][v] = vzero();
  for (int k = 0; k < kb; ++k) {
    vf bv[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) bv[v] = *reinterpret_cast<const vf_aligned*>(b + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const vf av = bcast(a + r);
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[r][v] = vfma(av, bv[v], acc[r][v]);
    }
    a += kMR;
    b += kNR;
  }
  store_tile(acc, c, ldc, load_c, bias);
}

// ---- bf16 (AVX512_BF16) ------------------------------------------------------
#if defined(__AVX512BF16__)
static void micro_bf16(int kp_n, const uint32_t* __restrict a, const uint32_t* __restrict b, float* c, int64_t ldc,
                       bool load_c, const float* bias) {
  static_assert(W == 16, "the bf16 kernel works on zmm registers");
  vf acc[kMR][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r)
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) acc[r][v] = vzero();
  for (int kp = 0; kp < kp_n; ++kp) {
    __m512bh bv[kNV];
#pragma GCC unroll 4
    for (int v = 0; v < kNV; ++v) bv[v] = (__m512bh)_mm512_load_si512(b + v * W);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
#pragma GCC unroll 4
      for (int v = 0; v < kNV; ++v) acc[r][v] = (vf)_mm512_dpbf16_ps((__m512)acc[r][v], av, bv[v]);
    }
    a += kMR;
    b += kNR;
  }
  store_tile(acc, c, ldc, load_c, bias);
}
#endif

// ---- entry points ------------------------------------------------------------

GemmKernelShape gemm_kernel_shape(bool dpbf16) {
  (void)dpbf16;  // the bf16 kernel uses the same tile
  return GemmKernelShape{kMR, kNR};
}

void gemm_tile(const GemmArgs& g, int m0, int mc, int n0, int nc, float* scratch) {
  const int kc = g.kc;
  const int ncp = (nc + kNR - 1) / kNR * kNR;
  const size_t kcp = static_cast<size_t>(kc + 1) / 2 * 2;
  auto up16 = [](size_t x) { return (x + 15) / 16 * 16; };
  float* Bp = scratch;
  float* Ap = Bp + up16(static_cast<size_t>(ncp) * kcp);
  float* tmp = Ap + up16(static_cast<size_t>(kGemmMc) * kcp) + 16;  // + slack for pack_panel's spill
#if defined(__AVX512BF16__)
  const bool dp = g.dpbf16;
#else
  const bool dp = false;
#endif

  for (int k0 = 0; k0 < g.K; k0 += kc) {
    const int kb = imin(kc, g.K - k0);
    const bool load_c = k0 > 0 || g.accumulate;
    const float* bias = k0 == 0 && g.bias ? g.bias + n0 : nullptr;
    const int kstep = dp ? (kb + 1) / 2 : kb;  // packed k per strip (pairs for dp)
    // The B block of this k block: packed once, swept by every A strip (L2).
    if (dp)
      pack_strips<kNR, kPackBf16Pairs>(g.B, g.ldb, !g.trans_b, n0, nc, k0, kb, kstep, Bp);
    else if (g.bf16)
      pack_strips<kNR, kPackF32Rounded>(g.B, g.ldb, !g.trans_b, n0, nc, k0, kb, kstep, Bp);
    else
      pack_strips<kNR, kPackF32>(g.B, g.ldb, !g.trans_b, n0, nc, k0, kb, kstep, Bp);

    for (int c0 = 0; c0 < mc; c0 += kGemmMc) {
      const int cn = imin(kGemmMc, mc - c0);
      // The A block of these rows: kGemmMc x kb in L2, one MR strip at a time
      // in L1 while the kernel sweeps the B block.
      if (g.trans_a) {
        if (dp)
          pack_kmajor_strips<kMR, kPackBf16Pairs>(g.A, g.lda, m0 + c0, cn, k0, kb, kstep, Ap);
        else if (g.bf16)
          pack_kmajor_strips<kMR, kPackF32Rounded>(g.A, g.lda, m0 + c0, cn, k0, kb, kstep, Ap);
        else
          pack_kmajor_strips<kMR, kPackF32>(g.A, g.lda, m0 + c0, cn, k0, kb, kstep, Ap);
      } else {
        if (dp)
          pack_strips<kMR, kPackBf16Pairs>(g.A, g.lda, false, m0 + c0, cn, k0, kb, kstep, Ap);
        else if (g.bf16)
          pack_strips<kMR, kPackF32Rounded>(g.A, g.lda, false, m0 + c0, cn, k0, kb, kstep, Ap);
        else
          pack_strips<kMR, kPackF32>(g.A, g.lda, false, m0 + c0, cn, k0, kb, kstep, Ap);
      }
      for (int ir = c0; ir < c0 + cn; ir += kMR) {
        const int rows = imin(kMR, mc - ir);
        const float* a = Ap + static_cast<size_t>(ir - c0) * kstep;
        for (int jr = 0; jr < nc; jr += kNR) {
          const int cols = imin(kNR, nc - jr);
          const float* b = Bp + static_cast<size_t>(jr) * kstep;
          float* c = g.C + static_cast<int64_t>(m0 + ir) * g.ldc + (n0 + jr);
          const float* bj = bias ? bias + jr : nullptr;
          const bool full = rows == kMR && cols == kNR;
          float* dst = full ? c : tmp;
          const int64_t ld = full ? g.ldc : kNR;
#if defined(__AVX512BF16__)
          if (dp)
            micro_bf16(kstep, reinterpret_cast<const uint32_t*>(a), reinterpret_cast<const uint32_t*>(b), dst, ld,
                       full && load_c, full ? bj : nullptr);
          else
#endif
            micro_f32(kstep, a, b, dst, ld, full && load_c, full ? bj : nullptr);
          if (!full) {
            // Same arithmetic as store_tile, element by element.
            for (int r = 0; r < rows; ++r) {
              float* cr = c + static_cast<int64_t>(r) * g.ldc;
              const float* tr = tmp + r * kNR;
              for (int j = 0; j < cols; ++j) {
                float x = tr[j];
                if (load_c) x = cr[j] + x;
                if (bj) x = x + bj[j];
                cr[j] = x;
              }
            }
          }
        }
      }
    }
  }
}

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
#endif  // GPT_ISA_NS
