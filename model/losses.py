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


def masked_sum(token_lp, mask, average=False):
    """Per-example log-prob from token log-probs that are 0 outside the response, (B,): a sum, or a mean
    over the response tokens if average. Takes the output of GPT.response_logprobs (the fast path)."""
    lp = token_lp.sum(dim=-1)
    return lp / mask.sum(dim=-1).clamp_min(1) if average else lp


def sequence_logprobs(logits, targets, mask, average=False):
    """Per-example log-prob of the masked (response) tokens from full logits, (B,): the plain version,
    kept as the oracle of model(x, targets=targets, mask=m) (which runs the head at response positions only)."""
    return masked_sum(token_logprobs(logits, targets) * mask, mask, average)


def sft_loss(logits, targets, mask):
    """Mean negative log-likelihood over all response tokens of the batch (token-weighted), from full
    logits: the oracle of sft_loss_from_logps on the fast path."""
    nll = F.cross_entropy(logits.float().flatten(0, 1), targets.flatten(), reduction="none")
    return (nll * mask.flatten()).sum() / mask.sum().clamp_min(1)


def sft_loss_from_logps(logp_y, n_tokens):
    """The SFT loss from summed sequence log-probs: the token-mean negative log-likelihood of the real
    answers y, n_tokens being the number of response tokens (EOS included) in the batch. Equals sft_loss
    on the same batch; the continued-SFT baseline trains with it inside the self-play loop."""
    return -logp_y.sum() / n_tokens


def spin_loss(logp_y, logp_y_gen, ref_logp_y, ref_logp_y_gen, lam):
    """SPIN (Chen et al. 2024), logistic loss; 1-D per-example sequence log-probs in.

    loss = -logsigmoid(lam * ((logp_y - ref_logp_y) - (logp_y_gen - ref_logp_y_gen)))
    logp_*: under the model being trained; ref_logp_*: under the frozen previous iterate theta_t.
    When the policy equals the reference every argument is 0 and the loss is log 2, not 0: the
    gradient does not vanish at the start of an iteration.
    Returns (mean loss, detached 0-d metric tensors under the names TRL and the SPIN repo use; they
    stay on the device, so reading them is the caller's choice of when to synchronise).
    """
    reward_y = lam * (logp_y - ref_logp_y)
    reward_y_gen = lam * (logp_y_gen - ref_logp_y_gen)
    loss = -F.logsigmoid(reward_y - reward_y_gen).mean()
    with torch.no_grad():
        metrics = {
            "loss": loss.detach(),
            "rewards/real": reward_y.mean(),
            "rewards/generated": reward_y_gen.mean(),
            "rewards/margins": (reward_y - reward_y_gen).mean(),
            "rewards/accuracies": (reward_y > reward_y_gen).float().mean(),
            "logps/real": logp_y.mean(),
            "logps/generated": logp_y_gen.mean(),
            "logps/gap": (logp_y - logp_y_gen).mean(),  # logps/real - logps/generated
        }
    return loss, metrics


def tspin_loss(logp_y, logp_y_gen, logp_y0, a, b):
    """T-SPIN (Wang et al. 2025); 1-D per-example sequence log-probs in, all from the trained model.

    loss = -logsigmoid(a * (logp_y - logp_y_gen))  -  b * logsigmoid(a * (logp_y_gen - logp_y0))
    The first term is the current advantage (real answer y over the current synthetic answer y_gen); the
    second the historical advantage (y_gen over the proto-synthetic answer y0 of the initial policy).
    No reference model: the entropy constraint's closed form makes the reward a * log p itself.
    b is decided by the caller (0 at the first iteration). With b = 0 the historical term is exactly
    zero, so logp_y0 may be None: the caller then skips y0's share of the forward pass, and the y0
    metrics are not logged.
    """
    if logp_y0 is None and b != 0:
        raise ValueError(f"tspin_loss: b = {b} needs the proto-synthetic log-probs (logp_y0 is None)")
    adv_current = a * (logp_y - logp_y_gen)
    loss = -F.logsigmoid(adv_current)
    if logp_y0 is not None:
        adv_historical = a * (logp_y_gen - logp_y0)
        loss = loss - b * F.logsigmoid(adv_historical)
    loss = loss.mean()
    with torch.no_grad():
        metrics = {
            "loss": loss.detach(),
            "adv/current": adv_current.mean(),
            "adv/current_positive": (adv_current > 0).float().mean(),
            "logps/real": logp_y.mean(),
            "logps/generated": logp_y_gen.mean(),
            "logps/gap": (logp_y - logp_y_gen).mean(),
        }
        if logp_y0 is not None:
            metrics.update({
                "adv/historical": adv_historical.mean(),
                "adv/historical_positive": (adv_historical > 0).float().mean(),
                "logps/proto": logp_y0.mean(),
            })
    return loss, metrics


def with_nll(loss, logp_y_sum, n_tokens, w):
    """The --nll remedy (RPO, arXiv 2404.19733; TRL's "sft" loss term): the self-play loss plus w times the
    SFT loss on the real answers, -(sum of y's token log-probs) / (y's token count). logp_y_sum: the
    per-example SUM of y's token log-probs, whatever --logp is. Returns (the total, the NLL term)."""
    nll = sft_loss_from_logps(logp_y_sum, n_tokens)
    return loss + w * nll, nll
