"""
The command line of the three training scripts, written once: flags from the plain defaults at the top of
each script (--help is the comment beside each default), the rules every value is checked against, --resume
(the run's own settings, the flags typed now winning), and how the process ends: one line and exit 2 on bad
input (--debug, or TINYSPIN_DEBUG=1, shows full tracebacks), exit 1 on a NaN halt, and Ctrl-C / SIGTERM:
finish the step, save, print the command that continues, exit 130.

This is the only module of model/ that ends the process; the library modules raise, the scripts and this
layer decide.
"""

import argparse
import math
import os
import re
import shlex
import signal
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch

from model.checkpoint import load_checkpoint
from model.data import TEMPLATES
from model.rundir import RUNS_DIR, RunDirError, check_run_dir, holds_run, release_lock, run_path
from model.rundir import STOP as _STOP
from model.rundir import claim_run as _claim_run

# flags every training script has beside its own; the comments are their --help text
RUN_DEFAULTS = dict(
    ckpt_seconds=60.0,           # save a resumable checkpoint after this many seconds of work (0 = by steps only)
    ckpt_interval=0,             # also save one every this many optimizer steps (0 = by time only)
    overwrite=False,             # move an existing run of this name aside (to <name>.old-<time>) and start afresh
    debug=False,                 # full tracebacks instead of one-line errors (or TINYSPIN_DEBUG=1), and the tests' extra checks
)

# ----------------------------------------------------------------------------------------------------
# errors: one line, never a traceback, unless --debug

DEBUG = os.environ.get("TINYSPIN_DEBUG", "") not in ("", "0")
EXIT_BAD_INPUT, EXIT_HALTED, EXIT_INTERRUPTED = 2, 1, 130


def die(msg, status=EXIT_BAD_INPUT):
    """The one way a script stops on bad input: one line on stderr, exit status 2, no traceback."""
    if DEBUG:
        traceback.print_stack()
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(status)


