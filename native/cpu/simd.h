// Portable SIMD for CPU kernels, written once with GCC/Clang vector
// extensions and compiled once per instruction-set path.
//
// Kernel families live in `<name>_impl.h`; the build generates one file per
// path that includes it (native/sources.cmake) and gives each its ISA flags
// plus GPT_ISA_NS (avx512 | avx2 | portable). All code
// here sits inside namespace gpt::cpu::GPT_ISA_NS, so the three compilations
// never share an inline function (which would let the linker hand AVX-512 code
// to the portable path).
//
// Vector width W: 16 floats on AVX-512, 8 on AVX2, 4 on the portable path
// (SSE2, the x86-64 baseline; other CPUs lower it to what they have).
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>

#ifndef GPT_ISA_NS
#error "GPT_ISA_NS must name the ISA namespace (set by native/sources.cmake / binding.gyp)"
#endif

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX2__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif
constexpr int W = kVecBytes / 4;

typedef float vf __attribute__((vector_size(kVecBytes)));
typedef int32_t vi __attribute__((vector_size(kVecBytes)));
typedef float vf_unaligned __attribute__((vector_size(kVecBytes), aligned(4)));

inline vf vload(const float* p) { return *reinterpret_cast<const vf_unaligned*>(p); }
inline void vstore(float* p, vf v) { *reinterpret_cast<vf_unaligned*>(p) = v; }
inline vf vsplat(float x) { return vf{} + x; }
inline vf vzero() { return vf{}; }
// a * b + c; one fused instruction on the FMA paths (-ffp-contract=fast).
inline vf vfma(vf a, vf b, vf c) { return a * b + c; }
inline vf vmax(vf a, vf b) { return a > b ? a : b; }
inline vf vmin(vf a, vf b) { return a < b ? a : b; }

// Loads/stores the first n (< W) lanes; the rest read as 0.
inline vf vload_partial(const float* p, int n) {
  vf v{};
  for (int i = 0; i < n; ++i) v[i] = p[i];
  return v;
}
inline void vstore_partial(float* p, vf v, int n) {
  for (int i = 0; i < n; ++i) p[i] = v[i];
}

// Horizontal reductions in a fixed lane order (determinism).
inline float vhsum(vf v) {
  // Pairwise halving: the same tree every call.
  float t[W];
  std::memcpy(t, &v, sizeof(t));
  for (int w = W / 2; w >= 1; w /= 2)
    for (int i = 0; i < w; ++i) t[i] += t[i + w];
  return t[0];
}
inline float vhmax(vf v) {
  float m = v[0];
  for (int i = 1; i < W; ++i) m = v[i] > m ? v[i] : m;
  return m;
}

// exp(x) for a vector, relative error about 2e-7 over the float range.
// Inputs below -87.3 (including -inf) give exactly 0, so masked scores vanish;
// inputs above 88.7 give +inf.
inline vf vexp(vf x) {
  const vf lo = vsplat(-87.33654f), hi = vsplat(88.72283f);
  vf xc = vmin(vmax(x, lo), hi);
  // n = round(x / ln 2); r = x - n ln 2 (two-part ln 2 keeps r exact enough)
  vf fn = xc * vsplat(1.44269504088896341f);
  vi n = __builtin_convertvector(fn + (fn >= vzero() ? vsplat(0.5f) : vsplat(-0.5f)), vi);
  vf nf = __builtin_convertvector(n, vf);
  vf r = xc - nf * vsplat(0.693359375f);
  r = r - nf * vsplat(-2.12194440e-4f);
  // exp(r) on [-ln2/2, ln2/2]: degree-6 polynomial
  vf p = vsplat(1.9875691500e-4f);
  p = vfma(p, r, vsplat(1.3981999507e-3f));
  p = vfma(p, r, vsplat(8.3334519073e-3f));
  p = vfma(p, r, vsplat(4.1665795894e-2f));
  p = vfma(p, r, vsplat(1.6666665459e-1f));
  p = vfma(p, r, vsplat(5.0000001201e-1f));
  p = vfma(p, r * r, r) + vsplat(1.0f);
  // scale by 2^n through the exponent bits; split so n = 128 doesn't overflow
  vi n1 = n >> 1, n2 = n - n1;
  vi e1 = (n1 + 127) << 23, e2 = (n2 + 127) << 23;
  vf s1, s2;
  std::memcpy(&s1, &e1, sizeof(s1));
  std::memcpy(&s2, &e2, sizeof(s2));
  vf res = p * s1 * s2;
  res = x < lo ? vzero() : res;
  res = x > hi ? vsplat(INFINITY) : res;
  return res;
}

inline float sexp(float x) { return vexp(vsplat(x))[0]; }

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
