// N-API glue for the GPT model (lib/model.ts): createModel() returns a
// handle whose methods run the core's training step. Long calls run in a
// PromiseWorker holding a shared_ptr to the model and its mutex, so calls on
// one model never overlap; lib/model.ts keeps them in FIFO order.
#include "model_binding.h"

#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/model.h"
#include "napi_util.h"

namespace gpt {
namespace addon {
namespace {

class ModelHandle : public Napi::ObjectWrap<ModelHandle> {
 public:
  // The constructor of this thread's environment (the addon is
  // context-aware: each worker thread has its own env and its own class).
  static thread_local Napi::FunctionReference* ctor;

  static Napi::Function Define(Napi::Env env) {
    return DefineClass(env, "NativeModel",
                       {
                           InstanceMethod("forward", &ModelHandle::Forward),
                           InstanceMethod("loss", &ModelHandle::Loss),
                           InstanceMethod("forwardBackward", &ModelHandle::ForwardBackward),
                           InstanceMethod("step", &ModelHandle::Step),
                           InstanceMethod("zeroGrad", &ModelHandle::ZeroGrad),
                           InstanceMethod("gradNorm", &ModelHandle::GradNorm),
                           InstanceMethod("tensorInfo", &ModelHandle::TensorInfoJs),
                           InstanceMethod("readTensors", &ModelHandle::ReadTensors),
                           InstanceMethod("writeTensors", &ModelHandle::WriteTensors),
                           InstanceMethod("getStep", &ModelHandle::GetStep),
                           InstanceMethod("setStep", &ModelHandle::SetStep),
                           InstanceMethod("accumulatedTargets", &ModelHandle::AccumulatedTargets),
                           InstanceMethod("graphs", &ModelHandle::Graphs),
                           InstanceMethod("storage", &ModelHandle::Storage),
                           InstanceMethod("memory", &ModelHandle::Memory),
                           InstanceMethod("timings", &ModelHandle::TimingsJs),
                           InstanceMethod("dispose", &ModelHandle::Dispose),
                       });
  }

  ModelHandle(const Napi::CallbackInfo& info) : Napi::ObjectWrap<ModelHandle>(info) {
    if (info.Length() < 1 || !info[0].IsExternal())
      throw Napi::TypeError::New(info.Env(), "NativeModel is created by createModel()");
    auto* p = info[0].As<Napi::External<std::shared_ptr<Model>>>().Data();
    model_ = *p;
  }

  std::shared_ptr<Model> model(Napi::Env env) const {
    if (!model_) throw make_error(env, "DISPOSED", "This model was disposed");
    return model_;
  }

 private:
  struct Batch {
    std::vector<int32_t> tokens, targets;
    int B = 0, T = 0;
    int32_t doc_eot = -1;  // docEot: the document mask's end-of-text id, -1 = no mask
  };
  // Copies the ids so later changes to the JS arrays cannot race the worker.
  static Batch read_batch(const Napi::Object& o, bool with_targets) {
    Batch b;
    b.B = static_cast<int>(get_int(o, "batch", 1, 1 << 24));
    b.T = static_cast<int>(get_int(o, "seq", 1, 1 << 24));
    const size_t n = static_cast<size_t>(b.B) * static_cast<size_t>(b.T);
    auto t = get_i32(o, "tokens", n);
    b.tokens.assign(t.data, t.data + n);
    if (with_targets) {
      auto g = get_i32(o, "targets", n);
      b.targets.assign(g.data, g.data + n);
    }
    if (has(o, "docEot")) b.doc_eot = static_cast<int32_t>(get_int(o, "docEot", 0, (int64_t(1) << 31) - 1));
    return b;
  }

