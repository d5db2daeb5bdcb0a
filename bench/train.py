"""
Training speed, haiku model, in one process:
  - a plain full-head step (forward, loss, backward, AdamW) at three shapes: tokens/s and the share of
    this machine's fp32 matmul peak (measured here, in the same run, with a large square matmul);
  - the full-head step (the oracle) vs response-only scoring (GPT.response_logprobs) on a batch shaped
    like self-play's (a prompt of 6-16 tokens stacked with 3 answers of 3-40, right-padded), interleaved: the SFT loss, the
    summed sequence log-probs of self-play, and a no-grad scoring pass (reference log-probs, eval loss).
Prints a table and writes runs/bench/bench.json ["train"]. Not a test.

    python -m bench.train [--threads 1] [--rounds 5]
"""

import argparse

import torch

from bench.common import interleaved, machine, matmul_peak, ratio, save, set_threads
from model import GPT, GPTConfig
from model.data import collate
from model.losses import sequence_logprobs, sft_loss


def flops_per_step(model, tokens, T, scored=None):
    """6 FLOPs per weight and token (forward + backward) for the matmuls, the head only at the scored
    positions (all by default), plus attention scores and values (PaLM appendix B)."""
    c = model.config
    head = model.lm_head.weight.numel()
    body = model.num_params() - model.wpe.weight.numel() - head  # embeddings are lookups
    scored = tokens if scored is None else scored
    return 6 * body * tokens + 6 * head * scored + 12 * c.n_layer * c.n_embd * T * tokens


def train_step(model, opt, loss_fn):
    def fn():
        loss_fn().backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return fn


def our_batch(n_prompts, vocab, seed=0):
    """A self-play batch of random tokens with our data's lengths: each prompt (6-16 tokens) stacked
    with 3 answers (real, generated, proto: 3-40 tokens each, EOS included), as model/selfplay.py does."""
    g = torch.Generator().manual_seed(seed)

    def seq(lo, hi):
        return torch.randint(1, vocab, (int(torch.randint(lo, hi + 1, (), generator=g)),), generator=g).tolist()

    prompts = [seq(6, 16) for _ in range(n_prompts)]
    return collate(prompts * 3, [seq(3, 40) for _ in range(3 * n_prompts)], pad_id=0)


def full_head_steps(model, opt, shapes):
    """Plain full-head steps on random tokens, every position scored (nanoGPT's training step)."""
    full = {}
    for B, T in shapes:
        x = torch.randint(0, model.config.vocab_size, (B, T + 1))
        full[f"{B}x{T}"] = train_step(model, opt, lambda x=x: torch.nn.functional.cross_entropy(
            model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten()))
    return full


def scoring_steps(model, opt, x, y, m):
    """The full head (oracle) vs response-only scoring on the batch (x, y, m): the SFT loss, the summed
    sequence log-probs of self-play, and a no-grad scoring pass."""
    def seq_full():
        return -sequence_logprobs(model(x), y, m).mean()

    def seq_resp():
        return -model.response_logprobs(x, y, m).sum(-1).mean()

    @torch.no_grad()
    def score_full():
        sequence_logprobs(model(x), y, m)

    @torch.no_grad()
    def score_resp():
        model.response_logprobs(x, y, m).sum(-1)

    return {"sft_full": train_step(model, opt, lambda: sft_loss(model(x), y, m)),
            "sft_resp": train_step(model, opt, lambda: -model.response_logprobs(x, y, m).sum() / m.sum()),
            "seq_full": train_step(model, opt, seq_full), "seq_resp": train_step(model, opt, seq_resp),
            "score_full": score_full, "score_resp": score_resp}


def report(model, shapes, x, m, peak, best, times, out):
    """Print the table of steps and the response-only ratios; record them in `out`."""
    scored, T = int(m.sum()), x.size(1)
    print(f"{'step':>10} {'tok/s':>9} {'GFLOP/s':>9} {'of peak':>8}")
    rows = [(f"{B}x{T_}", B * T_, flops_per_step(model, B * T_, T_)) for B, T_ in shapes]
    n = x.numel()
    rows += [("sft_full", n, flops_per_step(model, n, T)), ("sft_resp", n, flops_per_step(model, n, T, scored))]
    for name, tokens, flops in rows:
        gflops = flops / best[name] / 1e9
        print(f"{name:>10} {tokens / best[name]:>9.0f} {gflops:>9.1f} {gflops / peak:>7.1%}")
        out[f"tok_s_{name}"] = round(tokens / best[name])
        out[f"frac_peak_{name}"] = round(gflops / peak, 4)
    print(f"batch of {x.size(0)} x {T}: {scored / n:.0%} of the positions are scored answer tokens")
    out["scored_share"] = round(scored / n, 3)
    for what in ("sft", "seq", "score"):
        r = ratio(times, f"{what}_full", f"{what}_resp")
        print(f"{'response-only vs full head, ' + what:>40} {r:6.2f}x")
        out[f"resp_vs_full_{what}"] = round(r, 3)


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().split("\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default, all cores)")
    ap.add_argument("--rounds", type=int, default=5)
    args = ap.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    model = GPT(GPTConfig.haiku())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    peak = matmul_peak(seconds=1.0)
    print(f"haiku {model.num_params():,} params | {machine()}")
    print(f"fp32 matmul peak (1024^3): {peak:.1f} GFLOP/s")
    out = {"matmul_peak_gflops": round(peak, 1)}

    shapes = [(64, 32), (64, 64), (16, 256)]  # our SFT batches are ~32-64 x 30 tokens
    full = full_head_steps(model, opt, shapes)
    # full head (oracle) vs response-only scoring, on a batch shaped like ours
    x, y, m = our_batch(32, model.config.vocab_size)
    fns = {**full, **scoring_steps(model, opt, x, y, m)}
    best, times = interleaved(fns, args.rounds, min_s=0.1, budget_s=40)
    report(model, shapes, x, m, peak, best, times, out)
    save("train", out)


if __name__ == "__main__":
    main()
