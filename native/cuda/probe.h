// GPU ceiling probes for `gpt-engine bench --device cuda` (lib/bench/machine.ts):
// device-to-device copy bandwidth and the throughput of the engine's own GEMM
// kernel on a large square problem. Plain C++ (no CUDA headers) so the addon's
// binding (native/addon/probe_binding.cc) can include it; built only with the
// CUDA backend (GPT_HAVE_CUDA).
#pragma once
#include <cstddef>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

struct CopyProbe {
  double gbps = 0;     // (read + write bytes) / best time, 1 GB = 1e9 bytes
  double seconds = 0;  // best time of one copy
};

struct GemmProbe {
  double tflops = 0;   // 2 * size^3 / best time / 1e12
  double seconds = 0;  // best time of one GEMM
};

// Times `repeats` copies of `bytes` (after one warm-up) between two device
// buffers with CUDA events; the best copy counts. NO_GPU without a usable
// GPU, OUT_OF_MEMORY when the buffers do not fit.
CopyProbe probe_copy(size_t bytes, int repeats);

// Times `repeats` C = A @ B (size x size x size, fp32 in memory) with the
// engine's GEMM (native/cuda/gemm.cuh) at precision `p`, after one warm-up.
GemmProbe probe_gemm(int size, Precision p, int repeats);

}  // namespace cuda
}  // namespace gpt
