// N-API glue for incremental decoding (lib/generate.ts through lib/model.ts):
//
//   decodeOpen(model, { capacities: Int32Array, abort: Int32Array, extendMax?: number }) -> session
//     (extendMax: the most tokens one extend appends to a sequence, default 1;
//     it sizes the rings of banded layers)
//   session.prefill({ tokens: Int32Array, lengths: Int32Array }) -> Promise<Float32Array [B*V]>
//     (at any time: a sequence given tokens starts over at position 0, one
//     with length 0 keeps its cache; DecodeState::prefill)
//   session.extend({ tokens: Int32Array, lengths: Int32Array }) -> Promise<Float32Array [B*V]>
//     (sequence b continues from its cache with lengths[b] tokens, 0 keeps
//     it as it is; DecodeState::extend: the chunks of a chunked prefill)
//   session.step({ tokens: Int32Array [B], active: Uint8Array [B] }) -> Promise<Float32Array [B*V]>
//   session.resize({ capacities: Int32Array }) -> undefined   (synchronous:
//     DecodeState::resize; the sequences whose capacity is unchanged keep
//     their caches; `batch` and the logits array follow the new size)
//   session.cacheBytes() / scratchBytes() / positions() / close()
//   decodeKernel({ op: 'linear' | 'head', precision: 'fp32' | 'bf16', M, K, N,
//                  x: Float32Array [M*K], w: Float32Array ([K*N] linear, [N*K] head),
//                  bias?: Float32Array [N], repeats?: number })
//     -> { out: Float32Array [M*N], seconds }   (synchronous; for tests:
//     the kernels of native/cpu/decode_kernels.h
//     on the current ISA path, bf16 weights packed first, seconds per call)
//
// The logits come back in one Float32Array owned by the session and reused
// by every call (valid until the next call). abort[0] is read by the worker
// between layers: JS sets it from an AbortSignal and the running call
// rejects with ABORTED within one layer. Calls on one session must not
// overlap (lib/ awaits each); the worker takes the model's mutex, so decode
// and training calls on one model never run at the same time.
#include <atomic>
#include <memory>
#include <string>
#include <vector>

#include <chrono>

#include "../core/decode.h"
#include "../cpu/decode_kernels.h"
#include "model_binding.h"
#include "napi_util.h"

namespace gpt {
namespace addon {
namespace {

struct Session {
  std::shared_ptr<Model> model;
  std::shared_ptr<DecodeState> state;  // null once closed
  std::atomic<bool> busy{false};
  int batch = 0;
  int vocab = 0;
  const volatile int32_t* abort = nullptr;  // into the JS abort array (kept alive by JsRefs)
  float* out = nullptr;                     // into the JS logits array
};

// JS values a session keeps; touched only on the JS thread.
struct JsRefs {
  Napi::Reference<Napi::Int32Array> abort;
  Napi::Reference<Napi::Float32Array> out;
};

// Marks the session busy for the life of one call: held by the worker's
// completion callback, so it is released on the JS thread when the worker is
// deleted, after its promise settled (either way).
struct BusyGuard {
  std::shared_ptr<Session> s;
  explicit BusyGuard(std::shared_ptr<Session> ss) : s(std::move(ss)) {}
  ~BusyGuard() { s->busy.store(false); }
};

std::shared_ptr<DecodeState> begin_call(Session& s) {
  if (!s.state) throw GptError(ErrorCode::Disposed, "This decode session was closed");
  bool expected = false;
  if (!s.busy.compare_exchange_strong(expected, true))
    throw GptError(ErrorCode::InvalidArgument, "A call on this decode session is still running");
  return s.state;
}

Napi::Value DecodeOpen(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[1].IsObject()) throw_invalid("Expected (model, options)");
    std::shared_ptr<Model> model = unwrap_model(info[0]);
    Napi::Object o = info[1].As<Napi::Object>();
    Napi::Value cv = o.Get("capacities");
    if (!cv.IsTypedArray() || cv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
      throw_invalid("Expected an Int32Array for capacities");
    auto caps_arr = cv.As<Napi::Int32Array>();
    std::vector<int> caps(caps_arr.Data(), caps_arr.Data() + caps_arr.ElementLength());
    Napi::Value av = o.Get("abort");
    if (!av.IsTypedArray() || av.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array ||
        av.As<Napi::TypedArray>().ElementLength() < 1)
      throw_invalid("Expected a non-empty Int32Array for abort");
    Napi::Int32Array abort_arr = av.As<Napi::Int32Array>();
    const int extend_max =
        has(o, "extendMax") ? static_cast<int>(get_int(o, "extendMax", 1, model->config().n_positions)) : 1;

    auto s = std::make_shared<Session>();
    s->model = model;
    s->state = std::make_shared<DecodeState>(model, caps, extend_max);
    s->batch = static_cast<int>(caps.size());
    s->vocab = model->config().vocab_size;
    s->abort = abort_arr.Data();
    Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(s->batch) * s->vocab);
    s->out = out.Data();
    auto refs = std::make_shared<JsRefs>();
    refs->abort = Napi::Persistent(abort_arr);
    refs->out = Napi::Persistent(out);

