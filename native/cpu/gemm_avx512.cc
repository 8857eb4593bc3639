// The avx512 compilation of the GEMM packers and microkernels (flags: CMakeLists.txt).
#include "gemm_impl.h"
