// The portable compilation of the GEMM packers and microkernels (flags: CMakeLists.txt).
#include "gemm_impl.h"
