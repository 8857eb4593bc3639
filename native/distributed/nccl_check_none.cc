// The NCCL check in a build without the CUDA backend (nccl_check.h).
#include "../core/error.h"
#include "nccl_check.h"

namespace gpt {
namespace dist {

NcclCheckResult run_nccl_check(int64_t) {
  throw GptError(ErrorCode::NoGpu, "this build of gpt-engine has no CUDA backend, so there is no GPU to run NCCL on");
}

}  // namespace dist
}  // namespace gpt
