"""The GPT and its KV-cached sampler, checked against the naive no-cache oracle."""

import pytest
import torch

from model import GPT, GPTConfig, generate, naive_generate
from model.gpt import KVCache
from model.sampler import generate_k, sample_key, sample_next, stream

TINY = dict(vocab_size=64, block_size=64, n_layer=2, n_head=2, n_embd=32)


def random_prompts(n, lengths, vocab, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, vocab, (lengths[i % len(lengths)],), generator=g).tolist() for i in range(n)]


@pytest.fixture(scope="module")
def random_model():
    torch.manual_seed(0)
    return GPT(GPTConfig(**TINY)).eval()


@pytest.fixture(scope="module")
def trained_model():
    """A model trained for a few seconds to continue arithmetic progressions mod 60: its greedy
    answers are confident and structured, unlike a random model's near-uniform logits."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        start = torch.randint(0, 60, (32, 1), generator=g)
        step = torch.randint(1, 4, (32, 1), generator=g)
        seq = (start + step * torch.arange(40)) % 60
        logits = model(seq[:, :-1])
        loss = torch.nn.functional.cross_entropy(logits.reshape(-1, 64), seq[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 1.5, "the fixture model failed to learn; the greedy test would be vacuous"
    return model.eval()


def test_haiku_has_about_one_million_parameters():
    n = GPT(GPTConfig.haiku()).num_params()
    assert 0.8e6 <= n <= 1.2e6, n
    n = GPT(GPTConfig.sonnet()).num_params()
    assert 8e6 <= n <= 12e6, n


def test_forward_shape_and_tied_head(random_model):
    logits = random_model(torch.zeros(3, 5, dtype=torch.long))
    assert logits.shape == (3, 5, TINY["vocab_size"])
    assert random_model.lm_head.weight is random_model.wte.weight


@pytest.mark.parametrize("model_name", ["random_model", "trained_model"])
def test_greedy_generate_equals_naive(model_name, request):
    model = request.getfixturevalue(model_name)
    prompts = random_prompts(7, [1, 4, 9, 2, 13, 6, 3], 60)
    fast = generate(model, prompts, 20, temperature=0)
    slow = naive_generate(model, prompts, 20, temperature=0)
    assert fast == slow
    assert all(len(r) == 20 for r in fast)


def test_sampled_generate_equals_naive(trained_model):
    """Same per-row random streams: the fast and the naive path draw the same samples."""
    prompts = random_prompts(6, [2, 5, 11], 60, seed=1)
    assert generate(trained_model, prompts, 16, seed=7) == naive_generate(trained_model, prompts, 16, seed=7)


def test_cached_logits_match_plain_forward(trained_model):
    """Left-padded prefill plus cached decode steps give the logits of a plain forward on each row."""
    model = trained_model
    prompts = random_prompts(4, [3, 10, 1, 6], 60, seed=2)
    B, P, steps = len(prompts), 10, 5
    lens = torch.tensor([len(p) for p in prompts])
    idx = torch.zeros(B, P, dtype=torch.long)
    for b, p in enumerate(prompts):
        idx[b, P - len(p):] = torch.tensor(p)
    valid = torch.arange(P)[None] >= (P - lens)[:, None]
    pos = (torch.arange(P)[None] - (P - lens)[:, None]).clamp_min(0)
    cache = KVCache(model.config, B, P + steps, "cpu")
    seqs = [list(p) for p in prompts]
    with torch.no_grad():
        logits = model(idx, pos=pos, cache=cache, valid=valid)[:, -1]
        for t in range(steps):
            for b in range(B):
                ref = model(torch.tensor([seqs[b]]))[0, -1]
                torch.testing.assert_close(logits[b], ref, atol=1e-4, rtol=0)
            nxt = torch.tensor([(7 * t + b) % 60 for b in range(B)])
            for b in range(B):
                seqs[b].append(int(nxt[b]))
            logits = model(nxt[:, None], pos=(lens + t)[:, None], cache=cache)[:, -1]


def test_rows_are_independent_of_batch_company_and_batch_size(trained_model):
    a, others = random_prompts(1, [4], 60, seed=3)[0], random_prompts(5, [2, 9, 7], 60, seed=4)
    alone = generate(trained_model, [a], 12, seed=11)[0]
    with_company = generate(trained_model, [a] + others, 12, seed=11)
    assert with_company[0] == alone
    assert generate(trained_model, [a] + others, 12, seed=11, batch_size=2) == with_company


def test_eos_stops_its_row_while_others_go_on(random_model):
    prompts = random_prompts(2, [5, 8], 60, seed=5)
    free = generate(random_model, prompts, 10, temperature=0)
    eos = free[0][2]  # row 0 will produce this token at its third step
    assert eos not in free[1], "precondition: row 1 never produces the chosen EOS"
    out = generate(random_model, prompts, 10, temperature=0, eos_id=eos)
    assert out[0] == free[0][: free[0].index(eos) + 1]  # cut at the first EOS, EOS included
    assert out[1] == free[1]  # the other row went on to max_new_tokens
    assert naive_generate(random_model, prompts, 10, temperature=0, eos_id=eos) == out


def test_same_seed_same_samples_different_seed_different(trained_model):
    prompts = random_prompts(8, [3, 6], 60, seed=6)
    s1 = generate(trained_model, prompts, 15, seed=1)
    assert generate(trained_model, prompts, 15, seed=1) == s1
    assert generate(trained_model, prompts, 15, seed=2) != s1


def test_different_rows_get_different_samples(random_model):
    """Identical prompts in one batch must not share a random stream (a real bug in other samplers)."""
    out = generate(random_model, [[1, 2, 3]] * 8, 6, seed=0)
    assert len({tuple(r) for r in out}) > 1


def test_top_k_and_top_p_never_pick_outside_the_allowed_set():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2000, 50, generator=g) * 3
    u = torch.rand(2000, generator=g)
    picked = sample_next(logits, u, top_k=5)
    top5 = logits.topk(5).indices
    assert (picked[:, None] == top5).any(dim=1).all()

    probs = logits.softmax(-1)
    picked = sample_next(logits, u, top_p=0.6)
    for row in range(len(logits)):
        p_sorted, order = probs[row].sort(descending=True)
        n_keep = int((p_sorted.cumsum(0) < 0.6).sum()) + 1  # smallest prefix with mass >= 0.6
        assert int(picked[row]) in order[:n_keep].tolist()


def test_inverse_cdf_sampling_follows_the_distribution():
    logits = torch.tensor([[0.0, 1.0, 2.0, -1.0]]).expand(40000, 4)
    picked = sample_next(logits, torch.rand(40000, generator=torch.Generator().manual_seed(0)))
    freq = torch.bincount(picked, minlength=4).float() / 40000
    torch.testing.assert_close(freq, logits[0].softmax(-1), atol=0.01, rtol=0)


def test_top_k_one_is_greedy(trained_model):
    prompts = random_prompts(4, [3, 7], 60, seed=8)
    assert generate(trained_model, prompts, 10, top_k=1, seed=5) == generate(trained_model, prompts, 10, temperature=0)


def test_prompt_beyond_context_is_a_clear_error(random_model):
    with pytest.raises(ValueError, match="context"):
        generate(random_model, [[1] * 60], 10)
    with pytest.raises(ValueError, match="context"):
        naive_generate(random_model, [[1] * 60], 10)
    with pytest.raises(ValueError, match="empty"):
        generate(random_model, [[]], 5)


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_stream_equals_generate_row_zero(trained_model, temperature):
    """The chat CLI's stream draws what generate() draws for a lone prompt, EOS included, then stops."""
    prompt = random_prompts(1, [5], 60, seed=9)[0]
    free = generate(trained_model, [prompt], 20, temperature=temperature, seed=3)[0]
    assert list(stream(trained_model, prompt, 20, temperature=temperature, seed=3)) == free
    eos = free[6]
    cut = generate(trained_model, [prompt], 20, temperature=temperature, seed=3, eos_id=eos)[0]
    assert cut == free[: free.index(eos) + 1]
    assert list(stream(trained_model, prompt, 20, temperature=temperature, seed=3, eos_id=eos)) == cut


