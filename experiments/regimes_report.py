"""
The regime map's report, from the finished runs alone (each run's summary.json and outcomes/): per scenario,
theta_0, theta_0 sampled at its best temperature, and each method at the setting and iteration chosen on the
validation split; their paired verdicts on eval, greedy and at T=0.6; how the answers changed (sharpness,
log p(y), pipes, EOS, length, loops) and how far the model moved; the seed claims judged again; then the
whole grid. Writes <out>/report.md, <out>/summary.json and <out>/regimes.png (the heatmap, greedy and T=0.6).

    python -m experiments.regimes_report runs/regimes

Statistics: the paper report's (experiments/report.py, NOISE): rows paired per prompt on their outcome files,
pooled over the seeds (model/stats.py); every verdict states sigma and the smallest detectable difference.
"""

import argparse
import json
import math
import statistics
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works headless
import matplotlib.pyplot as plt  # noqa: E402

from experiments.plan import SCENARIOS, SETTINGS, THETA0_STEPS, theta0_of  # noqa: E402
from experiments.report import KEYS, NA, NOISE, SAMPLED, finite, mean_sd, pair  # noqa: E402  (one noise model)
from model.files import write_json  # noqa: E402
from model.results import is_sampled_key, outcomes_path, read_outcomes, verdict_text  # noqa: E402
from model.stats import paired_compare  # noqa: E402

METHODS = ("continued SFT", "SPIN", "T-SPIN")
SELFPLAY = ("SPIN", "T-SPIN")
BEST = "theta_0 at best T"  # theta_0 sampled at the temperature that served it best on val: in the @0.6 columns
SHARP = "val_t1/sharpness"  # mean per-token log-prob of the model's own samples at T=1 on val minus its entropy
# per row: (column, metrics key, format; '%': in points)
COLUMNS = (("val acc", "val_accuracy", "%"), ("eval acc", "accuracy", "%"), ("acc@0.6", f"{SAMPLED}/accuracy", "%"),
           ("sharp", SHARP, ".3f"), ("val lp(y)", "val_logp_y", ".2f"), ("pipe", "pipe_rate", ".3f"),
           ("pipe@0.6", f"{SAMPLED}/pipe_rate", ".3f"), ("eos", "eos_rate", ".2f"), ("eos@0.6", f"{SAMPLED}/eos_rate", ".2f"),
           ("len/ref", "len_ratio", ".2f"), ("loops", "repetition_rate", ".3f"),
           ("loops@0.6", f"{SAMPLED}/repetition_rate", ".3f"), ("moved", "weight_dist", ".4f"),
           ("y_gen=y", "identical_share", ".2f"))
GRID_COLUMNS = tuple(c for c in COLUMNS if c[0] in ("val acc", "eval acc", "acc@0.6", "sharp", "moved", "pipe",
                                                    "len/ref", "val lp(y)"))
# (A, B) of the accuracy verdicts, each greedy and at T=0.6; self-play also against theta_0 at its best T
PAIRS = [("SPIN", "continued SFT"), ("T-SPIN", "continued SFT"), ("continued SFT", "theta_0"),
         ("SPIN", "theta_0"), ("T-SPIN", "theta_0"), ("SPIN", BEST), ("T-SPIN", BEST)]
HEATMAP = [("SPIN", "continued SFT"), ("T-SPIN", "continued SFT"), ("continued SFT", "theta_0")]


