// Fused flash-style attention on the CPU, dense causal and locally banded
// (docs/ARCHITECTURE.md "Fused attention"). Implementation: attention.cc (tiling, threads)
// and attention_impl.h compiled per ISA.
//
// Legend: B batch, H heads, T sequence, D head size.
// q, k, v, out, dq, dk, dv: strided [B, H, T, D] views (core/backend.h).
// lse: [B, H, T] contiguous, natural log of sum_j exp(scale * q.k_j).
//
// Which keys a query sees: query i of row b sees keys j with lo <= j <= i,
// lo = max(0, i - window + 1) (banded; dense: 0), raised to
// s.doc_start[b*T + i] when the shape carries a document mask. Documents
// (native/core/doc_mask.h): in GPT-2 packing each document ends with the
// end-of-text token, which belongs to the document it ends; the next
// position starts a new document, so no query attends across that boundary.
// The kernels skip the tiles no row of a task can see (the cost follows the
// documents) and mask only the tiles the diagonal, the band edge or a
// document start cuts; without a mask the arithmetic is exactly that of the
// plain causal / banded kernels.
#pragma once
#include <cstddef>

#include "../core/backend.h"

namespace gpt {
namespace cpu {

// Runs on the global pool with the current ISA path. Shapes must be valid
// (lib/ validates; this re-checks, document starts included, and throws
// INVALID_ARGUMENT).
void attention_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v);

// dq, dk, dv are overwritten. Deterministic and bitwise identical for any
// thread count.
void attention_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q, AttnTensor k,
                        AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout);

// A plain materialized fp32 implementation (T x T scores per (b, h)) on the
// same pool: the "naive" line of the benchmarks.
void attention_naive_forward(const AttnShape& s, AttnTensor out, float* lse, AttnTensor q, AttnTensor k, AttnTensor v);
void attention_naive_backward(const AttnShape& s, AttnTensor dq, AttnTensor dk, AttnTensor dv, AttnTensor q,
                              AttnTensor k, AttnTensor v, AttnTensor out, const float* lse, AttnTensor dout);

// Peak bytes of scratch the fused kernels have held since the last reset
// (for the benchmark's workspace column).
size_t attention_workspace_high_water();
void attention_workspace_reset();

}  // namespace cpu
}  // namespace gpt
