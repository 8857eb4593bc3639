// CPU decoding ops (decode_attention.h). Decode attention is one query per
// row and head against at most P cached positions, a few MFLOP per token
// while a step's matmuls read every weight once: a plain kernel (scores in
// position order, then the softmax, then the weighted sum of values) is
// enough, and the compiler vectorizes the inner loops over D. The rows of
// one sequence in an extend (a chunk of a prompt) share their keys and
// values, so they go in groups that read each key once.
#include "decode_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../core/threadpool.h"

namespace gpt {
namespace cpu {
namespace {

// s = q . k over D, with eight partial sums so the compiler can keep them in
// vector registers without reassociating a single sum.
inline float dot(const float* q, const float* k, int D) {
  float acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
  int d = 0;
  for (; d + 8 <= D; d += 8)
    for (int u = 0; u < 8; ++u) acc[u] += q[d + u] * k[d + u];
  for (; d < D; ++d) acc[d & 7] += q[d] * k[d];
  return ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
}

inline void axpy(float* out, float a, const float* x, int D) {
  for (int d = 0; d < D; ++d) out[d] += a * x[d];
}

}  // namespace

void decode_kv_store(float* cache, const KvRow* rows, int M, const float* k, const float* v, int64_t ld, int H, int D) {
  const size_t bytes = sizeof(float) * static_cast<size_t>(D);
  for (int r = 0; r < M; ++r) {
    const KvRow& w = rows[r];
    if (w.pos < 0) continue;
    const int64_t slot = w.pos % w.slots;
    float* kc = cache + w.k;
    float* vc = cache + w.v;
    const float* kr = k + int64_t(r) * ld;
    const float* vr = v + int64_t(r) * ld;
    for (int h = 0; h < H; ++h) {
      std::memcpy(kc + (int64_t(h) * w.slots + slot) * D, kr + int64_t(h) * D, bytes);
      std::memcpy(vc + (int64_t(h) * w.slots + slot) * D, vr + int64_t(h) * D, bytes);
    }
  }
}

void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, const float* cache, const KvRow* rows,
                      int M, int H, int D, float scale) {
  // Groups: runs of up to kGroup consecutive rows on the same cache (the
  // rows of one sequence in an extend; a step's rows are groups of one).
  // A group's task reads each key and value once for all its rows, instead
  // of once per row. Each row still does exactly the arithmetic of a row
  // alone, in the same order (its scores over its positions first..pos in
  // order, the softmax, the weighted sum in position order), so its result
  // does not depend on its group, the other rows or the thread count.
  constexpr int kGroup = 8;
  std::vector<int> g0;
  for (int r = 0; r < M; ++r)
    if (r == 0 || r - g0.back() == kGroup || rows[r].k != rows[r - 1].k || rows[r].v != rows[r - 1].v ||
        rows[r].slots != rows[r - 1].slots)
      g0.push_back(r);
  g0.push_back(M);
  const int G = static_cast<int>(g0.size()) - 1;
  ThreadPool::global().parallel_for(int64_t(G) * H, [&](int64_t task, int) {
    // Scores of the group's rows ([kGroup, span] per thread), grown as
    // needed and kept between calls.
    thread_local std::vector<float> scores;
    const int g = static_cast<int>(task / H), h = static_cast<int>(task % H);
    const int r0 = g0[static_cast<size_t>(g)], nr = g0[static_cast<size_t>(g) + 1] - r0;
    const KvRow* w = rows + r0;
    const int P = w[0].slots;
    int lo = w[0].first, hi = w[0].pos;
    for (int i = 1; i < nr; ++i) {
      lo = std::min(lo, w[i].first);
      hi = std::max(hi, w[i].pos);
    }
    const int span = hi - lo + 1;
    if (scores.size() < static_cast<size_t>(nr) * span) scores.resize(static_cast<size_t>(nr) * span);
    // Row i's score of position j at sc[i * span + j - lo].
    float* sc = scores.data();
    const float* kc = cache + w[0].k + int64_t(h) * P * D;
    const float* vc = cache + w[0].v + int64_t(h) * P * D;
    float mx[kGroup], sum[kGroup];
    for (int i = 0; i < nr; ++i) mx[i] = -std::numeric_limits<float>::infinity();
    // Positions lo..hi in order; their slots walk the ring from lo % P (no
    // division in the loop). Row i reads only its own first..pos.
    const int s0 = lo % P;
    for (int j = lo, s = s0; j <= hi; ++j) {
      const float* kj = kc + int64_t(s) * D;
      for (int i = 0; i < nr; ++i) {
        if (j < w[i].first || j > w[i].pos) continue;
        const float x = dot(q + int64_t(r0 + i) * ldq + int64_t(h) * D, kj, D) * scale;
        sc[int64_t(i) * span + (j - lo)] = x;
        mx[i] = std::max(mx[i], x);
      }
      if (++s == P) s = 0;
    }
    for (int i = 0; i < nr; ++i) {
      float* si = sc + int64_t(i) * span + (w[i].first - lo);
      const int n = w[i].pos - w[i].first + 1;
      float t = 0.0f;
      for (int k = 0; k < n; ++k) {
        const float e = std::exp(si[k] - mx[i]);
        si[k] = e;
        t += e;
      }
      sum[i] = t;
      float* o = out + int64_t(r0 + i) * ldo + int64_t(h) * D;
      std::fill(o, o + D, 0.0f);
    }
    for (int j = lo, s = s0; j <= hi; ++j) {
      const float* vj = vc + int64_t(s) * D;
      for (int i = 0; i < nr; ++i) {
        if (j < w[i].first || j > w[i].pos) continue;
        axpy(out + int64_t(r0 + i) * ldo + int64_t(h) * D, sc[int64_t(i) * span + (j - lo)], vj, D);
      }
      if (++s == P) s = 0;
    }
    for (int i = 0; i < nr; ++i) {
      float* o = out + int64_t(r0 + i) * ldo + int64_t(h) * D;
      const float inv = 1.0f / sum[i];
      for (int d = 0; d < D; ++d) o[d] *= inv;
    }
  });
}

void decode_embedding(float* out, const int32_t* tokens, const int32_t* positions, const float* wte, const float* wpe,
                      int M, int C) {
  for (int r = 0; r < M; ++r) {
    const float* a = wte + int64_t(tokens[r]) * C;
    const float* b = wpe + int64_t(positions[r]) * C;
    float* o = out + int64_t(r) * C;
    for (int c = 0; c < C; ++c) o[c] = a[c] + b[c];
  }
}

}  // namespace cpu
}  // namespace gpt
