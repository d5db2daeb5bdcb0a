"""`make regimes SMOKE=1`: the regime map's driver runs its scenarios and settings through the real scripts
at smoke size, chooses each method's setting on val and writes the report and the heatmap; a second
invocation finds everything done, and a run cut short is continued alone. The statistics are checked by hand."""

import json
import re

import pytest
from conftest import run_python

from experiments.plan import REGIMES_GRID, SETTINGS, SMOKE_SCENARIOS
from experiments.regimes_report import BEST, SHARP, choose, find, seed_compare
from experiments.report import NA, pair, says
from model.stats import MDD_SIGMAS

SMOKE_SETTINGS = REGIMES_GRID["template"]  # the smoke map's one scenario
VERDICTS = ("no difference", "higher", "lower")


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
        assert set(res["rows"]) == {"theta_0", BEST, "continued SFT", "SPIN", "T-SPIN"}
        assert res["rows"]["continued SFT"]["setting"] == "sft_lr1e-03"  # the one baseline in the smoke grid
        for method in ("SPIN", "T-SPIN"):
            assert res["rows"][method]["setting"] in SMOKE_SETTINGS
            for key in ("greedy", "t0.6"):  # paired on the outcome files, greedy and sampled
                c = find(res["comparisons"], method, "continued SFT", key)
                assert c["verdict"] in VERDICTS and c["n_prompts"] > 1 and c["n_seeds"] == 1
                assert c["mdd"] == pytest.approx(MDD_SIGMAS * c["sigma"])
            assert find(res["comparisons"], method, BEST, "t0.6")["verdict"] in VERDICTS
        assert [c["claim"] for c in res["claims"]][:3] == ["fewer pipe characters", "more complete sentences (EOS rate)",
                                                           "more confidently (sharpness)"]
        # the chosen setting is the grid's best on val, whatever eval says
        for method, grid in res["grid"].items():
            row = res["rows"][method]
            best = max(g["val_accuracy"] for g in grid.values())
            assert grid[f"{row['setting']} iter {row['iteration']}"]["val_accuracy"] == best
    # every verdict states sigma and the smallest detectable difference, greedy and at T=0.6
    line = next(ln for ln in report.splitlines() if ln.startswith("**template**"))
    one = r"{} [+-]\d+\.\d ± \d+\.\d pts \(2σ; σ \d+\.\d, detects ≥ (\d+\.\d)\): (higher|lower|no difference larger than \1 pts)"
    assert len(re.findall(one.format("greedy"), line)) == len(re.findall(one.format("T=0.6"), line)) == 3, line
    assert "arXiv 2411.00640" in report and "## The seed claims, judged" in report and "Sharper or flatter?" in report


def test_the_template_scenario_starts_from_plateaus_theta0_in_the_other_template(regimes):
    out, _ = regimes
    theta0 = out / "s0" / "theta0_plateau" / "ckpt.pt"
    assert not (out / "s0" / "theta0_template").exists()
    for setting, extra in SMOKE_SETTINGS.items():
        run = out / "s0" / "template" / setting
        cfg = json.loads((run / "summary.json").read_text())["config"]
        assert cfg["init"] == str(theta0) and cfg["template"] == "instruction" and cfg["subset"] == 25
        for k, v in {**SETTINGS[setting][1], **extra}.items():
            assert cfg[k] == v, (setting, k)
        assert (run / "outcomes" / "iter1_eval.jsonl").exists()
        line = json.loads((run / "iter0" / "synthetic.jsonl").read_text().splitlines()[0])
        assert line["input"].startswith("### Instruction:\n")


def test_a_run_cut_short_is_continued_alone_and_the_finished_ones_are_skipped(regimes, small_data):
    out, _ = regimes
    cut = out / "s0" / "template" / "spin_lr1e-4_nll"
    (cut / "summary.json").unlink()  # as if killed after its last checkpoint, before it finished
    again = run_regimes(small_data, out)
    assert again.count("done, skipped") == len(SMOKE_SETTINGS)  # theta_0 and the other run
    assert "[1/1] s0/template/spin_lr1e-4_nll" in again and "[2/" not in again
    assert "--smoke --resume" in again  # continued from its checkpoint (tests/test_launcher.py: one without)
    assert (cut / "summary.json").exists()
    assert not any(p.name.startswith("spin_lr1e-4_nll.old-") for p in cut.parent.iterdir())  # not started afresh


