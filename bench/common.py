"""Shared by the benchmarks: interleaved timing (robust to other processes on the machine), the fp32
matmul peak, and runs/bench/bench.json."""

import json
import platform
import statistics
import time
from pathlib import Path

import torch

OUT = Path("runs/bench/bench.json")


def interleaved(fns, rounds, min_s=0.05, budget_s=float("inf")):
    """Time each fn of a dict round-robin: another process slowing the machine then slows all of them,
    so the ratios stay fair. -> ({name: best seconds per call}, {name: [seconds per call, each round]}).
    Each round calls a fn enough times to take about min_s (decided on the warm-up call); rounds stop
    early once budget_s has passed (at least one is run), so a busy machine cannot stretch the run."""
    start, calls = time.perf_counter(), {}
    for name, fn in fns.items():  # warm-up, and how many calls make one timing
        t = time.perf_counter()
        fn()
        calls[name] = max(1, round(min_s / max(time.perf_counter() - t, 1e-6)))
    times = {name: [] for name in fns}
    for r in range(rounds):
        if r > 0 and time.perf_counter() - start > budget_s:
            print(f"(time budget of {budget_s:.0f} s reached: {r} rounds instead of {rounds})")
            break
        for name, fn in fns.items():
            t = time.perf_counter()
            for _ in range(calls[name]):
                fn()
            times[name].append((time.perf_counter() - t) / calls[name])
    return {name: min(ts) for name, ts in times.items()}, times


def ratio(times, slow, fast):
    """Median over rounds of slow/fast time: how many times faster `fast` is, paired round by round."""
    return statistics.median(s / f for s, f in zip(times[slow], times[fast]))


def matmul_peak(n=1024, seconds=2.0):
    """fp32 GFLOP/s of an n x n matmul: the best this machine's BLAS does."""
    a, b = torch.randn(n, n), torch.randn(n, n)
    a @ b
    best, t_end = 0.0, time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        t = time.perf_counter()
        a @ b
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best


def set_threads(n):
    """One thread by default: on a shared machine, two OpenMP threads stall whenever a neighbour takes
    a core (a ~2x slower, erratic run), while one thread gives comparable numbers run after run. The
    ratios against the oracles are what we track; --threads 0 keeps torch's default (all cores)."""
    if n:
        torch.set_num_threads(n)


def machine():
    return f"{torch.get_num_threads()} threads | {platform.processor() or platform.machine()} | torch {torch.__version__}"


def save(section, results):
    """Merge one benchmark's results into runs/bench/bench.json under its name (the others are kept)."""
    OUT.parent.mkdir(parents=True, exist_ok=True)
    data = json.loads(OUT.read_text()) if OUT.exists() else {}
    data[section] = {**results, "threads": torch.get_num_threads(), "time": time.strftime("%Y-%m-%d %H:%M:%S")}
    OUT.write_text(json.dumps(data, indent=1) + "\n")
    print(f"-> {OUT} [{section}]")
