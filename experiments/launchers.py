"""
Where and how a run starts; experiments/runner.py decides when. Three launchers place the same runs:

    local           each run a subprocess of the driver (the default; needs nothing beyond the project)
    submitit-local  each run a job of submitit's LocalExecutor on this machine: the cluster's code path,
                    what the tests use; its jobs outlive the driver, as a cluster's do
    slurm           each run a Slurm job (submitit's SlurmExecutor), the whole plan queued at once with
                    afterok dependencies (experiments/runner.py says why), or a job array per level

This module owns how a run is started wherever it goes (start_run: its command plus --resume or
--overwrite, threads and device, its log <out>/logs/<key>.log, and dying with its parent), what a submitit
job runs (run_job), the state file <out>/launcher.json (job ids per run key) and the sbatch parameters.
It imports nothing heavy (no torch, submitit only when a submitit launcher is used): a job unpickles it
before its run starts.
"""

import atexit
import ctypes
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

from model.files import write_json
from model.rundir import lock_owner

ROOT = Path(__file__).resolve().parents[1]
FOOTER = "[launcher] exit status "  # the last line a launcher appends to a run's log: "<rc> after <s> s"


# ----------------------------------------------------------------------------------------------------
# one run, started as a user starts it


def log_path(out, key):
    return Path(out) / "logs" / f"{key.replace('/', '_')}.log"


def resume_flag(run_dir):
    """[] for a fresh run; a run cut short (its directory exists, no summary.json) is continued with
    --resume from its checkpoint, or started again with --overwrite when it has none (the scripts move
    the unfinished one aside)."""
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return []
    return ["--resume"] if (run_dir / "ckpt.pt").exists() else ["--overwrite"]


def argv_for(run, device=None):
    """The run's command (the same on every invocation, so that --resume keeps the saved settings that
    may not change) plus its device and --resume or --overwrite. `run.command` is the argv or a function
    returning it, called now: a run may read what the runs it needs wrote."""
    cmd = run.command() if callable(run.command) else run.command
    return [*map(str, cmd), *(["--device", device] if device else []), *resume_flag(run.run_dir)]


