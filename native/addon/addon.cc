// Module entry: the one list of what the addon exports. Each binding file
// defines an add_<name>_exports() that sets its functions on `exports`;
// lib/native.ts and the lib/ modules that load the addon type them.
#include <napi.h>

namespace gpt {
namespace addon {

// threads, instruction-set path, GPU discovery, CPU ceiling probes (core_binding.cc)
void add_core_exports(Napi::Env env, Napi::Object exports);
// NativeModel, createModel (the training step) and memoryLayout (model_binding.cc)
void add_model_exports(Napi::Env env, Napi::Object exports);
// KV-cache decoding on a model, and the CPU decode kernels (decode_binding.cc)
void add_decode_exports(Napi::Env env, Napi::Object exports);
// fused attention forward / backward on host arrays (attention_binding.cc)
void add_attention_exports(Napi::Env env, Napi::Object exports);
// the CPU GEMM and column sums (gemm_binding.cc)
void add_gemm_exports(Napi::Env env, Napi::Object exports);
// one Backend op on host arrays, cpu or cuda (backend_ops_binding.cc)
void add_backend_ops_exports(Napi::Env env, Napi::Object exports);
// one decoding op of the Backend on host arrays (decode_ops_binding.cc)
void add_decode_ops_exports(Napi::Env env, Napi::Object exports);
// the plain reference of each CPU op, for the tests (reference_binding.cc)
void add_reference_exports(Napi::Env env, Napi::Object exports);
// CUDA copy and GEMM ceiling probes (probe_binding.cc)
void add_probe_exports(Napi::Env env, Napi::Object exports);
// data parallel: MPI through its plugin, NCCL status, a model joining the ranks (dist_binding.cc)
void add_dist_exports(Napi::Env env, Napi::Object exports);

}  // namespace addon
}  // namespace gpt

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  using namespace gpt::addon;
  add_core_exports(env, exports);
  add_model_exports(env, exports);
  add_decode_exports(env, exports);
  add_attention_exports(env, exports);
  add_gemm_exports(env, exports);
  add_backend_ops_exports(env, exports);
  add_decode_ops_exports(env, exports);
  add_reference_exports(env, exports);
  add_probe_exports(env, exports);
  add_dist_exports(env, exports);
  return exports;
}

NODE_API_MODULE(gpt_engine, Init)
