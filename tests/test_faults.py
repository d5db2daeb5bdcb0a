"""Faults a run must survive (issue 27): every flag typed counts and is checked (--smoke too), a checkpoint
write that fails (a full disk) or a checkpoint torn or cut short costs at most the last checkpoint, a kill
-9 at any moment of a self-play run ends, after --resume, with the results of a run never stopped, and bad
data files are one line before anything is written. docs/reference.md, "Reliability", lists what each
test here guarantees.

The flag table and the checkpoint checks run in process (configure(argv), the library functions); the
runs start processes at smoke size, with a hidden hook (model/rundir.py fault_point) that kills a run, or
fills its disk, at an exact moment instead of sleeping."""

import errno
import json
import os
import re
import runpy
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from conftest import ROOT, run_python, script_env
from test_reliability import tiny_files

from experiments.plan import SFT_DEFAULTS, SPIN_DEFAULTS, TSPIN_DEFAULTS
from model import checkpoint, cli, flags, selfplay
from model.files import previous_path, read_json_lines, write_jsonl
from model.gpt import GPT, GPTConfig
from model.selfplay_run import SELFPLAY_DEFAULTS, SELFPLAY_RULES, SMOKE
from model.step import NanGuard

# every flag of the three training scripts (their literal defaults, and what they share)
ALL_FLAGS = {**cli.RUN_DEFAULTS, **SELFPLAY_DEFAULTS, **SFT_DEFAULTS, **SPIN_DEFAULTS, **TSPIN_DEFAULTS, "name": "x"}


def configure(*argv, smoke=None, rules=None):
    return cli.configure(ALL_FLAGS, "spin", ROOT / "train_spin.py", smoke=smoke, rules=rules,
                         argv=[str(a) for a in argv])


def refused(capsys, *argv, **kw):
    """The one-line error of configure(argv): exit status 2, nothing else printed on stderr."""
    with pytest.raises(SystemExit) as e:
        configure(*argv, **kw)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


# ------------------------------------------------------------------------------------------------------
# 1. flags the user typed always count: one row per rule, each refused in one line naming the flag

BAD_VALUE = {  # flag: a value its rule refuses
    "name": "a/b", "out_dir": "f.txt", "data_dir": "f.txt", "batch_size": 0, "max_steps": 0, "iters": -1,
    "epochs": 0, "log_interval": 0, "eval_interval": 0, "eval_subset": 0, "max_new_tokens": -5,
    "max_consecutive_nans": 0, "eval_sample_every": 0, "warmup_steps": -1, "ckpt_interval": -1, "lr": 0,
    "baseline_lr": -1e-4, "grad_clip": 0, "a": "nan", "min_lr": -1, "weight_decay": -0.1, "temperature": -1,
    "ckpt_seconds": -1, "nll": -1, "eval_samples": 65, "seed": -1, "eval_temperatures": "0.6,0",
    "theta0_temperatures": "hot", "dropout": 1, "top_p": 0, "warmup_ratio": 2, "subset": 0, "inject_nan_step": -2,
    "stop_at": 0, "lam": "0", "b": "-0.1", "nan_policy": "maybe", "optim": "sgd", "logp": "median",
    "preset": "opus", "device": "gpu", "data": ".", "eval_data": "missing.jsonl", "val_data": "missing.jsonl",
    "template": "alpaca", "tokenizer": "f.txt", "init": " ",
}
ROWS = [([f"--{k}", v], f"--{k} ") for k, v in BAD_VALUE.items()] + [
    (["--stop_at", 50, "--max_steps", 10], "--stop_at 50"),  # PAIR_RULES
    (["--smoke", "--batch_size", 0], "--batch_size 0"),  # a typed flag wins over --smoke's size, and is checked
    (["--smoke", "--iters", -1], "--iters -1"),
]


