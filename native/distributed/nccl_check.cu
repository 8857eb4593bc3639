// The one-rank NCCL check (nccl_check.h), built with the CUDA backend.
#include <cuda_runtime.h>

#include <chrono>
#include <cmath>
#include <random>
#include <vector>

#include "../core/error.h"
#include "nccl_check.h"
#include "nccl_loader.h"

namespace gpt {
namespace dist {

namespace {

void cuda_ok(cudaError_t e, const char* what) {
  if (e != cudaSuccess)
    throw GptError(ErrorCode::NoGpu, std::string(what) + " failed: " + cudaGetErrorString(e));
}

struct DeviceBuffer {
  float* p = nullptr;
  explicit DeviceBuffer(size_t n) { cuda_ok(cudaMalloc(&p, n * sizeof(float)), "cudaMalloc"); }
  ~DeviceBuffer() {
    if (p) cudaFree(p);
  }
};

}  // namespace

NcclCheckResult run_nccl_check(int64_t n) {
  GPT_CHECK_ARG(n >= 1 && n <= (int64_t(1) << 28), "Expected 1..2^28 elements for the NCCL check");
  const NcclApi& api = nccl_api();
  int devices = 0;
  cuda_ok(cudaGetDeviceCount(&devices), "cudaGetDeviceCount");
  if (devices < 1) throw GptError(ErrorCode::NoGpu, "no GPU for the NCCL check");
  cuda_ok(cudaSetDevice(0), "cudaSetDevice");

  NcclCheckResult r;
  r.version = nccl_status().version;
  std::vector<float> x(static_cast<size_t>(n));
  std::mt19937 rng(1234);
  std::normal_distribution<float> nd(0.0f, 1.0f);
  for (float& v : x) v = nd(rng);
  const size_t bytes = x.size() * sizeof(float);

  NcclUniqueId id;
  nccl_check(api.GetUniqueId(&id), "ncclGetUniqueId");
  NcclComm comm = nullptr;
  nccl_check(api.CommInitRank(&comm, 1, id, 0), "ncclCommInitRank");
  cudaStream_t stream = nullptr;
  try {
    cuda_ok(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), "cudaStreamCreate");
    DeviceBuffer a(x.size()), b(x.size()), c(x.size());
    cuda_ok(cudaMemcpy(a.p, x.data(), bytes, cudaMemcpyHostToDevice), "cudaMemcpy");
    const auto t0 = std::chrono::steady_clock::now();
    // One rank: each collective's result is the CPU's sum over the one rank,
    // that is the input itself, bit for bit.
    nccl_check(api.AllReduce(a.p, b.p, x.size(), kNcclFloat32, kNcclSum, comm, stream), "ncclAllReduce");
    nccl_check(api.GroupStart(), "ncclGroupStart");
    nccl_check(api.ReduceScatter(b.p, c.p, x.size(), kNcclFloat32, kNcclSum, comm, stream), "ncclReduceScatter");
    nccl_check(api.GroupEnd(), "ncclGroupEnd");
    nccl_check(api.AllGather(c.p, a.p, x.size(), kNcclFloat32, comm, stream), "ncclAllGather");
    cuda_ok(cudaStreamSynchronize(stream), "cudaStreamSynchronize");
    r.ms = std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - t0).count();
    std::vector<float> got(x.size());
    double worst = 0;
    for (float* p : {b.p, c.p, a.p}) {
      cuda_ok(cudaMemcpy(got.data(), p, bytes, cudaMemcpyDeviceToHost), "cudaMemcpy");
      for (size_t i = 0; i < x.size(); ++i) worst = std::max(worst, std::fabs(double(got[i]) - double(x[i])));
    }
    r.max_abs_err = worst;
    r.ok = worst == 0;
    r.detail = "NCCL " + nccl_version_string(r.version) + ", 1 rank, " + std::to_string(n) +
               " floats: all-reduce, reduce-scatter, all-gather " + (r.ok ? "equal" : "DIFFER from") +
               " the CPU result";
  } catch (...) {
    if (stream) cudaStreamDestroy(stream);
    api.CommDestroy(comm);
    throw;
  }
  cudaStreamDestroy(stream);
  api.CommDestroy(comm);
  return r;
}

}  // namespace dist
}  // namespace gpt
