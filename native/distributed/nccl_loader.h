// NCCL, loaded at run time (never a build dependency): libnccl.so.2 from the
// usual library path, then the file $GPT_ENGINE_NCCL names. Only the few
// functions and values gpt-engine uses are declared here, as NCCL's public
// API (nccl.h) defines them; the version must be at least 2.10.
#pragma once
#include <cstddef>
#include <string>

namespace gpt {
namespace dist {

// NCCL's ABI, the parts used.
constexpr int kNcclSuccess = 0;        // ncclResult_t
constexpr int kNcclFloat32 = 7;        // ncclDataType_t
constexpr int kNcclSum = 0;            // ncclRedOp_t
constexpr int kNcclUniqueIdBytes = 128;
constexpr int kNcclMinVersion = 21000;  // 2.10.0, NCCL_VERSION(2, 10, 0)
struct NcclUniqueId {
  char internal[kNcclUniqueIdBytes];
};
typedef struct NcclCommOpaque* NcclComm;

struct NcclApi {
  int (*GetVersion)(int* version);
  int (*GetUniqueId)(NcclUniqueId* id);
  int (*CommInitRank)(NcclComm* comm, int nranks, NcclUniqueId id, int rank);
  int (*AllReduce)(const void* send, void* recv, size_t count, int type, int op, NcclComm comm, void* stream);
  int (*ReduceScatter)(const void* send, void* recv, size_t recvcount, int type, int op, NcclComm comm,
                       void* stream);
  int (*AllGather)(const void* send, void* recv, size_t sendcount, int type, NcclComm comm, void* stream);
  int (*GroupStart)();
  int (*GroupEnd)();
  int (*CommDestroy)(NcclComm comm);
  const char* (*GetErrorString)(int result);
};

struct NcclStatus {
  bool ok = false;
  int version = 0;    // NCCL's version code (2.10.3: 21003), 0 when none was read
  std::string path;   // the file loaded (empty when none)
  std::string reason; // why not, when !ok
};

// Loads once; later calls return the same answer.
NcclStatus nccl_status();
// The functions; throws GptError with nccl_status().reason when unusable.
const NcclApi& nccl_api();
// "2.18.5" from a version code.
std::string nccl_version_string(int code);
// Throws GptError naming `what` and NCCL's message when rc is not success.
void nccl_check(int rc, const char* what);

}  // namespace dist
}  // namespace gpt