def test_the_table_has_a_row_for_every_rule_and_every_flag_has_a_rule():
    assert BAD_VALUE.keys() == flags.RULES.keys()
    unruled = [k for k, v in ALL_FLAGS.items() if not isinstance(v, bool) and k not in flags.RULES]
    assert unruled == []  # a new flag needs a rule (booleans are argparse's)


@pytest.mark.parametrize("argv,needle", ROWS, ids=[" ".join(map(str, a)) for a, _ in ROWS])
def test_every_rule_refuses_in_one_line_naming_the_flag(argv, needle, inproc, capsys):
    (inproc / "f.txt").write_text("a file\n")
    assert needle in refused(capsys, *argv, smoke=lambda c: SMOKE)
    assert sorted(p.name for p in inproc.iterdir()) == ["f.txt"]  # nothing written


def test_selfplay_needs_an_init(inproc, capsys):
    assert "--init '': expected theta_0" in refused(capsys, "--init", "", rules=SELFPLAY_RULES)
    configure("--init", "")  # train_sft.py: no --init is a fresh model


def test_smoke_sizes_apply_only_where_nothing_was_typed(inproc, capsys):
    cfg, _ = configure("--smoke", "--batch_size", 8, smoke=lambda c: SMOKE)
    assert (cfg.batch_size, cfg.iters, cfg.epochs) == (8, SMOKE["iters"], SMOKE["epochs"])
    cfg, _ = configure("--smoke", smoke=lambda c: SMOKE)
    assert {k: getattr(cfg, k) for k in SMOKE} == SMOKE  # `make tspin SMOKE=1`: the smoke sizes, unchanged


SAMPLE_ROWS = [  # sample.py's own flags: one line naming the flag, before any checkpoint is read
    (["--prompt", "hi", "--top_p", 0], "--top_p 0.0"), (["--prompt", "hi", "--top_p", "nan"], "--top_p nan"),
    (["--prompt", "hi", "--temperature", -1], "--temperature -1.0"),
    (["--prompt", "hi", "--temperature", "inf"], "--temperature inf"),
    (["--prompt", "hi", "--top_k", -1], "--top_k -1"), (["--prompt", "hi", "--max_new_tokens", -3], "--max_new_tokens -3"),
    (["--prompt", "hi", "--num_samples", 0], "--num_samples 0"), (["--eval", -2], "--eval -2"),
    (["--prompt", "hi", "--seed", -1], "--seed -1"), (["--prompt", "hi", "--device", "gpu"], "--device 'gpu'"),
    (["--prompt", ""], "--prompt"), (["--prompt", "hi", "--out", "."], "--out '.'"),
    (["--eval", 3, "--top_p", 0.5], "--top_p"), (["--prompt", "hi", "--eval_data", "e.jsonl"], "--eval_data"),
    (["--chat", "--num_samples", 2], "--num_samples"),
]


@pytest.mark.parametrize("argv,needle", SAMPLE_ROWS, ids=[" ".join(map(str, a)) for a, _ in SAMPLE_ROWS])
def test_sample_refuses_bad_values_in_one_line_naming_the_flag(argv, needle, monkeypatch, capsys, tmp_path):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "argv", ["sample.py", "no_such_run", *map(str, argv)])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "sample.py"), run_name="__main__")
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and len(err.splitlines()) == 1 and err.startswith("error: "), err
    assert needle in err and "no_such_run" not in err, err  # before any checkpoint was looked for


# ------------------------------------------------------------------------------------------------------
# 2. checkpoints that can be trusted: a failed write changes nothing, a torn latest falls back to the previous


def tiny_state(step, kind="spin", **extra):
    """A resumable checkpoint of a 1-layer GPT (milliseconds to make), as save_iteration writes one."""
    torch.manual_seed(step)
    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=1, n_embd=8))
    cfg = SimpleNamespace(**{**ALL_FLAGS, "name": "x", "batch_size": 8, "smoke": True})
    tok = SimpleNamespace(sha256="0" * 64)
    return checkpoint.checkpoint_state(kind, model, cfg, tok, "tok", step, 0, next_iter=1, **extra)


