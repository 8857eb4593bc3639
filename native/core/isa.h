// Instruction-set paths for CPU kernels (docs/ARCHITECTURE.md "Instruction sets").
//
// Every CPU kernel family is compiled three times, once per path, each with
// its own compiler flags (native/sources.cmake). The path is chosen once, at first use, from what the
// CPU supports; GPT_ENGINE_ISA=avx512|avx2|portable forces one, and set_isa()
// switches at run time so tests can cover every path in one process.
#pragma once

namespace gpt {

enum class Isa { Portable = 0, Avx2 = 1, Avx512 = 2 };

const char* isa_name(Isa isa);
// True when this CPU can run the path (portable: always).
bool isa_supported(Isa isa);
// True when the AVX-512 path can also use AVX512_BF16 dot products.
bool cpu_has_avx512_bf16();
// The path in use now.
Isa current_isa();
// Switches the path; throws INVALID_ARGUMENT if the CPU cannot run it.
void set_isa(Isa isa);
// Parses "avx512" | "avx2" | "portable"; throws INVALID_ARGUMENT otherwise.
Isa parse_isa(const char* name);

}  // namespace gpt
