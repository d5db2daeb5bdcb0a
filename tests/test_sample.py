"""sample.py on smoke checkpoints: prompts, a prompt file, --eval with the checkers' verdicts, two checkpoints
side by side, --chat driven through stdin, --seed, and its one-line errors.

The happy paths run in a subprocess, as a user runs them; the errors and the seed checks run the script
in-process (runpy), which costs no interpreter start. Expected answers come from the sampler and the
evaluation called directly, so a test fails if sample.py shows anything else than what the model says."""

import io
import re
import runpy
import sys
import unicodedata

import pytest
import torch
from conftest import ROOT, run_python, run_script

from data.tasks import has_pipe_leak
from model.checkpoint import load_checkpoint, model_from_checkpoint, save_checkpoint
from model.data import format_prompt
from model.evaluate import evaluate
from model.files import read_jsonl, write_jsonl
from model.sampler import generate
from model.tokenizer import Tokenizer


@pytest.fixture(scope="module")
def ckpts(sft_run, tmp_path_factory):
    """(sft run dir, a self-play-like iteration dir): the second holds the SFT weights plus noise, laid out as
    runs/tspin/iter0/ckpt.pt. The smoke SFT model answers '.' to everything; the noisy one rambles, with
    pipes, line breaks, answers cut without EOS and invalid UTF-8: what the printing must get right."""
    ckpt = load_checkpoint(sft_run / "ckpt.pt")
    g = torch.Generator().manual_seed(0)
    ckpt["model"] = {k: v + 0.3 * torch.randn(v.shape, generator=g) for k, v in ckpt["model"].items()}
    ckpt.update(kind="tspin", next_iter=1)
    it_dir = tmp_path_factory.mktemp("tspin") / "runs" / "tspin" / "iter0"
    save_checkpoint(it_dir / "ckpt.pt", ckpt)
    return sft_run, it_dir


def model_of(run_dir):
    ckpt = load_checkpoint(run_dir / "ckpt.pt")
    tok = Tokenizer.load(ckpt["tokenizer"]["path"])
    return model_from_checkpoint(ckpt, tok), tok


def expected_answers(run_dir, prompts, temperature=0.6, top_k=50, seed=1337, max_new=32, num_samples=1):
    """What the sampler says for these prompts -> [(text, ended)]; row k * len(prompts) + i is sample k of
    prompt i. max_new 32: the smoke runs' evaluation length, sample.py's default for them."""
    model, tok = model_of(run_dir)
    outs = generate(model, [format_prompt(tok, p) for p in prompts] * num_samples, max_new, temperature=temperature,
                    top_k=top_k, eos_id=tok.eos_id, seed=seed)
    return [(tok.decode(o[:-1]), True) if o[-1:] == [tok.eos_id] else (tok.decode(o), False) for o in outs]


def visible(text):
    """sample.py shows control characters (but line breaks and tabs) as Python escapes."""
    return "".join(c if c in "\n\t" or unicodedata.category(c) != "Cc" else repr(c)[1:-1] for c in text)


def printed(text, ended=True, pipe=False):
    """An answer as blocks() reads it back: the flags after the text, each line stripped."""
    text = visible(text) + " [pipe]" * pipe + " [cut: no EOS]" * (not ended)
    return "\n".join(line.strip() for line in text.split("\n")).strip()


def blocks(stdout):
    """{prompt: {name: printed answer}} from the printed blocks: '[i] prompt', then one entry per answer,
    '    name  [verdict] text [flags]', whose later lines (a table's) are indented further."""
    out = {}
    stdout = stdout.split("\n\naccuracy on these")[0].split("\n\ntable: ")[0]  # what follows the blocks
    for block in stdout.split("\n\n[")[1:]:
        head, *lines = block.split("\n")
        entries = out[head.split("] ", 1)[1]] = {}
        for line in lines:
            if line[4:5].strip():  # a new entry: its name starts at column 4
                name, _, rest = line.strip().partition("  ")
                entries[name] = rest.strip()
            elif entries and line.strip():
                entries[name] += "\n" + line.strip()
    return out


def run_sample(*args, cwd, stdin=None):
    """python sample.py args..., as a user runs it (conftest's run_script, with stdin)."""
    if stdin is None:
        return run_script("sample.py", *args, cwd=cwd)
    return run_python(ROOT / "sample.py", *args, cwd=cwd, stdin=stdin, check=False, timeout=300)


def sample_inprocess(monkeypatch, capsys, *args, stdin=None):
    """Run sample.py in this process -> (exit code, stdout, stderr)."""
    monkeypatch.setattr(sys, "argv", ["sample.py", *map(str, args)])
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.StringIO(stdin))
    code = 0
    try:
        runpy.run_path(str(ROOT / "sample.py"), run_name="__main__")
    except SystemExit as e:
        code = e.code
    out, err = capsys.readouterr()
    return code, out, err