def full_disk(state, f):
    """torch.save on a full disk: half a checkpoint written, then ENOSPC."""
    f.write(b"PK\x03\x04" + b"\0" * 1000)
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))


def test_a_failed_checkpoint_write_leaves_both_checkpoints_as_they_were(tmp_path, monkeypatch):
    path = tmp_path / "ckpt.pt"
    checkpoint.save_checkpoint(path, tiny_state(1))
    checkpoint.save_checkpoint(path, tiny_state(2))
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    assert sorted(before) == ["ckpt.prev.pt", "ckpt.pt"]
    with monkeypatch.context() as m, pytest.raises(OSError) as e:
        m.setattr(torch, "save", full_disk)
        checkpoint.save_checkpoint(path, tiny_state(3))
    assert e.value.errno == errno.ENOSPC
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before  # and no .tmp left
    if os.geteuid() != 0:  # (root writes anywhere)
        tmp_path.chmod(0o500)
        try:
            with pytest.raises(PermissionError):
                checkpoint.save_checkpoint(path, tiny_state(3))
        finally:
            tmp_path.chmod(0o700)
        assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_a_full_disk_stops_a_selfplay_run_in_one_line_and_resume_continues(inproc, monkeypatch, capsys):
    """save_iteration on a full disk: one line naming the file and the cause, exit 1 (the run stopped on its
    way, as on a NaN halt; 2 is for a command that was wrong), and --resume continues from the checkpoint
    before, which the failed write left intact."""
    cfg, _ = configure()
    run_dir = cli.claim_run(cfg)
    checkpoint.save_checkpoint(run_dir / "ckpt.pt", tiny_state(4))
    model = GPT(GPTConfig(vocab_size=32, block_size=8, n_layer=1, n_head=1, n_embd=8))
    run = SimpleNamespace(dist=SimpleNamespace(main=True), kind="SPIN", kind_id="spin", model=model, cfg=cfg, main_cfg=cfg,
                          tok=SimpleNamespace(sha256="0" * 64), tok_path="tok", step=9, guard=NanGuard(),
                          tokens_seen=0, theta_0_path="sft", log=SimpleNamespace(lines=0), run_dir=run_dir,
                          theta_0_eval_answers=None, last_eval_answers=None, clock=SimpleNamespace(saved=lambda: None))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    with monkeypatch.context() as m, pytest.raises(SystemExit) as e:
        m.setattr(torch, "save", full_disk)
        selfplay.save_iteration(run, 0, k=3, optimizer=optimizer, update_ratios=[], steps=6)
    err = capsys.readouterr().err.strip()
    assert e.value.code == 1 and len(err.splitlines()) == 1, err
    assert f"could not write the checkpoint {run_dir / 'ckpt.pt'}: No space left on device (ENOSPC)" in err
    assert err.endswith("--name x --resume") and not list(run_dir.glob("*.tmp"))
    cli.release_lock(cli._STOP.lock)
    assert configure("--resume")[1]["step"] == 4  # the checkpoint before, intact


def torn(path, how):
    if how == "cut in half":
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    elif how == "not a torch file":
        path.write_text("not a checkpoint\n")
    elif how == "wrong keys":
        torch.save({"weight": torch.zeros(2)}, path)
    elif how == "wrong shape":
        state = tiny_state(9)
        state["model"]["wte.weight"] = torch.zeros(3, 3)
        torch.save(state, path)
    elif how == "missing":  # a kill between the two renames of a save
        path.unlink()


