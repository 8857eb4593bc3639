// The decoding ops of the Backend contract on the CPU (core/backend.h,
// "decoding"): the key/value store into the cache, single-query attention
// over the cache, and the embedding of rows at their own positions. Host
// memory; the work runs on the global pool. native/cuda/decode_attention.cu
// is the GPU twin, held to these by test/cuda/decode-ops.test.ts.
//
// Legend: M rows, H heads, D head size, C = H*D, P cache slots of a row's
// (sequence, layer).
#pragma once
#include <cstdint>

#include "../core/backend.h"

namespace gpt {
namespace cpu {

// cache[row's K, V at slot pos % P] = k[r], v[r] ([C] rows at stride ld).
void decode_kv_store(float* cache, const KvRow* rows, int M, const float* k, const float* v, int64_t ld, int H, int D);

// out[r, h] = softmax(scale * q[r, h] . K[j]) @ V[j], j = first..pos.
// A run of at least 16 consecutive rows on one cache at consecutive
// positions (the chunk of one sequence in an extend) goes in tiles of 64
// queries through the fused attention's tile kernels (online softmax over
// key tiles at multiples of 64 positions; fp32, the current ISA path); any
// other row goes alone, or in a group of up to 8 rows of a shorter run that
// reads each key once for the group, in a fixed order over its positions
// (a step's kernel). So a row's result depends on its query, its band, the
// cache and whether its run is tiled, never on the other sequences' rows,
// the grouping or the thread count; a row never reads a value outside the
// bands of its run.
void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, const float* cache, const KvRow* rows,
                      int M, int H, int D, float scale);

// out[r] = wte[tokens[r]] + wpe[positions[r]], rows [C].
void decode_embedding(float* out, const int32_t* tokens, const int32_t* positions, const float* wte, const float* wpe,
                      int M, int C);

}  // namespace cpu
}  // namespace gpt
