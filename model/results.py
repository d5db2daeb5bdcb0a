"""
The results of a self-play run, as it prints them at the end and keeps them in summary.json and
<run>/results.md: theta_0 (greedy, and sampled at the temperature that serves it best on val), then per
iteration the self-play row, its equal-compute continued-SFT row and the verdicts between the two, paired
prompt by prompt on the evaluations' outcome files (model/stats.py, the one noise model), greedy and sampled.
No torch: the experiment reports read outcomes through the same functions.
"""

from pathlib import Path

from model.files import read_json_lines
from model.log import read_metrics
from model.stats import MDD_SIGMAS, Z_TEST, paired_compare

SAMPLED_T = 0.6  # the temperature people meet the model at (sample.py's default): the sampled verdicts use it

# the printed table: headline columns only, so that it fits a 100-column terminal
HEAD_COLUMNS = [("acc", "accuracy", ".3f"), ("± se", "accuracy_se", ".3f"), ("acc@0.6", "t0.6/accuracy", ".3f"),
                ("pipe", "pipe_rate", ".3f"), ("pipe@0.6", "t0.6/pipe_rate", ".3f"),
                ("sharp", "val_t1/sharpness", ".3f"), ("lp(y)", "val_logp_y", ".2f"), ("moved", "weight_dist", ".4f")]
# results.md and summary.json: everything
FULL_COLUMNS = HEAD_COLUMNS + [
    ("pass@k 0.6", "t0.6/pass@4", ".3f"), ("acc@1.0", "t1/accuracy", ".3f"), ("eval loss", "eval_loss", ".3f"),
    ("eos", "eos_rate", ".2f"), ("eos@0.6", "t0.6/eos_rate", ".2f"), ("len", "mean_len", ".1f"),
    ("len/ref", "len_ratio", ".2f"), ("len/ref@0.6", "t0.6/len_ratio", ".2f"), ("loops", "repetition_rate", ".3f"),
    ("loops@0.6", "t0.6/repetition_rate", ".3f"), ("y_gen=y", "identical_share", ".2f"),
    ("changed", "changed_answers", ".2f"), ("val acc", "val_accuracy", ".3f"), ("val acc@0.6", "val_t0.6/accuracy", ".3f"),
    ("val lp(y)/tok", "val_logp_y_tok", ".3f")]


def iteration_rows(run_dir):
    """{iteration: its eval metrics plus the iteration's identical-pair share}; -1 is theta_0."""
    rows = {}
    for r in read_metrics(run_dir):
        if "iter" in r and ("accuracy" in r or "identical_share" in r):
            rows.setdefault(r["iter"], {}).update(r)
    return rows


# ----------------------------------------------------------------------------------------------------
# outcomes: what each prompt got in one evaluation row (written by model/selfplay.py, train_sft.py)


def outcomes_path(run_dir, row, split="eval"):
    """<run>/outcomes/<row>_<split>.jsonl; row: theta0, iter<t>, theta0_best, final (an SFT run)."""
    return Path(run_dir) / "outcomes" / f"{row}_{split}.jsonl"


def is_sampled_key(key):
    """'t0.6', 't1': a sampled temperature's outcomes (not 'task')."""
    return key[:1] == "t" and key[1:2].isdigit()


def prompt_values(lines, key="greedy", field="right"):
    """{prompt index: outcome in [0, 1]}: greedy `field` (0/1), or at a sampled key such as 't0.6' the share
    of its K samples with `field` 1 (for 'right': pass@1). field: 'right', 'pipe' or 'eos'. Prompts where the
    field is None (no checker; pipes in a table answer) or that were not sampled are left out."""
    out = {}
    for line in lines:
        if key == "greedy":
            if line.get(field) is not None:
                out[line["i"]] = float(line[field])
        elif key in line and None not in line[key][field]:
            out[line["i"]] = sum(line[key][field]) / len(line[key][field])
    return out


def compare_rows(a, b, key="greedy", field="right"):
    """A - B over the prompts both rows scored, paired and pooled over the seeds both have (model/stats.py).
    a, b: {seed: outcome lines}, or one row's lines for a single seed. None if nothing to compare."""
    a, b = (x if isinstance(x, dict) else {0: x} for x in (a, b))
    va = {s: prompt_values(lines, key, field) for s, lines in a.items()}
    vb = {s: prompt_values(lines, key, field) for s, lines in b.items()}
    seeds = sorted(va.keys() & vb.keys())
    shared = set.intersection(*(set(va[s]) & set(vb[s]) for s in seeds)) if seeds else set()
    if len(shared) < 2:
        return None
    order = sorted(shared)
    return paired_compare({s: [va[s][i] for i in order] for s in seeds}, {s: [vb[s][i] for i in order] for s in seeds})


