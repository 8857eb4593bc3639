// The Comm (core/comm.h) of GPU ranks: the model's float buffers, which live
// on the GPU, are reduced with NCCL (loaded at run time, nccl_loader.h) on the
// CUDA backend's stream; the few host numbers the step reduces (the target
// count, the ZeRO-1 sum of squares) go through MPI, which also carries
// NCCL's unique id from rank 0 to the others (docs/ARCHITECTURE.md
// "Data parallel").
#pragma once
#include <memory>

#include "../core/backend.h"
#include "../core/comm.h"

namespace gpt {
namespace dist {

// Collective over MPI_COMM_WORLD (mpi_init() first): every rank calls it
// with its own "cuda" backend, one GPU per rank. The backend must outlive
// the communicator (the model that owns both destroys its comm first).
// Throws GptError naming the rank and NCCL's message on failure.
std::shared_ptr<Comm> nccl_comm(Backend& backend);

}  // namespace dist
}  // namespace gpt
