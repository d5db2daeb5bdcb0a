"""
Supervised fine-tuning of the haiku GPT on (prompt, response) pairs; the loss covers the response
tokens and the EOS only. This model is the initial policy of SPIN and T-SPIN.

    python train_sft.py                         # the default run: about 3 minutes on 2 CPU cores
    python train_sft.py --subset 25 --name sft25
    python train_sft.py --inject_nan_step 50    # watch the NaN guard catch a poisoned step
    python train_sft.py --name sft --resume     # continue a stopped run from runs/sft/ckpt.pt (flags typed now win)
    python train_sft.py --overwrite             # start runs/sft afresh; the old one is moved aside, not deleted
    torchrun --nproc_per_node 2 train_sft.py    # data-parallel (gloo on CPU, NCCL on CUDA)

Writes runs/<name>/ (runs/<name>_smoke/ with --smoke): metrics.jsonl, curves.png, samples.jsonl,
summary.json, ckpt.pt (and ckpt.prev.pt, the one before it). A resumable checkpoint is saved about every
minute of work, so kill -9 loses at most that; Ctrl-C saves one at once and prints the command that continues.
"""

import json
import sys
import time
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model import dist as D
from model.checkpoint import (
    checkpoint_state,
    load_checkpoint,
    model_from_checkpoint,
    save_checkpoint,
    set_rng_state,
)
from model.cli import (
    RUN_DEFAULTS,
    claim_run,
    configure,
    die,
    halt,
    print_config,
    resume_command,
    stop,
    write_failed,
)
from model.data import batches, collate, data_paths, fit_to_context
from model.device import autocast, pick_device
from model.evaluate import evaluate, outcome_lines, show_samples, summary_line, temperatures
from model.files import DataError, read_json_lines, read_jsonl, write_json, write_jsonl
from model.gpt import GPT, GPTConfig
from model.log import RunLog
from model.losses import sft_loss_from_logps
from model.plots import plot_run
from model.results import outcomes_path
from model.rundir import RUNS_DIR, CheckpointClock, run_path, stop_requested
from model.step import NanGuard, NanHalt, lr_warmup_cosine, optimizer_step
from model.tokenizer import Tokenizer

# -----------------------------------------------------------------------------------------------------
# defaults; every one can be overridden: python train_sft.py --lr 1e-3 --max_steps 500 (--help lists them)
defaults = dict(
    out_dir=RUNS_DIR,            # runs go to <out_dir>/<name>/
    name="sft",                  # writes <out_dir>/<name>/
    data_dir="data/generated",   # train/eval splits and the tokenizer, made by `make data`
    data="",                     # any JSONL with prompt/response or messages (overrides data_dir/subset)
    subset=100,                  # 25, 50 or 100: percent of the train split
    eval_data="",                # held-out prompts (default: <data_dir>/eval.jsonl)
    tokenizer="",                # tokenizer dir (default: <data_dir>/tokenizer)
    template="chat",             # prompt template: chat (ours) or instruction (Alpaca-style "### Instruction:")
    preset="haiku",              # haiku (~1M parameters) or sonnet (~10M)
    init="",                     # continue from this checkpoint instead of a fresh model
    dropout=0.0,                 # dropout probability in the model
    batch_size=32,               # examples per optimizer step (all processes together)
    max_steps=2400,              # optimizer steps of the whole run
    lr=3e-3,                     # peak learning rate (AdamW)
    min_lr=3e-4,                 # the cosine schedule ends here
    warmup_steps=50,             # linear warmup steps before the cosine decay
    weight_decay=0.1,            # AdamW weight decay on matrices (not biases, gains, positions)
    grad_clip=1.0,               # clip the gradient's global L2 norm to this
    log_interval=10,             # optimizer steps between log lines
    eval_interval=800,           # optimizer steps between evaluations (each also saves a checkpoint)
    eval_subset=400,             # intermediate evals use this many prompts; the final one uses all
    max_new_tokens=96,           # longest evaluation answer, in tokens
    eval_samples=4,              # the final evaluation also samples K answers per prompt at each eval temperature (0 = off)
    eval_temperatures="0.6,1.0",  # temperatures of that sampled evaluation
    eval_sample_every=4,         # sample every N-th eval prompt (1 = all)
    nan_policy="skip",           # skip: drop a non-finite step and go on; halt: stop at the first
    max_consecutive_nans=10,     # stop after this many non-finite steps in a row, whatever the policy
    inject_nan_step=-1,          # poison the loss at this step (teaching, tests); -1 = never
    resume=False,                # continue <out_dir>/<name> from its ckpt.pt; flags given now override its own
    stop_at=-1,                  # stop after this step as if killed (to try --resume); -1 = never
    seed=1337,                   # seeds the model's init and the batch order; same seed, same numbers on CPU
    device="auto",               # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    compile=False,               # torch.compile the training forward (worth it on a GPU; slow to start)
    smoke=False,                 # tiny data and steps, for the tests (< 30 s); the default name becomes sft_smoke
    **RUN_DEFAULTS,              # ckpt_seconds, ckpt_interval, overwrite, debug (model/train_utils.py)
)


