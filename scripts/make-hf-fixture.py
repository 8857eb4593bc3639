#!/usr/bin/env python3
"""Builds test/fixtures/hf-gpt2-tiny: a tiny GPT-2 in Hugging Face layout and
the logits an independent implementation computes for it.

Kept in the repository, out of CI (run it again only to change the fixture):

    apt-get install -y python3-torch      # Debian's PyTorch, no `transformers`
    /usr/bin/python3 scripts/make-hf-fixture.py [OUT_DIR]

What it writes (OUT_DIR defaults to test/fixtures/hf-gpt2-tiny):
  fp32/  config.json + model.safetensors: F32 tensors named with the
         `transformer.` prefix, the `attn.bias` / `attn.masked_bias` buffers,
         and `lm_head.weight` (a copy of wte), as GPT2LMHeadModel.save_pretrained
         writes them;
  fp16/  the same weights rounded to F16, names without the prefix and without
         lm_head (the layout of the GPT-2 files on the Hugging Face hub);
  bf16/  the same weights rounded to BF16, prefix, lm_head, no buffers;
  expected.json: for a few token sequences, the logits [T, V] of each variant
         (computed in float64 from that variant's weights as stored, so the
         fp16/bf16 expectations already include the rounding), and a greedy
         continuation of one prompt.

The GPT-2 forward pass below is written from the architecture (pre-norm
blocks, fused QKV with bias, causal softmax attention, tanh GELU, tied head);
it shares no code with gpt-engine or with `transformers`. The safetensors
writer is a few lines of its own: an 8-byte little-endian header length, a
JSON header (padded with spaces to a multiple of 8), then the raw tensors.
"""
import json
import math
import os
import struct
import sys

import torch

N_LAYER, N_HEAD, N_EMBD, N_POS, VOCAB = 2, 4, 32, 32, 96
EPS = 1e-5
SEED = 20240611

# ---------------------------------------------------------------------------
# weights


def make_weights():
    """Random weights, large enough that logits are far from uniform, with
    non-trivial biases and LayerNorm parameters so every tensor matters."""
    g = torch.Generator().manual_seed(SEED)

    def randn(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float64) * std

    C = N_EMBD
    w = {
        "wte.weight": randn(VOCAB, C, std=0.5),
        "wpe.weight": randn(N_POS, C, std=0.3),
    }
    for l in range(N_LAYER):
        p = f"h.{l}."
        w[p + "ln_1.weight"] = 1.0 + randn(C, std=0.2)
        w[p + "ln_1.bias"] = randn(C, std=0.1)
        w[p + "attn.c_attn.weight"] = randn(C, 3 * C, std=0.3)  # Conv1D [in, out]
        w[p + "attn.c_attn.bias"] = randn(3 * C, std=0.1)
        w[p + "attn.c_proj.weight"] = randn(C, C, std=0.2)
        w[p + "attn.c_proj.bias"] = randn(C, std=0.1)
        w[p + "ln_2.weight"] = 1.0 + randn(C, std=0.2)
        w[p + "ln_2.bias"] = randn(C, std=0.1)
        w[p + "mlp.c_fc.weight"] = randn(C, 4 * C, std=0.3)
        w[p + "mlp.c_fc.bias"] = randn(4 * C, std=0.1)
        w[p + "mlp.c_proj.weight"] = randn(4 * C, C, std=0.15)
        w[p + "mlp.c_proj.bias"] = randn(C, std=0.1)
    w["ln_f.weight"] = 1.0 + randn(C, std=0.2)
    w["ln_f.bias"] = randn(C, std=0.1)
    return w


# ---------------------------------------------------------------------------
# the reference forward pass (float64)


def layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + EPS) * weight + bias


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def forward(w, ids):
    """ids: list of T token ids -> logits [T, V] (float64)."""
    T = len(ids)
    C, H = N_EMBD, N_HEAD
    D = C // H
    idx = torch.tensor(ids, dtype=torch.long)
    x = w["wte.weight"][idx] + w["wpe.weight"][:T]  # (T, C)
    causal = torch.tril(torch.ones(T, T, dtype=torch.bool))
    for l in range(N_LAYER):
        p = f"h.{l}."
        h = layer_norm(x, w[p + "ln_1.weight"], w[p + "ln_1.bias"])
        qkv = h @ w[p + "attn.c_attn.weight"] + w[p + "attn.c_attn.bias"]  # (T, 3C)
        q, k, v = qkv.split(C, dim=1)
        q = q.view(T, H, D).transpose(0, 1)  # (H, T, D)
        k = k.view(T, H, D).transpose(0, 1)
        v = v.view(T, H, D).transpose(0, 1)
        att = (q @ k.transpose(1, 2)) / math.sqrt(D)  # (H, T, T)
        att = att.masked_fill(~causal, float("-inf")).softmax(-1)
        y = (att @ v).transpose(0, 1).reshape(T, C)
        x = x + y @ w[p + "attn.c_proj.weight"] + w[p + "attn.c_proj.bias"]
        h = layer_norm(x, w[p + "ln_2.weight"], w[p + "ln_2.bias"])
        h = gelu_tanh(h @ w[p + "mlp.c_fc.weight"] + w[p + "mlp.c_fc.bias"])
        x = x + h @ w[p + "mlp.c_proj.weight"] + w[p + "mlp.c_proj.bias"]
    x = layer_norm(x, w["ln_f.weight"], w["ln_f.bias"])
    return x @ w["wte.weight"].T  # tied head


# ---------------------------------------------------------------------------
# safetensors writer

DTYPES = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16", torch.bool: "BOOL"}


