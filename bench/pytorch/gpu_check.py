#!/usr/bin/env python3
"""PyTorch twins of the engine's GPU benchmarks, same shapes, same run.

Dense causal attention: SDPA with its backend forced and named (FLASH_ATTENTION
on CUDA). Banded (query i sees keys i-w < j <= i): FlexAttention with a block
mask (torch.compile'd), falling back to SDPA with a boolean band mask, named in
the output. A GPT-2 small training step in bf16 with torch.compile when it
compiles within 60 s (child process), else eager; the JSON says which.

  pytorch_bench.py --out FILE --shapes JSON [--dry-run]
--dry-run runs tiny shapes on the CPU (the script itself is what is tested).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time


def pairs(T, banded, w):
    if not banded or w >= T:
        return T * (T + 1) / 2
    return w * (w + 1) / 2 + (T - w) * w


def timeit(fn, dev, warm=3, rep=10):
    import torch
    for _ in range(warm):
        fn()
    if dev == "cuda":
        torch.cuda.synchronize()
        a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        a.record()
        for _ in range(rep):
            fn()
        b.record()
        torch.cuda.synchronize()
        return a.elapsed_time(b) / rep
    t0 = time.perf_counter()
    for _ in range(rep):
        fn()
    return (time.perf_counter() - t0) * 1000 / rep


def forced_sdpa(dev, kind):
    """A context that makes scaled_dot_product_attention use one backend
    (kind: "flash" or "efficient") on the GPU, with the API this PyTorch has
    (torch.nn.attention.sdpa_kernel from 2.3, torch.backends.cuda.sdp_kernel
    before). On the CPU nothing is forced: its math path is the only one."""
    import contextlib
    import torch
    if dev != "cuda":
        return contextlib.nullcontext
    try:
        from torch.nn.attention import SDPBackend, sdpa_kernel
        b = SDPBackend.FLASH_ATTENTION if kind == "flash" else SDPBackend.EFFICIENT_ATTENTION
        return lambda: sdpa_kernel([b])
    except ImportError:
        return lambda: torch.backends.cuda.sdp_kernel(enable_flash=(kind == "flash"), enable_math=False,
                                                      enable_mem_efficient=(kind == "efficient"))


def bench_attention(shape, dev, dry):
    import torch
    import torch.nn.functional as F
    B, H, T, D, banded, w = shape["B"], shape["H"], shape["T"], shape["D"], shape["banded"], shape["w"]
    dt = torch.bfloat16 if dev == "cuda" else torch.float32
    q, k, v = (torch.randn(B, H, T, D, device=dev, dtype=dt, requires_grad=True) for _ in range(3))
    do = torch.randn(B, H, T, D, device=dev, dtype=dt)
    row = {"B": B, "H": H, "T": T, "D": D, "pattern": f"banded w={w}" if banded else "dense"}
    flops = 4 * D * pairs(T, banded, w) * B * H
    rep = 1 if dry else 10
    if not banded:
        forced = forced_sdpa(dev, "flash")
        row["backend"] = "sdpa-flash" if dev == "cuda" else "sdpa(cpu)"

        def fwd():
            with forced():
                return F.scaled_dot_product_attention(q, k, v, is_causal=True)
    else:
        fwd = None
        if dev == "cuda":
            try:
                from torch.nn.attention.flex_attention import create_block_mask, flex_attention

                def band(b, h, qi, kv):
                    return (kv <= qi) & (qi - kv < w)
                bm = create_block_mask(band, None, None, T, T, device=dev)
                flex = torch.compile(flex_attention)
                flex(q, k, v, block_mask=bm).backward(do)  # compile now, outside the timing
                row["backend"] = "flex_attention(compiled)"

                def fwd():
                    return flex(q, k, v, block_mask=bm)
            except Exception as e:  # noqa: BLE001
                row["flex_error"] = str(e)[:200]
        if fwd is None:
            i = torch.arange(T, device=dev)
            mask = (i[None, :] <= i[:, None]) & (i[:, None] - i[None, :] < w)
            forced = forced_sdpa(dev, "efficient")
            row["backend"] = "sdpa-masked-efficient" if dev == "cuda" else "sdpa-masked(cpu)"

            def fwd():
                with forced():
                    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask)

    def fwdbwd():
        q.grad = k.grad = v.grad = None
        fwd().backward(do)

    with torch.no_grad():
        fms = timeit(fwd, dev, warm=1 if dry else 3, rep=rep)
    fbms = timeit(fwdbwd, dev, warm=1 if dry else 3, rep=rep)
    row.update(fwd_ms=fms, fwdbwd_ms=fbms, fwd_tflops=flops / (fms * 1e9), fwdbwd_tflops=3.5 * flops / (fbms * 1e9))
    return row


def gpt2(cfg):
    import torch
    import torch.nn as nn
    import torch.nn.functional as F

    class Block(nn.Module):
        def __init__(s):
            super().__init__()
            d = cfg["d"]
            s.ln1, s.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
            s.qkv, s.proj = nn.Linear(d, 3 * d), nn.Linear(d, d)
            s.fc, s.fc2 = nn.Linear(d, 4 * d), nn.Linear(4 * d, d)

        def forward(s, x):
            B, T, C = x.shape
            h = cfg["heads"]
            q, k, v = s.qkv(s.ln1(x)).split(C, dim=2)
            q, k, v = (t.view(B, T, h, C // h).transpose(1, 2) for t in (q, k, v))
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True).transpose(1, 2).reshape(B, T, C)
            x = x + s.proj(y)
            return x + s.fc2(F.gelu(s.fc(s.ln2(x)), approximate="tanh"))

    class GPT(nn.Module):
        def __init__(s):
            super().__init__()
            s.wte, s.wpe = nn.Embedding(cfg["V"], cfg["d"]), nn.Embedding(cfg["T"], cfg["d"])
            s.blocks = nn.ModuleList(Block() for _ in range(cfg["L"]))
            s.lnf = nn.LayerNorm(cfg["d"])

        def forward(s, idx, tgt):
            x = s.wte(idx) + s.wpe(torch.arange(idx.shape[1], device=idx.device))
            for b in s.blocks:
                x = b(x)
            logits = s.lnf(x) @ s.wte.weight.T
            return F.cross_entropy(logits.float().view(-1, logits.shape[-1]), tgt.view(-1))

    return GPT()


def train_tokens_per_s(dev, dry, compiled):
    import torch
    cfg = dict(V=512, d=64, L=2, heads=2, T=64, B=2) if dry else dict(V=50304, d=768, L=12, heads=12, T=1024, B=8)
    model = gpt2(cfg).to(dev)
    try:
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=(dev == "cuda"))
    except TypeError:  # a PyTorch before 2.0 has no fused AdamW
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    if compiled:
        model = torch.compile(model)
    idx = torch.randint(0, cfg["V"], (cfg["B"], cfg["T"]), device=dev)
    tgt = torch.randint(0, cfg["V"], (cfg["B"], cfg["T"]), device=dev)

    def step():
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            loss = model(idx, tgt)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    ms = timeit(step, dev, warm=1 if dry else 3, rep=2 if dry else 10)
    return {"tokens_per_s": cfg["B"] * cfg["T"] / (ms / 1000), "ms_per_step": ms, "config": cfg}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out")
    ap.add_argument("--shapes", default="[]")
    ap.add_argument("--dry-run", action="store_true")
    ap.add_argument("--train-child", choices=["compiled"])
    a = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("pytorch_bench: PyTorch is not installed here (python3 -c 'import torch' failed)", file=sys.stderr)
        return 3
    dev = "cuda" if torch.cuda.is_available() and not a.dry_run else "cpu"
    if a.train_child:
        print(json.dumps(train_tokens_per_s(dev, a.dry_run, True)))
        return 0
    out = {"torch": torch.__version__, "device": torch.cuda.get_device_name(0) if dev == "cuda" else "cpu", "attention": []}
    for s in json.loads(a.shapes):
        try:
            out["attention"].append(bench_attention(s, dev, a.dry_run))
        except Exception as e:  # noqa: BLE001
            pattern = f"banded w={s['w']}" if s.get("banded") else "dense"
            out["attention"].append({**s, "pattern": pattern, "backend": "?", "error": str(e)[:300]})
        r = out["attention"][-1]
        print(f"  torch {r.get('backend')} {r.get('pattern', '')} T{s['T']} D{s['D']}: "
              f"{r.get('error') or '%.1f / %.1f TFLOP/s fwd / fwd+bwd' % (r['fwd_tflops'], r['fwdbwd_tflops'])}", file=sys.stderr)
    train = None
    if not a.dry_run:
        try:
            child = subprocess.run([sys.executable, __file__, "--train-child", "compiled"], capture_output=True,
                                   text=True, timeout=60 + 60)
            if child.returncode == 0:
                train = {**json.loads(child.stdout.strip().splitlines()[-1]), "mode": "torch.compile"}
            else:
                why = (child.stderr.strip().splitlines() or ["?"])[-1]
        except subprocess.TimeoutExpired:
            why = "torch.compile did not finish within the limit"
        if train is None:
            print(f"  torch GPT-2 step: compiled variant not used ({why[:120]}); running eager", file=sys.stderr)
    if train is None:
        try:
            train = {**train_tokens_per_s(dev, a.dry_run, False), "mode": "eager"}
        except Exception as e:  # noqa: BLE001
            train = {"mode": "eager", "error": str(e)[:300]}
    out["train"] = train
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
