"""
One self-play iteration, the same for SPIN and T-SPIN so that the two are compared on equal terms: the
opponent answers every prompt (y_gen, from the batched KV sampler), sequence log-probs of several answers
per prompt in one stacked forward (as TRL does), the training loop of the iteration (fit_iteration: the
papers' optimizer and schedule, the NaN guard, a resumable checkpoint about every minute), the evaluation
after it and its checkpoint. The two scripts keep only what differs: the loss, SPIN's frozen reference,
T-SPIN's proto-synthetic answers y0. Before the first iteration and after the last: model/selfplay_run.py.
"""

import sys
import time

import torch
from tqdm import tqdm

from model import dist as D
from model.checkpoint import checkpoint_state, save_checkpoint, set_rng_state
from model.cli import die, halt, stop, write_failed
from model.data import batches, collate, format_prompt, sorted_batches
from model.device import autocast
from model.evaluate import (
    answer,
    evaluate,
    find_best_temperature,
    outcome_lines,
    show_samples,
    summary_line,
    temperatures,
)
from model.files import read_json_lines, write_jsonl
from model.losses import masked_sum, with_nll
from model.plots import plot_run
from model.rundir import fault_point, stop_requested
from model.step import NanHalt, lr_warmup_linear, optimizer_step


def per_iteration(value, it, name):
    """'0.1' or a schedule '0.1,0.1,0.1,5.0' (the last entry repeats)."""
    parts = [float(v) for v in str(value).split(",")]
    if not parts:
        raise ValueError(f"--{name} is empty")
    return parts[min(it, len(parts) - 1)]


def best_temperature(run, metrics):
    """theta_0 at its best temperature on val (evaluate.best_temperature), its eval outcomes on disk.
    -> metrics best_t, best/<key> (eval) and val_best/accuracy (and val_t<T>/ for each T sampled anew)."""
    cfg = run.cfg
    best, new, out = find_best_temperature(
        run.model, run.tok, run.val_records, run.eval_records, temperatures(cfg.theta0_temperatures), metrics,
        cfg.eval_samples, cfg.max_new_tokens, run.dist, cfg.template, cfg.eval_sample_every, cfg.seed)
    save_outcomes(run, "theta0_best_eval", run.eval_records, out)
    return new


def weight_distance(model, reference):
    """||theta - theta_ref|| / ||theta_ref|| over all parameters: how far a run moved, 0 if not at all."""
    params = dict(model.named_parameters())  # the tied head counted once, unlike in the state dict
    diff = sum(float((p.detach().float() - reference[k].float()).pow(2).sum()) for k, p in params.items())
    norm = sum(float(reference[k].float().pow(2).sum()) for k in params)
    return (diff / norm) ** 0.5


def synthesize(model, tok, records, cfg, seed, dist):
    """One sampled answer per prompt, in the run's prompt template. Under torchrun each rank samples its share and
    every rank gets the whole list back; each prompt's random stream is keyed by its global index, so the
    result is what a single process would have built. Returns response token lists (EOS kept)."""
    idx = list(range(dist.rank, len(records), dist.world))
    ids, _, _ = answer(model, tok, [records[i]["prompt"] for i in idx], cfg.max_new_tokens,
                       temperature=cfg.temperature, top_p=cfg.top_p, seed=seed, row_ids=idx, template=cfg.template)
    return D.gather_lists(dist, ids, len(records))


def play(run, it, opponent):
    """The opponent theta_t answers every training prompt once: y_gen, saved to iter<it>/synthetic.jsonl
    (for people, and for --resume). Logs how many answers equal the real one: such pairs give exactly
    zero gradient in the current term, so they say how much of the data still teaches anything.
    Continuing a checkpoint from inside iteration `it`, the answers are read back instead (and were logged)."""
    if run.resume_at is not None and run.resume_at["iter"] == it:
        return load_answers(run.run_dir / f"iter{it}" / "synthetic.jsonl")
    t0 = time.time()
    y_gen = synthesize(opponent, run.tok, run.records, run.cfg, seed=run.cfg.seed + 1000 * (it + 1), dist=run.dist)
    fault_point("y_gen")  # (the tests' kill -9 here: generated, not yet saved)
    if run.dist.main:
        save_answers(run.run_dir / f"iter{it}" / "synthetic.jsonl", run.records, run.y, y_gen, run.tok,
                     run.cfg.template)
        share = identical_share(run.y, y_gen)
        run.log.log(step=run.step, iter=it, identical_share=share, gen_seconds=time.time() - t0,
                    gen_mean_tokens=sum(map(len, y_gen)) / len(y_gen))
        print(f"\niteration {it}: {len(y_gen):,} answers generated in {time.time() - t0:.1f}s, "
              f"{share:.1%} identical to the real answer", flush=True)
    return y_gen


