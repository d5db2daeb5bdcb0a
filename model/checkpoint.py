"""
The one checkpoint format of all three scripts: what a checkpoint holds, its atomic save (a kill mid-write
leaves the previous file), its load (weights_only=True: a stranger's file holds tensors and plain data,
never code), the model it describes, and the RNG state that makes a resumed run draw the same numbers.
"""

from pathlib import Path

import torch

from model.files import atomic_write
from model.gpt import GPT, GPTConfig


def checkpoint_state(kind, model, cfg, tok, tok_path, step, nan_count, **extra):
    """The one checkpoint format, for all three scripts: weights, the model's shape, the run's settings,
    the tokenizer it was trained with (path and hash), the step, the NaN count, the RNG state, and what a
    script adds to resume exactly (the optimizer state, the iteration, tokens seen, log lines written)."""
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
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":  # torch.save writes a zip archive
            raise RuntimeError(f"{path} is not a readable checkpoint (not a file written by torch.save)")
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
    # is_initialized, not is_available: a CPU run never wakes CUDA up to save a state it does not use
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_initialized():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state):
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_initialized():
        torch.cuda.set_rng_state_all(state["cuda"])
