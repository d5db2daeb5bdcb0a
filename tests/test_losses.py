"""The math: log-probs, the SFT mask, the SPIN and T-SPIN losses, against values computed by hand."""

import copy
import math

import pytest
import torch

from model import GPT, GPTConfig
from model.data import collate, sorted_batches
from model.losses import sequence_logprobs, sft_loss, spin_loss, token_logprobs, tspin_loss


def logsig(z):
    return -math.log1p(math.exp(-z))


class BigramTable(torch.nn.Module):
    """A 'model' whose logits at position t depend only on the input token x[t]: log p(next | prev)
    is a table we know, so every log-prob of a sequence can be written down by hand."""

    def __init__(self, V=6):
        super().__init__()
        g = torch.Generator().manual_seed(0)
        self.table = torch.log_softmax(torch.randn(V, V, generator=g), dim=-1)

    def forward(self, x, targets=None, mask=None):
        """Logits; with targets and mask, masked token log-probs, as GPT's response-only path returns."""
        logits = self.table[x]
        return logits if targets is None else token_logprobs(logits, targets) * mask


def test_sequence_logprob_scores_each_token_with_the_previous_position():
    """Catches the classic bug of scoring token t with the logits of position t (no shift)."""
    model = BigramTable()
    prompt, response = [1, 2], [3, 0, 5]  # sequence 1 2 | 3 0 5
    x, targets, m = collate([prompt], [response], pad_id=4)
    got = sequence_logprobs(model(x), targets, m)
    T = model.table
    by_hand = T[2, 3] + T[3, 0] + T[0, 5]  # p(3|2) p(0|3) p(5|0): the prompt is never scored
    torch.testing.assert_close(got, by_hand.reshape(1))
    unshifted = T[1, 3] + T[2, 0] + T[3, 5]  # what the buggy version computes
    assert abs(float(got) - float(unshifted)) > 1e-3
    torch.testing.assert_close(sequence_logprobs(model(x), targets, m, average=True), by_hand.reshape(1) / 3)


def test_collate_mask_covers_exactly_the_response_and_eos():
    x, targets, m = collate([[10, 11, 12], [10, 13]], [[20, 21, 99], [22, 99]], pad_id=0)
    assert x.tolist() == [[10, 11, 12, 20, 21], [10, 13, 22, 0, 0]]
    assert targets.tolist() == [[11, 12, 20, 21, 99], [13, 22, 99, 0, 0]]
    assert m.tolist() == [[0, 0, 1, 1, 1], [0, 1, 1, 0, 0]]
    # the masked targets are exactly the response tokens, EOS (99) included, and never padding
    assert [int(t) for t, keep in zip(targets.flatten(), m.flatten()) if keep] == [20, 21, 99, 22, 99]


def test_sft_loss_is_the_mean_nll_of_response_tokens():
    logits = torch.randn(2, 4, 7, generator=torch.Generator().manual_seed(1))
    y = torch.tensor([[1, 2, 3, 4], [5, 6, 0, 0]])
    m = torch.tensor([[0.0, 1, 1, 1], [1, 1, 0, 0]])
    lp = token_logprobs(logits, y)
    by_hand = -(lp[0, 1] + lp[0, 2] + lp[0, 3] + lp[1, 0] + lp[1, 1]) / 5
    torch.testing.assert_close(sft_loss(logits, y, m), by_hand)


def test_spin_loss_by_hand():
    pr, pg = torch.tensor([-1.0, -2.0]), torch.tensor([-3.0, -1.0])
    rr, rg = torch.tensor([-1.5, -2.0]), torch.tensor([-2.0, -1.5])
    lam = 0.1
    z = [lam * ((-1 + 1.5) - (-3 + 2)), lam * ((-2 + 2) - (-1 + 1.5))]  # 0.15 and -0.05
    loss, metrics = spin_loss(pr, pg, rr, rg, lam)
    assert float(loss) == pytest.approx(-(logsig(z[0]) + logsig(z[1])) / 2, abs=1e-6)
    assert float(metrics["rewards/real"]) == pytest.approx(lam * (0.5 + 0.0) / 2)
    assert float(metrics["rewards/generated"]) == pytest.approx(lam * (-1.0 + 0.5) / 2)
    assert float(metrics["rewards/margins"]) == pytest.approx((z[0] + z[1]) / 2)
    assert float(metrics["rewards/accuracies"]) == 0.5
    assert float(metrics["logps/gap"]) == pytest.approx(((-1 + 3) + (-2 + 1)) / 2)


