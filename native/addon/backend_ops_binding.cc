// backendOp({device, op, ...}): runs ONE Backend op on host Float32Arrays on
// the 'cpu' or 'cuda' backend (upload, run, download) and resolves with the
// outputs as Float32Arrays. Used by test/cuda/*.test.ts and
// the GPU check (test/ops/op-table.js) to hold every CUDA op against the CPU.
// Outputs that an op overwrites are filled with NaN before the op runs, so
// an element the op forgot to write shows up as NaN (never passes).
//
// Options: device 'cpu'|'cuda', op (see run_op), precision 'fp32'|'bf16',
// storage 'fp32'|'bf16' (default fp32), shape integers and the op's input
// arrays by name (names as in backend.h). With storage 'bf16' every typed
// argument of the op (a TensorRef / CTensorRef / AttnTensor in backend.h:
// the GEMMs' inputs and outputs but not their gradients, LayerNorm's out,
// GELU's out and inp, attention's q, k, v and out, classifier_weight_grad's
// x) lives in a bf16 buffer on the backend, as in a model with bf16 storage:
// an input is uploaded in fp32 and converted there (Backend::convert, round
// to nearest even), an output is converted back to fp32 before it returns.
// Ops with no typed argument reject it. The CPU backend takes no bf16
// tensors, so there only the convert op accepts it. op 'convert' runs x
// through fp32 -> bf16 -> fp32 on the backend (out: x rounded to bf16);
// op 'activation_dtype' answers bf16: 1 when the backend keeps a model's
// activations in bf16 at this precision, else 0.
// Tensors: attention takes q, k, v, (out, lse, dout) either as separate
// contiguous [B, H, T, D] arrays (layout 'bhtd') or as one packed qkv
// [B, T, 3C] array with out/dout as [B, T, C] (layout 'btc', the model's).
// An optional docStart Int32Array [B*T] is the document mask
// (AttnShape::doc_start, checked here for both devices), or tokens
// (Int32Array [B*T]) and eot build it (native/core/doc_mask.h; the result
// then holds it as docStart); naive: true runs the CPU's plain materialized
// kernel instead of the backend's (device cpu).
#include <algorithm>
#include <chrono>
#include <cmath>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "../core/backend.h"
#include "../core/doc_mask.h"
#include "../cpu/attention.h"
#include "napi_util.h"
#include "op_util.h"

namespace gpt {
namespace addon {
namespace {

struct OpArgs : OpInputs {
  std::string layout = "bhtd";
  Precision precision = Precision::FP32;
  DType storage = DType::F32;  // of the op's typed arguments
};
using OpResult = OpOutputs;
using Buffers = OpBuffers;

// The typed arguments of one call, in the call's storage type. fp32: plain
// buffers, as `Buffers`. bf16: the host values go up in fp32 and the backend
// converts them into a bf16 buffer (rounding to nearest even: the caller
// passes values that are bf16 already to know exactly what the op sees);
// outputs are poisoned with bf16 NaN and converted back to fp32 to download.
class Typed {
 public:
  Typed(Backend* be, Buffers& buf, DType t) : be_(be), buf_(buf), t_(t) {}
  TensorRef up(const FVec& v, const char* what) {
    float* f = buf_.up(v, what);
    if (t_ == DType::F32) return f;
    TensorRef b(buf_.up(std::vector<uint16_t>(v.size()), what), DType::BF16);
    be_->convert(b, f, (int64_t)v.size());
    return b;
  }
  TensorRef poisoned(size_t n, const char* what) {
    if (t_ == DType::F32) return buf_.poisoned(n, what);
    return TensorRef(buf_.up(std::vector<uint16_t>(n, kBf16NaN), what), DType::BF16);
  }
  FVec down(TensorRef t, size_t n) {
    if (!t.bf16()) return buf_.down(static_cast<const float*>(t.ptr), n);
    float* f = buf_.poisoned(n, "fp32 copy of a bf16 output");
    be_->convert(f, t, (int64_t)n);
    return buf_.down(f, n);
  }