def _prctl_pdeathsig(sig):
    """Linux: deliver `sig` to this process when its parent dies (prctl PR_SET_PDEATHSIG); elsewhere
    nothing."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None, use_errno=True).prctl(1, int(sig))  # 1 = PR_SET_PDEATHSIG


def _die_with(parent):
    """preexec_fn of a run: SIGTERM when its parent dies, even by kill -9 (the scripts save a checkpoint
    and exit 130 on SIGTERM); if the parent is gone already, at once."""
    def preexec():
        _prctl_pdeathsig(signal.SIGTERM)
        if os.getppid() != parent:
            os.kill(os.getpid(), signal.SIGTERM)
    return preexec


def wait_unlocked(run_dir, patience_s=120):
    """A run stopped a moment ago (its driver died) may still be saving its checkpoint: wait for its lock."""
    t0 = time.time()
    while (pid := lock_owner(Path(run_dir) / ".lock")) and time.time() - t0 < patience_s:
        if time.time() - t0 < 0.5:
            print(f"    waiting for pid {pid}, still in {run_dir} (a stopped run saving its checkpoint)", flush=True)
        time.sleep(0.5)


def start_run(run, out, env, device=None):
    """Start one run in the background: `python <script> <flags>` in its own session (Ctrl-C on the
    driver's terminal reaches the driver only), SIGTERM to it when this process dies, its console output
    to <out>/logs/<key>.log (appended to when it continues a run cut short). `env`: variables set on top
    of this process's. Returns the Popen."""
    wait_unlocked(run.run_dir)
    argv = [sys.executable, *argv_for(run, device)]
    log = log_path(out, run.key)
    log.parent.mkdir(parents=True, exist_ok=True)
    print(f"    $ {' '.join(Path(c).name if c.endswith('.py') else c for c in argv[1:])}", flush=True)
    with open(log, "a" if argv[-1] == "--resume" else "w") as f:
        return subprocess.Popen(argv, env={**os.environ, **env}, stdout=f, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=_die_with(os.getpid()))


def run_env(opts, gpu=None):
    """The variables a run gets: its threads (torch reads OMP_NUM_THREADS), the project on PYTHONPATH, and
    with a GPU of its own (local launchers) CUDA_VISIBLE_DEVICES."""
    threads = str(opts.cpus_per_run)
    env = {"OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return {**env, "CUDA_VISIBLE_DEVICES": str(gpu)} if gpu is not None else env


def write_footer(out, key, rc, wall):
    log_path(out, key).parent.mkdir(parents=True, exist_ok=True)
    with open(log_path(out, key), "a") as f:
        f.write(f"\n{FOOTER}{rc} after {wall:.1f} s\n")


def read_footer(out, key):
    """(exit status, wall seconds) from the run's log, or (None, None) if it ended without one."""
    try:
        last = log_path(out, key).read_text(errors="replace").rstrip().splitlines()[-1]
    except (OSError, IndexError):
        return None, None
    if not last.startswith(FOOTER):
        return None, None
    rc, _, wall, _ = last[len(FOOTER):].split()
    return int(rc), float(wall)


def tail(out, key, n=30):
    try:
        return "\n".join(log_path(out, key).read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return "(no log)"


# ----------------------------------------------------------------------------------------------------
# what a submitit job runs


def run_job(specs, out, env, device=None):
    """A submitit job: its run(s) side by side (several share a GPU with --runs_per_gpu), each started as
    the local launcher starts it, each followed by a footer with its exit status in its log. It ignores
    SIGINT and dies with its parent (submitit-local's controller, Slurm's step daemon): its runs then get
    SIGTERM, save and exit 130. A timeout's signal (submitit's USR2) ends the wait: the runs are asked to
    save (SIGTERM) and waited for. Raises unless every run finished, so that afterok holds what needs it."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _prctl_pdeathsig(signal.SIGKILL)
    live = [(s, start_run(s, out, env, device), time.time()) for s in specs
            if not (Path(s.run_dir) / "summary.json").exists()]
    try:
        while any(p.poll() is None for _, p, _ in live):
            time.sleep(1)
    finally:
        for _, p, _ in live:
            if p.poll() is None:
                p.terminate()
        for s, p, t0 in live:
            try:
                p.wait(timeout=300)
            except subprocess.TimeoutExpired:
                p.kill()
            write_footer(out, s.key, p.wait(), time.time() - t0)
    bad = [f"{s.key} (exit {p.returncode})" for s, p, _ in live if p.returncode != 0]
    if bad:
        raise RuntimeError(f"not finished: {', '.join(bad)}; the end of each log in {Path(out) / 'logs'}")
    return 0


# ----------------------------------------------------------------------------------------------------
# the state file: job ids per run key, so that a later invocation finds its jobs


def read_state(out):
    path = Path(out) / "launcher.json"
    return json.loads(path.read_text()) if path.exists() else {"launcher": None, "jobs": {}}


def write_state(out, state):
    write_json(Path(out) / "launcher.json", state)


# ----------------------------------------------------------------------------------------------------
# local: subprocesses of the driver


class Local:
    """--launcher local: every run a child of the driver, in its own process group; the groups get SIGTERM
    when the driver stops or exits (atexit), and each run gets it from the kernel if the driver is killed
    (PDEATHSIG)."""

    name = "local"

    def __init__(self, out, opts):
        self.out, self.opts, self.live = Path(out), opts, {}
        atexit.register(self.stop_all)

    def adopt(self, todo):
        return {}

    def start(self, run, gpu=None):
        p = start_run(run, self.out, run_env(self.opts, gpu), "cuda" if gpu is not None else None)
        self.live[run.key] = (p, time.time())
        return run.key

    def poll(self, key):
        p, t0 = self.live[key]
        if p.poll() is None:
            return None
        del self.live[key]
        write_footer(self.out, key, p.returncode, time.time() - t0)
        return p.returncode

    def stop(self, key):
        try:
            os.killpg(self.live[key][0].pid, signal.SIGTERM)
        except (KeyError, ProcessLookupError, PermissionError):
            pass

    def stop_all(self):
        for key in list(self.live):
            self.stop(key)


# ----------------------------------------------------------------------------------------------------
# submitit-local: jobs of submitit's LocalExecutor, on this machine


def _is_controller(pid):
    """pid is alive and is a submitit-local job controller (not a recycled pid)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        alive = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False
    return alive and b"submitit.local._local" in cmd


def job_minutes(opts, runs):
    """A job's time limit: --time_min, else from the plan's cost model: twice the longest run's estimate
    (seconds alone on 2 cores; a loaded node or a resumed run may take longer) plus 10 minutes."""
    return opts.time_min or math.ceil(2 * max(r.est for r in runs) / 60) + 10


class SubmititLocal:
    """--launcher submitit-local: each run a job of submitit's LocalExecutor, which would start every job at
    once with a 2-minute timeout: the driver submits at most --jobs at a time and sets the timeout from
    the cost model. The jobs outlive the driver (like a cluster's); a later driver adopts the live ones
    (their ids are in <out>/launcher.json) instead of submitting them again."""

    name = "submitit-local"

    def __init__(self, out, opts):
        import submitit

        self.out, self.opts, self.jobs = Path(out), opts, {}
        self.executor = submitit.LocalExecutor(folder=self.out / "submitit" / "%j")
        self.state = read_state(out)
        self.state.update(launcher=self.name)

    def adopt(self, todo):
        """{key: job} of the runs whose job from an earlier invocation is still going on."""
        found = {r.key: self.state["jobs"][r.key] for r in todo
                 if r.key in self.state["jobs"] and _is_controller(int(self.state["jobs"][r.key]))}
        self.jobs.update({k: SimpleNamespace(job_id=v, adopted=True) for k, v in found.items()})
        return found

    def start(self, run, gpu=None):
        self.executor.update_parameters(timeout_min=job_minutes(self.opts, [run]))
        spec = SimpleNamespace(key=run.key, run_dir=run.run_dir, command=list(map(str, run.command())))
        job = self.executor.submit(run_job, [spec], self.out, run_env(self.opts, gpu), "cuda" if gpu is not None else None)
        self.jobs[run.key] = job
        print(f"    job {job.job_id}, its output in {log_path(self.out, run.key)}", flush=True)
        self.state["jobs"][run.key] = job.job_id
        write_state(self.out, self.state)
        return run.key

    def poll(self, key):
        job = self.jobs[key]
        going = _is_controller(int(job.job_id)) if getattr(job, "adopted", False) else not job.done()
        if going:
            return None
        del self.jobs[key]
        rc, _ = read_footer(self.out, key)
        return -1 if rc is None else rc  # no footer: the job was killed before its run ended

    def stop(self, key):
        """SIGKILL to the job's controller: the job dies with it, and its run gets SIGTERM from the kernel
        (saves, exits 130): one signal, whatever else the terminal's Ctrl-C already sent."""
        try:
            os.kill(int(self.jobs[key].job_id), signal.SIGKILL)
        except (KeyError, ProcessLookupError):
            pass

    def stop_all(self):
        for key in list(self.jobs):
            self.stop(key)

    def detach(self):
        """Leave the submitted jobs running; a later invocation adopts them."""
