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
//   pack op(A)[m0.., k0..] into strips of MR rows    (Ap: strip-major, then k, then row)
//   pack op(B)[k0.., n0..] into strips of NR columns (Bp: strip-major, then k, then column)
//   for each MR strip of Ap, for each NR strip of Bp: microkernel (MR x NR
//   accumulators in registers, kc rank-1 updates), then C += tile.
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

// Floats of per-thread scratch gemm_tile needs for an mc x nc tile.
inline size_t gemm_scratch_floats(const GemmKernelShape& s, int mc, int nc, int kc) {
  auto up = [](size_t x, size_t m) { return (x + m - 1) / m * m; };
  size_t kcp = up(static_cast<size_t>(kc), 2);
  size_t a = up(up(static_cast<size_t>(mc), s.mr) * kcp, 16);
  size_t b = up(up(static_cast<size_t>(nc), s.nr) * kcp, 16);
  size_t t = up(static_cast<size_t>(s.mr) * s.nr, 16);
  return a + b + t + 16;
}

}  // namespace cpu
}  // namespace gpt

GPT_DECLARE_ISA_FN(GemmKernelShape gemm_kernel_shape(bool dpbf16))
GPT_DECLARE_ISA_FN(void gemm_tile(const GemmArgs& g, int m0, int mc, int n0, int nc, float* scratch))

#ifdef GPT_ISA_NS
#include "bf16.h"
#include "simd.h"
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

// Register tiles. AVX-512: 12 x 32 = 24 zmm accumulators, 2 for B, A comes in
// as a broadcast memory operand (32 registers). AVX2: 6 x 16 = 12 ymm
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

static inline float round_if(float x, bool rnd) { return rnd ? bf16_round(x) : x; }

// ---- packing (fp32 storage) ---------------------------------------------

// Ap[strip][k][r] = op(A)[m0 + strip*MR + r][k0 + k]; rows past mc are 0.
template <bool RND>
static void pack_a_f32(const GemmArgs& g, int m0, int mc, int k0, int kb, float* dst) {
  for (int s = 0; s < mc; s += kMR) {
    const int rows = imin(kMR, mc - s);
    float* d = dst + static_cast<size_t>(s) * kb;
    if (g.trans_a) {
      // op(A)[i][k] = A[k][i]: each k is a short contiguous run of rows.
      for (int k = 0; k < kb; ++k) {
        const float* src = g.A + static_cast<int64_t>(k0 + k) * g.lda + (m0 + s);
        float* dk = d + static_cast<size_t>(k) * kMR;
        for (int r = 0; r < rows; ++r) dk[r] = round_if(src[r], RND);
        for (int r = rows; r < kMR; ++r) dk[r] = 0.0f;
      }
    } else {
      for (int r = 0; r < rows; ++r) {
        const float* src = g.A + static_cast<int64_t>(m0 + s + r) * g.lda + k0;
        for (int k = 0; k < kb; ++k) d[static_cast<size_t>(k) * kMR + r] = round_if(src[k], RND);
      }
      for (int r = rows; r < kMR; ++r)
        for (int k = 0; k < kb; ++k) d[static_cast<size_t>(k) * kMR + r] = 0.0f;
    }
  }
}

