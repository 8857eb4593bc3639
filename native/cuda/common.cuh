// Small device helpers shared by the kernels: bf16 packing, the tensor-core
// instruction (mma.sync m16n8k16, bf16 in, fp32 accumulate) and warp
// reductions.
//
// Fragment layout of mma.m16n8k16 (PTX ISA), g = lane / 4, t = lane % 4:
//   A (16x16, row-major): a[0] = (g, 2t..2t+1), a[1] = (g+8, 2t..2t+1),
//                         a[2] = (g, 2t+8..2t+9), a[3] = (g+8, 2t+8..2t+9)
//   B (16x8, "col-major", k x n): b[0] = (k 2t..2t+1, n g), b[1] = (k 2t+8..2t+9, n g)
//   C (16x8, fp32): c[0..1] = (g, 2t..2t+1), c[2..3] = (g+8, 2t..2t+1)
// Each a[i]/b[i] is one 32-bit register holding two bf16, lower index in the
// low half. Every tile in shared memory is stored with the k index
// contiguous, so each register is one aligned 32-bit shared load.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>
#include <stdint.h>

namespace gpt {
namespace cuda {

__device__ __forceinline__ uint32_t pack_bf16(float lo, float hi) {
  __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);  // .x = lo (low half), .y = hi
  return *reinterpret_cast<uint32_t*>(&v);
}

// d += a @ b on one 16x8x16 tile.
__device__ __forceinline__ void mma_bf16_16816(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
#ifdef GPT_CUDA_EMU
  ::gpt_emu::mma_m16n8k16_bf16_f32(d, a, b);  // the SIMT emulator (emu/runtime.cc)
#else
  asm volatile(
      "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 "
      "{%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, {%0, %1, %2, %3};\n"
      : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
      : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b[0]), "r"(b[1]));
#endif
}

__device__ __forceinline__ uint32_t lds32(const __nv_bfloat16* p) { return *reinterpret_cast<const uint32_t*>(p); }

__device__ __forceinline__ float warp_sum(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}
__device__ __forceinline__ float warp_max(float v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffffu, v, o));
  return v;
}
__device__ __forceinline__ double warp_sum_d(double v) {
#pragma unroll
  for (int o = 16; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
  return v;
}

// Elements of either storage type (backend.h DType) as fp32: a bf16 element
// widens exactly, an fp32 value stored as bf16 rounds to nearest even.
__device__ __forceinline__ float load_f32(const float* p, int64_t i) { return p[i]; }
__device__ __forceinline__ float load_f32(const __nv_bfloat16* p, int64_t i) { return __bfloat162float(p[i]); }
__device__ __forceinline__ void store_f32(float* p, int64_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store_f32(__nv_bfloat16* p, int64_t i, float v) { p[i] = __float2bfloat16_rn(v); }

// GELU, tanh form (GPT-2's gelu_new): 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))).
// One definition for gelu_forward (gelu.cu) and the GEMM's fused epilogue.
__device__ __forceinline__ float gelu_tanh(float x) {
  const float u = 0.7978845608028654f * (x + 0.044715f * x * x * x);
  return 0.5f * x * (1.0f + tanhf(u));
}

inline int ceil_div(long long a, long long b) { return static_cast<int>((a + b - 1) / b); }

// Grid size for grid-stride elementwise kernels: enough blocks to fill the
// GPU, never more than the work needs.
inline unsigned elementwise_blocks(long long n, int threads) {
  long long b = (n + threads - 1) / threads;
  if (b > 65535LL * 8) b = 65535LL * 8;
  if (b < 1) b = 1;
  return static_cast<unsigned>(b);
}

}  // namespace cuda
}  // namespace gpt
