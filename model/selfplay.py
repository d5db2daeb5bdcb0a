"""
What SPIN and T-SPIN share, written once so that the two are compared on equal terms: the initial
policy, the synthetic answers y_gen from the batched KV sampler, per-example sequence log-probs (one
stacked forward, as TRL does), the optimizer and schedule of the papers, the one training loop of an
iteration (fit_iteration), its checkpoints (at the end of each iteration, and about every minute inside one,
so that a kill loses little and --resume continues mid-iteration with the same numbers) and the printed
results table. The two scripts keep only what differs: the loss, SPIN's frozen reference, T-SPIN's
proto-synthetic answers y0.
"""

import gc
import hashlib
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from model import dist as D
from model.data import (
    DataError,
    batches,
    collate,
    data_paths,
    fit_to_context,
    format_prompt,
    read_json_lines,
    read_jsonl,
    sorted_batches,
    write_jsonl,
)
from model.evaluate import answer, evaluate, show_samples, summary_line
from model.gpt import GPT
from model.losses import masked_sum, sft_loss_from_logps, with_nll
from model.plots import plot_run
from model.tokenizer import Tokenizer
from model.train_utils import (
    RUN_DEFAULTS,
    RUNS_DIR,
    CheckpointClock,
    NanGuard,
    NanHalt,
    RunLog,
    autocast,
    checkpoint_state,
    claim_run,
    configure,
    die,
    halt,
    load_checkpoint,
    lr_warmup_linear,
    model_from_checkpoint,
    optimizer_step,
    pick_device,
    print_config,
    read_metrics,
    run_path,
    save_checkpoint,
    set_rng_state,
    stop,
    stop_requested,
    write_json,
)

# settings both self-play scripts share, so that SPIN and T-SPIN are compared on equal terms
SELFPLAY_DEFAULTS = dict(
    out_dir=RUNS_DIR,            # runs go to <out_dir>/<name>/
    init="sft",                  # theta_0: an SFT checkpoint file, or a run name under out_dir (its ckpt.pt)
    data_dir="data/generated",   # train/eval splits and the tokenizer, made by `make data`
    data="",                     # any JSONL with prompt/response or messages (overrides data_dir/subset)
    subset=25,                   # percent of the train split; the papers self-play on 50k of 200k: 25
    eval_data="",                # held-out prompts (default: <data_dir>/eval.jsonl)
    val_data="",                 # validation prompts, scored at every evaluation (default: <data_dir>/val.jsonl if there; none = off)
    template="chat",             # prompt template: chat (ours) or instruction (Alpaca-style; the T-SPIN paper's situation)
    tokenizer="",                # tokenizer dir (default: the one the init checkpoint was trained with)
    iters=3,                     # self-play iterations t = 0 .. iters-1
    epochs=2,                    # passes over the pairs per iteration (the papers: 2)
    batch_size=64,               # examples per optimizer step, all processes together (the papers: 64)
    optim="rmsprop",             # rmsprop (the papers', no weight decay) or adamw
    lr=1e-5,                     # peak lr; 1e-5: best on val at the regime map's last iteration (plateau; 1e-4 wins only if stopped after one)
    warmup_ratio=0.1,            # linear warmup over this share of each iteration's steps, then linear decay
    grad_clip=1.0,               # clip the gradient's global L2 norm to this
    logp="sum",                  # sequence log-prob: sum over response tokens (official SPIN) or mean
    temperature=1.0,             # sampling temperature of y_gen (and y0)
    top_p=1.0,                   # nucleus sampling of y_gen (and y0); 1 = off
    max_new_tokens=96,           # longest synthetic and evaluation answer, in tokens
    drop_identical=False,        # leave out pairs whose y_gen equals y (zero gradient in the current term); off: the map's val choice
    mix_previous=False,          # also train on the previous iteration's y_gen (the official SPIN code's data mixing)
    nll=0.0,                     # add nll x the SFT loss on y (RPO, arXiv 2404.19733; TRL's "sft" term); 0: map's val choice at lr 1e-5; use 1 with lr 1e-4
    baseline=True,               # also run continued SFT from theta_0 on the same prompts and y, same steps and examples
    baseline_lr=1e-4,            # the baseline's peak lr (AdamW, SFT's optimizer); 1e-4: best of 1e-4, 3e-4, 1e-3 on val in the map (plateau)
    log_interval=10,             # optimizer steps between log lines
    nan_policy="skip",           # skip: drop a non-finite step and go on; halt: stop at the first
    max_consecutive_nans=10,     # stop after this many non-finite steps in a row, whatever the policy
    inject_nan_step=-1,          # poison the loss at this global step (teaching, tests); -1 = never
    resume=False,                # continue <out_dir>/<name> from its last checkpoint; flags given now override its own
    seed=1337,                   # seeds sampling and batch order; same seed, same numbers on CPU
    device="auto",               # auto (cuda, then mps, then cpu), cpu, cuda, cuda:N or mps
    compile=False,               # torch.compile the training forward (worth it on a GPU; slow to start)
    smoke=False,                 # tiny data and iterations, for the tests (seconds); the default name gets _smoke
    **RUN_DEFAULTS,              # ckpt_seconds, ckpt_interval, overwrite, debug (model/train_utils.py)
)

