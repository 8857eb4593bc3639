// Module entry: runs every registered binding's init (see registry.h).
#include <napi.h>

#include <utility>
#include <vector>

#include "registry.h"

namespace gpt {
namespace addon {

namespace {
std::vector<std::pair<const char*, InitFn>>& registry() {
  static std::vector<std::pair<const char*, InitFn>> r;
  return r;
}
}  // namespace

BindingRegistrar::BindingRegistrar(const char* name, InitFn fn) { registry().emplace_back(name, fn); }

void init_all_bindings(Napi::Env env, Napi::Object exports) {
  for (auto& [name, fn] : registry()) fn(env, exports);
}

}  // namespace addon
}  // namespace gpt

static Napi::Object Init(Napi::Env env, Napi::Object exports) {
  gpt::addon::init_all_bindings(env, exports);
  return exports;
}

NODE_API_MODULE(gpt_engine, Init)
