"""The launchers (experiments/runner.py, experiments/launchers.py) on the smoke regime map, no cluster needed:
submitit-local, detached and then collected, writes the report that the local launcher writes; a plan
stopped by a run's exit 130, then by a kill -9 of its driver, is finished by a later invocation, its runs
resumed and not restarted, with the same report; one driver per output directory; and the Slurm jobs'
sbatch parameters and afterok dependencies, checked on the executor's configuration."""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace

import pytest
from conftest import ROOT
from test_regimes import run_regimes

from experiments import launchers, runner, slurm
from experiments.plan import SMOKE_SETTINGS

CUT = "s0/template/tspin_lr1e-4_nll"  # the run the tests interrupt: the longest of the smoke map


def start_regimes(data_dir, out, *extra, log):
    """The smoke map's driver in the background, its output to a file (a detached submitit-local job keeps
    its driver's stdout open: a pipe would wait for it)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "experiments.regimes", "--smoke", "--data_dir", data_dir,
                             "--out", out, *map(str, extra)], cwd=ROOT, env=env, stdout=open(log, "w"),
                            stderr=subprocess.STDOUT)


def wait_for(test, what, timeout=120):
    t0 = time.time()
    while not test():
        assert time.time() - t0 < timeout, f"waited {timeout} s for {what}"
        time.sleep(0.1)


def results(out):
    """What a finished map reports, its wall times left out (the one thing that differs run to run)."""
    report = [ln for ln in (out / "report.md").read_text().splitlines() if "Wall time" not in ln]
    return json.loads((out / "summary.json").read_text().replace("NaN", "null")), report


def footers(out, key):
    return [ln for ln in launchers.log_path(out, key).read_text().splitlines() if ln.startswith(launchers.FOOTER)]


@pytest.fixture(scope="module")
def local_map(small_data, tmp_path_factory):
    """The uninterrupted map, launched locally: what every other launcher and every restart must report."""
    out = tmp_path_factory.mktemp("local")
    run_regimes(small_data, out)
    return out


def test_submitit_local_detached_then_collected_writes_the_local_report(local_map, small_data, tmp_path):
    out = tmp_path / "submitit"
    first = start_regimes(small_data, out, "--launcher", "submitit-local", "--detach", log=tmp_path / "first.log")
    assert first.wait(timeout=120) == 0, (tmp_path / "first.log").read_text()[-3000:]
    assert "detached: 1 run(s) going on (s0/theta0_plateau)" in (tmp_path / "first.log").read_text()
    assert not (out / "report.md").exists()
    assert list(json.loads((out / "launcher.json").read_text())["jobs"]) == ["s0/theta0_plateau"]
    second = run_regimes(small_data, out, "--launcher", "submitit-local")  # waits for theta_0, runs the rest
    assert "[1/3]" not in second  # theta_0 is never submitted twice: adopted, or found done
    once = footers(out, "s0/theta0_plateau")
    assert len(once) == 1 and once[0].startswith(f"{launchers.FOOTER}0 after ")
    assert results(out) == results(local_map)


def test_a_stopped_then_killed_plan_resumes_its_runs_to_the_same_report(local_map, small_data, tmp_path):
    out, cut = tmp_path / "map", tmp_path / "map" / CUT
    shutil.copytree(local_map, out)  # theta_0 is done: only the two self-play runs go again
    shutil.rmtree(out / "s0" / "template")
    for f in ("report.md", "summary.json", "regimes.png", *(f"logs/s0_template_{s}.log" for s in SMOKE_SETTINGS)):
        (out / f).unlink()
    # 1. a run exits 130 (SIGTERM: it saves a checkpoint): the driver stops the other one and exits 130
    a = start_regimes(small_data, out, log=tmp_path / "a.log")
    wait_for(lambda: (cut / "metrics.jsonl").exists() and launchers.lock_owner(cut / ".lock"), "T-SPIN to start")
    os.kill(launchers.lock_owner(cut / ".lock"), signal.SIGTERM)
    assert a.wait(timeout=120) == 130, (tmp_path / "a.log").read_text()[-3000:]
    said = (tmp_path / "a.log").read_text()
    assert f"{CUT} was interrupted (exit 130)" in said and "The same command again continues" in said
    assert (cut / "ckpt.pt").exists() and not (cut / "summary.json").exists()
    # 2. started again, the driver is killed (-9) while it resumes: its runs get SIGTERM and save
    b = start_regimes(small_data, out, log=tmp_path / "b.log")
    wait_for(lambda: "resuming" in launchers.log_path(out, CUT).read_text(), "the run to resume")
    time.sleep(1)
    b.kill()
    b.wait()
    # 3. a third invocation takes over the dead driver's lock and finishes the plan
    c = run_regimes(small_data, out)
    assert c.count("done, skipped") == 1  # theta_0
    assert not any(".old-" in p.name for p in cut.parent.iterdir())  # resumed, never restarted afresh
    assert launchers.log_path(out, CUT).read_text().count("resuming") >= 1
    assert not (out / ".driver.lock").exists()
    assert results(out) == results(local_map)


def test_a_second_driver_on_the_same_out_dir_is_refused_in_one_line(small_data, tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / ".driver.lock").write_text(f"{os.getpid()}\n")  # a live driver: this test's process
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "experiments.regimes", "--smoke", "--data_dir", small_data, "--out",
                           out], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"error: {out} is being run by another driver (pid {os.getpid()}); wait for it or stop it (if none is "
        f"running, delete {out / '.driver.lock'})"]
    assert not (out / "s0").exists()


def test_a_cut_run_continues_with_resume_or_starts_again_with_overwrite(tmp_path):
    run = SimpleNamespace(run_dir=tmp_path / "r", command=lambda: [Path("train_sft.py"), "--seed", 0])
    assert launchers.argv_for(run) == ["train_sft.py", "--seed", "0"]  # never started
    run.run_dir.mkdir()
    assert launchers.argv_for(run, "cuda") == ["train_sft.py", "--seed", "0", "--device", "cuda", "--overwrite"]
    (run.run_dir / "ckpt.pt").write_bytes(b"")
    assert launchers.argv_for(run)[-1] == "--resume"


# ----------------------------------------------------------------------------------------------------
# Slurm, without Slurm


def slurm_opts(*argv):
    args = runner.add_launcher_args(argparse.ArgumentParser()).parse_args(["--launcher", "slurm", *argv])
    return runner.options(args, jobs=2)


def fake_plan(tmp_path):
    def run(key, needs=(), est=600.0):
        return SimpleNamespace(key=key, needs=list(needs), est=est, done=False, run_dir=tmp_path / key,
                               command=lambda: ["train_sft.py"])
    return [run("s0/theta0", est=1800), run("s0/spin", ["s0/theta0"]), run("s0/tspin", ["s0/theta0"])]


def test_slurm_job_parameters_are_what_sbatch_gets(tmp_path, monkeypatch):
    import submitit

    theta0, spin, tspin = fake_plan(tmp_path)
    opts = slurm_opts("--partition", "dev", "--gpus_per_run", "1", "--mem_gb", "3", "--slurm_extra", "account=abc,qos=low")
    params = slurm.sbatch_parameters(opts, [spin], after=["123"])
    assert params["cpus_per_task"] == 2 and params["mem"] == "3072M" and params["gpus_per_node"] == 1
    assert params["time"] == 2 * 10 + 10  # 2x the estimate (10 min) + 10
    monkeypatch.setattr(submitit.SlurmExecutor, "affinity", classmethod(lambda cls: 1))  # as if srun were here
    ex = submitit.SlurmExecutor(folder=tmp_path / "%j")
    ex.update_parameters(**params)
    sbatch = ex._make_submission_file_text("python -u -m submitit.core._submit x", "uid").splitlines()
    for line in ("--partition=dev", "--dependency=afterok:123", "--kill-on-invalid-dep=yes", "--gpus-per-node=1",
                 "--cpus-per-task=2", "--mem=3072M", "--time=30", "--account=abc", "--qos=low", "--nodes=1"):
        assert f"#SBATCH {line}" in sbatch, line
    assert any(ln.startswith(f"export PYTHONPATH={ROOT}") for ln in sbatch)
    # two runs of one level share a GPU: one job, their cores and memory added; an array per level
    packed = slurm_opts("--gpus_per_run", "1", "--runs_per_gpu", "2", "--array_parallelism", "4")
    assert [[r.key for r in u] for u in slurm.units([theta0, spin, tspin], packed)] == [
        ["s0/theta0"], ["s0/spin", "s0/tspin"]]
    text = slurm.sbatch_text(packed, [spin, tspin], array=3, folder=tmp_path / "%j")
    assert "#SBATCH --array=0-2%3" in text and "#SBATCH --cpus-per-task=4" in text and "#SBATCH --mem=8192M" in text


class FakeExecutor:
    """SlurmExecutor's part that Slurm() uses, recording what would be submitted."""
    sent = []

    def __init__(self, folder):
        self.parameters = {}

    def update_parameters(self, **kw):
        self.parameters.update(kw)

    def submit(self, fn, specs, *args):
        FakeExecutor.sent.append(([s.key for s in specs], self.parameters.get("dependency")))
        return SimpleNamespace(job_id=str(100 + len(FakeExecutor.sent)))

    @contextmanager
    def batch(self):
        yield


