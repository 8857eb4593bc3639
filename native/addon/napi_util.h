// Small helpers shared by the binding files: typed readers for the one
// options object each call takes (STYLE: one options object across the
// boundary), error conversion, and a Promise-returning AsyncWorker that keeps
// its inputs alive and never lets a C++ exception escape.
#pragma once
#include <napi.h>

// worker.terminate() stops a worker's environment from the main thread while
// the worker may be inside one of our functions. From then on every napi call
// that could run JS fails (napi_pending_exception with no exception pending),
// so node-addon-api throws a Napi::Error, guard() lets it through, and the
// callback wrapper tries to throw it into JS. That fails too, and without this
// define node-addon-api answers by throwing again from its catch handler,
// where nothing catches: std::terminate, the whole process aborts. With it,
// the error is dropped (no JS is left to see it). Set for every file by
// CMakeLists.txt and binding.gyp; test/native/concurrency-terminate.test.ts.
#ifndef NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS
#error "build the addon with NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS defined (see CMakeLists.txt)"
#endif

#include <functional>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "../core/error.h"

namespace gpt {
namespace addon {

// A JS Error with a `code` property (turned into a named class in lib/errors.ts).
inline Napi::Error make_error(Napi::Env env, const std::string& code, const std::string& message) {
  Napi::Error e = Napi::Error::New(env, message);
  e.Set("code", Napi::String::New(env, code));
  return e;
}

inline void throw_invalid(const std::string& msg) { throw GptError(ErrorCode::InvalidArgument, msg); }

// ---- option readers (lib/ validates first; these are the last line) ------
inline Napi::Value get_field(const Napi::Object& o, const char* key) { return o.Get(key); }

inline bool has(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  return !v.IsUndefined() && !v.IsNull();
}

inline double get_number(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsNumber()) throw_invalid(std::string("Expected a number for ") + key);
  return v.As<Napi::Number>().DoubleValue();
}

inline double get_number_or(const Napi::Object& o, const char* key, double dflt) {
  return has(o, key) ? get_number(o, key) : dflt;
}

inline int64_t get_int(const Napi::Object& o, const char* key, int64_t lo, int64_t hi) {
  double d = get_number(o, key);
  if (!(d >= static_cast<double>(lo) && d <= static_cast<double>(hi)) || d != static_cast<double>(static_cast<int64_t>(d)))
    throw_invalid(std::string("Expected an integer in [") + std::to_string(lo) + ", " + std::to_string(hi) + "] for " +
                  key + " but received " + std::to_string(d));
  return static_cast<int64_t>(d);
}

inline std::string get_string(const Napi::Object& o, const char* key) {
  Napi::Value v = o.Get(key);
  if (!v.IsString()) throw_invalid(std::string("Expected a string for ") + key);
  return v.As<Napi::String>().Utf8Value();
}

inline bool get_bool_or(const Napi::Object& o, const char* key, bool dflt) {
  Napi::Value v = o.Get(key);
  if (v.IsUndefined() || v.IsNull()) return dflt;
  if (!v.IsBoolean()) throw_invalid(std::string("Expected a boolean for ") + key);
  return v.As<Napi::Boolean>().Value();
}

template <typename T>
struct ArrayView {
  T* data = nullptr;
  size_t length = 0;
};

// A typed array of exactly expect_len elements; `what` names its class ("a
// Float32Array") in the messages.
template <typename A, typename T>
ArrayView<T> get_typed(const Napi::Object& o, const char* key, size_t expect_len, napi_typedarray_type type,
                       const char* what) {
  Napi::Value v = o.Get(key);
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != type)
    throw_invalid(std::string("Expected ") + what + " for " + key);
  auto a = v.As<A>();
  if (a.ElementLength() != expect_len)
    throw_invalid(std::string("Expected ") + what + " of length " + std::to_string(expect_len) + " for " + key +
                  " but received length " + std::to_string(a.ElementLength()));
  return {a.Data(), a.ElementLength()};
}

inline ArrayView<float> get_f32(const Napi::Object& o, const char* key, size_t expect_len) {
  return get_typed<Napi::Float32Array, float>(o, key, expect_len, napi_float32_array, "a Float32Array");
}

inline ArrayView<int32_t> get_i32(const Napi::Object& o, const char* key, size_t expect_len) {
  return get_typed<Napi::Int32Array, int32_t>(o, key, expect_len, napi_int32_array, "an Int32Array");
}

