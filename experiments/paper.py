"""
The T-SPIN paper's experiment (Wang et al., NeurIPS 2025) at 1M-parameter scale, over several seeds.

It drives train_sft.py, train_spin.py and train_tspin.py as subprocesses, exactly as a user runs them,
then reads their metrics and writes a table in the shape of the paper's Table 1, figures, and one
generated sentence per claim of the paper saying whether it reproduces here, by how much, and beside
what noise. Nothing is concluded by hand.

    python -m experiments.paper                       # the full run: `make paper`
    python -m experiments.paper --plan                # print the runs and the time estimate, run nothing
    python -m experiments.paper --smoke               # the same path at smoke size: `make paper SMOKE=1`
    python -m experiments.paper --selfplay_epochs 2   # the paper's 2 epochs per iteration (over budget)
    python -m experiments.paper --jobs 1              # one run at a time, with every core

Per seed: theta_0 = SFT on the 25% subset; then, each from theta_0: SFT on 100% for 2 epochs; SPIN,
T-SPIN and T-SPIN without the historical term on the 25% subset; SFT on the 25% subset for as many
optimizer steps and about as many tokens as T-SPIN. A run whose summary.json exists is skipped, so a
killed `make paper` resumes by running it again. Runs that do not depend on each other (the seeds, the
methods of a seed) go side by side, --jobs at a time, each with cores/jobs threads. Writes <out>/report.md, <out>/summary.json and
<out>/*.png; the runs go to <out>/s<seed>/<method>/, their console output to <out>/logs/.
"""

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # files only: works headless
import matplotlib.pyplot as plt  # noqa: E402

from data.tasks import FAMILIES  # noqa: E402
from model.data import format_prompt, format_response, read_jsonl  # noqa: E402
from model.selfplay import SELFPLAY_DEFAULTS  # noqa: E402
from model.tokenizer import Tokenizer  # noqa: E402
from model.train_utils import load_checkpoint, read_metrics, write_json  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]

# the runs of one seed, in the order they must happen: all start from theta_0 (sft25), and the
# equal-compute SFT baseline reads T-SPIN's step and token counts, so it comes last
RUNS = {
    "sft25": ("train_sft.py", "theta_0: SFT on the 25% subset"),
    "sft100": ("train_sft.py", "from theta_0: SFT on 100% of train, 2 epochs"),
    "spin": ("train_spin.py", "from theta_0: SPIN on the 25% subset"),
    "tspin": ("train_tspin.py", "from theta_0: T-SPIN on the 25% subset"),
    "tspin_nohist": ("train_tspin.py", "from theta_0: T-SPIN without the historical term (--b 0)"),
    "sft25eq": ("train_sft.py", "from theta_0: SFT on 25%, T-SPIN's steps and about its tokens"),
}
# what each run needs finished first, and the order in which ready runs start: longest first, so that the
# short ones fill the gaps at the end
NEEDS = {"sft25": (), "sft100": ("sft25",), "spin": ("sft25",), "tspin": ("sft25",), "tspin_nohist": ("sft25",),
         "sft25eq": ("tspin",)}
PRIORITY = ("sft25", "tspin", "spin", "tspin_nohist", "sft25eq", "sft100")
SFT_ROWS = ("sft25", "sft100", "sft25eq")
SELFPLAY = ("spin", "tspin", "tspin_nohist")
LABEL = {"sft25": "SFT theta_0 (25%)", "sft100": "SFT 100%, 2 epochs", "sft25eq": "SFT 25%, equal compute",
         "spin": "SPIN", "tspin": "T-SPIN", "tspin_nohist": "T-SPIN w/o history"}
COLUMNS = [(f"acc/{f}", f"se/{f}", f) for f in FAMILIES] + [("accuracy", "accuracy_se", "average")]
BUDGET_S = 45 * 60

# theta_0 must be trained to its plateau, or continued SFT wins by just finishing the job. train_sft.py's
# 2400 steps (sized for `make sft`'s 3 minutes on 100% of train) are not enough on the 25% subset. Chosen
# on a validation split (prompts from another generator seed, none in train or eval; 563 prompts, se ~1.9),
# never on the eval split: final accuracy 23.6% after 2400 steps, 29.3% after 4000, 28.8% after 4800.
THETA0_STEPS = 4000
# Self-play epochs per iteration. The paper uses 2; with 2 the full run takes ~65 min on 2 cores (the cost
# model's 59, scaled as its 41 were to the measured 42.5 with 1), over the 45-minute budget, so the default
# is 1 (the same number of iterations, half the steps in each).
SELFPLAY_EPOCHS = 1

