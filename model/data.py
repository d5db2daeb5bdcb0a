"""
Instruction data: reading JSONL, the one chat template, and (prompt, response) -> training tensors.

Accepted records, one JSON object per line:
  {"prompt": ..., "response": ..., ["task": ..., "answer": ...]}        (our generator's format)
  {"messages": [{"role": "user", "content": ...}, {"role": "assistant", "content": ...}]}  (TRL, SPIN repo)
Records without a `task` are scored on loss and pipe metrics only.

The template lives in format_prompt() and nowhere else: SFT, evaluation, SPIN and T-SPIN all call it,
so the model is never trained with one template and asked with another (a wart of the official SPIN code)
unless a run asks for it by name: --template instruction queries a chat-trained model the way the T-SPIN
paper queried its theta_0 (the `template` scenario of experiments/regimes.py).
"""

import json
import os
from pathlib import Path

import torch


class DataError(ValueError):
    """Malformed input data; the message names the file and the line."""


def _normalize(obj, where):
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    if "messages" in obj:
        msgs = obj["messages"]
        if not isinstance(msgs, list) or not all(isinstance(m, dict) for m in msgs):
            raise DataError(f"{where}: 'messages' must be a list of {{'role', 'content'}} objects")
        roles = [m.get("role") for m in msgs]
        if "user" not in roles or "assistant" not in roles[roles.index("user"):]:
            raise DataError(f"{where}: 'messages' needs a user turn followed by an assistant turn")
        u = roles.index("user")
        a = roles.index("assistant", u)
        prompt, response = msgs[u].get("content"), msgs[a].get("content")
        obj = {k: v for k, v in obj.items() if k != "messages"}
    else:
        missing = [k for k in ("prompt", "response") if k not in obj]
        if missing:
            raise DataError(f"{where}: missing field(s) {missing}; need 'prompt' and 'response', or 'messages'")
        prompt, response = obj["prompt"], obj["response"]
    if not isinstance(prompt, str) or not isinstance(response, str) or not prompt:
        raise DataError(f"{where}: prompt and response must be strings, and the prompt non-empty")
    return {**obj, "prompt": prompt, "response": response}


def atomic_write(path, write):
    """The one atomic write: `write(f)` fills a temporary file beside `path` (opened in binary mode), then
    a rename puts it in place, so a reader never sees a half-written file, even after a kill -9."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        write(f)
    os.replace(tmp, path)


def read_json_lines(path, torn_tail_ok=False, numbered=False):
    """The one JSONL reader: a list of the JSON values of the non-blank lines (with numbered, of
    (line number, value) pairs). A malformed line raises DataError naming file and line; with
    torn_tail_ok, an unparsable *last* line (a log cut by a crash in mid-write) is dropped instead."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except UnicodeDecodeError as e:
        raise DataError(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})") from None
    out = []
    nonblank = [(n, line) for n, line in enumerate(lines, 1) if line.strip()]
    for k, (lineno, line) in enumerate(nonblank):
        try:
            out.append((lineno, json.loads(line)) if numbered else json.loads(line))
        except json.JSONDecodeError as e:
            if torn_tail_ok and k == len(nonblank) - 1:
                break
            raise DataError(f"{path}:{lineno}: invalid JSON ({e.msg} at column {e.colno})") from None
    return out


def read_jsonl(path):
    """Read instruction records; a malformed line raises DataError naming file and line number."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such file (run `make data` to generate the default data)")
    records = [_normalize(obj, f"{path}:{n}") for n, obj in read_json_lines(path, numbered=True)]
    if not records:
        raise DataError(f"{path}: no records")
    return records


def write_jsonl(path, records):
    """Write one JSON object per line, atomically."""
    atomic_write(path, lambda f: f.writelines((json.dumps(r, ensure_ascii=False) + "\n").encode() for r in records))


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
    """Right-padded inputs x, targets y and loss mask m, each (B, T).

    m[b, t] = 1 exactly where y[b, t] is a response token (the EOS included): the model is trained on
    its answer, never on the prompt or the padding.
    """
    seqs = [p + r for p, r in zip(prompts, responses)]
    T = max(len(s) for s in seqs) - 1
    x = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    y = torch.full((len(seqs), T), pad_id, dtype=torch.long)
    m = torch.zeros(len(seqs), T)
    for b, (s, p) in enumerate(zip(seqs, prompts)):
        n = len(s) - 1
        x[b, :n] = torch.tensor(s[:-1])
        y[b, :n] = torch.tensor(s[1:])
        m[b, len(p) - 1 : n] = 1.0  # y[t] = s[t+1]: the first response token is predicted at len(p) - 1
    return x, y, m


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
