"""
Plumbing shared by train_sft.py, train_spin.py and train_tspin.py, written once: the command line,
the device, checkpoints, the NaN guard, the metrics log and the learning-rate schedules.
The training loops themselves stay in the scripts, where a reader can see them.
"""

import argparse
import json
import math
import re
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import torch

from model.data import atomic_write, read_json_lines
from model.gpt import GPT, GPTConfig

# ----------------------------------------------------------------------------------------------------
# configuration: plain defaults at the top of each script, overridden by --key value


def _str2bool(s):
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


RUNS_DIR = "runs"  # where runs go, by default; every script's --out_dir


def flag_help(*sources):
    """{key: help} from the comments beside the defaults (`    lr=3e-3,  # peak learning rate`) in these
    source files: the comment a reader sees next to a default is the --help text, written once."""
    helps = {}
    for src in sources:
        for line in Path(src).read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s+(\w+)=[^#]*#\s*(.+)$", line)
            if m:
                helps.setdefault(m.group(1), m.group(2).strip())
    return helps


def parse_config(defaults, argv=None, description=None, help_from=()):
    """--key value (or --key=value) overrides a default; the type follows the default's; a bare --flag
    sets a boolean. Unknown keys are an error. Help text comes from the comments beside the defaults in
    the files `help_from`. Returns a namespace."""
    helps = flag_help(*help_from)
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False,
                                     formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=32))
    for key, value in defaults.items():
        kind = "bool" if isinstance(value, bool) else type(value).__name__
        shown = f" (default: {value})" if value != "" else ""
        meta = dict(default=value, help=helps.get(key, "") + shown, metavar=kind.upper())
        if isinstance(value, bool):
            parser.add_argument(f"--{key}", type=_str2bool, nargs="?", const=True, **meta)
        else:
            parser.add_argument(f"--{key}", type=type(value), **meta)
    return SimpleNamespace(**vars(parser.parse_args(argv)))


def run_path(cfg):
    """<out_dir>/<name>: the only place that joins the two."""
    return Path(cfg.out_dir) / cfg.name


def print_config(cfg, title):
    print(f"{title}: " + " ".join(f"{k}={v}" for k, v in vars(cfg).items()), flush=True)


# ----------------------------------------------------------------------------------------------------
# device


def pick_device(name="auto"):
    if name == "auto":
        if torch.cuda.is_available():
            name = "cuda"
        elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            name = "mps"
        else:
            name = "cpu"
    return torch.device(name)


def autocast(device):
    """bf16 autocast on CUDA (no grad scaler needed, unlike fp16); full fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


# ----------------------------------------------------------------------------------------------------
# checkpoints: written atomically, loaded with weights_only=True


def checkpoint_state(kind, model, cfg, tok, tok_path, step, nan_count, **extra):
    """The one checkpoint format, for all three scripts: weights, the model's shape, the run's settings,
    the tokenizer it was trained with (path and hash), the step, the NaN count, the RNG state, and what a
    script adds to resume exactly (the optimizer state, the iteration, tokens seen)."""
    return {"kind": kind, "model": model.state_dict(), "model_config": model.config.to_dict(), "config": vars(cfg),
            "tokenizer": {"path": str(tok_path), "sha256": tok.sha256}, "step": step, "nan_count": nan_count,
            "rng": rng_state(), **extra}


def save_checkpoint(path, state):
    """torch.save through the atomic write: a run killed mid-write leaves the old checkpoint."""
    atomic_write(path, lambda f: torch.save(state, f))


def load_checkpoint(path, map_location="cpu"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    try:
        # weights_only: a checkpoint from a stranger can hold tensors and plain data, never code
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"{path} is not a readable checkpoint ({first[:120]})") from None
    if not isinstance(ckpt, dict) or not {"kind", "model", "model_config", "config"} <= ckpt.keys():
        raise RuntimeError(f"{path} is not a checkpoint of this project (no kind/model/model_config/config)")
    return ckpt


def model_from_checkpoint(ckpt, tok, path="checkpoint"):
    """Build the GPT a checkpoint describes, refusing one made with another tokenizer or shape."""
    mcfg = GPTConfig(**ckpt["model_config"])
    saved_hash = ckpt.get("tokenizer", {}).get("sha256")
    if mcfg.vocab_size != tok.vocab_size or (saved_hash and saved_hash != tok.sha256):
        raise ValueError(
            f"{path} was trained with another tokenizer (vocab {mcfg.vocab_size}, hash {str(saved_hash)[:12]}) "
            f"than the one loaded now (vocab {tok.vocab_size}, hash {tok.sha256[:12]}); retrain, or pass --tokenizer "
            f"that the checkpoint was made with"
        )
    model = GPT(mcfg)
    try:
        model.load_state_dict(ckpt["model"])
    except RuntimeError as e:
        raise ValueError(f"{path} does not fit the model shape {mcfg}: {e}") from None
    return model


def rng_state():
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


# ----------------------------------------------------------------------------------------------------
# the NaN guard: a NaN is a symptom to show, never a silent update


def nonfinite_culprit(loss, grad_norm, model, logits=None):
    """None if the step is clean, else what went bad first: 'loss', 'logits', or 'grad:<param name>'.

    Only grad_norm is read in the clean case (one scalar), so the guard costs one sync per step."""
    if bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm)):
        return None
    if logits is not None and not bool(torch.isfinite(logits).all()):
        return "logits"
    if not bool(torch.isfinite(loss)):
        return "loss"
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return f"grad:{name}"
    return "grad_norm"


def optimizer_step(loss, model, optimizer, guard, step, grad_clip, logits=None):
    """The one update of every training loop: backward, clip the gradient norm, ask the NaN guard, and
    step only if everything is finite (a poisoned step is never applied). Returns (grad_norm, event):
    event is None for a clean step, else the guard's record of what went bad."""
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    event = guard.check(nonfinite_culprit(loss, grad_norm, model, logits), step)
    if event is None:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, event


