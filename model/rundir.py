"""
A run's directory, <out_dir>/<name>/: never overwritten (an old run is moved aside, never deleted), never
written by two processes (a lock holding the owner's pid; a stale one is taken over), and the checkpoint
clock that decides when a resumable checkpoint is due (about every minute, or at once after Ctrl-C).

A problem is raised as RunDirError with a one-line message; the command-line layer (model/cli.py) turns it
into the one-line error and exit status.
"""

import atexit
import errno
import os
import signal
import time
from pathlib import Path
from types import SimpleNamespace

RUNS_DIR = "runs"  # where runs go, by default; every script's --out_dir
RUN_FILES = ("ckpt.pt", "ckpt.prev.pt", "metrics.jsonl", "summary.json")  # what makes a directory a run (not, say, a log)

# set by the signal handler (model/cli.py) when Ctrl-C or SIGTERM arrives: the loop saves and stops
STOP = SimpleNamespace(signal=None, started=False, lock=None, resume_cmd=None)


class RunDirError(RuntimeError):
    """The run directory cannot be used as asked; the message says why and what to do."""


def run_path(cfg):
    """<out_dir>/<name>: the only place that joins the two."""
    return Path(cfg.out_dir) / cfg.name


def holds_run(run_dir):
    return any((Path(run_dir) / f).exists() for f in RUN_FILES)


def lock_owner(lock):
    """The pid in the lock file `lock` if that process is alive, else None (no lock, or a stale one)."""
    try:
        pid = int(Path(lock).read_text().split()[0])
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


def check_run_dir(run_dir, resume, overwrite):
    """Refuse a run directory that another process is writing, or that holds a run this command would
    overwrite (without --resume or --overwrite). Reads only."""
    pid = lock_owner(Path(run_dir) / ".lock")
    if pid is not None:
        raise RunDirError(f"{run_dir} is in use by another process (pid {pid}); wait for it to end or stop it "
                          f"first (if no such run is going on, delete {Path(run_dir) / '.lock'})")
    if holds_run(run_dir) and not resume and not overwrite:
        raise RunDirError(f"{run_dir} already holds a run: pass --resume to continue it, or --overwrite to move "
                          f"it aside and start afresh, or choose another --name")


def take_lock(lock):
    """Create the lock file `lock` holding our pid (atomic: one of two racers wins; a lock whose process is
    gone is taken over); removed at exit. Raises RunDirError if a live process holds it."""
    while True:
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            pid = lock_owner(lock)
            if pid is not None:
                raise RunDirError(f"{Path(lock).parent} is in use by another process (pid {pid})") from None
            Path(lock).unlink(missing_ok=True)  # stale: its process is gone (killed), take it over
            continue
        os.write(fd, f"{os.getpid()}\n".encode())
        os.close(fd)
        atexit.register(release_lock, Path(lock))
        return Path(lock)


def release_lock(lock):
    try:
        if lock is not None and lock.read_text().split()[0] == str(os.getpid()):
            lock.unlink()
    except (OSError, IndexError):
        pass


def claim_run(run_dir, resume, overwrite):
    """Make run_dir this process's: check it again, move an old run aside on --overwrite, create the
    directory and take its lock. Called once every input was read and checked, so a mistake creates nothing."""
    run_dir = Path(run_dir)
    check_run_dir(run_dir, resume, overwrite)
    if overwrite and holds_run(run_dir):  # (a folder holding only, say, a launcher's log stays)
        aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}")
        n = 1
        while aside.exists():
            n += 1
            aside = run_dir.with_name(f"{run_dir.name}.old-{time.strftime('%Y%m%d-%H%M%S')}-{n}")
        run_dir.rename(aside)
        print(f"--overwrite: moved the old {run_dir} aside to {aside}", flush=True)
    run_dir.mkdir(parents=True, exist_ok=True)
    STOP.lock = take_lock(run_dir / ".lock")
    return run_dir


def stop_requested():
    """True once SIGINT or SIGTERM arrived: the loop saves a checkpoint at its next step and stops."""
    return STOP.signal is not None


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
# Fault injection for the tests, off unless the environment asks (docs/reference.md, "Reliability"). A run
# calls fault_point(label) at the moments a kill or a full disk must be survived: "y_gen" (the opponent's
# answers generated, not yet saved), "step:<kind>" (an optimizer step of fit_iteration done; kind tspin,
# spin or sft_baseline), "write:<file name>" (an atomic write about to start) and "rotate:<file name>"
# (a checkpoint's previous version moved aside, the new one not yet in place).
# TINYSPIN_KILL_AT=<label>:<n> kills the process with SIGKILL the n-th time `label` is reached;
# TINYSPIN_FULL_AT=<label>:<n> raises OSError(ENOSPC) there instead, as a full disk would.
_REACHED = {}


def fault_point(label):
    _REACHED[label] = n = _REACHED.get(label, 0) + 1
    if os.environ.get("TINYSPIN_KILL_AT") == f"{label}:{n}":
        os.kill(os.getpid(), signal.SIGKILL)
    if os.environ.get("TINYSPIN_FULL_AT") == f"{label}:{n}":
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
