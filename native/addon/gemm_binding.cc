// gemm({...}): the CPU GEMM (native/cpu/gemm.h) on Float32Arrays, off the
// event loop. For tests and benchmarks; lib/gemm.ts validates first and
// documents the options. C is written in place.
#include <algorithm>
#include <climits>
#include <string>

#include "../core/backend.h"
#include "../cpu/gemm.h"
#include "napi_util.h"

namespace gpt {
namespace addon {
namespace {

// A Float32Array under `key` holding at least `min_len` elements.
ArrayView<float> get_f32_min(const Napi::Object& o, const char* key, int64_t min_len) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_invalid(std::string("Expected a Float32Array for ") + key);
  auto a = v.As<Napi::Float32Array>();
  if (static_cast<int64_t>(a.ElementLength()) < min_len)
    throw_invalid(std::string("Expected a Float32Array of length >= ") + std::to_string(min_len) + " for " + key +
                  " but received length " + std::to_string(a.ElementLength()));
  return {a.Data(), a.ElementLength()};
}

// Elements a row-major rows x cols matrix with leading dimension ld spans.
int64_t span(int64_t rows, int64_t cols, int64_t ld) { return rows == 0 || cols == 0 ? 0 : (rows - 1) * ld + cols; }

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object for gemm");
    const bool ta = get_bool_or(o, "transA", false);
    const bool tb = get_bool_or(o, "transB", false);
    const int M = static_cast<int>(get_int(o, "M", 0, INT_MAX));
    const int N = static_cast<int>(get_int(o, "N", 0, INT_MAX));
    const int K = static_cast<int>(get_int(o, "K", 0, INT_MAX));
    const int a_cols = ta ? M : K, b_cols = tb ? K : N;
    const int lda = has(o, "lda") ? static_cast<int>(get_int(o, "lda", 1, INT_MAX)) : std::max(1, a_cols);
    const int ldb = has(o, "ldb") ? static_cast<int>(get_int(o, "ldb", 1, INT_MAX)) : std::max(1, b_cols);
    const int ldc = has(o, "ldc") ? static_cast<int>(get_int(o, "ldc", 1, INT_MAX)) : std::max(1, N);
    if (lda < a_cols) throw_invalid("Expected lda >= " + std::to_string(a_cols) + " but received " + std::to_string(lda));
    if (ldb < b_cols) throw_invalid("Expected ldb >= " + std::to_string(b_cols) + " but received " + std::to_string(ldb));
    if (ldc < N) throw_invalid("Expected ldc >= " + std::to_string(N) + " but received " + std::to_string(ldc));
    const bool accumulate = get_bool_or(o, "accumulate", false);
    Precision p = Precision::FP32;
    if (has(o, "precision")) {
      std::string s = get_string(o, "precision");
      if (s == "bf16")
        p = Precision::BF16;
      else if (s != "fp32")
        throw_invalid("Expected \"fp32\" or \"bf16\" for precision but received \"" + s + "\"");
    }
    auto a = get_f32_min(o, "a", span(ta ? K : M, a_cols, lda));
    auto b = get_f32_min(o, "b", span(tb ? N : K, b_cols, ldb));
    auto c = get_f32_min(o, "c", span(M, N, ldc));
    std::vector<Napi::Value> keep{o.Get("a"), o.Get("b"), o.Get("c")};
    const float* bias = nullptr;
    if (has(o, "bias")) {
      bias = get_f32_min(o, "bias", N).data;
      keep.push_back(o.Get("bias"));
    }
    const float* A = a.data;
    const float* B = b.data;
    float* C = c.data;
    return run_async<int>(
        env,
        [=] {
          cpu::gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p);
          return 0;
        },
        [](Napi::Env e, int&) -> Napi::Value { return e.Undefined(); }, keep);
  });
}

// colsumAccumulate({ out, x, M, N }): out[N] += column sums of x[M, N] (the
// bias gradient), synchronously. For tests.
Napi::Value ColsumAccumulate(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object for colsumAccumulate");
    const int M = static_cast<int>(get_int(o, "M", 0, INT_MAX));
    const int N = static_cast<int>(get_int(o, "N", 0, INT_MAX));
    auto x = get_f32(o, "x", static_cast<size_t>(M) * static_cast<size_t>(N));
    auto out = get_f32(o, "out", static_cast<size_t>(N));
    cpu::colsum_accumulate(out.data, x.data, M, N);
    return env.Undefined();
  });
}

}  // namespace

void add_gemm_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("gemm", Napi::Function::New(env, Gemm));
  exports.Set("colsumAccumulate", Napi::Function::New(env, ColsumAccumulate));
}

}  // namespace addon
}  // namespace gpt