// Bp[strip][k][c] = op(B)[k0 + k][n0 + strip*NR + c]; columns past nc are 0.
template <bool RND>
static void pack_b_f32(const GemmArgs& g, int n0, int nc, int k0, int kb, float* dst) {
  for (int t = 0; t < nc; t += kNR) {
    const int cols = imin(kNR, nc - t);
    float* d = dst + static_cast<size_t>(t) * kb;
    if (!g.trans_b) {
      for (int k = 0; k < kb; ++k) {
        const float* src = g.B + static_cast<int64_t>(k0 + k) * g.ldb + (n0 + t);
        float* dk = d + static_cast<size_t>(k) * kNR;
        for (int c = 0; c < cols; ++c) dk[c] = round_if(src[c], RND);
        for (int c = cols; c < kNR; ++c) dk[c] = 0.0f;
      }
    } else {
      // op(B)[k][j] = B[j][k]: transpose NR rows of B.
      for (int c = 0; c < cols; ++c) {
        const float* src = g.B + static_cast<int64_t>(n0 + t + c) * g.ldb + k0;
        for (int k = 0; k < kb; ++k) d[static_cast<size_t>(k) * kNR + c] = round_if(src[k], RND);
      }
      for (int c = cols; c < kNR; ++c)
        for (int k = 0; k < kb; ++k) d[static_cast<size_t>(k) * kNR + c] = 0.0f;
    }
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
      const vf av = vsplat(a[r]);
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
static inline uint32_t bf16_pair(float lo, float hi) {
  return static_cast<uint32_t>(bf16_bits(lo)) | (static_cast<uint32_t>(bf16_bits(hi)) << 16);
}

// Ap32[strip][kp][r] = (op(A)[i][k0+2kp], op(A)[i][k0+2kp+1]) as two bf16.
static void pack_a_bf16(const GemmArgs& g, int m0, int mc, int k0, int kb, uint32_t* dst) {
  const int kp_n = (kb + 1) / 2;
  for (int s = 0; s < mc; s += kMR) {
    const int rows = imin(kMR, mc - s);
    uint32_t* d = dst + static_cast<size_t>(s) * kp_n;
    if (g.trans_a) {
      for (int kp = 0; kp < kp_n; ++kp) {
        const int k = k0 + 2 * kp;
        const bool two = 2 * kp + 1 < kb;
        const float* s0 = g.A + static_cast<int64_t>(k) * g.lda + (m0 + s);
        const float* s1 = s0 + g.lda;
        uint32_t* dk = d + static_cast<size_t>(kp) * kMR;
        for (int r = 0; r < rows; ++r) dk[r] = bf16_pair(s0[r], two ? s1[r] : 0.0f);
        for (int r = rows; r < kMR; ++r) dk[r] = 0;
      }
    } else {
      for (int r = 0; r < rows; ++r) {
        const float* src = g.A + static_cast<int64_t>(m0 + s + r) * g.lda + k0;
        for (int kp = 0; kp < kp_n; ++kp) {
          const bool two = 2 * kp + 1 < kb;
          d[static_cast<size_t>(kp) * kMR + r] = bf16_pair(src[2 * kp], two ? src[2 * kp + 1] : 0.0f);
        }
      }
      for (int r = rows; r < kMR; ++r)
        for (int kp = 0; kp < kp_n; ++kp) d[static_cast<size_t>(kp) * kMR + r] = 0;
    }
  }
}

// Bp32[strip][kp][c] = (op(B)[k0+2kp][j], op(B)[k0+2kp+1][j]) as two bf16.
static void pack_b_bf16(const GemmArgs& g, int n0, int nc, int k0, int kb, uint32_t* dst) {
  const int kp_n = (kb + 1) / 2;
  for (int t = 0; t < nc; t += kNR) {
    const int cols = imin(kNR, nc - t);
    uint32_t* d = dst + static_cast<size_t>(t) * kp_n;
    if (!g.trans_b) {
      for (int kp = 0; kp < kp_n; ++kp) {
        const int k = k0 + 2 * kp;
        const bool two = 2 * kp + 1 < kb;
        const float* s0 = g.B + static_cast<int64_t>(k) * g.ldb + (n0 + t);
        const float* s1 = s0 + g.ldb;
        uint32_t* dk = d + static_cast<size_t>(kp) * kNR;
        for (int c = 0; c < cols; ++c) dk[c] = bf16_pair(s0[c], two ? s1[c] : 0.0f);
        for (int c = cols; c < kNR; ++c) dk[c] = 0;
      }
    } else {
      for (int c = 0; c < cols; ++c) {
        const float* src = g.B + static_cast<int64_t>(n0 + t + c) * g.ldb + k0;
        for (int kp = 0; kp < kp_n; ++kp) {
          const bool two = 2 * kp + 1 < kb;
          d[static_cast<size_t>(kp) * kNR + c] = bf16_pair(src[2 * kp], two ? src[2 * kp + 1] : 0.0f);
        }
      }
      for (int c = cols; c < kNR; ++c)
        for (int kp = 0; kp < kp_n; ++kp) d[static_cast<size_t>(kp) * kNR + c] = 0;
    }
  }
}

static void micro_bf16(int kp_n, const uint32_t* __restrict a, const uint32_t* __restrict b, float* c, int64_t ldc,
                       bool load_c, const float* bias) {
  static_assert(kNV == 2 && W == 16, "the bf16 kernel is written for 12 x 32 zmm tiles");
  __m512 acc[kMR][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    acc[r][0] = _mm512_setzero_ps();
    acc[r][1] = _mm512_setzero_ps();
  }
  for (int kp = 0; kp < kp_n; ++kp) {
    const __m512bh b0 = (__m512bh)_mm512_load_si512(b);
    const __m512bh b1 = (__m512bh)_mm512_load_si512(b + 16);
#pragma GCC unroll 16
    for (int r = 0; r < kMR; ++r) {
      const __m512bh av = (__m512bh)_mm512_set1_epi32(static_cast<int>(a[r]));
      acc[r][0] = _mm512_dpbf16_ps(acc[r][0], av, b0);
      acc[r][1] = _mm512_dpbf16_ps(acc[r][1], av, b1);
    }
    a += kMR;
    b += kNR;
  }
  vf out[kMR][kNV];
#pragma GCC unroll 16
  for (int r = 0; r < kMR; ++r) {
    out[r][0] = (vf)acc[r][0];
    out[r][1] = (vf)acc[r][1];
  }
  store_tile(out, c, ldc, load_c, bias);
}
#endif

// ---- entry points ------------------------------------------------------------

GemmKernelShape gemm_kernel_shape(bool dpbf16) {
  (void)dpbf16;  // the bf16 kernel uses the same tile
  return GemmKernelShape{kMR, kNR};
}

void gemm_tile(const GemmArgs& g, int m0, int mc, int n0, int nc, float* scratch) {
  const int kc = g.kc;
  const int mcp = (mc + kMR - 1) / kMR * kMR;
  const int ncp = (nc + kNR - 1) / kNR * kNR;
  const size_t kcp = static_cast<size_t>(kc + 1) / 2 * 2;
  auto up16 = [](size_t x) { return (x + 15) / 16 * 16; };
  float* Ap = scratch;
  float* Bp = Ap + up16(static_cast<size_t>(mcp) * kcp);
  float* tmp = Bp + up16(static_cast<size_t>(ncp) * kcp);

  for (int k0 = 0; k0 < g.K; k0 += kc) {
    const int kb = imin(kc, g.K - k0);
    const bool load_c = k0 > 0 || g.accumulate;
    const float* bias = k0 == 0 && g.bias ? g.bias + n0 : nullptr;
#if defined(__AVX512BF16__)
    const bool dp = g.dpbf16;
#else
    const bool dp = false;
#endif
    const int kstep = dp ? (kb + 1) / 2 : kb;  // packed k per strip (pairs for dp)
    if (dp) {
#if defined(__AVX512BF16__)
      pack_a_bf16(g, m0, mc, k0, kb, reinterpret_cast<uint32_t*>(Ap));
      pack_b_bf16(g, n0, nc, k0, kb, reinterpret_cast<uint32_t*>(Bp));
#endif
    } else if (g.bf16) {
      pack_a_f32<true>(g, m0, mc, k0, kb, Ap);
      pack_b_f32<true>(g, n0, nc, k0, kb, Bp);
    } else {
      pack_a_f32<false>(g, m0, mc, k0, kb, Ap);
      pack_b_f32<false>(g, n0, nc, k0, kb, Bp);
    }
    for (int ir = 0; ir < mc; ir += kMR) {
      const int rows = imin(kMR, mc - ir);
      const float* a = Ap + static_cast<size_t>(ir) * kstep;
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

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
#endif  // GPT_ISA_NS
