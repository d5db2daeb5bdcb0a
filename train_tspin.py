"""
T-SPIN: Triplet-based SPIN (Wang, Sun, Chen, Xu, Luo, Zhang, Zhang; NeurIPS 2025; arXiv 2601.08198).
The authors released no code; this is a from-the-paper implementation.

Once, the initial policy theta_0 answers every training prompt: the proto-synthetic answers y0, reused
in every iteration. Each iteration t, the current model theta_t answers every prompt afresh, y', and we
train on triplets (x, y, y', y0):

    loss = -logsigmoid(a * (lp(y) - lp(y')))  -  b * logsigmoid(a * (lp(y') - lp(y0)))

All three log-probs come from the model being trained. There is NO reference model: the entropy
constraint on the opponent makes the reward a * log p itself, so only one model is ever in memory.
b = 0 at iteration 0, where y' and y0 come from the same policy. Compare with train_spin.py: the two
differ in the loss and in y0, and nothing else.

    python train_tspin.py                       # 3 iterations from runs/sft/ckpt.pt
    python train_tspin.py --b 0 --name tspin_nohist   # the paper's ablation: no historical advantage
    python train_tspin.py --resume              # continue after the last finished iteration
"""

import sys
import time

import torch
from tqdm import tqdm

from model.data import batches
from model.losses import tspin_loss
from model.selfplay import (
    SELFPLAY_DEFAULTS,
    count_models,
    evaluate_iteration,
    finish,
    identical_share,
    load_answers,
    make_optimizer,
    param_checksum,
    per_iteration,
    save_answers,
    save_iteration,
    stacked_logprobs,
    start,
    synthesize,
)
from model.train_utils import (
    lr_warmup_linear,
    nonfinite_culprit,
)

# -----------------------------------------------------------------------------------------------------
defaults = dict(
    name="tspin",
    a=1.0,                      # scale of both advantages
    b="0.0,0.1",                # weight of the historical advantage per iteration: 0 at iteration 0, then 0.1
    **SELFPLAY_DEFAULTS,
)
run = start(defaults, "T-SPIN")  # command line, --resume, processes, theta_0, prompts, log (model/selfplay.py)
cfg, model, tok, dist, device, log, guard = run.cfg, run.model, run.tok, run.dist, run.device, run.log, run.guard
records, prompts, real, run_dir, step = run.records, run.prompts, run.real, run.run_dir, run.step

if run.start_iter == 0:
    evaluate_iteration(run, -1, step)  # the initial policy, the first row of the table

# the proto-synthetic answers y0: generated once by theta_0, reused in every iteration
proto_path = run_dir / "proto.jsonl"
if run.resumed:
    proto = load_answers(proto_path)
else:
    proto = synthesize(model, tok, records, cfg, seed=cfg.seed, dist=dist)
    if dist.main:
        save_answers(proto_path, records, real, proto, tok)
tokens_seen = run.tokens_seen  # prompt + answer tokens with gradients, all ranks (for equal-compute baselines)
for it in range(run.start_iter, cfg.iters):
    b = per_iteration(cfg.b, it, "b")
    log.log(step=step, iter=it, event="iteration_start")

    # 1. no opponent copy: theta_t is the current model itself, before this iteration's training
    start_sum = param_checksum(model)

    # 2. theta_t answers every training prompt afresh: the synthetic answers y' (not accumulated)
    t0 = time.time()
    generated = synthesize(model, tok, records, cfg, seed=cfg.seed + 1000 * (it + 1), dist=dist)
    gen_s = time.time() - t0
    if dist.main:
        save_answers(run_dir / f"iter{it}" / "synthetic.jsonl", records, real, generated, tok)
    P, Y, G, Y0 = list(prompts), list(real), list(generated), list(proto)
    share_identical = identical_share(Y, G)
    if cfg.drop_identical:  # y' == y gives zero gradient in the current term: drop to save compute
        keep = [j for j in range(len(P)) if Y[j] != G[j]]
        P, Y, G, Y0 = [P[j] for j in keep], [Y[j] for j in keep], [G[j] for j in keep], [Y0[j] for j in keep]

    # 3. no reference log-probs: all three terms come from the model being trained
    average = cfg.logp == "mean"
    if dist.main:
        log.log(step=step, iter=it, identical_share=share_identical, pairs=len(P), gen_seconds=gen_s,
                gen_mean_tokens=sum(map(len, generated)) / len(generated))
        print(f"\niteration {it}: b {b}, {len(P):,} triplets, {share_identical:.1%} identical to the real "
              f"answer, generated in {gen_s:.1f}s", flush=True)

    # 4. train from theta_t on triplets: y beats y', and y' beats y0
    optimizer = make_optimizer(model, cfg)
    # stacked in one forward per example; with b = 0 the historical term is zero, so y0 is left out
    answers = [(Y[j], G[j], Y0[j]) if b else (Y[j], G[j]) for j in range(len(P))]
    lengths = [len(P[j]) + max(map(len, a)) for j, a in enumerate(answers)]  # batch similar lengths together
    tokens = [len(a) * len(P[j]) + sum(map(len, a)) for j, a in enumerate(answers)]
    steps_per_epoch = len(batches(len(P), cfg.batch_size, cfg.seed, 0, lengths))
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_ratio * total))
    pbar = tqdm(range(total), desc=f"iter {it}", disable=not dist.main, mininterval=1.0, file=sys.stdout,
                dynamic_ncols=True)
    for k in pbar:
        epoch, i = divmod(k, steps_per_epoch)
        if i == 0:
            order = batches(len(P), cfg.batch_size, cfg.seed + it, epoch, lengths)
        lr = lr_warmup_linear(k, total, warmup, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        global_batch = order[i]
        idx = global_batch[dist.rank::dist.world]
        answer_sets = [list(s) for s in zip(*(answers[j] for j in idx))]  # [ys, y's] or [ys, y's, y0s]
        lps, logits = stacked_logprobs(run.train_model, [P[j] for j in idx], answer_sets, tok.pad_id, device, average)
        loss, metrics = tspin_loss(lps[0], lps[1], lps[2] if len(lps) == 3 else None, cfg.a, b)
        loss = loss * (len(idx) / len(global_batch) * dist.world)  # exact mean over the global batch
        if step == cfg.inject_nan_step:
            loss = loss * float("nan")
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        event = guard.check(nonfinite_culprit(loss, grad_norm, model, logits), step)
        if event is None:
            optimizer.step()
        elif dist.main:
            log.log(iter=it, **event)
            tqdm.write(f"step {step}: non-finite {event['nan_event']}, step skipped ({guard.count} so far)")
        optimizer.zero_grad(set_to_none=True)
        tokens_seen += sum(tokens[j] for j in global_batch)
        step += 1
        if k == 0 and dist.main:
            log.log(step=step, iter=it, models_in_memory=count_models())
        if (k + 1) % cfg.log_interval == 0 and event is None and dist.main:
            log.log(step=step, iter=it, lr=lr, grad_norm=float(grad_norm), **metrics)
            pbar.set_postfix(loss=f"{float(metrics['loss']):.3f}", adv=f"{float(metrics['adv/current']):.3f}",
                             gap=f"{float(metrics['logps/gap']):.2f}", nans=guard.count)
    pbar.close()

    # 5. evaluate, checkpoint; the trained model is theta_{t+1}
    if dist.main:
        log.log(step=step, iter=it, policy_changed=param_checksum(model) != start_sum)
    evaluate_iteration(run, it, step)
    save_iteration(run, it, step, tokens_seen)

finish(run, step, tokens_seen)