  Napi::Value Forward(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      auto b = std::make_shared<Batch>(read_batch(options_arg(info), false));
      const size_t n = static_cast<size_t>(b->B) * b->T * m->config().vocab_size;
      Napi::Float32Array out = Napi::Float32Array::New(env, n);
      float* dst = out.Data();
      return run_async<int>(
          env,
          [m, b, dst] {
            std::lock_guard<std::mutex> lk(m->mutex());
            m->forward(b->tokens.data(), b->B, b->T, dst, b->doc_eot);
            return 0;
          },
          [ref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(out))](Napi::Env,
                                                                                                int&) -> Napi::Value {
            return ref->Value();
          },
          {out});
    });
  }

  struct LossResult {
    double loss = 0;
    int64_t count = 0;
    Timings t;
  };

  // One loss call (loss, forward_backward or its deferred form) on the pool,
  // resolving with loss_value.
  using LossFn = double (*)(Model&, const Batch&, int64_t* count);
  Napi::Value RunLoss(const Napi::CallbackInfo& info, LossFn fn) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      auto b = std::make_shared<Batch>(read_batch(options_arg(info), true));
      return run_async<LossResult>(
          env,
          [m, b, fn] {
            std::lock_guard<std::mutex> lk(m->mutex());
            LossResult r;
            r.loss = fn(*m, *b, &r.count);
            r.t = m->timings();
            return r;
          },
          &loss_value);
    });
  }

  Napi::Value Loss(const Napi::CallbackInfo& info) {
    return RunLoss(info, [](Model& m, const Batch& b, int64_t* n) {
      return m.loss(b.tokens.data(), b.targets.data(), b.B, b.T, n, b.doc_eot);
    });
  }
  // forwardBackward({ ..., deferLoss? }): with deferLoss true the loss stays
  // on the device (Model::forward_backward_deferred) and the call resolves
  // with NaN for it; the next step() reports the mean of those losses.
  Napi::Value ForwardBackward(const Napi::CallbackInfo& info) {
    bool defer = false;
    guard(info.Env(), [&]() -> Napi::Value {  // throws the error of a bad deferLoss
      Napi::Object o = options_arg(info);
      if (has(o, "deferLoss")) {
        const Napi::Value d = o.Get("deferLoss");
        if (!d.IsBoolean()) throw_invalid("Expected a boolean for deferLoss");
        defer = d.As<Napi::Boolean>().Value();
      }
      return info.Env().Undefined();
    });
    if (defer)
      return RunLoss(info, [](Model& m, const Batch& b, int64_t* n) {
        m.forward_backward_deferred(b.tokens.data(), b.targets.data(), b.B, b.T, n, b.doc_eot);
        return std::numeric_limits<double>::quiet_NaN();
      });
    return RunLoss(info, [](Model& m, const Batch& b, int64_t* n) {
      return m.forward_backward(b.tokens.data(), b.targets.data(), b.B, b.T, n, b.doc_eot);
    });
  }

  static Napi::Value loss_value(Napi::Env env, LossResult& r) {
    Napi::Object o = Napi::Object::New(env);
    o.Set("loss", r.loss);
    o.Set("count", static_cast<double>(r.count));
    o.Set("forwardMs", r.t.forward_ms);
    o.Set("backwardMs", r.t.backward_ms);
    return o;
  }

  struct StepOut {
    StepResult r;
    double ms = 0;
  };

  Napi::Value Step(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      Napi::Object o = options_arg(info);
      // lr is required; a key left out keeps StepOptions' default (model.h).
      StepOptions s;
      s.lr = static_cast<float>(get_number(o, "lr"));
      s.beta1 = static_cast<float>(get_number_or(o, "beta1", s.beta1));
      s.beta2 = static_cast<float>(get_number_or(o, "beta2", s.beta2));
      s.eps = static_cast<float>(get_number_or(o, "eps", s.eps));
      s.weight_decay = static_cast<float>(get_number_or(o, "weightDecay", s.weight_decay));
      s.grad_clip = static_cast<float>(get_number_or(o, "gradClip", s.grad_clip));
      return run_async<StepOut>(
          env,
          [m, s] {
            std::lock_guard<std::mutex> lk(m->mutex());
            StepOut out;
            out.r = m->step(s);
            out.ms = m->timings().optimizer_ms;
            return out;
          },
          [](Napi::Env e, StepOut& out) -> Napi::Value {
            Napi::Object r = Napi::Object::New(e);
            r.Set("gradNorm", out.r.grad_norm);
            r.Set("clipScale", out.r.clip_scale);
            r.Set("step", static_cast<double>(out.r.step));
            r.Set("tokens", static_cast<double>(out.r.tokens));
            r.Set("deferred", static_cast<double>(out.r.deferred));
            r.Set("loss", out.r.loss);
            r.Set("optimizerMs", out.ms);
            return r;
          });
    });
  }

  Napi::Value ZeroGrad(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = model(info.Env());
      std::lock_guard<std::mutex> lk(m->mutex());
      m->zero_grad();
      return info.Env().Undefined();
    });
  }

  Napi::Value GradNorm(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = model(info.Env());
      std::lock_guard<std::mutex> lk(m->mutex());
      return Napi::Number::New(info.Env(), m->grad_norm());
    });
  }

  Napi::Value TensorInfoJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      const auto& ts = m->tensors();
      Napi::Array a = Napi::Array::New(env, ts.size());
      for (size_t i = 0; i < ts.size(); ++i) {
        Napi::Object o = Napi::Object::New(env);
        o.Set("name", ts[i].name);
        Napi::Array sh = Napi::Array::New(env, ts[i].shape.size());
        for (size_t j = 0; j < ts[i].shape.size(); ++j) sh.Set(static_cast<uint32_t>(j), static_cast<double>(ts[i].shape[j]));
        o.Set("shape", sh);
        o.Set("decay", ts[i].decay);
        a.Set(static_cast<uint32_t>(i), o);
      }
      return a;
    });
  }

  static Model::Buffer parse_buffer(const Napi::Value& v) {
    if (!v.IsString()) throw_invalid("Expected a buffer name");
    std::string s = v.As<Napi::String>().Utf8Value();
    if (s == "params") return Model::Buffer::Params;
    if (s == "grads") return Model::Buffer::Grads;
    if (s == "exp_avg") return Model::Buffer::ExpAvg;
    if (s == "exp_avg_sq") return Model::Buffer::ExpAvgSq;
    throw_invalid("Expected one of params, grads, exp_avg, exp_avg_sq but received " + s);
    return Model::Buffer::Params;
  }

  // readTensors(buffer) -> Float32Array[] in tensorInfo() order (copies).
  Napi::Value ReadTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      if (info.Length() < 1) throw_invalid("Expected a buffer name");
      Model::Buffer which = parse_buffer(info[0]);
      std::lock_guard<std::mutex> lk(m->mutex());
      const auto& ts = m->tensors();
      Napi::Array a = Napi::Array::New(env, ts.size());
      for (size_t i = 0; i < ts.size(); ++i) {
        Napi::Float32Array t = Napi::Float32Array::New(env, static_cast<size_t>(ts[i].numel));
        m->read_tensor(which, static_cast<int>(i), t.Data());
        a.Set(static_cast<uint32_t>(i), t);
      }
      return a;
    });
  }

  // writeTensors(buffer, arrays): arrays[i] is a Float32Array for tensor i, or
  // undefined to leave it. Sizes are checked before anything is written.
  Napi::Value WriteTensors(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      if (info.Length() < 2 || !info[1].IsArray()) throw_invalid("Expected a buffer name and an array of tensors");
      Model::Buffer which = parse_buffer(info[0]);
      if (which == Model::Buffer::Grads) throw_invalid("Gradients cannot be written");
      Napi::Array a = info[1].As<Napi::Array>();
      const auto& ts = m->tensors();
      if (a.Length() != ts.size())
        throw_invalid("Expected " + std::to_string(ts.size()) + " entries but received " + std::to_string(a.Length()));
      std::vector<const float*> src(ts.size(), nullptr);
      for (uint32_t i = 0; i < a.Length(); ++i) {
        Napi::Value v = a.Get(i);
        if (v.IsUndefined() || v.IsNull()) continue;
        if (!v.IsTypedArray() || v.As<Napi::TypedArray>().TypedArrayType() != napi_float32_array)
          throw_invalid("Expected a Float32Array for " + ts[i].name);
        auto f = v.As<Napi::Float32Array>();
        if (static_cast<int64_t>(f.ElementLength()) != ts[i].numel)
          throw_invalid("Expected a Float32Array of length " + std::to_string(ts[i].numel) + " for " + ts[i].name +
                        " but received length " + std::to_string(f.ElementLength()));
        src[i] = f.Data();
      }
      std::lock_guard<std::mutex> lk(m->mutex());
      for (size_t i = 0; i < ts.size(); ++i)
        if (src[i]) m->write_tensor(which, static_cast<int>(i), src[i]);
      return env.Undefined();
    });
  }

  Napi::Value GetStep(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = model(info.Env());
      std::lock_guard<std::mutex> lk(m->mutex());
      return Napi::Number::New(info.Env(), static_cast<double>(m->optimizer_step()));
    });
  }

  Napi::Value SetStep(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = model(info.Env());
      if (info.Length() < 1 || !info[0].IsNumber()) throw_invalid("Expected a number for step");
      double s = info[0].As<Napi::Number>().DoubleValue();
      if (!(s >= 0 && s <= 9007199254740991.0) || s != static_cast<double>(static_cast<int64_t>(s)))
        throw_invalid("Expected a non-negative integer for step");
      std::lock_guard<std::mutex> lk(m->mutex());
      m->set_optimizer_step(static_cast<int64_t>(s));
      return info.Env().Undefined();
    });
  }

  Napi::Value AccumulatedTargets(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = model(info.Env());
      std::lock_guard<std::mutex> lk(m->mutex());
      return Napi::Number::New(info.Env(), static_cast<double>(m->accumulated_targets()));
    });
  }

  // CUDA graphs of the training step (GPT_ENGINE_CUDA_GRAPH=1; docs/GPU.md):
  // "on" or "off: <why>", then how many graphs were captured and replayed.
  Napi::Value Graphs(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = model(info.Env());
      std::lock_guard<std::mutex> lk(m->mutex());
      return Napi::String::New(info.Env(), m->backend().graph_status());
    });
  }

  // "fp32" or "bf16": Model::storage() (docs/ARCHITECTURE.md "Precision").
  Napi::Value Storage(const Napi::CallbackInfo& info) {
    return guard(info.Env(), [&]() -> Napi::Value {
      auto m = model(info.Env());
      return Napi::String::New(info.Env(), dtype_name(m->storage()));
    });
  }

  Napi::Value Memory(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      std::lock_guard<std::mutex> lk(m->mutex());
      Model::Memory mm = m->memory();
      Napi::Object o = Napi::Object::New(env);
      o.Set("params", static_cast<double>(mm.params));
      o.Set("grads", static_cast<double>(mm.grads));
      o.Set("optimizer", static_cast<double>(mm.optimizer));
      o.Set("activations", static_cast<double>(mm.activations));
      return o;
    });
  }

  Napi::Value TimingsJs(const Napi::CallbackInfo& info) {
    Napi::Env env = info.Env();
    return guard(env, [&]() -> Napi::Value {
      auto m = model(env);
      std::lock_guard<std::mutex> lk(m->mutex());
      Timings t = m->timings();
      Napi::Object o = Napi::Object::New(env);
      o.Set("forwardMs", t.forward_ms);
      o.Set("backwardMs", t.backward_ms);
      o.Set("optimizerMs", t.optimizer_ms);
      return o;
    });
  }

  // Frees the model once no call holds it (a running worker keeps its own
  // reference; lib/model.ts waits for it first anyway).
  Napi::Value Dispose(const Napi::CallbackInfo& info) {
    model_.reset();
    return info.Env().Undefined();
  }

  std::shared_ptr<Model> model_;
};

