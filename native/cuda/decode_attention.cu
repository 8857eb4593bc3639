// Decoding on the GPU: the KV cache lives in device memory and a decode step
// never leaves the device (contract: core/backend.h "decoding"; reference:
// native/cpu/decode_attention.cc).
//
// Single-query attention, flash-decoding style. One block of 128 threads
// takes one (row, head, chunk of kDecodeChunk consecutive positions):
//   1. q[r, h] into shared memory;
//   2. scores = scale * q . K[slot]: each warp takes 4 keys at a time (so
//      several loads are in flight; the kernel is bound by memory latency
//      at small batches), lanes over D, then a butterfly sum per key;
//   3. the chunk's max m and sum l of exp(score - m) (block reductions in a
//      fixed order);
//   4. o[d] = sum over the chunk's keys of exp(score - m) * V[slot][d]: for
//      D <= 128 the block forms 128 / D groups of D threads, each group
//      takes every G-th key, and the groups' sums are added in group order.
// A row whose keys fit one chunk writes out = o / l directly. Longer rows
// write (m, l, o) per chunk to scratch and a combine kernel (one block per
// row and head) rescales the chunks to their common max and adds them in
// chunk order. The split depends only on kDecodeChunk, so results are
// deterministic and a row's result does not depend on the other rows.
// Scores, softmax and accumulation are fp32, as on the CPU.
//
// The cache is fp32 or bf16 (Backend::kv_cache_dtype; the kernels are
// templates over its element type T). kv_store rounds K and V to bf16 (to
// nearest even) when it stores them into a bf16 cache; the attention widens
// each element exactly and computes as above. Where a row's bf16 K and V
// are 16-byte aligned (D a multiple of 8, which the decode sessions' cache
// layout then gives every row), keys and values are read 8 elements per
// 16-byte load: for the scores a group of lanes takes a key, lane e of the
// group elements 8e..8e+7 (D <= 256: one vector per lane; a warp scores
// several keys side by side), and for the values the block forms groups of
// D / 8 threads, each thread 8 consecutive dimensions. Otherwise (any D, and the
// fp32 cache) the loads are per element as described above.
//
// Slots: position j of a row lives in slot j % P of its cache ([H, P, D]);
// the positions a row attends (first..pos, fewer than P + 1 of them) are
// consecutive, so a chunk walks the ring from slot (first + j0) % P and
// wraps at most once.
//
// Legend: M rows, H heads, D head size, C = H*D, P slots, n = pos - first + 1
// keys of a row, nc = ceil(max_keys / kDecodeChunk) chunks in the grid.
#include <math.h>

#include "check.cuh"
#include "common.cuh"
#include "decode_attention.cuh"

