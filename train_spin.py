"""
SPIN: Self-Play fINe-tuning (Chen, Deng, Yuan, Ji, Gu; ICML 2024; arXiv 2401.01335).

Each iteration t, the frozen previous model theta_t (the opponent) answers every training prompt once,
y' ~ p_t(.|x); then, starting from theta_t, we train so that the real answer y beats y':

    loss = -logsigmoid(lam * ((lp(y) - ref(y)) - (lp(y') - ref(y'))))

lp: summed log-prob of the response tokens (EOS included) under the model being trained; ref: the same
under theta_t. It is DPO with y as "chosen", the model's own answer as "rejected", the previous iterate
as reference. Compare with train_tspin.py: the two differ in the loss and in y0, and nothing else.

    python train_spin.py                        # 3 iterations from runs/sft/ckpt.pt
    python train_spin.py --lam 0.1,0.1,0.1,5.0 --iters 4   # the paper's schedule
    python train_spin.py --resume               # continue after the last finished iteration
"""

import copy
import sys
import time

import torch
from tqdm import tqdm

from model.data import batches
from model.losses import spin_loss
from model.selfplay import (
    SELFPLAY_DEFAULTS,
    count_models,
    dataset_logprobs,
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
    name="spin",
    lam="0.1",                  # lam ("beta" in the code); a schedule "0.1,0.1,0.1,5.0" per iteration
    mix_previous=False,         # also train on the previous iteration's pairs, as the official code does
    **SELFPLAY_DEFAULTS,
)
run = start(defaults, "SPIN")  # command line, --resume, processes, theta_0, prompts, log (model/selfplay.py)
cfg, model, tok, dist, device, log, guard = run.cfg, run.model, run.tok, run.dist, run.device, run.log, run.guard
records, prompts, real, run_dir, step = run.records, run.prompts, run.real, run.run_dir, run.step

if run.start_iter == 0:
    evaluate_iteration(run, -1, step)  # the initial policy, the first row of the table

previous = None
if cfg.mix_previous and run.start_iter > 0:
    previous = load_answers(run_dir / f"iter{run.start_iter - 1}" / "synthetic.jsonl")
tokens_seen = run.tokens_seen  # prompt + answer tokens with gradients, all ranks (for equal-compute baselines)
for it in range(run.start_iter, cfg.iters):
    lam = per_iteration(cfg.lam, it, "lam")
    log.log(step=step, iter=it, event="iteration_start")

    # 1. the opponent theta_t: a frozen copy of the current model
    opponent = copy.deepcopy(model).eval().requires_grad_(False)
    opponent_sum = param_checksum(opponent)

    # 2. theta_t answers every training prompt: the synthetic answers y'
    t0 = time.time()
    generated = synthesize(opponent, tok, records, cfg, seed=cfg.seed + 1000 * (it + 1), dist=dist)
    gen_s = time.time() - t0
    if dist.main:
        save_answers(run_dir / f"iter{it}" / "synthetic.jsonl", records, real, generated, tok)
    P, Y, G = list(prompts), list(real), list(generated)
    if cfg.mix_previous and previous is not None:  # the official code adds the previous iteration's pairs
        P, Y, G = P + prompts, Y + real, G + previous
    share_identical = identical_share(Y, G)
    if cfg.drop_identical:  # identical pairs give exactly zero gradient: drop them to save compute
        keep = [j for j in range(len(P)) if Y[j] != G[j]]
        P, Y, G = [P[j] for j in keep], [Y[j] for j in keep], [G[j] for j in keep]

    # 3. the reference log-probs under theta_t, once for the whole iteration
    average = cfg.logp == "mean"
    ref_real = dataset_logprobs(opponent, P, Y, tok.pad_id, device, average).to(device)
    ref_gen = dataset_logprobs(opponent, P, G, tok.pad_id, device, average).to(device)
    if dist.main:
        log.log(step=step, iter=it, identical_share=share_identical, pairs=len(P), gen_seconds=gen_s,
                gen_mean_tokens=sum(map(len, generated)) / len(generated))
        print(f"\niteration {it}: lam {lam}, {len(P):,} pairs, {share_identical:.1%} identical to the real "
              f"answer, generated in {gen_s:.1f}s", flush=True)

    # 4. train from theta_t so that y beats y'
    optimizer = make_optimizer(model, cfg)
    answers = [(Y[j], G[j]) for j in range(len(P))]  # stacked in one forward per example
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
        (lp_real, lp_gen), logits = stacked_logprobs(run.train_model, [P[j] for j in idx], [[Y[j] for j in idx],
                                                     [G[j] for j in idx]], tok.pad_id, device, average)
        loss, metrics = spin_loss(lp_real, lp_gen, ref_real[idx], ref_gen[idx], lam)
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
            pbar.set_postfix(loss=f"{float(metrics['loss']):.3f}", margin=f"{float(metrics['rewards/margins']):.3f}",
                             gap=f"{float(metrics['logps/gap']):.2f}", nans=guard.count)
    pbar.close()

    # 5. evaluate, checkpoint; the trained model is the next iteration's opponent
    if dist.main:
        log.log(step=step, iter=it, opponent_unchanged=param_checksum(opponent) == opponent_sum,
                policy_changed=param_checksum(model) != opponent_sum)
    del opponent
    previous = generated
    evaluate_iteration(run, it, step)
    save_iteration(run, it, step, tokens_seen)

finish(run, step, tokens_seen)
