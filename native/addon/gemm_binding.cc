// gemm({...}): the CPU GEMM (native/cpu/gemm.h) on Float32Arrays, off the
// event loop. For tests and benchmarks; lib/gemm.ts validates first and
// documents the options. C is written in place.
//
// cudaGemm({...}): the CUDA GEMM (native/cuda/gemm.cuh) on the same options
// plus aType / bType / cType ("fp32" | "bf16": the operand is uploaded as fp32
// and converted on the device, a bf16 C converted back to fp32 for the
// return), aOffset / bOffset / cOffset (elements the operand starts into its
// device buffer, for unaligned operands), gelu (the fused bias + GELU, NN and
// contiguous: c receives pre, `out` (a Float32Array like c) the GELU),
// gemm ("auto": gemm(), cuBLASLt when chosen; "own": the own kernels) and
// scratchBytes (the bf16 workspace for a mixed-type cuBLASLt call). For tests;
// resolves when c (and out) are written, rejects with NO_GPU without a GPU.
#include <algorithm>
#include <climits>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../cpu/gemm.h"
#include "napi_util.h"
#if defined(GPT_HAVE_CUDA) || defined(GPT_CUDA_EMU)
#define GPT_CUDA_GEMM_TEST 1
#include "../cuda/cublaslt.h"
#endif

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

// The options gemm and cudaGemm share: layouts, sizes, leading dimensions
// (checked against the sizes), precision, and the a, b, c (and bias) arrays,
// each long enough for its span; `keep` holds the arrays alive off the event loop.
struct GemmArgs {
  bool ta = false, tb = false;
  int M = 0, N = 0, K = 0, lda = 1, ldb = 1, ldc = 1;
  Precision p = Precision::FP32;
  ArrayView<float> a, b, c;
  const float* bias = nullptr;
  std::vector<Napi::Value> keep;
};

GemmArgs read_gemm_args(const Napi::Object& o) {
  GemmArgs g;
  g.ta = get_bool_or(o, "transA", false);
  g.tb = get_bool_or(o, "transB", false);
  g.M = static_cast<int>(get_int(o, "M", 0, INT_MAX));
  g.N = static_cast<int>(get_int(o, "N", 0, INT_MAX));
  g.K = static_cast<int>(get_int(o, "K", 0, INT_MAX));
  const int a_cols = g.ta ? g.M : g.K, b_cols = g.tb ? g.K : g.N;
  g.lda = has(o, "lda") ? static_cast<int>(get_int(o, "lda", 1, INT_MAX)) : std::max(1, a_cols);
  g.ldb = has(o, "ldb") ? static_cast<int>(get_int(o, "ldb", 1, INT_MAX)) : std::max(1, b_cols);
  g.ldc = has(o, "ldc") ? static_cast<int>(get_int(o, "ldc", 1, INT_MAX)) : std::max(1, g.N);
  if (g.lda < a_cols) throw_invalid("Expected lda >= " + std::to_string(a_cols) + " but received " + std::to_string(g.lda));
  if (g.ldb < b_cols) throw_invalid("Expected ldb >= " + std::to_string(b_cols) + " but received " + std::to_string(g.ldb));
  if (g.ldc < g.N) throw_invalid("Expected ldc >= " + std::to_string(g.N) + " but received " + std::to_string(g.ldc));
  if (has(o, "precision")) {
    std::string s = get_string(o, "precision");
    if (s == "bf16")
      g.p = Precision::BF16;
    else if (s != "fp32")
      throw_invalid("Expected \"fp32\" or \"bf16\" for precision but received \"" + s + "\"");
  }
  g.a = get_f32_min(o, "a", span(g.ta ? g.K : g.M, a_cols, g.lda));
  g.b = get_f32_min(o, "b", span(g.tb ? g.N : g.K, b_cols, g.ldb));
  g.c = get_f32_min(o, "c", span(g.M, g.N, g.ldc));
  g.keep = {o.Get("a"), o.Get("b"), o.Get("c")};
  if (has(o, "bias")) {
    g.bias = get_f32_min(o, "bias", g.N).data;
    g.keep.push_back(o.Get("bias"));
  }
  return g;
}

