"""
Talk to a checkpoint, or to several side by side: your prompts, N prompts of the eval split with the
checkers' verdicts, or a chat with the answer streamed as it is sampled.

    python sample.py runs/tspin --prompt "What is the capital of France?"
    python sample.py runs/sft runs/tspin/iter0 runs/tspin --eval 20 --out answers.md
    python sample.py runs/tspin --eval 100 --temperature 0.6 --num_samples 4   # greedy and pass@1 at 0.6
    python sample.py runs/sft --chat

A run directory means its latest checkpoint (runs/<name>/ckpt.pt); runs/tspin/iter1 is the model after
self-play iteration 1. Several checkpoints answer the same prompts with the same seed. Sampling defaults
are nanochat's chat_cli's (temperature 0.6, top-k 50); --eval answers through the evaluation's own code
(greedy, and sampled as it samples), so its numbers are a run's evaluation's on the same prompts.
"""

import argparse
import codecs
import json
import math
import shlex
import sys
import unicodedata
from pathlib import Path

from data.tasks import has_pipe_leak
from model.checkpoint import load_checkpoint, model_from_checkpoint
from model.cli import check_device, check_rules, die
from model.data import format_prompt
from model.device import pick_device
from model.evaluate import evaluate
from model.files import DataError, read_jsonl
from model.flags import RULES
from model.sampler import generate, stream
from model.tokenizer import Tokenizer

parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].strip(), allow_abbrev=False,
                                 formatter_class=lambda prog: argparse.HelpFormatter(prog, max_help_position=30))
parser.add_argument("checkpoints", nargs="+", metavar="RUN_OR_CKPT",
                    help="run directories (their latest ckpt.pt, e.g. runs/sft, runs/tspin/iter1) or ckpt.pt files")
parser.add_argument("--prompt", metavar="TEXT", action="append", default=[], help="a prompt to answer (repeat the flag for more)")
parser.add_argument("--prompt_file", metavar="FILE", default="", help="prompts, one per line, or JSONL records with a 'prompt' field")
parser.add_argument("--eval", type=int, default=0, metavar="N",
                    help="answer N prompts spread over the eval split and score them: greedy, and with --temperature "
                         "T > 0 also --num_samples answers each at T (pass@1 and pass@k, as the evaluation samples)")
parser.add_argument("--eval_data", metavar="FILE", default="",
                    help="the eval split for --eval (default: the one the first checkpoint was trained with)")
parser.add_argument("--chat", action="store_true", help="interactive chat, answers streamed; /temp x, /reset, /quit")
parser.add_argument("--temperature", metavar="T", type=float, default=None,
                    help="sampling temperature, 0 is greedy (default 0.6; --eval: greedy, plus sampled at T if given)")
parser.add_argument("--top_k", metavar="K", type=int, default=50, help="sample among the k most likely tokens only (0: all)")
parser.add_argument("--top_p", metavar="P", type=float, default=None, help="nucleus: the fewest tokens holding this much probability (1: off)")
parser.add_argument("--max_new_tokens", metavar="N", type=int, default=0,
                    help="longest answer in tokens (default: the checkpoint's evaluation length, 96 unless changed)")
parser.add_argument("--num_samples", metavar="N", type=int, default=1, help="answers per prompt, each from its own random stream")
parser.add_argument("--seed", metavar="N", type=int, default=1337, help="random seed: the same seed gives the same text on CPU")
parser.add_argument("--device", metavar="DEV", default="auto", help="auto, cpu, cuda or mps")
parser.add_argument("--out", metavar="FILE", default="", help="also write the answers as a markdown table to this file (e.g. answers.md)")
parser.error = die  # a bad flag is one line too, like every other error here (--help shows the usage)
args = parser.parse_args()

# -----------------------------------------------------------------------------------------------------
# what to do: check every value and the combination of flags before loading anything (one line, exit 2)
UNSET = (None, "", [])  # a flag left at its default: nothing to check
check_rules({k: v for k, v in vars(args).items() if v not in UNSET}, {
    "eval": (lambda v: v >= 0, "a number of prompts >= 0"),
    "temperature": (lambda v: math.isfinite(v) and v >= 0, "a temperature >= 0 (0: greedy)"),
    "top_k": (lambda v: v >= 0, "an integer >= 0 (0: all tokens)"),
    "top_p": RULES["top_p"],
    "max_new_tokens": (lambda v: v >= 0, "a number of tokens >= 0 (0: the checkpoint's evaluation length)"),
    "num_samples": (lambda v: v >= 1, "an integer >= 1"),
    "seed": RULES["seed"],
    "device": RULES["device"],
    "prompt": (lambda v: all(p.strip() for p in v), "a non-empty prompt"),
    "out": (lambda v: not Path(v).is_dir() and not Path(v).parent.is_file(), "a file to write, not a directory"),
})
check_device(args.device)
asked = [name for name, on in [("--prompt/--prompt_file", args.prompt or args.prompt_file), ("--eval", args.eval),
                               ("--chat", args.chat)] if on]
