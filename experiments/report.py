"""
The paper experiment's report, from the finished runs alone: every number comes from a run's summary.json
(its resolved configuration, steps, tokens, final eval), metrics.jsonl (the per-iteration evals, the
identical-pair share, the weight distance from theta_0, the log-likelihood gap) or outcomes/ (what each eval
prompt got, greedy and sampled: every difference between two rows is paired on these, model/stats.py).
Writes a table in the shape of the paper's Table 1, figures, the paired verdicts, and one generated sentence
per claim of the paper saying whether it reproduces here, by how much, and beside what noise (sigma and the
smallest difference it could detect). Nothing is concluded by hand.

    python -m experiments.report runs/paper            # re-write runs/paper/report.md from its runs
    python -m experiments.report runs/paper --seeds 0  # only some seeds

experiments/paper.py calls this after its runs; run alone it changes nothing but the report's files:
<out>/report.md, <out>/summary.json and <out>/*.png.
"""

import argparse
import json
import math
import statistics
import sys
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")  # files only: works headless
import matplotlib.pyplot as plt  # noqa: E402

from data.tasks import FAMILIES  # noqa: E402
from experiments.plan import (  # noqa: E402
    LABEL,
    RUNS,
    SCENARIOS,
    SELFPLAY,
    SFT_ROWS,
    THETA0_STEPS,
    equal_compute,
    read_summary,
    run_dir,
)
from model.files import read_jsonl, write_json  # noqa: E402
from model.log import read_metrics  # noqa: E402
from model.results import SAMPLED_T, compare_rows, outcomes_path, read_outcomes, verdict_text  # noqa: E402
from model.stats import MDD_SIGMAS, verdict  # noqa: E402

COLUMNS = [(f"acc/{f}", f) for f in FAMILIES] + [("accuracy", "average")]
SAMPLED = f"t{SAMPLED_T:g}"  # 't0.6': the sampled outcomes and metrics the verdicts also use
SAMPLED_COLUMN = (f"{SAMPLED}/accuracy", f"acc@{SAMPLED_T:g}")  # sampled pass@1, where the runs logged it

# -----------------------------------------------------------------------------------------------------
# reading the runs: evals[(method, iteration)][seed] = an eval record (iteration None for the SFT rows);
# identical[(method, iteration)][seed] = the share of pairs with y_gen == y that iteration trained on;
# gaps[(method, iteration)][seed] = the logged values of log p(y) - log p(y_gen) during training


def finished_seeds(out):
    """Seeds whose every run has its summary.json (a run writes it last)."""
    seeds = sorted(int(p.name[1:]) for p in Path(out).glob("s*") if p.name[1:].isdigit())
    return [s for s in seeds if all((run_dir(out, s, m) / "summary.json").exists() for m in RUNS)]


def collect(out, seeds):
    evals, identical, gaps = {}, {}, {}
    summaries = {(s, m): read_summary(out, s, m) for s in seeds for m in RUNS}
    for s in seeds:
        for m in SFT_ROWS:
            evals.setdefault((m, None), {})[s] = summaries[(s, m)]["final"]
        for m in SELFPLAY:
            for r in read_metrics(run_dir(out, s, m)):
                if "iter" not in r or r["iter"] < 0:  # iter -1 is theta_0 again: the theta0 row
                    continue
                if "accuracy" in r:
                    evals.setdefault((m, r["iter"]), {})[s] = r
                if "identical_share" in r:
                    identical.setdefault((m, r["iter"]), {})[s] = r["identical_share"]
                if "logps/gap" in r:
                    gaps.setdefault((m, r["iter"]), {}).setdefault(s, []).append(r["logps/gap"])
    iters = sorted({it for (m, it), by_seed in evals.items() if m in SELFPLAY and len(by_seed) == len(seeds)})
    theta0 = summaries[(seeds[0], "theta0")]["config"]
    return SimpleNamespace(out=Path(out), seeds=seeds, evals=evals, identical=identical, gaps=gaps, iters=iters,
                           outcomes=read_row_outcomes(out, seeds, iters),
                           summaries=summaries, theta0=theta0, smoke=theta0["smoke"],
                           scenario=scenario_of(theta0, summaries[(seeds[0], "tspin")]["config"]),
                           epochs=summaries[(seeds[0], "tspin")]["config"]["epochs"])


