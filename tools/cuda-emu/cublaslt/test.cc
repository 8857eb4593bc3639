// Tests of the emulator's stand-in libcublasLt (standin.cc) against a plain
// loop, before the engine relies on it: gpt_emu_cublaslt_test <path to
// gpt_emu_cublaslt.so>. Each case draws the logical matrices op(A) [m, k],
// op(B) [k, n], C [m, n] and the bias first, then stores them the way
// cuBLASLt's column-major contract says (a transposed operand stored as its
// transpose, every leading dimension padded with NaN), calls the library
// through dlopen as the engine does, and compares D with the triple loop over
// the logical matrices. Exit 0 when every check passed.
#include <dlfcn.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

namespace {

struct Algo {
  uint64_t data[8];
};
struct Result {
  Algo algo;
  size_t workspaceSize;
  int state;
  float wavesCount;
  int reserved[4];
};
typedef void* H;
struct Api {
  int (*Create)(H*);
  int (*DescCreate)(H*, int, int);
  int (*DescDestroy)(H);
  int (*DescSet)(H, int, const void*, size_t);
  int (*LayoutCreate)(H*, int, uint64_t, uint64_t, int64_t);
  int (*LayoutDestroy)(H);
  int (*PrefCreate)(H*);
  int (*PrefDestroy)(H);
  int (*PrefSet)(H, int, const void*, size_t);
  int (*Heuristic)(H, H, H, H, H, H, H, int, Result*, int*);
  int (*Matmul)(H, H, const void*, const void*, H, const void*, H, const void*, const void*, H, void*, H,
                const Algo*, void*, size_t, void*);
};

int failures = 0, checks = 0;
bool quiet = false;  // the fault cases fail on purpose
void expect(bool ok, const std::string& what) {
  ++checks;
  if (!ok) {
    ++failures;
    if (!quiet && failures <= 20) std::fprintf(stderr, "FAIL: %s\n", what.c_str());
  }
}

uint32_t g_seed = 1;
float rnd() {
  g_seed = g_seed * 1103515245u + 12345u;
  return static_cast<float>((g_seed >> 9) & 0xffff) / 32768.0f - 1.0f;
}

// bf16 by truncating to the 8 high mantissa bits and rounding half to even,
// written out with integer arithmetic on the parts.
float to_bf16(float x) {
  if (std::isnan(x)) return x;
  uint32_t u;
  std::memcpy(&u, &x, 4);
  const uint32_t low = u & 0xffffu, high = u >> 16;
  uint32_t kept = high;
  if (low > 0x8000u || (low == 0x8000u && (high & 1u))) kept = high + 1;
  const uint32_t r = kept << 16;
  float f;
  std::memcpy(&f, &r, 4);
  return f;
}

struct Case {
  int transa, transb, m, n, k, pad, compute;
  bool bias;
  float alpha, beta;
};

// Stores logical [rows, cols] values column-major with leading dimension ld,
// transposed first when `trans` (the stored matrix is then [cols, rows]).
std::vector<float> store(const std::vector<float>& logical, int rows, int cols, bool trans, int64_t ld,
                         uint64_t* srows, uint64_t* scols) {
  const int sr = trans ? cols : rows, sc = trans ? rows : cols;
  std::vector<float> out(static_cast<size_t>(ld) * sc, std::nanf(""));
  for (int r = 0; r < rows; ++r)
    for (int c = 0; c < cols; ++c) {
      const int stored_r = trans ? c : r, stored_c = trans ? r : c;
      out[stored_r + static_cast<size_t>(stored_c) * ld] = logical[r * cols + c];
    }
  *srows = sr;
  *scols = sc;
  return out;
}

std::string name_of(const Case& c) {
  char b[160];
  std::snprintf(b, sizeof b, "%s%s m%d n%d k%d pad%d %s%s alpha %g beta %g", c.transa ? "T" : "N", c.transb ? "T" : "N",
                c.m, c.n, c.k, c.pad, c.compute == 75 ? "fast-16bf" : "32f", c.bias ? " bias" : "", c.alpha, c.beta);
  return b;
}

void run_case(const Api& api, H handle, const Case& c) {
  const int m = c.m, n = c.n, k = c.k;
  std::vector<float> opa(m * k), opb(k * n), cm(m * n), bias(m);
  for (float& x : opa) x = rnd();
  for (float& x : opb) x = rnd();
  for (float& x : cm) x = rnd();
  for (float& x : bias) x = rnd();
  uint64_t ar, ac, br, bc, cr, cc;
  const int64_t lda = (c.transa ? k : m) + c.pad, ldb = (c.transb ? n : k) + c.pad, ldc = m + c.pad;
  std::vector<float> A = store(opa, m, k, c.transa, lda, &ar, &ac);
  std::vector<float> B = store(opb, k, n, c.transb, ldb, &br, &bc);
  std::vector<float> C = store(cm, m, n, false, ldc, &cr, &cc);
  if (c.beta == 0.0f)
    for (float& x : C) x = std::nanf("");  // must not be read
  // The plain loop.
  std::vector<double> want(m * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) {
        float x = opa[i * k + p], y = opb[p * n + j];
        if (c.compute == 75) {
          x = to_bf16(x);
          y = to_bf16(y);
        }
        s += static_cast<double>(x) * y;
      }
      double v = c.alpha * s;
      if (c.beta != 0.0f) v += c.beta * static_cast<double>(cm[i * n + j]);
      if (c.bias) v += bias[i];
      want[i * n + j] = v;
    }
  H desc, la, lb, lc, pref;
  api.DescCreate(&desc, c.compute, 0);
  const int32_t ta = c.transa, tb = c.transb;
  const uint32_t epi = c.bias ? 4 : 1;
  const void* bp = bias.data();
  expect(api.DescSet(desc, 3, &ta, 4) == 0 && api.DescSet(desc, 4, &tb, 4) == 0 && api.DescSet(desc, 7, &epi, 4) == 0 &&
             (!c.bias || api.DescSet(desc, 8, &bp, sizeof bp) == 0),
         name_of(c) + ": descriptor attributes");
  api.LayoutCreate(&la, 0, ar, ac, lda);
  api.LayoutCreate(&lb, 0, br, bc, ldb);
  api.LayoutCreate(&lc, 0, cr, cc, ldc);
  api.PrefCreate(&pref);
  // Host vectors are not 256-byte aligned (the documented default minimum):
  // ask for algorithms that take 4-byte alignment, as the engine does.
  const uint32_t four = 4;
  for (int attr = 5; attr <= 8; ++attr) api.PrefSet(pref, attr, &four, 4);
  Result r{};
  int got = 0;
  const int hs = api.Heuristic(handle, desc, la, lb, lc, lc, pref, 1, &r, &got);
  expect(hs == 0 && got == 1 && r.state == 0, name_of(c) + ": heuristic");
  if (hs == 0 && got == 1) {
    const int ms = api.Matmul(handle, desc, &c.alpha, A.data(), la, B.data(), lb, &c.beta, C.data(), lc, C.data(), lc,
                              &r.algo, nullptr, 0, nullptr);
    expect(ms == 0, name_of(c) + ": matmul status " + std::to_string(ms));
    double worst = 0;
    bool pad_kept = true;
    for (int j = 0; j < n; ++j)
      for (int64_t i = 0; i < ldc; ++i) {
        const float v = C[i + j * ldc];
        if (i < m) {
          const double w = want[i * n + j];
          const double e = std::fabs(v - w) / (1.0 + std::fabs(w));
          if (!(e <= worst)) worst = std::isnan(e) ? INFINITY : e;
        } else if (!std::isnan(v)) {
          pad_kept = false;
        }
      }
    expect(worst < 1e-6, name_of(c) + ": worst error " + std::to_string(worst));
    expect(pad_kept, name_of(c) + ": wrote into the padding");
  }
  api.PrefDestroy(pref);
  api.LayoutDestroy(la);
  api.LayoutDestroy(lb);
  api.LayoutDestroy(lc);
  api.DescDestroy(desc);
}

