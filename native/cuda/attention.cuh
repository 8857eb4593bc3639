// Fused flash-style attention on the GPU, dense causal and locally banded,
// with the CPU kernels' contract (native/cpu/attention.h, docs/ARCHITECTURE.md "Fused
// attention"): per-row log-sum-exp saved by the forward pass, backward
// recomputes the scores from it with D = rowsum(dO * O) precomputed, only key
// tiles that intersect the causal triangle / band (and, with a document mask,
// the rows' documents) are visited, and masks are applied only on tiles the
// diagonal, the band edge or a document start cuts. AttnShape::doc_start is
// a device pointer here, and trusted (the callers check it on the host).
//
// q, k, v and out are fp32 or bf16 views (AttnTensor; bf16 storage, each
// tensor on its own); lse, dout, dq, dk, dv are fp32 (a bf16 view there is
// INVALID_ARGUMENT naming it). Tiles are bf16 in shared memory (fp32 inputs
// rounded when staged, bf16 ones copied as they are) and multiplied on
// tensor cores (mma.sync m16n8k16) with fp32 accumulation and fp32 softmax
// statistics, so a bf16 view gives bitwise the result of an fp32 view of the
// same values; a bf16 out is the fp32 result rounded once (nearest even).
// Head dims 64, 80, 96, 128.
// attention_forward/backward send AttnShape::precision == FP32, and every
// other head dim (1..256), to the fp32 SIMT kernels (attention_fp32.cuh).
// Backward is one pass over key tiles (S and dP recomputed once per tile
// pair: 5 matmuls' worth) and deterministic without atomics: dK/dV are owned
// by one block per key tile, which also writes its share of dQ to its own
// slot of a scratch buffer; a second small kernel sums each row's slots in a
// fixed order.
//
// Legend: B batch, H heads, T sequence, D head size.
#pragma once
#include <cuda_runtime.h>

#include <cstddef>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

// Whether the bf16 tensor-core kernels have an instantiation for head_dim.
bool attention_head_dim_supported(int head_dim);

// out, q, k, v: strided [B, H, T, D] views; lse: [B, H, T] contiguous.
void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v,
                       cudaStream_t stream);

// Floats of scratch attention_backward needs for shape s: D = rowsum(dO*O)
// ([B, H, T]; on the bf16 path with dO rounded to bf16 as the kernels' dP
// uses it) and the dQ partials (dense: about T / (2 * tile) x the size of q,
// tile = 64 keys on tensor cores, 32 on the fp32 path; banded: at most
// (ceil((window - 1) / tile) + 1) x). Throws InvalidArgument for a shape the
// kernels do not take.
size_t attention_backward_scratch_floats(const AttnShape& s);

// dq, dk, dv overwritten. scratch: attention_backward_scratch_floats(s)
// floats of device memory, 16-byte aligned; nothing in it is read before it
// is written.
void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q, AttnTensor k,
                        AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout, float* scratch,
                        cudaStream_t stream);

}  // namespace cuda
}  // namespace gpt