def read_row_outcomes(out, seeds, iters):
    """outcomes[(method, iteration)][seed] = the row's per-prompt outcome lines on eval, None where the run
    wrote none: an SFT run's final evaluation, a self-play run's evaluation after each iteration."""
    outcomes = {}
    for s in seeds:
        for m in SFT_ROWS:
            outcomes.setdefault((m, None), {})[s] = read_outcomes(outcomes_path(run_dir(out, s, m), "final"))
        for m in SELFPLAY:
            for it in iters:
                outcomes.setdefault((m, it), {})[s] = read_outcomes(outcomes_path(run_dir(out, s, m), f"iter{it}"))
    return outcomes


def scenario_of(theta0, selfplay):
    """Which scenario made these runs: theta_0's subset and the self-play template, then theta_0's steps
    (plateau and undertrained differ only there; a --theta0_steps of one's own keeps the first match)."""
    found = [k for k, v in SCENARIOS.items()
             if v["theta0_subset"] == theta0["subset"] and v["template"] == selfplay.get("template", "chat")]
    return next((k for k in found if THETA0_STEPS[k] == theta0["max_steps"]), found[0] if found else "?")


def label(res, m):
    return f"{LABEL[m]} ({res.theta0['subset']}%)" if m == "theta0" else LABEL[m]


def table_rows(iters):
    return [(m, None) for m in SFT_ROWS] + [(m, it) for m in SELFPLAY for it in iters]


# -----------------------------------------------------------------------------------------------------
# statistics: every difference between two rows is paired prompt by prompt on their outcome files and
# pooled over the seeds both have (model/stats.py, the project's one noise model)

KEYS = {"greedy": "greedy", SAMPLED: f"T={SAMPLED_T:g}"}  # the two ways every row was evaluated
NA = "n/a (no per-prompt outcomes)"
NOISE = ("Every run answers the same eval prompts, so two rows A and B are compared prompt by prompt "
         "(model/stats.py, the project's one noise model): d[s, i] is A's outcome on prompt i minus B's, for "
         "each seed s both rows have; greedy the outcome is right (1) or wrong (0), at T=0.6 the share of the "
         "prompt's K samples that were right (pass@1). The difference is the mean of d. Its standard error "
         "sigma comes from a crossed prompt x seed random-effects model, sigma^2 = se_prompts^2 + se_seeds^2: "
         "se_prompts is the cluster-robust (by prompt) standard error of Miller 2024, \"Adding Error Bars to "
         "Evals\" (arXiv 2411.00640), on the per-prompt means over seeds; se_seeds is the spread of the "
         "per-seed mean differences beyond what that prompt-level noise explains (0 with one seed). Pairing "
         "removes the difficulty of the prompts, which both rows share. |diff| > 2 sigma is called higher or "
         f"lower; otherwise the verdict is \"no difference larger than\" the smallest detectable difference "
         f"mdd = {MDD_SIGMAS:.2f} sigma, the difference this 2-sigma test finds with 80% power. Every verdict "
         "states diff ± 2 sigma, sigma and mdd, in points; n/a where a run wrote no per-prompt outcomes "
         "(runs made before they existed).")


def mean_sd(xs):
    xs = list(xs)
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else float("nan"))


def rms(xs):
    xs = list(xs)
    return math.sqrt(statistics.fmean(x * x for x in xs)) if xs else 0.0


def pair(a, b, key="greedy", field="right"):
    """A - B, paired per prompt and pooled over the seeds both rows have (model.results.compare_rows);
    a, b: {seed: outcome lines, or None where the run wrote none}. None where it cannot be computed."""
    seeds = sorted(a.keys() & b.keys())
    if not seeds or any(a[s] is None or b[s] is None for s in seeds):
        return None
    return compare_rows({s: a[s] for s in seeds}, {s: b[s] for s in seeds}, key, field)


def both(a, b, field="right"):
    """{'greedy': A - B greedy, 't0.6': A - B sampled}, each a comparison or None."""
    return {k: pair(a, b, k, field) for k in KEYS}


def says(c):
    """'+1.2 ± 1.6 pts (2σ; σ 0.8, detects ≥ 2.3): no difference larger than 2.3 pts', or n/a."""
    return NA if c is None else verdict_text(c)


