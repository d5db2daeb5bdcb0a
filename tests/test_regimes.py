"""`make regimes SMOKE=1`: the regime map's driver runs its scenarios and settings through the real scripts
at smoke size, chooses each method's setting on val and writes the report and the heatmap; a second
invocation finds everything done, and a run cut short is redone alone. The statistics are checked by hand."""

import json
import math

import pytest
from conftest import run_python

from experiments.regimes import SETTINGS, SMOKE_SCENARIOS, SMOKE_SETTINGS
from experiments.regimes_report import choose
from experiments.report import compare


def run_regimes(data_dir, out, *extra):
    return run_python("-m", "experiments.regimes", "--smoke", "--data_dir", data_dir, "--out", out, *extra,
                      threads=1).stdout


@pytest.fixture(scope="module")
def regimes(small_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("regimes")
    return out, run_regimes(small_data, out)


def test_the_map_writes_report_heatmap_and_summary(regimes):
    out, stdout = regimes
    assert (out / "regimes.png").stat().st_size > 10_000
    report = (out / "report.md").read_text()
    summary = json.loads((out / "summary.json").read_text())
    assert list(summary) == list(SMOKE_SCENARIOS)
    for scenario, res in summary.items():
        assert f"## {scenario}:" in report
        assert set(res["rows"]) == {"theta_0", "continued SFT", "SPIN", "T-SPIN"}
        for method in ("SPIN", "T-SPIN"):
            assert res["rows"][method]["vs_sft"]["verdict"] in ("no difference", "higher", "lower")
            assert res["rows"][method]["setting"] in SMOKE_SETTINGS
        assert res["rows"]["continued SFT"]["setting"] == "sft_lr3e-04"  # the one baseline in the smoke grid
        # the chosen setting is the grid's best on val, whatever eval says
        for method, grid in res["grid"].items():
            row = res["rows"][method]
            best = max(g["val"] for g in grid.values())
            assert grid[f"{row['setting']} iter {row['iteration']}"]["val"] == best


def test_the_template_scenario_starts_from_plateaus_theta0_in_the_other_template(regimes):
    out, _ = regimes
    theta0 = out / "s0" / "theta0_plateau" / "ckpt.pt"
    assert not (out / "s0" / "theta0_template").exists()
    for setting in SMOKE_SETTINGS:
        run = out / "s0" / "template" / setting
        cfg = json.loads((run / "summary.json").read_text())["config"]
        assert cfg["init"] == str(theta0) and cfg["template"] == "instruction" and cfg["subset"] == 25
        for k, v in SETTINGS[setting][1].items():
            assert cfg[k] == v, (setting, k)
        line = json.loads((run / "iter0" / "synthetic.jsonl").read_text().splitlines()[0])
        assert line["input"].startswith("### Instruction:\n")


def test_a_run_cut_short_is_redone_alone_and_the_finished_ones_are_skipped(regimes, small_data):
    out, _ = regimes
    cut = out / "s0" / "template" / "spin_lr1e-4_nll"
    (cut / "summary.json").unlink()  # as if killed before it finished
    again = run_regimes(small_data, out)
    assert again.count("done, skipped") == len(SMOKE_SETTINGS)  # theta_0 and the other run
    assert "[1/1] s0/template/spin_lr1e-4_nll" in again and "[2/" not in again
    assert (cut / "summary.json").exists()
    assert any(p.name.startswith("spin_lr1e-4_nll.old-") for p in cut.parent.iterdir())  # moved aside, not deleted


def test_plan_prints_the_runs_and_an_estimate_and_runs_nothing(small_data, tmp_path):
    stdout = run_regimes(small_data, tmp_path / "m", "--plan")
    assert "ETA" in stdout and stdout.count("s0/") == 1 + len(SMOKE_SCENARIOS) * len(SMOKE_SETTINGS)
    assert not (tmp_path / "m").exists()


def test_choice_and_difference_by_hand():
    rows = {("a", 0): {0: {"val_accuracy": 0.30}, 1: {"val_accuracy": 0.40}},   # mean 0.35
            ("b", 1): {0: {"val_accuracy": 0.36}, 1: {"val_accuracy": 0.36}},   # mean 0.36: chosen
            ("c", 0): {0: {"val_accuracy": 0.90}}}                              # one seed only: not eligible
    assert choose(rows, [0, 1]) == ("b", 1)
    # the map's differences use the paper report's noise model (one for both reports)
    a = {0: {"accuracy": 0.50, "accuracy_se": 0.03}, 1: {"accuracy": 0.60, "accuracy_se": 0.04}}
    b = {0: {"accuracy": 0.40, "accuracy_se": 0.03}, 1: {"accuracy": 0.42, "accuracy_se": 0.04}}
    d = compare(a, b)
    # diffs 0.10 and 0.18: mean 0.14, sd 0.0566 (sd^2 / 2 = 0.0016); se of each side rms(.03, .04) = 0.03536
    # (squared 0.00125, not shrunk by the seeds: they answer the same prompts); sigma sqrt(0.0041) = 0.0640;
    # 0.14 > 2 x 0.0640 -> higher
    assert math.isclose(d["diff"], 0.14) and math.isclose(d["sigma"], math.sqrt(0.0041), rel_tol=1e-9)
    assert d["verdict"] == "higher"
    assert compare(b, a)["verdict"] == "lower"
    close = {0: {"accuracy": 0.41, "accuracy_se": 0.03}, 1: {"accuracy": 0.43, "accuracy_se": 0.04}}
    assert compare(close, b)["verdict"] == "no difference"  # 0.01 < 2 x 0.05