def test_stream_restores_training_mode():
    model = GPT(GPTConfig(**TINY)).train()
    tokens = stream(model, [1, 2, 3], 5, seed=0)
    next(tokens)
    assert not model.training  # dropout off while sampling
    tokens.close()  # the caller stops early
    assert model.training


def reference_sample_next(logits, u, temperature=1.0, top_k=None, top_p=None):
    """The out-of-place sampler that sample_next replaced (fresh tensors at every op): the oracle."""
    if temperature == 0:
        return logits.argmax(dim=-1)
    logits = logits.float() / temperature
    if top_k is not None:
        kth = torch.topk(logits, min(top_k, logits.size(-1))).values[:, -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    probs = torch.softmax(logits, dim=-1)
    if top_p is not None and top_p < 1.0:
        p_sorted, order = probs.sort(dim=-1, descending=True)
        drop = (p_sorted.cumsum(dim=-1) - p_sorted) >= top_p
        probs = torch.zeros_like(probs).scatter(-1, order, p_sorted.masked_fill(drop, 0.0))
    cdf = probs.cumsum(dim=-1)
    idx = torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous(), right=True)
    return idx.squeeze(-1).clamp_max(logits.size(-1) - 1)


@pytest.mark.parametrize("kw", [dict(), dict(temperature=0.7), dict(top_k=20), dict(top_p=0.9),
                                dict(temperature=1.3, top_k=50, top_p=0.8)])
