// Creates the CUDA backend when a usable GPU exists; otherwise NO_GPU with
// the reason cuda_info() found (device.cu).
#include <cuda_runtime.h>

#include <cstdlib>
#include <string>

#include "../core/backend.h"
#include "../core/error.h"
#include "cuda_backend.cuh"

namespace gpt {

namespace {

// One GPU per rank (docs/DISTRIBUTED.md "GPUs"): under mpirun, the rank with
// local rank i on its machine (OMPI_COMM_WORLD_LOCAL_RANK) drives GPU i. A
// process that is not a rank, or sees a single GPU (one made visible to each
// rank, or only one there), uses GPU 0. The emulator's one device is shared
// by every rank (tests).
int device_for_this_process(const GpuInfo& g) {
  const char* s = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK");
  if (!s || !*s || g.emulated) return 0;
  const int local = std::atoi(s);
  int count = 0;
  if (cudaGetDeviceCount(&count) != cudaSuccess || count <= 1) return 0;
  if (local < 0 || local >= count)
    throw GptError(ErrorCode::NoGpu, "Expected at most " + std::to_string(count) +
                                         " ranks on this machine (one per GPU) but this is local rank " +
                                         std::to_string(local) + ": start fewer ranks per machine");
  return local;
}

}  // namespace

std::unique_ptr<Backend> make_cuda_backend() {
  GpuInfo g = cuda_info();
  if (!g.available) throw GptError(ErrorCode::NoGpu, g.reason);
  return cuda::new_cuda_backend(device_for_this_process(g));
}

}  // namespace gpt