def test_spin_loss_is_log2_when_policy_equals_reference():
    lp = torch.tensor([-4.0, -7.5, -1.25])
    gen = torch.tensor([-3.0, -9.0, -2.0])
    loss, _ = spin_loss(lp, gen, lp.clone(), gen.clone(), lam=0.1)
    assert float(loss) == pytest.approx(math.log(2), abs=1e-7)


def test_tspin_loss_by_hand_and_b0_is_the_pairwise_loss():
    r, g, p = torch.tensor([-1.0, -4.0]), torch.tensor([-2.0, -3.0]), torch.tensor([-2.5, -2.0])
    a, b = 1.0, 0.1
    by_hand = [-logsig(a * (-1 + 2)) - b * logsig(a * (-2 + 2.5)), -logsig(a * (-4 + 3)) - b * logsig(a * (-3 + 2))]
    loss, metrics = tspin_loss(r, g, p, a, b)
    assert float(loss) == pytest.approx(sum(by_hand) / 2, abs=1e-6)
    assert float(metrics["adv/current"]) == pytest.approx((1.0 - 1.0) / 2)
    assert float(metrics["adv/historical"]) == pytest.approx((0.5 - 1.0) / 2)
    assert float(metrics["adv/current_positive"]) == 0.5
    # b = 0: the reference-free pairwise loss -logsigmoid(a (lp(y) - lp(y'))), whatever y0 is
    loss0, _ = tspin_loss(r, g, p * 100, a=2.0, b=0.0)
    assert float(loss0) == pytest.approx(-(logsig(2 * 1.0) + logsig(2 * -1.0)) / 2, abs=1e-6)
    # ... so y0 may be left out at b = 0 (same loss, no y0 metrics), and nowhere else
    loss_none, metrics_none = tspin_loss(r, g, None, a=2.0, b=0.0)
    assert float(loss_none) == pytest.approx(float(loss0), abs=1e-7)
    assert "adv/historical" not in metrics_none and float(metrics_none["adv/current"]) == pytest.approx(0.0)
    with pytest.raises(ValueError, match="proto"):
        tspin_loss(r, g, None, a, b)


def test_tspin_gradient_directions():
    """Descent raises lp(y), lowers lp(y0), and y' gets both terms: down from the first, up by b from the second."""
    r = torch.tensor([-2.0], requires_grad=True)
    g = torch.tensor([-3.0], requires_grad=True)
    p = torch.tensor([-4.0], requires_grad=True)
    a, b = 1.0, 0.1
    loss, _ = tspin_loss(r, g, p, a, b)
    loss.backward()
    sig = lambda z: 1 / (1 + math.exp(-z))
    down = a * sig(-a * (-2 + 3))  # from -logsigmoid(a (r - g))
    up = b * a * sig(-a * (-3 + 4))  # from -b logsigmoid(a (g - p))
    assert float(r.grad) == pytest.approx(-down) and float(r.grad) < 0  # descent raises lp(y)
    assert float(p.grad) == pytest.approx(up) and float(p.grad) > 0  # descent lowers lp(y0)
    assert float(g.grad) == pytest.approx(down - up)


def _tiny_setup():
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=32, block_size=32, n_layer=1, n_head=2, n_embd=16))
    prompts = [[1, 2, 3], [4, 5], [6, 7, 8, 9]]
    real = [[10, 11, 31], [12, 31], [13, 14, 15, 31]]
    gen = [[20, 31], [21, 22, 23, 31], [24, 31]]
    proto = [[25, 26, 30], [27, 30], [28, 29, 30]]  # no token in common with the real answers
    return model, prompts, real, gen, proto


