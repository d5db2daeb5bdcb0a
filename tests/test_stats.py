"""model.stats: the paired noise model (hand values, one-seed limit, coverage by simulation) and pass@k."""

import math

import numpy as np
import pytest

from model.stats import MDD_SIGMAS, paired_compare, pass_at_k, says, unpaired_sigma


def test_hand_values_seed_term_clipped():
    a = {0: [1, 1, 0, 1], 1: [1, 0, 1, 1]}
    b = {0: [0, 1, 0, 0], 1: [1, 0, 0, 1]}
    # d = [[1, 0, 0, 1], [0, 0, 1, 0]]: diff = 3 / 8 = 0.375
    # prompt means dbar = [.5, 0, .5, .5]: var_i = (3 * .125^2 + .375^2) / 3 = .0625, se_prompts^2 = .0625 / 4
    # seed means m = [.5, .25]: MS_seed = 4 * var_s(m) = 4 * .03125 = .125
    # SS_total = 3 * .625^2 + 5 * .375^2 = 1.875, SS_prompt = 2 * 3 * .0625 = .375, SS_seed = .125,
    # MS_resid = (1.875 - .375 - .125) / 3 = .4583 > MS_seed: seed term clipped to 0, sigma = sqrt(.015625)
    c = paired_compare(a, b)
    assert c["diff"] == pytest.approx(0.375, abs=1e-9)
    assert c["se_prompts"] == pytest.approx(0.125, abs=1e-9)
    assert c["se_seeds"] == 0.0
    assert c["sigma"] == pytest.approx(0.125, abs=1e-9)
    assert (c["n_seeds"], c["n_prompts"]) == (2, 4)
    assert c["verdict"] == "higher"  # .375 > 2 * .125


def test_hand_values_with_seed_term():
    a = {0: [1, 1, 1, 1], 1: [0, 1, 0, 0]}
    b = {0: [0, 1, 0, 0], 1: [0, 1, 0, 0]}
    # d = [[1, 0, 1, 1], [0, 0, 0, 0]]: diff = .375, dbar as above so se_prompts = .125
    # m = [.75, 0]: MS_seed = 4 * 2 * .375^2 = 1.125; SS_total = 1.875,
    # SS_resid = 1.875 - .375 - 1.125 = .375,
    # MS_resid = .125; se_seeds^2 = (1.125 - .125) / 8 = .125; sigma^2 = (.125 + 1.125 - .125) / 8 = .140625
    c = paired_compare(a, b)
    assert c["diff"] == pytest.approx(0.375, abs=1e-9)
    assert c["se_prompts"] == pytest.approx(0.125, abs=1e-9)
    assert c["se_seeds"] == pytest.approx(math.sqrt(0.125), abs=1e-9)
    assert c["sigma"] == pytest.approx(0.375, abs=1e-9)
    assert c["verdict"] == "no difference"  # .375 < 2 * .375


def test_one_seed_is_paired_prompt_se():
    rng = np.random.default_rng(1)
    a, b = rng.integers(0, 2, 50), rng.random(50)
    d = a - b
    c = paired_compare({7: a}, {7: b})
    assert c["diff"] == pytest.approx(d.mean(), abs=1e-12)
    assert c["sigma"] == pytest.approx(d.std(ddof=1) / math.sqrt(50), abs=1e-12)
    assert (c["se_seeds"], c["n_seeds"]) == (0.0, 1)


def test_mismatched_lengths_and_unshared_seeds():
    with pytest.raises(ValueError, match="differ"):
        paired_compare({0: [1, 0, 1]}, {0: [1, 0]})
    with pytest.raises(ValueError, match="differ"):  # across seeds too
        paired_compare({0: [1, 0, 1], 1: [1, 0]}, {0: [1, 0, 1], 1: [1, 0]})
    with pytest.raises(ValueError, match="no shared seeds"):
        paired_compare({0: [1, 0]}, {1: [1, 0]})
    with pytest.raises(ValueError, match="need at least 5"):
        paired_compare({0: [1, 0, 1]}, {0: [0, 0, 1]}, min_prompts=5)
    # seed 2 is A's only and of another length: ignored, same result as without it
    a, b = {0: [1, 0, 1, 1], 1: [0, 1, 1, 0], 2: [1]}, {0: [0, 0, 1, 1], 1: [0, 0, 1, 0], 3: [0, 0]}
    assert paired_compare(a, b) == paired_compare({0: a[0], 1: a[1]}, {0: b[0], 1: b[1]})


