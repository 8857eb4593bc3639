// What the single-op bindings have in common: backendOp
// (backend_ops_binding.cc) and decodeOp (decode_ops_binding.cc) each run ONE
// Backend op on host arrays (upload, run, download) for the tests and the
// GPU check, and referenceOp (reference_binding.cc) runs the plain CPU
// reference of one. They take one options object whose numbers and typed
// arrays are copied in on the JS thread (the op runs off it), read them with
// the checked readers below, and resolve with an object of Float32Arrays and
// numbers. The attention binding runs on the same per-device backends.
#pragma once
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/model.h"
#include "napi_util.h"

namespace gpt {
namespace addon {

using FVec = std::vector<float>;
using IVec = std::vector<int32_t>;

// The options of one op call, copied out of the JS object.
struct OpInputs {
  std::string device, op;
  std::map<std::string, double> num;  // numbers; booleans as 0 / 1
  std::map<std::string, FVec> f;      // Float32Arrays
  std::map<std::string, IVec> i;      // Int32Arrays
};

// What an op call resolves with.
struct OpOutputs {
  std::map<std::string, FVec> f;
  std::map<std::string, double> num;
};

// One backend per device for the process, shared by the op bindings and the
// attention binding (the only backend singletons; a model owns its own) and
// never destroyed (CUDA teardown at exit can fail after the driver
// unloads). Calls hold op_mutex() while they use it.
inline std::mutex& op_mutex() {
  static std::mutex m;
  return m;
}
inline Backend* op_backend(const std::string& device) {
  static Backend* cpu = nullptr;
  static Backend* gpu = nullptr;
  if (device == "cpu") {
    if (!cpu) cpu = make_cpu_backend().release();
    return cpu;
  }
  if (device == "cuda") {
    if (!gpu) gpu = make_cuda_backend().release();
    return gpu;
  }
  throw_invalid("Expected 'cpu' or 'cuda' for device but received '" + device + "'");
  return nullptr;
}

// Backend buffers of one call, freed when it ends.
class OpBuffers {
 public:
  explicit OpBuffers(Backend* be) : be_(be) {}
  ~OpBuffers() {
    for (void* p : ptrs_) {
      try {
        be_->free(p);
      } catch (...) {
      }
    }
  }
  OpBuffers(const OpBuffers&) = delete;
  OpBuffers& operator=(const OpBuffers&) = delete;
  template <typename T>
  T* up(const std::vector<T>& v, const char* what) {
    T* p = static_cast<T*>(alloc(v.size() * sizeof(T), what));
    be_->to_device(p, v.data(), v.size() * sizeof(T));
    return p;
  }
  // Filled with NaN, so elements an op leaves unwritten are visible.
  float* poisoned(size_t n, const char* what) { return up(FVec(n, std::numeric_limits<float>::quiet_NaN()), what); }
  FVec down(const float* p, size_t n) {
    FVec v(n);
    be_->to_host(v.data(), p, n * sizeof(float));
    return v;
  }

