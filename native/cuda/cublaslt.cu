// cuBLASLt for the GEMMs (cublaslt.h): the loader, the per-shape plan cache,
// the row-major to column-major mapping and the self-check.
//
// The mapping. Our matrices are row-major; cuBLASLt's are column-major. A
// row-major [R, C] matrix with leading dimension ld is, read column-major, the
// [C, R] matrix (its transpose) with the same ld. So C = op(A) @ op(B)
// (row-major, C [M, N]) is computed as the column-major C^T = op(B)^T op(A)^T:
//   cuBLASLt's D and C: our C, rows N, cols M, ld ldc;
//   its A (m = N, k = K): our B. B [K, N] reads as B^T [N, K]: no transpose.
//     With trans_b, B is stored [N, K] and reads as [K, N]: transpose.
//   its B (k = K, n = M): our A. A [M, K] reads as A^T [K, M]: no transpose.
//     With trans_a, A is stored [K, M] and reads as [M, K]: transpose.
//   bias[N]: one value per row of its D, which is CUBLASLT_EPILOGUE_BIAS.
//
// Types. fp32 operands: every matrix CUDA_R_32F, compute CUBLAS_COMPUTE_32F
// (FP32) or CUBLAS_COMPUTE_32F_FAST_16BF (BF16: the inputs rounded to bf16).
// bf16 operands (BF16 only): A and B CUDA_R_16BF, C and D CUDA_R_32F or
// CUDA_R_16BF, compute CUBLAS_COMPUTE_32F, scale CUDA_R_32F (combinations
// cublasLtMatmul documents); the bias stays fp32, said by
// CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE = CUDA_R_32F (its default is D's type).
// A call mixing fp32 and bf16 operands first converts the fp32 one into the
// caller's bf16 workspace (cuda::convert, round to nearest even, on the same
// stream: the bf16 copy the BF16 kernels would read), then runs bf16. Only
// what the own GEMM runs too (gemm_own_supports) goes to cuBLASLt.
#include <cuda_runtime.h>
#include <dlfcn.h>
#include <stdint.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <mutex>
#include <string>
#include <tuple>
#include <vector>

#include "../core/error.h"
#include "check.cuh"
#include "cublaslt.h"
#include "gemm.cuh"
#include "ops.cuh"

