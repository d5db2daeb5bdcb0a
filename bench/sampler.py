"""
Sampler speed: naive (no cache, a full forward per token) vs KV-cached generation, haiku model.
Prints a table, then one JSON line. Not a test: numbers depend on the machine and on what else runs.

    python -m bench.sampler [--threads N] [--repeats 3]
"""

import argparse
import json
import platform
import time

import torch

from model import GPT, GPTConfig, generate, naive_generate

PROMPT, NEW = 32, 128


def tokens_per_s(fn, model, batch, repeats):
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 1000, (PROMPT,), generator=g).tolist() for _ in range(batch)]
    fn(model, prompts[:2], 4)  # warm-up: first-call allocations
    best = float("inf")
    for _ in range(repeats):  # best of N: the least disturbed run
        t = time.perf_counter()
        fn(model, prompts, NEW, temperature=1.0, seed=0)
        best = min(best, time.perf_counter() - t)
    return batch * NEW / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig.haiku()).eval()
    print(f"haiku {model.num_params():,} params | prompt {PROMPT}, {NEW} new tokens | "
          f"{torch.get_num_threads()} threads | {platform.processor() or platform.machine()}")
    results = {}
    for batch in (1, 64):
        results[f"naive_b{batch}"] = tokens_per_s(naive_generate, model, batch, args.repeats)
        results[f"cached_b{batch}"] = tokens_per_s(generate, model, batch, args.repeats)
    results["cached_b256"] = tokens_per_s(generate, model, 256, args.repeats)
    print(f"{'batch':>6} {'naive tok/s':>12} {'cached tok/s':>13} {'speed-up':>9}")
    for batch in (1, 64):
        n, c = results[f"naive_b{batch}"], results[f"cached_b{batch}"]
        print(f"{batch:>6} {n:>12.0f} {c:>13.0f} {c / n:>8.1f}x")
    print(f"{256:>6} {'':>12} {results['cached_b256']:>13.0f}")
    results.update(speedup_b1=results["cached_b1"] / results["naive_b1"],
                   speedup_b64=results["cached_b64"] / results["naive_b64"], threads=torch.get_num_threads())
    print(json.dumps({k: round(v, 2) for k, v in results.items()}))


if __name__ == "__main__":
    main()
