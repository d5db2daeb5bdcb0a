"""
A run's metrics log, <run>/metrics.jsonl: one JSON object per line, appended as the run goes, cut back to
the last checkpoint on --resume so that it reads as if the run had never been stopped.
"""

import json
import time
from pathlib import Path

from model.files import atomic_write, read_json_lines


class RunLog:
    """<run>/metrics.jsonl, one JSON object per line. On resume, the lines logged after the checkpoint
    (it records how many there were) are dropped, so the file reads as if the run had never been killed."""

    def __init__(self, run_dir, resume=None, enabled=True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled, self.lines = enabled, 0
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume is not None and self.path.exists():
            rows = read_json_lines(self.path, torn_tail_ok=True)
            if "log_lines" in resume:
                kept = rows[: resume["log_lines"]]
            else:  # a checkpoint from before log_lines was recorded
                kept = [r for r in rows if r.get("step", 0) <= resume["step"]]
        atomic_write(self.path, lambda f: f.write("".join(json.dumps(r) + "\n" for r in kept).encode()))
        self.lines = len(kept)
        self.t0 = time.time()

    def log(self, **record):
        if not self.enabled:
            return
        record = {k: (float(v) if getattr(v, 'ndim', None) == 0 else v) for k, v in record.items()}  # 0-d tensors
        record["time"] = round(time.time() - self.t0, 3)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        self.lines += 1


def read_metrics(run_dir):
    """A run's metrics.jsonl as a list of dicts; [] if there is none. A torn last line (a crash in
    mid-write) is dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    return read_json_lines(path, torn_tail_ok=True) if path.exists() else []
