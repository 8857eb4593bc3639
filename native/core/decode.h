// Incremental decoding with a key/value cache (issue 6): the prompt of every
// sequence goes through the model in one pass (prefill), then each sequence
// advances one token per step at its own position. Dense layers keep every
// key and value; banded layers keep a ring buffer of the last `window`
// entries, so their cache is O(w) whatever the length. Sequences of a batch
// never see each other: no padding enters attention, and a sequence's logits
// are the same whether it decodes alone or in a batch.
//
// The dense work (LayerNorm, matmuls, GELU, the tied head) runs through the
// model's Backend. The cache lives in host memory and decode attention (one
// query per sequence against its cache) runs on the CPU pool: for the CPU
// backend that touches the activations in place; for another backend the few
// rows of q/k/v and the attention output cross per layer (B * 4C floats).
//
// Legend: B sequences, L layers, H heads, D head size, C = H*D, V vocabulary
// (Vp padded), P positions held for a sequence (its capacity, or the window
// for a banded layer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <memory>
#include <vector>

#include "memory.h"
#include "model.h"

namespace gpt {

struct Bf16Weights;  // decode.cc

class DecodeState {
 public:
  // capacities[b]: the most tokens sequence b will hold (prompt + generated,
  // <= n_positions). Allocates the cache; nothing runs yet.
  DecodeState(std::shared_ptr<Model> model, const std::vector<int>& capacities);
  ~DecodeState();
  DecodeState(const DecodeState&) = delete;
  DecodeState& operator=(const DecodeState&) = delete;

  int batch() const { return static_cast<int>(caps_.size()); }
  // Tokens held by sequence b so far (its next position).
  int position(int b) const { return pos_[static_cast<size_t>(b)]; }
  // Bytes of the key/value cache (all sequences, all layers).
  size_t cache_bytes() const { return cache_.bytes(); }
  // Bytes of backend and host scratch besides the cache.
  size_t scratch_bytes() const;

  // Runs every sequence's prompt (tokens concatenated, lengths[b] each, all
  // >= 1) through the model and fills the cache. logits_out: host [B, V], the
  // logits after each prompt's last token. Only once, on a fresh state.
  // `abort` (may be null) is polled between layers: nonzero -> ABORTED.
  // The caller holds the model's mutex.
  void prefill(const int32_t* tokens, const int* lengths, float* logits_out, const volatile int32_t* abort);

  // Feeds tokens[b] to every sequence with active[b] != 0 at its next
  // position. logits_out: host [B, V]; rows of inactive sequences are left
  // as they were. The caller holds the model's mutex.
  void step(const int32_t* tokens, const uint8_t* active, float* logits_out, const volatile int32_t* abort);

 private:
  struct Scratch;
  // Cache of sequence b, layer l: K then V, each [H, P, D].
  float* k_cache(int b, int l) { return cache_.data() + off_[static_cast<size_t>(b) * L_ + l]; }
  float* v_cache(int b, int l) { return k_cache(b, l) + int64_t(H_) * slots(b, l) * D_; }
  // Entries the cache of (b, l) holds: all positions, or the band.
  int slots(int b, int l) const;
  void ensure_rows(int rows);
  void check_abort(const volatile int32_t* abort) const;
  // Writes k, v of one position ([C] each, heads side by side) into the cache.
  void store_kv(int b, int l, int pos, const float* k, const float* v);
  // The matmuls of a step. On the CPU: the streaming kernels of
  // native/cpu/decode_kernels.h (a step reads every weight once for all its
  // rows), on the fp32 weights or, for bf16, on the packed bf16 copy `wb`;
  // elsewhere the backend's GEMM.
  void linear(float* out, const float* inp, const float* w, const uint32_t* wb, const float* bias, int M, int K, int N,
              Precision p);
  void head(float* logits, const float* x, const float* wte, int M, Precision p);
  // Makes bf16_ the bf16 copy of the current weights (CPU, bf16 precision),
  // rebuilding the model's shared copy when the parameters changed.
  void sync_bf16();
  // Backend rows -> host logits [B, V] of the given sequences.
  void emit_logits(int rows, const std::vector<int>& seqs, float* logits_out);

  std::shared_ptr<Model> model_;
  Backend& be_;
  bool host_backend_;  // the backend's memory is host memory (cpu)
  int L_, H_, D_, C_, V_, Vp_, window_;
  std::vector<AttnPattern> patterns_;
  std::vector<int> caps_;
  std::vector<int> pos_;
  std::vector<int64_t> off_;  // [B * L] float offsets into cache_
  HostBuffer<float> cache_;
  std::unique_ptr<Scratch> s_;
  std::shared_ptr<Bf16Weights> bf16_;  // null unless CPU + bf16
  bool prefilled_ = false;
};

}  // namespace gpt