namespace gpt {
namespace cuda {
namespace {

constexpr int kThreads = 128;
constexpr int kWarps = kThreads / 32;
constexpr int kKeysPerWarp = 4;  // keys a warp scores at once
constexpr int kVec = 8;          // bf16 elements per 16-byte load
// Floats of the per-group partial sums of the output: kThreads (one per
// thread) for the per-element path; a bf16 cache's vector path has
// kThreads / (D / 8) groups of D floats, at most 8 kThreads.
template <typename T>
constexpr int kGroupFloats = sizeof(T) == 2 ? kThreads * kVec : kThreads;

// The 8 bf16 of a 16-byte load as fp32 (exact), in memory order.
__device__ __forceinline__ void unpack_bf16x8(const uint4 x, float (&f)[kVec]) {
  const unsigned w[4] = {x.x, x.y, x.z, x.w};
#pragma unroll
  for (int i = 0; i < 4; ++i) {
    f[2 * i] = __uint_as_float(w[i] << 16);
    f[2 * i + 1] = __uint_as_float(w[i] & 0xffff0000u);
  }
}

// Reductions over the block's kThreads threads; every thread gets the result.
// Warp values combine in warp order, so the result is deterministic. `red`
// holds kWarps floats; the trailing barrier lets the caller reuse it.
__device__ __forceinline__ float block_max(float v, float* red) {
  v = warp_max(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = red[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) r = fmaxf(r, red[w]);
  __syncthreads();
  return r;
}
__device__ __forceinline__ float block_sum(float v, float* red) {
  v = warp_sum(v);
  if ((threadIdx.x & 31) == 0) red[threadIdx.x >> 5] = v;
  __syncthreads();
  float r = red[0];
#pragma unroll
  for (int w = 1; w < kWarps; ++w) r += red[w];
  __syncthreads();
  return r;
}

// Grid (M): one block per row; threads over the row's C channels. A bf16
// cache gets K and V rounded to nearest even.
template <typename T>
__global__ void decode_kv_store_kernel(T* __restrict__ cache, const KvRow* __restrict__ rows,
                                       const float* __restrict__ k, const float* __restrict__ v, int64_t ld, int H,
                                       int D) {
  const int r = blockIdx.x;
  const KvRow w = rows[r];
  if (w.pos < 0) return;
  const int64_t slot = w.pos % w.slots;
  const int C = H * D;
  const float* kr = k + (int64_t)r * ld;
  const float* vr = v + (int64_t)r * ld;
  for (int c = threadIdx.x; c < C; c += blockDim.x) {
    const int h = c / D;
    const int d = c - h * D;
    const int64_t at = ((int64_t)h * w.slots + slot) * D + d;  // [H, P, D]
    store_f32(cache, w.k + at, kr[c]);
    store_f32(cache, w.v + at, vr[c]);
  }
}

// Grid (M, H, nc), kThreads threads. part_o [M, H, nc, D] and part_ml
// [M, H, nc, 2] (m, l) are written only when nc > 1; out only when nc == 1.
template <typename T>
__global__ void __launch_bounds__(kThreads) decode_attention_chunk_kernel(
    float* __restrict__ out, int64_t ldo, float* __restrict__ part_o, float* __restrict__ part_ml,
    const float* __restrict__ q, int64_t ldq, const T* __restrict__ cache, const KvRow* __restrict__ rows, int H,
    int D, float scale, int nc) {
  __shared__ float qs[kDecodeMaxHeadDim];
  __shared__ float ps[kDecodeChunk];
  __shared__ float red[kWarps];
  __shared__ float vs[kGroupFloats<T>];  // per-group partial sums of the output
  const int r = blockIdx.x, h = blockIdx.y, c = blockIdx.z;
  const int tid = threadIdx.x, lane = tid & 31, warp = tid >> 5;
  const KvRow w = rows[r];
  const int n = w.pos - w.first + 1;
  const int j0 = c * kDecodeChunk;  // this chunk's first key, counted from `first`
  if (j0 >= n) return;              // the whole block leaves: nothing to do
  const int cnt = min(kDecodeChunk, n - j0);
  const int P = w.slots;
  const T* kc = cache + w.k + (int64_t)h * P * D;
  const T* vc = cache + w.v + (int64_t)h * P * D;
  // 16-byte loads of a bf16 cache: the same for every thread of the block.
  const bool vec = sizeof(T) == 2 && (D & (kVec - 1)) == 0 &&
                   ((reinterpret_cast<uintptr_t>(kc) | reinterpret_cast<uintptr_t>(vc)) & 15) == 0;
  const float* qh = q + (int64_t)r * ldq + (int64_t)h * D;
  for (int d = tid; d < D; d += kThreads) qs[d] = qh[d];
  __syncthreads();

  // Slot of the chunk's key i: s0 < P and i < cnt <= n <= P, so s0 + i < 2P
  // (one wrap at most). Computed from i alone, so loop iterations are
  // independent and their loads can be in flight together.
  const int s0 = (int)(((int64_t)w.first + j0) % P);
  auto slot = [&](int i) {
    const int s = s0 + i;
    return s >= P ? s - P : s;
  };
  // Scores: each warp takes kKeysPerWarp keys at a time (independent loads
  // for latency hiding), lanes over D, then one butterfly sum per key.
  if (vec) {
    // A key is D / 8 vectors: a group of lk lanes (the power of two >= D / 8)
    // takes one key, lane e of the group holding q[8e..8e+7] and reading that
    // vector of the key, so a warp scores 32 / lk keys side by side, each
    // kKeysPerWarp times per pass (D = 64: 16 keys of 128 bytes in flight).
    // The group's partial dot products are summed by butterflies within it.
    const int nv = D >> 3;
    int lk = 1;
    while (lk < nv) lk <<= 1;
    const int kpw = 32 / lk, sub = lane / lk, e = lane - sub * lk;
    const bool has = e < nv;
    float qv[kVec];
#pragma unroll
    for (int j = 0; j < kVec; ++j) qv[j] = has ? qs[e * kVec + j] : 0.0f;
    const int step = kpw * kKeysPerWarp;  // keys of one warp pass
    for (int i0 = warp * step; i0 < cnt; i0 += kWarps * step) {  // uniform over the warp
      float acc[kKeysPerWarp];
#pragma unroll
      for (int u = 0; u < kKeysPerWarp; ++u) {
        const int i = i0 + u * kpw + sub;
        acc[u] = 0.0f;
        if (has && i < cnt) {
          float kf[kVec];
          unpack_bf16x8(reinterpret_cast<const uint4*>(kc + (int64_t)slot(i) * D)[e], kf);
#pragma unroll
          for (int j = 0; j < kVec; ++j) acc[u] = fmaf(qv[j], kf[j], acc[u]);
        }
      }
#pragma unroll
      for (int u = 0; u < kKeysPerWarp; ++u) {
        float v = acc[u];
        for (int o = lk >> 1; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
        const int i = i0 + u * kpw + sub;
        if (e == 0 && i < cnt) ps[i] = v * scale;
      }
    }
  } else {
    for (int i0 = warp * kKeysPerWarp; i0 < cnt; i0 += kWarps * kKeysPerWarp) {
      float acc[kKeysPerWarp];
      const T* kr[kKeysPerWarp];
#pragma unroll
      for (int u = 0; u < kKeysPerWarp; ++u) {
        acc[u] = 0.0f;
        kr[u] = kc + (int64_t)slot(min(i0 + u, cnt - 1)) * D;  // keys past cnt are never read
      }
      for (int d = lane; d < D; d += 32) {
        const float qd = qs[d];
#pragma unroll
        for (int u = 0; u < kKeysPerWarp; ++u)
          if (i0 + u < cnt) acc[u] = fmaf(qd, load_f32(kr[u], d), acc[u]);
      }
#pragma unroll
      for (int u = 0; u < kKeysPerWarp; ++u) {
        const float v = warp_sum(acc[u]);
        if (lane == 0 && i0 + u < cnt) ps[i0 + u] = v * scale;
      }
    }
  }
  __syncthreads();

  float mx = -INFINITY;
  for (int i = tid; i < cnt; i += kThreads) mx = fmaxf(mx, ps[i]);
  mx = block_max(mx, red);
  float sum = 0.0f;
  for (int i = tid; i < cnt; i += kThreads) {
    const float e = expf(ps[i] - mx);
    ps[i] = e;
    sum += e;
  }
  sum = block_sum(sum, red);  // its barriers also publish ps[] to every thread

  // o[d] = sum_i p_i V[slot(i)][d]. With D <= kThreads the block splits
  // into G = kThreads / D groups of D threads; group g takes keys g, g + G,
  // ... and the G partial sums are added in group order (deterministic).
  // Larger D: every thread takes dimensions tid, tid + kThreads, ...
  const int64_t part = ((int64_t)r * H + h) * nc + c;
  auto finish = [&](int d, float acc) {
    if (nc == 1)
      out[(int64_t)r * ldo + (int64_t)h * D + d] = acc * (1.0f / sum);
    else
      part_o[part * D + d] = acc;
  };
  if (vec) {
    // Groups of D / 8 threads, thread e of a group taking dimensions
    // 8e..8e+7; G = kThreads / (D / 8) groups (at most 8 kThreads / D each
    // of D floats in vs), group g taking keys g, g + G, ..., added in group
    // order.
    const int tg = D >> 3, G = kThreads / tg, g = tid / tg, e = tid - g * tg;
    if (g < G) {
      float acc[kVec];
#pragma unroll
      for (int j = 0; j < kVec; ++j) acc[j] = 0.0f;
      for (int i = g; i < cnt; i += G) {
        float vf[kVec];
        unpack_bf16x8(reinterpret_cast<const uint4*>(vc + (int64_t)slot(i) * D)[e], vf);
        const float p = ps[i];
#pragma unroll
        for (int j = 0; j < kVec; ++j) acc[j] = fmaf(p, vf[j], acc[j]);
      }
#pragma unroll
      for (int j = 0; j < kVec; ++j) vs[g * D + e * kVec + j] = acc[j];
    }
    __syncthreads();
    for (int d = tid; d < D; d += kThreads) {
      float acc = vs[d];
      for (int k = 1; k < G; ++k) acc += vs[k * D + d];
      finish(d, acc);
    }
  } else if (D <= kThreads) {
    const int G = kThreads / D, g = tid / D, d = tid - g * D;
    float acc = 0.0f;
    if (g < G) {
#pragma unroll 4
      for (int i = g; i < cnt; i += G) acc = fmaf(ps[i], load_f32(vc, (int64_t)slot(i) * D + d), acc);
    }
    if (G > 1) {  // uniform over the block
      if (g < G) vs[tid] = acc;  // tid = g * D + d
      __syncthreads();
      if (tid < D) {
        acc = vs[tid];
        for (int k = 1; k < G; ++k) acc += vs[k * D + tid];
      }
    }
    if (tid < D) finish(tid, acc);  // (there g = 0 and d = tid)
  } else {
    for (int d = tid; d < D; d += kThreads) {
      float acc = 0.0f;
#pragma unroll 4
      for (int i = 0; i < cnt; ++i) acc = fmaf(ps[i], load_f32(vc, (int64_t)slot(i) * D + d), acc);
      finish(d, acc);
    }
  }
  if (nc > 1 && tid == 0) {
    part_ml[part * 2] = mx;
    part_ml[part * 2 + 1] = sum;
  }
}

// Grid (M, H), kThreads threads: out[r, h] from the row's ceil(n / chunk)
// partial results, rescaled to their common max and added in chunk order.
__global__ void __launch_bounds__(kThreads) decode_attention_combine_kernel(
    float* __restrict__ out, int64_t ldo, const float* __restrict__ part_o, const float* __restrict__ part_ml,
    const KvRow* __restrict__ rows, int H, int D, int nc) {
  const int r = blockIdx.x, h = blockIdx.y;
  const KvRow w = rows[r];
  const int n = w.pos - w.first + 1;
  int used = (n + kDecodeChunk - 1) / kDecodeChunk;  // chunks this row wrote
  if (used > nc) used = nc;  // (a row longer than max_keys breaks the contract; stay in bounds)
  const int64_t base = ((int64_t)r * H + h) * nc;
  // Every thread computes the same m and l in the same order (a handful of
  // chunks; cheaper than a broadcast through shared memory).
  float m = -INFINITY;
  for (int c = 0; c < used; ++c) m = fmaxf(m, part_ml[(base + c) * 2]);
  float l = 0.0f;
  for (int c = 0; c < used; ++c) l += part_ml[(base + c) * 2 + 1] * expf(part_ml[(base + c) * 2] - m);
  const float inv = 1.0f / l;
  for (int d = threadIdx.x; d < D; d += kThreads) {
    float acc = 0.0f;
    for (int c = 0; c < used; ++c) acc = fmaf(part_o[(base + c) * D + d], expf(part_ml[(base + c) * 2] - m), acc);
    out[(int64_t)r * ldo + (int64_t)h * D + d] = acc * inv;
  }
}

// Grid (M): one block per row; threads over C.
__global__ void decode_embedding_kernel(float* __restrict__ out, const int32_t* __restrict__ tokens,
                                        const int32_t* __restrict__ positions, const float* __restrict__ wte,
                                        const float* __restrict__ wpe, int C) {
  const int r = blockIdx.x;
  const float* a = wte + (int64_t)tokens[r] * C;
  const float* b = wpe + (int64_t)positions[r] * C;
  float* o = out + (int64_t)r * C;
  for (int c = threadIdx.x; c < C; c += blockDim.x) o[c] = a[c] + b[c];
}

int decode_chunks(int max_keys) { return (max_keys + kDecodeChunk - 1) / kDecodeChunk; }

}  // namespace

void decode_kv_store(TensorRef cache, const KvRow* rows, int M, const float* k, const float* v, int64_t ld, int H,
                     int D, cudaStream_t s) {
  if (M <= 0 || H <= 0 || D <= 0) return;
  if (cache.bf16())
    decode_kv_store_kernel<__nv_bfloat16><<<M, 128, 0, s>>>(static_cast<__nv_bfloat16*>(cache.ptr), rows, k, v, ld, H,
                                                            D);
  else
    decode_kv_store_kernel<float><<<M, 128, 0, s>>>(static_cast<float*>(cache.ptr), rows, k, v, ld, H, D);
  CUDA_CHECK_LAUNCH("kv_store");
}

size_t decode_attention_scratch_floats(int M, int H, int D, int max_keys) {
  const int nc = decode_chunks(max_keys);
  if (nc <= 1 || M <= 0 || H <= 0) return 0;
  return (size_t)M * H * nc * (size_t)(D + 2);
}

void decode_attention(float* out, int64_t ldo, const float* q, int64_t ldq, CTensorRef cache, const KvRow* rows,
                      int M, int H, int D, float scale, int max_keys, float* scratch, cudaStream_t s) {
  if (M <= 0 || H <= 0) return;
  GPT_CHECK_ARG(D >= 1 && D <= kDecodeMaxHeadDim, "decode_attention on CUDA supports head sizes 1 to " +
                                                      std::to_string(kDecodeMaxHeadDim) + " but received head_dim " +
                                                      std::to_string(D));
  GPT_CHECK_ARG(max_keys >= 1, "decode_attention: max_keys must be at least 1");
  GPT_CHECK_ARG(H <= 65535, "decode_attention: more than 65535 heads");
  const int nc = decode_chunks(max_keys);
  GPT_CHECK_ARG(nc <= 65535, "decode_attention: cache longer than 65535 chunks of positions");
  float* part_o = nullptr;
  float* part_ml = nullptr;
  if (nc > 1) {
    GPT_CHECK_ARG(scratch != nullptr, "decode_attention: no scratch for the split over positions");
    part_o = scratch;
    part_ml = scratch + (size_t)M * H * nc * D;
  }
  if (cache.bf16())
    decode_attention_chunk_kernel<__nv_bfloat16><<<dim3(M, H, nc), kThreads, 0, s>>>(
        out, ldo, part_o, part_ml, q, ldq, static_cast<const __nv_bfloat16*>(cache.ptr), rows, H, D, scale, nc);
  else
    decode_attention_chunk_kernel<float><<<dim3(M, H, nc), kThreads, 0, s>>>(
        out, ldo, part_o, part_ml, q, ldq, static_cast<const float*>(cache.ptr), rows, H, D, scale, nc);
  CUDA_CHECK_LAUNCH("decode_attention (chunks)");
  if (nc > 1) {
    decode_attention_combine_kernel<<<dim3(M, H), kThreads, 0, s>>>(out, ldo, part_o, part_ml, rows, H, D, nc);
    CUDA_CHECK_LAUNCH("decode_attention (combine)");
  }
}

void decode_embedding(float* out, const int32_t* tokens, const int32_t* positions, const float* wte, const float* wpe,
                      int M, int C, cudaStream_t s) {
  if (M <= 0 || C <= 0) return;
  decode_embedding_kernel<<<M, 256, 0, s>>>(out, tokens, positions, wte, wpe, C);
  CUDA_CHECK_LAUNCH("embedding_at");
}

}  // namespace cuda
}  // namespace gpt
