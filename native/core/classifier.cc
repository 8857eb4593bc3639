// The chunk loop of the fused classifier (classifier.h).
#include "classifier.h"

#include <algorithm>
#include <cstdlib>
#include <string>

#include "error.h"

namespace gpt {

int64_t classifier_capacity_rows(int64_t M, int64_t Vp) {
  constexpr int64_t kRows = 512;                  // a multiple of every CPU GEMM K block
  constexpr int64_t kBytes = int64_t(32) << 20;  // a chunk this small costs nothing to keep
  int64_t rows = kRows;
  const int64_t fit = kBytes / (std::max<int64_t>(Vp, 1) * int64_t(sizeof(float)));
  if (fit > rows) rows = fit / kRows * kRows;
  return std::max<int64_t>(0, std::min(M, rows));
}

int classifier_chunk_rows(Backend& be, int M, int Vp, Precision p, int cap) {
  cap = std::max(1, std::min(M, cap));
  if (const char* s = std::getenv("GPT_ENGINE_CLASSIFIER_ROWS")) {
    if (s[0] != '\0') {
      char* end = nullptr;
      const long v = std::strtol(s, &end, 10);
      if (*end != '\0' || v < 1)
        throw GptError(ErrorCode::InvalidArgument,
                       std::string("Expected GPT_ENGINE_CLASSIFIER_ROWS to be a positive integer but received '") + s +
                           "'");
      return static_cast<int>(std::min<long>(v, cap));
    }
  }
  const int r = be.classifier_chunk_rows(M, Vp, p, cap);
  GPT_CHECK_ARG(r >= 1 && r <= cap, std::string("backend ") + be.name() + " chose " + std::to_string(r) +
                                        " classifier rows; expected 1.." + std::to_string(cap));
  return r;
}

namespace {

// Runs fn(r0, rows) over the chunks of M rows in order.
template <typename Fn>
void for_chunks(int M, int rows, Fn&& fn) {
  for (int r0 = 0; r0 < M; r0 += rows) fn(r0, std::min(rows, M - r0));
}

}  // namespace

void classifier_forward_backward_rows(Backend& be, const ClassifierArgs& a, const int32_t* targets, double* row_loss,
                                      float dlogits_scale, float* dx, float* dwte) {
  const int rows = classifier_chunk_rows(be, a.M, a.Vp, a.precision, a.cap);
  for_chunks(a.M, rows, [&](int r0, int n) {
    const CTensorRef x = a.x.at(int64_t(r0) * a.C);
    be.matmul_nt(a.chunk, x, a.wte, n, a.C, a.Vp, a.precision);
    be.crossentropy_rows(a.chunk, targets + r0, row_loss + r0, n, a.V, a.Vp, dlogits_scale);
    if (dx) be.matmul_forward(dx + int64_t(r0) * a.C, a.chunk, a.wte, nullptr, n, a.Vp, a.C, a.precision);
    if (dwte) be.classifier_weight_grad(dwte, a.chunk, x, n, r0, a.M, a.Vp, a.C, a.precision);
  });
}

double classifier_forward_backward(Backend& be, const ClassifierArgs& a, const int32_t* targets, double* row_loss,
                                   float dlogits_scale, float* dx, float* dwte, int64_t* count) {
  classifier_forward_backward_rows(be, a, targets, row_loss, dlogits_scale, dx, dwte);
  return be.loss_sum(row_loss, targets, a.M, count);
}

double classifier_loss(Backend& be, const ClassifierArgs& a, const int32_t* targets, double* row_loss,
                       int64_t* count) {
  return classifier_forward_backward(be, a, targets, row_loss, 0.0f, nullptr, nullptr, count);
}

void classifier_logits(Backend& be, const ClassifierArgs& a,
                       const std::function<void(int r0, int rows, const float* logits)>& sink) {
  const int rows = classifier_chunk_rows(be, a.M, a.Vp, a.precision, a.cap);
  for_chunks(a.M, rows, [&](int r0, int n) {
    be.matmul_nt(a.chunk, a.x.at(int64_t(r0) * a.C), a.wte, n, a.C, a.Vp, a.precision);
    sink(r0, n, a.chunk);
  });
}

}  // namespace gpt
