// Fused flash-style attention on the GPU, dense causal and locally banded,
// with the CPU kernels' contract (native/cpu/attention.h, docs/ARCHITECTURE.md "Fused
// attention"): per-row log-sum-exp saved by the forward pass, backward
// recomputes the scores from it with D = rowsum(dO * O) precomputed, only key
// tiles that intersect the causal triangle / band (and, with a document mask,
// the rows' documents) are visited, and masks are applied only on tiles the
// diagonal, the band edge or a document start cuts. AttnShape::doc_start is
// a device pointer here, and trusted (the callers check it on the host).
//
// Inputs are fp32 in memory; tiles are rounded to bf16 when staged in shared
// memory and multiplied on tensor cores (mma.sync m16n8k16) with fp32
// accumulation and fp32 softmax statistics. Head dims 64, 80, 96, 128.
// attention_forward/backward send AttnShape::precision == FP32, and every
// other head dim (1..256), to the fp32 SIMT kernels (attention_fp32.cuh).
// Backward is deterministic: dK/dV are owned by one block per key tile and
// dQ by one block per query tile (a second pass instead of atomics).
//
// Legend: B batch, H heads, T sequence, D head size.
#pragma once
#include <cuda_runtime.h>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

// Whether the bf16 tensor-core kernels have an instantiation for head_dim.
bool attention_head_dim_supported(int head_dim);

// out, q, k, v: strided [B, H, T, D] views; lse: [B, H, T] contiguous.
void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v,
                       cudaStream_t stream);

// dq, dk, dv overwritten. dvec: scratch of B*H*T floats (holds D = rowsum(dO*O);
// on the bf16 path with dO rounded to bf16 as the kernels' dP uses it).
void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q, AttnTensor k,
                        AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout, float* dvec,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace gpt
