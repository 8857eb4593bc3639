// Creates the CUDA backend. Until native/cuda implements the Backend
// interface, a CUDA build reports that the backend is not available.
#include "../core/backend.h"
#include "../core/error.h"

namespace gpt {

std::unique_ptr<Backend> make_cuda_backend() {
  GpuInfo g = cuda_info();
  if (!g.available) throw GptError(ErrorCode::NoGpu, g.reason);
  throw GptError(ErrorCode::NoGpu, "the CUDA backend's kernels are not built into this version yet");
}

}  // namespace gpt
