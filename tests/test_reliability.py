"""Nothing lost, nothing cryptic (issue 19): every mistake is one line naming the culprit, before anything is
written; run names stay in the runs directory; a run is never overwritten nor written by two processes;
checkpoints bound what a kill loses, and --resume ends with the weights of an uninterrupted run; Ctrl-C and
NaN halts leave a resumable checkpoint; inputs longer than the context are skipped or cut; logs survive.

The runs here are tiny (a few steps, 4 eval prompts): what is tested is the plumbing, not the model. They use
one thread: with two, on a busy machine, even two uninterrupted SPIN runs were once measured to differ in the
last bit of a float (the BLAS picks its threading as it goes), and "the same weights" means bit for bit."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import ROOT, run_python

from model import checkpoint, cli, rundir
from model import log as runlog
from model.data import fit_to_context
from model.files import read_json_lines
from model.selfplay_run import SELFPLAY_DEFAULTS
from model.tokenizer import Tokenizer

# the flags of all three scripts together, for checking the rules without starting a script
DEFAULTS = dict(SELFPLAY_DEFAULTS, name="x", lam="0.1", b="0.0,0.1", a=1.0, iters=3, epochs=2, batch_size=64,
                lr=1e-5, temperature=1.0, dropout=0.0, preset="haiku",
                max_steps=10, eval_interval=5, eval_subset=4, warmup_steps=5, min_lr=0.0, weight_decay=0.1, stop_at=-1)


def configure(*argv):
    return cli.configure(DEFAULTS, "spin", ROOT / "train_spin.py", smoke=lambda c: {}, argv=[str(a) for a in argv])


def refused(capsys, *argv):
    """The one-line error of configure(argv): exit status 2."""
    with pytest.raises(SystemExit) as e:
        configure(*argv)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


def run_script(script, *args, cwd, check=True):
    """python <script> args... in cwd, as a user runs it, on one thread."""
    return run_python(ROOT / script, *args, cwd=cwd, check=check, threads=1)


def launch(script, *args, cwd):
    """The same in the background."""
    return run_python(ROOT / script, *args, cwd=cwd, threads=1, background=True)


def wait_for(condition, proc, timeout=300):
    t0 = time.time()
    while not condition():
        assert proc.poll() is None, f"the run ended first:\n{proc.communicate()[1][-2000:]}"
        assert time.time() - t0 < timeout, "timed out"
        time.sleep(0.02)


def has_line(path, test):
    try:
        return any(test(r) for r in read_json_lines(path, torn_tail_ok=True))
    except Exception:
        return False


def tiny_files(small_data, tmp_path, n_train=48, n_eval=4):
    """A small train and eval file: the tests below exercise the plumbing, and evaluation is most of a run."""
    lines = (small_data / "train.jsonl").read_text().splitlines()
    (tmp_path / "train.jsonl").write_text("\n".join(lines[:n_train]) + "\n")
    (tmp_path / "eval.jsonl").write_text("\n".join((small_data / "eval.jsonl").read_text().splitlines()[:n_eval]) + "\n")
    return ["--data", tmp_path / "train.jsonl", "--eval_data", tmp_path / "eval.jsonl", "--tokenizer",
            small_data / "tokenizer"]


def weights(path):
    return checkpoint.load_checkpoint(path)["model"]


def same_weights(a, b):
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------------------
# 1. bad flags and bad files: one line naming the flag, exit 2, before anything is written


BAD = [  # (arguments, what the one line must name)
    (["--batch_size", 0], "--batch_size 0"), (["--iters", -1], "--iters -1"), (["--lr", 0], "--lr 0"),
    (["--lr", "nan"], "--lr nan"), (["--top_p", 1.5], "--top_p"), (["--temperature", -1], "--temperature"),
    (["--dropout", 1], "--dropout"), (["--warmup_ratio", 2], "--warmup_ratio"),
    (["--nan_policy", "maybe"], "expected skip or halt"), (["--optim", "sgd"], "expected rmsprop or adamw"),
    (["--logp", "median"], "expected sum or mean"), (["--preset", "opus"], "--preset"), (["--device", "gpu"], "--device"),
    (["--lam", "0.1,x"], "--lam"), (["--lam", "0"], "--lam"), (["--b", "-0.1"], "--b"),
    (["--lr", "abc"], "--lr"), (["--batch_size", "2.5"], "--batch_size"), (["--baseline", "maybe"], "--baseline"),
    (["--learning_rate", "1e-3"], "unrecognized arguments: --learning_rate"),
    (["--name", "../x"], "--name"), (["--name", ""], "--name"), (["--name", "a/b"], "--name"), (["--name", "."], "--name"),
    (["--data", "."], "--data"), (["--eval_data", "missing.jsonl"], "--eval_data"), (["--tokenizer", "f.txt"], "--tokenizer"),
    (["--resume", "--overwrite"], "--resume"), (["--resume"], "no run at runs/x"),
]


@pytest.mark.parametrize("argv,needle", BAD, ids=[" ".join(map(str, a)) for a, _ in BAD])
def test_bad_flag_is_one_line_naming_it(argv, needle, inproc, capsys):
    (inproc / "f.txt").write_text("not a directory\n")
    assert needle in refused(capsys, *argv)
    assert sorted(p.name for p in inproc.iterdir()) == ["f.txt"]  # nothing created


def test_good_flags_pass_and_device_cpu_never_asks_cuda(inproc, monkeypatch):
    def no(*a):
        raise AssertionError("CUDA was probed")

    monkeypatch.setattr(torch.cuda, "is_available", no)
    monkeypatch.setattr(torch.cuda, "device_count", no)
    cfg, ckpt = configure("--lam", "0.1,0.1,5.0", "--b", "0.0,0.1", "--device", "cpu", "--top_p", 1, "--temperature", 0)
    assert ckpt is None and cfg.lam == "0.1,0.1,5.0" and cfg.device == "cpu"
    checkpoint.rng_state()  # what every checkpoint saves: no CUDA question on a CPU run either


def test_cuda_asked_on_a_machine_without_it_is_one_line(inproc, monkeypatch, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert "CUDA is not available" in refused(capsys, "--device", "cuda")


@pytest.mark.parametrize("script,args,needle", [
    ("train_sft.py", ["--lr", "abc"], "--lr"),
    ("train_sft.py", ["--init", "random.bin"], "random.bin is not a readable checkpoint"),
    ("train_tspin.py", ["--name", "../x"], "--name"),
])
def test_scripts_answer_mistakes_in_one_line_and_write_nothing(script, args, needle, small_data, tmp_path):
    (tmp_path / "random.bin").write_bytes(os.urandom(3000))
    proc = run_script(script, "--data_dir", small_data, *args, cwd=tmp_path, check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 2 and len(err.splitlines()) == 1 and needle in err, err
    assert "Traceback" not in proc.stdout + proc.stderr
    assert not (tmp_path / "runs").exists() and not (tmp_path.parent / "x").exists()


def test_a_checkpoint_of_another_project_or_text_is_refused(tmp_path):
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    with pytest.raises(RuntimeError, match="not a readable checkpoint"):
        checkpoint.load_checkpoint(tmp_path / "notes.pt")
    with pytest.raises(RuntimeError, match="not a checkpoint of this project"):
        checkpoint.load_checkpoint(tmp_path / "foreign.pt")


# ------------------------------------------------------------------------------------------------------
# 2. run names: never outside out_dir, never over another run, one process per run


def test_an_existing_run_is_refused_and_overwrite_moves_it_aside(inproc, capsys):
    run = inproc / "runs" / "x"
    run.mkdir(parents=True)
    (run / "metrics.jsonl").write_text('{"step": 1}\n')
    err = refused(capsys)
    assert "already holds a run" in err and "--resume" in err and "--overwrite" in err
    assert (run / "metrics.jsonl").read_text() == '{"step": 1}\n'

    cfg, _ = configure("--overwrite")
    assert cli.claim_run(cfg) == Path("runs/x")
    aside = [p for p in (inproc / "runs").iterdir() if p.name.startswith("x.old-")]
    assert len(aside) == 1 and (aside[0] / "metrics.jsonl").read_text() == '{"step": 1}\n'  # moved, not deleted
    assert (run / ".lock").read_text().split()[0] == str(os.getpid())
    rundir.release_lock(rundir.STOP.lock)
    assert not (run / ".lock").exists()


def test_a_directory_without_a_run_in_it_is_no_run(inproc):
    (inproc / "runs" / "x").mkdir(parents=True)
    (inproc / "runs" / "x" / "stdout.log").write_text("a notebook's log of the run it starts\n")
    configure()


def test_smoke_runs_get_their_own_name_unless_named(inproc):
    assert configure("--smoke")[0].name == "x_smoke"
    assert configure("--smoke", "--name", "mine")[0].name == "mine"


def test_a_live_lock_refuses_and_a_stale_one_is_taken_over(inproc, capsys):
    run = inproc / "runs" / "x"
    run.mkdir(parents=True)
    (run / ".lock").write_text(f"{os.getpid()}\n")  # alive: this very process
    err = refused(capsys)
    assert f"in use by another process (pid {os.getpid()})" in err
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    (run / ".lock").write_text(gone.stdout)  # its process has ended
    cfg, _ = configure()
    cli.claim_run(cfg)
    assert (run / ".lock").read_text().split()[0] == str(os.getpid())
    rundir.release_lock(rundir.STOP.lock)


# ------------------------------------------------------------------------------------------------------
# 3. checkpoints, Ctrl-C, kill -9


def test_sigint_saves_prints_the_resume_command_and_a_second_process_is_refused(small_data, tmp_path):
    args = [*tiny_files(small_data, tmp_path), "--name", "sig", "--max_steps", 100_000, "--batch_size", 4,
            "--log_interval", 2, "--eval_interval", 10**9, "--ckpt_seconds", 0]
    proc = launch("train_sft.py", *args, cwd=tmp_path)
    run = tmp_path / "runs" / "sig"
    wait_for(lambda: has_line(run / "metrics.jsonl", lambda r: "loss" in r), proc)
    assert (run / ".lock").read_text().split()[0] == str(proc.pid)
    second = run_script("train_sft.py", *args, "--overwrite", cwd=tmp_path, check=False)
    assert second.returncode == 2 and f"in use by another process (pid {proc.pid})" in second.stderr

    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "Traceback" not in out + err, err[-2000:]
    step = checkpoint.load_checkpoint(run / "ckpt.pt")["step"]
    assert step > 0 and f"checkpoint saved at step {step}" in out and not (run / ".lock").exists()
    # the printed command is the one that continues (here for 3 more steps)
    command = out.split("Continue with: ")[-1].splitlines()[0].split()
    assert command == [sys.executable, str(ROOT / "train_sft.py"), "--name", "sig", "--resume"]
    resumed = run_python(*command[1:], "--max_steps", step + 3, cwd=tmp_path, threads=1)
    assert f"resuming runs/sig at step {step}" in resumed.stdout and "max_steps 100000 -> " in resumed.stdout
    assert checkpoint.load_checkpoint(run / "ckpt.pt")["step"] == step + 3


def test_kill_9_then_resume_ends_with_the_weights_of_an_uninterrupted_run(small_data, tmp_path):
    """A run killed as soon as its first interval checkpoint is written (with an injected NaN to skip on the
    way) must, resumed, end bit for bit where the same run without a kill ends, its log read the same."""
    common = [*tiny_files(small_data, tmp_path), "--max_steps", 60, "--batch_size", 8, "--log_interval", 4,
              "--eval_interval", 10**9, "--inject_nan_step", 7, "--ckpt_seconds", 0]
    run_script("train_sft.py", *common, "--name", "whole", cwd=tmp_path)
    proc = launch("train_sft.py", *common, "--name", "k9", "--ckpt_interval", 4, cwd=tmp_path)
    run, whole = tmp_path / "runs" / "k9", tmp_path / "runs" / "whole"
    wait_for(lambda: (run / "ckpt.pt").exists(), proc)
    proc.kill()
    proc.wait()
    killed_at = checkpoint.load_checkpoint(run / "ckpt.pt")["step"]
    assert 4 <= killed_at < 60 and (run / ".lock").exists()  # left behind by kill -9: taken over below
    out = run_script("train_sft.py", "--name", "k9", "--resume", cwd=tmp_path).stdout
    assert f"at step {killed_at}" in out
    assert same_weights(weights(run / "ckpt.pt"), weights(whole / "ckpt.pt"))
    summary, reference = (json.loads((d / "summary.json").read_text()) for d in (run, whole))
    assert summary["tokens_seen"] == reference["tokens_seen"] and summary["nan_count"] == reference["nan_count"] == 1

    def lines(path):
        return [{k: v for k, v in r.items() if k not in ("time", "tok_per_s")} for r in read_json_lines(path)]

    assert lines(run / "metrics.jsonl") == lines(whole / "metrics.jsonl")  # no line lost, none twice


def test_sigint_inside_a_selfplay_iteration_resumes_to_the_uninterrupted_run(sft_run, small_data, tmp_path):
    """SPIN with its continued-SFT baseline, stopped by Ctrl-C a step or so into iteration 0: the resumed run
    rebuilds the opponent (its reference log-probs) from the iteration's start, reads y_gen back, continues
    the optimizer, and ends with the weights and the metrics (but for timings) of an uninterrupted run."""
    common = [*tiny_files(small_data, tmp_path), "--init", sft_run / "ckpt.pt", "--iters", 2, "--epochs", 1,
              "--batch_size", 8, "--max_new_tokens", 8, "--log_interval", 2]
    run_script("train_spin.py", *common, "--name", "whole", cwd=tmp_path)
    proc = launch("train_spin.py", *common, "--name", "cut", cwd=tmp_path)
    run = tmp_path / "runs" / "cut"
    wait_for(lambda: has_line(run / "metrics.jsonl", lambda r: r.get("event") == "iteration_start"), proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 130 and "Continue with:" in out and "Traceback" not in err, err[-2000:]
    ckpt = checkpoint.load_checkpoint(run / "ckpt.pt")
    assert ckpt["iter"] == 0 and "k" in ckpt  # inside iteration 0
    run_script("train_spin.py", "--name", "cut", "--resume", cwd=tmp_path)

    whole = tmp_path / "runs" / "whole"
    for f in ("iter1/ckpt.pt", "baseline/iter1/ckpt.pt"):
        assert same_weights(weights(run / f), weights(whole / f)), f

    def lines(path):
        wall_clock = ("time", "gen_seconds", "eval_seconds", "train_seconds")
        return [{k: v for k, v in r.items() if k not in wall_clock} for r in read_json_lines(path)]

    for log in ("metrics.jsonl", "baseline/metrics.jsonl"):
        assert lines(run / log) == lines(whole / log), log


# ------------------------------------------------------------------------------------------------------
# 4. NaN halts are resumable, with new flags; 5. inputs the model cannot take


def test_nan_halt_saves_the_last_good_state_and_resumes_with_a_new_lr(small_data, tmp_path):
    args = tiny_files(small_data, tmp_path)
    long_prompt = {"prompt": "word " * 400, "response": "no"}  # longer than the context: skipped, counted
    with open(tmp_path / "train.jsonl", "a") as f:
        f.write(json.dumps(long_prompt) + "\n")
    proc = run_script("train_sft.py", *args, "--name", "h", "--max_steps", 8, "--batch_size", 8, "--log_interval", 2,
                      "--inject_nan_step", 3, "--nan_policy", "halt", cwd=tmp_path, check=False)
    err = proc.stderr.strip()
    assert proc.returncode == 1 and len(err.splitlines()) == 1 and "Traceback" not in proc.stdout + err, err
    assert "non-finite loss at step 3 (nan_policy=halt)" in err and "--resume --lr 0.0015" in err
    assert "skipped 1 of 49 examples whose prompt does not fit the context" in proc.stdout
    run = tmp_path / "runs" / "h"
    assert checkpoint.load_checkpoint(run / "ckpt.pt")["step"] == 3  # the poisoned step 3 was not applied
    out = run_script("train_sft.py", "--name", "h", "--resume", "--lr", 1e-3, "--inject_nan_step", -1,
                     cwd=tmp_path).stdout
    assert "lr 0.003 -> 0.001" in out and "inject_nan_step 3 -> -1" in out
    ckpt = checkpoint.load_checkpoint(run / "ckpt.pt")
    assert ckpt["step"] == 8 and ckpt["config"]["lr"] == 1e-3
    assert [r["step"] for r in read_json_lines(run / "metrics.jsonl") if "nan_event" in r] == [3]


def test_prompts_longer_than_the_context_are_skipped_and_answers_cut(small_data):
    tok = Tokenizer.load(small_data / "tokenizer")
    records = [{"prompt": "hi", "response": "ok"}, {"prompt": "word " * 100, "response": "ok"},
               {"prompt": "hi", "response": "word " * 100}]
    kept, prompts, responses, note = fit_to_context(tok, records, block_size=32)
    assert kept == [records[0], records[2]] and all(len(p) + len(r) <= 33 for p, r in zip(prompts, responses))
    assert note == "skipped 1 of 3 examples whose prompt does not fit the context (32 tokens); cut 1 answers to fit it"
    assert fit_to_context(tok, records[:1], 32)[3] is None


def test_no_example_that_fits_is_an_error_before_training(small_data, tmp_path):
    (tmp_path / "long.jsonl").write_text(json.dumps({"prompt": "word " * 400, "response": "no"}) + "\n")
    proc = run_script("train_sft.py", "--data_dir", small_data, "--data", tmp_path / "long.jsonl", cwd=tmp_path,
                      check=False)
    assert proc.returncode == 2 and "no example fits the model's context" in proc.stderr
    assert not (tmp_path / "runs").exists()


# ------------------------------------------------------------------------------------------------------
# 6. logs survive crashes


def test_a_torn_metrics_line_is_dropped_and_resume_keeps_the_lines_before_the_checkpoint(tmp_path):
    log = runlog.RunLog(tmp_path)
    for step in (1, 2, 3):
        log.log(step=step, loss=1.0)
    assert log.lines == 3
    with open(tmp_path / "metrics.jsonl", "a") as f:
        f.write('{"step": 4, "lo')  # a crash in mid-write
    assert [r["step"] for r in runlog.read_metrics(tmp_path)] == [1, 2, 3]
    # a checkpoint written after 2 lines: the resumed run's log goes on from there
    resumed = runlog.RunLog(tmp_path, resume={"log_lines": 2, "step": 2})
    resumed.log(step=3, loss=0.5)
    assert [(r["step"], r["loss"]) for r in runlog.read_metrics(tmp_path)] == [(1, 1.0), (2, 1.0), (3, 0.5)]


def test_make_smoke_never_touches_the_real_runs_and_reruns_move_the_old_run_aside():
    out = subprocess.run(["make", "-n", "-B", "tspin", "SMOKE=1"], cwd=ROOT, capture_output=True, text=True).stdout
    assert "runs/sft/" not in out and "runs/sft_smoke/ckpt.pt" in out
    assert all("--overwrite" in line for line in out.splitlines() if "train_" in line)