def collect(out):
    """-> (theta0[scenario][seed], cands[scenario][method][(setting, iteration)][seed]), each an entry
    dict(row=its eval metrics (val_* included), dir=the run folder, name=its outcomes row). The continued-SFT
    candidates are the baselines inside the T-SPIN runs; theta_0 comes from the run that carries the
    baseline where there is one (that run also sampled theta_0 at its best temperature)."""
    theta0, cands = {}, {}
    for path in sorted(Path(out).glob("s*/*/*/summary.json")):
        seed, scenario, setting = int(path.parts[-4][1:]), path.parts[-3], path.parts[-2]
        if scenario not in SCENARIOS or setting not in SETTINGS:
            continue
        summary, run, by_method = json.loads(path.read_text()), path.parent, cands.setdefault(scenario, {})
        for it, row in ((int(k), v) for k, v in summary["iterations"].items() if "accuracy" in v):
            entry = dict(row=row, dir=run, name="theta0" if it < 0 else f"iter{it}")
            if it >= 0:
                by_method.setdefault(SETTINGS[setting][0], {}).setdefault((setting, it), {})[seed] = entry
            elif summary.get("baseline") or seed not in theta0.get(scenario, {}):
                theta0.setdefault(scenario, {})[seed] = entry
        if summary.get("baseline"):
            name = f"sft_lr{summary['baseline']['lr']:.0e}"
            for it, row in ((int(k), v) for k, v in summary["baseline"]["iterations"].items()
                            if "accuracy" in v and int(k) >= 0):
                by_method.setdefault("continued SFT", {}).setdefault((name, it), {})[seed] = dict(
                    row=row, dir=run / "baseline", name=f"iter{it}")
    return theta0, cands


def choose(candidates, seeds):
    """The (setting, iteration) with the best mean val accuracy over the seeds (finished for every seed)."""
    full = {k: v for k, v in candidates.items() if all(s in v for s in seeds)}
    if not full:
        return None
    return max(full, key=lambda k: (statistics.fmean(full[k][s].get("val_accuracy", float("nan")) for s in seeds),
                                    -k[1]))


def best_entry(e):
    """theta_0's best-temperature row: its best/* metrics in the T=0.6 slots, val_best/accuracy as its val acc."""
    row = {f"{SAMPLED}/{k[5:]}": v for k, v in e["row"].items() if k.startswith("best/")}
    return dict(e, name="theta0_best", row=dict(row, val_accuracy=e["row"].get("val_best/accuracy")))


def pick_rows(theta0, cands, seeds):
    """{row name: dict(setting, iteration, entries={seed: entry})}: theta_0, its best T, each method's choice."""
    rows = {"theta_0": dict(setting="-", iteration=None, entries=theta0)}
    if all("best_t" in theta0[s]["row"] for s in seeds):
        temps = ", ".join(sorted({f"{theta0[s]['row']['best_t']:g}" for s in seeds}))
        rows[BEST] = dict(setting=f"T={temps}", iteration=None, entries={s: best_entry(e) for s, e in theta0.items()})
    for method in METHODS:
        found = cands.get(method, {})
        pick = choose({k: {s: e["row"] for s, e in v.items()} for k, v in found.items()}, seeds)
        if pick is not None:
            rows[method] = dict(setting=pick[0], iteration=pick[1], entries=found[pick])
    return rows


def lines_of(entries):
    """{seed: outcome lines, or None where the run wrote none}; theta_0's best-temperature row holds one
    sampled key, whichever T won on val: it is paired as the T=0.6 outcomes of the others are."""
    out = {}
    for s, e in entries.items():
        lines = read_outcomes(outcomes_path(e["dir"], e["name"]))
        if lines is not None and e["name"] == "theta0_best":
            lines = [{**ln, SAMPLED: ln[k]} for ln in lines for k in list(ln) if is_sampled_key(k)]
        out[s] = lines
    return out


def entry(a, b, key, field, c):
    """One comparison, machine-readable; verdict None where it could not be computed."""
    keep = ("diff", "sigma", "mdd", "verdict", "n_seeds", "n_prompts")
    return dict(a=a, b=b, key=key, field=field, **({k: c[k] for k in keep} if c else dict(verdict=None)))


def seed_compare(a, b, seeds):
    """A - B of the sharpness, which is one number per run (no per-prompt values): paired by seed, the seeds
    as the units of stats.paired_compare; with 1 seed the difference alone (no sigma, no verdict)."""
    va, vb = ([r["entries"][s]["row"].get(SHARP) for s in seeds] for r in (a, b))
    if None in va + vb:
        return None
    if len(seeds) < 2:
        return dict(diff=va[0] - vb[0], sigma=None, mdd=None, verdict=None, n_seeds=1, n_prompts=0)
    return paired_compare({0: va}, {0: vb})


def find(comps, a, b, key, field="right"):
    return next((c for c in comps if (c["a"], c["b"], c["key"], c["field"]) == (a, b, key, field)), None)


