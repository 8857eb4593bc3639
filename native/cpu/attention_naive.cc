// The plain materialized fp32 attention: for each (b, h) the whole T x T
// score / probability matrix is stored, softmax runs over its rows, and the
// products are row loops the compiler vectorizes for the baseline ISA. It is
// the benchmarks' "naive" line (what a framework does without a fused kernel)
// and the fp32 yardstick of the stability test. Same pool, same masks
// (document masks included: attention.h).
//
// Legend: B batch, H heads, T sequence, D head size.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <string>

#include "../core/doc_mask.h"
#include "../core/error.h"
#include "../core/memory.h"
#include "../core/threadpool.h"
#include "attention.h"

namespace gpt {
namespace cpu {

namespace {

constexpr int kRowsPerTask = 16;

// Eight independent partial sums: vectorizable without reassociating.
inline float dot(const float* a, const float* b, int n) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int d = 0;
  for (; d + 8 <= n; d += 8)
    for (int l = 0; l < 8; ++l) acc[l] += a[d + l] * b[d + l];
  for (; d < n; ++d) acc[0] += a[d] * b[d];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

inline void axpy(float* y, float a, const float* x, int n) {
  for (int d = 0; d < n; ++d) y[d] += a * x[d];
}

void check(const AttnShape& s, size_t* TT) {
  GPT_CHECK_ARG(s.batch >= 1 && s.heads >= 1 && s.seq >= 1, "attention (naive): bad shape");
  GPT_CHECK_ARG(s.head_dim >= 1 && s.head_dim <= 256, "attention (naive): headDim must be in [1, 256]");
  GPT_CHECK_ARG(s.pattern == AttnPattern::Dense || (s.pattern == AttnPattern::Banded && s.window >= 1),
                "attention (naive): banded needs window >= 1");
  GPT_CHECK_ARG(std::isfinite(s.scale), "attention (naive): scale must be finite");
  if (s.doc_start) check_doc_starts(s.doc_start, s.batch, s.seq);
  *TT = static_cast<size_t>(s.seq) * static_cast<size_t>(s.seq);
}

// Query i's first key: the band's, or its document's start when later.
inline int first_key(const AttnShape& s, int b, int i, int w) {
  const int lo = std::max(0, i - w + 1);
  return s.doc_start ? std::max(lo, static_cast<int>(s.doc_start[static_cast<int64_t>(b) * s.seq + i])) : lo;
}

int window_of(const AttnShape& s) { return s.pattern == AttnPattern::Banded ? std::min(s.window, s.seq) : s.seq; }

inline const float* row(const AttnTensor& t, int b, int h, int i) { return t.ptr + b * t.sb + h * t.sh + i * t.st; }
inline float* row_mut(const AttnTensor& t, int b, int h, int i) { return t.ptr + b * t.sb + h * t.sh + i * t.st; }

}  // namespace

void attention_naive_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k,
                             AttnTensor v) {
  size_t TT;
  check(s, &TT);
  const int T = s.seq, D = s.head_dim, w = window_of(s);
  HostBuffer<float> S(TT, "the naive attention score matrix");
  ThreadPool& pool = ThreadPool::global();
  const int64_t blocks = (T + kRowsPerTask - 1) / kRowsPerTask;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      float* lb = lse + (static_cast<int64_t>(b) * s.heads + h) * T;
      pool.parallel_for(blocks, [&](int64_t blk, int) {
        const int i0 = static_cast<int>(blk) * kRowsPerTask, i1 = std::min(T, i0 + kRowsPerTask);
        for (int i = i0; i < i1; ++i) {
          float* p = S.data() + static_cast<size_t>(i) * T;
          const int lo = first_key(s, b, i, w);
          const float* qi = row(q, b, h, i);
          float m = -INFINITY;
          for (int j = lo; j <= i; ++j) {
            p[j] = s.scale * dot(qi, row(k, b, h, j), D);
            m = std::max(m, p[j]);
          }
          float sum = 0;
          for (int j = lo; j <= i; ++j) {
            p[j] = std::exp(p[j] - m);
            sum += p[j];
          }
          const float inv = 1.0f / sum;
          float* o = row_mut(out, b, h, i);
          std::fill(o, o + D, 0.0f);
          for (int j = lo; j <= i; ++j) axpy(o, p[j] * inv, row(v, b, h, j), D);
          lb[i] = m + std::log(sum);
        }
      });
    }
}

void attention_naive_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q,
                              AttnTensor k, AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout) {
  size_t TT;
  check(s, &TT);
  const int T = s.seq, D = s.head_dim, w = window_of(s);
  HostBuffer<float> P(TT, "the naive attention probability matrix");
  HostBuffer<float> dS(TT, "the naive attention score gradient matrix");
  ThreadPool& pool = ThreadPool::global();
  const int64_t blocks = (T + kRowsPerTask - 1) / kRowsPerTask;
  for (int b = 0; b < s.batch; ++b)
    for (int h = 0; h < s.heads; ++h) {
      const float* lb = lse + (static_cast<int64_t>(b) * s.heads + h) * T;
      // Rows: P, dS and dQ.
      pool.parallel_for(blocks, [&](int64_t blk, int) {
        const int i0 = static_cast<int>(blk) * kRowsPerTask, i1 = std::min(T, i0 + kRowsPerTask);
        for (int i = i0; i < i1; ++i) {
          const int lo = first_key(s, b, i, w);
          const float* qi = row(q, b, h, i);
          const float* gi = row(dout, b, h, i);
          const float di = dot(gi, row(out, b, h, i), D);
          float* p = P.data() + static_cast<size_t>(i) * T;
          float* ds = dS.data() + static_cast<size_t>(i) * T;
          float* g = row_mut(dq, b, h, i);
          std::fill(g, g + D, 0.0f);
          for (int j = lo; j <= i; ++j) {
            p[j] = std::exp(s.scale * dot(qi, row(k, b, h, j), D) - lb[i]);
            ds[j] = p[j] * (dot(gi, row(v, b, h, j), D) - di);
            axpy(g, ds[j] * s.scale, row(k, b, h, j), D);
          }
        }
      });
      // Columns: dK and dV.
      pool.parallel_for(blocks, [&](int64_t blk, int) {
        const int j0 = static_cast<int>(blk) * kRowsPerTask, j1 = std::min(T, j0 + kRowsPerTask);
        for (int j = j0; j < j1; ++j) {
          const int hi = static_cast<int>(std::min<int64_t>(T - 1, int64_t(j) + w - 1));
          float* gk = row_mut(dk, b, h, j);
          float* gv = row_mut(dv, b, h, j);
          std::fill(gk, gk + D, 0.0f);
          std::fill(gv, gv + D, 0.0f);
          for (int i = j; i <= hi; ++i) {
            // Document starts never decrease: past the first query that
            // cannot see key j, none can.
            if (s.doc_start && first_key(s, b, i, w) > j) break;
            const size_t ij = static_cast<size_t>(i) * T + j;
            axpy(gv, P[ij], row(dout, b, h, i), D);
            axpy(gk, dS[ij] * s.scale, row(q, b, h, i), D);
          }
        }
      });
    }
}

}  // namespace cpu
}  // namespace gpt
