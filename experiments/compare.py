"""
Put runs side by side: their curves overlaid in one PNG, and one markdown table of each run's final
metrics and of the settings in which the runs differ.

    python -m experiments.compare runs/sft runs/spin runs/tspin               # runs/compare.png, .md
    python -m experiments.compare runs/sft_smoke runs/tspin_smoke --out cmp   # cmp.png, cmp.md

Everything comes from what the runs wrote: metrics.jsonl (the curves and the last evaluation),
summary.json (kind, steps, wall time) and the settings saved in the checkpoint.
"""

import argparse
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: works headless
import matplotlib.pyplot as plt  # noqa: E402

from model.checkpoint import load_checkpoint  # noqa: E402
from model.cli import die  # noqa: E402
from model.log import read_metrics  # noqa: E402
from model.plots import series  # noqa: E402

# one panel per question a reader asks of a comparison; a panel no run logged is left out
PANELS = [
    ("eval loss (NLL of the reference answers: the same measure for every run)", ["eval_loss"]),
    ("training loss (each method's own objective: SFT's NLL, SPIN's or T-SPIN's pair loss)", ["loss"]),
    ("held-out accuracy", ["accuracy"]),
    ("pipe rate (non-table answers with '|')", ["pipe_rate"]),
    ("margins / advantages", ["rewards/margins", "adv/current", "adv/historical"]),
    ("log-probs of the real and generated answers", ["logps/real", "logps/generated"]),
    ("answer length (characters)", ["mean_len"]),
]
# the final metrics of the table, from the run's last evaluation
FINAL = [("accuracy", "accuracy"), ("± se", "accuracy_se"), ("pipe rate", "pipe_rate"), ("eval loss", "eval_loss"),
         ("eos rate", "eos_rate"), ("mean length", "mean_len")]
# sampled numbers, as rows only where some run logged them (runs evaluated with --eval_samples)
SAMPLED = [("accuracy @ T=0.6 (pass@1)", "t0.6/accuracy"), ("pass@4 @ T=0.6", "t0.6/pass@4"),
           ("sharpness (val, T=1)", "val_t1/sharpness")]
# settings that differ by nature, not by choice: they would fill the table with noise
NOT_SETTINGS = {"name", "resume", "stop_at"}


def load_run(path):
    """-> dict(label, rows, summary, config) from a run directory; one-line errors for what is not a run."""
    path = Path(path)
    if not path.is_dir():
        die(f"{path}: no such run directory")
    try:
        rows = read_metrics(path)  # a torn last line (a killed run) is dropped; a bad line elsewhere raises
    except ValueError as e:
        die(str(e))
    if not rows:
        die(f"{path}: no metrics.jsonl (not a run directory, or a run that logged nothing yet)")
    summary = {}  # a run still going has none yet
    if (path / "summary.json").exists():
        try:
            summary = json.loads((path / "summary.json").read_text())
        except ValueError as e:
            die(f"{path / 'summary.json'}: not JSON ({e})")
    config = summary.get("config")
    if config is None and (path / "ckpt.pt").exists():
        try:
            config = load_checkpoint(path / "ckpt.pt").get("config")
        except (FileNotFoundError, RuntimeError) as e:
            die(f"{path}: {str(e).splitlines()[0]}")
    return {"path": path, "rows": rows, "summary": summary, "config": config or {}}


def plot(runs, out):
    """Overlay every run's curves, a color per run and a line style per metric. Returns the panel titles."""
    panels = [(title, [k for k in keys if any(series(r["rows"], k)[0] for r in runs)]) for title, keys in PANELS]
    panels = [(title, keys) for title, keys in panels if keys]
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.5 * len(panels)), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, (title, keys) in zip(axes[:, 0], panels):
        for i, run in enumerate(runs):
            for style, key in zip(["-", "--", ":"], keys):
                xs, ys = series(run["rows"], key)
                if xs:
                    label = run["label"] + (f" {key}" if len(keys) > 1 else "")
                    ax.plot(xs, ys, style, color=colors[i % len(colors)], label=label, lw=1.2,
                            marker="o" if len(xs) <= 30 else None, ms=3)  # evaluations are few: show each
        ax.set_title(title, fontsize=9, loc="left")
        ax.legend(fontsize=7, loc="best")
        ax.grid(alpha=0.3)
    # each run counts its own steps: a self-play run starts again at 0 from the SFT model it was given
    axes[-1, 0].set_xlabel("optimizer step (each run's own)")
    fig.suptitle("  vs  ".join(r["label"] for r in runs), fontsize=10)
    fig.tight_layout(rect=(0, 0, 1, 1 - 0.4 / fig.get_figheight()))  # room for the title
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return [title for title, _ in panels]


def fmt(v):
    if v is None:
        return "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    return str(v) if v != "" else '""'


def table(runs):
    """One markdown table: a column per run; its kind and size, its last evaluation, the settings that differ."""
    rows = [("kind", [r["summary"].get("kind") or r["config"].get("kind") for r in runs]),
            ("steps", [r["summary"].get("steps") for r in runs]),
            ("wall time (s)", [r["summary"].get("wall_time_s") for r in runs])]
    last = [next((row for row in reversed(r["rows"]) if "accuracy" in row or "eval_loss" in row), {}) for r in runs]
    rows += [(name, [e.get(key) for e in last]) for name, key in FINAL]
    rows += [(name, [e.get(key) for e in last]) for name, key in SAMPLED if any(key in e for e in last)]
    keys = sorted({k for r in runs for k in r["config"]} - NOT_SETTINGS)
    differ = [k for k in keys if len({repr(r["config"].get(k)) for r in runs}) > 1]
    rows += [(f"`{k}`", [r["config"].get(k) for r in runs]) for k in differ]
    lines = ["| | " + " | ".join(r["label"] for r in runs) + " |", "|---|" + "---|" * len(runs)]
    lines += [f"| {name} | " + " | ".join(fmt(v) for v in values) + " |" for name, values in rows]
    return "\n".join(lines) + "\n", differ


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(), allow_abbrev=False)
    parser.add_argument("runs", nargs="+", help="run directories (runs/<name>) to compare")
    parser.add_argument("--out", default="runs/compare", help="writes OUT.png (the curves) and OUT.md (the table)")
    parser.error = die  # one line, like every other error (--help shows the usage)
    args = parser.parse_args(argv)
    runs = [load_run(p) for p in args.runs]
    names = [r["path"].name for r in runs]
    for r in runs:  # the run's name, or its whole path when two runs share a name
        r["label"] = r["path"].name if names.count(r["path"].name) == 1 else str(r["path"])
    out = Path(args.out)
    out = out.with_suffix("") if out.suffix in (".png", ".md") else out
    out.parent.mkdir(parents=True, exist_ok=True)
    png, md = out.parent / (out.name + ".png"), out.parent / (out.name + ".md")
    plot(runs, png)
    text, _ = table(runs)
    md.write_text(text, encoding="utf-8")
    print(text)
    print(f"curves: {png}\ntable: {md}")
    return png, md


if __name__ == "__main__":
    main()
