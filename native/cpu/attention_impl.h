// Per-ISA bodies of the fused attention kernels (included by
// attention_<isa>.cc), plus the small interface attention.cc drives them
// through. attention.cc owns the task split, the scratch and the thread
// pool; the code here computes one tile task on one thread.
//
// Legend: B batch, H heads, T sequence, D head size, Dp = D rounded up to the
// vector width W, TL = kAttnTile (the query and the key tile: 64), RP =
// kAttnRowsPad (tile rows rounded up to every register-block height used).
//
// Why these shapes: a 64-key tile is a whole number of vectors on every path
// (4 x 16, 8 x 8, 16 x 4), so the score micro-kernel needs no column tail; the
// row dimension is padded instead, and rows past the real ones hold junk that
// only ever reaches rows that are never stored (each output row depends on
// its own input row only). The contraction dimensions, which would mix junk
// into real results, are always zero-filled or masked.
#pragma once
#include <cstddef>
#include <cstdint>

#include "../core/backend.h"
#include "dispatch.h"

namespace gpt {
namespace cpu {

constexpr int kAttnTile = 64;
constexpr int kAttnRowsPad = 72;  // >= roundup(64, R) for every block height R in {3, 4, 6}
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
};

// Floats of scratch one thread needs, on any path (padding to 16 lanes covers
// every path's Dp).
inline size_t attn_scratch_floats(int D) {
  size_t Dp = (static_cast<size_t>(D) + 15) / 16 * 16;
  size_t Dr = (static_cast<size_t>(D) + 15) / 16 * 16;  // rows of transposed tiles, kept aligned
  size_t rp = kAttnRowsPad, tl = kAttnTile;
  // The largest of the three task kinds (backward key tile): four [RP][Dp]
  // row tiles, two [TL][Dp], two [D][TL] transposed tiles, two [RP][TL]
  // score tiles and four row vectors; 16 extra floats per buffer for alignment.
  return 4 * rp * Dp + 2 * tl * Dp + 2 * Dr * tl + 2 * rp * tl + 4 * rp + 16 * 16;
}

// Key tiles [lo, hi] a query tile meets: the band of its first row starts at
// q0 - w + 1, its last row ends on the diagonal.
inline void attn_key_tiles(const AttnArgs& a, int qt, int* lo, int* hi) {
  int q0 = qt * kAttnTile;
  int qlast = q0 + kAttnTile - 1 < a.T - 1 ? q0 + kAttnTile - 1 : a.T - 1;
  int first = q0 - a.w + 1;
  *lo = (first > 0 ? first : 0) / kAttnTile;
  *hi = qlast / kAttnTile;
}

// Query tiles [lo, hi] that meet a key tile (the transpose of the above).
inline void attn_query_tiles(const AttnArgs& a, int kt, int* lo, int* hi) {
  int k0 = kt * kAttnTile;
  int klast = k0 + kAttnTile - 1 < a.T - 1 ? k0 + kAttnTile - 1 : a.T - 1;
  int64_t last = static_cast<int64_t>(klast) + a.w - 1;
  if (last > a.T - 1) last = a.T - 1;
  *lo = kt;
  *hi = static_cast<int>(last / kAttnTile);
}

// A tile pair needs a mask when the diagonal or the band's left edge cuts it.
inline bool attn_tile_masked(const AttnArgs& a, int qt, int kt) {
  int q0 = qt * kAttnTile, k0 = kt * kAttnTile;
  int qlast = q0 + kAttnTile - 1 < a.T - 1 ? q0 + kAttnTile - 1 : a.T - 1;
  int klast = k0 + kAttnTile - 1;  // past T counts as cut: those keys must be masked
  return klast > q0 || static_cast<int64_t>(k0) <= static_cast<int64_t>(qlast) - a.w;
}

}  // namespace cpu
}  // namespace gpt

// One task each, on the calling thread, with `scratch` of attn_scratch_floats.
GPT_DECLARE_ISA_FN(void attn_forward_task(const AttnArgs& a, int b, int h, int qt, float* scratch))
GPT_DECLARE_ISA_FN(void attn_backward_kv_task(const AttnArgs& a, int b, int h, int kt, float* scratch))
GPT_DECLARE_ISA_FN(void attn_backward_q_task(const AttnArgs& a, int b, int h, int qt, float* scratch))

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
constexpr int RP = kAttnRowsPad;
constexpr float kNegInf = -INFINITY;

