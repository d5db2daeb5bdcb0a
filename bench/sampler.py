"""
Sampler speed against the kept oracles, haiku model, all timings interleaved in one process:
  - naive_generate (no cache, a full forward per token) vs generate, batch 1, 128 new tokens;
  - generate with the module-forward decode step (lean=False, the oracle) vs the lean step
    (GPT.decode_step), at batch 1 (128 new tokens) and batch 256 (mixed prompt lengths, 64 new tokens);
  - the out-of-place sampling step vs sample_next's in-place one, batch 256;
  - evaluation's K samples per prompt: K=4 samples of 256 prompts at temperatures 0.6 and 1.0, 96 new
    tokens, by generate_k (one prefill per prompt, batch 256 sampled rows) vs K separate generate calls
    (the same samples, as the tests check). Both decode 256-row batches; generate_k saves the K-1
    repeated prefills, and some padding (its batches of 64 prompts are closer in length). The random
    model never stops at an EOS, so every sample runs its 96 tokens: the prefill's share is at its
    smallest here, and evaluation's shorter answers gain more.
Prints a table and writes runs/bench/bench.json ["sampler"]. Not a test: numbers depend on the machine
and on what else runs; ratios are medians of round-by-round pairs, tokens/s from the best round.

    python -m bench.sampler [--threads 1] [--rounds 3]
"""

import argparse

import torch

from bench.common import interleaved, machine, matmul_peak, ratio, save, set_threads
from model import GPT, GPTConfig, generate, naive_generate
from model.sampler import generate_k, sample_key, sample_next

NEW, NEW_B256 = 128, 64
K, K_PROMPTS, K_NEW, K_TEMPERATURES = 4, 256, 96, (0.6, 1.0)


def prompts(batch, lo, hi, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [torch.randint(0, 2000, (int(torch.randint(lo, hi + 1, (), generator=g)),), generator=g).tolist()
            for _ in range(batch)]


def sample_next_out_of_place(logits, u, temperature=1.0):
    """sample_next before it reused its buffer (a fresh tensor per op): same tokens, the timing oracle."""
    probs = torch.softmax(logits.float() / temperature, dim=-1)
    cdf = probs.cumsum(dim=-1)
    return torch.searchsorted(cdf, (u[:, None] * cdf[:, -1:]).contiguous(), right=True).squeeze(-1)


def flops_per_token(model, context):
    """Forward matmul FLOPs of one new token: 2 per weight (embeddings are lookups, the tied head is not)
    plus attention over `context` cached keys."""
    c = model.config
    n = model.num_params() - model.wpe.weight.numel()
    return 2 * n + 4 * c.n_layer * c.n_embd * context


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default, all cores)")
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig.haiku()).eval()
    peak = matmul_peak(seconds=1.0)
    print(f"haiku {model.num_params():,} params | temperature 1 | {machine()}")
    print(f"fp32 matmul peak (1024^3): {peak:.1f} GFLOP/s")

    one, many = prompts(1, 32, 32), prompts(256, 8, 32)  # batch 256: mixed lengths, so padded
    logits = torch.randn(256, model.config.vocab_size)
    u = torch.rand(256)
    fns = {
        "naive_b1": lambda: naive_generate(model, one, NEW),
        "oracle_b1": lambda: generate(model, one, NEW, lean=False),
        "lean_b1": lambda: generate(model, one, NEW),
        "oracle_b256": lambda: generate(model, many, NEW_B256, lean=False),
        "lean_b256": lambda: generate(model, many, NEW_B256),
        "sample_oop_b256": lambda: sample_next_out_of_place(logits, u),
        "sample_b256": lambda: sample_next(logits, u),
    }
    best, times = interleaved(fns, args.rounds, min_s=0.2, budget_s=60)
    tps = {k: NEW / best[k] if k.endswith("b1") else 256 * NEW_B256 / best[k] for k in fns if "sample" not in k}
    out = {"matmul_peak_gflops": round(peak, 1)}
    print(f"{'path':>12} {'tok/s':>9} {'of peak':>8}")
    for k, v in tps.items():
        fpt = flops_per_token(model, 32 + NEW // 2 if k.endswith("b1") else 20 + NEW_B256 // 2)  # mean context
        print(f"{k:>12} {v:>9.0f} {v * fpt / 1e9 / peak:>7.1%}")
        out[f"tok_s_{k}"] = round(v)
        out[f"frac_peak_{k}"] = round(v * fpt / 1e9 / peak, 4)
    ratios = {
        "generate_vs_naive_b1": ratio(times, "naive_b1", "lean_b1"),
        "oracle_vs_naive_b1": ratio(times, "naive_b1", "oracle_b1"),
        "lean_vs_oracle_b1": ratio(times, "oracle_b1", "lean_b1"),
        "lean_vs_oracle_b256": ratio(times, "oracle_b256", "lean_b256"),
        "in_place_vs_out_of_place_sampling_b256": ratio(times, "sample_oop_b256", "sample_b256"),
    }
    for k, v in ratios.items():
        print(f"{k:>40} {v:6.2f}x")
        out[k] = round(v, 3)
    out.update(bench_k_samples(model, args.rounds))
    save("sampler", out)


def bench_k_samples(model, rounds):
    """K samples per prompt at each temperature: generate_k vs K separate generate calls (rows keyed as
    generate_k keys them, so both draw the same samples). -> results for bench.json."""
    evals = prompts(K_PROMPTS, 8, 32, seed=1)
    keys = [[sample_key(i, j) for i in range(K_PROMPTS)] for j in range(K)]
    fns = {
        "k_separate": lambda: [generate(model, evals, K_NEW, temperature=t, row_ids=keys[j])
                               for t in K_TEMPERATURES for j in range(K)],
        "k_generate_k": lambda: [generate_k(model, evals, K, K_NEW, temperature=t) for t in K_TEMPERATURES],
    }
    best, times = interleaved(fns, rounds, min_s=0.0, budget_s=240)
    speedup = ratio(times, "k_separate", "k_generate_k")
    print(f"K={K} samples x {K_PROMPTS} prompts at temperatures {K_TEMPERATURES}, {K_NEW} new tokens "
          f"(best of {len(times['k_separate'])}):")
    print(f"{'K separate generate calls':>40} {best['k_separate']:6.2f} s")
    print(f"{'generate_k':>40} {best['k_generate_k']:6.2f} s")
    print(f"{'generate_k_vs_separate':>40} {speedup:6.2f}x")
    return {"k_separate_s": round(best["k_separate"], 2), "k_generate_k_s": round(best["k_generate_k"], 2),
            "k_generate_k_vs_separate": round(speedup, 3)}


if __name__ == "__main__":
    main()
