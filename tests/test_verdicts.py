"""Sampled evaluation, per-prompt outcomes and the paired verdicts of the results table (issue 26). Fast: a
tiny random GPT and a hand-made run directory; the smoke self-play runs check the same files end to end."""

import json

import pytest
import torch

from model import GPT, GPTConfig
from model.evaluate import evaluate, outcome_lines
from model.files import read_jsonl, write_jsonl
from model.results import HEAD_COLUMNS, compare_rows, outcomes_path, prompt_values, results_table
from model.stats import MDD_SIGMAS, Z_TEST
from model.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def tiny(small_data):
    tok = Tokenizer.load(small_data / "tokenizer")
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, block_size=128, n_layer=1, n_head=2, n_embd=32)).eval()
    return model, tok, read_jsonl(small_data / "eval.jsonl")[:12]


def sampled_eval(tiny, **kw):
    model, tok, records = tiny
    args = dict(samples=3, temperatures=[0.6, 1.0], sample_every=2, seed=5) | kw
    return evaluate(model, tok, records, torch.device("cpu"), max_new_tokens=8, **args)


def test_sampled_evaluation_logs_each_temperature_beside_greedy(tiny):
    metrics, samples = sampled_eval(tiny)
    greedy, _ = evaluate(tiny[0], tiny[1], tiny[2], torch.device("cpu"), max_new_tokens=8)
    assert {k: v for k, v in metrics.items() if "/" not in k or k.startswith(("acc/", "se/", "n/"))} == greedy
    for t in ("t0.6", "t1"):
        assert {f"{t}/accuracy", f"{t}/pass@3", f"{t}/pipe_rate", f"{t}/eos_rate", f"{t}/sharpness"} <= set(metrics)
        assert metrics[f"{t}/pass@3"] >= metrics[f"{t}/accuracy"]  # pass@K >= pass@1
        assert metrics[f"{t}/sharpness"] < 0  # a mean log-prob per token
    # every 2nd prompt sampled, K = 3 answers each
    assert [i for i, s in enumerate(samples) if "sampled" in s] == list(range(0, 12, 2))
    assert all(len(s["sampled"]["t0.6"]) == 3 for s in samples if "sampled" in s)


def test_the_same_seed_draws_the_same_samples_common_random_numbers(tiny):
    a, b = sampled_eval(tiny)[1], sampled_eval(tiny)[1]
    c = sampled_eval(tiny, seed=6)[1]
    texts = lambda s: [x["response"] for row in s if "sampled" in row for x in row["sampled"]["t1"]]
    assert texts(a) == texts(b) and texts(a) != texts(c)


def test_outcome_lines_hold_what_each_prompt_got(tiny):
    _, samples = sampled_eval(tiny)
    lines = outcome_lines(tiny[2], samples)
    assert [ln["i"] for ln in lines] == list(range(12))
    for ln, s, r in zip(lines, samples, tiny[2]):
        assert ln["task"] == r["task"] and ln["len"] == len(s["response"]) and ln["eos"] == int(s["ended"])
        assert ln["right"] == (None if s["right"] is None else int(s["right"]))
        assert ln["pipe"] is None if r["task"] == "table" else ln["pipe"] == int("|" in s["response"])
        assert ("t0.6" in ln) == ("sampled" in s)
        if "t0.6" in ln:
            assert ln["t0.6"]["right"] == [int(x["right"]) for x in s["sampled"]["t0.6"]]


# ------------------------------------------------------------------------------------------------------
# the table and its verdicts, on a hand-made run

def lines_of(rights, sampled=None):
    out = []
    for i, r in enumerate(rights):
        line = {"i": i, "task": "arith", "right": r, "len": 5, "pipe": 0, "eos": 1}
        if sampled is not None:
            line["t0.6"] = {"right": sampled[i], "len": [5] * 2, "pipe": [0] * 2, "eos": [1] * 2}
        out.append(line)
    return out