def test_prompt_and_prompt_file_print_the_models_answers(ckpts, tmp_path):
    _, it_dir = ckpts
    (tmp_path / "prompts.txt").write_text("What is 2 plus 3?\n\nName the capital of Peru.\n")
    proc = run_sample(it_dir, "--prompt", "What is the capital of France?", "--prompt_file", tmp_path / "prompts.txt",
                      cwd=tmp_path)
    prompts = ["What is the capital of France?", "What is 2 plus 3?", "Name the capital of Peru."]
    shown = blocks(proc.stdout)
    assert list(shown) == prompts  # --prompt first, then the file's non-blank lines, in order
    for prompt, (text, ended) in zip(prompts, expected_answers(it_dir, prompts)):
        assert shown[prompt] == {str(it_dir): printed(text, ended)}


def test_eval_shows_the_evaluations_answers_verdicts_pipes_and_accuracy(ckpts, small_data, tmp_path):
    sft_dir, it_dir = ckpts
    proc = run_sample(sft_dir, it_dir, "--eval", 10, cwd=tmp_path)
    records = read_jsonl(small_data / "eval.jsonl")  # the data the checkpoint was trained with
    picked = [records[i * len(records) // 10] for i in range(10)]
    assert len({r["task"] for r in picked}) == 5  # evenly spaced over a file grouped by family
    shown = blocks(proc.stdout)
    assert list(shown) == [r["prompt"] for r in picked]
    accuracy = proc.stdout.split("accuracy on these 10 prompts")[1]
    flags_seen = set()
    for run_dir in (sft_dir, it_dir):
        model, tok = model_of(run_dir)
        metrics, samples = evaluate(model, tok, picked, torch.device("cpu"), 32)  # the smoke runs' eval length
        for r, s in zip(picked, samples):
            entries = shown[r["prompt"]]
            assert entries["reference"] == printed(r["response"])
            verdict, _, text = entries[str(run_dir)].partition(" ")
            assert verdict == {True: "ok", False: "WRONG", None: "-"}[s["right"]]
            assert text.strip() == printed(s["response"], s["ended"], has_pipe_leak(r, s["response"]))
            flags_seen |= {"pipe"} if has_pipe_leak(r, s["response"]) else set()
            flags_seen |= {"cut"} if not s["ended"] else set()
        line = next(x for x in accuracy.splitlines() if x.split()[:1] == [str(run_dir)])
        assert f"{metrics['accuracy']:.3f} ± {metrics['accuracy_se']:.3f}" in line
        assert f"pipe rate {metrics['pipe_rate']:.3f}" in line
    assert flags_seen == {"pipe", "cut"}  # the noisy checkpoint exercises both flags


def test_two_checkpoints_side_by_side_same_prompts_same_seed_and_markdown(ckpts, small_data, tmp_path):
    sft_dir, it_dir = ckpts
    records = read_jsonl(small_data / "eval.jsonl")[::40]
    write_jsonl(tmp_path / "p.jsonl", records)  # a JSONL prompt file: its 'prompt' fields are the prompts
    prompts = [r["prompt"] for r in records]
    proc = run_sample(sft_dir, it_dir, "--prompt_file", tmp_path / "p.jsonl", "--num_samples", 2, "--temperature", 1.0,
                      "--seed", 5, "--out", tmp_path / "t.md", cwd=tmp_path)
    shown = blocks(proc.stdout)
    assert list(shown) == prompts
    table = (tmp_path / "t.md").read_text().split("\n")  # lines end at \n only: a row is one line
    assert table[0].startswith(f"`python {ROOT / 'sample.py'} {sft_dir} ") and "seed 5" in table[0]  # the command
    assert table[2] == f"| prompt | {sft_dir} | {it_dir} |"
    rows = table[4:-1]
    assert len(rows) == 2 * len(prompts)
    answers = {d: expected_answers(d, prompts, temperature=1.0, seed=5, num_samples=2) for d in (sft_dir, it_dir)}
    for i, prompt in enumerate(prompts):
        for k in range(2):
            cells = [f"{prompt} (#{k + 1})"]
            for run_dir in (sft_dir, it_dir):
                text, ended = answers[run_dir][k * len(prompts) + i]
                assert shown[prompt][f"{run_dir} #{k + 1}"] == printed(text, ended)
                cells.append((visible(text).replace("|", "\\|").replace("\n", "<br>") or " ")
                             + " [cut: no EOS]" * (not ended))
            assert rows[2 * i + k] == "| " + " | ".join(cells) + " |"


def test_chat_streams_answers_from_stdin_and_exits_zero(ckpts, tmp_path):
    _, it_dir = ckpts
    stdin = "What is 2 plus 3?\n/reset\n/temp 0\nWhat is 2 plus 3?\n/quit\nNever answered.\n"
    proc = run_sample(it_dir, "--chat", cwd=tmp_path, stdin=stdin)
    assert proc.returncode == 0
    assert "single-turn" in proc.stdout and "nothing to reset" in proc.stdout and "(temperature 0.0)" in proc.stdout
    assert proc.stdout.count("model> ") == 2  # the line after /quit is not read
    turns = [line.removeprefix("model> ") for line in proc.stdout.split("\n") if line.startswith("model> ")]
    sampled = expected_answers(it_dir, ["What is 2 plus 3?"], seed=1337)  # turn 0: seed + 0, temperature 0.6
    greedy = expected_answers(it_dir, ["What is 2 plus 3?"], temperature=0.0, seed=1338)  # turn 1, after /temp 0
    # streamed token by token, decoded as bytes complete: the same text as the batched sampler's
    for turn, [(text, ended)] in zip(turns, [sampled, greedy]):
        assert turn.startswith(visible(text).split("\n")[0])
        assert turn.endswith("" if ended else " [cut at 32 tokens]")
    assert "you> Never answered." not in proc.stdout


def test_same_seed_same_text_other_seed_other_text(ckpts, tmp_path, monkeypatch, capsys):
    _, it_dir = ckpts
    monkeypatch.chdir(tmp_path)
    args = [it_dir, "--prompt", "What is 7 plus 8?", "--prompt", "Spell cat.", "--temperature", 1.5, "--num_samples", 2]
    runs = [sample_inprocess(monkeypatch, capsys, *args, "--seed", s) for s in (11, 11, 12)]
    assert [code for code, _, _ in runs] == [0, 0, 0]
    assert runs[0][1] == runs[1][1]
    assert blocks(runs[0][1]) != blocks(runs[2][1])


def test_eval_can_score_sampled_answers_as_the_evaluation_does(ckpts, small_data, tmp_path, monkeypatch, capsys):
    """--eval N --temperature T --num_samples K: the greedy answer and K samples per prompt, pass@1 and pass@K
    equal to what evaluate() gives those prompts at T with the same seed."""
    _, it_dir = ckpts
    monkeypatch.chdir(tmp_path)
    code, out, _ = sample_inprocess(monkeypatch, capsys, it_dir, "--eval", 6, "--temperature", 1.0, "--num_samples", 3,
                                    "--seed", 4)
    assert code == 0
    records = read_jsonl(small_data / "eval.jsonl")
    picked = [records[i * len(records) // 6] for i in range(6)]
    model, tok = model_of(it_dir)
    m, _ = evaluate(model, tok, picked, torch.device("cpu"), 32, samples=3, temperatures=[1.0], seed=4)
    assert f"at T=1: pass@1 {m['t1/accuracy']:.3f}, pass@3 {m['t1/pass@3']:.3f}" in out
    assert out.count(f"{it_dir} T=1 #3") == 6 and out.count(f"{it_dir} greedy") == 6


def test_errors_are_one_line(ckpts, tmp_path, monkeypatch, capsys):
    sft_dir, _ = ckpts
    monkeypatch.chdir(tmp_path)
    (tmp_path / "notes.pt").write_text("not a checkpoint\n")
    torch.save({"weight": torch.zeros(2)}, tmp_path / "foreign.pt")
    (tmp_path / "empty.txt").write_text("\n  \n")
    (tmp_path / "emptyrun").mkdir()
    cases = {
        "no such run": [tmp_path / "runs" / "nope", "--prompt", "hi"],
        "notes.pt is not a readable checkpoint": [tmp_path / "notes.pt", "--prompt", "hi"],
        "foreign.pt is not a checkpoint of this project": [tmp_path / "foreign.pt", "--prompt", "hi"],
        "no ckpt.pt": [tmp_path / "emptyrun", "--prompt", "hi"],
        "no prompts": [sft_dir, "--prompt_file", tmp_path / "empty.txt"],
        "no such file": [sft_dir, "--eval", 3, "--eval_data", tmp_path / "missing.jsonl"],
        "give one of": [sft_dir],
        "give --temperature T > 0 too": [sft_dir, "--eval", 3, "--num_samples", 2],
        "as the evaluation does (no top-k": [sft_dir, "--eval", 3, "--top_k", 5],
        "invalid int value": [sft_dir, "--eval", "abc"],
    }
    for needle, args in cases.items():
        code, out, err = sample_inprocess(monkeypatch, capsys, *args)
        assert code not in (0, None), needle
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], (needle, err)


def test_every_flag_has_a_help_line(monkeypatch, capsys):
    code, out, _ = sample_inprocess(monkeypatch, capsys, "--help")
    assert code == 0
    entries = re.split(r"\n  (?=-)", out.split("options:\n")[1])[1:]  # one per flag, after -h
    flags = [e.split()[0] for e in entries]
    assert {"--prompt", "--prompt_file", "--eval", "--chat", "--temperature", "--top_k", "--top_p", "--max_new_tokens",
            "--num_samples", "--seed", "--device", "--out"} <= set(flags)
    for entry in entries:
        words = entry.split()
        metavar = 0 if entry.startswith("--chat") else 1  # a flag with a value shows its metavar first
        assert len(words) > 1 + metavar + 2, entry  # a few words of help after the flag
