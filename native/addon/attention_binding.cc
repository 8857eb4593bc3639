// N-API glue for the fused attention kernels (lib/attention.ts is the typed,
// validating wrapper). One options object per call; the caller allocates the
// outputs, the work runs on a libuv thread and resolves with the device used.
// The fused kernels run through the Backend interface (attention_forward /
// attention_backward); `naive` runs the plain CPU reference
// (native/cpu/attention_naive.cc) instead.
//
// A tensor field is either a Float32Array holding a contiguous
// [batch, heads, seq, headDim] tensor, or a strided view
// { data: Float32Array, offset, sb, sh, st } (element (b, h, t, d) at
// data[offset + b*sb + h*sh + t*st + d]) -- the layout the model hands over
// from its fused QKV buffer; the tests use it to check strides are honored.
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../cpu/attention.h"
#include "napi_util.h"
#include "op_util.h"

namespace gpt {
namespace addon {
namespace {

struct Field {
  float* data = nullptr;
  size_t length = 0;  // elements in the whole typed array
  int64_t offset = 0;
  AttnTensor view;
};

AttnShape read_shape(const Napi::Object& o) {
  AttnShape s;
  s.batch = static_cast<int>(get_int(o, "batch", 1, 2147483647));
  s.heads = static_cast<int>(get_int(o, "heads", 1, 2147483647));
  s.seq = static_cast<int>(get_int(o, "seq", 1, 2147483647));
  s.head_dim = static_cast<int>(get_int(o, "headDim", 1, 256));
  std::string p = get_string(o, "pattern");
  if (p == "dense")
    s.pattern = AttnPattern::Dense;
  else if (p == "banded")
    s.pattern = AttnPattern::Banded;
  else
    throw_invalid("Expected \"dense\" or \"banded\" for pattern but received \"" + p + "\"");
  s.window = s.pattern == AttnPattern::Banded ? static_cast<int>(get_int(o, "window", 1, 2147483647)) : 0;
  double scale = get_number_or(o, "scale", 1.0 / std::sqrt(static_cast<double>(s.head_dim)));
  if (!std::isfinite(scale) || !std::isfinite(static_cast<float>(scale)))
    throw_invalid("Expected a finite number for scale but received " + std::to_string(scale));
  s.scale = static_cast<float>(scale);
  // CUDA only (the CPU kernels always run fp32); absent means fp32.
  if (has(o, "precision")) {
    std::string pr = get_string(o, "precision");
    if (pr != "fp32" && pr != "bf16")
      throw_invalid("Expected \"fp32\" or \"bf16\" for precision but received \"" + pr + "\"");
    s.precision = pr == "bf16" ? Precision::BF16 : Precision::FP32;
  }
  return s;
}

Napi::Float32Array as_f32(const Napi::Value& v, const std::string& key) {
  if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
    throw_invalid("Expected a Float32Array or a strided view { data, offset, sb, sh, st } for " + key);
  return v.As<Napi::Float32Array>();
}

// A [B, H, T, D] tensor (`lse_like`: a contiguous [B, H, T] one).
Field read_field(const Napi::Object& o, const char* key, const AttnShape& s, std::vector<Napi::Value>& keep,
                 bool lse_like = false) {
  Napi::Value v = o.Get(key);
  const double B = s.batch, H = s.heads, T = s.seq, D = lse_like ? 1 : s.head_dim;
  Field f;
  if (v.IsTypedArray() || lse_like) {
    Napi::Float32Array a = as_f32(v, key);
    const double n = B * H * T * D;
    if (static_cast<double>(a.ElementLength()) != n)
      throw_invalid(std::string("Expected a Float32Array of length ") + std::to_string(static_cast<int64_t>(n)) +
                    " for " + key + " but received length " + std::to_string(a.ElementLength()));
    f.data = a.Data();
    f.length = a.ElementLength();
    f.view = {f.data, static_cast<int64_t>(H * T * D), static_cast<int64_t>(T * D), static_cast<int64_t>(D)};
    keep.push_back(v);
    return f;
  }
  if (!v.IsObject()) throw_invalid(std::string("Expected a Float32Array or a strided view for ") + key);
  Napi::Object vo = v.As<Napi::Object>();
  Napi::Float32Array a = as_f32(vo.Get("data"), std::string(key) + ".data");
  f.data = a.Data();
  f.length = a.ElementLength();
  const int64_t big = int64_t(1) << 50;
  f.offset = get_int(vo, "offset", 0, big);
  int64_t sb = get_int(vo, "sb", 0, big), sh = get_int(vo, "sh", 0, big), st = get_int(vo, "st", 0, big);
  // The last element any (b, h, t, d) reaches must lie inside the array.
  const double last = static_cast<double>(f.offset) + (B - 1) * sb + (H - 1) * sh + (T - 1) * st + (D - 1);
  if (!(last < static_cast<double>(f.length)))
    throw_invalid(std::string("The strided view for ") + key + " reaches element " +
                  std::to_string(static_cast<int64_t>(last)) + " of a Float32Array of length " +
                  std::to_string(f.length));
  f.view = {f.data + f.offset, sb, sh, st};
  keep.push_back(a);
  return f;
}

// Both devices run on the process's backend of that device (op_util.h
// op_backend, under op_mutex). The CPU backend works in host memory, so it
// reads and writes the caller's arrays where they are; on CUDA each field is
// copied to the device whole (so its strides stay valid) and the outputs back.
class Staging {
 public:
  Staging(Backend* be, bool on_host) : be_(be), on_host_(on_host) {}
  ~Staging() {
    for (void* p : bufs_) {
      try {
        be_->free(p);
      } catch (...) {
      }
    }
  }
  Staging(const Staging&) = delete;
  Staging& operator=(const Staging&) = delete;
  // The backend's view of a field; `upload` for inputs.
  AttnTensor put(const Field& f, bool upload, const char* what) {
    if (on_host_) return f.view;
    float* d = static_cast<float*>(be_->alloc(f.length * sizeof(float), what));
    bufs_.push_back(d);
    if (upload) be_->to_device(d, f.data, f.length * sizeof(float));
    AttnTensor t = f.view;
    t.ptr = d + f.offset;
    return t;
  }
  // Copies an output back into the caller's array.
  void get(const Field& f, const AttnTensor& t) {
    be_->synchronize();
    if (!on_host_) be_->to_host(f.data, t.ptr - f.offset, f.length * sizeof(float));
  }

