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
import errno
import os
import re
import shlex
import signal
import sys
import traceback
from pathlib import Path
from types import SimpleNamespace

import torch

from model.checkpoint import load_latest, set_aside
from model.flags import PAIR_RULES, RULES
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
    """Anything unexpected still ends in one line, with where it happened; --debug shows the traceback. A
    file that could not be written (a full disk, a read-only directory) also says how to continue."""
    where = traceback.extract_tb(tb)[-1] if tb else None
    text = (str(value).strip().splitlines() or [""])[0]
    at = f" (at {Path(where.filename).name}:{where.lineno}; --debug shows the traceback)" if where else ""
    then = (f"; the last checkpoint is kept: once the disk is fixed, continue with: {_STOP.resume_cmd}"
            if isinstance(value, OSError) and _STOP.started and _STOP.resume_cmd else "")
    print(f"error: {kind.__name__}: {text}{at}{then}", file=sys.stderr, flush=True)


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


def check_rules(values, rules):
    """The first value of `values` ({flag: value}) that fails its rule in `rules` is a one-line error
    (exit 2) naming the flag, the value and what was expected."""
    for key, (ok, expected) in rules.items():
        if key not in values:
            continue
        try:
            good = bool(ok(values[key]))
        except (ValueError, TypeError):  # e.g. a schedule with a word in it
            good = False
        if not good:
            die(f"--{key} {values[key]!r}: expected {expected}")


def validate(cfg, rules=None):
    """Check every flag against RULES (with a script's own `rules` in their place), the pairs of flags
    against PAIR_RULES and the device against the machine; the first failure is a one-line error (exit 2)
    naming the flag, the value and what was expected."""
    check_rules(vars(cfg), {**RULES, **(rules or {})})
    for key, other, ok, expected in PAIR_RULES:
        if key in vars(cfg) and other in vars(cfg) and not ok(getattr(cfg, key), getattr(cfg, other)):
            die(f"--{key} {getattr(cfg, key)!r}: expected {expected} ({getattr(cfg, other)!r})")
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


def configure(defaults, kind, script, description=None, smoke=None, argv=None, help_from=(), rules=None):
    """Everything before the work, the same way in every script: read the command line; --smoke runs go to
    <name>_smoke unless --name was given; on --resume, take the run's saved settings, with the flags typed
    now winning (and printed); shrink to smoke size where nothing was typed; check every flag (RULES, and
    the script's own `rules`), the device and the run directory (no overwrite, no second process). Returns
    (cfg, the checkpoint to resume from or None).

    `smoke`: function cfg -> the smoke-size settings; a flag typed on the command line wins over them and
    is checked like any other (and on --resume the run's saved settings are already its smoke sizes).
    `help_from`: more files whose comments beside defaults are --help text (the script's own are read
    anyway). Nothing is written here."""
    global DEBUG
    cfg, given = parse_config(defaults, argv, description, help_from=[script, *help_from])
    DEBUG = DEBUG or cfg.debug
    if not DEBUG:
        sys.excepthook = _one_line_excepthook
    if cfg.smoke and "name" not in given and not cfg.name.endswith("_smoke"):
        cfg.name += "_smoke"  # a smoke test never lands on the real run of the default name
    validate(SimpleNamespace(name=cfg.name, out_dir=cfg.out_dir))  # before the run directory is looked at
    ckpt, saved = None, {}
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
    if cfg.smoke and smoke is not None:  # the smoke sizes where the user typed nothing (nor did the run)
        cfg.__dict__.update({k: v for k, v in smoke(cfg).items() if k not in given and k not in saved})
    validate(cfg, rules)
    if os.environ.get("RANK", "0") == "0":  # under torchrun the main process alone owns the run directory
        _or_die(check_run_dir, run_path(cfg), cfg.resume, cfg.overwrite)
    _install_signal_handlers()
    return cfg, ckpt


# an unreadable latest checkpoint that --resume passed over: set aside once the run is claimed
_PASSED_OVER = []


def resume_checkpoint(run_dir, kind, script):
    """The checkpoint that --resume continues from: ckpt.pt, or the previous one (ckpt.prev.pt) when the
    latest is missing or unreadable (said in one line); else a one-line reason why there is none."""
    path = run_dir / "ckpt.pt"
    try:
        ckpt, used, why = load_latest(path)
    except FileNotFoundError:
        if not holds_run(run_dir):
            die(f"--resume: there is no run at {run_dir} (check --name and --out_dir)")
        die(f"--resume: {run_dir} was stopped before its first checkpoint; start it again with --overwrite "
            f"(the old one is moved aside)")
    except RuntimeError as e:
        die(f"--resume: {e}; start the run again with --overwrite (the old one is moved aside)")
    if ckpt["kind"] != kind:
        die(f"--resume: {run_dir} holds a {ckpt['kind']} run, which {Path(script).name} does not continue")
    if used != path:
        print(f"--resume: {why}; continuing from the previous checkpoint, {used} (step {ckpt['step']})",
              file=sys.stderr, flush=True)
        _PASSED_OVER.append(path)
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
    if not main:
        return run_path(cfg)
    run_dir = _or_die(_claim_run, run_path(cfg), cfg.resume, cfg.overwrite)
    while _PASSED_OVER:  # the next save must not rotate it over the good previous checkpoint
        set_aside(_PASSED_OVER.pop())
    return run_dir


def write_failed(err, path, cfg):
    """A checkpoint could not be written (OSError: a full disk, a read-only directory, a quota): one line
    naming the file and the cause, and exit 1, as for a NaN halt: the run stopped on its way, with the
    previous checkpoint intact, and continues with --resume once the disk is fixed. (Exit 2 means the
    command itself was wrong, before anything was written.)"""
    cause = f"{err.strerror or err} ({errno.errorcode.get(err.errno, 'error')})" if err.errno else str(err)
    die(f"could not write the checkpoint {path}: {cause}; the previous checkpoint is intact: free some space "
        f"(or make {Path(path).parent} writable) and continue with: {resume_command(cfg)}", status=EXIT_HALTED)


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
