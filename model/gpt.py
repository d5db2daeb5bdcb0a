"""
A GPT written from scratch, small enough to train on a laptop CPU in minutes.

Token + learned position embeddings, pre-LayerNorm blocks, causal self-attention through
F.scaled_dot_product_attention, a GELU MLP, and an output head tied to the token embedding.
GPT-2-style init. The forward takes an optional KV cache and explicit per-row positions so that
the sampler can run left-padded batches of prompts of different lengths (model/sampler.py).
"""

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F


@dataclass
class GPTConfig:
    vocab_size: int = 2048  # our BPE: country, city and fish names become single tokens
    block_size: int = 256  # context length
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True

    @classmethod
    def haiku(cls, **kw):
        """About 1.09M parameters with the 2048-token vocabulary (embeddings counted): nanoGPT's CPU size."""
        return cls(**{**dict(n_layer=4, n_head=4, n_embd=128), **kw})

    @classmethod
    def sonnet(cls, **kw):
        """About 10M parameters: the next size up, for one GPU or a patient CPU."""
        return cls(**{**dict(n_layer=8, n_head=8, n_embd=320), **kw})

    @classmethod
    def preset(cls, name, **kw):
        if name not in ("haiku", "sonnet"):
            raise ValueError(f"unknown preset {name!r}: use 'haiku' or 'sonnet'")
        return getattr(cls, name)(**kw)

    def to_dict(self):
        return asdict(self)


class KVCache:
    """Preallocated keys and values for every layer, plus which cached keys are real (not padding).

    All rows share one write index `pos` (prompts are left-padded to a common length), while each row
    has its own token positions (passed to GPT.forward). `valid[b, j]` is False for row b's padding.
    """

    def __init__(self, config, batch_size, max_len, device):
        hd = config.n_embd // config.n_head
        self.shape = (config.n_layer, batch_size, config.n_head, max_len, hd)
        self.k = self.v = None  # allocated at the first write, in the dtype of the keys (bf16 under autocast)
        self.valid = torch.ones(batch_size, max_len, dtype=torch.bool, device=device)
        self.pos = 0
        self.attn_mask = None  # set by GPT.forward for the current step, shared by all layers

    def prepare(self, valid_new):
        """Record the T new keys' validity and set this step's attention mask (shared by all layers)."""
        B, T = valid_new.shape
        s = self.pos
        self.valid[:, s : s + T] = valid_new
        if s == 0:
            self.padded = bool((~valid_new).any())  # one host sync per batch, at the prefill
        if not self.padded and (s == 0 or T == 1):
            self.attn_mask = None  # plain causal prefill, or one query that may see every cached key
            return
        q_idx = torch.arange(s, s + T, device=valid_new.device)[:, None]
        k_idx = torch.arange(s + T, device=valid_new.device)[None, :]
        # a padding query attends to itself only, so that no softmax row is empty (that would be NaN)
        allowed = ((k_idx <= q_idx) & self.valid[:, None, : s + T]) | (k_idx == q_idx)
        # additive float mask, built once per step instead of once per layer inside SDPA
        mask = torch.zeros(allowed.shape, device=allowed.device).masked_fill_(~allowed, float("-inf"))
        self.attn_mask = mask[:, None]

    def keep(self, rows):
        """Keep only these batch rows (a bool mask or indices): finished rows stop costing compute."""
        self.valid = self.valid[rows]
        if self.k is not None:
            self.k, self.v = self.k[:, rows], self.v[:, rows]

    def update(self, layer, k, v):
        if self.k is None:
            self.k = torch.zeros(self.shape, device=k.device, dtype=k.dtype)
            self.v = torch.zeros(self.shape, device=v.device, dtype=v.dtype)
        T = k.size(2)
        self.k[layer, :, :, self.pos : self.pos + T] = k
        self.v[layer, :, :, self.pos : self.pos + T] = v
        end = self.pos + T
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        assert config.n_embd % config.n_head == 0
        self.n_head = config.n_head
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)  # q, k, v at once
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)
        self.resid_dropout = nn.Dropout(config.dropout)
        self.dropout = config.dropout

    def forward(self, x, cache=None, layer=0):
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for t in (q, k, v))
        if cache is None:
            dropout = self.dropout if self.training else 0.0
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True, dropout_p=dropout)
        else:
            k, v = cache.update(layer, k, v)
            mask = cache.attn_mask
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=None if mask is None else mask.to(q.dtype),
                                               is_causal=mask is None and T > 1)
        y = y.transpose(1, 2).contiguous().view(B, T, C)
        return self.resid_dropout(self.c_proj(y))


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(F.gelu(self.c_fc(x), approximate="tanh")))


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config)

    def forward(self, x, cache=None, layer=0):
        x = x + self.attn(self.ln_1(x), cache, layer)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.vocab_size, config.n_embd)
        self.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        self.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.wte.weight  # weight tying: fewer parameters, better small models

        self.apply(self._init_weights)
        # GPT-2: scale the residual projections by 1/sqrt(2 * n_layer) so the residual stream stays O(1)
        for name, p in self.named_parameters():
            if name.endswith("c_proj.weight"):
                nn.init.normal_(p, mean=0.0, std=0.02 / math.sqrt(2 * config.n_layer))

    @staticmethod
    def _init_weights(module):
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=0.02)

    def num_params(self):
        """All parameters, embeddings counted; the tied head is counted once."""
        return sum(p.numel() for p in self.parameters())

    def forward(self, idx, pos=None, cache=None, valid=None):
        """idx (B, T) token ids -> logits (B, T, vocab).

        pos (B, T): each token's position (default 0..T-1 for every row). With a left-padded batch the
        real tokens of every row start at position 0; the caller keeps positions < block_size (checking
        here would cost a host sync per decoded token). cache: a KVCache to read and extend; valid (B, T):
        which of the new tokens are real (default all), only used with a cache.
        """
        B, T = idx.shape
        if pos is None:
            if T > self.config.block_size:
                raise ValueError(f"sequence of {T} tokens is longer than the context ({self.config.block_size})")
            pos = torch.arange(T, device=idx.device).expand(B, T)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        if cache is not None:
            cache.prepare(valid if valid is not None else torch.ones_like(idx, dtype=torch.bool))
        for i, block in enumerate(self.blocks):
            x = block(x, cache, i)
        if cache is not None:
            cache.pos += T
        return self.lm_head(self.ln_f(x))
