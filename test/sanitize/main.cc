// Native cases under ASan/UBSan/LSan (see CMakeLists.txt): attention, GEMM,
// the model's training step, tensor copies in and out, bad input, KV-cache
// decoding (prefill + steps against the full forward, banded ring buffers
// wrapping, abort, misuse), and 100 create/destroy cycles of a model (with a
// decode session) with a check that the heap does not grow.
// Exits non-zero on the first mismatch; the sanitizers halt on any error.
#include <malloc.h>

#include <cmath>
#include <cstring>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <string>
#include <vector>

#include "../../native/core/backend.h"
#include "../../native/core/decode.h"
#include "../../native/core/error.h"
#include "../../native/core/isa.h"
#include "../../native/core/model.h"
#include "../../native/core/threadpool.h"
#include "../../native/cpu/attention.h"
#include "../../native/cpu/gemm.h"

using namespace gpt;

static int g_failures = 0;
#define EXPECT(cond, ...)                          \
  do {                                             \
    if (!(cond)) {                                 \
      std::fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
      std::fprintf(stderr, __VA_ARGS__);           \
      std::fprintf(stderr, "\n");                  \
      ++g_failures;                                \
    }                                              \
  } while (0)

static std::mt19937 rng(1234);
static std::vector<float> randn(size_t n, float scale = 1.0f) {
  std::normal_distribution<float> d(0.0f, scale);
  std::vector<float> v(n);
  for (auto& x : v) x = d(rng);
  return v;
}
static double rel_l2(const float* a, const float* b, size_t n) {
  double num = 0, den = 0;
  for (size_t i = 0; i < n; ++i) {
    double d = double(a[i]) - double(b[i]);
    num += d * d;
    den += double(b[i]) * double(b[i]);
  }
  return den == 0 ? std::sqrt(num) : std::sqrt(num / den);
}

static AttnTensor contiguous(float* p, int H, int T, int D) {
  AttnTensor t;
  t.ptr = p;
  t.sb = int64_t(H) * T * D;
  t.sh = int64_t(T) * D;
  t.st = D;
  return t;
}

static void attention_case(int B, int H, int T, int D, AttnPattern pat, int window) {
  size_t n = size_t(B) * H * T * D;
  auto q = randn(n), k = randn(n), v = randn(n), dout = randn(n);
  std::vector<float> o1(n), o2(n), l1(size_t(B) * H * T), l2(size_t(B) * H * T);
  std::vector<float> dq1(n), dk1(n), dv1(n), dq2(n), dk2(n), dv2(n);
  AttnShape s;
  s.batch = B, s.heads = H, s.seq = T, s.head_dim = D, s.pattern = pat, s.window = window;
  s.scale = 1.0f / std::sqrt(float(D));
  auto Q = contiguous(q.data(), H, T, D), K = contiguous(k.data(), H, T, D), V = contiguous(v.data(), H, T, D);
  cpu::attention_forward(s, contiguous(o1.data(), H, T, D), l1.data(), Q, K, V);
  cpu::attention_naive_forward(s, contiguous(o2.data(), H, T, D), l2.data(), Q, K, V);
  auto dO = contiguous(dout.data(), H, T, D);
  cpu::attention_backward(s, contiguous(dq1.data(), H, T, D), contiguous(dk1.data(), H, T, D),
                          contiguous(dv1.data(), H, T, D), Q, K, V, contiguous(o1.data(), H, T, D), l1.data(), dO);
  cpu::attention_naive_backward(s, contiguous(dq2.data(), H, T, D), contiguous(dk2.data(), H, T, D),
                                contiguous(dv2.data(), H, T, D), Q, K, V, contiguous(o2.data(), H, T, D), l2.data(), dO);
  const char* name = pat == AttnPattern::Dense ? "dense" : "banded";
  EXPECT(rel_l2(o1.data(), o2.data(), n) < 1e-4, "attention out %s B%d H%d T%d D%d w%d", name, B, H, T, D, window);
  EXPECT(rel_l2(l1.data(), l2.data(), l1.size()) < 1e-4, "attention lse %s T%d D%d", name, T, D);
  EXPECT(rel_l2(dq1.data(), dq2.data(), n) < 1e-4, "attention dq %s T%d D%d w%d", name, T, D, window);
  EXPECT(rel_l2(dk1.data(), dk2.data(), n) < 1e-4, "attention dk %s T%d D%d w%d", name, T, D, window);
  EXPECT(rel_l2(dv1.data(), dv2.data(), n) < 1e-4, "attention dv %s T%d D%d w%d", name, T, D, window);
}

