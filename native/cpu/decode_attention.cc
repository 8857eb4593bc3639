// CPU decoding ops (decode_attention.h). Decode attention is one query per
// row and head against at most P cached positions, a few MFLOP per token
// while a step's matmuls read every weight once: a plain kernel (scores in
// position order, then the softmax, then the weighted sum of values) is
// enough, and the compiler vectorizes the inner loops over D.
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
  ThreadPool::global().parallel_for(int64_t(M) * H, [&](int64_t task, int) {
    // One row of scores per thread, grown as needed and kept between calls.
    thread_local std::vector<float> scores;
    const int r = static_cast<int>(task / H), h = static_cast<int>(task % H);
    const KvRow& w = rows[r];
    const int n = w.pos - w.first + 1;  // positions attended
    const int P = w.slots;
    if (scores.size() < static_cast<size_t>(n)) scores.resize(static_cast<size_t>(n));
    float* sc = scores.data();
    const float* qh = q + int64_t(r) * ldq + int64_t(h) * D;
    const float* kc = cache + w.k + int64_t(h) * P * D;
    const float* vc = cache + w.v + int64_t(h) * P * D;
    float* o = out + int64_t(r) * ldo + int64_t(h) * D;
    // Positions first..pos in order; their slots walk the ring from
    // first % P (no division in the loop).
    const int s0 = w.first % P;
    float mx = -std::numeric_limits<float>::infinity();
    for (int i = 0, s = s0; i < n; ++i) {
      const float x = dot(qh, kc + int64_t(s) * D, D) * scale;
      sc[i] = x;
      mx = std::max(mx, x);
      if (++s == P) s = 0;
    }
    float sum = 0.0f;
    for (int i = 0; i < n; ++i) {
      const float e = std::exp(sc[i] - mx);
      sc[i] = e;
      sum += e;
    }
    std::fill(o, o + D, 0.0f);
    for (int i = 0, s = s0; i < n; ++i) {
      axpy(o, sc[i], vc + int64_t(s) * D, D);
      if (++s == P) s = 0;
    }
    const float inv = 1.0f / sum;
    for (int d = 0; d < D; ++d) o[d] *= inv;
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
