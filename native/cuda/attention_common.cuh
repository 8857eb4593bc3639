// What the bf16 (attention.cu) and fp32 (attention_fp32.cu) attention kernels
// share: the rule for which (query, key) pairs count, built from an
// AttnShape, and the one-time raise of a kernel's dynamic shared-memory limit.
#pragma once
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <algorithm>
#include <atomic>
#include <string>

#include "../core/backend.h"
#include "../core/error.h"
#include "check.cuh"

namespace gpt {
namespace cuda {

constexpr float kLog2e = 1.4426950408889634f;

// Which (query i, key j) pairs count: j <= i, j > i - window when banded, both
// < T, and with documents j >= the first position of query i's document
// (AttnShape::doc_start). A kernel takes its batch row's document starts
// once (docs(b): null without documents) and each query row's start
// (first(ds, i): 0 without documents and past T).
struct Mask {
  int T, window;
  bool banded;
  const int32_t* doc;  // [B, T] document starts in device memory, or null
  __device__ __forceinline__ bool ok(int i, int j) const {
    return j <= i && i < T && j < T && (!banded || j > i - window);
  }
  __device__ __forceinline__ bool ok(int i, int j, int first) const { return j >= first && ok(i, j); }
  // True when some pair in queries [q0, q0+nq) x keys [k0, k0+nk) fails ok()
  // (the tile is cut by the diagonal, the band edge or the end of the sequence).
  __device__ __forceinline__ bool cuts(int q0, int nq, int k0, int nk) const {
    return (k0 + nk - 1 > q0) || (q0 + nq > T) || (k0 + nk > T) || (banded && k0 <= q0 + nq - 1 - window);
  }
  __device__ __forceinline__ const int32_t* docs(int b) const { return doc ? doc + (long long)b * T : nullptr; }
  __device__ __forceinline__ int first(const int32_t* ds, int i) const { return ds && i < T ? ds[i] : 0; }
  // cuts(), or a document start after k0 in the tile's rows (the starts
  // never decrease along a row, so the last row's is the largest).
  __device__ __forceinline__ bool cuts(const int32_t* ds, int q0, int nq, int k0, int nk) const {
    return cuts(q0, nq, k0, nk) || (ds && ds[min(q0 + nq, T) - 1] > k0);
  }
  // The first key a query tile starting at q0 can see: its first row's band
  // start or document start (the smallest of the tile's rows).
  __device__ __forceinline__ int key_lo(const int32_t* ds, int q0) const {
    const int lo = banded ? max(0, q0 - window + 1) : 0;
    return ds ? max(lo, ds[q0]) : lo;
  }
  // One past the last query that sees a key of [k0, k0+nk): the band's end,
  // then (documents) the first query after the tile whose document starts
  // past its last key (a binary search; every thread gets the same answer).
  __device__ __forceinline__ int query_hi(const int32_t* ds, int k0, int nk) const {
    int hi = banded ? min(T, k0 + nk - 1 + window) : T;
    if (ds) {
      const int klast = min(k0 + nk, T) - 1;
      int l = klast + 1;
      while (l < hi) {
        const int mid = (l + hi) / 2;
        if (ds[mid] > klast)
          hi = mid;
        else
          l = mid + 1;
      }
    }
    return hi;
  }
};

// One (b, h) slice of a [B, H, T, D] view read as fp32 whatever its storage
// (AttnTensor: fp32 `ptr` or bf16 `bf16`; a bf16 element widens exactly).
// at(i): element i of the slice (i = t * st + d).
struct AttnRows {
  const float* f;
  const uint16_t* h;
  long long st;
  __device__ __forceinline__ float at(long long i) const {
    return h ? __uint_as_float(static_cast<uint32_t>(h[i]) << 16) : __ldg(f + i);
  }
};
__device__ __forceinline__ AttnRows attn_rows(const AttnTensor& x, int b, int h) {
  AttnRows r;
  const long long off = b * x.sb + h * x.sh;
  r.f = x.bf16 ? nullptr : x.ptr + off;
  r.h = x.bf16 ? x.bf16 + off : nullptr;
  r.st = x.st;
  return r;
}
// Writes element i of a view's (b, h) slice at `off`: rounded once to bf16
// (nearest even) for a bf16 view.
__device__ __forceinline__ void attn_store(const AttnTensor& x, long long off, float v) {
  if (x.bf16)
    reinterpret_cast<__nv_bfloat16*>(x.bf16)[off] = __float2bfloat16_rn(v);
  else
    x.ptr[off] = v;
}

// A band at least as wide as the sequence is dense.
inline Mask make_mask(const AttnShape& s) {
  Mask m;
  m.T = s.seq;
  m.banded = s.pattern == AttnPattern::Banded && s.window < s.seq;
  m.window = m.banded ? s.window : s.seq;
  m.doc = s.doc_start;
  return m;
}

// Where the backward's dQ partials live: key tile kt's (unscaled) dS K for
// query row i is the D floats at tile_rows(bh, kt) + i * D, for the rows the
// tile's keys are seen by (i >= kt * tile). Dense: packed, tile kt holds
// rows kt*tile .. T-1 only (about T^2 / (2 tile) rows per (b, h)). Banded:
// `slots` rows-of-T blocks, tile kt in block kt % slots; enough that the
// (consecutive) key tiles one row sees never share a block: a row sees
// `window` keys, so at most ceil((window - 1) / tile) + 1 tiles. (Documents
// only narrow what a row sees.)
struct DqPartials {
  float* p;
  int T, D, tile, slots;
  bool packed;
  long long rows;  // per (b, h)
  __device__ __forceinline__ float* tile_rows(long long bh, int kt) const {
    const long long first = packed ? (long long)kt * T - (long long)tile * kt * (kt - 1) / 2 - (long long)kt * tile
                                   : (long long)(kt % slots) * T;
    return p + (bh * rows + first) * D;
  }
};
inline DqPartials make_dq_partials(const AttnShape& s, const Mask& m, int tile, float* p) {
  DqPartials q;
  q.p = p;
  q.T = s.seq;
  q.D = s.head_dim;
  q.tile = tile;
  const long long tiles = (s.seq + tile - 1) / tile;
  q.packed = !m.banded;
  q.slots = (int)(m.banded ? std::min<long long>(tiles, (m.window - 1 + tile - 1) / tile + 1) : tiles);
  q.rows = q.packed ? tiles * s.seq - (long long)tile * tiles * (tiles - 1) / 2 : (long long)q.slots * s.seq;
  return q;
}
inline size_t dq_partials_floats(const DqPartials& q, const AttnShape& s) {
  return (size_t)s.batch * s.heads * q.rows * q.D;
}

// Raises a kernel's dynamic shared-memory limit once per process and
// instantiation (`done`; threads that race here set the same value), first
// checking that the device allows that much per block, so a GPU with less
// (sm_86/89 allow 99 KiB) gets a clear error naming the head size instead of
// a failed launch. The backend uses device 0 only; a second device would need
// the limit raised there too.
template <typename K>
void allow_smem(K* kernel, int bytes, std::atomic<bool>& done, int head_dim, const char* op) {
  if (done.load()) return;
  int dev = 0, optin = 0;
  CUDA_CHECK(cudaGetDevice(&dev), op);
  CUDA_CHECK(cudaDeviceGetAttribute(&optin, cudaDevAttrMaxSharedMemoryPerBlockOptin, dev), op);
  if (bytes > optin)
    throw GptError(ErrorCode::InvalidArgument, std::string(op) + ": head_dim " + std::to_string(head_dim) +
                                                   " needs " + std::to_string(bytes) +
                                                   " bytes of shared memory per block, this GPU allows " +
                                                   std::to_string(optin) + "; use a smaller head size");
  CUDA_CHECK(cudaFuncSetAttribute(reinterpret_cast<const void*>(kernel), cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  bytes),
             op);
  done.store(true);
}

}  // namespace cuda
}  // namespace gpt
