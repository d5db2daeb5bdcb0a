"""
The paper experiment's design: which runs, with which flags, in which order, and what they cost.
experiments/paper.py runs this plan; experiments/report.py reads what it produced.

Four scenarios, each reproducible by name (here with --scenario, in the regime map of experiments/regimes.py
all four), per seed and each from the same theta_0:
- plateau (default, the T-SPIN paper's design): theta_0 = SFT on 100% of train until its validation
  plateau (the paper's Zephyr-7B-SFT, fine-tuned on all 200k UltraChat examples); self-play on the 25%
  subset (the paper's 50k).
- scarce: theta_0 = SFT on the 25% subset only, so self-play sees no data that theta_0 did not.
- undertrained: theta_0 = SFT on 100%, stopped after a tenth of plateau's steps.
- template: plateau's theta_0 (chat template), then self-play, its baselines and the evaluation in the
  instruction template (--template instruction): the T-SPIN paper's situation.
From theta_0: SPIN, T-SPIN and T-SPIN without the historical term (--b 0) on 25%, iterations 0..4;
continued SFT on 100% for 2 epochs (the paper's SFT-200k row); continued SFT on 25% for exactly T-SPIN's
optimizer steps and about its tokens (equal compute).
"""

import ast
import json
import statistics
from pathlib import Path
from types import SimpleNamespace

from model.files import read_jsonl, write_jsonl
from model.tokenizer import Tokenizer

ROOT = Path(__file__).resolve().parents[1]


