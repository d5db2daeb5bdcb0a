"""
The one checkpoint format of all three scripts: what a checkpoint holds, its atomic save (a kill mid-write
leaves the previous file; the one before it is kept beside it, ckpt.prev.pt), its load (weights_only=True:
a stranger's file holds tensors and plain data, never code), the newest checkpoint of the two that a run
can continue from, the model it describes, and the RNG state that makes a resumed run draw the same numbers.
"""

import zipfile
from pathlib import Path

import torch

from model.files import atomic_write, previous_path
from model.gpt import GPT, GPTConfig


def checkpoint_state(kind, model, cfg, tok, tok_path, step, nan_count, **extra):
    """The one checkpoint format, for all three scripts: weights, the model's shape, the run's settings,
    the tokenizer it was trained with (path and hash), the step, the NaN count, the RNG state, and what a
    script adds to resume exactly (the optimizer state, the iteration, tokens seen, log lines written)."""
    return {"kind": kind, "model": model.state_dict(), "model_config": model.config.to_dict(), "config": vars(cfg),
            "tokenizer": {"path": str(tok_path), "sha256": tok.sha256}, "step": step, "nan_count": nan_count,
            "rng": rng_state(), **extra}


def save_checkpoint(path, state, keep_previous=True):
    """torch.save through the atomic write: a run killed mid-write leaves the old checkpoint, and with
    keep_previous the one it replaces stays beside it as ckpt.prev.pt (--resume falls back to it when the
    latest cannot be read). A failed write (OSError: a full disk, a read-only directory) changes neither."""
    atomic_write(path, lambda f: torch.save(state, f), keep_previous=keep_previous)


def load_checkpoint(path, map_location="cpu"):
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if not path.is_file():
        raise FileNotFoundError(f"{path} is not a file")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive
            raise RuntimeError(f"{path} is not a readable checkpoint (not a file written by torch.save)")
    if not zipfile.is_zipfile(path):  # the archive's directory is at its end: gone when the file is cut short
        raise RuntimeError(f"{path} is not a readable checkpoint (cut short: {path.stat().st_size} bytes, "
                           f"without the end of its archive)")
    try:
        # weights_only: a checkpoint from a stranger can hold tensors and plain data, never code
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise RuntimeError(f"{path} is not a readable checkpoint ({first[:120]})") from None
    if not isinstance(ckpt, dict) or not {"kind", "model", "model_config", "config"} <= ckpt.keys():
        raise RuntimeError(f"{path} is not a checkpoint of this project (no kind/model/model_config/config)")
    return ckpt


def check_resumable(ckpt, path):
    """Raise RuntimeError naming `path` unless the checkpoint holds what a run continues from: the step,
    the RNG state, the optimizer state where one is needed, and weights of the shape its model_config
    describes (checked on the meta device: no memory, no time)."""
    need = ["step", "nan_count", "rng", "tokenizer"]
    need += ["iter", "steps", "optimizer", "update_ratios"] if "k" in ckpt else \
        ["optimizer"] if ckpt["kind"] == "sft" else ["next_iter"]
    missing = [k for k in need if k not in ckpt]
    if missing:
        raise RuntimeError(f"{path} is not a resumable checkpoint (it has no {', '.join(missing)})")
    try:
        with torch.device("meta"):
            shapes = {k: v.shape for k, v in GPT(GPTConfig(**ckpt["model_config"])).state_dict().items()}
        weights = ckpt["model"]
        bad = sorted(k for k in shapes.keys() | weights.keys()
                     if k not in shapes or k not in weights or weights[k].shape != shapes[k])
    except (TypeError, ValueError, AttributeError) as e:
        raise RuntimeError(f"{path} is not a resumable checkpoint ({type(e).__name__}: {e})") from None
    if bad:
        raise RuntimeError(f"{path} is not a resumable checkpoint (its weights do not fit its model: {bad[0]})")


def load_latest(path):
    """The newest checkpoint a run can continue from: `path` (its ckpt.pt), or, when that one is missing
    (a kill between the two renames of a save) or unreadable (cut short, not a torch file, wrong keys or
    shapes), the previous one beside it. -> (checkpoint, the path it came from, why `path` was passed over
    or None). Raises FileNotFoundError when neither exists, RuntimeError (saying why) when neither is good."""
    path, previous = Path(path), previous_path(path)
    if not path.exists() and not previous.exists():
        raise FileNotFoundError(f"no checkpoint at {path}")
    if path.exists():
        try:
            ckpt = load_checkpoint(path)
            check_resumable(ckpt, path)
            return ckpt, path, None
        except (FileNotFoundError, RuntimeError) as e:
            why = str(e)
    else:
        why = f"{path} is missing (the run was stopped while saving it)"
    if not previous.exists():
        raise RuntimeError(f"{why}, and there is no previous checkpoint {previous.name} to fall back on")
    try:
        ckpt = load_checkpoint(previous)
        check_resumable(ckpt, previous)
    except (FileNotFoundError, RuntimeError) as e:
        raise RuntimeError(f"{why}, and the previous one cannot be used either: {e}") from None
    return ckpt, previous, why


def set_aside(path):
    """Rename an unreadable checkpoint to <stem>.unreadable<suffix> (kept for a look, never read again),
    so that the next save does not rotate it over the good previous one."""
    path = Path(path)
    if path.exists():
        path.replace(path.with_name(f"{path.stem}.unreadable{path.suffix}"))


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
    # is_initialized, not is_available: a CPU run never wakes CUDA up to save a state it does not use
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_initialized():
        torch.cuda.set_rng_state_all(state["cuda"])
