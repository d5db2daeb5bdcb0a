"""
Batched, KV-cached sampling, and the naive oracle it is tested against.

generate(): prompts of different lengths are left-padded into one batch; one prefill fills a
preallocated KV cache, then every step feeds one token per row through GPT.decode_step (lean=False:
through the module forward, the oracle it is tested against). stream(): the same for one prompt,
yielding tokens as they come, for a chat CLI. naive_generate(): no cache, a full forward over the
whole sequence for every new token. generate() and naive_generate() return, per prompt, the new
tokens, *including* the EOS when the row produced one (so a caller can tell a finished answer from
one cut at max_new_tokens, and the EOS is scored as part of the response).

Randomness is per row: row i of the prompt list draws its uniforms from its own generator seeded by
(seed, i), or (seed, row_ids[i]) when the caller shards a longer list as torchrun ranks do, and a token
is picked by inverse-CDF with one uniform per step. So a prompt's answer does not depend on which
other prompts share its batch, nor on batch_size, and all three functions draw the same samples
from the same logits (stream() uses row 0's stream).
"""

from collections import defaultdict

import numpy as np
import torch

from model.gpt import KVCache


def row_uniforms(seed, rows, n_steps, device="cpu"):
    """(len(rows), n_steps) uniforms in [0, 1); row i's stream depends only on (seed, i).

    numpy's SeedSequence hashes the pair (seed, i) into an independent stream (torch's CPU generator
    keeps only 32 bits of a seed, so packing (seed, i) into one integer would collide)."""
    u = np.array([np.random.default_rng([seed, i]).random(n_steps, dtype=np.float32) for i in rows])
    return torch.from_numpy(u.reshape(len(rows), n_steps)).to(device)


