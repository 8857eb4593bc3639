// Run-time choice between the three compilations of a CPU kernel family
// (see simd.h). A family declares its entry points once with
// GPT_DECLARE_ISA_FN and calls them through GPT_CPU_DISPATCH, which reads the
// current path (native/core/isa.h) at the call.
#pragma once
#include "../core/isa.h"

#define GPT_DECLARE_ISA_FN(decl) \
  namespace gpt {                \
  namespace cpu {                \
  namespace avx512 {             \
  decl;                          \
  }                              \
  namespace avx2 {               \
  decl;                          \
  }                              \
  namespace portable {           \
  decl;                          \
  }                              \
  }                              \
  }

#define GPT_CPU_DISPATCH(fn, ...)                                                  \
  (::gpt::current_isa() == ::gpt::Isa::Avx512 ? ::gpt::cpu::avx512::fn(__VA_ARGS__) \
   : ::gpt::current_isa() == ::gpt::Isa::Avx2 ? ::gpt::cpu::avx2::fn(__VA_ARGS__)   \
                                              : ::gpt::cpu::portable::fn(__VA_ARGS__))
