"""
Training speed: forward + backward + AdamW tokens/s of the haiku model, and the fraction of this machine's
fp32 matmul peak it reaches (the peak is measured here, in the same run, with a large square matmul).
Prints a table, then one JSON line. Not a test.

    python -m bench.train [--threads N]
"""

import argparse
import json
import time

import torch

from model import GPT, GPTConfig


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


def flops_per_token(model, T):
    """6 N (matmul weights, forward + backward) + attention scores and values (PaLM appendix B)."""
    c = model.config
    n = model.num_params() - model.wpe.weight.numel()  # position embeddings are a lookup, no matmul
    return 6 * n + 12 * c.n_layer * c.n_embd * T


def train_tokens_per_s(model, B, T, steps=8):
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randint(0, model.config.vocab_size, (B, T))
    best = float("inf")
    for i in range(steps + 2):
        t = time.perf_counter()
        loss = torch.nn.functional.cross_entropy(model(x).flatten(0, 1), x.flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if i >= 2:  # the first steps allocate
            best = min(best, time.perf_counter() - t)
    return B * T / best


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0)
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig.haiku())
    peak = matmul_peak()
    print(f"fp32 matmul peak (1024^3, {torch.get_num_threads()} threads): {peak:.1f} GFLOP/s")
    print(f"{'shape':>12} {'tok/s':>9} {'GFLOP/s':>9} {'of peak':>8}")
    out = {"matmul_peak_gflops": round(peak, 1)}
    for B, T in [(64, 32), (64, 64), (16, 256)]:  # our SFT batches are ~64 x 30 tokens
        tps = train_tokens_per_s(model, B, T)
        gflops = tps * flops_per_token(model, T) / 1e9
        print(f"{B:>5} x {T:<5} {tps:>9.0f} {gflops:>9.1f} {gflops / peak:>7.1%}")
        out[f"tok_s_{B}x{T}"] = round(tps)
        out[f"frac_peak_{B}x{T}"] = round(gflops / peak, 3)
    print(json.dumps(out))


if __name__ == "__main__":
    main()