static void gemm_case(bool ta, bool tb, int M, int N, int K, bool acc, bool bias, Precision p) {
  auto A = randn(size_t(M) * K), Bm = randn(size_t(K) * N), C = randn(size_t(M) * N), b = randn(N);
  std::vector<float> ref(C);
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < N; ++j) {
      double s = acc ? C[size_t(i) * N + j] : 0.0;
      for (int kk = 0; kk < K; ++kk) {
        double a = ta ? A[size_t(kk) * M + i] : A[size_t(i) * K + kk];
        double bb = tb ? Bm[size_t(j) * K + kk] : Bm[size_t(kk) * N + j];
        s += a * bb;
      }
      if (bias) s += b[j];
      ref[size_t(i) * N + j] = float(s);
    }
  cpu::gemm(ta, tb, M, N, K, A.data(), ta ? M : K, Bm.data(), tb ? K : N, C.data(), N, acc, bias ? b.data() : nullptr, p);
  double tol = p == Precision::FP32 ? 1e-5 : 2e-2;
  EXPECT(rel_l2(C.data(), ref.data(), C.size()) < tol, "gemm ta%d tb%d M%d N%d K%d acc%d bias%d p%d", ta, tb, M, N, K, acc,
         bias, int(p));
}

static ModelConfig tiny_config() {
  ModelConfig c;
  c.n_layer = 2, c.n_head = 4, c.n_embd = 32, c.n_positions = 32, c.vocab_size = 97;
  c.patterns = {AttnPattern::Dense, AttnPattern::Banded};
  c.attention_window = 5;
  return c;
}

static void model_case(Precision p) {
  Model m(tiny_config(), make_cpu_backend(), p, 7);
  const int B = 3, T = 17;
  std::vector<int32_t> tok(B * T), tgt(B * T);
  for (int i = 0; i < B * T; ++i) {
    tok[i] = (i * 31 + 5) % 97;
    tgt[i] = (i % 7 == 3) ? -1 : (i * 17 + 2) % 97;
  }
  double l0 = m.forward_backward(tok.data(), tgt.data(), B, T);
  EXPECT(std::isfinite(l0) && std::fabs(l0 - std::log(97.0)) < 0.5, "initial loss %f", l0);
  StepOptions o;
  o.lr = 1e-2f, o.weight_decay = 0.1f, o.grad_clip = 1.0f;
  for (int s = 0; s < 30; ++s) {
    m.forward_backward(tok.data(), tgt.data(), B, T);
    m.step(o);
  }
  double l1 = m.loss(tok.data(), tgt.data(), B, T);
  EXPECT(l1 < l0 - 1.0, "loss did not fall: %f -> %f", l0, l1);
  std::vector<float> logits(size_t(B) * T * 97);
  m.forward(tok.data(), B, T, logits.data());
  for (float x : logits) EXPECT(std::isfinite(x), "non-finite logit");
  // A larger shape regrows the activations.
  std::vector<int32_t> tok2(4 * 32, 1), tgt2(4 * 32, 2);
  m.forward_backward(tok2.data(), tgt2.data(), 4, 32);
  m.zero_grad();
  // Tensor copies round-trip.
  for (size_t i = 0; i < m.tensors().size(); ++i) {
    std::vector<float> a(m.tensors()[i].numel), b(a.size());
    m.read_tensor(Model::Buffer::Params, int(i), a.data());
    m.write_tensor(Model::Buffer::Params, int(i), a.data());
    m.read_tensor(Model::Buffer::Params, int(i), b.data());
    EXPECT(a == b, "tensor %s round trip", m.tensors()[i].name.c_str());
    m.read_tensor(Model::Buffer::ExpAvg, int(i), a.data());
    m.read_tensor(Model::Buffer::Grads, int(i), b.data());
  }
  // Bad input is an error, never a crash.
  std::vector<int32_t> bad(tok);
  bad[5] = 97;
  bool threw = false;
  try {
    m.forward_backward(bad.data(), tgt.data(), B, T);
  } catch (const GptError& e) {
    threw = e.code() == ErrorCode::InvalidArgument;
  }
  EXPECT(threw, "token id 97 (vocab 97) was accepted");
  threw = false;
  try {
    std::vector<int32_t> longtok(1 * 33, 0);
    m.forward(longtok.data(), 1, 33, nullptr);
  } catch (const GptError& e) {
    threw = true;
  }
  EXPECT(threw, "seq 33 > n_positions 32 was accepted");
}