namespace gpt {
namespace cuda {
namespace {

// ---- cuBLASLt's API, the parts used (NVIDIA's cublasLt.h / cublas_api.h / library_types.h)
typedef int LtStatus;  // cublasStatus_t
constexpr LtStatus kLtSuccess = 0;
typedef struct LtContext* LtHandle;            // cublasLtHandle_t
typedef struct LtMatmulDescOpaque* LtDesc;     // cublasLtMatmulDesc_t
typedef struct LtLayoutOpaque* LtLayout;       // cublasLtMatrixLayout_t
typedef struct LtPreferenceOpaque* LtPref;     // cublasLtMatmulPreference_t
struct LtAlgo {                                 // cublasLtMatmulAlgo_t
  uint64_t data[8];
};
struct LtHeuristicResult {  // cublasLtMatmulHeuristicResult_t
  LtAlgo algo;
  size_t workspaceSize;
  LtStatus state;
  float wavesCount;
  int reserved[4];
};
constexpr int kCudaR32F = 0;                // cudaDataType_t CUDA_R_32F
constexpr int kCudaR16BF = 14;              //   CUDA_R_16BF
constexpr int kComputeF32 = 68;             // cublasComputeType_t CUBLAS_COMPUTE_32F
constexpr int kComputeF32Fast16BF = 75;     // CUBLAS_COMPUTE_32F_FAST_16BF
constexpr int kOpN = 0, kOpT = 1;           // cublasOperation_t
constexpr int kDescTransA = 3;              // cublasLtMatmulDescAttributes_t: int32_t
constexpr int kDescTransB = 4;              //   int32_t
constexpr int kDescEpilogue = 7;            //   uint32_t
constexpr int kDescBiasPointer = 8;         //   const void*
constexpr int kDescBiasDataType = 26;       //   int32_t (cudaDataType_t)
constexpr uint32_t kEpilogueDefault = 1;    // cublasLtEpilogue_t
constexpr uint32_t kEpilogueBias = 4;
constexpr int kPrefMaxWorkspaceBytes = 1;   // cublasLtMatmulPreferenceAttributes_t: uint64_t
constexpr int kPrefMinAlignA = 5, kPrefMinAlignB = 6, kPrefMinAlignC = 7, kPrefMinAlignD = 8;  // uint32_t

struct LtApi {
  LtStatus (*Create)(LtHandle*);
  size_t (*GetVersion)();
  LtStatus (*MatmulDescCreate)(LtDesc*, int compute_type, int scale_type);
  LtStatus (*MatmulDescDestroy)(LtDesc);
  LtStatus (*MatmulDescSetAttribute)(LtDesc, int attr, const void* buf, size_t bytes);
  LtStatus (*MatrixLayoutCreate)(LtLayout*, int type, uint64_t rows, uint64_t cols, int64_t ld);
  LtStatus (*MatrixLayoutDestroy)(LtLayout);
  LtStatus (*MatmulPreferenceCreate)(LtPref*);
  LtStatus (*MatmulPreferenceDestroy)(LtPref);
  LtStatus (*MatmulPreferenceSetAttribute)(LtPref, int attr, const void* buf, size_t bytes);
  LtStatus (*MatmulAlgoGetHeuristic)(LtHandle, LtDesc, LtLayout a, LtLayout b, LtLayout c, LtLayout d, LtPref,
                                     int requested, LtHeuristicResult* results, int* returned);
  LtStatus (*Matmul)(LtHandle, LtDesc, const void* alpha, const void* A, LtLayout, const void* B, LtLayout,
                     const void* beta, const void* C, LtLayout, void* D, LtLayout, const LtAlgo* algo,
                     void* workspace, size_t workspace_bytes, cudaStream_t stream);
  const char* (*GetStatusName)(LtStatus);  // optional
};

std::string status_text(const LtApi& api, LtStatus s) {
  const char* n = api.GetStatusName ? api.GetStatusName(s) : nullptr;
  return std::string(n ? n : "cuBLAS status") + " (" + std::to_string(s) + ")";
}

// A plan: descriptors and the heuristic's algorithm for one call shape.
// bf16: Precision::BF16; ab16: A and B are bf16 in memory; c16: C is.
struct PlanKey {
  bool ta, tb, bias, bf16, ab16, c16;
  int M, N, K;
  long long lda, ldb, ldc;
  unsigned align_a, align_b, align_c, align_bias;
  bool operator<(const PlanKey& o) const {
    return std::tie(ta, tb, bias, bf16, ab16, c16, M, N, K, lda, ldb, ldc, align_a, align_b, align_c, align_bias) <
           std::tie(o.ta, o.tb, o.bias, o.bf16, o.ab16, o.c16, o.M, o.N, o.K, o.lda, o.ldb, o.ldc, o.align_a,
                    o.align_b, o.align_c, o.align_bias);
  }
};
struct Plan {
  bool usable = false;  // false: no algorithm for this shape, the own GEMM runs it
  LtDesc desc = nullptr;
  LtLayout a = nullptr, b = nullptr, c = nullptr;
  LtAlgo algo{};
};
constexpr size_t kMaxPlans = 512;  // the model has a handful of shapes; tests and benchmarks more

struct State {
  std::once_flag once;
  GemmChoice choice;
  std::string demand_error;  // $GPT_ENGINE_GEMM=cublaslt (or a bad value) and cuBLASLt unusable
  LtApi api{};
  LtHandle handle = nullptr;
  int device = -1;
  void* workspace = nullptr;
  size_t workspace_bytes = 0;
  // The workspace is shared by every stream: a GEMM on another stream than
  // the previous one waits for it (ws_event). The legacy default stream is
  // recorded only when another stream takes over (it is never destroyed);
  // every other stream (the backend's own, a probe's) is recorded after each
  // GEMM, since it may be destroyed before the next one: an event record per
  // GEMM, a few microseconds of host time.
  cudaEvent_t ws_event = nullptr;
  cudaStream_t ws_last = nullptr;
  bool ws_used = false;
  std::mutex mu;  // guards plans and every use of the handle
  std::map<PlanKey, Plan> plans;
};

State& state() {
  static State* s = new State();  // never destroyed: GEMMs may run until the process ends
  return *s;
}

// Largest power of two dividing the address, at most 256 (cuBLASLt's default
// minimum alignment; telling it the real one keeps algorithms that need more off).
unsigned alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  unsigned a = 256;
  while (a > 2 && (v % a) != 0) a /= 2;
  return a;
}

template <typename F>
void sym(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out && missing->empty()) *missing = name;
}

// Opens the library; fills api, path, version. Returns the reason on failure.
std::string load_library(State& st) {
  std::vector<std::string> names;
  const char* env = std::getenv("GPT_ENGINE_CUBLASLT");
  if (env && *env) {
    names.push_back(env);
  } else {
#ifdef GPT_CUDA_EMU
    // The emulator's stand-in, built next to the addon (tools/cuda-emu/cublaslt/);
    // a real libcublasLt would take the emulator's host pointers for device memory.
    Dl_info info{};
    if (dladdr(reinterpret_cast<void*>(&load_library), &info) && info.dli_fname) {
      std::string dir = info.dli_fname;
      size_t slash = dir.rfind('/');
      dir = slash == std::string::npos ? "." : dir.substr(0, slash);
      names.push_back(dir + "/gpt_emu_cublaslt.so");
    }
#else
    names.push_back("libcublasLt.so.13");
    names.push_back("libcublasLt.so.12");
#endif
  }
  void* h = nullptr;
  std::string tried;
  for (const std::string& n : names) {
    h = dlopen(n.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (h) {
      st.choice.path = n;
      break;
    }
    const char* e = dlerror();
    tried += (tried.empty() ? "" : "; ") + n + ": " + (e ? e : "not found");
  }
  if (!h) return "no cuBLASLt (" + tried + ")";
  std::string missing;
  LtApi a{};
  sym(h, "cublasLtCreate", &a.Create, &missing);
  sym(h, "cublasLtGetVersion", &a.GetVersion, &missing);
  sym(h, "cublasLtMatmulDescCreate", &a.MatmulDescCreate, &missing);
  sym(h, "cublasLtMatmulDescDestroy", &a.MatmulDescDestroy, &missing);
  sym(h, "cublasLtMatmulDescSetAttribute", &a.MatmulDescSetAttribute, &missing);
  sym(h, "cublasLtMatrixLayoutCreate", &a.MatrixLayoutCreate, &missing);
  sym(h, "cublasLtMatrixLayoutDestroy", &a.MatrixLayoutDestroy, &missing);
  sym(h, "cublasLtMatmulPreferenceCreate", &a.MatmulPreferenceCreate, &missing);
  sym(h, "cublasLtMatmulPreferenceDestroy", &a.MatmulPreferenceDestroy, &missing);
  sym(h, "cublasLtMatmulPreferenceSetAttribute", &a.MatmulPreferenceSetAttribute, &missing);
  sym(h, "cublasLtMatmulAlgoGetHeuristic", &a.MatmulAlgoGetHeuristic, &missing);
  sym(h, "cublasLtMatmul", &a.Matmul, &missing);
  if (!missing.empty()) return st.choice.path + " lacks " + missing + ": not a usable cuBLASLt";
  a.GetStatusName = reinterpret_cast<const char* (*)(LtStatus)>(dlsym(h, "cublasLtGetStatusName"));
  st.api = a;
  st.choice.version = static_cast<long>(a.GetVersion());
  return "";
}

std::string version_string(long v) {
  // CUBLAS_VERSION: major * 10000 + minor * 100 + patch.
  return std::to_string(v / 10000) + "." + std::to_string(v / 100 % 100) + "." + std::to_string(v % 100);
}

void destroy_plan(State& st, Plan& p) {
  if (p.desc) st.api.MatmulDescDestroy(p.desc);
  if (p.a) st.api.MatrixLayoutDestroy(p.a);
  if (p.b) st.api.MatrixLayoutDestroy(p.b);
  if (p.c) st.api.MatrixLayoutDestroy(p.c);
  p = Plan{};
}

// Builds the plan of one shape. A failed cuBLASLt call is an error (thrown as
// a string for the caller to word); no algorithm is an unusable plan.
Plan make_plan(State& st, const PlanKey& k) {
  const LtApi& api = st.api;
  Plan p;
  auto check = [&](LtStatus s, const char* what) {
    if (s != kLtSuccess) {
      destroy_plan(st, p);
      throw std::string(what) + " failed: " + status_text(api, s);
    }
  };
  // bf16 operands compute in fp32 as they are; fp32 ones under BF16 round to bf16.
  check(api.MatmulDescCreate(&p.desc, k.bf16 && !k.ab16 ? kComputeF32Fast16BF : kComputeF32, kCudaR32F),
        "cublasLtMatmulDescCreate");
  const int32_t opa = k.tb ? kOpT : kOpN, opb = k.ta ? kOpT : kOpN;
  check(api.MatmulDescSetAttribute(p.desc, kDescTransA, &opa, sizeof(opa)), "cublasLtMatmulDescSetAttribute(TRANSA)");
  check(api.MatmulDescSetAttribute(p.desc, kDescTransB, &opb, sizeof(opb)), "cublasLtMatmulDescSetAttribute(TRANSB)");
  const uint32_t epi = k.bias ? kEpilogueBias : kEpilogueDefault;
  check(api.MatmulDescSetAttribute(p.desc, kDescEpilogue, &epi, sizeof(epi)), "cublasLtMatmulDescSetAttribute(EPILOGUE)");
  if (k.bias) {
    // The heuristic reads the bias pointer's alignment from its value: give it
    // one as aligned as the real bias (set to the real one at each call).
    const void* bias_hint = reinterpret_cast<const void*>(static_cast<uintptr_t>(k.align_bias));
    check(api.MatmulDescSetAttribute(p.desc, kDescBiasPointer, &bias_hint, sizeof(bias_hint)),
          "cublasLtMatmulDescSetAttribute(BIAS_POINTER)");
    if (k.c16) {
      // Our bias is fp32 whatever D is. A library that refuses that (the
      // attribute, or then every algorithm) leaves these shapes to the own
      // kernels rather than failing cuBLASLt as a whole.
      const int32_t bias_type = kCudaR32F;
      if (api.MatmulDescSetAttribute(p.desc, kDescBiasDataType, &bias_type, sizeof(bias_type)) != kLtSuccess) {
        destroy_plan(st, p);
        return p;
      }
    }
  }
  const int tab = k.ab16 ? kCudaR16BF : kCudaR32F, tc = k.c16 ? kCudaR16BF : kCudaR32F;
  // Its A = our B, its B = our A, its C/D = our C (see the top of this file).
  check(k.tb ? api.MatrixLayoutCreate(&p.a, tab, k.K, k.N, k.ldb) : api.MatrixLayoutCreate(&p.a, tab, k.N, k.K, k.ldb),
        "cublasLtMatrixLayoutCreate(A)");
  check(k.ta ? api.MatrixLayoutCreate(&p.b, tab, k.M, k.K, k.lda) : api.MatrixLayoutCreate(&p.b, tab, k.K, k.M, k.lda),
        "cublasLtMatrixLayoutCreate(B)");
  check(api.MatrixLayoutCreate(&p.c, tc, k.N, k.M, k.ldc), "cublasLtMatrixLayoutCreate(C)");
  LtPref pref = nullptr;
  check(api.MatmulPreferenceCreate(&pref), "cublasLtMatmulPreferenceCreate");
  const uint64_t ws = st.workspace_bytes;
  const uint32_t al_a = k.align_b, al_b = k.align_a, al_c = k.align_c;  // its A is our B
  LtStatus s = api.MatmulPreferenceSetAttribute(pref, kPrefMaxWorkspaceBytes, &ws, sizeof(ws));
  if (s == kLtSuccess) s = api.MatmulPreferenceSetAttribute(pref, kPrefMinAlignA, &al_a, sizeof(al_a));
  if (s == kLtSuccess) s = api.MatmulPreferenceSetAttribute(pref, kPrefMinAlignB, &al_b, sizeof(al_b));
  if (s == kLtSuccess) s = api.MatmulPreferenceSetAttribute(pref, kPrefMinAlignC, &al_c, sizeof(al_c));
  if (s == kLtSuccess) s = api.MatmulPreferenceSetAttribute(pref, kPrefMinAlignD, &al_c, sizeof(al_c));
  LtHeuristicResult r{};
  int returned = 0;
  LtStatus hs = s == kLtSuccess
                    ? api.MatmulAlgoGetHeuristic(st.handle, p.desc, p.a, p.b, p.c, p.c, pref, 1, &r, &returned)
                    : s;
  api.MatmulPreferenceDestroy(pref);
  check(s, "cublasLtMatmulPreferenceSetAttribute");
  // NOT_SUPPORTED (15) is "no algorithm": the own GEMM runs this shape; so
  // is any refusal of a bf16 D with the fp32 bias (see above).
  if (hs == 15 || (hs == kLtSuccess && (returned < 1 || r.state != kLtSuccess))) return p;
  if (hs != kLtSuccess && k.c16 && k.bias) return p;
  check(hs, "cublasLtMatmulAlgoGetHeuristic");
  p.algo = r.algo;
  p.usable = true;
  return p;
}

// One GEMM through cuBLASLt with the mapping above; A and B of one type.
// Returns false when no algorithm fits the shape; a failing cuBLASLt call
// throws a string. Caller holds st.mu.
bool run_lt(State& st, bool ta, bool tb, int M, int N, int K, CTensorRef Ar, long long lda, CTensorRef Br,
            long long ldb, TensorRef Cr, long long ldc, bool accumulate, const float* bias, Precision prec,
            cudaStream_t stream) {
  const void* A = Ar.ptr;
  const void* B = Br.ptr;
  void* C = Cr.ptr;
  PlanKey k{ta, tb, bias != nullptr, prec == Precision::BF16, Ar.bf16(), Cr.bf16(), M, N, K, lda, ldb, ldc,
            alignment_of(A), alignment_of(B), alignment_of(C), bias ? alignment_of(bias) : 0u};
  auto it = st.plans.find(k);
  if (it == st.plans.end()) {
    if (st.plans.size() >= kMaxPlans) {
      for (auto& kv : st.plans) destroy_plan(st, kv.second);
      st.plans.clear();
    }
    Plan made;
    try {
      made = make_plan(st, k);
    } catch (...) {
      st.plans.emplace(k, Plan{});  // unusable: the own kernels run this shape from now on
      throw;
    }
    it = st.plans.emplace(k, made).first;
  }
  Plan& p = it->second;
  if (!p.usable) return false;
  if (bias) {
    LtStatus s = st.api.MatmulDescSetAttribute(p.desc, kDescBiasPointer, &bias, sizeof(bias));
    if (s != kLtSuccess) throw "cublasLtMatmulDescSetAttribute(BIAS_POINTER) failed: " + status_text(st.api, s);
  }
  if (st.workspace && st.ws_used && stream != st.ws_last) {
    if (st.ws_last == nullptr && cudaEventRecord(st.ws_event, nullptr) != cudaSuccess)
      throw std::string("cudaEventRecord failed");
    if (cudaStreamWaitEvent(stream, st.ws_event, 0) != cudaSuccess) throw std::string("cudaStreamWaitEvent failed");
  }
  const float alpha = 1.0f, beta = accumulate ? 1.0f : 0.0f;
  LtStatus s = st.api.Matmul(st.handle, p.desc, &alpha, B, p.a, A, p.b, &beta, C, p.c, C, p.c, &p.algo, st.workspace,
                             st.workspace_bytes, stream);
  if (s != kLtSuccess) {
    p.usable = false;  // the own kernels run this shape from now on
    throw "cublasLtMatmul failed: " + status_text(st.api, s);
  }
  if (st.workspace) {
    // The GEMM is queued: from here nothing may fail (the caller would run it
    // again). Without the event, waiting for the stream does the same.
    if (stream != nullptr && cudaEventRecord(st.ws_event, stream) != cudaSuccess) {
      cudaGetLastError();
      cudaStreamSynchronize(stream);
    }
    st.ws_last = stream;
    st.ws_used = true;
  }
  return true;
}

// Elements a row-major rows x cols matrix with leading dimension ld spans.
size_t span_elems(long long rows, long long cols, long long ld) {
  return rows == 0 || cols == 0 ? 0 : static_cast<size_t>((rows - 1) * ld + cols);
}

// gemm.cuh's call through cuBLASLt: what the own GEMM does not run (a type
// combination it lacks, a bf16 C accumulated into) stays with it (false); a
// call mixing fp32 and bf16 operands converts the fp32 one into `convert`
// first (false when that is missing or too small). Caller holds st.mu.
bool lt_call(State& st, bool ta, bool tb, int M, int N, int K, CTensorRef A, long long lda, CTensorRef B,
             long long ldb, TensorRef C, long long ldc, bool accumulate, const float* bias, Precision prec,
             cudaStream_t stream, void* convert_ws, size_t convert_bytes) {
  if (!gemm_own_supports(ta, tb, A.dtype, B.dtype, C.dtype, prec) || (accumulate && C.bf16())) return false;
  if (A.dtype != B.dtype) {
    // The fp32 operand, in bf16, with its own leading dimension.
    const bool conv_a = !A.bf16();
    const size_t n = conv_a ? span_elems(ta ? K : M, ta ? M : K, lda) : span_elems(tb ? N : K, tb ? K : N, ldb);
    if (!convert_ws || convert_bytes < n * 2) return false;
    const TensorRef ws(convert_ws, DType::BF16);
    convert(ws, conv_a ? A : B, static_cast<int64_t>(n), stream);
    if (conv_a)
      A = ws;
    else
      B = ws;
  }
  return run_lt(st, ta, tb, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, prec, stream);
}

// ---- the self-check ---------------------------------------------------------

struct CheckCase {
  const char* name;  // the model's use, for the message
  bool ta, tb;
  int M, N, K;
  int pad;  // added to every leading dimension (the padding holds NaN)
  bool accumulate, bias, gelu;
  // Storage types (bf16 storage: checked at Precision::BF16 only).
  DType a = DType::F32, b = DType::F32, c = DType::F32;
};

constexpr DType F = DType::F32, H = DType::BF16;

// Every layout, epilogue and storage type combination the model uses
// (cuda_backend.cu), on small awkward shapes, contiguous and with padded rows;
// the mixed ones go through the bf16 conversion workspace.
const CheckCase kCases[] = {
    {"NN (matmul forward)", false, false, 37, 29, 19, 0, false, false, false},
    {"NN + bias (matmul forward)", false, false, 37, 29, 19, 0, false, true, false},
    {"NN + bias, padded rows", false, false, 21, 43, 27, 3, false, true, false},
    {"NN + bias + GELU (MLP c_fc)", false, false, 33, 47, 23, 0, false, true, true},
    {"NT (dinp, LM head)", false, true, 29, 23, 41, 0, false, false, false},
    {"NT, padded rows", false, true, 17, 35, 26, 5, false, false, false},
    {"TN accumulate (dW)", true, false, 31, 26, 45, 0, true, false, false},
    {"TN accumulate, padded rows", true, false, 19, 38, 22, 2, true, false, false},
    {"NN accumulate + bias", false, false, 1, 33, 17, 0, true, true, false},
    {"NN (bf16, bf16) -> bf16 + bias (bf16 storage)", false, false, 35, 41, 21, 0, false, true, false, H, H, H},
    {"NN (bf16, bf16) -> bf16, padded rows", false, false, 19, 27, 30, 3, false, false, false, H, H, H},
    {"NN (bf16, bf16) -> fp32 + bias, padded rows", false, false, 23, 37, 25, 1, false, true, false, H, H, F},
    {"NN (fp32, bf16) -> fp32 + bias (converted A)", false, false, 27, 33, 22, 2, false, true, false, F, H, F},
    {"NT (fp32, bf16) -> fp32 (dinp, converted A)", false, true, 29, 23, 41, 3, false, false, false, F, H, F},
    {"NT (bf16, bf16) -> fp32", false, true, 17, 35, 26, 0, false, false, false, H, H, F},
    {"TN (bf16, fp32) -> fp32 accumulate (dW, converted B)", true, false, 31, 26, 45, 2, true, false, false, H, F, F},
    {"TN (fp32, bf16) -> fp32 accumulate (converted A)", true, false, 19, 38, 22, 0, true, false, false, F, H, F},
};

double rel_l2(const std::vector<float>& got, const std::vector<float>& want) {
  double e = 0, n = 0;
  for (size_t i = 0; i < got.size(); ++i) {
    const double d = static_cast<double>(got[i]) - want[i];
    e += d * d;
    n += static_cast<double>(want[i]) * want[i];
  }
  return std::sqrt(e / (n > 0 ? n : 1));
}

// Runs one case at one precision; returns "" or what went wrong. *ran is
// false when cuBLASLt has no algorithm for it (the own kernels run that
// shape anyway, so that is no failure).
std::string check_case(State& st, const CheckCase& c, Precision prec, uint32_t seed, bool* ran_out) {
  const int M = c.M, N = c.N, K = c.K;
  const long long lda = (c.ta ? M : K) + c.pad, ldb = (c.tb ? K : N) + c.pad, ldc = N + c.pad;
  const long long a_rows = c.ta ? K : M, b_rows = c.tb ? N : K;
  const size_t na = a_rows * lda, nb = b_rows * ldb, nc = static_cast<size_t>(M) * ldc;
  const float nan = std::nanf("");
  auto fill = [&](std::vector<float>& v, long long rows, long long cols, long long ld, float scale) {
    v.assign(rows * ld, nan);  // the padding stays NaN: reading it poisons the result
    for (long long r = 0; r < rows; ++r)
      for (long long j = 0; j < cols; ++j) {
        seed = seed * 1664525u + 1013904223u;
        v[r * ld + j] = scale * (static_cast<float>(seed >> 8) / 16777216.0f * 2.0f - 1.0f);
      }
  };
  std::vector<float> ha, hb, hc0, hbias;
  fill(ha, a_rows, c.ta ? M : K, lda, 1.0f);
  fill(hb, b_rows, c.tb ? K : N, ldb, 1.0f / std::sqrt(static_cast<float>(K)));
  fill(hc0, M, N, ldc, c.accumulate ? 1.0f : 0.0f);
  if (!c.accumulate)  // not read: make it NaN, as if the output buffer were fresh
    for (float& x : hc0) x = nan;
  fill(hbias, 1, N, N, 0.5f);
  const char* op = "cuBLASLt self-check";
  std::vector<void*> bufs;
  std::string why;
  try {
    auto alloc = [&](size_t bytes) {
      void* p = nullptr;
      CUDA_CHECK(cudaMalloc(&p, bytes), op);
      bufs.push_back(p);
      return p;
    };
    // host[n] on the device as type t (bf16: converted there).
    auto upload = [&](const std::vector<float>& host, DType t) -> TensorRef {
      float* f = static_cast<float*>(alloc(host.size() * sizeof(float)));
      CUDA_CHECK(cudaMemcpy(f, host.data(), host.size() * sizeof(float), cudaMemcpyHostToDevice), op);
      if (t == DType::F32) return TensorRef(f);
      TensorRef h(alloc(host.size() * 2), DType::BF16);
      convert(h, CTensorRef(f), static_cast<int64_t>(host.size()), 0);
      return h;
    };
    // t[n] back to the host as fp32.
    auto download = [&](std::vector<float>& host, CTensorRef t, size_t n) {
      host.resize(n);
      const void* f = t.ptr;
      if (t.bf16()) {
        float* tmp = static_cast<float*>(alloc(n * sizeof(float)));
        convert(TensorRef(tmp), t, static_cast<int64_t>(n), 0);
        f = tmp;
      }
      CUDA_CHECK(cudaMemcpy(host.data(), f, n * sizeof(float), cudaMemcpyDeviceToHost), op);
    };
    const TensorRef da = upload(ha, c.a), db = upload(hb, c.b);
    const float* dbias = static_cast<const float*>(upload(hbias, DType::F32).ptr);
    const TensorRef c_own = upload(hc0, c.c), c_lt = upload(hc0, c.c);
    const TensorRef g_own = upload(hc0, c.c), g_lt = upload(hc0, c.c);
    // Room to convert the fp32 operand of a mixed case.
    const size_t ws_bytes = 2 * (na > nb ? na : nb);
    void* ws = alloc(ws_bytes);
    const float* bias = c.bias ? dbias : nullptr;
    bool ran;
    if (c.gelu) {
      gemm_bias_gelu_own(M, N, K, da, db, c_own, g_own, bias, prec, 0);
      ran = lt_call(st, false, false, M, N, K, da, K, db, N, c_lt, N, false, bias, prec, 0, ws, ws_bytes);
      if (ran) gelu_forward(g_lt, c_lt, static_cast<int64_t>(M) * N, 0);
    } else {
      gemm_own(c.ta, c.tb, M, N, K, da, lda, db, ldb, c_own, ldc, c.accumulate, bias, prec, 0);
      ran = lt_call(st, c.ta, c.tb, M, N, K, da, lda, db, ldb, c_lt, ldc, c.accumulate, bias, prec, 0, ws, ws_bytes);
    }
    CUDA_CHECK(cudaDeviceSynchronize(), op);
    *ran_out = ran;
    if (ran) {
      std::vector<float> own, lt, gown, glt;
      download(own, c_own, nc);
      download(lt, c_lt, nc);
      if (c.gelu) {
        download(gown, g_own, nc);
        download(glt, g_lt, nc);
      }
      CUDA_CHECK(cudaDeviceSynchronize(), op);
      // Only the M x N values; the padding must be as it was (NaN, or C's own
      // values; a bf16 C's as the own GEMM, which keeps it, left it).
      std::vector<float> vo, vl, go, gl;
      bool padding_kept = true;
      for (int r = 0; r < M; ++r)
        for (long long j = 0; j < ldc; ++j) {
          const size_t i = r * ldc + j;
          if (j < N) {
            vo.push_back(own[i]);
            vl.push_back(lt[i]);
            if (c.gelu) {
              go.push_back(gown[i]);
              gl.push_back(glt[i]);
            }
          } else if (std::memcmp(&lt[i], c.c == DType::F32 ? &hc0[i] : &own[i], sizeof(float)) != 0) {
            padding_kept = false;
          }
        }
      const double limit = prec == Precision::BF16 ? 1e-2 : 1e-5;
      const double e = rel_l2(vl, vo), eg = c.gelu ? rel_l2(gl, go) : 0.0;
      char buf[160];
      if (!padding_kept) {
        why = "it wrote outside the M x N output (into the padding of the rows)";
      } else if (!(e <= limit)) {
        std::snprintf(buf, sizeof buf, "relative error %.3g against the own GEMM (limit %.0e)", e, limit);
        why = buf;
      } else if (!(eg <= limit)) {
        std::snprintf(buf, sizeof buf, "GELU output: relative error %.3g against the own GEMM (limit %.0e)", eg, limit);
        why = buf;
      }
    }
  } catch (const std::string& s) {
    why = s;
  } catch (const std::exception& e) {
    why = e.what();
  }
  for (void* d : bufs) cudaFree(d);
  if (why.empty()) return "";
  char shape[160];
  std::snprintf(shape, sizeof shape, "%s %s, M %d N %d K %d", c.name, prec == Precision::BF16 ? "bf16" : "fp32", M, N,
                K);
  return std::string(shape) + ": " + why;
}

void decide(State& st) {
  GemmChoice& ch = st.choice;
  const char* mode_env = std::getenv("GPT_ENGINE_GEMM");
  const std::string mode = mode_env ? mode_env : "";
  if (mode != "" && mode != "auto" && mode != "own" && mode != "cublaslt") {
    ch.reason = "GPT_ENGINE_GEMM is \"" + mode + "\"; expected \"auto\", \"own\" or \"cublaslt\"";
    ch.label = "own (" + ch.reason + ")";
    st.demand_error = ch.reason;
    return;
  }
  if (mode == "own") {
    ch.reason = "GPT_ENGINE_GEMM=own";
    ch.label = "own (GPT_ENGINE_GEMM=own)";
    return;
  }
  std::string why;
  GpuInfo g = cuda_info();
  if (!g.available) why = "no usable GPU: " + g.reason;
  if (why.empty()) why = load_library(st);
  const std::string lib = ch.path.empty() ? "cuBLASLt" : ch.path;
  if (why.empty() && cudaGetDevice(&st.device) != cudaSuccess) {
    cudaGetLastError();
    why = "cudaGetDevice failed";
  }
  if (why.empty()) {
    LtStatus s = st.api.Create(&st.handle);
    if (s != kLtSuccess) why = lib + ": cublasLtCreate failed: " + status_text(st.api, s);
  }
  if (why.empty()) {
    // NVIDIA's advice: 32 MiB of workspace on Hopper and newer, 4 MiB before.
    st.workspace_bytes = (g.cc_major >= 9 ? 32u : 4u) << 20;
    if (cudaMalloc(&st.workspace, st.workspace_bytes) != cudaSuccess ||
        cudaEventCreateWithFlags(&st.ws_event, cudaEventDisableTiming) != cudaSuccess) {
      cudaGetLastError();
      if (st.workspace) cudaFree(st.workspace);
      st.workspace = nullptr;
      st.workspace_bytes = 0;  // algorithms without workspace only
    }
    std::lock_guard<std::mutex> lock(st.mu);
    uint32_t seed = 12345;
    int ran = 0;
    for (Precision p : {Precision::FP32, Precision::BF16}) {
      for (const CheckCase& c : kCases) {
        if (p != Precision::BF16 && (c.a != DType::F32 || c.b != DType::F32 || c.c != DType::F32)) continue;
        bool r_ran = false;
        std::string r = check_case(st, c, p, seed += 7919, &r_ran);
        if (!r.empty()) {
          why = lib + " failed the self-check: " + r;
          break;
        }
        ran += r_ran ? 1 : 0;
      }
      if (!why.empty()) break;
    }
    if (why.empty() && ran == 0) why = lib + " has no algorithm for any of the self-check's GEMMs";
  }
  if (!why.empty()) {
    ch.cublaslt = false;
    ch.reason = why;
    ch.label = "own (" + why + ")";
    if (mode == "cublaslt") st.demand_error = "GPT_ENGINE_GEMM=cublaslt but cuBLASLt is not usable: " + why;
    // Said once per process when a library was found (or named, or demanded)
    // but is not used; a machine without cuBLASLt or a GPU is not worth a line.
    const char* named = std::getenv("GPT_ENGINE_CUBLASLT");
    if (!ch.path.empty() || mode == "cublaslt" || (named && *named))
      std::fprintf(stderr, "gpt-engine: the GEMMs run on the engine's own kernels, not cuBLASLt: %s\n", why.c_str());
    return;
  }
  ch.cublaslt = true;
  ch.label = "cublaslt " + version_string(ch.version);
#ifdef GPT_CUDA_EMU
  ch.label += " (the emulator's stand-in)";
#endif
}

}  // namespace

GemmChoice gemm_choice() {
  State& st = state();
  std::call_once(st.once, [&] { decide(st); });
  return st.choice;
}

bool cublaslt_gemm(bool trans_a, bool trans_b, int M, int N, int K, CTensorRef A, long long lda, CTensorRef B,
                   long long ldb, TensorRef C, long long ldc, bool accumulate, const float* bias, Precision p,
                   void* stream, void* convert, size_t convert_bytes) {
  State& st = state();
  std::call_once(st.once, [&] { decide(st); });
  if (!st.demand_error.empty()) throw GptError(ErrorCode::InvalidArgument, st.demand_error);
  if (!st.choice.cublaslt || K == 0) return false;
  int dev = -1;
  if (cudaGetDevice(&dev) != cudaSuccess || dev != st.device) {
    cudaGetLastError();
    // cuBLASLt was set up (and checked) on another device: the own GEMM runs here.
    const std::string why = "cuBLASLt was set up on GPU " + std::to_string(st.device) + ", this GEMM runs on GPU " +
                            std::to_string(dev);
    const char* mode = std::getenv("GPT_ENGINE_GEMM");
    if (mode && std::string(mode) == "cublaslt") throw GptError(ErrorCode::Internal, "matmul (cuBLASLt): " + why);
    static std::once_flag said;
    std::call_once(said, [&] {
      std::fprintf(stderr, "gpt-engine: %s; the GEMMs there run on the engine's own kernels\n", why.c_str());
    });
    return false;
  }
  std::lock_guard<std::mutex> lock(st.mu);
  try {
    return lt_call(st, trans_a, trans_b, M, N, K, A, lda, B, ldb, C, ldc, accumulate, bias, p,
                   static_cast<cudaStream_t>(stream), convert, convert_bytes);
  } catch (const std::string& s) {
    // Nothing was queued: the own kernels run this call, and this shape from
    // now on (unless cuBLASLt was demanded), said once per shape.
    char shape[128];
    const std::string types = A.bf16() || B.bf16() || C.bf16() ? std::string(" (A ") + dtype_name(A.dtype) + ", B " +
                                                                      dtype_name(B.dtype) + ", C " +
                                                                      dtype_name(C.dtype) + ")"
                                                                : std::string();
    std::snprintf(shape, sizeof shape, "%s%s %s%s, M %d N %d K %d%s", trans_a ? "T" : "N", trans_b ? "T" : "N",
                  p == Precision::BF16 ? "bf16" : "fp32", types.c_str(), M, N, K, bias ? " + bias" : "");
    const char* mode = std::getenv("GPT_ENGINE_GEMM");
    if (mode && std::string(mode) == "cublaslt")
      throw GptError(ErrorCode::Internal, std::string("matmul (cuBLASLt) ") + shape + ": " + s);
    std::fprintf(stderr, "gpt-engine: cuBLASLt failed on a GEMM (%s): %s; the engine's own kernels run that shape\n",
                 shape, s.c_str());
    return false;
  }
}

}  // namespace cuda
}  // namespace gpt
