// The order in which the tensor-core GEMM's blocks take their output tiles
// (gemm.cu explains the choice). Plain C++17, usable in host code, in
// kernels and in constant expressions; gemm.cu checks it at compile time.
#pragma once

#ifdef __CUDACC__
#define GPT_GEMM_ORDER_FN __host__ __device__ __forceinline__ constexpr
#else
#define GPT_GEMM_ORDER_FN inline constexpr
#endif

namespace gpt {
namespace cuda {

// Tile (major, minor) of a grid of `majors` x `minors` tiles.
struct GemmTile {
  int major, minor;
};

// Grouped raster: the majors are cut into groups of `group` (the last group
// may be shorter); block ids walk a group's majors fastest, one minor at a
// time, through every minor, then the next group:
//   id = first_major_of_group * minors + minor * group_size + (major - first).
// A bijection of [0, majors * minors) onto the grid for any majors, minors,
// group >= 1. The caller keeps majors * minors within int.
GPT_GEMM_ORDER_FN GemmTile grouped_tile(int id, int majors, int minors, int group) {
  const int per_group = group * minors;  // ids of a full group
  const int g = id / per_group;
  const int first = g * group;
  const int size = majors - first < group ? majors - first : group;  // the ragged last group
  const int local = id - g * per_group;
  return GemmTile{first + local % size, local / size};
}

// Whether grouped_tile maps [0, majors * minors) onto every tile exactly once
// (host only, for the compile-time checks; majors * minors <= 4096).
inline constexpr bool grouped_tile_is_bijection(int majors, int minors, int group) {
  bool seen[4096] = {};
  const int n = majors * minors;
  if (n > 4096) return false;
  for (int id = 0; id < n; ++id) {
    const GemmTile t = grouped_tile(id, majors, minors, group);
    if (t.major < 0 || t.major >= majors || t.minor < 0 || t.minor >= minors) return false;
    bool& s = seen[t.major * minors + t.minor];
    if (s) return false;
    s = true;
  }
  return true;  // n distinct tiles of n: all of them
}

}  // namespace cuda
}  // namespace gpt

#undef GPT_GEMM_ORDER_FN
