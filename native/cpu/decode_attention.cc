// CPU decoding ops (decode_attention.h). Decode attention is one query per
// row and head against at most P cached positions, a few MFLOP per token
// while a step's matmuls read every weight once: a plain kernel (scores in
// position order, then the softmax, then the weighted sum of values) is
// enough, and the compiler vectorizes the inner loops over D. The rows of
// one sequence in an extend (a chunk of a prompt) are many queries over the
// same keys: a run of at least kTiledRows of them goes through the fused
// attention's tile kernels instead (attn_extend_task, attention_impl.h),
// 64 queries against 64 keys at a time.
#include "decode_attention.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

#include "../core/error.h"
#include "../core/memory.h"
#include "../core/threadpool.h"
#include "attention_impl.h"

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

// Runs of at least this many rows take the tiled kernel (decode_attention).
constexpr int kTiledRows = 16;

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

namespace {

// A row alone, or a group of up to kGroup rows on the same cache, over its
// positions in order (the step's kernel).
void plain_task(float* out, int64_t ldo, const float* q, int64_t ldq, const float* cache, const KvRow* rows, int r0,
                int nr, int h, int D, float scale) {
  constexpr int kGroup = 8;
  // Scores of the group's rows ([kGroup, span] per thread), grown as
  // needed and kept between calls.
  thread_local std::vector<float> scores;
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
}

// Rows r and r - 1 continue one run of an extend: the same cache, the next
// position, a band that does not start earlier.
inline bool continues(const KvRow* rows, int r) {
  const KvRow &a = rows[r - 1], &b = rows[r];
  return a.k == b.k && a.v == b.v && a.slots == b.slots && b.pos == a.pos + 1 && b.first >= a.first;
}

// A piece of work for every head: rows [r0, r0 + n), plain or one query tile.
struct Piece {
  int r0, n;
  bool tiled;
};

}  // namespace

void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, const float* cache, const KvRow* rows,
                      int M, int H, int D, float scale) {
  // Runs of consecutive rows that continue each other (the chunk of one
  // sequence in an extend; a step's rows are runs of one). A run of at least
  // kTiledRows goes in query tiles of kAttnTile rows from its first row;
  // the others in groups of up to kGroup rows on the same cache, whose task
  // reads each key and value once for all its rows. Each row's arithmetic
  // depends only on its own query, band and cache, and on the length of its
  // run (plain or tiled; a tile's rows share nothing but reads), never on
  // the other sequences, the grouping or the thread count.
  constexpr int kGroup = 8;
  std::vector<Piece> pieces;
  std::vector<int32_t> firsts;  // rows' first positions, for the tiles
  bool tiled = false;
  for (int r = 0; r < M;) {
    int e = r + 1;
    while (e < M && continues(rows, e)) ++e;
    if (e - r >= kTiledRows) {
      // Longest tiles (the last, seeing the most keys) first.
      for (int t0 = r + (e - r - 1) / kAttnTile * kAttnTile; t0 >= r; t0 -= kAttnTile)
        pieces.push_back({t0, std::min(kAttnTile, e - t0), true});
      tiled = true;
    } else {
      for (int g = r; g < e; g += kGroup) pieces.push_back({g, std::min(kGroup, e - g), false});
    }
    r = e;
  }
  if (tiled) {
    firsts.resize(static_cast<size_t>(M));
    for (int r = 0; r < M; ++r) firsts[static_cast<size_t>(r)] = rows[r].first;
  }
  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.size();
  const size_t per = (attn_scratch_floats(D) + 15) / 16 * 16;
  HostBuffer<float> ws;
  if (tiled) {
    // Zeroed so the padded columns the tiles compute and throw away never
    // start from NaNs.
    ws.reset(per * static_cast<size_t>(threads), "the decode attention scratch");
    std::memset(ws.data(), 0, ws.bytes());
  }
  const int64_t n = static_cast<int64_t>(pieces.size());
  pool.parallel_for(n * H, [&](int64_t task, int thread) {
    const Piece& pc = pieces[static_cast<size_t>(task % n)];
    const int h = static_cast<int>(task / n);
    if (!pc.tiled) {
      plain_task(out, ldo, q, ldq, cache, rows, pc.r0, pc.n, h, D, scale);
      return;
    }
    GPT_CHECK_ARG(thread < threads, "decode attention: the thread pool was resized during a call");
    const KvRow& w = rows[pc.r0];
    ExtendArgs a;
    a.D = D;
    a.scale = scale;
    a.q = q + int64_t(pc.r0) * ldq + int64_t(h) * D;
    a.ldq = ldq;
    a.out = out + int64_t(pc.r0) * ldo + int64_t(h) * D;
    a.ldo = ldo;
    a.k = cache + w.k + int64_t(h) * w.slots * D;
    a.v = cache + w.v + int64_t(h) * w.slots * D;
    a.P = w.slots;
    a.n = pc.n;
    a.pos0 = w.pos;
    a.first = firsts.data() + pc.r0;
    GPT_CPU_DISPATCH(attn_extend_task, a, ws.data() + per * static_cast<size_t>(thread));
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
