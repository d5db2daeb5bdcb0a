"""
Instruction data as the model sees it: which files a run reads, the one prompt template, and
(prompt, response) -> token ids -> training tensors and batches. Reading the files: model/files.py.

The template lives in format_prompt() and nowhere else: SFT, evaluation, SPIN and T-SPIN all call it,
so the model is never trained with one template and asked with another (a wart of the official SPIN code)
unless a run asks for it by name: --template instruction queries a chat-trained model the way the T-SPIN
paper queried its theta_0 (the `template` scenario of experiments/regimes.py).
"""

from pathlib import Path

import torch

from model.files import DataError


def data_paths(cfg):
    """(train file, eval file) of a run: --data / --eval_data if given, else the generated split in
    --data_dir (train.jsonl, or the nested train_<subset>.jsonl) and its eval.jsonl."""
    data_dir = Path(cfg.data_dir)
    train = cfg.data or data_dir / ("train.jsonl" if cfg.subset == 100 else f"train_{cfg.subset}.jsonl")
    return Path(train), Path(cfg.eval_data or data_dir / "eval.jsonl")


# ----------------------------------------------------------------------------------------------------
# The one place a prompt becomes tokens

# chat: our own, with the tokenizer's special tokens (every script's default). instruction: the Alpaca-style
# plain-text template ("### Instruction:" ... "### Response:") that the T-SPIN paper sampled its theta_0 with.
TEMPLATES = ("chat", "instruction")


def format_prompt(tok, prompt, template="chat"):
    """The model's input before its answer. chat: <|user|> prompt <|assistant|>. Used for training and
    generation alike; `template` is a run's --template."""
    if template == "chat":
        return [tok.user_id] + tok.encode(prompt) + [tok.assistant_id]
    if template == "instruction":
        return tok.encode(f"### Instruction:\n{prompt}\n\n### Response:\n")
    raise ValueError(f"unknown template {template!r}: expected one of {', '.join(TEMPLATES)}")


def format_response(tok, response):
    """The response tokens the model is trained on: the text, then the EOS (which is part of the answer)."""
    return tok.encode(response) + [tok.eos_id]


def fit_to_context(tok, records, block_size, template="chat"):
    """What the model can take, encoded: -> (records kept, prompt ids, response ids, note). A prompt that
    leaves no room for an answer in the context is skipped; an answer that does not fit is cut so that
    prompt + response fit (inputs are the sequence minus its last token, so block_size + 1 tokens fit).
    note: one line counting both, for the script to print once, or None when everything fits."""
    kept, prompts, responses, cut = [], [], [], 0
    for r in records:
        p, y = format_prompt(tok, r["prompt"], template), format_response(tok, r["response"])
        if len(p) >= block_size:
            continue
        cut += len(p) + len(y) > block_size + 1
        kept.append(r)
        prompts.append(p)
        responses.append(y[: block_size + 1 - len(p)])
    skipped = len(records) - len(kept)
    note = "; ".join(([f"skipped {skipped} of {len(records)} examples whose prompt does not fit the context "
                       f"({block_size} tokens)"] if skipped else [])
                     + ([f"cut {cut} answers to fit it"] if cut else []))
    return kept, prompts, responses, note or None


def encode_records(tok, records, block_size, template="chat"):
    """-> (prompt ids, response ids) per record, answers cut to fit the context as in fit_to_context; a
    prompt that does not fit is an error here (the scripts drop those first, with fit_to_context)."""
    kept, prompts, responses, _ = fit_to_context(tok, records, block_size, template)
    if len(kept) < len(records):
        r = next(r for r in records if len(format_prompt(tok, r["prompt"], template)) >= block_size)
        raise DataError(f"a prompt of {len(format_prompt(tok, r['prompt'], template))} tokens does not fit the context "
                        f"({block_size}): {r['prompt'][:60]!r}")
    return prompts, responses


def collate(prompts, responses, pad_id):
    """Right-padded inputs x, next-token targets and loss mask m, each (B, T).

    m[b, t] = 1 exactly where targets[b, t] is a response token (the EOS included): the model is trained
    on its answer, never on the prompt or the padding. (`targets`, not `y`: y is the real answer.)
    """
    seqs = [p + r for p, r in zip(prompts, responses)]
    T = max(len(s) for s in seqs) - 1
    x = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    targets = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    m = torch.zeros(len(seqs), T)
    for b, (s, p) in enumerate(zip(seqs, prompts)):
        n = len(s) - 1
        x[b, :n] = torch.tensor(s[:-1])
        targets[b, :n] = torch.tensor(s[1:])
        m[b, len(p) - 1 : n] = 1.0  # targets[t] = s[t+1]: the first response token is predicted at len(p) - 1
    return x, targets, m


def sorted_batches(lengths, batch_size):
    """Batches of indices in order of length, for passes that do not train (evaluation, reference
    log-probs): nothing to shuffle, and like lengths share a batch, so there is little padding."""
    order = sorted(range(len(lengths)), key=lengths.__getitem__)
    return [order[i : i + batch_size] for i in range(0, len(order), batch_size)]


def batches(n, batch_size, seed, epoch, lengths=None, drop_last=True):
    """Shuffled global batches of indices for one epoch, a pure function of (seed, epoch): resuming
    needs no RNG state, and every rank of a distributed run sees the same global batches.

    With `lengths`, examples of similar length share a batch (shuffle, sort within windows of 16
    batches, shuffle the batches): our answers run from 5 to 100 tokens, and random batches would be
    padded to their longest member, about 3x the work."""
    g = torch.Generator().manual_seed(seed * 1000 + epoch)
    order = torch.randperm(n, generator=g).tolist()
    if lengths is not None:
        window = batch_size * 16
        order = [i for w in range(0, n, window) for i in sorted(order[w : w + window], key=lambda i: lengths[i])]
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and len(out) > 1 and len(out[-1]) < batch_size:
        out.pop()
    if lengths is not None:
        out = [out[i] for i in torch.randperm(len(out), generator=g).tolist()]
    return out