@pytest.fixture
def hand_run(tmp_path):
    run = tmp_path / "run"
    spin, base = [1, 1, 0, 1, 0, 1], [1, 0, 0, 0, 0, 1]
    spin_s, base_s = [[1, 1], [1, 0], [0, 0], [1, 1], [0, 1], [1, 1]], [[1, 1], [0, 0], [0, 0], [1, 0], [0, 0], [1, 0]]
    write_jsonl(outcomes_path(run, "iter0"), lines_of(spin, spin_s))
    write_jsonl(outcomes_path(run / "baseline", "iter0"), lines_of(base, base_s))
    write_jsonl(outcomes_path(run, "theta0_best"), [{"i": i, "task": "arith", "t0.4": {"right": [0, 0]}}
                                                    for i in range(6)])
    row = {"accuracy": 0.5, "accuracy_se": 0.2, "t0.6/accuracy": 0.5, "pipe_rate": 0.0, "val_t1/sharpness": -1.234,
           "val_logp_y": -9.87, "weight_dist": 0.0}
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"step": 0, "iter": -1, **row, "best_t": 0.4, "best/accuracy": 0.0},
        {"step": 5, "iter": 0, **row, "accuracy": 4 / 6, "weight_dist": 0.01}]) + "\n")
    (run / "baseline" / "metrics.jsonl").write_text(json.dumps({"step": 5, "iter": 0, **row, "accuracy": 2 / 6}) + "\n")
    return run


def test_verdicts_are_paired_per_prompt_greedy_and_sampled(hand_run):
    table = results_table(hand_run, "SPIN")
    assert all(len(line) <= 100 for line in table.splitlines()), "the printed table fits a 100-column terminal"
    assert len(table.splitlines()[0].replace("± se", "±se").split()) == 1 + len(HEAD_COLUMNS)
    # greedy d = [0, 1, 0, 1, 0, 0]: mean 1/3, sd sqrt(4/15) = 0.5164, sigma = 0.5164 / sqrt(6) = 0.2108
    c = compare_rows(read_jsonl_lines(outcomes_path(hand_run, "iter0")),
                     read_jsonl_lines(outcomes_path(hand_run / "baseline", "iter0")))
    assert c["diff"] == pytest.approx(1 / 3) and c["sigma"] == pytest.approx((4 / 15) ** 0.5 / 6 ** 0.5)
    line = next(ln for ln in table.splitlines() if "continued SFT, greedy" in ln)
    mdd = f"{100 * MDD_SIGMAS * c['sigma']:.1f}"
    assert line.endswith(f"+33.3 ± {100 * Z_TEST * c['sigma']:.1f} pts (2σ; detects ≥ {mdd}): no difference "
                         f"larger than {mdd}")  # 0.333 < 2 x 0.211
    # at 0.6, pass@1 per prompt: spin [1, .5, 0, 1, .5, 1], base [1, 0, 0, .5, 0, .5]; d = [0, .5, 0, .5, .5, .5]
    sampled = next(ln for ln in table.splitlines() if "continued SFT, T=0.6" in ln)
    assert "iter 0: SPIN minus" in table and sampled.split(":", 1)[1].strip().startswith("+33.3 ± ")
    assert all(len(ln) <= 100 for ln in table.splitlines())
    # against theta_0 at its best T (0.4, pass@1 0 everywhere): d = spin's pass@1, mean 4/6
    assert "theta_0 at best T, T=0.6:  +66.7 ± " in table
    assert "theta_0 at T=0.4" in table


def test_prompts_without_a_checker_or_not_sampled_are_left_out():
    lines = lines_of([1, None, 0], sampled=[[1, 0], [1, 1], [None, 1]])
    assert prompt_values(lines) == {0: 1.0, 2: 0.0}
    assert prompt_values(lines, "t0.6") == {0: 0.5, 1: 1.0}
    assert compare_rows(lines_of([1]), lines_of([0])) is None  # one prompt: no standard error


def read_jsonl_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines()]
