// SIMT emulator (GPT_ENGINE_CUDA_EMU builds only; docs/dev/CUDA-EMU.md).
//
// The CUDA runtime API and the device built-ins the kernels in native/cuda
// use, implemented on the host: device memory is host memory (poisoned with
// NaN bytes on allocation), kernels run on the CPU block after block, each
// block's threads as cooperative fibers (runtime.cc) so __syncthreads() and
// the warp collectives (shuffles, mma.sync) are real rendezvous points.
// Launches reach ::gpt_emu::Launcher through the build-time rewrite of
// `kernel<<<grid, block, smem, stream>>>(args)` (rewrite.js).
//
// Written for gpt-engine; not NVIDIA's header. Only what the engine's
// kernels need (plus the common neighbours) is here.
#pragma once
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>

// ---- qualifiers ------------------------------------------------------------
#define __global__
#define __device__
#define __host__
#define __constant__
#define __forceinline__ inline __attribute__((always_inline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
// Fallback only: rewrite.js turns `__shared__` declarations in the kernel
// sources into static thread_local arrays that are poisoned once per block.
#define __shared__ static thread_local

// ---- vector types ------------------------------------------------------------
struct uint3 {
  unsigned int x, y, z;
};
struct dim3 {
  unsigned int x, y, z;
  constexpr dim3(unsigned int vx = 1, unsigned int vy = 1, unsigned int vz = 1) : x(vx), y(vy), z(vz) {}
  constexpr dim3(uint3 v) : x(v.x), y(v.y), z(v.z) {}
};
struct __attribute__((aligned(8))) float2 { float x, y; };
struct __attribute__((aligned(16))) float4 { float x, y, z, w; };
struct __attribute__((aligned(8))) int2 { int x, y; };
struct __attribute__((aligned(16))) int4 { int x, y, z, w; };
struct __attribute__((aligned(8))) uint2 { unsigned int x, y; };
struct __attribute__((aligned(16))) uint4 { unsigned int x, y, z, w; };
struct __attribute__((aligned(16))) double2 { double x, y; };
inline float2 make_float2(float x, float y) { return {x, y}; }
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline int2 make_int2(int x, int y) { return {x, y}; }
inline int4 make_int4(int x, int y, int z, int w) { return {x, y, z, w}; }
inline uint2 make_uint2(unsigned x, unsigned y) { return {x, y}; }
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline uint3 make_uint3(unsigned x, unsigned y, unsigned z) { return {x, y, z}; }

// ---- runtime types -------------------------------------------------------------
enum cudaError_t {
  cudaSuccess = 0,
  cudaErrorInvalidValue = 1,
  cudaErrorMemoryAllocation = 2,
  cudaErrorInitializationError = 3,
  cudaErrorInvalidConfiguration = 9,
  cudaErrorInvalidDevicePointer = 17,
  cudaErrorInvalidMemcpyDirection = 21,
  cudaErrorInsufficientDriver = 35,
  cudaErrorNoDevice = 100,
  cudaErrorInvalidDevice = 101,
  cudaErrorInvalidResourceHandle = 400,
  cudaErrorNotReady = 600,
  cudaErrorIllegalAddress = 700,
  cudaErrorLaunchOutOfResources = 701,
  cudaErrorAssert = 710,
  cudaErrorLaunchFailure = 719,
  cudaErrorNotSupported = 801,
  cudaErrorStreamCaptureUnsupported = 900,
  cudaErrorStreamCaptureInvalidated = 901,
  cudaErrorStreamCaptureImplicit = 906,
  cudaErrorUnknown = 999,
};
typedef cudaError_t cudaError;
enum cudaMemcpyKind {
  cudaMemcpyHostToHost = 0,
  cudaMemcpyHostToDevice = 1,
  cudaMemcpyDeviceToHost = 2,
  cudaMemcpyDeviceToDevice = 3,
  cudaMemcpyDefault = 4,
};
enum cudaFuncAttribute {
  cudaFuncAttributeMaxDynamicSharedMemorySize = 8,
  cudaFuncAttributePreferredSharedMemoryCarveout = 9,
};
enum cudaDeviceAttr {
  cudaDevAttrMaxThreadsPerBlock = 1,
  cudaDevAttrMaxSharedMemoryPerBlock = 8,
  cudaDevAttrWarpSize = 10,
  cudaDevAttrMultiProcessorCount = 16,
  cudaDevAttrComputeCapabilityMajor = 75,
  cudaDevAttrComputeCapabilityMinor = 76,
  cudaDevAttrMaxSharedMemoryPerBlockOptin = 97,
};
struct CUstream_st;
struct CUevent_st;
typedef CUstream_st* cudaStream_t;
typedef CUevent_st* cudaEvent_t;
#define cudaStreamDefault 0x0
#define cudaStreamNonBlocking 0x1
#define cudaEventDefault 0x0
#define cudaEventDisableTiming 0x2
#define cudaStreamLegacy ((cudaStream_t)0x1)
#define cudaStreamPerThread ((cudaStream_t)0x2)

