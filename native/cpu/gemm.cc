// GEMM driver (gemm.h): checks, blocking plan, and the split of C into tiles
// over the pool. The packing and the microkernels live in gemm_impl.h, one
// compilation per instruction-set path.
//
// Blocking (sized for a core with 32 KiB L1 and 1 MiB L2, Zen 4 class):
//   kc <= 256: one packed MR-row strip of A (12 x 256 floats = 12 KiB) stays
//              in L1 while the kernel sweeps the packed B block;
//   nc <= 512: the packed B block (256 x 512 floats = 512 KiB) stays in L2
//              while every A strip of the task passes over it.
//   A is packed 240 rows x kc at a time (L2), then read one MR strip at a
//   time (L1). bf16 on AVX512_BF16 uses kc <= 512, nc <= 768 (half the bytes).
// A task owns an M-group x nc tile of C: it packs each B block once and each
// A block once per column tile, so packing stays a few percent of the work.
// Tasks never wait on each other (no barriers), and since only kc decides
// the summation order, and kc depends on K and the precision path alone,
// every element comes out the same for any thread count and any tiling.
#include "gemm.h"

#include <algorithm>
#include <string>

#include "../core/error.h"
#include "../core/isa.h"
#include "../core/memory.h"
#include "../core/threadpool.h"
#include "gemm_impl.h"

