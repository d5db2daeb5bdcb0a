"""
glibc malloc settings vs batch-256 generation. The settings are environment variables read when the
process starts, so each variant runs in its own subprocess; the variants take turns, round after round,
so that a busy machine slows them all alike. Not part of `make bench` (about 1-2 minutes).

    python -m bench.malloc [--threads 1] [--rounds 3]

Why: at batch 256 a step's temporaries are 0.5-2 MB. Above glibc's mmap threshold each one is a fresh
mmap, zero-filled by page faults, and unmapped when freed; and a free at the top of the heap beyond
the trim threshold returns memory to the OS, to be faulted in again at the next step.
"""

import argparse
import json
import os
import statistics
import subprocess
import sys

from bench.common import save

MB = 1 << 20
VARIANTS = {
    "default": {},
    "mmap16M_trim64M": {"MALLOC_MMAP_THRESHOLD_": 16 * MB, "MALLOC_TRIM_THRESHOLD_": 64 * MB},
    "mmap32M_trim256M": {"MALLOC_MMAP_THRESHOLD_": 32 * MB, "MALLOC_TRIM_THRESHOLD_": 256 * MB},  # 32M: glibc's cap
    "trim256M": {"MALLOC_TRIM_THRESHOLD_": 256 * MB},  # alone it also freezes the mmap threshold at 128K
}

CHILD = """
import json, resource, sys, time, torch
from model import GPT, GPTConfig, generate
from bench.sampler import prompts
threads = int(sys.argv[1])
if threads:
    torch.set_num_threads(threads)
torch.manual_seed(0)
model = GPT(GPTConfig.haiku()).eval()
many = prompts(256, 8, 32)
generate(model, many, 16)  # warm-up
best, r0 = float("inf"), resource.getrusage(resource.RUSAGE_SELF)
for _ in range(2):
    t = time.perf_counter()
    generate(model, many, 128)
    best = min(best, time.perf_counter() - t)
r1 = resource.getrusage(resource.RUSAGE_SELF)
# page faults and kernel time do not depend on what else runs: the allocator's share, measured directly
print(json.dumps({"tok_s": 256 * 128 / best, "faults": (r1.ru_minflt - r0.ru_minflt) / 2,
                  "sys_s": (r1.ru_stime - r0.ru_stime) / 2}))
"""


def run(env, threads):
    full = {**os.environ, **{k: str(v) for k, v in env.items()}}
    out = subprocess.run([sys.executable, "-c", CHILD, str(threads)], env=full, capture_output=True, text=True,
                         check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default, all cores)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    res = {name: [] for name in VARIANTS}
    for r in range(args.rounds):
        for name, env in VARIANTS.items():
            res[name].append(run(env, args.threads))
            print(f"round {r}: {name:<18} {res[name][-1]}", flush=True)
    out = {}
    print(f"batch 256, 128 new tokens, threads={args.threads or 'default'}: medians per generate() call")
    for name in VARIANTS:
        tps = [x["tok_s"] for x in res[name]]
        vs = statistics.median(x["tok_s"] / d["tok_s"] for x, d in zip(res[name], res["default"]))
        faults = statistics.median(x["faults"] for x in res[name])
        sys_s = statistics.median(x["sys_s"] for x in res[name])
        print(f"{name:<18} {statistics.median(tps):7.0f} tok/s {vs:6.2f}x  {faults:8.0f} page faults "
              f"{sys_s:6.2f} s in the kernel")
        out[name] = {"tok_s": round(statistics.median(tps)), "vs_default": round(vs, 3), "page_faults": round(faults),
                     "sys_s": round(sys_s, 3), "env": VARIANTS[name]}
    save(f"malloc_threads{args.threads}", out)


if __name__ == "__main__":
    main()
