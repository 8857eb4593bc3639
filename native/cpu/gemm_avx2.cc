// The avx2 compilation of the GEMM packers and microkernels (flags: CMakeLists.txt).
#include "gemm_impl.h"
