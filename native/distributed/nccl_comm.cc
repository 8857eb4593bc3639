// NCCL's communicator for GPU ranks (nccl_comm.h).
#include "nccl_comm.h"

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "../core/error.h"
#include "mpi_loader.h"
#include "nccl_loader.h"

namespace gpt {
namespace dist {

namespace {

constexpr int kErr = 512;

class NcclRanks final : public Comm {
 public:
  NcclRanks(Backend& backend, std::shared_ptr<Comm> host, const GptMpiPlugin* mpi)
      : backend_(backend), host_(std::move(host)), api_(nccl_api()) {
    const int rank = host_->rank(), size = host_->size();
    NcclUniqueId id;
    std::memset(&id, 0, sizeof id);
    // Rank 0 makes the id; a failure there must still reach the others'
    // broadcast, so the id travels with a flag.
    struct {
      int ok;
      char why[kErr];
      NcclUniqueId id;
    } msg;
    std::memset(&msg, 0, sizeof msg);
    if (rank == 0) {
      const int rc = api_.GetUniqueId(&msg.id);
      msg.ok = rc == kNcclSuccess;
      if (!msg.ok) std::snprintf(msg.why, sizeof msg.why, "%s", api_.GetErrorString(rc));
    }
    char err[kErr] = {0};
    mpi_check(mpi->bcast(&msg, static_cast<int64_t>(sizeof msg), 0, err, kErr), err);
    if (!msg.ok)
      throw GptError(ErrorCode::Internal, std::string("NCCL on rank 0: ncclGetUniqueId failed: ") + msg.why);
    id = msg.id;
    stream_ = backend_.native_stream();  // also makes this rank's GPU current for CommInitRank
    check(api_.CommInitRank(&comm_, size, id, rank), "ncclCommInitRank");
  }

  ~NcclRanks() override {
    if (stage_) backend_.free(stage_);
    if (comm_) api_.CommDestroy(comm_);
  }

  int rank() const override { return host_->rank(); }
  int size() const override { return host_->size(); }

  void allreduce_sum(float* buf, int64_t n) override {
    if (n <= 0) return;
    enter();
    check(api_.AllReduce(buf, buf, static_cast<size_t>(n), kNcclFloat32, kNcclSum, comm_, stream_), "ncclAllReduce");
  }
  void allreduce_sum(double* host, int64_t n) override { host_->allreduce_sum(host, n); }
  void allreduce_sum(int64_t* host, int64_t n) override { host_->allreduce_sum(host, n); }

  void reduce_scatter_sum(float* buf, const std::vector<int64_t>& counts) override {
    const Layout L = layout(counts);
    enter();
    const size_t r = static_cast<size_t>(rank());
    if (L.equal) {
      // In place: this rank's result lands on its own slice.
      check(api_.ReduceScatter(buf, buf + L.displ[r], static_cast<size_t>(L.most), kNcclFloat32, kNcclSum, comm_,
                               stream_),
            "ncclReduceScatter");
      return;
    }
    // NCCL's slices are equal: pad each to the largest in a staging buffer.
    float* st = stage(L);
    for (size_t q = 0; q < counts.size(); ++q)
      backend_.copy(st + q * L.most, buf + L.displ[q], static_cast<size_t>(counts[q]) * sizeof(float));
    check(api_.ReduceScatter(st, st + r * L.most, static_cast<size_t>(L.most), kNcclFloat32, kNcclSum, comm_,
                             stream_),
          "ncclReduceScatter");
    backend_.copy(buf + L.displ[r], st + r * L.most, static_cast<size_t>(counts[r]) * sizeof(float));
  }

  void all_gather(float* buf, const std::vector<int64_t>& counts) override {
    const Layout L = layout(counts);
    enter();
    const size_t r = static_cast<size_t>(rank());
    if (L.equal) {
      check(api_.AllGather(buf + L.displ[r], buf, static_cast<size_t>(L.most), kNcclFloat32, comm_, stream_),
            "ncclAllGather");
      return;
    }
    float* st = stage(L);
    backend_.copy(st + r * L.most, buf + L.displ[r], static_cast<size_t>(counts[r]) * sizeof(float));
    check(api_.AllGather(st + r * L.most, st, static_cast<size_t>(L.most), kNcclFloat32, comm_, stream_),
          "ncclAllGather");
    for (size_t q = 0; q < counts.size(); ++q)
      backend_.copy(buf + L.displ[q], st + q * L.most, static_cast<size_t>(counts[q]) * sizeof(float));
  }

 private:
  struct Layout {
    std::vector<int64_t> displ;
    int64_t most = 0;
    bool equal = true;
  };

  Layout layout(const std::vector<int64_t>& counts) const {
    if (static_cast<int>(counts.size()) != size())
      throw GptError(ErrorCode::Internal, "Expected one slice count per rank (" + std::to_string(size()) +
                                              ") but received " + std::to_string(counts.size()));
    Layout L;
    int64_t off = 0;
    for (int64_t c : counts) {
      L.displ.push_back(off);
      off += c;
      L.most = std::max(L.most, c);
      if (c != counts[0]) L.equal = false;
    }
    return L;
  }

  // The padded slices, kept from one step to the next (about one gradient's
  // size: W x the largest slice).
  float* stage(const Layout& L) {
    const size_t bytes = static_cast<size_t>(L.most) * L.displ.size() * sizeof(float);
    if (bytes > stage_bytes_) {
      if (stage_) backend_.free(stage_);
      stage_ = nullptr;
      stage_ = static_cast<float*>(backend_.alloc(bytes, "the NCCL staging buffer (ranks' slices padded to equal size)"));
      stage_bytes_ = bytes;
      backend_.zero(stage_, bytes);
    }
    return stage_;
  }

  // The calling thread (the step may run on any pool thread) gets the
  // rank's GPU; NCCL enqueues on the stream's device.
  void enter() { stream_ = backend_.native_stream(); }

  void check(int rc, const char* what) const {
    if (rc == kNcclSuccess) return;
    const char* msg = api_.GetErrorString ? api_.GetErrorString(rc) : nullptr;
    throw GptError(ErrorCode::Internal, "NCCL on rank " + std::to_string(host_->rank()) + ": " + what +
                                            " failed: " + (msg ? msg : "unknown") + " (NCCL error " +
                                            std::to_string(rc) + ")");
  }

  Backend& backend_;
  std::shared_ptr<Comm> host_;
  const NcclApi& api_;
  NcclComm comm_ = nullptr;
  void* stream_ = nullptr;
  float* stage_ = nullptr;
  size_t stage_bytes_ = 0;
};

}  // namespace

std::shared_ptr<Comm> nccl_comm(Backend& backend) {
  if (std::strcmp(backend.name(), "cuda") != 0)
    throw GptError(ErrorCode::InvalidArgument,
                   std::string("Expected a model on cuda for NCCL but this one is on ") + backend.name());
  std::string why;
  const GptMpiPlugin* p = mpi_plugin(&why);
  if (!p) throw GptError(ErrorCode::InvalidArgument, "Cannot run distributed: " + why);
  std::shared_ptr<Comm> host = mpi_comm();
  return std::make_shared<NcclRanks>(backend, std::move(host), p);
}

}  // namespace dist
}  // namespace gpt