class NanGuard:
    """Counts non-finite steps; the caller skips the optimizer step. policy 'halt' stops at the first,
    'skip' goes on, and any policy stops after max_consecutive bad steps in a row."""

    def __init__(self, policy="skip", max_consecutive=10):
        if policy not in ("skip", "halt"):
            raise ValueError(f"nan_policy must be 'skip' or 'halt', got {policy!r}")
        self.policy, self.max_consecutive = policy, max_consecutive
        self.count = self.consecutive = 0

    def check(self, culprit, step):
        """Returns an event dict when the step was bad (and raises when the run must stop)."""
        if culprit is None:
            self.consecutive = 0
            return None
        self.count += 1
        self.consecutive += 1
        event = {"step": step, "nan_event": culprit, "nan_count": self.count}
        if self.policy == "halt" or self.consecutive >= self.max_consecutive:
            why = "nan_policy=halt" if self.policy == "halt" else f"{self.consecutive} non-finite steps in a row"
            raise FloatingPointError(
                f"non-finite {culprit} at step {step} ({why}); the weights were not updated and the "
                f"last good checkpoint is kept. Lower the learning rate or inspect the data at this step."
            )
        return event


# ----------------------------------------------------------------------------------------------------
# logging


class RunLog:
    """runs/<name>/metrics.jsonl, one JSON object per line. On resume, lines logged after the
    checkpoint's step are dropped, so the file reads as if the run had never been killed."""

    def __init__(self, run_dir, resume_step=None, enabled=True):
        self.path = Path(run_dir) / "metrics.jsonl"
        self.enabled = enabled
        if not enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if resume_step is not None and self.path.exists():
            kept = [r for r in read_json_lines(self.path, torn_tail_ok=True) if r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in kept))
        self.t0 = time.time()

    def log(self, **record):
        if not self.enabled:
            return
        record = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        record["time"] = round(time.time() - self.t0, 3)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(run_dir):
    """A run's metrics.jsonl as a list of dicts; [] if there is none. A torn last line (a crash in
    mid-write) is dropped."""
    path = Path(run_dir) / "metrics.jsonl"
    return read_json_lines(path, torn_tail_ok=True) if path.exists() else []


def write_json(path, obj):
    atomic_write(path, lambda f: f.write((json.dumps(obj, indent=2) + "\n").encode()))


def die(msg):
    """The one way a script stops on bad input: one line on stderr, exit status 2, no traceback."""
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(2)


# ----------------------------------------------------------------------------------------------------
# learning-rate schedules


def lr_warmup_cosine(step, total, warmup, lr, min_lr):
    """Linear warmup, then cosine decay to min_lr (SFT, as nanoGPT)."""
    if step < warmup:
        return lr * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return min_lr + 0.5 * (1 + math.cos(math.pi * progress)) * (lr - min_lr)


def lr_warmup_linear(step, total, warmup, lr):
    """Linear warmup, then linear decay to 0 (SPIN's schedule: transformers' 'linear')."""
    if step < warmup:
        return lr * (step + 1) / warmup
    return lr * max(0.0, (total - step) / max(1, total - warmup))