def smoke_sizes(cfg):  # --smoke: these sizes, except for the flags typed (which win)
    return dict(max_steps=30, batch_size=16, eval_interval=10**9, log_interval=5, warmup_steps=5, eval_subset=48,
                max_new_tokens=32)


# the command line, checked (one line and exit 2 on any mistake); on --resume the run's own settings
cfg, resume_ckpt = configure(defaults, "sft", __file__, description=__doc__.split("\n\n")[0], smoke=smoke_sizes)
run_dir = run_path(cfg)
ckpt_path = run_dir / "ckpt.pt"

# -----------------------------------------------------------------------------------------------------
# set-up: device, processes, data, tokenizer, model, optimizer; every input is read before anything is written
dist, device = D.setup(pick_device(cfg.device))
if dist.main:
    print_config(cfg, "train_sft")
torch.manual_seed(cfg.seed + dist.rank)
data_dir = Path(cfg.data_dir)
tok_path = cfg.tokenizer or data_dir / "tokenizer"
train_path, eval_path = data_paths(cfg)
try:
    tok = Tokenizer.load(tok_path)
    train_records, eval_records = read_jsonl(train_path), read_jsonl(eval_path)
except (DataError, FileNotFoundError, ValueError) as e:
    die(str(e))
try:  # the model: the run's own on --resume, else --init's, else a fresh one
    if resume_ckpt is not None:
        model = model_from_checkpoint(resume_ckpt, tok, ckpt_path)
    elif cfg.init:
        model = model_from_checkpoint(load_checkpoint(cfg.init), tok, cfg.init)
    else:
        model = GPT(GPTConfig.preset(cfg.preset, vocab_size=tok.vocab_size, dropout=cfg.dropout))
except (FileNotFoundError, ValueError, RuntimeError) as e:
    die(f"--init: {e}" if cfg.init and resume_ckpt is None else str(e))
if cfg.smoke:
    train_records, eval_records = train_records[:256], eval_records[::max(1, len(eval_records) // 48)]
block_size = model.config.block_size
train_records, prompts, responses, note = fit_to_context(tok, train_records, block_size, cfg.template)
eval_records, _, _, eval_note = fit_to_context(tok, eval_records, block_size, cfg.template)
for path, records, what in [(train_path, train_records, note), (eval_path, eval_records, eval_note)]:
    if not records:
        die(f"{path}: no example fits the model's context ({block_size} tokens)")
    if what and dist.main:
        print(f"{path}: {what}", flush=True)
lengths = [len(p) + len(r) for p, r in zip(prompts, responses)]
claim_run(cfg, dist.main)  # inputs are good: now runs/<name>/ is made (or an old run moved aside) and locked

model.to(device)
raw_model = model
if dist.enabled:
    model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None)
if cfg.compile:
    model = torch.compile(model)  # training only: evaluation samples with the plain raw_model

# AdamW; no weight decay on biases, LayerNorm gains and position embeddings (the 1-D / tiny tensors)
decay = [p for n, p in raw_model.named_parameters() if p.dim() >= 2 and not n.startswith("wpe")]
no_decay = [p for n, p in raw_model.named_parameters() if p.dim() < 2 or n.startswith("wpe")]
optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": cfg.weight_decay},
                               {"params": no_decay, "weight_decay": 0.0}], lr=cfg.lr, betas=(0.9, 0.95))
