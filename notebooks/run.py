"""
Run the teaching notebooks headless, and the few helpers the notebooks share.

    python -m notebooks.run                  # the three notebooks at smoke size (under a minute each)
    python -m notebooks.run --full           # full size: reuse runs/sft, runs/spin, runs/tspin (trained
                                             # with default settings when missing: many minutes)
    python -m notebooks.run 03               # only the notebooks whose name starts with 03
    python -m notebooks.run --strip          # remove outputs saved by Jupyter, before a commit

Each notebook's first code cell is its parameter cell, `SMOKE = True`; this runner inserts the value
(`SMOKE = True`, or `SMOKE = False` with --full) in a cell right after it, as papermill does. The kernel
runs with the repository root as working directory, so runs/ is the repo's; the executed copies go to
runs/notebooks/ (<name>.ipynb, or <name>.smoke.ipynb) and the notebooks in git are never touched: they
are kept without outputs, which tests/test_notebooks.py checks.

Helpers for the notebooks (`from notebooks.run import ...`): the data set, the training scripts run in a
subprocess exactly as a user runs them, and the SFT model that notebooks 02 and 03 share. All paths are
relative to the working directory, like the scripts' runs/<name>/.
"""

import argparse
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))

# ------------------------------------------------------------------------------------------------------
# helpers for the notebooks

SMOKE_DATA = Path("runs/nb_data")  # the notebooks' own small data set, made in seconds
FULL_DATA = Path("data/generated")  # `make data`

# the SFT run of the smoke notebooks: like --smoke (which evaluates only at the end), but with an
# evaluation every 10 steps, so that the accuracy and pipe-rate curves have more than one point
SFT_SMOKE_ARGS = ["--max_steps", 40, "--batch_size", 16, "--warmup_steps", 5, "--log_interval", 5,
                  "--eval_interval", 10, "--eval_subset", 48, "--max_new_tokens", 32]


def ensure_data(smoke):
    """The data folder (train/eval JSONL and a tokenizer), made when missing.

    Smoke size: a small set of our own in runs/nb_data (1000 train records, 10 eval prompts per family,
    a 512-token tokenizer; about 2 s), whatever data/generated holds, so that a smoke run is the same on
    every machine. Full size: data/generated, made as `make data` makes it."""
    out = SMOKE_DATA if smoke else FULL_DATA
    if (out / "tokenizer" / "tokenizer.json").exists():
        return out
    if smoke:
        from data.make_data import make_dataset
        from model.files import read_jsonl
        from model.tokenizer import Tokenizer

        make_dataset(out, seed=0, n_train=1000, n_eval_per_task=10)
        texts = [t for r in read_jsonl(out / "train.jsonl") for t in (r["prompt"], r["response"])]
        Tokenizer.train(texts, vocab_size=512).save(out / "tokenizer")
    else:
        for cmd in (["-m", "data.make_data", "--out", out],
                    ["-m", "model.tokenizer", "--train", out / "train.jsonl", "--out", out / "tokenizer"]):
            subprocess.run([sys.executable, *map(str, cmd)], env=script_env(), check=True)
    print(f"made {out}")
    return out


def script_env(threads=None):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    return env


class Job:
    """A training script running in a subprocess; its output goes to runs/<name>/stdout.log."""

    def __init__(self, script, name, *args, clean=True, threads=None):
        self.run_dir = Path("runs") / name
        if clean:  # a fresh run: samples.jsonl and iteration folders would otherwise pile up
            shutil.rmtree(self.run_dir, ignore_errors=True)
        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.log = self.run_dir / "stdout.log"
        if not clean and (self.run_dir / "ckpt.pt").exists():
            args = (*args, "--resume")  # continue the unfinished run: the scripts refuse to overwrite it
        argv = [sys.executable, str(ROOT / script), "--name", name, *map(str, args)]
        print(f"$ python {shlex.join([script, *argv[2:]])}   (output: {self.log})", flush=True)
        self.t0 = time.time()
        with open(self.log, "w") as f:
            self.proc = subprocess.Popen(argv, stdout=f, stderr=subprocess.STDOUT, env=script_env(threads))

    def wait(self, tail=6):
        """Wait for the script; print the last lines of its output; raise if it failed. -> runs/<name>."""
        rc = self.proc.wait()
        # tqdm redraws its bar with carriage returns: keep the last state of each line
        lines = [line.split("\r")[-1] for line in self.log.read_text(errors="replace").splitlines()]
        lines = [line for line in lines if line.strip()]
        if rc != 0:
            raise RuntimeError(f"{self.run_dir.name} failed (exit {rc}); the end of {self.log}:\n"
                               + "\n".join(lines[-30:]))
        print(f"[{self.run_dir.name}: done in {time.time() - self.t0:.1f} s]")
        if tail:
            print("\n".join(lines[-tail:]), flush=True)
        return self.run_dir


def start(script, name, *args, clean=True, threads=None):
    """Launch `python <script> --name <name> args...` (cwd = the working directory). -> Job."""
    return Job(script, name, *args, clean=clean, threads=threads)


