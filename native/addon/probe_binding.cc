// GPU ceiling probes for the benchmarks (lib/bench/machine.ts looks them up by
// name): probeCudaCopy({ bytes?, repeats? }) -> Promise<{ gbps, seconds, bytes }>
// and probeCudaGemm({ size?, precision?, repeats? }) ->
// Promise<{ tflops, gflops, seconds, size, precision }>. The GEMM figure is the
// engine's own kernel (native/cuda/gemm.cuh), not the hardware's peak. Both
// run off the event loop; without a usable GPU (or in a build without CUDA)
// the Promise rejects with code NO_GPU and the reason. Invalid options throw
// INVALID_ARGUMENT at once, as the other bindings do.
//
// cudaGemmInfo() -> { gemm, cublaslt, reason, path, version }: which GEMM the
// CUDA backend runs (native/cuda/cublaslt.h; deciding may run cuBLASLt's
// self-check, once per process): gemm is "cublaslt 13.0.2" or "own (<why>)".
//
// The emulator build (GPT_CUDA_EMU) alone also exports emuHostSyncs({ reset? })
// -> { toHost, toHostBytes, toDevice, streamSync, deviceSync, eventSync,
// malloc, free, launches, launchesAfterToHost }: the host-blocking CUDA
// runtime calls (and kernel launches, and those since the latest copy to the
// host) counted since the last
// reset (tools/cuda-emu/include/cuda_runtime.h); reset: true zeroes them after
// reading. The tests count a training step's syncs with it.
#include <string>

#include "../core/backend.h"
#include "napi_util.h"
// The probes exist in the CUDA build and in the CPU emulation of it
// (GPT_CUDA_EMU, docs/dev/CUDA-EMU.md), where they time the emulator.
#if defined(GPT_HAVE_CUDA) || defined(GPT_CUDA_EMU)
#define GPT_PROBES 1
#include "../cuda/cublaslt.h"
#include "../cuda/probe.h"
#endif

#ifdef GPT_CUDA_EMU
// The emulator runtime's counters (tools/cuda-emu/runtime.cc), linked into this
// addon; declared here because the addon is not compiled against the
// emulator's cuda_runtime.h.
namespace gpt_emu {
struct HostSyncCounts {
  long long to_host, to_host_bytes, to_device, stream_sync, device_sync, event_sync, malloc, free, launches,
      launches_after_to_host, malloc_after_launch, to_device_async;
};
HostSyncCounts host_sync_counts();
void reset_host_sync_counts();
}  // namespace gpt_emu
#endif

namespace gpt {
namespace addon {
namespace {

Napi::Object options(const Napi::CallbackInfo& info) {
  if (info.Length() < 1 || info[0].IsUndefined()) return Napi::Object::New(info.Env());
  if (!info[0].IsObject()) throw_invalid("Expected an options object");
  return info[0].As<Napi::Object>();
}

// A Promise rejected with NO_GPU and the reason when no GPU is usable (checked
// on the JS thread, before any work is queued); an empty value otherwise.
Napi::Value reject_without_gpu(Napi::Env env, const char* op) {
  GpuInfo g = cuda_info();
  if (g.available) return Napi::Value();
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  d.Reject(make_error(env, "NO_GPU", std::string(op) + ": no usable GPU: " + g.reason).Value());
  return d.Promise();
}

#ifndef GPT_PROBES
// A build whose cuda_info() says a GPU is usable but that has no probe code
// compiled in: reject the same way rather than resolve with nothing.
Napi::Value no_probes(Napi::Env env, const char* op) {
  Napi::Promise::Deferred d = Napi::Promise::Deferred::New(env);
  d.Reject(make_error(env, "NO_GPU", std::string(op) + ": this build has no GPU probes").Value());
  return d.Promise();
}
#endif

Napi::Value ProbeCudaCopy(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options(info);
    const int64_t bytes = has(o, "bytes") ? get_int(o, "bytes", 1, int64_t(1) << 36) : int64_t(1) << 30;
    const int repeats = has(o, "repeats") ? static_cast<int>(get_int(o, "repeats", 1, 1000)) : 5;
    Napi::Value no_gpu = reject_without_gpu(env, "probeCudaCopy");
    if (!no_gpu.IsEmpty()) return no_gpu;
#ifdef GPT_PROBES
    struct R {
      double gbps, seconds;
    };
    return run_async<R>(
        env,
        [=]() -> R {
          cuda::CopyProbe p = cuda::probe_copy(static_cast<size_t>(bytes), repeats);
          return {p.gbps, p.seconds};
        },
        [=](Napi::Env e, R& r) -> Napi::Value {
          Napi::Object out = Napi::Object::New(e);
          out.Set("gbps", r.gbps);
          out.Set("seconds", r.seconds);
          out.Set("bytes", static_cast<double>(bytes));
          return out;
        });
#else
    (void)bytes;
    (void)repeats;
    return no_probes(env, "probeCudaCopy");
#endif
  });
}

Napi::Value ProbeCudaGemm(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options(info);
    const int size = has(o, "size") ? static_cast<int>(get_int(o, "size", 1, 32768)) : 8192;
    const int repeats = has(o, "repeats") ? static_cast<int>(get_int(o, "repeats", 1, 1000)) : 5;
    const std::string pr = has(o, "precision") ? get_string(o, "precision") : "bf16";
    if (pr != "fp32" && pr != "bf16")
      throw_invalid("Expected \"fp32\" or \"bf16\" for precision but received \"" + pr + "\"");
    Napi::Value no_gpu = reject_without_gpu(env, "probeCudaGemm");
    if (!no_gpu.IsEmpty()) return no_gpu;
#ifdef GPT_PROBES
    const Precision p = pr == "bf16" ? Precision::BF16 : Precision::FP32;
    struct R {
      double tflops, seconds;
    };
    return run_async<R>(
        env,
        [=]() -> R {
          cuda::GemmProbe g = cuda::probe_gemm(size, p, repeats);
          return {g.tflops, g.seconds};
        },
        [=](Napi::Env e, R& r) -> Napi::Value {
          Napi::Object out = Napi::Object::New(e);
          out.Set("tflops", r.tflops);
          out.Set("gflops", r.tflops * 1000);
          out.Set("seconds", r.seconds);
          out.Set("size", size);
          out.Set("precision", pr);
          return out;
        });
#else
    (void)size;
    (void)repeats;
    return no_probes(env, "probeCudaGemm");
#endif
  });
}