def script_defaults(path):
    """The literal values of a training script's `defaults = dict(...)`, read without running the script
    (train_sft.py trains on import). Keys whose value is not a literal (a name such as RUNS_DIR, a
    **splat) are left out: the experiment only needs the numbers."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "defaults" for t in node.targets)
                and isinstance(node.value, ast.Call)):
            out = {}
            for kw in node.value.keywords:
                if kw.arg is None:
                    continue
                try:
                    out[kw.arg] = ast.literal_eval(kw.value)
                except ValueError:
                    continue
            return out
    raise ValueError(f"{path}: no `defaults = dict(...)` at the top level")


# the three scripts' defaults, read the same way (without importing torch: the reports import this module)
SFT_DEFAULTS = script_defaults(ROOT / "train_sft.py")
SPIN_DEFAULTS = script_defaults(ROOT / "train_spin.py")
TSPIN_DEFAULTS = script_defaults(ROOT / "train_tspin.py")

# theta_0 must be trained to its plateau, or continued SFT wins by just finishing the job. Its step count is
# chosen on a validation split, never on the eval split that the report's table reads.
# plateau (100% of train): on data/generated/val.jsonl (500 prompts, 100 per family, none in train or eval;
# se ~2.1), train_sft.py --subset 100 --seed 0, one run per step count: final val accuracy 32.4% after 2400
# steps (val loss 1.007), 31.6% after 4000 (0.797), 39.2% after 6000 (0.748) -> 6000, the best of the three;
# val loss was still falling, so the true plateau may lie further out (not measured: 3 runs at most).
# scarce (25% subset): on a validation split of another generator seed (563 prompts, se ~1.9): final accuracy
# 23.6% after 2400 steps, 29.3% after 4000, 28.8% after 4800 -> 4000.
# undertrained: SFT stopped after a tenth of plateau's steps, on purpose (a scenario, not a choice).
# template: plateau's theta_0 (trained and evaluated with the chat template), then self-play, its baselines
# and the evaluation all in the instruction template: the T-SPIN paper queried its chat-tuned Zephyr-7B-SFT
# with an Alpaca-style "### Instruction:" prompt, so part of any gain there may be adapting to the template.
THETA0_STEPS = {"undertrained": 600, "plateau": 6000, "scarce": 4000, "template": 6000}
SCENARIOS = {
    "plateau": dict(theta0_subset=100, template="chat", what="the paper's design: theta_0 has seen all of train"),
    "scarce": dict(theta0_subset=25, template="chat", what="theta_0 has seen only the self-play subset"),
    "undertrained": dict(theta0_subset=100, template="chat", what="theta_0 = SFT on 100%, stopped early"),
    "template": dict(theta0_subset=100, template="instruction",
                     what="plateau's theta_0, then self-play and eval in another prompt template"),
}
# Self-play epochs per iteration. The paper uses 2; with 2 the full run takes ~65 min on 2 cores, over the
# 45-minute budget, so the default is 1 (the same number of iterations, half the steps in each).
SELFPLAY_EPOCHS = 1
# Every run is evaluated on every EVAL_EVERY-th prompt of the eval split (eval.jsonl is grouped by family, so
# every family keeps its share: 160 of 320 each with 2). With the full 1600 prompts the plateau scenario's
# theta_0 at 6000 steps puts the plan at ~46 min; halving the eval (run se ~1.2 -> ~1.7 points) brings it
# back under 45. --eval_every 1 evaluates on all of it.
EVAL_EVERY = 2
BUDGET_S = 45 * 60

# the runs of one seed: (script, what it is). All start from theta_0; the equal-compute SFT baseline reads
# T-SPIN's step and token counts, so it comes after T-SPIN.
RUNS = {
    "theta0": ("train_sft.py", "theta_0: SFT on {theta0_subset}% of train, {theta0_steps} steps"),
    "sft100": ("train_sft.py", "from theta_0: SFT on 100% of train, 2 epochs (the paper's SFT-200k)"),
    "spin": ("train_spin.py", "from theta_0: SPIN on the 25% subset"),
    "tspin": ("train_tspin.py", "from theta_0: T-SPIN on the 25% subset"),
    "tspin_nohist": ("train_tspin.py", "from theta_0: T-SPIN without the historical term (--b 0)"),
    "sft25eq": ("train_sft.py", "from theta_0: SFT on 25%, T-SPIN's steps and about its tokens"),
}
NEEDS = {"theta0": (), "sft100": ("theta0",), "spin": ("theta0",), "tspin": ("theta0",),
         "tspin_nohist": ("theta0",), "sft25eq": ("tspin",)}
# ready runs start longest first, so that the short ones fill the gaps at the end
PRIORITY = ("theta0", "tspin", "spin", "tspin_nohist", "sft25eq", "sft100")
SFT_ROWS = ("theta0", "sft100", "sft25eq")
SELFPLAY = ("spin", "tspin", "tspin_nohist")
LABEL = {"theta0": "SFT theta_0", "sft100": "SFT 100%, 2 epochs", "sft25eq": "SFT 25%, equal compute",
         "spin": "SPIN", "tspin": "T-SPIN", "tspin_nohist": "T-SPIN w/o history"}

# For the ETA only: seconds of one run alone on 2 otherwise idle CPU cores, measured on this sandbox's
# machine with the haiku model: an SFT step of 32 length-bucketed examples ~0.06 s (whatever the subset: the
# 25% subset is a prefix of the shuffled train split, so its examples are as long); a self-play step of 64
# length-bucketed pairs ~0.22 s, of 64 triplets ~0.40 s; sampling, reference log-probs and eval per sequence;
# eval_sample: one of K sampled evaluation answers (one prefill per prompt; 400 plateau prompts x 4 in 3.0 s
# on a loaded machine, /tmp-style timing of model.sampler.generate_k).
COST = dict(sft_example=0.06 / 32, pair=0.22 / 64, triplet=0.40 / 64, sample=0.0014, ref_logp=0.0007,
            eval_prompt=0.0021, eval_sample=0.0012, start=5.0, smoke_run=12.0)
# Two runs side by side, one thread each, do 1.23x the work of one run on both cores (measured with two
# T-SPIN iterations: 93 s together vs 57 s each alone): a model this small does not keep 2 threads busy.
PARALLEL_GAIN = {1: 1.0, 2: 1.23}
TSPIN_TOKENS_PER_SFT_TOKEN = 2.8  # a T-SPIN example's tokens over an SFT example's, measured; for the ETA only


def run_dir(out, seed, method):
    return Path(out) / f"s{seed}" / method


def read_summary(out, seed, method):
    return json.loads((run_dir(out, seed, method) / "summary.json").read_text())


# -----------------------------------------------------------------------------------------------------
# each run's flags: only what the experiment fixes; everything else stays the scripts' default


def flags(args, seed, method):
    """A flag typed wins over a script's --smoke sizes: at smoke size the sizes are left to the script
    (sft25eq keeps T-SPIN's step count, which the smoke sizes make small)."""
    theta0 = run_dir(args.out, seed, "theta0") / "ckpt.pt"
    out = ["--out_dir", args.out / f"s{seed}", "--name", method, "--seed", seed, "--data_dir", args.data_dir,
           "--eval_data", eval_path(args)]
    out += ["--smoke"] if args.smoke else []

    def sizes(*flags):
        return [] if args.smoke else list(flags)

    if method == "theta0":  # always in the chat template; the template scenario changes it after theta_0
        return out + ["--subset", SCENARIOS[args.scenario]["theta0_subset"], *sizes("--max_steps", args.theta0_steps)]
    out += ["--template", SCENARIOS[args.scenario]["template"]]
    if method == "sft100":
        return out + ["--init", theta0, "--subset", 100, *sizes("--max_steps", two_epochs(args))]
    if method in SELFPLAY:
        # --baseline false: the scripts' built-in continued-SFT baseline would repeat the sft25eq row here
        out += ["--init", theta0, "--subset", 25, *sizes("--iters", args.iters, "--epochs", args.selfplay_epochs),
                "--baseline", "false"]
        return out + (["--b", 0] if method == "tspin_nohist" else [])
    if method == "sft25eq":
        match = equal_compute(read_summary(args.out, seed, "tspin"), args.data_dir)
        return out + ["--init", theta0, "--subset", 25, "--max_steps", match["steps"],
                      *sizes("--batch_size", match["batch_size"])]
    raise ValueError(method)


def eval_path(args):
    """The eval prompts every run answers: the eval split, or every --eval_every-th of them."""
    return args.data_dir / "eval.jsonl" if args.eval_every == 1 else args.out / f"eval_every{args.eval_every}.jsonl"


def write_eval(args):
    """Writes the eval subset that eval_path() names (nothing to write for the whole split)."""
    if args.eval_every > 1:
        write_jsonl(eval_path(args), read_jsonl(args.data_dir / "eval.jsonl")[::args.eval_every])


def two_epochs(args):
    """2 epochs of the full train split at train_sft.py's batch size (it drops the last partial batch,
    hence the floor). Not passed under --smoke: the script's smoke sizes decide."""
    return 2 * (len(read_jsonl(args.data_dir / "train.jsonl")) // SFT_DEFAULTS["batch_size"])


def equal_compute(tspin_summary, data_dir):
    """SFT on 25% for exactly T-SPIN's optimizer steps, with the batch size that makes its tokens (prompt +
    real answer per example) about T-SPIN's: batch = tokens / (steps * mean example length). T-SPIN's
    tokens are those it put through the model with gradients, as it counted them (prompt + answer per
    stacked sequence, no padding; y0 left out where b = 0)."""
    from model.data import format_prompt, format_response  # here: the rest of plan stays free of torch

    steps, tokens = tspin_summary["steps"], tspin_summary["tokens_seen"]
    tok = Tokenizer.load(Path(data_dir) / "tokenizer")
    records = read_jsonl(Path(data_dir) / "train_25.jsonl")
    mean_len = statistics.fmean(len(format_prompt(tok, r["prompt"])) + len(format_response(tok, r["response"]))
                                for r in records)
    batch = max(1, round(tokens / (max(1, steps) * mean_len)))
    return dict(steps=steps, batch_size=batch, tspin_tokens=tokens, sft_example_tokens=mean_len)


# -----------------------------------------------------------------------------------------------------
# the plan and its ETA


def sft_cost(steps, batch, n_eval):
    """Seconds of a train_sft.py run alone (see COST): its steps, its intermediate and final evaluations."""
    evals = n_eval + SFT_DEFAULTS["eval_subset"] * ((steps - 1) // SFT_DEFAULTS["eval_interval"])
    return COST["start"] + steps * batch * COST["sft_example"] + evals * COST["eval_prompt"]


def estimate_s(args, method, n25, n100, n_eval):
    """A cost model of one run alone (see COST); it ignores the machine's other load."""
    if args.smoke:
        return COST["smoke_run"]
    b, sp_b = SFT_DEFAULTS["batch_size"], TSPIN_DEFAULTS["batch_size"]
    selfplay_steps = args.iters * args.selfplay_epochs * (n25 // sp_b)

    if method == "theta0":
        return sft_cost(args.theta0_steps, b, n_eval)
    if method == "sft100":
        return sft_cost(2 * (n100 // b), b, n_eval)
    if method == "sft25eq":
        return sft_cost(selfplay_steps, round(sp_b * TSPIN_TOKENS_PER_SFT_TOKEN), n_eval)  # see equal_compute()
    # T-SPIN stacks y0 only where b > 0: from iteration 1 on, and never without the historical term
    triplet_iters = max(0, args.iters - 1) if method == "tspin" else 0
    per_example = (triplet_iters * COST["triplet"] + (args.iters - triplet_iters) * COST["pair"]) / args.iters
    per_iter = n25 * COST["sample"] + n_eval * COST["eval_prompt"]
    per_iter += 2 * n25 * COST["ref_logp"] if method == "spin" else 0  # SPIN's reference model, once per iteration
    proto = 0 if method == "spin" else n25 * COST["sample"]  # T-SPIN's y0, sampled once
    return COST["start"] + n_eval * COST["eval_prompt"] + proto + args.iters * per_iter + selfplay_steps * sp_b * per_example


def stale(args, seed, method):
    """Why a finished run cannot be reused for this plan (None if it can): a run made at another size,
    seed or subset would otherwise be skipped silently, e.g. a smoke run in the full experiment's folder."""
    path = run_dir(args.out, seed, method) / "summary.json"
    if not path.exists():
        return None
    cfg = read_summary(args.out, seed, method)["config"]
    want = dict(smoke=args.smoke, seed=seed, eval_data=str(eval_path(args)),
                subset=SCENARIOS[args.scenario]["theta0_subset"] if method == "theta0" else 100 if method == "sft100" else 25)
    if method == "theta0" and not args.smoke:  # (--smoke caps the steps) plateau and undertrained differ here
        want["max_steps"] = args.theta0_steps
    if method != "theta0":  # plateau and template differ here
        want["template"] = SCENARIOS[args.scenario]["template"]
    cfg.setdefault("template", "chat")  # runs made before --template existed
    bad = [f"{k}={cfg.get(k)!r}, not {v!r}" for k, v in want.items() if cfg.get(k) != v]
    return f"{path.parent} was made with {', '.join(bad)}" if bad else None


def make_plan(args):
    n25, n100, n_eval = (len(read_jsonl(args.data_dir / f)) for f in ("train_25.jsonl", "train.jsonl", "eval.jsonl"))
    n_eval = len(range(0, n_eval, args.eval_every))
    problems = [p for s in args.seeds for m in RUNS if (p := stale(args, s, m))]
    if problems:
        raise SystemExit("finished runs of another experiment are in the way (use another --out):\n  "
                         + "\n  ".join(problems))
    return [SimpleNamespace(seed=s, method=m, est=estimate_s(args, m, n25, n100, n_eval),
                            done=(run_dir(args.out, s, m) / "summary.json").exists())
            for s in args.seeds for m in RUNS]


def describe(args, method):
    return RUNS[method][1].format(theta0_steps=args.theta0_steps, **SCENARIOS[args.scenario])


def print_plan(args, plan):
    sizes = ("smoke size: the scripts cap iterations, epochs, steps and data" if args.smoke
             else f"self-play iterations 0..{args.iters - 1} x {args.selfplay_epochs} epoch(s)")
    print(f"paper, scenario {args.scenario} ({SCENARIOS[args.scenario]['what']}): seeds {args.seeds}, {sizes}, "
          f"data {args.data_dir}, out {args.out}")
    for r in plan:
        state = "done, skipped" if r.done else f"~{r.est / 60:4.1f} min"
        print(f"  seed {r.seed}  {r.method:<13} {RUNS[r.method][0]:<15} {describe(args, r.method)}  [{state}]")
    gain = PARALLEL_GAIN.get(args.jobs, PARALLEL_GAIN[2])
    todo = sum(r.est for r in plan if not r.done) / gain
    full = sum(r.est for r in plan) / gain
    print(f"ETA: {todo / 60:.0f} min to run ({full / 60:.0f} min for the whole plan; budget {BUDGET_S // 60} min), "
          f"from a cost model of 2 idle CPU cores, {args.jobs} run(s) at a time", flush=True)
    if not args.smoke and full > BUDGET_S:
        print(f"warning: the plan is over the {BUDGET_S // 60}-minute budget; --selfplay_epochs, --iters and --seeds "
              f"make it smaller", flush=True)


# -----------------------------------------------------------------------------------------------------
# the regime map's design (experiments/regimes.py runs it, experiments/regimes_report.py reads it): every
# scenario above x {continued SFT, SPIN, T-SPIN} x a small grid, over several seeds

# The settings of the map (method, flags). The second map (issue 26) runs, per scenario, the setting val chose
# there in the first map (2 seeds, greedy, every 2nd eval prompt; its grid: SPIN and T-SPIN at lr 1e-5 and
# 1e-4, remedies nll 1.0 and drop_identical at 1e-4, continued SFT at 1e-4, 3e-4, 1e-3): the union of those
# choices over all scenarios is 5 settings, which at 4 + 4 + 3 + 3 seeds and K = 4 samples at two
# temperatures on all 2100 eval + val prompts does not fit 2 hours on 2 cores; so settings were cut (never
# seeds): each scenario runs its own SPIN choice and its own T-SPIN choice, the latter carrying the
# equal-compute continued-SFT baseline at the lr val chose for it there.
SETTINGS = {
    "spin_lr1e-5": ("SPIN", dict(lr=1e-5)),
    "spin_lr1e-4": ("SPIN", dict(lr=1e-4)),
    "spin_lr1e-4_nll": ("SPIN", dict(lr=1e-4, nll=1.0)),
    "spin_lr1e-4_drop": ("SPIN", dict(lr=1e-4, drop_identical=True)),
    "tspin_lr1e-5": ("T-SPIN", dict(lr=1e-5)),
    "tspin_lr1e-4": ("T-SPIN", dict(lr=1e-4)),
    "tspin_lr1e-4_nll": ("T-SPIN", dict(lr=1e-4, nll=1.0)),
    "tspin_lr1e-4_drop": ("T-SPIN", dict(lr=1e-4, drop_identical=True)),
}
# per scenario: {setting: the flags it adds there}; baseline_lr: this run also trains the continued-SFT
# baseline at that lr (the first map's val choice: 1e-4 in plateau, 1e-3 elsewhere)
REGIMES_GRID = {
    "plateau": {"spin_lr1e-4_nll": {}, "tspin_lr1e-4": dict(baseline_lr=1e-4)},
    "scarce": {"spin_lr1e-4_nll": {}, "tspin_lr1e-4_drop": dict(baseline_lr=1e-3)},
    "undertrained": {"spin_lr1e-5": {}, "tspin_lr1e-4_nll": dict(baseline_lr=1e-3)},
    "template": {"spin_lr1e-4_nll": {}, "tspin_lr1e-4_nll": dict(baseline_lr=1e-3)},
}
REGIMES_SEEDS = {"plateau": 4, "template": 4, "scarce": 3, "undertrained": 3}  # seeds 0..n-1
SMOKE_SCENARIOS = ("template",)  # trains plateau's theta_0 and starts from it in the other template
SMOKE_SETTINGS = tuple(REGIMES_GRID["template"])  # the smoke map's runs: both methods, a remedy and a baseline
SCRIPT = {"SPIN": "train_spin.py", "T-SPIN": "train_tspin.py"}
REGIMES_ITERS, REGIMES_EPOCHS = 2, 1  # iterations 0 and 1 (T-SPIN's historical term is on from 1), one pass each
# every run answers all 1600 eval prompts and all 500 val prompts, greedy and K = 4 samples at 0.6 and 1.0
REGIMES_SAMPLING = dict(eval_samples=4, eval_temperatures="0.6,1.0", eval_sample_every=1)


def theta0_of(scenario):
    """The scenario whose theta_0 this one starts from: template uses plateau's."""
    return "plateau" if scenario == "template" else scenario


def regimes_estimate_s(args, method, setting=None, scenario=None):
    """Seconds of one run alone on 2 idle cores, from the cost model above: its training, and every
    evaluation (theta_0's and one per iteration, the baseline's too) of eval + val, greedy and sampled."""
    if args.smoke:
        return COST["smoke_run"]
    n25, n_eval, n_val = args.sizes
    if method == "theta0":
        return sft_cost(THETA0_STEPS[scenario], SFT_DEFAULTS["batch_size"], n_eval)
    kind = SETTINGS[setting][0]
    extra = REGIMES_GRID[scenario][setting]
    samples = REGIMES_SAMPLING["eval_samples"] * len(REGIMES_SAMPLING["eval_temperatures"].split(","))
    one_eval = (n_eval + n_val) * (COST["eval_prompt"] + samples * COST["eval_sample"])
    evals = (REGIMES_ITERS + 1) * one_eval
    per_iter = n25 * COST["sample"] + REGIMES_EPOCHS * n25 * (COST["pair"] + (COST["triplet"] - COST["pair"]) / 2 * (kind == "T-SPIN"))
    per_iter += 2 * n25 * COST["ref_logp"] * (kind == "SPIN")
    baseline = REGIMES_ITERS * (REGIMES_EPOCHS * n25 * COST["sft_example"] * 2 + one_eval) if "baseline_lr" in extra else 0
    best_t = (3 * n_val + n_eval) * REGIMES_SAMPLING["eval_samples"] * COST["eval_sample"] if "baseline_lr" in extra else 0
    return COST["start"] + evals + n25 * COST["sample"] * (kind == "T-SPIN") + REGIMES_ITERS * per_iter + baseline + best_t
