// The JS handle of a native model (created by model_binding.cc). Other
// bindings (decoding) get the model from the handle JS passes them.
#pragma once
#include <napi.h>

#include <memory>

#include "../core/model.h"

namespace gpt {
namespace addon {

// The model behind a handle returned by createModel(); throws DISPOSED once
// the handle was disposed and INVALID_ARGUMENT for anything else. Callers
// lock model->mutex() around their work.
std::shared_ptr<Model> unwrap_model(const Napi::Value& handle);

}  // namespace addon
}  // namespace gpt