 private:
  Backend* be_;
  bool on_host_;
  std::vector<void*> bufs_;
};

std::string read_device(const Napi::Object& o) {
  std::string dev = has(o, "device") ? get_string(o, "device") : "cpu";
  if (dev != "cpu" && dev != "cuda") throw_invalid("Expected \"cpu\" or \"cuda\" for device but received \"" + dev + "\"");
  return dev;
}

Napi::Value ResolveDevice(Napi::Env env, std::string& dev) { return Napi::String::New(env, dev); }

// attentionForward({ q, k, v, out, lse, batch, heads, seq, headDim, pattern,
//                    window?, scale?, precision?, naive?, device? }) -> Promise<device>
Napi::Value AttentionForward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object");
    AttnShape s = read_shape(o);
    std::vector<Napi::Value> keep;
    Field q = read_field(o, "q", s, keep), k = read_field(o, "k", s, keep), v = read_field(o, "v", s, keep);
    Field out = read_field(o, "out", s, keep), lse = read_field(o, "lse", s, keep, true);
    bool naive = get_bool_or(o, "naive", false);
    std::string dev = read_device(o);
    if (naive && dev != "cpu") throw_invalid("The naive attention kernel runs on the cpu only");
    return run_async<std::string>(
        env,
        [=]() -> std::string {
          if (naive) {
            cpu::attention_naive_forward(s, out.view, lse.view.ptr, q.view, k.view, v.view);
            return dev;
          }
          std::lock_guard<std::mutex> lock(op_mutex());
          Backend* be = op_backend(dev);
          Staging st(be, dev == "cpu");
          AttnTensor q_ = st.put(q, true, "attention q"), k_ = st.put(k, true, "attention k");
          AttnTensor v_ = st.put(v, true, "attention v"), o_ = st.put(out, false, "attention out");
          AttnTensor l_ = st.put(lse, false, "attention lse");
          be->attention_forward(s, o_, l_.ptr, q_, k_, v_);
          st.get(out, o_);
          st.get(lse, l_);
          return dev;
        },
        ResolveDevice, keep);
  });
}

// attentionBackward({ q, k, v, out, lse, dOut, dq, dk, dv, shape..., naive?,
//                     device? }) -> Promise<device>
Napi::Value AttentionBackward(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object");
    AttnShape s = read_shape(o);
    std::vector<Napi::Value> keep;
    Field q = read_field(o, "q", s, keep), k = read_field(o, "k", s, keep), v = read_field(o, "v", s, keep);
    Field out = read_field(o, "out", s, keep), lse = read_field(o, "lse", s, keep, true);
    Field dout = read_field(o, "dOut", s, keep);
    Field dq = read_field(o, "dq", s, keep), dk = read_field(o, "dk", s, keep), dv = read_field(o, "dv", s, keep);
    bool naive = get_bool_or(o, "naive", false);
    std::string dev = read_device(o);
    if (naive && dev != "cpu") throw_invalid("The naive attention kernel runs on the cpu only");
    return run_async<std::string>(
        env,
        [=]() -> std::string {
          if (naive) {
            cpu::attention_naive_backward(s, dq.view, dk.view, dv.view, q.view, k.view, v.view, out.view,
                                          lse.view.ptr, dout.view);
            return dev;
          }
          std::lock_guard<std::mutex> lock(op_mutex());
          Backend* be = op_backend(dev);
          Staging st(be, dev == "cpu");
          AttnTensor q_ = st.put(q, true, "attention q"), k_ = st.put(k, true, "attention k");
          AttnTensor v_ = st.put(v, true, "attention v"), o_ = st.put(out, true, "attention out");
          AttnTensor l_ = st.put(lse, true, "attention lse"), g_ = st.put(dout, true, "attention dOut");
          AttnTensor dq_ = st.put(dq, false, "attention dq"), dk_ = st.put(dk, false, "attention dk");
          AttnTensor dv_ = st.put(dv, false, "attention dv");
          be->attention_backward(s, dq_, dk_, dv_, q_, k_, v_, o_, l_.ptr, g_);
          st.get(dq, dq_);
          st.get(dk, dk_);
          st.get(dv, dv_);
          return dev;
        },
        ResolveDevice, keep);
  });
}

Napi::Value WorkspaceHighWater(const Napi::CallbackInfo& info) {
  return Napi::Number::New(info.Env(), static_cast<double>(cpu::attention_workspace_high_water()));
}

Napi::Value ResetWorkspace(const Napi::CallbackInfo& info) {
  cpu::attention_workspace_reset();
  return info.Env().Undefined();
}

}  // namespace

void add_attention_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("attentionForward", Napi::Function::New(env, AttentionForward));
  exports.Set("attentionBackward", Napi::Function::New(env, AttentionBackward));
  exports.Set("attentionWorkspaceHighWater", Napi::Function::New(env, WorkspaceHighWater));
  exports.Set("attentionResetWorkspace", Napi::Function::New(env, ResetWorkspace));
}

}  // namespace addon
}  // namespace gpt
