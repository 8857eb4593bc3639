// The NCCL loader (nccl_loader.h).
#include "nccl_loader.h"

#include <dlfcn.h>

#include <cstdlib>
#include <mutex>

#include "../core/error.h"

namespace gpt {
namespace dist {

namespace {

std::once_flag g_once;
NcclStatus g_status;
NcclApi g_api{};

template <typename F>
bool sym(void* h, const char* name, F* out, std::string* missing) {
  *out = reinterpret_cast<F>(dlsym(h, name));
  if (!*out && missing->empty()) *missing = name;
  return *out != nullptr;
}

void load() {
  std::string tried;
  void* h = nullptr;
  const char* env = std::getenv("GPT_ENGINE_NCCL");
  for (const char* name : {"libnccl.so.2", env}) {
    if (!name || !*name) continue;
    h = dlopen(name, RTLD_NOW | RTLD_LOCAL);
    if (h) {
      g_status.path = name;
      break;
    }
    const char* e = dlerror();
    tried += std::string(tried.empty() ? "" : "; ") + name + ": " + (e ? e : "not found");
  }
  if (!h) {
    g_status.reason = "libnccl.so.2 was not found (" + tried +
                      "); install NCCL (NVIDIA's libnccl2 package, or the nvidia-nccl-cu12 Python wheel) or point "
                      "GPT_ENGINE_NCCL at its libnccl.so.2";
    return;
  }
  std::string missing;
  NcclApi a{};
  sym(h, "ncclGetVersion", &a.GetVersion, &missing);
  sym(h, "ncclGetUniqueId", &a.GetUniqueId, &missing);
  sym(h, "ncclCommInitRank", &a.CommInitRank, &missing);
  sym(h, "ncclAllReduce", &a.AllReduce, &missing);
  sym(h, "ncclReduceScatter", &a.ReduceScatter, &missing);
  sym(h, "ncclAllGather", &a.AllGather, &missing);
  sym(h, "ncclGroupStart", &a.GroupStart, &missing);
  sym(h, "ncclGroupEnd", &a.GroupEnd, &missing);
  sym(h, "ncclCommDestroy", &a.CommDestroy, &missing);
  sym(h, "ncclGetErrorString", &a.GetErrorString, &missing);
  if (!missing.empty()) {
    g_status.reason = g_status.path + " lacks " + missing + ": it is not a usable NCCL";
    return;
  }
  int v = 0;
  if (a.GetVersion(&v) != kNcclSuccess || v <= 0) {
    g_status.reason = g_status.path + ": ncclGetVersion failed";
    return;
  }
  g_status.version = v;
  if (v < kNcclMinVersion) {
    g_status.reason = g_status.path + " is NCCL " + nccl_version_string(v) + "; gpt-engine needs NCCL 2.10 or newer";
    return;
  }
  g_api = a;
  g_status.ok = true;
}

}  // namespace

std::string nccl_version_string(int code) {
  // NCCL_VERSION(X, Y, Z): X*1000 + Y*100 + Z up to 2.8, X*10000 + Y*100 + Z after.
  const int major = code >= 10000 ? code / 10000 : code / 1000;
  const int rest = code >= 10000 ? code % 10000 : code % 1000;
  return std::to_string(major) + "." + std::to_string(rest / 100) + "." + std::to_string(rest % 100);
}

NcclStatus nccl_status() {
  std::call_once(g_once, load);
  return g_status;
}

const NcclApi& nccl_api() {
  NcclStatus s = nccl_status();
  if (!s.ok) throw GptError(ErrorCode::InvalidArgument, "NCCL is not usable: " + s.reason);
  return g_api;
}

void nccl_check(int rc, const char* what) {
  if (rc == kNcclSuccess) return;
  const char* msg = g_api.GetErrorString ? g_api.GetErrorString(rc) : "unknown";
  throw GptError(ErrorCode::Internal, std::string(what) + " failed: " + (msg ? msg : "unknown") + " (NCCL error " +
                                          std::to_string(rc) + ")");
}

}  // namespace dist
}  // namespace gpt
