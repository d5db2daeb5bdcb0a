"""
curves.png for any run, drawn from its metrics.jsonl: the scripts redraw it at each evaluation and the
notebooks call the same function. Panels appear only for the metrics a run logged.
"""

import matplotlib

matplotlib.use("Agg")  # files only: works headless, on CI and over ssh
import matplotlib.pyplot as plt  # noqa: E402

from model.log import read_metrics  # noqa: E402

PANELS = [
    ("loss", ["loss", "eval_loss"]),
    ("held-out accuracy (eval; val dotted)", ["accuracy", "val_accuracy"]),
    ("eval accuracy per family", ["acc/*"]),
    ("sampled accuracy (pass@1) at each temperature; theta_0 at its best T", ["t0.6/accuracy", "t1/accuracy",
                                                                              "best/accuracy"]),
    ("sharpness on val: mean log p per token of its own samples at T=1 (-entropy), of y (-val loss)",
     ["val_t1/sharpness", "val_logp_y_tok"]),
    ("pipe rate (non-table answers with '|')", ["pipe_rate"]),
    ("rewards / advantages", ["rewards/margins", "rewards/real", "rewards/generated", "adv/current", "adv/historical"]),
    ("log p(y) - log p(y')", ["logps/gap"]),
    ("mean log p: y and y_gen on the training pairs, y on val (likelihood displacement)",
     ["logps/real", "logps/generated", "val_logp_y"]),
    ("how far it moved: |theta - theta_0| / |theta_0|, y_gen == y share", ["weight_dist", "identical_share"]),
    ("answer length / reference length, answers in a loop", ["len_ratio", "repetition_rate"]),
]
# panels where the equal-compute continued-SFT baseline (<run>/baseline/) is drawn beside the run
BASELINE_PANELS = ("held-out accuracy (eval; val dotted)", "pipe rate (non-table answers with '|')",
                   "sampled accuracy (pass@1) at each temperature; theta_0 at its best T",
                   "sharpness on val: mean log p per token of its own samples at T=1 (-entropy), of y (-val loss)",
                   "answer length / reference length, answers in a loop",
                   "how far it moved: |theta - theta_0| / |theta_0|, y_gen == y share",
                   "mean log p: y and y_gen on the training pairs, y on val (likelihood displacement)")


def expand(keys, logged):
    """'acc/*' stands for every logged key that starts with 'acc/' (one per task family)."""
    return [k for key in keys for k in ([x for x in logged if x.startswith(key[:-1])] if key.endswith("*") else [key])]


def series(rows, key):
    pts = [(r["step"], r[key]) for r in rows if key in r and r[key] is not None and "step" in r]
    return [p[0] for p in pts], [p[1] for p in pts]


def plot_run(run_dir, out=None, title=None):
    """Draw runs/<name>/curves.png (or `out`) and return its path."""
    rows = read_metrics(run_dir)
    baseline = read_metrics(f"{run_dir}/baseline")
    logged = list(dict.fromkeys(k for r in rows for k in r))
    panels = [(name, [k for k in expand(keys, logged) if series(rows, k)[0]]) for name, keys in PANELS]
    panels = [(name, keys) for name, keys in panels if keys]
    if not panels:
        return None
    fig, axes = plt.subplots(len(panels), 1, figsize=(8, 2.4 * len(panels)), sharex=True, squeeze=False)
    nan_steps = [r["step"] for r in rows if "nan_event" in r]
    iter_starts = [r["step"] for r in rows if r.get("event") == "iteration_start"]
    for ax, (name, keys) in zip(axes[:, 0], panels):
        for k in keys:
            xs, ys = series(rows, k)
            dense = len(xs) > 30
            (line,) = ax.plot(xs, ys, label=k, lw=1 if dense else 1.5, marker=None if dense else "o", ms=3,
                              ls=":" if k.startswith("val_") else "-")
            bx, by = series(baseline, k)
            if name in BASELINE_PANELS and bx:
                ax.plot(bx, by, label=f"{k}: continued SFT", lw=1.2, ls="--", marker="s", ms=3,
                        color=line.get_color(), alpha=0.6)  # the run's colour, dashed
        for s in nan_steps:
            ax.axvline(s, color="red", lw=0.8, alpha=0.7)
        for s in iter_starts:
            ax.axvline(s, color="gray", lw=0.6, ls=":")
        ax.set_title(name, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    if nan_steps:
        axes[0, 0].plot([], [], color="red", label=f"NaN events ({len(nan_steps)})")
        axes[0, 0].legend(fontsize=7)
    axes[-1, 0].set_xlabel("optimizer step")
    fig.suptitle(title or str(run_dir), fontsize=10)
    fig.tight_layout()
    out = out or f"{run_dir}/curves.png"
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out
