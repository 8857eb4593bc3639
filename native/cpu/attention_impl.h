// Per-ISA bodies of the fused attention kernels (compiled once per path,
// native/sources.cmake), plus the small interface attention.cc drives them
// through. attention.cc owns the task split, the scratch and the thread
// pool; the code here computes one tile task on one thread.
//
// Legend: B batch, H heads, T sequence, D head size, Dp = D rounded up to the
// vector width W, TL = kAttnTile (the query and the key tile: 64).
//
// Layout choices, and why:
// - A 64-wide tile is a whole number of vectors on every path (4 x 16, 8 x 8,
//   16 x 4), so the tile on the vector side never needs a column tail.
// - Each task transposes the one tile it owns once (a query tile in forward
//   and dQ, a key tile in dK/dV) into [D][TL]; every tile it meets is then
//   read straight from the caller's strided rows: as the broadcast operand of
//   the score kernel (any D), and as the streamed operand of the accumulate
//   kernel when D is a whole number of vectors (64, 80, 96, 128 on every
//   path), else through a zero-padded copy. No per-pair copies or transposes.
// - Forward and dQ keep scores transposed, St[key][query], so the online
//   softmax, lse and delta run along the vector lanes (no horizontal sums).
// - Zero-filled transposed columns and masked (-inf) scores keep padding out
//   of every contraction; row counts are exact (register-block tails), so no
//   kernel reads or writes a row that does not exist.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/backend.h"
#include "dispatch.h"

namespace gpt {
namespace cpu {

constexpr int kAttnTile = 64;
constexpr int kAttnMaxHeadDim = 256;

// Everything one fused-attention call needs, resolved by attention.cc.
struct AttnArgs {
  int B = 1, H = 1, T = 1, D = 1;
  int w = 1;         // effective window: keys i - w < j <= i (dense: w = T)
  int n_tiles = 1;   // ceil(T / TL)
  float scale = 1.0f;
  AttnTensor q, k, v, out, dout, dq, dk, dv;
  float* lse = nullptr;          // [B, H, T]
  const float* delta = nullptr;  // [B, H, T] rowsum(dO * O), backward only
  // Document starts [B, T] (AttnShape::doc_start), or null: query i of row b
  // also needs key j >= doc[b*T + i]. Non-decreasing along a row, so a query
  // tile's smallest start is its first row's and its largest its last row's.
  const int32_t* doc = nullptr;
};

// Floats of scratch one thread needs, on any path (padding to 16 lanes covers
// every path's Dp).
inline size_t attn_scratch_floats(int D) {
  size_t Dp = (static_cast<size_t>(D) + 15) / 16 * 16;
  size_t tl = kAttnTile;
  // The largest task kind: two transposed [D][TL] tiles, four [TL][Dp] row
  // tiles (accumulators and padded copies), two [TL][TL] score tiles and four
  // [TL] vectors; 16 extra floats per buffer for alignment.
  return 2 * Dp * tl + 4 * tl * Dp + 2 * tl * tl + 4 * tl + 16 * 16;
}

// Key tiles [lo, hi] a query tile meets: the band of its first row starts at
// q0 - w + 1, its last row ends on the diagonal. With documents (b >= 0 and
// a.doc), no row sees a key before the first row's document start either.
// b < 0: the band alone (the cost estimates, which hold for every row).
inline void attn_key_tiles(const AttnArgs& a, int qt, int* lo, int* hi, int b = -1) {
  int q0 = qt * kAttnTile;
  int qlast = q0 + kAttnTile - 1 < a.T - 1 ? q0 + kAttnTile - 1 : a.T - 1;
  int first = q0 - a.w + 1;
  if (b >= 0 && a.doc) {
    const int ds = a.doc[static_cast<int64_t>(b) * a.T + q0];
    if (ds > first) first = ds;
  }
  *lo = (first > 0 ? first : 0) / kAttnTile;
  *hi = qlast / kAttnTile;
}

// Query tiles [lo, hi] that meet a key tile (the transpose of the above):
// up to the band's last query of the tile's last key and, with documents, to
// the last query whose document starts at or before that key (a binary
// search: the starts never decrease).
inline void attn_query_tiles(const AttnArgs& a, int kt, int* lo, int* hi, int b = -1) {
  int k0 = kt * kAttnTile;
  int klast = k0 + kAttnTile - 1 < a.T - 1 ? k0 + kAttnTile - 1 : a.T - 1;
  int64_t last = static_cast<int64_t>(klast) + a.w - 1;
  if (last > a.T - 1) last = a.T - 1;
  if (b >= 0 && a.doc) {
    const int32_t* ds = a.doc + static_cast<int64_t>(b) * a.T;
    int64_t l = klast, h = last;  // ds[klast] <= klast always
    while (l < h) {
      const int64_t mid = (l + h + 1) / 2;
      if (ds[mid] <= klast)
        l = mid;
      else
        h = mid - 1;
    }
    last = l;
  }
  *lo = kt;
  *hi = static_cast<int>(last / kAttnTile);
}

// A tile pair needs a mask when the diagonal or the band's left edge cuts it,
// or (documents) when its last query's document starts after its first key.
inline bool attn_tile_masked(const AttnArgs& a, int qt, int kt, int b = -1) {
  int q0 = qt * kAttnTile, k0 = kt * kAttnTile;
  int qlast = q0 + kAttnTile - 1 < a.T - 1 ? q0 + kAttnTile - 1 : a.T - 1;
  int klast = k0 + kAttnTile - 1;  // past T counts as cut: those keys must be masked
  return klast > q0 || static_cast<int64_t>(k0) <= static_cast<int64_t>(qlast) - a.w ||
         (b >= 0 && a.doc && a.doc[static_cast<int64_t>(b) * a.T + qlast] > k0);
}

// One query tile of an extend (native/cpu/decode_attention.cc): up to TL
// consecutive rows of one sequence, row i at position pos0 + i, attending
// keys first[i]..pos0 + i of its cache, where position j lives in slot j % P.
// Key tiles are whole multiples of TL in positions, so a row's arithmetic
// depends only on its own query, its band and the cache, never on which
// tile or call it came in.
struct ExtendArgs {
  int D = 1;
  float scale = 1.0f;
  const float* q = nullptr;  // row i's query (this head) at q + i * ldq
  int64_t ldq = 0;
  float* out = nullptr;  // row i's output at out + i * ldo
  int64_t ldo = 0;
  const float* k = nullptr;  // this head's keys and values, [P][D] each
  const float* v = nullptr;
  int P = 1;
  int n = 1;     // rows, 1..TL
  int pos0 = 0;  // position of row 0
  const int32_t* first = nullptr;  // [n], non-decreasing, first[i] <= pos0 + i
};

}  // namespace cpu
}  // namespace gpt

