// GPU discovery. Any CUDA error here means "no usable GPU": it is cleared and
// reported as the reason (without a driver, cudaGetDeviceCount returns
// cudaErrorInsufficientDriver, not zero devices).
#include <cuda_runtime.h>

#include <mutex>
#include <string>

#include "../core/backend.h"
#include "../core/error.h"

namespace gpt {

bool cuda_compiled() { return true; }

GpuInfo cuda_info() {
  static std::once_flag once;
  static GpuInfo info;
  std::call_once(once, [] {
    int n = 0;
    cudaError_t err = cudaGetDeviceCount(&n);
    cudaRuntimeGetVersion(&info.runtime_version);
    cudaDriverGetVersion(&info.driver_version);
    if (err != cudaSuccess) {
      info.reason = std::string("CUDA reports ") + cudaGetErrorName(err) + ": " + cudaGetErrorString(err);
      cudaGetLastError();
      return;
    }
    info.device_count = n;
    if (n == 0) {
      info.reason = "CUDA found no GPU";
      return;
    }
    cudaDeviceProp prop{};
    err = cudaGetDeviceProperties(&prop, 0);
    if (err != cudaSuccess) {
      info.reason = std::string("cudaGetDeviceProperties failed: ") + cudaGetErrorString(err);
      cudaGetLastError();
      return;
    }
    info.name = prop.name;
    info.total_memory = prop.totalGlobalMem;
    info.cc_major = prop.major;
    info.cc_minor = prop.minor;
#ifdef GPT_CUDA_EMU
    info.emulated = true;  // the SIMT emulator on the CPU (docs/dev/CUDA-EMU.md)
#endif
    if (prop.major < 8) {
      info.reason = std::string(prop.name) + " has compute capability " + std::to_string(prop.major) + "." +
                    std::to_string(prop.minor) + "; gpt-engine's CUDA kernels need 8.0 or newer";
      return;
    }
    info.available = true;
  });
  return info;
}

}  // namespace gpt