thread_local Napi::FunctionReference* ModelHandle::ctor = nullptr;

// The dimensions of a config (all the memory layout depends on).
ModelConfig read_dims(const Napi::Object& c) {
  ModelConfig cfg;
  cfg.n_layer = static_cast<int>(get_int(c, "n_layer", 1, 4096));
  cfg.n_head = static_cast<int>(get_int(c, "n_head", 1, 4096));
  cfg.n_embd = static_cast<int>(get_int(c, "n_embd", 1, 1 << 24));
  cfg.n_positions = static_cast<int>(get_int(c, "n_positions", 1, 1 << 24));
  cfg.vocab_size = static_cast<int>(get_int(c, "vocab_size", 1, 1 << 24));
  return cfg;
}

ModelConfig read_config(const Napi::Object& c) {
  ModelConfig cfg = read_dims(c);
  cfg.layer_norm_epsilon = static_cast<float>(get_number_or(c, "layer_norm_epsilon", 1e-5));
  cfg.attention_window = has(c, "attention_window") ? static_cast<int>(get_int(c, "attention_window", 1, 1 << 24)) : 0;
  Napi::Value p = c.Get("patterns");
  if (!p.IsArray()) throw_invalid("Expected an array of layer patterns for patterns");
  Napi::Array a = p.As<Napi::Array>();
  if (static_cast<int>(a.Length()) != cfg.n_layer) throw_invalid("Expected one pattern per layer for patterns");
  for (uint32_t i = 0; i < a.Length(); ++i) {
    Napi::Value v = a.Get(i);
    std::string s = v.IsString() ? v.As<Napi::String>().Utf8Value() : "";
    if (s == "dense")
      cfg.patterns.push_back(AttnPattern::Dense);
    else if (s == "banded")
      cfg.patterns.push_back(AttnPattern::Banded);
    else
      throw_invalid("Expected \"dense\" or \"banded\" for patterns[" + std::to_string(i) + "]");
  }
  return cfg;
}

