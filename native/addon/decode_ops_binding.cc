// decodeOp({device, op, ...}): runs ONE of the Backend's decoding ops
// (core/backend.h "decoding") on host arrays on the 'cpu' or 'cuda' backend
// (upload, run, download) and resolves with the outputs. Used by
// test/native/decode-ops.test.ts (the CPU ops against a float64 reference),
// test/cuda/decode-ops.test.ts and test/ops/decode-op-table.js (CUDA
// against the CPU).
//
// Options (all integers are plain numbers, arrays typed):
//   common       M, H, D; the row records as Int32Arrays [M]: kOffset,
//                vOffset, slots, pos, first (KvRow fields, in elements);
//                cacheType 'fp32' (default) or 'bf16' (Backend::kv_cache_dtype):
//                a bf16 cache is the given cache rounded to nearest even, and
//                comes back widened to fp32
//   kv_store     cache Float32Array (initial contents), k, v [M * ld]
//                (ld, default C = H*D) -> { cache }
//   decode_attention
//                cache, q [M * ldq] (ldq default C), ldo (default C),
//                scale (default 1/sqrt(D)), maxKeys (default: the largest
//                pos - first + 1), repeat (n > 0: also time n runs)
//                -> { out [M, C], gapsUntouched, ms? }: out is
//                NaN-poisoned before the op; gapsUntouched is 1 when the
//                ldo - C floats between rows were left alone
//   embedding_at tokens, positions Int32Array [M], wte [V * C], wpe
//                [NP * C], V, NP, C -> { out [M, C] }
// Sizes, offsets and positions are checked here, before any native memory is
// touched: a bad record is an INVALID_ARGUMENT error, never a crash.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "napi_util.h"
#include "op_util.h"

