"""`make paper` at smoke size: the driver runs every method through the real scripts on the small data set,
then the report reads the finished runs and writes the table, the figures and summary.json; a second
invocation finds every run done, and `python -m experiments.report` re-writes the same report alone."""

import json
import math
import shutil

import pytest
from conftest import ROOT, run_python

from experiments import report
from experiments.plan import LABEL, RUNS, SELFPLAY, script_defaults
from model.files import read_jsonl, write_jsonl
from model.log import read_metrics
from model.stats import MDD_SIGMAS

VERDICTS = ("reproduces", "partly reproduces", "does not reproduce")


def run_module(module, *args, check=True):
    return run_python("-m", module, *args, check=check, timeout=900)


def run_paper(data_dir, out, *extra, check=True):
    return run_module("experiments.paper", "--smoke", "--data_dir", data_dir, "--out", out, *extra, check=check)


@pytest.fixture(scope="module")
def paper(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper")  # any folder: the scripts write where --out_dir says
    return out, run_paper(small_data, out).stdout


def table_row(report, label, it):
    """The cells of the report's table row `| label | it | ... |`."""
    row = next(ln for ln in report.splitlines() if ln.startswith(f"| {label} | {it} |"))
    return [c.strip() for c in row.strip("|").split("|")]


def test_script_defaults_reads_literals_without_running_the_script(tmp_path):
    script = tmp_path / "train_x.py"
    script.write_text("import sys\nsys.exit('ran')\nRUNS = 'r'\n"
                      "defaults = dict(\n    out_dir=RUNS,  # a name, not a literal\n    batch_size=32,\n"
                      "    lr=3e-3,\n    name='x',\n    smoke=False,\n    **OTHER,\n)\n")
    assert script_defaults(script) == dict(batch_size=32, lr=3e-3, name="x", smoke=False)
    sft = script_defaults(ROOT / "train_sft.py")
    assert isinstance(sft["batch_size"], int) and sft["eval_interval"] > 0 and sft["subset"] == 100


def test_every_run_lands_under_out_from_theta0_on_all_of_train(paper, small_data):
    out, stdout = paper
    assert "ETA" in stdout.splitlines()[len(RUNS) + 1]  # the plan and its estimate come first
    for method in RUNS:
        assert (out / "s0" / method / "summary.json").exists(), method
        assert (out / "logs" / f"s0_{method}.log").exists()
    config = {m: json.loads((out / "s0" / m / "summary.json").read_text())["config"] for m in RUNS}
    assert config["theta0"]["subset"] == 100 and not config["theta0"]["init"]  # plateau: theta_0 saw all of train
    theta0 = str(out / "s0" / "theta0" / "ckpt.pt")
    for m in RUNS:
        if m != "theta0":
            assert config[m]["init"] == theta0, m
            assert config[m]["subset"] == (100 if m == "sft100" else 25), m
    for m in SELFPLAY:
        assert config[m]["baseline"] is False, m  # the paper has its own baseline rows
    # every row answers the same eval prompts: every second one of the eval split, each family kept
    assert len({config[m]["eval_data"] for m in RUNS}) == 1
    full, used = (read_jsonl(p) for p in (small_data / "eval.jsonl", config["theta0"]["eval_data"]))
    assert used == full[::2] and {r["task"] for r in used} == {r["task"] for r in full}
    assert config["tspin_nohist"]["b"] == "0" and config["tspin"]["b"] != "0"


def test_report_has_the_table_and_three_generated_claims(paper):
    out, _ = paper
    report = (out / "report.md").read_text()
    assert ("| method | iter | capital | arith | word | fish | table | average | acc@0.6 | run se (avg) | pipe rate "
            "| identical pairs | weight dist |") in report
    assert "| SFT theta_0 (100%) | – |" in report
    for m in ("sft100", "sft25eq"):
        assert f"| {LABEL[m]} | – |" in report, m
    summary = json.loads((out / "summary.json").read_text())
    for m in SELFPLAY:
        for it in summary["iters"]:
            cells = table_row(report, LABEL[m], it)
            identical, moved = cells[-2], cells[-1]
            assert identical != "n/a" and 0 <= float(identical.split(" ± ")[0]) <= 100, (m, it, identical)
            assert moved != "n/a" and float(moved.split(" ± ")[0]) > 0, (m, it, moved)  # trained: it moved
    for k in (1, 2, 3):
        line = next(ln for ln in report.splitlines() if ln.startswith(f"**Claim {k}**"))
        assert any(f": {v} here" in line for v in VERDICTS), line
        assert "σ" in line or "sigma" in line  # the noise stands beside every difference
        if k < 3:  # the row comparisons are paired per prompt: each states what it could detect, greedy and sampled
            assert "greedy" in line and "T=0.6" in line and "detects ≥" in line, line
    assert "arXiv 2411.00640" in report and "sigma = sqrt(sd" not in report  # the paired noise, defined once
    verdicts = report.split("## Verdicts")[1].split("##")[0]
    assert verdicts.count("detects ≥") == 2 * len(SELFPLAY) * 3  # each method vs 3 SFT rows, greedy and at 0.6
    for png in ("accuracy_vs_iteration.png", "pipe_rate_vs_iteration.png", "logps_gap.png", "movement.png"):
        assert (out / png).stat().st_size > 1000, png
        assert f"]({png})" in report


def test_summary_has_numbers_for_every_method(paper):
    out, _ = paper
    summary = json.loads((out / "summary.json").read_text())
    assert summary["scenario"] == "plateau" and summary["theta0_subset"] == 100
    assert {row["method"] for row in summary["table"]} == set(RUNS)
    for row in summary["table"]:
        for col in ("capital", "arith", "word", "fish", "table", "average", "acc@0.6", "pipe_rate"):
            assert math.isfinite(row[col]["mean"]), (row["method"], col)
    selfplay_iters = {row["iter"] for row in summary["table"] if row["method"] == "tspin"}
    assert selfplay_iters == set(summary["iters"]) and len(selfplay_iters) >= 2
    assert [c["claim"] for c in summary["claims"]] == [1, 2, 3]
    assert all(c["verdict"] in VERDICTS for c in summary["claims"])
    paired = summary["claims"][1]["vs_sft100"]["t0.6"]  # paired per prompt on the sampled outcomes
    assert paired["n_prompts"] > 1 and paired["mdd"] == pytest.approx(MDD_SIGMAS * paired["sigma"])
    eq = summary["compute"][0]
    assert eq["sft25eq_steps"] == eq["tspin_steps"] > 0 and eq["sft25eq_tokens"] > 0


def test_identical_share_and_weight_distance_are_the_runs_own(paper, tmp_path):
    """The table's movement columns are each run's own per-iteration values. At smoke size every share is
    0, so the runs' logged values are replaced by distinct ones (in a copy) before the report reads them."""
    out = tmp_path / "paper"
    shutil.copytree(paper[0], out)
    want = {}
    for k, m in enumerate(SELFPLAY):
        rows = read_metrics(out / "s0" / m)
        for r in rows:
            if r.get("iter", -1) >= 0 and "identical_share" in r:
                r["identical_share"] = want.setdefault((m, r["iter"], "share"), 0.1 + 0.2 * r["iter"] + 0.01 * k)
            if r.get("iter", -1) >= 0 and "accuracy" in r:
                r["weight_dist"] = want.setdefault((m, r["iter"], "dist"), 0.001 * (r["iter"] + 1) + 0.0001 * k)
        write_jsonl(out / "s0" / m / "metrics.jsonl", rows)
    report.write(out)
    summary = json.loads((out / "summary.json").read_text())
    for m in SELFPLAY:
        for it in summary["iters"]:
            row = next(r for r in summary["table"] if r["method"] == m and r["iter"] == it)
            assert row["identical_share"]["mean"] == pytest.approx(want[(m, it, "share")]), (m, it)
            assert row["weight_dist"]["mean"] == pytest.approx(want[(m, it, "dist")]), (m, it)
    cells = table_row((out / "report.md").read_text(), LABEL["tspin"], 1)
    assert cells[-2:] == [f"{100 * want[('tspin', 1, 'share')]:.1f} ± –", f"{want[('tspin', 1, 'dist')]:.2g} ± –"]


def test_a_second_invocation_skips_the_finished_runs(paper, small_data):
    out, _ = paper
    stdout = run_paper(small_data, out).stdout
    assert stdout.count("[done, skipped]") == len(RUNS)
    assert "$ " not in stdout  # nothing launched


def test_the_report_alone_rewrites_the_same_report(paper):
    out, _ = paper
    before = (out / "report.md").read_text()
    (out / "report.md").unlink()
    run_module("experiments.report", out)
    assert (out / "report.md").read_text() == before


def test_finished_runs_of_another_size_are_not_reused(paper, small_data):
    """The full experiment must not skip smoke runs as if they were its own."""
    out, _ = paper
    proc = run_module("experiments.paper", "--plan", "--seeds", "0", "--data_dir", small_data, "--out", out,
                      check=False)
    assert proc.returncode != 0 and "smoke=True, not False" in proc.stderr, proc.stderr[-2000:]


def test_the_scarce_scenario_trains_theta0_on_the_subset(small_data, tmp_path):
    stdout = run_paper(small_data, tmp_path, "--scenario", "scarce", "--plan").stdout
    assert "theta_0: SFT on 25% of train, 4000 steps" in stdout and "scenario scarce" in stdout
    assert not (tmp_path / "s0").exists()  # --plan runs nothing


def test_finished_runs_of_another_scenario_are_refused_not_reused(paper, small_data):
    """plateau and template share theta_0's subset; a template plan must not take plateau's runs as its own."""
    out, _ = paper
    proc = run_paper(small_data, out, "--scenario", "template", "--plan", check=False)
    assert proc.returncode != 0 and "template='chat', not 'instruction'" in proc.stderr
    assert run_paper(small_data, out, "--plan").returncode == 0  # its own scenario still finds them done
