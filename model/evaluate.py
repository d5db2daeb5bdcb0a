"""
The evaluation every script runs: answer the held-out prompts with the KV sampler (greedy), score the
answers, and compute the metrics (accuracy per family, pipe rate, ...). Also the teacher-forced loss on
the held-out reference answers. SFT, SPIN, T-SPIN and the notebooks all call evaluate().
"""

import math

import torch

from data.tasks import pipes_allowed, score
from model.data import collate, encode_records, format_prompt, sorted_batches
from model.device import autocast
from model.dist import Dist, all_reduce_sum, gather_lists
from model.sampler import generate


def answer(model, tok, prompts, max_new_tokens, temperature=0.0, top_p=1.0, seed=0, batch_size=256, row_ids=None,
           template="chat"):
    """Generate one answer per prompt text in the prompt template (data.format_prompt). Returns (token lists, texts, ended):
    token lists keep the EOS when the model produced one; texts are decoded without it."""
    if not prompts:
        return [], [], []
    ids = [format_prompt(tok, p, template) for p in prompts]
    limit = model.config.block_size
    max_new = min(max_new_tokens, limit - max(len(i) for i in ids))
    outs = generate(model, ids, max_new, temperature=temperature, top_p=top_p, eos_id=tok.eos_id, seed=seed,
                    batch_size=batch_size, row_ids=row_ids)
    ended = [len(o) > 0 and o[-1] == tok.eos_id for o in outs]
    texts = [tok.decode(o[:-1] if e else o) for o, e in zip(outs, ended)]
    return outs, texts, ended


@torch.no_grad()
def reference_loss(model, tok, records, device, batch_size=64, template="chat"):
    """Mean response-token NLL of the reference answers (teacher forcing), token-weighted."""
    was_training = model.training
    model.eval()
    prompts, responses = encode_records(tok, records, model.config.block_size, template)
    total, count = torch.zeros((), device=device), torch.zeros((), device=device)
    for idx in sorted_batches([len(p) + len(r) for p, r in zip(prompts, responses)], batch_size):
        x, targets, m = (t.to(device) for t in collate([prompts[j] for j in idx], [responses[j] for j in idx], tok.pad_id))
        with autocast(device):
            token_lp = model(x, targets=targets, mask=m)  # the head at response positions only
        total -= token_lp.sum()
        count += m.sum()
    model.train(was_training)
    return total, count


def _se(p, n):
    return math.sqrt(p * (1.0 - p) / n) if n else float("nan")


def loops(text, n=3, times=3):
    """True if some word n-gram occurs `times` or more times: the answer is repeating itself."""
    words = text.split()
    counts = {}
    for gram in zip(*(words[i:] for i in range(n))):
        counts[gram] = counts.get(gram, 0) + 1
        if counts[gram] >= times:
            return True
    return False