struct cudaDeviceProp {
  char name[256];
  size_t totalGlobalMem;
  size_t sharedMemPerBlock;
  size_t sharedMemPerBlockOptin;
  size_t sharedMemPerMultiprocessor;
  int regsPerBlock;
  int warpSize;
  int maxThreadsPerBlock;
  int maxThreadsDim[3];
  int maxGridSize[3];
  int major;
  int minor;
  int multiProcessorCount;
  int maxThreadsPerMultiProcessor;
  int l2CacheSize;
  int memoryBusWidth;
  int integrated;
};
struct cudaFuncAttributes {
  size_t sharedSizeBytes;
  int maxDynamicSharedSizeBytes;
  int maxThreadsPerBlock;
  int numRegs;
};

// ---- runtime API (runtime.cc) ------------------------------------------------------
cudaError_t cudaGetDeviceCount(int* n);
cudaError_t cudaGetDevice(int* d);
cudaError_t cudaSetDevice(int d);
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d);
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d);
cudaError_t cudaRuntimeGetVersion(int* v);
cudaError_t cudaDriverGetVersion(int* v);
cudaError_t cudaDeviceSynchronize();
cudaError_t cudaDeviceReset();
cudaError_t cudaGetLastError();
cudaError_t cudaPeekAtLastError();
const char* cudaGetErrorName(cudaError_t e);
const char* cudaGetErrorString(cudaError_t e);
cudaError_t cudaMalloc(void** p, size_t bytes);
template <typename T>
inline cudaError_t cudaMalloc(T** p, size_t bytes) {
  return cudaMalloc(reinterpret_cast<void**>(p), bytes);
}
cudaError_t cudaFree(void* p);
cudaError_t cudaMallocHost(void** p, size_t bytes);
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int flags);
cudaError_t cudaFreeHost(void* p);
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes);
cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind);
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s = nullptr);
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind);
cudaError_t cudaMemset(void* p, int value, size_t bytes);
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s = nullptr);
cudaError_t cudaStreamCreate(cudaStream_t* s);
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags);
cudaError_t cudaStreamDestroy(cudaStream_t s);
cudaError_t cudaStreamSynchronize(cudaStream_t s);
cudaError_t cudaStreamQuery(cudaStream_t s);
cudaError_t cudaStreamWaitEvent(cudaStream_t s, cudaEvent_t e, unsigned int flags = 0);
cudaError_t cudaEventCreate(cudaEvent_t* e);
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int flags);
cudaError_t cudaEventDestroy(cudaEvent_t e);
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s = nullptr);
cudaError_t cudaEventSynchronize(cudaEvent_t e);
cudaError_t cudaEventQuery(cudaEvent_t e);
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t start, cudaEvent_t end);
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value);
template <typename R, typename... P>
inline cudaError_t cudaFuncSetAttribute(R (*func)(P...), cudaFuncAttribute attr, int value) {
  return cudaFuncSetAttribute(reinterpret_cast<const void*>(func), attr, value);
}

// ---- CUDA graphs (stand-ins, runtime.cc "CUDA graphs") -----------------------------------
// While a stream captures, the launches, memsets and device-to-device copies
// queued on it are recorded (a launch with a copy of its arguments) instead
// of run; cudaGraphLaunch runs the recorded work in order. Work on another
// stream, a copy to or from the host, an allocation or a synchronize during a
// capture fails and invalidates it, as the global capture mode does on a GPU.
struct CUgraph_st;
struct CUgraphExec_st;
typedef CUgraph_st* cudaGraph_t;
typedef CUgraphExec_st* cudaGraphExec_t;
enum cudaStreamCaptureMode {
  cudaStreamCaptureModeGlobal = 0,
  cudaStreamCaptureModeThreadLocal = 1,
  cudaStreamCaptureModeRelaxed = 2,
};
enum cudaStreamCaptureStatus {
  cudaStreamCaptureStatusNone = 0,
  cudaStreamCaptureStatusActive = 1,
  cudaStreamCaptureStatusInvalidated = 2,
};
cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode mode);
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph);
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status);
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long flags = 0);
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s);
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec);
cudaError_t cudaGraphDestroy(cudaGraph_t graph);

