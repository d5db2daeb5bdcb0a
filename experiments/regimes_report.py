"""
The regime map's report, from the finished runs alone (each run's summary.json): per scenario, theta_0 and
each method at the setting chosen on the validation split (lr, remedy, and the iteration to stop after),
its eval accuracy over the seeds, its difference to continued SFT with that difference's noise, how the
answers changed (pipe, length, loops, EOS), how far the model moved and what happened to log p(y) on val;
then the whole grid. Writes <out>/report.md, <out>/summary.json and <out>/regimes.png (the heatmap).

    python -m experiments.regimes_report runs/regimes

Statistics: those of the paper's report (experiments/report.py, NOISE): a difference between two rows is
paired by seed (same theta_0), sigma = sqrt(sd^2 / n + se_A^2 + se_B^2), and within 2 sigma is "no
difference".
"""

import argparse
import json
import math
import statistics
from pathlib import Path

import matplotlib

from model.files import write_json  # noqa: E402

matplotlib.use("Agg")  # files only: works headless
import matplotlib.pyplot as plt  # noqa: E402

from experiments.plan import SCENARIOS, SETTINGS, THETA0_STEPS, theta0_of  # noqa: E402
from experiments.report import NOISE, compare, mean_sd, pts  # noqa: E402  (one noise model for both reports)

METHODS = ("continued SFT", "SPIN", "T-SPIN")
SELFPLAY = ("SPIN", "T-SPIN")
CHANGE_KEYS = (("pipe", "pipe_rate", ".3f"), ("len/ref", "len_ratio", ".2f"), ("loops", "repetition_rate", ".3f"),
               ("eos", "eos_rate", ".2f"), ("moved", "weight_dist", ".4f"), ("y_gen=y", "identical_share", ".2f"))


def collect(out):
    """-> (theta0[scenario][seed], cands[scenario][method][(setting, iteration)][seed]): eval records that
    carry val_* metrics too. The continued-SFT candidates are the baselines inside the self-play runs."""
    theta0, cands = {}, {}
    for path in sorted(Path(out).glob("s*/*/*/summary.json")):
        seed, scenario, setting = int(path.parts[-4][1:]), path.parts[-3], path.parts[-2]
        if scenario not in SCENARIOS or setting not in SETTINGS:
            continue
        summary = json.loads(path.read_text())
        method = SETTINGS[setting][0]
        for it, row in summary["iterations"].items():
            if "accuracy" not in row:
                continue
            if int(it) < 0:
                theta0.setdefault(scenario, {})[seed] = row
            else:
                cands.setdefault(scenario, {}).setdefault(method, {}).setdefault((setting, int(it)), {})[seed] = row
        if summary.get("baseline"):
            name = f"sft_lr{summary['baseline']['lr']:.0e}"
            for it, row in summary["baseline"]["iterations"].items():
                if int(it) >= 0 and "accuracy" in row:
                    cands[scenario].setdefault("continued SFT", {}).setdefault((name, int(it)), {})[seed] = row
    return theta0, cands


def choose(candidates, seeds):
    """The (setting, iteration) with the best mean val accuracy over the seeds (finished for every seed)."""
    full = {k: v for k, v in candidates.items() if all(s in v for s in seeds)}
    if not full:
        return None
    return max(full, key=lambda k: (statistics.fmean(full[k][s].get("val_accuracy", float("nan")) for s in seeds),
                                    -k[1]))


