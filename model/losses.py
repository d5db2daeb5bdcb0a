"""
The math, as small pure functions that tests check against hand-computed values.

Conventions: logits (B, T, V) come from inputs x; targets y (B, T) are x shifted left by one, so
logits[:, t] scores y[:, t] = the token *after* x[:, t]. mask (B, T) is 1 on response tokens (the EOS
included). A sequence log-prob is the SUM of its response tokens' log-probs, as in the official SPIN
code (average_log_prob=False): a sum scores the whole answer, so a longer wrong answer is not excused
by averaging; `average=True` gives the per-token mean that some DPO users prefer.
"""

import torch
import torch.nn.functional as F


def token_logprobs(logits, targets):
    """log p(targets[b, t] | prefix) for every position, (B, T), computed in float32."""
    return torch.log_softmax(logits.float(), dim=-1).gather(-1, targets.unsqueeze(-1)).squeeze(-1)


def sequence_logprobs(logits, targets, mask, average=False):
    """Per-example log-prob of the masked (response) tokens, (B,): a sum, or a mean if average."""
    lp = (token_logprobs(logits, targets) * mask).sum(dim=-1)
    return lp / mask.sum(dim=-1).clamp_min(1) if average else lp


def sft_loss(logits, targets, mask):
    """Mean negative log-likelihood over all response tokens of the batch (token-weighted)."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * mask.flatten()).sum() / mask.sum().clamp_min(1)


def spin_loss(policy_real, policy_gen, ref_real, ref_gen, lam):
    """SPIN (Chen et al. 2024), logistic loss; 1-D per-example sequence log-probs in.

    loss = -logsigmoid(lam * ((lp(y) - ref(y)) - (lp(y') - ref(y'))))
    When the policy equals the reference every argument is 0 and the loss is log 2, not 0: the
    gradient does not vanish at the start of an iteration.
    Returns (mean loss, detached 0-d metric tensors under the names TRL and the SPIN repo use; they
    stay on the device, so reading them is the caller's choice of when to synchronise).
    """
    rewards_real = lam * (policy_real - ref_real)
    rewards_gen = lam * (policy_gen - ref_gen)
    loss = -F.logsigmoid(rewards_real - rewards_gen).mean()
    with torch.no_grad():
        metrics = {
            "loss": loss.detach(),
            "rewards/real": rewards_real.mean(),
            "rewards/generated": rewards_gen.mean(),
            "rewards/margins": (rewards_real - rewards_gen).mean(),
            "rewards/accuracies": (rewards_real > rewards_gen).float().mean(),
            "logps/real": policy_real.mean(),
            "logps/generated": policy_gen.mean(),
            "logps/gap": (policy_real - policy_gen).mean(),  # logps/real - logps/generated
        }
    return loss, metrics


def tspin_loss(policy_real, policy_gen, policy_proto, a=1.0, b=0.1):
    """T-SPIN (Wang et al. 2025); 1-D per-example sequence log-probs in, all from the trained model.

    loss = -logsigmoid(a * (lp(y) - lp(y')))  -  b * logsigmoid(a * (lp(y') - lp(y0)))
    The first term is the current advantage (real over the current synthetic answer); the second the
    historical advantage (current synthetic over the proto-synthetic answer of the initial policy).
    No reference model: the entropy constraint's closed form makes the reward a * log p itself.
    With b = 0 the historical term is exactly zero, so policy_proto may be None: the caller then skips
    y0's share of the forward pass (a third of it), and the y0 metrics are not logged.
    """
    if policy_proto is None and b != 0:
        raise ValueError(f"tspin_loss: b = {b} needs the proto-synthetic log-probs (policy_proto is None)")
    adv_current = a * (policy_real - policy_gen)
    loss = -F.logsigmoid(adv_current)
    if policy_proto is not None:
        adv_historical = a * (policy_gen - policy_proto)
        loss = loss - b * F.logsigmoid(adv_historical)
    loss = loss.mean()
    with torch.no_grad():
        metrics = {
            "loss": loss.detach(),
            "adv/current": adv_current.mean(),
            "adv/current_positive": (adv_current > 0).float().mean(),
            "logps/real": policy_real.mean(),
            "logps/generated": policy_gen.mean(),
            "logps/gap": (policy_real - policy_gen).mean(),
        }
        if policy_proto is not None:
            metrics.update({
                "adv/historical": adv_historical.mean(),
                "adv/historical_positive": (adv_historical > 0).float().mean(),
                "logps/proto": policy_proto.mean(),
            })
    return loss, metrics