// ---- the emulator's core (runtime.cc) --------------------------------------------------
namespace gpt_emu {

constexpr int kWarp = 32;
constexpr size_t kDefaultSmem = 48 * 1024;      // dynamic shared memory without the opt-in
constexpr size_t kMaxSmemOptin = 227 * 1024;     // sm_90's per-block opt-in limit

// Per-block built-ins, valid while a kernel runs on this OS thread.
struct BlockInfo {
  uint3 bidx;
  dim3 bdim, gdim;
};
extern thread_local BlockInfo t_block;
// The running fiber's threadIdx (set by the scheduler before each switch).
extern thread_local const uint3* t_thread_idx;

// Runs one launch: `body(ctx)` on every thread of every block. Returns
// normally; configuration errors and kernel faults become the error that the
// next cudaGetLastError() returns, with a message naming the kernel.
void run_launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                void (*body)(void*), void* ctx);
// CUDA graphs: true when a capture is open anywhere (a launch then goes to
// record_launch, which records it on its capturing stream or fails the
// capture). record_launch owns `ctx` (a heap copy, freed by `drop`).
bool capture_open();
void record_launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   void (*body)(void*), void* ctx, void (*drop)(void*));

void* dynamic_smem();
// A static __shared__ array's home for this block (poisoned at the block's
// first use, ending at an inaccessible page); `p` is its thread_local storage,
// which only names it. The rewrite binds the kernel's name to shared_array(...).
void* shared_static(void* p, size_t bytes, size_t align, const char* name);
template <class T>
T& shared_array(T& storage, const char* name) {
  return *static_cast<T*>(shared_static(&storage, sizeof(T), alignof(T), name));
}
void syncthreads(const char* file, int line);
int syncthreads_count(int pred, const char* file, int line);
int syncthreads_or(int pred, const char* file, int line);
int syncthreads_and(int pred, const char* file, int line);
void syncwarp(unsigned mask);
[[noreturn]] void trap(const char* what);
unsigned lane_id();

// Warp collectives: `kind` is one of the Shfl* values; `v` a 64-bit payload.
enum ShflKind { ShflIdx = 0, ShflUp = 1, ShflDown = 2, ShflXor = 3 };
uint64_t shfl(unsigned mask, uint64_t v, int kind, int arg, int width, int bytes);
unsigned vote_ballot(unsigned mask, int pred);
// mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32: d = a b + d.
void mma_m16n8k16_bf16_f32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]);
// cp.async (native/cuda/smem_copy.cuh): `bytes` (4, 8 or 16) from global
// `src` to shared `dst`, of which the first `src_bytes` are read and the rest
// zero-filled. The copy is recorded in the thread's open group and lands in
// shared memory only at the wait that completes its group.
void cp_async(void* dst, const void* src, int bytes, int src_bytes);
void cp_async_commit();
void cp_async_wait_group(int n);  // lands all but the newest n committed groups
void cp_async_wait_all();         // lands every copy, committed or not
// ldmatrix.sync.aligned.m8n8.x{num}{.trans}.shared.b16, warp-wide.
void ldmatrix(uint32_t* regs, const void* row, int num, bool trans);

// Extracts "X" from the __PRETTY_FUNCTION__ text of kernel_name<X>().
const char* kernel_label(const char* pretty);

template <auto K>
const char* kernel_name() {
  static const char* name = kernel_label(__PRETTY_FUNCTION__);
  return name;
}

template <typename F, typename Tuple>
struct LaunchCtx {
  F f;
  Tuple params;
};

