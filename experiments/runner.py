"""
Runs an experiment's plan. experiments/paper.py and experiments/regimes.py build their plan once (which runs,
what each needs, what each costs) and hand it to execute(); this module decides when each run starts and
experiments/launchers.py where (--launcher local, submitit-local or slurm). The launcher only places the
runs: the plan, the commands and so the results are the same wherever they run. This module owns the
order, one driver per output directory, stopping cleanly, the wall times and the launcher flags
(add_launcher_args, shared by both drivers).

A run is a namespace with
  key      a unique name, also its log file's (s0/theta0 -> logs/s0_theta0.log)
  command  a function () -> argv after `python`: called at launch, so a run can read what the runs it
           needs wrote (the equal-compute SFT row reads T-SPIN's steps)
  needs    the keys of the runs it needs
  est      estimated seconds alone on the idle machine (for the ETA and Slurm's time limits)
  done     True if finished before (its summary.json exists): never started or submitted again
  run_dir  its run directory; one that exists without being done was cut short: it is continued with
           --resume from its checkpoint (<run_dir>/ckpt.pt), or started again with --overwrite when it has
           none (the scripts move the unfinished one aside, never delete it). Same command, plus --resume:
           the settings a resumed run may not change (FIXED_ON_RESUME) are the saved ones.

Dependencies. Locally (local, submitit-local) the driver holds each run until the runs it needs are done,
then starts it, up to --jobs at a time. On Slurm the whole plan is queued at once with `afterok`
dependencies: a job waits in the queue until the jobs of its needs ended well, so `--detach` can submit
everything and leave, and a seed's runs start the moment its theta_0 is done, whatever the other seeds do.
Waves (submit a level of the plan, wait for all of it, submit the next) would need the driver alive for the
whole plan or a visit per level (three for make paper), and would hold every seed behind the slowest
theta_0. A job whose need failed is cancelled (kill-on-invalid-dep), not left pending; the next invocation
submits it again.

Stopping. Ctrl-C or SIGTERM on the driver, or a run that exits 130 (it was interrupted and saved a
checkpoint), stops the plan: every other run gets SIGTERM, saves a checkpoint and exits 130, and the driver
exits 130 saying to run the same command again, which continues every run where it stopped. A failed run
(any other exit status) stops the others the same way and exits 1 with the end of its log. Local runs die
with their driver, even on kill -9: each runs in its own process group with PR_SET_PDEATHSIG (Linux), so
the kernel sends it SIGTERM when the driver dies. Jobs of submitit-local and slurm outlive the driver by
design: a later invocation finds them (<out>/launcher.json) and waits for them instead of starting them
again. One driver per output directory: <out>/.driver.lock holds its pid; a second one is refused (exit
2), a lock whose process is gone is taken over.
"""

import argparse
import json
import os
import shlex
import signal
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

from experiments import launchers, slurm
from model.files import write_json
from model.rundir import RunDirError, lock_owner, release_lock, take_lock

EXIT_INTERRUPTED = 130
SLURM_POLL_S = 30  # between two looks at the queue (sacct): a cluster's scheduler is not a busy loop


def add_launcher_args(ap):
    """The launcher flags, the same in every driver. Returns the parser."""
    g = ap.add_argument_group("where the runs go (docs/cluster.md)")
    g.add_argument("--launcher", choices=("local", "submitit-local", "slurm"), default="local",
                   help="local: subprocesses here; submitit-local: submitit jobs here (the cluster path); "
                        "slurm: Slurm jobs")
    g.add_argument("--detach", action="store_true",
                   help="submit and exit (slurm, submitit-local); the same command again reports, submits what "
                        "is missing and writes the report once all runs are done")
    g.add_argument("--cpus_per_run", type=int, default=0,
                   help="cores (threads) per run (default: cores/--jobs here, 2 on slurm)")
    g.add_argument("--gpus_per_run", type=int, default=0, choices=(0, 1), help="1: every run on a GPU (--device cuda)")
    g.add_argument("--runs_per_gpu", type=int, default=1, help="runs sharing one GPU, with --gpus_per_run 1 (not measured)")
    g.add_argument("--partition", default="", help="slurm: the partition (default: the cluster's)")
    g.add_argument("--time_min", type=int, default=0,
                   help="slurm, submitit-local: a job's time limit (default: 2x its estimate + 10 min)")
    g.add_argument("--mem_gb", type=float, default=4.0, help="slurm: memory per run, in GB")
    g.add_argument("--array_parallelism", type=int, default=0,
                   help="slurm: >0 submits each level of the plan as a job array, this many at a time (0: one job per run)")
    g.add_argument("--slurm_extra", default="", type=_extra,
                   help="slurm: more sbatch options, key=value,... (e.g. account=abc,qos=low)")
    return ap