namespace gpt {
namespace cpu {

namespace {

constexpr int kKcMax = 256;
constexpr int kNcMax = 512;
// bf16 pairs take half the bytes: the same L1/L2 budget holds twice the k
// (an A strip of 12 x 512 bf16 is still 12 KiB) and 1.5x the columns
// (measured about 8% faster than 256 / 512 on Zen 4).
constexpr int kKcMaxBf16 = 512;
constexpr int kNcMaxBf16 = 768;
// Below this many multiply-adds a call runs on the calling thread: waking the
// pool costs more than it saves.
constexpr double kSerialMacs = 1 << 18;

// Per-thread packing scratch; grows, never shrinks. A pool thread runs one
// task at a time, so one buffer per thread is enough.
thread_local HostBuffer<float> t_scratch;

GemmKernelShape kernel_shape(Isa isa, bool dpbf16) {
  switch (isa) {
    case Isa::Avx512: return avx512::gemm_kernel_shape(dpbf16);
    case Isa::Avx2: return avx2::gemm_kernel_shape(dpbf16);
    default: return portable::gemm_kernel_shape(dpbf16);
  }
}

void run_tile(Isa isa, const GemmArgs& g, int m0, int mc, int n0, int nc, float* scratch) {
  switch (isa) {
    case Isa::Avx512: avx512::gemm_tile(g, m0, mc, n0, nc, scratch); break;
    case Isa::Avx2: avx2::gemm_tile(g, m0, mc, n0, nc, scratch); break;
    default: portable::gemm_tile(g, m0, mc, n0, nc, scratch); break;
  }
}

int ceil_div(int a, int b) { return (a + b - 1) / b; }
int round_up(int a, int m) { return ceil_div(a, m) * m; }

// Splits n into equal blocks of at most about `max_block`, each a multiple of
// `unit` (the last one may be shorter).
int pick_block(int n, int unit, int max_block) {
  int nb = ceil_div(n, max_block);
  return round_up(ceil_div(n, nb), unit);
}

std::string ld_message(const char* name, int64_t ld, int width) {
  return std::string("Expected a leading dimension >= ") + std::to_string(width) + " for " + name + " but received " +
         std::to_string(ld);
}

}  // namespace

int gemm_k_block(int K, Precision p) {
  const bool dpbf16 = p == Precision::BF16 && current_isa() == Isa::Avx512 && cpu_has_avx512_bf16();
  return pick_block(std::max(K, 1), 2, dpbf16 ? kKcMaxBf16 : kKcMax);
}

void gemm(bool trans_a, bool trans_b, int M, int N, int K, const float* A, int lda, const float* B, int ldb, float* C,
          int ldc, bool accumulate, const float* bias, Precision p, int k_block) {
  GPT_CHECK_ARG(k_block >= 0 && k_block % 2 == 0,
                "Expected an even, non-negative K block for gemm but received " + std::to_string(k_block));
  GPT_CHECK_ARG(M >= 0 && N >= 0 && K >= 0, "Expected non-negative GEMM sizes but received M=" + std::to_string(M) +
                                                ", N=" + std::to_string(N) + ", K=" + std::to_string(K));
  if (M == 0 || N == 0) return;
  GPT_CHECK_ARG(ldc >= N, ld_message("ldc", ldc, N));
  GPT_CHECK_ARG(C != nullptr, "gemm: C is null");
  if (K == 0) {
    // op(A) @ op(B) is all zeros.
    for (int i = 0; i < M; ++i) {
      float* c = C + static_cast<int64_t>(i) * ldc;
      for (int j = 0; j < N; ++j) {
        float x = accumulate ? c[j] : 0.0f;
        if (bias) x = x + bias[j];
        c[j] = x;
      }
    }
    return;
  }
  GPT_CHECK_ARG(lda >= (trans_a ? M : K), ld_message("lda", lda, trans_a ? M : K));
  GPT_CHECK_ARG(ldb >= (trans_b ? K : N), ld_message("ldb", ldb, trans_b ? K : N));
  GPT_CHECK_ARG(A != nullptr && B != nullptr, "gemm: A or B is null");

  const Isa isa = current_isa();
  GemmArgs g;
  g.trans_a = trans_a;
  g.trans_b = trans_b;
  g.M = M;
  g.N = N;
  g.K = K;
  g.A = A;
  g.lda = lda;
  g.B = B;
  g.ldb = ldb;
  g.C = C;
  g.ldc = ldc;
  g.accumulate = accumulate;
  g.bias = bias;
  g.bf16 = p == Precision::BF16;
  g.dpbf16 = g.bf16 && isa == Isa::Avx512 && cpu_has_avx512_bf16();
  // kc: equal blocks of at most kKcMax, even (bf16 pairs). Depends on K only,
  // which keeps the summation order independent of threads and tiling.
  g.kc = pick_block(K, 2, g.dpbf16 ? kKcMaxBf16 : kKcMax);
  // An imposed block longer than K is one block of K (and packs no more).
  if (k_block > 0) g.kc = std::min(k_block, round_up(K, 2));

  const GemmKernelShape s = kernel_shape(isa, g.dpbf16);
  ThreadPool& pool = ThreadPool::global();
  const double macs = static_cast<double>(M) * N * K;
  const int threads = macs < kSerialMacs ? 1 : pool.size();

  // Column tiles of at most kNcMax; when there are only a few, a multiple of
  // the thread count so the tasks come out even.
  int tiles_n = ceil_div(N, g.dpbf16 ? kNcMaxBf16 : kNcMax);
  if (threads > 1 && tiles_n % threads != 0 && tiles_n < 8 * threads) {
    const int want = round_up(tiles_n, threads);
    if (ceil_div(N, want) >= s.nr) tiles_n = want;
  }
  const int nc = round_up(ceil_div(N, tiles_n), s.nr);
  tiles_n = ceil_div(N, nc);
  // Row groups: one, unless the column tiles alone cannot feed every thread
  // evenly (splitting rows packs each B block once more per group).
  int groups_m = 1;
  if (threads > 1 && tiles_n % threads != 0 && tiles_n < 8 * threads) groups_m = threads;
  const int mg = round_up(ceil_div(M, groups_m), s.mr);
  groups_m = ceil_div(M, mg);

  const size_t scratch = gemm_scratch_floats(s, nc, g.kc);
  auto task = [&](int64_t t, int) {
    const int tm = static_cast<int>(t % groups_m), tn = static_cast<int>(t / groups_m);
    const int m0 = tm * mg, n0 = tn * nc;
    t_scratch.ensure(scratch, "GEMM packing scratch");
    run_tile(isa, g, m0, std::min(mg, M - m0), n0, std::min(nc, N - n0), t_scratch.data());
  };
  const int64_t n_tasks = static_cast<int64_t>(groups_m) * tiles_n;
  if (threads == 1) {
    for (int64_t t = 0; t < n_tasks; ++t) task(t, 0);
  } else {
    pool.parallel_for(n_tasks, task);
  }
}

void colsum_accumulate(float* out, const float* x, int M, int N) {
  GPT_CHECK_ARG(M >= 0 && N >= 0, "Expected non-negative sizes for colsum_accumulate");
  if (M == 0 || N == 0) return;
  // Column chunks are independent; within one, rows are summed in order into
  // a zeroed partial that is then added to out: fixed order for any threads.
  constexpr int kChunk = 256;
  const int chunks = ceil_div(N, kChunk);
  auto task = [&](int64_t t, int) {
    const int j0 = static_cast<int>(t) * kChunk, j1 = std::min(N, j0 + kChunk);
    float part[kChunk] = {};
    for (int i = 0; i < M; ++i) {
      const float* r = x + static_cast<int64_t>(i) * N;
      for (int j = j0; j < j1; ++j) part[j - j0] += r[j];
    }
    for (int j = j0; j < j1; ++j) out[j] += part[j - j0];
  };
  if (static_cast<double>(M) * N < (1 << 16) || ThreadPool::global().size() == 1) {
    for (int t = 0; t < chunks; ++t) task(t, 0);
  } else {
    ThreadPool::global().parallel_for(chunks, task);
  }
}

}  // namespace cpu
}  // namespace gpt
