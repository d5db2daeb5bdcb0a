"""
Plumbing shared by train_sft.py, train_spin.py and train_tspin.py, written once: the command line,
the device, checkpoints, the NaN guard, the metrics log and the learning-rate schedules.
The training loops themselves stay in the scripts, where a reader can see them.
"""

import argparse
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from pathlib import Path
from types import SimpleNamespace

import torch

from model.gpt import GPT, GPTConfig

# ----------------------------------------------------------------------------------------------------
# configuration: plain defaults at the top of each script, overridden by --key value


def _str2bool(s):
    if s.lower() in ("1", "true", "yes", "on"):
        return True
    if s.lower() in ("0", "false", "no", "off"):
        return False
    raise argparse.ArgumentTypeError(f"expected a boolean, got {s!r}")


def parse_config(defaults, argv=None, description=None):
    """--key value (or --key=value) overrides a default; the type follows the default's; a bare --flag
    sets a boolean. Unknown keys are an error. Returns a namespace."""
    parser = argparse.ArgumentParser(description=description, allow_abbrev=False)
    for key, value in defaults.items():
        if isinstance(value, bool):
            parser.add_argument(f"--{key}", type=_str2bool, nargs="?", const=True, default=value)
        else:
            parser.add_argument(f"--{key}", type=type(value), default=value)
    return SimpleNamespace(**vars(parser.parse_args(argv)))


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


def save_checkpoint(path, state):
    """torch.save to a temporary file, then rename: a run killed mid-write leaves the old checkpoint."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path, map_location="cpu"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    try:
        # weights_only: a checkpoint from a stranger can hold tensors and plain data, never code
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        raise RuntimeError(f"cannot read checkpoint {path}: {e}") from None


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
            kept = [line for line in self.path.read_text().splitlines()
                    if line.strip() and json.loads(line).get("step", 0) <= resume_step]
        self.path.write_text("".join(line + "\n" for line in kept))
        self.t0 = time.time()

    def log(self, **record):
        if not self.enabled:
            return
        record = {k: (float(v) if isinstance(v, torch.Tensor) else v) for k, v in record.items()}
        record["time"] = round(time.time() - self.t0, 3)
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")


def read_metrics(run_dir):
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()] if path.exists() else []


def write_json(path, obj):
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2) + "\n")
    os.replace(tmp, path)


def die(msg):
    print(f"error: {msg}", file=sys.stderr)
    sys.exit(1)


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
