"""The fast paths of model/gpt.py against the plain computations they replace (the oracles):
response-only scoring vs the full head + log_softmax, and the lean decode step vs the module forward."""

import pytest
import torch

from model import GPT, GPTConfig
from model.data import collate
from model.gpt import KVCache
from model.losses import token_logprobs

TINY = dict(vocab_size=64, block_size=64, n_layer=2, n_head=2, n_embd=32)
PAD = 0


def random_batch(n, seed):
    """Prompts of 1-12 tokens, answers of 1-15 (some end with an 'EOS' 63): mixed lengths and padding."""
    g = torch.Generator().manual_seed(seed)
    prompts, responses = [], []
    for _ in range(n):
        p, r = (int(torch.randint(1, hi, (), generator=g)) for hi in (13, 16))
        prompts.append(torch.randint(1, 63, (p,), generator=g).tolist())
        responses.append(torch.randint(1, 64, (r,), generator=g).tolist())
    return collate(prompts, responses, PAD)


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    m = GPT(GPTConfig(**TINY))
    with torch.no_grad():  # larger weights than the init: logits far from uniform, a sharper check
        for p in m.parameters():
            p.mul_(4.0)
    return m.eval()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_response_logprobs_equal_the_full_head(model, seed):
    x, y, m = random_batch(9, seed)
    fast = model.response_logprobs(x, y, m)
    oracle = token_logprobs(model(x), y)
    assert fast.dtype == torch.float32 and fast.shape == y.shape
    torch.testing.assert_close(fast, oracle * m, atol=1e-5, rtol=0)
    assert (fast[m == 0] == 0).all()  # exactly zero off the response, not just small
    assert (fast[m != 0] < 0).all()  # and a real log-prob on every response token


def test_response_logprobs_gradients_equal_the_full_head(model):
    x, y, m = random_batch(7, 3)
    weights = torch.randn(y.shape, generator=torch.Generator().manual_seed(0))  # any downstream loss

    def grads(lp):
        model.zero_grad()
        (lp * weights).sum().backward()
        return {n: p.grad.clone() for n, p in model.named_parameters()}

    fast = grads(model.response_logprobs(x, y, m))
    oracle = grads(token_logprobs(model(x), y) * m)
    for name in oracle:
        torch.testing.assert_close(fast[name], oracle[name], atol=1e-5, rtol=1e-4, msg=name)
    assert any(g.abs().sum() > 0 for g in fast.values())


def test_response_logprobs_score_the_next_token():
    """A hand-built case: position t scores y[t] = x[t+1]; a shift by one would pick other entries."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(**TINY)).eval()
    x = torch.tensor([[5, 6, 7, 8]])
    y = torch.tensor([[6, 7, 8, 9]])
    m = torch.tensor([[0.0, 0.0, 1.0, 1.0]])
    with torch.no_grad():
        logp = torch.log_softmax(model(x), dim=-1)[0]
    expected = torch.tensor([[0.0, 0.0, logp[2, 8], logp[3, 9]]])
    torch.testing.assert_close(model.response_logprobs(x, y, m), expected, atol=1e-6, rtol=0)


def test_response_logprobs_with_nothing_to_score(model):
    x, y, m = random_batch(3, 4)
    assert (model.response_logprobs(x, y, torch.zeros_like(m)) == 0).all()


def test_response_logprobs_under_bf16_autocast_are_float32(model):
    x, y, m = random_batch(5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        fast = model.response_logprobs(x, y, m)
        oracle = token_logprobs(model(x), y) * m
    assert fast.dtype == torch.float32
    torch.testing.assert_close(fast, oracle, atol=1e-5, rtol=0)  # same bf16 head, float32 log-softmax
    half = GPT(GPTConfig(**TINY)).to(torch.bfloat16)  # bf16 weights, no autocast: still float32 out
    assert half.response_logprobs(x, y, m).dtype == torch.float32


def left_padded(prompts):
    B, P = len(prompts), max(map(len, prompts))
    lens = torch.tensor([len(p) for p in prompts])
    idx = torch.zeros(B, P, dtype=torch.long)
    for b, p in enumerate(prompts):
        idx[b, P - len(p):] = torch.tensor(p)
    valid = torch.arange(P)[None] >= (P - lens)[:, None]
    pos = (torch.arange(P)[None] - (P - lens)[:, None]).clamp_min(0)
    return idx, pos, valid, lens


@pytest.mark.parametrize("lengths", [[4, 4, 4], [1, 7, 3, 12, 5]])  # unpadded, padded
@pytest.mark.parametrize("bias", [True, False])
def test_decode_step_gives_the_forward_logits_bit_for_bit(model, lengths, bias):
    """Prefill, then steps through both paths on twin caches, dropping a row halfway as the sampler does."""
    if not bias:
        torch.manual_seed(1)
        model = GPT(GPTConfig(**TINY, bias=False)).eval()
    g = torch.Generator().manual_seed(1)
    prompts = [torch.randint(0, 64, (n,), generator=g).tolist() for n in lengths]
    idx, pos, valid, lens = left_padded(prompts)
    caches = [KVCache(model.config, len(prompts), idx.size(1) + 8, "cpu") for _ in range(2)]
    with torch.inference_mode():
        logits = [model(idx, pos=pos, cache=c, valid=valid)[:, -1] for c in caches]
        nxt, p = logits[0].argmax(-1), lens.clone()
        for t in range(8):
            if t == 4:  # the sampler drops finished rows from the cache
                keep = torch.arange(len(nxt)) != 1
                nxt, p = nxt[keep], p[keep]
                for c in caches:
                    c.keep(keep)
            lean = model.decode_step(nxt, p, caches[0])
            oracle = model(nxt[:, None], pos=p[:, None], cache=caches[1])[:, -1]
            assert torch.equal(lean, oracle), f"step {t}: max diff {(lean - oracle).abs().max():.2e}"
            nxt, p = (oracle / 0.5).softmax(-1).multinomial(1, generator=g)[:, 0], p + 1