if len(asked) != 1:
    die("give one of --prompt/--prompt_file, --eval N or --chat" + (f" (got {' and '.join(asked)})" if asked else ""))
top_k_typed = any(a == "--top_k" or a.startswith("--top_k=") for a in sys.argv[1:])
if args.eval and args.num_samples > 1 and args.temperature in (None, 0.0):
    die("--eval --num_samples K samples at a temperature: give --temperature T > 0 too (greedy needs one answer)")
if args.eval and (top_k_typed or args.top_p is not None):
    die("--eval samples as the evaluation does (no top-k, no top-p): drop --top_k and --top_p")
if args.eval_data and not args.eval:
    die("--eval_data is the eval split of --eval N: give --eval too, or drop it")
if args.chat and (len(args.checkpoints) > 1 or args.out or args.num_samples > 1):
    die("--chat talks to one checkpoint, one answer at a time, and writes no table (use --prompt with several "
        "checkpoints, --num_samples and --out)")
temperature = 0.6 if args.temperature is None else args.temperature
top_k = args.top_k or None
top_p = 1.0 if args.top_p is None else args.top_p
device = pick_device(args.device)


def load(arg):
    """A run directory or a checkpoint file -> (checkpoint dict, model on the device, tokenizer); one-line
    errors for what a user can get wrong: a path that is not there, a file that is not one of our checkpoints."""
    path = Path(arg)
    if path.is_dir():
        path = path / "ckpt.pt"
        if not path.exists():
            die(f"{arg}: no ckpt.pt in this directory (not a run, or its first checkpoint is not written yet)")
    elif not path.exists():
        die(f"{arg}: no such run directory or checkpoint file")
    try:
        ckpt = load_checkpoint(path)  # refuses, in one line, what is not a torch file or not one of ours
    except (FileNotFoundError, RuntimeError) as e:
        die(str(e))
    if not isinstance(ckpt.get("tokenizer"), dict):
        die(f"{arg}: not a checkpoint of this project (it does not name its tokenizer)")
    try:
        tok = Tokenizer.load(ckpt["tokenizer"]["path"])  # a path relative to where the run was trained
    except (OSError, ValueError) as e:
        die(f"{arg}: {str(e).splitlines()[0]}")
    try:
        model = model_from_checkpoint(ckpt, tok, path)
    except ValueError as e:
        die(str(e).splitlines()[0])
    return ckpt, model.to(device), tok


