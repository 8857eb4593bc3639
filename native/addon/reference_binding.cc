// referenceOp({op, ...}): runs the plain reference of one CPU op
// (native/cpu/reference_ops.h) on host arrays, for the tests that hold the
// fast CPU paths to them (test/native/reference-ops.test.ts). It takes the
// same options as backendOp (backend_ops_binding.cc: op names as in
// backend.h, inputs by name, accumulated outputs' starting values optional
// and zero when absent) and resolves with the same outputs, so a test passes
// one options object to both and compares.
//
// Ops: embedding_forward, embedding_backward, layernorm_forward,
// layernorm_backward, gelu_forward, gelu_backward, crossentropy,
// crossentropy_rows, loss_sum, classifier_weight_grad, sum_squares, adamw.
#include <memory>
#include <vector>
#include <string>

#include "../cpu/reference_ops.h"
#include "napi_util.h"
#include "op_util.h"

namespace gpt {
namespace addon {
namespace {

FVec opt_f(const OpInputs& a, const char* key, size_t n) {
  return a.f.count(key) ? need_f(a, key, n) : FVec(n, 0.0f);
}

OpOutputs run_reference(const OpInputs& a) {
  OpOutputs r;
  const std::string& op = a.op;
  if (op == "embedding_forward" || op == "embedding_backward") {
    const int B = (int)need_int(a, "B"), T = (int)need_int(a, "T"), C = (int)need_int(a, "C"), V = (int)need_int(a, "V");
    const IVec& tok = need_i(a, "tokens", (size_t)B * T);
    for (int32_t t : tok)
      if (t < 0 || t >= V) throw_invalid("Expected tokens in [0, V) but received " + std::to_string(t));
    if (op == "embedding_forward") {
      FVec out((size_t)B * T * C);
      cpu::ref::embedding_forward(out.data(), tok.data(), need_f(a, "wte", (size_t)V * C).data(),
                                  need_f(a, "wpe", (size_t)T * C).data(), B, T, C);
      r.f["out"] = std::move(out);
    } else {
      FVec dwte = opt_f(a, "dwte", (size_t)V * C), dwpe = opt_f(a, "dwpe", (size_t)T * C);
      cpu::ref::embedding_backward(dwte.data(), dwpe.data(), need_f(a, "dout", (size_t)B * T * C).data(), tok.data(), B,
                                   T, C);
      r.f["dwte"] = std::move(dwte);
      r.f["dwpe"] = std::move(dwpe);
    }
  } else if (op == "layernorm_forward") {
    const int M = (int)need_int(a, "M"), C = (int)need_int(a, "C");
    FVec out((size_t)M * C), mean(M), rstd(M);
    cpu::ref::layernorm_forward(out.data(), mean.data(), rstd.data(), need_f(a, "inp", (size_t)M * C).data(),
                                need_f(a, "gamma", C).data(), need_f(a, "beta", C).data(), M, C,
                                (float)opt_num(a, "eps", 1e-5));
    r.f["out"] = std::move(out);
    r.f["mean"] = std::move(mean);
    r.f["rstd"] = std::move(rstd);
  } else if (op == "layernorm_backward") {
    const int M = (int)need_int(a, "M"), C = (int)need_int(a, "C");
    FVec dinp = opt_f(a, "dinp", (size_t)M * C), dgamma = opt_f(a, "dgamma", C), dbeta = opt_f(a, "dbeta", C);
    cpu::ref::layernorm_backward(dinp.data(), dgamma.data(), dbeta.data(), need_f(a, "dout", (size_t)M * C).data(),
                                 need_f(a, "inp", (size_t)M * C).data(), need_f(a, "gamma", C).data(),
                                 need_f(a, "mean", M).data(), need_f(a, "rstd", M).data(), M, C);
    r.f["dinp"] = std::move(dinp);
    r.f["dgamma"] = std::move(dgamma);
    r.f["dbeta"] = std::move(dbeta);
  } else if (op == "gelu_forward" || op == "gelu_backward") {
    const FVec& x = need_f_any(a, "inp");
    FVec out(x.size());
    if (op == "gelu_forward")
      cpu::ref::gelu_forward(out.data(), x.data(), (int64_t)x.size());
    else
      cpu::ref::gelu_backward(out.data(), x.data(), need_f(a, "dout", x.size()).data(), (int64_t)x.size());
    r.f["out"] = std::move(out);
  } else if (op == "crossentropy") {
    const int M = (int)need_int(a, "M"), V = (int)need_int(a, "V"), Vp = (int)need_int(a, "Vp");
    FVec logits = need_f(a, "logits", (size_t)M * Vp);
    const IVec& tg = need_i(a, "targets", M);
    for (int32_t t : tg)
      if (t < -1 || t >= V) throw_invalid("Expected targets in [0, V) or -1 but received " + std::to_string(t));
    int64_t count = 0;
    r.num["loss"] = cpu::ref::crossentropy(logits.data(), tg.data(), M, V, Vp, (float)opt_num(a, "dlogitsScale", 0.0),
                                           &count);
    r.num["count"] = (double)count;
    r.f["dlogits"] = std::move(logits);
  } else if (op == "crossentropy_rows") {
    const int M = (int)need_int(a, "M"), V = (int)need_int(a, "V"), Vp = (int)need_int(a, "Vp");
    FVec logits = need_f(a, "logits", (size_t)M * Vp);
    const IVec& tg = need_i(a, "targets", M);
    for (int32_t t : tg)
      if (t < -1 || t >= V) throw_invalid("Expected targets in [0, V) or -1 but received " + std::to_string(t));
    std::vector<double> rl((size_t)M);
    cpu::ref::crossentropy_rows(logits.data(), tg.data(), rl.data(), M, V, Vp, (float)opt_num(a, "dlogitsScale", 0.0));
    r.f["rowLoss"] = FVec(rl.begin(), rl.end());
    r.f["dlogits"] = std::move(logits);
  } else if (op == "loss_sum") {
    const int M = (int)need_int(a, "M");
    const FVec& rl = need_f(a, "rowLoss", (size_t)M);
    const std::vector<double> d(rl.begin(), rl.end());
    int64_t count = 0;
    r.num["loss"] = cpu::ref::loss_sum(d.data(), need_i(a, "targets", M).data(), M, &count);
    r.num["count"] = (double)count;
  } else if (op == "classifier_weight_grad") {
    const int M = (int)need_int(a, "M"), Vp = (int)need_int(a, "Vp"), C = (int)need_int(a, "C");
    const int rows = (int)opt_num(a, "rows", M);
    if (rows < 1 || rows > M) throw_invalid("Expected 1 <= rows <= M but received rows " + std::to_string(rows));
    FVec dw = opt_f(a, "dw", (size_t)Vp * C);
    cpu::ref::classifier_weight_grad(dw.data(), need_f(a, "dlogits", (size_t)rows * Vp).data(),
                                     need_f(a, "x", (size_t)rows * C).data(), rows, Vp, C);
    r.f["dw"] = std::move(dw);
  } else if (op == "sum_squares") {
    const FVec& g = need_f_any(a, "g");
    r.num["sum"] = cpu::ref::sum_squares(g.data(), (int64_t)g.size());
  } else if (op == "adamw") {
    FVec param = need_f_any(a, "param");
    const size_t n = param.size();
    FVec m = need_f(a, "m", n), v = need_f(a, "v", n);
    cpu::ref::adamw(param.data(), need_f(a, "grad", n).data(), m.data(), v.data(), (int64_t)n, read_adamw(a));
    r.f["param"] = std::move(param);
    r.f["m"] = std::move(m);
    r.f["v"] = std::move(v);
  } else {
    throw_invalid("Expected one of embedding_forward, embedding_backward, layernorm_forward, layernorm_backward, "
                  "gelu_forward, gelu_backward, crossentropy, crossentropy_rows, loss_sum, classifier_weight_grad, "
                  "sum_squares, adamw for op but received '" + op + "'");
  }
  return r;
}

Napi::Value ReferenceOp(const Napi::CallbackInfo& info) {
  return op_call(info, "referenceOp", [](const Napi::Object& o, OpInputs& a) { a.op = get_string(o, "op"); }, &run_reference);
}

}  // namespace

void add_reference_exports(Napi::Env env, Napi::Object exports) {
  exports.Set("referenceOp", Napi::Function::New(env, ReferenceOp));
}

}  // namespace addon
}  // namespace gpt