def says_both(cs):
    return "; ".join(f"{KEYS[k]} {says(c)}" for k, c in cs.items())


def verdict_of(c):
    return None if c is None else c["verdict"]


def gap_stats(gaps, method, it):
    """The log-likelihood gap log p(y) - log p(y_gen) of one iteration: per seed the mean of the logged
    training values (and its standard error), then over seeds, sigma = sqrt(sd_seeds^2 / n + rms(se)^2).
    Not a comparison of two evaluation rows (those are paired on outcomes, see NOISE): a summary of one
    quantity logged during training, whose sign claim 3 asks about."""
    by_seed = gaps.get((method, it), {})
    means = [statistics.fmean(v) for v in by_seed.values()]
    ses = [statistics.stdev(v) / math.sqrt(len(v)) if len(v) > 1 else 0.0 for v in by_seed.values()]
    if not means:
        return None
    mean, sd = mean_sd(means)
    sigma = math.sqrt((0.0 if math.isnan(sd) else sd) ** 2 / len(means) + rms(ses) ** 2)
    sign = {"higher": "positive", "lower": "negative", "no difference": "zero within noise"}[verdict(mean, sigma)]
    return dict(method=method, iter=it, mean=mean, sd=sd, sigma=sigma, sign=sign, seeds=len(means))


def movement(res, m, it):
    """How far a row moved: (identical-pair shares, weight distances from theta_0) over its seeds; either
    list is empty where the runs did not log it (the SFT rows, or runs from before it was logged)."""
    shares = list(res.identical.get((m, it), {}).values())
    dists = [r["weight_dist"] for r in res.evals[(m, it)].values() if "weight_dist" in r]
    return shares, dists


# -----------------------------------------------------------------------------------------------------
# the three claims, each a sentence generated from the numbers


def overall(parts):
    if any(p is None for p in parts):
        return "cannot be judged"
    return "reproduces" if all(parts) else "partly reproduces" if any(parts) else "does not reproduce"


def judged(holds):
    """'reproduces here (judged greedy)', or why it cannot be judged."""
    return f"{overall(holds)} here " + ("(no per-prompt outcomes)" if None in holds else "(judged greedy)")


def short(c):
    return "n/a" if c is None else f"{100 * c['diff']:+.1f} (σ {100 * c['sigma']:.1f}, detects ≥ {100 * c['mdd']:.1f})"


def iteration_series(res, m):
    """One self-play method from theta_0 through its iterations: the verdicts of each step and of the
    last iteration against theta_0 (greedy and sampled), and its significant greedy drops."""
    o = res.outcomes
    series = [("theta_0", o[("theta0", None)])] + [(f"iter {t}", o[(m, t)]) for t in res.iters]
    steps = [(f"{p}->{q}", both(bq, bp)) for (p, bp), (q, bq) in zip(series, series[1:])]
    net = both(series[-1][1], series[0][1])
    judged = all(c["greedy"] is not None for c in [net] + [c for _, c in steps])
    drops = [name for name, c in steps if verdict_of(c["greedy"]) == "lower"]
    steady = (not drops and net["greedy"]["verdict"] == "higher") if judged else None
    return dict(net=net, steps=steps, drops=drops, steady=steady, judged=judged)


def claim_iterations(res):
    """(1) T-SPIN improves steadily across iterations while SPIN fluctuates. Steady: higher than theta_0
    at the last iteration and no significant drop from one iteration to the next; fluctuating: at least
    one significant drop. Judged greedy (the paper's decoding); the sampled verdicts stand beside."""
    iters = res.iters
    out = {m: iteration_series(res, m) for m in ("tspin", "spin")}
    t, s = out["tspin"], out["spin"]
    holds = [t["steady"], bool(s["drops"]) if s["judged"] else None]

    def steadiness(r):
        if not r["judged"]:
            return "cannot be judged"
        if r["steady"]:
            return "improves steadily"
        return "drops significantly at least once" if r["drops"] else "shows no significant gain over theta_0"

    def describe(m, r):
        steps = "; ".join(f"{name} greedy {short(c['greedy'])}, {KEYS[SAMPLED]} {short(c[SAMPLED])}"
                          for name, c in r["steps"])
        return (f"{LABEL[m]}: iteration {iters[-1]} vs theta_0: {says_both(r['net'])}. Steps, in points: {steps}; "
                f"significant greedy drops: {', '.join(r['drops']) or 'none'}")

    spin_word = "fluctuates" if s["drops"] else "shows no significant drop" if s["judged"] else steadiness(s)
    text = (f"**Claim 1** (T-SPIN improves steadily across iterations, SPIN fluctuates): {judged(holds)}. T-SPIN {steadiness(t)}; SPIN {spin_word}. {describe('tspin', t)}. "
            f"{describe('spin', s)}.")
    return dict(claim=1, verdict=overall(holds), text=text, tspin_steady=t["steady"], spin_drops=s["drops"],
                tspin_net=t["net"], spin_net=s["net"])


