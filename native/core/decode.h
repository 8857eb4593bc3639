// Incremental decoding with a key/value cache: the prompt of every
// sequence goes through the model in one pass (prefill), or in chunks (a
// prefill of the first, then extend() with each next one), then each
// sequence advances one token per step at its own position. Dense layers
// keep every key and value; banded layers keep a ring buffer of the last
// `window + extend_max - 1` entries, so their cache is O(w) whatever the
// length. Sequences of a batch
// never see each other: no padding enters attention, and a sequence's logits
// are the same whether it decodes alone or in a batch.
//
// Everything runs through the model's Backend, and the cache lives in
// backend memory: the embedding at each sequence's position, the key/value
// store into the cache and the single-query attention over it are the
// backend's decoding ops (backend.h), described per row by KvRow records
// built on the host and uploaded once per call. So on a GPU a step sends
// tokens, positions and the row records in and brings the logits back, and
// nothing else crosses per layer. Every pass runs the model's one block
// (Model::layer_forward): a prefill with the GEMMs, a step with the
// backend's decode ops for few rows (backend.h "decoding: the linear
// layers"; on the CPU the streaming kernels of native/cpu/decode_kernels.h).
//
// Legend: B sequences, L layers, H heads, D head size, C = H*D, V vocabulary
// (Vp padded), P positions held for a sequence (its capacity, or the window
// for a banded layer).
#pragma once
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <vector>

#include "memory.h"
#include "model.h"

namespace gpt {

class DecodeState {
 public:
  // capacities[b]: the most tokens sequence b will hold (prompt + generated,
  // <= n_positions). extend_max: the most tokens one extend() appends to a
  // sequence (1 to n_positions); a banded layer's ring holds
  // min(capacity, window + extend_max - 1) entries so that every row of an
  // extend still finds its band after the whole chunk was stored (dense
  // layers do not depend on it). Allocates the cache; nothing runs yet.
  DecodeState(std::shared_ptr<Model> model, const std::vector<int>& capacities, int extend_max = 1);
  ~DecodeState();
  DecodeState(const DecodeState&) = delete;
  DecodeState& operator=(const DecodeState&) = delete;

  int batch() const { return static_cast<int>(caps_.size()); }
  // Tokens held by sequence b so far (its next position).
  int position(int b) const { return pos_[static_cast<size_t>(b)]; }
  // Bytes of the key/value cache (all sequences, all layers): its elements
  // times the size of the cache's type (kv_dtype()).
  size_t cache_bytes() const { return cache_bytes_; }
  // The type of the cache's elements: the backend's kv_cache_dtype at the
  // model's precision when the session was opened (bf16 on CUDA under BF16).
  DType kv_dtype() const { return kv_dtype_; }
  // Bytes of backend and host scratch besides the cache.
  size_t scratch_bytes() const;
  // The most tokens sequence b may hold.
  int capacity(int b) const { return caps_[static_cast<size_t>(b)]; }
  // The most tokens one extend() appends to a sequence (banded models).
  int extend_max() const { return extend_max_; }

  // Changes the set of sequences to capacities.size() (1 to 65536), without
  // losing the caches of the sequences that stay: sequence b < min(old, new
  // batch) whose capacity is unchanged keeps its cache and position; one
  // whose capacity changes, and every new one, holds nothing (position 0)
  // and must be prefilled before it steps; sequences past the new batch are
  // dropped. The cache is allocated anew and the kept entries copied, so for
  // a moment both are held. A continuous batch grows its session this way
  // (lib/generate/scheduler.ts). The caller holds the model's mutex.
  void resize(const std::vector<int>& capacities);

  // Runs the prompts of some sequences (tokens concatenated, lengths[b]
  // each) through the model and fills their cache. A sequence given tokens
  // (lengths[b] >= 1) starts over at position 0: whatever it held before is
  // dropped and its prompt is cached at positions 0..lengths[b]-1, in every
  // layer (a banded layer's ring included). A sequence with lengths[b] = 0
  // is left untouched, cache and position, so one row can be rebuilt while
  // the others keep theirs (generation past the context re-prefills a full
  // sequence from its last tokens). At least one length must be >= 1; a
  // sequence that holds nothing (never prefilled, aborted, or new after
  // resize()) cannot step until a prefill gives it a prompt. May be called
  // at any time. logits_out: host [B, V], the logits after each prompt's last
  // token; rows of untouched sequences are left as they were. A prompt's
  // logits do not depend on the other rows of the call.
  // `abort` (may be null) is polled between layers: nonzero -> ABORTED (the
  // rows given tokens are then left empty, at position 0).
  // The caller holds the model's mutex.
  void prefill(const int32_t* tokens, const int* lengths, float* logits_out, const volatile int32_t* abort);

