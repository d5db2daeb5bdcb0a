"""Exact vs tanh GELU on CPU: the haiku MLP forward + backward, whole training steps, and generation.
Both variants run interleaved in one process. The choice it informed is recorded next to gelu() in
model/gpt.py. Not part of `make bench` (it patches the model's activation).

    python -m bench.gelu [--threads 1] [--rounds 15]
"""

import argparse

import torch
import torch.nn.functional as F

import model.gpt as gpt
from bench.common import interleaved, machine, ratio, save, set_threads
from model import GPT, GPTConfig, generate

ACT = {"exact": lambda x: F.gelu(x), "tanh": lambda x: F.gelu(x, approximate="tanh")}


def mlp_step(mlp, x, act):
    def fn():
        gpt.gelu = ACT[act]
        mlp(x).sum().backward()
    return fn


def train_step(model, opt, x, act):
    def fn():
        gpt.gelu = ACT[act]
        loss = F.cross_entropy(model(x[:, :-1]).flatten(0, 1), x[:, 1:].flatten())
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
    return fn


def gen(model, prompts, new, act):
    def fn():
        gpt.gelu = ACT[act]
        generate(model, prompts, new, seed=0)
    return fn


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's default, all cores)")
    ap.add_argument("--rounds", type=int, default=15)
    args = ap.parse_args()
    set_threads(args.threads)
    torch.manual_seed(0)
    chosen = gpt.gelu
    model = GPT(GPTConfig.haiku())
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    mlp = model.blocks[0].mlp
    x_mlp = torch.randn(64 * 32, 128, requires_grad=True)  # one SFT-sized batch of positions
    x_tok = torch.randint(0, model.config.vocab_size, (64, 33))
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 2000, (12,), generator=g).tolist() for _ in range(256)]
    cases = {"mlp": lambda a: mlp_step(mlp, x_mlp, a), "step": lambda a: train_step(model, opt, x_tok, a),
             "gen_b1": lambda a: gen(model, prompts[:1], 64, a), "gen_b256": lambda a: gen(model, prompts, 16, a)}
    fns = {f"{what}_{act}": make(act) for what, make in cases.items() for act in ACT}
    best, times = interleaved(fns, args.rounds)
    gpt.gelu = chosen
    print(f"haiku, 64 x 32 tokens | {machine()}")
    out = {}
    for what in cases:
        r = ratio(times, f"{what}_tanh", f"{what}_exact")
        print(f"{what:>8}: exact {best[f'{what}_exact'] * 1e3:7.2f} ms  tanh {best[f'{what}_tanh'] * 1e3:7.2f} ms"
              f"  tanh/exact {r:.2f}x")
        out.update({f"{what}_exact_ms": round(best[f"{what}_exact"] * 1e3, 3),
                    f"{what}_tanh_ms": round(best[f"{what}_tanh"] * 1e3, 3), f"{what}_tanh_over_exact": round(r, 3)})
    save("gelu", out)


if __name__ == "__main__":
    main()