def claim_data(res):
    """(2) T-SPIN on 25% of the data matches or beats SFT on 100%: matches = no significant difference
    (greedy, paired per prompt; what that can tell apart is the verdict's mdd)."""
    o, iters = res.outcomes, res.iters
    last = iters[-1]
    full = both(o[("tspin", last)], o[("sft100", None)])
    equal = both(o[("tspin", last)], o[("sft25eq", None)])
    firsts = [(t, verdict_of(pair(o[("tspin", t)], o[("sft100", None)]))) for t in iters]
    first = next((t for t, v in firsts if v not in ("lower", None)), None)
    word = {"higher": "beats", "no difference": "matches (within noise)", "lower": "falls short of",
            None: "cannot be compared with"}
    holds = [verdict_of(full["greedy"]) != "lower" if full["greedy"] else None]
    text = (f"**Claim 2** (T-SPIN on 25% of the data matches or beats SFT on 100%): {judged(holds)}. "
            f"T-SPIN at iteration {last} {word[verdict_of(full['greedy'])]} SFT on 100% for 2 "
            f"epochs: {says_both(full)}. The first iteration not significantly below it (greedy): "
            f"{'none' if first is None else first}. Against SFT on the same 25% for equal compute, T-SPIN at "
            f"iteration {last} {word[verdict_of(equal['greedy'])]} it: {says_both(equal)}.")
    return dict(claim=2, verdict=overall(holds), text=text, vs_sft100=full, vs_sft25eq=equal,
                first_iteration_matching=first)


def claim_gap(res):
    """(3) Under SPIN the gap log p(y) - log p(y_gen) turns negative after the first iterations; under
    T-SPIN it stays positive. Negative / positive: beyond 2 sigma of zero."""
    rows = {m: [gap_stats(res.gaps, m, t) for t in res.iters] for m in ("spin", "tspin")}
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


def moved_text(res):
    """One generated sentence per self-play method: how much of its data carried a gradient, and how far
    its weights went from theta_0."""
    first, last = res.iters[0], res.iters[-1]
    lines = []
    for m in SELFPLAY:
        (s0, _), (s1, d1) = movement(res, m, first), movement(res, m, last)
        share = (f"{100 * statistics.fmean(s0):.0f}% of its pairs had y_gen == y (exactly zero gradient in the "
                 f"current term) at iteration {first}, {100 * statistics.fmean(s1):.0f}% at iteration {last}"
                 if s0 and s1 else "its identical-pair share was not logged")
        dist = (f"its weights ended {statistics.fmean(d1):.3g} (relative L2) from theta_0" if d1
                else "its weight distance from theta_0 was not logged (n/a)")
        lines.append(f"- {LABEL[m]}: {share}; {dist}.")
    return lines


# -----------------------------------------------------------------------------------------------------
# figures


