#!/usr/bin/env python3
"""PyTorch twins of the GPU check's benchmarks (scripts/gpu-check/main.js),
same shapes, same run.

Dense causal attention: SDPA with its backend forced and named (FLASH_ATTENTION
on CUDA). Banded (query i sees keys i-w < j <= i): FlexAttention with a block
mask (torch.compile'd), falling back to SDPA with a boolean band mask, named in
the output. A GPT-2 small training step in bf16 with torch.compile when it
compiles within 60 s (child process), else eager; the JSON says which. The
model and its AdamW are gpt.py's, as `gpt-engine bench --with-pytorch` uses.

Times only: the GPU check divides the FLOPs of lib/flops.ts (built) by them,
as it does for the engine's kernels. On the GPU a time is the mean over the
repeats between two CUDA events (device time, as the engine's backendOp
measures), not common.py's per-call wall time.

  gpu_check.py --out FILE --shapes JSON [--dry-run]
--dry-run runs tiny shapes on the CPU (the script itself is what is tested).
"""
import argparse
import json
import math
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import error_text, log  # noqa: E402


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
    row = {"B": B, "H": H, "T": T, "D": D, "banded": banded, "w": w, "pattern": f"banded w={w}" if banded else "dense"}
    rep = 1 if dry else 10
    if not hasattr(F, "scaled_dot_product_attention"):  # a PyTorch before 2.0
        from gpt import allowed_mask
        mask = allowed_mask(T, "banded" if banded else "dense", w, dev)
        scale = 1.0 / math.sqrt(D)
        row["backend"] = "matmul+mask+softmax"  # no SDPA in this PyTorch

        def fwd():
            s = torch.matmul(q, k.transpose(-2, -1)) * scale
            return torch.matmul(torch.softmax(s.masked_fill(~mask, float("-inf")), dim=-1), v)
    elif not banded:
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
            from gpt import allowed_mask
            mask = allowed_mask(T, "banded", w, dev)
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
    row.update(fwd_ms=fms, fwdbwd_ms=fbms)
    return row


def train_tokens_per_s(dev, dry, compiled):
    import torch
    import torch.nn.functional as F
    from gpt import GPT, adamw_for

    cfg = dict(n_layer=2, n_head=2, n_embd=64, n_positions=64, vocab_size=512) if dry else \
        dict(n_layer=12, n_head=12, n_embd=768, n_positions=1024, vocab_size=50257)
    cfg.update(layer_norm_epsilon=1e-5, attention_pattern="dense")
    B, T = (2, 64) if dry else (16, 1024)  # the engine's step row (gpu-check main.js benchStep)
    model = GPT(cfg).to(dev)
    try:
        opt = adamw_for(model, fused=(dev == "cuda"))
    except TypeError:  # a PyTorch before 2.0 has no fused AdamW
        opt = adamw_for(model)
    step_model = torch.compile(model) if compiled else model
    idx = torch.randint(0, cfg["vocab_size"], (B, T), device=dev)
    tgt = torch.randint(0, cfg["vocab_size"], (B, T), device=dev)

    def step():
        with torch.autocast(device_type=dev, dtype=torch.bfloat16, enabled=(dev == "cuda")):
            logits = step_model(idx)
        loss = F.cross_entropy(logits.float().view(-1, logits.shape[-1]), tgt.view(-1))
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    ms = timeit(step, dev, warm=1 if dry else 3, rep=2 if dry else 10)
    return {"tokens_per_s": B * T / (ms / 1000), "ms_per_step": ms, "config": {**cfg, "batch": B, "seq": T}}


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
        log("gpu_check.py: PyTorch is not installed here (python3 -c 'import torch' failed)")
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
            out["attention"].append({**s, "pattern": pattern, "backend": "?", "error": error_text(e)[:300]})
        r = out["attention"][-1]
        log(f"  torch {r.get('backend')} {r.get('pattern', '')} T{s['T']} D{s['D']}: "
            f"{r.get('error') or '%.2f ms fwd, %.2f ms fwd+bwd' % (r['fwd_ms'], r['fwdbwd_ms'])}")
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
            log(f"  torch GPT-2 step: compiled variant not used ({why[:120]}); running eager")
    if train is None:
        try:
            train = {**train_tokens_per_s(dev, a.dry_run, False), "mode": "eager"}
        except Exception as e:  # noqa: BLE001
            train = {"mode": "eager", "error": error_text(e)[:300]}
    out["train"] = train
    with open(a.out, "w") as f:
        json.dump(out, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
