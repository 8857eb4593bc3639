// The MPI plugin (plugin.h): the only code linked to libmpi. Built by
// CMakeLists.txt when FindMPI finds an MPI, next to the addon.
#include <mpi.h>

#include <climits>
#include <cstdio>
#include <cstring>
#include <vector>

#include "plugin.h"

namespace {

MPI_Comm g_local = MPI_COMM_NULL;  // the ranks on this machine

int fail(int rc, const char* what, char* err, int errlen) {
  if (rc == MPI_SUCCESS) return 0;
  char text[MPI_MAX_ERROR_STRING] = {0};
  int len = 0;
  MPI_Error_string(rc, text, &len);
  std::snprintf(err, static_cast<size_t>(errlen), "%s failed: %s", what, text);
  return 1;
}

int too_large(const char* what, char* err, int errlen) {
  std::snprintf(err, static_cast<size_t>(errlen), "%s: a slice of more than %d elements is not supported", what,
                INT_MAX);
  return 1;
}

MPI_Datatype mpi_type(int type) {
  return type == GPT_MPI_F32 ? MPI_FLOAT : type == GPT_MPI_F64 ? MPI_DOUBLE : MPI_INT64_T;
}

size_t type_size(int type) { return type == GPT_MPI_F32 ? 4 : 8; }

void library_version(char* out, int len) {
  char v[MPI_MAX_LIBRARY_VERSION_STRING] = {0};
  int n = 0;
  MPI_Get_library_version(v, &n);
  // The first line only ("Open MPI v4.1.4, package: ...").
  char* nl = std::strchr(v, '\n');
  if (nl) *nl = 0;
  char* comma = std::strchr(v, ',');
  if (comma) *comma = 0;
  std::snprintf(out, static_cast<size_t>(len), "%s", v);
}

int init(int* rank, int* size, int* local_rank, int* local_size, char* err, int errlen) {
  int inited = 0;
  MPI_Initialized(&inited);
  if (!inited) {
    int provided = 0;
    int rc = MPI_Init_thread(nullptr, nullptr, MPI_THREAD_MULTIPLE, &provided);
    if (fail(rc, "MPI_Init_thread", err, errlen)) return 1;
    if (provided < MPI_THREAD_MULTIPLE) {
      std::snprintf(err, static_cast<size_t>(errlen),
                    "MPI_Init_thread gave thread level %d; gpt-engine needs MPI_THREAD_MULTIPLE (%d)", provided,
                    MPI_THREAD_MULTIPLE);
      return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
  }
  MPI_Comm_rank(MPI_COMM_WORLD, rank);
  MPI_Comm_size(MPI_COMM_WORLD, size);
  if (g_local == MPI_COMM_NULL &&
      fail(MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &g_local),
           "MPI_Comm_split_type", err, errlen))
    return 1;
  MPI_Comm_rank(g_local, local_rank);
  MPI_Comm_size(g_local, local_size);
  return 0;
}

int allreduce_sum(void* buf, int64_t n, int type, char* err, int errlen) {
  // In pieces of at most INT_MAX elements (MPI counts are int).
  char* p = static_cast<char*>(buf);
  while (n > 0) {
    const int k = n > INT_MAX ? INT_MAX : static_cast<int>(n);
    if (fail(MPI_Allreduce(MPI_IN_PLACE, p, k, mpi_type(type), MPI_SUM, MPI_COMM_WORLD), "MPI_Allreduce", err,
             errlen))
      return 1;
    p += static_cast<size_t>(k) * type_size(type);
    n -= k;
  }
  return 0;
}

bool int_counts(const int64_t* counts, std::vector<int>* c, std::vector<int>* displ) {
  int size = 0;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  c->resize(static_cast<size_t>(size));
  displ->resize(static_cast<size_t>(size));
  int64_t off = 0;
  for (int r = 0; r < size; ++r) {
    if (counts[r] > INT_MAX || off > INT_MAX) return false;
    (*c)[static_cast<size_t>(r)] = static_cast<int>(counts[r]);
    (*displ)[static_cast<size_t>(r)] = static_cast<int>(off);
    off += counts[r];
  }
  return true;
}

int reduce_scatter_sum_f32(float* buf, const int64_t* counts, char* err, int errlen) {
  std::vector<int> c, displ;
  if (!int_counts(counts, &c, &displ)) return too_large("MPI_Reduce_scatter", err, errlen);
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  // In place, MPI leaves this rank's result at the start of buf: move it to
  // the rank's own slice.
  if (fail(MPI_Reduce_scatter(MPI_IN_PLACE, buf, c.data(), MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD),
           "MPI_Reduce_scatter", err, errlen))
    return 1;
  const size_t r = static_cast<size_t>(rank);
  if (displ[r] > 0) std::memmove(buf + displ[r], buf, static_cast<size_t>(c[r]) * sizeof(float));
  return 0;
}

int allgather_f32(float* buf, const int64_t* counts, char* err, int errlen) {
  std::vector<int> c, displ;
  if (!int_counts(counts, &c, &displ)) return too_large("MPI_Allgatherv", err, errlen);
  return fail(MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, buf, c.data(), displ.data(), MPI_FLOAT,
                             MPI_COMM_WORLD),
              "MPI_Allgatherv", err, errlen);
}

int bcast(void* buf, int64_t bytes, int root, char* err, int errlen) {
  if (bytes > INT_MAX) return too_large("MPI_Bcast", err, errlen);
  return fail(MPI_Bcast(buf, static_cast<int>(bytes), MPI_BYTE, root, MPI_COMM_WORLD), "MPI_Bcast", err, errlen);
}

int barrier(char* err, int errlen) { return fail(MPI_Barrier(MPI_COMM_WORLD), "MPI_Barrier", err, errlen); }

void abort_world(int code) { MPI_Abort(MPI_COMM_WORLD, code); }

int finalize() {
  int inited = 0, done = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&done);
  if (!inited || done) return 0;
  if (g_local != MPI_COMM_NULL) MPI_Comm_free(&g_local);
  return MPI_Finalize() == MPI_SUCCESS ? 0 : 1;
}

const GptMpiPlugin kPlugin = {
    GPT_MPI_PLUGIN_ABI, library_version, init,    allreduce_sum, reduce_scatter_sum_f32, allgather_f32, bcast,
    barrier,            abort_world,     finalize,
};

}  // namespace

extern "C" __attribute__((visibility("default"))) const GptMpiPlugin* gpt_mpi_plugin(void) { return &kPlugin; }