 private:
  void* alloc(size_t bytes, const char* what) {
    void* p = be_->alloc(bytes == 0 ? 4 : bytes, what);
    ptrs_.push_back(p);
    return p;
  }
  Backend* be_;
  std::vector<void*> ptrs_;
};

// ---- checked readers -----------------------------------------------------------
inline int64_t need_int(const OpInputs& a, const char* key, int64_t lo = 1, int64_t hi = (int64_t(1) << 31) - 1) {
  auto it = a.num.find(key);
  if (it == a.num.end()) throw_invalid(std::string("Expected a number for ") + key);
  const double d = it->second;
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != std::floor(d))
    throw_invalid(std::string("Expected an integer in [") + std::to_string(lo) + ", " + std::to_string(hi) + "] for " +
                  key + " but received " + std::to_string(d));
  return static_cast<int64_t>(d);
}
inline int64_t opt_int(const OpInputs& a, const char* key, int64_t lo, int64_t hi, int64_t dflt) {
  return a.num.count(key) ? need_int(a, key, lo, hi) : dflt;
}
inline double opt_num(const OpInputs& a, const char* key, double dflt) {
  auto it = a.num.find(key);
  return it == a.num.end() ? dflt : it->second;
}
inline const FVec& need_f_any(const OpInputs& a, const char* key) {
  auto it = a.f.find(key);
  if (it == a.f.end()) throw_invalid(std::string("Expected a Float32Array for ") + key);
  return it->second;
}
inline const FVec& need_f(const OpInputs& a, const char* key, size_t n) {
  const FVec& v = need_f_any(a, key);
  if (v.size() != n)
    throw_invalid(std::string("Expected a Float32Array of length ") + std::to_string(n) + " for " + key +
                  " but received length " + std::to_string(v.size()));
  return v;
}
inline const IVec& need_i(const OpInputs& a, const char* key, size_t n) {
  auto it = a.i.find(key);
  if (it == a.i.end()) throw_invalid(std::string("Expected an Int32Array for ") + key);
  if (it->second.size() != n)
    throw_invalid(std::string("Expected an Int32Array of length ") + std::to_string(n) + " for " + key +
                  " but received length " + std::to_string(it->second.size()));
  return it->second;
}

// The AdamW arguments of an op call (lr, beta1, beta2, eps, weightDecay,
// gradScale, step); a hyperparameter left out takes StepOptions' default
// (native/core/model.h), gradScale 1 and step 1.
inline AdamWParams read_adamw(const OpInputs& a) {
  const StepOptions d;
  AdamWParams p;
  p.lr = static_cast<float>(opt_num(a, "lr", d.lr));
  p.beta1 = static_cast<float>(opt_num(a, "beta1", d.beta1));
  p.beta2 = static_cast<float>(opt_num(a, "beta2", d.beta2));
  p.eps = static_cast<float>(opt_num(a, "eps", d.eps));
  p.weight_decay = static_cast<float>(opt_num(a, "weightDecay", d.weight_decay));
  p.grad_scale = static_cast<float>(opt_num(a, "gradScale", 1.0));
  p.step = opt_int(a, "step", 1, int64_t(1) << 53, 1);
  return p;
}

// ---- the JS side ------------------------------------------------------------------
// Copies every number, boolean, Float32Array and Int32Array property of `o`
// into `a` (other typed arrays are an error; strings are read by the caller).
inline void read_op_inputs(const Napi::Object& o, OpInputs& a) {
  Napi::Array keys = o.GetPropertyNames();
  for (uint32_t k = 0; k < keys.Length(); ++k) {
    const std::string key = keys.Get(k).As<Napi::String>().Utf8Value();
    Napi::Value v = o.Get(key);
    if (v.IsNumber()) {
      a.num[key] = v.As<Napi::Number>().DoubleValue();
    } else if (v.IsBoolean()) {
      a.num[key] = v.As<Napi::Boolean>().Value() ? 1.0 : 0.0;
    } else if (v.IsTypedArray()) {
      auto ta = v.As<Napi::TypedArray>();
      if (ta.TypedArrayType() == napi_float32_array) {
        auto f = v.As<Napi::Float32Array>();
        a.f[key] = FVec(f.Data(), f.Data() + f.ElementLength());
      } else if (ta.TypedArrayType() == napi_int32_array) {
        auto n = v.As<Napi::Int32Array>();
        a.i[key] = IVec(n.Data(), n.Data() + n.ElementLength());
      } else {
        throw_invalid("Expected a Float32Array or Int32Array for " + key);
      }
    }
  }
}

// The resolved value: { <name>: Float32Array | number, ... }.
inline Napi::Value op_outputs_to_js(Napi::Env env, OpOutputs& r) {
  Napi::Object res = Napi::Object::New(env);
  for (auto& kv : r.f) {
    Napi::Float32Array arr = Napi::Float32Array::New(env, kv.second.size());
    if (!kv.second.empty()) std::memcpy(arr.Data(), kv.second.data(), kv.second.size() * sizeof(float));
    res.Set(kv.first, arr);
  }
  for (auto& kv : r.num) res.Set(kv.first, Napi::Number::New(env, kv.second));
  return res;
}

// The entry point of an op call: `read` takes the fields of its own from the
// options object, every number and typed array is then copied in (the op runs
// off the JS thread), `run` does the op on the pool and the Promise resolves
// with its outputs. `name` is the JS function's, for the error messages.
template <typename Args, typename Read>
Napi::Value op_call(const Napi::CallbackInfo& info, const char* name, Read read, OpOutputs (*run)(const Args&)) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, std::string("Expected an options object for ") + name);
    auto args = std::make_shared<Args>();
    read(o, *args);
    read_op_inputs(o, *args);
    return run_async<OpOutputs>(
        env, [args, run] { return run(*args); }, [](Napi::Env e, OpOutputs& r) { return op_outputs_to_js(e, r); });
  });
}

}  // namespace addon
}  // namespace gpt
