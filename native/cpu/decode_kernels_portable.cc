// The portable compilation of the decode kernels (flags: CMakeLists.txt).
#include "decode_kernels_impl.h"
