"""
Plumbing shared by train_sft.py, train_spin.py and train_tspin.py, written once: the command line and
its checks, the run directory (safe names, no overwrites, a lock), Ctrl-C, the device, checkpoints, the
NaN guard, the metrics log and the learning-rate schedules.
The training loops themselves stay in the scripts, where a reader can see them.

What a user gets wrong is answered before any work, in one line that names the flag or the file, with
exit status 2 and nothing written under runs/ (--debug, or TINYSPIN_DEBUG=1, shows full tracebacks).
"""

import argparse
import atexit
import json
import math
import os
import re
import shlex
import signal
import sys
import time
import traceback
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import torch

from model.data import TEMPLATES, atomic_write, read_json_lines
from model.gpt import GPT, GPTConfig

RUNS_DIR = "runs"  # where runs go, by default; every script's --out_dir

# flags every training script has beside its own; the comments are their --help text
RUN_DEFAULTS = dict(
    ckpt_seconds=60.0,           # save a resumable checkpoint after this many seconds of work (0 = by steps only)
    ckpt_interval=0,             # also save one every this many optimizer steps (0 = by time only)
    overwrite=False,             # move an existing run of this name aside (to <name>.old-<time>) and start afresh
    debug=False,                 # show full Python tracebacks instead of one-line errors (or TINYSPIN_DEBUG=1)
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
        check_run_dir(cfg)
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


def run_path(cfg):
    """<out_dir>/<name>: the only place that joins the two."""
    return Path(cfg.out_dir) / cfg.name


def resume_command(cfg):
    """The exact command that continues this run, with this very Python (.venv/bin/python under make)."""
    python = Path(sys.executable)
    python = python.relative_to(Path.cwd()) if python.is_relative_to(Path.cwd()) else python
    where = [] if cfg.out_dir == RUNS_DIR else ["--out_dir", cfg.out_dir]
    return shlex.join([str(python), sys.argv[0], *where, "--name", cfg.name, "--resume"])


def print_config(cfg, title):
    print(f"{title}: " + " ".join(f"{k}={v}" for k, v in vars(cfg).items()), flush=True)


# ----------------------------------------------------------------------------------------------------
# the run directory: never overwritten, never written by two processes

RUN_FILES = ("ckpt.pt", "metrics.jsonl", "summary.json")  # what makes a directory a run (not, say, a log)


def holds_run(run_dir):
    return any((Path(run_dir) / f).exists() for f in RUN_FILES)


def _lock_owner(run_dir):
    """The pid in <run>/.lock if that process is alive, else None (no lock, or a stale one)."""
    try:
        pid = int((Path(run_dir) / ".lock").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    try:
        os.kill(pid, 0)  # signal 0: only asks whether the process exists
    except ProcessLookupError:
        return None
    except PermissionError:  # exists, another user's
        return pid
    try:  # a zombie (killed, not yet reaped by its parent) is gone too
        return None if Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] == "Z" else pid
    except (OSError, IndexError):
        return pid


def check_run_dir(cfg):
    """Refuse, in one line, a run directory that another process is writing, or that holds a run this
    command would overwrite (without --resume or --overwrite). Reads only."""
    run_dir = run_path(cfg)
    pid = _lock_owner(run_dir)
    if pid is not None:
        die(f"{run_dir} is in use by another process (pid {pid}); wait for it to end or stop it first "
            f"(if no such run is going on, delete {run_dir / '.lock'})")
    if holds_run(run_dir) and not cfg.resume and not cfg.overwrite:
        die(f"{run_dir} already holds a run: pass --resume to continue it, or --overwrite to move it aside "
            f"and start afresh, or choose another --name")


def claim_run(cfg, main=True):
    """Make <out_dir>/<name>/ this process's: check it again, move an old run aside on --overwrite, create
    the directory and take its lock (<run>/.lock, holding our pid; removed at exit; a lock whose process is
    gone is taken over). Called once every input was read and checked, so a mistake creates nothing.
    Other processes of a torchrun job leave the directory to the main one."""
    run_dir = run_path(cfg)
    _STOP.started, _STOP.resume_cmd = True, resume_command(cfg)
    if not main:
        return run_dir
    check_run_dir(cfg)
    if cfg.overwrite and holds_run(run_dir):  # (a folder holding only, say, a launcher's log stays)
        aside = run_dir.with_name(f"{cfg.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            n += 1
            aside = run_dir.with_name(f"{cfg.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        run_dir.rename(aside)
        print(f"--overwrite: moved the old {run_dir} aside to {aside}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    lock = run_dir / ".lock"
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)  # atomic: one of two racers wins
        except FileExistsError:
            pid = _lock_owner(run_dir)
            if pid is not None:
                die(f"{run_dir} is in use by another process (pid {pid})")
            lock.unlink(missing_ok=True)  # stale: its process is gone (killed), take it over
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        break
    _STOP.lock = lock
    atexit.register(_release_lock)
    return run_dir


def _release_lock():
    lock = _STOP.lock
    try:
        if lock is not None and lock.read_text().split()[0] == str(os.getpid()):
            lock.unlink()
    except (OSError, IndexError):
        pass


# ----------------------------------------------------------------------------------------------------
# Ctrl-C and SIGTERM: finish the step, save, print the command that continues, exit 130

_STOP = SimpleNamespace(signal=None, started=False, lock=None, resume_cmd=None)


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
    _release_lock()
    os._exit(EXIT_INTERRUPTED)  # no unwinding through a half-done step


def _install_signal_handlers():
    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)


def stop_requested():
    """True once SIGINT or SIGTERM arrived: the loop saves a checkpoint at its next step and calls stop()."""
    return _STOP.signal is not None


def stop(what):
    """After the checkpoint: say what was saved and how to continue, exit 130."""
    print(f"\n{_STOP.signal}: {what}. Continue with: {_STOP.resume_cmd}", flush=True)
    sys.exit(EXIT_INTERRUPTED)


class CheckpointClock:
    """When to save a resumable checkpoint: every `interval` steps, or once `seconds` of work have passed
    since the last save, so that a kill -9 loses at most about that much (0 turns either off)."""

    def __init__(self, interval=0, seconds=60.0):
        self.interval, self.seconds, self.last = interval, seconds, time.time()

    def due(self, step):
        return bool((self.interval and step % self.interval == 0)
                    or (self.seconds and time.time() - self.last >= self.seconds) or stop_requested())

    def saved(self):
        self.last = time.time()


# ----------------------------------------------------------------------------------------------------
# device


def pick_device(name="auto"):
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    return torch.device(name)


def autocast(device):
    """bf16 autocast on CUDA (no grad scaler needed, unlike fp16); full fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


# ----------------------------------------------------------------------------------------------------
# checkpoints: written atomically, loaded with weights_only=True


def checkpoint_state(kind, model, cfg, tok, tok_path, step, nan_count, **extra):
    """The one checkpoint format, for all three scripts: weights, the model's shape, the run's settings,
    the tokenizer it was trained with (path and hash), the step, the NaN count, the RNG state, and what a
    script adds to resume exactly (the optimizer state, the iteration, tokens seen, log lines written)."""
    return {"kind": kind, "model": model.state_dict(), "model_config": model.config.to_dict(), "config": vars(cfg),
            "tokenizer": {"path": str(tok_path), "sha256": tok.sha256}, "step": step, "nan_count": nan_count,
            "rng": rng_state(), **extra}


def save_checkpoint(path, state):
    """torch.save through the atomic write: a run killed mid-write leaves the old checkpoint."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive
            raise RuntimeError(f"{path} is not a readable checkpoint (not a file written by torch.save)")
    try:
        # weights_only: a checkpoint from a stranger can hold tensors and plain data, never code
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"{path} is not a readable checkpoint ({first[:120]})") from None
    if not isinstance(ckpt, dict) or not {"kind", "model", "model_config", "config"} <= ckpt.keys():
        raise RuntimeError(f"{path} is not a checkpoint of this project (no kind/model/model_config/config)")
    return ckpt


def model_from_checkpoint(ckpt, tok, path="checkpoint"):
    """Build the GPT a checkpoint describes, refusing one made with another tokenizer or shape."""
    mcfg = GPTConfig(**ckpt["model_config"])
    saved_hash = ckpt.get("tokenizer", {}).get("sha256")
    if mcfg.vocab_size != tok.vocab_size or (saved_hash and saved_hash != tok.sha256):
        raise ValueError(
            f"{path} was trained with another tokenizer (vocab {mcfg.vocab_size}, hash {str(saved_hash)[:12]}) "
            f"than the one loaded now (vocab {tok.vocab_size}, hash {tok.sha256[:12]}); retrain, or pass --tokenizer "
            f"that the checkpoint was made with"
        )
    model = GPT(mcfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the model shape {mcfg}: {e}") from None
    return model


def rng_state():
    # is_initialized, not is_available: a CPU run never wakes CUDA up to save a state it does not use
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_initialized():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------
# the NaN guard: a NaN is a symptom to show, never a silent update


def nonfinite_culprit(loss, grad_norm, model, outputs=None):
    """None if the step is clean, else what went bad first: 'outputs' (the model's log-probs), 'loss',
    or 'grad:<param name>'.

    Only grad_norm is read in the clean case (one scalar), so the guard costs one sync per step."""
    if bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm)):
        return None
    if outputs is not None and not bool(torch.isfinite(outputs).all()):
        return "outputs"
    if not bool(torch.isfinite(loss)):
        return "loss"
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return f"grad:{name}"
    return "grad_norm"