guard = NanGuard(cfg.nan_policy, cfg.max_consecutive_nans)
start_step = 0
if resume_ckpt is not None:
    optimizer.load_state_dict(resume_ckpt["optimizer"])
    set_rng_state(resume_ckpt["rng"])
    start_step, guard.count = resume_ckpt["step"], resume_ckpt["nan_count"]
log = RunLog(run_dir, resume=resume_ckpt, enabled=dist.main)
samples_path = run_dir / "samples.jsonl"
if resume_ckpt is not None and dist.main and samples_path.exists():  # as the log: drop what came after the checkpoint
    write_jsonl(samples_path, [r for r in read_json_lines(samples_path, torn_tail_ok=True) if r["step"] <= start_step])
steps_per_epoch = len(batches(len(prompts), cfg.batch_size, cfg.seed, 0, lengths))
if dist.main:
    print(f"model: {raw_model.num_params():,} parameters | train {len(prompts):,} examples ({train_path}), "
          f"{steps_per_epoch} steps/epoch | eval {len(eval_records)} prompts | device {device}, "
          f"{dist.world} process(es)", flush=True)


def checkpoint(step):
    """Everything needed to continue exactly: weights, optimizer, settings, tokenizer, step, RNG, and the
    log's state (its line count, the loss summed since the last log line)."""
    if dist.main:
        try:
            save_checkpoint(ckpt_path, checkpoint_state("sft", raw_model, cfg, tok, tok_path, step, guard.count,
                                                        optimizer=optimizer.state_dict(), tokens_seen=tokens_seen,
                                                        loss_sum=float(loss_sum), log_lines=log.lines))
        except OSError as e:  # a full disk, a read-only directory: one line, exit 1, the previous one intact
            write_failed(e, ckpt_path, cfg)
    clock.saved()