inline ArrayView<uint8_t> get_u8(const Napi::Object& o, const char* key, size_t expect_len) {
  return get_typed<Napi::Uint8Array, uint8_t>(o, key, expect_len, napi_uint8_array, "a Uint8Array");
}

// The one options object of a call; `msg` is the whole error when it is missing.
inline Napi::Object options_arg(const Napi::CallbackInfo& info,
                                const std::string& msg = "Expected an options object") {
  if (info.Length() < 1 || !info[0].IsObject()) throw_invalid(msg);
  return info[0].As<Napi::Object>();
}

// The options object where the call has one, else an empty one (every field optional).
inline Napi::Object options_or_empty(const Napi::CallbackInfo& info) {
  return info.Length() > 0 && info[0].IsObject() ? info[0].As<Napi::Object>() : Napi::Object::New(info.Env());
}

// Runs fn on the calling (JS) thread, converting C++ exceptions to JS errors.
template <typename Fn>
Napi::Value guard(Napi::Env env, Fn&& fn) {
  try {
    return fn();
  } catch (const Napi::Error&) {
    throw;
  } catch (const GptError& e) {
    throw make_error(env, e.code_name(), e.what());
  } catch (const std::bad_alloc&) {
    throw make_error(env, "OUT_OF_MEMORY", "out of host memory");
  } catch (const std::exception& e) {
    throw make_error(env, "INTERNAL", e.what());
  }
}

// A Promise-returning worker. `work` runs on a libuv thread and must not touch
// JS values; `done` runs on the JS thread and builds the resolved value.
// `keep` holds JS values (typed arrays) alive until the work is over.
template <typename R>
class PromiseWorker : public Napi::AsyncWorker {
 public:
  PromiseWorker(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> done,
                const std::vector<Napi::Value>& keep)
      : Napi::AsyncWorker(env, "gpt-engine"), deferred_(Napi::Promise::Deferred::New(env)),
        work_(std::move(work)), done_(std::move(done)) {
    for (const auto& v : keep) refs_.push_back(Napi::Persistent(v));
  }
  Napi::Promise promise() { return deferred_.Promise(); }

 protected:
  void Execute() override {
    try {
      result_ = std::make_unique<R>(work_());
    } catch (const GptError& e) {
      code_ = e.code_name();
      msg_ = e.what();
    } catch (const std::bad_alloc&) {
      code_ = "OUT_OF_MEMORY";
      msg_ = "out of host memory";
    } catch (const std::exception& e) {
      code_ = "INTERNAL";
      msg_ = e.what();
    } catch (...) {
      code_ = "INTERNAL";
      msg_ = "unknown native error";
    }
  }
  // OnOK / OnError also run while a worker thread's environment is being torn
  // down (worker.terminate() during the native work): JS cannot run then, so
  // building the value and settling the promise throw. Nothing is waiting for
  // it any more; swallow here rather than rely on the wrapper (see the top).
  void OnOK() override {
    try {
      Napi::Env env = Env();
      Napi::HandleScope scope(env);
      if (!code_.empty()) {
        deferred_.Reject(make_error(env, code_, msg_).Value());
        return;
      }
      try {
        deferred_.Resolve(done_(env, *result_));
      } catch (const Napi::Error& e) {
        deferred_.Reject(e.Value());
      } catch (const GptError& e) {
        deferred_.Reject(make_error(env, e.code_name(), e.what()).Value());
      } catch (const std::exception& e) {
        deferred_.Reject(make_error(env, "INTERNAL", e.what()).Value());
      }
    } catch (const Napi::Error&) {
      // the environment is shutting down
    }
  }
  void OnError(const Napi::Error& e) override {
    try {
      deferred_.Reject(e.Value());
    } catch (const Napi::Error&) {
      // the environment is shutting down
    }
  }

 private:
  Napi::Promise::Deferred deferred_;
  std::function<R()> work_;
  std::function<Napi::Value(Napi::Env, R&)> done_;
  std::unique_ptr<R> result_;
  std::string code_, msg_;
  std::vector<Napi::Reference<Napi::Value>> refs_;
};

// Queues work and returns its Promise.
template <typename R>
Napi::Promise run_async(Napi::Env env, std::function<R()> work, std::function<Napi::Value(Napi::Env, R&)> done,
                        const std::vector<Napi::Value>& keep = {}) {
  auto* w = new PromiseWorker<R>(env, std::move(work), std::move(done), keep);
  Napi::Promise p = w->promise();
  w->Queue();
  return p;
}

}  // namespace addon
}  // namespace gpt
