// Matrix multiply on the GPU: through cuBLASLt where it loads and passed its
// self-check (cublaslt.h), else with the engine's own kernels: a tensor-core
// kernel (fp32 in memory, rounded to bf16 while tiles are staged in shared
// memory, mma.sync m16n8k16 with fp32 accumulation) and an fp32 SIMT kernel
// for Precision::FP32 (checking). Same contract as native/cpu/gemm.h.
//
// All matrices row-major with leading dimensions.
#pragma once
#include <cuda_runtime.h>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

// C[M, N] = (accumulate ? C : 0) + op(A) @ op(B) (+ bias[N] when non-null).
//   op(A) [M, K]: A ([M, K], lda) or, with trans_a, A^T of A stored [K, M].
//   op(B) [K, N]: B ([K, N], ldb) or, with trans_b, B^T of B stored [N, K].
// Supported (instantiated) layouts: NN, NT, TN (what the model uses).
void gemm(bool trans_a, bool trans_b, int M, int N, int K, const float* A, long long lda, const float* B,
          long long ldb, float* C, long long ldc, bool accumulate, const float* bias, Precision p, cudaStream_t s);

// Fused bias + GELU (the MLP's c_fc), NN layout, contiguous rows:
// pre[M, N] = A[M, K] @ B[K, N] (+ bias[N] when non-null), out[M, N] =
// gelu(pre) (tanh form, gelu_tanh in common.cuh), both written by the GEMM's
// epilogue from the accumulator registers. out must not alias pre.
void gemm_bias_gelu(int M, int N, int K, const float* A, const float* B, float* pre, float* out, const float* bias,
                    Precision p, cudaStream_t s);

// The engine's own kernels, whatever cuBLASLt does: the fallback, and the
// reference of cuBLASLt's self-check (cublaslt.cu).
void gemm_own(bool trans_a, bool trans_b, int M, int N, int K, const float* A, long long lda, const float* B,
              long long ldb, float* C, long long ldc, bool accumulate, const float* bias, Precision p,
              cudaStream_t s);
void gemm_bias_gelu_own(int M, int N, int K, const float* A, const float* B, float* pre, float* out,
                        const float* bias, Precision p, cudaStream_t s);

// out[N] += column sums of x[M, N], in a fixed order (deterministic).
// scratch: at least colsum_scratch_floats(M, N) floats of device memory.
size_t colsum_scratch_floats(int M, int N);
void colsum_accumulate(float* out, const float* x, int M, int N, float* scratch, cudaStream_t s);

}  // namespace cuda
}  // namespace gpt