def say(c):
    if c and c["field"] == SHARP and c.get("diff") is not None and c["verdict"] is None:
        return f"{c['diff']:+.3f} nats/token (one number per run: no σ with 1 seed)"
    if c is None or c["verdict"] is None:
        return NA
    return verdict_text(c, scale=1, unit="nats/token") if c["field"] == SHARP else verdict_text(c)


def mean_or_none(values):
    return None if None in values else statistics.fmean(values)


def summarise(row, seeds):
    by = [row["entries"][s]["row"] for s in seeds]
    out = dict(setting=row["setting"], iteration=row["iteration"],
               by_seed={str(s): r.get("accuracy") for s, r in zip(seeds, by)})
    out.update({key: mean_or_none([r.get(key) for r in by]) for _, key, _ in COLUMNS})
    out["std"] = mean_sd(out["by_seed"].values())[1] if None not in out["by_seed"].values() else None
    return out


def grid(cands, seeds):
    """Every setting and iteration of each method, means over the seeds: what the choice on val was made from."""
    out = {}
    for method in METHODS:
        full = {k: v for k, v in sorted(cands.get(method, {}).items()) if all(s in v for s in seeds)}
        out[method] = {f"{k[0]} iter {k[1]}": {key: mean_or_none([v[s]["row"].get(key) for s in seeds])
                                               for _, key, _ in GRID_COLUMNS} for k, v in full.items()}
    return out


def claims(cands, rows, lines, seeds):
    """The seed claims, judged again: self-play (each method against theta_0 and continued SFT) answers
    with fewer pipes and more EOS (paired per prompt), more confidently (sharpness, paired by seed);
    T-SPIN - SPIN at iteration 1 (paired per prompt)."""
    out = []
    for name, field, want in (("fewer pipe characters", "pipe", "lower"), ("more complete sentences (EOS rate)",
                              "eos", "higher"), ("more confidently (sharpness)", SHARP, "higher")):
        comps = []
        for m, b in ((m, b) for m in SELFPLAY for b in ("theta_0", "continued SFT") if m in rows and b in rows):
            if field == SHARP:
                comps.append(entry(m, b, "T=1 on val", field, seed_compare(rows[m], rows[b], seeds)))
            else:
                comps += [entry(m, b, k, field, pair(lines[m], lines[b], k, field)) for k in KEYS]
        out.append(dict(claim=name, want=want, comparisons=comps))
    at1 = {m: cands.get(m, {}).get((rows[m]["setting"], 1)) if m in rows else None for m in SELFPLAY}
    comps = [entry("T-SPIN iter 1", "SPIN iter 1", k, "right",
                   pair(lines_of(at1["T-SPIN"]), lines_of(at1["SPIN"]), k) if all(at1.values()) else None)
             for k in KEYS]
    out.append(dict(claim="T-SPIN steadier than SPIN (accuracy at iteration 1)", want="higher", comparisons=comps))
    for c in out:
        c["holds_in"] = [f"{x['a']} - {x['b']} ({KEYS.get(x['key'], x['key'])})" for x in c["comparisons"]
                         if x["verdict"] == c["want"]]
    return out


def analyse(out):
    theta0, cands = collect(out)
    result = {}
    for scenario in [s for s in SCENARIOS if s in cands and s in theta0]:
        seeds = sorted(theta0[scenario])
        rows = pick_rows(theta0[scenario], cands[scenario], seeds)
        lines = {name: lines_of(r["entries"]) for name, r in rows.items()}
        comps = [entry(a, b, k, "right", pair(lines[a], lines[b], k)) for a, b in PAIRS if a in rows and b in rows
                 for k in KEYS if b != BEST or k == SAMPLED]
        comps += [entry(m, "theta_0", "T=1 on val", SHARP, seed_compare(rows[m], rows["theta_0"], seeds))
                  for m in METHODS if m in rows]
        result[scenario] = dict(seeds=seeds, rows={n: summarise(r, seeds) for n, r in rows.items()},
                                comparisons=comps, claims=claims(cands[scenario], rows, lines, seeds),
                                grid=grid(cands[scenario], seeds))
    return result


