"""torchrun on CPU (gloo): the scripts run unchanged under 2 processes and agree with one process."""

import json

import pytest
import torch
from conftest import ROOT, run_python, run_script

from model.checkpoint import load_checkpoint


def torchrun(script, *args, cwd, nproc=2):
    return run_python("-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", ROOT / script, *args,
                      cwd=cwd, threads=1)


def lines(path):
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="module")
def two_proc_runs(small_data, sft_run, tmp_path_factory):
    cwd = tmp_path_factory.mktemp("ddp")
    common = ["--smoke", "--data_dir", small_data]
    out = {}
    out["sft_stdout"] = torchrun("train_sft.py", *common, "--name", "sft", "--max_steps", 12, cwd=cwd).stdout
    # the built-in baseline and the val split under torchrun: T-SPIN's run covers them, SPIN's skips them (time)
    torchrun("train_spin.py", *common, "--name", "spin", "--init", sft_run / "ckpt.pt", "--iters", 1,
             "--baseline", "false", "--val_data", "none", cwd=cwd)
    torchrun("train_tspin.py", *common, "--name", "tspin", "--init", sft_run / "ckpt.pt", "--iters", 1, cwd=cwd)
    return cwd


def test_two_process_runs_write_one_set_of_outputs(two_proc_runs):
    runs = two_proc_runs / "runs"
    assert sorted(p.name for p in runs.iterdir()) == ["sft", "spin", "tspin"]
    for name in ("sft", "spin", "tspin"):
        assert (runs / name / "summary.json").exists() and (runs / name / "ckpt.pt").exists()
        assert not list((runs / name).rglob("*.tmp"))
        rows = lines(runs / name / "metrics.jsonl")
        finals = [r for r in rows if "accuracy" in r]
        keys = [(r.get("iter"), r["step"]) for r in finals]
        assert len(keys) == len(set(keys)), f"{name}: an eval was logged twice (two ranks writing?)"


def test_two_processes_take_the_same_steps_as_one_with_the_whole_batch(small_data, two_proc_runs, tmp_path):
    """Global batch 16: 2 ranks x 8 examples vs 1 rank x 16. The loss is normalised by the whole global
    batch's response tokens on every rank, so the two runs compute the same gradients up to the order of
    float32 additions in the all-reduce (~1e-7 relative per step); after 12 Adam steps that stays far below
    1e-4, while a wrong normalisation (a mean of per-rank means) moves the weights by ~1e-3."""
    run_script("train_sft.py", "--smoke", "--data_dir", small_data, "--name", "sft", "--max_steps", 12, cwd=tmp_path)
    one = load_checkpoint(tmp_path / "runs/sft/ckpt.pt")["model"]
    two = load_checkpoint(two_proc_runs / "runs/sft/ckpt.pt")["model"]
    for name in one:
        torch.testing.assert_close(two[name], one[name], atol=1e-4, rtol=0, msg=name)
    loss_one = [r["loss"] for r in lines(tmp_path / "runs/sft/metrics.jsonl") if "tok_per_s" in r]
    loss_two = [r["loss"] for r in lines(two_proc_runs / "runs/sft/metrics.jsonl") if "tok_per_s" in r]
    assert loss_one == pytest.approx(loss_two, abs=1e-4)


def test_gathered_synthetic_set_equals_the_single_process_one(small_data, sft_run, two_proc_runs, tmp_path):
    run_script("train_tspin.py", "--smoke", "--name", "tspin", "--data_dir", small_data, "--init", sft_run / "ckpt.pt",
               "--iters", 1,
               cwd=tmp_path)
    for f in ("proto.jsonl", "iter0/synthetic.jsonl"):
        one = [r["generated_ids"] for r in lines(tmp_path / "runs/tspin" / f)]
        two = [r["generated_ids"] for r in lines(two_proc_runs / "runs/tspin" / f)]
        assert len(one) == 128 and one == two, f