Napi::Value CudaGemmInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object out = Napi::Object::New(env);
#ifdef GPT_PROBES
    const cuda::GemmChoice c = cuda::gemm_choice();
    out.Set("gemm", c.label);
    out.Set("cublaslt", c.cublaslt);
    out.Set("reason", c.reason);
    out.Set("path", c.path);
    out.Set("version", static_cast<double>(c.version));
#else
    out.Set("gemm", "none (this build has no CUDA backend)");
    out.Set("cublaslt", false);
    out.Set("reason", "this build has no CUDA backend");
    out.Set("path", "");
    out.Set("version", 0);
#endif
    return out;
  });
}

}  // namespace

#ifdef GPT_CUDA_EMU
Napi::Value EmuHostSyncs(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options(info);
    bool reset = false;
    if (has(o, "reset")) {
      Napi::Value r = o.Get("reset");
      if (!r.IsBoolean()) throw_invalid("Expected a boolean for reset");
      reset = r.As<Napi::Boolean>().Value();
    }
    const gpt_emu::HostSyncCounts c = gpt_emu::host_sync_counts();
    if (reset) gpt_emu::reset_host_sync_counts();
    Napi::Object out = Napi::Object::New(env);
    out.Set("toHost", static_cast<double>(c.to_host));
    out.Set("toHostBytes", static_cast<double>(c.to_host_bytes));
    out.Set("toDevice", static_cast<double>(c.to_device));
    out.Set("streamSync", static_cast<double>(c.stream_sync));
    out.Set("deviceSync", static_cast<double>(c.device_sync));
    out.Set("eventSync", static_cast<double>(c.event_sync));
    out.Set("malloc", static_cast<double>(c.malloc));
    out.Set("free", static_cast<double>(c.free));
    out.Set("launches", static_cast<double>(c.launches));
    out.Set("launchesAfterToHost", static_cast<double>(c.launches_after_to_host));
    out.Set("mallocAfterLaunch", static_cast<double>(c.malloc_after_launch));
    out.Set("toDeviceAsync", static_cast<double>(c.to_device_async));
    return out;
  });
}
#endif

void add_probe_exports(Napi::Env env, Napi::Object exports) {
#ifdef GPT_CUDA_EMU
  exports.Set("emuHostSyncs", Napi::Function::New(env, EmuHostSyncs));
#endif
  exports.Set("cudaGemmInfo", Napi::Function::New(env, CudaGemmInfo));
  exports.Set("probeCudaCopy", Napi::Function::New(env, ProbeCudaCopy));
  exports.Set("probeCudaGemm", Napi::Function::New(env, ProbeCudaGemm));
}

}  // namespace addon
}  // namespace gpt
