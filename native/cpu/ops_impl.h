// Per-ISA bodies of the CPU ops (declared in ops.h), compiled once per
// instruction-set path (native/sources.cmake). Plain loops over
// independent elements are left to the compiler's vectorizer (they are built
// with -O3 and the path's flags); reductions use explicit vectors so their
// summation order is fixed by the code, not by the optimizer.
#include <cmath>
#include <cstdint>

#include "ops.h"
#include "simd.h"

namespace gpt {
namespace cpu {
namespace GPT_ISA_NS {

namespace {

// Sum of a row, vector lanes first then a fixed tree (vhsum), tail last.
inline float row_sum(const float* x, int n) {
  vf a0 = vzero(), a1 = vzero();
  int i = 0;
  for (; i + 2 * W <= n; i += 2 * W) {
    a0 += vload(x + i);
    a1 += vload(x + i + W);
  }
  for (; i + W <= n; i += W) a0 += vload(x + i);
  float s = vhsum(a0 + a1);
  for (; i < n; ++i) s += x[i];
  return s;
}

constexpr float kGeluS = 0.7978845608028654f;  // sqrt(2 / pi)
constexpr float kGeluA = 0.044715f;

// tanh(u) = 1 - 2 / (exp(2u) + 1): exact limits at +-inf, no overflow trouble
// (exp -> inf gives 1, exp -> 0 gives -1).
inline vf vtanh(vf u) { return vsplat(1.0f) - vsplat(2.0f) / (vexp(u + u) + vsplat(1.0f)); }

inline vf vgelu(vf x) {
  vf u = vsplat(kGeluS) * (x + vsplat(kGeluA) * x * x * x);
  return vsplat(0.5f) * x * (vsplat(1.0f) + vtanh(u));
}

inline vf vgelu_grad(vf x) {
  vf x2 = x * x;
  vf u = vsplat(kGeluS) * (x + vsplat(kGeluA) * x2 * x);
  vf t = vtanh(u);
  vf du = vsplat(kGeluS) * (vsplat(1.0f) + vsplat(3.0f * kGeluA) * x2);
  return vsplat(0.5f) * (vsplat(1.0f) + t) + vsplat(0.5f) * x * (vsplat(1.0f) - t * t) * du;
}

}  // namespace

void op_embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int T, int C,
                          int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* a = wte + static_cast<int64_t>(tokens[r]) * C;
    const float* b = wpe + (r % T) * C;
    float* o = out + r * C;
    for (int c = 0; c < C; ++c) o[c] = a[c] + b[c];
  }
}

void op_embedding_backward_cols(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int64_t M, int T,
                                int C, int c0, int c1) {
  for (int64_t r = 0; r < M; ++r) {
    const float* d = dout + r * C;
    float* a = dwte + static_cast<int64_t>(tokens[r]) * C;
    float* b = dwpe + (r % T) * C;
    for (int c = c0; c < c1; ++c) {
      a[c] += d[c];
      b[c] += d[c];
    }
  }
}

namespace {

// One row of LayerNorm: o = (x - mean) * rstd * gamma + beta, mean and
// variance in two passes (centered variance). Shared by the plain and the
// residual-fused op, so both give the same bits for the same row.
inline void layernorm_row(float* o, float* mean, float* rstd, const float* x, const float* gamma, const float* beta,
                          int C, float eps) {
  float mu = row_sum(x, C) / C;
  vf acc = vzero();
  const vf vmu = vsplat(mu);
  int i = 0;
  for (; i + W <= C; i += W) {
    vf d = vload(x + i) - vmu;
    acc = vfma(d, d, acc);
  }
  float var = vhsum(acc);
  for (; i < C; ++i) var += (x[i] - mu) * (x[i] - mu);
  var /= C;
  float rs = 1.0f / std::sqrt(var + eps);
  for (int c = 0; c < C; ++c) o[c] = (x[c] - mu) * rs * gamma[c] + beta[c];
  *mean = mu;
  *rstd = rs;
}

}  // namespace

void op_layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gamma,
                          const float* beta, int C, float eps, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) layernorm_row(out + r * C, mean + r, rstd + r, inp + r * C, gamma, beta, C, eps);
}

void op_residual_layernorm_forward(float* resid, float* out, float* mean, float* rstd, const float* a, const float* b,
                                   const float* gamma, const float* beta, int C, float eps, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    // The sum is written once and normalized while the row is still in L1.
    // resid may alias a or b: each element is read before it is written.
    float* x = resid + r * C;
    const float* ar = a + r * C;
    const float* br = b + r * C;
    for (int c = 0; c < C; ++c) x[c] = ar[c] + br[c];
    layernorm_row(out + r * C, mean + r, rstd + r, x, gamma, beta, C, eps);
  }
}

void op_layernorm_backward_rows(float* dinp, const float* dout, const float* inp, const float* gamma,
                                const float* mean, const float* rstd, int C, int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    float* dx = dinp + r * C;
    const float mu = mean[r], rs = rstd[r];
    vf sg = vzero(), sgx = vzero();
    const vf vmu = vsplat(mu), vrs = vsplat(rs);
    int i = 0;
    for (; i + W <= C; i += W) {
      vf g = vload(dy + i) * vload(gamma + i);
      vf xh = (vload(x + i) - vmu) * vrs;
      sg += g;
      sgx = vfma(g, xh, sgx);
    }
    float s1 = vhsum(sg), s2 = vhsum(sgx);
    for (; i < C; ++i) {
      float g = dy[i] * gamma[i];
      s1 += g;
      s2 += g * (x[i] - mu) * rs;
    }
    s1 /= C;
    s2 /= C;
    for (int c = 0; c < C; ++c) {
      float g = dy[c] * gamma[c];
      float xh = (x[c] - mu) * rs;
      dx[c] += rs * (g - s1 - xh * s2);
    }
  }
}