SMOKE = dict(iters=2, epochs=1, batch_size=16, max_new_tokens=32, log_interval=2)


def per_iteration(value, it, name):
    """'0.1' or a schedule '0.1,0.1,0.1,5.0' (the last entry repeats)."""
    parts = [float(v) for v in str(value).split(",")]
    if not parts:
        raise ValueError(f"--{name} is empty")
    return parts[min(it, len(parts) - 1)]


def init_path(cfg):
    """--init names a checkpoint file, or a run under --out_dir whose ckpt.pt is the checkpoint."""
    path = Path(cfg.init)
    return path if path.is_file() or path.suffix == ".pt" else Path(cfg.out_dir) / cfg.init / "ckpt.pt"


def load_policy(cfg, device):
    """The initial policy theta_0 and its tokenizer, from the SFT checkpoint."""
    ckpt = load_checkpoint(init_path(cfg))
    tok_path = cfg.tokenizer or ckpt["tokenizer"]["path"]
    tok = Tokenizer.load(tok_path)
    return model_from_checkpoint(ckpt, tok, init_path(cfg)).to(device), tok, tok_path


def weight_distance(model, reference):
    """||theta - theta_ref|| / ||theta_ref|| over all parameters: how far a run moved, 0 if not at all."""
    params = dict(model.named_parameters())  # the tied head counted once, unlike in the state dict
    diff = sum(float((p.detach().float() - reference[k].float()).pow(2).sum()) for k, p in params.items())
    norm = sum(float(reference[k].float().pow(2).sum()) for k in params)
    return (diff / norm) ** 0.5


def val_path(cfg):
    """The validation split scored at every evaluation: --val_data, else <data_dir>/val.jsonl when it exists
    (data made before it had none), None with --val_data none."""
    if cfg.val_data == "none":
        return None
    path = Path(cfg.val_data or Path(cfg.data_dir) / "val.jsonl")
    return path if cfg.val_data or path.is_file() else None


