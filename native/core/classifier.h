// The fused classifier (docs/ARCHITECTURE.md "The classifier"): the tied LM
// head, softmax, cross-entropy and the head's backward, run on chunks of
// rows so that training never holds the [M, Vp] logits, only one chunk of
// them. Written once against the Backend (backend.h "the fused classifier").
//
// Legend: M rows, C n_embd, V vocabulary, Vp padded vocabulary.
#pragma once
#include <cstdint>
#include <functional>

#include "backend.h"

namespace gpt {

// The most rows a chunk holds for M rows of a vocabulary of Vp: min(M, 512),
// or more rows when 512 of them would take under 32 MiB (small vocabularies).
// The model sizes its chunk buffer by it (and plan_memory() counts that).
int64_t classifier_capacity_rows(int64_t M, int64_t Vp);

// Rows per chunk for this call: GPT_ENGINE_CLASSIFIER_ROWS when set (a
// positive integer, capped at `cap`; for tests: many chunks and a ragged
// last one), else the backend's choice (Backend::classifier_chunk_rows).
int classifier_chunk_rows(Backend& be, int M, int Vp, Precision p, int cap);

struct ClassifierArgs {
  int M = 0, C = 0, V = 0, Vp = 0;
  Precision precision = Precision::FP32;
  CTensorRef x;                      // [M, C] the final LayerNorm's output (fp32 or bf16)
  CTensorRef wte;                    // [Vp, C] the tied embedding (or its bf16 copy)
  float* chunk = nullptr;            // [cap, Vp] scratch for one chunk of logits
  int cap = 0;                       // rows the chunk buffer holds
};

// Training: for every chunk, logits = x @ wte^T, per-row losses into
// row_loss[M] (backend memory), dlogits = (softmax - onehot) * dlogits_scale
// in place, dx[chunk] = dlogits @ wte (overwrites), dwte += dlogits^T @ x.
// Returns the loss sum over rows with a target (Backend::loss_sum) and
// their count in *count.
double classifier_forward_backward(Backend& be, const ClassifierArgs& a, const int32_t* targets, double* row_loss,
                                   float dlogits_scale, float* dx, float* dwte, int64_t* count);

// The same without the sum: row_loss[M] holds each row's loss when the
// queued work has run (Backend::loss_accumulate sums it where it lives).
void classifier_forward_backward_rows(Backend& be, const ClassifierArgs& a, const int32_t* targets, double* row_loss,
                                      float dlogits_scale, float* dx, float* dwte);

// Evaluation: the loss sum and count, no gradients.
double classifier_loss(Backend& be, const ClassifierArgs& a, const int32_t* targets, double* row_loss,
                       int64_t* count);

// The logits themselves, a chunk at a time: sink(r0, rows, logits) gets rows
// r0 .. r0 + rows - 1 as [rows, Vp] in backend memory, in row order.
void classifier_logits(Backend& be, const ClassifierArgs& a,
                       const std::function<void(int r0, int rows, const float* logits)>& sink);

}  // namespace gpt
