"""The documents against the code, in well under a second: no torch, no training (`make docs`).

- README.md stays a ten-minute read (at most MAX_README_LINES lines);
- every relative link in README.md and docs/*.md points to a file that exists (and to a heading there);
- every number the prose quotes from the code agrees with the code: CLAIMS is a table of (file, regex
  capturing the number(s) in that file, the code's value(s)); a document that quotes a default gets a row;
- the README's flag table and the `--help` blocks of docs/reference.md list every flag with its default;
- the `make tspin` table in the README is the one in docs/results.md, and every accuracy the documents
  give for the default SFT run is that table's theta_0 row.

Code values are read with ast or a regex from the source (importing the training scripts would train, and
model/ imports torch). The last tests feed each checker a wrong document, so every check is seen to fail.
"""

import ast
import functools
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MAX_README_LINES = 260
SCRIPTS = ("train_sft.py", "train_spin.py", "train_tspin.py")


def read(rel):
    return (ROOT / rel).read_text(encoding="utf-8")


def doc_files():
    return [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


# -----------------------------------------------------------------------------------------------------
# the code's values, read without importing it

NOT_LITERAL = object()  # a default that is neither a literal nor a constant of model/: never quoted


def _dict_assignments(path):
    """(name, call) of every top-level `NAME = dict(...)` in a source file."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if (isinstance(node, ast.Assign) and isinstance(node.value, ast.Call)
                and isinstance(node.value.func, ast.Name) and node.value.func.id == "dict"):
            for target in node.targets:
                if isinstance(target, ast.Name):
                    yield target.id, node.value


def _keywords(call, where):
    out = {}
    for kw in call.keywords:
        if kw.arg is None:  # **SELFPLAY_DEFAULTS, **RUN_DEFAULTS: wherever in model/ they live
            assert isinstance(kw.value, ast.Name), f"{where}: a ** splat that is not a name"
            out.update(model_dict(kw.value.id))
            continue
        try:
            out[kw.arg] = ast.literal_eval(kw.value)
        except ValueError:
            out[kw.arg] = model_constant(kw.value.id) if isinstance(kw.value, ast.Name) else NOT_LITERAL
    return out


def assigned(path, name):
    """The value node of a top-level `name = ...` in a source file, or None."""
    for node in ast.parse(Path(path).read_text(encoding="utf-8")).body:
        if isinstance(node, ast.Assign) and any(getattr(t, "id", None) == name for t in node.targets):
            return node.value
    return None


@functools.cache
def model_constant(name):
    """A top-level `NAME = <literal>` of model/ (RUNS_DIR), or NOT_LITERAL."""
    for path in sorted((ROOT / "model").rglob("*.py")):
        if (value := assigned(path, name)) is not None:
            try:
                return ast.literal_eval(value)
            except ValueError:
                return NOT_LITERAL
    return NOT_LITERAL


@functools.cache
def model_dict(name):
    """The `NAME = dict(...)` of model/, in whichever file the code keeps it."""
    for path in sorted((ROOT / "model").rglob("*.py")):
        for found, call in _dict_assignments(path):
            if found == name:
                return _keywords(call, path)
    raise AssertionError(f"no top-level `{name} = dict(...)` in model/")


@functools.cache
def defaults(script):
    """A training script's flags and defaults: its `defaults = dict(...)`, the ** splats expanded."""
    for found, call in _dict_assignments(ROOT / script):
        if found == "defaults":
            return _keywords(call, script)
    raise AssertionError(f"{script}: no top-level `defaults = dict(...)`")


def code_value(path, pattern, cast=float):
    """The one number a regex captures in a source file (for values that are not in a defaults dict)."""
    found = re.findall(pattern, read(path))
    assert len(found) == 1, f"{path}: {pattern!r} matched {len(found)} times, expected once"
    return cast(found[0])


def module_literal(path, name):
    value = assigned(ROOT / path, name)
    assert value is not None, f"{path}: no top-level {name}"
    return ast.literal_eval(value)


def sft(key):
    return lambda: defaults("train_sft.py")[key]


def spin(key):
    return lambda: defaults("train_spin.py")[key]


def tspin(key):
    return lambda: defaults("train_tspin.py")[key]


def b_schedule(i):
    """T-SPIN's b at iteration i (the schedule's last entry repeats)."""
    return lambda: float(str(defaults("train_tspin.py")["b"]).split(",")[i])


def vocab_size():
    """What `make data` trains: model/tokenizer.py's --vocab_size default."""
    return code_value("model/tokenizer.py", r'"--vocab_size", type=int, default=(\d+)', int)


def make_data_default(flag):
    return lambda: code_value("data/make_data.py", rf'"--{flag}", type=int, default=(\d+)', int)


def n_families():
    return sum(1 for p in (ROOT / "data/tasks").glob("*.py") if re.search(r'^NAME = "', p.read_text(), re.M))


def n_eval_prompts():
    return n_families() * make_data_default("n_eval_per_task")()


def theta0_steps(scenario):
    return lambda: module_literal("experiments/plan.py", "THETA0_STEPS")[scenario]


def tspin_steps_per_run():
    """Optimizer steps of `make tspin`'s self-play (and of its baseline): iters x epochs x batches."""
    d = defaults("train_tspin.py")
    n_prompts = make_data_default("n_train")() * d["subset"] // 100
    return d["iters"] * d["epochs"] * (n_prompts // d["batch_size"])


# -----------------------------------------------------------------------------------------------------
# the make tspin table: the source of every accuracy the documents give for today's default runs

def tspin_table(path):
    """The code block of `make tspin`'s printed table in a document (the one starting with its header)."""
    for block in re.findall(r"^```[^\n]*\n(.*?)^```", read(path), re.S | re.M):
        if block.startswith("model ") and "theta_0 (SFT)" in block:
            return block
    raise AssertionError(f"{path}: no `make tspin` table (a code block starting with its header)")


def table_accuracy(row_label, path="docs/results.md"):
    """A row's accuracy in percent, rounded as the prose writes it."""
    def value():
        rows = [ln.strip() for ln in tspin_table(path).splitlines() if ln.strip().startswith(row_label)]
        assert len(rows) == 1, f"{path}: {len(rows)} rows {row_label!r} in the make tspin table, expected 1"
        return round(100 * float(rows[0][len(row_label):].split()[0]), 1)
    return value


THETA0_ACCURACY = table_accuracy("theta_0 (SFT)")


# -----------------------------------------------------------------------------------------------------
# CLAIMS: (file, regex capturing the quoted number(s), the code's value(s)). A space in the regex matches
# any whitespace, line breaks included, so reflowing a paragraph does not break a row. Every row must
# match at least once, and every match must agree.

CLAIMS = [
    # README.md
    ("README.md", r"trains a (\d+)-token BPE tokenizer", vocab_size),
    ("README.md", r"1\.09M parameters with the (\d+)-token vocabulary", vocab_size),
    ("README.md", r"with SFT for (\d+) steps of batch (\d+)", (sft("max_steps"), sft("batch_size"))),
    ("README.md", r"then runs T-SPIN for (\d+) iterations", tspin("iters")),
    ("README.md", r"then (\d+) T-SPIN iterations beside their baseline", tspin("iters")),
    ("README.md", r"(?<!T-)SPIN, (\d+) iterations from runs/sft", spin("iters")),
    ("README.md", r"T-SPIN, (\d+) iterations from runs/sft", tspin("iters")),
    ("README.md", r"# lam = ([\d.]+)", spin("lam")),
    ("README.md", r"# a = ([\d.]+), b = ([\d.]+)", (tspin("a"), b_schedule(-1))),
    ("README.md", r"with b = ([\d.]+) at iteration 0", b_schedule(0)),
    ("README.md", r"the share of the (\d+) held-out eval prompts", n_eval_prompts),
    ("README.md", r"sampled at temperature ([\d.]+), top-k (\d+)",
     (lambda: code_value("sample.py", r"temperature = ([\d.]+) if args\.temperature is None"),
      lambda: code_value("sample.py", r'"--top_k".*?default=(\d+)', int))),
    # docs/results.md
    ("docs/results.md", r"SFT held-out accuracy \((\d+) prompts\)", n_eval_prompts),
    ("docs/results.md", r"T-SPIN (\d+) iterations with their baseline \d+ s \((\d+) \+ (\d+) steps\)",
     (tspin("iters"), tspin_steps_per_run, tspin_steps_per_run)),
    ("docs/results.md", r"continued SFT at (\S+) moves the weights four times as far as T-SPIN at ([\d.e-]+)",
     (tspin("baseline_lr"), tspin("lr"))),
    ("docs/results.md", r"T-SPIN drifts down from the SFT model \((\d+\.\d)% → (\d+\.\d)%\)",
     (THETA0_ACCURACY, table_accuracy("T-SPIN iter 2"))),
    ("docs/results.md", r"and continued SFT a little \((\d+\.\d)%\)", table_accuracy("continued SFT iter 2")),
    # docs/reference.md
    ("docs/reference.md", r"written every `--ckpt_seconds` \((\d+)\) of work", tspin("ckpt_seconds")),
    ("docs/reference.md", r"SFT's optimizer \(AdamW\) at `--baseline_lr` ([\d.e-]+),", tspin("baseline_lr")),
    ("docs/reference.md", r"Checkpoints are atomic and written every `--ckpt_seconds` \((\d+)\)",
     sft("ckpt_seconds")),
    ("docs/reference.md", r"`--out_dir` \(default `(\w+)`\)", sft("out_dir")),
    ("docs/reference.md", r"θ_0's (\d+) steps for `make paper`", theta0_steps("plateau")),
    ("docs/reference.md", r"The `undertrained` scenario's (\d+) steps", theta0_steps("undertrained")),
    ("docs/reference.md", r"The `scarce` scenario's (\d+) steps", theta0_steps("scarce")),
    ("docs/reference.md", r"sampled at temperature ([\d.]+), top-k (\d+)",
     (lambda: code_value("sample.py", r"temperature = ([\d.]+) if args\.temperature is None"),
      lambda: code_value("sample.py", r'"--top_k".*?default=(\d+)', int))),
    # docs/regimes.md
    ("docs/regimes.md", r"`plateau`: θ_0 = SFT on 100% of train for (\d+) steps", theta0_steps("plateau")),
    ("docs/regimes.md", r"`scarce`: θ_0 = SFT on the 25% subset only \((\d+) steps\)",
     theta0_steps("scarce")),
    ("docs/regimes.md", r"`undertrained`: θ_0 = SFT on 100%, stopped after (\d+) steps",
     theta0_steps("undertrained")),
    ("docs/regimes.md", r"(?<!T-)SPIN lr ([\d.e-]+) \(val", spin("lr")),
    ("docs/regimes.md", r"T-SPIN lr ([\d.e-]+) \(\d", tspin("lr")),
    ("docs/regimes.md", r"continued SFT `--baseline_lr` ([\d.e-]+) \(", tspin("baseline_lr")),
    # the source files' own prose (the issue's stale cases: 1500 steps, a 1024-token tokenizer)
    ("data/make_data.py", r"default(?: is)? (\d+) steps", sft("max_steps")),
    ("data/make_data.py", r"\[--n_train (\d+)\]", make_data_default("n_train")),
    ("data/make_data.py", r"\[--n_eval_per_task (\d+)\]", make_data_default("n_eval_per_task")),
    ("data/make_data.py", r"\[--n_val_per_task (\d+)\]", make_data_default("n_val_per_task")),
    ("data/tasks/capital.py", r"(\d+)-token BPE", vocab_size),
    # the default SFT run's accuracy, wherever a document names it (the sample section once said 35.1%
    # of "the `make sft` defaults" while the table said 40.1%)
    ("docs/results.md", r"today's `make sft` model reaches (\d+\.\d)%", THETA0_ACCURACY),
    ("docs/results.md", r"`make sft` \| (\d+\.\d)% ± ", THETA0_ACCURACY),
]

# an accuracy attributed to the default SFT run: optional (zero matches is fine), but each must agree
DEFAULT_RUN_ACCURACY = [
    r"\(the `make sft` defaults\)[^%]{0,160}?(\d+\.\d)%",
    r"`make sft` (?:model )?(?:reaches|gives|\|) (\d+\.\d)%",
    r"`python train_sft\.py` \(the `make sft` defaults\)[^%]{0,160}?(\d+\.\d)%",
]


def same(text, value):
    """A number as a document writes it (3e-3, 1e-5, 60, true) against the code's value."""
    if value is NOT_LITERAL:
        return False
    if isinstance(value, bool):
        return text.lower() == str(value).lower()
    try:
        return float(text) == float(value)
    except (TypeError, ValueError):
        return text == str(value)


def check_claim(text, pattern, expected, where="text"):
    """Problems (a list of strings, empty when the claim holds) with one CLAIMS row on a document's text."""
    expected = expected if isinstance(expected, tuple) else (expected,)
    want = [e() for e in expected]
    matches = list(re.finditer(pattern.replace(" ", r"\s+"), text))
    if not matches:
        return [f"{where}: nothing matches {pattern!r}: the statement moved or was reworded; update CLAIMS"]
    problems = []
    for m in matches:
        got = m.groups()
        assert len(got) == len(want), f"{pattern!r} captures {len(got)} values, CLAIMS gives {len(want)}"
        for g, w in zip(got, want):
            if not same(g, w):
                problems.append(f"{where}: {m.group(0)!r} says {g}, the code says {w}")
    return problems


def test_claims_agree_with_the_code():
    problems = []
    for path, pattern, expected in CLAIMS:
        problems += check_claim(read(path), pattern, expected, path)
    assert not problems, "\n".join(problems)


def check_default_run_accuracy(text, where="text"):
    want = THETA0_ACCURACY()
    problems = []
    for pattern in DEFAULT_RUN_ACCURACY:
        for m in re.finditer(pattern.replace(" ", r"\s+"), text):
            if float(m.group(1)) != want:
                problems.append(f"{where}: {m.group(0)!r}: the make tspin table's theta_0 is at {want}%")
    return problems


def test_the_default_runs_accuracy_is_the_tables():
    problems = []
    for path in doc_files():
        problems += check_default_run_accuracy(path.read_text(encoding="utf-8"), path.name)
    assert not problems, "\n".join(problems)


def test_an_older_runs_transcript_says_so():
    """The sample.py transcript in docs/results.md comes from a run whose accuracy its paragraph states; if
    that is not the default run's (the table's theta_0), the paragraph must say the run is an older one."""
    text = read("docs/results.md")
    para = re.search(r"^Real output, from (.*?)\n\n", text, re.S | re.M)
    assert para, "docs/results.md: no paragraph starting 'Real output, from' before the sample.py transcript"
    stated = re.search(r"ends at (\d+\.\d)% held-out accuracy", para.group(1).replace("\n", " "))
    assert stated, "the transcript's paragraph no longer says 'ends at N% held-out accuracy'"
    if float(stated.group(1)) != THETA0_ACCURACY():
        assert "**older**" in para.group(1), "a transcript of another run than the table's must say **older**"
    right, total = map(int, re.search(r"gives (\d+)/(\d+) =", para.group(1)).groups())
    assert total == n_eval_prompts() and round(100 * right / total, 1) == float(stated.group(1))


# -----------------------------------------------------------------------------------------------------
# flags: the README's table and docs/reference.md's --help blocks

SCRIPT_GROUPS = {"SFT": ("train_sft.py",), "SPIN": ("train_spin.py",), "T-SPIN": ("train_tspin.py",),
                 "self-play": ("train_spin.py", "train_tspin.py"), "all": SCRIPTS}


def check_flag_table(text):
    """The README's | flag | script | default | what | rows against the scripts' defaults."""
    rows = re.findall(r"^\| `--(\w+)` \| ([^|]+?) \| ([^|]+?) \|", text, re.M)
    if len(rows) < 10:
        return [f"the flag table has {len(rows)} rows `| --flag | script | default | what |`, expected >= 10"]
    problems = []
    for flag, group, default in rows:
        if group not in SCRIPT_GROUPS:
            problems.append(f"--{flag}: script column {group!r} is none of {sorted(SCRIPT_GROUPS)}")
            continue
        for script in SCRIPT_GROUPS[group]:
            d = defaults(script)
            if flag not in d:
                problems.append(f"--{flag}: {script} has no such flag")
            elif not same(default, d[flag]):
                problems.append(f"--{flag} ({script}): the table says {default}, the code says {d[flag]}")
    return problems


def test_readme_flag_table_matches_the_defaults():
    problems = check_flag_table(read("README.md"))
    assert not problems, "\n".join(problems)


def help_blocks(text):
    """{script: {flag: its help text on one line}} from docs/reference.md's `### `x.py --help`` sections."""
    out = {}
    for script, block in re.findall(r"^### `(\w+\.py) --help`\s*\n+```text\n(.*?)^```", text, re.S | re.M):
        entries, current = {}, None
        for line in block.split("options:", 1)[-1].splitlines():
            m = re.match(r"^  (--\w+)(?: [A-Z]+| \[BOOL\])?(?:\s{2,}(.*))?$", line)
            if m:
                current = m.group(1)[2:]
                entries[current] = m.group(2) or ""
            elif current and line.startswith(" " * 10):
                entries[current] += " " + line.strip()
        out[script] = entries
    return out


def check_help_blocks(text):
    blocks = help_blocks(text)
    problems = []
    for script in SCRIPTS:
        if script not in blocks:
            problems.append(f"no `### `{script} --help`` section with a ```text block")
            continue
        listed, code = blocks[script], defaults(script)
        problems += [f"{script}: --{k} is not in its --help block" for k in code if k not in listed]
        problems += [f"{script}: --{k} is listed, the script has no such flag" for k in listed
                     if k not in code]
        for key, value in code.items():
            if key not in listed or value is NOT_LITERAL or value == "":
                continue
            shown = re.findall(r"\(default: ([^()]*)\)$", listed[key])
            if not shown or shown[-1] != str(value):
                problems.append(f"{script} --{key}: reference says (default: {shown[-1] if shown else '?'}), "
                                f"the code says {value}")
    return problems


def test_reference_lists_every_flag_with_its_default():
    problems = check_help_blocks(read("docs/reference.md"))
    assert not problems, "\n".join(problems)


def test_the_readmes_make_tspin_table_is_the_results_one():
    assert tspin_table("README.md") == tspin_table("docs/results.md")


# -----------------------------------------------------------------------------------------------------
# length and links

def test_readme_is_a_ten_minute_read():
    n = len(read("README.md").splitlines())
    assert n <= MAX_README_LINES, f"README.md has {n} lines; at most {MAX_README_LINES}: move detail to docs/"


def strip_code(text, inline=False):
    """The text without fenced code blocks (a `# comment` there is no heading, `[x](y)` no link), and with
    inline=True without code spans either."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text) if inline else text


def slug(heading):
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def anchors(text):
    seen, out = {}, set()
    for heading in re.findall(r"^#{1,6} (.+)$", strip_code(text), re.M):
        s = slug(heading)
        out.add(s if s not in seen else f"{s}-{seen[s]}")
        seen[s] = seen.get(s, 0) + 1
    return out


def check_links(path, text):
    """Problems with the relative links of a markdown file: a missing file, or a missing heading."""
    problems = []
    for target in re.findall(r"\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)", strip_code(text, inline=True)):
        if re.match(r"[a-z][a-z0-9+.-]*:", target):  # https:, mailto:
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / file_part).resolve() if file_part else path
        if not dest.exists():
            problems.append(f"{path.name}: link to {target}: no such file")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest.read_text(encoding="utf-8")):
            problems.append(f"{path.name}: link to {target}: no such heading in {dest.name}")
    return problems


def test_every_relative_link_resolves():
    problems = []
    for path in doc_files():
        problems += check_links(path, path.read_text(encoding="utf-8"))
    assert not problems, "\n".join(problems)


def test_the_readme_links_every_doc():
    readme = read("README.md")
    missing = [p.name for p in (ROOT / "docs").glob("*.md") if f"](docs/{p.name})" not in readme]
    assert not missing, f"README.md does not link {missing}"


# -----------------------------------------------------------------------------------------------------
# every checker fails on a wrong document (so a passing run means something)

def test_the_checkers_catch_wrong_documents():
    # the three stale cases, as they were
    assert check_claim("at the\ndefault 1500 steps (~4 CPU minutes)", r"default(?: is)? (\d+) steps",
                       sft("max_steps"))
    assert check_claim("(the tokenizer is a 1024-token BPE trained on this data)", r"(\d+)-token BPE",
                       vocab_size)
    old_sample = ("Real output, from the checkpoint `python train_sft.py` (the `make sft` defaults) wrote on "
                  "the 2-core CPU\nmachine this project is developed on (35.1% held-out accuracy on all 1600 "
                  "eval prompts):")
    assert check_default_run_accuracy(old_sample)
    # a claim that no longer matches, a wrong default, a wrong pair
    assert check_claim("nothing here", r"for (\d+) steps", sft("max_steps"))
    assert check_claim("with SFT for 2400 steps of\nbatch 16", r"with SFT for (\d+) steps of batch (\d+)",
                       (sft("max_steps"), sft("batch_size")))
    assert not same("1e-4", 1e-5) and not same("true", False) and not same("runs", NOT_LITERAL)
    # the flag table: a wrong default, an unknown flag, a table gone
    table = read("README.md")
    assert check_flag_table(table.replace("| `--max_steps` | SFT | 2400 |", "| `--max_steps` | SFT | 1500 |"))
    assert check_flag_table(table.replace("| `--max_steps` | SFT |", "| `--max_stepz` | SFT |"))
    assert check_flag_table("no table")
    # the --help blocks: a flag missing, a wrong default
    ref = read("docs/reference.md")
    assert check_help_blocks(ref.replace("(default: 2400)", "(default: 1500)"))
    assert check_help_blocks(re.sub(r"^  --max_steps INT.*\n", "", ref, flags=re.M))
    # links: a missing file, a missing heading
    assert check_links(ROOT / "README.md", "[x](docs/no_such_file.md)")
    assert check_links(ROOT / "README.md", "[x](docs/results.md#no-such-heading)")
    assert not check_links(ROOT / "README.md", "[x](https://example.com/missing) `[y](z)`\n```\n[a](b)\n```")
