// Unit tests of the SIMT emulator itself (built only with GPT_ENGINE_CUDA_EMU=ON
// as the program gpt_emu_selftest). Small purpose-written kernels check the
// emulated semantics the engine's kernels rely on: barriers, shuffles and
// votes, mma.sync m16n8k16 against a plain loop (fragments loaded as
// common.cuh documents them, so the kernels' convention is checked against
// the emulator's PTX-derived layout), cp.async (deferred to its wait, with a
// pipeline and its mutations) and ldmatrix (against the PTX layout, and
// feeding mma.sync) from smem_copy.cuh, bf16 rounding, poisoned memory, and
// that each kind of misuse is a launch error naming the kernel, never a hang
// or an abort, and that shared-memory overruns fault (tried in child
// processes). Exit status 0 when every check passes.
#include <cuda_bf16.h>
#include <cuda_runtime.h>

#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmath>
#include <csignal>
#include <cstdlib>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "common.cuh"
#include "smem_copy.cuh"

namespace {

int g_failed = 0, g_passed = 0;

void check(bool ok, const char* what, const std::string& detail = "") {
  if (ok) {
    ++g_passed;
    std::printf("ok   %s\n", what);
  } else {
    ++g_failed;
    std::printf("FAIL %s %s\n", what, detail.c_str());
  }
}

// The error of the launch just made, with the emulator's message.
std::string last_error(cudaError_t* code = nullptr) {
  cudaError_t e = cudaGetLastError();
  if (code) *code = e;
  if (e == cudaSuccess) return "";
  return std::string(cudaGetErrorName(e)) + ": " + cudaGetErrorString(e);
}

template <typename T>
T* dev(size_t n) {
  T* p = nullptr;
  cudaMalloc(&p, n * sizeof(T));
  return p;
}

// ---- barrier ordering ----------------------------------------------------------
// Each round every thread writes its slot, then (after the barrier) reads its
// neighbour's, then (after a second barrier) the slots are overwritten.
__global__ void barrier_kernel(int* out, int rounds) {
  __shared__ int s[256];
  const int t = threadIdx.x, n = blockDim.x;
  int acc = 0;
  for (int r = 0; r < rounds; ++r) {
    s[t] = t * 1000 + r + (int)blockIdx.x;
    __syncthreads();
    acc += s[(t + 1) % n];
    __syncthreads();
  }
  out[blockIdx.x * n + t] = acc;
}

// Two warps read each other's half of a shared tile, pass a warp collective
// (as the kernels do with ldmatrix and mma.sync between reading a tile and
// writing the next one), then overwrite their own half. Without the barrier
// between the reads and the writes, a warp may read the other's new value.
__global__ void overwrite_kernel(int* out, int guarded) {
  __shared__ int tile[64];
  const int t = threadIdx.x;
  tile[t] = 1;
  __syncthreads();
  int r = tile[63 - t];
  r = __shfl_sync(0xffffffffu, r, t % 32);
  if (guarded) __syncthreads();
  tile[t] = 2;
  __syncthreads();
  out[blockIdx.x * 64 + t] = r;
}

__global__ void syncthreads_count_kernel(int* out) {
  const int c = __syncthreads_count(threadIdx.x % 3 == 0);
  const int a = __syncthreads_and(threadIdx.x < 1000);
  const int o = __syncthreads_or(threadIdx.x == 77);
  if (threadIdx.x == 0) {
    out[0] = c;
    out[1] = a;
    out[2] = o;
  }
}

// ---- shuffles and votes -------------------------------------------------------------
__global__ void shuffle_kernel(float* sum_out, int* bcast, int* down, int* up, unsigned* ballot, double* dsum) {
  const int t = threadIdx.x, lane = t % 32;
  sum_out[t] = gpt::cuda::warp_sum((float)t);
  dsum[t] = gpt::cuda::warp_sum_d(0.5 * t);
  bcast[t] = __shfl_sync(0xffffffffu, t * 7, 5);
  down[t] = __shfl_down_sync(0xffffffffu, t, 3, 16);
  up[t] = __shfl_up_sync(0xffffffffu, t, 2);
  ballot[t] = __ballot_sync(0xffffffffu, lane % 5 == 0);
  // Two half-warp groups shuffling independently with their own masks.
  const unsigned half = lane < 16 ? 0x0000ffffu : 0xffff0000u;
  int v = __shfl_xor_sync(half, lane, 1);
  if (v != (lane ^ 1)) ballot[t] = 0xdeadu;
}

// ---- mma against a plain loop ----------------------------------------------------------
// One warp: A [16][16], B stored [n][k] (8 x 16), C [16][8] in row-major
// global memory; fragments loaded as common.cuh's comment documents them.
__global__ void mma_kernel(float* D, const float* A, const float* Bnk, const float* C) {
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  auto a2 = [&](int r, int c) { return gpt::cuda::pack_bf16(A[r * 16 + c], A[r * 16 + c + 1]); };
  auto b2 = [&](int k, int n) { return gpt::cuda::pack_bf16(Bnk[n * 16 + k], Bnk[n * 16 + k + 1]); };
  uint32_t a[4] = {a2(g, 2 * t), a2(g + 8, 2 * t), a2(g, 2 * t + 8), a2(g + 8, 2 * t + 8)};
  uint32_t b[2] = {b2(2 * t, g), b2(2 * t + 8, g)};
  float d[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  gpt::cuda::mma_bf16_16816(d, a, b);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// ---- cp.async (smem_copy.cuh) ----------------------------------------------------------
// Each thread copies its 16-byte chunk into shared memory that holds an old
// value; before[] reads the slot before the wait, after[] after it.
__global__ void cp_async_basic_kernel(const uint4* src, uint4* before, uint4* after, int use_wait_all) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  uint4* s = reinterpret_cast<uint4*>(smem_raw);
  const int t = threadIdx.x;
  s[t] = make_uint4(0x01010101u * t, 7u, 7u, 7u);  // the old value
  gpt::cuda::cp_async_16(&s[t], &src[t]);
  before[t] = s[t];
  if (use_wait_all) {
    gpt::cuda::cp_async_wait_all();  // also lands the uncommitted (open) group
  } else {
    gpt::cuda::cp_async_commit();
    gpt::cuda::cp_async_wait<0>();
  }
  after[t] = s[t];
}

// One thread, five groups (0-3 committed, 4 left open), each one 16-byte
// copy into its own slot. seen[k] is a bit mask of the slots holding the new
// data after step k: wait_group 3, 2, 1, 0, then wait_all.
__global__ void cp_async_groups_kernel(const uint4* src, unsigned* seen) {
  __shared__ __align__(16) uint4 s[5];
  for (int g = 0; g < 5; ++g) s[g] = make_uint4(0, 0, 0, 0);
  for (int g = 0; g < 5; ++g) {
    gpt::cuda::cp_async_16(&s[g], &src[g]);
    if (g < 4) gpt::cuda::cp_async_commit();
  }
  auto mask = [&]() {
    unsigned m = 0;
    for (int g = 0; g < 5; ++g) m |= (s[g].x == src[g].x && s[g].w == src[g].w ? 1u : 0u) << g;
    return m;
  };
  seen[0] = mask();
  gpt::cuda::cp_async_wait<5>();  // more than committed: nothing to do
  seen[1] = mask();
  gpt::cuda::cp_async_wait<3>();
  seen[2] = mask();
  gpt::cuda::cp_async_wait<2>();
  seen[3] = mask();
  gpt::cuda::cp_async_wait<1>();
  seen[4] = mask();
  gpt::cuda::cp_async_wait<0>();
  seen[5] = mask();
  gpt::cuda::cp_async_wait_all();
  seen[6] = mask();
}

// The smaller copies and the zero-filling one: a[t] gets bytes 0-11 of src
// chunk t (cp_async_8 + cp_async_4) and keeps its 0xff bytes 12-15; z[t] the
// first t % 17 bytes of src chunk t followed by zeros.
__global__ void cp_async_sizes_kernel(const uint4* src, uint4* out, uint4* zf) {
  __shared__ __align__(16) uint4 a[32], z[32];
  const int t = threadIdx.x;
  a[t] = make_uint4(~0u, ~0u, ~0u, ~0u);
  z[t] = make_uint4(~0u, ~0u, ~0u, ~0u);
  unsigned char* at = reinterpret_cast<unsigned char*>(&a[t]);
  const unsigned char* st = reinterpret_cast<const unsigned char*>(&src[t]);
  gpt::cuda::cp_async_8(at, st);
  gpt::cuda::cp_async_4(at + 8, st + 8);
  gpt::cuda::cp_async_16_zfill(&z[t], &src[t], t % 17);
  gpt::cuda::cp_async_commit();
  gpt::cuda::cp_async_wait<0>();
  out[t] = a[t];
  zf[t] = z[t];
}

// A 3-stage pipeline as the GEMM and attention kernels use it: 128 threads
// sum the 64 columns of a [tiles*32][64] float matrix, tile by tile; each
// thread copies 4 of the 512 16-byte chunks of a tile, threads 0-63 each sum
// one column of it (rows written by every warp). mode 0 is right; the
// others are the mistakes the emulator must expose: 1 no wait, 2 no barrier
// after the wait, 3 waits for one group too few, 4 no barrier before a stage
// is refilled.
constexpr int kStages = 3;
__global__ void cp_async_pipeline_kernel(const float* x, int tiles, float* colsum, int mode) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* st = reinterpret_cast<float*>(smem_raw);  // [kStages][32][64]
  const int t = threadIdx.x;
  auto load = [&](int tile) {
    if (tile < tiles)
      for (int j = 0; j < 4; ++j) {
        const int c = t + 128 * j;  // chunk: row c / 16, floats 4 * (c % 16) ..
        gpt::cuda::cp_async_16(st + (tile % kStages) * 2048 + c * 4, x + (size_t)tile * 2048 + c * 4);
      }
    gpt::cuda::cp_async_commit();  // an empty group past the end keeps the count
  };
  for (int s = 0; s < kStages - 1; ++s) load(s);
  float acc = 0.0f;
  for (int kt = 0; kt < tiles; ++kt) {
    load(kt + kStages - 1);
    if (mode == 3)
      gpt::cuda::cp_async_wait<kStages>();
    else if (mode != 1)
      gpt::cuda::cp_async_wait<kStages - 1>();  // tile kt has landed (this thread's part)
    if (mode != 2) __syncthreads();               // ... and every thread's part
    if (t < 64)
      for (int r = 0; r < 32; ++r) acc += st[(kt % kStages) * 2048 + r * 64 + t];
    if (mode != 4) __syncthreads();  // everyone is done with stage kt % kStages
  }
  if (t < 64) colsum[t] = acc;
}

// ---- ldmatrix (smem_copy.cuh) ------------------------------------------------------------
// s is a [40][24] b16 array in shared memory (rows of 48 bytes); lane L gives
// the row address s + offs[L]. out[form][L][0..3] receives the registers of
// x1, x2, x4, x1.trans, x2.trans, x4.trans in turn; registers a form does not
// write keep 0xdeadbeef.
__global__ void ldmatrix_kernel(const uint16_t* vals, const int* offs, uint32_t* out) {
  __shared__ __align__(16) uint16_t s[40 * 24];
  const int lane = threadIdx.x;
  for (int i = lane; i < 40 * 24; i += 32) s[i] = vals[i];
  __syncthreads();
  const uint16_t* row = s + offs[lane];
  for (int form = 0; form < 6; ++form) {
    uint32_t r[4] = {0xdeadbeefu, 0xdeadbeefu, 0xdeadbeefu, 0xdeadbeefu};
    switch (form) {
      case 0: gpt::cuda::ldmatrix_x1(r, row); break;
      case 1: gpt::cuda::ldmatrix_x2(r, row); break;
      case 2: gpt::cuda::ldmatrix_x4(r, row); break;
      case 3: gpt::cuda::ldmatrix_x1_trans(r, row); break;
      case 4: gpt::cuda::ldmatrix_x2_trans(r, row); break;
      default: gpt::cuda::ldmatrix_x4_trans(r, row); break;
    }
    for (int i = 0; i < 4; ++i) out[(form * 32 + lane) * 4 + i] = r[i];
  }
}

// ldmatrix feeding mma.sync, as a pipelined GEMM does: A [16][16] row-major
// via x4, B either as [n][k] (k contiguous) via x2 or as [k][n] (n
// contiguous) via x2.trans; D = A B + C into D[16][8].
__global__ void ldmatrix_mma_kernel(float* D, const float* A, const float* B, const float* C, int b_is_kn) {
  __shared__ __align__(16) uint16_t sa[16 * 16], sb[16 * 8];
  const int lane = threadIdx.x, g = lane / 4, t = lane % 4;
  for (int i = lane; i < 256; i += 32) sa[i] = __bfloat16_as_ushort(__float2bfloat16(A[i]));
  for (int i = lane; i < 128; i += 32) sb[i] = __bfloat16_as_ushort(__float2bfloat16(B[i]));
  __syncthreads();
  uint32_t a[4], b[2];
  // matrices: a0 rows 0-7 cols 0-7, a1 rows 8-15 cols 0-7, a2 rows 0-7 cols 8-15, a3 rows 8-15 cols 8-15
  gpt::cuda::ldmatrix_x4(a, &sa[(lane % 16) * 16 + (lane / 16) * 8]);
  if (b_is_kn)
    gpt::cuda::ldmatrix_x2_trans(b, &sb[(lane % 16) * 8]);  // rows k = 0..15 of [16][8]
  else
    gpt::cuda::ldmatrix_x2(b, &sb[(lane % 8) * 16 + ((lane / 8) % 2) * 8]);  // rows n of [8][16], k 0-7 / 8-15
  float d[4] = {C[g * 8 + 2 * t], C[g * 8 + 2 * t + 1], C[(g + 8) * 8 + 2 * t], C[(g + 8) * 8 + 2 * t + 1]};
  gpt::cuda::mma_bf16_16816(d, a, b);
  D[g * 8 + 2 * t] = d[0];
  D[g * 8 + 2 * t + 1] = d[1];
  D[(g + 8) * 8 + 2 * t] = d[2];
  D[(g + 8) * 8 + 2 * t + 1] = d[3];
}

// Misuse of cp.async / ldmatrix, one per mode (each a launch error).
__global__ void cp_async_fault_kernel(const uint4* src, int mode, uint4* gdst) {
  __shared__ __align__(16) uint4 s[64];
  const int t = threadIdx.x;
  const unsigned char* sb = reinterpret_cast<const unsigned char*>(&src[t]);
  unsigned char* db = reinterpret_cast<unsigned char*>(&s[t]);
  switch (mode) {
    case 0: gpt::cuda::cp_async_16(db, t == 3 ? sb + 8 : sb); break;  // source 8-byte aligned only
    case 1: gpt::cuda::cp_async_16(t == 3 ? db + 4 : db, sb); break;  // destination 4-byte aligned only
    case 2: gpt::cuda::cp_async_4(db + 2, sb); break;                 // 4-byte copy, 2-byte aligned
    case 3: gpt::cuda::cp_async_16(&gdst[t], sb); break;              // destination in global memory
    default: gpt::cuda::cp_async_16_zfill(db, sb, 17); break;         // source size above 16
  }
  gpt::cuda::cp_async_wait_all();
}
__global__ void ldmatrix_fault_kernel(int mode, uint16_t* g) {
  __shared__ __align__(16) uint16_t s[32 * 8];
  const int lane = threadIdx.x % 32;
  for (int i = threadIdx.x; i < 256; i += blockDim.x) s[i] = 0;
  __syncthreads();
  uint32_t r[4];
  if (mode == 0) gpt::cuda::ldmatrix_x4(r, &s[lane * 8 + (lane == 5 ? 4 : 0)]);  // lane 5: 8-byte aligned row
  if (mode == 1) {
    if (lane == 0)
      gpt::cuda::ldmatrix_x4(r, &s[lane * 8]);
    else
      gpt::cuda::ldmatrix_x2(r, &s[lane * 8]);
  }
  if (mode == 2) gpt::cuda::ldmatrix_x1(r, lane == 2 ? g : &s[lane * 8]);  // a row in global memory
  if (mode == 3) gpt::cuda::ldmatrix_x1(r, &s[lane * 8]);                  // launched with 16 threads
  g[8 + threadIdx.x] = (uint16_t)r[0];
}

// A 16-byte vector load at byte offset `off` of global (`g`) or shared memory.
__global__ void vec_load_kernel(const unsigned char* g, int off, int shared, uint4* out) {
  __shared__ __align__(16) unsigned char s[64];
  for (int i = 0; i < 64; ++i) s[i] = (unsigned char)i;
  const unsigned char* base = shared ? s : g;
  out[0] = *reinterpret_cast<const uint4*>(base + off);
}

// ---- misuse ---------------------------------------------------------------------------------
// Lanes 0-15 wait at the barrier, lanes 16-31 in a full-warp shuffle: deadlock.
__global__ void deadlock_kernel(float* out) {
  float v = 1.0f;
  if (threadIdx.x % 32 < 16)
    __syncthreads();
  else
    v = __shfl_xor_sync(0xffffffffu, v, 1);
  out[threadIdx.x] = v;
}
// Half the block waits at a barrier the other half never reaches (it loops
// on a second barrier at another line).
__global__ void divergent_barrier_kernel(int* out) {
  if (threadIdx.x < 64) {
    __syncthreads();
  } else {
    __syncthreads();
  }
  out[threadIdx.x] = 1;
}
__global__ void exited_lane_kernel(float* out) {
  if (threadIdx.x == 3) return;
  out[threadIdx.x] = __shfl_xor_sync(0xffffffffu, 1.0f, 1);
}
__global__ void mask_mismatch_kernel(float* out) {
  const unsigned mask = threadIdx.x < 16 ? 0xffffffffu : 0xffff0000u;
  out[threadIdx.x] = __shfl_xor_sync(mask, 1.0f, 1);
}
__global__ void smem_kernel(float* out) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* s = reinterpret_cast<float*>(smem_raw);
  out[threadIdx.x] = s[threadIdx.x];  // never written: poisoned
  __syncthreads();
  s[threadIdx.x] = 2.0f * threadIdx.x;
  __syncthreads();
  out[blockDim.x + threadIdx.x] = s[(threadIdx.x + 1) % blockDim.x];
}
// Write and read back element i of dynamic / static shared memory (i comes
// at run time, so an index past the end reaches the access).
__global__ void smem_index_kernel(float* out, int i) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  float* s = reinterpret_cast<float*>(smem_raw);
  s[i] = 1.0f + i;
  out[0] = s[i];
}
__global__ void static_smem_index_kernel(float* out, int i) {
  __shared__ float s[64];
  s[i] = 1.0f + i;
  out[0] = s[i];
}
__global__ void noop_kernel(int* out) {
  if (out) out[blockIdx.x] = 1;
}

