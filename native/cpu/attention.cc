// Fused attention on the CPU: argument checks, the split into (batch, head,
// tile) tasks on the global pool, per-thread scratch, and the workspace
// high-water mark. The arithmetic lives in attention_impl.h (once per ISA).
//
// Legend: B batch, H heads, T sequence, D head size, TL tile (64).
//
// Determinism: every task writes a disjoint set of output rows and computes
// them in an order fixed by the shapes alone, so the thread count (and which
// thread ran what) never changes a bit of the result. Backward therefore has
// two schedules, chosen by shape: with many heads, one task per (b, h) walks
// the key tiles and accumulates dQ in place; with few, key-tile tasks (dK,
// dV) and query-tile tasks (dQ) run side by side so every core has work at
// batch 1, at the price of computing the scores twice -- accumulating dQ
// across key-tile tasks would need atomics (order-dependent sums) or
// O(T x D) partials per task.
#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstring>
#include <string>
#include <vector>

#include "../core/doc_mask.h"
#include "../core/error.h"
#include "../core/memory.h"
#include "../core/threadpool.h"
#include "attention.h"
#include "attention_impl.h"

namespace gpt {
namespace cpu {

namespace {

std::atomic<size_t> g_ws_now{0};
std::atomic<size_t> g_ws_peak{0};

// Scratch for one call, counted in the high-water mark while it lives.
class Workspace {
 public:
  Workspace(size_t floats, const char* what) : buf_(floats, what), bytes_(buf_.bytes()) {
    // Zeroed so the padded rows the kernels compute and throw away never
    // start from NaNs or denormals.
    std::memset(buf_.data(), 0, bytes_);
    size_t now = g_ws_now.fetch_add(bytes_) + bytes_;
    size_t peak = g_ws_peak.load();
    while (now > peak && !g_ws_peak.compare_exchange_weak(peak, now)) {
    }
  }
  ~Workspace() { g_ws_now.fetch_sub(bytes_); }
  Workspace(const Workspace&) = delete;
  Workspace& operator=(const Workspace&) = delete;
  float* data() { return buf_.data(); }

