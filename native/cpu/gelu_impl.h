// The tanh-form GELU (GPT-2's gelu_new) as vector code, shared by the GELU
// ops (ops_impl.h) and the GEMM's fused bias + GELU epilogue (gemm_impl.h):
// one definition, so the fused path computes bitwise what the separate
// gelu_forward op computes from the same input.
//
// Per-ISA like simd.h: included only from files compiled with GPT_ISA_NS.
#pragma once
#include <cstdint>

#include "simd.h"

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

constexpr float kGeluS = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;

// tanh(u) = 1 - 2 / (exp(2u) + 1): exact limits at +-inf, no overflow trouble
// (exp -> inf gives 1, exp -> 0 gives -1).
inline vf vtanh(vf u) { return vsplat(1.0f) - vsplat(2.0f) / (vexp(u + u) + vsplat(1.0f)); }

inline vf vgelu(vf x) {
  vf u = vsplat(kGeluS) * (x + vsplat(kGeluA) * x * x * x);
  return vsplat(0.5f) * x * (vsplat(1.0f) + vtanh(u));
}

inline vf vgelu_grad(vf x) {
  vf x2 = x * x;
  vf u = vsplat(kGeluS) * (x + vsplat(kGeluA) * x2 * x);
  vf t = vtanh(u);
  vf du = vsplat(kGeluS) * (vsplat(1.0f) + vsplat(3.0f * kGeluA) * x2);
  return vsplat(0.5f) * (vsplat(1.0f) + t) + vsplat(0.5f) * x * (vsplat(1.0f) - t * t) * du;
}

// out[0, n) = gelu(inp[0, n)); full vectors, then one partial vector. Every
// lane computes the same thing, so an element's result does not depend on
// where the span starts.
inline void gelu_span(float* out, const float* inp, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore(out + i, vgelu(vload(inp + i)));
  if (i < n) {
    int k = static_cast<int>(n - i);
    vstore_partial(out + i, vgelu(vload_partial(inp + i, k)), k);
  }
}

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
