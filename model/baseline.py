"""
The equal-compute baseline of every self-play run: continued SFT from theta_0 on the same prompts and real
answers y, for the same optimizer steps and examples, in the same training loop (model/selfplay.py's
fit_iteration), with SFT's loss and optimizer and its own learning rate. It lives in <run>/baseline/.
"""

from types import SimpleNamespace

from torch.nn.parallel import DistributedDataParallel as DDP

from model.checkpoint import load_checkpoint, load_latest, set_aside, set_rng_state
from model.gpt import GPT
from model.log import RunLog
from model.losses import sft_loss_from_logps
from model.selfplay import evaluate_iteration, fit_iteration, save_iteration
from model.step import NanGuard


def continued_sft(run, it, x, y):
    """The equal-compute baseline, one iteration: continued SFT from theta_0 (not from the self-play model)
    on the same prompts x and real answers y as self-play's iteration `it`, in the same loop: the same
    number of optimizer steps and examples, the same schedule; only the loss (the token-mean NLL of y, as
    in train_sft.py) and the optimizer (AdamW at baseline_lr) differ. It lives in <run>/baseline/, with its
    own metrics, evaluations and checkpoints (mid-iteration ones too); between iterations only its weights
    are kept, so the self-play model is the only GPT in memory while self-play trains."""
    base = run.baseline
    if base.done is not None and base.done["next_iter"] == it + 1:
        # finished before the run was stopped (its weights and log are on disk): not trained again, and the
        # RNG goes on from where its training left it, as in a run never stopped
        set_rng_state(base.done["rng"])
        base.done = None
        return
    model = GPT(run.model.config).to(run.device)
    model.load_state_dict(base.state)
    train_model = DDP(model, device_ids=[run.device.index] if run.device.type == "cuda" else None) \
        if run.dist.enabled else model
    base.model, base.train_model = model, train_model
    if base.last_eval_answers is None:  # its first evaluation is compared with theta_0's answers
        base.last_eval_answers = run.theta_0_eval_answers
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
    `resume_iter` if it had checkpointed there, after it if it had finished it before self-play saved,
    else after iteration resume_iter - 1. Its latest checkpoint, if unreadable, is passed over for the one
    before (and, were that unusable too, the iteration is trained again: it is deterministic). Its settings
    are the run's, with SFT's optimizer and the baseline's own lr."""
    cfg = SimpleNamespace(**{**vars(run.cfg), "optim": "adamw", "lr": run.cfg.baseline_lr, "logp": "sum", "nll": 0.0,
                             "inject_nan_step": -1, "name": f"{run.cfg.name}/baseline"})
    run_dir = run.run_dir / "baseline"
    state, ckpt, at, done = run.theta_0, None, None, None
    if run.resumed and resume_iter > 0:
        ckpt = load_checkpoint(run_dir / f"iter{resume_iter - 1}" / "ckpt.pt")
        state = ckpt["model"]
    latest = _latest(run_dir / "ckpt.pt", run.dist.main) if run.resumed else None
    if latest is not None and "k" in latest and latest["iter"] == resume_iter:
        ckpt = at = latest  # its weights are loaded when its fit_iteration continues
    elif latest is not None and latest.get("next_iter") == resume_iter + 1:
        ckpt = done = latest  # continued_sft skips the iteration
        state = latest["model"]
    guard = NanGuard(cfg.nan_policy, cfg.max_consecutive_nans)
    guard.count = ckpt["nan_count"] if ckpt else 0
    log = RunLog(run_dir, resume=ckpt, enabled=run.dist.main)
    eval_answers = ckpt.get("eval_answers", {}) if ckpt else {}
    return SimpleNamespace(**{**vars(run), "kind": "continued SFT", "kind_id": "sft_baseline", "cfg": cfg,
                              "run_dir": run_dir, "state": state, "step": ckpt["step"] if ckpt else 0,
                              "tokens_seen": ckpt["tokens_seen"] if ckpt else 0, "guard": guard, "log": log,
                              "resume_at": at, "last_eval_answers": eval_answers.get("last"), "lr_flag": "baseline_lr",
                              "model": None, "train_model": None, "baseline": None, "done": done})


def _latest(path, main):
    """The baseline's newest usable checkpoint (load_latest), or None; what was passed over is said and set
    aside, so that its next save does not rotate it over the good one."""
    try:
        ckpt, used, why = load_latest(path)
    except (FileNotFoundError, RuntimeError) as e:
        if isinstance(e, RuntimeError) and main:
            print(f"--resume: {e}; the baseline trains this iteration again", flush=True)
            set_aside(path)
        return None
    if used != path and main:
        print(f"--resume: {why}; the baseline continues from {used} (step {ckpt['step']})", flush=True)
        set_aside(path)
    return ckpt
