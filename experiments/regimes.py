"""
When does self-play help a tiny model? The regime map: every scenario of experiments/plan.py (how theta_0
was made) x {continued SFT, SPIN, T-SPIN} at the settings of plan.REGIMES_GRID, over 3-4 seeds
(plan.REGIMES_SEEDS), every run evaluated greedy and sampled (K = 4 at 0.6 and 1.0) on all eval and val
prompts. After which iteration to stop (and the setting, where a grid has several) is chosen on the
validation split; the numbers reported are on the eval split, compared prompt by prompt (model/stats.py).

    python -m experiments.regimes                 # the full map: `make regimes` (--plan says how long)
    python -m experiments.regimes --plan          # print the runs and the time estimate, run nothing
    python -m experiments.regimes --smoke         # a small map at smoke size: `make regimes SMOKE=1`
    python -m experiments.regimes --scenarios plateau,template --seeds 0
    python -m experiments.regimes_report runs/regimes   # re-write the report from the finished runs

Resumable: a run whose summary.json exists is skipped, so a map cut short (a killed process, the end of a
session) continues where it stopped when started again. Runs go --jobs at a time (experiments/runner.py).

Layout: <out>/s<seed>/theta0_<scenario>/ (the template scenario starts from plateau's theta_0, it trains
none of its own) and <out>/s<seed>/<scenario>/<setting>/. The continued-SFT rows are the equal-compute
baseline built into the T-SPIN run of each scenario (--baseline_lr as the grid says): continued SFT from the
same theta_0 on the same prompts and real answers, for the same optimizer steps and examples. That run also
finds theta_0's best sampling temperature on val (the free alternative to any sampled gain).
"""

import argparse
from functools import partial
from pathlib import Path
from types import SimpleNamespace

from experiments import regimes_report
from experiments.plan import (
    PARALLEL_GAIN,
    REGIMES_EPOCHS,
    REGIMES_GRID,
    REGIMES_ITERS,
    REGIMES_SAMPLING,
    REGIMES_SEEDS,
    SCENARIOS,
    SCRIPT,
    SETTINGS,
    SMOKE_SCENARIOS,
    THETA0_STEPS,
    regimes_estimate_s,
    theta0_of,
)
from experiments.runner import add_launcher_args, execute, print_launch
from model.files import read_jsonl
from model.rundir import RUNS_DIR

ROOT = Path(__file__).resolve().parents[1]

def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--scenarios", default="", help=f"comma-separated, of {', '.join(SCENARIOS)} (default: all; "
                                                    f"{','.join(SMOKE_SCENARIOS)} with --smoke)")
    ap.add_argument("--seeds", default="", help="comma-separated, for every scenario (default: plan.REGIMES_SEEDS, "
                                                "4 in plateau and template, 3 elsewhere; 0 with --smoke)")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, each with cores/jobs threads")
    ap.add_argument("--data_dir", default="data/generated", help="made by `make data`")
    ap.add_argument("--out", default="", help=f"default {RUNS_DIR}/regimes, {RUNS_DIR}/regimes_smoke with --smoke")
    ap.add_argument("--smoke", action="store_true", help="every script with --smoke, a few settings (a minute)")
    ap.add_argument("--plan", action="store_true", help="print the runs and the time estimate, run nothing")
    args = add_launcher_args(ap).parse_args(argv)
    args.scenarios = args.scenarios.split(",") if args.scenarios else list(
        SMOKE_SCENARIOS if args.smoke else SCENARIOS)
    bad = [s for s in args.scenarios if s not in SCENARIOS]
    if bad:
        ap.error(f"--scenarios: unknown {bad}; expected some of {', '.join(SCENARIOS)}")
    given = [int(s) for s in args.seeds.split(",")] if args.seeds else [0] if args.smoke else None
    # the seeds of each scenario; a scenario's theta_0 serves the scenarios that start from it, so it gets theirs
    args.seeds = {s: given or list(range(REGIMES_SEEDS[s])) for s in args.scenarios}
    for s in args.scenarios:
        args.seeds.setdefault(theta0_of(s), [])
        args.seeds[theta0_of(s)] = sorted(set(args.seeds[theta0_of(s)]) | set(args.seeds[s]))
    args.out = Path(args.out or Path(RUNS_DIR) / ("regimes_smoke" if args.smoke else "regimes")).resolve()
    args.data_dir = Path(args.data_dir).resolve()
    args.eval_data = args.data_dir / "eval.jsonl"
    return args


def theta0_dir(args, seed, scenario):
    return args.out / f"s{seed}" / f"theta0_{theta0_of(scenario)}"