def finish_figure(fig, axes, ylabels, path):
    """The report's figures all end the same way: iterations on x, a label per panel, grid, legend, saved."""
    for ax, ylabel in zip(axes, ylabels):
        ax.set_xlabel("self-play iteration")
        ax.set_ylabel(ylabel)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def iteration_figure(path, res, key, ylabel):
    """key vs iteration for the self-play methods (theta_0 at x = -1), SFT baselines as lines;
    error bars and bands are the std over seeds."""
    fig, ax = plt.subplots(figsize=(6.4, 4))
    xs = [-1] + list(res.iters)
    theta0 = [r[key] for r in res.evals[("theta0", None)].values()]
    for m, color in zip(SELFPLAY, ("tab:red", "tab:blue", "tab:cyan")):
        stats = [mean_sd(theta0)] + [mean_sd(r[key] for r in res.evals[(m, t)].values()) for t in res.iters]
        stats = [(100 * mean, 100 * sd) for mean, sd in stats]  # in %, as the table
        ax.errorbar(xs, [s[0] for s in stats], yerr=[0 if math.isnan(s[1]) else s[1] for s in stats],
                    marker="o", ms=4, capsize=3, color=color, label=LABEL[m])
    for m, color in (("sft100", "black"), ("sft25eq", "gray")):
        mean, sd = (100 * v for v in mean_sd(r[key] for r in res.evals[(m, None)].values()))
        ax.axhline(mean, color=color, ls="--", lw=1, label=LABEL[m])
        if not math.isnan(sd):
            ax.axhspan(mean - sd, mean + sd, color=color, alpha=0.1)
    ax.set_xticks(xs, ["theta_0"] + [str(t) for t in res.iters])
    finish_figure(fig, [ax], [ylabel], path)


def gap_figure(path, res):
    fig, ax = plt.subplots(figsize=(6.4, 4))
    for m, color in (("spin", "tab:red"), ("tspin", "tab:blue")):
        stats = [g for g in (gap_stats(res.gaps, m, t) for t in res.iters) if g]
        ax.errorbar([g["iter"] for g in stats], [g["mean"] for g in stats],
                    yerr=[0 if math.isnan(g["sd"]) else g["sd"] for g in stats], marker="o", ms=4, capsize=3,
                    color=color, label=LABEL[m])
    ax.axhline(0, color="black", lw=0.8)
    ax.set_xticks(list(res.iters))
    finish_figure(fig, [ax], ["log p(y) - log p(y')  (nats, mean over training)"], path)


def movement_figure(path, res):
    """Per self-play method and iteration: the identical-pair share (left) and the weight distance from
    theta_0 (right, empty where the runs did not log it); mean over seeds."""
    fig, axes = plt.subplots(1, 2, figsize=(9.6, 3.6))
    for m, color in zip(SELFPLAY, ("tab:red", "tab:blue", "tab:cyan")):
        for ax, which in zip(axes, (0, 1)):
            pts_ = [(t, statistics.fmean(v)) for t in res.iters if (v := movement(res, m, t)[which])]
            ax.plot([t for t, _ in pts_], [100 * v if which == 0 else v for _, v in pts_], marker="o", ms=4,
                    color=color, label=LABEL[m])
    for ax in axes:
        ax.set_xticks(list(res.iters))
    finish_figure(fig, axes, ["pairs with y_gen == y, %", "weight distance from theta_0 (relative L2)"], path)


FIGURES = {"accuracy_vs_iteration.png": "accuracy vs iteration", "pipe_rate_vs_iteration.png": "pipe rate vs iteration",
           "logps_gap.png": "log-likelihood gap", "movement.png": "identical pairs and weight distance"}


# -----------------------------------------------------------------------------------------------------
# the report


def cell(values, scale=100, fmt=".1f"):
    mean, sd = mean_sd(values)
    return f"{scale * mean:{fmt}} ± {'–' if math.isnan(sd) else f'{scale * sd:{fmt}}'}"


def movement_cells(res, m, it):
    """The identical-pair and weight-distance cells: '–' where they mean nothing (theta_0 against itself,
    the SFT rows' pairs), 'n/a' where the runs did not log them."""
    if it is None:
        return ["–", "–" if m == "theta0" else "n/a"]
    shares, dists = movement(res, m, it)
    return [cell(shares) if shares else "n/a", cell(dists, scale=1, fmt=".2g") if dists else "n/a"]


def sampled_cell(recs):
    key = SAMPLED_COLUMN[0]
    return cell(r[key] for r in recs) if all(key in r for r in recs) else "n/a"