// Register budget for accumulators: 32 vector registers on AVX-512, 16 on
// the others (leave room for the loaded operands and the broadcast).
#if defined(__AVX512F__)
constexpr int kAccRegs = 24;
constexpr int kNtRows = 6;  // score kernel: 6 rows x 4 vectors (64 keys)
constexpr int kMaxCv = 8;   // accumulate kernel: up to 8 vectors of D per pass
#else
constexpr int kAccRegs = 12;
constexpr int kNtRows = 3;  // 3 rows x 4 vectors
constexpr int kMaxCv = 4;
#endif
constexpr int kNtVecs = 4;
static_assert(TL % (kNtVecs * W) == 0, "the key tile must be whole score blocks");

constexpr int acc_rows(int cv) { return kAccRegs / cv < 6 ? kAccRegs / cv : 6; }

inline int round_up(int x, int m) { return (x + m - 1) / m * m; }

// Carves 64-byte aligned pieces out of a thread's scratch.
struct Carver {
  float* p;
  float* take(size_t n) {
    float* r = p;
    p += (n + 15) / 16 * 16;
    return r;
  }
};

// ---- copies in and out of the strided views --------------------------------

// dst[r][0..Dp) = scale * src row r (D values, zero padded) for r < n; rows
// [n, nzero) are zero-filled (the contraction operands need that).
inline void load_rows(float* dst, int Dp, const float* src, int64_t st, int n, int nzero, int D, float scale) {
  for (int r = 0; r < n; ++r) {
    const float* s = src + r * st;
    float* d = dst + static_cast<int64_t>(r) * Dp;
    for (int c = 0; c < D; ++c) d[c] = s[c] * scale;
    for (int c = D; c < Dp; ++c) d[c] = 0.0f;
  }
  for (int r = n; r < nzero; ++r) std::memset(dst + static_cast<int64_t>(r) * Dp, 0, sizeof(float) * Dp);
}

// dst[d][j] = scale * src row j, column d, for j < n; columns [n, TL) zero.
inline void load_transposed(float* dst, const float* src, int64_t st, int n, int D, float scale) {
  if (n < TL)
    for (int d = 0; d < D; ++d) std::memset(dst + d * TL + n, 0, sizeof(float) * (TL - n));
  for (int j = 0; j < n; ++j) {
    const float* s = src + j * st;
    for (int d = 0; d < D; ++d) dst[d * TL + j] = s[d] * scale;
  }
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
      vf a = vsplat(A[r * lda + d]);
#pragma GCC unroll 8
      for (int c = 0; c < KC; ++c) acc[r][c] = vfma(a, bv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < KC; ++c) vstore(C + r * TL + c * W, acc[r][c]);
}

// S[m'][TL] = A[m'][D] . Bt[D][TL], m' = m rounded up to the block height.
inline void nt_tile(const float* A, int64_t lda, const float* Bt, int D, float* S, int m) {
  for (int r0 = 0; r0 < m; r0 += kNtRows)
    for (int c0 = 0; c0 < TL; c0 += kNtVecs * W)
      nt_block<kNtRows, kNtVecs>(A + r0 * lda, lda, Bt + c0, D, S + r0 * TL + c0);
}

// C[R][CV*W] = C * rs[r] (when rs) + A[R][0..n) . B[0..n)[CV*W].
template <int R, int CV>
inline void acc_block(const float* A, int64_t lda, int n, const float* B, int64_t ldb, float* C, int64_t ldc,
                      const float* rs) {
  vf acc[R][CV];
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r) {
    vf s = rs ? vsplat(rs[r]) : vsplat(1.0f);
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) acc[r][c] = vload(C + r * ldc + c * W) * s;
  }
  for (int k = 0; k < n; ++k) {
    vf bv[CV];
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) bv[c] = vload(B + k * ldb + c * W);
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      vf a = vsplat(A[r * lda + k]);
#pragma GCC unroll 8
      for (int c = 0; c < CV; ++c) acc[r][c] = vfma(a, bv[c], acc[r][c]);
    }
  }
#pragma GCC unroll 8
  for (int r = 0; r < R; ++r)
#pragma GCC unroll 8
    for (int c = 0; c < CV; ++c) vstore(C + r * ldc + c * W, acc[r][c]);
}

