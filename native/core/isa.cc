#include "isa.h"

#include <atomic>
#include <cstdlib>
#include <cstring>
#include <string>

#include "error.h"

namespace gpt {

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512: return "avx512";
    case Isa::Avx2: return "avx2";
    default: return "portable";
  }
}

bool isa_supported(Isa isa) {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  switch (isa) {
    case Isa::Avx512:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq") &&
             __builtin_cpu_supports("fma");
    case Isa::Avx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
             __builtin_cpu_supports("f16c");
    default:
      return true;
  }
#else
  return isa == Isa::Portable;
#endif
}

bool cpu_has_avx512_bf16() {
#if (defined(__x86_64__) || defined(__i386__)) && defined(__GNUC__) && (__GNUC__ >= 12)
  __builtin_cpu_init();
  return isa_supported(Isa::Avx512) && __builtin_cpu_supports("avx512bf16");
#else
  return false;
#endif
}

Isa parse_isa(const char* name) {
  if (std::strcmp(name, "avx512") == 0) return Isa::Avx512;
  if (std::strcmp(name, "avx2") == 0) return Isa::Avx2;
  if (std::strcmp(name, "portable") == 0) return Isa::Portable;
  throw GptError(ErrorCode::InvalidArgument,
                 std::string("Expected one of avx512, avx2, portable for isa but received \"") + name + "\"");
}

namespace {

Isa best_isa() {
  if (isa_supported(Isa::Avx512)) return Isa::Avx512;
  if (isa_supported(Isa::Avx2)) return Isa::Avx2;
  return Isa::Portable;
}

Isa initial_isa() {
  if (const char* s = std::getenv("GPT_ENGINE_ISA")) {
    if (*s) {
      // A bad or unsupported value falls back to the best path; lib/ validates
      // the variable first and reports it, so the addon never throws at load.
      try {
        Isa want = parse_isa(s);
        if (isa_supported(want)) return want;
      } catch (...) {
      }
    }
  }
  return best_isa();
}

std::atomic<int>& isa_state() {
  static std::atomic<int> state{static_cast<int>(initial_isa())};
  return state;
}

}  // namespace

Isa current_isa() { return static_cast<Isa>(isa_state().load(std::memory_order_relaxed)); }

void set_isa(Isa isa) {
  if (!isa_supported(isa))
    throw GptError(ErrorCode::InvalidArgument,
                   std::string("Expected an instruction set this CPU supports for isa but received \"") +
                       isa_name(isa) + "\"");
  isa_state().store(static_cast<int>(isa), std::memory_order_relaxed);
}

}  // namespace gpt
