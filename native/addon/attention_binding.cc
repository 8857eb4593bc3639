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
//
// Test-only options (CUDA): `bf16: string[]` names fields the device keeps
// in bf16 (the host's fp32 array is uploaded whole and converted on the
// device, round to nearest even; a bf16 output is converted back to fp32
// for the host), so the kernels' bf16 views can be tested from fp32 data;
// the backend rejects a field it takes in fp32 only. `docStart: Int32Array
// [B*T]` is the document mask (AttnShape::doc_start; checked here).
#include <algorithm>
#include <cmath>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/doc_mask.h"
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
  bool bf16 = false;  // kept in bf16 on the device (option `bf16`)
};

// The `bf16` option: the names of the fields to keep in bf16 (each one of
// `allowed`).
std::vector<std::string> read_bf16_names(const Napi::Object& o, const std::vector<std::string>& allowed) {
  std::vector<std::string> names;
  if (!has(o, "bf16")) return names;
  Napi::Value v = o.Get("bf16");
  if (!v.IsArray()) throw_invalid("Expected an array of field names for bf16");
  Napi::Array a = v.As<Napi::Array>();
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value e = a.Get(i);
    if (!e.IsString()) throw_invalid("Expected a field name (string) for bf16[" + std::to_string(i) + "]");
    std::string n = e.As<Napi::String>().Utf8Value();
    if (std::find(allowed.begin(), allowed.end(), n) == allowed.end())
      throw_invalid("Expected a tensor field of this call for bf16[" + std::to_string(i) + "] but received \"" + n +
                    "\"");
    names.push_back(n);
  }
  return names;
}
void mark_bf16(Field& f, const char* key, const std::vector<std::string>& names) {
  f.bf16 = std::find(names.begin(), names.end(), key) != names.end();
}

// The `docStart` option ([B*T] document starts), checked; empty without it.
std::vector<int32_t> read_doc_start(const Napi::Object& o, const AttnShape& s) {
  if (!has(o, "docStart")) return {};
  ArrayView<int32_t> a = get_i32(o, "docStart", static_cast<size_t>(s.batch) * s.seq);
  check_doc_starts(a.data, s.batch, s.seq);
  return std::vector<int32_t>(a.data, a.data + a.length);
}

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
  // The backend's view of a field; `upload` for inputs. A bf16 field's
  // array goes up as fp32 and is converted on the device.
  AttnTensor put(const Field& f, bool upload, const char* what) {
    if (on_host_) {
      return f.view;
    }
    float* d = static_cast<float*>(be_->alloc(f.length * sizeof(float), what));
    bufs_.push_back(d);
    if (upload) be_->to_device(d, f.data, f.length * sizeof(float));
    AttnTensor t = f.view;
    t.ptr = d + f.offset;
    if (!f.bf16) return t;
    uint16_t* h = static_cast<uint16_t*>(be_->alloc(f.length * sizeof(uint16_t), what));
    bufs_.push_back(h);
    if (upload) be_->convert(TensorRef(h, DType::BF16), CTensorRef(d), static_cast<int64_t>(f.length));
    t.ptr = nullptr;
    t.bf16 = h + f.offset;
    return t;
  }
  // Copies an output back into the caller's array (a bf16 one through fp32).
  void get(const Field& f, const AttnTensor& t) {
    if (!on_host_) {
      if (t.is_bf16()) {
        float* d = static_cast<float*>(be_->alloc(f.length * sizeof(float), "attention output (fp32 copy)"));
        bufs_.push_back(d);
        be_->convert(TensorRef(d), CTensorRef(t.bf16 - f.offset, DType::BF16), static_cast<int64_t>(f.length));
        be_->synchronize();
        be_->to_host(f.data, d, f.length * sizeof(float));
        return;
      }
      be_->synchronize();
      be_->to_host(f.data, t.ptr - f.offset, f.length * sizeof(float));
    } else {
      be_->synchronize();
    }
  }
  // Int32 data (the document starts) in the backend's memory.
  const int32_t* put_i32(const std::vector<int32_t>& v, const char* what) {
    if (v.empty()) return nullptr;
    if (on_host_) return v.data();
    void* d = be_->alloc(v.size() * sizeof(int32_t), what);
    bufs_.push_back(d);
    be_->to_device(d, v.data(), v.size() * sizeof(int32_t));
    return static_cast<const int32_t*>(d);
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
    const std::vector<std::string> b16 = read_bf16_names(o, {"q", "k", "v", "out"});
    mark_bf16(q, "q", b16);
    mark_bf16(k, "k", b16);
    mark_bf16(v, "v", b16);
    mark_bf16(out, "out", b16);
    const std::vector<int32_t> docs = read_doc_start(o, s);
    bool naive = get_bool_or(o, "naive", false);
    std::string dev = read_device(o);
    if (naive && dev != "cpu") throw_invalid("The naive attention kernel runs on the cpu only");
    if (naive && (!b16.empty() || !docs.empty())) throw_invalid("The naive attention kernel takes no bf16 or docStart");
    if (!b16.empty() && dev != "cuda") throw_invalid("Expected device \"cuda\" with bf16 (bf16 storage is CUDA's)");
    return run_async<std::string>(
        env,
        [=]() -> std::string {
          AttnShape s2 = s;
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
          s2.doc_start = st.put_i32(docs, "attention docStart");
          be->attention_forward(s2, o_, l_.ptr, q_, k_, v_);
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
    const std::vector<std::string> b16 =
        read_bf16_names(o, {"q", "k", "v", "out", "dOut", "dq", "dk", "dv"});
    mark_bf16(q, "q", b16);
    mark_bf16(k, "k", b16);
    mark_bf16(v, "v", b16);
    mark_bf16(out, "out", b16);
    mark_bf16(dout, "dOut", b16);
    mark_bf16(dq, "dq", b16);
    mark_bf16(dk, "dk", b16);
    mark_bf16(dv, "dv", b16);
    const std::vector<int32_t> docs = read_doc_start(o, s);
    bool naive = get_bool_or(o, "naive", false);
    std::string dev = read_device(o);
    if (naive && dev != "cpu") throw_invalid("The naive attention kernel runs on the cpu only");
    if (naive && (!b16.empty() || !docs.empty())) throw_invalid("The naive attention kernel takes no bf16 or docStart");
    if (!b16.empty() && dev != "cuda") throw_invalid("Expected device \"cuda\" with bf16 (bf16 storage is CUDA's)");
    return run_async<std::string>(
        env,
        [=]() -> std::string {
          AttnShape s2 = s;
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
          s2.doc_start = st.put_i32(docs, "attention docStart");
          be->attention_backward(s2, dq_, dk_, dv_, q_, k_, v_, o_, l_.ptr, g_);
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
