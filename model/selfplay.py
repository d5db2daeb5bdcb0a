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
from types import SimpleNamespace

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from model import dist as D
from model.data import (
    DataError,
    collate,
    encode_records,
    format_prompt,
    read_jsonl,
    sorted_batches,
    write_jsonl,
)
from model.evaluate import answer, evaluate, show_samples, summary_line
from model.gpt import GPT
from model.losses import sequence_logprobs
from model.plots import plot_run
from model.tokenizer import Tokenizer
from model.train_utils import (
    NanGuard,
    RunLog,
    autocast,
    die,
    load_checkpoint,
    model_from_checkpoint,
    parse_config,
    pick_device,
    print_config,
    read_metrics,
    rng_state,
    save_checkpoint,
    set_rng_state,
    write_json,
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
    lr=1e-5,                     # RMSprop; chosen by a sweep on a validation split (1e-4 degraded both methods)
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
    compile=False,               # torch.compile the training forward (worth it on a GPU; slow to start)
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
    computed once per iteration. Batches are formed in order of length (answers run from 5 to 100 tokens,
    so random batches are mostly padding); the result is in the input order. A float32 CPU tensor (N,)."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(prompts))
    for idx in sorted_batches([len(p) + len(r) for p, r in zip(prompts, responses)], batch_size):
        x, y, m = (t.to(device) for t in collate([prompts[j] for j in idx], [responses[j] for j in idx], pad_id))
        with autocast(device):
            logits = model(x)
        out[idx] = sequence_logprobs(logits, y, m, average).float().cpu()
    model.train(was_training)
    return out


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


def save_iteration(run, it, step, tokens_seen):
    """Checkpoint after iteration `it`: runs/<name>/iter<it>/ckpt.pt, and runs/<name>/ckpt.pt to resume.
    No optimizer state: each iteration starts a fresh optimizer from the new theta_t. tokens_seen rides
    along so that a resumed run's summary counts every iteration's tokens, not only its own."""
    if not run.dist.main:
        return
    state = {"kind": run.kind_id, "model": run.model.state_dict(), "model_config": run.model.config.to_dict(),
             "config": vars(run.cfg), "tokenizer": {"path": str(run.tok_path), "sha256": run.tok.sha256},
             "iter": it + 1, "step": step, "tokens_seen": tokens_seen, "nan_count": run.guard.count,
             "rng": rng_state()}
    save_checkpoint(run.run_dir / f"iter{it}" / "ckpt.pt", state)
    save_checkpoint(run.run_dir / "ckpt.pt", state)


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


def param_checksum(model):
    """A hash of every parameter's bytes: tells whether weights changed at all."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def count_models():
    """How many GPT instances are alive: SPIN holds two (policy and frozen opponent), T-SPIN one."""
    return sum(isinstance(o, GPT) for o in gc.get_objects())


def start(defaults, kind):
    """Everything both self-play scripts do before their first iteration, the same way: read the command
    line (--resume takes the run's own settings), join the processes, load theta_0 and the prompts, open
    the log and the NaN guard. Returns a namespace with what the training loop uses."""
    cfg = parse_config(defaults, description=f"{kind} self-play fine-tuning")
    run_dir = Path("runs") / cfg.name
    resume = None
    if cfg.resume:
        if not (run_dir / "ckpt.pt").exists():
            die(f"--resume: no checkpoint at {run_dir / 'ckpt.pt'}")
        resume = load_checkpoint(run_dir / "ckpt.pt")
        cfg.__dict__.update({**resume["config"], "resume": True, "init": str(run_dir / "ckpt.pt")})
    if cfg.smoke:
        cfg.__dict__.update(SMOKE)

    dist, device = D.setup(pick_device(cfg.device))
    if dist.main:
        print_config(cfg, kind)
    torch.manual_seed(cfg.seed)
    try:
        model, tok, tok_path = load_policy(cfg, device)
        records, eval_records, train_path = load_prompts(cfg)
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as e:
        die(f"{e}\n(self-play starts from an SFT checkpoint: run `make sft` first, or pass --init)")
    prompts, real = encode_records(tok, records, model.config.block_size)
    train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else model
    if cfg.compile:
        train_model = torch.compile(train_model)  # training only: generation and evaluation use the plain model
    guard = NanGuard(cfg.nan_policy, cfg.max_consecutive_nans)
    start_iter, step = (resume["iter"], resume["step"]) if resume else (0, 0)
    if resume:
        guard.count = resume["nan_count"]
        set_rng_state(resume["rng"])
    log = RunLog(run_dir, resume_step=step if resume else None, enabled=dist.main)
    if dist.main:
        print(f"{kind} from {cfg.init}: {len(records):,} prompts ({train_path}), {len(eval_records)} eval prompts, "
              f"iterations {start_iter}..{cfg.iters - 1}, device {device}, {dist.world} process(es)", flush=True)
    return SimpleNamespace(kind=kind, kind_id=kind.lower().replace("-", ""), cfg=cfg, run_dir=run_dir, dist=dist,
                           device=device, model=model,
                           train_model=train_model, tok=tok, tok_path=tok_path, records=records,
                           eval_records=eval_records, prompts=prompts, real=real, guard=guard, log=log,
                           start_iter=start_iter, step=step, resumed=resume is not None, t_start=time.time(),
                           tokens_seen=resume.get("tokens_seen", 0) if resume else 0)


def evaluate_iteration(run, it, step):
    """The shared evaluation after iteration `it` (-1: theta_0, the SFT row of the table)."""
    metrics, samples = evaluate(run.model, run.tok, run.eval_records, run.device, run.cfg.max_new_tokens,
                                dist=run.dist)
    if run.dist.main:
        run.log.log(step=step, iter=it, **metrics)
        print(f"{'theta_0 (SFT)' if it < 0 else f'iteration {it}'} eval: {summary_line(metrics)}", flush=True)
        show_samples(samples, n=4)
        plot_run(run.run_dir, title=f"{run.kind}: {run.cfg.name}")


def finish(run, step, tokens_seen):
    """summary.json, the results table, the curves' path; leave the process group."""
    if run.dist.main:
        table = results_table(run.run_dir, run.kind)
        write_json(run.run_dir / "summary.json", {
            "kind": run.kind_id, "name": run.cfg.name, "iters": run.cfg.iters, "steps": step,
            "wall_time_s": round(time.time() - run.t_start, 1), "nan_count": run.guard.count,
            "tokens_seen": tokens_seen, "table": table.splitlines()})
        print("\n" + table)
        print(f"\ncurves: {run.run_dir / 'curves.png'}")
    D.cleanup(run.dist)
