"""
What SPIN and T-SPIN share, written once: the initial policy, synthetic answers from the batched KV
sampler, per-example sequence log-probs (one stacked forward, as TRL does), the optimizer and schedule
of the papers, per-iteration checkpoints, and the printed results table. The two scripts keep their
training loops in plain sight and differ in the loss and in y0.
"""

import gc
import hashlib
import json
import time
from pathlib import Path

import torch

from model import dist as D
from model.data import collate, format_prompt, read_jsonl, write_jsonl
from model.evaluate import answer
from model.gpt import GPT
from model.losses import sequence_logprobs
from model.tokenizer import Tokenizer
from model.train_utils import (
    autocast,
    load_checkpoint,
    model_from_checkpoint,
    read_metrics,
    rng_state,
    save_checkpoint,
)

# settings both self-play scripts share, so that SPIN and T-SPIN are compared on equal terms
SELFPLAY_DEFAULTS = dict(
    init="runs/sft/ckpt.pt",     # the SFT model: the initial policy theta_0
    data_dir="data/generated",
    data="",                     # any JSONL with prompt/response or messages (overrides data_dir/subset)
    subset=25,                   # the papers self-play on 50k of the 200k SFT examples: 25%
    eval_data="",
    tokenizer="",                # default: the one the init checkpoint was trained with
    iters=3,
    epochs=2,
    batch_size=64,
    optim="rmsprop",             # the papers' optimizer (no weight decay); or adamw
    lr=1e-4,
    warmup_ratio=0.1,            # linear warmup over 10% of each iteration's steps, then linear decay
    grad_clip=1.0,
    logp="sum",                  # sequence log-prob: sum over response tokens (official SPIN) or mean
    temperature=1.0,             # sampling y' (and y0)
    top_p=1.0,
    max_new_tokens=96,
    drop_identical=False,        # drop pairs whose y' equals y (they give exactly zero gradient)
    log_interval=10,
    nan_policy="skip",
    max_consecutive_nans=10,
    inject_nan_step=-1,
    resume=False,
    seed=1337,
    device="auto",
    smoke=False,
)

SMOKE = dict(iters=2, epochs=1, batch_size=16, max_new_tokens=32, log_interval=2)


def per_iteration(value, it, name):
    """'0.1' or a schedule '0.1,0.1,0.1,5.0' (the last entry repeats)."""
    parts = [float(v) for v in str(value).split(",")]
    if not parts:
        raise ValueError(f"--{name} is empty")
    return parts[min(it, len(parts) - 1)]


def load_policy(cfg, device):
    """The initial policy and its tokenizer, from the SFT checkpoint."""
    ckpt = load_checkpoint(cfg.init)
    tok_path = cfg.tokenizer or ckpt["tokenizer"]["path"]
    tok = Tokenizer.load(tok_path)
    return model_from_checkpoint(ckpt, tok, cfg.init).to(device), tok, tok_path


