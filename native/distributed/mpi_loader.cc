// The plugin loader and the MPI Comm (mpi_loader.h).
#include "mpi_loader.h"

#include <dlfcn.h>

#include <mutex>

#include "../core/error.h"

namespace gpt {
namespace dist {

namespace {

std::mutex g_mu;
bool g_tried = false;
const GptMpiPlugin* g_plugin = nullptr;
std::string g_why;
bool g_inited = false;
WorldInfo g_world;

constexpr int kErr = 512;

class MpiComm : public Comm {
 public:
  MpiComm(const GptMpiPlugin* p, WorldInfo w) : p_(p), w_(w) {}
  int rank() const override { return w_.rank; }
  int size() const override { return w_.size; }
  void allreduce_sum(float* buf, int64_t n) override { run_reduce(buf, n, GPT_MPI_F32); }
  void allreduce_sum(double* buf, int64_t n) override { run_reduce(buf, n, GPT_MPI_F64); }
  void allreduce_sum(int64_t* buf, int64_t n) override { run_reduce(buf, n, GPT_MPI_I64); }
  void reduce_scatter_sum(float* buf, const std::vector<int64_t>& counts) override {
    check_counts(counts);
    char err[kErr] = {0};
    mpi_check(p_->reduce_scatter_sum_f32(buf, counts.data(), err, kErr), err);
  }
  void all_gather(float* buf, const std::vector<int64_t>& counts) override {
    check_counts(counts);
    char err[kErr] = {0};
    mpi_check(p_->allgather_f32(buf, counts.data(), err, kErr), err);
  }

 private:
  void run_reduce(void* buf, int64_t n, int type) {
    char err[kErr] = {0};
    mpi_check(p_->allreduce_sum(buf, n, type, err, kErr), err);
  }
  void check_counts(const std::vector<int64_t>& counts) const {
    if (static_cast<int>(counts.size()) != w_.size)
      throw GptError(ErrorCode::Internal, "Expected one slice count per rank (" + std::to_string(w_.size) +
                                              ") but received " + std::to_string(counts.size()));
  }
  const GptMpiPlugin* p_;
  WorldInfo w_;
};

}  // namespace

std::string mpi_plugin_path() {
  Dl_info info;
  std::string dir = ".";
  if (dladdr(reinterpret_cast<void*>(&mpi_plugin_path), &info) && info.dli_fname) {
    std::string self = info.dli_fname;
    size_t slash = self.rfind('/');
    if (slash != std::string::npos) dir = self.substr(0, slash);
  }
  return dir + "/" GPT_MPI_PLUGIN_FILE;
}

const GptMpiPlugin* mpi_plugin(std::string* why) {
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_tried) {
    g_tried = true;
    const std::string path = mpi_plugin_path();
    // RTLD_GLOBAL: Open MPI loads its own components with dlopen and they
    // look for libmpi's symbols in the global namespace.
    void* h = dlopen(path.c_str(), RTLD_NOW | RTLD_GLOBAL);
    if (!h) {
      const char* e = dlerror();
      g_why = "this build of gpt-engine has no MPI (" + path + " could not be loaded: " + (e ? e : "unknown") +
              "); install Open MPI (Debian/Ubuntu: apt-get install openmpi-bin libopenmpi-dev) and rebuild "
              "(npm rebuild gpt-engine, or npm run build:native in a checkout)";
    } else {
      auto fn = reinterpret_cast<const GptMpiPlugin* (*)()>(dlsym(h, "gpt_mpi_plugin"));
      const GptMpiPlugin* p = fn ? fn() : nullptr;
      if (!p || p->abi != GPT_MPI_PLUGIN_ABI)
        g_why = path + " is not this version's MPI plugin (ABI " + std::to_string(p ? p->abi : -1) + ", expected " +
                std::to_string(GPT_MPI_PLUGIN_ABI) + "); rebuild gpt-engine";
      else
        g_plugin = p;
    }
  }
  if (!g_plugin && why) *why = g_why;
  return g_plugin;
}

void mpi_check(int rc, const char* err) {
  if (rc != 0) throw GptError(ErrorCode::Internal, std::string("MPI: ") + (err && *err ? err : "call failed"));
}

WorldInfo mpi_init() {
  std::string why;
  const GptMpiPlugin* p = mpi_plugin(&why);
  if (!p) throw GptError(ErrorCode::InvalidArgument, "Cannot run distributed: " + why);
  std::lock_guard<std::mutex> lk(g_mu);
  if (!g_inited) {
    char err[kErr] = {0};
    WorldInfo w;
    mpi_check(p->init(&w.rank, &w.size, &w.local_rank, &w.local_size, err, kErr), err);
    g_world = w;
    g_inited = true;
  }
  return g_world;
}

bool mpi_initialized() {
  std::lock_guard<std::mutex> lk(g_mu);
  return g_inited;
}

std::shared_ptr<Comm> mpi_comm() {
  WorldInfo w = mpi_init();
  return std::make_shared<MpiComm>(mpi_plugin(nullptr), w);
}

}  // namespace dist
}  // namespace gpt
