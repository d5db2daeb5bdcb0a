"""Shared fixtures: a small generated data set and tokenizer made once per test session (seconds), and a
helper that runs a training script the way a user does, in a subprocess."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """data_dir with train/eval/subsets and a tokenizer, like `make data` but smaller."""
    from data.make_data import make_dataset
    from model.data import read_jsonl
    from model.tokenizer import Tokenizer

    out = tmp_path_factory.mktemp("data")
    make_dataset(out, seed=0, n_train=2000, n_eval_per_task=20)
    texts = [t for r in read_jsonl(out / "train.jsonl") for t in (r["prompt"], r["response"])]
    Tokenizer.train(texts, vocab_size=512).save(out / "tokenizer")
    return out


def run_script(script, *args, cwd, check=True):
    """python <script> args..., in cwd (where runs/ goes). Returns the CompletedProcess."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run([sys.executable, str(ROOT / script), *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)
    if check and proc.returncode != 0:
        raise AssertionError(f"{script} {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture(scope="session")
def sft_run(small_data, tmp_path_factory):
    """One smoke SFT run, shared by the SFT checks and as the initial policy of the self-play tests."""
    cwd = tmp_path_factory.mktemp("sft")
    run_script("train_sft.py", "--smoke", "--name", "sft", "--data_dir", small_data, "--inject_nan_step", 7,
               cwd=cwd)
    return cwd / "runs" / "sft"
