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
from functools import partial
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
from experiments.runner import add_launcher_args, execute, print_launch
from model.rundir import RUNS_DIR

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenario", default="plateau", choices=list(SCENARIOS),
                    help="plateau: theta_0 = SFT on 100%% (the paper); scarce: on 25%%; undertrained: stopped "
                         "early; template: self-play and eval in another prompt template")
    ap.add_argument("--seeds", default="", help="comma-separated (default 0,1,2; 0 with --smoke)")
    ap.add_argument("--iters", type=int, default=5, help="self-play iterations (the paper's 0..4)")
    ap.add_argument("--selfplay_epochs", type=int, default=SELFPLAY_EPOCHS, help="epochs per self-play iteration")
    ap.add_argument("--theta0_steps", type=int, default=0, help="SFT steps of theta_0 (default: the scenario's)")
    ap.add_argument("--eval_every", type=int, default=EVAL_EVERY, help="evaluate on every n-th eval prompt (1: all)")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, each with cores/jobs threads")
    ap.add_argument("--data_dir", default="data/generated", help="made by `make data`")
    ap.add_argument("--out", default="", help=f"default {RUNS_DIR}/paper, {RUNS_DIR}/paper_smoke with --smoke")
    ap.add_argument("--smoke", action="store_true", help="every script with --smoke, 1 seed (seconds per run)")
    ap.add_argument("--plan", action="store_true", help="print the runs and the time estimate, run nothing")
    args = add_launcher_args(ap).parse_args(argv)
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.smoke else "0,1,2")).split(",")]
    args.theta0_steps = args.theta0_steps or THETA0_STEPS[args.scenario]
    # smoke runs get their own folder: a finished smoke run must never be taken for a full one
    args.out = Path(args.out or Path(RUNS_DIR) / ("paper_smoke" if args.smoke else "paper")).resolve()
    args.data_dir = Path(args.data_dir).resolve()
    return args


def schedule(args, plan):
    """The plan as experiments/runner.py runs it: ready runs start longest first (PRIORITY), so that the
    short ones fill the gaps at the end."""
    for r in plan:
        r.key, r.run_dir = f"s{r.seed}/{r.method}", run_dir(args.out, r.seed, r.method)
        r.needs = [f"s{r.seed}/{d}" for d in NEEDS[r.method]]
        r.command = partial(lambda seed, method: [ROOT / RUNS[method][0], *flags(args, seed, method)], r.seed, r.method)
    return sorted(plan, key=lambda r: (PRIORITY.index(r.method), r.seed))


def main(argv=None):
    args = parse_args(argv)
    plan = make_plan(args)
    print_plan(args, plan)
    if args.plan:
        return print_launch(schedule(args, plan), args)
    write_eval(args)
    if execute(schedule(args, plan), args.out, args.jobs, describe=lambda r: describe(args, r.method), launcher=args):
        report.write(args.out, args.seeds)


if __name__ == "__main__":
    main()