def read_outcomes(path):
    path = Path(path)
    return read_json_lines(path) if path.exists() else None


def verdict_text(c, scale=100, unit="pts", short=False):
    """'-3.2 ± 2.3 pts (2σ; σ 1.2, detects ≥ 3.3): lower', or '...: no difference larger than 3.3 pts', in
    points (100x) by default; scale=1, unit='nats/token' for a quantity that is not a rate (2 decimals).
    `detects`: the smallest difference this design finds 80% of the time (2.84σ). short: without σ and
    the unit after the bound (the printed table's lines stay within 100 columns)."""
    d = 1 if scale == 100 else 2
    mdd = f"{scale * MDD_SIGMAS * c['sigma']:.{d}f}"
    word = c["verdict"] if c["verdict"] != "no difference" else \
        f"no difference larger than {mdd}" + ("" if short else f" {unit}")
    sigma = "" if short else f"σ {scale * c['sigma']:.{d}f}, "
    return f"{scale * c['diff']:+.{d}f} ± {scale * Z_TEST * c['sigma']:.{d}f} {unit} (2σ; {sigma}detects ≥ {mdd}): {word}"


# ----------------------------------------------------------------------------------------------------
# the table


def verdicts(run_dir, label, it):
    """The paired verdicts of iteration `it`: self-play - continued SFT, greedy and at SAMPLED_T, and the
    sampled self-play row against theta_0 at its best temperature (the free alternative)."""
    run_dir, key = Path(run_dir), f"t{SAMPLED_T:g}"
    mine, base = read_outcomes(outcomes_path(run_dir, f"iter{it}")), \
        read_outcomes(outcomes_path(run_dir / "baseline", f"iter{it}"))
    best = read_outcomes(outcomes_path(run_dir, "theta0_best"))
    out = []
    for what, other, k_a, k_b in [("continued SFT, greedy", base, "greedy", "greedy"),
                                  (f"continued SFT, T={SAMPLED_T:g}", base, key, key),
                                  (f"theta_0 at best T, T={SAMPLED_T:g}", best, key, None)]:
        if mine is None or other is None:
            continue
        if k_b is None:  # theta_0's best-temperature row holds one sampled key, whichever T won on val
            k_b = next((k for k in other[0] if is_sampled_key(k)), None) if other else None
            other = [{**line, key: line[k_b]} for line in other if k_b in line] if k_b else []
        c = compare_rows(mine, other, k_a)
        if c is not None:
            out.append(f"  {what + ':':<27}{verdict_text(c, short=True)}")
    return [f"iter {it}: {label} minus"] + out if out else []


def render(rows, base, label, columns, width=9):
    """Fixed-width rows of the given columns: theta_0, its best-temperature row, then per iteration the
    self-play row and its baseline row."""
    head = f"{'model':<22}" + "".join(f"{name:>{width}}" for name, _, _ in columns)
    lines = [head, "-" * len(head)]

    def line(name, r):
        return f"{name:<22}" + "".join(f"{format(r[k], fmt) if r.get(k) is not None else '-':>{width}}"
                                       for _, k, fmt in columns)

    for it in sorted(k for k in rows if "accuracy" in rows[k]):
        r = rows[it]
        lines.append(line("theta_0 (SFT)" if it < 0 else f"{label} iter {it}", r))
        if it < 0 and "best_t" in r:  # sampled at the temperature val chose: in the @0.6 columns
            lines.append(line(f"  theta_0 at T={r['best_t']:g}",
                              {f"t0.6/{k[5:]}": v for k, v in r.items() if k.startswith("best/")}))
        if it >= 0 and "accuracy" in base.get(it, {}):
            lines.append(line(f"  continued SFT iter {it}", base[it]))
    return lines


def results_table(run_dir, label, columns=HEAD_COLUMNS):
    """The per-iteration table and its paired verdicts. `moved`: relative weight distance from theta_0;
    `sharp`: mean per-token log-prob of the model's own samples at T=1 on val (minus its entropy: higher is
    sharper); `lp(y)`: the real answers' mean summed log-prob on val; `acc@0.6`: sampled pass@1 at temperature 0.6; the theta_0 at T row is theta_0 sampled at the
    temperature that served it best on val, in the @0.6 columns."""
    rows, base = iteration_rows(run_dir), iteration_rows(Path(run_dir) / "baseline")
    lines = render(rows, base, label, columns, 9 if columns is HEAD_COLUMNS else 12)
    found = [v for it in sorted(k for k in rows if k >= 0 and "accuracy" in rows[k]) for v in verdicts(run_dir, label, it)]
    return "\n".join(lines + ([""] + found if found else []))