bool is_nan_bits(float f) { return std::isnan(f); }

// Runs f in a child process (no core dump); the signal that ended the child,
// 0 when it exited normally, -1 when fork failed. An access that the
// emulator's guard pages catch kills the process, so it is tried in a child.
template <typename F>
int child_signal(F f) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    f();
    _exit(0);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return WIFSIGNALED(st) ? WTERMSIG(st) : 0;
}


// Runs f in a child process; its raw wait status (-1 when fork failed). For
// checks whose failure ends the process (the alignment sanitizer exits with
// status 1 after its message).
template <typename F>
int child_status(F f) {
  std::fflush(stdout);
  const pid_t pid = fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    rlimit none = {0, 0};
    setrlimit(RLIMIT_CORE, &none);
    f();
    _exit(0);
  }
  int st = 0;
  if (waitpid(pid, &st, 0) != pid) return -1;
  return st;
}


// ---- CUDA graph stand-ins ----------------------------------------------------------
__global__ void graph_axpy_kernel(float* y, const float* x, float a, int n) {
  const int i = blockIdx.x * blockDim.x + threadIdx.x;
  if (i < n) y[i] = a * x[i] + y[i];
}

void graph_checks() {
  const int n = 100;
  float *x = dev<float>(n), *y = dev<float>(n), *z = dev<float>(n);
  std::vector<float> hx(n), h(n);
  for (int i = 0; i < n; ++i) hx[i] = float(i);
  cudaMemcpy(x, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice);
  cudaMemset(y, 0, n * sizeof(float));
  cudaStream_t s = nullptr;
  cudaStreamCreateWithFlags(&s, cudaStreamNonBlocking);
  // y = 0; y += a x (a = 2, then changed on the host after the launch); z = y.
  float a = 2.0f;
  cudaGraph_t g = nullptr;
  cudaError_t b = cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
  cudaStreamCaptureStatus st = cudaStreamCaptureStatusNone;
  cudaStreamIsCapturing(s, &st);
  cudaMemsetAsync(y, 0, n * sizeof(float), s);
  graph_axpy_kernel<<<4, 32, 0, s>>>(y, x, a, n);
  a = 5.0f;  // the recorded launch keeps its own copy of the arguments
  graph_axpy_kernel<<<4, 32, 0, s>>>(y, x, 1.0f, n);
  cudaMemcpyAsync(z, y, n * sizeof(float), cudaMemcpyDeviceToDevice, s);
  cudaError_t e = cudaStreamEndCapture(s, &g);
  cudaMemcpy(h.data(), y, n * sizeof(float), cudaMemcpyDeviceToHost);
  bool none_ran = true;
  for (int i = 0; i < n; ++i) none_ran = none_ran && h[i] == 0.0f;
  check(b == cudaSuccess && e == cudaSuccess && g && st == cudaStreamCaptureStatusActive && none_ran,
        "graphs: a capture records launches, memsets and device copies without running them");
  cudaGraphExec_t ex = nullptr;
  cudaGraphInstantiate(&ex, g, 0);
  cudaGraphDestroy(g);  // the executable graph keeps its own copy
  bool ok = true;
  for (int round = 0; round < 2; ++round) {
    cudaGraphLaunch(ex, s);
    std::string le = last_error();
    cudaStreamSynchronize(s);
    cudaMemcpy(h.data(), z, n * sizeof(float), cudaMemcpyDeviceToHost);
    for (int i = 0; i < n; ++i) ok = ok && le.empty() && h[i] == 3.0f * float(i);
  }
  check(ok, "graphs: a replay runs the recorded work in order with the arguments of capture time, every time");
  cudaGraphExecDestroy(ex);
  // Work on the legacy stream, a host copy, an allocation or a synchronize
  // during a capture fails it.
  const char* what[] = {"a launch on the legacy stream", "cudaMemcpyAsync from the host", "cudaMalloc",
                        "cudaStreamSynchronize"};
  for (int k = 0; k < 4; ++k) {
    cudaStreamBeginCapture(s, cudaStreamCaptureModeGlobal);
    graph_axpy_kernel<<<4, 32, 0, s>>>(y, x, 1.0f, n);
    cudaError_t bad = cudaSuccess;
    void* p = nullptr;
    if (k == 0) {
      graph_axpy_kernel<<<4, 32>>>(y, x, 1.0f, n);
      bad = cudaGetLastError();
    } else if (k == 1) {
      bad = cudaMemcpyAsync(x, hx.data(), n * sizeof(float), cudaMemcpyHostToDevice, s);
    } else if (k == 2) {
      bad = cudaMalloc(&p, 64);
    } else {
      bad = cudaStreamSynchronize(s);
    }
    cudaGetLastError();
    cudaGraph_t g2 = nullptr;
    cudaError_t end = cudaStreamEndCapture(s, &g2);
    cudaGetLastError();
    check(bad != cudaSuccess && end == cudaErrorStreamCaptureInvalidated && g2 == nullptr && p == nullptr,
          (std::string("graphs: ") + what[k] + " during a capture fails it").c_str());
  }
  cudaMemcpy(h.data(), z, n * sizeof(float), cudaMemcpyDeviceToHost);
  ok = true;
  for (int i = 0; i < n; ++i) ok = ok && h[i] == 3.0f * float(i);
  check(ok, "graphs: nothing of a failed capture ran");
  cudaStreamDestroy(s);
  cudaFree(x);
  cudaFree(y);
  cudaFree(z);
}

}  // namespace

