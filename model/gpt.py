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
        self.key_mask = None  # additive (B, 1, 1, max_len) mask for GPT.decode_step, when there is padding
        self.weights = None  # GPT.decode_step's per-layer weight handles, gathered once per batch

    def prepare(self, valid_new):
        """Record the T new keys' validity and set this step's attention mask (shared by all layers)."""
        B, T = valid_new.shape
        s = self.pos
        self.valid[:, s : s + T] = valid_new
        if s == 0:
            self.padded = bool((~valid_new).any())  # one host sync per batch, at the prefill
            if self.padded:  # decode steps add this to their scores: -inf on padding keys, 0 on all others
                mask = torch.zeros(self.valid.shape, device=valid_new.device)
                self.key_mask = mask.masked_fill_(~self.valid, float("-inf"))[:, None, None, :]
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
        if self.key_mask is not None:
            self.key_mask = self.key_mask[rows]
        if self.k is not None:
            self.k, self.v = self.k[:, rows], self.v[:, rows]

    def repeat_rows(self, n):
        """Each row n times in a row (row b -> rows b*n .. b*n+n-1): n samples continue one prefill.
        Only the keys written so far are copied; the rest stays unwritten, as in a fresh cache (indexing
        would copy all max_len slots: at 256 rows more time than the prefill itself)."""
        B = self.valid.size(0)
        rows = torch.arange(B, device=self.valid.device).repeat_interleave(n)
        self.valid = self.valid[rows]
        if self.key_mask is not None:
            self.key_mask = self.key_mask[rows]
        self.shape = (self.shape[0], B * n, *self.shape[2:])
        if self.k is not None:
            L, _, H, T, hd = self.shape
            s, old_k, old_v = self.pos, self.k, self.v
            self.k = torch.empty(self.shape, device=old_k.device, dtype=old_k.dtype)
            self.v = torch.empty(self.shape, device=old_v.device, dtype=old_v.dtype)
            # one broadcast copy per tensor, no temporary: (L, B, 1, H, s, hd) into (L, B, n, H, s, hd)
            self.k.view(L, B, n, H, T, hd)[..., :s, :] = old_k[:, :, None, :, :s]
            self.v.view(L, B, n, H, T, hd)[..., :s, :] = old_v[:, :, None, :, :s]

    def update(self, layer, k, v):
        if self.k is None:
            # empty, not zeros: every key is written before it is read (readers slice [:pos + T]), and at
            # B=256 the cache is 2 x 84 MB, mostly never reached when answers end early
            self.k = torch.empty(self.shape, device=k.device, dtype=k.dtype)
            self.v = torch.empty(self.shape, device=v.device, dtype=v.dtype)
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


def gelu(x):
    """Exact (erf) GELU, not GPT-2's tanh approximation: on CPU the exact one is the faster where the
    time goes. `python -m bench.gelu` (haiku, both interleaved in one process, 1 thread, busy 2-core
    machine): a training step 1.04-1.06x faster than with tanh (the MLP's forward + backward
    1.03-1.21x), generation at batch 256 1.03-1.09x. At batch 1 it is slower (a decode step 441 us
    instead of 378 us of CPU time): torch runs the exact GELU through oneDNN, whose fixed cost per call
    (~6-15 us) only pays from ~8k elements up. Training is ~88% of a self-play iteration, so exact.
    Checkpoints load either way (same weights); the two activations differ by at most 5e-4."""
    return F.gelu(x)


