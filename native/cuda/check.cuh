// Error checking for every CUDA call and kernel launch. A failure becomes a
// gpt::GptError naming the op (never an abort), so it reaches JS as an Error
// with a code. Allocation failures are OUT_OF_MEMORY and say what was being
// allocated, how much is in use, and what to try.
#pragma once
#include <cuda_runtime.h>

#include <string>

#include "../core/error.h"

namespace gpt {
namespace cuda {

[[noreturn]] inline void throw_cuda(cudaError_t err, const char* op, const char* file, int line) {
  cudaGetLastError();  // clear a non-sticky error so the next call starts clean
  ErrorCode code = err == cudaErrorMemoryAllocation ? ErrorCode::OutOfMemory : ErrorCode::Internal;
  std::string msg = std::string("CUDA error in ") + op + ": " + cudaGetErrorName(err) + " (" +
                    cudaGetErrorString(err) + ") at " + file + ":" + std::to_string(line);
  if (code == ErrorCode::OutOfMemory) msg += "; try a smaller batch or a shorter sequence";
  throw GptError(code, msg);
}

}  // namespace cuda
}  // namespace gpt

// Checks one runtime call; `op` names the engine op it belongs to.
#define CUDA_CHECK(call, op)                                                 \
  do {                                                                       \
    cudaError_t gpt_cuda_err_ = (call);                                      \
    if (gpt_cuda_err_ != cudaSuccess) ::gpt::cuda::throw_cuda(gpt_cuda_err_, (op), __FILE__, __LINE__); \
  } while (0)

// Checks the launch just made (configuration errors, missing kernel image).
// Faults inside the kernel surface at the next synchronizing call, which is
// checked too and names its own op.
#define CUDA_CHECK_LAUNCH(op) CUDA_CHECK(cudaGetLastError(), (op))