def tensor_bytes(t):
    t = t.contiguous()
    if t.dtype == torch.bfloat16:
        return t.view(torch.int16).numpy().tobytes()  # numpy has no bfloat16
    if t.dtype == torch.bool:
        return t.to(torch.uint8).numpy().tobytes()
    return t.numpy().astype(t.numpy().dtype.newbyteorder("<")).tobytes()


def write_safetensors(path, tensors):
    header, blobs, off = {}, [], 0
    for name, t in tensors.items():
        b = tensor_bytes(t)
        header[name] = {"dtype": DTYPES[t.dtype], "shape": list(t.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for b in blobs:
            f.write(b)


def hf_config(dtype):
    # What transformers' GPT2Config.to_json_file writes for this shape (the
    # keys that matter plus the usual metadata and dropout keys).
    return {
        "_name_or_path": "gpt-engine/hf-gpt2-tiny",
        "activation_function": "gelu_new",
        "architectures": ["GPT2LMHeadModel"],
        "attn_pdrop": 0.1,
        "bos_token_id": VOCAB - 1,
        "embd_pdrop": 0.1,
        "eos_token_id": VOCAB - 1,
        "initializer_range": 0.02,
        "layer_norm_epsilon": EPS,
        "model_type": "gpt2",
        "n_ctx": N_POS,
        "n_embd": N_EMBD,
        "n_head": N_HEAD,
        "n_inner": None,
        "n_layer": N_LAYER,
        "n_positions": N_POS,
        "reorder_and_upcast_attn": False,
        "resid_pdrop": 0.1,
        "scale_attn_by_inverse_layer_idx": False,
        "scale_attn_weights": True,
        "summary_activation": None,
        "summary_first_dropout": 0.1,
        "summary_proj_to_labels": True,
        "summary_type": "cls_index",
        "summary_use_proj": True,
        "torch_dtype": dtype,
        "transformers_version": "4.40.0",
        "use_cache": True,
        "vocab_size": VOCAB,
    }


def variant_tensors(w, dtype, prefix, lm_head, buffers):
    out = {}
    for name, t in w.items():
        out[(prefix + name)] = t.to(dtype)
        if buffers and name.endswith("ln_1.bias"):
            layer = name.split(".")[1]
            # The causal-mask buffers older transformers versions saved.
            out[f"{prefix}h.{layer}.attn.bias"] = torch.tril(torch.ones(N_POS, N_POS)).view(1, 1, N_POS, N_POS)
            out[f"{prefix}h.{layer}.attn.masked_bias"] = torch.tensor(-1e4)
    if lm_head:
        out["lm_head.weight"] = w["wte.weight"].to(dtype)
    return out


SEQUENCES = [
    [5, 17, 42, 8, 91, 3, 64, 12],
    [7],
    [33, 33, 33, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 80, 81, 82, 83, 84, 85, 86, 87, 88, 89, 90, 91, 92],
]
GREEDY_PROMPT = [11, 22, 33]
GREEDY_TOKENS = 20


def greedy(w, prompt, n):
    ids = list(prompt)
    margins = []
    for _ in range(n):
        logits = forward(w, ids)[-1]
        top = torch.topk(logits, 2).values
        margins.append(float(top[0] - top[1]))
        ids.append(int(torch.argmax(logits)))
    return ids[len(prompt):], min(margins)


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    out_dir = sys.argv[1] if len(sys.argv) > 1 else os.path.join(here, "..", "test", "fixtures", "hf-gpt2-tiny")
    os.makedirs(out_dir, exist_ok=True)
    w = make_weights()
    variants = {
        "fp32": dict(dtype=torch.float32, prefix="transformer.", lm_head=True, buffers=True),
        "fp16": dict(dtype=torch.float16, prefix="", lm_head=False, buffers=True),
        "bf16": dict(dtype=torch.bfloat16, prefix="transformer.", lm_head=True, buffers=False),
    }
    expected = {
        "about": "Logits computed in float64 by scripts/make-hf-fixture.py from each variant's stored weights",
        "config": {"n_layer": N_LAYER, "n_head": N_HEAD, "n_embd": N_EMBD, "n_positions": N_POS, "vocab_size": VOCAB},
        "sequences": SEQUENCES,
        "variants": {},
    }
    for name, v in variants.items():
        d = os.path.join(out_dir, name)
        os.makedirs(d, exist_ok=True)
        tensors = variant_tensors(w, v["dtype"], v["prefix"], v["lm_head"], v["buffers"])
        write_safetensors(os.path.join(d, "model.safetensors"), tensors)
        with open(os.path.join(d, "config.json"), "w") as f:
            json.dump(hf_config({"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}[name]), f, indent=2)
            f.write("\n")
        # What a loader sees after converting the stored tensors to fp32.
        stored = {k: t.to(v["dtype"]).to(torch.float64) for k, t in w.items()}
        logits = [[[round(float(x), 7) for x in row] for row in forward(stored, s)] for s in SEQUENCES]
        toks, margin = greedy(stored, GREEDY_PROMPT, GREEDY_TOKENS)
        if margin < 1e-3:
            raise SystemExit(f"{name}: greedy continuation has a near tie (margin {margin}); change SEED")
        expected["variants"][name] = {
            "logits": logits,
            "greedy": {"prompt": GREEDY_PROMPT, "tokens": toks, "min_margin": round(margin, 6)},
        }
    with open(os.path.join(out_dir, "expected.json"), "w") as f:
        json.dump(expected, f, separators=(",", ":"))
        f.write("\n")
    for root, _, files in os.walk(out_dir):
        for fn in sorted(files):
            p = os.path.join(root, fn)
            print(f"{os.path.relpath(p, out_dir)}: {os.path.getsize(p)} bytes")


if __name__ == "__main__":
    main()