def run_eval(step, final=False):
    records = eval_records if final else eval_records[::max(1, len(eval_records) // cfg.eval_subset)]
    sampling = dict(samples=cfg.eval_samples, temperatures=temperatures(cfg.eval_temperatures),
                    sample_every=cfg.eval_sample_every, seed=cfg.seed) if final else {}
    metrics, samples = evaluate(raw_model, tok, records, device, cfg.max_new_tokens, dist=dist, template=cfg.template,
                                **sampling)
    if final and dist.main:  # what each prompt got, for the reports' prompt-by-prompt comparisons
        write_jsonl(outcomes_path(run_dir, "final"), outcome_lines(records, samples))
    if dist.main:
        log.log(step=step, **metrics, final=final)
        print(f"\nstep {step} eval ({len(records)} prompts): {summary_line(metrics)}", flush=True)
        shown = show_samples(samples, n=5)
        with open(run_dir / "samples.jsonl", "a") as f:
            for s in shown:
                f.write(json.dumps({"step": step, **s}) + "\n")
        plot_run(run_dir, title=f"SFT: {cfg.name}")
    return metrics


# -----------------------------------------------------------------------------------------------------
# the training loop
t_start = time.time()
tokens_seen = tokens_at_log = resume_ckpt.get("tokens_seen", 0) if resume_ckpt else 0  # continues on --resume
# the loss summed since the last log line, continued on --resume (exact in one process; under torchrun the
# processes' partial sums are about equal)
loss_sum = torch.tensor(resume_ckpt.get("loss_sum", 0.0) if resume_ckpt else 0.0, device=device)
clock = CheckpointClock(cfg.ckpt_interval, cfg.ckpt_seconds)  # a resumable checkpoint about every minute
order, order_epoch = None, -1
pbar = tqdm(range(start_step, cfg.max_steps), initial=start_step, total=cfg.max_steps, disable=not dist.main,
            mininterval=1.0, file=sys.stdout, dynamic_ncols=True)
t_log = time.time()
for step in pbar:
    epoch, i = divmod(step, steps_per_epoch)
    if epoch != order_epoch:
        order, order_epoch = batches(len(prompts), cfg.batch_size, cfg.seed, epoch, lengths), epoch
    lr = lr_warmup_cosine(step, cfg.max_steps, cfg.warmup_steps, cfg.lr, cfg.min_lr)
    for group in optimizer.param_groups:
        group["lr"] = lr

    global_batch = order[i]
    mine = global_batch[dist.rank::dist.world]
    x, targets, m = (t.to(device) for t in collate([prompts[j] for j in mine], [responses[j] for j in mine], tok.pad_id))
    # normalise by the response tokens of the whole global batch (known on every rank without talking), so
    # that N ranks x batch b take exactly the step of 1 rank x batch N*b (DDP averages gradients over ranks)
    n_global = sum(len(responses[j]) for j in global_batch)
    with autocast(device):
        token_lp = model(x, targets=targets, mask=m)  # the head at response positions only (sft_loss is the oracle)
    loss = sft_loss_from_logps(token_lp.sum(dim=-1), n_global) * dist.world
    if step == cfg.inject_nan_step:
        loss = loss * float("nan")
    try:
        grad_norm, event = optimizer_step(loss, raw_model, optimizer, guard, step, cfg.grad_clip, token_lp)
    except NanHalt as e:  # the step was not applied: save the state before it, which is still good
        if dist.main:
            log.log(**e.event)
        checkpoint(step)
        pbar.close()
        halt(e, ckpt_path, cfg)
    if event is not None:
        loss = torch.zeros_like(loss)  # the mean loss of the log line counts a skipped step as 0
        if dist.main:
            log.log(**event)
            tqdm.write(f"step {step}: non-finite {event['nan_event']}, step skipped ({guard.count} so far)")
    tokens_seen += sum(lengths[j] for j in global_batch)  # every token of the batch went through the model
    loss_sum += loss.detach()  # stays on the device: no sync until the log line

    if (step + 1) % cfg.log_interval == 0:
        loss_val = float(D.all_reduce_sum(dist, loss_sum)) / dist.world / cfg.log_interval
        tok_per_s = (tokens_seen - tokens_at_log) / (time.time() - t_log)
        t_log, tokens_at_log, loss_sum = time.time(), tokens_seen, torch.zeros((), device=device)
        if dist.main:
            log.log(step=step + 1, loss=loss_val, lr=lr, grad_norm=float(grad_norm), tok_per_s=tok_per_s)
            pbar.set_postfix(loss=f"{loss_val:.3f}", lr=f"{lr:.1e}", tok_s=f"{tok_per_s:.0f}", nans=guard.count)
    if (step + 1) % cfg.eval_interval == 0 and step + 1 < cfg.max_steps:
        run_eval(step + 1)
        checkpoint(step + 1)
    elif clock.due(step + 1) or step + 1 == cfg.stop_at:
        checkpoint(step + 1)
    if stop_requested():
        pbar.close()
        stop(f"checkpoint saved at step {step + 1} in {ckpt_path}")
    if step + 1 == cfg.stop_at:
        if dist.main:
            print(f"\nstopped at step {step + 1} (--stop_at); continue with: {resume_command(cfg)}")
        D.cleanup(dist)
        sys.exit(0)
pbar.close()

# -----------------------------------------------------------------------------------------------------
# final evaluation, checkpoint and summary
checkpoint(cfg.max_steps)
if stop_requested():
    stop(f"checkpoint saved at the last step in {ckpt_path}; --resume runs the final evaluation")
final = run_eval(cfg.max_steps, final=True)
if dist.main:
    wall = time.time() - t_start
    write_json(run_dir / "summary.json", {
        "kind": "sft", "name": cfg.name, "steps": cfg.max_steps, "wall_time_s": round(wall, 1),
        "tokens_seen": tokens_seen, "params": raw_model.num_params(), "nan_count": guard.count,
        "train_examples": len(prompts), "config": vars(cfg), "final": final})
    print(f"done in {wall:.0f}s: {summary_line(final)} | nan events {guard.count}")
    print(f"curves: {run_dir / 'curves.png'}   checkpoint: {ckpt_path}")
D.cleanup(dist)