def _extra(text):
    try:
        slurm.parse_extra(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e)) from None
    return text


def options(args, jobs):
    """The launcher settings of a driver's parsed args (defaults where a flag is absent), checked."""
    defaults = vars(add_launcher_args(argparse.ArgumentParser()).parse_args([]))
    opts = SimpleNamespace(**{k: getattr(args, k, v) for k, v in defaults.items()}, jobs=jobs)
    opts.cpus_per_run = opts.cpus_per_run or (2 if opts.launcher == "slurm" else max(1, (os.cpu_count() or 1) // jobs))
    if opts.runs_per_gpu < 1 or jobs < 1:
        die("--runs_per_gpu and --jobs must be at least 1")
    if opts.detach and opts.launcher == "local":
        die("--detach needs --launcher submitit-local or slurm: local runs end with their driver")
    return opts


def die(msg, status=2):
    print(f"error: {msg}", file=sys.stderr, flush=True)
    sys.exit(status)


def print_launch(plan, args):
    """--plan with --launcher slurm: the sbatch file of every job that would be submitted."""
    opts = options(args, getattr(args, "jobs", 1))
    if opts.launcher != "slurm":
        return
    todo = [r for r in plan if not r.done]
    print(f"\nslurm: {len(todo)} run(s) to submit, afterok on their needs")
    for unit in slurm.units(todo, opts):
        after = sorted({f"<job of {d}>" for r in unit for d in r.needs if d in {t.key for t in todo}})
        print(f"\n# {' + '.join(r.key for r in unit)}")
        text = slurm.sbatch_text(opts, unit, after, folder=Path(args.out) / "submitit" / "%j")
        print("\n".join(ln for ln in text.splitlines() if ln.startswith(("#SBATCH", "export PYTHONPATH"))))


# ----------------------------------------------------------------------------------------------------
# one driver per output directory


@contextmanager
def driver_lock(out):
    """<out>/.driver.lock, the same kind of lock a run takes (model/rundir.py): this process's pid, created
    exclusively; a second driver is refused in one line (exit 2); a dead driver's lock is taken over."""
    lock = Path(out) / ".driver.lock"
    lock.parent.mkdir(parents=True, exist_ok=True)
    try:
        take_lock(lock)
    except RunDirError:
        die(f"{out} is being run by another driver (pid {lock_owner(lock)}); wait for it or stop it (if none is "
            f"running, delete {lock})")
    try:
        yield
    finally:
        release_lock(lock)


class Stop:
    """SIGINT and SIGTERM on the driver: noted here, acted on by the loop (stop the runs, exit 130)."""

    def __init__(self):
        self.why, self.count = None, 0
        self.old = {s: signal.signal(s, self.note) for s in (signal.SIGINT, signal.SIGTERM)}

    def note(self, signum, frame):
        self.why = self.why or f"{signal.Signals(signum).name} on the driver"
        self.count += 1

    def restore(self):
        for s, h in self.old.items():
            signal.signal(s, h)


def again():
    return shlex.join(sys.orig_argv)


# ----------------------------------------------------------------------------------------------------
# the plan, run


def execute(plan, out, jobs, describe=lambda run: run.key, launcher=None):
    """Runs (or submits) what is not done yet, as the launcher flags in `launcher` (a driver's parsed args;
    None: local) say. Returns True once every run of the plan is done (the driver then writes its report),
    False when runs were left running or queued (--detach). Exits 130 when stopped and 1 when a run failed:
    the same command again continues."""
    out = Path(out)
    opts = options(launcher, jobs)
    with driver_lock(out):
        state = launchers.read_state(out)
        others = [r.key for r in plan if not r.done and r.key in state["jobs"]]
        if state["launcher"] not in (None, opts.launcher) and others:
            die(f"{out}'s runs were submitted with --launcher {state['launcher']} ({out / 'launcher.json'}); "
                f"go on with it, or delete that file once none of its jobs runs")
        if opts.launcher == "slurm":
            return on_slurm(plan, out, opts, slurm.Slurm(out, opts))
        pool = (launchers.Local if opts.launcher == "local" else launchers.SubmititLocal)(out, opts)
        return schedule(plan, out, opts, pool, describe)


def read_times(out, jobs):
    path = Path(out) / "wall_times.json"
    times = json.loads(path.read_text()) if path.exists() else {"runs": {}, "elapsed_s": 0.0}
    return {**times, "jobs": jobs}


def gpu_slots(opts):
    """Local GPU placement: slot i of --jobs runs on GPU i // --runs_per_gpu; None: no GPU asked for."""
    if not opts.gpus_per_run:
        return None
    visible = [g for g in os.environ.get("CUDA_VISIBLE_DEVICES", "").split(",") if g.strip()]
    if not visible:
        import torch  # (the driver has it loaded already)

        visible = [str(i) for i in range(torch.cuda.device_count())]
    if not visible:
        die("--gpus_per_run 1: this machine has no GPU")
    return [visible[i // opts.runs_per_gpu] for i in range(min(opts.jobs, len(visible) * opts.runs_per_gpu))]


def schedule(plan, out, opts, pool, describe):
    """local and submitit-local: start what is ready, up to --jobs at a time, each once the runs it needs are
    done; wait; repeat. Keeps every run's wall time and the whole's in <out>/wall_times.json, across
    invocations."""
    times = read_times(out, opts.jobs)
    done = {r.key for r in plan if r.done}
    todo = [r for r in plan if not r.done]
    gpus = gpu_slots(opts)
    slots = list(range(len(gpus) if gpus else opts.jobs))
    running = adopt(pool, todo, slots)  # key -> (run, start time, slot)
    stop, n = Stop(), len(todo)
    book = SimpleNamespace(times=times, started=time.time(), spent=0.0, estimated=0.0)
    try:
        while todo or running:
            while slots and not stop.why:
                ready = next((r for r in todo if all(d in done for d in r.needs)), None)
                if ready is None:
                    break
                todo.remove(ready)
                slot = slots.pop(0)
                print(f"[{n - len(todo)}/{n}] {ready.key}: {describe(ready)}", flush=True)
                pool.start(ready, gpus[slot] if gpus else None)
                running[ready.key] = (ready, time.time(), slot)
            if stop.why:
                halt(pool, running, out, stop, f"stopped: {stop.why}")
            if not running:
                sys.exit(f"runs wait for runs that are not in the plan: {sorted(d for r in todo for d in r.needs)}")
            if opts.detach:
                pool.detach()
                print(f"detached: {len(running)} run(s) going on ({', '.join(running)}), {len(todo)} waiting for "
                      f"them. Run the same command again to go on (without --detach it waits for them, starts "
                      f"the rest and writes the report):\n    {again()}", flush=True)
                return False
            time.sleep(0.2)
            for key, (r, t0, slot) in list(running.items()):
                rc = pool.poll(key)
                if rc is None:
                    continue
                del running[key]
                if slot is not None:
                    slots.append(slot)
                if rc == EXIT_INTERRUPTED:
                    stop.why = stop.why or f"{key} was interrupted (exit 130)"
                    continue
                if rc != 0 or not (Path(r.run_dir) / "summary.json").exists():
                    halt(pool, running, out, stop, f"{key} failed (exit {rc}); the end of "
                         f"{launchers.log_path(out, key)}:\n{launchers.tail(out, key)}", status=1)
                done.add(key)
                record_done(book, out, r, t0, todo + [v[0] for v in running.values()], opts.jobs)
        if stop.why:
            halt(pool, running, out, stop, f"stopped: {stop.why}")
    finally:
        stop.restore()
    write_json(Path(out) / "wall_times.json", times)
    return True


def adopt(pool, todo, slots):
    """The jobs of an earlier invocation that are still going (submitit-local): waited for, not restarted."""
    running = {}
    for key in pool.adopt(todo):
        r = next(r for r in todo if r.key == key)
        todo.remove(r)
        running[key] = (r, time.time(), slots.pop(0) if slots else None)
        print(f"    {key}: still running from an earlier invocation (job {pool.state['jobs'][key]}), waiting for it",
              flush=True)
    return running


def record_done(book, out, r, t0, left_runs, jobs):
    """A run finished: its wall time into <out>/wall_times.json, and the time left, scaled by how the cost
    model has fared so far."""
    wall = launchers.read_footer(out, r.key)[1] or time.time() - t0
    book.times["runs"][r.key] = round(wall, 1)
    book.times["elapsed_s"] = round(book.times["elapsed_s"] + time.time() - book.started, 1)
    book.started = time.time()
    write_json(Path(out) / "wall_times.json", book.times)
    book.spent, book.estimated = book.spent + wall, book.estimated + r.est
    left = sum(x.est for x in left_runs) * book.spent / max(book.estimated, 1e-9) / jobs
    print(f"    {r.key} done in {wall:.0f} s (estimated {r.est:.0f} s alone); about {left / 60:.0f} min left",
          flush=True)


def halt(pool, running, out, stop, why, status=EXIT_INTERRUPTED, patience_s=300):
    """Stop every run still going (SIGTERM: each saves a checkpoint and exits 130), wait for them, say
    how to continue and exit with `status`. Ctrl-C again passes on again: the runs stop at once, each
    keeping its last checkpoint."""
    dirs = [r.run_dir for r, _, _ in running.values()]
    for key in running:
        pool.stop(key)
    t0, seen = time.time(), stop.count
    while running and time.time() - t0 < patience_s:
        if stop.count > seen:
            seen = stop.count
            for key in running:
                pool.stop(key)
        time.sleep(0.2)
        for key in [k for k in running if pool.poll(k) is not None]:
            del running[key]
    for d in dirs:  # a submitit-local job ends before its run has saved: wait for the run's own lock
        launchers.wait_unlocked(d, patience_s)
    if running:
        print(f"still running after {patience_s} s, left as they are: {', '.join(running)}", flush=True)
    if status == EXIT_INTERRUPTED:
        why += "; the runs saved a checkpoint"
    print(f"\n{why}\nThe same command again continues every run where it stopped:\n    {again()}",
          file=sys.stderr, flush=True)
    sys.exit(status)


# ----------------------------------------------------------------------------------------------------
# slurm: queue the plan, then watch it (or leave: --detach)


def on_slurm(plan, out, opts, slurm):
    """Submit what is neither done nor in the queue, with afterok dependencies; report where every run
    stands; with --detach leave, else look again every SLURM_POLL_S until every job has ended."""
    where = slurm.where(plan)
    report(where, out)
    submitted = slurm.submit(plan, where)
    if submitted:
        slurm.state.setdefault("submitted_at", time.time())
        launchers.write_state(out, slurm.state)
        print(f"submitted {len(submitted)} run(s); job ids in {out / 'launcher.json'}, logs in {out / 'logs'}",
              flush=True)
    if all(w == "done" for w in where.values()):
        return finish_times(plan, out, opts, slurm)
    if opts.detach:
        print(f"detached. The same command again says where the runs stand, submits what is missing and "
              f"writes the report once all are done:\n    {again()}", flush=True)
        return False
    stop = Stop()
    try:
        while True:
            for _ in range(SLURM_POLL_S * 5):
                if stop.why:
                    slurm.cancel([k for k, w in where.items() if w != "done"])
                    die(f"stopped: {stop.why}; the queued and running jobs were cancelled (the runs saved a "
                        f"checkpoint). The same command again submits them:\n    {again()}", EXIT_INTERRUPTED)
                time.sleep(0.2)
            now = slurm.where(plan)
            if now != where:
                report(now, out, changed=where)
                where = now
            if all(w == "done" for w in where.values()):
                return finish_times(plan, out, opts, slurm)
            if not any(w in ("queued", "running") for w in where.values()):
                status = 1 if "failed" in where.values() else EXIT_INTERRUPTED
                die(f"every job has ended, not every run is done. The same command again submits them:\n    "
                    f"{again()}", status)
    finally:
        stop.restore()


def report(where, out, changed=None):
    """Counts, and each failed run's log end; with `changed`, only the runs whose state changed."""
    counts = {s: sum(w == s for w in where.values()) for s in dict.fromkeys(where.values())}
    print("slurm: " + ", ".join(f"{v} {k}" for k, v in counts.items()), flush=True)
    for key, w in where.items():
        if changed is not None and changed.get(key) == w:
            continue
        if w in ("failed", "interrupted"):
            print(f"  {key} {w}; the end of {launchers.log_path(out, key)}:\n{launchers.tail(out, key, 15)}", flush=True)
        elif w in ("queued", "running") or changed is not None:
            print(f"  {key}: {w}", flush=True)


def finish_times(plan, out, opts, slurm):
    """All done: the wall times of the runs (from their logs) and of the whole (from the first submission)."""
    times = read_times(out, f"slurm, {opts.cpus_per_run} cores per run")
    for r in plan:
        wall = launchers.read_footer(out, r.key)[1]
        if wall is not None:
            times["runs"][r.key] = round(wall, 1)
    if "submitted_at" in slurm.state:
        times["elapsed_s"] = round(time.time() - slurm.state["submitted_at"], 1)
    write_json(Path(out) / "wall_times.json", times)
    return True

