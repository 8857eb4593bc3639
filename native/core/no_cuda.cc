// Built when CMake found no CUDA compiler (or GPT_ENGINE_CUDA=OFF), and in
// the node-gyp build: the CUDA entry points say why there is no GPU.
#include "backend.h"
#include "error.h"

namespace gpt {

bool cuda_compiled() { return false; }

GpuInfo cuda_info() {
  GpuInfo g;
  g.reason = "this build of gpt-engine has no CUDA backend (no CUDA compiler was found when it was built, "
             "or GPT_ENGINE_CUDA=OFF); reinstall with nvcc on PATH to build it";
  return g;
}

std::unique_ptr<Backend> make_cuda_backend() { throw GptError(ErrorCode::NoGpu, cuda_info().reason); }

size_t cuda_training_scratch_bytes(const TrainingShape&) { return 0; }

}  // namespace gpt