def load_prompts(cfg):
    """Training records (prompt + real answer y), eval records and validation records ([] without)."""
    train_path, eval_path = data_paths(cfg)
    train, evals = read_jsonl(train_path), read_jsonl(eval_path)
    vals = read_jsonl(val_path(cfg)) if val_path(cfg) else []
    if cfg.smoke:
        train, evals, vals = train[:128], evals[::max(1, len(evals) // 48)], vals[::max(1, len(vals) // 16)]
    return train, evals, vals, train_path


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
        x, y, m = (t.to(device) for t in collate([prompts[j] for j in idx], [responses[j] for j in idx], pad_id))
        with autocast(device):
            token_lp = model(x, targets=y, mask=m)
        out[idx] = masked_sum(token_lp, m, average).float().cpu()
    model.train(was_training)
    return out


def stacked_logprobs(model, prompts, response_sets, pad_id, device, average=False):
    """Log-probs of several answers per prompt (y, y_gen[, y0]) in ONE forward pass of the stacked
    batch, with gradients. Returns (one (B,) tensor per answer set, the token log-probs for the NaN guard)."""
    B = len(prompts)
    x, y, m = (t.to(device) for t in collate(prompts * len(response_sets), [r for rs in response_sets for r in rs],
                                              pad_id))
    with autocast(device):
        token_lp = model(x, targets=y, mask=m)  # the head at response positions only
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


def fit_iteration(run, it, prompts, answers, loss_fn):
    """The one training loop of a self-play iteration, for SPIN and T-SPIN alike: from the current model,
    cfg.epochs passes over the examples in batches of similar length, a fresh optimizer, the papers'
    schedule (linear warmup, then linear decay to 0), gradient clipping, the NaN guard, a log line every
    log_interval steps, a resumable checkpoint about every minute and at the end.

    prompts[j]: prompt ids; answers[j]: a tuple of answer ids scored in one stacked forward, the same
    number for every example ((y, y_gen) or (y, y_gen, y0)). loss_fn(logps, idx) -> (loss, metrics):
    logps holds one (B,) tensor per answer slot, idx the batch's example indices (to pick precomputed
    terms such as SPIN's ref_logp_y). Advances run.step and run.tokens_seen. Continuing a checkpoint from
    inside this iteration (run.resume_at), it starts where that one stopped, with its weights, optimizer
    state and RNG: the rest of the iteration is the one an uninterrupted run takes."""
    cfg, dist, model, guard = run.cfg, run.dist, run.model, run.guard
    optimizer = make_optimizer(model, cfg)
    lengths = [len(p) + max(map(len, a)) for p, a in zip(prompts, answers)]  # batch similar lengths together
    tokens = [len(a) * len(p) + sum(map(len, a)) for p, a in zip(prompts, answers)]  # with gradients
    steps_per_epoch = len(batches(len(prompts), cfg.batch_size, cfg.seed, 0, lengths))
    total = cfg.epochs * steps_per_epoch
    warmup = max(1, int(cfg.warmup_ratio * total))
    average = cfg.logp == "mean"
    params = [p for p in model.parameters() if p.requires_grad]
    update_ratios = []  # |update| / |weight| of each applied step: RMSprop's steps are near sign-sized
    at = run.resume_at if run.resume_at is not None and run.resume_at["iter"] == it else None
    k0 = 0
    if at is not None:
        if at["steps"] != total:
            die(f"the checkpoint is {at['k']} steps into iteration {it} of {at['steps']} steps; with the "
                f"--batch_size/--epochs given now it would have {total}: resume with the run's own")
        model.load_state_dict(at["model"])
        optimizer.load_state_dict(at["optimizer"])
        set_rng_state(at["rng"])
        k0, update_ratios, run.resume_at = at["k"], list(at["update_ratios"]), None
        if dist.main:
            print(f"{run.kind} iteration {it}: continuing at step {k0} of {total}", flush=True)
    else:
        run.log.log(step=run.step, iter=it, event="iteration_start", examples=len(prompts), steps=total)

    def save(k):
        save_iteration(run, it, k=k, optimizer=optimizer, update_ratios=update_ratios, steps=total)

    pbar = tqdm(range(k0, total), desc=f"{run.kind} iter {it}", disable=not dist.main, mininterval=1.0,
                file=sys.stdout, dynamic_ncols=True, initial=k0, total=total)
    for k in pbar:
        epoch, i = divmod(k, steps_per_epoch)
        if i == 0 or k == k0:
            order = batches(len(prompts), cfg.batch_size, cfg.seed + it, epoch, lengths)
        if (k > k0 or at is None) and run.clock.due(run.step):  # a safe point, between two steps
            save(k)
        lr = lr_warmup_linear(k, total, warmup, cfg.lr)
        for group in optimizer.param_groups:
            group["lr"] = lr
        global_batch = order[i]
        idx = global_batch[dist.rank::dist.world]
        answer_sets = [list(s) for s in zip(*(answers[j] for j in idx))]  # one list per answer slot
        logps, token_lp = stacked_logprobs(run.train_model, [prompts[j] for j in idx], answer_sets, run.tok.pad_id,
                                         run.device, average)
        loss, metrics = loss_fn(logps, idx)
        if cfg.nll:  # RPO: W x the token-mean NLL of the real answers y (the first slot), against likelihood displacement
            loss, nll = with_nll(loss, token_lp[:len(idx)].sum(dim=-1), sum(len(answers[j][0]) for j in idx), cfg.nll)
            metrics["nll"], metrics["loss_total"] = nll.detach(), loss.detach()
        loss = loss * (len(idx) / len(global_batch) * dist.world)  # exact mean over the global batch
        if run.step == cfg.inject_nan_step:
            loss = loss * float("nan")
        before = torch.cat([p.detach().flatten() for p in params]) if dist.main else None
        try:
            grad_norm, event = optimizer_step(loss, model, optimizer, guard, run.step, cfg.grad_clip, token_lp)
        except NanHalt as e:  # the step was not applied: save the state before it, which is still good
            if dist.main:
                run.log.log(iter=it, **e.event)
            save_iteration(run, it, k=k, optimizer=optimizer, update_ratios=update_ratios, steps=total,
                           then_stop=False)
            pbar.close()
            halt(e, run.run_dir / "ckpt.pt", run.main_cfg, run.lr_flag)
        if event is None and dist.main:
            after = torch.cat([p.detach().flatten() for p in params])
            update_ratios.append(float((after - before).norm() / before.norm()))
        if event is not None and dist.main:
            run.log.log(iter=it, **event)
            tqdm.write(f"step {run.step}: non-finite {event['nan_event']}, step skipped ({guard.count} so far)")
        run.tokens_seen += sum(tokens[j] for j in global_batch)
        run.step += 1
        if k == 0 and dist.main:
            run.log.log(step=run.step, iter=it, models_in_memory=count_models())
        if (k + 1) % cfg.log_interval == 0 and event is None and dist.main:
            run.log.log(step=run.step, iter=it, lr=lr, grad_norm=float(grad_norm), **metrics)
            shown = {k.split("/")[-1]: f"{float(metrics[k]):.3f}" for k in ("loss", "logps/gap") if k in metrics}
            pbar.set_postfix(**shown, nans=guard.count)
    pbar.close()
    if k0 < total:
        if dist.main:
            run.log.log(step=run.step, iter=it, event="iteration_end",
                        update_ratio=sum(update_ratios) / max(1, len(update_ratios)))
        save(total)  # the training of the iteration is safe: a kill in the evaluation that follows loses only that


def save_iteration(run, it, k=None, optimizer=None, update_ratios=None, steps=None, then_stop=True):
    """The run's resumable checkpoint, <run>/ckpt.pt (the baseline's: <run>/baseline/ckpt.pt).

    After iteration `it` (k None): also <run>/iter<it>/ckpt.pt; no optimizer state, as each iteration
    starts a fresh optimizer from the new theta_t. Inside iteration `it`, before its step k: the weights,
    the optimizer state and k; the rest is on disk already or recomputed (y_gen in iter<it>/synthetic.jsonl,
    T-SPIN's y0 in proto.jsonl, SPIN's reference log-probs from the weights at the iteration's start, which
    are iter<it-1>/ckpt.pt or theta_0). Both carry tokens_seen (so that a resumed run's summary counts every
    iteration), the metrics lines written and the last evaluation's answers (so that its log continues as if
    never stopped). If Ctrl-C asked to stop, this is where the run stops (then_stop)."""
    if run.dist.main:
        where = dict(iter=it + 1) if k is None else dict(
            iter=it, k=k, steps=steps, optimizer=optimizer.state_dict(), update_ratios=update_ratios)
        state = checkpoint_state(run.kind_id, run.model, run.cfg, run.tok, run.tok_path, run.step, run.guard.count,
                                 tokens_seen=run.tokens_seen, theta_0=str(init_path(run.cfg)), log_lines=run.log.lines,
                                 answers={"theta_0": run.theta_0_answers, "last": run.last_answers}, **where)
        if k is None:
            save_checkpoint(run.run_dir / f"iter{it}" / "ckpt.pt", state)
        save_checkpoint(run.run_dir / "ckpt.pt", state)
    run.clock.saved()
    if then_stop and stop_requested():
        stop(f"checkpoint saved {'after iteration ' + str(it) if k is None else f'{k} steps into iteration {it}'}"
             f" ({run.kind}) in {run.run_dir / 'ckpt.pt'}")


def continued_sft(run, it, x, y):
    """The equal-compute baseline, one iteration: continued SFT from theta_0 (not from the self-play model)
    on the same prompts x and real answers y as self-play's iteration `it`, in the same loop: the same
    number of optimizer steps and examples, the same schedule; only the loss (the token-mean NLL of y, as
    in train_sft.py) and the optimizer (AdamW at baseline_lr) differ. It lives in <run>/baseline/, with its
    own metrics, evaluations and checkpoints (mid-iteration ones too); between iterations only its weights
    are kept, so the self-play model is the only GPT in memory while self-play trains."""
    base = run.baseline
    model = GPT(run.model.config).to(run.device)
    model.load_state_dict(base.state)
    train_model = DDP(model, device_ids=[run.device.index] if run.device.type == "cuda" else None) \
        if run.dist.enabled else model
    base.model, base.train_model = model, train_model
    if base.last_answers is None:  # its first evaluation is compared with theta_0's answers
        base.last_answers = run.theta_0_answers
    n_tokens = [len(r) for r in y]

    def loss_fn(logps, idx):
        (logp_y,) = logps
        loss = sft_loss_from_logps(logp_y, sum(n_tokens[j] for j in idx))
        return loss, {"loss": loss.detach(), "logps/real": logp_y.detach().mean()}

    fit_iteration(base, it, x, [(r,) for r in y], loss_fn)
    evaluate_iteration(base, it)
    # per iteration, so that a resumed run picks up the baseline where self-play is; the run stops at the
    # self-play checkpoint that follows, not here
    save_iteration(base, it, then_stop=False)
    base.state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    base.model = base.train_model = None  # back to weights only


def start_baseline(run, resume_iter):
    """The baseline's state: theta_0's weights, or, on --resume, its own: from inside iteration
    `resume_iter` if it had checkpointed there, else after iteration resume_iter - 1 (a later one, if it
    finished resume_iter before self-play saved, is redone: it is deterministic). Its settings are the
    run's, with SFT's optimizer and the baseline's own lr."""
    cfg = SimpleNamespace(**{**vars(run.cfg), "optim": "adamw", "lr": run.cfg.baseline_lr, "logp": "sum", "nll": 0.0,
                             "inject_nan_step": -1, "name": f"{run.cfg.name}/baseline"})
    run_dir = run.run_dir / "baseline"
    state, ckpt, at = run.theta_0, None, None
    if run.resumed and resume_iter > 0:
        ckpt = load_checkpoint(run_dir / f"iter{resume_iter - 1}" / "ckpt.pt")
        state = ckpt["model"]
    if run.resumed and (run_dir / "ckpt.pt").exists():
        latest = load_checkpoint(run_dir / "ckpt.pt")
        if "k" in latest and latest["iter"] == resume_iter:
            ckpt = at = latest  # its weights are loaded when its fit_iteration continues
    guard = NanGuard(cfg.nan_policy, cfg.max_consecutive_nans)
    guard.count = ckpt["nan_count"] if ckpt else 0
    log = RunLog(run_dir, resume=ckpt, enabled=run.dist.main)
    answers = ckpt.get("answers", {}) if ckpt else {}
    return SimpleNamespace(**{**vars(run), "kind": "continued SFT", "kind_id": "sft_baseline", "cfg": cfg,
                              "run_dir": run_dir, "state": state, "step": ckpt["step"] if ckpt else 0,
                              "tokens_seen": ckpt["tokens_seen"] if ckpt else 0, "guard": guard, "log": log,
                              "resume_at": at, "last_answers": answers.get("last"), "lr_flag": "baseline_lr",
                              "model": None, "train_model": None, "baseline": None})


TABLE_COLUMNS = [("accuracy", "accuracy", ".3f"), ("± se", "accuracy_se", ".3f"), ("pipe", "pipe_rate", ".3f"),
                 ("eval loss", "eval_loss", ".3f"), ("eos", "eos_rate", ".2f"), ("len", "mean_len", ".1f"),
                 ("len/ref", "len_ratio", ".2f"), ("loops", "repetition_rate", ".3f"),
                 ("y_gen=y", "identical_share", ".2f"), ("moved", "weight_dist", ".4f"),
                 ("changed", "changed_answers", ".2f"), ("val acc", "val_accuracy", ".3f"),
                 ("val lp(y)", "val_logp_y", ".2f")]


def iteration_rows(run_dir):
    """{iteration: its eval metrics plus the iteration's identical-pair share}; -1 is theta_0."""
    rows = {}
    for r in read_metrics(run_dir):
        if "iter" in r and ("accuracy" in r or "identical_share" in r):
            rows.setdefault(r["iter"], {}).update(r)
    return rows


def results_table(run_dir, label):
    """The per-iteration table: theta_0, then each iteration's held-out metrics, each self-play row
    followed by its equal-compute continued-SFT row and the difference between the two, so that a reader
    sees at once whether self-play beat it. `moved`: relative weight distance from theta_0; `changed`:
    share of eval answers that changed since the previous row of the same method."""
    rows, base = iteration_rows(run_dir), iteration_rows(Path(run_dir) / "baseline")
    head = f"{'model':<22}" + "".join(f"{name:>10}" for name, _, _ in TABLE_COLUMNS)
    lines = [head, "-" * len(head)]

    def line(name, r):
        cells = "".join(f"{format(r[k], fmt) if r.get(k) is not None else '-':>10}" for _, k, fmt in TABLE_COLUMNS)
        return f"{name:<22}{cells}"

    verdicts = []
    for it in sorted(k for k in rows if "accuracy" in rows[k]):
        r = rows[it]
        lines.append(line("theta_0 (SFT)" if it < 0 else f"{label} iter {it}", r))
        b = base.get(it)
        if it >= 0 and b and "accuracy" in b:
            lines.append(line(f"  continued SFT iter {it}", b))
            diff = r["accuracy"] - b["accuracy"]
            sigma = (r.get("accuracy_se", 0) ** 2 + b.get("accuracy_se", 0) ** 2) ** 0.5
            word = "no difference" if abs(diff) <= 2 * sigma else ("self-play better" if diff > 0 else "self-play worse")
            verdicts.append(f"iter {it}: {label} - continued SFT = {100 * diff:+.1f} points "
                            f"(2 sigma = {200 * sigma:.1f}): {word}")
    return "\n".join(lines + ([""] + verdicts if verdicts else []))


def param_checksum(model):
    """A hash of every parameter's bytes: tells whether weights changed at all."""
    h = hashlib.sha1()
    for p in model.parameters():
        h.update(p.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()


def count_models():
    """How many GPT instances are alive: SPIN holds two (policy and frozen opponent), T-SPIN one.
    `type(o) is GPT`, not isinstance: isinstance would ask some of torch's lazy module objects for their
    __class__ and print a deprecation warning in the middle of the run."""
    return sum(type(o) is GPT for o in gc.get_objects())


def start(defaults, kind, script):
    """Everything both self-play scripts do before their first iteration, the same way: read and check the
    command line (--resume: the run's own settings, with the flags typed now winning), join the processes,
    load theta_0 and the prompts, then claim the run directory and open the log and the NaN guard.
    Returns a namespace with what the training loop uses; run.step and run.tokens_seen advance as it trains.

    Resuming from inside an iteration, the model holds the weights of that iteration's start (what SPIN's
    opponent is, and what y_gen was sampled from); fit_iteration then loads the checkpoint's own."""
    kind_id = kind.lower().replace("-", "")
    cfg, resume = configure(defaults, kind_id, script, description=f"{kind} self-play fine-tuning",
                            smoke=lambda c: SMOKE, help_from=[__file__])
    run_dir = run_path(cfg)
    mid = resume is not None and "k" in resume  # a checkpoint from inside an iteration

    dist, device = D.setup(pick_device(cfg.device))
    if dist.main:
        print_config(cfg, kind)
    torch.manual_seed(cfg.seed)
    try:
        model, tok, tok_path = load_policy(cfg, device)
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as e:
        die(f"{e} (self-play starts from an SFT checkpoint: run `make sft` first, or pass --init)")
    theta_0 = {k: v.detach().clone() for k, v in model.state_dict().items()}  # for weight distances
    try:
        records, eval_records, val_records, train_path = load_prompts(cfg)
        has_val = bool(val_records)
        if mid and resume["iter"] > 0:
            model.load_state_dict(load_checkpoint(run_dir / f"iter{resume['iter'] - 1}" / "ckpt.pt")["model"])
        elif resume and not mid:
            model.load_state_dict(resume["model"])
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as e:
        die(str(e))
    block_size = model.config.block_size
    records, prompts, y, note = fit_to_context(tok, records, block_size, cfg.template)
    eval_records, _, _, eval_note = fit_to_context(tok, eval_records, block_size, cfg.template)
    val_records, _, _, val_note = fit_to_context(tok, val_records, block_size, cfg.template)
    for what, rows, text in [(train_path, records, note), ("eval data", eval_records, eval_note),
                             ("val data", val_records if has_val else [None], val_note)]:
        if not rows:
            die(f"{what}: no example fits the model's context ({block_size} tokens)")
        if text and dist.main:
            print(f"{what}: {text}", flush=True)
    claim_run(cfg, dist.main)  # inputs are good: now <run>/ is made (or an old run moved aside) and locked

    train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else model
    if cfg.compile:
        train_model = torch.compile(train_model)  # training only: generation and evaluation use the plain model
    guard = NanGuard(cfg.nan_policy, cfg.max_consecutive_nans)
    start_iter, step = (resume["iter"], resume["step"]) if resume else (0, 0)
    if resume:
        guard.count = resume["nan_count"]
        set_rng_state(resume["rng"])
    log = RunLog(run_dir, resume=resume, enabled=dist.main)
    answers = resume.get("answers", {}) if resume else {}
    if dist.main:
        print(f"{kind} from {cfg.init}: {len(records):,} prompts ({train_path}), {len(eval_records)} eval prompts, "
              f"iterations {start_iter}..{cfg.iters - 1}, device {device}, {dist.world} process(es)", flush=True)
    run = SimpleNamespace(kind=kind, kind_id=kind_id, cfg=cfg, main_cfg=cfg, lr_flag="lr", run_dir=run_dir,
                          dist=dist, device=device, model=model, train_model=train_model, tok=tok, tok_path=tok_path,
                          records=records, eval_records=eval_records, prompts=prompts, y=y, guard=guard, log=log,
                          val_records=val_records,
                          start_iter=start_iter, step=step, resumed=resume is not None, t_start=time.time(),
                          resume_at=resume if mid else None, clock=CheckpointClock(cfg.ckpt_interval, cfg.ckpt_seconds),
                          tokens_seen=resume.get("tokens_seen", 0) if resume else 0, theta_0=theta_0,
                          last_answers=answers.get("last"), theta_0_answers=answers.get("theta_0"), baseline=None)
    if cfg.baseline:
        run.baseline = start_baseline(run, start_iter)
    return run


# what each evaluation also logs of the validation split, as val_<key>; val_logp_y is the mean summed
# log-prob of the real answers y (a pairwise loss can push it down while y still beats y_gen)
VAL_KEYS = ("accuracy", "accuracy_se", "eval_loss", "logp_y", "pipe_rate", "len_ratio", "repetition_rate", "eos_rate")


def evaluate_iteration(run, it):
    """The shared evaluation after iteration `it` (-1: theta_0, the SFT row of the table)."""
    metrics, samples = evaluate(run.model, run.tok, run.eval_records, run.device, run.cfg.max_new_tokens,
                                dist=run.dist, template=run.cfg.template)
    if run.val_records:  # the split that choices are made on, and where likelihood displacement shows
        val, _ = evaluate(run.model, run.tok, run.val_records, run.device, run.cfg.max_new_tokens, dist=run.dist,
                          template=run.cfg.template)
        metrics.update({f"val_{k}": val[k] for k in VAL_KEYS if k in val})
    answers = [s["response"] for s in samples]
    metrics["weight_dist"] = weight_distance(run.model, run.theta_0)
    if run.last_answers is not None:  # greedy answers that changed since the previous evaluation
        metrics["changed_answers"] = sum(a != b for a, b in zip(answers, run.last_answers)) / len(answers)
    run.last_answers = answers
    if it < 0:
        run.theta_0_answers = answers
    if run.dist.main:
        run.log.log(step=run.step, iter=it, **metrics)
        print(f"{'theta_0 (SFT)' if it < 0 else f'{run.kind} iteration {it}'} eval: {summary_line(metrics)}, "
              f"moved {metrics['weight_dist']:.4f}", flush=True)
        show_samples(samples, n=4)
        if run.kind_id != "sft_baseline":  # the baseline is drawn dashed on its run's curves.png, not alone
            plot_run(run.run_dir, title=f"{run.kind}: {run.cfg.name}")


def finish(run):
    """summary.json (with the full resolved configuration), the results table, the curves' path; leave
    the process group."""
    if run.dist.main:
        table = results_table(run.run_dir, run.kind)
        plot_run(run.run_dir, title=f"{run.kind}: {run.cfg.name}")  # again: the baseline's last row came after
        write_json(run.run_dir / "summary.json", {
            "kind": run.kind_id, "name": run.cfg.name, "iters": run.cfg.iters, "steps": run.step,
            "wall_time_s": round(time.time() - run.t_start, 1), "nan_count": run.guard.count,
            "tokens_seen": run.tokens_seen, "config": vars(run.cfg), "table": table.splitlines(),
            "iterations": {str(k): v for k, v in iteration_rows(run.run_dir).items()},
            "baseline": None if run.baseline is None else {
                "steps": run.baseline.step, "tokens_seen": run.baseline.tokens_seen, "lr": run.baseline.cfg.lr,
                "iterations": {str(k): v for k, v in iteration_rows(run.baseline.run_dir).items()}}})
        print("\n" + table)
        print(f"\ncurves: {run.run_dir / 'curves.png'}")
    D.cleanup(run.dist)