def sample_next(logits, u, temperature=1.0, top_k=None, top_p=None):
    """Pick one token per row from logits (B, V) using one uniform per row u (B,). temperature 0: greedy.

    One (B, V) buffer, reused in place through softmax and cumsum: at B=256 the fresh temporaries of
    the out-of-place version cost more than the arithmetic (page faults). Same values, same tokens."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    probs = logits.float() / temperature  # a new buffer: the caller's logits stay untouched
    if top_k is not None:
        kth = torch.topk(probs, min(top_k, probs.size(-1))).values[:, -1:]
        probs.masked_fill_(probs < kth, float("-inf"))
    torch.softmax(probs, dim=-1, out=probs)
    if top_p is not None and top_p < 1.0:
        # nucleus: keep the smallest set of most likely tokens whose mass reaches top_p
        p_sorted, order = probs.sort(dim=-1, descending=True)
        drop = (p_sorted.cumsum(dim=-1) - p_sorted) >= top_p  # mass before this token already enough
        probs = torch.zeros_like(probs).scatter(-1, order, p_sorted.masked_fill(drop, 0.0))
    cdf = probs.cumsum_(dim=-1)
    # first index whose cdf exceeds u * total: a zero-probability token can never be picked
    idx = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous(), right=True)
    return idx.squeeze(-1).clamp_max(probs.size(-1) - 1)


def _check(model, prompts, max_new_tokens):
    limit = model.config.block_size
    for i, p in enumerate(prompts):
        if len(p) == 0:
            raise ValueError(f"prompt {i} is empty: give at least one token")
        if len(p) + max_new_tokens > limit:
            raise ValueError(
                f"prompt {i} has {len(p)} tokens; with max_new_tokens={max_new_tokens} that is "
                f"{len(p) + max_new_tokens} > the model's context of {limit}. Shorten the prompt or "
                f"lower max_new_tokens."
            )


def _cut_at_eos(tokens, eos_id):
    """Keep tokens up to and including the first EOS."""
    if eos_id is not None and eos_id in tokens:
        return tokens[: tokens.index(eos_id) + 1]
    return tokens


@torch.inference_mode()
def generate(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None,
             seed=0, batch_size=256, row_ids=None, lean=True):
    """Sample up to max_new_tokens for each prompt (a list of token-id lists). Returns a list of lists.
    lean=False decodes with the module forward instead of GPT.decode_step (the oracle; same tokens)."""
    _check(model, prompts, max_new_tokens)
    was_training = model.training
    model.eval()
    out = [None] * len(prompts)
    # similar lengths share a batch (less padding); rows are independent, so the order changes nothing
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    for start in range(0, len(order), batch_size):
        rows = order[start : start + batch_size]
        keys = rows if row_ids is None else [row_ids[i] for i in rows]
        new = _generate_batch(model, [prompts[i] for i in rows], keys, max_new_tokens, temperature,
                              top_k, top_p, eos_id, seed, lean)
        for i, tokens in zip(rows, new):
            out[i] = tokens
    model.train(was_training)
    return out


def _prefill(model, prompts, max_new_tokens):
    """Left-pad the prompts into one batch and run one prefill. -> (last logits (B, V), cache, next positions)."""
    device = next(model.parameters()).device
    B, P = len(prompts), max(len(p) for p in prompts)
    lens = torch.tensor([len(p) for p in prompts], device=device)
    idx = torch.zeros(B, P, dtype=torch.long)
    for b, p in enumerate(prompts):
        idx[b, P - len(p) :] = torch.tensor(p)  # left padding: every row's last prompt token is at P-1
    idx = idx.to(device)
    valid = torch.arange(P, device=device)[None, :] >= (P - lens)[:, None]
    pos = (torch.arange(P, device=device)[None, :] - (P - lens)[:, None]).clamp_min(0)
    cache = KVCache(model.config, B, P + max_new_tokens, device)
    # the head only at the last position: logits for all B x P positions would be the prefill's
    # biggest matmul and buffer (67 MB at B=256, P=32), for nothing
    h = model.hidden(idx, pos=pos, cache=cache, valid=valid)[:, -1]
    return model.lm_head(model.ln_f(h)), cache, lens.clone()


def _decode(model, nxt, pos, cache, lean=True):
    """One cached step: the new token of every row (B,) at its position (B,) -> next logits (B, V).

    lean: GPT.decode_step (functionals, ~2x faster at batch 1); otherwise the module forward, kept
    as the oracle that tests and bench/ compare it with (both give bit-identical logits)."""
    if lean:
        return model.decode_step(nxt, pos, cache)
    return model(nxt[:, None], pos=pos[:, None], cache=cache)[:, -1]


def _generate_batch(model, prompts, rows, max_new_tokens, temperature, top_k, top_p, eos_id, seed, lean):
    logits, cache, next_pos = _prefill(model, prompts, max_new_tokens)
    device, B = logits.device, len(prompts)
    u = row_uniforms(seed, rows, max_new_tokens, device)
    tokens = torch.full((B, max_new_tokens), -1, dtype=torch.long, device=device)
    alive = torch.arange(B, device=device)  # batch rows still generating
    done = torch.zeros(B, dtype=torch.bool, device=device)  # over the alive rows
    for t in range(max_new_tokens):
        nxt = sample_next(logits, u[:, t], temperature, top_k, top_p)
        tokens[alive, t] = nxt
        if eos_id is not None:
            done |= nxt == eos_id
            n_done = int(done.sum())
            if n_done == len(alive):
                break
            if n_done >= max(1, len(alive) // 4):
                # drop finished rows (and their cache): the remaining steps cost only what is left to write
                keep = ~done
                alive, nxt, next_pos, u, done = alive[keep], nxt[keep], next_pos[keep], u[keep], done[keep]
                cache.keep(keep)
        if t + 1 < max_new_tokens:
            logits = _decode(model, nxt, next_pos, cache, lean)
            next_pos += 1
    return [_cut_at_eos([x for x in row if x >= 0], eos_id) for row in tokens.tolist()]


@torch.inference_mode()
def stream(model, prompt_ids, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None, seed=0):
    """Yield the new tokens of one prompt one at a time, as they are sampled (for a chat CLI).

    The EOS is yielded, then the stream stops. Same prefill, decode step, sampling and random stream
    as row 0 of generate(), so list(stream(m, p, ...)) == generate(m, [p], ...)[0] for the same seed.
    """
    _check(model, [prompt_ids], max_new_tokens)
    was_training = model.training
    model.eval()
    try:
        logits, cache, pos = _prefill(model, [prompt_ids], max_new_tokens)
        u = row_uniforms(seed, [0], max_new_tokens, logits.device)
        for t in range(max_new_tokens):
            nxt = sample_next(logits, u[:, t], temperature, top_k, top_p)
            token = int(nxt)
            yield token
            if token == eos_id or t + 1 == max_new_tokens:
                break
            logits = _decode(model, nxt, pos, cache)
            pos += 1
    finally:  # also when the caller stops early (close() or garbage collection)
        model.train(was_training)


@torch.inference_mode()
def naive_generate(model, prompts, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None,
                   seed=0, batch_size=256, row_ids=None):
    """The oracle: no cache, a full forward over the whole sequence for every new token.

    Prompts of equal length are batched together (no padding needed); same signature and same
    per-row randomness as generate().
    """
    _check(model, prompts, max_new_tokens)
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    out = [None] * len(prompts)
    by_len = defaultdict(list)
    for i, p in enumerate(prompts):
        by_len[len(p)].append(i)
    for group in by_len.values():
        for start in range(0, len(group), batch_size):
            rows = group[start : start + batch_size]
            x = torch.tensor([prompts[i] for i in rows], device=device)
            u = row_uniforms(seed, rows if row_ids is None else [row_ids[i] for i in rows], max_new_tokens, device)
            for t in range(max_new_tokens):
                nxt = sample_next(model(x)[:, -1], u[:, t], temperature, top_k, top_p)
                x = torch.cat([x, nxt[:, None]], dim=1)
                if eos_id is not None and bool((x[:, -t - 1 :] == eos_id).any(dim=1).all()):
                    break
            for i, row in zip(rows, x[:, len(prompts[rows[0]]) :].tolist()):
                out[i] = _cut_at_eos(row, eos_id)
    model.train(was_training)
    return out
