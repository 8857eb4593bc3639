// SIMT emulator runtime (GPT_ENGINE_CUDA_EMU builds only; docs/dev/CUDA-EMU.md).
//
// A launch runs its blocks one after another on the calling thread. A
// block's threads are fibers with their own stacks, switched cooperatively:
// a fiber runs until it reaches __syncthreads(), a warp collective (shuffle,
// vote, __syncwarp, mma.sync) or its end. The last lane to reach a warp
// collective computes it for the whole warp; the barrier opens when every
// live thread of the block waits at it. When nothing can run and threads
// still wait, the block is deadlocked: the launch fails with a message
// naming the kernel, the block and where the threads wait, and the fibers
// are abandoned (no hang, no abort). By default each warp runs alone to its
// next barrier, the warps one after another in a shuffled order (fixed seed,
// GPT_EMU_SEED picks another; GPT_EMU_SCHEDULE=lockstep interleaves them at
// every collective instead), so a missing barrier shows as poisoned or
// overwritten data. ldmatrix is a warp collective as well; cp.async
// copies are kept per thread and land in shared memory only at the
// cp.async.wait_group / wait_all that completes their group.
//
// Device memory is host memory filled with 0xFF bytes (a NaN in every float
// lane) on allocation; dynamic and static shared memory are filled the same
// way at the start of every block, and each ends at an inaccessible page.
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdarg>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "cuda_bf16.h"
#include "cuda_runtime.h"

#if !defined(__x86_64__)
#include <ucontext.h>
#endif