def test_in_place_sampling_picks_what_the_out_of_place_one_picks(kw):
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(3000, 512, generator=g) * torch.rand(3000, 1, generator=g) * 6  # flat to peaked
    u = torch.rand(3000, generator=g)
    before = logits.clone()
    assert torch.equal(sample_next(logits, u, **kw), reference_sample_next(logits, u, **kw))
    assert torch.equal(logits, before), "the caller's logits must stay untouched"


@pytest.mark.parametrize("temperature", [0, 1.0])
def test_lean_decode_gives_the_oracles_tokens(trained_model, temperature):
    """Mixed prompt lengths (so padding), an EOS that ends some rows early (so rows are dropped)."""
    prompts = random_prompts(13, [1, 4, 9, 2, 13, 6, 3], 60, seed=10)
    kw = dict(temperature=temperature, seed=4)
    free = generate(trained_model, prompts, 24, lean=False, **kw)
    eos = free[0][5]
    assert sum(eos in row for row in free) >= 2, "precondition: the EOS ends several rows early"
    for eos_id in (None, eos):
        oracle = generate(trained_model, prompts, 24, eos_id=eos_id, lean=False, **kw)
        assert generate(trained_model, prompts, 24, eos_id=eos_id, **kw) == oracle
    assert oracle != free


def test_lean_decode_gives_the_oracles_tokens_at_large_batch(random_model):
    """The decode step is bit-identical (same kernels), so even 300 sampled rows agree token for token;
    a random model's flat logits make every row a fresh draw (no shared greedy answer)."""
    prompts = random_prompts(300, [2, 7, 5, 11], 64, seed=11)
    oracle = generate(random_model, prompts, 12, seed=5, batch_size=160, lean=False, eos_id=3)
    assert generate(random_model, prompts, 12, seed=5, batch_size=160, eos_id=3) == oracle
    assert len({tuple(r) for r in oracle}) > 250


