"""
Runs an experiment's plan: each run is a training script started as a subprocess, exactly as a user runs
it, its console output to <out>/logs/<key>.log. Up to `jobs` runs go side by side, each with cores/jobs
threads, each once the runs it needs have finished. experiments/paper.py and experiments/regimes.py both
drive their plans through execute().

A run is a namespace with
  key      a unique name, also its log file's (s0/theta0 -> logs/s0_theta0.log)
  command  a function () -> argv after `python`: called at launch, so a run can read what the runs it
           needs wrote (the equal-compute SFT row reads T-SPIN's steps)
  needs    the keys of the runs it needs
  est      estimated seconds alone on the idle machine (for the ETA)
  done     True if finished before (its summary.json exists): skipped
  run_dir  its run directory; one that exists without being done was killed: it is started again with
           --overwrite (the scripts move the unfinished one aside, never delete it)
"""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from model.files import write_json

ROOT = Path(__file__).resolve().parents[1]


def launch(run, out, jobs):
    """Start one run in the background; returns (process, open log file)."""
    cmd = [sys.executable, *map(str, run.command())]
    if Path(run.run_dir).exists():
        cmd.append("--overwrite")
    log_path = Path(out) / "logs" / f"{run.key.replace('/', '_')}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // jobs))  # the jobs share the cores, not oversubscribe them
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"    $ {' '.join(Path(c).name if c.endswith('.py') else c for c in cmd[1:])}", flush=True)
    log = open(log_path, "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def execute(plan, out, jobs, describe=lambda run: run.key):
    """Runs what is not done yet, in plan order as far as the needs allow, up to `jobs` at a time. Keeps the
    wall time of every run and of the whole in <out>/wall_times.json, across resumed invocations. A failed
    run stops everything (the others are killed; they resume next time) with the end of its log."""
    times_path = Path(out) / "wall_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {"runs": {}, "elapsed_s": 0.0}
    times["jobs"] = jobs
    done = {r.key for r in plan if r.done}
    todo = [r for r in plan if not r.done]
    running, started, n = {}, time.time(), len(todo)
    estimated = spent = 0.0
    while todo or running:
        while len(running) < jobs:
            ready = next((r for r in todo if all(d in done for d in r.needs)), None)
            if ready is None:
                break
            todo.remove(ready)
            print(f"[{n - len(todo)}/{n}] {ready.key}: {describe(ready)}", flush=True)
            running[ready.key] = (ready, time.time(), *launch(ready, out, jobs))
        if not running:
            sys.exit(f"runs wait for runs that are not in the plan: {sorted(d for r in todo for d in r.needs)}")
        time.sleep(0.2)
        for key, (r, t0, proc, log) in list(running.items()):
            if proc.poll() is None:
                continue
            log.close()
            del running[key]
            if proc.returncode != 0:
                for _, _, other, _ in running.values():
                    other.kill()
                tail = "\n".join(Path(log.name).read_text().splitlines()[-30:])
                sys.exit(f"{r.key} failed (exit {proc.returncode}); the end of {log.name}:\n{tail}")
            wall = time.time() - t0
            done.add(key)
            times["runs"][key] = round(wall, 1)
            times["elapsed_s"] = round(times["elapsed_s"] + time.time() - started, 1)
            started = time.time()
            write_json(times_path, times)
            spent, estimated = spent + wall, estimated + r.est
            left = sum(x.est for x in todo + [v[0] for v in running.values()]) * spent / max(estimated, 1e-9) / jobs
            print(f"    {r.key} done in {wall:.0f} s (estimated {r.est:.0f} s alone); about {left / 60:.0f} min left",
                  flush=True)
    write_json(times_path, times)