def optimizer_step(loss, model, optimizer, guard, step, grad_clip, outputs=None):
    """The one update of every training loop: backward, clip the gradient norm, ask the NaN guard, and
    step only if everything is finite (a poisoned step is never applied). Returns (grad_norm, event):
    event is None for a clean step, else the guard's record of what went bad."""
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    event = guard.check(nonfinite_culprit(loss, grad_norm, model, outputs), step)  # NanHalt: nothing applied
    if event is None:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, event


class NanHalt(FloatingPointError):
    """The run must stop at a non-finite step; the step was not applied. `event` is its metrics record."""

    def __init__(self, event, why):
        self.event = event
        super().__init__(f"non-finite {event['nan_event']} at step {event['step']} ({why})")


class NanGuard:
    """Counts non-finite steps; the caller skips the optimizer step. policy 'halt' stops at the first,
    'skip' goes on, and any policy stops after max_consecutive bad steps in a row."""

    def __init__(self, policy="skip", max_consecutive=10):
        if policy not in ("skip", "halt"):
            raise ValueError(f"nan_policy must be 'skip' or 'halt', got {policy!r}")
        self.policy, self.max_consecutive = policy, max_consecutive
        self.count = self.consecutive = 0

    def check(self, culprit, step):
        """Returns an event dict when the step was bad (and raises NanHalt when the run must stop)."""
        if culprit is None:
            self.consecutive = 0
            return None
        self.count += 1
        self.consecutive += 1
        event = {"step": step, "nan_event": culprit, "nan_count": self.count}
        if self.policy == "halt" or self.consecutive >= self.max_consecutive:
            raise NanHalt(event, "nan_policy=halt" if self.policy == "halt" else
                          f"{self.consecutive} non-finite steps in a row")
        return event