def verdict_line(scenario, res):
    comps = res["comparisons"]
    parts = [f"{a} - {b}: " + "; ".join(f"{KEYS[k]} {say(find(comps, a, b, k))}" for k in KEYS) for a, b in HEATMAP]
    return f"**{scenario}**: " + ". ".join(parts) + "."


def sharper_line(res):
    """Sharper or flatter? Each method's sharpness minus theta_0's, and whether it goes with its accuracy change."""
    comps, parts = res["comparisons"], []
    for m in METHODS:
        c = find(comps, m, "theta_0", "T=1 on val", SHARP)
        if c is None or c.get("diff") is None:
            continue
        acc = []
        for k, v in ((k, (find(comps, m, "theta_0", k) or {}).get("verdict")) for k in KEYS):
            goes = "n/a" if v is None else "unchanged" if v == "no difference" else \
                "goes with it" if (v == "higher") == (c["diff"] > 0) else "goes against it"
            acc.append(f"{KEYS[k]} accuracy {v or 'n/a'} ({goes})")
        word = {"higher": "sharper", "lower": "flatter", "no difference": "neither"}.get(c["verdict"], "sharper"
                                                                                        if c["diff"] > 0 else "flatter")
        parts.append(f"{m} {word}, {say(c)}; {', '.join(acc)}")
    return "**Sharper or flatter?** (sharpness minus theta_0's) " + ("; ".join(parts) or "not logged") + "."


def heatmap(result, path):
    """Two panels, greedy and T=0.6: scenario x comparison, colour = accuracy difference in points, each
    cell the difference ± 2σ and the verdict; the last column is continued SFT's own gain, for scale."""
    scenarios = list(result)
    fig, axes = plt.subplots(1, 2, figsize=(12, 2.0 + 0.9 * len(scenarios)), squeeze=False)
    for ax, key in zip(axes[0], KEYS):
        cs = [[find(result[s]["comparisons"], a, b, key) for a, b in HEATMAP] for s in scenarios]
        vals = [[100 * c["diff"] if c and c["verdict"] else math.nan for c in row] for row in cs]
        lim = max([abs(v) for row in vals for v in row if not math.isnan(v)] + [1.0])
        im = ax.imshow(vals, cmap="RdBu", vmin=-lim, vmax=lim, aspect="auto")
        for i, row in enumerate(cs):
            for j, c in enumerate(row):
                text = f"{100 * c['diff']:+.1f} ± {200 * c['sigma']:.1f}\n{c['verdict']}" if c and c["verdict"] else "n/a"
                ax.text(j, i, text, ha="center", va="center", fontsize=8)
        ax.set_xticks(range(len(HEATMAP)), [f"{a}\n- {b}" for a, b in HEATMAP], fontsize=8)
        ax.set_yticks(range(len(scenarios)), scenarios, fontsize=9)
        ax.set_title(f"eval accuracy, {KEYS[key]}: paired difference ± 2σ, points\n(each method at its setting "
                     "chosen on val)", fontsize=9)
        fig.colorbar(im, ax=ax, label="points")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def cell(value, fmt):
    missing = value is None or (isinstance(value, float) and math.isnan(value))
    return "-" if missing else f"{100 * value:.1f}" if fmt == "%" else format(value, fmt)


def scenario_section(scenario, res):
    spec = SCENARIOS[scenario]
    lines = ["", f"## {scenario}: {spec['what']}", "",
             f"theta_0: SFT on {spec['theta0_subset']}% of train for {THETA0_STEPS[theta0_of(scenario)]} steps (chat "
             f"template); self-play on the 25% subset in the {spec['template']} template; seeds {res['seeds']}.", "",
             "| row | chosen on val | " + " | ".join(c[0] for c in COLUMNS) + " |", "|---" * (2 + len(COLUMNS)) + "|"]
    for name, row in res["rows"].items():
        chosen = row["setting"] if row["iteration"] is None else f"{row['setting']}, iter {row['iteration']}"
        cells = [cell(row[k], f) for _, k, f in COLUMNS]
        if row["std"] is not None and not math.isnan(row["std"]):
            cells[1] += f" ± {100 * row['std']:.1f}"
        lines.append(f"| {name} | {chosen} | " + " | ".join(cells) + " |")
    lines += ["", f"| A - B, eval accuracy | greedy | {KEYS[SAMPLED]} |", "|---|---|---|"]
    for a, b in PAIRS:
        cs = [find(res["comparisons"], a, b, k) for k in KEYS]
        if any(cs):
            lines.append(f"| {a} - {b} | " + " | ".join(say(c) if c else "–" for c in cs) + " |")
    return lines + ["", sharper_line(res)]


