"""
The Slurm launcher: the whole plan queued at once through submitit's SlurmExecutor, one job per run (or
one job array per level of the plan with --array_parallelism), each waiting for the runs it needs with
Slurm's afterok; its state (job ids per run key) in <out>/launcher.json, so that a later invocation of the
same command (after --detach) sees where every run stands and submits what is missing. The local
launchers and the job each run executes are in experiments/launchers.py; when and what: experiments/runner.py.
"""

import math
import shlex
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

from experiments.launchers import (
    ROOT,
    job_minutes,
    read_footer,
    read_state,
    run_env,
    run_job,
    write_state,
)

ACTIVE = ("PENDING", "REQUEUED", "CONFIGURING", "RUNNING", "COMPLETING", "RESIZING", "SUSPENDED")  # sacct states


def parse_extra(text):
    """--slurm_extra 'account=abc,qos=high,constraint=a100' -> {'account': 'abc', ...}"""
    pairs = [p for p in text.split(",") if p.strip()]
    bad = [p for p in pairs if "=" not in p]
    if bad:
        raise ValueError(f"expected key=value,..., got {bad}")
    return dict(p.strip().split("=", 1) for p in pairs)


def levels(runs):
    """Each run's depth in the plan (0: needs nothing left to do), so that a job array holds runs whose
    needs are all in earlier arrays."""
    keys, depth = {r.key for r in runs}, {}
    for r in runs:  # plan order puts needs first
        depth[r.key] = 1 + max((depth[d] for d in r.needs if d in keys), default=-1)
    return depth


def units(runs, opts):
    """The runs grouped into jobs: one each, or --runs_per_gpu of the same level sharing a job's GPU."""
    per_job = opts.runs_per_gpu if opts.gpus_per_run else 1
    depth, out = levels(runs), []
    for lvl in sorted(set(depth.values())):
        same = [r for r in runs if depth[r.key] == lvl]
        out += [same[i:i + per_job] for i in range(0, len(same), per_job)]
    return out


def sbatch_parameters(opts, unit, after=(), array=None, timed=None):
    """The SlurmExecutor parameters of one job (a unit of runs); `after`: job ids it waits for (afterok);
    `array`: the number of jobs in its array (then --array_parallelism at a time), whose time limit is that
    of the longest of `timed` (all its runs)."""
    n = len(unit)
    extra = {"kill-on-invalid-dep": "yes", **parse_extra(opts.slurm_extra)}  # a failed need cancels, not hangs
    params = dict(job_name=f"tinyspin.{unit[0].key.replace('/', '.')}" + (f"+{n - 1}" if n > 1 else ""),
                  time=job_minutes(opts, timed or unit), nodes=1, ntasks_per_node=1, cpus_per_task=opts.cpus_per_run * n,
                  mem=f"{math.ceil(opts.mem_gb * 1024 * n)}M", partition=opts.partition or None,
                  gpus_per_node=opts.gpus_per_run or None, dependency=f"afterok:{':'.join(after)}" if after else None,
                  setup=[f"export PYTHONPATH={shlex.quote(str(ROOT))}${{PYTHONPATH:+:$PYTHONPATH}}"],
                  additional_parameters=extra)
    if array:
        params["array_parallelism"] = opts.array_parallelism
    return {k: v for k, v in params.items() if v is not None}


def sbatch_text(opts, unit, after=(), array=None, timed=None, folder="submitit/%j"):
    """The sbatch file submitit would write for this job (submitit's own renderer, so that what is shown
    is what is sent)."""
    from submitit.slurm.slurm import _make_sbatch_string

    command = f"{shlex.quote(sys.executable)} -u -m submitit.core._submit {shlex.quote(str(folder))}"
    params = sbatch_parameters(opts, unit, after, array, timed)
    return _make_sbatch_string(command=command, folder=folder, **({"map_count": array} if array else {}), **params)


