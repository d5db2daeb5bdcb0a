"""train_spin.py and train_tspin.py at smoke size, from the shared smoke SFT model."""

import json
import subprocess

import pytest
from conftest import ROOT, run_script

from model.data import format_prompt, format_response
from model.files import read_json_lines, read_jsonl, write_jsonl
from model.tokenizer import Tokenizer


def read_lines(path):
    return read_json_lines(path)


@pytest.fixture(scope="module")
def spin_run(sft_run, small_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("spin")
    run_script("train_spin.py", "--smoke", "--init", sft_run / "ckpt.pt", "--data_dir", small_data, "--debug", cwd=cwd)
    return cwd / "runs" / "spin_smoke"  # --smoke without --name: the default name gets _smoke


@pytest.fixture(scope="module")
def tspin_run(sft_run, small_data, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("tspin")
    run_script("train_tspin.py", "--smoke", "--name", "tspin", "--init", sft_run / "ckpt.pt", "--data_dir", small_data, "--debug",
               cwd=cwd)
    return cwd / "runs" / "tspin"


def test_spin_smoke_iterations_log_the_trl_metrics(spin_run):
    rows = read_lines(spin_run / "metrics.jsonl")
    train = [r for r in rows if "rewards/margins" in r]
    assert train and {r["iter"] for r in train} == {0, 1}
    for key in ["loss", "rewards/real", "rewards/generated", "rewards/accuracies", "logps/real",
                "logps/generated", "logps/gap"]:
        assert key in train[0]
    evals = [r for r in rows if "accuracy" in r]
    assert [r["iter"] for r in evals] == [-1, 0, 1]  # SFT, then each iteration
    # every iteration says how many of its pairs are y_gen == y (zero gradient) and how many it trains on
    assert [r["iter"] for r in rows if "identical_share" in r] == [0, 1]
    assert all(0 <= r["identical_share"] <= 1 for r in rows if "identical_share" in r)
    starts = [r for r in rows if r.get("event") == "iteration_start"]
    assert [r["examples"] for r in starts] == [128, 128] and all(r["steps"] > 0 for r in starts)
    assert (spin_run / "curves.png").exists() and (spin_run / "iter1" / "ckpt.pt").exists()
    assert "SPIN iter 1" in "\n".join(json.loads((spin_run / "summary.json").read_text())["table"])


def test_spin_opponent_is_frozen_while_the_policy_trains(spin_run):
    rows = [r for r in read_lines(spin_run / "metrics.jsonl") if "opponent_unchanged" in r]
    assert len(rows) == 2 and all(r["opponent_unchanged"] and r["policy_changed"] for r in rows)
    assert all(r["models_in_memory"] == 2 for r in read_lines(spin_run / "metrics.jsonl") if "models_in_memory" in r)


def test_synthetic_answers_use_the_chat_template(spin_run, small_data):
    tok = Tokenizer.load(small_data / "tokenizer")
    lines = read_lines(spin_run / "iter0" / "synthetic.jsonl")
    assert len(lines) == 128
    for line in lines:
        assert line["input"] == tok.decode(format_prompt(tok, line["prompt"]))
        assert line["input"].startswith("<|user|>") and line["input"].endswith("<|assistant|>")
        assert tok.decode(line["generated_ids"]).startswith(line["generated"])


def test_tspin_smoke_keeps_one_model_and_reuses_proto(tspin_run):
    rows = read_lines(tspin_run / "metrics.jsonl")
    train = [r for r in rows if "adv/current" in r]
    assert train and {r["iter"] for r in train} == {0, 1}
    # b = 0 at iteration 0: the loss is the pairwise term alone and y0 is not even put through the model
    it0, it1 = [r for r in train if r["iter"] == 0][0], [r for r in train if r["iter"] == 1][0]
    for key in ["adv/current_positive", "logps/real", "logps/generated", "logps/gap"]:
        assert key in it0 and key in it1
    for key in ["adv/historical", "adv/historical_positive", "logps/proto"]:
        assert key not in it0 and key in it1
    assert [r["models_in_memory"] for r in rows if "models_in_memory" in r] == [1, 1]
    proto = read_lines(tspin_run / "proto.jsonl")
    assert len(proto) == 128
    gen0 = read_lines(tspin_run / "iter0" / "synthetic.jsonl")
    gen1 = read_lines(tspin_run / "iter1" / "synthetic.jsonl")
    assert [g["generated_ids"] for g in gen1] != [g["generated_ids"] for g in gen0]  # regenerated
    assert all(r["policy_changed"] for r in rows if "policy_changed" in r)


def test_tspin_resume_continues_after_the_last_iteration(tspin_run):
    cwd = tspin_run.parents[1]
    tokens_before = json.loads((tspin_run / "summary.json").read_text())["tokens_seen"]
    proc = run_script("train_tspin.py", "--resume", cwd=cwd)
    assert "T-SPIN iter 1" in proc.stdout
    # --resume takes the run's own settings (iters=2): nothing left to do, the table is printed again
    rows = read_lines(tspin_run / "metrics.jsonl")
    assert [r["iter"] for r in rows if "accuracy" in r] == [-1, 0, 1]
    # the summary still counts the tokens of the iterations run before the resume
    assert tokens_before > 0 and json.loads((tspin_run / "summary.json").read_text())["tokens_seen"] == tokens_before


def test_make_spin_and_tspin_run_sft_first_when_missing():
    for target in ["spin", "tspin"]:
        out = subprocess.run(["make", "-n", target, "SFT_NAME=no_such_run_here"], cwd=ROOT,
                             capture_output=True, text=True).stdout
        assert "train_sft.py" in out and f"train_{target}.py" in out
        assert out.index("train_sft.py") < out.index(f"train_{target}.py")


def test_baseline_runs_the_same_steps_and_examples_as_self_play(tspin_run):
    """The equal-compute continued-SFT baseline: same prompts and real answers, same optimizer steps and
    examples per iteration, from theta_0; its rows are in the table and in summary.json."""
    starts = [r for r in read_lines(tspin_run / "metrics.jsonl") if r.get("event") == "iteration_start"]
    base_starts = [r for r in read_lines(tspin_run / "baseline" / "metrics.jsonl")
                   if r.get("event") == "iteration_start"]
    assert [(r["iter"], r["examples"], r["steps"]) for r in base_starts] == \
           [(r["iter"], r["examples"], r["steps"]) for r in starts]
    summary = json.loads((tspin_run / "summary.json").read_text())
    assert summary["baseline"]["steps"] == summary["steps"] > 0
    assert set(summary["baseline"]["iterations"]) == {"0", "1"}
    assert sum("continued SFT iter" in line for line in summary["table"]) == 2
    assert summary["config"]["baseline"] is True and summary["config"]["name"] == "tspin"
    # the baseline starts from theta_0, not from the self-play model, and moves
    evals = {r["iter"]: r for r in read_lines(tspin_run / "baseline" / "metrics.jsonl") if "accuracy" in r}
    assert 0 < evals[0]["weight_dist"] < evals[1]["weight_dist"]


def test_identical_pairs_are_counted_from_the_token_ids(tspin_run, small_data):
    """identical_share is the share of y_gen equal to y token for token (EOS included)."""
    tok = Tokenizer.load(small_data / "tokenizer")
    for it in (0, 1):
        lines = read_lines(tspin_run / f"iter{it}" / "synthetic.jsonl")
        expected = sum(format_response(tok, s["real"]) == s["generated_ids"] for s in lines) / len(lines)
        logged = [r["identical_share"] for r in read_lines(tspin_run / "metrics.jsonl")
                  if "identical_share" in r and r["iter"] == it]
        assert logged == [expected]


def test_every_iteration_says_how_far_the_model_moved(tspin_run):
    rows = read_lines(tspin_run / "metrics.jsonl")
    evals = {r["iter"]: r for r in rows if "accuracy" in r}
    assert evals[-1]["weight_dist"] == 0.0 and 0 < evals[0]["weight_dist"] < evals[1]["weight_dist"]
    assert all(0 <= evals[i]["changed_answers"] <= 1 for i in (0, 1))
    ends = [r for r in rows if r.get("event") == "iteration_end"]
    assert len(ends) == 2 and all(0 < r["update_ratio"] < 0.1 for r in ends)


def test_remedies_nll_and_mix_previous(sft_run, small_data, tmp_path):
    """--nll W adds W x the SFT loss on y to the T-SPIN loss (RPO); --mix_previous trains iteration t on
    its own y_gen and on iteration t-1's (the official SPIN code's mixing), so iteration 1 has twice the
    examples."""
    run_script("train_tspin.py", "--smoke", "--name", "remedies", "--init", sft_run / "ckpt.pt", "--data_dir",
               small_data, "--nll", 0.5, "--mix_previous", "--baseline", "false", cwd=tmp_path)
    rows = read_lines(tmp_path / "runs" / "remedies" / "metrics.jsonl")
    train = [r for r in rows if "loss_total" in r]
    assert train and all(r["nll"] > 0 for r in train)
    for r in train:
        assert abs(r["loss_total"] - (r["loss"] + 0.5 * r["nll"])) < 1e-4 * max(1.0, r["loss_total"])
    starts = [r for r in rows if r.get("event") == "iteration_start"]
    assert [r["examples"] for r in starts] == [128, 256]


def test_every_evaluation_scores_the_validation_split(tspin_run):
    """Item 1 of the regime map: each evaluation (theta_0 and every iteration, self-play and its baseline)
    logs val accuracy and the mean log-prob of y on val, and the table prints them."""
    for run in (tspin_run, tspin_run / "baseline"):
        evals = [r for r in read_lines(run / "metrics.jsonl") if "accuracy" in r]
        assert len(evals) >= 2
        for r in evals:
            assert 0 <= r["val_accuracy"] <= 1 and r["val_logp_y"] < 0 and r["val_len_ratio"] > 0
    summary = json.loads((tspin_run / "summary.json").read_text())
    assert "val lp(y)" in summary["table"][0]
    rows = [line for line in summary["table"] if line.startswith("T-SPIN iter")]
    assert rows and all(line.split()[-1] not in ("-", "nan") for line in rows)


def test_drop_identical_leaves_out_exactly_the_identical_pairs(sft_run, small_data, tmp_path):
    """Half the real answers are set to theta_0's own greedy answers; sampling at temperature 0, exactly
    those pairs come back identical. --drop_identical leaves them out of T-SPIN's iteration 0 (b = 0: zero
    gradient) and keeps every triplet in iteration 1 (b > 0: the historical term still has a gradient)."""
    import torch

    from model.checkpoint import load_checkpoint, model_from_checkpoint
    from model.evaluate import answer

    tok = Tokenizer.load(small_data / "tokenizer")
    ckpt = load_checkpoint(sft_run / "ckpt.pt")
    model = model_from_checkpoint(ckpt, tok, sft_run / "ckpt.pt").eval()
    records = read_jsonl(small_data / "train_25.jsonl")[:128]
    torch.manual_seed(0)
    ids, texts, ended = answer(model, tok, [r["prompt"] for r in records], 32)
    expected = 0
    for j in range(0, 128, 2):  # even rows: the real answer is the model's own
        records[j] = {**records[j], "response": texts[j]}
        expected += ended[j] and format_response(tok, texts[j]) == ids[j]
    assert expected > 0, "theta_0 ended none of its answers with EOS: the test would prove nothing"
    write_jsonl(tmp_path / "own.jsonl", records)
    run_script("train_tspin.py", "--smoke", "--name", "drop", "--init", sft_run / "ckpt.pt", "--data_dir", small_data,
               "--data", tmp_path / "own.jsonl", "--temperature", 0, "--drop_identical", "--baseline", "false",
               cwd=tmp_path)
    rows = read_lines(tmp_path / "runs" / "drop" / "metrics.jsonl")
    share = next(r["identical_share"] for r in rows if r.get("iter") == 0 and "identical_share" in r)
    assert share == expected / 128
    starts = [r["examples"] for r in rows if r.get("event") == "iteration_start"]
    assert starts == [128 - expected, 128]


def test_an_unknown_template_is_refused_before_any_work(sft_run, small_data, tmp_path):
    """(--template instruction itself is exercised by the regime map's template scenario, tests/test_regimes.py.)"""
    bad = run_script("train_spin.py", "--smoke", "--name", "bad", "--init", sft_run / "ckpt.pt", "--data_dir",
                     small_data, "--template", "alpaca", cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "--template 'alpaca'" in bad.stderr and not (tmp_path / "runs" / "bad").exists()


def test_every_evaluation_row_writes_what_each_prompt_got(tspin_run):
    """Per-prompt outcome files for theta_0 (greedy and at its best temperature), each iteration and the
    baseline's, on eval and val; the table's verdicts are paired on them and the printed table is narrow."""
    n_eval = len(read_lines(tspin_run / "outcomes" / "theta0_eval.jsonl"))
    for run, rows in [(tspin_run, ["theta0", "iter0", "iter1"]), (tspin_run / "baseline", ["iter0", "iter1"])]:
        for row in rows:
            for split in ("eval", "val"):
                lines = read_lines(run / "outcomes" / f"{row}_{split}.jsonl")
                assert [ln["i"] for ln in lines] == list(range(len(lines))) and lines, (run, row, split)
                assert any("t0.6" in ln for ln in lines) and any("t1" in ln for ln in lines)
            assert len(read_lines(run / "outcomes" / f"{row}_eval.jsonl")) == n_eval
    best = read_lines(tspin_run / "outcomes" / "theta0_best_eval.jsonl")
    assert len(best) == n_eval and not any("right" in ln for ln in best)  # sampled only, at the best T
    summary = json.loads((tspin_run / "summary.json").read_text())
    verdicts = [line for line in summary["table"] if "detects ≥" in line]
    assert len(verdicts) == 6  # 2 iterations x 3 comparisons
    assert sum(line.startswith("iter ") for line in summary["table"]) == 2
    assert (tspin_run / "results.md").read_text().count("continued SFT iter") == 2
    rows = [r for r in read_lines(tspin_run / "metrics.jsonl") if r.get("iter") == -1 and "accuracy" in r]
    assert rows[0]["best_t"] in (0.2, 0.4, 0.6, 0.8, 1.0) and "val_t1/sharpness" in rows[0]