    Napi::Object session = Napi::Object::New(env);
    session.Set("batch", s->batch);
    session.Set("vocabSize", s->vocab);
    session.Set("extendMax", extend_max);

    // prefill and extend: { tokens, lengths } -> the logits after each
    // sequence's last token.
    auto chunk_call = [s, refs](bool extend) {
      return [s, refs, extend](const Napi::CallbackInfo& ci) -> Napi::Value {
        Napi::Env e = ci.Env();
        return guard(e, [&]() -> Napi::Value {
          Napi::Object a = options_arg(ci);
          auto lengths = get_i32(a, "lengths", static_cast<size_t>(s->batch));
          int64_t total = 0;
          for (size_t i = 0; i < lengths.length; ++i) {
            if (lengths.data[i] < 0) throw_invalid("Expected prompt lengths >= 0");
            total += lengths.data[i];
          }
          auto tokens = get_i32(a, "tokens", static_cast<size_t>(total));
          // Copies: later changes to the JS arrays cannot race the worker.
          auto tok = std::make_shared<std::vector<int32_t>>(tokens.data, tokens.data + tokens.length);
          auto len = std::make_shared<std::vector<int>>(lengths.data, lengths.data + lengths.length);
          std::shared_ptr<DecodeState> st = begin_call(*s);
          auto out_ref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(refs->out.Value()));
          return run_async<int>(
              e,
              [s, st, tok, len, extend] {
                std::lock_guard<std::mutex> lk(s->model->mutex());
                if (extend)
                  st->extend(tok->data(), len->data(), s->out, s->abort);
                else
                  st->prefill(tok->data(), len->data(), s->out, s->abort);
                return 0;
              },
              [out_ref, busy = std::make_shared<BusyGuard>(s)](Napi::Env, int&) -> Napi::Value { return out_ref->Value(); },
              {refs->out.Value(), refs->abort.Value()});
        });
      };
    };
    session.Set("prefill", Napi::Function::New(env, chunk_call(false)));
    session.Set("extend", Napi::Function::New(env, chunk_call(true)));

    session.Set("step", Napi::Function::New(env, [s, refs](const Napi::CallbackInfo& ci) -> Napi::Value {
      Napi::Env e = ci.Env();
      return guard(e, [&]() -> Napi::Value {
        Napi::Object a = options_arg(ci);
        auto tokens = get_i32(a, "tokens", static_cast<size_t>(s->batch));
        auto active = get_u8(a, "active", static_cast<size_t>(s->batch));
        auto tok = std::make_shared<std::vector<int32_t>>(tokens.data, tokens.data + tokens.length);
        auto act = std::make_shared<std::vector<uint8_t>>(active.data, active.data + active.length);
        std::shared_ptr<DecodeState> st = begin_call(*s);
        auto out_ref = std::make_shared<Napi::Reference<Napi::Float32Array>>(Napi::Persistent(refs->out.Value()));
        return run_async<int>(
            e,
            [s, st, tok, act] {
              std::lock_guard<std::mutex> lk(s->model->mutex());
              st->step(tok->data(), act->data(), s->out, s->abort);
              return 0;
            },
            [out_ref, busy = std::make_shared<BusyGuard>(s)](Napi::Env, int&) -> Napi::Value { return out_ref->Value(); },
            {refs->out.Value(), refs->abort.Value()});
      });
    }));

