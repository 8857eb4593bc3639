// Aligned host memory. Allocation failures become OUT_OF_MEMORY errors that
// say what was being allocated, never std::bad_alloc escaping to N-API.
#pragma once
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string>
#include <utility>

#include "error.h"

namespace gpt {

constexpr size_t kAlign = 64;  // one cache line; also the widest vector (AVX-512)

inline void* aligned_alloc_or_throw(size_t bytes, const char* what) {
  if (bytes == 0) bytes = kAlign;
  size_t rounded = (bytes + kAlign - 1) / kAlign * kAlign;
  if (rounded < bytes) throw GptError(ErrorCode::OutOfMemory, std::string("size overflow allocating ") + what);
  void* p = std::aligned_alloc(kAlign, rounded);
  if (!p)
    throw GptError(ErrorCode::OutOfMemory, std::string("could not allocate ") + std::to_string(bytes) +
                                               " bytes for " + what +
                                               "; try a smaller batch or a shorter sequence");
  return p;
}

// An owning, aligned, uninitialized array of T. Move-only.
template <typename T>
class HostBuffer {
 public:
  HostBuffer() = default;
  HostBuffer(size_t n, const char* what) { reset(n, what); }
  HostBuffer(const HostBuffer&) = delete;
  HostBuffer& operator=(const HostBuffer&) = delete;
  HostBuffer(HostBuffer&& o) noexcept : p_(std::exchange(o.p_, nullptr)), n_(std::exchange(o.n_, 0)) {}
  HostBuffer& operator=(HostBuffer&& o) noexcept {
    if (this != &o) {
      std::free(p_);
      p_ = std::exchange(o.p_, nullptr);
      n_ = std::exchange(o.n_, 0);
    }
    return *this;
  }
  ~HostBuffer() { std::free(p_); }

  void reset(size_t n, const char* what) {
    std::free(p_);
    p_ = nullptr;
    n_ = 0;
    if (n > SIZE_MAX / sizeof(T)) throw GptError(ErrorCode::OutOfMemory, std::string("size overflow allocating ") + what);
    p_ = static_cast<T*>(aligned_alloc_or_throw(n * sizeof(T), what));
    n_ = n;
  }
  // Grows (never shrinks); contents are not kept.
  void ensure(size_t n, const char* what) {
    if (n > n_) reset(n, what);
  }
  T* data() { return p_; }
  const T* data() const { return p_; }
  size_t size() const { return n_; }
  size_t bytes() const { return n_ * sizeof(T); }
  T& operator[](size_t i) { return p_[i]; }
  const T& operator[](size_t i) const { return p_[i]; }

 private:
  T* p_ = nullptr;
  size_t n_ = 0;
};

}  // namespace gpt
