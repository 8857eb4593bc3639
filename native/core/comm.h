// The communicator a data-parallel model reduces through (docs/ARCHITECTURE.md
// "Data parallel"): W ranks, each holding the same model, sum their
// gradients inside Model::step(). The core sees only this interface; the
// addon supplies it (native/distributed: Open MPI for host memory, loaded at run time).
//
// Every call is collective: every rank makes the same calls in the same
// order with the same sizes. Float buffers are the backend's memory (the
// model's buffers); the double and int64 ones are host memory. A failure
// throws GptError.
#pragma once
#include <cstdint>
#include <vector>

namespace gpt {

class Comm {
 public:
  virtual ~Comm() = default;
  virtual int rank() const = 0;
  virtual int size() const = 0;
  // In place: buf[i] = sum over ranks of buf[i].
  virtual void allreduce_sum(float* buf, int64_t n) = 0;
  virtual void allreduce_sum(double* host, int64_t n) = 0;
  virtual void allreduce_sum(int64_t* host, int64_t n) = 0;
  // buf holds sum(counts) floats, rank r's slice after those of ranks < r.
  // Afterwards this rank's slice holds the sum over ranks of that slice; the
  // rest of buf is undefined.
  virtual void reduce_scatter_sum(float* buf, const std::vector<int64_t>& counts) = 0;
  // Same layout: afterwards every rank's buf holds every rank's slice.
  virtual void all_gather(float* buf, const std::vector<int64_t>& counts) = 0;
};

}  // namespace gpt