def halt(err, ckpt_path, cfg, lr_flag="lr"):
    """After a NaN halt was logged and the last good state saved: one line, exit 1."""
    die(f"{err}: the step was not applied and the last good state is saved in {ckpt_path}; continue, e.g. "
        f"with a lower learning rate: {resume_command(cfg)} --{lr_flag} {getattr(cfg, lr_flag) / 2:g}",
        status=EXIT_HALTED)


# ----------------------------------------------------------------------------------------------------
# logging


class RunLog:
    """<run>/metrics.jsonl, one JSON object per line. On resume, the lines logged after the checkpoint
    (it records how many there were) are dropped, so the file reads as if the run had never been killed."""

    def __init__(self, run_dir, resume=None, enabled=True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled, self.lines = enabled, 0
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume is not None and self.path.exists():
            rows = read_json_lines(self.path, torn_tail_ok=True)
            if "log_lines" in resume:
                kept = rows[: resume["log_lines"]]
            else:  # a checkpoint from before log_lines was recorded
                kept = [r for r in rows if r.get("step", 0) <= resume["step"]]
        atomic_write(self.path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept).encode()))
        self.lines = len(kept)
        self.t0 = time.time()

    def log(self, **record):
        if not self.enabled:
            return
        record = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        record["time"] = round(time.time() - self.t0, 3)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.lines += 1


def read_metrics(run_dir):
    """A run's metrics.jsonl as a list of dicts; [] if there is none. A torn last line (a crash in
    mid-write) is dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    return read_json_lines(path, torn_tail_ok=True) if path.exists() else []


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


# ----------------------------------------------------------------------------------------------------
# learning-rate schedules


def lr_warmup_cosine(step, total, warmup, lr, min_lr):
    """Linear warmup, then cosine decay to min_lr (SFT, as nanoGPT)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_warmup_linear(step, total, warmup, lr):
    """Linear warmup, then linear decay to 0 (SPIN's schedule: transformers' 'linear')."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * max(0.0, (total - step) / max(1, total - warmup))