namespace gpt_emu {

thread_local BlockInfo t_block;
thread_local const uint3* t_thread_idx = nullptr;

namespace {

// ---- errors ----------------------------------------------------------------------
thread_local cudaError_t t_last = cudaSuccess;
thread_local cudaError_t t_detail_code = cudaSuccess;
thread_local std::string t_detail;

cudaError_t set_error(cudaError_t e, const std::string& detail) {
  t_last = e;
  t_detail_code = e;
  t_detail = "SIMT emulator: " + detail;
  return e;
}

std::string fmt(const char* f, ...) {
  char buf[1024];
  va_list ap;
  va_start(ap, f);
  vsnprintf(buf, sizeof buf, f, ap);
  va_end(ap);
  return buf;
}

size_t env_size(const char* name, size_t dflt) {
  const char* v = getenv(name);
  if (!v || !*v) return dflt;
  char* end = nullptr;
  unsigned long long x = strtoull(v, &end, 10);
  return (end && *end == 0 && x > 0) ? (size_t)x : dflt;
}

// ---- context switch --------------------------------------------------------------
#if defined(__x86_64__)
extern "C" void gpt_emu_switch(void** save_sp, void* new_sp);
// Saves the callee-saved registers on the current stack, stores the stack
// pointer in *save_sp, loads new_sp and restores that stack's registers.
asm(R"(
  .text
  .p2align 4
  .globl gpt_emu_switch
  .hidden gpt_emu_switch
  .type gpt_emu_switch,@function
gpt_emu_switch:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size gpt_emu_switch, .-gpt_emu_switch
)");
#endif

enum FState { Runnable, AtBarrier, AtWarp, Exited, Aborted };
enum WarpOp { OpShfl, OpVote, OpSyncwarp, OpMma, OpLdmatrix };
const char* op_name(int op) {
  switch (op) {
    case OpShfl: return "a __shfl*_sync";
    case OpVote: return "a vote (__ballot/__any/__all_sync)";
    case OpSyncwarp: return "__syncwarp";
    case OpLdmatrix: return "ldmatrix";
    default: return "mma.sync";
  }
}

// One lane's part of a warp collective; lives on the waiting fiber's stack.
struct WarpReq {
  int op;
  unsigned mask;
  int kind, arg, width;
  uint64_t in, out;
  float* d;
  const uint32_t* a;
  const uint32_t* b;
  const void* addr;  // ldmatrix: this lane's row address
  uint32_t* regs;    // ldmatrix: this lane's destination registers
};

// One cp.async not yet landed: the source bytes are read at issue (the
// destination is poisoned then), written to shared memory at the wait that
// completes its group.
struct AsyncCopy {
  unsigned char* dst;
  int bytes;
  unsigned char data[16];
};

struct Fiber {
  void* sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t uc;
#endif
  uint3 tid;
  int warp = 0, lane = 0;
  FState state = Runnable;
  WarpReq* req = nullptr;
  const char* bar_file = nullptr;
  int bar_line = 0, bar_pred = 0, bar_result = 0;
  // cp.async: pending copies, oldest first; `groups` holds the sizes of the
  // committed groups (oldest first), the copies after them form the open group.
  std::vector<AsyncCopy> copies;
  std::vector<size_t> groups;
};

struct Group {
  unsigned mask, arrived;
  int op;
};
struct Warp {
  unsigned present = 0, exited = 0;
  std::vector<Group> groups;
};

struct Exec {
  std::vector<Fiber> fibers;
  std::vector<Warp> warps;
  std::vector<int> order;
  void* sched_sp = nullptr;
#if !defined(__x86_64__)
  ucontext_t sched_uc;
#endif
  Fiber* cur = nullptr;
  bool failed = false;
  std::string error;
  const char* kernel = "";
  unsigned char* smem = nullptr;
  size_t smem_dynamic = 0, smem_limit = 0, smem_static = 0;
  std::vector<void*> statics;  // static __shared__ arrays already poisoned in this block
  std::vector<std::pair<unsigned char*, size_t>> static_ranges;  // and their homes
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  int bar_total = 0;  // threads released by the last barrier
  // fiber stacks
  char* stacks = nullptr;
  size_t stack_stride = 0, stack_count = 0;
};
thread_local Exec* t_exec = nullptr;

// GPT_EMU_SEED: a different fixed warp order (default 0), to shake out
// missing barriers between warps.
uint64_t order_seed() {
  static uint64_t s = env_size("GPT_EMU_SEED", 0);
  return s;
}

// GPT_EMU_SCHEDULE, read at every launch (the self-test switches it):
//   barrier (default): between two barriers the warps run one at a time,
//     each alone to its next __syncthreads() (or its end), its lanes meeting
//     only one another at warp collectives, in an order shuffled afresh for
//     every barrier interval. A warp's writes in an interval thus land before
//     a later warp's reads in it, and its reads come before a later warp's
//     writes: a missing barrier on either side of a shared tile shows.
//   lockstep: every warp runs to its next warp collective or barrier in turn
//     (one shuffled order per block), so warps advance together.
enum Schedule { SchedBarrier, SchedLockstep };
Schedule schedule() {
  const char* v = getenv("GPT_EMU_SCHEDULE");
  if (!v || !*v || std::strcmp(v, "barrier") == 0) return SchedBarrier;
  if (std::strcmp(v, "lockstep") == 0) return SchedLockstep;
  static bool warned = false;
  if (!warned) fprintf(stderr, "gpt-emu: GPT_EMU_SCHEDULE=%s is not barrier or lockstep; using barrier\n", v);
  warned = true;
  return SchedBarrier;
}

size_t stack_bytes() {
  static size_t kb = env_size("GPT_EMU_STACK_KB", 256);
  return kb * 1024;
}

void ensure_stacks(Exec& ex, size_t n) {
  if (ex.stack_count >= n) return;
  if (ex.stacks) munmap(ex.stacks, ex.stack_stride * ex.stack_count);
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  ex.stack_stride = stack_bytes() + page;  // one guard page below each stack
  void* p = mmap(nullptr, ex.stack_stride * n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE,
                 -1, 0);
  if (p == MAP_FAILED) {
    ex.stacks = nullptr;
    ex.stack_count = 0;
    return;
  }
  ex.stacks = static_cast<char*>(p);
  ex.stack_count = n;
  for (size_t i = 0; i < n; ++i) mprotect(ex.stacks + i * ex.stack_stride, page, PROT_NONE);
}

// Shared memory ends at an inaccessible page (always: it costs one mapping
// per thread and per static array, made once), so a kernel that indexes past
// the end of its dynamic buffer or of a static __shared__ array faults at the
// access instead of reading or writing other host memory. Returns the start of
// `bytes` placed in the mapping [base, base + len) so that they end within
// `align` bytes of its last page (made PROT_NONE by map_guarded).
unsigned char* place_before_guard(void* base, size_t len, size_t bytes, size_t align) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  unsigned char* guard = static_cast<unsigned char*>(base) + len - page;
  return reinterpret_cast<unsigned char*>((reinterpret_cast<uintptr_t>(guard) - bytes) & ~(uintptr_t)(align - 1));
}

// A fresh guarded mapping able to hold `bytes` aligned to `align`, or nullptr.
unsigned char* map_guarded(size_t bytes, size_t align, void** base, size_t* len) {
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  *len = (bytes + align + page - 1) / page * page + page;
  void* p = mmap(nullptr, *len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return nullptr;
  *base = p;
  mprotect(static_cast<char*>(p) + *len - page, page, PROT_NONE);
  return place_before_guard(p, *len, bytes, align);
}

void to_scheduler(Exec& ex, Fiber* f) {
#if defined(__x86_64__)
  gpt_emu_switch(&f->sp, ex.sched_sp);
#else
  swapcontext(&f->uc, &ex.sched_uc);
#endif
}

void resume(Exec& ex, Fiber* f) {
  ex.cur = f;
  t_thread_idx = &f->tid;
#if defined(__x86_64__)
  gpt_emu_switch(&ex.sched_sp, f->sp);
#else
  swapcontext(&ex.sched_uc, &f->uc);
#endif
}

[[noreturn]] void fail(const std::string& msg) {
  Exec& ex = *t_exec;
  Fiber* f = ex.cur;
  if (!ex.failed) {
    ex.failed = true;
    ex.error = msg;
  }
  f->state = Aborted;
  to_scheduler(ex, f);
  __builtin_unreachable();  // an aborted fiber is never resumed
}

std::string thread_name(const Fiber& f) {
  return fmt("thread (%u,%u,%u) (warp %d lane %d)", f.tid.x, f.tid.y, f.tid.z, f.warp, f.lane);
}
std::string block_name() {
  const uint3 b = t_block.bidx;
  return fmt("block (%u,%u,%u)", b.x, b.y, b.z);
}
std::string lanes_text(unsigned m) {
  std::string s;
  for (int i = 0; i < 32;) {
    if (!(m >> i & 1u)) {
      ++i;
      continue;
    }
    int j = i;
    while (j + 1 < 32 && (m >> (j + 1) & 1u)) ++j;
    if (!s.empty()) s += ",";
    s += i == j ? std::to_string(i) : std::to_string(i) + "-" + std::to_string(j);
    i = j + 1;
  }
  return s.empty() ? "none" : s;
}

void fiber_main() {
  Exec& ex = *t_exec;
  ex.body(ex.ctx);
  Fiber* f = ex.cur;
  Warp& w = ex.warps[f->warp];
  const unsigned bit = 1u << f->lane;
  w.exited |= bit;
  for (const Group& g : w.groups)
    if (g.mask & bit)
      fail(fmt("%s in %s exited while lanes %s of its warp wait for it in %s (mask 0x%08x)", thread_name(*f).c_str(),
               block_name().c_str(), lanes_text(g.arrived).c_str(), op_name(g.op), g.mask));
  f->state = Exited;
  to_scheduler(ex, f);
  __builtin_unreachable();
}

#if defined(__x86_64__)
extern "C" void gpt_emu_fiber_entry() {
  fiber_main();
}
#endif

void init_fiber(Exec& ex, Fiber& f, size_t i) {
  char* base = ex.stacks + i * ex.stack_stride;
  char* top = base + ex.stack_stride;
#if defined(__x86_64__)
  uintptr_t* sp = reinterpret_cast<uintptr_t*>(reinterpret_cast<uintptr_t>(top) & ~uintptr_t(15));
  *--sp = 0;  // fake return address: fiber_main never returns
  *--sp = reinterpret_cast<uintptr_t>(&gpt_emu_fiber_entry);
  for (int r = 0; r < 6; ++r) *--sp = 0;  // rbp rbx r12-r15
  f.sp = sp;
#else
  getcontext(&f.uc);
  const size_t page = (size_t)sysconf(_SC_PAGESIZE);
  f.uc.uc_stack.ss_sp = base + page;
  f.uc.uc_stack.ss_size = ex.stack_stride - page;
  f.uc.uc_link = nullptr;
  makecontext(&f.uc, fiber_main, 0);
#endif
}

// ---- warp collectives ------------------------------------------------------------
void complete_mma(Exec& ex, int warp) {
  // Fragment layout of mma.m16n8k16 with .bf16 inputs and .f32 accumulators,
  // from the PTX ISA ("Matrix Fragments for mma.m16n8k16 with floating point
  // type"): groupID = lane >> 2, tig = lane % 4; each 32-bit register holds
  // two consecutive elements, the lower-numbered one in the low 16 bits.
  //   A a0..a7: row = groupID for i in {0,1,4,5}, else groupID + 8;
  //             col = tig*2 + (i & 1), + 8 when i >= 4.
  //   B b0..b3: row (k) = tig*2 + (i & 1), + 8 when i >= 2; col (n) = groupID.
  //   C c0..c3: row = groupID for i < 2, else groupID + 8; col = tig*2 + (i & 1).
  float A[16][16], B[16][8], C[16][8];
  int seenA[16][16] = {}, seenB[16][8] = {}, seenC[16][8] = {};
  Fiber* lanes = &ex.fibers[(size_t)warp * 32];
  for (int L = 0; L < 32; ++L) {
    const WarpReq& r = *lanes[L].req;
    const int g = L >> 2, t = L & 3;
    for (int i = 0; i < 8; ++i) {
      const uint16_t bits = static_cast<uint16_t>(r.a[i >> 1] >> (16 * (i & 1)));
      const int row = (i < 2 || (i >= 4 && i < 6)) ? g : g + 8;
      const int col = t * 2 + (i & 1) + (i >= 4 ? 8 : 0);
      A[row][col] = bf16_bits_to_f32(bits);
      ++seenA[row][col];
    }
    for (int i = 0; i < 4; ++i) {
      const uint16_t bits = static_cast<uint16_t>(r.b[i >> 1] >> (16 * (i & 1)));
      const int row = t * 2 + (i & 1) + (i >= 2 ? 8 : 0);
      B[row][g] = bf16_bits_to_f32(bits);
      ++seenB[row][g];
    }
    for (int i = 0; i < 4; ++i) {
      const int row = i < 2 ? g : g + 8, col = t * 2 + (i & 1);
      C[row][col] = r.d[i];
      ++seenC[row][col];
    }
  }
  for (int i = 0; i < 16; ++i)
    for (int j = 0; j < 16; ++j)
      if (seenA[i][j] != 1 || (j < 8 && (seenB[i][j] != 1 || seenC[i][j] != 1))) fail("internal: mma layout table");
  // Products of bf16 values are exact in double; the sum is rounded once.
  float D[16][8];
  for (int m = 0; m < 16; ++m)
    for (int n = 0; n < 8; ++n) {
      double s = C[m][n];
      for (int k = 0; k < 16; ++k) s += (double)A[m][k] * (double)B[k][n];
      D[m][n] = (float)s;
    }
  for (int L = 0; L < 32; ++L) {
    const int g = L >> 2, t = L & 3;
    for (int i = 0; i < 4; ++i) lanes[L].req->d[i] = D[i < 2 ? g : g + 8][t * 2 + (i & 1)];
  }
}

// True when [p, p + n) lies inside this block's dynamic shared memory or one
// static __shared__ array.
bool in_shared(const Exec& ex, const void* p, size_t n) {
  const unsigned char* q = static_cast<const unsigned char*>(p);
  if (q >= ex.smem && q + n <= ex.smem + ex.smem_dynamic) return true;
  for (const auto& r : ex.static_ranges)
    if (q >= r.first && q + n <= r.first + r.second) return true;
  return false;
}

// kind = num | (trans ? 8 : 0)
const char* ldmatrix_form(int kind) {
  switch (kind) {
    case 1: return ".x1";
    case 2: return ".x2";
    case 4: return ".x4";
    case 9: return ".x1.trans";
    case 10: return ".x2.trans";
    case 12: return ".x4.trans";
    default: return ".x?";
  }
}

void complete_ldmatrix(Exec& ex, int warp) {
  // ldmatrix.sync.aligned.m8n8.x{1,2,4}{.trans}.shared.b16, from the PTX ISA
  // ("Warp-level matrix load instruction: ldmatrix"): lanes 8i..8i+7 give the
  // addresses of rows 0..7 of matrix i (i < num; the other lanes' addresses
  // are not used); a row is 8 contiguous b16 elements. Lane L's register i
  // receives two elements of matrix i: without .trans (row L/4, cols 2(L%4)
  // and 2(L%4)+1), with .trans (rows 2(L%4) and 2(L%4)+1, col L/4); the first
  // one in the low 16 bits.
  Fiber* lanes = &ex.fibers[(size_t)warp * 32];
  const int kind = lanes[0].req->kind;
  for (int L = 1; L < 32; ++L)
    if (lanes[L].req->kind != kind)
      fail(fmt("lanes of warp %d in %s execute different ldmatrix forms at once (lane 0 m8n8%s, lane %d m8n8%s)",
               warp, block_name().c_str(), ldmatrix_form(kind), L, ldmatrix_form(lanes[L].req->kind)));
  const int num = kind & 7;
  const bool trans = (kind & 8) != 0;
  uint16_t M[4][8][8];
  for (int i = 0; i < num; ++i)
    for (int r = 0; r < 8; ++r) {
      const Fiber& f = lanes[8 * i + r];
      const void* a = f.req->addr;
      if (reinterpret_cast<uintptr_t>(a) % 16 != 0)
        fail(fmt("%s in %s gives ldmatrix (m8n8%s) the row address %p, which is not 16-byte aligned "
                 "(misaligned address)",
                 thread_name(f).c_str(), block_name().c_str(), ldmatrix_form(kind), a));
      if (!in_shared(ex, a, 16))
        fail(fmt("%s in %s gives ldmatrix (m8n8%s) the row address %p, which is not 16 bytes inside shared memory",
                 thread_name(f).c_str(), block_name().c_str(), ldmatrix_form(kind), a));
      std::memcpy(M[i][r], a, 16);
    }
  for (int L = 0; L < 32; ++L) {
    const int g = L >> 2, t = L & 3;
    for (int i = 0; i < num; ++i) {
      const uint16_t lo = trans ? M[i][2 * t][g] : M[i][g][2 * t];
      const uint16_t hi = trans ? M[i][2 * t + 1][g] : M[i][g][2 * t + 1];
      lanes[L].req->regs[i] = (uint32_t)lo | ((uint32_t)hi << 16);
    }
  }
}

void complete(Exec& ex, int warp, const Group& g) {
  Fiber* lanes = &ex.fibers[(size_t)warp * 32];
  if (g.op == OpMma) {
    complete_mma(ex, warp);
    return;
  }
  if (g.op == OpLdmatrix) {
    complete_ldmatrix(ex, warp);
    return;
  }
  if (g.op == OpVote) {
    unsigned ballot = 0;
    for (int L = 0; L < 32; ++L)
      if (g.mask >> L & 1u) ballot |= (lanes[L].req->in ? 1u : 0u) << L;
    for (int L = 0; L < 32; ++L)
      if (g.mask >> L & 1u) lanes[L].req->out = ballot;
    return;
  }
  if (g.op != OpShfl) return;
  for (int L = 0; L < 32; ++L) {
    if (!(g.mask >> L & 1u)) continue;
    WarpReq& r = *lanes[L].req;
    const int w = r.width;
    const int seg = L & ~(w - 1);
    int src = L;
    switch (r.kind) {
      case ShflIdx: src = seg + (r.arg & (w - 1)); break;
      case ShflUp: src = L - r.arg < seg ? L : L - r.arg; break;
      case ShflDown: src = L + r.arg >= seg + w ? L : L + r.arg; break;
      default: src = (L ^ r.arg) >= seg + w ? L : (L ^ r.arg); break;
    }
    if (!(g.mask >> src & 1u)) {
      const Fiber& f = lanes[L];
      fail(fmt("%s in %s reads lane %d in a __shfl*_sync whose mask 0x%08x does not include it (undefined value)",
               thread_name(f).c_str(), block_name().c_str(), src, g.mask));
    }
    r.out = lanes[src].req->in;
  }
}

void warp_collective(WarpReq& r) {
  Exec& ex = *t_exec;
  Fiber* f = ex.cur;
  Warp& w = ex.warps[f->warp];
  const unsigned bit = 1u << f->lane;
  if (!(r.mask & bit))
    fail(fmt("%s in %s calls %s with mask 0x%08x, which does not include its own lane", thread_name(*f).c_str(),
             block_name().c_str(), op_name(r.op), r.mask));
  if (r.mask & ~w.present)
    fail(fmt("%s in %s calls %s with mask 0x%08x, but lanes %s do not exist (the block has %u threads)",
             thread_name(*f).c_str(), block_name().c_str(), op_name(r.op), r.mask,
             lanes_text(r.mask & ~w.present).c_str(), t_block.bdim.x * t_block.bdim.y * t_block.bdim.z));
  if (r.mask & w.exited)
    fail(fmt("%s in %s calls %s with mask 0x%08x, but lanes %s have exited", thread_name(*f).c_str(),
             block_name().c_str(), op_name(r.op), r.mask, lanes_text(r.mask & w.exited).c_str()));
  if (r.op == OpMma && r.mask != 0xffffffffu) fail("internal: mma with a partial mask");
  Group* grp = nullptr;
  for (Group& g : w.groups)
    if (g.mask & r.mask) {
      if (g.mask != r.mask)
        fail(fmt("%s in %s calls %s with mask 0x%08x while lanes %s wait with mask 0x%08x (mask mismatch)",
                 thread_name(*f).c_str(), block_name().c_str(), op_name(r.op), r.mask, lanes_text(g.arrived).c_str(),
                 g.mask));
      if (g.op != r.op)
        fail(fmt("%s in %s calls %s while lanes %s of its warp wait in %s (divergent warp collectives)",
                 thread_name(*f).c_str(), block_name().c_str(), op_name(r.op), lanes_text(g.arrived).c_str(),
                 op_name(g.op)));
      grp = &g;
    }
  if (!grp) {
    w.groups.push_back({r.mask, 0u, r.op});
    grp = &w.groups.back();
  }
  grp->arrived |= bit;
  f->req = &r;
  if (grp->arrived == grp->mask) {
    const Group g = *grp;
    w.groups.erase(w.groups.begin() + (grp - w.groups.data()));
    complete(ex, f->warp, g);
    for (int L = 0; L < 32; ++L)
      if ((g.mask >> L & 1u) && L != f->lane) ex.fibers[(size_t)f->warp * 32 + L].state = Runnable;
    ex.cur = f;
    return;
  }
  f->state = AtWarp;
  to_scheduler(ex, f);
}

int barrier(int kind, int pred, const char* file, int line) {
  Exec* ex = t_exec;
  if (!ex) return 0;
  Fiber* f = ex->cur;
  f->bar_file = file;
  f->bar_line = line;
  f->bar_pred = pred;
  (void)kind;
  f->state = AtBarrier;
  to_scheduler(*ex, f);
  return f->bar_result;
}

std::string describe_stall(Exec& ex, size_t nthreads) {
  std::map<std::string, std::vector<int>> where;
  for (size_t i = 0; i < nthreads; ++i) {
    const Fiber& f = ex.fibers[i];
    std::string key;
    if (f.state == AtBarrier)
      key = fmt("wait at __syncthreads() (%s:%d)", f.bar_file, f.bar_line);
    else if (f.state == AtWarp)
      key = fmt("wait in %s (mask 0x%08x) for lanes that never come", op_name(f.req->op), f.req->mask);
    else if (f.state == Exited)
      key = "exited";
    else
      key = "other";
    where[key].push_back((int)i);
  }
  std::string s;
  for (auto& kv : where) {
    if (!s.empty()) s += "; ";
    const std::vector<int>& v = kv.second;
    std::string ids;
    for (size_t i = 0; i < v.size();) {
      size_t j = i;
      while (j + 1 < v.size() && v[j + 1] == v[j] + 1) ++j;
      if (!ids.empty()) ids += ",";
      ids += i == j ? std::to_string(v[i]) : std::to_string(v[i]) + "-" + std::to_string(v[j]);
      i = j + 1;
    }
    s += "threads " + ids + " " + kv.first;
  }
  return s;
}

// Runs one block to the end; false (with ex.error) when it failed.
bool run_block(Exec& ex, size_t nthreads, uint64_t seed) {
  const int nwarps = (int)((nthreads + 31) / 32);
  for (size_t i = 0; i < nthreads; ++i) {
    Fiber& f = ex.fibers[i];
    f.state = Runnable;
    f.req = nullptr;
    f.copies.clear();
    f.groups.clear();
    init_fiber(ex, f, i);
  }
  for (int w = 0; w < nwarps; ++w) {
    Warp& wp = ex.warps[w];
    const size_t n = std::min<size_t>(32, nthreads - (size_t)w * 32);
    wp.present = n == 32 ? 0xffffffffu : ((1u << n) - 1u);
    wp.exited = 0;
    wp.groups.clear();
  }
  if (ex.smem_dynamic) std::memset(ex.smem, 0xff, ex.smem_dynamic);
  ex.statics.clear();
  ex.static_ranges.clear();
  ex.smem_static = 0;
  // Warp order: shuffled with a fixed seed (the same every run); under the
  // barrier schedule shuffled again after every barrier.
  const bool alone = schedule() == SchedBarrier;
  ex.order.resize(nwarps);
  for (int w = 0; w < nwarps; ++w) ex.order[w] = w;
  uint64_t s = seed * 0x9e3779b97f4a7c15ull + 0x632be59bd9b4e019ull;
  auto shuffle = [&] {
    for (int w = nwarps - 1; w > 0; --w) {
      s ^= s >> 29;
      s *= 0xbf58476d1ce4e5b9ull;
      s ^= s >> 32;
      std::swap(ex.order[w], ex.order[s % (uint64_t)(w + 1)]);
    }
  };
  shuffle();
  for (;;) {
    bool ran = false;
    for (int wi = 0; wi < nwarps; ++wi) {
      const int w = ex.order[wi];
      const size_t l0 = (size_t)w * 32, l1 = std::min(nthreads, l0 + 32);
      // Lockstep: each runnable lane once. Barrier schedule: until no lane of
      // this warp can run (all at the barrier, exited, or stuck in a collective).
      for (bool again = true; again;) {
        again = false;
        for (size_t i = l0; i < l1; ++i) {
          Fiber& f = ex.fibers[i];
          if (f.state != Runnable) continue;
          resume(ex, &f);
          ran = true;
          again = alone;
          if (ex.failed) return false;
        }
      }
    }
    if (ran) continue;
    size_t live = 0, at_bar = 0;
    for (size_t i = 0; i < nthreads; ++i) {
      const FState st = ex.fibers[i].state;
      if (st != Exited) ++live;
      if (st == AtBarrier) ++at_bar;
    }
    if (live == 0) return true;
    if (at_bar == live) {
      const Fiber* first = nullptr;
      int count = 0;
      for (size_t i = 0; i < nthreads; ++i) {
        Fiber& f = ex.fibers[i];
        if (f.state != AtBarrier) continue;
        if (!first) first = &f;
        if (f.bar_line != first->bar_line || std::strcmp(f.bar_file, first->bar_file) != 0) {
          ex.error = fmt("threads of %s wait at different __syncthreads() calls: %s at %s:%d, %s at %s:%d "
                         "(a barrier in divergent code)",
                         block_name().c_str(), thread_name(*first).c_str(), first->bar_file, first->bar_line,
                         thread_name(f).c_str(), f.bar_file, f.bar_line);
          return false;
        }
        count += f.bar_pred != 0;
      }
      for (size_t i = 0; i < nthreads; ++i) {
        Fiber& f = ex.fibers[i];
        if (f.state != AtBarrier) continue;
        f.state = Runnable;
        f.bar_result = count;
      }
      ex.bar_total = (int)at_bar;
      if (alone) shuffle();
      continue;
    }
    ex.error = fmt("deadlock in %s: %s", block_name().c_str(), describe_stall(ex, nthreads).c_str());
    return false;
  }
}

// ---- memory --------------------------------------------------------------------
struct Memory {
  std::mutex mu;
  std::map<uintptr_t, size_t> allocs;
  std::map<uintptr_t, std::pair<void*, size_t>> guarded;  // ptr -> (mapping, length) with GPT_EMU_GUARD=1
  size_t used = 0;
};
// GPT_EMU_GUARD=1: every cudaMalloc block ends (within 16 bytes) at an
// inaccessible page, so a kernel reading or writing past the end of a buffer
// crashes at the access (run under a debugger, or see the core dump) instead
// of silently touching other host memory. Blocks are then 16-byte aligned,
// not 256.
bool guard_pages() {
  static bool on = env_size("GPT_EMU_GUARD", 0) == 1;
  return on;
}
Memory& memory() {
  static Memory* m = new Memory();
  return *m;
}
size_t total_memory() {
  static size_t mb = env_size("GPT_EMU_MEMORY_MB", 16384);
  return mb << 20;
}
// True when [p, p + n) lies inside one cudaMalloc allocation.
bool in_device(const void* p, size_t n) {
  Memory& m = memory();
  std::lock_guard<std::mutex> lk(m.mu);
  const uintptr_t a = reinterpret_cast<uintptr_t>(p);
  auto it = m.allocs.upper_bound(a);
  if (it == m.allocs.begin()) return false;
  --it;
  return a >= it->first && a + n <= it->first + it->second;
}

std::mutex& attr_mutex() {
  static std::mutex* m = new std::mutex();
  return *m;
}
std::unordered_map<const void*, int>& smem_attr() {
  static auto* m = new std::unordered_map<const void*, int>();
  return *m;
}

struct Event {
  std::chrono::steady_clock::time_point t;
  bool recorded = false;
};

}  // namespace

// ---- device-side entry points ---------------------------------------------------------
void* dynamic_smem() { return t_exec ? t_exec->smem : nullptr; }

void* shared_static(void* p, size_t bytes, size_t align, const char* name) {
  // Each static array (told apart by its thread_local storage, one per
  // declaration and host thread) gets a guarded home of its own, made on first
  // use and kept; the storage itself is not used. Falls back to it if mmap fails.
  thread_local std::unordered_map<void*, void*> homes;
  void*& home = homes[p];
  if (!home) {
    void* base = nullptr;
    size_t len = 0;
    unsigned char* q = map_guarded(bytes, std::max<size_t>(align, 16), &base, &len);
    home = q ? static_cast<void*>(q) : p;
  }
  Exec* ex = t_exec;
  if (!ex) return home;
  for (void* q : ex->statics)
    if (q == p) return home;
  ex->statics.push_back(p);
  ex->static_ranges.push_back({static_cast<unsigned char*>(home), bytes});
  ex->smem_static += bytes;
  if (ex->smem_static > kDefaultSmem)
    fail(fmt("static __shared__ memory of the kernel reaches %zu bytes at '%s' (the limit is %zu)", ex->smem_static,
             name, kDefaultSmem));
  if (ex->smem_static + ex->smem_dynamic > ex->smem_limit)
    fail(fmt("static (%zu) + dynamic (%zu) shared memory exceeds the kernel's limit of %zu bytes", ex->smem_static,
             ex->smem_dynamic, ex->smem_limit));
  std::memset(home, 0xff, bytes);
  return home;
}

void syncthreads(const char* file, int line) { barrier(0, 0, file, line); }
int syncthreads_count(int pred, const char* file, int line) { return barrier(1, pred, file, line); }
int syncthreads_or(int pred, const char* file, int line) { return barrier(1, pred, file, line) != 0; }
int syncthreads_and(int pred, const char* file, int line) {
  const int c = barrier(1, pred, file, line);
  return t_exec ? c == t_exec->bar_total : pred != 0;
}

void syncwarp(unsigned mask) {
  if (!t_exec) return;
  WarpReq r{};
  r.op = OpSyncwarp;
  r.mask = mask;
  warp_collective(r);
}

void trap(const char* what) {
  if (!t_exec) std::abort();
  fail(fmt("%s in %s called %s", thread_name(*t_exec->cur).c_str(), block_name().c_str(), what));
}

unsigned lane_id() { return t_exec ? (unsigned)t_exec->cur->lane : 0u; }

uint64_t shfl(unsigned mask, uint64_t v, int kind, int arg, int width, int bytes) {
  (void)bytes;
  if (!t_exec) return v;
  if (width <= 0 || width > 32 || (width & (width - 1)))
    fail(fmt("%s in %s calls a __shfl*_sync with width %d (must be a power of two <= 32)",
             thread_name(*t_exec->cur).c_str(), block_name().c_str(), width));
  WarpReq r{};
  r.op = OpShfl;
  r.mask = mask;
  r.kind = kind;
  r.arg = arg;
  r.width = width;
  r.in = v;
  warp_collective(r);
  return r.out;
}

unsigned vote_ballot(unsigned mask, int pred) {
  if (!t_exec) return pred ? 1u : 0u;
  WarpReq r{};
  r.op = OpVote;
  r.mask = mask;
  r.in = pred != 0;
  warp_collective(r);
  return (unsigned)r.out;
}

void mma_m16n8k16_bf16_f32(float (&d)[4], const uint32_t (&a)[4], const uint32_t (&b)[2]) {
  if (!t_exec) std::abort();
  Warp& w = t_exec->warps[t_exec->cur->warp];
  if (w.present != 0xffffffffu)
    fail(fmt("%s in %s executes mma.sync in a partial warp (lanes %s exist); .aligned needs all 32 lanes",
             thread_name(*t_exec->cur).c_str(), block_name().c_str(), lanes_text(w.present).c_str()));
  WarpReq r{};
  r.op = OpMma;
  r.mask = 0xffffffffu;
  r.d = d;
  r.a = a;
  r.b = b;
  warp_collective(r);
}

void ldmatrix(uint32_t* regs, const void* row, int num, bool trans) {
  if (!t_exec) std::abort();
  Warp& w = t_exec->warps[t_exec->cur->warp];
  if (w.present != 0xffffffffu)
    fail(fmt("%s in %s executes ldmatrix in a partial warp (lanes %s exist); .aligned needs all 32 lanes",
             thread_name(*t_exec->cur).c_str(), block_name().c_str(), lanes_text(w.present).c_str()));
  WarpReq r{};
  r.op = OpLdmatrix;
  r.mask = 0xffffffffu;
  r.kind = num | (trans ? 8 : 0);
  r.addr = row;
  r.regs = regs;
  warp_collective(r);
}

// ---- cp.async ----------------------------------------------------------------------------
namespace {
void land(Fiber& f, size_t n) {
  for (size_t i = 0; i < n; ++i) std::memcpy(f.copies[i].dst, f.copies[i].data, (size_t)f.copies[i].bytes);
  f.copies.erase(f.copies.begin(), f.copies.begin() + (std::ptrdiff_t)n);
}
}  // namespace

void cp_async(void* dst, const void* src, int bytes, int src_bytes) {
  if (!t_exec) std::abort();
  const Fiber& f = *t_exec->cur;
  const char* form = bytes == 16 ? "cp.async.cg.shared.global" : "cp.async.ca.shared.global";
  if (bytes != 4 && bytes != 8 && bytes != 16) fail("internal: cp.async size");
  if (src_bytes < 0 || src_bytes > bytes)
    fail(fmt("%s in %s: %s of %d bytes with a source size of %d (must be 0 to %d)", thread_name(f).c_str(),
             block_name().c_str(), form, bytes, src_bytes, bytes));
  const uintptr_t d = reinterpret_cast<uintptr_t>(dst), s = reinterpret_cast<uintptr_t>(src);
  if (d % (uintptr_t)bytes != 0 || s % (uintptr_t)bytes != 0)
    fail(fmt("%s in %s: %s of %d bytes from %p to %p: %s is not %d-byte aligned (misaligned address)",
             thread_name(f).c_str(), block_name().c_str(), form, bytes, src, dst,
             s % (uintptr_t)bytes != 0 ? "the source" : "the destination", bytes));
  if (!in_shared(*t_exec, dst, (size_t)bytes))
    fail(fmt("%s in %s: %s to %p: the destination is not %d bytes inside shared memory", thread_name(f).c_str(),
             block_name().c_str(), form, dst, bytes));
  if (src_bytes > 0 && !in_device(src, (size_t)src_bytes))
    fail(fmt("%s in %s: %s from %p: the source is not %d bytes inside one cudaMalloc allocation",
             thread_name(f).c_str(), block_name().c_str(), form, src, src_bytes));
  AsyncCopy c{};
  c.dst = static_cast<unsigned char*>(dst);
  c.bytes = bytes;
  std::memcpy(c.data, src, (size_t)src_bytes);  // the rest stays zero (zfill)
  // Until its wait the destination is undefined: poisoned now, so a read
  // before the wait, or a stage refilled while another warp still reads it
  // (a missing barrier), sees NaN bytes.
  std::memset(dst, 0xff, (size_t)bytes);
  t_exec->cur->copies.push_back(c);
}

void cp_async_commit() {
  if (!t_exec) return;
  Fiber& f = *t_exec->cur;
  size_t committed = 0;
  for (size_t g : f.groups) committed += g;
  f.groups.push_back(f.copies.size() - committed);  // may be an empty group, as on the GPU
}

void cp_async_wait_group(int n) {
  if (!t_exec) return;
  Fiber& f = *t_exec->cur;
  if ((int)f.groups.size() <= n) return;
  const size_t k = f.groups.size() - (size_t)n;
  size_t copies = 0;
  for (size_t i = 0; i < k; ++i) copies += f.groups[i];
  land(f, copies);
  f.groups.erase(f.groups.begin(), f.groups.begin() + (std::ptrdiff_t)k);
}

void cp_async_wait_all() {
  if (!t_exec) return;
  Fiber& f = *t_exec->cur;
  land(f, f.copies.size());
  f.groups.clear();
}

const char* kernel_label(const char* pretty) {
  std::string s(pretty);
  size_t p = s.find("K = ");
  if (p != std::string::npos) s = s.substr(p + 4);
  if (!s.empty() && s.back() == ']') s.pop_back();
  if (!s.empty() && s[0] == '&') s = s.substr(1);
  // Drop the namespaces before the kernel's own name.
  size_t lt = s.find('<');
  size_t cut = s.rfind("::", lt == std::string::npos ? std::string::npos : lt);
  if (cut != std::string::npos) s = s.substr(cut + 2);
  return (new std::string(s))->c_str();
}

void count_launch();  // the host-sync counters below

void run_launch(const char* name, const void* kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t,
                void (*body)(void*), void* ctx) {
  count_launch();
  const unsigned long long nthreads = (unsigned long long)block.x * block.y * block.z;
  if (block.x == 0 || block.y == 0 || block.z == 0 || block.x > 1024 || block.y > 1024 || block.z > 64 ||
      nthreads > 1024) {
    set_error(cudaErrorInvalidConfiguration,
              fmt("launch of %s with block (%u,%u,%u) = %llu threads: a block holds 1 to 1024 threads "
                  "(x, y <= 1024, z <= 64)",
                  name, block.x, block.y, block.z, nthreads));
    return;
  }
  if (grid.x == 0 || grid.y == 0 || grid.z == 0 || grid.x > 2147483647u || grid.y > 65535 || grid.z > 65535) {
    set_error(cudaErrorInvalidConfiguration,
              fmt("launch of %s with grid (%u,%u,%u): each dimension must be >= 1 (x <= 2^31-1, y, z <= 65535)", name,
                  grid.x, grid.y, grid.z));
    return;
  }
  size_t limit = kDefaultSmem;
  {
    std::lock_guard<std::mutex> lk(attr_mutex());
    auto it = smem_attr().find(kernel);
    if (it != smem_attr().end()) limit = std::max(limit, (size_t)it->second);
  }
  if (smem > kMaxSmemOptin) {
    set_error(cudaErrorInvalidValue, fmt("launch of %s asks for %zu bytes of dynamic shared memory; the device "
                                         "allows at most %zu per block",
                                         name, smem, kMaxSmemOptin));
    return;
  }
  if (smem > limit) {
    set_error(cudaErrorInvalidValue,
              fmt("launch of %s asks for %zu bytes of dynamic shared memory, above its limit of %zu: raise it first "
                  "with cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize, bytes)",
                  name, smem, limit));
    return;
  }
  if (t_exec) {
    set_error(cudaErrorNotSupported, fmt("launch of %s from inside a kernel", name));
    return;
  }
  thread_local Exec ex;
  thread_local void* smem_map = nullptr;  // this thread's dynamic shared memory, guarded; grows, never shrinks
  thread_local size_t smem_map_len = 0, smem_map_cap = 0;
  ensure_stacks(ex, (size_t)nthreads);
  if (!ex.stacks) {
    set_error(cudaErrorMemoryAllocation, fmt("launch of %s: could not map fiber stacks", name));
    return;
  }
  ex.fibers.resize(std::max<size_t>(ex.fibers.size(), (size_t)nthreads));
  ex.warps.resize(std::max<size_t>(ex.warps.size(), (size_t)(nthreads + 31) / 32));
  for (unsigned long long i = 0; i < nthreads; ++i) {
    Fiber& f = ex.fibers[i];
    f.tid.x = (unsigned)(i % block.x);
    f.tid.y = (unsigned)((i / block.x) % block.y);
    f.tid.z = (unsigned)(i / ((unsigned long long)block.x * block.y));
    f.warp = (int)(i / 32);
    f.lane = (int)(i % 32);
  }
  // The buffer ends (within 16 bytes: CUDA aligns dynamic shared memory to 16)
  // at an inaccessible page; with smem = 0 the pointer is that page itself.
  if (!smem_map || smem > smem_map_cap) {
    if (smem_map) munmap(smem_map, smem_map_len);
    smem_map = nullptr;
    const size_t cap = std::max<size_t>(smem, 64 * 1024);
    if (!map_guarded(cap, 16, &smem_map, &smem_map_len)) {
      smem_map = nullptr;
      set_error(cudaErrorMemoryAllocation, fmt("launch of %s: could not map shared memory", name));
      return;
    }
    smem_map_cap = cap;
  }
  ex.smem = place_before_guard(smem_map, smem_map_len, smem, 16);
  ex.smem_dynamic = smem;
  ex.smem_limit = limit;
  ex.failed = false;
  ex.error.clear();
  ex.kernel = name;
  ex.body = body;
  ex.ctx = ctx;
  // Fibers of a larger earlier launch that are not part of this one.
  const size_t nt = (size_t)nthreads;
  t_block.bdim = block;
  t_block.gdim = grid;
  t_exec = &ex;
  bool ok = true;
  for (unsigned z = 0; z < grid.z && ok; ++z)
    for (unsigned y = 0; y < grid.y && ok; ++y)
      for (unsigned x = 0; x < grid.x && ok; ++x) {
        t_block.bidx = {x, y, z};
        const uint64_t seed = (((uint64_t)z * grid.y + y) * grid.x + x) ^ (order_seed() * 0x2545f4914f6cdd1dull);
        ok = run_block(ex, nt, seed);
      }
  t_exec = nullptr;
  t_thread_idx = nullptr;
  if (!ok) set_error(cudaErrorLaunchFailure, fmt("kernel %s failed: %s", name, ex.error.c_str()));
}


// Host-blocking runtime calls counted since the last reset (the addon's
// emulator-only emuHostSyncs export reads them; a test counts the syncs of a
// training step with it). On a GPU each of these makes the host wait for the
// device (a copy to or from pageable host memory, a stream/device/event
// synchronize) or may synchronize the device (cudaMalloc, cudaFree).
struct HostSyncCounts {
  long long to_host;       // cudaMemcpy / cudaMemcpyAsync / cudaMemcpy2D device -> host
  long long to_host_bytes;
  long long to_device;     // the same, host -> device (cudaMemcpyAsync host -> device: to_device_async)
  long long stream_sync;   // cudaStreamSynchronize
  long long device_sync;   // cudaDeviceSynchronize
  long long event_sync;    // cudaEventSynchronize
  long long malloc;        // cudaMalloc
  long long free;          // cudaFree of a non-null pointer
  long long launches;      // kernel launches
  // Kernel launches since the latest copy to the host: 0 when the copy
  // back was the last thing queued (nothing left for the device to do after
  // the host got its value).
  long long launches_after_to_host;
  // cudaMalloc calls made after a kernel launch: 0 when every allocation
  // came before the first kernel (the set-up of a call, not its middle).
  long long malloc_after_launch;
  // cudaMemcpyAsync host -> device: from pageable memory (all the engine
  // uses) the runtime stages the bytes and returns without waiting for the
  // device, so these are not host syncs.
  long long to_device_async;
};
HostSyncCounts host_sync_counts();
void reset_host_sync_counts();

namespace {
std::atomic<long long> g_to_host{0}, g_to_host_bytes{0}, g_to_device{0}, g_stream_sync{0}, g_device_sync{0},
    g_event_sync{0}, g_malloc{0}, g_free{0}, g_launches{0}, g_launches_after{0}, g_malloc_after_launch{0}, g_to_device_async{0};
void count_copy(cudaMemcpyKind kind, size_t bytes) {
  if (kind == cudaMemcpyDeviceToHost) {
    ++g_to_host;
    g_launches_after.store(0);
    g_to_host_bytes += (long long)bytes;
  } else if (kind == cudaMemcpyHostToDevice) {
    ++g_to_device;
  }
}
}  // namespace

void count_launch() {
  ++g_launches;
  ++g_launches_after;
}
HostSyncCounts host_sync_counts() {
  return {g_to_host.load(),     g_to_host_bytes.load(), g_to_device.load(), g_stream_sync.load(),
          g_device_sync.load(), g_event_sync.load(),    g_malloc.load(),    g_free.load(),
          g_launches.load(),    g_launches_after.load(), g_malloc_after_launch.load(), g_to_device_async.load()};
}
void reset_host_sync_counts() {
  for (auto* c : {&g_to_host, &g_to_host_bytes, &g_to_device, &g_stream_sync, &g_device_sync, &g_event_sync,
                  &g_malloc, &g_free, &g_launches, &g_launches_after, &g_malloc_after_launch,
                  &g_to_device_async})
    c->store(0);
}

}  // namespace gpt_emu