class Slurm:
    """--launcher slurm. Every run not done goes to the queue at once: a job per run (or per
    --runs_per_gpu runs), held by `afterok` on the jobs of the runs it needs; with --array_parallelism,
    one job array per level of the plan instead. A later invocation reads each job's state (sacct, through
    submitit) and submits again only what is neither done nor queued nor running."""

    name = "slurm"

    def __init__(self, out, opts):
        import submitit

        self.submitit, self.out, self.opts = submitit, Path(out), opts
        self.folder = self.out / "submitit" / "%j"
        self.state = read_state(out)
        self.state.update(launcher=self.name)

    def where(self, plan):
        """{key: done | queued | running | interrupted | failed | missing} for every run of the plan."""
        jobs = {r.key: self.submitit.SlurmJob(folder=self.folder, job_id=self.state["jobs"][r.key]) for r in plan
                if r.key in self.state["jobs"] and not (Path(r.run_dir) / "summary.json").exists()}
        slurm = {k: j.state for k, j in jobs.items()}  # all registered first: one sacct call for them all
        out = {}
        for r in plan:
            st = slurm.get(r.key, "")
            if (Path(r.run_dir) / "summary.json").exists():
                out[r.key] = "done"
            elif st.split()[:1] and st.split()[0] in ACTIVE:
                out[r.key] = "queued" if st.startswith(("PENDING", "REQUEUED", "CONFIGURING")) else "running"
            elif r.key not in self.state["jobs"]:
                out[r.key] = "missing"
            else:
                rc, _ = read_footer(self.out, r.key)
                out[r.key] = "interrupted" if rc == 130 else "failed"
        return out

    def submit(self, plan, where):
        """Submit every run that is not done, queued or running, in plan order; each waits (afterok) for the
        jobs of its needs that are not done. Returns the keys submitted."""
        todo = [r for r in plan if where[r.key] in ("missing", "failed", "interrupted")]
        if not todo:
            return []
        self.pending = {k for k, w in where.items() if w in ("queued", "running")}
        ex = self.submitit.SlurmExecutor(folder=self.folder)
        groups = units(todo, self.opts)
        if self.opts.array_parallelism:
            depth = levels(todo)
            for lvl in sorted(set(depth.values())):
                self._submit_array(ex, [u for u in groups if depth[u[0].key] == lvl])
        else:
            for unit in groups:
                ex.update_parameters(**sbatch_parameters(self.opts, unit, self._after(unit)))
                self._record(unit, ex.submit(run_job, *self._job_args(unit)))
        write_state(self.out, self.state)
        return [r.key for r in todo]

    def _after(self, runs):
        """The job ids that these runs' needs were queued as, those not done yet."""
        mine = {r.key for r in runs}
        return sorted({self.state["jobs"][d] for r in runs for d in r.needs if d not in mine and d in self.pending})

    def _submit_array(self, ex, group):
        runs = [r for u in group for r in u]
        ex.update_parameters(**sbatch_parameters(self.opts, max(group, key=len), self._after(runs), len(group), runs))
        with ex.batch():
            jobs = [(u, ex.submit(run_job, *self._job_args(u))) for u in group]
        for unit, job in jobs:
            self._record(unit, job)

    def _job_args(self, unit):
        specs = [SimpleNamespace(key=r.key, run_dir=r.run_dir, command=r.command) for r in unit]  # called on the node
        env = {k: v for k, v in run_env(self.opts).items() if k != "PYTHONPATH"}  # the sbatch setup sets it
        return specs, self.out, env, "cuda" if self.opts.gpus_per_run else None

    def _record(self, unit, job):
        for r in unit:
            self.state["jobs"][r.key] = job.job_id
            self.pending.add(r.key)

    def cancel(self, keys):
        """scancel: Slurm sends SIGTERM to the runs; they save a checkpoint and exit 130."""
        ids = sorted({self.state["jobs"][k] for k in keys if k in self.state["jobs"]})
        if ids:
            subprocess.run(["scancel", *ids], check=False)
