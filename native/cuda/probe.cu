// GPU ceiling probes (see probe.h). Each probe owns its buffers, stream and
// events for the duration of one call and frees them whatever happens; the
// timings come from CUDA events around each repeat, so host overhead is not
// counted, and the best repeat is reported (a ceiling, not a typical value).
#include <cuda_runtime.h>

#include <cfloat>
#include <string>
#include <vector>

#include "../core/error.h"
#include "check.cuh"
#include "common.cuh"
#include "gemm.cuh"
#include "probe.h"

namespace gpt {
namespace cuda {
namespace {

void require_gpu(const char* op) {
  GpuInfo g = cuda_info();
  if (!g.available) throw GptError(ErrorCode::NoGpu, std::string(op) + ": no usable GPU: " + g.reason);
  CUDA_CHECK(cudaSetDevice(0), op);
}

// Device memory, stream and events of one probe call, released on scope exit.
struct ProbeResources {
  std::vector<void*> bufs;
  cudaStream_t stream = nullptr;
  cudaEvent_t start = nullptr, stop = nullptr;
  const char* op;
  explicit ProbeResources(const char* o) : op(o) {
    try {
      CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamNonBlocking), op);
      CUDA_CHECK(cudaEventCreate(&start), op);
      CUDA_CHECK(cudaEventCreate(&stop), op);
    } catch (...) {
      release();  // a throwing constructor runs no destructor
      throw;
    }
  }
  ~ProbeResources() { release(); }
  ProbeResources(const ProbeResources&) = delete;
  ProbeResources& operator=(const ProbeResources&) = delete;
  void release() {
    if (stream) cudaStreamSynchronize(stream);
    for (void* p : bufs) cudaFree(p);
    if (start) cudaEventDestroy(start);
    if (stop) cudaEventDestroy(stop);
    if (stream) cudaStreamDestroy(stream);
    bufs.clear();
    start = stop = nullptr;
    stream = nullptr;
    cudaGetLastError();  // nothing from the cleanup leaks into the next call
  }
  void* alloc(size_t bytes, const char* what) {
    void* p = nullptr;
    cudaError_t err = cudaMalloc(&p, bytes);
    if (err != cudaSuccess) {
      cudaGetLastError();
      if (err == cudaErrorMemoryAllocation)
        throw GptError(ErrorCode::OutOfMemory, std::string(op) + ": out of GPU memory allocating " + what + " (" +
                                                   std::to_string(bytes >> 20) + " MiB); try a smaller size");
      throw_cuda(err, op, __FILE__, __LINE__);
    }
    bufs.push_back(p);
    return p;
  }
  // Runs fn once to warm up, then `repeats` timed runs; the best in seconds.
  template <typename Fn>
  double best_of(int repeats, Fn fn) {
    fn();
    CUDA_CHECK(cudaStreamSynchronize(stream), op);
    float best_ms = FLT_MAX;
    for (int r = 0; r < repeats; ++r) {
      CUDA_CHECK(cudaEventRecord(start, stream), op);
      fn();
      CUDA_CHECK(cudaEventRecord(stop, stream), op);
      CUDA_CHECK(cudaEventSynchronize(stop), op);
      float ms = 0;
      CUDA_CHECK(cudaEventElapsedTime(&ms, start, stop), op);
      if (ms < best_ms) best_ms = ms;
    }
    return best_ms * 1e-3;
  }
};

// Small deterministic values in [-0.5, 0.5): keeps the GEMM's inputs and
// outputs finite and its power draw realistic (all-zero inputs are not).
__global__ void probe_fill_kernel(float* p, long long n, unsigned seed) {
  for (long long i = blockIdx.x * (long long)blockDim.x + threadIdx.x; i < n; i += (long long)gridDim.x * blockDim.x) {
    unsigned x = (unsigned)i * 2654435761u ^ seed;
    x ^= x >> 15;
    x *= 2246822519u;
    x ^= x >> 13;
    p[i] = (x >> 8) * (1.0f / 16777216.0f) - 0.5f;
  }
}

}  // namespace

CopyProbe probe_copy(size_t bytes, int repeats) {
  const char* op = "probeCudaCopy";
  GPT_CHECK_ARG(bytes >= 1 && repeats >= 1, "probeCudaCopy: bytes and repeats must be >= 1");
  require_gpu(op);
  ProbeResources r(op);
  void* src = r.alloc(bytes, "the copy source");
  void* dst = r.alloc(bytes, "the copy destination");
  CUDA_CHECK(cudaMemsetAsync(src, 1, bytes, r.stream), op);
  CUDA_CHECK(cudaMemsetAsync(dst, 0, bytes, r.stream), op);
  const double s = r.best_of(repeats, [&] {
    CUDA_CHECK(cudaMemcpyAsync(dst, src, bytes, cudaMemcpyDeviceToDevice, r.stream), op);
  });
  CopyProbe out;
  out.seconds = s;
  out.gbps = s > 0 ? 2.0 * static_cast<double>(bytes) / s / 1e9 : 0;
  return out;
}

GemmProbe probe_gemm(int size, Precision p, int repeats) {
  const char* op = "probeCudaGemm";
  GPT_CHECK_ARG(size >= 1 && repeats >= 1, "probeCudaGemm: size and repeats must be >= 1");
  require_gpu(op);
  ProbeResources r(op);
  const long long n = static_cast<long long>(size) * size;
  float* a = static_cast<float*>(r.alloc(n * sizeof(float), "the GEMM's A"));
  float* b = static_cast<float*>(r.alloc(n * sizeof(float), "the GEMM's B"));
  float* c = static_cast<float*>(r.alloc(n * sizeof(float), "the GEMM's C"));
  probe_fill_kernel<<<elementwise_blocks(n, 256), 256, 0, r.stream>>>(a, n, 1u);
  CUDA_CHECK_LAUNCH(op);
  probe_fill_kernel<<<elementwise_blocks(n, 256), 256, 0, r.stream>>>(b, n, 2u);
  CUDA_CHECK_LAUNCH(op);
  const double s = r.best_of(repeats, [&] {
    gemm(false, false, size, size, size, a, size, b, size, c, size, false, nullptr, p, r.stream);
  });
  GemmProbe out;
  out.seconds = s;
  out.tflops = s > 0 ? 2.0 * static_cast<double>(size) * size * size / s / 1e12 : 0;
  return out;
}

}  // namespace cuda
}  // namespace gpt