long long clock64() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

// ---- runtime API ----------------------------------------------------------------------
using gpt_emu::set_error;

// CUDA graphs (defined at the end of this file): a call that may not run
// during a stream capture fails it (cudaErrorStreamCaptureUnsupported);
// capture_record records a memset or device-to-device copy queued on a
// capturing stream (true: recorded, or refused with *err set).
namespace gpt_emu {
cudaError_t capture_refuses(const char* what);
bool capture_record_memset(cudaStream_t s, void* p, int value, size_t bytes, cudaError_t* err);
bool capture_record_copy(cudaStream_t s, void* dst, const void* src, size_t bytes, cudaError_t* err);
}  // namespace gpt_emu

namespace {
thread_local int t_device = 0;
const char* kDeviceName = "SIMT emulator (CPU)";
}  // namespace

cudaError_t cudaGetDeviceCount(int* n) {
  *n = 1;
  return cudaSuccess;
}
cudaError_t cudaGetDevice(int* d) {
  *d = t_device;
  return cudaSuccess;
}
cudaError_t cudaSetDevice(int d) {
  if (d != 0) return set_error(cudaErrorInvalidDevice, gpt_emu::fmt("cudaSetDevice(%d): the emulator has one device, 0", d));
  t_device = d;
  return cudaSuccess;
}
cudaError_t cudaGetDeviceProperties(cudaDeviceProp* p, int d) {
  if (d != 0) return set_error(cudaErrorInvalidDevice, "cudaGetDeviceProperties: no such device");
  std::memset(p, 0, sizeof *p);
  std::snprintf(p->name, sizeof p->name, "%s", kDeviceName);
  p->totalGlobalMem = gpt_emu::total_memory();
  p->sharedMemPerBlock = gpt_emu::kDefaultSmem;
  p->sharedMemPerBlockOptin = gpt_emu::kMaxSmemOptin;
  p->sharedMemPerMultiprocessor = 228 * 1024;
  p->regsPerBlock = 65536;
  p->warpSize = 32;
  p->maxThreadsPerBlock = 1024;
  p->maxThreadsDim[0] = 1024;
  p->maxThreadsDim[1] = 1024;
  p->maxThreadsDim[2] = 64;
  p->maxGridSize[0] = 2147483647;
  p->maxGridSize[1] = 65535;
  p->maxGridSize[2] = 65535;
  // Semantics and limits of sm_90 (the shared-memory opt-in above).
  p->major = 9;
  p->minor = 0;
  p->multiProcessorCount = 1;
  p->maxThreadsPerMultiProcessor = 2048;
  p->l2CacheSize = 0;
  p->memoryBusWidth = 0;
  p->integrated = 1;
  return cudaSuccess;
}
cudaError_t cudaDeviceGetAttribute(int* v, cudaDeviceAttr a, int d) {
  cudaDeviceProp p;
  cudaError_t e = cudaGetDeviceProperties(&p, d);
  if (e != cudaSuccess) return e;
  switch (a) {
    case cudaDevAttrMaxThreadsPerBlock: *v = p.maxThreadsPerBlock; break;
    case cudaDevAttrMaxSharedMemoryPerBlock: *v = (int)p.sharedMemPerBlock; break;
    case cudaDevAttrWarpSize: *v = 32; break;
    case cudaDevAttrMultiProcessorCount: *v = p.multiProcessorCount; break;
    case cudaDevAttrComputeCapabilityMajor: *v = p.major; break;
    case cudaDevAttrComputeCapabilityMinor: *v = p.minor; break;
    case cudaDevAttrMaxSharedMemoryPerBlockOptin: *v = (int)p.sharedMemPerBlockOptin; break;
    default: return set_error(cudaErrorInvalidValue, "cudaDeviceGetAttribute: attribute not emulated");
  }
  return cudaSuccess;
}
cudaError_t cudaRuntimeGetVersion(int* v) {
  *v = 13000;
  return cudaSuccess;
}
cudaError_t cudaDriverGetVersion(int* v) {
  *v = 0;  // no driver: the device is the emulator
  return cudaSuccess;
}
cudaError_t cudaDeviceSynchronize() {
  if (cudaError_t e = gpt_emu::capture_refuses("cudaDeviceSynchronize")) return e;
  ++gpt_emu::g_device_sync;
  return cudaSuccess;
}
cudaError_t cudaDeviceReset() { return cudaSuccess; }
cudaError_t cudaGetLastError() {
  cudaError_t e = gpt_emu::t_last;
  gpt_emu::t_last = cudaSuccess;
  return e;
}
cudaError_t cudaPeekAtLastError() { return gpt_emu::t_last; }
const char* cudaGetErrorName(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInitializationError: return "cudaErrorInitializationError";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorInvalidDevicePointer: return "cudaErrorInvalidDevicePointer";
    case cudaErrorInvalidMemcpyDirection: return "cudaErrorInvalidMemcpyDirection";
    case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
    case cudaErrorNoDevice: return "cudaErrorNoDevice";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
    case cudaErrorNotReady: return "cudaErrorNotReady";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorLaunchOutOfResources: return "cudaErrorLaunchOutOfResources";
    case cudaErrorAssert: return "cudaErrorAssert";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    case cudaErrorNotSupported: return "cudaErrorNotSupported";
    case cudaErrorStreamCaptureUnsupported: return "cudaErrorStreamCaptureUnsupported";
    case cudaErrorStreamCaptureInvalidated: return "cudaErrorStreamCaptureInvalidated";
    case cudaErrorStreamCaptureImplicit: return "cudaErrorStreamCaptureImplicit";
    default: return "cudaErrorUnknown";
  }
}
const char* cudaGetErrorString(cudaError_t e) {
  if (e != cudaSuccess && e == gpt_emu::t_detail_code && !gpt_emu::t_detail.empty()) return gpt_emu::t_detail.c_str();
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorMemoryAllocation: return "out of memory";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
    case cudaErrorInvalidDevice: return "invalid device ordinal";
    default: return "emulated CUDA error";
  }
}

