// The avx2 compilation of the ceiling probes (flags: CMakeLists.txt).
#include "probe_impl.h"