void op_layernorm_backward_cols(float* dgamma, float* dbeta, const float* dout, const float* inp, const float* mean,
                                const float* rstd, int64_t M, int C, int c0, int c1) {
  constexpr int kMax = 256;  // columns per call (cpu_backend.cc splits by 64)
  float ag[kMax], ab[kMax];
  for (int c0b = c0; c0b < c1; c0b += kMax) {
    int n = c1 - c0b < kMax ? c1 - c0b : kMax;
    for (int j = 0; j < n; ++j) ag[j] = ab[j] = 0.0f;
    for (int64_t r = 0; r < M; ++r) {
      const float* x = inp + r * C + c0b;
      const float* dy = dout + r * C + c0b;
      const float mu = mean[r], rs = rstd[r];
      for (int j = 0; j < n; ++j) {
        ag[j] += dy[j] * ((x[j] - mu) * rs);
        ab[j] += dy[j];
      }
    }
    for (int j = 0; j < n; ++j) {
      dgamma[c0b + j] += ag[j];
      dbeta[c0b + j] += ab[j];
    }
  }
}

void op_gelu_forward(float* out, const float* inp, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore(out + i, vgelu(vload(inp + i)));
  if (i < n) {
    int k = static_cast<int>(n - i);
    vstore_partial(out + i, vgelu(vload_partial(inp + i, k)), k);
  }
}

void op_gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  int64_t i = 0;
  for (; i + W <= n; i += W) vstore(dinp + i, vload(dout + i) * vgelu_grad(vload(inp + i)));
  if (i < n) {
    int k = static_cast<int>(n - i);
    vstore_partial(dinp + i, vload_partial(dout + i, k) * vgelu_grad(vload_partial(inp + i, k)), k);
  }
}

void op_add(float* out, const float* a, const float* b, int64_t n) {
  for (int64_t i = 0; i < n; ++i) out[i] = a[i] + b[i];
}

void op_scale(float* x, float s, int64_t n) {
  for (int64_t i = 0; i < n; ++i) x[i] *= s;
}

void op_crossentropy_rows(float* logits, const int32_t* targets, int V, int Vp, float dscale, double* row_loss,
                          int64_t r0, int64_t r1) {
  for (int64_t r = r0; r < r1; ++r) {
    float* x = logits + r * Vp;
    const int32_t tgt = targets[r];
    if (tgt < 0) {
      row_loss[r] = 0;
      if (dscale != 0.0f)
        for (int c = 0; c < Vp; ++c) x[c] = 0.0f;
      continue;
    }
    // max
    vf vm = vsplat(-INFINITY);
    int i = 0;
    for (; i + W <= V; i += W) vm = vmax(vm, vload(x + i));
    float mx = vhmax(vm);
    for (; i < V; ++i) mx = x[i] > mx ? x[i] : mx;
    // sum of exp
    const vf vmx = vsplat(mx);
    vf s0 = vzero(), s1 = vzero();
    i = 0;
    for (; i + 2 * W <= V; i += 2 * W) {
      s0 += vexp(vload(x + i) - vmx);
      s1 += vexp(vload(x + i + W) - vmx);
    }
    for (; i + W <= V; i += W) s0 += vexp(vload(x + i) - vmx);
    float sum = vhsum(s0 + s1);
    for (; i < V; ++i) sum += sexp(x[i] - mx);
    const float lse = mx + std::log(sum);
    row_loss[r] = static_cast<double>(lse) - static_cast<double>(x[tgt]);
    if (dscale != 0.0f) {
      // softmax = exp(x - lse); gradient (softmax - onehot) * dscale, in place
      const vf vl = vsplat(lse), vs = vsplat(dscale);
      i = 0;
      for (; i + W <= V; i += W) vstore(x + i, vexp(vload(x + i) - vl) * vs);
      for (; i < V; ++i) x[i] = sexp(x[i] - lse) * dscale;
      x[tgt] -= dscale;
      for (int c = V; c < Vp; ++c) x[c] = 0.0f;
    }
  }
}

double op_sum_squares(const float* g, int64_t n) {
  // Blocks of 1024 summed in float vectors, blocks added in double.
  double total = 0;
  int64_t i = 0;
  while (i < n) {
    int64_t end = n - i > 1024 ? i + 1024 : n;
    vf a0 = vzero(), a1 = vzero();
    for (; i + 2 * W <= end; i += 2 * W) {
      vf x0 = vload(g + i), x1 = vload(g + i + W);
      a0 = vfma(x0, x0, a0);
      a1 = vfma(x1, x1, a1);
    }
    float s = vhsum(a0 + a1);
    for (; i < end; ++i) s += g[i] * g[i];
    total += s;
  }
  return total;
}

void op_adamw(float* p, const float* g, float* m, float* v, int64_t n, float lr, float beta1, float beta2, float eps,
              float wd, float gscale, float bc1, float bc2) {
  const float ib1 = 1.0f - beta1, ib2 = 1.0f - beta2;
  const float rbc1 = 1.0f / bc1, rbc2 = 1.0f / bc2;
  for (int64_t i = 0; i < n; ++i) {
    float gi = g[i] * gscale;
    float mi = beta1 * m[i] + ib1 * gi;
    float vi = beta2 * v[i] + ib2 * gi * gi;
    m[i] = mi;
    v[i] = vi;
    float upd = (mi * rbc1) / (std::sqrt(vi * rbc2) + eps);
    p[i] = p[i] - lr * (upd + wd * p[i]);
  }
}

}  // namespace GPT_ISA_NS
}  // namespace cpu
}  // namespace gpt