cudaError_t cudaMalloc(void** p, size_t bytes) {
  if (cudaError_t e = gpt_emu::capture_refuses("cudaMalloc")) return e;
  ++gpt_emu::g_malloc;
  if (gpt_emu::g_launches.load() > 0) ++gpt_emu::g_malloc_after_launch;
  gpt_emu::Memory& m = gpt_emu::memory();
  const size_t n = bytes ? bytes : 1;
  {
    std::lock_guard<std::mutex> lk(m.mu);
    if (m.used + n > gpt_emu::total_memory()) {
      *p = nullptr;
      return set_error(cudaErrorMemoryAllocation,
                       gpt_emu::fmt("cudaMalloc of %zu bytes: %zu of %zu bytes of emulated device memory in use", bytes,
                                    m.used, gpt_emu::total_memory()));
    }
  }
  void* q = nullptr;
  void* map_base = nullptr;
  size_t map_len = 0;
  if (gpt_emu::guard_pages()) {
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    const size_t body = (n + 15) & ~size_t(15);
    map_len = (body + page - 1) / page * page + page;
    map_base = mmap(nullptr, map_len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (map_base != MAP_FAILED) {
      char* guard = static_cast<char*>(map_base) + map_len - page;
      mprotect(guard, page, PROT_NONE);
      q = guard - body;
    } else {
      map_base = nullptr;
    }
  } else {
    q = std::aligned_alloc(256, (n + 255) & ~size_t(255));
  }
  if (!q) {
    *p = nullptr;
    return set_error(cudaErrorMemoryAllocation, gpt_emu::fmt("cudaMalloc of %zu bytes: host allocation failed", bytes));
  }
  std::memset(q, 0xff, n);  // poison: every float reads as NaN until written
  std::lock_guard<std::mutex> lk(m.mu);
  m.allocs[reinterpret_cast<uintptr_t>(q)] = n;
  if (map_base) m.guarded[reinterpret_cast<uintptr_t>(q)] = {map_base, map_len};
  m.used += n;
  *p = q;
  return cudaSuccess;
}
cudaError_t cudaFree(void* p) {
  if (!p) return cudaSuccess;
  if (cudaError_t e = gpt_emu::capture_refuses("cudaFree")) return e;
  ++gpt_emu::g_free;
  gpt_emu::Memory& m = gpt_emu::memory();
  {
    std::lock_guard<std::mutex> lk(m.mu);
    auto it = m.allocs.find(reinterpret_cast<uintptr_t>(p));
    if (it == m.allocs.end())
      return set_error(cudaErrorInvalidDevicePointer, gpt_emu::fmt("cudaFree(%p): not a cudaMalloc pointer", p));
    m.used -= it->second;
    m.allocs.erase(it);
    auto g = m.guarded.find(reinterpret_cast<uintptr_t>(p));
    if (g != m.guarded.end()) {
      munmap(g->second.first, g->second.second);
      m.guarded.erase(g);
      return cudaSuccess;
    }
  }
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMallocHost(void** p, size_t bytes) {
  *p = std::malloc(bytes ? bytes : 1);
  return *p ? cudaSuccess : set_error(cudaErrorMemoryAllocation, "cudaMallocHost failed");
}
cudaError_t cudaHostAlloc(void** p, size_t bytes, unsigned int) { return cudaMallocHost(p, bytes); }
cudaError_t cudaFreeHost(void* p) {
  std::free(p);
  return cudaSuccess;
}
cudaError_t cudaMemGetInfo(size_t* free_bytes, size_t* total_bytes) {
  gpt_emu::Memory& m = gpt_emu::memory();
  std::lock_guard<std::mutex> lk(m.mu);
  *total_bytes = gpt_emu::total_memory();
  *free_bytes = *total_bytes - m.used;
  return cudaSuccess;
}

namespace {
cudaError_t check_copy(const char* what, void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  const bool dst_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
  const bool src_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
  if ((int)kind < 0 || (int)kind > 4)
    return set_error(cudaErrorInvalidMemcpyDirection, gpt_emu::fmt("%s: bad direction %d", what, (int)kind));
  if (dst_dev && !gpt_emu::in_device(dst, bytes))
    return set_error(cudaErrorInvalidValue,
                     gpt_emu::fmt("%s: destination [%p, +%zu) is not inside one cudaMalloc allocation", what, dst, bytes));
  if (src_dev && !gpt_emu::in_device(src, bytes))
    return set_error(cudaErrorInvalidValue,
                     gpt_emu::fmt("%s: source [%p, +%zu) is not inside one cudaMalloc allocation", what, src, bytes));
  return cudaSuccess;
}
}  // namespace

namespace {
cudaError_t copy_uncounted(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (!bytes) return cudaSuccess;
  cudaError_t e = check_copy("cudaMemcpy", dst, src, bytes, kind);
  if (e != cudaSuccess) return e;
  std::memmove(dst, src, bytes);
  return cudaSuccess;
}
}  // namespace

cudaError_t cudaMemcpy(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind) {
  if (cudaError_t e = gpt_emu::capture_refuses("a copy to or from host memory (or cudaMemcpy)")) return e;
  if (bytes) gpt_emu::count_copy(kind, bytes);
  return copy_uncounted(dst, src, bytes, kind);
}
cudaError_t cudaMemcpyAsync(void* dst, const void* src, size_t bytes, cudaMemcpyKind kind, cudaStream_t s) {
  cudaError_t captured = cudaSuccess;
  if (kind == cudaMemcpyDeviceToDevice && gpt_emu::capture_record_copy(s, dst, src, bytes, &captured)) return captured;
  if (kind == cudaMemcpyHostToDevice)
    if (cudaError_t e = gpt_emu::capture_refuses("cudaMemcpyAsync from host memory")) return e;
  if (kind != cudaMemcpyHostToDevice) return cudaMemcpy(dst, src, bytes, kind);
  if (bytes) ++gpt_emu::g_to_device_async;
  return copy_uncounted(dst, src, bytes, kind);
}
cudaError_t cudaMemcpy2D(void* dst, size_t dpitch, const void* src, size_t spitch, size_t width, size_t height,
                         cudaMemcpyKind kind) {
  for (size_t r = 0; r < height; ++r) {
    cudaError_t e = copy_uncounted(static_cast<char*>(dst) + r * dpitch, static_cast<const char*>(src) + r * spitch, width,
                               kind);
    if (e != cudaSuccess) return e;
  }
  if (width && height) gpt_emu::count_copy(kind, width * height);  // one counted copy
  return cudaSuccess;
}
cudaError_t cudaMemset(void* p, int value, size_t bytes) {
  if (cudaError_t e = gpt_emu::capture_refuses("cudaMemset")) return e;
  if (!bytes) return cudaSuccess;
  if (!gpt_emu::in_device(p, bytes))
    return set_error(cudaErrorInvalidValue,
                     gpt_emu::fmt("cudaMemset: [%p, +%zu) is not inside one cudaMalloc allocation", p, bytes));
  std::memset(p, value, bytes);
  return cudaSuccess;
}
cudaError_t cudaMemsetAsync(void* p, int value, size_t bytes, cudaStream_t s) {
  cudaError_t captured = cudaSuccess;
  if (gpt_emu::capture_record_memset(s, p, value, bytes, &captured)) return captured;
  return cudaMemset(p, value, bytes);
}

struct CUstream_st {
  int flags;
};
struct CUevent_st {
  gpt_emu::Event ev;
};
cudaError_t cudaStreamCreate(cudaStream_t* s) { return cudaStreamCreateWithFlags(s, 0); }
cudaError_t cudaStreamCreateWithFlags(cudaStream_t* s, unsigned int flags) {
  *s = new CUstream_st{(int)flags};
  return cudaSuccess;
}
cudaError_t cudaStreamDestroy(cudaStream_t s) {
  if (s && s != cudaStreamLegacy && s != cudaStreamPerThread) delete s;
  return cudaSuccess;
}
// Work runs synchronously at the call, so every stream is always idle.
cudaError_t cudaStreamSynchronize(cudaStream_t) {
  if (cudaError_t e = gpt_emu::capture_refuses("cudaStreamSynchronize")) return e;
  ++gpt_emu::g_stream_sync;
  return cudaSuccess;
}
cudaError_t cudaStreamQuery(cudaStream_t) { return cudaSuccess; }
cudaError_t cudaStreamWaitEvent(cudaStream_t, cudaEvent_t, unsigned int) { return cudaSuccess; }
cudaError_t cudaEventCreate(cudaEvent_t* e) { return cudaEventCreateWithFlags(e, 0); }
cudaError_t cudaEventCreateWithFlags(cudaEvent_t* e, unsigned int) {
  *e = new CUevent_st();
  return cudaSuccess;
}
cudaError_t cudaEventDestroy(cudaEvent_t e) {
  delete e;
  return cudaSuccess;
}
cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t) {
  if (!e) return set_error(cudaErrorInvalidResourceHandle, "cudaEventRecord: null event");
  e->ev.t = std::chrono::steady_clock::now();
  e->ev.recorded = true;
  return cudaSuccess;
}
cudaError_t cudaEventSynchronize(cudaEvent_t) {
  if (cudaError_t e = gpt_emu::capture_refuses("cudaEventSynchronize")) return e;
  ++gpt_emu::g_event_sync;
  return cudaSuccess;
}
cudaError_t cudaEventQuery(cudaEvent_t) { return cudaSuccess; }
cudaError_t cudaEventElapsedTime(float* ms, cudaEvent_t a, cudaEvent_t b) {
  if (!a || !b || !a->ev.recorded || !b->ev.recorded)
    return set_error(cudaErrorInvalidResourceHandle, "cudaEventElapsedTime: event not recorded");
  *ms = std::chrono::duration<float, std::milli>(b->ev.t - a->ev.t).count();
  return cudaSuccess;
}
cudaError_t cudaFuncSetAttribute(const void* func, cudaFuncAttribute attr, int value) {
  if (attr == cudaFuncAttributeMaxDynamicSharedMemorySize) {
    if (value < 0 || (size_t)value > gpt_emu::kMaxSmemOptin)
      return set_error(cudaErrorInvalidValue,
                       gpt_emu::fmt("cudaFuncSetAttribute(MaxDynamicSharedMemorySize, %d): the device allows at most %zu",
                                    value, gpt_emu::kMaxSmemOptin));
    std::lock_guard<std::mutex> lk(gpt_emu::attr_mutex());
    gpt_emu::smem_attr()[func] = value;
    return cudaSuccess;
  }
  if (attr == cudaFuncAttributePreferredSharedMemoryCarveout) return cudaSuccess;
  return set_error(cudaErrorInvalidValue, "cudaFuncSetAttribute: attribute not emulated");
}

// ---- CUDA graphs (stand-ins) ------------------------------------------------------------
// A capture is a list of nodes recorded in queue order on one stream: a
// launch keeps its configuration and a heap copy of its arguments (the
// Launcher's LaunchCtx), a memset or a device-to-device copy its pointers.
// cudaGraphLaunch runs the nodes one after another through run_launch, as
// if they had been queued then. While any capture is open, work on the
// legacy stream and calls that would wait for the device or allocate fail
// and invalidate every open capture (the global capture mode on a GPU).
namespace gpt_emu {
namespace {
struct GraphNode {
  enum Kind { Launch, Memset, Copy } kind = Launch;
  const char* name = nullptr;
  const void* kernel = nullptr;
  dim3 grid, block;
  size_t smem = 0;
  void (*body)(void*) = nullptr;
  std::shared_ptr<void> ctx;
  void* dst = nullptr;
  const void* src = nullptr;
  size_t bytes = 0;
  int value = 0;
};
}  // namespace
}  // namespace gpt_emu

struct CUgraph_st {
  std::vector<gpt_emu::GraphNode> nodes;
};
struct CUgraphExec_st {
  std::vector<gpt_emu::GraphNode> nodes;
};

namespace gpt_emu {
namespace {
struct Capture {
  CUgraph_st* graph = nullptr;
  std::string invalid;  // why the capture failed ("" while it holds)
};
std::mutex g_capture_mu;
std::atomic<int> g_captures_open{0};
std::unordered_map<cudaStream_t, Capture>& captures() {
  static auto* m = new std::unordered_map<cudaStream_t, Capture>();
  return *m;
}
bool legacy(cudaStream_t s) { return s == nullptr || s == cudaStreamLegacy; }
// Fails every open capture (g_capture_mu held) and sets the error.
cudaError_t invalidate_all(cudaError_t code, const std::string& why) {
  for (auto& c : captures())
    if (c.second.invalid.empty()) c.second.invalid = why;
  return set_error(code, why);
}
// Records `n` on s's capture: true when s captures (recorded, or *err set when
// the capture already failed), or when s is the legacy stream during a
// capture (refused: *err). False: run the work now.
bool record(cudaStream_t s, GraphNode&& n, cudaError_t* err) {
  *err = cudaSuccess;
  if (g_captures_open.load() == 0) return false;
  std::lock_guard<std::mutex> lk(g_capture_mu);
  auto it = captures().find(s);
  if (it == captures().end()) {
    if (!legacy(s) || captures().empty()) return false;
    *err = invalidate_all(cudaErrorStreamCaptureImplicit,
                          fmt("%s queued on the legacy default stream while a stream captures",
                              n.name ? n.name : "a memset or copy"));
    return true;
  }
  if (!it->second.invalid.empty()) {
    *err = set_error(cudaErrorStreamCaptureInvalidated, it->second.invalid);
    return true;
  }
  it->second.graph->nodes.push_back(std::move(n));
  return true;
}
}  // namespace

bool capture_open() { return g_captures_open.load() > 0; }

cudaError_t capture_refuses(const char* what) {
  if (g_captures_open.load() == 0) return cudaSuccess;
  std::lock_guard<std::mutex> lk(g_capture_mu);
  if (captures().empty()) return cudaSuccess;
  return invalidate_all(cudaErrorStreamCaptureUnsupported,
                        fmt("%s during a stream capture (not allowed in the global capture mode)", what));
}

void record_launch(const char* kernel_name, const void* kernel, dim3 grid, dim3 block, size_t smem, cudaStream_t s,
                   void (*body)(void*), void* ctx, void (*drop)(void*)) {
  GraphNode n;
  n.kind = GraphNode::Launch;
  n.name = kernel_name;
  n.kernel = kernel;
  n.grid = grid;
  n.block = block;
  n.smem = smem;
  n.body = body;
  n.ctx = std::shared_ptr<void>(ctx, drop);
  std::shared_ptr<void> keep = n.ctx;
  cudaError_t err;
  if (record(s, std::move(n), &err)) return;
  run_launch(kernel_name, kernel, grid, block, smem, s, body, keep.get());
}

bool capture_record_memset(cudaStream_t s, void* p, int value, size_t bytes, cudaError_t* err) {
  if (g_captures_open.load() == 0 || !bytes) return false;
  if (!in_device(p, bytes)) return false;  // cudaMemset reports it
  GraphNode n;
  n.kind = GraphNode::Memset;
  n.dst = p;
  n.value = value;
  n.bytes = bytes;
  return record(s, std::move(n), err);
}

bool capture_record_copy(cudaStream_t s, void* dst, const void* src, size_t bytes, cudaError_t* err) {
  if (g_captures_open.load() == 0 || !bytes) return false;
  if (!in_device(dst, bytes) || !in_device(src, bytes)) return false;  // cudaMemcpy reports it
  GraphNode n;
  n.kind = GraphNode::Copy;
  n.dst = dst;
  n.src = src;
  n.bytes = bytes;
  return record(s, std::move(n), err);
}
}  // namespace gpt_emu

cudaError_t cudaStreamBeginCapture(cudaStream_t s, cudaStreamCaptureMode) {
  if (gpt_emu::legacy(s))
    return set_error(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture on the legacy default stream");
  std::lock_guard<std::mutex> lk(gpt_emu::g_capture_mu);
  if (gpt_emu::captures().count(s))
    return set_error(cudaErrorStreamCaptureUnsupported, "cudaStreamBeginCapture: the stream already captures");
  gpt_emu::captures()[s].graph = new CUgraph_st();
  ++gpt_emu::g_captures_open;
  return cudaSuccess;
}
cudaError_t cudaStreamEndCapture(cudaStream_t s, cudaGraph_t* graph) {
  std::lock_guard<std::mutex> lk(gpt_emu::g_capture_mu);
  auto it = gpt_emu::captures().find(s);
  if (it == gpt_emu::captures().end())
    return set_error(cudaErrorInvalidValue, "cudaStreamEndCapture: the stream does not capture");
  gpt_emu::Capture c = it->second;
  gpt_emu::captures().erase(it);
  --gpt_emu::g_captures_open;
  if (!c.invalid.empty()) {
    delete c.graph;
    *graph = nullptr;
    return set_error(cudaErrorStreamCaptureInvalidated, c.invalid);
  }
  *graph = c.graph;
  return cudaSuccess;
}
cudaError_t cudaStreamIsCapturing(cudaStream_t s, cudaStreamCaptureStatus* status) {
  std::lock_guard<std::mutex> lk(gpt_emu::g_capture_mu);
  auto it = gpt_emu::captures().find(s);
  *status = it == gpt_emu::captures().end()    ? cudaStreamCaptureStatusNone
            : it->second.invalid.empty() ? cudaStreamCaptureStatusActive
                                         : cudaStreamCaptureStatusInvalidated;
  return cudaSuccess;
}
cudaError_t cudaGraphInstantiate(cudaGraphExec_t* exec, cudaGraph_t graph, unsigned long long) {
  if (!graph) return set_error(cudaErrorInvalidValue, "cudaGraphInstantiate: null graph");
  *exec = new CUgraphExec_st{graph->nodes};
  return cudaSuccess;
}
cudaError_t cudaGraphLaunch(cudaGraphExec_t exec, cudaStream_t s) {
  if (!exec) return set_error(cudaErrorInvalidResourceHandle, "cudaGraphLaunch: null graph");
  if (gpt_emu::capture_open()) {
    std::lock_guard<std::mutex> lk(gpt_emu::g_capture_mu);
    if (gpt_emu::captures().count(s) || (gpt_emu::legacy(s) && !gpt_emu::captures().empty()))
      return gpt_emu::invalidate_all(cudaErrorStreamCaptureUnsupported,
                                     "cudaGraphLaunch during a capture (not emulated)");
  }
  for (const gpt_emu::GraphNode& n : exec->nodes) {
    switch (n.kind) {
      case gpt_emu::GraphNode::Launch:
        gpt_emu::run_launch(n.name, n.kernel, n.grid, n.block, n.smem, s, n.body, n.ctx.get());
        break;
      case gpt_emu::GraphNode::Memset:
        std::memset(n.dst, n.value, n.bytes);
        break;
      case gpt_emu::GraphNode::Copy:
        std::memmove(n.dst, n.src, n.bytes);
        break;
    }
  }
  return cudaSuccess;
}
cudaError_t cudaGraphExecDestroy(cudaGraphExec_t exec) {
  delete exec;
  return cudaSuccess;
}
cudaError_t cudaGraphDestroy(cudaGraph_t graph) {
  delete graph;
  return cudaSuccess;
}
