// Data-parallel parts of the Model (model.h "data parallel"; docs/ARCHITECTURE.md
// "Data parallel"): the reductions step() makes across ranks, the ZeRO-1
// slices of the AdamW moments, and the accumulation order shared with them.
#include <algorithm>
#include <cmath>

#include "clock.h"
#include "error.h"
#include "model.h"

namespace gpt {

// Slice r of a parameter-sized buffer: [b(r), b(r + 1)) with b(r) =
// floor(n * r / W) rounded down to 16 floats (the layout keeps n a multiple
// of 16), so every rank's slice starts on a 64-byte boundary.
std::vector<int64_t> Model::shard_counts() const {
  const int W = comm_ ? comm_->size() : 1;
  std::vector<int64_t> counts(static_cast<size_t>(W));
  auto bound = [&](int r) -> int64_t {
    if (r >= W) return n_floats_;
    const long double x = static_cast<long double>(n_floats_) * r / W;
    return static_cast<int64_t>(x) / 16 * 16;
  };
  for (int r = 0; r < W; ++r) counts[static_cast<size_t>(r)] = bound(r + 1) - bound(r);
  return counts;
}

void Model::set_comm(std::shared_ptr<Comm> comm, bool zero1) {
  GPT_CHECK_ARG(!optimizer_sharded(), "the model's optimizer state is sharded; gather it before leaving the ranks");
  comm_ = std::move(comm);
  zero1_ = comm_ && zero1 && comm_->size() > 1;
  if (comm_ && comm_->size() == 1) comm_.reset();  // one rank: exactly a single process
  if (zero1_) shard_optimizer();
}

void Model::shard_optimizer() {
  if (!zero1_ || optimizer_sharded()) return;
  const std::vector<int64_t> counts = shard_counts();
  int64_t lo = 0;
  for (int r = 0; r < comm_->rank(); ++r) lo += counts[static_cast<size_t>(r)];
  const int64_t n = counts[static_cast<size_t>(comm_->rank())];
  const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 16)) * sizeof(float);
  float* m = static_cast<float*>(backend_->alloc(bytes, "the AdamW first moments (this rank's slice)"));
  float* v = nullptr;
  try {
    v = static_cast<float*>(backend_->alloc(bytes, "the AdamW second moments (this rank's slice)"));
  } catch (...) {
    backend_->free(m);
    throw;
  }
  backend_->zero(m, bytes);
  backend_->zero(v, bytes);
  backend_->copy(m, m_ + lo, static_cast<size_t>(n) * sizeof(float));
  backend_->copy(v, v_ + lo, static_cast<size_t>(n) * sizeof(float));
  backend_->free(m_);
  backend_->free(v_);
  m_ = m;
  v_ = v;
  mv_lo_ = lo;
  mv_hi_ = lo + n;
}

void Model::gather_optimizer() {
  if (!optimizer_sharded()) return;
  const size_t bytes = static_cast<size_t>(n_floats_) * sizeof(float);
  float* m = static_cast<float*>(backend_->alloc(bytes, "the AdamW first moments (gathered)"));
  float* v = nullptr;
  try {
    v = static_cast<float*>(backend_->alloc(bytes, "the AdamW second moments (gathered)"));
  } catch (...) {
    backend_->free(m);
    throw;
  }
  const size_t mine = static_cast<size_t>(mv_hi_ - mv_lo_) * sizeof(float);
  backend_->copy(m + mv_lo_, m_, mine);
  backend_->copy(v + mv_lo_, v_, mine);
  try {
    const std::vector<int64_t> counts = shard_counts();
    comm_->all_gather(m, counts);
    comm_->all_gather(v, counts);
  } catch (...) {
    backend_->free(m);
    backend_->free(v);
    throw;
  }
  backend_->free(m_);
  backend_->free(v_);
  m_ = m;
  v_ = v;
  mv_lo_ = 0;
  mv_hi_ = n_floats_;
}

void Model::dist_reduce_gradients() {
  const double t0 = now_ms();
  backend_->synchronize();
  comm_->allreduce_sum(&count_, 1);
  if (zero1_)
    comm_->reduce_scatter_sum(grads_, shard_counts());
  else
    comm_->allreduce_sum(grads_, n_floats_);
  timings_.comm_ms += now_ms() - t0;
}

double Model::dist_grad_norm() {
  const double inv = 1.0 / static_cast<double>(std::max<int64_t>(count_, 1));
  if (!zero1_) return grad_norm();  // every rank holds the whole sum
  // The slices' sums of squares, added across ranks: the global norm.
  double ss = backend_->sum_squares(grads_ + mv_lo_, mv_hi_ - mv_lo_);
  const double t0 = now_ms();
  comm_->allreduce_sum(&ss, 1);
  timings_.comm_ms += now_ms() - t0;
  return std::sqrt(ss) * inv;
}

void Model::dist_gather_params() {
  const double t0 = now_ms();
  backend_->synchronize();
  comm_->all_gather(params_, shard_counts());
  timings_.comm_ms += now_ms() - t0;
}

void Model::accumulate_begin() {
  const size_t bytes = static_cast<size_t>(n_floats_) * sizeof(float);
  if (!acc_) acc_ = static_cast<float*>(backend_->alloc(bytes, "the gradient accumulation buffer"));
  backend_->copy(acc_, grads_, bytes);
  backend_->zero(grads_, bytes);
}

void Model::accumulate_end() { backend_->add(grads_, grads_, acc_, n_floats_); }

}  // namespace gpt
