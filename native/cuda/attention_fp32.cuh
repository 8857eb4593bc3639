// fp32 flash attention on the GPU (SIMT, no tensor cores): what
// `precision: 'fp32'` runs, and what every precision runs for head sizes the
// bf16 tensor-core kernels (attention.cuh) do not take. Same contract as
// those: lse saved by the forward pass, backward recomputes the scores from
// it with D = rowsum(dO * O) precomputed, only tiles that intersect the
// causal triangle / band / documents are visited, masks only on cut tiles
// (document masks as in attention.cuh). Backward in one pass over key tiles:
// dK/dV written by one block per key tile, which writes its share of dQ to
// its slot of the dQ partials (attention.cu sums them in a fixed order: no
// atomics, deterministic). Head dims 1..256. q, k, v and out may be bf16
// views (bf16 storage under Precision::BF16 at head dims the tensor-core
// kernels lack): widened to fp32 on load (exactly), out rounded once.
//
// Legend: B batch, H heads, T sequence, D head size.
#pragma once
#include <cuda_runtime.h>

#include "../core/backend.h"
#include "attention_common.cuh"

namespace gpt {
namespace cuda {

constexpr int kAttnFp32MaxHeadDim = 256;
constexpr int kAttnFp32Tile = 32;  // query rows and keys per tile

// The caller (attention.cu) has checked the shape: head_dim 1..256, banded
// window >= 1. out, q, k, v: strided [B, H, T, D] views; lse: [B, H, T].
void attention_fp32_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k,
                            AttnTensor v, cudaStream_t stream);

// dk, dv overwritten; dqp: the dQ partials (attention_common.cuh), key tile
// kt's (unscaled) dS K for the rows its keys are seen by; dvec: D =
// rowsum(dO * O), [B, H, T], already computed.
void attention_fp32_backward(const AttnShape& s, AttnTensor dk, AttnTensor dv, DqPartials dqp, AttnTensor q,
                             AttnTensor k, AttnTensor v, const float* lse, const float* dvec, AttnTensor dout,
                             cudaStream_t stream);

}  // namespace cuda
}  // namespace gpt
