// Data-parallel training (docs/ARCHITECTURE.md "Data parallel"): MPI through
// the run-time plugin (native/distributed), and joining a model to the ranks.
// lib/distributed/native.ts types these exports.
#include <napi.h>

#include <cstring>
#include <mutex>

#include "../distributed/mpi_loader.h"
#include "../distributed/nccl_check.h"
#include "../distributed/nccl_comm.h"
#include "../distributed/nccl_loader.h"
#include "model_binding.h"
#include "napi_util.h"

namespace gpt {
namespace addon {

namespace {

using dist::mpi_plugin;

const GptMpiPlugin* need_plugin() {
  std::string why;
  const GptMpiPlugin* p = mpi_plugin(&why);
  if (!p) throw GptError(ErrorCode::InvalidArgument, "Cannot run distributed: " + why);
  return p;
}

void need_init() {
  if (!dist::mpi_initialized()) throw GptError(ErrorCode::InvalidArgument, "MPI is not initialized (call mpiInit first)");
}

constexpr int kErr = 512;

// {available, plugin, version, reason}: whether this build and machine can
// run distributed on the CPU. Loads the plugin (and so libmpi), nothing more.
Napi::Value MpiInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string why;
    const GptMpiPlugin* p = mpi_plugin(&why);
    Napi::Object o = Napi::Object::New(env);
    o.Set("available", p != nullptr);
    o.Set("plugin", dist::mpi_plugin_path());
    if (p) {
      char v[256] = {0};
      p->library_version(v, sizeof v);
      o.Set("version", std::string(v));
      o.Set("reason", env.Null());
    } else {
      o.Set("version", env.Null());
      o.Set("reason", why);
    }
    o.Set("initialized", dist::mpi_initialized());
    return o;
  });
}

Napi::Value MpiInit(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    dist::WorldInfo w = dist::mpi_init();
    Napi::Object o = Napi::Object::New(env);
    o.Set("rank", w.rank);
    o.Set("size", w.size);
    o.Set("localRank", w.local_rank);
    o.Set("localSize", w.local_size);
    return o;
  });
}

// mpiAllreduceSum(Float64Array): in place, on this thread (small host arrays).
Napi::Value MpiAllreduceSum(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    need_init();
    if (info.Length() < 1 || !info[0].IsTypedArray() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_float64_array)
      throw_invalid("Expected a Float64Array for values");
    Napi::Float64Array a = info[0].As<Napi::Float64Array>();
    char err[kErr] = {0};
    dist::mpi_check(need_plugin()->allreduce_sum(a.Data(), static_cast<int64_t>(a.ElementLength()), GPT_MPI_F64,
                                                 err, kErr),
                    err);
    return env.Undefined();
  });
}

// mpiBcast(Uint8Array, root): rank root's bytes to every rank (same length everywhere).
Napi::Value MpiBcast(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    need_init();
    if (info.Length() < 2 || !info[0].IsTypedArray() || !info[1].IsNumber() ||
        info[0].As<Napi::TypedArray>().TypedArrayType() != napi_uint8_array)
      throw_invalid("Expected (Uint8Array, root) for mpiBcast");
    Napi::Uint8Array a = info[0].As<Napi::Uint8Array>();
    char err[kErr] = {0};
    dist::mpi_check(need_plugin()->bcast(a.Data(), static_cast<int64_t>(a.ByteLength()),
                                         info[1].As<Napi::Number>().Int32Value(), err, kErr),
                    err);
    return env.Undefined();
  });
}

Napi::Value MpiBarrier(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    need_init();
    char err[kErr] = {0};
    dist::mpi_check(need_plugin()->barrier(err, kErr), err);
    return env.Undefined();
  });
}

// Ends every rank of the job (does not return when MPI is up).
Napi::Value MpiAbort(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    need_init();
    const int code = info.Length() > 0 && info[0].IsNumber() ? info[0].As<Napi::Number>().Int32Value() : 1;
    need_plugin()->abort(code);
    return env.Undefined();
  });
}

Napi::Value MpiFinalize(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    std::string why;
    const GptMpiPlugin* p = mpi_plugin(&why);
    if (p && dist::mpi_initialized()) p->finalize();
    return env.Undefined();
  });
}

