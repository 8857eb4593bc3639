// A stand-in libcublasLt for the SIMT emulator (docs/dev/CUDA-EMU.md): the
// few cuBLASLt calls the engine makes, computed on the CPU from NVIDIA's
// documented semantics, so the emulated addon exercises its cuBLASLt path
// (native/cuda/cublaslt.cu). Built only with GPT_ENGINE_CUDA_EMU, as
// gpt_emu_cublaslt.so next to the addon. Under the emulator "device" memory is
// host memory, and kernels have finished when their launch returns, so a
// matmul here simply runs at the call.
//
// What it implements (cuBLASLt's column-major contract):
//   D = alpha * op(A) @ op(B) + beta * C (+ bias[i] on row i of D with
//   CUBLASLT_EPILOGUE_BIAS), op(A) m x k, op(B) k x n, C and D m x n; a
//   matrix of layout (rows, cols, ld) holds element (r, c) at r + c * ld.
//   Scale type CUDA_R_32F (alpha and beta host floats), and of the type
//   combinations cublasLtMatmul documents:
//     CUBLAS_COMPUTE_32F, A/B/C/D CUDA_R_32F (inputs as they are);
//     CUBLAS_COMPUTE_32F_FAST_16BF, A/B/C/D CUDA_R_32F (inputs rounded to
//       bf16, to nearest even);
//     CUBLAS_COMPUTE_32F, A/B CUDA_R_16BF, C/D both CUDA_R_16BF or both
//       CUDA_R_32F (a bf16 D is the fp32 result rounded to nearest even).
//   The bias is of D's type unless CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE says
//   CUDA_R_32F or CUDA_R_16BF. C is not read when beta is 0. Anything else is
//   CUBLAS_STATUS_NOT_SUPPORTED, inconsistent sizes
//   CUBLAS_STATUS_INVALID_VALUE, as the library documents.
//
// $GPT_EMU_CUBLASLT_FAULT makes it deliberately wrong, to test that the
// engine's self-check notices: "transpose" (reads TRANSA the wrong way round,
// as a bad mapping would), "bias" (leaves the bias out), "ld" (ignores the
// leading dimensions, as if every matrix were packed), "status"
// (cublasLtMatmul fails with CUBLAS_STATUS_EXECUTION_FAILED), "noalgo" (the
// heuristic finds nothing: CUBLAS_STATUS_NOT_SUPPORTED), "late-status"
// (cublasLtMatmul fails only when m * n * k exceeds 100,000, above every
// shape of the engine's self-check: a failure after the self-check passed),
// "bias-type" (ignores CUBLASLT_MATMUL_DESC_BIAS_DATA_TYPE: the bias is read
// as D's type, which only a bf16 D with an fp32 bias gets wrong),
// "no-f32-bias" (refuses BIAS_DATA_TYPE = CUDA_R_32F with
// CUBLAS_STATUS_INVALID_VALUE, as a library without that combination might:
// not wrong, those shapes must just run elsewhere).
#include <stdint.h>

#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

