// Loading the MPI plugin (plugin.h) at run time, and the Comm (core/comm.h)
// over it for ranks whose buffers live in host memory (the CPU backend).
#pragma once
#include <memory>
#include <string>

#include "../core/comm.h"
#include "plugin.h"

namespace gpt {
namespace dist {

// The plugin next to the addon, loaded on first use; null when this build or
// machine has none, with the reason (and what to do) in *why.
const GptMpiPlugin* mpi_plugin(std::string* why);

// Where the plugin is looked for (the folder of the addon).
std::string mpi_plugin_path();

struct WorldInfo {
  int rank = 0, size = 1, local_rank = 0, local_size = 1;
};

// Initializes MPI once (later calls return the same figures). Throws
// GptError naming why when there is no MPI.
WorldInfo mpi_init();
bool mpi_initialized();
// The communicator over MPI_COMM_WORLD (mpi_init() first).
std::shared_ptr<Comm> mpi_comm();
// Throws GptError with the plugin's message when rc != 0.
void mpi_check(int rc, const char* err);

}  // namespace dist
}  // namespace gpt