def analyse(out):
    theta0, cands = collect(out)
    result = {}
    for scenario in [s for s in SCENARIOS if s in cands and s in theta0]:
        seeds = sorted(theta0[scenario])
        rows = {"theta_0": dict(setting="-", by_seed=theta0[scenario])}
        for method in METHODS:
            pick = choose(cands[scenario].get(method, {}), seeds)
            if pick is not None:
                rows[method] = dict(setting=pick[0], iteration=pick[1], by_seed=cands[scenario][method][pick])
        for row in rows.values():
            by = [row["by_seed"][s] for s in seeds]
            row["accuracy"], row["std"] = mean_sd(r["accuracy"] for r in by)
            row["val_accuracy"] = statistics.fmean(r.get("val_accuracy", float("nan")) for r in by)
            row["run_se"] = statistics.fmean(r["accuracy_se"] for r in by)
            for _, key, _ in CHANGE_KEYS:
                row[key] = statistics.fmean(r[key] for r in by) if all(key in r for r in by) else None
            row["val_logp_y"] = statistics.fmean(r.get("val_logp_y", float("nan")) for r in by)
        base = rows.get("continued SFT")
        for method in SELFPLAY:
            if method in rows and base:
                rows[method]["vs_sft"] = compare(rows[method]["by_seed"], base["by_seed"])
        for method in METHODS:  # the T-SPIN paper's claim compares with theta_0 trained on 100%
            if method in rows:
                rows[method]["vs_theta0"] = compare(rows[method]["by_seed"], rows["theta_0"]["by_seed"])
        grid = {method: {f"{k[0]} iter {k[1]}": dict(
            val=statistics.fmean(v[s].get("val_accuracy", float("nan")) for s in seeds),
            eval=statistics.fmean(v[s]["accuracy"] for s in seeds),
            moved=statistics.fmean(v[s].get("weight_dist", 0.0) for s in seeds),
            pipe=statistics.fmean(v[s]["pipe_rate"] for s in seeds),
            len_ratio=statistics.fmean(v[s]["len_ratio"] for s in seeds),
            val_logp_y=statistics.fmean(v[s].get("val_logp_y", float("nan")) for s in seeds))
            for k, v in sorted(cands[scenario].get(method, {}).items()) if all(s in v for s in seeds)}
            for method in METHODS}
        for row in rows.values():
            row["by_seed"] = {str(s): row["by_seed"][s]["accuracy"] for s in seeds}
        result[scenario] = dict(seeds=seeds, rows=rows, grid=grid)
    return result


def verdict_line(scenario, res):
    rows, parts = res["rows"], []
    for method in SELFPLAY:
        if "vs_sft" in rows.get(method, {}):
            v = rows[method]["vs_sft"]
            parts.append(f"{method} {pts(v['diff'])} ± {200 * v['sigma']:.1f} (2σ) vs continued SFT: {v['verdict']}")
    if "vs_theta0" in rows.get("continued SFT", {}):
        v = rows["continued SFT"]["vs_theta0"]
        parts.append(f"continued SFT {pts(v['diff'])} ± {200 * v['sigma']:.1f} vs theta_0: {v['verdict']}")
    return f"**{scenario}**: " + "; ".join(parts) + "."