// ---- bf16 storage ----------------------------------------------------------
// A and B CUDA_R_16BF (14) with CUBLAS_COMPUTE_32F (68); C and D both bf16
// or both fp32; the bias fp32, bf16 or (BIAS_DATA_TYPE unset) D's type.
struct Bf16Case {
  int transa, transb, m, n, k, pad;
  bool d_bf16;
  int bias;  // -2: no bias; -1: attribute unset (D's type); 0: fp32; 14: bf16
  float beta;
};

uint16_t bits_bf16(float x) {  // x already a bf16 value
  uint32_t u;
  std::memcpy(&u, &x, 4);
  return static_cast<uint16_t>(u >> 16);
}
float value_bf16(uint16_t h) {
  const uint32_t u = static_cast<uint32_t>(h) << 16;
  float f;
  std::memcpy(&f, &u, 4);
  return f;
}

std::string bf16_name(const Bf16Case& c) {
  char b[160];
  std::snprintf(b, sizeof b, "bf16 %s%s m%d n%d k%d pad%d D %s bias %d beta %g", c.transa ? "T" : "N",
                c.transb ? "T" : "N", c.m, c.n, c.k, c.pad, c.d_bf16 ? "bf16" : "fp32", c.bias, c.beta);
  return b;
}

void run_bf16_case(const Api& api, H handle, const Bf16Case& c) {
  const int m = c.m, n = c.n, k = c.k;
  // Logical values, all bf16-representable (so each has one bf16 encoding).
  std::vector<float> opa(m * k), opb(k * n), cm(m * n), bias(m);
  for (float& x : opa) x = to_bf16(rnd());
  for (float& x : opb) x = to_bf16(rnd());
  for (float& x : cm) x = to_bf16(rnd());
  for (float& x : bias) x = rnd();
  const bool bias_bf16 = c.bias == 14 || (c.bias == -1 && c.d_bf16);
  if (bias_bf16)
    for (float& x : bias) x = to_bf16(x);
  const uint16_t pad_bits = 0x7fc1;  // a NaN that must stay in the padding
  // Column-major storage of bf16 bits, transposed when asked, padded.
  auto store16 = [&](const std::vector<float>& logical, int rows, int cols, bool trans, int64_t ld, uint64_t* sr,
                     uint64_t* sc) {
    *sr = trans ? cols : rows;
    *sc = trans ? rows : cols;
    std::vector<uint16_t> out(static_cast<size_t>(ld) * *sc, pad_bits);
    for (int r = 0; r < rows; ++r)
      for (int q = 0; q < cols; ++q) out[(trans ? q : r) + static_cast<size_t>(trans ? r : q) * ld] = bits_bf16(logical[r * cols + q]);
    return out;
  };
  uint64_t ar, ac, br, bc, cr, cc;
  const int64_t lda = (c.transa ? k : m) + c.pad, ldb = (c.transb ? n : k) + c.pad, ldc = m + c.pad;
  std::vector<uint16_t> A = store16(opa, m, k, c.transa, lda, &ar, &ac);
  std::vector<uint16_t> B = store16(opb, k, n, c.transb, ldb, &br, &bc);
  std::vector<uint16_t> C16 = store16(cm, m, n, false, ldc, &cr, &cc);
  std::vector<float> C32 = store(cm, m, n, false, ldc, &cr, &cc);
  std::vector<uint16_t> bias16(m);
  for (int i = 0; i < m; ++i) bias16[i] = bits_bf16(bias[i]);
  // The plain loop over the logical matrices.
  std::vector<double> want(m * n);
  for (int i = 0; i < m; ++i)
    for (int j = 0; j < n; ++j) {
      double s = 0;
      for (int p = 0; p < k; ++p) s += static_cast<double>(opa[i * k + p]) * opb[p * n + j];
      if (c.beta != 0.0f) s += c.beta * static_cast<double>(cm[i * n + j]);
      if (c.bias != -2) s += bias[i];
      want[i * n + j] = s;
    }
  H desc, la, lb, lc, pref;
  api.DescCreate(&desc, 68, 0);
  const int32_t ta = c.transa, tb = c.transb;
  const uint32_t epi = c.bias != -2 ? 4 : 1;
  const void* bp = bias_bf16 ? static_cast<const void*>(bias16.data()) : static_cast<const void*>(bias.data());
  bool ok = api.DescSet(desc, 3, &ta, 4) == 0 && api.DescSet(desc, 4, &tb, 4) == 0 && api.DescSet(desc, 7, &epi, 4) == 0;
  if (c.bias != -2) ok = ok && api.DescSet(desc, 8, &bp, sizeof bp) == 0;
  if (c.bias >= 0) ok = ok && api.DescSet(desc, 26, &c.bias, 4) == 0;
  expect(ok, bf16_name(c) + ": descriptor attributes");
  const int dt = c.d_bf16 ? 14 : 0;
  api.LayoutCreate(&la, 14, ar, ac, lda);
  api.LayoutCreate(&lb, 14, br, bc, ldb);
  api.LayoutCreate(&lc, dt, cr, cc, ldc);
  api.PrefCreate(&pref);
  const uint32_t two = 2;
  for (int attr = 5; attr <= 8; ++attr) api.PrefSet(pref, attr, &two, 4);
  Result r{};
  int got = 0;
  const int hs = api.Heuristic(handle, desc, la, lb, lc, lc, pref, 1, &r, &got);
  expect(hs == 0 && got == 1, bf16_name(c) + ": heuristic " + std::to_string(hs));
  if (hs == 0 && got == 1) {
    const float one = 1.0f;
    void* Cp = c.d_bf16 ? static_cast<void*>(C16.data()) : static_cast<void*>(C32.data());
    const int ms = api.Matmul(handle, desc, &one, A.data(), la, B.data(), lb, &c.beta, Cp, lc, Cp, lc, &r.algo,
                              nullptr, 0, nullptr);
    expect(ms == 0, bf16_name(c) + ": matmul status " + std::to_string(ms));
    bool exact = true, pad_kept = true;
    for (int j = 0; j < n; ++j)
      for (int64_t i = 0; i < ldc; ++i) {
        const size_t at = i + static_cast<size_t>(j) * ldc;
        if (i >= m) {
          if (c.d_bf16 ? C16[at] != pad_bits : !std::isnan(C32[at])) pad_kept = false;
          continue;
        }
        const float w = static_cast<float>(want[i * n + j]);
        // fp32 D: the float of the exact sum; bf16 D: that rounded once to bf16.
        if (c.d_bf16 ? value_bf16(C16[at]) != to_bf16(w) : std::fabs(C32[at] - w) > 1e-6f * (1 + std::fabs(w)))
          exact = false;
      }
    expect(exact, bf16_name(c) + ": D differs from the plain loop");
    expect(pad_kept, bf16_name(c) + ": wrote into the padding");
  }
  api.PrefDestroy(pref);
  api.LayoutDestroy(la);
  api.LayoutDestroy(lb);
  api.LayoutDestroy(lc);
  api.DescDestroy(desc);
}

