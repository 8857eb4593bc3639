// The CUDA implementation of gpt::Backend (core/backend.h). Created through
// make_cuda_backend() (backend_factory.cu), which checks for a usable GPU.
#pragma once
#include <memory>

#include "../core/backend.h"

namespace gpt {
namespace cuda {

std::unique_ptr<Backend> new_cuda_backend(int device);

}  // namespace cuda
}  // namespace gpt