template <int CV>
inline void acc_rows(const float* A, int64_t lda, int n, const float* B, int64_t ldb, float* C, int64_t ldc, int m,
                     const float* rs) {
  constexpr int R = acc_rows(CV);
  for (int r0 = 0; r0 < m; r0 += R)
    acc_block<R, CV>(A + r0 * lda, lda, n, B, ldb, C + r0 * ldc, ldc, rs ? rs + r0 : nullptr);
}

// C[m'][Dp] = C * rs + A[m'][n] . B[n][Dp], in passes of up to kMaxCv vectors
// of D (D = 64, 80, 96, 128 take one pass on AVX-512).
inline void acc_tile(const float* A, int64_t lda, int n, const float* B, int64_t ldb, float* C, int64_t ldc, int m,
                     int Dp, const float* rs) {
  const int nv = Dp / W;
  for (int v0 = 0; v0 < nv;) {
    int cv = std::min(nv - v0, kMaxCv);
    const float* Bv = B + v0 * W;
    float* Cv = C + v0 * W;
    switch (cv) {
      case 1: acc_rows<1>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
      case 2: acc_rows<2>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
      case 3: acc_rows<3>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
      case 4: acc_rows<4>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
#if defined(__AVX512F__)
      case 5: acc_rows<5>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
      case 6: acc_rows<6>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
      case 7: acc_rows<7>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
      case 8: acc_rows<8>(A, lda, n, Bv, ldb, Cv, ldc, m, rs); break;
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

// Row r of a [.][TL] tile keeps columns [lo, hi]; the rest become -inf.
inline void mask_row(float* s, int lo, int hi) {
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

inline int64_t off(const AttnTensor& t, int b, int h) { return b * t.sb + h * t.sh; }

}  // namespace

// ---- forward: one query tile of one (b, h) -----------------------------------
void attn_forward_task(const AttnArgs& a, int b, int h, int qt, float* scratch) {
  const int T = a.T, D = a.D, Dp = round_up(D, W), w = a.w;
  const int q0 = qt * TL, mq = std::min(TL, T - q0);
  Carver cv{scratch};
  float* Qs = cv.take(RP * Dp);   // scaled queries, rows = queries
  float* O = cv.take(RP * Dp);    // unnormalized output
  float* Kt = cv.take(round_up(D, 16) * TL);  // keys transposed [D][TL]
  float* Vc = cv.take(TL * Dp);   // values [TL][Dp]
  float* S = cv.take(RP * TL);    // scores, then probabilities
  float* mrow = cv.take(RP);      // running max
  float* lrow = cv.take(RP);      // running sum
  float* alpha = cv.take(RP);     // rescale of O for this key tile

  const float* qb = a.q.ptr + off(a.q, b, h) + q0 * a.q.st;
  const float* kb = a.k.ptr + off(a.k, b, h);
  const float* vb = a.v.ptr + off(a.v, b, h);
  load_rows(Qs, Dp, qb, a.q.st, mq, mq, D, a.scale);
  std::memset(O, 0, sizeof(float) * RP * Dp);
  for (int i = 0; i < RP; ++i) {
    mrow[i] = kNegInf;
    lrow[i] = 0.0f;
    alpha[i] = 0.0f;
  }

  int kt_lo, kt_hi;
  attn_key_tiles(a, qt, &kt_lo, &kt_hi);
  for (int kt = kt_lo; kt <= kt_hi; ++kt) {
    const int k0 = kt * TL, kn = std::min(TL, T - k0);
    load_transposed(Kt, kb + k0 * a.k.st, a.k.st, kn, D, 1.0f);
    load_rows(Vc, Dp, vb + k0 * a.v.st, a.v.st, kn, TL, D, 1.0f);
    nt_tile(Qs, Dp, Kt, D, S, mq);
    if (attn_tile_masked(a, qt, kt))
      for (int i = 0; i < mq; ++i) mask_row(S + i * TL, q0 + i - w + 1 - k0, q0 + i - k0);
    // Online softmax: new running max, rescale factor, probabilities in place.
    for (int i = 0; i < mq; ++i) {
      float* s = S + i * TL;
      vf mx = vsplat(kNegInf);
      for (int c = 0; c < TL; c += W) mx = vmax(mx, vload(s + c));
      const float mnew = std::max(mrow[i], vhmax(mx));
      if (mnew == kNegInf) {  // nothing of this row in the tile yet
        std::memset(s, 0, sizeof(float) * TL);
        alpha[i] = 1.0f;
        continue;
      }
      const float al = sexp(mrow[i] - mnew);
      const vf mv = vsplat(mnew);
      vf sum = vzero();
      for (int c = 0; c < TL; c += W) {
        vf p = vexp(vload(s + c) - mv);
        vstore(s + c, p);
        sum += p;
      }
      lrow[i] = lrow[i] * al + vhsum(sum);
      mrow[i] = mnew;
      alpha[i] = al;
    }
    acc_tile(S, TL, TL, Vc, Dp, O, Dp, mq, Dp, alpha);
  }

  float* ob = a.out.ptr + off(a.out, b, h) + q0 * a.out.st;
  float* lb = a.lse + (static_cast<int64_t>(b) * a.H + h) * T + q0;
  for (int i = 0; i < mq; ++i) {
    const float inv = 1.0f / lrow[i];
    float* o = ob + i * a.out.st;
    const float* src = O + i * Dp;
    for (int d = 0; d < D; ++d) o[d] = src[d] * inv;
    lb[i] = mrow[i] + std::log(lrow[i]);
  }
}

// ---- backward, key side: dK and dV of one key tile -----------------------------
// Works on transposed scores St[j][i] (rows = keys) so dV += P^T dO and
// dK += dS^T Q are plain row-accumulations, and lse / delta vectorize along i.
void attn_backward_kv_task(const AttnArgs& a, int b, int h, int kt, float* scratch) {
  const int T = a.T, D = a.D, Dp = round_up(D, W), w = a.w, Dr = round_up(D, 16);
  const int k0 = kt * TL, kn = std::min(TL, T - k0);
  Carver cv{scratch};
  float* Kc = cv.take(RP * Dp);
  float* Vc = cv.take(RP * Dp);
  float* dK = cv.take(RP * Dp);
  float* dV = cv.take(RP * Dp);
  float* Qs = cv.take(TL * Dp);   // scaled queries [TL][Dp], zero rows past the end
  float* dOc = cv.take(TL * Dp);  // dO [TL][Dp]
  float* Qt = cv.take(Dr * TL);   // scaled queries transposed [D][TL]
  float* dOt = cv.take(Dr * TL);  // dO transposed
  float* St = cv.take(RP * TL);   // scores, then P (rows = keys)
  float* dPt = cv.take(RP * TL);  // dP, then dS
  float* lse_v = cv.take(RP);
  float* del_v = cv.take(RP);

  const int64_t bh = (static_cast<int64_t>(b) * a.H + h) * T;
  load_rows(Kc, Dp, a.k.ptr + off(a.k, b, h) + k0 * a.k.st, a.k.st, kn, kn, D, 1.0f);
  load_rows(Vc, Dp, a.v.ptr + off(a.v, b, h) + k0 * a.v.st, a.v.st, kn, kn, D, 1.0f);
  std::memset(dK, 0, sizeof(float) * RP * Dp);
  std::memset(dV, 0, sizeof(float) * RP * Dp);
  const float* qbase = a.q.ptr + off(a.q, b, h);
  const float* dobase = a.dout.ptr + off(a.dout, b, h);

  int qt_lo, qt_hi;
  attn_query_tiles(a, kt, &qt_lo, &qt_hi);
  for (int qt = qt_lo; qt <= qt_hi; ++qt) {
    const int q0 = qt * TL, mq = std::min(TL, T - q0);
    const float* qb = qbase + q0 * a.q.st;
    const float* dob = dobase + q0 * a.dout.st;
    load_rows(Qs, Dp, qb, a.q.st, mq, TL, D, a.scale);
    load_rows(dOc, Dp, dob, a.dout.st, mq, TL, D, 1.0f);
    load_transposed(Qt, qb, a.q.st, mq, D, a.scale);
    load_transposed(dOt, dob, a.dout.st, mq, D, 1.0f);
    // Queries past the end: lse = +inf makes their P (and so dS) exactly 0.
    for (int i = 0; i < TL; ++i) {
      lse_v[i] = i < mq ? a.lse[bh + q0 + i] : INFINITY;
      del_v[i] = i < mq ? a.delta[bh + q0 + i] : 0.0f;
    }
    nt_tile(Kc, Dp, Qt, D, St, kn);
    nt_tile(Vc, Dp, dOt, D, dPt, kn);
    const bool masked = attn_tile_masked(a, qt, kt);
    for (int j = 0; j < kn; ++j) {
      float* s = St + j * TL;
      float* dp = dPt + j * TL;
      // key k0 + j is seen by queries k0 + j .. k0 + j + w - 1
      if (masked) mask_row(s, k0 + j - q0, static_cast<int>(std::min<int64_t>(int64_t(k0) + j + w - 1 - q0, TL)));
      for (int c = 0; c < TL; c += W) {
        vf p = vexp(vload(s + c) - vload(lse_v + c));
        vstore(s + c, p);
        vstore(dp + c, p * (vload(dp + c) - vload(del_v + c)));
      }
    }
    acc_tile(St, TL, TL, dOc, Dp, dV, Dp, kn, Dp, nullptr);
    acc_tile(dPt, TL, TL, Qs, Dp, dK, Dp, kn, Dp, nullptr);
  }

  float* dkb = a.dk.ptr + off(a.dk, b, h) + k0 * a.dk.st;
  float* dvb = a.dv.ptr + off(a.dv, b, h) + k0 * a.dv.st;
  for (int j = 0; j < kn; ++j) {
    std::memcpy(dkb + j * a.dk.st, dK + j * Dp, sizeof(float) * D);
    std::memcpy(dvb + j * a.dv.st, dV + j * Dp, sizeof(float) * D);
  }
}

// ---- backward, query side: dQ of one query tile -------------------------------
void attn_backward_q_task(const AttnArgs& a, int b, int h, int qt, float* scratch) {
  const int T = a.T, D = a.D, Dp = round_up(D, W), w = a.w, Dr = round_up(D, 16);
  const int q0 = qt * TL, mq = std::min(TL, T - q0);
  Carver cv{scratch};
  float* Qs = cv.take(RP * Dp);
  float* dOc = cv.take(RP * Dp);
  float* dQ = cv.take(RP * Dp);
  float* Kc = cv.take(TL * Dp);  // keys [TL][Dp], zero rows past the end
  float* Kt = cv.take(Dr * TL);
  float* Vt = cv.take(Dr * TL);
  float* S = cv.take(RP * TL);
  float* dP = cv.take(RP * TL);

  const int64_t bh = (static_cast<int64_t>(b) * a.H + h) * T;
  load_rows(Qs, Dp, a.q.ptr + off(a.q, b, h) + q0 * a.q.st, a.q.st, mq, mq, D, a.scale);
  load_rows(dOc, Dp, a.dout.ptr + off(a.dout, b, h) + q0 * a.dout.st, a.dout.st, mq, mq, D, 1.0f);
  std::memset(dQ, 0, sizeof(float) * RP * Dp);
  const float* kbase = a.k.ptr + off(a.k, b, h);
  const float* vbase = a.v.ptr + off(a.v, b, h);

  int kt_lo, kt_hi;
  attn_key_tiles(a, qt, &kt_lo, &kt_hi);
  for (int kt = kt_lo; kt <= kt_hi; ++kt) {
    const int k0 = kt * TL, kn = std::min(TL, T - k0);
    const float* kb = kbase + k0 * a.k.st;
    load_transposed(Kt, kb, a.k.st, kn, D, 1.0f);
    load_transposed(Vt, vbase + k0 * a.v.st, a.v.st, kn, D, 1.0f);
    load_rows(Kc, Dp, kb, a.k.st, kn, TL, D, 1.0f);
    nt_tile(Qs, Dp, Kt, D, S, mq);
    nt_tile(dOc, Dp, Vt, D, dP, mq);
    const bool masked = attn_tile_masked(a, qt, kt);
    for (int i = 0; i < mq; ++i) {
      float* s = S + i * TL;
      float* dp = dP + i * TL;
      if (masked) mask_row(s, q0 + i - w + 1 - k0, q0 + i - k0);
      const vf l = vsplat(a.lse[bh + q0 + i]), dl = vsplat(a.delta[bh + q0 + i]);
      for (int c = 0; c < TL; c += W) {
        vf p = vexp(vload(s + c) - l);
        vstore(dp + c, p * (vload(dp + c) - dl));
      }
    }
    acc_tile(dP, TL, TL, Kc, Dp, dQ, Dp, mq, Dp, nullptr);
  }

  float* dqb = a.dq.ptr + off(a.dq, b, h) + q0 * a.dq.st;
  for (int i = 0; i < mq; ++i) {
    float* o = dqb + i * a.dq.st;
    const float* src = dQ + i * Dp;
    for (int d = 0; d < D; ++d) o[d] = src[d] * a.scale;
  }
}

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
#endif  // GPT_ISA_NS
