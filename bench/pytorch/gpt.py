"""The GPT-2/GPT-3 model of docs/ARCHITECTURE.md "The model" in plain PyTorch, for the twins.

Pre-norm blocks, fused QKV with bias, causal dense or locally banded
attention per layer (query i sees keys i - w < j <= i), MLP with tanh GELU,
ln_f, LM head tied to wte, vocabulary padded to a multiple of 64 (as the
engine pads internally). Init N(0, 0.02), residual projections
0.02 / sqrt(2 L). A KV cache for decoding: dense layers keep every key,
banded layers attend to the last w only.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

HAS_SDPA = hasattr(F, "scaled_dot_product_attention")


def layer_patterns(cfg):
    p = cfg["attention_pattern"]
    L = cfg["n_layer"]
    if isinstance(p, list):
        return p
    if p == "alternating":
        return ["dense" if i % 2 == 0 else "banded" for i in range(L)]
    return [p] * L


def padded_vocab(v):
    return (v + 63) // 64 * 64


def allowed_mask(T, pattern, window, device, q_offset=0, Tk=None):
    Tk = T if Tk is None else Tk
    i = torch.arange(q_offset, q_offset + T, device=device).unsqueeze(1)
    j = torch.arange(Tk, device=device).unsqueeze(0)
    m = j <= i
    if pattern == "banded" and window:
        m = m & (j > i - window)
    return m


class Block(nn.Module):
    def __init__(self, cfg, pattern):
        super().__init__()
        d = cfg["n_embd"]
        self.h = cfg["n_head"]
        self.pattern = pattern
        self.window = cfg.get("attention_window")
        eps = cfg.get("layer_norm_epsilon", 1e-5)
        self.ln_1 = nn.LayerNorm(d, eps=eps)
        self.c_attn = nn.Linear(d, 3 * d)
        self.c_proj = nn.Linear(d, d)
        self.ln_2 = nn.LayerNorm(d, eps=eps)
        self.c_fc = nn.Linear(d, 4 * d)
        self.mlp_proj = nn.Linear(4 * d, d)
        self._masks = {}

    def attend(self, q, k, v, q_offset=0):
        T, Tk = q.shape[-2], k.shape[-2]
        key = (T, Tk, q_offset, q.device)
        dense_causal = self.pattern == "dense" or not self.window or self.window >= Tk
        if HAS_SDPA and q_offset == 0 and T == Tk and dense_causal:
            return F.scaled_dot_product_attention(q, k, v, is_causal=True)
        if key not in self._masks:
            self._masks[key] = allowed_mask(T, self.pattern, self.window, q.device, q_offset, Tk)
        m = self._masks[key]
        if HAS_SDPA:
            return F.scaled_dot_product_attention(q, k, v, attn_mask=m)
        s = torch.matmul(q, k.transpose(-2, -1)) * (1.0 / math.sqrt(q.shape[-1]))
        s = s.masked_fill(~m, float("-inf"))
        return torch.matmul(torch.softmax(s, dim=-1), v)

    def forward(self, x, cache=None, pos=0):
        B, T, C = x.shape
        H = self.h
        D = C // H
        qkv = self.c_attn(self.ln_1(x))
        q, k, v = qkv.split(C, dim=2)
        q = q.view(B, T, H, D).transpose(1, 2)
        k = k.view(B, T, H, D).transpose(1, 2)
        v = v.view(B, T, H, D).transpose(1, 2)
        if cache is None:
            y = self.attend(q, k, v)
        else:
            kc, vc = cache
            kc[:, :, pos : pos + T] = k
            vc[:, :, pos : pos + T] = v
            end = pos + T
            start = 0
            if self.pattern == "banded" and self.window and T == 1:
                start = max(0, end - self.window)  # decode: only the band's keys
            ks, vs = kc[:, :, start:end], vc[:, :, start:end]
            if T == 1:
                s = torch.matmul(q, ks.transpose(-2, -1)) * (1.0 / math.sqrt(D))
                y = torch.matmul(torch.softmax(s, dim=-1), vs)
            else:
                y = self.attend(q, ks, vs, q_offset=pos - start) if pos else self.attend(q, k, v)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        x = x + self.c_proj(y)
        x = x + self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))
        return x


class GPT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        self.cfg = cfg
        d = cfg["n_embd"]
        self.vocab = padded_vocab(cfg["vocab_size"])
        self.wte = nn.Embedding(self.vocab, d)
        self.wpe = nn.Embedding(cfg["n_positions"], d)
        self.blocks = nn.ModuleList([Block(cfg, p) for p in layer_patterns(cfg)])
        self.ln_f = nn.LayerNorm(d, eps=cfg.get("layer_norm_epsilon", 1e-5))
        L = cfg["n_layer"]
        for name, p in self.named_parameters():
            if p.dim() == 2:
                std = 0.02 / math.sqrt(2 * L) if name.endswith("c_proj.weight") or name.endswith("mlp_proj.weight") else 0.02
                nn.init.normal_(p, 0.0, std)
            elif name.endswith("bias"):
                nn.init.zeros_(p)

    def forward(self, idx, caches=None, pos=0):
        B, T = idx.shape
        positions = torch.arange(pos, pos + T, device=idx.device)
        x = self.wte(idx) + self.wpe(positions)
        for i, blk in enumerate(self.blocks):
            x = blk(x, None if caches is None else caches[i], pos)
        x = self.ln_f(x)
        return torch.matmul(x, self.wte.weight.t())  # tied head [B, T, Vp]

    def new_cache(self, B, T, dtype, device):
        C = self.cfg["n_embd"]
        H = self.cfg["n_head"]
        D = C // H
        return [
            (torch.empty(B, H, T, D, dtype=dtype, device=device), torch.empty(B, H, T, D, dtype=dtype, device=device))
            for _ in self.blocks
        ]


def adamw_for(model, lr=1e-4, **kw):
    """AdamW as the engine's: decay on every 2-D tensor (embeddings too), none on biases and LayerNorms.
    Further keyword arguments go to torch.optim.AdamW (fused=True, for one)."""
    decay = [p for p in model.parameters() if p.dim() == 2]
    rest = [p for p in model.parameters() if p.dim() != 2]
    groups = [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.95), eps=1e-8, **kw)