def _one_line_excepthook(kind, value, tb):
    """Anything unexpected still ends in one line, with where it happened; --debug shows the traceback."""
    where = traceback.extract_tb(tb)[-1] if tb else None
    text = (str(value).strip().splitlines() or [""])[0]
    at = f" (at {Path(where.filename).name}:{where.lineno}; --debug shows the traceback)" if where else ""
    print(f"error: {kind.__name__}: {text}{at}", file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------------------------------
# configuration: plain defaults at the top of each script, overridden by --key value


def _str2bool(s):
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # argparse would print its whole usage block: one line names the flag
        die(f"{message} (--help lists the flags)")


def flag_help(*sources):
    """{key: help} from the comments beside the defaults (`    lr=3e-3,  # peak learning rate`) in these
    source files: the comment a reader sees next to a default is the --help text, written once."""
    helps = {}
    for src in sources:
        for line in Path(src).read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s+(\w+)=[^#]*#\s*(.+)$", line)
            if m:
                helps.setdefault(m.group(1), m.group(2).strip())
    return helps


def parse_config(defaults, argv=None, description=None, help_from=()):
    """--key value (or --key=value) overrides a default; the type follows the default's; a bare --flag
    sets a boolean. Unknown keys and values of the wrong type are a one-line error. Help text comes from
    the comments beside the defaults in the files `help_from` (and here). Returns (namespace, the keys
    given on the command line)."""
    helps = flag_help(*help_from, __file__)
    parser = _Parser(description=description, allow_abbrev=False, argument_default=argparse.SUPPRESS,
                     formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=32))
    for key, value in defaults.items():
        kind = "bool" if isinstance(value, bool) else type(value).__name__
        shown = f" (default: {value})" if value != "" else ""
        meta = dict(help=helps.get(key, "") + shown, metavar=kind.upper())
        if isinstance(value, bool):
            parser.add_argument(f"--{key}", type=_str2bool, nargs="?", const=True, **meta)
        else:
            parser.add_argument(f"--{key}", type=type(value), **meta)
    given = vars(parser.parse_args(argv))  # SUPPRESS: only what was typed, so --resume knows what changed
    return SimpleNamespace(**{**defaults, **given}), set(given)


def _floats(value):
    return [float(v) for v in str(value).split(",")]


def _finite(test):
    return lambda v: math.isfinite(v) and test(v)


def _one_of(*choices):
    return lambda v: v in choices, " or ".join(choices)


POSITIVE = (_finite(lambda v: v > 0), "a number > 0")
AT_LEAST_0 = (_finite(lambda v: v >= 0), "a number >= 0")
STEP_OR_NEVER = (lambda v: v >= -1, "a step >= 0, or -1 for never")
A_FILE = (lambda v: v == "" or Path(v).is_file(), "the path of an existing file")

# Every value a script takes, checked before any work. A script is checked on the flags it has. Files are
# checked here for existence; their contents by the one reader of each kind (read_jsonl, load_checkpoint,
# Tokenizer.load), which name the file and the line, also before anything is written.
RULES = {
    "name": (lambda v: v not in ("", ".", "..") and "/" not in v and os.sep not in v and "\0" not in v,
             "a single directory name under --out_dir (no '/', not '.' or '..')"),
    "out_dir": (lambda v: v.strip() != "" and not Path(v).is_file(), "a directory"),
    "batch_size": POSITIVE, "max_steps": POSITIVE, "iters": POSITIVE, "epochs": POSITIVE,
    "log_interval": POSITIVE, "eval_interval": POSITIVE, "eval_subset": POSITIVE, "max_new_tokens": POSITIVE,
    "max_consecutive_nans": POSITIVE, "lr": POSITIVE, "baseline_lr": POSITIVE, "grad_clip": POSITIVE, "a": POSITIVE,
    "eval_samples": (lambda v: 0 <= v <= 64, "a number of samples in 0..64"),
    "eval_sample_every": POSITIVE,
    "eval_temperatures": (lambda v: all(math.isfinite(x) and x > 0 for x in _floats(v)) if v else True,
                          "temperatures > 0 such as 0.6,1.0 (or empty for none)"),
    "theta0_temperatures": (lambda v: all(math.isfinite(x) and x > 0 for x in _floats(v)) if v else True,
                            "temperatures > 0 such as 0.2,0.4,0.6,0.8,1.0 (or empty for none)"),
    "min_lr": AT_LEAST_0, "weight_decay": AT_LEAST_0, "warmup_steps": AT_LEAST_0, "temperature": AT_LEAST_0,
    "ckpt_seconds": AT_LEAST_0, "ckpt_interval": AT_LEAST_0,
    "dropout": (_finite(lambda v: 0 <= v < 1), "a probability in [0, 1)"),
    "top_p": (_finite(lambda v: 0 < v <= 1), "a probability in (0, 1]"),
    "warmup_ratio": (_finite(lambda v: 0 <= v <= 1), "a share in [0, 1]"),
    "subset": (lambda v: 0 < v <= 100, "a percentage in (0, 100] (make data writes 25, 50 and 100)"),
    "inject_nan_step": STEP_OR_NEVER, "stop_at": STEP_OR_NEVER,
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
}


def validate(cfg):
    """Check every flag against RULES and the device against the machine; the first failure is a one-line
    error (exit 2) naming the flag, the value and what was expected."""
    for key, (ok, expected) in RULES.items():
        if key not in vars(cfg):
            continue
        value = getattr(cfg, key)
        try:
            good = bool(ok(value))
        except (ValueError, TypeError):  # e.g. a schedule with a word in it
            good = False
        if not good:
            die(f"--{key} {value!r}: expected {expected}")
    if "device" in vars(cfg):
        check_device(cfg.device)


def check_device(name):
    """The asked device exists here. --device cpu asks nothing of CUDA."""
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            die(f"--device {name}: CUDA is not available on this machine; use --device cpu (or auto)")
        index = int(name.split(":")[1]) if ":" in name else 0
        if index >= torch.cuda.device_count():
            die(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        die("--device mps: MPS (Apple GPU) is not available on this machine; use --device cpu (or auto)")


# settings that are this command's, never taken from a resumed run's checkpoint
PER_INVOCATION = ("resume", "overwrite", "stop_at", "debug")
# settings a resumed run cannot change: they define its model, its data and its place
FIXED_ON_RESUME = ("out_dir", "name", "preset", "init", "data_dir", "data", "subset", "tokenizer", "smoke")


def configure(defaults, kind, script, description=None, smoke=None, argv=None, help_from=()):
    """Everything before the work, the same way in every script: read the command line; --smoke runs go to
    <name>_smoke unless --name was given; on --resume, take the run's saved settings, with the flags typed
    now winning (and printed); shrink to smoke size; check every flag (RULES), the device and the run
    directory (no overwrite, no second process). Returns (cfg, the checkpoint to resume from or None).

    `smoke`: function cfg -> the settings that --smoke forces; `help_from`: more files whose comments
    beside defaults are --help text (the script's own are read anyway). Nothing is written here."""
    global DEBUG
    cfg, given = parse_config(defaults, argv, description, help_from=[script, *help_from])
    DEBUG = DEBUG or cfg.debug
    if not DEBUG:
        sys.excepthook = _one_line_excepthook
    if cfg.smoke and "name" not in given and not cfg.name.endswith("_smoke"):
        cfg.name += "_smoke"  # a smoke test never lands on the real run of the default name
    validate(SimpleNamespace(name=cfg.name, out_dir=cfg.out_dir))  # before the run directory is looked at
    ckpt = None
    if cfg.resume:
        if cfg.overwrite:
            die("--resume continues a run and --overwrite starts it afresh: pass one of them")
        ckpt = resume_checkpoint(run_path(cfg), kind, script)
        saved = {k: v for k, v in ckpt["config"].items() if k in defaults and k not in PER_INVOCATION}
        now = {k: getattr(cfg, k) for k in given}
        changed = {k: (saved[k], v) for k, v in now.items() if k in saved and saved[k] != v}
        for k in FIXED_ON_RESUME:
            if k in changed:
                die(f"--{k} cannot change on --resume (the run was made with {k}={changed[k][0]!r}); "
                    f"start a new run with another --name instead")
        cfg = SimpleNamespace(**{**defaults, **saved, **now, "resume": True})
        note = ", ".join(f"{k} {a!r} -> {b!r}" for k, (a, b) in changed.items() if k not in PER_INVOCATION)
        print(f"resuming {run_path(cfg)} at step {ckpt['step']} with its own settings"
              + (f", except as given now: {note}" if note else ""), flush=True)
    if cfg.smoke and smoke is not None:
        cfg.__dict__.update(smoke(cfg))
    validate(cfg)
    if os.environ.get("RANK", "0") == "0":  # under torchrun the main process alone owns the run directory
        _or_die(check_run_dir, run_path(cfg), cfg.resume, cfg.overwrite)
    _install_signal_handlers()
    return cfg, ckpt


def resume_checkpoint(run_dir, kind, script):
    """The checkpoint that --resume continues from, or a one-line reason why there is none."""
    path = run_dir / "ckpt.pt"
    if not path.exists():
        if not holds_run(run_dir):
            die(f"--resume: there is no run at {run_dir} (check --name and --out_dir)")
        die(f"--resume: {run_dir} was stopped before its first checkpoint; start it again with --overwrite "
            f"(the old one is moved aside)")
    try:
        ckpt = load_checkpoint(path)
    except (FileNotFoundError, RuntimeError) as e:
        die(f"--resume: {e}")
    if ckpt["kind"] != kind:
        die(f"--resume: {run_dir} holds a {ckpt['kind']} run, which {Path(script).name} does not continue")
    return ckpt


def resume_command(cfg):
    """The exact command that continues this run, with this very Python (.venv/bin/python under make)."""
    python = Path(sys.executable)
    python = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    where = [] if cfg.out_dir == RUNS_DIR else ["--out_dir", cfg.out_dir]
    return shlex.join([str(python), sys.argv[0], *where, "--name", cfg.name, "--resume"])


def print_config(cfg, title):
    print(f"{title}: " + " ".join(f"{k}={v}" for k, v in vars(cfg).items()), flush=True)


def _or_die(fn, *args):
    """Call a run-directory function; its RunDirError becomes the one-line error."""
    try:
        return fn(*args)
    except RunDirError as e:
        die(str(e))


def claim_run(cfg, main=True):
    """Make <out_dir>/<name>/ this process's (model/rundir.py: moved aside on --overwrite, locked), and
    arm Ctrl-C to save from now on. Other processes of a torchrun job leave the directory to the main one."""
    _STOP.started, _STOP.resume_cmd = True, resume_command(cfg)
    return _or_die(_claim_run, run_path(cfg), cfg.resume, cfg.overwrite) if main else run_path(cfg)


# ----------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM: finish the step, save, print the command that continues, exit 130

def _on_signal(signum, frame):
    name = signal.Signals(signum).name
    if not _STOP.started:  # nothing written yet: nothing to save
        print(f"\n{name}: stopped before the run started; nothing was written", file=sys.stderr, flush=True)
        sys.exit(EXIT_INTERRUPTED)
    if _STOP.signal is None:
        _STOP.signal = name
        print(f"\n{name}: stopping after this step, with a checkpoint (again: stop at once)", file=sys.stderr,
              flush=True)
        return
    print(f"\n{name} again: stopped at once; the last checkpoint is kept. Continue with: {_STOP.resume_cmd}",
          file=sys.stderr, flush=True)
    release_lock(_STOP.lock)
    os._exit(EXIT_INTERRUPTED)  # no unwinding through a half-done step


def _install_signal_handlers():
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def stop(what):
    """After the checkpoint: say what was saved and how to continue, exit 130."""
    print(f"\n{_STOP.signal}: {what}. Continue with: {_STOP.resume_cmd}", flush=True)
    sys.exit(EXIT_INTERRUPTED)


def halt(err, ckpt_path, cfg, lr_flag="lr"):
    """After a NaN halt was logged and the last good state saved: one line, exit 1."""
    die(f"{err}: the step was not applied and the last good state is saved in {ckpt_path}; continue, e.g. "
        f"with a lower learning rate: {resume_command(cfg)} --{lr_flag} {getattr(cfg, lr_flag) / 2:g}",
        status=EXIT_HALTED)
