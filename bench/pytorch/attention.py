"""PyTorch twin of `gpt-engine bench attention`.

Input: {threads, device, warmup, repeats, budget_ms, cases: [{batch, heads,
seq, headDim, pattern: 'dense'|'banded', window}]}. Layout [B, H, T, D],
fp32, scale 1/sqrt(D). Dense causal: scaled_dot_product_attention with
is_causal where torch has it (2.0+), else matmul + causal mask + softmax +
matmul. Banded (query i sees keys i - w < j <= i): the same with a band
mask; it still computes every (query, key) pair. Forward runs without
autograd; forward+backward runs with it and backpropagates a random dOut.
Output: {method, torch, results: [{seq, pattern, window, forward, forwardBackward}]}
with times in ms (median, min, max, samples).
"""
import math
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit_results, errors_into, log, read_input, setup, time_ms  # noqa: E402


def main():
    inp = read_input()
    torch, device = setup(inp)
    F = torch.nn.functional
    has_sdpa = hasattr(F, "scaled_dot_product_attention")
    method = "scaled_dot_product_attention" if has_sdpa else "matmul + mask + softmax"

    def make_attn(T, pattern, window, D):
        scale = 1.0 / math.sqrt(D)
        i = torch.arange(T, device=device).unsqueeze(1)
        j = torch.arange(T, device=device).unsqueeze(0)
        allowed = j <= i
        if pattern == "banded":
            allowed = allowed & (j > i - window)
        if has_sdpa:
            if pattern == "dense":
                return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return lambda q, k, v: F.scaled_dot_product_attention(q, k, v, attn_mask=allowed)
        neg = torch.zeros(T, T, device=device).masked_fill(~allowed, float("-inf"))

        def attn(q, k, v):
            s = torch.matmul(q, k.transpose(-2, -1)) * scale + neg
            return torch.matmul(torch.softmax(s, dim=-1), v)

        return attn

    results = []
    for c in inp["cases"]:
        B, H, T, D = c["batch"], c["heads"], c["seq"], c["headDim"]
        pattern, window = c["pattern"], c.get("window")
        log(f"pytorch attention: {pattern} T={T}")
        r = {"seq": T, "pattern": pattern, "window": window, "forward": None, "forwardBackward": None}
        with errors_into(r):
            g = torch.Generator(device="cpu").manual_seed(T)
            q = torch.randn(B, H, T, D, generator=g).to(device)
            k = torch.randn(B, H, T, D, generator=g).to(device)
            v = torch.randn(B, H, T, D, generator=g).to(device)
            dout = torch.randn(B, H, T, D, generator=g).to(device)
            attn = make_attn(T, pattern, window, D)

            def fwd():
                with torch.no_grad():
                    attn(q, k, v)

            r["forward"] = time_ms(fwd, inp, torch, device)
            qg, kg, vg = (t.clone().requires_grad_(True) for t in (q, k, v))

            def fwd_bwd():
                qg.grad = kg.grad = vg.grad = None
                out = attn(qg, kg, vg)
                out.backward(dout)

            r["forwardBackward"] = time_ms(fwd_bwd, inp, torch, device)
        results.append(r)
    emit_results(torch, results, method=method)


if __name__ == "__main__":
    main()
