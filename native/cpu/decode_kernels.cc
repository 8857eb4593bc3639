// Decode kernels (decode_kernels.h): packing of the bf16 copies and the
// split of each call over the global pool. The per-path bodies live in
// decode_kernels_impl.h.
#include "decode_kernels.h"

#include <algorithm>
#include <vector>

#include "../core/threadpool.h"
#include "bf16.h"

namespace gpt {
namespace cpu {

namespace {

// Columns (linear) per task. Wide enough that a task streams long runs of
// each weight row, small enough that both threads of a busy machine share
// every call; the split never changes the numbers.
constexpr int kColsPerTask = 128;
// Rows of e (head) per task.
constexpr int kRowsPerTask = 256;

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
  // Wider tasks for wide layers: longer runs of each weight row.
  const int cols = N >= 3072 ? 2 * kColsPerTask : kColsPerTask;
  const int64_t tasks = (N + cols - 1) / cols;
  ThreadPool::global().parallel_for(tasks, [&](int64_t t, int) {
    const int n0 = static_cast<int>(t) * cols, n1 = std::min(N, n0 + cols);
    GPT_CPU_DISPATCH(decode_linear_f32_cols, a, n0, n1);
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