def save_answers(path, records, y, y_gen, tok, template="chat"):
    """Readable JSONL of (prompt, real answer y, generated answer y_gen) with y_gen's ids."""
    write_jsonl(path, [{"prompt": r["prompt"], "input": tok.decode(format_prompt(tok, r["prompt"], template)),
                        "real": r["response"], "generated": tok.decode(g), "identical": real == g,
                        "generated_ids": g}
                       for r, real, g in zip(records, y, y_gen)])


def load_answers(path):
    return [r["generated_ids"] for r in read_json_lines(path)]


@torch.no_grad()
def dataset_logprobs(model, prompts, responses, pad_id, device, average=False, batch_size=128):
    """Sequence log-probs of many (prompt, response) pairs under a frozen model: SPIN's reference terms,
    computed once per iteration. Batches are formed in order of length (answers run from 5 to 100 tokens,
    so random batches are mostly padding); the result is in the input order. A float32 CPU tensor (N,)."""
    was_training = model.training
    model.eval()
    out = torch.empty(len(prompts))
    for idx in sorted_batches([len(p) + len(r) for p, r in zip(prompts, responses)], batch_size):
        x, targets, m = (t.to(device) for t in collate([prompts[j] for j in idx], [responses[j] for j in idx], pad_id))
        with autocast(device):
            token_lp = model(x, targets=targets, mask=m)
        out[idx] = masked_sum(token_lp, m, average).float().cpu()
    model.train(was_training)
    return out


def stacked_logprobs(model, prompts, response_sets, pad_id, device, average=False):
    """Log-probs of several answers per prompt (y, y_gen[, y0]) in ONE forward pass of the stacked
    batch, with gradients. Returns (one (B,) tensor per answer set, the token log-probs for the NaN guard)."""
    B = len(prompts)
    x, targets, m = (t.to(device) for t in collate(prompts * len(response_sets), [r for rs in response_sets for r in rs],
                                              pad_id))
    with autocast(device):
        token_lp = model(x, targets=targets, mask=m)  # the head at response positions only
    lp = masked_sum(token_lp, m, average)
    return [lp[k * B:(k + 1) * B] for k in range(len(response_sets))], token_lp


def make_optimizer(model, cfg):
    """RMSprop without weight decay, as in the SPIN and T-SPIN papers; AdamW as an option."""
    if cfg.optim == "rmsprop":
        return torch.optim.RMSprop(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    if cfg.optim == "adamw":
        return torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.0)
    raise ValueError(f"--optim must be rmsprop or adamw, got {cfg.optim!r}")


def identical_share(y, y_gen):
    return sum(a == b for a, b in zip(y, y_gen)) / max(1, len(y))


