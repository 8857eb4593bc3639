// fp32 flash attention on the GPU (SIMT, no tensor cores): what
// `precision: 'fp32'` runs, and what every precision runs for head sizes the
// bf16 tensor-core kernels (attention.cuh) do not take. Same contract as
// those: lse saved by the forward pass, backward recomputes the scores from
// it with D = rowsum(dO * O) precomputed, only tiles that intersect the
// causal triangle / band / documents are visited, masks only on cut tiles
// (document masks as in attention.cuh), dK/dV and dQ
// each written by one block (no atomics: deterministic). Head dims 1..256.
//
// Legend: B batch, H heads, T sequence, D head size.
#pragma once
#include <cuda_runtime.h>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

constexpr int kAttnFp32MaxHeadDim = 256;

// The caller (attention.cu) has checked the shape: head_dim 1..256, banded
// window >= 1. out, q, k, v: strided [B, H, T, D] views; lse: [B, H, T].
void attention_fp32_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k,
                            AttnTensor v, cudaStream_t stream);

// dq, dk, dv overwritten; dvec: D = rowsum(dO * O), [B, H, T], already computed.
void attention_fp32_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q,
                             AttnTensor k, AttnTensor v, const float* lse, const float* dvec, AttnTensor dout,
                             cudaStream_t stream);

}  // namespace cuda
}  // namespace gpt
