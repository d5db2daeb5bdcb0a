"""
The device a run uses: --device auto picks CUDA, then MPS, then the CPU; bf16 autocast on CUDA only.
"""

from contextlib import nullcontext

import torch


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
