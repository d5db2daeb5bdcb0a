"""
The results table a self-play run prints at the end and keeps in summary.json: theta_0, then per iteration
the self-play row, its equal-compute continued-SFT row and the verdict between the two.
"""

from pathlib import Path

from model.log import read_metrics

TABLE_COLUMNS = [("accuracy", "accuracy", ".3f"), ("± se", "accuracy_se", ".3f"), ("pipe", "pipe_rate", ".3f"),
                 ("eval loss", "eval_loss", ".3f"), ("eos", "eos_rate", ".2f"), ("len", "mean_len", ".1f"),
                 ("len/ref", "len_ratio", ".2f"), ("loops", "repetition_rate", ".3f"),
                 ("y_gen=y", "identical_share", ".2f"), ("moved", "weight_dist", ".4f"),
                 ("changed", "changed_answers", ".2f"), ("val acc", "val_accuracy", ".3f"),
                 ("val lp(y)", "val_logp_y", ".2f")]


def iteration_rows(run_dir):
    """{iteration: its eval metrics plus the iteration's identical-pair share}; -1 is theta_0."""
    rows = {}
    for r in read_metrics(run_dir):
        if "iter" in r and ("accuracy" in r or "identical_share" in r):
            rows.setdefault(r["iter"], {}).update(r)
    return rows


def results_table(run_dir, label):
    """The per-iteration table: theta_0, then each iteration's held-out metrics, each self-play row
    followed by its equal-compute continued-SFT row and the difference between the two, so that a reader
    sees at once whether self-play beat it. `moved`: relative weight distance from theta_0; `changed`:
    share of eval answers that changed since the previous row of the same method."""
    rows, base = iteration_rows(run_dir), iteration_rows(Path(run_dir) / "baseline")
    head = f"{'model':<22}" + "".join(f"{name:>10}" for name, _, _ in TABLE_COLUMNS)
    lines = [head, "-" * len(head)]

    def line(name, r):
        cells = "".join(f"{format(r[k], fmt) if r.get(k) is not None else '-':>10}" for _, k, fmt in TABLE_COLUMNS)
        return f"{name:<22}{cells}"

    verdicts = []
    for it in sorted(k for k in rows if "accuracy" in rows[k]):
        r = rows[it]
        lines.append(line("theta_0 (SFT)" if it < 0 else f"{label} iter {it}", r))
        b = base.get(it)
        if it >= 0 and b and "accuracy" in b:
            lines.append(line(f"  continued SFT iter {it}", b))
            diff = r["accuracy"] - b["accuracy"]
            sigma = (r.get("accuracy_se", 0) ** 2 + b.get("accuracy_se", 0) ** 2) ** 0.5
            word = "no difference" if abs(diff) <= 2 * sigma else ("self-play better" if diff > 0 else "self-play worse")
            verdicts.append(f"iter {it}: {label} - continued SFT = {100 * diff:+.1f} points "
                            f"(2 sigma = {200 * sigma:.1f}): {word}")
    return "\n".join(lines + ([""] + verdicts if verdicts else []))