# For the ETA only: seconds of one run alone on 2 otherwise idle CPU cores, measured on this sandbox's
# machine with the haiku model: an SFT step of 32 length-bucketed examples ~0.06 s; a self-play step of 64
# length-bucketed pairs ~0.22 s, of 64 triplets ~0.40 s; sampling, reference log-probs and eval per sequence.
COST = dict(sft_example=0.06 / 32, pair=0.22 / 64, triplet=0.40 / 64, sample=0.0014, ref_logp=0.0007,
            eval_prompt=0.0021, start=5.0, smoke_run=12.0)
SFT_DEFAULTS = dict(batch_size=32, eval_interval=800, eval_subset=400)  # train_sft.py's, for the ETA
# Two runs side by side, one thread each, do 1.23x the work of one run on both cores (measured with two
# T-SPIN iterations: 93 s together vs 57 s each alone): a model this small does not keep 2 threads busy.
PARALLEL_GAIN = {1: 1.0, 2: 1.23}
TSPIN_TOKENS_PER_SFT_TOKEN = 2.8  # a T-SPIN example's tokens over an SFT example's, measured; for the ETA only


# -----------------------------------------------------------------------------------------------------
# the command line and where things go


def parse_args(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="", help="comma-separated (default 0,1,2; 0 with --smoke)")
    ap.add_argument("--iters", type=int, default=0, help="self-play iterations (default 5, the paper's 0..4)")
    ap.add_argument("--selfplay_epochs", type=int, default=SELFPLAY_EPOCHS, help="epochs per self-play iteration")
    ap.add_argument("--theta0_steps", type=int, default=THETA0_STEPS, help="SFT steps of theta_0 on the 25%% subset")
    ap.add_argument("--jobs", type=int, default=2, help="runs side by side, each with cores/jobs threads")
    ap.add_argument("--data_dir", default="data/generated")
    ap.add_argument("--out", default="runs/paper", help="must be <dir>/runs/<name>: the scripts write ./runs/<name>")
    ap.add_argument("--smoke", action="store_true", help="every script with --smoke, 1 seed (seconds per run)")
    ap.add_argument("--plan", action="store_true", help="print the runs and the time estimate, run nothing")
    args = ap.parse_args(argv)
    args.seeds = [int(s) for s in (args.seeds or ("0" if args.smoke else "0,1,2")).split(",")]
    args.iters = args.iters or 5  # under --smoke the self-play scripts run 2 whatever we ask
    args.out = Path(args.out).resolve()
    args.data_dir = Path(args.data_dir).resolve()
    if args.out.parent.name != "runs":
        ap.error(f"--out {args.out} must be <dir>/runs/<name>: the scripts write to ./runs/<name> of their cwd")
    args.cwd = args.out.parent.parent  # the scripts run here, so that runs/<out.name>/... is args.out/...
    return args


def run_dir(args, seed, method):
    return args.out / f"s{seed}" / method


def run_name(args, seed, method):
    return f"{args.out.name}/s{seed}/{method}"


# -----------------------------------------------------------------------------------------------------
# each run's flags: only what the experiment fixes; everything else stays the scripts' default


def flags(args, seed, method):
    theta0 = run_dir(args, seed, "sft25") / "ckpt.pt"
    out = ["--name", run_name(args, seed, method), "--seed", seed, "--data_dir", args.data_dir]
    out += ["--smoke"] if args.smoke else []
    if method == "sft25":
        return out + ["--subset", 25, "--max_steps", args.theta0_steps]
    if method == "sft100":
        return out + ["--init", theta0, "--subset", 100, "--max_steps", two_epochs(args, theta0)]
    if method in SELFPLAY:
        out += ["--init", theta0, "--subset", 25, "--iters", args.iters]
        out += ["--epochs", args.selfplay_epochs]
        return out + (["--b", 0] if method == "tspin_nohist" else [])
    if method == "sft25eq":
        match = equal_compute(args, seed)
        return out + ["--init", theta0, "--subset", 25, "--max_steps", match["steps"],
                      "--batch_size", match["batch_size"]]
    raise ValueError(method)