Napi::Value Gemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object for gemm");
    const GemmArgs g = read_gemm_args(o);
    const bool accumulate = get_bool_or(o, "accumulate", false);
    const float* A = g.a.data;
    const float* B = g.b.data;
    float* C = g.c.data;
    const float* bias = g.bias;
    const bool ta = g.ta, tb = g.tb;
    const int M = g.M, N = g.N, K = g.K, lda = g.lda, ldb = g.ldb, ldc = g.ldc;
    const Precision p = g.p;
    return run_async<int>(
        env,
        [=] {
          cpu::gemm(ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p);
          return 0;
        },
        [](Napi::Env e, int&) -> Napi::Value { return e.Undefined(); }, g.keep);
  });
}

DType get_dtype(const Napi::Object& o, const char* key) {
  if (!has(o, key)) return DType::F32;
  std::string s = get_string(o, key);
  if (s == "bf16") return DType::BF16;
  if (s != "fp32") throw_invalid(std::string("Expected \"fp32\" or \"bf16\" for ") + key + " but received \"" + s + "\"");
  return DType::F32;
}

Napi::Value CudaGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object for cudaGemm");
    const bool gelu = get_bool_or(o, "gelu", false);
    const GemmArgs g = read_gemm_args(o);
    if (gelu && (g.ta || g.tb)) throw_invalid("Expected transA and transB false with gelu (the fused GELU is NN)");
    if (gelu && (g.lda != std::max(1, g.K) || g.ldb != std::max(1, g.N) || g.ldc != std::max(1, g.N)))
      throw_invalid("Expected contiguous operands (no lda, ldb, ldc) with gelu");
    bool own = false;
    if (has(o, "gemm")) {
      std::string s = get_string(o, "gemm");
      if (s == "own")
        own = true;
      else if (s != "auto")
        throw_invalid("Expected \"auto\" or \"own\" for gemm but received \"" + s + "\"");
    }
    const ArrayView<float> a = g.a, b = g.b, c = g.c;
    const float* bias = g.bias;
    std::vector<Napi::Value> keep = g.keep;
    float* out = nullptr;
    if (gelu) {
      out = get_f32_min(o, "out", static_cast<int64_t>(c.length)).data;
      keep.push_back(o.Get("out"));
    }
    const DType a_type = get_dtype(o, "aType"), b_type = get_dtype(o, "bType"), c_type = get_dtype(o, "cType");
    const long long a_off = has(o, "aOffset") ? get_int(o, "aOffset", 0, 64) : 0;
    const long long b_off = has(o, "bOffset") ? get_int(o, "bOffset", 0, 64) : 0;
    const long long c_off = has(o, "cOffset") ? get_int(o, "cOffset", 0, 64) : 0;
    const int64_t scratch = has(o, "scratchBytes") ? get_int(o, "scratchBytes", 0, int64_t(1) << 32) : 0;
#ifdef GPT_CUDA_GEMM_TEST
    cuda::GemmTestCall t;
    t.trans_a = g.ta;
    t.trans_b = g.tb;
    t.accumulate = get_bool_or(o, "accumulate", false);
    t.gelu = gelu;
    t.own = own;
    t.M = g.M;
    t.N = g.N;
    t.K = g.K;
    t.lda = g.lda;
    t.ldb = g.ldb;
    t.ldc = g.ldc;
    t.a_type = a_type;
    t.b_type = b_type;
    t.c_type = c_type;
    t.a_offset = a_off;
    t.b_offset = b_off;
    t.c_offset = c_off;
    t.precision = g.p;
    t.scratch_bytes = static_cast<size_t>(scratch);
    t.a = a.data;
    t.a_len = a.length;
    t.b = b.data;
    t.b_len = b.length;
    t.c = c.data;
    t.c_len = c.length;
    t.out = out;
    t.bias = bias;
    return run_async<int>(
        env,
        [=] {
          cuda::gemm_test_run(t);
          return 0;
        },
        [](Napi::Env e, int&) -> Napi::Value { return e.Undefined(); }, keep);
#else
    (void)a_type, (void)b_type, (void)c_type, (void)a_off, (void)b_off, (void)c_off, (void)scratch, (void)own;
    (void)out, (void)bias, (void)a, (void)b, (void)c, (void)keep;
    Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
    d.Reject(make_error(env, "NO_GPU", "cudaGemm: this build has no CUDA backend").Value());
    return d.Promise();
#endif
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
  exports.Set("cudaGemm", Napi::Function::New(env, CudaGemm));
  exports.Set("colsumAccumulate", Napi::Function::New(env, ColsumAccumulate));
}

}  // namespace addon
}  // namespace gpt
