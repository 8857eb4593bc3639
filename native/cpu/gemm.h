// Matrix multiply on the CPU: cache-blocked, packed, vectorized per ISA path,
// on the global pool. Implementation: gemm.cc (blocking, threads) and
// gemm_impl.h compiled per ISA.
//
// All matrices row-major with leading dimensions. Deterministic: each output
// tile is computed by one task with a fixed summation order over K, so
// results are bitwise identical for any thread count.
#pragma once
#include "../core/backend.h"

namespace gpt {
namespace cpu {

// C[M, N] = (accumulate ? C : 0) + op(A) @ op(B) (+ bias[N] broadcast over rows
// when bias != nullptr).
//   op(A) is [M, K]: A itself ([M, K], lda) or, with trans_a, A^T of A [K, M].
//   op(B) is [K, N]: B itself ([K, N], ldb) or, with trans_b, B^T of B [N, K].
// Precision::BF16 rounds A and B to bf16 while packing (round to nearest
// even) and accumulates in fp32 (AVX512_BF16 dot products where the CPU has
// them; elsewhere the rounded values are multiplied in fp32, same numbers up
// to summation order).
//
// The sum over K runs in blocks of gemm_k_block(K, p) columns (each block
// summed from zero, then added to C in block order), the only thing that
// decides the bits. k_block > 0 imposes another block (even): a product
// split along K into calls over consecutive pieces, each a multiple of
// gemm_k_block(K_total, p) long and given that block, with accumulate on
// after the first, then gives the same bits as one call over all of K (the
// fused classifier's weight gradient, backend.h). With today's block rule
// (equal blocks of at most 256, or 512) such pieces would get that block by
// themselves; imposing it keeps the property whatever the rule becomes.
void gemm(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
          int ldc, bool accumulate, const float* bias, Precision p, int k_block = 0);

// The K block gemm() uses for a product over K under precision p on the
// current instruction-set path.
int gemm_k_block(int K, Precision p);

// out[N] += sum over rows of x[M, N] (bias gradients), fixed order.
void colsum_accumulate(float* out, const float* x, int M, int N);

}  // namespace cpu
}  // namespace gpt