    session.Set("resize", Napi::Function::New(env, [s, refs](const Napi::CallbackInfo& ci) -> Napi::Value {
      Napi::Env e = ci.Env();
      return guard(e, [&]() -> Napi::Value {
        Napi::Object a = options_arg(ci);
        Napi::Value cv = a.Get("capacities");
        if (!cv.IsTypedArray() || cv.As<Napi::TypedArray>().TypedArrayType() != napi_int32_array)
          throw_invalid("Expected an Int32Array for capacities");
        auto arr = cv.As<Napi::Int32Array>();
        std::vector<int> caps(arr.Data(), arr.Data() + arr.ElementLength());
        std::shared_ptr<DecodeState> st = begin_call(*s);
        BusyGuard busy(s);
        {
          // Training calls and other sessions' calls on the model run on
          // workers under this mutex: wait for the running one.
          std::lock_guard<std::mutex> lk(s->model->mutex());
          st->resize(caps);
        }
        const int B = st->batch();
        if (B != s->batch) {
          Napi::Float32Array out = Napi::Float32Array::New(e, static_cast<size_t>(B) * s->vocab);
          refs->out.Reset(out, 1);
          s->out = out.Data();
          s->batch = B;
          ci.This().As<Napi::Object>().Set("batch", B);
        }
        return e.Undefined();
      });
    }));
    session.Set("cacheBytes", Napi::Function::New(env, [s](const Napi::CallbackInfo& ci) -> Napi::Value {
      return Napi::Number::New(ci.Env(), s->state ? static_cast<double>(s->state->cache_bytes()) : 0.0);
    }));
    session.Set("scratchBytes", Napi::Function::New(env, [s](const Napi::CallbackInfo& ci) -> Napi::Value {
      return Napi::Number::New(ci.Env(), s->state ? static_cast<double>(s->state->scratch_bytes()) : 0.0);
    }));
    session.Set("positions", Napi::Function::New(env, [s](const Napi::CallbackInfo& ci) -> Napi::Value {
      Napi::Int32Array a = Napi::Int32Array::New(ci.Env(), static_cast<size_t>(s->batch));
      for (int b = 0; b < s->batch; ++b) a[static_cast<size_t>(b)] = s->state ? s->state->position(b) : 0;
      return a;
    }));
    // Frees the cache now, or when the running call ends (it holds its own
    // reference to the state).
    session.Set("close", Napi::Function::New(env, [s](const Napi::CallbackInfo& ci) -> Napi::Value {
      s->state.reset();
      return ci.Env().Undefined();
    }));
    return session;
  });
}

Napi::Value DecodeKernel(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_arg(info);
    const std::string op = get_string(o, "op"), prec = get_string(o, "precision");
    if (op != "linear" && op != "head") throw_invalid("Expected 'linear' or 'head' for op but received '" + op + "'");
    if (prec != "fp32" && prec != "bf16")
      throw_invalid("Expected 'fp32' or 'bf16' for precision but received '" + prec + "'");
    const int M = static_cast<int>(get_int(o, "M", 1, 1 << 16));
    const int K = static_cast<int>(get_int(o, "K", 1, 1 << 20));
    const int N = static_cast<int>(get_int(o, "N", 1, 1 << 24));
    const int repeats = static_cast<int>(has(o, "repeats") ? get_int(o, "repeats", 1, 1 << 20) : 1);
    auto x = get_f32(o, "x", static_cast<size_t>(M) * K);
    auto w = get_f32(o, "w", static_cast<size_t>(K) * N);
    const float* bias = nullptr;
    if (has(o, "bias") && !o.Get("bias").IsUndefined()) {
      if (op == "head") throw_invalid("Expected no bias for op 'head'");
      bias = get_f32(o, "bias", static_cast<size_t>(N)).data;
    }
    Napi::Float32Array out = Napi::Float32Array::New(env, static_cast<size_t>(M) * N);
    std::vector<uint32_t> lin;
    std::vector<uint16_t> head;
    if (prec == "bf16") {
      if (op == "linear") {
        lin.resize(cpu::decode_linear_bf16_size(K, N));
        cpu::decode_pack_linear_bf16(lin.data(), w.data, K, N);
      } else {
        head.resize(static_cast<size_t>(N) * cpu::decode_head_row(K));
        cpu::decode_pack_head_bf16(head.data(), w.data, N, K);
      }
    }
    const auto t0 = std::chrono::steady_clock::now();
    for (int r = 0; r < repeats; ++r) {
      if (op == "linear" && prec == "fp32")
        cpu::decode_linear_f32(out.Data(), x.data, w.data, bias, M, K, N);
      else if (op == "linear")
        cpu::decode_linear_bf16(out.Data(), x.data, lin.data(), bias, M, K, N);
      else if (prec == "fp32")
        cpu::decode_head_f32(out.Data(), x.data, w.data, M, K, N);
      else
        cpu::decode_head_bf16(out.Data(), x.data, head.data(), M, K, N);
    }
    const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count() / repeats;
    Napi::Object res = Napi::Object::New(env);
    res.Set("out", out);
    res.Set("seconds", secs);
    return res;
  });
}

}  // namespace

void add_decode_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("decodeOpen", Napi::Function::New(env, DecodeOpen));
  exports.Set("decodeKernel", Napi::Function::New(env, DecodeKernel));
}

}  // namespace addon
}  // namespace gpt
