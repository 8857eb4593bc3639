// Each binding file registers its exports with a static GPT_REGISTER_BINDING;
// addon.cc calls them all at module init. Adding a binding file never means
// editing a central list (CMake globs native/addon/*.cc).
#pragma once
#include <napi.h>

namespace gpt {
namespace addon {

using InitFn = void (*)(Napi::Env env, Napi::Object exports);

struct BindingRegistrar {
  BindingRegistrar(const char* name, InitFn fn);
};

void init_all_bindings(Napi::Env env, Napi::Object exports);

}  // namespace addon
}  // namespace gpt

#define GPT_REGISTER_BINDING(name, fn) \
  static ::gpt::addon::BindingRegistrar gpt_binding_registrar_##name(#name, fn)
