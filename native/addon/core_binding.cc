// Process-wide bindings: threads, instruction-set path, GPU discovery, the
// ceiling probes, and the tiny self-test `gpt-engine info` runs.
#include <cmath>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/isa.h"
#include "../core/threadpool.h"
#include "../cpu/probe.h"
#include "napi_util.h"

namespace gpt {
namespace addon {
namespace {

Napi::Value GetThreads(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), ThreadPool::global().size());
}

Napi::Value SetThreads(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsNumber()) throw_invalid("Expected a number for threads");
    double n = info[0].As<Napi::Number>().DoubleValue();
    if (!(n >= 1 && n <= 1024) || n != std::floor(n))
      throw_invalid("Expected an integer in [1, 1024] for threads but received " + std::to_string(n));
    ThreadPool::global().resize(static_cast<int>(n));
    return info.Env().Undefined();
  });
}

Napi::Value GetIsa(const Napi::CallbackInfo& info) { return Napi::String::New(info.Env(), isa_name(current_isa())); }

Napi::Value SetIsa(const Napi::CallbackInfo& info) {
  return guard(info.Env(), [&]() -> Napi::Value {
    if (info.Length() < 1 || !info[0].IsString()) throw_invalid("Expected a string for isa");
    set_isa(parse_isa(info[0].As<Napi::String>().Utf8Value().c_str()));
    return info.Env().Undefined();
  });
}

Napi::Value SupportedIsas(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  Napi::Array a = Napi::Array::New(env);
  uint32_t i = 0;
  for (Isa isa : {Isa::Avx512, Isa::Avx2, Isa::Portable})
    if (isa_supported(isa)) a.Set(i++, Napi::String::New(env, isa_name(isa)));
  return a;
}

Napi::Value HasAvx512Bf16(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), cpu_has_avx512_bf16()); }

Napi::Value CudaCompiled(const Napi::CallbackInfo& info) { return Napi::Boolean::New(info.Env(), cuda_compiled()); }

Napi::Value CudaInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    GpuInfo g = cuda_info();
    Napi::Object o = Napi::Object::New(env);
    o.Set("compiled", cuda_compiled());
    o.Set("available", g.available);
    o.Set("reason", g.reason);
    o.Set("name", g.name);
    o.Set("totalMemory", static_cast<double>(g.total_memory));
    o.Set("computeCapability", std::to_string(g.cc_major) + "." + std::to_string(g.cc_minor));
    o.Set("driverVersion", g.driver_version);
    o.Set("runtimeVersion", g.runtime_version);
    o.Set("deviceCount", g.device_count);
    o.Set("emulated", g.emulated);
    return o;
  });
}

Napi::Value ProbeFmaPeak(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_or_empty(info);
    bool bf16 = get_bool_or(o, "bf16", false);
    double seconds = get_number_or(o, "seconds", 0.3);
    int repeats = static_cast<int>(get_number_or(o, "repeats", 3));
    if (!(seconds > 0 && seconds <= 60)) throw_invalid("Expected seconds in (0, 60]");
    if (repeats < 1 || repeats > 100) throw_invalid("Expected repeats in [1, 100]");
    return run_async<cpu::PeakResult>(
        env, [=] { return cpu::measure_fma_peak(bf16, seconds, repeats); },
        [](Napi::Env e, cpu::PeakResult& r) -> Napi::Value {
          Napi::Object res = Napi::Object::New(e);
          res.Set("gflops", r.gflops);
          res.Set("seconds", r.seconds);
          res.Set("threads", r.threads);
          res.Set("supported", r.supported);
          return res;
        });
  });
}

Napi::Value ProbeBandwidth(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_or_empty(info);
    int64_t bytes = static_cast<int64_t>(get_number_or(o, "bytes", 256.0 * 1024 * 1024));
    int repeats = static_cast<int>(get_number_or(o, "repeats", 5));
    if (bytes < 4096 || bytes > (int64_t(1) << 34)) throw_invalid("Expected bytes in [4096, 2^34]");
    if (repeats < 1 || repeats > 100) throw_invalid("Expected repeats in [1, 100]");
    return run_async<cpu::BandwidthResult>(
        env, [=] { return cpu::measure_read_bandwidth(bytes, repeats); },
        [](Napi::Env e, cpu::BandwidthResult& r) -> Napi::Value {
          Napi::Object res = Napi::Object::New(e);
          res.Set("gbps", r.gbps);
          res.Set("bytes", r.bytes);
          res.Set("threads", r.threads);
          return res;
        });
  });
}

}  // namespace

void add_core_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("getThreads", Napi::Function::New(env, GetThreads));
  exports.Set("setThreads", Napi::Function::New(env, SetThreads));
  exports.Set("getIsa", Napi::Function::New(env, GetIsa));
  exports.Set("setIsa", Napi::Function::New(env, SetIsa));
  exports.Set("supportedIsas", Napi::Function::New(env, SupportedIsas));
  exports.Set("hasAvx512Bf16", Napi::Function::New(env, HasAvx512Bf16));
  exports.Set("cudaCompiled", Napi::Function::New(env, CudaCompiled));
  exports.Set("cudaInfo", Napi::Function::New(env, CudaInfo));
  exports.Set("probeFmaPeak", Napi::Function::New(env, ProbeFmaPeak));
  exports.Set("probeBandwidth", Napi::Function::New(env, ProbeBandwidth));
  exports.Set("nativeVersion", Napi::String::New(env, "0.1.0"));
}

}  // namespace addon
}  // namespace gpt