def test_plan_prints_the_runs_and_an_estimate_and_runs_nothing(small_data, tmp_path):
    stdout = run_regimes(small_data, tmp_path / "m", "--plan")
    assert "ETA" in stdout and stdout.count("s0/") == 1 + len(SMOKE_SCENARIOS) * len(SMOKE_SETTINGS)
    assert not (tmp_path / "m").exists()


def test_choice_and_difference_by_hand():
    rows = {("a", 0): {0: {"val_accuracy": 0.30}, 1: {"val_accuracy": 0.40}},   # mean 0.35
            ("b", 1): {0: {"val_accuracy": 0.36}, 1: {"val_accuracy": 0.36}},   # mean 0.36: chosen
            ("c", 0): {0: {"val_accuracy": 0.90}}}                              # one seed only: not eligible
    assert choose(rows, [0, 1]) == ("b", 1)

    def lines(right, pipe=None, sampled=None):
        return [dict(i=i, right=r, pipe=(pipe or [0] * 5)[i], **({"t0.6": {"right": sampled[i]}} if sampled else {}))
                for i, r in enumerate(right)]

    # greedy, 2 seeds x 5 prompts, paired per prompt; prompt 4 has no checker (right None): left out
    a = {0: lines([1, 1, 0, 1, None]), 1: lines([1, 0, 1, 1, None])}
    b = {0: lines([0, 1, 0, 0, None]), 1: lines([1, 0, 0, 0, None])}
    c = pair(a, b)
    # d = [[1, 0, 0, 1], [0, 0, 1, 1]]: diff 0.5; prompt means [.5, 0, .5, 1], their variance 1/6, over 4
    # prompts: se_prompts^2 = 1/24; seed means both .5: no seed term; sigma = sqrt(1/24) = 0.2041 < 0.5 / 2
    assert c["diff"] == pytest.approx(0.5) and c["sigma"] == pytest.approx((1 / 24) ** 0.5)
    assert (c["n_seeds"], c["n_prompts"], c["verdict"]) == (2, 4, "higher")
    assert says(c) == "+50.0 ± 40.8 pts (2σ; σ 20.4, detects ≥ 58.0): higher"
    assert pair(b, a)["verdict"] == "lower"
    # sampled at 0.6, one seed, K = 2: pass@1 per prompt A [1, .5, 0, .5, 0], B [0, .5, 0, 0, 0]; d = [1, 0, 0,
    # .5, 0]: diff 0.3, sd 0.4472, sigma = sd / sqrt(5) = 0.2 -> 0.3 < 2 sigma: no difference larger than 2.84 x 0.2
    sa = lines([0] * 5, sampled=[[1, 1], [1, 0], [0, 0], [1, 0], [0, 0]])
    sb = lines([0] * 5, sampled=[[0, 0], [1, 0], [0, 0], [0, 0], [0, 0]])
    c = pair({0: sa}, {0: sb}, "t0.6")
    assert c["diff"] == pytest.approx(0.3) and c["sigma"] == pytest.approx(0.2)
    assert says(c) == "+30.0 ± 40.0 pts (2σ; σ 20.0, detects ≥ 56.8): no difference larger than 56.8 pts"
    # the pipe rate pairs the same way, on its own field: d = [-1, -1, -1, 0, 0], diff -0.6, sd 0.5477,
    # sigma 0.2449 -> lower (fewer pipes)
    pa, pb = lines([0] * 5, pipe=[0, 0, 0, 0, 0]), lines([0] * 5, pipe=[1, 1, 1, 0, 0])
    c = pair({0: pa}, {0: pb}, field="pipe")
    assert c["diff"] == pytest.approx(-0.6) and c["sigma"] == pytest.approx(0.3 ** 0.5 / 5 ** 0.5)
    assert c["verdict"] == "lower"
    assert pair({0: pa}, {0: None}) is None and says(None) == NA  # a run made before outcome files: n/a
    # the sharpness is one number per run: paired by seed, d = [.5, .2], diff .35, sigma = sd / sqrt(2) = .15
    run = lambda *v: {"entries": {s: {"row": {SHARP: x}} for s, x in enumerate(v)}}
    c = seed_compare(run(-4.0, -4.2), run(-4.5, -4.4), [0, 1])
    assert c["diff"] == pytest.approx(0.35) and c["sigma"] == pytest.approx(0.15) and c["verdict"] == "higher"