@pytest.mark.parametrize("how", ["cut in half", "not a torch file", "wrong keys", "wrong shape", "missing"])
def test_resume_passes_over_an_unreadable_latest_checkpoint_or_refuses_clearly(how, inproc, capsys):
    run_dir = inproc / "runs" / "x"
    checkpoint.save_checkpoint(run_dir / "ckpt.pt", tiny_state(3))
    checkpoint.save_checkpoint(run_dir / "ckpt.pt", tiny_state(5))
    torn(run_dir / "ckpt.pt", how)
    cfg, ckpt = configure("--resume", "--smoke", "--name", "x", smoke=lambda c: {"batch_size": 16})
    err = capsys.readouterr().err.strip()
    assert ckpt["step"] == 3 and len(err.splitlines()) == 1, err
    assert err.startswith("--resume: runs/x/ckpt.pt") and "continuing from the previous checkpoint, runs/x/ckpt.prev.pt" in err
    assert cfg.batch_size == 8  # the run's own (typed when it started), not --smoke's
    cli.claim_run(cfg)  # the unreadable one is set aside: the next save cannot rotate it over the good one
    assert not (run_dir / "ckpt.pt").exists() and (run_dir / "ckpt.prev.pt").exists()
    assert (run_dir / "ckpt.unreadable.pt").exists() == (how != "missing")
    cli.release_lock(cli._STOP.lock)
    if how == "missing":
        return
    previous_path(run_dir / "ckpt.pt").unlink()  # no previous one either: refused, in one line
    (run_dir / "ckpt.unreadable.pt").rename(run_dir / "ckpt.pt")
    err = refused(capsys, "--resume")
    assert "and there is no previous checkpoint ckpt.prev.pt to fall back on; start the run again with --overwrite" in err


def run_with(*args, cwd, env=None):
    """python <script> args... in cwd on one thread, with these environment variables; not checked."""
    return run_python(ROOT / args[0], *args[1:], cwd=cwd, threads=1, check=False, env=script_env(1, **(env or {})))


def run_together(jobs, cwd):
    """[(args, env)] started at once (one thread each: two cores do two at a time) -> [(returncode, out, err)]."""
    procs = [run_python(ROOT / args[0], *args[1:], cwd=cwd, background=True, env=script_env(1, **env))
             for args, env in jobs]
    outputs = [p.communicate(timeout=600) for p in procs]
    return [(p.returncode, out, err) for p, (out, err) in zip(procs, outputs)]


def lines(path):
    """A metrics log as a run never stopped writes it: the lines, without their wall-clock timings."""
    wall = ("time", "gen_seconds", "tok_per_s", "wall_time_s", "eval_seconds", "train_seconds")
    return [{k: v for k, v in r.items() if k not in wall} for r in read_json_lines(path)]