def fit_iteration(run, it, prompts, answer_sets, loss_fn):
    """The one training loop of a self-play iteration, for SPIN, T-SPIN and the continued-SFT baseline
    alike: from the current model, cfg.epochs passes over the examples in batches of similar length, a
    fresh optimizer, the papers' schedule (linear warmup, then linear decay to 0), gradient clipping, the
    NaN guard, a log line every log_interval steps, a resumable checkpoint about every minute and at the end.

    prompts[j]: prompt ids; answer_sets[j]: a tuple of answer ids scored in one stacked forward, the same
    number for every example ((y, y_gen) or (y, y_gen, y0)). loss_fn(logps, idx) -> (loss, metrics):
    logps holds one (B,) tensor per answer slot, idx the batch's example indices (to pick precomputed
    terms such as SPIN's ref_logp_y). Advances run.step and run.tokens_seen. Continuing a checkpoint from
    inside this iteration (run.resume_at), it starts where that one stopped, with its weights, optimizer
    state and RNG: the rest of the iteration is the one an uninterrupted run takes."""
    cfg, dist = run.cfg, run.dist
    optimizer = make_optimizer(run.model, cfg)
    lengths = [len(p) + max(map(len, a)) for p, a in zip(prompts, answer_sets)]  # batch similar lengths together
    tokens = [len(a) * len(p) + sum(map(len, a)) for p, a in zip(prompts, answer_sets)]  # with gradients
    steps_per_epoch = len(batches(len(prompts), cfg.batch_size, cfg.seed, 0, lengths))
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_ratio * total))
    k0, update_ratios, resumed_here = continue_iteration(run, it, optimizer, total, len(prompts))
    t0 = time.time()

    def save(k):
        save_iteration(run, it, k=k, optimizer=optimizer, update_ratios=update_ratios, steps=total)

    pbar = tqdm(range(k0, total), desc=f"{run.kind} iter {it}", disable=not dist.main, mininterval=1.0,
                file=sys.stdout, dynamic_ncols=True, initial=k0, total=total)
    for k in pbar:
        epoch, i = divmod(k, steps_per_epoch)
        if i == 0 or k == k0:
            order = batches(len(prompts), cfg.batch_size, cfg.seed + it, epoch, lengths)
        if (k > k0 or not resumed_here) and run.clock.due(run.step):  # a safe point, between two steps
            save(k)
        lr = lr_warmup_linear(k, total, warmup, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        global_batch = order[i]
        try:
            grad_norm, event, metrics = train_step(run, optimizer, prompts, answer_sets, global_batch, loss_fn,
                                                   update_ratios)
        except NanHalt as e:  # the step was not applied: save the state before it, which is still good
            if dist.main:
                run.log.log(iter=it, **e.event)
            save_iteration(run, it, k=k, optimizer=optimizer, update_ratios=update_ratios, steps=total,
                           then_stop=False)
            pbar.close()
            halt(e, run.run_dir / "ckpt.pt", run.main_cfg, run.lr_flag)
        run.tokens_seen += sum(tokens[j] for j in global_batch)
        run.step += 1
        log_step(run, it, k, lr, grad_norm, event, metrics, pbar)
        fault_point(f"step:{run.kind_id}")  # (the tests' kill -9 here)
    pbar.close()
    if k0 < total:
        if dist.main:
            run.log.log(step=run.step, iter=it, event="iteration_end", train_seconds=time.time() - t0,
                        update_ratio=sum(update_ratios) / max(1, len(update_ratios)))
        save(total)  # the training of the iteration is safe: a kill in the evaluation that follows loses only that


def continue_iteration(run, it, optimizer, total, n_examples):
    """Where iteration `it` starts: step 0, or, continuing a checkpoint from inside it, that checkpoint's
    step with its weights, optimizer state and RNG. -> (first step, the update ratios so far, resumed?)."""
    at = run.resume_at if run.resume_at is not None and run.resume_at["iter"] == it else None
    if at is None:
        run.log.log(step=run.step, iter=it, event="iteration_start", examples=n_examples, steps=total)
        return 0, [], False
    if at["steps"] != total:
        die(f"the checkpoint is {at['k']} steps into iteration {it} of {at['steps']} steps; with the "
            f"--batch_size/--epochs given now it would have {total}: resume with the run's own")
    run.model.load_state_dict(at["model"])
    optimizer.load_state_dict(at["optimizer"])
    set_rng_state(at["rng"])
    run.resume_at = None
    if run.dist.main:
        print(f"{run.kind} iteration {it}: continuing at step {at['k']} of {total}", flush=True)
    return at["k"], list(at["update_ratios"]), True


def train_step(run, optimizer, prompts, answer_sets, global_batch, loss_fn, update_ratios):
    """One optimizer step on this process's share of the global batch: the stacked forward, the loss (plus
    the --nll term), the guarded update. Appends |update| / |weight| to update_ratios (RMSprop's steps are
    near sign-sized). -> (grad_norm, NaN event or None, the loss's metrics)."""
    cfg, dist = run.cfg, run.dist
    idx = global_batch[dist.rank::dist.world]
    slots = [list(s) for s in zip(*(answer_sets[j] for j in idx))]  # one list per answer slot
    logps, token_lp = stacked_logprobs(run.train_model, [prompts[j] for j in idx], slots, run.tok.pad_id,
                                       run.device, cfg.logp == "mean")
    loss, metrics = loss_fn(logps, idx)
    if cfg.nll:  # RPO: W x the token-mean NLL of the real answers y (the first slot), against likelihood displacement
        loss, nll = with_nll(loss, token_lp[:len(idx)].sum(dim=-1), sum(len(answer_sets[j][0]) for j in idx), cfg.nll)
        metrics["nll"], metrics["loss_total"] = nll.detach(), loss.detach()
    loss = loss * (len(idx) / len(global_batch) * dist.world)  # exact mean over the global batch
    if run.step == cfg.inject_nan_step:
        loss = loss * float("nan")
    params = [p for p in run.model.parameters() if p.requires_grad]
    before = torch.cat([p.detach().flatten() for p in params]) if dist.main else None
    grad_norm, event = optimizer_step(loss, run.model, optimizer, run.guard, run.step, cfg.grad_clip, token_lp)
    if event is None and dist.main:
        after = torch.cat([p.detach().flatten() for p in params])
        update_ratios.append(float((after - before).norm() / before.norm()))
    return grad_norm, event, metrics


def log_step(run, it, k, lr, grad_norm, event, metrics, pbar):
    """A NaN event at once; every log_interval steps a line of the loss's metrics."""
    if not run.dist.main:
        return
    if event is not None:
        run.log.log(iter=it, **event)
        tqdm.write(f"step {event['step']}: non-finite {event['nan_event']}, step skipped ({run.guard.count} so far)")
    if k == 0 and run.cfg.debug:  # the tests' check: SPIN holds two GPTs (policy, opponent), T-SPIN one
        from model.checks import count_models
        run.log.log(step=run.step, iter=it, models_in_memory=count_models())
    if (k + 1) % run.cfg.log_interval == 0 and event is None:
        run.log.log(step=run.step, iter=it, lr=lr, grad_norm=float(grad_norm), **metrics)
        shown = {key.split("/")[-1]: f"{float(metrics[key]):.3f}" for key in ("loss", "logps/gap") if key in metrics}
        pbar.set_postfix(**shown, nans=run.guard.count)


def save_iteration(run, it, k=None, optimizer=None, update_ratios=None, steps=None, then_stop=True):
    """The run's resumable checkpoint, <run>/ckpt.pt (the baseline's: <run>/baseline/ckpt.pt), the one it
    replaces kept as ckpt.prev.pt. A write that fails (a full disk) stops the run: one line, exit 1.

    After theta_0's evaluation (it -1): the run continues at iteration 0 without evaluating theta_0 again.
    After iteration `it` (k None): also <run>/iter<it>/ckpt.pt; no optimizer state, as each iteration
    starts a fresh optimizer from the new theta_t. Inside iteration `it`, before its step k: the weights,
    the optimizer state and k; the rest is on disk already or recomputed (y_gen in iter<it>/synthetic.jsonl,
    T-SPIN's y0 in proto.jsonl, SPIN's reference log-probs from the weights at the iteration's start, which
    are iter<it-1>/ckpt.pt or theta_0). Both carry tokens_seen (so that a resumed run's summary counts every
    iteration), the metrics lines written and the last evaluation's answers (so that its log continues as if
    never stopped). If Ctrl-C asked to stop, this is where the run stops (then_stop)."""
    if run.dist.main:
        where = dict(next_iter=it + 1) if k is None else dict(
            iter=it, k=k, steps=steps, optimizer=optimizer.state_dict(), update_ratios=update_ratios)
        state = checkpoint_state(run.kind_id, run.model, run.cfg, run.tok, run.tok_path, run.step, run.guard.count,
                                 tokens_seen=run.tokens_seen, theta_0=run.theta_0_path, log_lines=run.log.lines,
                                 eval_answers={"theta_0": run.theta_0_eval_answers, "last": run.last_eval_answers}, **where)
        paths = [run.run_dir / f"iter{it}" / "ckpt.pt"] if k is None and it >= 0 else []
        for path in paths + [run.run_dir / "ckpt.pt"]:
            try:
                save_checkpoint(path, state, keep_previous=path.parent == run.run_dir)
            except OSError as e:
                write_failed(e, path, run.main_cfg)
    run.clock.saved()
    if then_stop and stop_requested():
        where = "after theta_0's evaluation" if it < 0 else f"after iteration {it}" if k is None else \
            f"{k} steps into iteration {it}"
        stop(f"checkpoint saved {where} ({run.kind}) in {run.run_dir / 'ckpt.pt'}")


# what each evaluation also logs of the validation split, as val_<key> (and every sampled t<T>/ key);
# val_logp_y is the mean summed log-prob of the real answers y (a pairwise loss can push it down while y
# still beats y_gen)
VAL_KEYS = ("accuracy", "accuracy_se", "eval_loss", "logp_y", "pipe_rate", "len_ratio", "repetition_rate", "eos_rate")


def save_outcomes(run, name, records, samples):
    """<run>/outcomes/<name>.jsonl: what each prompt got in one evaluation row (the reports pair rows on it)."""
    if run.dist.main:
        write_jsonl(run.run_dir / "outcomes" / f"{name}.jsonl", outcome_lines(records, samples))


def evaluate_iteration(run, it):
    """The shared evaluation after iteration `it` (-1: theta_0, the SFT row of the table): greedy and
    sampled answers to the eval and val prompts, each prompt's outcome on disk; for theta_0 also the
    temperature that serves it best on val (the zero-compute baseline of sampled results)."""
    cfg, row, t0 = run.cfg, "theta0" if it < 0 else f"iter{it}", time.time()
    sampling = dict(samples=cfg.eval_samples, temperatures=temperatures(cfg.eval_temperatures),
                    sample_every=cfg.eval_sample_every, seed=cfg.seed)
    metrics, samples = evaluate(run.model, run.tok, run.eval_records, run.device, cfg.max_new_tokens,
                                dist=run.dist, template=cfg.template, **sampling)
    save_outcomes(run, f"{row}_eval", run.eval_records, samples)
    if run.val_records:  # the split that choices are made on, and where likelihood displacement shows
        val, val_samples = evaluate(run.model, run.tok, run.val_records, run.device, cfg.max_new_tokens,
                                    dist=run.dist, template=cfg.template, **sampling)
        metrics.update({f"val_{k}": v for k, v in val.items() if k in VAL_KEYS or k.startswith("t") and "/" in k})
        metrics["val_logp_y_tok"] = -val["eval_loss"]  # per token, beside the sharpness of its own samples
        save_outcomes(run, f"{row}_val", run.val_records, val_samples)
        if it < 0 and cfg.eval_samples and temperatures(cfg.theta0_temperatures):
            metrics.update(best_temperature(run, metrics))
    metrics["eval_seconds"] = time.time() - t0  # greedy + sampled, eval + val (+ theta_0's temperature grid)
    eval_answers = [s["response"] for s in samples]
    metrics["weight_dist"] = weight_distance(run.model, run.theta_0)
    if run.last_eval_answers is not None:  # greedy answers that changed since the previous evaluation
        metrics["changed_answers"] = sum(a != b for a, b in zip(eval_answers, run.last_eval_answers)) / len(eval_answers)
    run.last_eval_answers = eval_answers
    if it < 0:
        run.theta_0_eval_answers = eval_answers
    if run.dist.main:
        run.log.log(step=run.step, iter=it, **metrics)
        print(f"{'theta_0 (SFT)' if it < 0 else f'{run.kind} iteration {it}'} eval: {summary_line(metrics)}, "
              f"moved {metrics['weight_dist']:.4f}", flush=True)
        show_samples(samples, n=4)
        if run.kind_id != "sft_baseline":  # the baseline is drawn dashed on its run's curves.png, not alone
            plot_run(run.run_dir, title=f"{run.kind}: {run.cfg.name}")
