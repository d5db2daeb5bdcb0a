"""
A self-play run around its iterations, the same for SPIN and T-SPIN: start() reads and checks the command
line, joins the processes, loads theta_0 (the SFT checkpoint) and the prompts, claims the run directory and
opens the log; finish() writes summary.json and prints the results table. The settings both scripts share
that a reader rarely tunes live here; each script shows its own (lr, iterations, epochs, batch size,
temperature) at its top.
"""

import time
from pathlib import Path
from types import SimpleNamespace

import torch
from torch.nn.parallel import DistributedDataParallel as DDP

from model import dist as D
from model.baseline import start_baseline
from model.checkpoint import load_checkpoint, model_from_checkpoint, set_rng_state
from model.cli import RUN_DEFAULTS, claim_run, configure, die, print_config
from model.data import data_paths, fit_to_context
from model.device import pick_device
from model.files import DataError, atomic_write, read_jsonl, write_json
from model.log import RunLog
from model.plots import plot_run
from model.results import FULL_COLUMNS, iteration_rows, results_table
from model.rundir import RUNS_DIR, CheckpointClock, run_path
from model.step import NanGuard
from model.tokenizer import Tokenizer

# settings both self-play scripts share, so that SPIN and T-SPIN are compared on equal terms; the ones a
# reader tunes (lr, iters, epochs, batch_size, temperature) sit at the top of each script
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
    optim="rmsprop",             # rmsprop (the papers', no weight decay) or adamw
    warmup_ratio=0.1,            # linear warmup over this share of each iteration's steps, then linear decay
    grad_clip=1.0,               # clip the gradient's global L2 norm to this
    logp="sum",                  # sequence log-prob: sum over response tokens (official SPIN) or mean
    top_p=1.0,                   # nucleus sampling of y_gen (and y0); 1 = off
    max_new_tokens=96,           # longest synthetic and evaluation answer, in tokens
    eval_samples=4,              # K sampled answers per prompt at each eval temperature, beside greedy (0 = greedy only)
    eval_temperatures="0.6,1.0",  # temperatures of the sampled evaluation (0.6: what sample.py uses; 1: sharpness)
    eval_sample_every=4,         # sample every N-th eval and val prompt (1 = all: the regime map; 4 keeps make tspin short)
    theta0_temperatures="0.2,0.4,0.6,0.8,1.0",  # theta_0 at its best of these on val: the free baseline of sampled results ("" = off)
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
    **RUN_DEFAULTS,              # ckpt_seconds, ckpt_interval, overwrite, debug (model/cli.py)
)

SMOKE = dict(iters=2, epochs=1, batch_size=16, max_new_tokens=32, log_interval=2)  # --smoke, but for flags typed

# the rules of model/cli.py, with self-play's own where its flags mean something else
SELFPLAY_RULES = {"init": (lambda v: v.strip() != "" and "\0" not in v,
                           "theta_0: an SFT checkpoint file, or a run name under --out_dir")}


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


def read_inputs(cfg, tok, model, resume, start_iter, main):
    """The prompts with their real answers y (as token ids), the eval and val records, each cut to what fits
    the context (one line says what was left out), and, on --resume, the weights the run continues from
    (after the last finished iteration, or at the start of the one a checkpoint is inside). Every problem is
    a one-line error before anything is written."""
    mid = resume is not None and "k" in resume
    try:
        records, eval_records, val_records, train_path = load_prompts(cfg)
        has_val = bool(val_records)
        if mid and start_iter > 0:
            model.load_state_dict(load_checkpoint(run_path(cfg) / f"iter{start_iter - 1}" / "ckpt.pt")["model"])
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
        if text and main:
            print(f"{what}: {text}", flush=True)
    return records, prompts, y, eval_records, val_records, train_path