def train(script, name, *args, clean=True, threads=None, tail=6):
    """Run a script to the end. -> runs/<name>."""
    return start(script, name, *args, clean=clean, threads=threads).wait(tail=tail)


def finished(name):
    return (Path("runs") / name / "summary.json").exists()


def sft_run(smoke, data_dir, fresh=False):
    """The SFT model notebooks 02 and 03 share. Smoke: runs/nb_sft (SFT_SMOKE_ARGS, about 10 s), reused
    when finished unless `fresh`. Full: runs/sft, the default run (`make sft`), trained when missing."""
    name = "nb_sft" if smoke else "sft"
    if finished(name) and not (smoke and fresh):
        print(f"reusing runs/{name}")
        return Path("runs") / name
    if smoke:
        return train("train_sft.py", name, "--data_dir", data_dir, *SFT_SMOKE_ARGS)
    return train("train_sft.py", name, "--data_dir", data_dir, clean=False)


# ------------------------------------------------------------------------------------------------------
# the runner


def inject(nb, smoke):
    """Insert `SMOKE = <smoke>` after the parameter cell (the first code cell, tagged 'parameters')."""
    import nbformat

    code = [i for i, c in enumerate(nb.cells) if c.cell_type == "code"]
    first = nb.cells[code[0]] if code else None
    if first is None or "parameters" not in first.metadata.get("tags", []):
        raise ValueError("the first code cell must be the parameter cell (tagged 'parameters')")
    cell = nbformat.v4.new_code_cell(f"# injected by notebooks/run.py\nSMOKE = {bool(smoke)}",
                                     metadata={"tags": ["injected-parameters"]})
    cell.id = "injected-parameters"
    nb.cells.insert(code[0] + 1, cell)
    return nb


def kernel_manager_class():
    """A kernel manager that always starts ipykernel under this Python (the venv's), whatever kernelspecs
    are installed elsewhere (a 'python3' spec in ~/.local/share/jupyter may name another interpreter)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPython(KernelSpecManager):
        def get_kernel_spec(self, kernel_name, *args, **kw):
            return KernelSpec(resource_dir=RESOURCES, **get_kernel_dict())

    class Manager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _kernel_spec_manager_default(self):
            return ThisPython(data_dir=self.data_dir)

    return Manager


def execute(nb_or_path, smoke=True, cwd=ROOT, out=None, timeout=None):
    """Execute a notebook (a path or a NotebookNode) in a fresh kernel with working directory `cwd`; write
    the executed copy to `out` (also when a cell fails, for a look at the error). smoke: True or False is
    injected as SMOKE, None runs the notebook as it is. Raises nbclient's CellExecutionError when a cell
    raises. Returns the executed notebook."""
    import nbformat
    from nbclient import NotebookClient

    nb = nbformat.read(nb_or_path, as_version=4) if isinstance(nb_or_path, (str, Path)) else nb_or_path
    if smoke is not None:
        inject(nb, smoke)
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3", kernel_manager_class=kernel_manager_class(),
                            resources={"metadata": {"path": str(cwd)}})
    try:
        client.execute(env=script_env())
    finally:
        if out is not None:
            Path(out).parent.mkdir(parents=True, exist_ok=True)
            nbformat.write(nb, out)
    return nb


def strip(path):
    """Remove outputs, execution counts and timing metadata in place (after running a notebook in Jupyter):
    the notebooks are kept in git without outputs."""
    import nbformat

    nb = nbformat.read(path, as_version=4)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        if cell.cell_type == "code":
            cell.outputs, cell.execution_count = [], None
    nbformat.write(nb, path)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__)
    p.add_argument("names", nargs="*", help="name prefixes (01, 02_watch, ...); default: all")
    p.add_argument("--full", action="store_true", help="SMOKE = False: the default full-size runs")
    p.add_argument("--out", default=str(ROOT / "runs" / "notebooks"), help="folder for the executed copies")
    p.add_argument("--timeout", type=int, default=None,
                   help="seconds per cell (default: 600 at smoke size, none with --full)")
    p.add_argument("--strip", action="store_true", help="strip the outputs of notebooks/*.ipynb in place, run nothing")
    args = p.parse_args(argv)
    paths = [n for n in NOTEBOOKS if not args.names or any(n.name.startswith(x) for x in args.names)]
    if not paths:
        p.error(f"no notebook matches {args.names}; there are {[n.name for n in NOTEBOOKS]}")
    if args.strip:
        for path in paths:
            strip(path)
            print(f"stripped {path}")
        return 0
    timeout = args.timeout or (None if args.full else 600)
    failed = []
    for path in paths:
        out = Path(args.out) / (path.name if args.full else f"{path.stem}.smoke.ipynb")
        print(f"{path.name} ({'full' if args.full else 'smoke'} size) ...", flush=True)
        t0 = time.time()
        try:
            execute(path, smoke=not args.full, cwd=ROOT, out=out, timeout=timeout)
        except Exception as e:  # CellExecutionError, or a kernel that died: report, go on with the next
            failed.append(path.name)
            print(f"  FAILED after {time.time() - t0:.0f} s: {str(e)[-3000:]}", flush=True)
            continue
        print(f"  done in {time.time() - t0:.1f} s -> {out}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
