// Matrix-vector / small-M kernels for KV-cache decoding on the CPU: the CPU
// backend's decode_linear and decode_head (core/backend.h "decoding: the
// linear layers"; bf16 copies made by decode_weight_pack). A decode step
// multiplies a handful of rows (one per sequence) by every weight of the
// model, so it is bound by reading the weights: these kernels stream each
// weight once per call for all M rows, with no packing per call, split over
// output columns on the global pool.
//
// fp32 linear: w is read in chunks of kDecodeChunk rows (a constant), each
// chunk front to back, a few rows side by side, into partial sums over all
// columns of a wide tile; the partials are then added in chunk order. Rows of
// Conv1D weights are short (N floats), and the prefetchers follow such
// sequential streams much better than runs of one column tile per row.
//
// Determinism: every output element is one chain of multiply-adds over k in
// order (in vector lanes, for the head reduced by a fixed tree; for the fp32
// linear one chain per chunk, the chunks then added in order) plus the bias,
// whatever M, the register blocking or the thread count; so a row's result
// does not depend on the other rows of the call (a sequence decodes bitwise
// the same alone and in a batch) nor on the pool size. Per instruction-set
// path, as everywhere in the engine.
//
// Weights:
//   linear  w [K, N] row-major (Conv1D [in, out]): out[M, N] = x[M, K] @ w + bias
//   head    e [N, K] row-major (the tied wte):     out[M, N] = x[M, K] @ e^T
// bf16 variants read a copy of the weights made once by the pack functions
// (round to nearest even) and round x to bf16; products accumulate in fp32
// (AVX512_BF16 dot products where the CPU has them, else the same bf16
// numbers multiplied in fp32: equal up to summation order).
//
// Packed layouts (the same on every path, so the path may change at run time):
//   linear bf16: column tiles of 32; tile t holds, for kp = 0 .. ceil(K/2)-1,
//     32 uint32 values (bf16 of w[2kp, c] in the low half, of w[2kp+1, c] in
//     the high half), c = 32t .. 32t+31; values past K or N are 0. One tile
//     is a contiguous stream, and each 32-bit lane is what vdpbf16ps takes.
//   head bf16: rows of Kp = K rounded up to 32 bf16 values, zero padded.
#pragma once
#include <cstddef>
#include <cstdint>

#include "dispatch.h"

namespace gpt {
namespace cpu {

constexpr int kDecodeTile = 32;  // columns per tile of the packed bf16 linear layout
constexpr int kDecodeChunk = 64;  // rows of w per chunk of the fp32 linear

// Arguments of one kernel call; the per-path bodies compute output columns
// [n0, n1) for every row.
struct DecodeArgs {
  int M = 0, K = 0, N = 0;
  const float* x = nullptr;      // [M, K] (fp32 kernels)
  const uint32_t* xp = nullptr;  // [M, Kx] bf16 pairs of x (bf16 kernels)
  int64_t ldxp = 0;              // uint32 per row of xp
  const float* w = nullptr;      // fp32 weights
  const void* wb = nullptr;      // packed bf16 weights
  const float* bias = nullptr;   // [N] or null
  float* out = nullptr;          // [M, N]
  bool dpbf16 = false;           // AVX512_BF16 dot products (AVX-512 path, capable CPU)
};

}  // namespace cpu
}  // namespace gpt

// fp32 linear in two parts: partial sums of rows [k0, k1) of w over columns
// [n0, n1) into part [M, ldp] (a.out unused), then out = the partials of
// `chunks` chunks (chunk_stride floats apart) summed in chunk order + bias.
GPT_DECLARE_ISA_FN(void decode_linear_f32_part(const DecodeArgs& a, int k0, int k1, int n0, int n1, float* part,
                                               int64_t ldp))
GPT_DECLARE_ISA_FN(void decode_linear_f32_sum(const DecodeArgs& a, const float* part, int chunks,
                                              int64_t chunk_stride, int64_t ldp, int n0, int n1))
GPT_DECLARE_ISA_FN(void decode_linear_bf16_cols(const DecodeArgs& a, int n0, int n1))
GPT_DECLARE_ISA_FN(void decode_head_f32_rows(const DecodeArgs& a, int n0, int n1))
GPT_DECLARE_ISA_FN(void decode_head_bf16_rows(const DecodeArgs& a, int n0, int n1))

namespace gpt {
namespace cpu {

// uint32 values of the packed linear layout for w [K, N].
size_t decode_linear_bf16_size(int K, int N);
void decode_pack_linear_bf16(uint32_t* dst, const float* w, int K, int N);
// bf16 values per packed head row, and the packing of e [N, K].
int decode_head_row(int K);
void decode_pack_head_bf16(uint16_t* dst, const float* e, int N, int K);

// The kernels, on the global pool (see the top of this file).
void decode_linear_f32(float* out, const float* x, const float* w, const float* bias, int M, int K, int N);
void decode_linear_bf16(float* out, const float* x, const uint32_t* wp, const float* bias, int M, int K, int N);
void decode_head_f32(float* out, const float* x, const float* e, int M, int K, int N);
void decode_head_bf16(float* out, const float* x, const uint16_t* ep, int M, int K, int N);

}  // namespace cpu
}  // namespace gpt