// distAttach(model, {zero}): the model joins the ranks (Model::set_comm): NCCL
// for a model on cuda, MPI for one on the CPU.
Napi::Value DistAttach(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    if (info.Length() < 2 || !info[1].IsObject()) throw_invalid("Expected (model, {zero}) for distAttach");
    auto m = unwrap_model(info[0]);
    const bool zero = get_bool_or(info[1].As<Napi::Object>(), "zero", false);
    need_init();
    // GPU ranks reduce the model's device buffers with NCCL on the backend's
    // stream; CPU ranks reduce host memory with MPI.
    std::shared_ptr<Comm> comm;
    if (std::strcmp(m->backend().name(), "cuda") == 0) {
      std::lock_guard<std::mutex> lk(m->mutex());
      comm = dist::nccl_comm(m->backend());
    } else {
      comm = dist::mpi_comm();
    }
    std::lock_guard<std::mutex> lk(m->mutex());
    m->set_comm(comm, zero);
    return env.Undefined();
  });
}

// distGatherOptimizer(model) (collective) / distShardOptimizer(model).
Napi::Value DistGatherOptimizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto m = unwrap_model(info.Length() > 0 ? info[0] : env.Undefined());
    std::lock_guard<std::mutex> lk(m->mutex());
    m->gather_optimizer();
    return env.Undefined();
  });
}

Napi::Value DistShardOptimizer(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto m = unwrap_model(info.Length() > 0 ? info[0] : env.Undefined());
    std::lock_guard<std::mutex> lk(m->mutex());
    m->shard_optimizer();
    return env.Undefined();
  });
}

// distStats(model): {commMs (of the last step), optimizerBytes (this rank's), sharded}.
Napi::Value DistStats(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    auto m = unwrap_model(info.Length() > 0 ? info[0] : env.Undefined());
    std::lock_guard<std::mutex> lk(m->mutex());
    Napi::Object o = Napi::Object::New(env);
    o.Set("commMs", m->timings().comm_ms);
    o.Set("optimizerBytes", static_cast<double>(m->memory().optimizer));
    o.Set("sharded", m->optimizer_sharded());
    return o;
  });
}

// ncclInfo(): {available, version, path, reason} (native/distributed/nccl_loader.h).
Napi::Value NcclInfo(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    dist::NcclStatus s = dist::nccl_status();
    Napi::Object o = Napi::Object::New(env);
    o.Set("available", s.ok);
    o.Set("version", s.version > 0 ? Napi::Value(Napi::Number::New(env, s.version)) : env.Null());
    o.Set("path", s.path.empty() ? env.Null() : Napi::Value(Napi::String::New(env, s.path)));
    o.Set("reason", s.ok ? env.Null() : Napi::Value(Napi::String::New(env, s.reason)));
    return o;
  });
}

// ncclCheck({n}): the GPU check's one-rank NCCL check (nccl_check.h), off the event loop.
Napi::Value NcclCheck(const Napi::CallbackInfo& info) {
  Napi::Env env = info.Env();
  return guard(env, [&]() -> Napi::Value {
    Napi::Object o = options_or_empty(info);
    const int64_t n = has(o, "n") ? get_int(o, "n", 1, int64_t(1) << 28) : int64_t(1) << 20;
    return run_async<dist::NcclCheckResult>(
        env, [n]() { return dist::run_nccl_check(n); },
        [](Napi::Env e, dist::NcclCheckResult& r) -> Napi::Value {
          Napi::Object out = Napi::Object::New(e);
          out.Set("ok", r.ok);
          out.Set("version", r.version);
          out.Set("maxAbsErr", r.max_abs_err);
          out.Set("ms", r.ms);
          out.Set("detail", r.detail);
          return out;
        });
  });
}

}  // namespace

void add_dist_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("mpiInfo", Napi::Function::New(env, MpiInfo));
  exports.Set("mpiInit", Napi::Function::New(env, MpiInit));
  exports.Set("mpiAllreduceSum", Napi::Function::New(env, MpiAllreduceSum));
  exports.Set("mpiBcast", Napi::Function::New(env, MpiBcast));
  exports.Set("mpiBarrier", Napi::Function::New(env, MpiBarrier));
  exports.Set("mpiAbort", Napi::Function::New(env, MpiAbort));
  exports.Set("mpiFinalize", Napi::Function::New(env, MpiFinalize));
  exports.Set("distAttach", Napi::Function::New(env, DistAttach));
  exports.Set("distGatherOptimizer", Napi::Function::New(env, DistGatherOptimizer));
  exports.Set("distShardOptimizer", Napi::Function::New(env, DistShardOptimizer));
  exports.Set("distStats", Napi::Function::New(env, DistStats));
  exports.Set("ncclInfo", Napi::Function::New(env, NcclInfo));
  exports.Set("ncclCheck", Napi::Function::New(env, NcclCheck));
}

}  // namespace addon
}  // namespace gpt