def test_verdict_and_mdd():
    assert MDD_SIGMAS == pytest.approx(2.84)
    b = np.tile([1.0, 0.0], 200)  # 400 prompts
    up, down = np.flatnonzero(b == 0), np.flatnonzero(b == 1)
    for n_up, n_down, want in ((40, 0, "higher"), (0, 40, "lower"), (6, 4, "no difference")):
        a = b.copy()
        a[up[:n_up]], a[down[:n_down]] = 1.0, 0.0  # A gains n_up prompts, loses n_down
        c = paired_compare({0: a}, {0: b})
        assert c["diff"] == pytest.approx((n_up - n_down) / 400)
        assert c["verdict"] == want, c
        assert (abs(c["diff"]) > 2 * c["sigma"]) == (want != "no difference")
        assert c["mdd"] == pytest.approx(2.84 * c["sigma"])
    line = says(dict(diff=0.012, sigma=0.008, mdd=MDD_SIGMAS * 0.008, verdict="no difference"))
    assert line == "+1.2 pts ± 1.6 (2σ), detectable ≥ 2.3: no difference"


def test_coverage_by_simulation():
    """1000 experiments, 4 seeds x 200 prompts of greedy 0/1 outcomes: per-prompt difficulty q_i shared by
    both rows and all seeds, a per-prompt treatment effect t_i (mean 0.03 = the truth), a per-seed shift
    v_s of A (mean 0). diff +- 1.96 sigma must cover 0.03 ~95% of the time; leaving out the seed term
    must not (it undercovers), and the unpaired formula is wider."""
    rng = np.random.default_rng(0)
    n_exp, n_seeds, n_prompts, truth = 1000, 4, 200, 0.03
    q = rng.uniform(0.2, 0.8, (n_exp, 1, n_prompts))
    t = truth + rng.uniform(-0.1, 0.1, (n_exp, 1, n_prompts))
    v = rng.uniform(-0.04, 0.04, (n_exp, n_seeds, 1))
    shape = (n_exp, n_seeds, n_prompts)
    A = (rng.random(shape) < q + t + v).astype(float)
    B = (rng.random(shape) < q).astype(float)
    covered = covered_prompts_only = 0
    paired, unpaired = [], []
    for ae, be in zip(A, B):
        a, b = dict(enumerate(ae)), dict(enumerate(be))
        c = paired_compare(a, b)
        covered += abs(c["diff"] - truth) < 1.96 * c["sigma"]
        covered_prompts_only += abs(c["diff"] - truth) < 1.96 * c["se_prompts"]
        paired.append(c["sigma"])
        unpaired.append(unpaired_sigma(a, b))
    assert 0.93 <= covered / n_exp <= 0.97, covered
    assert covered_prompts_only / n_exp < 0.93, covered_prompts_only
    assert np.mean(unpaired) > 1.5 * np.mean(paired), (np.mean(unpaired), np.mean(paired))


def test_pass_at_k():
    assert pass_at_k(4, 1, 1) == pytest.approx(0.25)
    assert pass_at_k(4, 1, 4) == 1.0
    assert pass_at_k(4, 0, 2) == 0.0
    assert pass_at_k(5, 2, 2) == pytest.approx(1 - math.comb(3, 2) / math.comb(5, 2))  # 0.7
    assert pass_at_k(5, 2, 2) == pytest.approx(0.7)
    assert pass_at_k(200, 13, 10) == pytest.approx(1 - math.comb(187, 10) / math.comb(200, 10))
    with pytest.raises(ValueError):
        pass_at_k(4, 5, 1)
