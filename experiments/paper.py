"""
The T-SPIN paper's experiment (Wang et al., NeurIPS 2025) at 1M-parameter scale, over several seeds.

This driver runs the plan of experiments/plan.py: train_sft.py, train_spin.py and train_tspin.py as
subprocesses, exactly as a user runs them, each into <out>/s<seed>/<method>/ (--out_dir <out>/s<seed>
--name <method>), its console output into <out>/logs/. Then experiments/report.py reads the finished runs
and writes <out>/report.md, <out>/summary.json and <out>/*.png.

    python -m experiments.paper                       # the full run: `make paper`
    python -m experiments.paper --plan                # print the runs and the time estimate, run nothing
    python -m experiments.paper --smoke               # the same path at smoke size: `make paper SMOKE=1`
    python -m experiments.paper --scenario scarce     # theta_0 = SFT on the 25% subset instead of 100%
    python -m experiments.paper --selfplay_epochs 2   # the paper's 2 epochs per iteration (over budget)
    python -m experiments.paper --eval_every 1        # every run on the whole eval split (over budget)
    python -m experiments.paper --jobs 1              # one run at a time, with every core
    python -m experiments.report runs/paper           # re-write the report from the finished runs

A run whose summary.json exists is skipped, so a killed `make paper` resumes by running it again. Runs
that do not depend on each other (the seeds, the methods of a seed) go side by side, --jobs at a time,
each with cores/jobs threads.
"""

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from experiments import report
from experiments.plan import (
    EVAL_EVERY,
    NEEDS,
    PRIORITY,
    RUNS,
    SCENARIOS,
    SELFPLAY_EPOCHS,
    THETA0_STEPS,
    describe,
    flags,
    make_plan,
    print_plan,
    run_dir,
    write_eval,
)
from model.train_utils import RUNS_DIR, write_json

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="plateau", choices=list(SCENARIOS),
                    help="plateau: theta_0 = SFT on 100%% (the paper); scarce: theta_0 = SFT on 25%%")
    ap.add_argument("--seeds", default="", help="comma-separated (default 0,1,2; 0 with --smoke)")
    ap.add_argument("--iters", type=int, default=5, help="self-play iterations (the paper's 0..4)")
    ap.add_argument("--selfplay_epochs", type=int, default=SELFPLAY_EPOCHS, help="epochs per self-play iteration")
    ap.add_argument("--theta0_steps", type=int, default=0, help="SFT steps of theta_0 (default: the scenario's)")
    ap.add_argument("--eval_every", type=int, default=EVAL_EVERY, help="evaluate on every n-th eval prompt (1: all)")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, each with cores/jobs threads")
    ap.add_argument("--data_dir", default="data/generated")
    ap.add_argument("--out", default="", help=f"default {RUNS_DIR}/paper, {RUNS_DIR}/paper_smoke with --smoke")
    ap.add_argument("--smoke", action="store_true", help="every script with --smoke, 1 seed (seconds per run)")
    ap.add_argument("--plan", action="store_true", help="print the runs and the time estimate, run nothing")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.smoke else "0,1,2")).split(",")]
    args.theta0_steps = args.theta0_steps or THETA0_STEPS[args.scenario]
    # smoke runs get their own folder: a finished smoke run must never be taken for a full one
    args.out = Path(args.out or Path(RUNS_DIR) / ("paper_smoke" if args.smoke else "paper")).resolve()
    args.data_dir = Path(args.data_dir).resolve()
    return args


def launch(args, seed, method):
    """Start one run in the background, its console output to a log file; returns (process, log file)."""
    cmd = [sys.executable, str(ROOT / RUNS[method][0]), *map(str, flags(args, seed, method))]
    if run_dir(args.out, seed, method).exists():  # a run killed before its summary.json: start it afresh
        cmd.append("--overwrite")                # (the scripts move the unfinished one aside, never delete)
    log_path = args.out / "logs" / f"s{seed}_{method}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))  # the jobs share the cores, not oversubscribe them
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"    $ {' '.join(cmd[1:])}", flush=True)
    log = open(log_path, "w")
    return subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def execute(args, plan):
    """Runs what is not done yet, up to --jobs at a time, each once what it needs is done. Keeps the wall
    time of every run and of the whole in <out>/wall_times.json, across resumed invocations."""
    times_path = args.out / "wall_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {"runs": {}, "elapsed_s": 0.0}
    times["jobs"] = args.jobs
    done = {(r.seed, r.method) for r in plan if r.done}
    todo = sorted((r for r in plan if not r.done), key=lambda r: (PRIORITY.index(r.method), r.seed))
    running, started, n = {}, time.time(), len(todo)
    estimated = spent = 0.0
    while todo or running:
        while len(running) < args.jobs:
            ready = next((r for r in todo if all((r.seed, d) in done for d in NEEDS[r.method])), None)
            if ready is None:
                break
            todo.remove(ready)
            print(f"[{n - len(todo)}/{n}] seed {ready.seed} {ready.method}: {describe(args, ready.method)}", flush=True)
            running[(ready.seed, ready.method)] = (ready, time.time(), *launch(args, ready.seed, ready.method))
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
                sys.exit(f"{RUNS[r.method][0]} failed (exit {proc.returncode}); the end of {log.name}:\n{tail}")
            wall = time.time() - t0
            done.add(key)
            times["runs"][f"s{r.seed}/{r.method}"] = round(wall, 1)
            times["elapsed_s"] = round(times["elapsed_s"] + time.time() - started, 1)
            started = time.time()
            write_json(times_path, times)
            spent, estimated = spent + wall, estimated + r.est
            left = sum(x.est for x in todo + [v[0] for v in running.values()]) * spent / estimated / args.jobs
            print(f"    seed {r.seed} {r.method} done in {wall:.0f} s (estimated {r.est:.0f} s alone); "
                  f"about {left / 60:.0f} min left", flush=True)
    write_json(times_path, times)


def main(argv=None):
    args = parse_args(argv)
    plan = make_plan(args)
    print_plan(args, plan)
    if args.plan:
        return
    write_eval(args)
    execute(args, plan)
    report.write(args.out, args.seeds)


if __name__ == "__main__":
    main()
