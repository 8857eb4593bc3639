"""PyTorch twin of `gpt-engine bench gemm`.

Input: {threads, device, warmup, repeats, budget_ms, cases: [{layer, form,
precision, M, K, N}]}. A linear layer out = inp @ w, inp [M, K], w [K, N]:
  forward      out = addmm(bias, inp, w)
  input-grad   dinp = dout @ w^T
  weight-grad  dw += inp^T @ dout   (addmm into dw)
fp32 tensors, or bf16 tensors for precision 'bf16' (torch's own bf16 GEMM).
Output: {torch, results: [{layer, form, precision, time}]} with ms.
"""
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit_results, errors_into, log, read_input, setup, time_ms  # noqa: E402


def main():
    inp = read_input()
    torch, device = setup(inp)
    results = []
    for c in inp["cases"]:
        M, K, N = c["M"], c["K"], c["N"]
        form, prec = c["form"], c["precision"]
        dtype = torch.bfloat16 if prec == "bf16" else torch.float32
        log(f"pytorch gemm: {c['layer']} {form} {prec}")
        r = {"layer": c["layer"], "form": form, "precision": prec, "time": None}
        with errors_into(r):
            g = torch.Generator(device="cpu").manual_seed(M + K + N)
            x = torch.randn(M, K, generator=g).to(device=device, dtype=dtype)
            w = torch.randn(K, N, generator=g).to(device=device, dtype=dtype)
            if form == "forward":
                bias = torch.randn(N, generator=g).to(device=device, dtype=dtype)
                out = torch.empty(M, N, device=device, dtype=dtype)
                fn = lambda: torch.addmm(bias, x, w, out=out)  # noqa: E731
            elif form == "input-grad":
                dout = torch.randn(M, N, generator=g).to(device=device, dtype=dtype)
                dinp = torch.empty(M, K, device=device, dtype=dtype)
                fn = lambda: torch.matmul(dout, w.t(), out=dinp)  # noqa: E731
            else:
                dout = torch.randn(M, N, generator=g).to(device=device, dtype=dtype)
                dw = torch.zeros(K, N, device=device, dtype=dtype)
                xt = x.t()
                fn = lambda: dw.addmm_(xt, dout)  # noqa: E731
            r["time"] = time_ms(fn, inp, torch, device)
        results.append(r)
    emit_results(torch, results)


if __name__ == "__main__":
    main()
