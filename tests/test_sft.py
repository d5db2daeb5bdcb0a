"""train_sft.py as a user runs it: outputs, the NaN guard, resume, bad input; and a tiny model that overfits."""

import json

import pytest
import torch
from conftest import run_script

from model import GPT, GPTConfig
from model.checkpoint import load_checkpoint, model_from_checkpoint
from model.data import collate
from model.losses import sft_loss
from model.tokenizer import Tokenizer


def read_lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.mark.slow  # 300 training steps in process
def test_tiny_model_overfits_eight_examples():
    """8 fixed answers of 6 tokens: a model that memorises them drives the response loss to ~0. The bound
    0.05 nats/token is far below the 4.1 nats of a uniform guess over 64 tokens and below the ~1.4 nats a
    model could get by learning token frequencies alone, so passing it means the examples were memorised."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=64, block_size=32, n_layer=2, n_head=2, n_embd=64))
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 60, (4,), generator=g).tolist() for _ in range(8)]
    responses = [torch.randint(0, 60, (5,), generator=g).tolist() + [63] for _ in range(8)]
    x, targets, m = collate(prompts, responses, pad_id=62)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(300):
        loss = sft_loss(model(x), targets, m)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.05


def test_sft_run_writes_everything_and_survives_an_injected_nan(sft_run):
    summary = json.loads((sft_run / "summary.json").read_text())
    assert (sft_run / "curves.png").stat().st_size > 10_000
    assert summary["nan_count"] == 1 and summary["steps"] == 30
    for key in ["accuracy", "pipe_rate", "pipes_per_kchar", "mean_len", "eos_rate", "distinct_2", "eval_loss"]:
        assert key in summary["final"]
    metrics = read_lines(sft_run / "metrics.jsonl")
    events = [r for r in metrics if "nan_event" in r]
    assert events == [{"step": 7, "nan_event": "loss", "nan_count": 1, "time": events[0]["time"]}]
    assert any("loss" in r and "tok_per_s" in r and "grad_norm" in r for r in metrics)
    assert any("acc/arith" in r for r in metrics)
    assert read_lines(sft_run / "samples.jsonl")
    ckpt = load_checkpoint(sft_run / "ckpt.pt")
    assert all(torch.isfinite(t).all() for t in ckpt["model"].values())
    assert ckpt["config"]["inject_nan_step"] == 7 and ckpt["step"] == 30


def test_halt_policy_stops_with_a_clear_message(small_data, tmp_path):
    proc = run_script("train_sft.py", "--smoke", "--data_dir", small_data, "--inject_nan_step", 3,
                      "--nan_policy", "halt", cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert "non-finite loss at step 3" in proc.stderr


def test_resume_gives_the_weights_of_an_uninterrupted_run(small_data, tmp_path):
    common = ["--smoke", "--data_dir", small_data, "--max_steps", 20, "--seed", 3]
    run_script("train_sft.py", *common, "--name", "whole", cwd=tmp_path)
    proc = run_script("train_sft.py", *common, "--name", "killed", "--stop_at", 9, cwd=tmp_path)
    assert "--resume" in proc.stdout
    assert load_checkpoint(tmp_path / "runs/killed/ckpt.pt")["step"] == 9
    run_script("train_sft.py", "--name", "killed", "--resume", cwd=tmp_path)
    whole = load_checkpoint(tmp_path / "runs/whole/ckpt.pt")["model"]
    resumed = load_checkpoint(tmp_path / "runs/killed/ckpt.pt")["model"]
    for name in whole:
        assert torch.equal(whole[name], resumed[name]), name
    # tokens seen continue from the checkpoint: neither restarted nor counted twice
    summary = {n: json.loads((tmp_path / "runs" / n / "summary.json").read_text()) for n in ("whole", "killed")}
    assert summary["whole"]["tokens_seen"] > 0
    assert summary["killed"]["tokens_seen"] == summary["whole"]["tokens_seen"]
    # the log reads as if the run had never been killed: one training record per logged step
    steps = [r["step"] for r in read_lines(tmp_path / "runs/killed/metrics.jsonl") if "tok_per_s" in r]
    assert steps == sorted(set(steps))


def test_malformed_data_names_file_and_line(small_data, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "response": "b"}\n{"prompt": "a", "response": "b"}\n{"prompt": "oops"\n')
    proc = run_script("train_sft.py", "--smoke", "--data_dir", small_data, "--data", bad, cwd=tmp_path, check=False)
    assert proc.returncode != 0
    assert f"{bad}:3" in proc.stderr and "invalid JSON" in proc.stderr


def test_unknown_flag_is_rejected(tmp_path):
    proc = run_script("train_sft.py", "--learning_rate", "1e-3", cwd=tmp_path, check=False)
    assert proc.returncode != 0 and "unrecognized arguments" in proc.stderr


def test_checkpoint_from_another_tokenizer_is_refused(sft_run):
    ckpt = load_checkpoint(sft_run / "ckpt.pt")
    other = Tokenizer.train(["some other text entirely, with other words and more of them"] * 50, vocab_size=270)
    with pytest.raises(ValueError, match="another tokenizer"):
        model_from_checkpoint(ckpt, other)


@pytest.mark.parametrize("script", ["train_sft.py", "train_spin.py", "train_tspin.py"])
def test_help_explains_every_flag(script, tmp_path):
    """--help gives every flag a line of explanation, taken from the comment beside its default."""
    import re

    out = run_script(script, "--help", cwd=tmp_path).stdout
    flags = re.findall(r"^  (--\w+)(?: \[?[A-Z]+\]?)?(.*)$", out, flags=re.M)
    assert len(flags) > 20
    for flag, help_text in flags:
        assert re.search(r"[a-z]{3}", help_text.replace("(default:", "")), f"{script} {flag} has no help"
