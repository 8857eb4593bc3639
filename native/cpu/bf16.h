// bf16 conversions (round to nearest even), shared by the GEMM packers and by
// anything that needs the exact numbers a bf16 GEMM sees.
//
// Every function here is `static inline` on purpose: this header is included
// by files compiled with different instruction-set flags (simd.h explains
// why), and internal linkage keeps the linker from handing one ISA's copy to
// another.
#pragma once
#include <cstdint>
#include <cstring>

namespace gpt {
namespace cpu {

// The upper 16 bits of x rounded to nearest even; NaNs stay (quiet) NaNs,
// values past the bf16 range round to +-inf as IEEE rounding says.
static inline uint16_t bf16_bits(float x) {
  uint32_t u;
  std::memcpy(&u, &x, 4);
  if ((u & 0x7fffffffu) > 0x7f800000u) return static_cast<uint16_t>((u >> 16) | 0x40u);
  u += 0x7fffu + ((u >> 16) & 1u);
  return static_cast<uint16_t>(u >> 16);
}

static inline float bf16_to_float(uint16_t h) {
  uint32_t u = static_cast<uint32_t>(h) << 16;
  float x;
  std::memcpy(&x, &u, 4);
  return x;
}

// x rounded to the nearest bf16 value, as a float.
static inline float bf16_round(float x) { return bf16_to_float(bf16_bits(x)); }

}  // namespace cpu
}  // namespace gpt