  // Continues some sequences from their cache (tokens concatenated,
  // lengths[b] each): sequence b's tokens go to positions pos..pos +
  // lengths[b] - 1 after the pos it holds; lengths[b] = 0 leaves it
  // untouched. Every layer stores the chunk's keys and values, then each row
  // attends over its cache (positions first..its own, fp32, as a step does;
  // the linear layers run the GEMMs, as a prefill does). So a prompt
  // prefilled in chunks (prefill of the first, extend of each next) gives
  // logits equal to the whole prefill's up to rounding, and the same chunks
  // always give the same bits. A row's result does not depend on the other
  // rows of the call. pos + lengths[b] <= capacity; in a model with banded
  // layers lengths[b] <= extend_max unless the sequence's ring holds all
  // its positions. logits_out: host [B, V], the logits after each extended
  // sequence's last token; other rows are left as they were. `abort` is
  // polled between layers: nonzero -> ABORTED (the extended sequences are
  // then left empty, at position 0). The caller holds the model's mutex.
  void extend(const int32_t* tokens, const int* lengths, float* logits_out, const volatile int32_t* abort);

  // Feeds tokens[b] to every sequence with active[b] != 0 at its next
  // position. logits_out: host [B, V]; rows of inactive sequences are left
  // as they were. The caller holds the model's mutex.
  void step(const int32_t* tokens, const uint8_t* active, float* logits_out, const volatile int32_t* abort);

 private:
  struct Scratch;
  // Cache of sequence b, layer l: K then V, each [H, P, D], at these element
  // offsets into cache_ (elements of kv_dtype_).
  int64_t k_off(int b, int l) const { return off_[static_cast<size_t>(b) * L_ + l]; }
  int64_t v_off(int b, int l) const { return k_off(b, l) + int64_t(H_) * slots(b, l) * D_; }
  // The cache as the decoding ops take it.
  TensorRef cache() const { return {cache_, kv_dtype_}; }
  // The KvRow of sequence b at position pos in layer l.
  KvRow kv_row(int b, int l, int pos) const;
  // Uploads ints_host_ (tokens, then positions: [2M]) and rows_host_ ([L, M]
  // row records) to the backend (s_->ints, s_->kv).
  void upload_rows();
  // Entries the cache of (b, l) holds: all positions, or the band.
  int slots(int b, int l) const;
  void ensure_rows(int rows);
  // Checks capacities against the model and the limit on sequences.
  void check_capacities(const std::vector<int>& caps) const;
  // Offsets of every (sequence, layer) for caps_ into off_; returns the cache's elements.
  int64_t layout();
  // Checks a prefill's arguments (an extend's with `extend`); returns the
  // number of tokens.
  int check_prompts(const int32_t* tokens, const int* lengths, bool extend) const;
  // The rows of a prefill (prompt b from row row0[b]) into ints_host_ and rows_host_.
  void plan_prompts(const int32_t* tokens, const int* lengths, const std::vector<int>& row0);
  // The rows of an extend (sequence b's from row row0[b], at its next
  // positions) into ints_host_, rows_host_ and max_keys_.
  void plan_extend(const int32_t* tokens, const int* lengths, const std::vector<int>& row0);
  // The logits of the last row of each of seqs (rows last[r] of ln_f's output).
  void emit_last(const std::vector<int>& seqs, const std::vector<int>& last, float* logits_out);
  // Checks a step's arguments; returns the active sequences in order.
  std::vector<int> check_step(const int32_t* tokens, const uint8_t* active) const;
  // The rows of a step (row r: sequence seqs[r]) into ints_host_, rows_host_ and max_keys_.
  void plan_step(const int32_t* tokens, const std::vector<int>& seqs);
  void check_abort(const volatile int32_t* abort) const;
  // The activations of a block, in the scratch buffers (one set for all layers).
  BlockActs block_acts() const;
  // The M rows uploaded (tokens and positions in s_->ints) through the
  // embedding and every block (Model::layer_forward; a step with the decode
  // ops on weights_), attend(l, qkv, att) being layer l's attention: leaves
  // ln_f of each row in s_->h. Polls `abort` between layers.
  void run_blocks(int M, bool step, const volatile int32_t* abort,
                  const std::function<void(int l, float* qkv, float* att)>& attend);
  // Makes weights_ the backend's copies of the current weights, making them
  // again (for every session of the model) when the parameters changed.
  void sync_weights();
  // The tied head on x [seqs.size(), C] (ln_f of each row), row r's
  // logits into host logits_out [B, V] at row seqs[r].
  void emit_logits(const float* x, const std::vector<int>& seqs, float* logits_out);

  std::shared_ptr<Model> model_;
  Backend& be_;
  int L_, H_, D_, C_, V_, Vp_, window_, extend_max_;
  std::vector<AttnPattern> patterns_;
  std::vector<int> caps_;
  std::vector<int> pos_;
  std::vector<int64_t> off_;  // [B * L] element offsets into cache_
  DType kv_dtype_ = DType::F32;
  void* cache_ = nullptr;  // backend memory, every (sequence, layer), elements of kv_dtype_
  size_t cache_bytes_ = 0;
  std::vector<KvRow> rows_host_;      // [L, M] row records of the current call
  std::vector<int32_t> ints_host_;    // [2M] tokens, positions of the current call
  std::vector<int> max_keys_;         // [L] the most keys a row attends in the current call
  std::unique_ptr<Scratch> s_;
  std::shared_ptr<const DecodeWeights> weights_;  // set by sync_weights() for each call
  bool prefilled_ = false;
};

}  // namespace gpt
