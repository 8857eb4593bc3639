// cuBLASLt for the CUDA backend's GEMMs, loaded at run time (docs/GPU.md
// "Which GEMM runs"). Never a build dependency: libcublasLt.so.13, then
// .so.12, is opened with dlopen ($GPT_ENGINE_CUBLASLT names another file; the
// emulator build opens its stand-in, tools/cuda-emu/cublaslt/, next to the
// addon) and the few functions and values used are declared in cublaslt.cu
// from NVIDIA's public API documentation. Before it is trusted, a self-check
// runs every layout and epilogue the model uses on small awkward shapes
// through cuBLASLt and through the engine's own GEMM (gemm.cuh) and compares;
// any error or mismatch leaves the own GEMM in charge for the whole process,
// with the reason in gemm_choice() and one line on stderr.
//
// $GPT_ENGINE_GEMM: unset or "auto" (cuBLASLt when it loads and passes the
// self-check), "own" (never cuBLASLt), "cublaslt" (cuBLASLt or an error).
//
// Plain C++ (no CUDA headers), so the addon's bindings can include it.
#pragma once
#include <string>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

struct GemmChoice {
  bool cublaslt = false;  // true: the GEMMs go through cuBLASLt
  std::string label;      // "cublaslt 13.0.2" or "own (<why>)"
  std::string reason;     // why not cuBLASLt (empty when it is used)
  std::string path;       // the library file loaded, when one was
  long version = 0;       // cublasLtGetVersion(), when loaded
};

// Decides once per process, on the first call: loads the library, runs the
// self-check on the current device. Needs a usable GPU for cuBLASLt; without
// one the answer is the own GEMM and why.
GemmChoice gemm_choice();

// The GEMM of gemm.cuh through cuBLASLt. Returns false (nothing done) when the
// own GEMM must run this call: cuBLASLt not chosen, K == 0, no algorithm for
// this shape, or cuBLASLt failed on it (said on stderr once; that shape then
// stays on the own GEMM). Throws GptError when $GPT_ENGINE_GEMM demands
// cuBLASLt and it is not usable or fails. `stream` is a cudaStream_t.
// Operands as gemm.cuh's (fp32 or bf16 each); a call mixing the types of A
// and B needs `convert` (bf16 workspace of convert_bytes) to hold the fp32
// one in bf16, else it returns false.
bool cublaslt_gemm(bool trans_a, bool trans_b, int M, int N, int K, CTensorRef A, long long lda, CTensorRef B,
                   long long ldb, TensorRef C, long long ldc, bool accumulate, const float* bias, Precision p,
                   void* stream, void* convert = nullptr, size_t convert_bytes = 0);

// For tests (the addon's cudaGemm, native/addon/gemm_binding.cc): one GEMM
// (gemm.cuh) on host data. Each operand is uploaded as fp32 and, when its
// type is bf16, converted on the device (cuda::convert, round to nearest
// even); it starts `*_offset` elements into its device buffer (to test
// unaligned operands). A bf16 C (and GELU out) is converted back to fp32 for
// the return. gelu: gemm_bias_gelu (NN, contiguous; C is pre). own: the own
// GEMM (gemm_own), else gemm() (cuBLASLt when chosen). scratch_bytes: the
// bf16 workspace gemm() gets for a mixed-type call (0: none). Defined in
// gemm.cu; throws GptError.
struct GemmTestCall {
  bool trans_a = false, trans_b = false, accumulate = false, gelu = false, own = false;
  int M = 0, N = 0, K = 0;
  long long lda = 0, ldb = 0, ldc = 0;
  DType a_type = DType::F32, b_type = DType::F32, c_type = DType::F32;
  long long a_offset = 0, b_offset = 0, c_offset = 0;
  Precision precision = Precision::FP32;
  size_t scratch_bytes = 0;
  const float* a = nullptr;  // a_len elements
  size_t a_len = 0;
  const float* b = nullptr;
  size_t b_len = 0;
  float* c = nullptr;  // c_len elements, in (accumulate, and what C's gaps hold) and out
  size_t c_len = 0;
  float* out = nullptr;  // gelu: c_len elements, out
  const float* bias = nullptr;  // N elements or null
};
void gemm_test_run(const GemmTestCall& call);

}  // namespace cuda
}  // namespace gpt