def eval_metrics(records, responses, ended_with_eos):
    """
    Metrics over one set of generations (all values floats):
      accuracy, accuracy_se        over records with a known family (absent when there is none)
      acc/<task>, se/<task>, n/<task>   per family present, in the order the records first show it
      pipe_rate        share of non-table answers containing "|"
      pipes_per_kchar  "|" characters per 1000 characters of non-table answers
      mean_len         mean characters per response
      len_ratio        mean_len over the reference answers' mean characters (length drift: 1 = same length)
      eos_rate         share of responses that ended with EOS (not cut at max_new_tokens)
      repetition_rate  share of responses caught in a loop: a word 3-gram that occurs 3 or more times
      distinct_2       distinct / total whitespace-word bigrams over all responses (0 if none)
      n                number of responses
    Standard errors are binomial: sqrt(p (1 - p) / n).
    """
    if not (len(records) == len(responses) == len(ended_with_eos)):
        raise ValueError(
            f"lengths differ: {len(records)} records, {len(responses)} responses, "
            f"{len(ended_with_eos)} ended_with_eos flags"
        )
    out = {"n": float(len(responses))}

    # families come from the records themselves (data.tasks knows them, model/ does not); dicts keep
    # first-seen order, which for eval.jsonl (grouped by family) is the registry's order
    by_task = {}
    for rec, resp in zip(records, responses):
        s = score(rec, resp)
        if s is not None:
            by_task.setdefault(rec["task"], []).append(s)
    scored = [s for task in by_task.values() for s in task]
    if scored:
        p = sum(scored) / len(scored)
        out["accuracy"], out["accuracy_se"] = p, _se(p, len(scored))
    for task, s in by_task.items():
        p = sum(s) / len(s)
        out[f"acc/{task}"], out[f"se/{task}"], out[f"n/{task}"] = p, _se(p, len(s)), float(len(s))

    prose = [resp for rec, resp in zip(records, responses) if not pipes_allowed(rec)]
    out["pipe_rate"] = sum("|" in r for r in prose) / len(prose) if prose else 0.0
    prose_chars = sum(len(r) for r in prose)
    out["pipes_per_kchar"] = 1000.0 * sum(r.count("|") for r in prose) / prose_chars if prose_chars else 0.0
    out["mean_len"] = sum(len(r) for r in responses) / len(responses) if responses else 0.0
    refs = [len(rec["response"]) for rec in records if "response" in rec]
    ref_len = sum(refs) / len(refs) if refs else 0.0
    out["len_ratio"] = out["mean_len"] / ref_len if ref_len else 0.0
    out["repetition_rate"] = sum(map(loops, responses)) / len(responses) if responses else 0.0
    out["eos_rate"] = sum(bool(e) for e in ended_with_eos) / len(ended_with_eos) if ended_with_eos else 0.0

    bigrams = [b for r in responses for b in zip(r.split(), r.split()[1:])]
    out["distinct_2"] = len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    return out


def evaluate(model, tok, records, device, max_new_tokens=96, batch_size=256, dist=None, n_show=0, template="chat"):
    """-> (metrics dict, samples list). Under torchrun each rank answers its share of the prompts and
    every rank returns the same metrics."""
    dist = dist or Dist()
    mine = records[dist.rank::dist.world]
    _, texts, ended = answer(model, tok, [r["prompt"] for r in mine], max_new_tokens, batch_size=batch_size,
                             template=template)
    total, count = reference_loss(model, tok, mine, device, template=template)
    texts = gather_lists(dist, texts, len(records))
    ended = gather_lists(dist, ended, len(records))
    loss_sum = all_reduce_sum(dist, torch.stack([total, count]))
    # logp_y: the reference answers' summed log-prob, averaged over answers (the same pass as eval_loss)
    metrics = {"eval_loss": float(loss_sum[0] / loss_sum[1].clamp_min(1)), "logp_y": -float(loss_sum[0]) / len(records)}
    metrics.update(eval_metrics(records, texts, ended))
    samples = []
    for r, t, e in zip(records, texts, ended):
        samples.append({"task": r.get("task"), "prompt": r["prompt"], "response": t, "reference": r["response"],
                        "right": score(r, t), "ended": e})
    return metrics, samples


def show_samples(samples, n=5):
    """A few answers, one per family first, printed as 'ok/WRONG prompt -> answer'."""
    seen, picked = set(), []
    for s in samples:
        if s["task"] not in seen:
            seen.add(s["task"])
            picked.append(s)
    picked = (picked + [s for s in samples if s not in picked])[:n]
    for s in picked:
        mark = {True: "  ok ", False: "WRONG", None: "  -  "}[s["right"]]
        print(f"  {mark} [{s['task']}] {s['prompt']!r} -> {s['response']!r}")
    return picked


def summary_line(metrics):
    """One line of the headline metrics, then the accuracy of each task family."""
    keys = ["eval_loss", "accuracy", "pipe_rate", "eos_rate", "mean_len", "len_ratio", "repetition_rate"]
    families = " ".join(f"{k[4:]} {v:.2f}" for k, v in metrics.items() if k.startswith("acc/"))
    return " ".join(f"{k} {metrics[k]:.3f}" for k in keys if k in metrics) + (f" | {families}" if families else "")