// Chunked prefill: sequence 0 takes a 23-token prompt in chunks of 4 (a
// prefill, then extends; the banded ring of window 5 + 4 - 1 wraps) while
// sequence 1 takes chunks of 3 and 1 beside it, up to its capacity; after
// every chunk the logits follow a full forward over the tokens so far.
static void extend_case(Precision p) {
  auto model = std::make_shared<Model>(tiny_config(), make_cpu_backend(), p, 13);
  const int V = 97;
  const std::vector<int> caps = {23, 7};
  DecodeState st(model, caps, 4);
  std::vector<std::vector<int32_t>> seqs(2);
  std::vector<float> logits(size_t(2) * V);
  const double tol = p == Precision::FP32 ? 1e-4 : 3e-2;
  for (int call = 0; st.position(0) < caps[0]; ++call) {
    std::vector<int> len = {std::min(4, caps[0] - st.position(0)), std::min(call % 2 ? 1 : 3, caps[1] - st.position(1))};
    std::vector<int32_t> tok;
    for (int b = 0; b < 2; ++b)
      for (int i = 0; i < len[b]; ++i) {
        seqs[b].push_back((int(seqs[b].size()) * 11 + b * 5 + 2) % V);
        tok.push_back(seqs[b].back());
      }
    if (call == 0)
      st.prefill(tok.data(), len.data(), logits.data(), nullptr);
    else
      st.extend(tok.data(), len.data(), logits.data(), nullptr);
    for (int b = 0; b < 2; ++b) {
      if (len[b] == 0) continue;
      const int T = int(seqs[b].size());
      EXPECT(st.position(b) == T, "position %d of seq %d after a chunk, want %d", st.position(b), b, T);
      std::vector<float> full(size_t(T) * V);
      model->forward(seqs[b].data(), 1, T, full.data());
      EXPECT(rel_l2(logits.data() + size_t(b) * V, full.data() + size_t(T - 1) * V, V) < tol,
             "extend call %d seq %d len %d p%d", call, b, T, int(p));
    }
  }
  int32_t one = 1;
  std::vector<int> five = {0, 5};
  EXPECT(st.position(1) == 7, "sequence 1 did not reach its capacity");
  bool threw = false;
  try {
    st.extend(&one, five.data(), logits.data(), nullptr);
  } catch (const GptError& e) {
    threw = e.code() == ErrorCode::InvalidArgument;
  }
  EXPECT(threw, "an extend past the capacity was accepted");

  // Chunks of 16 take the CPU's tiled extend kernel: a prefill of 15, then
  // chunks of 16 and 1 to the context; the banded ring of 5 + 16 - 1 = 20
  // wraps inside the tile of keys, and the band starts inside it.
  DecodeState big(model, {32}, 16);
  std::vector<int32_t> all(32);
  for (int i = 0; i < 32; ++i) all[size_t(i)] = (i * 29 + 3) % V;
  for (const auto& [from, n] : std::vector<std::pair<int, int>>{{0, 15}, {15, 16}, {31, 1}}) {
    std::vector<int> l1 = {n};
    if (from == 0)
      big.prefill(all.data(), l1.data(), logits.data(), nullptr);
    else
      big.extend(all.data() + from, l1.data(), logits.data(), nullptr);
    std::vector<float> full(size_t(from + n) * V);
    model->forward(all.data(), 1, from + n, full.data());
    EXPECT(rel_l2(logits.data(), full.data() + size_t(from + n - 1) * V, V) < tol, "tiled extend to %d p%d", from + n,
           int(p));
  }
}