def same_weights(a, b):
    a, b = checkpoint.load_checkpoint(a)["model"], checkpoint.load_checkpoint(b)["model"]
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_full_disk_then_a_torn_checkpoint_then_resume_ends_as_a_run_never_stopped(small_data, tmp_path):
    """A real SFT run whose disk fills at its third checkpoint write stops in one line (exit 1); its
    latest checkpoint is then cut to half its bytes; --resume says so, continues from the previous one, and
    ends with the weights and the log of the same run never stopped."""
    common = ["train_sft.py", *tiny_files(small_data, tmp_path), "--max_steps", 16, "--batch_size", 8,
              "--log_interval", 2, "--eval_interval", 10**9, "--eval_samples", 0, "--ckpt_seconds", 0,
              "--ckpt_interval", 4]
    whole = run_with(*common, "--name", "whole", cwd=tmp_path)
    assert whole.returncode == 0, whole.stderr[-2000:]
    full = run_with(*common, "--name", "full", cwd=tmp_path, env={"TINYSPIN_FULL_AT": "write:ckpt.pt:3"})
    err, run = full.stderr.strip(), tmp_path / "runs" / "full"
    assert full.returncode == 1 and len(err.splitlines()) == 1, err
    assert f"could not write the checkpoint {Path('runs/full/ckpt.pt')}: No space left on device" in err
    assert err.endswith("train_sft.py --name full --resume")
    steps = [checkpoint.load_checkpoint(p)["step"] for p in (run / "ckpt.pt", run / "ckpt.prev.pt")]
    assert steps == [8, 4] and not list(run.glob("*.tmp"))
    torn(run / "ckpt.pt", "cut in half")
    resumed = run_with("train_sft.py", "--name", "full", "--resume", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "ckpt.pt is not a readable checkpoint" in resumed.stderr and "(step 4)" in resumed.stderr
    assert same_weights(run / "ckpt.pt", tmp_path / "runs" / "whole" / "ckpt.pt")
    assert lines(run / "metrics.jsonl") == lines(tmp_path / "runs" / "whole" / "metrics.jsonl")


# ------------------------------------------------------------------------------------------------------
# 3. kill -9 at any moment of a self-play run: --resume ends with the results of a run never stopped

KILLS = {  # the moment (TINYSPIN_KILL_AT) -> what the resumed run says, and what it must not do again
    # iteration 0's y_gen generated, not saved: from the checkpoint after theta_0's evaluation
    "y_gen:1": ("at step 0", "theta_0 (SFT) eval"),
    # training, 3 steps into iteration 1 (the last checkpoint 1 step before)
    "step:tspin:9": ("T-SPIN iteration 1: continuing at step 2 of 6", "T-SPIN iteration 0: b"),
    # the baseline's training, 3 steps into its iteration 0
    "step:sft_baseline:3": ("continued SFT iteration 0: continuing at step 2 of 6", "iteration 0: 48 answers"),
    # iteration 1's evaluation, its eval outcomes written, its val ones not
    "write:iter1_eval.jsonl:1": ("T-SPIN iteration 1: continuing at step 6 of 6", "T-SPIN iteration 0: b"),
    # the checkpoint after iteration 0 (and its baseline), between its two renames: ckpt.pt is missing
    "rotate:ckpt.pt:9": ("continuing from the previous checkpoint", "continued SFT iteration 0 eval"),
}


def test_kill_9_at_any_moment_then_resume_gives_the_results_of_a_run_never_stopped(sft_run, small_data, tmp_path):
    """One smoke T-SPIN run with its baseline, checkpointing every 2 steps, killed (SIGKILL, by the run
    itself at the named moment) at 5 moments: generating y_gen, training, the baseline, the evaluation and
    a checkpoint write. Each, resumed, ends with the final weights, the results table and the metrics logs
    (but for wall-clock timings) of the run never stopped, its log has no iteration twice, and it did
    nothing again that was finished before the last checkpoint."""
    (tmp_path / "val.jsonl").write_text("\n".join((small_data / "val.jsonl").read_text().splitlines()[:4]) + "\n")
    common = ["train_tspin.py", "--smoke", *tiny_files(small_data, tmp_path), "--init", sft_run / "ckpt.pt",
              "--val_data", tmp_path / "val.jsonl", "--max_new_tokens", 8, "--batch_size", 8, "--eval_samples", 2,
              "--eval_temperatures", "1.0", "--theta0_temperatures", "0.6,1.0", "--ckpt_interval", 2,
              "--ckpt_seconds", 0]
    names = {moment: f"k{i}" for i, moment in enumerate(KILLS)}
    jobs = [([*common, "--name", "whole"], {})] + [([*common, "--name", names[m]], {"TINYSPIN_KILL_AT": m}) for m in KILLS]
    for (code, _, err), moment in zip(run_together(jobs, tmp_path), [None, *KILLS]):
        assert code == (0 if moment is None else -9), (moment, err[-2000:])
    resumed = run_together([(["train_tspin.py", "--name", names[m], "--resume"], {}) for m in KILLS], tmp_path)
    whole = tmp_path / "runs" / "whole"
    for (code, out, err), (moment, (said, not_again)) in zip(resumed, KILLS.items()):
        run = tmp_path / "runs" / names[moment]
        assert code == 0, (moment, err[-2000:])
        assert said in out + err and not_again not in out, (moment, out[-3000:])
        for f in ("ckpt.pt", "baseline/ckpt.pt"):
            assert same_weights(run / f, whole / f), (moment, f)
        for log in ("metrics.jsonl", "baseline/metrics.jsonl"):
            assert lines(run / log) == lines(whole / log), (moment, log)
        starts = [r["iter"] for r in read_json_lines(run / "metrics.jsonl") if r.get("event") == "iteration_start"]
        assert starts == [0, 1], moment
        table = [json.loads((d / "summary.json").read_text())["table"] for d in (run, whole)]
        assert table[0] == table[1], moment


# ------------------------------------------------------------------------------------------------------
# 4. bad data files: one line, exit 2, nothing written

BAD_DATA = {
    "empty": ("", "no records"),
    "no answers": ({"prompt": "What is 2 plus 2?", "response": ""}, "every response is empty"),
    "prompts too long": ({"prompt": "word " * 400, "response": "ok"}, "no example fits the model's context"),
}


@pytest.mark.parametrize("script", ["train_sft.py", "train_tspin.py"])
def test_bad_data_is_one_line_before_anything_is_written(script, sft_run, small_data, tmp_path):
    """Each bad file through --data, and the two flags the issue found accepted under --smoke (a typed flag
    wins over the smoke size and is checked), each in one line, exit 2, nothing written."""
    init = ["--init", sft_run / "ckpt.pt"] if script == "train_tspin.py" else []
    cases = {name: (["--data", tmp_path / f"{name}.jsonl"], needle) for name, (_, needle) in BAD_DATA.items()}
    for name, (record, _) in BAD_DATA.items():
        (tmp_path / f"{name}.jsonl").write_text("" if record == "" else "".join(json.dumps(record) + "\n" for _ in range(3)))
    cases["typed flag"] = (["--batch_size", 0] if script == "train_sft.py" else ["--iters", -1],
                           "--batch_size 0" if script == "train_sft.py" else "--iters -1")
    jobs = [([script, "--smoke", "--data_dir", small_data, *init, *args], {}) for args, _ in cases.values()]
    for (code, _, err), (name, (_, needle)) in zip(run_together(jobs, tmp_path), cases.items()):
        err = err.strip()
        assert code == 2 and len(err.splitlines()) == 1 and needle in err, (name, err)
    assert not (tmp_path / "runs").exists()


def test_bad_data_reader_rules(tmp_path):
    """The reader's share, in process: an empty file and one without a single answer (a few empty ones are
    fine: a model may learn to answer nothing)."""
    from model.files import DataError, read_jsonl

    (tmp_path / "empty.jsonl").write_text("\n\n")
    write_jsonl(tmp_path / "none.jsonl", [{"prompt": "a", "response": " "}] * 2)
    write_jsonl(tmp_path / "some.jsonl", [{"prompt": "a", "response": ""}, {"prompt": "b", "response": "c"}])
    for name, needle in [("empty", "no records"), ("none", "every response is empty")]:
        with pytest.raises(DataError, match=needle):
            read_jsonl(tmp_path / f"{name}.jsonl")
    assert len(read_jsonl(tmp_path / "some.jsonl")) == 2


# ------------------------------------------------------------------------------------------------------
# 5. the documentation names the tests that hold each guarantee: each one exists


def test_the_reliability_section_names_tests_that_exist():
    text = (ROOT / "docs" / "reference.md").read_text(encoding="utf-8")
    section = text.split("### Reliability", 1)[1].split("\n## ", 1)[0]
    named = re.findall(r"`(?:(test_\w+\.py)::)?(test_\w+)`", section)
    assert len(named) >= 10
    for file, test in named:
        source = (ROOT / "tests" / (file or "test_faults.py")).read_text(encoding="utf-8")
        assert f"def {test}(" in source, f"docs/reference.md names {file or 'test_faults.py'}::{test}, which does not exist"