def k_separate_calls(model, prompts, k, max_new_tokens, generate_fn=generate, **kw):
    """generate_k's oracle: one plain call per sample index j, each row keyed sample_key(row id, j)."""
    ids = list(range(len(prompts)))
    calls = [generate_fn(model, prompts, max_new_tokens, row_ids=[sample_key(i, j) for i in ids], **kw)
             for j in range(k)]
    return [[calls[j][i] for j in range(k)] for i in ids]


@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_generate_k_equals_k_separate_generate_calls(random_model, temperature):
    """One prefill repeated to K rows samples what K separate calls sample, token for token: with mixed
    prompt lengths (padding), several batches, and an EOS that ends samples early (rows dropped)."""
    prompts = random_prompts(5, [3, 9, 1, 6, 12], 64, seed=12)
    kw = dict(temperature=temperature, seed=3)
    free = generate_k(random_model, prompts, 4, 16, **kw)
    assert all(len(s) == 4 and all(len(x) == 16 for x in s) for s in free)
    assert all(len({tuple(x) for x in s}) == 4 for s in free), "a prompt's K samples share a stream"
    eos = max(range(64), key=lambda tok: sum(tok in x for s in free for x in s))  # the most common token
    assert sum(eos in x for s in free for x in s) >= 4, "precondition: the EOS ends several samples early"
    for eos_id in (None, eos):
        oracle = k_separate_calls(random_model, prompts, 4, 16, eos_id=eos_id, **kw)
        for batch_size in (256, 8, 4):  # all prompts in one batch; 2 prompts per batch; 1
            assert generate_k(random_model, prompts, 4, 16, eos_id=eos_id, batch_size=batch_size, **kw) == oracle
    assert oracle != free
    assert generate_k(random_model, prompts, 4, 16, eos_id=eos, lean=False, **kw) == oracle  # module forward
    # sample 0 is generate()'s answer, and the naive no-cache sampler draws the same samples
    assert [s[0] for s in oracle] == generate(random_model, prompts, 16, eos_id=eos, **kw)
    assert k_separate_calls(random_model, prompts, 4, 16, naive_generate, eos_id=eos, **kw) == oracle


def test_generate_k_keys_follow_row_ids(random_model):
    """A shard's samples are keyed by the caller's row ids: the same prompt gets the same K samples
    whichever list it comes in."""
    prompts = random_prompts(4, [2, 7], 64, seed=13)
    full = generate_k(random_model, prompts, 3, 8, seed=5)
    shard = generate_k(random_model, prompts[2:], 3, 8, seed=5, row_ids=[2, 3])
    assert shard == full[2:]


@pytest.mark.parametrize("kw", [dict(temperature=1.0), dict(temperature=0.6, top_p=0.9)])
def test_generate_k_logprobs_match_teacher_forcing(trained_model, kw):
    """The loop's log-probs are the untempered model's (no temperature, no top-p): a plain forward over
    prompt + sample, log_softmax at the sampled tokens, EOS included, nothing after it."""
    model = trained_model
    prompts = random_prompts(4, [2, 8, 5], 60, seed=14)
    free = generate_k(model, prompts, 3, 14, seed=2, **kw)
    eos = free[1][0][4]
    samples, logps = generate_k(model, prompts, 3, 14, seed=2, eos_id=eos, return_logprobs=True, **kw)
    assert samples == generate_k(model, prompts, 3, 14, seed=2, eos_id=eos, **kw)
    assert any(len(x) < 14 for s in samples for x in s), "precondition: some samples end at the EOS"
    for p, ss, lps in zip(prompts, samples, logps):
        for x, lp in zip(ss, lps):
            with torch.no_grad():
                logits = model(torch.tensor([p + x]))[0, len(p) - 1 : -1]
            ref = torch.log_softmax(logits, dim=-1).gather(1, torch.tensor(x)[:, None]).sum()
            assert lp == pytest.approx(float(ref), abs=1e-4)
