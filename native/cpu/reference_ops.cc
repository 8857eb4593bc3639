// The plain references of reference_ops.h: the formulas as written, in
// double, so they can be checked by eye. Speed does not matter here.
#include "reference_ops.h"

#include <cmath>
#include <limits>
#include <vector>

namespace gpt {
namespace cpu {
namespace ref {

void embedding_forward(float* out, const int32_t* tokens, const float* wte, const float* wpe, int B, int T, int C) {
  for (int64_t r = 0; r < int64_t(B) * T; ++r)
    for (int c = 0; c < C; ++c) {
      const double e = double(wte[int64_t(tokens[r]) * C + c]) + double(wpe[(r % T) * C + c]);
      out[r * C + c] = static_cast<float>(e);
    }
}

void embedding_backward(float* dwte, float* dwpe, const float* dout, const int32_t* tokens, int B, int T, int C) {
  // Sum every row's contribution to each row of the tables, then add it once.
  int vmax = 0;
  for (int64_t r = 0; r < int64_t(B) * T; ++r) vmax = tokens[r] + 1 > vmax ? tokens[r] + 1 : vmax;
  std::vector<double> te(size_t(vmax) * C, 0.0), pe(size_t(T) * C, 0.0);
  for (int64_t r = 0; r < int64_t(B) * T; ++r)
    for (int c = 0; c < C; ++c) {
      te[size_t(tokens[r]) * C + c] += dout[r * C + c];
      pe[size_t(r % T) * C + c] += dout[r * C + c];
    }
  for (size_t i = 0; i < te.size(); ++i) dwte[i] = static_cast<float>(dwte[i] + te[i]);
  for (size_t i = 0; i < pe.size(); ++i) dwpe[i] = static_cast<float>(dwpe[i] + pe[i]);
}

void layernorm_forward(float* out, float* mean, float* rstd, const float* inp, const float* gamma, const float* beta,
                       int M, int C, float eps) {
  for (int64_t r = 0; r < M; ++r) {
    const float* x = inp + r * C;
    double mu = 0;
    for (int c = 0; c < C; ++c) mu += x[c];
    mu /= C;
    double var = 0;
    for (int c = 0; c < C; ++c) var += (x[c] - mu) * (x[c] - mu);
    var /= C;
    const double rs = 1.0 / std::sqrt(var + eps);
    for (int c = 0; c < C; ++c) out[r * C + c] = static_cast<float>((x[c] - mu) * rs * gamma[c] + beta[c]);
    mean[r] = static_cast<float>(mu);
    rstd[r] = static_cast<float>(rs);
  }
}

void layernorm_backward(float* dinp, float* dgamma, float* dbeta, const float* dout, const float* inp,
                        const float* gamma, const float* mean, const float* rstd, int M, int C) {
  std::vector<double> dg(dgamma, dgamma + C), db(dbeta, dbeta + C);
  for (int64_t r = 0; r < M; ++r) {
    const float* x = inp + r * C;
    const float* dy = dout + r * C;
    const double mu = mean[r], rs = rstd[r];
    // xhat = (x - mean) * rstd, g = dout * gamma:
    // dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    double mg = 0, mgx = 0;
    for (int c = 0; c < C; ++c) {
      const double g = double(dy[c]) * gamma[c];
      mg += g;
      mgx += g * (x[c] - mu) * rs;
    }
    mg /= C;
    mgx /= C;
    for (int c = 0; c < C; ++c) {
      const double g = double(dy[c]) * gamma[c];
      const double xh = (x[c] - mu) * rs;
      dinp[r * C + c] = static_cast<float>(dinp[r * C + c] + rs * (g - mg - xh * mgx));
      dg[c] += dy[c] * xh;
      db[c] += dy[c];
    }
  }
  for (int c = 0; c < C; ++c) {
    dgamma[c] = static_cast<float>(dg[c]);
    dbeta[c] = static_cast<float>(db[c]);
  }
}

namespace {
const double kSqrt2OverPi = std::sqrt(2.0 / 3.14159265358979323846);
const double kGeluA = 0.044715;
}  // namespace

void gelu_forward(float* out, const float* inp, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = inp[i];
    out[i] = static_cast<float>(0.5 * x * (1.0 + std::tanh(kSqrt2OverPi * (x + kGeluA * x * x * x))));
  }
}

void gelu_backward(float* dinp, const float* inp, const float* dout, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    const double x = inp[i];
    const double t = std::tanh(kSqrt2OverPi * (x + kGeluA * x * x * x));
    const double du = kSqrt2OverPi * (1.0 + 3.0 * kGeluA * x * x);
    const double grad = 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du;
    dinp[i] = static_cast<float>(dout[i] * grad);
  }
}

double crossentropy(float* logits, const int32_t* targets, int M, int V, int Vp, float dlogits_scale, int64_t* count) {
  double loss = 0;
  int64_t n = 0;
  for (int64_t r = 0; r < M; ++r) {
    float* x = logits + r * Vp;
    const int32_t t = targets[r];
    if (t < 0) {
      if (dlogits_scale != 0.0f)
        for (int c = 0; c < Vp; ++c) x[c] = 0.0f;
      continue;
    }
    double mx = -std::numeric_limits<double>::infinity();
    for (int c = 0; c < V; ++c) mx = x[c] > mx ? x[c] : mx;
    double sum = 0;
    for (int c = 0; c < V; ++c) sum += std::exp(x[c] - mx);
    const double lse = mx + std::log(sum);
    loss += lse - x[t];
    ++n;
    if (dlogits_scale != 0.0f) {
      for (int c = 0; c < V; ++c) x[c] = static_cast<float>((std::exp(x[c] - lse) - (c == t ? 1.0 : 0.0)) * dlogits_scale);
      for (int c = V; c < Vp; ++c) x[c] = 0.0f;
    }
  }
  if (count) *count = n;
  return loss;
}

void crossentropy_rows(float* logits, const int32_t* targets, double* row_loss, int M, int V, int Vp,
                       float dlogits_scale) {
  for (int r = 0; r < M; ++r) {
    int64_t n = 0;
    // One row at a time through the whole-batch reference.
    row_loss[r] = crossentropy(logits + int64_t(r) * Vp, targets + r, 1, V, Vp, dlogits_scale, &n);
  }
}

double loss_sum(const double* row_loss, const int32_t* targets, int M, int64_t* count) {
  double s = 0;
  int64_t n = 0;
  for (int r = 0; r < M; ++r)
    if (targets[r] >= 0) {
      s += row_loss[r];
      ++n;
    }
  if (count) *count = n;
  return s;
}

void classifier_weight_grad(float* dw, const float* dlogits, const float* x, int rows, int Vp, int C) {
  for (int v = 0; v < Vp; ++v)
    for (int c = 0; c < C; ++c) {
      double s = 0;
      for (int r = 0; r < rows; ++r) s += double(dlogits[int64_t(r) * Vp + v]) * x[int64_t(r) * C + c];
      dw[int64_t(v) * C + c] = static_cast<float>(dw[int64_t(v) * C + c] + s);
    }
}

double sum_squares(const float* g, int64_t n) {
  double s = 0;
  for (int64_t i = 0; i < n; ++i) s += double(g[i]) * g[i];
  return s;
}

void adamw(float* param, const float* grad, float* m, float* v, int64_t n, const AdamWParams& a) {
  const double b1 = a.beta1, b2 = a.beta2;
  const double bc1 = 1.0 - std::pow(b1, double(a.step)), bc2 = 1.0 - std::pow(b2, double(a.step));
  for (int64_t i = 0; i < n; ++i) {
    const double g = double(grad[i]) * a.grad_scale;
    const double mi = b1 * m[i] + (1.0 - b1) * g;
    const double vi = b2 * v[i] + (1.0 - b2) * g * g;
    const double update = (mi / bc1) / (std::sqrt(vi / bc2) + a.eps);
    const double p = param[i];
    param[i] = static_cast<float>(p - double(a.lr) * (update + double(a.weight_decay) * p));
    m[i] = static_cast<float>(mi);
    v[i] = static_cast<float>(vi);
  }
}

}  // namespace ref
}  // namespace cpu
}  // namespace gpt
