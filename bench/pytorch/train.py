"""PyTorch twin of `gpt-engine bench train`.

Input: {threads, device, warmup, repeats, budget_ms, cases: [{preset,
precision, batch, seq, config}]} where config is the model config
gpt-engine used. One step = forward + cross-entropy, backward, clip to 1.0
and torch.optim.AdamW (0.9/0.95, eps 1e-8, weight decay 0.1 on 2-D tensors)
and zero_grad; each part timed. fp32, or for 'bf16' torch.autocast to
bfloat16 around the forward (fp32 master weights, as the engine does).
Output: {torch, results: [{preset, precision, batch, seq, step, forward,
backward, optimizer, loss}]} with ms.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import emit_results, errors_into, log, read_input, repeat, setup, stat, sync  # noqa: E402


def main():
    inp = read_input()
    torch, device = setup(inp)
    from gpt import GPT, adamw_for

    results = []
    for c in inp["cases"]:
        cfg, B, T, prec = c["config"], c["batch"], c["seq"], c["precision"]
        log(f"pytorch train: {c['preset']} B{B} T{T} {prec}")
        r = {"preset": c["preset"], "precision": prec, "batch": B, "seq": T, "step": None, "forward": None, "backward": None, "optimizer": None}
        with errors_into(r):
            torch.manual_seed(1)
            model = GPT(cfg).to(device)
            opt = adamw_for(model)
            g = torch.Generator(device="cpu").manual_seed(7)
            idx = torch.randint(0, cfg["vocab_size"], (B, T), generator=g).to(device)
            tgt = torch.randint(0, cfg["vocab_size"], (B, T), generator=g).to(device)
            use_bf16 = prec == "bf16"
            if use_bf16:
                r["note"] = "PyTorch bf16: torch.autocast(bfloat16) forward, fp32 master weights"

            def step():
                t0 = time.perf_counter()
                if use_bf16:
                    with torch.autocast(device_type=device.type, dtype=torch.bfloat16):
                        logits = model(idx)
                        loss = torch.nn.functional.cross_entropy(logits.float().view(-1, logits.size(-1)), tgt.view(-1))
                else:
                    logits = model(idx)
                    loss = torch.nn.functional.cross_entropy(logits.view(-1, logits.size(-1)), tgt.view(-1))
                sync(torch, device)
                t1 = time.perf_counter()
                loss.backward()
                sync(torch, device)
                t2 = time.perf_counter()
                torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                sync(torch, device)
                t3 = time.perf_counter()
                return ((t3 - t0) * 1000, (t1 - t0) * 1000, (t2 - t1) * 1000, (t3 - t2) * 1000, float(loss))

            per = repeat(step, inp, torch, device)
            r["step"] = stat([p[0] for p in per])
            r["forward"] = stat([p[1] for p in per])
            r["backward"] = stat([p[2] for p in per])
            r["optimizer"] = stat([p[3] for p in per])
            r["loss"] = per[-1][4]
            del model, opt
        results.append(r)
    emit_results(torch, results)


if __name__ == "__main__":
    main()
