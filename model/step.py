"""
The one optimizer step of every training loop, with the NaN guard (a non-finite loss or gradient is a
symptom to show, never a silent update), and the learning-rate schedules.
"""

import math

import torch


def nonfinite_culprit(loss, grad_norm, model, outputs=None):
    """None if the step is clean, else what went bad first: 'outputs' (the model's log-probs), 'loss',
    or 'grad:<param name>'.

    Only grad_norm is read in the clean case (one scalar), so the guard costs one sync per step."""
    if bool(torch.isfinite(loss)) and bool(torch.isfinite(grad_norm)):
        return None
    if outputs is not None and not bool(torch.isfinite(outputs).all()):
        return "outputs"
    if not bool(torch.isfinite(loss)):
        return "loss"
    for name, p in model.named_parameters():
        if p.grad is not None and not bool(torch.isfinite(p.grad).all()):
            return f"grad:{name}"
    return "grad_norm"


def optimizer_step(loss, model, optimizer, guard, step, grad_clip, outputs=None):
    """The one update of every training loop: backward, clip the gradient norm, ask the NaN guard, and
    step only if everything is finite (a poisoned step is never applied). Returns (grad_norm, event):
    event is None for a clean step, else the guard's record of what went bad."""
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    event = guard.check(nonfinite_culprit(loss, grad_norm, model, outputs), step)  # NanHalt: nothing applied
    if event is None:
        optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return grad_norm, event


class NanHalt(FloatingPointError):
    """The run must stop at a non-finite step; the step was not applied. `event` is its metrics record."""

    def __init__(self, event, why):
        self.event = event
        super().__init__(f"non-finite {event['nan_event']} at step {event['step']} ({why})")


class NanGuard:
    """Counts non-finite steps; the caller skips the optimizer step. policy 'halt' stops at the first,
    'skip' goes on, and any policy stops after max_consecutive bad steps in a row."""

    def __init__(self, policy="skip", max_consecutive=10):
        if policy not in ("skip", "halt"):
            raise ValueError(f"nan_policy must be 'skip' or 'halt', got {policy!r}")
        self.policy, self.max_consecutive = policy, max_consecutive
        self.count = self.consecutive = 0

    def check(self, culprit, step):
        """Returns an event dict when the step was bad (and raises NanHalt when the run must stop)."""
        if culprit is None:
            self.consecutive = 0
            return None
        self.count += 1
        self.consecutive += 1
        event = {"step": step, "nan_event": culprit, "nan_count": self.count}
        if self.policy == "halt" or self.consecutive >= self.max_consecutive:
            raise NanHalt(event, "nan_policy=halt" if self.policy == "halt" else
                          f"{self.consecutive} non-finite steps in a row")
        return event


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
