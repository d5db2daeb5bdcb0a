"""
What every flag of the scripts accepts: RULES, one (test, expected) per flag, and PAIR_RULES between two
flags. model/cli.py checks a command line against them before any work (one line, exit 2); a script can
put its own rule in place of one (model/selfplay_run.py's --init). Files are checked here for existence,
their contents by the one reader of each kind (read_jsonl, load_checkpoint, Tokenizer.load).
"""

import math
import os
import re
from pathlib import Path

from model.data import TEMPLATES


def _floats(value):
    return [float(v) for v in str(value).split(",")]


def _finite(test):
    return lambda v: math.isfinite(v) and test(v)


def _integer(test):
    return lambda v: isinstance(v, int) and not isinstance(v, bool) and test(v)


def _one_of(*choices):
    return lambda v: v in choices, " or ".join(choices)


def _temperatures(v):
    return all(math.isfinite(x) and x > 0 for x in _floats(v)) if v else True


POSITIVE = (_finite(lambda v: v > 0), "a number > 0")
AT_LEAST_0 = (_finite(lambda v: v >= 0), "a number >= 0")
COUNT = (_integer(lambda v: v >= 1), "an integer >= 1")
COUNT_OR_0 = (_integer(lambda v: v >= 0), "an integer >= 0")
A_FILE = (lambda v: v == "" or Path(v).is_file(), "the path of an existing file")

# Every value a script takes; a script is checked on the flags it has (tests/test_faults.py checks that
# every flag of every script has a rule, or is a boolean).
RULES = {
    "name": (lambda v: v not in ("", ".", "..") and "/" not in v and os.sep not in v and "\0" not in v,
             "a single directory name under --out_dir (no '/', not '.' or '..')"),
    "out_dir": (lambda v: v.strip() != "" and not Path(v).is_file(), "a directory"),
    "data_dir": (lambda v: v.strip() != "" and not Path(v).is_file(), "a directory (made by `make data`)"),
    "batch_size": COUNT, "max_steps": COUNT, "iters": COUNT, "epochs": COUNT, "log_interval": COUNT,
    "eval_interval": COUNT, "eval_subset": COUNT, "max_new_tokens": COUNT, "max_consecutive_nans": COUNT,
    "eval_sample_every": COUNT, "warmup_steps": COUNT_OR_0, "ckpt_interval": COUNT_OR_0,
    "lr": POSITIVE, "baseline_lr": POSITIVE, "grad_clip": POSITIVE, "a": POSITIVE,
    "min_lr": AT_LEAST_0, "weight_decay": AT_LEAST_0, "temperature": AT_LEAST_0, "ckpt_seconds": AT_LEAST_0,
    "nll": AT_LEAST_0,
    "eval_samples": (_integer(lambda v: 0 <= v <= 64), "a number of samples in 0..64 (0 = off)"),
    "seed": (_integer(lambda v: 0 <= v < 2**32), "an integer in 0..4294967295"),
    "eval_temperatures": (_temperatures, "temperatures > 0 such as 0.6,1.0 (or empty for none)"),
    "theta0_temperatures": (_temperatures, "temperatures > 0 such as 0.2,0.4,0.6,0.8,1.0 (or empty for none)"),
    "dropout": (_finite(lambda v: 0 <= v < 1), "a probability in [0, 1)"),
    "top_p": (_finite(lambda v: 0 < v <= 1), "a probability in (0, 1]"),
    "warmup_ratio": (_finite(lambda v: 0 <= v <= 1), "a share in [0, 1]"),
    "subset": (lambda v: 0 < v <= 100, "a percentage in (0, 100] (make data writes 25, 50 and 100)"),
    "inject_nan_step": (_integer(lambda v: v >= -1), "a step >= 0, or -1 for never"),
    "stop_at": (_integer(lambda v: v == -1 or v >= 1), "a step >= 1, or -1 for never"),
    "lam": (lambda v: all(math.isfinite(x) and x > 0 for x in _floats(v)),
            "a number > 0, or one per iteration such as 0.1,0.1,5.0"),
    "b": (lambda v: all(math.isfinite(x) and x >= 0 for x in _floats(v)),
          "a number >= 0, or one per iteration such as 0.0,0.1"),
    "nan_policy": _one_of("skip", "halt"),
    "optim": _one_of("rmsprop", "adamw"),
    "logp": _one_of("sum", "mean"),
    "preset": _one_of("haiku", "sonnet"),
    "device": (lambda v: re.fullmatch(r"auto|cpu|mps|cuda(:\d+)?", v) is not None, "auto, cpu, cuda, cuda:N or mps"),
    "data": A_FILE, "eval_data": A_FILE,
    "val_data": (lambda v: v in ("", "none") or Path(v).is_file(), "the path of an existing file, or none"),
    "template": _one_of(*TEMPLATES),
    "tokenizer": (lambda v: v == "" or Path(v).is_dir(), "an existing tokenizer directory"),
    "init": (lambda v: v == "" or (v.strip() != "" and "\0" not in v), "a checkpoint file or a run name"),
}

# rules between two flags of a script that has both: (flag, other flag, test(value, other), expected)
PAIR_RULES = [
    ("stop_at", "max_steps", lambda v, n: v == -1 or v <= n, "a step <= --max_steps (the run ends there), or -1"),
]
