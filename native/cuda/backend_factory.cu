// Creates the CUDA backend when a usable GPU exists; otherwise NO_GPU with
// the reason cuda_info() found (device.cu).
#include "../core/backend.h"
#include "../core/error.h"
#include "cuda_backend.cuh"

namespace gpt {

std::unique_ptr<Backend> make_cuda_backend() {
  GpuInfo g = cuda_info();
  if (!g.available) throw GptError(ErrorCode::NoGpu, g.reason);
  return cuda::new_cuda_backend(0);
}

}  // namespace gpt
