// The avx512 compilation of the fused attention kernels (flags: CMakeLists.txt).
#include "attention_impl.h"
