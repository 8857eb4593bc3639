// Per-ISA bodies of the ceiling probes (compiled once per path, native/sources.cmake).
#include "simd.h"
#if defined(__AVX512BF16__)
#include <immintrin.h>
#endif

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

// 12 independent FMA chains: enough to cover the FMA latency (4 cycles) times
// two FMA ports on the cores this engine targets.
float probe_fma_chains(int64_t iters, float seed) {
  vf a0 = vsplat(seed), a1 = a0 + 1, a2 = a0 + 2, a3 = a0 + 3, a4 = a0 + 4, a5 = a0 + 5;
  vf a6 = a0 + 6, a7 = a0 + 7, a8 = a0 + 8, a9 = a0 + 9, a10 = a0 + 10, a11 = a0 + 11;
  const vf m = vsplat(0.999999f), c = vsplat(1e-7f);
  for (int64_t i = 0; i < iters; ++i) {
    a0 = vfma(a0, m, c); a1 = vfma(a1, m, c); a2 = vfma(a2, m, c); a3 = vfma(a3, m, c);
    a4 = vfma(a4, m, c); a5 = vfma(a5, m, c); a6 = vfma(a6, m, c); a7 = vfma(a7, m, c);
    a8 = vfma(a8, m, c); a9 = vfma(a9, m, c); a10 = vfma(a10, m, c); a11 = vfma(a11, m, c);
    // keep the compiler from collapsing the chains
    __asm__ volatile("" : "+x"(a0), "+x"(a1), "+x"(a2), "+x"(a3), "+x"(a4), "+x"(a5));
    __asm__ volatile("" : "+x"(a6), "+x"(a7), "+x"(a8), "+x"(a9), "+x"(a10), "+x"(a11));
  }
  vf s = ((a0 + a1) + (a2 + a3)) + ((a4 + a5) + (a6 + a7)) + ((a8 + a9) + (a10 + a11));
  return vhsum(s);
}

float probe_bf16_chains(int64_t iters, float seed) {
#if defined(__AVX512BF16__)
  // Twelve named accumulators (an array would round-trip through the stack
  // each iteration and halve the rate).
  __m512 c0 = _mm512_set1_ps(seed), c1 = _mm512_set1_ps(seed + 1), c2 = _mm512_set1_ps(seed + 2);
  __m512 c3 = _mm512_set1_ps(seed + 3), c4 = _mm512_set1_ps(seed + 4), c5 = _mm512_set1_ps(seed + 5);
  __m512 c6 = _mm512_set1_ps(seed + 6), c7 = _mm512_set1_ps(seed + 7), c8 = _mm512_set1_ps(seed + 8);
  __m512 c9 = _mm512_set1_ps(seed + 9), c10 = _mm512_set1_ps(seed + 10), c11 = _mm512_set1_ps(seed + 11);
  __m512bh a = _mm512_cvtne2ps_pbh(_mm512_set1_ps(0.5f), _mm512_set1_ps(0.25f));
  __m512bh b = _mm512_cvtne2ps_pbh(_mm512_set1_ps(1e-3f), _mm512_set1_ps(2e-3f));
  for (int64_t i = 0; i < iters; ++i) {
    c0 = _mm512_dpbf16_ps(c0, a, b); c1 = _mm512_dpbf16_ps(c1, a, b); c2 = _mm512_dpbf16_ps(c2, a, b);
    c3 = _mm512_dpbf16_ps(c3, a, b); c4 = _mm512_dpbf16_ps(c4, a, b); c5 = _mm512_dpbf16_ps(c5, a, b);
    c6 = _mm512_dpbf16_ps(c6, a, b); c7 = _mm512_dpbf16_ps(c7, a, b); c8 = _mm512_dpbf16_ps(c8, a, b);
    c9 = _mm512_dpbf16_ps(c9, a, b); c10 = _mm512_dpbf16_ps(c10, a, b); c11 = _mm512_dpbf16_ps(c11, a, b);
    __asm__ volatile("" : "+v"(c0), "+v"(c1), "+v"(c2), "+v"(c3), "+v"(c4), "+v"(c5));
    __asm__ volatile("" : "+v"(c6), "+v"(c7), "+v"(c8), "+v"(c9), "+v"(c10), "+v"(c11));
  }
  __m512 s = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(c0, c1), _mm512_add_ps(c2, c3)),
                           _mm512_add_ps(_mm512_add_ps(c4, c5), _mm512_add_ps(c6, c7)));
  s = _mm512_add_ps(s, _mm512_add_ps(_mm512_add_ps(c8, c9), _mm512_add_ps(c10, c11)));
  return _mm512_reduce_add_ps(s);
#else
  (void)iters;
  (void)seed;
  return -1.0f;
#endif
}

double probe_read_sum(const float* p, int64_t n) {
  vf s0 = vzero(), s1 = vzero(), s2 = vzero(), s3 = vzero();
  int64_t i = 0;
  for (; i + 4 * W <= n; i += 4 * W) {
    s0 += vload(p + i);
    s1 += vload(p + i + W);
    s2 += vload(p + i + 2 * W);
    s3 += vload(p + i + 3 * W);
  }
  double s = vhsum((s0 + s1) + (s2 + s3));
  for (; i < n; ++i) s += p[i];
  return s;
}

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