def run_dir(out, seed, scenario, setting):
    return Path(out) / f"s{seed}" / scenario / setting


def theta0_command(args, seed, scenario):
    spec = SCENARIOS[scenario]
    return [ROOT / "train_sft.py", "--out_dir", args.out / f"s{seed}", "--name", f"theta0_{scenario}", "--seed", seed,
            "--data_dir", args.data_dir, "--eval_data", args.eval_data, "--subset", spec["theta0_subset"],
            *(["--smoke"] if args.smoke else ["--max_steps", THETA0_STEPS[scenario]])]  # smoke: the script's size


def selfplay_command(args, seed, scenario, setting):
    method, flags_of_setting = SETTINGS[setting]
    extra = REGIMES_GRID[scenario][setting]  # the baseline's lr where this run carries the baseline
    carrier = "baseline_lr" in extra  # it also finds theta_0's best temperature (once per scenario and seed)
    flags = dict(out_dir=args.out / f"s{seed}" / scenario, name=setting, seed=seed, data_dir=args.data_dir,
                 eval_data=args.eval_data, init=theta0_dir(args, seed, scenario) / "ckpt.pt", subset=25,
                 iters=REGIMES_ITERS, epochs=REGIMES_EPOCHS, template=SCENARIOS[scenario]["template"],
                 baseline=carrier, **flags_of_setting, **extra, **REGIMES_SAMPLING,
                 **({} if carrier else dict(theta0_temperatures="")))
    argv = [ROOT / SCRIPT[method]]
    for k, v in flags.items():
        argv += [f"--{k}"] if v is True else [f"--{k}", str(v).lower() if v is False else v]
    return argv + (["--smoke"] if args.smoke else [])


def make_plan(args):
    """Every run of the map, theta_0s first (the longest), then scenario by scenario."""
    args.sizes = [len(read_jsonl(args.data_dir / f)) for f in ("train_25.jsonl", "eval.jsonl", "val.jsonl")]
    plan = []
    for scenario in dict.fromkeys(theta0_of(s) for s in args.scenarios):
        for seed in args.seeds[scenario]:
            d = theta0_dir(args, seed, scenario)
            plan.append(SimpleNamespace(key=f"s{seed}/theta0_{scenario}", run_dir=d, needs=[],
                                        done=(d / "summary.json").exists(), est=regimes_estimate_s(args, "theta0", scenario=scenario),
                                        command=partial(theta0_command, args, seed, scenario),
                                        what=f"theta_0 of {scenario}: SFT on {SCENARIOS[scenario]['theta0_subset']}%, "
                                             f"{THETA0_STEPS[scenario]} steps"))
    for scenario in args.scenarios:
        for seed in args.seeds[scenario]:
            for setting, extra in REGIMES_GRID[scenario].items():
                d = run_dir(args.out, seed, scenario, setting)
                method, flags = SETTINGS[setting]
                plan.append(SimpleNamespace(
                    key=f"s{seed}/{scenario}/{setting}", run_dir=d, needs=[f"s{seed}/theta0_{theta0_of(scenario)}"],
                    done=(d / "summary.json").exists(), est=regimes_estimate_s(args, method, setting, scenario),
                    command=partial(selfplay_command, args, seed, scenario, setting),
                    what=f"{method} {', '.join(f'{k} {v}' for k, v in {**flags, **extra}.items())}"))
    return plan


def print_plan(args, plan):
    print(f"regimes: seeds per scenario {args.seeds}, "
          f"iterations 0..{REGIMES_ITERS - 1} x {REGIMES_EPOCHS} epoch, data {args.data_dir}, out {args.out}")
    for r in plan:
        state = "done, skipped" if r.done else f"~{r.est / 60:4.1f} min"
        print(f"  {r.key:<34} {r.what}  [{state}]")
    gain = PARALLEL_GAIN.get(args.jobs, PARALLEL_GAIN[2])
    todo, full = (sum(r.est for r in plan if not r.done or every) / gain / 60 for every in (False, True))
    print(f"ETA: {todo:.0f} min to run ({full:.0f} min for the whole map), from a cost model of 2 idle CPU cores, "
          f"{args.jobs} run(s) at a time", flush=True)


def main(argv=None):
    args = parse_args(argv)
    plan = make_plan(args)
    print_plan(args, plan)
    if args.plan:
        return print_launch(plan, args)
    if execute(plan, args.out, args.jobs, describe=lambda r: r.what, launcher=args):
        regimes_report.write(args.out)


if __name__ == "__main__":
    main()
