/*
 * A stand-in libnccl.so.2 for tests only (test/distributed/gpu-ranks.test.ts): the
 * NCCL functions gpt-engine loads (native/distributed/nccl_loader.h), done with MPI
 * on MPI_COMM_WORLD over host memory. Under the SIMT emulator build the
 * "device" buffers are host memory, so GPU ranks can run on a machine with
 * no GPU. Built by the test with mpicc. Each call kind is named once on
 * stderr ("fake-nccl rank R: ncclX"), so the test can see NCCL was used.
 * GPT_FAKE_NCCL_FAIL="ncclX:R" makes that call fail on rank R (error 4,
 * invalid argument), for the error path.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct { char internal[128]; } ncclUniqueId;
struct fake_comm { int rank, nranks; };
typedef struct fake_comm* ncclComm_t;

enum { kSuccess = 0, kSystemError = 2, kInvalidArgument = 4, kFloat32 = 7, kSum = 0 };

static int seen[8];
/* Names the call once; non-zero when GPT_FAKE_NCCL_FAIL asks it to fail here. */
static int note(int kind, const char* name) {
  int r = -1;
  MPI_Comm_rank(MPI_COMM_WORLD, &r);
  if (!seen[kind]) {
    seen[kind] = 1;
    fprintf(stderr, "fake-nccl rank %d: %s\n", r, name);
  }
  const char* f = getenv("GPT_FAKE_NCCL_FAIL");
  char want[64];
  snprintf(want, sizeof want, "%s:%d", name, r);
  return f && strcmp(f, want) == 0;
}

int ncclGetVersion(int* v) { *v = 21805; return kSuccess; }

const char* ncclGetErrorString(int rc) {
  return rc == kInvalidArgument ? "invalid argument (fake NCCL)" : "system error (fake NCCL)";
}

int ncclGetUniqueId(ncclUniqueId* id) {
  /* Random bytes: the ranks agree only if rank 0's id reaches them. */
  FILE* f = fopen("/dev/urandom", "rb");
  if (!f || fread(id->internal, 1, sizeof id->internal, f) != sizeof id->internal) {
    if (f) fclose(f);
    return kSystemError;
  }
  fclose(f);
  return note(0, "ncclGetUniqueId") ? kInvalidArgument : kSuccess;
}

int ncclCommInitRank(ncclComm_t* comm, int nranks, ncclUniqueId id, int rank) {
  int inited = 0, size = 0, me = 0;
  MPI_Initialized(&inited);
  if (!inited) return kSystemError;
  MPI_Comm_size(MPI_COMM_WORLD, &size);
  MPI_Comm_rank(MPI_COMM_WORLD, &me);
  if (nranks != size || rank != me) return kInvalidArgument;
  /* Every rank must hold rank 0's id. */
  ncclUniqueId first = id;
  MPI_Bcast(first.internal, sizeof first.internal, MPI_BYTE, 0, MPI_COMM_WORLD);
  int same = memcmp(first.internal, id.internal, sizeof id.internal) == 0, all = 0;
  MPI_Allreduce(&same, &all, 1, MPI_INT, MPI_LAND, MPI_COMM_WORLD);
  if (!all) return kInvalidArgument;
  if (note(1, "ncclCommInitRank")) return kInvalidArgument;
  *comm = (ncclComm_t)malloc(sizeof(struct fake_comm));
  (*comm)->rank = rank;
  (*comm)->nranks = nranks;
  return kSuccess;
}

int ncclCommDestroy(ncclComm_t comm) { free(comm); return kSuccess; }
int ncclGroupStart(void) { return kSuccess; }
int ncclGroupEnd(void) { return kSuccess; }

static int ok(int rc) { return rc == MPI_SUCCESS ? kSuccess : kSystemError; }

int ncclAllReduce(const void* send, void* recv, size_t count, int type, int op, ncclComm_t comm, void* stream) {
  (void)comm; (void)stream;
  if (type != kFloat32 || op != kSum || count > 0x7fffffff) return kInvalidArgument;
  if (note(2, "ncclAllReduce")) return kInvalidArgument;
  return ok(MPI_Allreduce(send == recv ? MPI_IN_PLACE : send, recv, (int)count, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD));
}

int ncclReduceScatter(const void* send, void* recv, size_t recvcount, int type, int op, ncclComm_t comm,
                      void* stream) {
  (void)stream;
  if (type != kFloat32 || op != kSum || recvcount * comm->nranks > 0x7fffffff) return kInvalidArgument;
  if (note(3, "ncclReduceScatter")) return kInvalidArgument;
  /* NCCL allows recv inside send (in place); MPI does not: reduce a copy. */
  size_t n = recvcount * (size_t)comm->nranks;
  float* copy = (float*)malloc(n * sizeof(float) + 1);
  if (!copy) return kSystemError;
  memcpy(copy, send, n * sizeof(float));
  int rc = MPI_Reduce_scatter_block(copy, recv, (int)recvcount, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
  free(copy);
  return ok(rc);
}

int ncclAllGather(const void* send, void* recv, size_t sendcount, int type, ncclComm_t comm, void* stream) {
  (void)stream;
  if (type != kFloat32 || sendcount * comm->nranks > 0x7fffffff) return kInvalidArgument;
  if (note(4, "ncclAllGather")) return kInvalidArgument;
  const float* in_place = (const float*)recv + sendcount * (size_t)comm->rank;
  return ok(MPI_Allgather(send == in_place ? MPI_IN_PLACE : send, (int)sendcount, MPI_FLOAT, recv, (int)sendcount,
                          MPI_FLOAT, MPI_COMM_WORLD));
}