def load_prompts(cfg):
    """Training records (prompt + real answer y) and eval records."""
    data_dir = Path(cfg.data_dir)
    train_path = cfg.data or data_dir / ("train.jsonl" if cfg.subset == 100 else f"train_{cfg.subset}.jsonl")
    train = read_jsonl(train_path)
    evals = read_jsonl(cfg.eval_data or data_dir / "eval.jsonl")
    if cfg.smoke:
        train, evals = train[:128], evals[::max(1, len(evals) // 48)]
    return train, evals, train_path


def synthesize(model, tok, records, cfg, seed, dist):
    """One sampled answer per prompt, in the chat template. Under torchrun each rank samples its share and
    every rank gets the whole list back; each prompt's random stream is keyed by its global index, so the
    result is what a single process would have built. Returns response token lists (EOS kept)."""
    idx = list(range(dist.rank, len(records), dist.world))
    ids, _, _ = answer(model, tok, [records[i]["prompt"] for i in idx], cfg.max_new_tokens,
                       temperature=cfg.temperature, top_p=cfg.top_p, seed=seed, row_ids=idx)
    return D.gather_lists(dist, ids, len(records))


def save_answers(path, records, real, generated, tok):
    """Readable JSONL of (prompt, real, generated) with the generated ids, for people and for --resume."""
    write_jsonl(path, [{"prompt": r["prompt"], "input": tok.decode(format_prompt(tok, r["prompt"])),
                        "real": r["response"], "generated": tok.decode(g), "identical": y == g,
                        "generated_ids": g}
                       for r, y, g in zip(records, real, generated)])


def load_answers(path):
    return [r["generated_ids"] for r in read_jsonl_raw(path)]


def read_jsonl_raw(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


@torch.no_grad()
def dataset_logprobs(model, prompts, responses, pad_id, device, average=False, batch_size=128):
    """Sequence log-probs of many (prompt, response) pairs under a frozen model: SPIN's reference terms,
    computed once per iteration. Returns a float32 CPU tensor (N,)."""
    was_training = model.training
    model.eval()
    out = []
    for i in range(0, len(prompts), batch_size):
        x, y, m = (t.to(device) for t in collate(prompts[i:i + batch_size], responses[i:i + batch_size], pad_id))
        with autocast(device):
            logits = model(x)
        out.append(sequence_logprobs(logits, y, m, average).float().cpu())
    model.train(was_training)
    return torch.cat(out) if out else torch.empty(0)


def stacked_logprobs(model, prompts, response_sets, pad_id, device, average=False):
    """Log-probs of several answers per prompt (real, generated, [proto]) in ONE forward pass of the
    stacked batch, with gradients. Returns one (B,) tensor per answer set."""
    B = len(prompts)
    x, y, m = (t.to(device) for t in collate(prompts * len(response_sets), [r for rs in response_sets for r in rs],
                                              pad_id))
    with autocast(device):
        logits = model(x)
    lp = sequence_logprobs(logits, y, m, average)
    return [lp[k * B:(k + 1) * B] for k in range(len(response_sets))], logits


def make_optimizer(model, cfg):
    """RMSprop without weight decay, as in the SPIN and T-SPIN papers; AdamW as an option."""
    if cfg.optim == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    if cfg.optim == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    raise ValueError(f"--optim must be rmsprop or adamw, got {cfg.optim!r}")


def identical_share(real, generated):
    return sum(y == g for y, g in zip(real, generated)) / max(1, len(real))


def save_iteration(run_dir, it, model, cfg, tok_path, tok, step, nan_count, kind):
    """Checkpoint after iteration `it`: runs/<name>/iter<it>/ckpt.pt, and runs/<name>/ckpt.pt to resume."""
    state = {"kind": kind, "model": model.state_dict(), "model_config": model.config.to_dict(),
             "config": vars(cfg), "tokenizer": {"path": str(tok_path), "sha256": tok.sha256},
             "iter": it + 1, "step": step, "nan_count": nan_count, "rng": rng_state()}
    save_checkpoint(Path(run_dir) / f"iter{it}" / "ckpt.pt", state)
    save_checkpoint(Path(run_dir) / "ckpt.pt", state)


def results_table(run_dir, label):
    """The per-iteration table: SFT (the initial policy) then each iteration's held-out metrics."""
    rows = [r for r in read_metrics(run_dir) if "accuracy" in r and "iter" in r]
    lines = [f"{'model':<14}{'accuracy':>10}{'± se':>7}{'pipe rate':>11}{'eval loss':>11}{'eos rate':>10}",
             "-" * 63]
    for r in rows:
        name = "SFT (theta_0)" if r["iter"] < 0 else f"{label} iter {r['iter']}"
        lines.append(f"{name:<14}{r['accuracy']:>10.3f}{r.get('accuracy_se', float('nan')):>7.3f}"
                     f"{r['pipe_rate']:>11.3f}{r['eval_loss']:>11.3f}{r['eos_rate']:>10.3f}")
    return "\n".join(lines)


class Timer:
    def __enter__(self):
        self.t = time.time()
        return self

    def __exit__(self, *exc):
        self.s = time.time() - self.t


def param_checksum(model):
    """A hash of every parameter's bytes: tells whether weights changed at all."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def count_models():
    """How many GPT instances are alive: SPIN holds two (policy and frozen opponent), T-SPIN one."""
    return sum(isinstance(o, GPT) for o in gc.get_objects())