// Prefill prompts of different lengths, then decode each sequence to its
// capacity, one token per step (sequences stop at different steps), and check
// every step's logits against a full forward over the same tokens. With
// window 5 and capacities up to 29 the banded layer's ring buffer wraps.
static void decode_case(Precision p) {
  auto model = std::make_shared<Model>(tiny_config(), make_cpu_backend(), p, 11);
  const int V = 97;
  const std::vector<int> caps = {29, 6, 1, 17};
  const std::vector<int> lens = {3, 6, 1, 9};
  const int B = int(caps.size());
  std::vector<std::vector<int32_t>> seqs(B);
  std::vector<int32_t> prompt;
  for (int b = 0; b < B; ++b)
    for (int i = 0; i < lens[b]; ++i) {
      seqs[b].push_back((b * 13 + i * 7 + 1) % V);
      prompt.push_back(seqs[b].back());
    }
  DecodeState st(model, caps);
  std::vector<float> logits(size_t(B) * V);
  st.prefill(prompt.data(), lens.data(), logits.data(), nullptr);
  auto check = [&](int b, const char* when) {
    const int T = int(seqs[b].size());
    std::vector<float> full(size_t(T) * V);
    model->forward(seqs[b].data(), 1, T, full.data());
    const float* last = full.data() + size_t(T - 1) * V;
    double tol = p == Precision::FP32 ? 1e-4 : 3e-2;
    EXPECT(rel_l2(logits.data() + size_t(b) * V, last, V) < tol, "decode %s seq %d len %d p%d", when, b, T, int(p));
  };
  for (int b = 0; b < B; ++b) check(b, "prefill");
  for (;;) {
    std::vector<int32_t> next(B, 0);
    std::vector<uint8_t> active(B, 0);
    bool any = false;
    for (int b = 0; b < B; ++b)
      if (int(seqs[b].size()) < caps[b]) {
        next[b] = (seqs[b].back() * 31 + 3) % V;
        active[b] = 1;
        any = true;
      }
    if (!any) break;
    st.step(next.data(), active.data(), logits.data(), nullptr);
    for (int b = 0; b < B; ++b)
      if (active[b]) {
        seqs[b].push_back(next[b]);
        check(b, "step");
      }
  }
  for (int b = 0; b < B; ++b) EXPECT(st.position(b) == caps[b], "position %d of seq %d", st.position(b), b);
  EXPECT(st.cache_bytes() > 0, "empty cache");
  // Misuse is an error, never a crash.
  auto throws = [](auto fn, ErrorCode code) {
    try {
      fn();
    } catch (const GptError& e) {
      return e.code() == code;
    }
    return false;
  };
  std::vector<int32_t> one(B, 1);
  std::vector<uint8_t> all(B, 1);
  EXPECT(throws([&] { st.step(one.data(), all.data(), logits.data(), nullptr); }, ErrorCode::InvalidArgument),
         "a step past the capacity was accepted");
  std::vector<int> none(B, 0);
  EXPECT(throws([&] { st.prefill(prompt.data(), none.data(), logits.data(), nullptr); }, ErrorCode::InvalidArgument),
         "a prefill of no rows was accepted");
  // A later prefill restarts the rows it is given (generation past the
  // context rebuilds a sequence this way).
  st.prefill(prompt.data(), lens.data(), logits.data(), nullptr);
  for (int b = 0; b < B; ++b)
    EXPECT(st.position(b) == lens[b], "position %d of seq %d after a second prefill", st.position(b), b);
  EXPECT(throws([&] { DecodeState bad(model, {33}); }, ErrorCode::InvalidArgument), "capacity 33 > n_positions 32 accepted");
  EXPECT(throws([&] { DecodeState bad(model, {}); }, ErrorCode::InvalidArgument), "no sequences accepted");
  {
    DecodeState s2(model, {4});
    int32_t badtok = V;
    int len = 1;
    EXPECT(throws([&] { s2.prefill(&badtok, &len, logits.data(), nullptr); }, ErrorCode::InvalidArgument),
           "token id 97 accepted by prefill");
    DecodeState s3(model, {4});
    int32_t tok = 5;
    EXPECT(throws([&] { s3.step(&tok, all.data(), logits.data(), nullptr); }, ErrorCode::InvalidArgument),
           "a step before prefill was accepted");
    volatile int32_t abort_flag = 1;
    DecodeState s4(model, {4});
    EXPECT(throws([&] { s4.prefill(&tok, &len, logits.data(), &abort_flag); }, ErrorCode::Aborted), "abort ignored");
  }
  // resize: a sequence that keeps its capacity keeps its cache (its next
  // step equals a step of a state that never resized, bitwise); a grown one
  // and a new one are empty until prefilled; shrinking drops sequences.
  {
    DecodeState a(model, {8, 4}), ref(model, {8});
    std::vector<int32_t> pr = {3, 4, 5, 6, 7};
    std::vector<int> la = {3, 2}, lr = {3};
    std::vector<float> la_out(size_t(3) * V), lr_out(static_cast<size_t>(V));
    a.prefill(pr.data(), la.data(), la_out.data(), nullptr);
    ref.prefill(pr.data(), lr.data(), lr_out.data(), nullptr);
    a.resize({8, 6, 5});
    EXPECT(a.batch() == 3 && a.position(0) == 3 && a.position(1) == 0 && a.position(2) == 0, "positions after resize");
    std::vector<int32_t> nx = {9, 9, 9};
    std::vector<uint8_t> first = {1, 0, 0}, second = {0, 1, 0};
    a.step(nx.data(), first.data(), la_out.data(), nullptr);
    ref.step(nx.data(), first.data(), lr_out.data(), nullptr);
    EXPECT(std::memcmp(la_out.data(), lr_out.data(), sizeof(float) * V) == 0, "a kept sequence changed in resize");
    EXPECT(throws([&] { a.step(nx.data(), second.data(), la_out.data(), nullptr); }, ErrorCode::InvalidArgument),
           "an empty sequence stepped after resize");
    std::vector<int> lb = {0, 2, 0};
    a.prefill(pr.data(), lb.data(), la_out.data(), nullptr);
    a.step(nx.data(), second.data(), la_out.data(), nullptr);
    EXPECT(a.position(1) == 3, "position %d after prefill + step of a grown sequence", a.position(1));
    EXPECT(throws([&] { a.resize({}); }, ErrorCode::InvalidArgument), "resize to no sequences accepted");
    EXPECT(throws([&] { a.resize({33}); }, ErrorCode::InvalidArgument), "resize past n_positions accepted");
    a.resize({8});
    EXPECT(a.batch() == 1 && a.position(0) == 4, "shrinking lost sequence 0");
    a.step(nx.data(), first.data(), la_out.data(), nullptr);
    ref.step(nx.data(), first.data(), lr_out.data(), nullptr);
    EXPECT(std::memcmp(la_out.data(), lr_out.data(), sizeof(float) * V) == 0, "a kept sequence changed in a shrink");
  }
  // The model outlives nothing it should not: the state holds it alive.
  std::unique_ptr<DecodeState> held;
  {
    auto m2 = std::make_shared<Model>(tiny_config(), make_cpu_backend(), p, 12);
    held = std::make_unique<DecodeState>(m2, std::vector<int>{8});
  }
  int32_t t0 = 2;
  int l0 = 1;
  held->prefill(&t0, &l0, logits.data(), nullptr);
  uint8_t on = 1;
  held->step(&t0, &on, logits.data(), nullptr);
  for (int v = 0; v < V; ++v) EXPECT(std::isfinite(logits[size_t(v)]), "non-finite decode logit");
}

