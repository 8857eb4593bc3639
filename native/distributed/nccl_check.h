// The GPU check's NCCL step (scripts/gpu-check): one rank on one GPU, a
// locally made unique id (no MPI), all-reduce, reduce-scatter and all-gather
// of random floats against the result computed on the CPU.
#pragma once
#include <cstdint>
#include <string>

namespace gpt {
namespace dist {

struct NcclCheckResult {
  bool ok = false;
  int version = 0;          // NCCL's version code
  double max_abs_err = 0;   // worst difference from the CPU result, over the three collectives
  double ms = 0;            // the three collectives, synchronized
  std::string detail;       // what ran, or why it failed
};

// Throws GptError when NCCL or a GPU is missing (the caller reports it as skipped).
NcclCheckResult run_nccl_check(int64_t n);

}  // namespace dist
}  // namespace gpt