// The type combinations cublasLtMatmul does not document: NOT_SUPPORTED.
void bf16_refusals(const Api& api, H handle) {
  struct Combo {
    int compute, a, b, cd_c, cd_d;
    const char* what;
  };
  const Combo bad[] = {
      {75, 14, 14, 0, 0, "bf16 A/B with CUBLAS_COMPUTE_32F_FAST_16BF"},
      {68, 14, 0, 0, 0, "bf16 A with fp32 B"},
      {68, 0, 14, 0, 0, "fp32 A with bf16 B"},
      {68, 0, 0, 14, 14, "fp32 A/B with a bf16 C/D"},
      {68, 14, 14, 0, 14, "a fp32 C with a bf16 D"},
      {68, 2, 2, 2, 2, "CUDA_R_16F (not implemented)"},
  };
  for (const Combo& b : bad) {
    H desc, la, lb, lc, ld, pref;
    api.DescCreate(&desc, b.compute, 0);
    api.LayoutCreate(&la, b.a, 4, 3, 4);
    api.LayoutCreate(&lb, b.b, 3, 5, 3);
    api.LayoutCreate(&lc, b.cd_c, 4, 5, 4);
    api.LayoutCreate(&ld, b.cd_d, 4, 5, 4);
    api.PrefCreate(&pref);
    Result r{};
    int got = 0;
    expect(api.Heuristic(handle, desc, la, lb, lc, ld, pref, 1, &r, &got) == 15, std::string(b.what) + " is NOT_SUPPORTED");
    api.PrefDestroy(pref);
    for (H l : {la, lb, lc, ld}) api.LayoutDestroy(l);
    api.DescDestroy(desc);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 2) {
    std::fprintf(stderr, "usage: %s <gpt_emu_cublaslt.so>\n", argv[0]);
    return 2;
  }
  unsetenv("GPT_EMU_CUBLASLT_FAULT");
  void* h = dlopen(argv[1], RTLD_NOW | RTLD_LOCAL);
  if (!h) {
    std::fprintf(stderr, "cannot open %s: %s\n", argv[1], dlerror());
    return 1;
  }
  Api api{};
  api.Create = reinterpret_cast<decltype(api.Create)>(dlsym(h, "cublasLtCreate"));
  api.DescCreate = reinterpret_cast<decltype(api.DescCreate)>(dlsym(h, "cublasLtMatmulDescCreate"));
  api.DescDestroy = reinterpret_cast<decltype(api.DescDestroy)>(dlsym(h, "cublasLtMatmulDescDestroy"));
  api.DescSet = reinterpret_cast<decltype(api.DescSet)>(dlsym(h, "cublasLtMatmulDescSetAttribute"));
  api.LayoutCreate = reinterpret_cast<decltype(api.LayoutCreate)>(dlsym(h, "cublasLtMatrixLayoutCreate"));
  api.LayoutDestroy = reinterpret_cast<decltype(api.LayoutDestroy)>(dlsym(h, "cublasLtMatrixLayoutDestroy"));
  api.PrefCreate = reinterpret_cast<decltype(api.PrefCreate)>(dlsym(h, "cublasLtMatmulPreferenceCreate"));
  api.PrefDestroy = reinterpret_cast<decltype(api.PrefDestroy)>(dlsym(h, "cublasLtMatmulPreferenceDestroy"));
  api.PrefSet = reinterpret_cast<decltype(api.PrefSet)>(dlsym(h, "cublasLtMatmulPreferenceSetAttribute"));
  api.Heuristic = reinterpret_cast<decltype(api.Heuristic)>(dlsym(h, "cublasLtMatmulAlgoGetHeuristic"));
  api.Matmul = reinterpret_cast<decltype(api.Matmul)>(dlsym(h, "cublasLtMatmul"));
  expect(api.Create && api.DescCreate && api.DescDestroy && api.DescSet && api.LayoutCreate && api.LayoutDestroy &&
             api.PrefCreate && api.PrefDestroy && api.PrefSet && api.Heuristic && api.Matmul,
         "every function the engine uses is exported");
  if (failures) return 1;
  H handle;
  expect(api.Create(&handle) == 0, "cublasLtCreate");

  // Every transpose combination, both compute types, bias or not, beta 0 / 1 /
  // 0.5, alpha 1 / 2, packed and padded, sizes off any tile and with 1s.
  const int sizes[][3] = {{7, 5, 3}, {1, 9, 4}, {6, 1, 11}, {13, 17, 1}, {5, 5, 5}};
  for (const auto& s : sizes)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int compute : {68, 75})
          for (int bias = 0; bias < 2; ++bias)
            for (float beta : {0.0f, 1.0f, 0.5f})
              for (int pad : {0, 3})
                run_case(api, handle, {ta, tb, s[0], s[1], s[2], pad, compute, bias != 0, pad ? 2.0f : 1.0f, beta});

  // bf16 storage: every transpose, D bf16 or fp32, each bias type, beta 0 / 1
  // (beta reads a C of D's type), packed and padded.
  const int sizes16[][3] = {{7, 5, 3}, {1, 9, 4}, {6, 1, 11}, {13, 17, 1}, {9, 6, 21}};
  for (const auto& s : sizes16)
    for (int ta = 0; ta < 2; ++ta)
      for (int tb = 0; tb < 2; ++tb)
        for (int d16 = 0; d16 < 2; ++d16)
          for (int bias : {-2, -1, 0, 14})
            for (float beta : {0.0f, 1.0f})
              for (int pad : {0, 3}) run_bf16_case(api, handle, {ta, tb, s[0], s[1], s[2], pad, d16 != 0, bias, beta});
  bf16_refusals(api, handle);

  // bf16 rounding matters: 1 + 2^-9 is not a bf16 value (rounds to 1), so
  // fast-16bf and 32f must differ on it.
  {
    H desc, l;
    float a = 1.0f + 1.0f / 512, b = 1.0f, c = 0, one = 1, zero = 0;
    Result r{};
    int got = 0;
    float out32 = 0, out16 = 0;
    for (int compute : {68, 75}) {
      api.DescCreate(&desc, compute, 0);
      api.LayoutCreate(&l, 0, 1, 1, 1);
      H pref;
      api.PrefCreate(&pref);
      const uint32_t four = 4;
      for (int attr = 5; attr <= 8; ++attr) api.PrefSet(pref, attr, &four, 4);
      api.Heuristic(handle, desc, l, l, l, l, pref, 1, &r, &got);
      api.Matmul(handle, desc, &one, &a, l, &b, l, &zero, &c, l, &c, l, &r.algo, nullptr, 0, nullptr);
      (compute == 68 ? out32 : out16) = c;
      api.PrefDestroy(pref);
      api.LayoutDestroy(l);
      api.DescDestroy(desc);
    }
    expect(out32 == a && out16 == 1.0f, "fast-16bf rounds the inputs to bf16, 32f does not");
  }

  // Errors, as documented.
  {
    H desc, la, lb, lc, pref;
    Result r{};
    int got = 0;
    api.DescCreate(&desc, 68, 0);
    api.LayoutCreate(&la, 0, 4, 3, 4);  // op(A) 4 x 3
    api.LayoutCreate(&lb, 0, 2, 5, 2);  // op(B) 2 x 5: k does not match
    api.LayoutCreate(&lc, 0, 4, 5, 4);
    api.PrefCreate(&pref);
    expect(api.Heuristic(handle, desc, la, lb, lc, lc, pref, 1, &r, &got) == 7, "a k mismatch is INVALID_VALUE");
    const int32_t t = 1;
    expect(api.DescSet(desc, 3, &t, 8) == 7, "an attribute of the wrong size is INVALID_VALUE");
    const uint32_t gelu = 32;
    api.DescSet(desc, 7, &gelu, 4);
    H lb2;
    api.LayoutCreate(&lb2, 0, 3, 5, 3);
    expect(api.Heuristic(handle, desc, la, lb2, lc, lc, pref, 1, &r, &got) == 15, "an unsupported epilogue is NOT_SUPPORTED");
    const uint32_t def = 1;
    api.DescSet(desc, 7, &def, 4);
    H bad_ld;
    api.LayoutCreate(&bad_ld, 0, 4, 3, 3);
    expect(api.Heuristic(handle, desc, bad_ld, lb2, lc, lc, pref, 1, &r, &got) == 7, "ld below the rows is INVALID_VALUE");
    // An algorithm chosen for 256-byte alignment refuses a pointer 4 bytes off.
    expect(api.Heuristic(handle, desc, la, lb2, lc, lc, pref, 1, &r, &got) == 0, "heuristic for the alignment check");
    alignas(256) static float buf[64];
    float one = 1, zero = 0;
    expect(api.Matmul(handle, desc, &one, buf + 1, la, buf, lb2, &zero, buf, lc, buf, lc, &r.algo, nullptr, 0, nullptr) == 7,
           "a pointer aligned below the algorithm's minimum is INVALID_VALUE");
    const uint32_t four = 4;
    for (int attr = 5; attr <= 8; ++attr) api.PrefSet(pref, attr, &four, 4);
    expect(api.Heuristic(handle, desc, la, lb2, lc, lc, pref, 1, &r, &got) == 0, "heuristic with a 4-byte minimum");
    std::vector<float> big(4 * 3 + 1 + 3 * 5 + 4 * 5, 0.0f);
    expect(api.Matmul(handle, desc, &one, big.data() + 1, la, big.data() + 16, lb2, &zero, big.data() + 32, lc,
                      big.data() + 32, lc, &r.algo, nullptr, 0, nullptr) == 0,
           "the same pointer is accepted by an algorithm chosen for it");
    api.PrefDestroy(pref);
    for (H l : {la, lb, lc, lb2, bad_ld}) api.LayoutDestroy(l);
    api.DescDestroy(desc);
  }

  // The faults for the engine's self-check test really are wrong.
  for (const char* f : {"transpose", "bias", "ld", "status", "noalgo"}) {
    setenv("GPT_EMU_CUBLASLT_FAULT", f, 1);
    const int before = failures;
    quiet = true;
    run_case(api, handle, {0, 1, 6, 4, 9, 2, 68, true, 1.0f, 0.0f});
    const bool wrong = failures > before;
    quiet = false;
    failures = before;  // the case's own failures were the point
    expect(wrong, std::string("the fault \"") + f + "\" makes the result wrong or fails");
    unsetenv("GPT_EMU_CUBLASLT_FAULT");
  }

  // "bias-type" reads an fp32 bias as a bf16 D's type.
  setenv("GPT_EMU_CUBLASLT_FAULT", "bias-type", 1);
  {
    const int before = failures;
    quiet = true;
    run_bf16_case(api, handle, {0, 0, 9, 6, 5, 1, true, 0, 0.0f});
    const bool wrong = failures > before;
    failures = before;
    quiet = false;
    expect(wrong, "the fault \"bias-type\" makes a bf16 D with an fp32 bias wrong");
    run_bf16_case(api, handle, {0, 0, 9, 6, 5, 1, false, 0, 0.0f});  // fp32 D, fp32 bias: unaffected
  }
  unsetenv("GPT_EMU_CUBLASLT_FAULT");

  // "no-f32-bias" refuses an fp32 BIAS_DATA_TYPE, and only that.
  setenv("GPT_EMU_CUBLASLT_FAULT", "no-f32-bias", 1);
  {
    H desc;
    api.DescCreate(&desc, 68, 0);
    const int32_t f32 = 0, b16 = 14;
    expect(api.DescSet(desc, 26, &f32, 4) == 7 && api.DescSet(desc, 26, &b16, 4) == 0,
           "the fault \"no-f32-bias\" refuses BIAS_DATA_TYPE CUDA_R_32F alone");
    api.DescDestroy(desc);
  }
  unsetenv("GPT_EMU_CUBLASLT_FAULT");

  // "late-status" fails only above 100,000 multiply-adds.
  setenv("GPT_EMU_CUBLASLT_FAULT", "late-status", 1);
  {
    const int before = failures;
    quiet = true;
    run_case(api, handle, {0, 0, 50, 50, 41, 0, 68, false, 1.0f, 0.0f});
    const bool wrong = failures > before;
    failures = before;
    quiet = false;
    expect(wrong, "the fault \"late-status\" fails a large GEMM");
    run_case(api, handle, {0, 0, 47, 33, 23, 0, 68, true, 1.0f, 0.0f});  // must pass
  }
  unsetenv("GPT_EMU_CUBLASLT_FAULT");

  std::printf("gpt_emu_cublaslt_test: %d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}
