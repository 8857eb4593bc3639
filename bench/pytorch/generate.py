"""PyTorch twin of `gpt-engine bench generate`.

Input: {threads, device, warmup, repeats, budget_ms, config, cases:
[{precision, batch, promptTokens, newTokens}]}. A randomly initialized
model (the same config) decodes greedily with a KV cache (preallocated;
banded layers attend to the last w keys). Prefill = one pass over the
prompts; time to first token = prefill + the first argmax; decode tokens/s
= batch x (newTokens - 1) / the time of the token-by-token steps, as the
engine counts it. 'bf16' casts the weights to bfloat16.
Output: {torch, results: [{precision, batch, decode (tokens/s stat),
prefillTokensPerSecond, timeToFirstToken (ms stat), cacheBytes}]}.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit_results, errors_into, log, read_input, repeat, setup, stat, sync  # noqa: E402


def main():
    inp = read_input()
    torch, device = setup(inp)
    from gpt import GPT

    cfg = inp["config"]
    results = []
    models = {}
    for c in inp["cases"]:
        prec, B, P, N = c["precision"], c["batch"], c["promptTokens"], c["newTokens"]
        log(f"pytorch generate: batch {B} {prec}")
        r = {"precision": prec, "batch": B, "decode": None, "prefillTokensPerSecond": None, "timeToFirstToken": None, "cacheBytes": None}
        with errors_into(r):
            dtype = torch.bfloat16 if prec == "bf16" else torch.float32
            if prec not in models:
                torch.manual_seed(1)
                models[prec] = GPT(cfg).to(device=device, dtype=dtype).eval()
            model = models[prec]
            g = torch.Generator(device="cpu").manual_seed(100 + B)
            prompt = torch.randint(0, cfg["vocab_size"], (B, P), generator=g).to(device)
            V = cfg["vocab_size"]

            def run():
                with torch.no_grad():
                    caches = model.new_cache(B, P + N, dtype, device)
                    t0 = time.perf_counter()
                    logits = model(prompt, caches, 0)
                    tok = logits[:, -1, :V].argmax(dim=-1, keepdim=True)
                    sync(torch, device)
                    t1 = time.perf_counter()
                    for i in range(N - 1):
                        logits = model(tok, caches, P + i)
                        tok = logits[:, -1, :V].argmax(dim=-1, keepdim=True)
                    sync(torch, device)
                    t2 = time.perf_counter()
                    cache_bytes = sum(k.numel() * k.element_size() * 2 for k, _ in caches)
                return (t1 - t0) * 1000, (t2 - t1) * 1000, cache_bytes

            per = repeat(run, inp, torch, device)
            r["timeToFirstToken"] = stat([p[0] for p in per])
            r["prefillTokensPerSecond"] = stat([B * P / (p[0] / 1000) for p in per])["median"]
            r["decode"] = stat([B * (N - 1) / (p[1] / 1000) for p in per if p[1] > 0])
            r["cacheBytes"] = per[-1][2]
            r["note"] = "PyTorch: greedy decode with a preallocated KV cache" + (", bf16 weights" if prec == "bf16" else "")
        results.append(r)
    emit_results(torch, results)


if __name__ == "__main__":
    main()