int main() {
  // barrier ordering, 3 blocks of 256 threads, 5 rounds
  {
    const int n = 256, blocks = 3, rounds = 5;
    int* d = dev<int>(n * blocks);
    barrier_kernel<<<blocks, n>>>(d, rounds);
    std::string e = last_error();
    std::vector<int> h(n * blocks);
    cudaMemcpy(h.data(), d, h.size() * sizeof(int), cudaMemcpyDeviceToHost);
    bool ok = e.empty();
    for (int b = 0; b < blocks; ++b)
      for (int t = 0; t < n; ++t) {
        int want = 0;
        for (int r = 0; r < rounds; ++r) want += ((t + 1) % n) * 1000 + r + b;
        ok = ok && h[b * n + t] == want;
      }
    check(ok, "__syncthreads orders shared-memory writes and reads across warps", e);
    cudaFree(d);
  }
  // A shared tile overwritten while the other warp still reads it: the
  // barrier schedule (the default) shows it in every block, whichever warp runs
  // first; the lockstep one lets both warps read before either writes.
  {
    const int blocks = 8;
    int* d = dev<int>(64 * blocks);
    const char* had = getenv("GPT_EMU_SCHEDULE");
    const std::string saved = had ? had : "";
    auto run = [&](const char* sched, int guarded, int* wrong_blocks, std::string* err) {
      setenv("GPT_EMU_SCHEDULE", sched, 1);
      overwrite_kernel<<<blocks, 64>>>(d, guarded);
      *err = last_error();
      std::vector<int> h(64 * blocks);
      cudaMemcpy(h.data(), d, h.size() * sizeof(int), cudaMemcpyDeviceToHost);
      *wrong_blocks = 0;
      for (int b = 0; b < blocks; ++b) {
        int wrong = 0;
        for (int t = 0; t < 64; ++t) wrong += h[b * 64 + t] != 1;
        *wrong_blocks += wrong > 0;
      }
    };
    int wrong = 0;
    std::string e;
    run("barrier", 1, &wrong, &e);
    check(e.empty() && wrong == 0, "barrier schedule: a tile overwritten after a barrier is read right by every warp",
          e + " " + std::to_string(wrong) + " blocks wrong");
    run("barrier", 0, &wrong, &e);
    check(e.empty() && wrong == blocks,
          "barrier schedule: a tile overwritten with no barrier after another warp's reads (a collective between) "
          "is read wrong in every block",
          e + " " + std::to_string(wrong) + " of " + std::to_string(blocks) + " blocks wrong");
    run("lockstep", 1, &wrong, &e);
    check(e.empty() && wrong == 0, "lockstep schedule: the same tile with the barrier is read right", e);
    if (had)
      setenv("GPT_EMU_SCHEDULE", saved.c_str(), 1);
    else
      unsetenv("GPT_EMU_SCHEDULE");
    cudaFree(d);
  }
  {
    int* d = dev<int>(3);
    syncthreads_count_kernel<<<1, 300>>>(d);
    std::string e = last_error();
    int h[3];
    cudaMemcpy(h, d, sizeof h, cudaMemcpyDeviceToHost);
    check(e.empty() && h[0] == 100 && h[1] == 1 && h[2] == 1, "__syncthreads_count/_and/_or",
          e + " got " + std::to_string(h[0]) + "," + std::to_string(h[1]) + "," + std::to_string(h[2]));
    cudaFree(d);
  }
  // shuffles
  {
    const int n = 64;
    float* sum = dev<float>(n);
    int *bc = dev<int>(n), *dn = dev<int>(n), *up = dev<int>(n);
    unsigned* bal = dev<unsigned>(n);
    double* ds = dev<double>(n);
    shuffle_kernel<<<1, n>>>(sum, bc, dn, up, bal, ds);
    std::string e = last_error();
    std::vector<float> hs(n);
    std::vector<int> hb(n), hd(n), hu(n);
    std::vector<unsigned> hl(n);
    std::vector<double> hds(n);
    cudaMemcpy(hs.data(), sum, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hb.data(), bc, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hd.data(), dn, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hu.data(), up, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hl.data(), bal, n * 4, cudaMemcpyDeviceToHost);
    cudaMemcpy(hds.data(), ds, n * 8, cudaMemcpyDeviceToHost);
    bool ok_sum = true, ok_b = true, ok_d = true, ok_u = true, ok_l = true;
    unsigned want_ballot = 0;
    for (int l = 0; l < 32; l += 5) want_ballot |= 1u << l;
    for (int t = 0; t < n; ++t) {
      const int w0 = t / 32 * 32, lane = t % 32;
      const float want = (float)(32 * w0 + 31 * 32 / 2);
      ok_sum = ok_sum && hs[t] == want && hds[t] == 0.5 * want;
      ok_b = ok_b && hb[t] == (w0 + 5) * 7;
      const int seg = lane & ~15;
      ok_d = ok_d && hd[t] == (lane + 3 < seg + 16 ? t + 3 : t);
      ok_u = ok_u && hu[t] == (lane >= 2 ? t - 2 : t);
      ok_l = ok_l && hl[t] == want_ballot;
    }
    check(e.empty() && ok_sum, "__shfl_xor_sync butterfly sums (warp_sum, warp_sum_d)", e);
    check(ok_b, "__shfl_sync broadcast from lane 5");
    check(ok_d, "__shfl_down_sync with width 16 keeps out-of-segment lanes");
    check(ok_u, "__shfl_up_sync");
    check(ok_l, "__ballot_sync, and independent half-warp shuffle groups");
  }
  // mma.sync against a plain loop: integers (exact) and random values
  for (int variant = 0; variant < 2; ++variant) {
    std::vector<float> A(256), B(128), C(128), D(128);
    uint32_t s = 12345 + variant;
    auto rnd = [&]() {
      s = s * 1664525u + 1013904223u;
      return (float)((s >> 8) & 0xffff) / 65536.0f - 0.5f;
    };
    for (int i = 0; i < 256; ++i) A[i] = variant == 0 ? (float)((i * 7) % 11 - 5) : rnd() * 4;
    for (int i = 0; i < 128; ++i) B[i] = variant == 0 ? (float)((i * 5) % 9 - 4) : rnd() * 4;  // [n][k]
    for (int i = 0; i < 128; ++i) C[i] = variant == 0 ? (float)(i % 13) : rnd();
    float *dA = dev<float>(256), *dB = dev<float>(128), *dC = dev<float>(128), *dD = dev<float>(128);
    cudaMemcpy(dA, A.data(), 1024, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C.data(), 512, cudaMemcpyHostToDevice);
    mma_kernel<<<1, 32>>>(dD, dA, dB, dC);
    std::string e = last_error();
    cudaMemcpy(D.data(), dD, 512, cudaMemcpyDeviceToHost);
    double maxerr = 0;
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double ref = C[m * 8 + n];
        for (int k = 0; k < 16; ++k)
          ref += (double)__bfloat162float(__float2bfloat16(A[m * 16 + k])) *
                 (double)__bfloat162float(__float2bfloat16(B[n * 16 + k]));
        maxerr = std::fmax(maxerr, std::fabs(ref - D[m * 8 + n]) / (1.0 + std::fabs(ref)));
      }
    check(e.empty() && (variant == 0 ? maxerr == 0 : maxerr < 1e-6),
          variant == 0 ? "mma.sync m16n8k16 (common.cuh fragments) equals a plain loop, integers"
                       : "mma.sync m16n8k16 (common.cuh fragments) matches a plain loop, random bf16",
          e + " max rel err " + std::to_string(maxerr));
  }
  // bf16 rounding: nearest, ties to even; NaN and Inf kept
  {
    const float tie_down = 1.0f + std::ldexp(1.0f, -8);      // halfway 1 and 1+2^-7: even is 1
    const float tie_up = 1.0f + 3 * std::ldexp(1.0f, -8);    // halfway 1+2^-7 and 1+2^-6: even is 1+2^-6
    const float above = 1.0f + std::ldexp(1.0f, -8) + std::ldexp(1.0f, -20);
    bool ok = __bfloat162float(__float2bfloat16_rn(tie_down)) == 1.0f &&
              __bfloat162float(__float2bfloat16_rn(tie_up)) == 1.0f + std::ldexp(1.0f, -6) &&
              __bfloat162float(__float2bfloat16_rn(above)) == 1.0f + std::ldexp(1.0f, -7) &&
              __bfloat162float(__float2bfloat16_rn(-tie_down)) == -1.0f &&
              std::isnan(__bfloat162float(__float2bfloat16_rn(NAN))) &&
              std::isinf(__bfloat162float(__float2bfloat16_rn(INFINITY))) &&
              std::isinf(__bfloat162float(__float2bfloat16_rn(3.4e38f))) &&
              __bfloat162float(__float2bfloat16_rn(3.0e38f)) < 3.4e38f;
    const uint32_t packed = gpt::cuda::pack_bf16(1.0f, -2.0f);
    ok = ok && packed == 0xc0003f80u;  // lo in the low half
    check(ok, "bf16 conversion rounds to nearest even; pack_bf16 puts lo in the low half");
  }
  // poisoned device memory and shared memory
  {
    float* d = dev<float>(64);
    smem_kernel<<<1, 32, 32 * sizeof(float)>>>(d);
    std::string e = last_error();
    std::vector<float> h(64);
    cudaMemcpy(h.data(), d, 256, cudaMemcpyDeviceToHost);
    bool ok = e.empty();
    for (int t = 0; t < 32; ++t) ok = ok && is_nan_bits(h[t]) && h[32 + t] == 2.0f * ((t + 1) % 32);
    check(ok, "dynamic shared memory starts poisoned (NaN) and works across a barrier", e);
    float* fresh = dev<float>(4);
    float hf[4];
    cudaMemcpy(hf, fresh, 16, cudaMemcpyDeviceToHost);
    check(std::isnan(hf[0]) && std::isnan(hf[3]), "cudaMalloc memory reads as NaN until written");
    cudaFree(fresh);
    cudaFree(d);
  }
  // cp.async: deferred until the wait, groups, sizes, a pipeline and its mistakes
  {
    const int n = 64;
    std::vector<uint4> src(n);
    uint32_t r = 777;
    auto next = [&]() { return r = r * 1664525u + 1013904223u; };
    for (auto& v : src) v = make_uint4(next(), next(), next(), next());
    uint4 *dsrc = dev<uint4>(n), *dbefore = dev<uint4>(n), *dafter = dev<uint4>(n);
    cudaMemcpy(dsrc, src.data(), n * 16, cudaMemcpyHostToDevice);
    for (int wait_all = 0; wait_all < 2; ++wait_all) {
      cp_async_basic_kernel<<<1, n, n * 16>>>(dsrc, dbefore, dafter, wait_all);
      std::string e = last_error();
      std::vector<uint4> before(n), after(n);
      cudaMemcpy(before.data(), dbefore, n * 16, cudaMemcpyDeviceToHost);
      cudaMemcpy(after.data(), dafter, n * 16, cudaMemcpyDeviceToHost);
      bool ok_after = e.empty(), ok_before = e.empty();
      for (int t = 0; t < n; ++t) {
        ok_after = ok_after && std::memcmp(&after[t], &src[t], 16) == 0;
        // before the wait: neither the new data nor the old value, but poison
        const uint4 p = before[t];
        ok_before = ok_before && p.x == ~0u && p.y == ~0u && p.z == ~0u && p.w == ~0u;
      }
      check(ok_after, wait_all ? "cp.async then wait_all: shared memory holds the copied data"
                               : "cp.async, commit, wait_group 0: shared memory holds the copied data",
            e);
      check(ok_before, "cp.async: before the wait its destination reads as poison (the copy has not landed)", e);
    }
    unsigned* dseen = dev<unsigned>(7);
    cp_async_groups_kernel<<<1, 1>>>(dsrc, dseen);
    std::string e = last_error();
    unsigned seen[7];
    cudaMemcpy(seen, dseen, sizeof seen, cudaMemcpyDeviceToHost);
    // Groups 0-3 committed, copy 4 open: wait_group 5 and 3 leave 0 and 1
    // landed groups, 2 -> groups 0-1, 1 -> 0-2, 0 -> 0-3, wait_all -> all five.
    const unsigned want[7] = {0x0u, 0x0u, 0x1u, 0x3u, 0x7u, 0xfu, 0x1fu};
    std::string got;
    bool ok = e.empty();
    for (int k = 0; k < 7; ++k) {
      ok = ok && seen[k] == want[k];
      got += " " + std::to_string(seen[k]);
    }
    check(ok, "cp.async.wait_group N lands all but the newest N committed groups; wait_all lands the open one too",
          e + " landed masks:" + got);
    cudaFree(dseen);
    uint4 *dout = dev<uint4>(32), *dzf = dev<uint4>(32);
    cp_async_sizes_kernel<<<1, 32>>>(dsrc, dout, dzf);
    e = last_error();
    std::vector<uint4> out(32), zf(32);
    cudaMemcpy(out.data(), dout, 32 * 16, cudaMemcpyDeviceToHost);
    cudaMemcpy(zf.data(), dzf, 32 * 16, cudaMemcpyDeviceToHost);
    bool ok_sizes = e.empty(), ok_zf = e.empty();
    for (int t = 0; t < 32; ++t) {
      const unsigned char* o = reinterpret_cast<const unsigned char*>(&out[t]);
      const unsigned char* z = reinterpret_cast<const unsigned char*>(&zf[t]);
      const unsigned char* sb = reinterpret_cast<const unsigned char*>(&src[t]);
      for (int b = 0; b < 16; ++b) {
        ok_sizes = ok_sizes && o[b] == (b < 12 ? sb[b] : 0xff);
        ok_zf = ok_zf && z[b] == (b < t % 17 ? sb[b] : 0);
      }
    }
    check(ok_sizes, "cp.async of 8 and 4 bytes copies exactly those bytes", e);
    check(ok_zf, "cp.async 16 bytes with a source size of 0..16 zero-fills the rest", e);
    cudaFree(dout);
    cudaFree(dzf);
    cudaFree(dsrc);
    cudaFree(dbefore);
    cudaFree(dafter);

    const int tiles = 5;
    std::vector<float> x((size_t)tiles * 32 * 64);
    for (auto& v : x) v = (float)(next() % 1000) / 8.0f;
    std::vector<double> ref(64, 0.0);
    for (size_t i = 0; i < x.size(); ++i) ref[i % 64] += x[i];
    float *dx = dev<float>(x.size()), *dsum = dev<float>(64);
    cudaMemcpy(dx, x.data(), x.size() * 4, cudaMemcpyHostToDevice);
    const size_t smem = (size_t)kStages * 32 * 64 * 4;
    const char* what[5] = {"a 3-stage cp.async pipeline (wait_group 1, two barriers per tile) gives the column sums",
                           "mutation: the pipeline without its cp.async.wait_group gives wrong sums",
                           "mutation: the pipeline without the barrier after the wait gives wrong sums",
                           "mutation: the pipeline waiting with wait_group 3 instead of 2 gives wrong sums",
                           "mutation: the pipeline without the barrier before a stage is refilled gives wrong sums"};
    for (int mode = 0; mode < 5; ++mode) {
      cudaMemset(dsum, 0, 64 * 4);
      cp_async_pipeline_kernel<<<1, 128, smem>>>(dx, tiles, dsum, mode);
      e = last_error();
      std::vector<float> h(64);
      cudaMemcpy(h.data(), dsum, 64 * 4, cudaMemcpyDeviceToHost);
      int right = 0;
      for (int c = 0; c < 64; ++c) right += h[c] == (float)ref[c];  // exact: eighths, sums < 2^24 / 8
      check(e.empty() && (mode == 0 ? right == 64 : right < 64), what[mode],
            e + " " + std::to_string(right) + " of 64 columns right");
    }
    cudaFree(dx);
    cudaFree(dsum);
  }
  // ldmatrix x1/x2/x4 and .trans against the PTX ISA's fragment layout
  {
    std::vector<uint16_t> vals(40 * 24);
    uint32_t r = 4242;
    auto next = [&]() { return r = r * 1664525u + 1013904223u; };
    for (auto& v : vals) v = (uint16_t)(next() >> 16);
    // 32 distinct rows of s in a scrambled order, each at column 0, 8 or 16.
    std::vector<int> rows(40), offs(32);
    for (int i = 0; i < 40; ++i) rows[i] = i;
    for (int i = 39; i > 0; --i) std::swap(rows[i], rows[next() % (uint32_t)(i + 1)]);
    for (int L = 0; L < 32; ++L) offs[L] = rows[L] * 24 + 8 * (int)(next() % 3);
    uint16_t* dvals = dev<uint16_t>(vals.size());
    int* doffs = dev<int>(32);
    uint32_t* dout = dev<uint32_t>(6 * 32 * 4);
    cudaMemcpy(dvals, vals.data(), vals.size() * 2, cudaMemcpyHostToDevice);
    cudaMemcpy(doffs, offs.data(), 32 * 4, cudaMemcpyHostToDevice);
    ldmatrix_kernel<<<1, 32>>>(dvals, doffs, dout);
    std::string e = last_error();
    std::vector<uint32_t> out(6 * 32 * 4);
    cudaMemcpy(out.data(), dout, out.size() * 4, cudaMemcpyDeviceToHost);
    // The PTX ISA's figure for one 8x8 b16 matrix: row r is held by lanes
    // 4r..4r+3, two consecutive elements per lane, the lower column in the
    // low half; .trans delivers the transposed matrix in that layout, so
    // stored element (r, c) goes where element (c, r) would. Matrix i's row r
    // is read from the address of lane 8i + r.
    const char* names[6] = {"ldmatrix .x1 delivers the PTX fragment layout (lanes 8-31's addresses ignored)",
                            "ldmatrix .x2 delivers the PTX fragment layout (lanes 16-31's addresses ignored)",
                            "ldmatrix .x4 delivers the PTX fragment layout from 32 scattered rows",
                            "ldmatrix .x1.trans delivers the transposed fragment layout",
                            "ldmatrix .x2.trans delivers the transposed fragment layout",
                            "ldmatrix .x4.trans delivers the transposed fragment layout"};
    for (int form = 0; form < 6; ++form) {
      const int num = form % 3 == 0 ? 1 : form % 3 == 1 ? 2 : 4;
      const bool trans = form >= 3;
      std::vector<uint32_t> want(32 * 4, 0xdeadbeefu);
      for (int i = 0; i < num; ++i) {
        for (int L = 0; L < 32; ++L) want[L * 4 + i] = 0;
        for (int rr = 0; rr < 8; ++rr)
          for (int c = 0; c < 8; ++c) {
            const uint32_t v = vals[(size_t)offs[8 * i + rr] + c];
            const int lane = trans ? 4 * c + rr / 2 : 4 * rr + c / 2;
            const int half = trans ? rr % 2 : c % 2;
            want[lane * 4 + i] |= v << (16 * half);
          }
      }
      int bad = 0;
      for (int k = 0; k < 32 * 4; ++k) bad += out[form * 128 + k] != want[k];
      check(e.empty() && bad == 0, names[form], e + " " + std::to_string(bad) + " of 128 registers wrong");
    }
    cudaFree(dvals);
    cudaFree(doffs);
    cudaFree(dout);
  }
  // ldmatrix fragments feed mma.sync: equals a plain loop
  for (int b_is_kn = 0; b_is_kn < 2; ++b_is_kn) {
    std::vector<float> A(256), B(128), C(128), D(128);
    uint32_t r = 99 + b_is_kn;
    auto rnd = [&]() {
      r = r * 1664525u + 1013904223u;
      return (float)((int)((r >> 16) % 17) - 8);  // small integers: every product and sum exact
    };
    for (auto& v : A) v = rnd();
    for (auto& v : B) v = rnd();
    for (auto& v : C) v = rnd();
    float *dA = dev<float>(256), *dB = dev<float>(128), *dC = dev<float>(128), *dD = dev<float>(128);
    cudaMemcpy(dA, A.data(), 1024, cudaMemcpyHostToDevice);
    cudaMemcpy(dB, B.data(), 512, cudaMemcpyHostToDevice);
    cudaMemcpy(dC, C.data(), 512, cudaMemcpyHostToDevice);
    ldmatrix_mma_kernel<<<1, 32>>>(dD, dA, dB, dC, b_is_kn);
    std::string e = last_error();
    cudaMemcpy(D.data(), dD, 512, cudaMemcpyDeviceToHost);
    int bad = 0;
    for (int m = 0; m < 16; ++m)
      for (int n = 0; n < 8; ++n) {
        double ref = C[m * 8 + n];
        for (int k = 0; k < 16; ++k) ref += (double)A[m * 16 + k] * (b_is_kn ? B[k * 8 + n] : B[n * 16 + k]);
        bad += D[m * 8 + n] != (float)ref;
      }
    check(e.empty() && bad == 0,
          b_is_kn ? "ldmatrix x4 (A) and x2.trans (B stored [k][n]) fragments feed mma.sync: equals a plain loop"
                  : "ldmatrix x4 (A) and x2 (B stored [n][k]) fragments feed mma.sync: equals a plain loop",
          e + " " + std::to_string(bad) + " of 128 wrong");
    cudaFree(dA);
    cudaFree(dB);
    cudaFree(dC);
    cudaFree(dD);
  }
  // cp.async and ldmatrix misuse: launch errors naming the fault
  {
    uint4* src = dev<uint4>(64);
    uint4* gdst = dev<uint4>(64);
    cudaMemset(src, 0, 64 * 16);
    const char* want[5] = {"the source is not 16-byte aligned", "the destination is not 16-byte aligned",
                           "the destination is not 4-byte aligned", "not 16 bytes inside shared memory",
                           "source size of 17"};
    const char* what[5] = {"cp.async 16 bytes from a source that is not 16-byte aligned fails the launch",
                           "cp.async 16 bytes to a destination that is not 16-byte aligned fails the launch",
                           "cp.async 4 bytes to a 2-byte aligned destination fails the launch",
                           "cp.async to global memory fails the launch",
                           "cp.async with a source size above 16 fails the launch"};
    for (int mode = 0; mode < 5; ++mode) {
      cudaError_t code;
      cp_async_fault_kernel<<<1, 64>>>(src, mode, gdst);
      std::string e = last_error(&code);
      check(code == cudaErrorLaunchFailure && e.find(want[mode]) != std::string::npos &&
                e.find("cp_async_fault_kernel") != std::string::npos &&
                (mode > 1 || e.find("thread (3,0,0)") != std::string::npos),
            what[mode], e);
      if (mode == 0) std::printf("     (%s)\n", e.c_str());
    }
    uint16_t* g = dev<uint16_t>(64);
    const char* lwant[4] = {"not 16-byte aligned", "different ldmatrix forms", "not 16 bytes inside shared memory",
                            "partial warp"};
    const char* lwhat[4] = {"ldmatrix with a row address that is not 16-byte aligned fails the launch",
                            "lanes of a warp in different ldmatrix forms fail the launch",
                            "ldmatrix with a row address in global memory fails the launch",
                            "ldmatrix in a partial warp fails the launch"};
    for (int mode = 0; mode < 4; ++mode) {
      cudaError_t code;
      ldmatrix_fault_kernel<<<1, mode == 3 ? 16 : 64>>>(mode, g);
      std::string e = last_error(&code);
      check(code == cudaErrorLaunchFailure && e.find(lwant[mode]) != std::string::npos &&
                (mode != 0 || e.find("lane 5") != std::string::npos),
            lwhat[mode], e);
      if (mode == 0) std::printf("     (%s)\n", e.c_str());
    }
    cudaFree(g);
    cudaFree(src);
    cudaFree(gdst);
  }
