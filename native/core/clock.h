// The one wall clock the core times its work with (timings, the profile).
#pragma once
#include <chrono>

namespace gpt {

// Milliseconds on a monotonic clock (differences only; the origin is arbitrary).
inline double now_ms() {
  return std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now().time_since_epoch()).count();
}

}  // namespace gpt