// `kernel<<<g, b, smem, s>>>(args...)` becomes Launcher<kernel>(g, b, smem, s)(args...).
template <auto K>
struct Launcher {
  dim3 grid, block;
  size_t smem;
  cudaStream_t stream;
  Launcher(dim3 g, dim3 b, size_t sm = 0, cudaStream_t s = nullptr) : grid(g), block(b), smem(sm), stream(s) {}
  template <typename... A>
  void operator()(A&&... args) const {
    launch_with(K, std::forward<A>(args)...);
  }

 private:
  template <typename... P, typename... A>
  void launch_with(void (*k)(P...), A&&... args) const {
    static_assert(sizeof...(P) == sizeof...(A), "kernel launched with the wrong number of arguments");
    using Tuple = std::tuple<std::decay_t<P>...>;
    using Ctx = LaunchCtx<void (*)(P...), Tuple>;
    Ctx ctx{k, Tuple(static_cast<std::decay_t<P>>(std::forward<A>(args))...)};
    void (*body)(void*) = [](void* c) {
      auto* lc = static_cast<Ctx*>(c);
      Tuple copy = lc->params;  // each thread gets its own copy of the arguments
      std::apply(lc->f, copy);
    };
    if (capture_open()) {  // CUDA graphs: recorded with a copy of the arguments
      record_launch(kernel_name<K>(), reinterpret_cast<const void*>(k), grid, block, smem, stream, body,
                    new Ctx(ctx), [](void* c) { delete static_cast<Ctx*>(c); });
      return;
    }
    run_launch(kernel_name<K>(), reinterpret_cast<const void*>(k), grid, block, smem, stream, body, &ctx);
  }
};

}  // namespace gpt_emu

// ---- device built-ins ------------------------------------------------------------------
#define threadIdx (*::gpt_emu::t_thread_idx)
#define blockIdx (::gpt_emu::t_block.bidx)
#define blockDim (::gpt_emu::t_block.bdim)
#define gridDim (::gpt_emu::t_block.gdim)
constexpr int warpSize = 32;

#define __syncthreads() ::gpt_emu::syncthreads(__FILE__, __LINE__)
#define __syncthreads_count(p) ::gpt_emu::syncthreads_count((p), __FILE__, __LINE__)
#define __syncthreads_or(p) ::gpt_emu::syncthreads_or((p), __FILE__, __LINE__)
#define __syncthreads_and(p) ::gpt_emu::syncthreads_and((p), __FILE__, __LINE__)
inline void __syncwarp(unsigned mask = 0xffffffffu) { ::gpt_emu::syncwarp(mask); }
inline void __threadfence() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
inline void __threadfence_block() { __atomic_thread_fence(__ATOMIC_SEQ_CST); }
[[noreturn]] inline void __trap() { ::gpt_emu::trap("__trap()"); }

template <typename T>
inline T __ldg(const T* p) {
  return *p;
}

namespace gpt_emu {
template <typename T>
inline T shfl_t(unsigned mask, T v, int kind, int arg, int width) {
  static_assert(sizeof(T) <= 8 && std::is_trivially_copyable<T>::value, "shuffle of an unsupported type");
  uint64_t bits = 0;
  std::memcpy(&bits, &v, sizeof(T));
  bits = shfl(mask, bits, kind, arg, width, (int)sizeof(T));
  T out;
  std::memcpy(&out, &bits, sizeof(T));
  return out;
}
}  // namespace gpt_emu
template <typename T>
inline T __shfl_sync(unsigned mask, T v, int src, int width = 32) {
  return ::gpt_emu::shfl_t(mask, v, ::gpt_emu::ShflIdx, src, width);
}
template <typename T>
inline T __shfl_up_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::gpt_emu::shfl_t(mask, v, ::gpt_emu::ShflUp, (int)delta, width);
}
template <typename T>
inline T __shfl_down_sync(unsigned mask, T v, unsigned delta, int width = 32) {
  return ::gpt_emu::shfl_t(mask, v, ::gpt_emu::ShflDown, (int)delta, width);
}
template <typename T>
inline T __shfl_xor_sync(unsigned mask, T v, int lane_mask, int width = 32) {
  return ::gpt_emu::shfl_t(mask, v, ::gpt_emu::ShflXor, lane_mask, width);
}
inline unsigned __ballot_sync(unsigned mask, int pred) { return ::gpt_emu::vote_ballot(mask, pred); }
inline int __any_sync(unsigned mask, int pred) { return ::gpt_emu::vote_ballot(mask, pred) != 0; }
inline int __all_sync(unsigned mask, int pred) { return ::gpt_emu::vote_ballot(mask, pred) == mask; }

