// Copies into shared memory and out of it into mma fragments (sm_80+):
//
//   cp_async_16(smem_dst, gmem_src)   cp.async.cg.shared.global, 16 bytes
//   cp_async_16_zfill(dst, src, n)    the same, copying n (0..16) bytes and
//                                     zero-filling the rest (edge tiles)
//   cp_async_8 / cp_async_4           cp.async.ca.shared.global, 8 / 4 bytes
//   cp_async_commit()                 cp.async.commit_group
//   cp_async_wait<N>()                cp.async.wait_group N
//   cp_async_wait_all()               cp.async.wait_all
//   ldmatrix_x1/_x2/_x4(regs, row)    ldmatrix.sync.aligned.m8n8.xK.shared.b16
//   ldmatrix_x1/_x2/_x4_trans         the same with .trans
//
// cp.async is asynchronous and per thread: a copy is only guaranteed to have
// landed in shared memory after the issuing thread's cp_async_wait<N>() (for
// every group but the newest N committed ones) or cp_async_wait_all() (all,
// committed or not). Other threads see it only after a barrier that follows
// that wait. Both addresses of a copy must be aligned to its size; the
// source must be global memory (cudaMalloc), the destination shared memory.
//
// ldmatrix is warp-wide (all 32 lanes, converged, same form): lane 8*i + r
// gives the shared address of row r of matrix i (lanes 0-7 for x1, 0-15 for
// x2, all for x4; the others' addresses are ignored). A row is 8 b16
// elements, 16 contiguous bytes, 16-byte aligned. regs[i] of lane L receives
// matrix i's elements (L/4, 2*(L%4)) in the low half and (L/4, 2*(L%4)+1) in
// the high half; with .trans, (2*(L%4), L/4) and (2*(L%4)+1, L/4). That is
// the A/B/C fragment layout of mma.m16n8k16 (common.cuh) one 8x8 block at a
// time.
//
// On a GPU these are inline PTX; under the SIMT emulator (GPT_CUDA_EMU,
// docs/dev/CUDA-EMU.md) they are emulated: copies are deferred to the wait
// that completes their group, so a missing wait reads stale shared memory,
// and misaligned addresses fail the launch.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

namespace gpt {
namespace cuda {

#if defined(GPT_CUDA_EMU)

__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
  ::gpt_emu::cp_async(smem_dst, gmem_src, 16, 16);
}
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, int src_bytes) {
  ::gpt_emu::cp_async(smem_dst, gmem_src, 16, src_bytes);
}
__device__ __forceinline__ void cp_async_8(void* smem_dst, const void* gmem_src) {
  ::gpt_emu::cp_async(smem_dst, gmem_src, 8, 8);
}
__device__ __forceinline__ void cp_async_4(void* smem_dst, const void* gmem_src) {
  ::gpt_emu::cp_async(smem_dst, gmem_src, 4, 4);
}
__device__ __forceinline__ void cp_async_commit() { ::gpt_emu::cp_async_commit(); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0, "cp.async.wait_group takes N >= 0");
  ::gpt_emu::cp_async_wait_group(N);
}
__device__ __forceinline__ void cp_async_wait_all() { ::gpt_emu::cp_async_wait_all(); }

__device__ __forceinline__ void ldmatrix_x1(uint32_t* regs, const void* row) { ::gpt_emu::ldmatrix(regs, row, 1, false); }
__device__ __forceinline__ void ldmatrix_x2(uint32_t* regs, const void* row) { ::gpt_emu::ldmatrix(regs, row, 2, false); }
__device__ __forceinline__ void ldmatrix_x4(uint32_t* regs, const void* row) { ::gpt_emu::ldmatrix(regs, row, 4, false); }
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t* regs, const void* row) {
  ::gpt_emu::ldmatrix(regs, row, 1, true);
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t* regs, const void* row) {
  ::gpt_emu::ldmatrix(regs, row, 2, true);
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* regs, const void* row) {
  ::gpt_emu::ldmatrix(regs, row, 4, true);
}

#else  // nvcc

// Shared-window address of a generic pointer into shared memory.
__device__ __forceinline__ uint32_t smem_u32(const void* p) {
  return static_cast<uint32_t>(__cvta_generic_to_shared(p));
}

#if defined(__CUDA_ARCH__) && __CUDA_ARCH__ < 800
#error "smem_copy.cuh needs sm_80 or newer (cp.async)"
#endif

__device__ __forceinline__ void cp_async_16(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16;\n" ::"r"(smem_u32(smem_dst)),
               "l"(__cvta_generic_to_global(gmem_src))
               : "memory");
}
// Copies src_bytes (0..16) and fills the rest of the 16 bytes with zeros.
__device__ __forceinline__ void cp_async_16_zfill(void* smem_dst, const void* gmem_src, int src_bytes) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_u32(smem_dst)),
               "l"(__cvta_generic_to_global(gmem_src)), "r"(src_bytes)
               : "memory");
}
__device__ __forceinline__ void cp_async_8(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 8;\n" ::"r"(smem_u32(smem_dst)),
               "l"(__cvta_generic_to_global(gmem_src))
               : "memory");
}
__device__ __forceinline__ void cp_async_4(void* smem_dst, const void* gmem_src) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4;\n" ::"r"(smem_u32(smem_dst)),
               "l"(__cvta_generic_to_global(gmem_src))
               : "memory");
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n" ::: "memory"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  static_assert(N >= 0, "cp.async.wait_group takes N >= 0");
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N) : "memory");
}
__device__ __forceinline__ void cp_async_wait_all() { asm volatile("cp.async.wait_all;\n" ::: "memory"); }

__device__ __forceinline__ void ldmatrix_x1(uint32_t* regs, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.shared.b16 {%0}, [%1];\n" : "=r"(regs[0]) : "r"(smem_u32(row)) : "memory");
}
__device__ __forceinline__ void ldmatrix_x2(uint32_t* regs, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(regs[0]), "=r"(regs[1])
               : "r"(smem_u32(row))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4(uint32_t* regs, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(smem_u32(row))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x1_trans(uint32_t* regs, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x1.trans.shared.b16 {%0}, [%1];\n"
               : "=r"(regs[0])
               : "r"(smem_u32(row))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x2_trans(uint32_t* regs, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x2.trans.shared.b16 {%0, %1}, [%2];\n"
               : "=r"(regs[0]), "=r"(regs[1])
               : "r"(smem_u32(row))
               : "memory");
}
__device__ __forceinline__ void ldmatrix_x4_trans(uint32_t* regs, const void* row) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
               : "=r"(regs[0]), "=r"(regs[1]), "=r"(regs[2]), "=r"(regs[3])
               : "r"(smem_u32(row))
               : "memory");
}

#endif

}  // namespace cuda
}  // namespace gpt