def start(defaults, kind, script):
    """Everything both self-play scripts do before their first iteration, the same way: read and check the
    command line (--resume: the run's own settings, with the flags typed now winning), join the processes,
    load theta_0 and the prompts, then claim the run directory and open the log and the NaN guard.
    Returns a namespace with what the training loop uses; run.step and run.tokens_seen advance as it trains.

    Resuming from inside an iteration, the model holds the weights of that iteration's start (what SPIN's
    opponent is, and what y_gen was sampled from); fit_iteration then loads the checkpoint's own."""
    kind_id = kind.lower().replace("-", "")
    cfg, resume = configure(defaults, kind_id, script, description=f"{kind} self-play fine-tuning",
                            smoke=lambda c: SMOKE, help_from=[__file__], rules=SELFPLAY_RULES)
    run_dir = run_path(cfg)
    mid = resume is not None and "k" in resume  # a checkpoint from inside an iteration
    # where to start: the iteration a checkpoint is inside, or the one after those it finished
    start_iter = 0 if resume is None else resume["iter"] if mid else resume.get("next_iter", resume.get("iter"))

    dist, device = D.setup(pick_device(cfg.device))
    if dist.main:
        print_config(cfg, kind)
    torch.manual_seed(cfg.seed)
    try:
        model, tok, tok_path = load_policy(cfg, device)
    except (DataError, FileNotFoundError, ValueError, RuntimeError) as e:
        die(f"{e} (self-play starts from an SFT checkpoint: run `make sft` first, or pass --init)")
    theta_0 = {k: v.detach().clone() for k, v in model.state_dict().items()}  # for weight distances
    records, prompts, y, eval_records, val_records, train_path = read_inputs(cfg, tok, model, resume, start_iter,
                                                                             dist.main)
    claim_run(cfg, dist.main)  # inputs are good: now <run>/ is made (or an old run moved aside) and locked

    train_model = DDP(model, device_ids=[device.index] if device.type == "cuda" else None) if dist.enabled else model
    if cfg.compile:
        train_model = torch.compile(train_model)  # training only: generation and evaluation use the plain model
    guard = NanGuard(cfg.nan_policy, cfg.max_consecutive_nans)
    step = resume["step"] if resume else 0
    if resume:
        guard.count = resume["nan_count"]
        set_rng_state(resume["rng"])
    log = RunLog(run_dir, resume=resume, enabled=dist.main)
    eval_answers = resume.get("eval_answers", {}) if resume else {}  # greedy eval answers
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
                          theta_0_path=str(init_path(cfg)),
                          last_eval_answers=eval_answers.get("last"), theta_0_eval_answers=eval_answers.get("theta_0"), baseline=None)
    if cfg.baseline:
        run.baseline = start_baseline(run, start_iter)
    return run


def finish(run):
    """summary.json (with the full resolved configuration and the full table), results.md (the full table),
    the headline table printed, the curves' path; leave the process group."""
    if run.dist.main:
        table, full = results_table(run.run_dir, run.kind), results_table(run.run_dir, run.kind, FULL_COLUMNS)
        atomic_write(run.run_dir / "results.md", lambda f: f.write(
            f"# {run.kind}: {run.cfg.name}\n\n```\n{full}\n```\n\n{results_table.__doc__}\n".encode()))
        plot_run(run.run_dir, title=f"{run.kind}: {run.cfg.name}")  # again: the baseline's last row came after
        write_json(run.run_dir / "summary.json", {
            "kind": run.kind_id, "name": run.cfg.name, "iters": run.cfg.iters, "steps": run.step,
            "wall_time_s": round(time.time() - run.t_start, 1), "nan_count": run.guard.count,
            "tokens_seen": run.tokens_seen, "config": vars(run.cfg), "table": full.splitlines(),
            "iterations": {str(k): v for k, v in iteration_rows(run.run_dir).items()},
            "baseline": None if run.baseline is None else {
                "steps": run.baseline.step, "tokens_seen": run.baseline.tokens_seen, "lr": run.baseline.cfg.lr,
                "iterations": {str(k): v for k, v in iteration_rows(run.baseline.run_dir).items()}}})
        print("\n" + table)
        print(f"\nthe full table: {run.run_dir / 'results.md'}; curves: {run.run_dir / 'curves.png'}")
    D.cleanup(run.dist)