// createModel({ config, device: 'cpu'|'cuda', precision: 'fp32'|'bf16', seed })
// -> Promise<NativeModel>. Allocation and initialization run off the JS thread.
Napi::Value CreateModel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object");
    if (!o.Get("config").IsObject()) throw_invalid("Expected an object for config");
    ModelConfig cfg = read_config(o.Get("config").As<Napi::Object>());
    std::string device = has(o, "device") ? get_string(o, "device") : "cpu";
    std::string prec = has(o, "precision") ? get_string(o, "precision") : "fp32";
    if (device != "cpu" && device != "cuda") throw_invalid("Expected \"cpu\" or \"cuda\" for device but received " + device);
    if (prec != "fp32" && prec != "bf16") throw_invalid("Expected \"fp32\" or \"bf16\" for precision but received " + prec);
    double seed_d = get_number_or(o, "seed", 0);
    if (!(seed_d >= 0 && seed_d <= 9007199254740991.0) || seed_d != static_cast<double>(static_cast<uint64_t>(seed_d)))
      throw_invalid("Expected a non-negative safe integer for seed");
    const uint64_t seed = static_cast<uint64_t>(seed_d);
    const Precision p = prec == "bf16" ? Precision::BF16 : Precision::FP32;
    return run_async<std::shared_ptr<Model>>(
        env,
        [cfg, device, p, seed] {
          std::unique_ptr<Backend> be = device == "cuda" ? make_cuda_backend() : make_cpu_backend();
          return std::make_shared<Model>(cfg, std::move(be), p, seed);
        },
        [](Napi::Env e, std::shared_ptr<Model>& m) -> Napi::Value {
          auto* holder = new std::shared_ptr<Model>(m);
          Napi::External<std::shared_ptr<Model>> ext = Napi::External<std::shared_ptr<Model>>::New(
              e, holder, [](Napi::Env, std::shared_ptr<Model>* h) { delete h; });
          return ModelHandle::ctor->New({ext});
        });
  });
}

