// Matrix multiply on the GPU: through cuBLASLt where it loads and passed its
// self-check (cublaslt.h), else with the engine's own kernels: a tensor-core
// kernel (operands fp32 in memory, rounded to bf16 while tiles are staged in
// shared memory, or bf16, copied in as they are; mma.sync m16n8k16 with fp32
// accumulation; C fp32 or bf16) and an fp32 SIMT kernel for Precision::FP32
// (checking). Same contract as native/cpu/gemm.h.
//
// All matrices row-major with leading dimensions.
#pragma once
#include <cuda_runtime.h>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

// Operands are TensorRefs (backend.h): fp32 or bf16 in memory, each on its
// own (a call may mix them, e.g. an fp32 gradient times a bf16 weight copy).
// Under Precision::BF16 every operand is read as bf16 (fp32 ones rounded to
// nearest even), so an fp32 operand and its bf16 copy give the same bits.
// Precision::FP32 takes fp32 operands only. C may be bf16 (rounded once from
// the fp32 accumulator, after the bias) only when !accumulate.
//
// scratch: bf16 workspace for a mixed-type call on cuBLASLt (which takes A and
// B of one type): the fp32 operand is converted into it first. When it is
// null or too small for that operand, the own GEMM runs the call.
struct GemmScratch {
  void* ptr = nullptr;
  size_t bytes = 0;
};

// C[M, N] = (accumulate ? C : 0) + op(A) @ op(B) (+ bias[N] when non-null).
//   op(A) [M, K]: A ([M, K], lda) or, with trans_a, A^T of A stored [K, M].
//   op(B) [K, N]: B ([K, N], ldb) or, with trans_b, B^T of B stored [N, K].
// Supported (instantiated) layouts: NN, NT, TN (what the model uses).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, CTensorRef A, long long lda, CTensorRef B, long long ldb,
          TensorRef C, long long ldc, bool accumulate, const float* bias, Precision p, cudaStream_t s,
          const GemmScratch* scratch = nullptr);

// Fused bias + GELU (the MLP's c_fc), NN layout, contiguous rows:
// pre[M, N] = A[M, K] @ B[K, N] (+ bias[N] when non-null), out[M, N] =
// gelu(pre) (tanh form, gelu_tanh in common.cuh), both written by the GEMM's
// epilogue from the accumulator registers (with bf16 storage, out is the GELU
// of the fp32 pre before pre is rounded). out must not alias pre.
void gemm_bias_gelu(int M, int N, int K, CTensorRef A, CTensorRef B, TensorRef pre, TensorRef out, const float* bias,
                    Precision p, cudaStream_t s, const GemmScratch* scratch = nullptr);

// The engine's own kernels, whatever cuBLASLt does: the fallback, and the
// reference of cuBLASLt's self-check (cublaslt.cu). gemm_bias_gelu_own takes
// (fp32, fp32) -> fp32 pre and out, and under BF16 (bf16, bf16) -> bf16.
void gemm_own(bool trans_a, bool trans_b, int M, int N, int K, CTensorRef A, long long lda, CTensorRef B,
              long long ldb, TensorRef C, long long ldc, bool accumulate, const float* bias, Precision p,
              cudaStream_t s);
void gemm_bias_gelu_own(int M, int N, int K, CTensorRef A, CTensorRef B, TensorRef pre, TensorRef out,
                        const float* bias, Precision p, cudaStream_t s);

// Whether gemm_own runs this layout and these types at precision p (else it
// throws INVALID_ARGUMENT naming them). Under BF16 the instantiated kernels:
// NN (fp32, fp32) -> fp32, (bf16, bf16) -> bf16 or fp32, (fp32, bf16) -> fp32;
// NT (fp32, fp32), (fp32, bf16), (bf16, bf16) -> fp32; TN (fp32, fp32),
// (bf16, fp32), (fp32, bf16), (bf16, bf16) -> fp32. FP32: NN, NT, TN all fp32. cuBLASLt
// takes only what the own GEMM also runs, so its self-check covers it.
bool gemm_own_supports(bool trans_a, bool trans_b, DType a, DType b, DType c, Precision p);

// out[N] += column sums of x[M, N], in a fixed order (deterministic).
// scratch: at least colsum_scratch_floats(M, N) floats of device memory.
size_t colsum_scratch_floats(int M, int N);
void colsum_accumulate(float* out, const float* x, int M, int N, float* scratch, cudaStream_t s);

}  // namespace cuda
}  // namespace gpt