def visible(text):
    """Control characters as escapes (\\x1b, \\r): a rambling model samples raw bytes, which would move the
    terminal's cursor or break a markdown row. Line breaks and tabs stay."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else repr(c)[1:-1] for c in text)


def describe(arg, ckpt):
    """runs/tspin/iter0: tspin checkpoint, step 8, after iteration 0"""
    after = "" if "next_iter" not in ckpt else ", theta_0 (before iteration 0)" if ckpt["next_iter"] == 0 else \
        f", after iteration {ckpt['next_iter'] - 1}"
    return f"{arg}: {ckpt['kind']} checkpoint, step {ckpt.get('step', '?')}{after}"


# a checkpoint is asked as its run trained and evaluated: in its prompt template (--template), and by default
# at its evaluation's answer length, so that --eval scores what the run scored
template = lambda ckpt: ckpt.get("config", {}).get("template", "chat")
max_new = lambda ckpt: args.max_new_tokens or ckpt.get("config", {}).get("max_new_tokens", 96)


labels = [arg.rstrip("/") for arg in args.checkpoints]
loaded = [load(arg) for arg in args.checkpoints]  # all of them first: a bad path fails before any work
for label, (ckpt, _, _) in zip(labels, loaded):
    print(describe(label, ckpt))

# -----------------------------------------------------------------------------------------------------
# --chat: one prompt at a time, each token printed as soon as its bytes make whole characters
if args.chat:
    ckpt, model, tok = loaded[0]
    print(f"temperature {temperature}, top_k {args.top_k}, top_p {top_p}, seed {args.seed}. "
          "The chat template is single-turn (<|user|> prompt <|assistant|>): each message is answered on its "
          "own, the model does not see the conversation. Commands: /temp x, /reset, /quit.", flush=True)
    turn = 0
    while True:
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            print()
            break
        if not sys.stdin.isatty():
            print(line)  # piped input is not echoed by the terminal: echo it so the transcript reads as a chat
        if not line:
            continue
        if line in ("/quit", "/exit"):
            break
        if line == "/reset":
            print("(nothing to reset: the template is single-turn, so no history is kept)")
            continue
        if line.startswith("/temp"):
            try:
                value = float(line[len("/temp"):])
            except ValueError:
                value = -1.0
            if value >= 0:  # also refuses nan
                temperature = value
                print(f"(temperature {temperature})")
            else:
                print("(usage: /temp 0.8, a temperature >= 0; 0 is greedy)")
            continue
        if line.startswith("/"):
            print("(commands: /temp x, /reset, /quit)")
            continue
        ids = format_prompt(tok, line, template(ckpt))
        room = min(max_new(ckpt), model.config.block_size - len(ids))
        if room < 1:
            print(f"(that prompt is {len(ids)} tokens: longer than the model's context of {model.config.block_size})")
            continue
        decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")  # a character can span tokens
        print("model> ", end="", flush=True)
        ended = False
        # seed + turn: a question asked twice gets two samples, and the same session replays the same text
        try:
            for t in stream(model, ids, room, temperature, top_k, top_p, tok.eos_id, args.seed + turn):
                if t == tok.eos_id:
                    ended = True
                    break
                print(visible(decoder.decode(tok.token_bytes(t))), end="", flush=True)
        except KeyboardInterrupt:  # Ctrl-C stops this answer, not the chat
            print(" [stopped]")
            continue
        finally:
            turn += 1
        print(visible(decoder.decode(b"", final=True)) + ("" if ended else f" [cut at {room} tokens]"), flush=True)
    sys.exit(0)

# -----------------------------------------------------------------------------------------------------
# the questions: your prompts, or N prompts of the eval split
records = None
if args.eval:
    cfg = loaded[0][0].get("config", {})  # the data the first checkpoint was trained with
    eval_path = args.eval_data or cfg.get("eval_data") or Path(cfg.get("data_dir", "data/generated")) / "eval.jsonl"
    try:
        all_records = read_jsonl(eval_path)
    except DataError as e:
        die(str(e))
    # eval.jsonl is grouped by family: N prompts evenly spaced over it cover every family, deterministically
    n = min(args.eval, len(all_records))
    records = [all_records[i * len(all_records) // n] for i in range(n)]
    prompts = [r["prompt"] for r in records]
    print(f"{n} of the {len(all_records)} prompts of {eval_path}, evenly spaced; greedy, as the evaluation")
else:
    prompts = list(args.prompt)
    if args.prompt_file:
        path = Path(args.prompt_file)
        if not path.is_file():
            die(f"{path}: no such prompt file")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            die(f"{path}: not UTF-8 text ({e.reason} at byte {e.start})")
        lines = [(n, line.strip()) for n, line in enumerate(text.splitlines(), 1) if line.strip()]
        if not lines:
            die(f"{path}: no prompts in this file (one per line, or JSONL with a 'prompt' field)")
        if lines[0][1].startswith("{"):  # JSONL, like data/generated/eval.jsonl
            for n, line in lines:
                try:
                    prompt = json.loads(line).get("prompt")
                except (json.JSONDecodeError, AttributeError):
                    prompt = None
                if not isinstance(prompt, str) or not prompt.strip():
                    die(f"{path}:{n}: not a JSON object with a non-empty 'prompt' string")
                prompts.append(prompt)
        else:
            prompts += [line for _, line in lines]
    if not all(p.strip() for p in prompts):
        die("--prompt is empty")
    print(f"temperature {temperature}, top_k {args.top_k}, top_p {top_p}, seed {args.seed}, "
          f"{args.num_samples} sample(s) per prompt")

# -----------------------------------------------------------------------------------------------------
# every checkpoint answers the same questions with the same seed
answers = {}  # label -> one list per prompt of {text, ended, [right, pipe]}
metrics = {}  # label -> the evaluation's metrics (--eval)
for label, (ckpt, model, tok) in zip(labels, loaded):
    if records is not None:
        # the evaluation itself, on these prompts: the same answers, verdicts and accuracy as a run's eval
        sampled = dict(samples=args.num_samples, temperatures=[args.temperature], seed=args.seed) \
            if args.temperature not in (None, 0.0) else {}
        metrics[label], samples = evaluate(model, tok, records, device, max_new(ckpt), template=template(ckpt), **sampled)
        answers[label] = [[{"text": a["response"], "ended": a["ended"], "right": a["right"],
                            "pipe": has_pipe_leak(r, a["response"])}
                           for a in [s, *next(iter(s.get("sampled", {}).values()), [])]] for r, s in zip(records, samples)]
        continue
    # the sampler directly, not model.evaluate.answer(): answer() takes no top_k, and chat_cli's top-k 50 is ours
    ids = [format_prompt(tok, p, template(ckpt)) for p in prompts]
    room = model.config.block_size - max(len(i) for i in ids)
    if room < 1:
        die(f"a prompt of {max(len(i) for i in ids)} tokens does not fit the context ({model.config.block_size})")
    # sample k of prompt i is row k * len(prompts) + i: its own random stream, the same for every checkpoint
    outs = generate(model, ids * args.num_samples, min(max_new(ckpt), room), temperature=temperature, top_k=top_k,
                    top_p=top_p, eos_id=tok.eos_id, seed=args.seed)
    rows = [{"text": tok.decode(o[:-1] if o[-1:] == [tok.eos_id] else o), "ended": o[-1:] == [tok.eos_id]}
            for o in outs]
    answers[label] = [rows[i::len(prompts)] for i in range(len(prompts))]

# -----------------------------------------------------------------------------------------------------
# print: one block per prompt, every checkpoint's answer under it
names = labels + (["reference"] if records is not None else [])
width = max(len(name) for name in names) + (12 if args.num_samples > 1 else 0)  # room for " T=0.6 #k"
mark = {True: "ok", False: "WRONG", None: "-"}


def flags(a):
    return (" [pipe]" if a.get("pipe") else "") + ("" if a["ended"] else " [cut: no EOS]")


def show(name, text, verdict=""):
    """    name    verdict text, with a table's later lines indented under its first"""
    head = f"    {name:<{width}}  {verdict}"
    print(head + visible(text).replace("\n", "\n" + " " * len(head)))