def markdown_table(res):
    head = (["method", "iter"] + [c[1] for c in COLUMNS] + [SAMPLED_COLUMN[1], "run se (avg)", "pipe rate",
                                                           "identical pairs", "weight dist"])
    lines = [f"Accuracy on the held-out eval split, %, mean ± std over {len(res.seeds)} seed(s), greedy; "
             f"{SAMPLED_COLUMN[1]}: sampled at T={SAMPLED_T:g}, the share of a prompt's K samples that are right "
             "(pass@1), n/a where the runs did not log it; run se: the per-run binomial standard error of the "
             "average (root mean square over seeds; the verdicts use the paired sigma instead); pipe rate: share "
             "of non-table answers containing '|', %; identical pairs: share of the iteration's training pairs "
             "with y_gen == y (exactly zero gradient in SPIN and in T-SPIN's first term), %; weight dist: "
             "relative L2 distance of all parameters from theta_0 after the iteration (n/a: not logged by these "
             "runs).", "", "| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m, it in table_rows(res.iters):
        recs = list(res.evals[(m, it)].values())
        cells = [cell(r.get(key, 0.0) for r in recs) for key, _ in COLUMNS] + [sampled_cell(recs)]
        cells += [f"{100 * rms(r['accuracy_se'] for r in recs):.1f}", cell(r["pipe_rate"] for r in recs)]
        cells += movement_cells(res, m, it)
        lines.append(f"| {label(res, m)} | {'–' if it is None else it} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def last_iteration_verdicts(res):
    """Every self-play method at the last iteration against theta_0 and the two SFT rows, greedy and
    sampled: {method: {other row: {'greedy': c, 't0.6': c}}}."""
    last, o = res.iters[-1], res.outcomes
    return {m: {other: both(o[(m, last)], o[(other, None)]) for other in SFT_ROWS} for m in SELFPLAY}


def verdict_lines(res, found):
    lines = [f"Each self-play method after its last iteration ({res.iters[-1]}) minus each SFT row, paired per "
             "prompt (see Noise above): the difference ± 2σ in points, σ, the smallest difference the test "
             "detects, and the verdict.", "", f"| A - B | greedy | {KEYS[SAMPLED]} |", "|---|---|---|"]
    for m, by_other in found.items():
        lines += [f"| {LABEL[m]} - {label(res, other)} | {says(cs['greedy'])} | {says(cs[SAMPLED])} |"
                  for other, cs in by_other.items()]
    return lines


def compute_note(res):
    """How the equal-compute SFT baseline was matched to T-SPIN, and how close it came."""
    lines = []
    for s in res.seeds:
        tspin, spin, eq = (res.summaries[(s, m)] for m in ("tspin", "spin", "sft25eq"))
        lines.append(dict(seed=s, tspin_steps=tspin["steps"], tspin_tokens=tspin["tokens_seen"],
                          spin_tokens=spin["tokens_seen"], sft25eq_steps=eq["steps"],
                          sft25eq_batch_asked=equal_compute(tspin, tspin["config"]["data_dir"])["batch_size"],
                          sft25eq_batch_size=eq["config"]["batch_size"], sft25eq_tokens=eq["tokens_seen"],
                          ratio_to_tspin=eq["tokens_seen"] / max(1, tspin["tokens_seen"]),
                          ratio_to_spin=eq["tokens_seen"] / max(1, spin["tokens_seen"])))
    return lines


def read_times(out):
    path = Path(out) / "wall_times.json"
    return json.loads(path.read_text()) if path.exists() else {"runs": {}, "elapsed_s": float("nan"), "jobs": "?"}


def write_markdown(res, claims, found, compute, times):
    t0 = res.summaries[(res.seeds[0], "theta0")]
    md = [f"# The T-SPIN paper's experiment at 1M parameters{' (smoke size)' if res.smoke else ''}", "",
          f"Scenario {res.scenario} ({SCENARIOS.get(res.scenario, {}).get('what', 'an unnamed design')}): theta_0 = "
          f"SFT on {res.theta0['subset']}% of train for {t0['steps']} steps; self-play on the 25% subset. "
          f"Seeds {res.seeds}; self-play iterations {res.iters[0]}..{res.iters[-1]}, {res.epochs} epoch(s) each; "
          f"data {res.theta0['data_dir']}; every run answers the same {len(read_jsonl(res.theta0['eval_data']))} eval "
          f"prompts ({res.theta0['eval_data']}). Wall time of all the runs: {times['elapsed_s'] / 60:.1f} min, "
          f"{times['jobs']} at a time. Generated by `python -m experiments.report` from the runs' summary.json, "
          "metrics.jsonl and outcomes/ (what each eval prompt got); every sentence below is computed from the "
          "numbers.", "", "**Noise.** " + NOISE, "",
          "## Table 1", "", markdown_table(res), "",
          "## Figures", ""]
    for png, alt in FIGURES.items():
        md += [f"![{alt}]({png})", ""]
    md += ["## Verdicts", ""] + verdict_lines(res, found) + [""]
    md += ["## The three claims", ""]
    md += [c["text"] + "\n" for c in claims]
    md += ["## How far the self-play runs moved", ""] + moved_text(res) + [""]
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
    md += ["", "## Runs", "", f"Wall time of each run, {times['jobs']} run(s) sharing the cores at a time.", "",
           "| run | wall time (s) |", "|---|---|"]
    md += [f"| {k} | {v:.0f} |" for k, v in sorted(times["runs"].items())]
    (res.out / "report.md").write_text("\n".join(md) + "\n")


def summary_numbers(res):
    rows = []
    for m, it in table_rows(res.iters):
        recs = list(res.evals[(m, it)].values())
        row = dict(method=m, label=label(res, m), iter=it, seeds=len(recs))
        for key, name in COLUMNS + [("pipe_rate", "pipe_rate")]:
            mean, sd = mean_sd(r.get(key, 0.0) for r in recs)
            row[name] = dict(mean=mean, sd=sd)
        row["accuracy_se"] = rms(r["accuracy_se"] for r in recs)
        sampled = [r[SAMPLED_COLUMN[0]] for r in recs if SAMPLED_COLUMN[0] in r]  # where every seed logged it
        row[SAMPLED_COLUMN[1]] = dict(zip(("mean", "sd"), mean_sd(sampled))) if len(sampled) == len(recs) else None
        shares, dists = movement(res, m, it) if it is not None else ([], [])
        row["identical_share"] = dict(zip(("mean", "sd"), mean_sd(shares))) if shares else None
        row["weight_dist"] = dict(zip(("mean", "sd"), mean_sd(dists))) if dists else None
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


def write(out, seeds=None):
    """The report of the finished runs under `out` (all finished seeds unless `seeds` is given)."""
    out = Path(out)
    done = finished_seeds(out)
    seeds = list(seeds) if seeds is not None else done
    missing = sorted(set(seeds) - set(done))
    if not seeds or missing:
        sys.exit(f"report: no finished runs of seed(s) {missing or 'any'} under {out} (a seed needs all of "
                 f"{', '.join(RUNS)} with their summary.json)")
    res = collect(out, seeds)
    claims = [claim_iterations(res), claim_data(res), claim_gap(res)]
    found = last_iteration_verdicts(res)
    compute = compute_note(res)
    times = read_times(out)
    iteration_figure(out / "accuracy_vs_iteration.png", res, "accuracy", "held-out accuracy, %")
    iteration_figure(out / "pipe_rate_vs_iteration.png", res, "pipe_rate", "pipe rate (non-table answers with '|'), %")
    gap_figure(out / "logps_gap.png", res)
    movement_figure(out / "movement.png", res)
    write_markdown(res, claims, found, compute, times)
    write_json(out / "summary.json", finite({
        "scenario": res.scenario, "theta0_subset": res.theta0["subset"], "seeds": seeds, "iters": res.iters,
        "selfplay_epochs": res.epochs, "smoke": res.smoke, "noise": NOISE, "table": summary_numbers(res),
        "verdicts": found, "claims": claims, "compute": compute, "wall_time_s": times}))
    for c in claims:
        print(c["text"].replace("**", ""))
    print(f"report: {out / 'report.md'}")


def main(argv=None):
    ap = argparse.ArgumentParser(description="Re-write the paper experiment's report from its finished runs.")
    ap.add_argument("out", help="the experiment's folder, e.g. runs/paper")
    ap.add_argument("--seeds", default="", help="comma-separated (default: every seed with all its runs finished)")
    args = ap.parse_args(argv)
    write(args.out, [int(s) for s in args.seeds.split(",")] if args.seeds else None)


if __name__ == "__main__":
    main()