 private:
  static constexpr uint16_t kBf16NaN = 0x7fc0;
  Backend* be_;
  Buffers& buf_;
  DType t_;
};

// Runs `go` once (the result the caller downloads); with options.repeat = n
// > 0 it then runs it n more times between two synchronizations and reports
// the mean milliseconds per run in result.num["ms"] (for benchmarks: device
// time of the op alone, no transfers). Accumulating ops accumulate again.
void run_timed(Backend* be, const OpArgs& a, OpResult& r, const std::function<void()>& go) {
  go();
  auto it = a.num.find("repeat");
  const int n = it == a.num.end() ? 0 : (int)it->second;
  if (n <= 0) return;
  be->synchronize();
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < n; ++i) go();
  be->synchronize();
  auto t1 = std::chrono::steady_clock::now();
  r.num["ms"] = std::chrono::duration<double, std::milli>(t1 - t0).count() / n;
}

// An optional input: `fill` everywhere when absent.
FVec opt_f(const OpArgs& a, const char* key, size_t n, float fill) {
  auto it = a.f.find(key);
  if (it == a.f.end()) return FVec(n, fill);
  return need_f(a, key, n);
}

OpResult run_attention(Backend* be, const OpArgs& a, bool backward) {
  AttnShape s;
  s.batch = (int)need_int(a, "batch");
  s.heads = (int)need_int(a, "heads");
  s.seq = (int)need_int(a, "seq");
  s.head_dim = (int)need_int(a, "headDim");
  s.pattern = opt_num(a, "banded", 0) != 0 ? AttnPattern::Banded : AttnPattern::Dense;
  s.window = (int)opt_num(a, "window", 0);
  s.scale = (float)opt_num(a, "scale", 1.0 / std::sqrt((double)s.head_dim));
  s.precision = a.precision;
  const int64_t B = s.batch, H = s.heads, T = s.seq, D = s.head_dim, C = H * D;
  const size_t n = (size_t)(B * H * T * D), nl = (size_t)(B * H * T);
  Buffers buf(be);
  Typed typed(be, buf, a.storage);
  OpResult r;
  if (a.i.count("docStart")) {
    const IVec& ds = need_i(a, "docStart", (size_t)(B * T));
    check_doc_starts(ds.data(), s.batch, s.seq);
    s.doc_start = buf.up(ds, "docStart");
  } else if (a.i.count("tokens")) {
    // The document starts of these tokens (doc_starts_from_tokens), also returned as r.docStart.
    IVec ds((size_t)(B * T));
    doc_starts_from_tokens(need_i(a, "tokens", (size_t)(B * T)).data(), s.batch, s.seq,
                           (int32_t)need_int(a, "eot", 0), ds.data());
    s.doc_start = buf.up(ds, "docStart");
    r.f["docStart"] = FVec(ds.begin(), ds.end());
  }
  const bool naive = opt_num(a, "naive", 0) != 0;
  if (naive && a.device != "cpu") throw_invalid("Expected device 'cpu' for naive but received '" + a.device + "'");
  if (naive && a.storage != DType::F32)
    throw_invalid("Expected storage 'fp32' for naive (the plain kernel reads fp32) but received 'bf16'");
  const bool packed = a.layout == "btc";
  if (!packed && a.layout != "bhtd") throw_invalid("Expected 'bhtd' or 'btc' for layout but received '" + a.layout + "'");
  // Views: contiguous [B,H,T,D] or packed qkv [B,T,3C] / [B,T,C]. q, k, v
  // and out are in the call's storage; lse, dout and the gradients fp32.
  auto view_bhtd = [&](TensorRef p) { return AttnTensor::of(p, H * T * D, T * D, D); };
  auto view_btc = [&](TensorRef p, int64_t row) { return AttnTensor::of(p, T * row, D, row); };
  AttnTensor q, k, v;
  if (packed) {
    const TensorRef qkv = typed.up(need_f(a, "qkv", n * 3), "qkv");
    q = view_btc(qkv, 3 * C);
    k = view_btc(qkv.at(C), 3 * C);
    v = view_btc(qkv.at(2 * C), 3 * C);
  } else {
    q = view_bhtd(typed.up(need_f(a, "q", n), "q"));
    k = view_bhtd(typed.up(need_f(a, "k", n), "k"));
    v = view_bhtd(typed.up(need_f(a, "v", n), "v"));
  }
  auto view = [&](TensorRef p) { return packed ? view_btc(p, C) : view_bhtd(p); };
  if (!backward) {
    const TensorRef out = typed.poisoned(n, "out");
    float* lse = buf.poisoned(nl, "lse");
    run_timed(be, a, r, [&] {
      if (naive)
        cpu::attention_naive_forward(s, view(out), lse, q, k, v);
      else
        be->attention_forward(s, view(out), lse, q, k, v);
    });
    r.f["out"] = typed.down(out, n);
    r.f["lse"] = buf.down(lse, nl);
    return r;
  }
  const TensorRef out = typed.up(need_f(a, "out", n), "out");
  float* lse = buf.up(need_f(a, "lse", nl), "lse");
  float* dout = buf.up(need_f(a, "dout", n), "dout");
  if (packed) {
    float* dqkv = buf.poisoned(n * 3, "dqkv");
    run_timed(be, a, r, [&] {
      const AttnTensor dq = view_btc(dqkv, 3 * C), dk = view_btc(dqkv + C, 3 * C), dv = view_btc(dqkv + 2 * C, 3 * C);
      if (naive)
        cpu::attention_naive_backward(s, dq, dk, dv, q, k, v, view(out), lse, view(dout));
      else
        be->attention_backward(s, dq, dk, dv, q, k, v, view(out), lse, view(dout));
    });
    r.f["dqkv"] = buf.down(dqkv, n * 3);
  } else {
    float* dq = buf.poisoned(n, "dq");
    float* dk = buf.poisoned(n, "dk");
    float* dv = buf.poisoned(n, "dv");
    run_timed(be, a, r, [&] {
      if (naive)
        cpu::attention_naive_backward(s, view(dq), view(dk), view(dv), q, k, v, view(out), lse, view(dout));
      else
        be->attention_backward(s, view(dq), view(dk), view(dv), q, k, v, view(out), lse, view(dout));
    });
    r.f["dq"] = buf.down(dq, n);
    r.f["dk"] = buf.down(dk, n);
    r.f["dv"] = buf.down(dv, n);
  }
  return r;
}

// The ops with an argument that storage 'bf16' puts in bf16 (convert takes
// the option and ignores it: it always goes through bf16).
const char* const kTypedOps[] = {"matmul_forward", "matmul_backward", "matmul_nt", "matmul_forward_gelu",
                                 "layernorm_forward", "residual_layernorm_forward", "gelu_forward",
                                 "gelu_backward", "classifier_weight_grad", "attention_forward",
                                 "attention_backward", "convert"};

void check_storage(const OpArgs& a) {
  if (a.storage == DType::F32) return;
  std::string list;
  for (const char* t : kTypedOps) {
    if (a.op == t) return;
    list += list.empty() ? t : std::string(", ") + t;
  }
  throw_invalid("Expected storage 'fp32' for op '" + a.op + "' (storage 'bf16' is for " + list +
                ") but received 'bf16'");
}

OpResult run_op(const OpArgs& a) {
  std::lock_guard<std::mutex> lock(op_mutex());
  Backend* be = op_backend(a.device);
  Buffers buf(be);
  Typed typed(be, buf, a.storage);
  OpResult r;
  const std::string& op = a.op;
  const Precision p = a.precision;
  check_storage(a);
  if (op == "matmul_forward" || op == "matmul_nt") {
    // matmul_nt's out is fp32 (logits); matmul_forward's is typed.
    const int M = (int)need_int(a, "M"), K = (int)need_int(a, "K"), N = (int)need_int(a, "N");
    const TensorRef x = typed.up(need_f(a, "a", (size_t)M * K), "a");
    if (op == "matmul_nt") {
      float* out = buf.poisoned((size_t)M * N, "out");
      const TensorRef bm = typed.up(need_f(a, "b", (size_t)N * K), "b");
      run_timed(be, a, r, [&] { be->matmul_nt(out, x, bm, M, K, N, p); });
      r.f["out"] = buf.down(out, (size_t)M * N);
    } else {
      const TensorRef out = typed.poisoned((size_t)M * N, "out");
      const TensorRef w = typed.up(need_f(a, "b", (size_t)K * N), "b");
      float* bias = a.f.count("bias") ? buf.up(need_f(a, "bias", N), "bias") : nullptr;
      run_timed(be, a, r, [&] { be->matmul_forward(out, x, w, bias, M, K, N, p); });
      r.f["out"] = typed.down(out, (size_t)M * N);
    }
  } else if (op == "matmul_backward") {
    const int M = (int)need_int(a, "M"), K = (int)need_int(a, "K"), N = (int)need_int(a, "N");
    float* dout = buf.up(need_f(a, "dout", (size_t)M * N), "dout");
    const TensorRef inp = typed.up(need_f(a, "inp", (size_t)M * K), "inp");
    const TensorRef w = typed.up(need_f(a, "w", (size_t)K * N), "w");
    float* dinp = buf.poisoned((size_t)M * K, "dinp");
    float* dw = buf.up(opt_f(a, "dw", (size_t)K * N, 0.0f), "dw");
    float* dbias = buf.up(opt_f(a, "dbias", N, 0.0f), "dbias");
    run_timed(be, a, r, [&] { be->matmul_backward(dinp, dw, dbias, dout, inp, w, M, K, N, p); });
    r.f["dinp"] = buf.down(dinp, (size_t)M * K);
    r.f["dw"] = buf.down(dw, (size_t)K * N);
    r.f["dbias"] = buf.down(dbias, N);
  } else if (op == "matmul_forward_gelu") {
    // composed: true runs Backend's default body (matmul_forward then
    // gelu_forward on the same backend), the reference of the fused override.
    const int M = (int)need_int(a, "M"), K = (int)need_int(a, "K"), N = (int)need_int(a, "N");
    const TensorRef pre = typed.poisoned((size_t)M * N, "pre");
    const TensorRef out = typed.poisoned((size_t)M * N, "out");
    const TensorRef x = typed.up(need_f(a, "a", (size_t)M * K), "a");
    const TensorRef w = typed.up(need_f(a, "b", (size_t)K * N), "b");
    float* bias = a.f.count("bias") ? buf.up(need_f(a, "bias", N), "bias") : nullptr;
    const bool composed = opt_num(a, "composed", 0) != 0;
    run_timed(be, a, r, [&] {
      if (composed)
        be->Backend::matmul_forward_gelu(pre, out, x, w, bias, M, K, N, p);
      else
        be->matmul_forward_gelu(pre, out, x, w, bias, M, K, N, p);
    });
    r.f["pre"] = typed.down(pre, (size_t)M * N);
    r.f["out"] = typed.down(out, (size_t)M * N);
  } else if (op == "decode_linear" || op == "decode_linear_gelu" || op == "decode_head") {
    // The linear ops of a decode step on a [M, K] and b (w [K, N]; the
    // head's wte [N, K]), packed first when the backend keeps a copy of its
    // own. composed: as for matmul_forward_gelu.
    const int M = (int)need_int(a, "M"), K = (int)need_int(a, "K"), N = (int)need_int(a, "N");
    const DecodeWeight kind = op == "decode_head" ? DecodeWeight::Head : DecodeWeight::Linear;
    float* x = buf.up(need_f(a, "a", (size_t)M * K), "a");
    float* w = buf.up(need_f(a, "b", (size_t)K * N), "b");
    const size_t bytes = be->decode_weight_bytes(kind, K, N, p);
    void* packed = bytes ? buf.up(std::vector<uint8_t>(bytes), "packed weights") : nullptr;
    if (packed) be->decode_weight_pack(packed, kind, w, K, N, p);
    float* bias = a.f.count("bias") ? buf.up(need_f(a, "bias", N), "bias") : nullptr;
    float* out = buf.poisoned((size_t)M * N, "out");
    if (op == "decode_linear_gelu") {
      float* pre = buf.poisoned((size_t)M * N, "pre");
      const bool composed = opt_num(a, "composed", 0) != 0;
      run_timed(be, a, r, [&] {
        if (composed)
          be->Backend::decode_linear_gelu(pre, out, x, w, packed, bias, M, K, N, p);
        else
          be->decode_linear_gelu(pre, out, x, w, packed, bias, M, K, N, p);
      });
      r.f["pre"] = buf.down(pre, (size_t)M * N);
    } else if (op == "decode_linear") {
      run_timed(be, a, r, [&] { be->decode_linear(out, x, w, packed, bias, M, K, N, p); });
    } else {
      if (bias) throw_invalid("Expected no bias for op 'decode_head'");
      run_timed(be, a, r, [&] { be->decode_head(out, x, w, packed, M, K, N, p); });
    }
    r.f["out"] = buf.down(out, (size_t)M * N);
  } else if (op == "residual_layernorm_forward") {
    // aliasResid: 0 = resid is its own buffer, 1 = resid is a's buffer,
    // 2 = resid is b's buffer (the model adds in place). composed: as above.
    const int M = (int)need_int(a, "M"), C = (int)need_int(a, "C");
    const int alias = (int)opt_num(a, "aliasResid", 0);
    if (alias < 0 || alias > 2) throw_invalid("Expected 0, 1 or 2 for aliasResid but received " + std::to_string(alias));
    float* xa = buf.up(need_f(a, "a", (size_t)M * C), "a");
    float* xb = buf.up(need_f(a, "b", (size_t)M * C), "b");
    float* gamma = buf.up(need_f(a, "gamma", C), "gamma");
    float* beta = buf.up(need_f(a, "beta", C), "beta");
    float* resid = alias == 1 ? xa : alias == 2 ? xb : buf.poisoned((size_t)M * C, "resid");
    const TensorRef out = typed.poisoned((size_t)M * C, "out");
    float* mean = buf.poisoned(M, "mean");
    float* rstd = buf.poisoned(M, "rstd");
    const float eps = (float)opt_num(a, "eps", 1e-5);
    const bool composed = opt_num(a, "composed", 0) != 0;
    // With repeat and an aliased resid, each timed run adds b again (timing only).
    run_timed(be, a, r, [&] {
      if (composed)
        be->Backend::residual_layernorm_forward(resid, out, mean, rstd, xa, xb, gamma, beta, M, C, eps);
      else
        be->residual_layernorm_forward(resid, out, mean, rstd, xa, xb, gamma, beta, M, C, eps);
    });
    r.f["resid"] = buf.down(resid, (size_t)M * C);
    r.f["out"] = typed.down(out, (size_t)M * C);
    r.f["mean"] = buf.down(mean, M);
    r.f["rstd"] = buf.down(rstd, M);
  } else if (op == "embedding_forward" || op == "embedding_backward") {
    const int B = (int)need_int(a, "B"), T = (int)need_int(a, "T"), C = (int)need_int(a, "C"), V = (int)need_int(a, "V");
    const IVec& tok = need_i(a, "tokens", (size_t)B * T);
    for (int32_t t : tok)
      if (t < 0 || t >= V) throw_invalid("Expected tokens in [0, V) but received " + std::to_string(t));
    int32_t* dtok = buf.up(tok, "tokens");
    if (op == "embedding_forward") {
      float* wte = buf.up(need_f(a, "wte", (size_t)V * C), "wte");
      float* wpe = buf.up(need_f(a, "wpe", (size_t)T * C), "wpe");
      float* out = buf.poisoned((size_t)B * T * C, "out");
      be->embedding_forward(out, dtok, wte, wpe, B, T, C);
      r.f["out"] = buf.down(out, (size_t)B * T * C);
    } else {
      float* dout = buf.up(need_f(a, "dout", (size_t)B * T * C), "dout");
      float* dwte = buf.up(opt_f(a, "dwte", (size_t)V * C, 0.0f), "dwte");
      float* dwpe = buf.up(opt_f(a, "dwpe", (size_t)T * C, 0.0f), "dwpe");
      be->embedding_backward(dwte, dwpe, dout, dtok, B, T, C);
      r.f["dwte"] = buf.down(dwte, (size_t)V * C);
      r.f["dwpe"] = buf.down(dwpe, (size_t)T * C);
    }
  } else if (op == "layernorm_forward") {
    const int M = (int)need_int(a, "M"), C = (int)need_int(a, "C");
    float* inp = buf.up(need_f(a, "inp", (size_t)M * C), "inp");
    float* gamma = buf.up(need_f(a, "gamma", C), "gamma");
    float* beta = buf.up(need_f(a, "beta", C), "beta");
    const TensorRef out = typed.poisoned((size_t)M * C, "out");
    float* mean = buf.poisoned(M, "mean");
    float* rstd = buf.poisoned(M, "rstd");
    be->layernorm_forward(out, mean, rstd, inp, gamma, beta, M, C, (float)opt_num(a, "eps", 1e-5));
    r.f["out"] = typed.down(out, (size_t)M * C);
    r.f["mean"] = buf.down(mean, M);
    r.f["rstd"] = buf.down(rstd, M);
  } else if (op == "layernorm_backward") {
    const int M = (int)need_int(a, "M"), C = (int)need_int(a, "C");
    float* dout = buf.up(need_f(a, "dout", (size_t)M * C), "dout");
    float* inp = buf.up(need_f(a, "inp", (size_t)M * C), "inp");
    float* gamma = buf.up(need_f(a, "gamma", C), "gamma");
    float* mean = buf.up(need_f(a, "mean", M), "mean");
    float* rstd = buf.up(need_f(a, "rstd", M), "rstd");
    float* dinp = buf.up(opt_f(a, "dinp", (size_t)M * C, 0.0f), "dinp");
    float* dgamma = buf.up(opt_f(a, "dgamma", C, 0.0f), "dgamma");
    float* dbeta = buf.up(opt_f(a, "dbeta", C, 0.0f), "dbeta");
    be->layernorm_backward(dinp, dgamma, dbeta, dout, inp, gamma, mean, rstd, M, C);
    r.f["dinp"] = buf.down(dinp, (size_t)M * C);
    r.f["dgamma"] = buf.down(dgamma, C);
    r.f["dbeta"] = buf.down(dbeta, C);
  } else if (op == "gelu_forward" || op == "gelu_backward" || op == "add" || op == "scale") {
    auto it = a.f.find(op == "add" ? "a" : op == "scale" ? "x" : "inp");
    if (it == a.f.end()) throw_invalid("Expected the input array for " + op);
    const size_t n = it->second.size();
    if (op == "scale") {
      float* x = buf.up(it->second, "input");
      be->scale(x, (float)opt_num(a, "s", 1.0), (int64_t)n);
      r.f["x"] = buf.down(x, n);
    } else if (op == "add") {
      float* out = buf.poisoned(n, "out");
      be->add(out, buf.up(it->second, "a"), buf.up(need_f(a, "b", n), "b"), (int64_t)n);
      r.f["out"] = buf.down(out, n);
    } else if (op == "gelu_forward") {
      // out and inp typed.
      const TensorRef out = typed.poisoned(n, "out");
      be->gelu_forward(out, typed.up(it->second, "inp"), (int64_t)n);
      r.f["out"] = typed.down(out, n);
    } else {
      // inp typed; dout and the result (dinp) fp32.
      float* out = buf.poisoned(n, "out");
      be->gelu_backward(out, typed.up(it->second, "inp"), buf.up(need_f(a, "dout", n), "dout"), (int64_t)n);
      r.f["out"] = buf.down(out, n);
    }
  } else if (op == "convert") {
    // x -> bf16 -> fp32 on the backend: out is x rounded to bf16 (nearest
    // even) as the backend's convert does it, both buffers NaN-poisoned.
    const FVec& x = need_f_any(a, "x");
    const size_t n = x.size();
    float* src = buf.up(x, "x");
    const TensorRef mid(buf.up(std::vector<uint16_t>(n, 0x7fc0), "bf16 copy of x"), DType::BF16);
    float* out = buf.poisoned(n, "out");
    be->convert(mid, src, (int64_t)n);
    be->convert(out, mid, (int64_t)n);
    r.f["out"] = buf.down(out, n);
  } else if (op == "attention_forward" || op == "attention_backward") {
    return run_attention(be, a, op == "attention_backward");
  } else if (op == "crossentropy") {
    const int M = (int)need_int(a, "M"), V = (int)need_int(a, "V"), Vp = (int)need_int(a, "Vp");
    float* logits = buf.up(need_f(a, "logits", (size_t)M * Vp), "logits");
    int32_t* tg = buf.up(need_i(a, "targets", M), "targets");
    int64_t count = 0;
    const float ds = (float)opt_num(a, "dlogitsScale", 0.0);
    double loss = be->crossentropy(logits, tg, M, V, Vp, ds, &count);
    r.num["loss"] = loss;
    r.num["count"] = (double)count;
    r.f["dlogits"] = buf.down(logits, (size_t)M * Vp);
  } else if (op == "crossentropy_rows") {
    const int M = (int)need_int(a, "M"), V = (int)need_int(a, "V"), Vp = (int)need_int(a, "Vp");
    float* logits = buf.up(need_f(a, "logits", (size_t)M * Vp), "logits");
    int32_t* tg = buf.up(need_i(a, "targets", M), "targets");
    double* rl = buf.up(std::vector<double>((size_t)M, std::nan("")), "row losses");
    be->crossentropy_rows(logits, tg, rl, M, V, Vp, (float)opt_num(a, "dlogitsScale", 0.0));
    std::vector<double> host((size_t)M);
    be->to_host(host.data(), rl, (size_t)M * sizeof(double));
    r.f["rowLoss"] = FVec(host.begin(), host.end());
    r.f["dlogits"] = buf.down(logits, (size_t)M * Vp);
  } else if (op == "loss_sum") {
    const int M = (int)need_int(a, "M");
    const FVec rl = need_f(a, "rowLoss", (size_t)M);
    double* d = buf.up(std::vector<double>(rl.begin(), rl.end()), "row losses");
    int32_t* tg = buf.up(need_i(a, "targets", M), "targets");
    int64_t count = -1;
    r.num["loss"] = be->loss_sum(d, tg, M, &count);
    r.num["count"] = (double)count;
  } else if (op == "loss_accumulate") {
    const int M = (int)need_int(a, "M");
    const FVec rl = need_f(a, "rowLoss", (size_t)M);
    double* d = buf.up(std::vector<double>(rl.begin(), rl.end()), "row losses");
    int32_t* tg = buf.up(need_i(a, "targets", M), "targets");
    double* acc = buf.up(std::vector<double>(1, opt_num(a, "acc", 0.0)), "the running total");
    be->loss_accumulate(acc, d, tg, M);
    double host = 0;
    be->to_host(&host, acc, sizeof host);
    r.num["acc"] = host;
  } else if (op == "classifier_weight_grad") {
    // dw += dlogits^T @ x over `rows` rows at row0 of an M-row batch; with
    // `chunks` (rows per call) it runs the rows as consecutive calls.
    const int M = (int)need_int(a, "M"), Vp = (int)need_int(a, "Vp"), C = (int)need_int(a, "C");
    const int rows = (int)opt_num(a, "rows", M), row0 = (int)opt_num(a, "row0", 0);
    if (rows < 1 || row0 < 0 || row0 + rows > M)
      throw_invalid("Expected 1 <= rows and row0 + rows <= M for classifier_weight_grad but received rows " +
                    std::to_string(rows) + ", row0 " + std::to_string(row0) + ", M " + std::to_string(M));
    const int step = (int)opt_num(a, "chunks", rows);
    if (step < 1) throw_invalid("Expected a positive integer for chunks but received " + std::to_string(step));
    float* dl = buf.up(need_f(a, "dlogits", (size_t)rows * Vp), "dlogits");
    const TensorRef x = typed.up(need_f(a, "x", (size_t)rows * C), "x");
    float* dw = buf.up(opt_f(a, "dw", (size_t)Vp * C, 0.0f), "dw");
    run_timed(be, a, r, [&] {
      for (int c0 = 0; c0 < rows; c0 += step) {
        const int n = std::min(step, rows - c0);
        be->classifier_weight_grad(dw, dl + (int64_t)c0 * Vp, x.at((int64_t)c0 * C), n, row0 + c0, M, Vp, C,
                                   a.precision);
      }
    });
    r.f["dw"] = buf.down(dw, (size_t)Vp * C);
  } else if (op == "activation_dtype") {
    // The type the backend keeps a model's activations in at this precision: bf16 1, fp32 0.
    r.num["bf16"] = be->activation_dtype(p) == DType::BF16 ? 1 : 0;
  } else if (op == "classifier_chunk_rows") {
    const int M = (int)need_int(a, "M"), Vp = (int)need_int(a, "Vp"), cap = (int)need_int(a, "cap");
    r.num["rows"] = be->classifier_chunk_rows(M, Vp, a.precision, cap);
  } else if (op == "sum_squares") {
    auto it = a.f.find("g");
    if (it == a.f.end()) throw_invalid("Expected a Float32Array for g");
    float* g = buf.up(it->second, "g");
    r.num["sum"] = be->sum_squares(g, (int64_t)it->second.size());
  } else if (op == "grad_scale_of") {
    auto it = a.f.find("g");
    if (it == a.f.end()) throw_invalid("Expected a Float32Array for g");
    float* g = buf.up(it->second, "g");
    float* scale = buf.up(FVec(1, 0.0f), "scale");
    double* ss = buf.up(std::vector<double>(1, std::nan("")), "sum of squares");
    be->grad_scale_of(scale, ss, g, (int64_t)it->second.size(), opt_num(a, "invCount", 1.0), opt_num(a, "gradClip", 0.0));
    float hs = 0;
    double hss = 0;
    be->to_host(&hs, scale, sizeof hs);
    be->to_host(&hss, ss, sizeof hss);
    r.num["scale"] = hs;
    r.num["sum"] = hss;
  } else if (op == "adamw") {
    auto it = a.f.find("param");
    if (it == a.f.end()) throw_invalid("Expected a Float32Array for param");
    const size_t n = it->second.size();
    float* param = buf.up(it->second, "param");
    float* grad = buf.up(need_f(a, "grad", n), "grad");
    float* m = buf.up(need_f(a, "m", n), "m");
    float* v = buf.up(need_f(a, "v", n), "v");
    const AdamWParams ap = read_adamw(a);
    be->adamw(param, grad, m, v, (int64_t)n, ap);
    r.f["param"] = buf.down(param, n);
    r.f["m"] = buf.down(m, n);
    r.f["v"] = buf.down(v, n);
  } else {
    throw_invalid("Expected a backend op name for op but received '" + op + "'");
  }
  be->synchronize();
  return r;
}

Napi::Value BackendOp(const Napi::CallbackInfo& info) {
  return op_call(info, "backendOp", [](const Napi::Object& o, OpArgs& a) {
    a.device = get_string(o, "device");
    a.op = get_string(o, "op");
    if (has(o, "layout")) a.layout = get_string(o, "layout");
    if (has(o, "precision")) {
      std::string pr = get_string(o, "precision");
      if (pr != "fp32" && pr != "bf16") throw_invalid("Expected 'fp32' or 'bf16' for precision but received '" + pr + "'");
      a.precision = pr == "bf16" ? Precision::BF16 : Precision::FP32;
    }
    if (has(o, "storage")) {
      std::string st = get_string(o, "storage");
      if (st != "fp32" && st != "bf16") throw_invalid("Expected 'fp32' or 'bf16' for storage but received '" + st + "'");
      a.storage = st == "bf16" ? DType::BF16 : DType::F32;
    }
  }, &run_op);
}

}  // namespace

void add_backend_ops_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("backendOp", Napi::Function::New(env, BackendOp));
}

}  // namespace addon
}  // namespace gpt