def two_epochs(args, theta0):
    """2 epochs of the full train split at theta_0's batch size (the SFT script drops the last partial
    batch, hence the floor). Under --smoke the script caps the steps and the data anyway."""
    batch = load_checkpoint(theta0)["config"]["batch_size"]
    return 2 * (len(read_jsonl(args.data_dir / "train.jsonl")) // batch)


def selfplay_tokens(args, seed, method):
    """Optimizer steps and tokens the self-play run put through the model with gradients, as the script
    counted them (prompt + answer per stacked sequence, no padding; T-SPIN leaves y0 out where b = 0)."""
    summary = json.loads((run_dir(args, seed, method) / "summary.json").read_text())
    return dict(steps=summary["steps"], tokens=summary["tokens_seen"])


def equal_compute(args, seed):
    """SFT on 25% for exactly T-SPIN's optimizer steps, with the batch size that makes its tokens
    (prompt + real answer per example) about T-SPIN's: batch = tokens / (steps * mean example length)."""
    tspin = selfplay_tokens(args, seed, "tspin")
    tok = Tokenizer.load(args.data_dir / "tokenizer")
    records = read_jsonl(args.data_dir / "train_25.jsonl")
    mean_len = statistics.fmean(len(format_prompt(tok, r["prompt"])) + len(format_response(tok, r["response"]))
                                for r in records)
    batch = max(1, round(tspin["tokens"] / (max(1, tspin["steps"]) * mean_len)))
    return dict(steps=tspin["steps"], batch_size=batch, tspin_tokens=tspin["tokens"], sft_example_tokens=mean_len)


# -----------------------------------------------------------------------------------------------------
# the plan and its ETA


def estimate_s(args, method, n25, n100, n_eval):
    """A cost model of one run (see COST); it ignores the machine's other load."""
    if args.smoke:
        return COST["smoke_run"]
    b = SFT_DEFAULTS["batch_size"]
    sp_b = SELFPLAY_DEFAULTS["batch_size"]
    epochs = args.selfplay_epochs
    selfplay_steps = args.iters * epochs * (n25 // sp_b)

    def sft(steps, batch):
        evals = n_eval + SFT_DEFAULTS["eval_subset"] * ((steps - 1) // SFT_DEFAULTS["eval_interval"])
        return COST["start"] + steps * batch * COST["sft_example"] + evals * COST["eval_prompt"]

    if method == "sft25":
        return sft(args.theta0_steps, b)
    if method == "sft100":
        return sft(2 * (n100 // b), b)
    if method == "sft25eq":
        return sft(selfplay_steps, round(sp_b * TSPIN_TOKENS_PER_SFT_TOKEN))  # see equal_compute()
    # T-SPIN stacks y0 only where b > 0: from iteration 1 on, and never without the historical term
    triplet_iters = max(0, args.iters - 1) if method == "tspin" else 0
    train = selfplay_steps * sp_b * (triplet_iters * COST["triplet"] + (args.iters - triplet_iters) * COST["pair"]) / args.iters
    per_iter = n25 * COST["sample"] + n_eval * COST["eval_prompt"]
    per_iter += 2 * n25 * COST["ref_logp"] if method == "spin" else 0  # SPIN's reference model, once per iteration
    proto = 0 if method == "spin" else n25 * COST["sample"]  # T-SPIN's y0, sampled once
    return COST["start"] + n_eval * COST["eval_prompt"] + proto + args.iters * per_iter + train


def make_plan(args):
    n25, n100, n_eval = (len(read_jsonl(args.data_dir / f)) for f in ("train_25.jsonl", "train.jsonl", "eval.jsonl"))
    return [SimpleNamespace(seed=s, method=m, est=estimate_s(args, m, n25, n100, n_eval),
                            done=(run_dir(args, s, m) / "summary.json").exists())
            for s in args.seeds for m in RUNS]


def print_plan(args, plan):
    epochs = args.selfplay_epochs
    sizes = ("smoke size: the scripts cap iterations, epochs, steps and data" if args.smoke
             else f"self-play iterations 0..{args.iters - 1} x {epochs} epochs")
    print(f"paper: seeds {args.seeds}, {sizes}, data {args.data_dir}, out {args.out}")
    for r in plan:
        script, what = RUNS[r.method]
        state = "done, skipped" if r.done else f"~{r.est / 60:4.1f} min"
        print(f"  seed {r.seed}  {r.method:<13} {script:<15} {what}  [{state}]")
    gain = PARALLEL_GAIN.get(args.jobs, PARALLEL_GAIN[2])
    todo = sum(r.est for r in plan if not r.done) / gain
    full = sum(r.est for r in plan) / gain
    print(f"ETA: {todo / 60:.0f} min to run ({full / 60:.0f} min for the whole plan; budget {BUDGET_S // 60} min), "
          f"from a cost model of 2 idle CPU cores, {args.jobs} run(s) at a time", flush=True)
    if not args.smoke and full > BUDGET_S:
        print(f"warning: the plan is over the {BUDGET_S // 60}-minute budget; --selfplay_epochs, --iters and --seeds "
              f"make it smaller", flush=True)


# -----------------------------------------------------------------------------------------------------
# running: one subprocess per run, its console output to a log file, one line per run here


def launch(args, seed, method):
    """Start one run in the background, its console output to a log file; returns (process, log file)."""
    script = RUNS[method][0]
    cmd = [sys.executable, str(ROOT / script), *map(str, flags(args, seed, method))]
    log_path = args.out / "logs" / f"s{seed}_{method}.log"
    log_path.parent.mkdir(parents=True, exist_ok=True)
    threads = str(max(1, (os.cpu_count() or 1) // args.jobs))  # the jobs share the cores, not oversubscribe them
    env = {**os.environ, "OMP_NUM_THREADS": threads, "MKL_NUM_THREADS": threads,
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    print(f"    $ {' '.join(cmd[1:])}", flush=True)
    log = open(log_path, "w")
    return subprocess.Popen(cmd, cwd=args.cwd, env=env, stdout=log, stderr=subprocess.STDOUT), log


def execute(args, plan):
    """Runs what is not done yet, up to --jobs at a time, each once what it needs is done. Returns the wall
    time of every run and of the whole, both kept across resumed invocations."""
    times_path = args.out / "wall_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {"runs": {}, "elapsed_s": 0.0}
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
            print(f"[{n - len(todo)}/{n}] seed {ready.seed} {ready.method}: {RUNS[ready.method][1]}", flush=True)
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
                log_path = Path(log.name)
                tail = "\n".join(log_path.read_text().splitlines()[-30:])
                sys.exit(f"{RUNS[r.method][0]} failed (exit {proc.returncode}); the end of {log_path}:\n{tail}")
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
    return times


# -----------------------------------------------------------------------------------------------------
# reading the results: evals[(method, iteration)][seed] = an eval record; iteration None for SFT rows


def collect(args):
    evals, gaps = {}, {}
    for s in args.seeds:
        for m in SFT_ROWS:
            evals.setdefault((m, None), {})[s] = json.loads((run_dir(args, s, m) / "summary.json").read_text())["final"]
        for m in SELFPLAY:
            for r in read_metrics(run_dir(args, s, m)):
                if "accuracy" in r and r.get("iter", -1) >= 0:  # iter -1 is theta_0 again: the sft25 row
                    evals.setdefault((m, r["iter"]), {})[s] = r
                if "logps/gap" in r:
                    gaps.setdefault((m, r["iter"]), {}).setdefault(s, []).append(r["logps/gap"])
    iters = sorted({it for (m, it), by_seed in evals.items() if m in SELFPLAY and len(by_seed) == len(args.seeds)})
    return evals, gaps, iters


def selfplay_epochs(args):
    """Epochs per iteration as the self-play scripts ran them (under --smoke they override ours)."""
    return load_checkpoint(run_dir(args, args.seeds[0], "tspin") / "ckpt.pt")["config"]["epochs"]


def table_rows(iters):
    return [(m, None) for m in SFT_ROWS] + [(m, it) for m in SELFPLAY for it in iters]


# -----------------------------------------------------------------------------------------------------
# statistics: every difference is paired by seed (a seed's runs share theta_0) and comes with its noise


NOISE = ("For a difference A - B between two rows, d_s is the difference for seed s (both rows of a seed "
         "start from the same theta_0), d its mean over the n seeds, sd the standard deviation of d_s over "
         "seeds, and se_A, se_B the per-run binomial standard errors of the accuracy (root mean square over "
         "seeds). The combined noise is sigma = sqrt(sd^2 / n + se_A^2 + se_B^2): the seed-to-seed spread "
         "of the mean difference, plus the eval set's sampling noise of each side, which more seeds do not "
         "shrink because every run answers the same eval prompts. |d| < 2 sigma is reported as no difference. "
         "With one seed sd is unknown and only the standard errors count.")


def mean_sd(xs):
    xs = list(xs)
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def rms(xs):
    xs = list(xs)
    return math.sqrt(statistics.fmean(x * x for x in xs)) if xs else 0.0


def verdict(d, sigma):
    return "higher" if d > 2 * sigma else "lower" if d < -2 * sigma else "no difference"


def compare(a, b, key="accuracy", se_key="accuracy_se"):
    """A - B of `key` over the seeds both rows have, with its noise (see NOISE)."""
    seeds = sorted(a.keys() & b.keys())
    d = [a[s][key] - b[s][key] for s in seeds]
    sd = statistics.stdev(d) if len(d) > 1 else 0.0
    se_a, se_b = rms(a[s].get(se_key, 0.0) for s in seeds), rms(b[s].get(se_key, 0.0) for s in seeds)
    sigma = math.sqrt(sd ** 2 / len(d) + se_a ** 2 + se_b ** 2)
    diff = statistics.fmean(d)
    return dict(diff=diff, sd_seeds=sd, se_a=se_a, se_b=se_b, sigma=sigma, n=len(d), verdict=verdict(diff, sigma))


def pts(x):
    return f"{100 * x:+.1f}"


def says(c):
    """'+1.2 pts (seed sd 0.8, run se 1.0 / 1.1, sigma 1.5): no difference'"""
    sd = f"seed sd {100 * c['sd_seeds']:.1f} over {c['n']}" if c["n"] > 1 else "1 seed"
    return (f"{pts(c['diff'])} pts ({sd}, run se {100 * c['se_a']:.1f} / {100 * c['se_b']:.1f}, "
            f"sigma {100 * c['sigma']:.1f}): {c['verdict']}")


def gap_stats(gaps, method, it):
    """The log-likelihood gap log p(y) - log p(y') of one iteration: per seed the mean of the logged
    training values (and its standard error), then over seeds; sigma as in NOISE."""
    by_seed = gaps.get((method, it), {})
    means = [statistics.fmean(v) for v in by_seed.values()]
    ses = [statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0 for v in by_seed.values()]
    if not means:
        return None
    mean, sd = mean_sd(means)
    sigma = math.sqrt((0.0 if math.isnan(sd) else sd) ** 2 / len(means) + rms(ses) ** 2)
    sign = {"higher": "positive", "lower": "negative", "no difference": "zero within noise"}[verdict(mean, sigma)]
    return dict(method=method, iter=it, mean=mean, sd=sd, sigma=sigma, sign=sign, seeds=len(means))


# -----------------------------------------------------------------------------------------------------
# the three claims, each a sentence generated from the numbers


def overall(parts):
    return "reproduces" if all(parts) else "partly reproduces" if any(parts) else "does not reproduce"


def claim_iterations(evals, iters):
    """(1) T-SPIN improves steadily across iterations while SPIN fluctuates. Steady: higher than theta_0
    at the last iteration and no significant drop from one iteration to the next; fluctuating: at least
    one significant drop."""
    theta0, out = evals[("sft25", None)], {}
    for m in ("tspin", "spin"):
        series = [("theta_0", theta0)] + [(f"iter {t}", evals[(m, t)]) for t in iters]
        steps = [(f"{p}->{q}", compare(bq, bp)) for (p, bp), (q, bq) in zip(series, series[1:])]
        net = compare(series[-1][1], theta0)
        drops = [name for name, c in steps if c["verdict"] == "lower"]
        out[m] = dict(net=net, steps=steps, drops=drops, steady=not drops and net["verdict"] == "higher")
    t, s = out["tspin"], out["spin"]
    holds = [t["steady"], bool(s["drops"])]

    def steadiness(r):
        if r["steady"]:
            return "improves steadily"
        return "drops significantly at least once" if r["drops"] else "shows no significant gain over theta_0"

    def describe(m, r):
        steps = "; ".join(f"{name} {pts(c['diff'])} (sigma {100 * c['sigma']:.1f})" for name, c in r["steps"])
        drops = ", ".join(r["drops"]) or "none"
        return (f"{LABEL[m]}: iteration {iters[-1]} vs theta_0 {says(r['net'])}; steps: {steps}; "
                f"significant drops: {drops}")

    text = (f"**Claim 1** (T-SPIN improves steadily across iterations, SPIN fluctuates): {overall(holds)} here. "
            f"T-SPIN {steadiness(t)}; SPIN {'fluctuates' if s['drops'] else 'shows no significant drop'}. "
            f"{describe('tspin', t)}. "
            f"{describe('spin', s)}.")
    return dict(claim=1, verdict=overall(holds), text=text, tspin_steady=t["steady"], spin_drops=s["drops"],
                tspin_net=t["net"], spin_net=s["net"])


def claim_data(evals, iters):
    """(2) T-SPIN on 25% of the data matches or beats SFT on 100%: matches = no significant difference."""
    last = iters[-1]
    full = compare(evals[("tspin", last)], evals[("sft100", None)])
    equal = compare(evals[("tspin", last)], evals[("sft25eq", None)])
    first = next((t for t in iters if compare(evals[("tspin", t)], evals[("sft100", None)])["verdict"] != "lower"), None)
    word = {"higher": "beats", "no difference": "matches (within noise)", "lower": "falls short of"}
    holds = [full["verdict"] != "lower"]
    text = (f"**Claim 2** (T-SPIN on 25% of the data matches or beats SFT on 100%): {overall(holds)} here. "
            f"T-SPIN at iteration {last} {word[full['verdict']]} SFT on 100% for 2 epochs: {says(full)}. "
            f"The first iteration not significantly below it: {'none' if first is None else first}. "
            f"Against SFT on the same 25% for equal compute, T-SPIN at iteration {last} {word[equal['verdict']]} "
            f"it: {says(equal)}.")
    return dict(claim=2, verdict=overall(holds), text=text, vs_sft100=full, vs_sft25eq=equal,
                first_iteration_matching=first)


def claim_gap(gaps, iters):
    """(3) Under SPIN the gap log p(y) - log p(y') turns negative after the first iterations; under
    T-SPIN it stays positive. Negative / positive: beyond 2 sigma of zero."""
    rows = {m: [gap_stats(gaps, m, t) for t in iters] for m in ("spin", "tspin")}
    spin_neg = [g["iter"] for g in rows["spin"] if g and g["iter"] >= 1 and g["sign"] == "negative"]
    tspin_pos = all(g and g["sign"] == "positive" for g in rows["tspin"])
    holds = [bool(spin_neg), tspin_pos]

    def describe(m):
        return "; ".join(f"iter {g['iter']} {g['mean']:+.2f} (sigma {g['sigma']:.2f}, {g['sign']})"
                         for g in rows[m] if g)

    text = (f"**Claim 3** (the log-likelihood gap log p(y) - log p(y') turns negative under SPIN after the "
            f"first iterations and stays positive under T-SPIN): {overall(holds)} here. SPIN's gap is "
            f"{'negative at iteration(s) ' + ', '.join(map(str, spin_neg)) if spin_neg else 'never significantly negative after iteration 0'}"
            f"; T-SPIN's is {'positive at every iteration' if tspin_pos else 'not positive at every iteration'}. "
            f"Mean over training, in nats: SPIN {describe('spin')}. T-SPIN {describe('tspin')}.")
    return dict(claim=3, verdict=overall(holds), text=text, spin_negative_iters=spin_neg,
                tspin_always_positive=tspin_pos, gaps=[g for m in rows for g in rows[m] if g])


# -----------------------------------------------------------------------------------------------------
# figures


def iteration_figure(path, evals, iters, key, ylabel):
    """key vs iteration for the self-play methods (theta_0 at x = -1), SFT baselines as lines;
    error bars and bands are the std over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs = [-1] + list(iters)
    theta0 = [r[key] for r in evals[("sft25", None)].values()]
    for m, color in zip(SELFPLAY, ("tab:red", "tab:blue", "tab:cyan")):
        stats = [mean_sd(theta0)] + [mean_sd(r[key] for r in evals[(m, t)].values()) for t in iters]
        stats = [(100 * mean, 100 * sd) for mean, sd in stats]  # in %, as the table
        ax.errorbar(xs, [s[0] for s in stats], yerr=[0 if math.isnan(s[1]) else s[1] for s in stats],
                    marker="o", ms=4, capsize=3, color=color, label=LABEL[m])
    for m, color in (("sft100", "black"), ("sft25eq", "gray")):
        mean, sd = (100 * v for v in mean_sd(r[key] for r in evals[(m, None)].values()))
        ax.axhline(mean, color=color, ls="--", lw=1, label=LABEL[m])
        if not math.isnan(sd):
            ax.axhspan(mean - sd, mean + sd, color=color, alpha=0.1)
    ax.set_xticks(xs, ["theta_0"] + [str(t) for t in iters])
    ax.set_xlabel("self-play iteration")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def gap_figure(path, gaps, iters):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for m, color in (("spin", "tab:red"), ("tspin", "tab:blue")):
        stats = [g for g in (gap_stats(gaps, m, t) for t in iters) if g]
        ax.errorbar([g["iter"] for g in stats], [g["mean"] for g in stats],
                    yerr=[0 if math.isnan(g["sd"]) else g["sd"] for g in stats], marker="o", ms=4, capsize=3,
                    color=color, label=LABEL[m])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(list(iters))
    ax.set_xlabel("self-play iteration")
    ax.set_ylabel("log p(y) - log p(y')  (nats, mean over training)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# -----------------------------------------------------------------------------------------------------
# the report


def cell(values):
    mean, sd = mean_sd(values)
    return f"{100 * mean:.1f} ± {'–' if math.isnan(sd) else f'{100 * sd:.1f}'}"


def markdown_table(evals, iters, n_seeds):
    head = ["method", "iter"] + [c[2] for c in COLUMNS] + ["run se (avg)", "pipe rate"]
    lines = [f"Accuracy on the held-out set, %, mean ± std over {n_seeds} seed(s); run se: the per-run binomial "
             "standard error of the average (root mean square over seeds); pipe rate: share of non-table "
             "answers containing '|', %.", "",
             "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, it in table_rows(iters):
        recs = list(evals[(m, it)].values())
        cells = [cell(r.get(key, 0.0) for r in recs) for key, _, _ in COLUMNS]
        cells += [f"{100 * rms(r['accuracy_se'] for r in recs):.1f}", cell(r["pipe_rate"] for r in recs)]
        lines.append(f"| {LABEL[m]} | {'–' if it is None else it} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def compute_note(args):
    """How the equal-compute SFT baseline was matched to T-SPIN, and how close it came."""
    lines = []
    for s in args.seeds:
        tspin, spin = selfplay_tokens(args, s, "tspin"), selfplay_tokens(args, s, "spin")
        eq = json.loads((run_dir(args, s, "sft25eq") / "summary.json").read_text())
        cfg = load_checkpoint(run_dir(args, s, "sft25eq") / "ckpt.pt")["config"]
        lines.append(dict(seed=s, tspin_steps=tspin["steps"], tspin_tokens=tspin["tokens"], spin_tokens=spin["tokens"],
                          sft25eq_steps=eq["steps"], sft25eq_batch_asked=equal_compute(args, s)["batch_size"],
                          sft25eq_batch_size=cfg["batch_size"],
                          sft25eq_tokens=eq["tokens_seen"], ratio_to_tspin=eq["tokens_seen"] / max(1, tspin["tokens"]),
                          ratio_to_spin=eq["tokens_seen"] / max(1, spin["tokens"])))
    return lines


def write_report(args, evals, gaps, iters, claims, compute, times):
    n = len(args.seeds)
    epochs = selfplay_epochs(args)
    md = [f"# The T-SPIN paper's experiment at 1M parameters{' (smoke size)' if args.smoke else ''}", "",
          f"Seeds {args.seeds}; self-play iterations {iters[0]}..{iters[-1]}, {epochs} epoch(s) each"
          f"; data {args.data_dir}. Wall time of all the runs: "
          f"{times['elapsed_s'] / 60:.1f} min, {args.jobs} at a time. Generated by `python -m experiments.paper`; every sentence below is computed "
          "from the numbers.", "",
          "## Table 1", "", markdown_table(evals, iters, n), "",
          "## Figures", "",
          "![accuracy vs iteration](accuracy_vs_iteration.png)", "",
          "![pipe rate vs iteration](pipe_rate_vs_iteration.png)", "",
          "![log-likelihood gap](logps_gap.png)", "",
          "## The three claims", "", "Noise: " + NOISE, ""]
    md += [c["text"] + "\n" for c in claims]
    md += ["## Equal compute", "",
           "SFT 25%, equal compute runs exactly T-SPIN's optimizer steps. Its batch size is chosen so that its "
           "tokens (prompt + real answer per example, no padding, as train_sft.py counts `tokens_seen`) come "
           "near T-SPIN's (per example 3 x prompt + y + y' + y0 in the stacked forward with gradients; "
           "2 x prompt + y + y' where b = 0, at iteration 0). SPIN puts 2 sequences per example through the "
           "model with gradients (plus a no-gradient reference pass); the last column compares with those. "
           "Padding is not counted on either side (all batches are grouped by length).", "",
           "| seed | T-SPIN steps | SFT steps | SFT batch (asked / run) | T-SPIN tokens | SPIN tokens | SFT tokens | SFT / T-SPIN | SFT / SPIN |",
           "|---|---|---|---|---|---|---|---|---|"]
    md += [f"| {c['seed']} | {c['tspin_steps']} | {c['sft25eq_steps']} | {c['sft25eq_batch_asked']} / {c['sft25eq_batch_size']} | {c['tspin_tokens']:,} "
           f"| {c['spin_tokens']:,} | {c['sft25eq_tokens']:,} | {c['ratio_to_tspin']:.2f} | {c['ratio_to_spin']:.2f} |"
           for c in compute]
    ratios = [c["ratio_to_tspin"] for c in compute]
    md += ["", f"The SFT baseline's tokens are {min(ratios):.2f}-{max(ratios):.2f} x T-SPIN's over the seeds"
           + (" (under --smoke train_sft.py forces batch 16, so the asked batch is not used)."
              if any(c["sft25eq_batch_asked"] != c["sft25eq_batch_size"] for c in compute) else ".")]
    md += ["", "## Runs", "", f"Wall time of each run, {args.jobs} run(s) sharing the cores at a time.", "",
           "| run | wall time (s) |", "|---|---|"]
    md += [f"| {k} | {v:.0f} |" for k, v in sorted(times["runs"].items())]
    (args.out / "report.md").write_text("\n".join(md) + "\n")


def summary_numbers(evals, iters):
    rows = []
    for m, it in table_rows(iters):
        recs = list(evals[(m, it)].values())
        row = dict(method=m, label=LABEL[m], iter=it, seeds=len(recs))
        for key, _, name in COLUMNS + [("pipe_rate", None, "pipe_rate")]:
            mean, sd = mean_sd(r.get(key, 0.0) for r in recs)
            row[name] = dict(mean=mean, sd=None if math.isnan(sd) else sd)
        row["accuracy_se"] = rms(r["accuracy_se"] for r in recs)
        rows.append(row)
    return rows


def finite(obj):
    """NaN (the std of a single seed) as null: summary.json stays strict JSON."""
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, dict):
        return {k: finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite(v) for v in obj]
    return obj


def main(argv=None):
    args = parse_args(argv)
    plan = make_plan(args)
    print_plan(args, plan)
    if args.plan:
        return
    times = execute(args, plan)
    evals, gaps, iters = collect(args)
    claims = [claim_iterations(evals, iters), claim_data(evals, iters), claim_gap(gaps, iters)]
    compute = compute_note(args)
    iteration_figure(args.out / "accuracy_vs_iteration.png", evals, iters, "accuracy", "held-out accuracy, %")
    iteration_figure(args.out / "pipe_rate_vs_iteration.png", evals, iters, "pipe_rate", "pipe rate (non-table answers with '|'), %")
    gap_figure(args.out / "logps_gap.png", gaps, iters)
    write_report(args, evals, gaps, iters, claims, compute, times)
    write_json(args.out / "summary.json", finite({
        "seeds": args.seeds, "iters": iters, "selfplay_epochs": selfplay_epochs(args),
        "smoke": args.smoke, "noise": NOISE, "table": summary_numbers(evals, iters), "claims": claims,
        "compute": compute, "wall_time_s": times}))
    for c in claims:
        print(c["text"].replace("**", ""))
    print(f"report: {args.out / 'report.md'}")


if __name__ == "__main__":
    main()
