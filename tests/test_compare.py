"""experiments/compare.py on two smoke SFT runs that differ in two settings, and on a hand-written self-play
log: one PNG, one markdown table of final metrics and differing settings, one-line errors."""

import json

import pytest
from conftest import run_python, run_script

from experiments.compare import load_run, main, plot
from model.log import read_metrics


@pytest.fixture(scope="module")
def second_run(small_data, tmp_path_factory):
    """Another smoke SFT run: another learning rate, and no injected NaN (the shared run has one at step 7)."""
    cwd = tmp_path_factory.mktemp("sft_b")
    run_script("train_sft.py", "--smoke", "--name", "sft_b", "--data_dir", small_data, "--lr", 1e-3, cwd=cwd)
    return cwd / "runs" / "sft_b"


def final_eval(run_dir):
    return [r for r in read_metrics(run_dir) if "accuracy" in r][-1]


def test_compare_writes_one_png_and_one_table(sft_run, second_run, tmp_path):
    proc = run_python("-m", "experiments.compare", sft_run, second_run, "--out", tmp_path / "cmp", timeout=300)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cmp.md", "cmp.png"]
    assert (tmp_path / "cmp.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    table = (tmp_path / "cmp.md").read_text()
    assert table in proc.stdout  # printed too
    rows = {line.split(" | ")[0].lstrip("| "): line.strip(" |").split(" | ")[1:] for line in table.splitlines()[2:]}
    assert table.splitlines()[0] == "| | sft | sft_b |"
    assert rows["kind"] == ["sft", "sft"]
    a, b = final_eval(sft_run), final_eval(second_run)
    for name, key in [("accuracy", "accuracy"), ("eval loss", "eval_loss"), ("pipe rate", "pipe_rate"),
                      ("accuracy @ T=0.6 (pass@1)", "t0.6/accuracy"), ("pass@4 @ T=0.6", "t0.6/pass@4")]:
        assert rows[name] == [f"{a[key]:.4g}", f"{b[key]:.4g}"]
    assert "sharpness (val, T=1)" not in rows  # a row only where a run logged it (SFT has no val sampling)
    # exactly the settings the two commands changed, nothing they share, and not the names
    settings = {name.strip("`"): values for name, values in rows.items() if name.startswith("`")}
    assert settings == {"lr": ["0.003", "0.001"], "inject_nan_step": ["7", "-1"]}


def test_panels_follow_what_the_runs_logged(sft_run, tmp_path):
    """A self-play run adds the margins/advantages and log-prob panels; SFT runs alone have none."""
    sp = tmp_path / "tspin"
    sp.mkdir()
    rows = [{"step": 0, "iter": -1, "accuracy": 0.1, "eval_loss": 2.0, "pipe_rate": 0.0, "mean_len": 20.0}]
    rows += [{"step": s, "iter": 0, "loss": 0.69 - s / 100, "adv/current": s / 10, "logps/real": -20.0 + s,
              "logps/generated": -25.0} for s in range(1, 5)]
    torn = '{"step": 5, "lo'  # a run killed in mid-write
    (sp / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows) + torn)
    (sp / "summary.json").write_text(json.dumps({"kind": "tspin", "name": "tspin", "config": {"lr": 1e-5}}))
    runs = [load_run(sft_run), load_run(sp)]
    for r in runs:
        r["label"] = r["path"].name
    alone = plot(runs[:1], tmp_path / "a.png")
    both = plot(runs, tmp_path / "b.png")
    assert not any("margins" in t or "log-probs" in t for t in alone)
    assert [t for t in both if t not in alone] == ["margins / advantages", "log-probs of the real and generated answers"]
    assert len(read_metrics(sp)) == 5  # the torn last line is dropped by the shared reader


def test_errors_are_one_line(sft_run, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for args, needle in [([str(sft_run), str(tmp_path / "nope")], "no such run directory"),
                         ([str(sft_run), str(tmp_path / "empty")], "no metrics.jsonl")]:
        with pytest.raises(SystemExit) as e:
            main([*args, "--out", str(tmp_path / "x")])
        assert e.value.code not in (0, None)
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error: ") and needle in err[0]
    assert not (tmp_path / "x.png").exists()
