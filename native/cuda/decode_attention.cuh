// Host launchers of the decoding kernels (decode_attention.cu): the
// key/value store into the cache, single-query attention over the cache
// (flash-decoding: split over positions, then a combine) and the embedding
// of rows at their own positions. The contract is the Backend's "decoding"
// section (core/backend.h); native/cpu/decode_attention.* is the reference.
// Device memory only, `rows` included; every launch is checked.
//
// Legend: M rows, H heads, D head size, C = H*D.
#pragma once
#include <cuda_runtime.h>
#include <stdint.h>

#include <cstddef>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

// Keys per chunk of the split over positions. A constant (not chosen from
// M or H) so that a row's result never depends on the other rows of a call.
constexpr int kDecodeChunk = 256;
// Largest head size the attention kernel takes (q is staged in shared memory).
constexpr int kDecodeMaxHeadDim = 256;

// cache[K, V slot pos % P of each row] = k[r], v[r] ([C] at stride ld),
// rounded to nearest even into a bf16 cache; rows with pos < 0 are skipped.
void decode_kv_store(TensorRef cache, const KvRow* rows, int M, const float* k, const float* v, int64_t ld, int H,
                     int D, cudaStream_t s);

// Floats of scratch decode_attention needs (0 when max_keys fits one chunk).
size_t decode_attention_scratch_floats(int M, int H, int D, int max_keys);
// out[r, h] = softmax(scale * q[r, h] . K[j]) @ V[j], j = first..pos, in
// fp32 from an fp32 or bf16 cache. max_keys >= every row's pos - first + 1; scratch: at least
// decode_attention_scratch_floats(...) floats (may be null when that is 0).
void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, CTensorRef cache, const KvRow* rows,
                      int M, int H, int D, float scale, int max_keys, float* scratch, cudaStream_t s);

// out[r, C] = wte[tokens[r]] + wpe[positions[r]].
void decode_embedding(float* out, const int32_t* tokens, const int32_t* positions, const float* wte, const float* wpe,
                      int M, int C, cudaStream_t s);

}  // namespace cuda
}  // namespace gpt