static size_t heap_in_use() {
  struct mallinfo2 mi = mallinfo2();
  return mi.uordblks + mi.hblkhd;
}

int main() {
  ThreadPool::global().resize(2);
  std::vector<Isa> isas;
  for (Isa i : {Isa::Avx512, Isa::Avx2, Isa::Portable})
    if (isa_supported(i)) isas.push_back(i);
  for (Isa isa : isas) {
    set_isa(isa);
    std::fprintf(stderr, "isa %s: attention, gemm\n", isa_name(isa));
    for (int T : {1, 2, 7, 64, 65, 130})
      for (int D : {16, 64, 80})
        for (int w : {1, 3, 17, 200}) {
          attention_case(1, 2, T, D, AttnPattern::Banded, w);
          if (w == 1) attention_case(2, 1, T, D, AttnPattern::Dense, 0);
        }
    for (bool ta : {false, true})
      for (bool tb : {false, true}) {
        gemm_case(ta, tb, 1, 1, 1, false, false, Precision::FP32);
        gemm_case(ta, tb, 33, 65, 17, true, true, Precision::FP32);
        gemm_case(ta, tb, 130, 70, 200, false, true, Precision::FP32);
        gemm_case(ta, tb, 64, 96, 128, true, false, Precision::BF16);
      }
  }
  set_isa(isas.front());
  std::fprintf(stderr, "model: fp32, bf16\n");
  model_case(Precision::FP32);
  model_case(Precision::BF16);
  std::fprintf(stderr, "decode: fp32, bf16\n");
  decode_case(Precision::FP32);
  decode_case(Precision::BF16);
  std::fprintf(stderr, "decode extend (chunked prefill): fp32, bf16\n");
  extend_case(Precision::FP32);
  extend_case(Precision::BF16);

  std::fprintf(stderr, "model: 100 create/destroy cycles\n");
  size_t before = 0;
  for (int i = 0; i < 100; ++i) {
    {
      auto m = std::make_shared<Model>(tiny_config(), make_cpu_backend(), i % 2 ? Precision::BF16 : Precision::FP32,
                                       uint64_t(i));
      std::vector<int32_t> tok(2 * 8, 3), tgt(2 * 8, 4);
      m->forward_backward(tok.data(), tgt.data(), 2, 8);
      DecodeState st(m, {6, 3});
      std::vector<int32_t> prompt = {1, 2, 3};
      std::vector<int> lens = {2, 1};
      std::vector<float> logits(2 * 97);
      st.prefill(prompt.data(), lens.data(), logits.data(), nullptr);
      std::vector<int32_t> next = {4, 5};
      std::vector<uint8_t> active = {1, 1};
      st.step(next.data(), active.data(), logits.data(), nullptr);
    }
    if (i == 9) before = heap_in_use();
  }
  size_t after = heap_in_use();
  EXPECT(after <= before + (1 << 20), "heap grew over 90 cycles: %zu -> %zu bytes", before, after);

  if (g_failures) {
    std::fprintf(stderr, "%d failure(s)\n", g_failures);
    return 1;
  }
  std::fprintf(stderr, "sanitize_native: all cases passed\n");
  return 0;
}
