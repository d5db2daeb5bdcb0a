"""
The evaluation every script runs: answer the held-out prompts with the KV sampler, score the answers, and
compute the metrics (accuracy per family, pipe rate, ...). Greedy always; with samples=K also K sampled
answers per prompt at each temperature asked (pass@1, pass@K, pipe, EOS, length, loops per temperature),
and the policy's sharpness: the mean per-token log-prob it gives its own samples at temperature 1 (minus
its per-token entropy, estimated). Also the teacher-forced loss on the held-out reference answers, and what
each prompt got (outcome_lines), so that two evaluations can be compared prompt by prompt (model/stats.py).
SFT, SPIN, T-SPIN, sample.py and the notebooks all call evaluate().
"""

import math

import torch

from data.tasks import pipes_allowed, score
from model.data import collate, encode_records, format_prompt, sorted_batches
from model.device import autocast
from model.dist import Dist, all_reduce_sum, gather_lists
from model.sampler import generate, generate_k
from model.stats import pass_at_k


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


def temperatures(value):
    """A --eval_temperatures value: '0.6,1.0' -> [0.6, 1.0]; '' -> []."""
    return [float(t) for t in str(value).split(",") if t.strip()]


def answer_k(model, tok, prompts, k, max_new_tokens, temperature, seed=0, batch_size=256, row_ids=None,
             template="chat"):
    """k sampled answers per prompt text, one prefill each (sampler.generate_k). Returns per prompt a list
    of k (text, ended, n_tokens, logp) where logp is the sample's summed log-prob under the untempered
    model (the sharpness measure's numerator)."""
    if not prompts:
        return []
    ids = [format_prompt(tok, p, template) for p in prompts]
    max_new = min(max_new_tokens, model.config.block_size - max(len(i) for i in ids))
    outs, logps = generate_k(model, ids, k, max_new, temperature=temperature, eos_id=tok.eos_id, seed=seed,
                             batch_size=batch_size, row_ids=row_ids, return_logprobs=True)
    result = []
    for samples, lps in zip(outs, logps):
        row = []
        for o, lp in zip(samples, lps):
            ended = len(o) > 0 and o[-1] == tok.eos_id
            row.append((tok.decode(o[:-1] if ended else o), ended, len(o), float(lp)))
        result.append(row)
    return result


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


def evaluate(model, tok, records, device, max_new_tokens=96, batch_size=256, dist=None, n_show=0, template="chat",
             samples=0, temperatures=(), sample_every=1, seed=0):
    """-> (metrics dict, samples list). Greedy answers to every record; with samples=K > 0, also K sampled
    answers at each of `temperatures` to every sample_every-th record (its metrics under t<T>/..., the
    answers in each sample's "sampled"). Under torchrun each rank answers its share of the prompts and
    every rank returns the same metrics. Sampling draws from streams keyed by (seed, prompt index, sample):
    two models evaluated with the same seed meet the same random numbers (common random numbers), which
    makes their prompt-by-prompt difference less noisy."""
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
    out = []
    for r, t, e in zip(records, texts, ended):
        out.append({"task": r.get("task"), "prompt": r["prompt"], "response": t, "reference": r["response"],
                    "right": score(r, t), "ended": e})
    for temperature in (temperatures if samples else ()):
        metrics.update(sample_at(model, tok, records, out, samples, temperature, max_new_tokens, batch_size, dist,
                                 template, sample_every, seed))
    return metrics, out


