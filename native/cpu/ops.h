// Elementwise, normalization, embedding, classifier and optimizer kernels of
// the CPU backend, compiled once per instruction-set path (ops_impl.h, see
// simd.h). Each entry point handles one range of rows, columns or elements;
// cpu_backend.cc splits the work over the pool in fixed-size pieces, so every
// output element is computed by exactly one task in a fixed order and results
// are bitwise identical for any thread count (docs/ARCHITECTURE.md "Threads").
//
// Legend: M rows, C channels, V vocabulary, Vp padded vocabulary.
#pragma once
#include <cstdint>

#include "dispatch.h"

// out[r, :] = wte[tok[r], :] + wpe[r % T, :] for r in [r0, r1)
GPT_DECLARE_ISA_FN(void op_embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe,
                                             int T, int C, int64_t r0, int64_t r1))
// Columns [c0, c1): dwte[tok[r], c] += dout[r, c]; dwpe[r % T, c] += dout[r, c],
// rows in increasing order.
GPT_DECLARE_ISA_FN(void op_embedding_backward_cols(float* dwte, float* dwpe, const float* dout, const int32_t* tokens,
                                                   int64_t M, int T, int C, int c0, int c1))
// Rows [r0, r1): out = (x - mean) * rstd * gamma + beta; saves mean, rstd.
GPT_DECLARE_ISA_FN(void op_layernorm_forward(float* out, float* mean, float* rstd, const float* inp,
                                             const float* gamma, const float* beta, int C, float eps, int64_t r0,
                                             int64_t r1))
// Rows [r0, r1): resid = a + b (resid may alias a or b), then LayerNorm of
// resid into out, mean, rstd exactly as op_layernorm_forward.
GPT_DECLARE_ISA_FN(void op_residual_layernorm_forward(float* resid, float* out, float* mean, float* rstd, const float* a,
                                                      const float* b, const float* gamma, const float* beta, int C,
                                                      float eps, int64_t r0, int64_t r1))
// Rows [r0, r1): dinp += rstd * (g - mean(g) - xhat * mean(g * xhat)), g = dout * gamma.
GPT_DECLARE_ISA_FN(void op_layernorm_backward_rows(float* dinp, const float* dout, const float* inp, const float* gamma,
                                                   const float* mean, const float* rstd, int C, int64_t r0, int64_t r1))
// Columns [c0, c1): dgamma += sum_r dout * xhat; dbeta += sum_r dout.
GPT_DECLARE_ISA_FN(void op_layernorm_backward_cols(float* dgamma, float* dbeta, const float* dout, const float* inp,
                                                   const float* mean, const float* rstd, int64_t M, int C, int c0,
                                                   int c1))
GPT_DECLARE_ISA_FN(void op_gelu_forward(float* out, const float* inp, int64_t n))
// dinp = dout * gelu'(inp); dinp may alias dout.
GPT_DECLARE_ISA_FN(void op_gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n))
GPT_DECLARE_ISA_FN(void op_add(float* out, const float* a, const float* b, int64_t n))
GPT_DECLARE_ISA_FN(void op_scale(float* x, float s, int64_t n))
// Rows [r0, r1) of the fused softmax + cross-entropy (Backend::crossentropy).
// row_loss[r] receives -log p[target] (0 for ignored rows).
GPT_DECLARE_ISA_FN(void op_crossentropy_rows(float* logits, const int32_t* targets, int V, int Vp, float dscale,
                                             double* row_loss, int64_t r0, int64_t r1))
GPT_DECLARE_ISA_FN(double op_sum_squares(const float* g, int64_t n))
// AdamW on n elements; bc1 = 1 - beta1^t, bc2 = 1 - beta2^t.
GPT_DECLARE_ISA_FN(void op_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1,
                                 float beta2, float eps, float wd, float gscale, float bc1, float bc2))
