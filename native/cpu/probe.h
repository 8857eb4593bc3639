// Ceiling probes every benchmark reports against: the fp32 (and, where the
// CPU has AVX512_BF16, bf16) FMA peak of the whole pool, and memory read
// bandwidth.
#pragma once
#include <cstdint>

#include "dispatch.h"

GPT_DECLARE_ISA_FN(float probe_fma_chains(int64_t iters, float seed))
GPT_DECLARE_ISA_FN(float probe_bf16_chains(int64_t iters, float seed))
GPT_DECLARE_ISA_FN(double probe_read_sum(const float* p, int64_t n))

namespace gpt {
namespace cpu {

// FLOPs one call of probe_fma_chains / probe_bf16_chains performs per iteration
// on the current path (0 for bf16 where unsupported).
double probe_fma_flops_per_iter();
double probe_bf16_flops_per_iter();

struct PeakResult {
  double gflops = 0;   // best of the repeats
  double seconds = 0;  // of that repeat
  int threads = 0;
  bool supported = true;
};
// Runs the chains on every pool thread for about `seconds` and reports the
// best of `repeats` rates.
PeakResult measure_fma_peak(bool bf16, double seconds, int repeats);

struct BandwidthResult {
  double gbps = 0;  // best of the repeats, 1e9 bytes/s
  double bytes = 0;
  int threads = 0;
};
BandwidthResult measure_read_bandwidth(int64_t bytes, int repeats);

}  // namespace cpu
}  // namespace gpt