namespace gpt {
namespace addon {
namespace {

struct DecodeOpArgs : OpInputs {
  DType cache = DType::F32;  // cacheType
};
using DecodeOpResult = OpOutputs;

// The M row records, checked against the cache size and the KvRow contract.
// `store`: kv_store allows pos < 0 (skipped) and forbids two rows on one slot.
std::vector<KvRow> read_rows(const DecodeOpArgs& a, int M, int H, int D, size_t cache_len, bool store,
                             int* max_keys) {
  const IVec& ko = need_i(a, "kOffset", M);
  const IVec& vo = need_i(a, "vOffset", M);
  const IVec& sl = need_i(a, "slots", M);
  const IVec& po = need_i(a, "pos", M);
  const IVec& fi = need_i(a, "first", M);
  std::vector<KvRow> rows(static_cast<size_t>(M));
  std::map<std::pair<int64_t, int64_t>, int> used;  // (k offset, slot) -> row
  *max_keys = 1;
  for (int r = 0; r < M; ++r) {
    KvRow& w = rows[static_cast<size_t>(r)];
    w.k = ko[r];
    w.v = vo[r];
    w.slots = sl[r];
    w.pos = po[r];
    w.first = fi[r];
    const std::string at = " of row " + std::to_string(r);
    if (w.slots < 1) throw_invalid("Expected slots >= 1" + at + " but received " + std::to_string(w.slots));
    const int64_t span = int64_t(H) * w.slots * D;
    for (int64_t off : {w.k, w.v})
      if (off < 0 || off + span > static_cast<int64_t>(cache_len))
        throw_invalid("Expected the cache [H, slots, D] at offset " + std::to_string(off) + at +
                      " to fit in the cache of " + std::to_string(cache_len) + " floats");
    if (store && w.pos < 0) continue;
    if (w.pos < 0 || w.first < 0 || w.first > w.pos || w.pos - w.first >= w.slots)
      throw_invalid("Expected 0 <= first <= pos and pos - first < slots" + at + " but received first " +
                    std::to_string(w.first) + ", pos " + std::to_string(w.pos) + ", slots " + std::to_string(w.slots));
    if (store) {
      auto key = std::make_pair(w.k, int64_t(w.pos % w.slots));
      if (used.count(key)) throw_invalid("Expected no two rows writing one cache slot" + at);
      used[key] = r;
    }
    *max_keys = std::max(*max_keys, w.pos - w.first + 1);
  }
  return rows;
}

DecodeOpResult run_decode_op(const DecodeOpArgs& a) {
  std::lock_guard<std::mutex> lock(op_mutex());
  Backend* be = op_backend(a.device);
  OpBuffers buf(be);
  DecodeOpResult res;
  const std::string& op = a.op;
  if (op == "kv_store" || op == "decode_attention") {
    const int M = static_cast<int>(need_int(a, "M", 1, 1 << 20));
    const int H = static_cast<int>(need_int(a, "H", 1, 4096));
    const int D = static_cast<int>(need_int(a, "D", 1, 4096));
    const int64_t C = int64_t(H) * D;
    const FVec& cache = need_f_any(a, "cache");
    int max_keys = 1;
    std::vector<KvRow> rows = read_rows(a, M, H, D, cache.size(), op == "kv_store", &max_keys);
    // The cache in its type (a bf16 one converted on the backend, so the
    // rounding is the backend's), and back to fp32 for the result.
    float* dcache32 = buf.up(cache, "cache");
    TensorRef dcache(dcache32);
    if (a.cache == DType::BF16) {
      dcache = TensorRef(buf.up(std::vector<uint16_t>(cache.size()), "bf16 cache"), DType::BF16);
      be->convert(dcache, dcache32, static_cast<int64_t>(cache.size()));
    }
    KvRow* drows = buf.up(rows, "rows");
    if (op == "kv_store") {
      const int64_t ld = opt_int(a, "ld", C, int64_t(1) << 30, C);
      const size_t n = static_cast<size_t>((M - 1) * ld + C);
      float* k = buf.up(need_f(a, "k", n), "k");
      float* v = buf.up(need_f(a, "v", n), "v");
      be->kv_store(dcache, drows, M, k, v, ld, H, D);
      if (dcache.bf16()) be->convert(dcache32, dcache, static_cast<int64_t>(cache.size()));
      res.f["cache"] = buf.down(dcache32, cache.size());
    } else {
      const int64_t ldq = opt_int(a, "ldq", C, int64_t(1) << 30, C);
      const int64_t ldo = opt_int(a, "ldo", C, int64_t(1) << 30, C);
      max_keys = static_cast<int>(opt_int(a, "maxKeys", max_keys, 1 << 30, max_keys));
      const float scale = static_cast<float>(a.num.count("scale") ? a.num.at("scale") : 1.0 / std::sqrt(double(D)));
      float* q = buf.up(need_f(a, "q", static_cast<size_t>((M - 1) * ldq + C)), "q");
      const size_t nout = static_cast<size_t>(int64_t(M) * ldo);
      float* out = buf.poisoned(nout, "out");
      be->decode_attention(out, ldo, q, ldq, dcache, drows, M, H, D, scale, max_keys);
      // repeat = n > 0: n more runs between two synchronizations; their mean
      // milliseconds (device time of the op alone) in result.ms.
      const int reps = static_cast<int>(opt_int(a, "repeat", 0, 1 << 20, 0));
      if (reps > 0) {
        be->synchronize();
        const auto t0 = std::chrono::steady_clock::now();
        for (int i = 0; i < reps; ++i) be->decode_attention(out, ldo, q, ldq, dcache, drows, M, H, D, scale, max_keys);
        be->synchronize();
        const auto t1 = std::chrono::steady_clock::now();
        res.num["ms"] = std::chrono::duration<double, std::milli>(t1 - t0).count() / reps;
      }
      FVec full = buf.down(out, nout);
      FVec packed(static_cast<size_t>(M * C));
      bool gaps = true;
      for (int r = 0; r < M; ++r) {
        std::memcpy(packed.data() + r * C, full.data() + r * ldo, sizeof(float) * static_cast<size_t>(C));
        for (int64_t c = C; c < ldo; ++c)
          if (!std::isnan(full[static_cast<size_t>(r * ldo + c)])) gaps = false;
      }
      res.f["out"] = std::move(packed);
      res.num["gapsUntouched"] = gaps ? 1 : 0;
    }
  } else if (op == "embedding_at") {
    const int M = static_cast<int>(need_int(a, "M", 1, 1 << 20));
    const int C = static_cast<int>(need_int(a, "C", 1, 1 << 16));
    const int V = static_cast<int>(need_int(a, "V", 1, 1 << 24));
    const int NP = static_cast<int>(need_int(a, "NP", 1, 1 << 24));
    const IVec& tok = need_i(a, "tokens", M);
    const IVec& pos = need_i(a, "positions", M);
    for (int r = 0; r < M; ++r) {
      if (tok[r] < 0 || tok[r] >= V)
        throw_invalid("Expected tokens in [0, " + std::to_string(V) + ") but received " + std::to_string(tok[r]));
      if (pos[r] < 0 || pos[r] >= NP)
        throw_invalid("Expected positions in [0, " + std::to_string(NP) + ") but received " + std::to_string(pos[r]));
    }
    const float* wte = buf.up(need_f(a, "wte", size_t(V) * C), "wte");
    const float* wpe = buf.up(need_f(a, "wpe", size_t(NP) * C), "wpe");
    int32_t* dtok = buf.up(tok, "tokens");
    int32_t* dpos = buf.up(pos, "positions");
    float* out = buf.poisoned(size_t(M) * C, "out");
    be->embedding_at(out, dtok, dpos, wte, wpe, M, C);
    res.f["out"] = buf.down(out, size_t(M) * C);
  } else {
    throw_invalid("Expected 'kv_store', 'decode_attention' or 'embedding_at' for op but received '" + op + "'");
  }
  be->synchronize();
  return res;
}

Napi::Value DecodeOp(const Napi::CallbackInfo& info) {
  return op_call(info, "decodeOp", [](const Napi::Object& o, DecodeOpArgs& a) {
    a.device = get_string(o, "device");
    a.op = get_string(o, "op");
    if (has(o, "cacheType")) {
      const std::string t = get_string(o, "cacheType");
      if (t != "fp32" && t != "bf16")
        throw_invalid("Expected 'fp32' or 'bf16' for cacheType but received '" + t + "'");
      a.cache = t == "bf16" ? DType::BF16 : DType::F32;
    }
  }, &run_decode_op);
}

}  // namespace

void add_decode_ops_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeOp", Napi::Function::New(env, DecodeOp));
}

}  // namespace addon
}  // namespace gpt