class MLP(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias)
        self.dropout = nn.Dropout(config.dropout)

    def forward(self, x):
        return self.dropout(self.c_proj(gelu(self.c_fc(x))))


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

    def forward(self, idx, pos=None, cache=None, valid=None, targets=None, mask=None):
        """idx (B, T) token ids -> logits (B, T, vocab); with targets and mask, the response-only token
        log-probs of response_logprobs() instead (through forward, so that DDP and torch.compile see it).

        pos (B, T): each token's position (default 0..T-1 for every row). With a left-padded batch the
        real tokens of every row start at position 0; the caller keeps positions < block_size (checking
        here would cost a host sync per decoded token). cache: a KVCache to read and extend; valid (B, T):
        which of the new tokens are real (default all), only used with a cache.
        """
        if targets is not None:
            return self.response_logprobs(idx, targets, mask)
        return self.lm_head(self.ln_f(self.hidden(idx, pos, cache, valid)))

    def hidden(self, idx, pos=None, cache=None, valid=None):
        """The residual stream after the last block, before the final norm and the head: (B, T, n_embd).
        Arguments as forward()."""
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
        return x

    def response_logprobs(self, idx, targets, mask):
        """Token log-probs log p(targets[b, t] | idx[b, :t+1]) where mask != 0, exactly 0.0 elsewhere:
        (B, T) float32, differentiable (conventions of model/losses.py: targets are idx shifted left).

        Same values as losses.token_logprobs(self(idx), targets) * mask (the oracle the tests use), but
        the final norm, the vocab-sized head and the log-softmax run only at the scored positions
        (about 40% of them in our self-play batches), and cross_entropy fuses the log-softmax and the
        gather. The log-softmax is in float32, also under bf16 autocast.
        """
        B, T = idx.shape
        where = mask.flatten().nonzero().squeeze(1)  # one host sync: how many positions are scored
        h = self.hidden(idx).flatten(0, 1).index_select(0, where)
        logits = self.lm_head(self.ln_f(h)).float()
        lp = -F.cross_entropy(logits, targets.flatten().index_select(0, where), reduction="none")
        return lp.new_zeros(B * T).index_copy(0, where, lp).view(B, T)

    # ------------------------------------------------------------------------------------------------
    # The sampler's hot loop. At one new token per row a step is mostly Python and operator dispatch
    # (through forward(): module calls, mask building, transposes and copies in every layer), so this
    # is the same math as functionals on weight handles gathered once per batch: no module calls, no
    # transposes ((B, 1, H, hd) and (B, H, 1, hd) are the same memory), a padding mask built once per
    # batch. It calls the same kernels as forward(idx, pos, cache), which stays the oracle: tests check
    # that both give the same logits, bit for bit.

    def _decode_weights(self):
        """Per-layer weight handles in the order decode_step reads them, the linear weights transposed
        once (views) so that each step calls addmm directly, as F.linear would after its own .t()."""
        def lin(m):
            return m.weight.t(), m.bias

        layers = [(b.ln_1.weight, b.ln_1.bias, *lin(b.attn.c_attn), *lin(b.attn.c_proj), b.ln_2.weight,
                   b.ln_2.bias, *lin(b.mlp.c_fc), *lin(b.mlp.c_proj)) for b in self.blocks]
        return layers, (self.ln_f.weight, self.ln_f.bias, self.lm_head.weight.t())

    def decode_step(self, idx, pos, cache):
        """One cached step after a prefill, no dropout: idx (B,) new token ids at positions pos (B,) ->
        logits (B, vocab). Same math as forward(idx[:, None], pos[:, None], cache)[:, -1] (the new keys
        are real tokens), the same kernels, so the same bits."""
        if cache.weights is None:
            cache.weights = self._decode_weights()
        layers, (lnf_w, lnf_b, head_t) = cache.weights
        B, C, H, s = idx.size(0), self.config.n_embd, self.config.n_head, cache.pos
        eps = self.ln_f.eps
        x = torch.embedding(self.wte.weight, idx) + torch.embedding(self.wpe.weight, pos)  # (B, C)
        mask = cache.key_mask
        if mask is not None:
            mask = mask[..., : s + 1].to(cache.k.dtype)  # the keys' dtype: bf16 under autocast
        for (w1, b1, wa, ba, wap, bap, w2, b2, wfc, bfc, wp, bp), k_cache, v_cache in zip(layers, cache.k, cache.v):
            qkv = _linear(torch.layer_norm(x, (C,), w1, b1, eps), wa, ba)
            q, k, v = qkv.view(B, 3, H, 1, C // H).unbind(1)  # (B, H, 1, hd) each: views, no copies
            k_cache[:, :, s : s + 1] = k
            v_cache[:, :, s : s + 1] = v
            y = F.scaled_dot_product_attention(q, k_cache[:, :, : s + 1], v_cache[:, :, : s + 1], attn_mask=mask)
            x = x + _linear(y.reshape(B, C), wap, bap)
            x = x + _linear(gelu(_linear(torch.layer_norm(x, (C,), w2, b2, eps), wfc, bfc)), wp, bp)
        cache.pos += 1
        return torch.layer_norm(x, (C,), lnf_w, lnf_b, eps) @ head_t


def _linear(x, w_t, b):
    """F.linear(x, w_t.t(), b) for 2-D x, without its per-call transpose: the same addmm or mm kernel."""
    return x @ w_t if b is None else torch.addmm(b, x, w_t)
