"""Shared fixtures: a small generated data set and tokenizer made once per test session (seconds), and a
helper that runs a training script the way a user does, in a subprocess."""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
if os.environ.get("PYTEST_XDIST_WORKER"):  # make test: two test processes share the 2 cores, one thread each
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # (before torch is imported in this process)


@pytest.fixture(scope="session")
def small_data(tmp_path_factory):
    """data_dir with train/eval/subsets and a tokenizer, like `make data` but smaller."""
    from data.make_data import make_dataset
    from model.files import read_jsonl
    from model.tokenizer import Tokenizer

    out = tmp_path_factory.mktemp("data")
    make_dataset(out, seed=0, n_train=2000, n_eval_per_task=20)
    texts = [t for r in read_jsonl(out / "train.jsonl") for t in (r["prompt"], r["response"])]
    Tokenizer.train(texts, vocab_size=512).save(out / "tokenizer")
    return out


def script_env(threads=None, **extra):
    """The environment every test subprocess gets: our code on the path, a fixed thread count."""
    threads = str(threads or os.environ.get("OMP_NUM_THREADS", "2"))
    return {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads, **extra}


def run_python(*args, cwd=ROOT, check=True, threads=None, stdin=None, timeout=600, background=False, env=None):
    """The one way a test starts a process: `python args...` (a script path or -m module) in cwd, as a user
    runs it. Returns the CompletedProcess, or the Popen with background=True; check: exit status 0."""
    cmd = [sys.executable, *map(str, args)]
    env = env or script_env(threads)
    if background:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, input=stdin)
    if check and proc.returncode != 0:
        raise AssertionError(f"python {' '.join(map(str, args))} failed ({proc.returncode}):\n"
                             f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def run_script(script, *args, cwd, check=True, threads=None):
    """python <script> args..., in cwd (where runs/ goes). Returns the CompletedProcess."""
    return run_python(ROOT / script, *args, cwd=cwd, check=check, threads=threads)


# what starts a process; a test that does it, or uses a fixture that does, is left out of `make test-fast`
# (every run_*() helper of the tests starts one); a test that trains in process for long is marked by hand
SLOW_CALLS = re.compile(r"\brun_\w*\(|\btorchrun\(|\blaunch\(|\bsubprocess\.")


def _starts_processes(func):
    import inspect

    try:
        return SLOW_CALLS.search(inspect.getsource(func)) is not None
    except (OSError, TypeError):
        return False


def pytest_collection_modifyitems(items):
    """Mark as slow every test that starts a process, itself or through one of its fixtures, so that the
    fast tier (pytest -m "not slow") is decided by what a test does, not by a list someone must keep."""
    for item in items:
        fixtures = [d.func for defs in item._fixtureinfo.name2fixturedefs.values() for d in defs]
        if any(_starts_processes(f) for f in [getattr(item, "function", None), *fixtures] if f is not None):
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def inproc(monkeypatch, tmp_path):
    """configure() and claim_run() in this process, in an empty working directory, leaving pytest's signal
    handlers, excepthook and the run-directory module's stop state as they were."""
    from model import cli, rundir

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(cli, "_install_signal_handlers", lambda: None)
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    for key in ("signal", "started", "lock", "resume_cmd"):
        monkeypatch.setattr(rundir.STOP, key, False if key == "started" else None)
    return tmp_path


@pytest.fixture(scope="session")
def sft_run(small_data, tmp_path_factory):
    """One smoke SFT run, shared by the SFT checks and as the initial policy of the self-play tests."""
    cwd = tmp_path_factory.mktemp("sft")
    run_script("train_sft.py", "--smoke", "--name", "sft", "--data_dir", small_data, "--inject_nan_step", 7,
               cwd=cwd)
    return cwd / "runs" / "sft"