def _lp(model, prompts, responses):
    x, targets, m = collate(prompts, responses, pad_id=0)
    return sequence_logprobs(model(x), targets, m)


def test_one_spin_step_raises_real_and_lowers_generated():
    model, prompts, real, gen, _ = _tiny_setup()
    ref = copy.deepcopy(model).requires_grad_(False)
    with torch.no_grad():
        ref_real, ref_gen = _lp(ref, prompts, real), _lp(ref, prompts, gen)
    loss, _ = spin_loss(_lp(model, prompts, real), _lp(model, prompts, gen), ref_real, ref_gen, lam=0.1)
    assert float(loss.detach()) == pytest.approx(math.log(2), abs=1e-6)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.5).step()
    with torch.no_grad():
        assert (_lp(model, prompts, real) > ref_real).all()
        assert (_lp(model, prompts, gen) < ref_gen).all()


def test_one_tspin_step_raises_real_and_lowers_proto():
    model, prompts, real, gen, proto = _tiny_setup()
    with torch.no_grad():
        before = [_lp(model, prompts, s) for s in (real, gen, proto)]
    loss, _ = tspin_loss(*[_lp(model, prompts, s) for s in (real, gen, proto)], a=1.0, b=1.0)
    loss.backward()
    torch.optim.SGD(model.parameters(), lr=0.1).step()
    with torch.no_grad():
        after = [_lp(model, prompts, s) for s in (real, gen, proto)]
    assert (after[0] > before[0]).all()
    assert (after[2] < before[2]).all()


def test_reference_logprobs_come_back_in_input_order():
    """SPIN's reference pass batches by length; each answer must still get its own log-prob, in order."""
    from model.selfplay import dataset_logprobs

    lengths = [5, 1, 3, 1, 4]
    batches = sorted_batches(lengths, batch_size=2)
    assert sorted(i for b in batches for i in b) == list(range(5))  # every index exactly once
    assert [lengths[i] for b in batches for i in b] == sorted(lengths)  # in order of length
    model = BigramTable()
    prompts = [[1], [2, 3], [1, 1, 2], [5], [3]]
    responses = [[2, 3, 0, 1, 5], [4], [0, 2, 1], [1, 2], [3, 3, 0, 0]]
    got = dataset_logprobs(model, prompts, responses, pad_id=4, device=torch.device("cpu"), batch_size=2)
    one_by_one = torch.cat([_lp(model, [p], [r]) for p, r in zip(prompts, responses)])
    torch.testing.assert_close(got, one_by_one)


def test_sft_loss_from_logps_is_the_token_mean_nll_by_hand():
    """The NLL term of --nll and of the continued-SFT baseline: -(sum of the real answers' token
    log-probs) / (their token count), here two answers of 2 and 1 tokens."""
    from model.losses import sft_loss_from_logps

    logp_y = torch.tensor([math.log(0.5) + math.log(0.25), math.log(0.1)])
    expected = -(math.log(0.5) + math.log(0.25) + math.log(0.1)) / 3
    assert abs(float(sft_loss_from_logps(logp_y, 3)) - expected) < 1e-6


def test_nll_remedy_is_the_tspin_loss_plus_w_times_the_sft_loss_by_hand():
    """--nll 0.5 on T-SPIN: two pairs, b = 0. logp_y sums -3 and -5 over 4 answer tokens in all, logp_y_gen
    -4 and -4: T-SPIN loss mean(-logsigmoid(1), -logsigmoid(-1)) = mean(0.313262, 1.313262) = 0.813262;
    SFT loss on y (3 + 5) / 4 = 2; total 0.813262 + 0.5 x 2 = 1.813262."""
    from model.losses import tspin_loss, with_nll

    logp_y, logp_y_gen = torch.tensor([-3.0, -5.0]), torch.tensor([-4.0, -4.0])
    loss, _ = tspin_loss(logp_y, logp_y_gen, None, a=1.0, b=0.0)
    total, nll = with_nll(loss, logp_y, 4, 0.5)
    assert abs(float(loss) - 0.813262) < 1e-5 and abs(float(nll) - 2.0) < 1e-6
    assert abs(float(total) - 1.813262) < 1e-5