def sample_at(model, tok, records, out, k, temperature, max_new_tokens, batch_size, dist, template, sample_every,
              seed):
    """K sampled answers at one temperature to every sample_every-th record: stored in out[i]["sampled"][T]
    and summarised as t<T>/accuracy (pass@1: the mean right share over the K samples), t<T>/pass@K (Chen
    et al. 2021's unbiased estimator), pipe, EOS, length ratio, loops over all samples, and sharpness (the
    mean per-token log-prob of the samples under the untempered model: at T = 1, minus the entropy)."""
    picked = list(range(0, len(records), sample_every))
    mine = picked[dist.rank::dist.world]
    answers = answer_k(model, tok, [records[i]["prompt"] for i in mine], k, max_new_tokens, temperature, seed=seed,
                       batch_size=batch_size, row_ids=mine, template=template)
    answers = gather_lists(dist, answers, len(picked))
    key = f"t{temperature:g}"
    for i, row in zip(picked, answers):
        out[i].setdefault("sampled", {})[key] = [
            {"response": text, "right": score(records[i], text), "ended": ended} for text, ended, _, _ in row]
    flat_records = [records[i] for i in picked for _ in range(k)]
    flat = [a for row in answers for a in row]
    m = eval_metrics(flat_records, [a[0] for a in flat], [a[1] for a in flat])
    metrics = {f"{key}/{name}": m[name] for name in ("accuracy", "pipe_rate", "eos_rate", "len_ratio",
                                                      "repetition_rate") if name in m}
    rights = [[score(records[i], a[0]) for a in row] for i, row in zip(picked, answers)]
    rights = [r for r in rights if None not in r]
    if rights:
        metrics[f"{key}/pass@{k}"] = sum(pass_at_k(k, sum(r), k) for r in rights) / len(rights)
        per_prompt = [sum(r) / k for r in rights]
        mean = sum(per_prompt) / len(per_prompt)
        metrics[f"{key}/accuracy_se"] = math.sqrt(sum((p - mean) ** 2 for p in per_prompt)
                                                  / max(1, len(per_prompt) - 1) / len(per_prompt))
    metrics[f"{key}/sharpness"] = sum(a[3] for a in flat) / max(1, sum(a[2] for a in flat))
    return metrics


def find_best_temperature(model, tok, val_records, eval_records, grid, known, k, max_new_tokens, dist, template,
                          sample_every, seed):
    """The temperature of `grid` at which the model's K samples are right most often on val (pass@1; `known`
    holds val_t<T>/accuracy for temperatures already sampled), then K samples on eval at that temperature:
    what "just lower the temperature" gives, at no training cost. -> (best T, metrics: best_t,
    val_best/accuracy, best/<key> on eval and val_t<T>/ of the newly sampled, the eval samples)."""
    def sample(records, t):  # K answers per prompt at temperature t, as evaluate() samples them
        out = [{} for _ in records]
        return out, sample_at(model, tok, records, out, k, t, max_new_tokens, 256, dist, template, sample_every, seed)

    new = {f"val_{key}": v for t in grid if f"val_t{t:g}/accuracy" not in known
           for key, v in sample(val_records, t)[1].items()}
    val_acc = {t: {**known, **new}.get(f"val_t{t:g}/accuracy", float("-inf")) for t in grid}
    best = max(grid, key=lambda t: val_acc[t])
    out, found = sample(eval_records, best)
    new.update({"best_t": best, "val_best/accuracy": val_acc[best],
                **{f"best/{key.split('/', 1)[1]}": v for key, v in found.items()}})
    return best, new, out


def outcome_lines(records, samples):
    """What each prompt got, one dict per prompt in order, for a prompt-by-prompt comparison of two
    evaluations (model/stats.py): its index, family, right (1/0, None without a checker), answer length in
    characters, pipe leak (None where a table answer may hold pipes), EOS; and per sampled temperature the
    same for each of the K samples."""
    def one(s, pipes_ok):
        return {"right": None if s["right"] is None else int(s["right"]), "len": len(s["response"]),
                "pipe": None if pipes_ok else int("|" in s["response"]), "eos": int(bool(s["ended"]))}

    lines = []
    for i, (r, s) in enumerate(zip(records, samples)):
        pipes_ok = pipes_allowed(r)
        line = {"i": i, "task": r.get("task"), **(one(s, pipes_ok) if "response" in s else {})}
        for key, row in s.get("sampled", {}).items():
            per = [one(a, pipes_ok) for a in row]
            line[key] = {field: [p[field] for p in per] for field in ("right", "len", "pipe", "eos")}
        lines.append(line)
    return lines


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