// memoryLayout({ config: { n_layer, n_head, n_embd, n_positions, vocab_size },
//                batch?, seq?, storage? }) -> { params, grads, optimizer, activations, scratch }:
// the bytes a model of this config holds (Model::plan_memory), with the
// activations for batch x seq rows (0 without them). storage 'fp32' (the
// default; the CPU, and CUDA in fp32) or 'bf16' (CUDA in bf16: the stored
// activations take half, params add the weights' bf16 copy). scratch: what the CUDA backend
// reserves for a training step of that shape (cuda_training_scratch_bytes;
// 0 in a build without CUDA); the CPU backend holds none. A figure too large
// to count is Infinity. Synchronous: no allocation, just arithmetic over the
// layout.
Napi::Value MemoryLayout(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info, "Expected an options object");
    if (!o.Get("config").IsObject()) throw_invalid("Expected an object for config");
    const ModelConfig cfg = read_dims(o.Get("config").As<Napi::Object>());
    if (has(o, "batch") != has(o, "seq")) throw_invalid("Expected batch and seq together (or neither)");
    int64_t rows = 0, batch = 0, seq = 0;
    if (has(o, "batch")) {
      const int64_t big = int64_t(1) << 53;
      batch = get_int(o, "batch", 1, big);
      seq = get_int(o, "seq", 1, big);
      rows = batch > std::numeric_limits<int64_t>::max() / seq ? std::numeric_limits<int64_t>::max() : batch * seq;
    }
    DType storage = DType::F32;
    if (has(o, "storage")) {
      const std::string st = get_string(o, "storage");
      if (st == "bf16")
        storage = DType::BF16;
      else if (st != "fp32")
        throw_invalid("Expected 'fp32' or 'bf16' for storage but received '" + st + "'");
    }
    const Model::Memory m = Model::plan_memory(cfg, rows, storage);
    auto num = [](size_t v) { return v == SIZE_MAX ? std::numeric_limits<double>::infinity() : static_cast<double>(v); };
    size_t scratch = SIZE_MAX;
    if (rows <= std::numeric_limits<int32_t>::max() && m.params != SIZE_MAX) {
      TrainingShape ts;
      ts.B = static_cast<int>(batch);  // rows fit an int32, so batch and seq do
      ts.T = static_cast<int>(seq);
      ts.C = cfg.n_embd;
      ts.H = cfg.n_head;
      ts.params = static_cast<int64_t>(m.grads / sizeof(float));
      ts.storage = storage;
      const int64_t Vp = (int64_t(cfg.vocab_size) + 63) / 64 * 64;
      ts.classifier_elems = classifier_capacity_rows(rows, Vp) * Vp;
      scratch = cuda_training_scratch_bytes(ts);
    }
    Napi::Object r = Napi::Object::New(env);
    r.Set("params", num(m.params));
    r.Set("grads", num(m.grads));
    r.Set("optimizer", num(m.optimizer));
    r.Set("activations", num(m.activations));
    r.Set("scratch", num(scratch));
    return r;
  });
}

}  // namespace

void add_model_exports(Napi::Env env, Napi::Object exports) {
  Napi::Function f = ModelHandle::Define(env);
  // One constructor per environment (the addon is context-aware): keep it in
  // the instance data of this env.
  auto* ref = new Napi::FunctionReference(Napi::Persistent(f));
  env.AddCleanupHook([ref] {
    if (ModelHandle::ctor == ref) ModelHandle::ctor = nullptr;
    delete ref;
  });
  ModelHandle::ctor = ref;
  exports.Set("NativeModel", f);
  exports.Set("createModel", Napi::Function::New(env, CreateModel));
  exports.Set("memoryLayout", Napi::Function::New(env, MemoryLayout));
}

std::shared_ptr<Model> unwrap_model(const Napi::Value& handle) {
  Napi::Env env = handle.Env();
  if (!ModelHandle::ctor || !handle.IsObject() || !handle.As<Napi::Object>().InstanceOf(ModelHandle::ctor->Value()))
    throw GptError(ErrorCode::InvalidArgument, "Expected a model handle");
  return ModelHandle::Unwrap(handle.As<Napi::Object>())->model(env);
}

}  // namespace addon
}  // namespace gpt
