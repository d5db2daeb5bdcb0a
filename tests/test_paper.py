"""`make paper` at smoke size: the driver runs every method through the real scripts on the small data set,
then writes the report, the figures and summary.json; a second invocation finds every run done."""

import json
import math
import os
import subprocess
import sys

import pytest
from conftest import ROOT

from experiments.paper import LABEL, RUNS

VERDICTS = ("reproduces", "partly reproduces", "does not reproduce")


def run_paper(data_dir, out):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2")}
    proc = subprocess.run([sys.executable, "-m", "experiments.paper", "--smoke", "--data_dir", str(data_dir),
                           "--out", str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def paper(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("paper") / "runs" / "paper"
    return out, run_paper(small_data, out)


def test_every_run_lands_under_out(paper):
    out, stdout = paper
    assert "ETA" in stdout.splitlines()[len(RUNS) + 1]  # the plan and its estimate come first
    for method in RUNS:
        assert (out / "s0" / method / "summary.json").exists(), method
        assert (out / "logs" / f"s0_{method}.log").exists()


def test_report_has_the_table_and_three_generated_claims(paper):
    out, _ = paper
    report = (out / "report.md").read_text()
    assert "| method | iter | capital | arith | word | fish | table | average |" in report
    for label in LABEL.values():
        assert f"| {label} |" in report, label
    for k in (1, 2, 3):
        line = next(ln for ln in report.splitlines() if ln.startswith(f"**Claim {k}**"))
        assert any(f": {v} here." in line for v in VERDICTS), line
        assert "sigma" in line  # the noise stands beside every difference
    assert "sigma = sqrt(" in report  # the noise is defined
    for png in ("accuracy_vs_iteration.png", "pipe_rate_vs_iteration.png", "logps_gap.png"):
        assert (out / png).stat().st_size > 1000, png
        assert f"]({png})" in report


def test_summary_has_numbers_for_every_method(paper):
    out, _ = paper
    summary = json.loads((out / "summary.json").read_text())
    methods = {row["method"] for row in summary["table"]}
    assert methods == set(RUNS)
    for row in summary["table"]:
        for col in ("capital", "arith", "word", "fish", "table", "average", "pipe_rate"):
            assert math.isfinite(row[col]["mean"]), (row["method"], col)
    selfplay_iters = {row["iter"] for row in summary["table"] if row["method"] == "tspin"}
    assert selfplay_iters == set(summary["iters"]) and len(selfplay_iters) >= 2
    assert [c["claim"] for c in summary["claims"]] == [1, 2, 3]
    assert all(c["verdict"] in VERDICTS for c in summary["claims"])
    eq = summary["compute"][0]
    assert eq["sft25eq_steps"] == eq["tspin_steps"] > 0 and eq["sft25eq_tokens"] > 0


def test_a_second_invocation_skips_the_finished_runs(paper, small_data):
    out, _ = paper
    stdout = run_paper(small_data, out)
    assert stdout.count("[done, skipped]") == len(RUNS)
    assert "$ " not in stdout  # nothing launched
