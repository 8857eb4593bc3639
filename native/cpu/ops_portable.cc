// The portable compilation of the CPU ops (flags: CMakeLists.txt).
#include "ops_impl.h"
#include "ops.h"