// One task each, on the calling thread, with `scratch` of attn_scratch_floats.
GPT_DECLARE_ISA_FN(void attn_forward_task(const AttnArgs& a, int b, int h, int qt, float* scratch))
GPT_DECLARE_ISA_FN(void attn_backward_kv_task(const AttnArgs& a, int b, int h, int kt, float* scratch))
GPT_DECLARE_ISA_FN(void attn_backward_q_task(const AttnArgs& a, int b, int h, int qt, float* scratch))
GPT_DECLARE_ISA_FN(void attn_backward_bh_task(const AttnArgs& a, int b, int h, float* scratch))
GPT_DECLARE_ISA_FN(int attn_lanes())
// One query tile of an extend (ExtendArgs), with `scratch` of attn_scratch_floats.
GPT_DECLARE_ISA_FN(void attn_extend_task(const ExtendArgs& a, float* scratch))

#ifdef GPT_ISA_NS
// ---------------------------------------------------------------------------
// The kernels, compiled once per path.
#include <algorithm>
#include <cmath>

#include "simd.h"

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

namespace {

constexpr int TL = kAttnTile;
constexpr float kNegInf = -INFINITY;

// Register budget for accumulators: 32 vector registers on AVX-512, 16 on
// the others (room left for the streamed operands and the broadcast).
#if defined(__AVX512F__)
constexpr int kAccRegs = 24;
constexpr int kNtRows = 6;  // score kernel: 6 rows x 4 vectors (64 lanes)
constexpr int kMaxCv = 8;   // accumulate kernel: up to 8 vectors of D per pass
#else
constexpr int kAccRegs = 12;
constexpr int kNtRows = 3;  // 3 rows x 4 vectors
constexpr int kMaxCv = 4;
#endif
constexpr int kNtVecs = 4;
static_assert(TL % (kNtVecs * W) == 0, "the tile must be whole score blocks");

constexpr int acc_rows(int cv) { return kAccRegs / cv < 6 ? kAccRegs / cv : 6; }

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

// One float in every lane. simd.h's vsplat is `vf{} + x`, which the compiler
// must keep as an add (0 + -0 is +0) before the broadcast: an extra uop on
// every broadcast of the micro-kernels. x - 0 is x for every x, so this
// folds to a single vbroadcastss.
inline vf bcast(float x) { return x - vf{}; }

// Carves 64-byte aligned pieces out of a thread's scratch.
struct Carver {
  float* p;
  float* take(size_t n) {
    float* r = p;
    p += (n + 15) / 16 * 16;
    return r;
  }
};

// exp(x) for the softmax, where x <= 0 up to rounding (a score minus its
// row's max or log-sum-exp). Same reduction and polynomial as simd.h's vexp
// (relative error about 2e-7), minus what that range never needs: no
// overflow clamp, and 2^n built in one shift because n stays in [-126, 1].
// Inputs below -87.3 (masked -inf included) give exactly 0.
inline vf pexp(vf x) {
  const vf lo = vsplat(-87.33654f);
  const vf xc = vmax(x, lo);
  // Adding 1.5 * 2^23 rounds x / ln 2 to an integer n in the low mantissa
  // bits; the extra 127 makes those bits the biased exponent of 2^n.
  const vf magic = vsplat(12582912.0f + 127.0f);
  const vf t = xc * vsplat(1.44269504088896341f) + magic;
  const vf nf = t - magic;
  vf r = xc - nf * vsplat(0.693359375f);
  r = r - nf * vsplat(-2.12194440e-4f);
  vf p = vsplat(1.9875691500e-4f);
  p = vfma(p, r, vsplat(1.3981999507e-3f));
  p = vfma(p, r, vsplat(8.3334519073e-3f));
  p = vfma(p, r, vsplat(4.1665795894e-2f));
  p = vfma(p, r, vsplat(1.6666665459e-1f));
  p = vfma(p, r, vsplat(5.0000001201e-1f));
  p = vfma(p, r * r, r) + vsplat(1.0f);
  vi e;
  std::memcpy(&e, &t, sizeof(e));
  e = e << 23;
  vf s;
  std::memcpy(&s, &e, sizeof(s));
  return x < lo ? vzero() : p * s;
}

// ---- copies ------------------------------------------------------------------

// dst[d][j] = scale * src row j, column d, for j < n; columns [n, TL) zero.
// Once per task, so plain loops (rows outer: the source rows stream).
inline void load_transposed(float* dst, const float* src, int64_t st, int n, int D, float scale) {
  if (n < TL)
    for (int d = 0; d < D; ++d) std::memset(dst + d * TL + n, 0, sizeof(float) * (TL - n));
  for (int j = 0; j < n; ++j) {
    const float* s = src + j * st;
    for (int d = 0; d < D; ++d) dst[d * TL + j] = s[d] * scale;
  }
}

// Rows of a tile as the streamed operand of acc_tile: the caller's rows when
// D fills whole vectors, else a zero-padded copy [n][Dp] in `pad`.
struct Rows {
  const float* p;
  int64_t ld;
};
inline Rows stream_rows(const float* src, int64_t st, int n, int D, int Dp, float* pad) {
  if (D == Dp) return {src, st};
  for (int r = 0; r < n; ++r) {
    const float* s = src + r * st;
    float* d = pad + static_cast<int64_t>(r) * Dp;
    for (int c = 0; c < D; ++c) d[c] = s[c];
    for (int c = D; c < Dp; ++c) d[c] = 0.0f;
  }
  return {pad, Dp};
}

// ---- micro-kernels -----------------------------------------------------------

// C[R][KC*W] = A[R][0..D) . Bt[0..D)[KC*W]; ldc = ldb = TL. Broadcast one A
// value per row and step, stream one row of Bt: R x KC independent FMA chains.
template <int R, int KC>
inline void nt_block(const float* A, int64_t lda, const float* Bt, int D, float* C) {
  vf acc[R][KC];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < KC; ++c) acc[r][c] = vzero();
  for (int d = 0; d < D; ++d) {
    vf bv[KC];
#pragma GCC unroll 8
    for (int c = 0; c < KC; ++c) bv[c] = vload(Bt + d * TL + c * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      vf a = bcast(A[r * lda + d]);
#pragma GCC unroll 8
      for (int c = 0; c < KC; ++c) acc[r][c] = vfma(a, bv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < KC; ++c) vstore(C + r * TL + c * W, acc[r][c]);
}

// Vectors [vlo, vhi] of a block of R rows, in chunks of up to kNtVecs.
template <int R>
inline void nt_rows(const float* A, int64_t lda, const float* Bt, int D, float* C, int vlo, int vhi) {
  for (int v = vlo; v <= vhi; v += kNtVecs) {
    const int n = std::min(kNtVecs, vhi - v + 1);
    const float* b = Bt + v * W;
    float* c = C + v * W;
    switch (n) {
      case 1: nt_block<R, 1>(A, lda, b, D, c); break;
      case 2: nt_block<R, 2>(A, lda, b, D, c); break;
      case 3: nt_block<R, 3>(A, lda, b, D, c); break;
      default: nt_block<R, kNtVecs>(A, lda, b, D, c); break;
    }
  }
}

// The last rows of a tile (fewer than a full block).
template <int R>
inline void nt_tail(int rem, const float* A, int64_t lda, const float* Bt, int D, float* C, int vlo, int vhi) {
  if constexpr (R > 0) {
    if (rem == R)
      nt_rows<R>(A, lda, Bt, D, C, vlo, vhi);
    else
      nt_tail<R - 1>(rem, A, lda, Bt, D, C, vlo, vhi);
  }
}

// Which part of a tile can hold unmasked entries: row r keeps columns
// [r + lo, r + hi] (both masks are diagonals). Unmasked tiles keep everything.
struct Band {
  int64_t lo, hi;
};
constexpr Band kFull{-(int64_t(1) << 40), int64_t(1) << 40};

// S[m][TL] = A[m][D] . Bt[D][TL]; A rows are read at d < D only. Blocks of
// vectors that hold only masked entries are skipped (left as they are: the
// mask overwrites every entry outside the band).
inline void nt_tile(const float* A, int64_t lda, const float* Bt, int D, float* S, int m, Band band) {
  for (int r0 = 0; r0 < m; r0 += kNtRows) {
    const int R = std::min(kNtRows, m - r0);
    const int64_t lo = std::max<int64_t>(0, r0 + band.lo), hi = std::min<int64_t>(TL - 1, r0 + R - 1 + band.hi);
    if (lo > hi) continue;
    const int vlo = static_cast<int>(lo) / W, vhi = static_cast<int>(hi) / W;
    if (R == kNtRows)
      nt_rows<kNtRows>(A + r0 * lda, lda, Bt, D, S + r0 * TL, vlo, vhi);
    else
      nt_tail<kNtRows - 1>(R, A + r0 * lda, lda, Bt, D, S + r0 * TL, vlo, vhi);
  }
}

// C[R][CV*W] = C * rs[r] (when rs) + sum_{k in [kb, ke)} A(r, k) * B[k][CV*W],
// with A(r, k) = At[k][r] (AT: a transposed probability / dS tile) or A[r][k],
// leading dimension TL either way.
template <int R, int CV, bool AT>
inline void acc_block(const float* At, int kb, int ke, const float* B, int64_t ldb, float* C, int64_t ldc,
                      const float* rs) {
  vf acc[R][CV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    vf s = rs ? bcast(rs[r]) : vsplat(1.0f);
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) acc[r][c] = vload(C + r * ldc + c * W) * s;
  }
  for (int k = kb; k < ke; ++k) {
    vf bv[CV];
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) bv[c] = vload(B + k * ldb + c * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      vf a = bcast(AT ? At[k * TL + r] : At[r * TL + k]);
#pragma GCC unroll 8
      for (int c = 0; c < CV; ++c) acc[r][c] = vfma(a, bv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) vstore(C + r * ldc + c * W, acc[r][c]);
}

template <int R, int CV, bool AT>
inline void acc_tail(int rem, const float* At, int kb, int ke, const float* B, int64_t ldb, float* C, int64_t ldc,
                     const float* rs) {
  if constexpr (R > 0) {
    if (rem == R)
      acc_block<R, CV, AT>(At, kb, ke, B, ldb, C, ldc, rs);
    else
      acc_tail<R - 1, CV, AT>(rem, At, kb, ke, B, ldb, C, ldc, rs);
  }
}

// Row r of C only takes k in [r + band.lo, r + band.hi] (the rest of At is
// zero there), so each block runs over the union of its rows' ranges.
template <int CV, bool AT>
inline void acc_rows(const float* At, int n, const float* B, int64_t ldb, float* C, int64_t ldc, int m,
                     const float* rs, Band band) {
  constexpr int R = acc_rows(CV);
  for (int r0 = 0; r0 < m; r0 += R) {
    const int rr = std::min(R, m - r0);
    const int kb = static_cast<int>(std::max<int64_t>(0, r0 + band.lo));
    const int ke = static_cast<int>(std::min<int64_t>(n, r0 + rr + band.hi));
    const float* s = rs ? rs + r0 : nullptr;
    const float* a = AT ? At + r0 : At + r0 * TL;
    if (rr == R)
      acc_block<R, CV, AT>(a, kb, ke, B, ldb, C + r0 * ldc, ldc, s);
    else
      acc_tail<R - 1, CV, AT>(rr, a, kb, ke, B, ldb, C + r0 * ldc, ldc, s);
  }
}

// C[m][Dp] = C * rs + A[m][n] . B[n][Dp] (A given as At[n][m] when AT), in
// passes of up to kMaxCv vectors of D (D = 64, 80, 96, 128 take one pass on
// AVX-512).
template <bool AT = true>
inline void acc_tile(const float* At, int n, Rows B, float* C, int64_t ldc, int m, int Dp, const float* rs, Band band) {
  const int nv = Dp / W;
  for (int v0 = 0; v0 < nv;) {
    int cv = std::min(nv - v0, kMaxCv);
    const float* Bv = B.p + v0 * W;
    float* Cv = C + v0 * W;
    switch (cv) {
      case 1: acc_rows<1, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
      case 2: acc_rows<2, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
      case 3: acc_rows<3, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
      case 4: acc_rows<4, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
#if defined(__AVX512F__)
      case 5: acc_rows<5, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
      case 6: acc_rows<6, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
      case 7: acc_rows<7, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
      case 8: acc_rows<8, AT>(At, n, Bv, B.ld, Cv, ldc, m, rs, band); break;
#endif
      default: break;
    }
    v0 += cv;
  }
}

// ---- masks -----------------------------------------------------------------

inline vi lane_index() {
  vi idx;
  for (int i = 0; i < W; ++i) idx[i] = i;
  return idx;
}

// Row `s` of a [.][TL] tile keeps columns [lo, hi]; the rest become -inf.
inline void mask_row(float* s, int64_t lo64, int64_t hi64) {
  const int lo = static_cast<int>(std::max<int64_t>(lo64, -1)), hi = static_cast<int>(std::min<int64_t>(hi64, TL));
  const vi base = lane_index();
  const vi vlo = vi{} + lo, vhi = vi{} + hi;
  const vf ninf = vsplat(kNegInf);
  for (int c = 0; c < TL; c += W) {
    vi idx = base + c;
    vf x = vload(s + c);
    x = ((idx < vlo) | (idx > vhi)) ? ninf : x;
    vstore(s + c, x);
  }
}

// In a transposed tile St[key j][query i]: key k0 + j is seen by queries
// k0 + j .. k0 + j + w - 1.
inline void mask_keys(float* St, int kn, int q0, int k0, int w) {
  for (int j = 0; j < kn; ++j) mask_row(St + j * TL, int64_t(k0) + j - q0, int64_t(k0) + j + w - 1 - q0);
}

// mask_keys with documents: query column c also needs its document start
// ds[c] (the query tile's starts, TL entries) at or before the key.
inline void mask_keys_doc(float* St, int kn, int q0, int k0, int w, const int32_t* ds) {
  const vi base = lane_index();
  const vf ninf = vsplat(kNegInf);
  for (int j = 0; j < kn; ++j) {
    const int key = k0 + j;
    const int lo = static_cast<int>(std::max<int64_t>(int64_t(key) - q0, -1));
    const int hi = static_cast<int>(std::min<int64_t>(int64_t(key) + w - 1 - q0, TL));
    const vi vlo = vi{} + lo, vhi = vi{} + hi, vkey = vi{} + key;
    float* s = St + j * TL;
    for (int c = 0; c < TL; c += W) {
      vi idx = base + c, start;
      std::memcpy(&start, ds + c, sizeof(start));
      vf x = vload(s + c);
      x = ((idx < vlo) | (idx > vhi) | (start > vkey)) ? ninf : x;
      vstore(s + c, x);
    }
  }
}

// The document starts of the query rows [q0, q0 + mq) of row b into
// ds[TL]; columns past the sequence get 0 (no extra mask: their results are
// thrown away). Returns null without documents.
inline const int32_t* load_doc_starts(const AttnArgs& a, int b, int q0, int mq, int32_t* ds) {
  if (!a.doc) return nullptr;
  const int32_t* src = a.doc + static_cast<int64_t>(b) * a.T + q0;
  for (int c = 0; c < TL; ++c) ds[c] = c < mq ? src[c] : 0;
  return ds;
}

// One key tile's step of the online softmax, down the kn key rows of the
// scores St [kn, TL] (key-major), W queries at a time: updates the running
// max m and sum l of each query, turns St into probabilities against the
// new max, and leaves in alpha the factor the query's accumulator must be
// rescaled by. The forward and the extend share it.
inline void online_softmax_tile(float* St, int kn, float* m, float* l, float* alpha) {
  for (int c = 0; c < TL; c += W) {
    vf mx = vsplat(kNegInf);
    for (int j = 0; j < kn; ++j) mx = vmax(mx, vload(St + j * TL + c));
    const vf mold = vload(m + c);
    const vf mnew = vmax(mold, mx);
    // A query with nothing seen yet (all -inf) keeps max -inf: subtract 0
    // instead so its probabilities come out 0, not NaN.
    const vf msub = mnew == vsplat(kNegInf) ? vzero() : mnew;
    const vf al = pexp(mold - msub);
    vf sum = vzero();
    for (int j = 0; j < kn; ++j) {
      vf p = pexp(vload(St + j * TL + c) - msub);
      vstore(St + j * TL + c, p);
      sum += p;
    }
    vstore(l + c, vload(l + c) * al + sum);
    vstore(m + c, mnew);
    vstore(alpha + c, al);
  }
}

inline int64_t off(const AttnTensor& t, int b, int h) { return b * t.sb + h * t.sh; }

}  // namespace

// ---- forward: one query tile of one (b, h) -----------------------------------
void attn_forward_task(const AttnArgs& a, int b, int h, int qt, float* scratch) {
  const int T = a.T, D = a.D, Dp = round_up(D, W);
  const int q0 = qt * TL, mq = std::min(TL, T - q0);
  Carver cv{scratch};
  float* Qt = cv.take(round_up(D, 16) * TL);  // scale * queries, transposed [D][TL]
  float* O = cv.take(TL * Dp);                // unnormalized output [query][Dp]
  float* St = cv.take(TL * TL);               // scores, then P, [key][query]
  float* Vpad = cv.take(TL * Dp);             // values when D is not whole vectors
  float* m = cv.take(TL);                     // running max per query
  float* l = cv.take(TL);                     // running sum per query
  float* alpha = cv.take(TL);                 // rescale of O for this key tile

  load_transposed(Qt, a.q.ptr + off(a.q, b, h) + q0 * a.q.st, a.q.st, mq, D, a.scale);
  std::memset(O, 0, sizeof(float) * TL * Dp);
  for (int i = 0; i < TL; ++i) {
    m[i] = kNegInf;
    l[i] = 0.0f;
  }
  const float* kbase = a.k.ptr + off(a.k, b, h);
  const float* vbase = a.v.ptr + off(a.v, b, h);
  alignas(64) int32_t ds_buf[TL];
  const int32_t* ds = load_doc_starts(a, b, q0, mq, ds_buf);

  int kt_lo, kt_hi;
  attn_key_tiles(a, qt, &kt_lo, &kt_hi, b);
  for (int kt = kt_lo; kt <= kt_hi; ++kt) {
    const int k0 = kt * TL, kn = std::min(TL, T - k0);
    // Key row j is seen by query columns [j + k0 - q0, j + k0 - q0 + w - 1];
    // query row i sees key rows [i + q0 - k0 - w + 1, i + q0 - k0]. The
    // bands ignore documents: they only bound what is computed, and the mask
    // clears the rest.
    const bool masked = attn_tile_masked(a, qt, kt, b);
    const Band by_key = masked ? Band{k0 - q0, int64_t(k0) - q0 + a.w - 1} : kFull;
    const Band by_query = masked ? Band{int64_t(q0) - k0 - a.w + 1, q0 - k0} : kFull;
    nt_tile(kbase + k0 * a.k.st, a.k.st, Qt, D, St, kn, by_key);
    if (masked) {
      if (ds)
        mask_keys_doc(St, kn, q0, k0, a.w, ds);
      else
        mask_keys(St, kn, q0, k0, a.w);
    }
    online_softmax_tile(St, kn, m, l, alpha);
    Rows V = stream_rows(vbase + k0 * a.v.st, a.v.st, kn, D, Dp, Vpad);
    acc_tile(St, kn, V, O, Dp, mq, Dp, alpha, by_query);
  }

  float* ob = a.out.ptr + off(a.out, b, h) + q0 * a.out.st;
  float* lb = a.lse + (static_cast<int64_t>(b) * a.H + h) * T + q0;
  for (int i = 0; i < mq; ++i) {
    const float inv = 1.0f / l[i];
    float* o = ob + i * a.out.st;
    const float* src = O + i * Dp;
    for (int d = 0; d < D; ++d) o[d] = src[d] * inv;
    lb[i] = m[i] + std::log(l[i]);
  }
}

// ---- backward, key side: dK and dV of one key tile -----------------------------
// Scores in natural orientation S[query][key] against the task's transposed
// key tile; dV += P^T dO and dK += dS^T Q then stream dO and Q rows.
// With `with_dq` (the one-task-per-head schedule, D a whole number of
// vectors) it also adds dS K into the caller's dq rows, unscaled.
static inline void kv_tile(const AttnArgs& a, int b, int h, int kt, float* scratch, bool with_dq) {
  const int T = a.T, D = a.D, Dp = round_up(D, W), Dr = round_up(D, 16);
  const int k0 = kt * TL, kn = std::min(TL, T - k0);
  Carver cv{scratch};
  float* Kt = cv.take(Dr * TL);  // scale * keys, transposed
  float* Vt = cv.take(Dr * TL);  // values, transposed
  float* dK = cv.take(TL * Dp);
  float* dV = cv.take(TL * Dp);
  float* S = cv.take(TL * TL);   // scores, then P [query][key]
  float* dP = cv.take(TL * TL);  // dP, then dS
  float* pad1 = cv.take(TL * Dp);
  float* pad2 = cv.take(TL * Dp);

  const int64_t bh = (static_cast<int64_t>(b) * a.H + h) * T;
  load_transposed(Kt, a.k.ptr + off(a.k, b, h) + k0 * a.k.st, a.k.st, kn, D, a.scale);
  load_transposed(Vt, a.v.ptr + off(a.v, b, h) + k0 * a.v.st, a.v.st, kn, D, 1.0f);
  std::memset(dK, 0, sizeof(float) * TL * Dp);
  std::memset(dV, 0, sizeof(float) * TL * Dp);
  const float* qbase = a.q.ptr + off(a.q, b, h);
  const float* dobase = a.dout.ptr + off(a.dout, b, h);
  const int32_t* ds = a.doc ? a.doc + static_cast<int64_t>(b) * T : nullptr;

  int qt_lo, qt_hi;
  attn_query_tiles(a, kt, &qt_lo, &qt_hi, b);
  for (int qt = qt_lo; qt <= qt_hi; ++qt) {
    const int q0 = qt * TL, mq = std::min(TL, T - q0);
    const float* qb = qbase + q0 * a.q.st;
    const float* dob = dobase + q0 * a.dout.st;
    const bool masked = attn_tile_masked(a, qt, kt, b);
    const Band by_key = masked ? Band{k0 - q0, int64_t(k0) - q0 + a.w - 1} : kFull;
    const Band by_query = masked ? Band{int64_t(q0) - k0 - a.w + 1, q0 - k0} : kFull;
    nt_tile(qb, a.q.st, Kt, D, S, mq, by_query);
    nt_tile(dob, a.dout.st, Vt, D, dP, mq, by_query);
    for (int i = 0; i < mq; ++i) {
      float* s = S + i * TL;
      float* dp = dP + i * TL;
      if (masked) {
        // Row i's first key: the band's, or its document's start if later.
        const int64_t band_first = int64_t(q0) + i - a.w + 1;
        const int64_t first = ds ? std::max<int64_t>(band_first, ds[q0 + i]) : band_first;
        mask_row(s, first - k0, int64_t(q0) + i - k0);
      }
      const vf lv = bcast(a.lse[bh + q0 + i]), dl = bcast(a.delta[bh + q0 + i]);
      for (int c = 0; c < TL; c += W) {
        vf p = pexp(vload(s + c) - lv);
        vstore(s + c, p);
        vf ds = p * (vload(dp + c) - dl);
        // nt_tile left the masked blocks of dP uncomputed (stale scratch):
        // pin dS to 0 wherever P is, whatever was there.
        if (masked) ds = p == vzero() ? vzero() : ds;
        vstore(dp + c, ds);
      }
    }
    acc_tile(S, mq, stream_rows(dob, a.dout.st, mq, D, Dp, pad1), dV, Dp, kn, Dp, nullptr, by_key);
    acc_tile(dP, mq, stream_rows(qb, a.q.st, mq, D, Dp, pad2), dK, Dp, kn, Dp, nullptr, by_key);
    if (with_dq) {
      const Rows K{a.k.ptr + off(a.k, b, h) + k0 * a.k.st, a.k.st};
      acc_tile<false>(dP, kn, K, a.dq.ptr + off(a.dq, b, h) + q0 * a.dq.st, a.dq.st, mq, Dp, nullptr, by_query);
    }
  }

  float* dkb = a.dk.ptr + off(a.dk, b, h) + k0 * a.dk.st;
  float* dvb = a.dv.ptr + off(a.dv, b, h) + k0 * a.dv.st;
  for (int j = 0; j < kn; ++j) {
    float* gk = dkb + j * a.dk.st;
    const float* sk = dK + j * Dp;
    for (int d = 0; d < D; ++d) gk[d] = sk[d] * a.scale;
    std::memcpy(dvb + j * a.dv.st, dV + j * Dp, sizeof(float) * D);
  }
}

void attn_backward_kv_task(const AttnArgs& a, int b, int h, int kt, float* scratch) {
  kv_tile(a, b, h, kt, scratch, false);
}

// ---- backward, one (b, h) in one task -------------------------------------------
// dK, dV per key tile as above, and dQ accumulated in place in the output
// rows (key tiles in ascending order), so S and dP are computed once instead
// of twice: 5 tile products per pair instead of 7. Needs D == Dp.
void attn_backward_bh_task(const AttnArgs& a, int b, int h, float* scratch) {
  const int T = a.T, D = a.D;
  float* dqb = a.dq.ptr + off(a.dq, b, h);
  for (int i = 0; i < T; ++i) std::memset(dqb + i * a.dq.st, 0, sizeof(float) * D);
  for (int kt = 0; kt < a.n_tiles; ++kt) kv_tile(a, b, h, kt, scratch, true);
  const vf sc = bcast(a.scale);
  for (int i = 0; i < T; ++i) {
    float* r = dqb + i * a.dq.st;
    for (int d = 0; d < D; d += W) vstore(r + d, vload(r + d) * sc);
  }
}

int attn_lanes() { return W; }

// ---- backward, query side: dQ of one query tile -------------------------------
// Transposed scores St[key][query] against the task's transposed query and
// dO tiles (lse and delta along the lanes); dQ += dS K streams key rows.
void attn_backward_q_task(const AttnArgs& a, int b, int h, int qt, float* scratch) {
  const int T = a.T, D = a.D, Dp = round_up(D, W), Dr = round_up(D, 16);
  const int q0 = qt * TL, mq = std::min(TL, T - q0);
  Carver cv{scratch};
  float* Qt = cv.take(Dr * TL);   // scale * queries, transposed
  float* dOt = cv.take(Dr * TL);  // dO transposed
  float* dQ = cv.take(TL * Dp);
  float* St = cv.take(TL * TL);   // scores, then P [key][query]
  float* dPt = cv.take(TL * TL);  // dP, then dS
  float* Kpad = cv.take(TL * Dp);
  float* lse_v = cv.take(TL);
  float* del_v = cv.take(TL);

  const int64_t bh = (static_cast<int64_t>(b) * a.H + h) * T;
  load_transposed(Qt, a.q.ptr + off(a.q, b, h) + q0 * a.q.st, a.q.st, mq, D, a.scale);
  load_transposed(dOt, a.dout.ptr + off(a.dout, b, h) + q0 * a.dout.st, a.dout.st, mq, D, 1.0f);
  std::memset(dQ, 0, sizeof(float) * TL * Dp);
  // Queries past the end: lse = +inf makes their P (and so dS) exactly 0.
  for (int i = 0; i < TL; ++i) {
    lse_v[i] = i < mq ? a.lse[bh + q0 + i] : INFINITY;
    del_v[i] = i < mq ? a.delta[bh + q0 + i] : 0.0f;
  }
  const float* kbase = a.k.ptr + off(a.k, b, h);
  const float* vbase = a.v.ptr + off(a.v, b, h);
  alignas(64) int32_t ds_buf[TL];
  const int32_t* ds = load_doc_starts(a, b, q0, mq, ds_buf);

  int kt_lo, kt_hi;
  attn_key_tiles(a, qt, &kt_lo, &kt_hi, b);
  for (int kt = kt_lo; kt <= kt_hi; ++kt) {
    const int k0 = kt * TL, kn = std::min(TL, T - k0);
    const float* kb = kbase + k0 * a.k.st;
    const bool masked = attn_tile_masked(a, qt, kt, b);
    const Band by_key = masked ? Band{k0 - q0, int64_t(k0) - q0 + a.w - 1} : kFull;
    const Band by_query = masked ? Band{int64_t(q0) - k0 - a.w + 1, q0 - k0} : kFull;
    nt_tile(kb, a.k.st, Qt, D, St, kn, by_key);
    nt_tile(vbase + k0 * a.v.st, a.v.st, dOt, D, dPt, kn, by_key);
    if (masked) {
      if (ds)
        mask_keys_doc(St, kn, q0, k0, a.w, ds);
      else
        mask_keys(St, kn, q0, k0, a.w);
    }
    for (int j = 0; j < kn; ++j) {
      float* s = St + j * TL;
      float* dp = dPt + j * TL;
      for (int c = 0; c < TL; c += W) {
        vf p = pexp(vload(s + c) - vload(lse_v + c));
        vf ds = p * (vload(dp + c) - vload(del_v + c));
        if (masked) ds = p == vzero() ? vzero() : ds;  // see kv_tile
        vstore(dp + c, ds);
      }
    }
    acc_tile(dPt, kn, stream_rows(kb, a.k.st, kn, D, Dp, Kpad), dQ, Dp, mq, Dp, nullptr, by_query);
  }

  float* dqb = a.dq.ptr + off(a.dq, b, h) + q0 * a.dq.st;
  for (int i = 0; i < mq; ++i) {
    float* o = dqb + i * a.dq.st;
    const float* src = dQ + i * Dp;
    for (int d = 0; d < D; ++d) o[d] = src[d] * a.scale;
  }
}

// ---- extend: one query tile of a chunk against the cache -----------------------
// The forward task's tile loop over a ring of cached keys: query columns
// are positions pos0 + c, key tiles start at multiples of TL in positions,
// a key tile that wraps the ring is gathered first, and each row's own first
// position plays the part of a document start.
void attn_extend_task(const ExtendArgs& a, float* scratch) {
  const int D = a.D, Dp = round_up(D, W), mq = a.n, q0 = a.pos0, P = a.P;
  Carver cv{scratch};
  float* Qt = cv.take(round_up(D, 16) * TL);  // scale * queries, transposed [D][TL]
  float* O = cv.take(TL * Dp);                // unnormalized output [query][Dp]
  float* St = cv.take(TL * TL);               // scores, then P, [key][query]
  float* Vpad = cv.take(TL * Dp);             // values when padded or gathered
  float* Kg = cv.take(TL * Dp);               // keys of a tile that wraps the ring, [TL][D]
  float* m = cv.take(TL);
  float* l = cv.take(TL);
  float* alpha = cv.take(TL);

  load_transposed(Qt, a.q, a.ldq, mq, D, a.scale);
  std::memset(O, 0, sizeof(float) * TL * Dp);
  for (int i = 0; i < TL; ++i) {
    m[i] = kNegInf;
    l[i] = 0.0f;
  }
  // Columns past the rows: start 0 (their results are thrown away).
  alignas(64) int32_t ds[TL];
  for (int c = 0; c < TL; ++c) ds[c] = c < mq ? a.first[c] : 0;
  const int qlast = q0 + mq - 1;
  const int kt_lo = a.first[0] / TL, kt_hi = qlast / TL;
  const int64_t far = int64_t(1) << 40;
  const int wide = 1 << 30;  // no band beyond the starts
  for (int kt = kt_lo; kt <= kt_hi; ++kt) {
    const int k0 = kt * TL, kn = std::min(TL, qlast + 1 - k0);
    // Cut by the diagonal (some key after the first row's position) or by a
    // row's first position after the tile's first key.
    const bool masked = k0 + TL - 1 > q0 || a.first[mq - 1] > k0;
    const Band by_key = masked ? Band{int64_t(k0) - q0, far} : kFull;
    const Band by_query = masked ? Band{-far, int64_t(q0) - k0} : kFull;
    const int s0 = k0 % P;
    const bool wraps = s0 + kn > P;
    const float* kb = a.k + int64_t(s0) * D;
    if (wraps) {
      for (int j = 0, s = s0; j < kn; ++j, s = s + 1 == P ? 0 : s + 1)
        std::memcpy(Kg + int64_t(j) * D, a.k + int64_t(s) * D, sizeof(float) * D);
      kb = Kg;
    }
    nt_tile(kb, D, Qt, D, St, kn, by_key);
    if (masked) mask_keys_doc(St, kn, q0, k0, wide, ds);
    online_softmax_tile(St, kn, m, l, alpha);
    // Values of positions before every row's band are never attended: they
    // go in as zeros (their probabilities are 0, and the slot may hold
    // anything), so the tile is gathered then, as when it wraps.
    const int below = std::max(0, a.first[0] - k0);
    Rows V;
    if (wraps || below > 0) {
      for (int j = 0, s = s0; j < kn; ++j, s = s + 1 == P ? 0 : s + 1) {
        float* d = Vpad + int64_t(j) * Dp;
        if (j < below)
          std::memset(d, 0, sizeof(float) * Dp);
        else
          std::memcpy(d, a.v + int64_t(s) * D, sizeof(float) * D);
        for (int c = j < below ? Dp : D; c < Dp; ++c) d[c] = 0.0f;
      }
      V = {Vpad, Dp};
    } else {
      V = stream_rows(a.v + int64_t(s0) * D, D, kn, D, Dp, Vpad);
    }
    acc_tile(St, kn, V, O, Dp, mq, Dp, alpha, by_query);
  }
  for (int i = 0; i < mq; ++i) {
    const float inv = 1.0f / l[i];
    float* o = a.out + i * a.ldo;
    const float* src = O + i * Dp;
    for (int d = 0; d < D; ++d) o[d] = src[d] * inv;
  }
}

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
#endif  // GPT_ISA_NS