// Atomics: a block's fibers never preempt each other, but blocks may run on
// several OS threads, so these are real host atomics.
inline int atomicAdd(int* p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicAdd(unsigned* p, unsigned v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long* p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
template <typename T>
inline T gpt_emu_atomic_float_add(T* p, T v) {
  T old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (!__atomic_compare_exchange_n(p, &old, old + v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline float atomicAdd(float* p, float v) {
  static_assert(sizeof(float) == sizeof(uint32_t), "");
  uint32_t* u = reinterpret_cast<uint32_t*>(p);
  uint32_t old = __atomic_load_n(u, __ATOMIC_SEQ_CST);
  for (;;) {
    float f;
    std::memcpy(&f, &old, 4);
    f += v;
    uint32_t nw;
    std::memcpy(&nw, &f, 4);
    if (__atomic_compare_exchange_n(u, &old, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
      std::memcpy(&f, &old, 4);
      return f;
    }
  }
}
inline double atomicAdd(double* p, double v) {
  uint64_t* u = reinterpret_cast<uint64_t*>(p);
  uint64_t old = __atomic_load_n(u, __ATOMIC_SEQ_CST);
  for (;;) {
    double f;
    std::memcpy(&f, &old, 8);
    f += v;
    uint64_t nw;
    std::memcpy(&nw, &f, 8);
    if (__atomic_compare_exchange_n(u, &old, nw, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
      std::memcpy(&f, &old, 8);
      return f;
    }
  }
}
inline int atomicMax(int* p, int v) {
  int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old < v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline int atomicMin(int* p, int v) {
  int old = __atomic_load_n(p, __ATOMIC_SEQ_CST);
  while (old > v && !__atomic_compare_exchange_n(p, &old, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
  }
  return old;
}
inline int atomicExch(int* p, int v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline unsigned atomicExch(unsigned* p, unsigned v) { return __atomic_exchange_n(p, v, __ATOMIC_SEQ_CST); }
inline int atomicCAS(int* p, int cmp, int v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;
}
inline unsigned atomicCAS(unsigned* p, unsigned cmp, unsigned v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;
}
inline unsigned long long atomicCAS(unsigned long long* p, unsigned long long cmp, unsigned long long v) {
  __atomic_compare_exchange_n(p, &cmp, v, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
  return cmp;
}

// ---- device math -----------------------------------------------------------------------
inline int min(int a, int b) { return a < b ? a : b; }
inline int max(int a, int b) { return a > b ? a : b; }
inline unsigned min(unsigned a, unsigned b) { return a < b ? a : b; }
inline unsigned max(unsigned a, unsigned b) { return a > b ? a : b; }
inline long long min(long long a, long long b) { return a < b ? a : b; }
inline long long max(long long a, long long b) { return a > b ? a : b; }
inline long min(long a, long b) { return a < b ? a : b; }
inline long max(long a, long b) { return a > b ? a : b; }
inline unsigned long long min(unsigned long long a, unsigned long long b) { return a < b ? a : b; }
inline unsigned long long max(unsigned long long a, unsigned long long b) { return a > b ? a : b; }
inline float min(float a, float b) { return fminf(a, b); }
inline float max(float a, float b) { return fmaxf(a, b); }
inline double min(double a, double b) { return fmin(a, b); }
inline double max(double a, double b) { return fmax(a, b); }
inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
inline double rsqrt(double x) { return 1.0 / sqrt(x); }
inline float __expf(float x) { return expf(x); }
inline float __logf(float x) { return logf(x); }
inline float __exp2f(float x) { return exp2f(x); }
inline float __fdividef(float a, float b) { return a / b; }
inline float __frcp_rn(float x) { return 1.0f / x; }
inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
inline float __int_as_float(int i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int __float_as_int(float f) {
  int i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline unsigned __float_as_uint(float f) {
  unsigned i;
  std::memcpy(&i, &f, 4);
  return i;
}
inline float __uint_as_float(unsigned i) {
  float f;
  std::memcpy(&f, &i, 4);
  return f;
}
inline int __popc(unsigned x) { return __builtin_popcount(x); }
inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned)x); }
inline int __ffs(int x) { return __builtin_ffs(x); }
long long clock64();