namespace {

enum Status {
  kSuccess = 0,
  kNotInitialized = 1,
  kAllocFailed = 3,
  kInvalidValue = 7,
  kExecutionFailed = 13,
  kNotSupported = 15,
};
constexpr int kR32F = 0, kR16BF = 14;  // cudaDataType_t
constexpr int kCompute32F = 68, kCompute32FFast16BF = 75;
constexpr uint32_t kEpiDefault = 1, kEpiBias = 4;

struct Handle {
  uint32_t magic = 0x4c544831;
};
struct Desc {
  uint32_t magic = 0x4c544432;
  int32_t compute = 0, scale = 0, transa = 0, transb = 0;
  uint32_t epilogue = kEpiDefault;
  const void* bias = nullptr;
  int32_t bias_type = -1;  // BIAS_DATA_TYPE: -1, D's type
};
struct Layout {
  uint32_t magic = 0x4c544c33;
  int32_t type = 0;
  uint64_t rows = 0, cols = 0;
  int64_t ld = 0;
};
struct Pref {
  uint32_t magic = 0x4c545034;
  uint64_t max_workspace = 0;
  uint32_t align[4] = {256, 256, 256, 256};  // A, B, C, D: the documented default
};
struct Algo {
  uint64_t data[8];
};
struct HeuristicResult {
  Algo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};
constexpr uint64_t kAlgoTag = 0x5354414e44494e31ull;  // marks an algorithm this library handed out

std::string fault() {
  const char* f = std::getenv("GPT_EMU_CUBLASLT_FAULT");
  return f ? f : "";
}

// op(X) of a layout with transpose flag t: its rows and columns.
void op_dims(const Layout* l, int32_t t, uint64_t* r, uint64_t* c) {
  if (t == 0) {
    *r = l->rows;
    *c = l->cols;
  } else {
    *r = l->cols;
    *c = l->rows;
  }
}

int32_t transa_of(const Desc* d) {
  if (fault() == "transpose") return d->transa == 0 ? 1 : 0;
  return d->transa;
}

// Checks what cublasLtMatmulAlgoGetHeuristic and cublasLtMatmul both need.
int validate(const Desc* d, const Layout* a, const Layout* b, const Layout* c, const Layout* dd) {
  if (!d || !a || !b || !c || !dd) return kInvalidValue;
  if (d->compute != kCompute32F && d->compute != kCompute32FFast16BF) return kNotSupported;
  if (d->scale != kR32F) return kNotSupported;
  if (d->epilogue != kEpiDefault && d->epilogue != kEpiBias) return kNotSupported;
  for (const Layout* l : {a, b, c, dd})
    if (l->ld < 1 || static_cast<uint64_t>(l->ld) < l->rows) return kInvalidValue;
  // The documented type combinations (see the top of this file).
  if (a->type != b->type || c->type != dd->type) return kNotSupported;
  if (a->type == kR32F) {
    if (dd->type != kR32F) return kNotSupported;
  } else if (a->type == kR16BF) {
    if (d->compute != kCompute32F || (dd->type != kR32F && dd->type != kR16BF)) return kNotSupported;
  } else {
    return kNotSupported;
  }
  if (d->epilogue == kEpiBias && d->bias_type != -1 && d->bias_type != kR32F && d->bias_type != kR16BF)
    return kNotSupported;
  if ((d->transa != 0 && d->transa != 1) || (d->transb != 0 && d->transb != 1)) return kNotSupported;
  uint64_t am, ak, bk, bn;
  op_dims(a, transa_of(d), &am, &ak);
  op_dims(b, d->transb, &bk, &bn);
  if (ak != bk || c->rows != am || c->cols != bn || dd->rows != am || dd->cols != bn) return kInvalidValue;
  if (c->ld != dd->ld) return kNotSupported;  // in-place C == D needs the same layout
  return kSuccess;
}

// bf16 (the high half of an fp32) to fp32: exact.
float from_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

float round_bf16(float x) {
  if (std::isnan(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  u += 0x7fffu + ((u >> 16) & 1u);
  u &= 0xffff0000u;
  float r;
  std::memcpy(&r, &u, 4);
  return r;
}

unsigned alignment_of(const void* p) {
  uintptr_t v = reinterpret_cast<uintptr_t>(p);
  unsigned a = 256;
  while (a > 1 && (v % a) != 0) a /= 2;
  return a;
}

}  // namespace

extern "C" {

__attribute__((visibility("default"))) int cublasLtCreate(Handle** h) {
  if (!h) return kInvalidValue;
  *h = new Handle();
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtDestroy(Handle* h) {
  delete h;
  return kSuccess;
}

__attribute__((visibility("default"))) size_t cublasLtGetVersion() { return 130000; }

__attribute__((visibility("default"))) const char* cublasLtGetStatusName(int s) {
  switch (s) {
    case kSuccess: return "CUBLAS_STATUS_SUCCESS";
    case kNotInitialized: return "CUBLAS_STATUS_NOT_INITIALIZED";
    case kAllocFailed: return "CUBLAS_STATUS_ALLOC_FAILED";
    case kInvalidValue: return "CUBLAS_STATUS_INVALID_VALUE";
    case kExecutionFailed: return "CUBLAS_STATUS_EXECUTION_FAILED";
    case kNotSupported: return "CUBLAS_STATUS_NOT_SUPPORTED";
  }
  return "CUBLAS_STATUS_UNKNOWN";
}

__attribute__((visibility("default"))) int cublasLtMatmulDescCreate(Desc** d, int compute, int scale) {
  if (!d) return kInvalidValue;
  *d = new Desc();
  (*d)->compute = compute;
  (*d)->scale = scale;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmulDescDestroy(Desc* d) {
  delete d;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmulDescSetAttribute(Desc* d, int attr, const void* buf,
                                                                          size_t bytes) {
  if (!d || !buf) return kInvalidValue;
  switch (attr) {
    case 0:  // COMPUTE_TYPE, int32_t
      if (bytes != 4) return kInvalidValue;
      std::memcpy(&d->compute, buf, 4);
      return kSuccess;
    case 1:  // SCALE_TYPE, int32_t
      if (bytes != 4) return kInvalidValue;
      std::memcpy(&d->scale, buf, 4);
      return kSuccess;
    case 3:  // TRANSA, int32_t
      if (bytes != 4) return kInvalidValue;
      std::memcpy(&d->transa, buf, 4);
      return kSuccess;
    case 4:  // TRANSB, int32_t
      if (bytes != 4) return kInvalidValue;
      std::memcpy(&d->transb, buf, 4);
      return kSuccess;
    case 7:  // EPILOGUE, uint32_t
      if (bytes != 4) return kInvalidValue;
      std::memcpy(&d->epilogue, buf, 4);
      return kSuccess;
    case 8:  // BIAS_POINTER, const void*
      if (bytes != sizeof(void*)) return kInvalidValue;
      std::memcpy(&d->bias, buf, sizeof(void*));
      return kSuccess;
    case 26:  // BIAS_DATA_TYPE, int32_t (cudaDataType_t, -1: D's type)
      if (bytes != 4) return kInvalidValue;
      std::memcpy(&d->bias_type, buf, 4);
      if (d->bias_type == kR32F && fault() == "no-f32-bias") return kInvalidValue;
      return kSuccess;
  }
  return kNotSupported;
}

__attribute__((visibility("default"))) int cublasLtMatrixLayoutCreate(Layout** l, int type, uint64_t rows,
                                                                      uint64_t cols, int64_t ld) {
  if (!l) return kInvalidValue;
  *l = new Layout();
  (*l)->type = type;
  (*l)->rows = rows;
  (*l)->cols = cols;
  (*l)->ld = ld;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatrixLayoutDestroy(Layout* l) {
  delete l;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmulPreferenceCreate(Pref** p) {
  if (!p) return kInvalidValue;
  *p = new Pref();
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmulPreferenceDestroy(Pref* p) {
  delete p;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmulPreferenceSetAttribute(Pref* p, int attr, const void* buf,
                                                                                size_t bytes) {
  if (!p || !buf) return kInvalidValue;
  if (attr == 1) {  // MAX_WORKSPACE_BYTES, uint64_t
    if (bytes != 8) return kInvalidValue;
    std::memcpy(&p->max_workspace, buf, 8);
    return kSuccess;
  }
  if (attr >= 5 && attr <= 8) {  // MIN_ALIGNMENT_{A,B,C,D}_BYTES, uint32_t
    if (bytes != 4) return kInvalidValue;
    std::memcpy(&p->align[attr - 5], buf, 4);
    return kSuccess;
  }
  return kNotSupported;
}

// One algorithm for every supported problem; it remembers the alignments it
// was chosen for, and cublasLtMatmul refuses pointers aligned less (as an
// algorithm relying on wider loads would fail on the GPU).
__attribute__((visibility("default"))) int cublasLtMatmulAlgoGetHeuristic(Handle* h, Desc* d, Layout* a, Layout* b,
                                                                          Layout* c, Layout* dd, Pref* p,
                                                                          int requested, HeuristicResult* results,
                                                                          int* returned) {
  if (!h) return kNotInitialized;
  if (!p || !results || !returned || requested <= 0) return kInvalidValue;
  const int v = validate(d, a, b, c, dd);
  if (v != kSuccess) return v;
  if (fault() == "noalgo") return kNotSupported;
  std::memset(results, 0, sizeof(HeuristicResult));
  results[0].algo.data[0] = kAlgoTag;
  for (int i = 0; i < 4; ++i) results[0].algo.data[1 + i] = p->align[i];
  results[0].workspaceSize = 0;
  results[0].state = kSuccess;
  results[0].wavesCount = 1.0f;
  *returned = 1;
  return kSuccess;
}

__attribute__((visibility("default"))) int cublasLtMatmul(Handle* h, Desc* d, const void* alpha, const void* A,
                                                          Layout* la, const void* B, Layout* lb, const void* beta,
                                                          const void* C, Layout* lc, void* D, Layout* ld,
                                                          const Algo* algo, void* workspace, size_t ws_bytes,
                                                          void* stream) {
  (void)workspace;
  (void)ws_bytes;
  (void)stream;
  if (!h) return kNotInitialized;
  const int v = validate(d, la, lb, lc, ld);
  if (v != kSuccess) return v;
  if (!alpha || !beta || !A || !B || !D || !algo || algo->data[0] != kAlgoTag) return kInvalidValue;
  const void* ptrs[4] = {A, B, C, D};
  for (int i = 0; i < 4; ++i)
    if (ptrs[i] && alignment_of(ptrs[i]) < algo->data[1 + i]) return kInvalidValue;
  if (d->epilogue == kEpiBias && !d->bias) return kInvalidValue;
  const std::string f = fault();
  if (f == "status") return kExecutionFailed;
  const float al = *static_cast<const float*>(alpha), be = *static_cast<const float*>(beta);
  if (be != 0.0f && !C) return kInvalidValue;
  const int32_t ta = transa_of(d), tb = d->transb;
  uint64_t m, k, n, kb;
  op_dims(la, ta, &m, &k);
  op_dims(lb, tb, &kb, &n);
  if (f == "late-status" && m * n * k > 100000) return kExecutionFailed;
  const bool packed = f == "ld";
  const int64_t lda = packed ? static_cast<int64_t>(la->rows) : la->ld;
  const int64_t ldb = packed ? static_cast<int64_t>(lb->rows) : lb->ld;
  const int64_t ldc = lc->ld, ldd = ld->ld;
  // Element i of a matrix of type t, as fp32.
  auto get = [](const void* p, int t, int64_t i) {
    return t == kR16BF ? from_bf16(static_cast<const uint16_t*>(p)[i]) : static_cast<const float*>(p)[i];
  };
  const int bias_type = d->bias_type == -1 || f == "bias-type" ? ld->type : d->bias_type;
  const bool bf16 = d->compute == kCompute32FFast16BF;
  const bool add_bias = d->epilogue == kEpiBias && f != "bias";
  for (uint64_t j = 0; j < n; ++j) {
    for (uint64_t i = 0; i < m; ++i) {
      double acc = 0.0;
      for (uint64_t p = 0; p < k; ++p) {
        // op(A)(i, p) and op(B)(p, j), column-major storage.
        float x = get(A, la->type, ta == 0 ? i + p * lda : p + i * lda);
        float y = get(B, lb->type, tb == 0 ? p + j * ldb : j + p * ldb);
        if (bf16) {
          x = round_bf16(x);
          y = round_bf16(y);
        }
        acc += static_cast<double>(x) * static_cast<double>(y);
      }
      double r = static_cast<double>(al) * acc;
      if (be != 0.0f) r += static_cast<double>(be) * get(C, lc->type, i + j * ldc);
      if (add_bias) r += get(d->bias, bias_type, i);
      const float v = static_cast<float>(r);
      if (ld->type == kR16BF) {
        const float h = round_bf16(v);
        uint32_t u;
        std::memcpy(&u, &h, 4);
        static_cast<uint16_t*>(D)[i + j * ldd] = static_cast<uint16_t>(u >> 16);
      } else {
        static_cast<float*>(D)[i + j * ldd] = v;
      }
    }
  }
  return kSuccess;
}

}  // extern "C"