def test_slurm_queues_the_plan_with_afterok_and_a_second_look_resubmits_what_is_missing(tmp_path, monkeypatch):
    import submitit

    states = {}
    monkeypatch.setattr(submitit, "SlurmExecutor", FakeExecutor)
    monkeypatch.setattr(submitit, "SlurmJob", lambda folder, job_id: SimpleNamespace(state=states[job_id]))
    plan, out = fake_plan(tmp_path), tmp_path / "out"
    queue = slurm.Slurm(out, slurm_opts())
    where = queue.where(plan)
    assert set(where.values()) == {"missing"}
    queue.submit(plan, where)
    assert FakeExecutor.sent == [(["s0/theta0"], None), (["s0/spin"], "afterok:101"), (["s0/tspin"], "afterok:101")]
    assert json.loads((out / "launcher.json").read_text())["jobs"] == {"s0/theta0": "101", "s0/spin": "102",
                                                                     "s0/tspin": "103"}
    # later: theta_0 done, SPIN running, T-SPIN interrupted (exit 130 in its log): only T-SPIN goes again
    (plan[0].run_dir).mkdir(parents=True)
    (plan[0].run_dir / "summary.json").write_text("{}")
    states.update({"101": "COMPLETED", "102": "RUNNING", "103": "FAILED"})
    launchers.write_footer(out, "s0/tspin", 130, 12.0)
    FakeExecutor.sent.clear()
    again = slurm.Slurm(out, slurm_opts())
    where = again.where(plan)
    assert where == {"s0/theta0": "done", "s0/spin": "running", "s0/tspin": "interrupted"}
    assert again.submit(plan, where) == ["s0/tspin"]
    assert FakeExecutor.sent == [(["s0/tspin"], None)]  # its need is done: nothing to wait for


def test_slurm_plan_prints_every_jobs_sbatch_parameters_and_runs_nothing(small_data, tmp_path):
    stdout = run_regimes(small_data, tmp_path / "m", "--plan", "--launcher", "slurm", "--partition", "dev")
    assert stdout.count("#SBATCH --partition=dev") == 3
    assert stdout.count("#SBATCH --dependency='afterok:<job of s0/theta0_plateau>'") == 2
    assert not (tmp_path / "m").exists()