 private:
  HostBuffer<float> buf_;
  size_t bytes_;
};

void check_view(const char* name, const AttnTensor& t) {
  GPT_CHECK_ARG(!t.is_bf16(), std::string("attention: ") + name + " is a bf16 view; the cpu backend takes fp32 only");
  GPT_CHECK_ARG(t.ptr != nullptr, std::string("attention: ") + name + " is null");
  GPT_CHECK_ARG(t.sb >= 0 && t.sh >= 0 && t.st >= 0, std::string("attention: ") + name + " has a negative stride");
}

AttnArgs make_args(const AttnShape& s) {
  GPT_CHECK_ARG(s.batch >= 1, "Expected a positive integer for batch but received " + std::to_string(s.batch));
  GPT_CHECK_ARG(s.heads >= 1, "Expected a positive integer for heads but received " + std::to_string(s.heads));
  GPT_CHECK_ARG(s.seq >= 1, "Expected a positive integer for seq but received " + std::to_string(s.seq));
  GPT_CHECK_ARG(s.head_dim >= 1 && s.head_dim <= kAttnMaxHeadDim,
                "Expected an integer between 1 and " + std::to_string(kAttnMaxHeadDim) +
                    " for headDim but received " + std::to_string(s.head_dim));
  GPT_CHECK_ARG(s.pattern == AttnPattern::Dense || s.pattern == AttnPattern::Banded,
                "Expected \"dense\" or \"banded\" for pattern");
  if (s.pattern == AttnPattern::Banded)
    GPT_CHECK_ARG(s.window >= 1, "Expected a positive integer for window but received " + std::to_string(s.window));
  GPT_CHECK_ARG(std::isfinite(s.scale), "Expected a finite number for scale");
  AttnArgs a;
  a.B = s.batch;
  a.H = s.heads;
  a.T = s.seq;
  a.D = s.head_dim;
  a.w = s.pattern == AttnPattern::Banded ? std::min(s.window, s.seq) : s.seq;
  a.n_tiles = (s.seq + kAttnTile - 1) / kAttnTile;
  a.scale = s.scale;
  if (s.doc_start) {
    check_doc_starts(s.doc_start, s.batch, s.seq);
    a.doc = s.doc_start;
  }
  return a;
}

// Backward runs one task per (b, h) from this many heads up: enough tasks to
// keep a small machine's cores evenly busy (12 heads on 2 cores: 6 each).
constexpr int64_t kWholeHeadTasks = 8;

size_t per_thread_floats(int D) { return (attn_scratch_floats(D) + 15) / 16 * 16; }

}  // namespace

void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v) {
  AttnArgs a = make_args(s);
  check_view("out", out);
  check_view("q", q);
  check_view("k", k);
  check_view("v", v);
  GPT_CHECK_ARG(lse != nullptr, "attention: lse is null");
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.lse = lse;

  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.size();
  const size_t per = per_thread_floats(a.D);
  Workspace ws(per * threads, "the attention scratch");
  const int64_t bh = static_cast<int64_t>(a.B) * a.H;
  // Longest tasks first (dense: the last query tiles see the most keys), so
  // the pool's dynamic hand-out ends with short tasks and both cores finish
  // together.
  pool.parallel_for(bh * a.n_tiles, [&](int64_t t, int thread) {
    GPT_CHECK_ARG(thread < threads, "attention: the thread pool was resized during a call");
    const int qt = a.n_tiles - 1 - static_cast<int>(t / bh);
    const int64_t r = t % bh;
    float* scratch = ws.data() + per * thread;
    GPT_CPU_DISPATCH(attn_forward_task, a, static_cast<int>(r / a.H), static_cast<int>(r % a.H), qt, scratch);
  });
}

void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q, AttnTensor k,
                        AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout) {
  AttnArgs a = make_args(s);
  check_view("dq", dq);
  check_view("dk", dk);
  check_view("dv", dv);
  check_view("q", q);
  check_view("k", k);
  check_view("v", v);
  check_view("out", out);
  check_view("dout", dout);
  GPT_CHECK_ARG(lse != nullptr, "attention: lse is null");
  a.q = q;
  a.k = k;
  a.v = v;
  a.out = out;
  a.dout = dout;
  a.dq = dq;
  a.dk = dk;
  a.dv = dv;
  a.lse = const_cast<float*>(lse);  // read-only in backward

  ThreadPool& pool = ThreadPool::global();
  const int threads = pool.size();
  const size_t per = per_thread_floats(a.D);
  const int64_t bh = static_cast<int64_t>(a.B) * a.H;
  const size_t n_delta = static_cast<size_t>(bh) * a.T;
  Workspace ws(per * threads + (n_delta + 15) / 16 * 16, "the attention scratch");
  float* delta = ws.data() + per * threads;
  a.delta = delta;

  // delta = rowsum(dO * O), one (b, h, tile) per task, summed in d order.
  pool.parallel_for(bh * a.n_tiles, [&](int64_t t, int) {
    const int64_t r = t / a.n_tiles;
    const int b = static_cast<int>(r / a.H), h = static_cast<int>(r % a.H);
    const int i0 = static_cast<int>(t % a.n_tiles) * kAttnTile, i1 = std::min(a.T, i0 + kAttnTile);
    const float* ob = out.ptr + b * out.sb + h * out.sh;
    const float* db = dout.ptr + b * dout.sb + h * dout.sh;
    for (int i = i0; i < i1; ++i) {
      const float* o = ob + i * out.st;
      const float* g = db + i * dout.st;
      double acc = 0;
      for (int d = 0; d < a.D; ++d) acc += static_cast<double>(o[d]) * g[d];
      delta[r * a.T + i] = static_cast<float>(acc);
    }
  });

  // Many heads and D a whole number of vectors: one task per (b, h) that
  // accumulates dQ in place while it walks the key tiles (5 tile products
  // per pair). The rule depends on the shape and the path only, never on the
  // pool size, so the bits do not either.
  if (bh >= kWholeHeadTasks && a.D % GPT_CPU_DISPATCH(attn_lanes) == 0) {
    pool.parallel_for(bh, [&](int64_t t, int thread) {
      GPT_CHECK_ARG(thread < threads, "attention: the thread pool was resized during a call");
      GPT_CPU_DISPATCH(attn_backward_bh_task, a, static_cast<int>(t / a.H), static_cast<int>(t % a.H),
                       ws.data() + per * thread);
    });
    return;
  }

  // Otherwise one job for both halves: key-tile tasks (dK, dV: four tile
  // products per query tile they meet) and query-tile tasks (dQ: three per
  // key tile), most expensive first.
  struct Task {
    int64_t cost;
    int kind;  // 0 = key tile, 1 = query tile
    int tile;
  };
  std::vector<Task> kinds;
  kinds.reserve(2 * a.n_tiles);
  for (int t = 0; t < a.n_tiles; ++t) {
    int lo, hi;
    attn_query_tiles(a, t, &lo, &hi);
    kinds.push_back({4 * int64_t(hi - lo + 1), 0, t});
    attn_key_tiles(a, t, &lo, &hi);
    kinds.push_back({3 * int64_t(hi - lo + 1), 1, t});
  }
  std::stable_sort(kinds.begin(), kinds.end(), [](const Task& x, const Task& y) { return x.cost > y.cost; });
  pool.parallel_for(bh * static_cast<int64_t>(kinds.size()), [&](int64_t t, int thread) {
    GPT_CHECK_ARG(thread < threads, "attention: the thread pool was resized during a call");
    const Task& task = kinds[t / bh];
    const int64_t r = t % bh;
    const int b = static_cast<int>(r / a.H), h = static_cast<int>(r % a.H);
    float* scratch = ws.data() + per * thread;
    if (task.kind == 0)
      GPT_CPU_DISPATCH(attn_backward_kv_task, a, b, h, task.tile, scratch);
    else
      GPT_CPU_DISPATCH(attn_backward_q_task, a, b, h, task.tile, scratch);
  });
}

size_t attention_workspace_high_water() { return g_ws_peak.load(); }

void attention_workspace_reset() { g_ws_peak.store(g_ws_now.load()); }

}  // namespace cpu
}  // namespace gpt