def heatmap(result, path):
    """scenario x method, colour = eval accuracy gain over continued SFT in points, written in each cell
    with its 2 sigma; the last column is continued SFT's own gain over theta_0, for scale."""
    scenarios = list(result)
    cols = [("SPIN", "vs_sft", "SPIN\n- continued SFT"), ("T-SPIN", "vs_sft", "T-SPIN\n- continued SFT"),
            ("continued SFT", "vs_theta0", "continued SFT\n- theta_0")]
    vals = [[100 * result[s]["rows"].get(m, {}).get(k, {}).get("diff", math.nan) for m, k, _ in cols] for s in scenarios]
    lim = max([abs(v) for row in vals for v in row if not math.isnan(v)] + [1.0])
    fig, ax = plt.subplots(figsize=(7, 1.1 + 0.9 * len(scenarios)))
    im = ax.imshow(vals, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
    for i, s in enumerate(scenarios):
        for j, (m, k, _) in enumerate(cols):
            v = result[s]["rows"].get(m, {}).get(k)
            text = "-" if v is None else f"{100 * v['diff']:+.1f} ± {200 * v['sigma']:.1f}\n{v['verdict']}"
            ax.text(j, i, text, ha="center", va="center", fontsize=8)
    ax.set_xticks(range(len(cols)), [c[2] for c in cols], fontsize=8)
    ax.set_yticks(range(len(scenarios)), scenarios, fontsize=9)
    fig.colorbar(im, ax=ax, label="eval accuracy difference (points)")
    ax.set_title("regime map: each method at its setting chosen on val; ± 2σ", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def versus(v):
    return "-" if v is None else f"{pts(v['diff'])} ± {200 * v['sigma']:.1f}: {v['verdict']}"


def cell(value, fmt):
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else format(value, fmt)


def render(out, result, times):
    lines = ["# When does self-play help a tiny model? The regime map", "",
             "Each method's setting (learning rate, remedy, and whether to stop after iteration 0 or 1) was chosen "
             "on the **validation split** (`val.jsonl`, the `val acc` column); every other number is on the "
             "**eval split**, which chose nothing. Accuracy is the mean over the seeds ± their std; `run se` is "
             "one run's binomial standard error. `moved`: relative L2 distance of the weights from theta_0; "
             "`y_gen=y`: share of self-play pairs whose generated answer equals the real one; `val lp(y)`: mean "
             "summed log-prob of the real answers on val (theta_0's on its row).", "", NOISE,
             "", "![regime map](regimes.png)", "", "## Verdicts", ""]
    lines += [verdict_line(s, r) for s, r in result.items()]
    for scenario, res in result.items():
        spec = SCENARIOS[scenario]
        lines += ["", f"## {scenario}: {spec['what']}", "",
                  f"theta_0: SFT on {spec['theta0_subset']}% of train for {THETA0_STEPS[theta0_of(scenario)]} steps "
                  f"(chat template); self-play on the 25% subset in the {spec['template']} template; seeds "
                  f"{res['seeds']}.", "",
                  "| row | chosen on val | val acc | eval acc | run se | vs continued SFT (2σ) | vs theta_0 (2σ) | "
                  + " | ".join(c[0] for c in CHANGE_KEYS) + " | val lp(y) |",
                  "|---" * (8 + len(CHANGE_KEYS)) + "|"]
        for name, row in res["rows"].items():
            chosen = "-" if name == "theta_0" else f"{row['setting']}, iter {row['iteration']}"
            vs_sft, vs_theta0 = (versus(row.get(k)) for k in ("vs_sft", "vs_theta0"))
            lines.append(f"| {name} | {chosen} | {100 * row['val_accuracy']:.1f} | {100 * row['accuracy']:.1f} ± "
                         f"{100 * row['std']:.1f} | {100 * row['run_se']:.1f} | {vs_sft} | {vs_theta0} | "
                         + " | ".join(cell(row[k], f) for _, k, f in CHANGE_KEYS)
                         + f" | {cell(row['val_logp_y'], '.2f')} |")
        lines += ["", verdict_line(scenario, res)]
    lines += ["", "## The whole grid", "",
              "Every setting and iteration, mean over the seeds: what the choice on val was made from.", ""]
    for scenario, res in result.items():
        lines += [f"### {scenario}", "", "| method | setting | val acc | eval acc | moved | pipe | len/ref | val lp(y) |",
                  "|---|---|---|---|---|---|---|---|"]
        for method, grid in res["grid"].items():
            for name, g in grid.items():
                lines.append(f"| {method} | {name} | {100 * g['val']:.1f} | {100 * g['eval']:.1f} | {g['moved']:.4f} | "
                             f"{g['pipe']:.3f} | {g['len_ratio']:.2f} | {cell(g['val_logp_y'], '.2f')} |")
        lines.append("")
    if times:
        lines += [f"Wall time of all the runs: {times.get('elapsed_s', 0) / 60:.0f} min, {times.get('jobs', '?')} "
                  f"run(s) at a time ({len(times.get('runs', {}))} runs; per run in wall_times.json)."]
    return "\n".join(lines) + "\n"


def write(out):
    out = Path(out)
    result = analyse(out)
    if not result:
        raise SystemExit(f"{out}: no finished runs of the regime map")
    times_path = out / "wall_times.json"
    times = json.loads(times_path.read_text()) if times_path.exists() else {}
    heatmap(result, out / "regimes.png")
    write_json(out / "summary.json", result)
    (out / "report.md").write_text(render(out, result, times), encoding="utf-8")
    print(f"\nwrote {out / 'report.md'}, {out / 'regimes.png'} and {out / 'summary.json'}")
    for scenario, res in result.items():
        print(verdict_line(scenario, res))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Re-write the regime map's report from its finished runs")
    ap.add_argument("out", nargs="?", default="runs/regimes", help="the map's folder")
    write(ap.parse_args().out)