def claims_section(result):
    lines = ["", "## The seed claims, judged", "", "Per claim and scenario, its comparisons (paired per prompt on "
             "the eval outcomes, greedy and at T=0.6; the sharpness, one number per run, paired by seed) and where "
             "the verdict goes the claimed way."]
    for k, claim in enumerate(next(iter(result.values()))["claims"]):
        keys = list(dict.fromkeys(x["key"] for x in claim["comparisons"]))
        lines += ["", f"**{claim['claim']}** (claimed: {claim['want']})", "",
                  "| scenario | A - B | " + " | ".join(KEYS.get(key, key) for key in keys) + " |",
                  "|---" * (2 + len(keys)) + "|"]
        for scenario, res in result.items():
            comps = res["claims"][k]["comparisons"]
            for a, b in dict.fromkeys((x["a"], x["b"]) for x in comps):
                lines.append(f"| {scenario} | {a} - {b} | "
                             + " | ".join(say(find(comps, a, b, key, comps[0]["field"])) for key in keys) + " |")
        lines += ["", "Holds in: " + "; ".join(f"{s}: {', '.join(r['claims'][k]['holds_in']) or 'none'}"
                                              for s, r in result.items()) + "."]
    return lines + ["", "**T-SPIN on 25% >= SFT on 100%**: not answerable from the map, which has no row of SFT "
                    "on 100% at equal compute; `make paper` answers it (its claim 2)."]


def render(result, times):
    lines = ["# When does self-play help a tiny model? The regime map", "",
             "Each method's setting (learning rate, remedy, and whether to stop after iteration 0 or 1) was chosen "
             "on the **validation split** (`val.jsonl`, greedy, the `val acc` column); every other number is on the "
             "**eval split**, which chose nothing. Means over the seeds (`eval acc` ± their std). `@0.6`: sampled "
             f"at T=0.6, K samples per prompt (accuracy: pass@1); the `{BEST}` row is theta_0 sampled at the "
             "temperature that served it best on val, in those columns (its val acc: its pass@1 there). `sharp`: "
             "mean per-token log-prob of the model's own samples at T=1 on val minus its entropy (higher: sharper); "
             "`val lp(y)`: mean summed log-prob of the real answers on val; `moved`: relative L2 distance of the "
             "weights from theta_0; `y_gen=y`: share of self-play pairs whose generated answer equals the real one.", "", "**Noise.** " + NOISE, "",
             "![regime map](regimes.png)", "", "## Verdicts", ""]
    lines += [verdict_line(s, r) for s, r in result.items()]
    for scenario, res in result.items():
        lines += scenario_section(scenario, res)
    lines += claims_section(result)
    lines += ["", "## The whole grid", "", "Every setting and iteration, mean over the seeds: what the choice on val "
              "was made from.", ""]
    for scenario, res in result.items():
        lines += [f"### {scenario}", "", "| method | setting | " + " | ".join(c[0] for c in GRID_COLUMNS) + " |",
                  "|---" * (2 + len(GRID_COLUMNS)) + "|"]
        lines += [f"| {method} | {name} | " + " | ".join(cell(v[k], f) for _, k, f in GRID_COLUMNS) + " |"
                  for method, grid_ in res["grid"].items() for name, v in grid_.items()] + [""]
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
    write_json(out / "summary.json", finite(result))
    (out / "report.md").write_text(render(result, times), encoding="utf-8")
    print(f"\nwrote {out / 'report.md'}, {out / 'regimes.png'} and {out / 'summary.json'}")
    for scenario, res in result.items():
        print(verdict_line(scenario, res))


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description="Re-write the regime map's report from its finished runs")
    ap.add_argument("out", nargs="?", default="runs/regimes", help="the map's folder")
    write(ap.parse_args().out)
