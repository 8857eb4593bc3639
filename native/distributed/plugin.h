// The C table of functions the MPI plugin (mpi_plugin.cc, a small shared
// library linked to libmpi) hands the addon, which loads it at run time
// (mpi_loader.cc): the addon itself never links MPI, so one addon serves
// builds and machines with and without Open MPI (docs/ARCHITECTURE.md
// "Data parallel"). Every function returns 0 on success, or non-zero with a
// message in err (at most errlen bytes, NUL-terminated).
#pragma once
#include <stdint.h>

#define GPT_MPI_PLUGIN_ABI 1
// The library's file name, looked for next to the addon (the .node file).
#define GPT_MPI_PLUGIN_FILE "gpt_engine_mpi.so"

enum GptMpiType { GPT_MPI_F32 = 0, GPT_MPI_F64 = 1, GPT_MPI_I64 = 2 };

typedef struct GptMpiPlugin {
  int abi;  // GPT_MPI_PLUGIN_ABI
  // The MPI library's own version line (MPI_Get_library_version); callable before init.
  void (*library_version)(char* out, int len);
  // MPI_Init_thread(MPI_THREAD_MULTIPLE) unless already initialized; fills the
  // world rank and size and the rank and size on this machine.
  int (*init)(int* rank, int* size, int* local_rank, int* local_size, char* err, int errlen);
  // In place sum over all ranks of n elements of `type`.
  int (*allreduce_sum)(void* buf, int64_t n, int type, char* err, int errlen);
  // buf holds sum(counts) floats on every rank, rank r's slice starting at
  // counts[0] + ... + counts[r-1]. Afterwards rank r's slice of buf holds the
  // sum over ranks of that slice (the rest of buf is undefined).
  int (*reduce_scatter_sum_f32)(float* buf, const int64_t* counts, char* err, int errlen);
  // Same layout: every rank's slice goes to every rank.
  int (*allgather_f32)(float* buf, const int64_t* counts, char* err, int errlen);
  int (*bcast)(void* buf, int64_t bytes, int root, char* err, int errlen);
  int (*barrier)(char* err, int errlen);
  // MPI_Abort on the world: ends every rank of the job (mpirun reports it).
  void (*abort)(int code);
  int (*finalize)(void);
} GptMpiPlugin;

#ifdef __cplusplus
extern "C" {
#endif
// The plugin's one exported symbol.
const GptMpiPlugin* gpt_mpi_plugin(void);
#ifdef __cplusplus
}
#endif
