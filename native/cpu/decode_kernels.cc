// Decode kernels (decode_kernels.h): packing of the bf16 copies and the
// split of each call over the global pool. The per-path bodies live in
// decode_kernels_impl.h.
#include "decode_kernels.h"

#include <algorithm>
#include <atomic>
#include <memory>
#include <vector>

#include "../core/threadpool.h"
#include "bf16.h"

namespace gpt {
namespace cpu {

namespace {

// Columns per task of the bf16 linear (4 packed tiles, each a contiguous
// stream); the split never changes the numbers.
constexpr int kColsPerTask = 128;
// Rows of e (head) per task.
constexpr int kRowsPerTask = 256;
// Narrowest column tile of the fp32 linear (a tile of each row of w is read
// front to back: keep the runs long).
constexpr int kMinTileCols = 512;
// Partial sums (floats) one task adds up at the end of its tile, at most;
// beyond, a second pass over columns of kSumCols.
constexpr int64_t kFusedSumFloats = 64 * 1024;
constexpr int kSumCols = 128;

// x as bf16 pairs [M, ld] (zero past K) and the same values as floats
// [M, 2 * ld], per calling thread.
struct XBf16 {
  std::vector<uint32_t> pairs;
  std::vector<float> rounded;
};

XBf16& x_bf16(const float* x, int M, int K, int ld) {
  thread_local XBf16 s;
  s.pairs.assign(static_cast<size_t>(M) * ld, 0u);
  s.rounded.assign(static_cast<size_t>(M) * ld * 2, 0.0f);
  for (int m = 0; m < M; ++m)
    for (int k = 0; k < K; ++k) {
      const uint16_t h = bf16_bits(x[int64_t(m) * K + k]);
      s.pairs[static_cast<size_t>(m) * ld + k / 2] |= static_cast<uint32_t>(h) << (k % 2 ? 16 : 0);
      s.rounded[static_cast<size_t>(m) * ld * 2 + k] = bf16_to_float(h);
    }
  return s;
}

}  // namespace

size_t decode_linear_bf16_size(int K, int N) {
  const size_t tiles = static_cast<size_t>((N + kDecodeTile - 1) / kDecodeTile);
  return tiles * static_cast<size_t>((K + 1) / 2) * kDecodeTile;
}

void decode_pack_linear_bf16(uint32_t* dst, const float* w, int K, int N) {
  const int tiles = (N + kDecodeTile - 1) / kDecodeTile, KP = (K + 1) / 2;
  ThreadPool::global().parallel_for(tiles, [&](int64_t t, int) {
    uint32_t* d = dst + t * KP * kDecodeTile;
    for (int kp = 0; kp < KP; ++kp)
      for (int j = 0; j < kDecodeTile; ++j) {
        const int64_t c = t * kDecodeTile + j;
        const int k0 = 2 * kp, k1 = 2 * kp + 1;
        const uint32_t lo = c < N ? bf16_bits(w[int64_t(k0) * N + c]) : 0;
        const uint32_t hi = c < N && k1 < K ? bf16_bits(w[int64_t(k1) * N + c]) : 0;
        d[int64_t(kp) * kDecodeTile + j] = lo | (hi << 16);
      }
  });
}

int decode_head_row(int K) { return (K + 31) / 32 * 32; }

void decode_pack_head_bf16(uint16_t* dst, const float* e, int N, int K) {
  const int Kp = decode_head_row(K);
  const int64_t tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
  ThreadPool::global().parallel_for(tasks, [&](int64_t t, int) {
    const int n0 = static_cast<int>(t) * kRowsPerTask, n1 = std::min(N, n0 + kRowsPerTask);
    for (int n = n0; n < n1; ++n)
      for (int k = 0; k < Kp; ++k) dst[int64_t(n) * Kp + k] = k < K ? bf16_bits(e[int64_t(n) * K + k]) : 0;
  });
}

void decode_linear_f32(float* out, const float* x, const float* w, const float* bias, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  DecodeArgs a;
  a.M = M;
  a.K = K;
  a.N = N;
  a.x = x;
  a.w = w;
  a.bias = bias;
  a.out = out;
  if (K <= 0) {
    for (int m = 0; m < M; ++m)
      for (int n = 0; n < N; ++n) out[int64_t(m) * N + n] = bias ? bias[n] : 0.0f;
    return;
  }
  // Tasks: chunk-major over (chunk of rows, column tile). The chunks fix the
  // arithmetic; the column tiles only spread a call over more threads (whole
  // rows when there are chunks enough), so they may follow the pool size.
  const int chunks = (K + kDecodeChunk - 1) / kDecodeChunk;
  const int threads = ThreadPool::global().size();
  int tiles = 1;
  while (chunks * tiles < 4 * threads && N / (2 * tiles) >= kMinTileCols) tiles *= 2;
  const int tile_cols = ((N + tiles - 1) / tiles + 15) / 16 * 16;
  tiles = (N + tile_cols - 1) / tile_cols;
  const int64_t ldp = (N + 15) / 16 * 16;
  const int64_t chunk_stride = ldp * M;
  // Per calling thread: the partials, and per tile the chunks done so far
  // (whoever completes a tile's last chunk adds its partials up).
  thread_local std::vector<float> part;
  thread_local std::unique_ptr<std::atomic<int>[]> done;
  thread_local int done_n = 0;
  if (part.size() < static_cast<size_t>(chunk_stride * chunks)) part.resize(static_cast<size_t>(chunk_stride * chunks));
  if (done_n < tiles) {
    done.reset(new std::atomic<int>[static_cast<size_t>(tiles)]);
    done_n = tiles;
  }
  for (int j = 0; j < tiles; ++j) done[j].store(0, std::memory_order_relaxed);
  float* P = part.data();
  std::atomic<int>* D = done.get();
  // Small sums are done by whoever finishes a tile's last chunk; large ones
  // (many rows or chunks) by the whole pool afterwards.
  const bool fused = int64_t(chunks) * M * tile_cols <= kFusedSumFloats;
  ThreadPool::global().parallel_for(int64_t(chunks) * tiles, [&](int64_t t, int) {
    const int c = static_cast<int>(t / tiles), j = static_cast<int>(t % tiles);
    const int k0 = c * kDecodeChunk, k1 = std::min(K, k0 + kDecodeChunk);
    const int n0 = j * tile_cols, n1 = std::min(N, n0 + tile_cols);
    GPT_CPU_DISPATCH(decode_linear_f32_part, a, k0, k1, n0, n1, P + c * chunk_stride, ldp);
    if (fused && D[j].fetch_add(1, std::memory_order_acq_rel) == chunks - 1)
      GPT_CPU_DISPATCH(decode_linear_f32_sum, a, P, chunks, chunk_stride, ldp, n0, n1);
  });
  if (fused) return;
  const int64_t sums = (N + kSumCols - 1) / kSumCols;
  ThreadPool::global().parallel_for(sums, [&](int64_t t, int) {
    const int n0 = static_cast<int>(t) * kSumCols, n1 = std::min(N, n0 + kSumCols);
    GPT_CPU_DISPATCH(decode_linear_f32_sum, a, P, chunks, chunk_stride, ldp, n0, n1);
  });
}

void decode_linear_bf16(float* out, const float* x, const uint32_t* wp, const float* bias, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  const int KP = (K + 1) / 2;
  XBf16& xs = x_bf16(x, M, K, KP);
  DecodeArgs a;
  a.M = M;
  a.K = K;
  a.N = N;
  a.x = xs.rounded.data();
  a.xp = xs.pairs.data();
  a.ldxp = KP;
  a.wb = wp;
  a.bias = bias;
  a.out = out;
  a.dpbf16 = current_isa() == Isa::Avx512 && cpu_has_avx512_bf16();
  const int tiles = (N + kDecodeTile - 1) / kDecodeTile;
  constexpr int kTilesPerTask = kColsPerTask / kDecodeTile;
  const int64_t tasks = (tiles + kTilesPerTask - 1) / kTilesPerTask;
  ThreadPool::global().parallel_for(tasks, [&](int64_t t, int) {
    const int t0 = static_cast<int>(t) * kTilesPerTask, t1 = std::min(tiles, t0 + kTilesPerTask);
    GPT_CPU_DISPATCH(decode_linear_bf16_cols, a, t0, t1);
  });
}

void decode_head_f32(float* out, const float* x, const float* e, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  DecodeArgs a;
  a.M = M;
  a.K = K;
  a.N = N;
  a.x = x;
  a.w = e;
  a.out = out;
  const int64_t tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
  ThreadPool::global().parallel_for(tasks, [&](int64_t t, int) {
    const int n0 = static_cast<int>(t) * kRowsPerTask, n1 = std::min(N, n0 + kRowsPerTask);
    GPT_CPU_DISPATCH(decode_head_f32_rows, a, n0, n1);
  });
}

void decode_head_bf16(float* out, const float* x, const uint16_t* ep, int M, int K, int N) {
  if (M <= 0 || N <= 0) return;
  const int ld = decode_head_row(K) / 2;
  XBf16& xs = x_bf16(x, M, K, ld);
  DecodeArgs a;
  a.M = M;
  a.K = K;
  a.N = N;
  a.x = xs.rounded.data();
  a.xp = xs.pairs.data();
  a.ldxp = ld;
  a.wb = ep;
  a.out = out;
  a.dpbf16 = current_isa() == Isa::Avx512 && cpu_has_avx512_bf16();
  const int64_t tasks = (N + kRowsPerTask - 1) / kRowsPerTask;
  ThreadPool::global().parallel_for(tasks, [&](int64_t t, int) {
    const int n0 = static_cast<int>(t) * kRowsPerTask, n1 = std::min(N, n0 + kRowsPerTask);
    GPT_CPU_DISPATCH(decode_head_bf16_rows, a, n0, n1);
  });
}

}  // namespace cpu
}  // namespace gpt
