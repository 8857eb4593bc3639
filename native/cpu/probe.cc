#include "probe.h"

#include <algorithm>
#include <chrono>
#include <vector>

#include "../core/memory.h"
#include "../core/threadpool.h"

namespace gpt {
namespace cpu {

namespace {
double lanes() {
  switch (current_isa()) {
    case Isa::Avx512: return 16;
    case Isa::Avx2: return 8;
    default: return 4;
  }
}
double now_s() {
  return std::chrono::duration<double>(std::chrono::steady_clock::now().time_since_epoch()).count();
}
}  // namespace

double probe_fma_flops_per_iter() { return 12 * lanes() * 2; }

double probe_bf16_flops_per_iter() {
  // vdpbf16ps: 16 lanes x 2 products x (multiply + add), 12 chains
  return (current_isa() == Isa::Avx512 && cpu_has_avx512_bf16()) ? 12 * 16 * 2 * 2 : 0;
}

PeakResult measure_fma_peak(bool bf16, double seconds, int repeats) {
  PeakResult r;
  ThreadPool& pool = ThreadPool::global();
  r.threads = pool.size();
  double per_iter = bf16 ? probe_bf16_flops_per_iter() : probe_fma_flops_per_iter();
  if (per_iter == 0) {
    r.supported = false;
    return r;
  }
  std::vector<float> sink(pool.size());
  auto run = [&](int64_t iters) {
    double t0 = now_s();
    pool.parallel_for(pool.size(), [&](int64_t task, int) {
      sink[task] = bf16 ? GPT_CPU_DISPATCH(probe_bf16_chains, iters, 1.0f + task)
                        : GPT_CPU_DISPATCH(probe_fma_chains, iters, 1.0f + task);
    });
    return now_s() - t0;
  };
  // Calibrate: grow until one run takes a tenth of the target.
  int64_t iters = 1 << 14;
  while (iters < (int64_t(1) << 34)) {
    double t = run(iters);
    if (t > seconds / 10) {
      iters = std::max<int64_t>(iters, static_cast<int64_t>(iters * (seconds / t)));
      break;
    }
    iters *= 4;
  }
  for (int i = 0; i < std::max(1, repeats); ++i) {
    double t = run(iters);
    double g = per_iter * static_cast<double>(iters) * pool.size() / t / 1e9;
    if (g > r.gflops) {
      r.gflops = g;
      r.seconds = t;
    }
  }
  return r;
}

BandwidthResult measure_read_bandwidth(int64_t bytes, int repeats) {
  BandwidthResult r;
  ThreadPool& pool = ThreadPool::global();
  r.threads = pool.size();
  int64_t n = bytes / 4;
  HostBuffer<float> buf(static_cast<size_t>(n), "the bandwidth probe buffer");
  int64_t chunks = pool.size() * 8;
  int64_t per = (n + chunks - 1) / chunks;
  // First touch from the pool, so pages land where the readers run.
  pool.parallel_for(chunks, [&](int64_t c, int) {
    int64_t a = c * per, b = std::min(n, a + per);
    for (int64_t i = a; i < b; ++i) buf[i] = 1.0f;
  });
  std::vector<double> sums(chunks);
  for (int rep = 0; rep < std::max(1, repeats); ++rep) {
    double t0 = now_s();
    pool.parallel_for(chunks, [&](int64_t c, int) {
      int64_t a = c * per, b = std::min(n, a + per);
      sums[c] = a < b ? GPT_CPU_DISPATCH(probe_read_sum, buf.data() + a, b - a) : 0;
    });
    double t = now_s() - t0;
    double g = static_cast<double>(n) * 4 / t / 1e9;
    if (g > r.gbps) r.gbps = g;
  }
  r.bytes = static_cast<double>(n) * 4;
  return r;
}

}  // namespace cpu
}  // namespace gpt