def answer_name(label, k, n):
    """'sft', 'sft #2'; under --eval with sampling, answer 0 is the greedy one: 'sft greedy', 'sft T=0.6 #1'."""
    evaluated = records is not None and n > 1
    return f"{label} {'greedy' if k == 0 else f'T={args.temperature:g} #{k}'}" if evaluated else \
        label + (f" #{k + 1}" if n > 1 else "")


for i, prompt in enumerate(prompts):
    print(f"\n[{i + 1}] {prompt}")
    if records is not None:
        show("reference", records[i]["response"], " " * 6)
    for label in labels:
        for k, a in enumerate(answers[label][i]):
            name = answer_name(label, k, len(answers[label][i]))
            show(name, a["text"] + flags(a), f"{mark[a['right']]:<6}" if records is not None else "")
if records is not None:
    print(f"\naccuracy on these {len(records)} prompts (the evaluation's checkers):")
    for label in labels:
        m, right = metrics[label], sum(a[0]["right"] is True for a in answers[label])
        acc = f"{m['accuracy']:.3f} ± {m['accuracy_se']:.3f} ({right}/{len(records)} right)" \
            if "accuracy" in m else "no checkable records"
        key = f"t{args.temperature:g}" if args.temperature else None
        at_t = f"; at T={args.temperature:g}: pass@1 {m[key + '/accuracy']:.3f}, pass@{args.num_samples} " \
               f"{m[f'{key}/pass@{args.num_samples}']:.3f}" if key and f"{key}/accuracy" in m else ""
        show(label, f"{acc}, pipe rate {m['pipe_rate']:.3f} (greedy){at_t}")

# -----------------------------------------------------------------------------------------------------
# --out: one markdown table, ready to paste into a blog post
if args.out:
    def cell(text):
        return visible(text).replace("|", "\\|").replace("\n", "<br>") or " "

    header = ["prompt"] + (["reference"] if records is not None else []) + labels
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for i, prompt in enumerate(prompts):
        for k in range(len(answers[labels[0]][i])):
            row = [cell(prompt) + (f" ({answer_name('', k, len(answers[labels[0]][i])).strip()})"
                                   if len(answers[labels[0]][i]) > 1 else "")]
            if records is not None:
                row.append(cell(records[i]["response"]))
            for label in labels:
                a = answers[label][i][k]
                verdict = {True: "✓ ", False: "✗ ", None: ""}[a.get("right")]
                row.append(verdict + cell(a["text"]) + flags(a))
            lines.append("| " + " | ".join(row) + " |")
    if records is not None:
        lines.append("| **accuracy** | | " + " | ".join(
            f"**{metrics[label]['accuracy']:.3f}**" if "accuracy" in metrics[label] else "–" for label in labels) + " |")
    setting = ("greedy, as the evaluation" + (f", and {args.num_samples} samples at T={args.temperature:g}"
                                              if args.temperature else "")) if records is not None else \
        f"temperature {temperature}, top_k {args.top_k}, top_p {top_p}, seed {args.seed}"
    command = shlex.join(["python", *sys.argv])
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(f"`{command}` ({setting})\n\n" + "\n".join(lines) + "\n", encoding="utf-8")
    print(f"\ntable: {out}")