#ifdef GPT_EMU_ALIGNMENT_CHECK
  // Plain 16-byte vector accesses that are not 16-byte aligned end the
  // process with the alignment sanitizer's message (tried in children).
  {
    unsigned char* g = dev<unsigned char>(64);
    uint4* out = dev<uint4>(1);
    cudaMemset(g, 0, 64);
    for (int shared = 0; shared < 2; ++shared) {
      vec_load_kernel<<<1, 1>>>(g, 16, shared, out);
      std::string e = last_error();
      check(e.empty(), shared ? "a 16-byte aligned uint4 load from shared memory works"
                              : "a 16-byte aligned uint4 load from global memory works",
            e);
      const int st = child_status([&] {
        vec_load_kernel<<<1, 1>>>(g, 8, shared, out);
        cudaDeviceSynchronize();
      });
      check(st != -1 && st != 0, shared ? "a uint4 load from shared memory at 8 bytes past 16-byte alignment faults"
                                        : "a uint4 load from global memory at 8 bytes past 16-byte alignment faults",
            "child wait status " + std::to_string(st));
    }
    cudaFree(g);
    cudaFree(out);
  }
#endif
  // misuse -> launch errors naming the kernel, not hangs or aborts
  {
    float* d = dev<float>(1024);
    cudaError_t code;
    deadlock_kernel<<<2, 64>>>(d);
    std::string e = last_error(&code);
    check(code == cudaErrorLaunchFailure && e.find("deadlock_kernel") != std::string::npos &&
              e.find("deadlock") != std::string::npos,
          "a barrier some threads never reach is reported as a deadlock", e);
    std::printf("     (%s)\n", e.c_str());
    divergent_barrier_kernel<<<1, 128>>>(reinterpret_cast<int*>(d));
    e = last_error(&code);
    check(code == cudaErrorLaunchFailure && e.find("different __syncthreads") != std::string::npos,
          "threads waiting at different __syncthreads() calls are an error", e);
    exited_lane_kernel<<<1, 32>>>(d);
    e = last_error(&code);
    check(code == cudaErrorLaunchFailure && e.find("exited") != std::string::npos &&
              e.find("exited_lane_kernel") != std::string::npos,
          "a shuffle naming an exited lane is an error", e);
    mask_mismatch_kernel<<<1, 32>>>(d);
    e = last_error(&code);
    check(code == cudaErrorLaunchFailure && e.find("mask mismatch") != std::string::npos,
          "lanes of one shuffle with different masks are an error", e);
    shuffle_kernel<<<1, 16>>>(d, nullptr, nullptr, nullptr, nullptr, nullptr);
    e = last_error(&code);
    check(code == cudaErrorLaunchFailure && e.find("do not exist") != std::string::npos,
          "a full-warp shuffle in a 16-thread block is an error", e);
    noop_kernel<<<1, 1025>>>(nullptr);
    e = last_error(&code);
    check(code == cudaErrorInvalidConfiguration && e.find("noop_kernel") != std::string::npos,
          "a block of 1025 threads is an invalid configuration", e);
    noop_kernel<<<dim3(1, 0, 1), 32>>>(nullptr);
    e = last_error(&code);
    check(code == cudaErrorInvalidConfiguration, "a grid with a zero dimension is an invalid configuration", e);
    noop_kernel<<<dim3(1, 70000, 1), 32>>>(nullptr);
    e = last_error(&code);
    check(code == cudaErrorInvalidConfiguration, "gridDim.y > 65535 is an invalid configuration", e);
    smem_kernel<<<1, 32, 64 * 1024>>>(d);
    e = last_error(&code);
    check(code == cudaErrorInvalidValue && e.find("cudaFuncSetAttribute") != std::string::npos,
          "64 KiB of dynamic shared memory without the opt-in is an error", e);
    check(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 64 * 1024) == cudaSuccess,
          "cudaFuncSetAttribute raises the limit to 64 KiB");
    smem_kernel<<<1, 32, 64 * 1024>>>(d);
    e = last_error(&code);
    check(code == cudaSuccess, "64 KiB of dynamic shared memory after the opt-in runs", e);
    smem_kernel<<<1, 32, 228 * 1024>>>(d);
    e = last_error(&code);
    check(code == cudaErrorInvalidValue, "228 KiB of dynamic shared memory (above 227 KiB) is an error", e);
    check(cudaFuncSetAttribute(smem_kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, 228 * 1024) ==
              cudaErrorInvalidValue,
          "cudaFuncSetAttribute above 227 KiB is refused");
    cudaGetLastError();
    int* ok_out = dev<int>(4);
    noop_kernel<<<4, 32>>>(ok_out);
    e = last_error(&code);
    int h[4];
    cudaMemcpy(h, ok_out, sizeof h, cudaMemcpyDeviceToHost);
    check(code == cudaSuccess && h[0] == 1 && h[3] == 1, "a launch after failed ones runs normally", e);
    check(cudaMemcpy(h, ok_out + 2, 4 * sizeof(int), cudaMemcpyDeviceToHost) == cudaErrorInvalidValue,
          "cudaMemcpy past the end of an allocation is refused");
    cudaGetLastError();
    cudaFree(ok_out);
    cudaFree(d);
  }
  // Shared memory ends at an inaccessible page: the last element works, one
  // past it faults (in a child process), for dynamic and static arrays alike.
  {
    float* d = dev<float>(1);
    float h = 0;
    smem_index_kernel<<<1, 1, 1024>>>(d, 255);
    std::string e = last_error();
    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
    check(e.empty() && h == 256.0f, "the last float of 1 KiB of dynamic shared memory is usable", e);
    int sig = child_signal([&] {
      smem_index_kernel<<<1, 1, 1024>>>(d, 256);
      cudaDeviceSynchronize();
    });
    check(sig == SIGSEGV || sig == SIGBUS, "reading past the end of dynamic shared memory faults at the access",
          "child ended with signal " + std::to_string(sig));
    sig = child_signal([&] {
      smem_index_kernel<<<1, 1, 0>>>(d, 0);
      cudaDeviceSynchronize();
    });
    check(sig == SIGSEGV || sig == SIGBUS, "using dynamic shared memory that the launch did not ask for faults",
          "child ended with signal " + std::to_string(sig));
    static_smem_index_kernel<<<2, 1>>>(d, 63);
    e = last_error();
    cudaMemcpy(&h, d, sizeof h, cudaMemcpyDeviceToHost);
    check(e.empty() && h == 64.0f, "the last element of a static __shared__ float[64] is usable", e);
    sig = child_signal([&] {
      static_smem_index_kernel<<<1, 1>>>(d, 64);
      cudaDeviceSynchronize();
    });
    check(sig == SIGSEGV || sig == SIGBUS, "indexing a static __shared__ array past its end faults at the access",
          "child ended with signal " + std::to_string(sig));
    cudaFree(d);
  }
  {
    cudaDeviceProp p;
    cudaGetDeviceProperties(&p, 0);
    check(std::strstr(p.name, "emulator") != nullptr && std::strstr(p.name, "CPU") != nullptr,
          "the device names itself an emulator on the CPU", p.name);
  }
  graph_checks();
  std::printf("%d passed, %d failed\n", g_passed, g_failed);
  return g_failed == 0 ? 0 : 1;
}
