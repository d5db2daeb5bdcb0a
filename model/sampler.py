"""
Batched, KV-cached sampling, and the naive oracle it is tested against.

generate(): prompts of different lengths are left-padded into one batch; one prefill fills a
preallocated KV cache, then every step feeds one token per row through GPT.decode_step (lean=False:
through the module forward, the oracle it is tested against). stream(): the same for one prompt,
yielding tokens as they come, for a chat CLI. naive_generate(): no cache, a full forward over the
whole sequence for every new token. generate() and naive_generate() return, per prompt, the new
tokens, *including* the EOS when the row produced one (so a caller can tell a finished answer from
one cut at max_new_tokens, and the EOS is scored as part of the response).

generate_k(): K samples per prompt from one prefill: the prompt's KV cache, last logits and positions
are repeated to K rows, and all samples decode as rows of one batch (the same loop as generate()). It can
also return each sample's log-prob under the untempered model, computed from the logits the loop
already has.

Randomness is per sampled row, one convention for all four functions: a row with key `key` draws its
uniforms from numpy's default_rng([seed, key]) (default_rng([seed, *key]) for a tuple key), and a token
is picked by inverse-CDF with one uniform per step. Row i of the prompt list has key i, or row_ids[i]
when the caller shards a longer list as torchrun ranks do; sample j of that prompt in generate_k() has
key sample_key(row_id, j): the row id itself for j = 0 (sample 0 is what generate() draws), the tuple
(row_id, j) for j >= 1. So a sample does not depend on which other prompts share its batch, nor on
batch_size or k, and generate_k(...)[i][j] == generate(..., row_ids=[sample_key(r, j) for r in ids])[i]:
K separate calls are its oracle. stream() uses row 0's stream.
"""

from collections import defaultdict

import numpy as np
import torch

from model.gpt import KVCache


def row_uniforms(seed, rows, n_steps, device="cpu"):
    """(len(rows), n_steps) uniforms in [0, 1); each row's stream depends only on (seed, its key).

    A key is an int or a tuple of ints (see sample_key). numpy's SeedSequence hashes [seed, *key] into an
    independent stream (torch's CPU generator keeps only 32 bits of a seed, so packing (seed, i) into
    one integer would collide)."""
    u = np.array([np.random.default_rng([seed, *key] if isinstance(key, tuple) else [seed, key])
                  .random(n_steps, dtype=np.float32) for key in rows])
    return torch.from_numpy(u.reshape(len(rows), n_steps)).to(device)


def sample_key(row_id, j):
    """The random-stream key of sample j of the prompt with this row id (generate_k). Sample 0 keeps the
    row id itself, so it is what generate() draws; the others get (row_id, j), whose stream no int key
    shares (numpy hashes the words [seed, row_id, j]; with ids and seeds below 2**32, as ours are)."""
    return row_id if j == 0 else (row_id, j)


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
    samples = generate_k(model, prompts, 1, max_new_tokens, temperature, top_k, top_p, eos_id, seed,
                         batch_size, row_ids, lean=lean)
    return [s[0] for s in samples]


@torch.inference_mode()
def generate_k(model, prompts, k, max_new_tokens, temperature=1.0, top_k=None, top_p=None, eos_id=None,
               seed=0, batch_size=256, row_ids=None, return_logprobs=False, lean=True):
    """k samples per prompt, one prefill per prompt. Returns out, out[i][j] the token list of sample j of
    prompt i (as generate(): EOS included when produced, nothing after it); sample j draws from the
    stream sample_key(row id, j), so out[i][0] is what generate() gives prompt i.

    batch_size counts sampled rows (the memory that matters), so a batch prefills batch_size // k prompts.
    return_logprobs: returns (out, logps), logps[i][j] the sum over the sample's tokens (EOS included) of
    their log-probs under the untempered model (log_softmax of the raw logits: no temperature, top-k or
    top-p), for len(out[i][j]) tokens: the policy's own log-likelihood of what it sampled."""
    _check(model, prompts, max_new_tokens)
    if not 1 <= k <= batch_size:
        raise ValueError(f"k={k} samples per prompt need 1 <= k <= batch_size={batch_size}")
    was_training = model.training
    model.eval()
    out, logps = [None] * len(prompts), [None] * len(prompts)
    # similar lengths share a batch (less padding); rows are independent, so the order changes nothing
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    per_batch = batch_size // k
    for start in range(0, len(order), per_batch):
        rows = order[start : start + per_batch]
        ids = rows if row_ids is None else [row_ids[i] for i in rows]
        keys = [sample_key(r, j) for r in ids for j in range(k)]  # row b * k + j: sample j of prompt b
        logits, cache, next_pos = _prefill(model, [prompts[i] for i in rows], max_new_tokens)
        if k > 1:
            logits, next_pos = _repeat_rows(logits, cache, next_pos, k)
        u = row_uniforms(seed, keys, max_new_tokens, logits.device)
        tokens, lp = _decode_loop(model, logits, cache, next_pos, u, temperature, top_k, top_p, eos_id, lean,
                                  return_logprobs)
        for b, i in enumerate(rows):
            out[i] = tokens[b * k : (b + 1) * k]
            if return_logprobs:
                logps[i] = lp[b * k : (b + 1) * k]
    model.train(was_training)
    return (out, logps) if return_logprobs else out


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


def _repeat_rows(logits, cache, next_pos, k):
    """B prefilled rows -> B * k rows, row b * k + j a copy of row b: the k samples of a prompt share its
    one prefill, then decode as independent rows. -> (logits, next positions); the cache in place."""
    cache.repeat_rows(k)
    return logits.repeat_interleave(k, dim=0), next_pos.repeat_interleave(k)


def _token_logprob(logits, nxt):
    """log softmax(logits)[nxt] per row, in float32: the untempered model's log-prob of each sampled token."""
    logits = logits.float()
    return logits.gather(1, nxt[:, None]).squeeze(1) - torch.logsumexp(logits, dim=-1)


def _decode_loop(model, logits, cache, next_pos, u, temperature, top_k, top_p, eos_id, lean, logprobs=False):
    """Sample every row of a prefilled batch: logits (B, V), its cache, next positions (B,), uniforms
    (B, max_new_tokens). -> (B token lists cut after the EOS, B log-prob sums or None)."""
    device, (B, max_new_tokens) = logits.device, u.shape
    tokens = torch.full((B, max_new_tokens), -1, dtype=torch.long, device=device)
    logp = torch.zeros(B, dtype=torch.float64, device=device) if logprobs else None
    alive = torch.arange(B, device=device)  # batch rows still generating
    done = torch.zeros(B, dtype=torch.bool, device=device)  # over the alive rows
    for t in range(max_new_tokens):
        nxt = sample_next(logits, u[:, t], temperature, top_k, top_p)
        tokens[alive, t] = nxt
        if logprobs:  # a row past its EOS (finished, not dropped yet) samples tokens that are cut: add 0
            logp.index_add_(0, alive, _token_logprob(logits, nxt).masked_fill(done, 0.0).double())
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
    out = [_cut_at_eos([x for x in row if x >= 0], eos_id) for row in tokens.tolist()]
    return out, None if logp is None else logp.tolist()


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
