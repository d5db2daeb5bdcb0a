"""
Generate the instruction data: five checkable task families, a train split, nested train subsets, an
eval split whose prompts never occur in train, and a validation split whose prompts occur in neither.

    python -m data.make_data --out data/generated [--seed 0] [--n_train 20000] [--n_eval_per_task 320]
                             [--n_val_per_task 100]

Writes JSONL records {"prompt", "response", "task", "sub", "answer"}: `task` names the family in
data/tasks/ whose checker scores `answer`, `sub` is a free-form tag of the variant and difficulty (for
breakdowns; nothing keys on it). Files: train.jsonl, train_50.jsonl, train_25.jsonl (prefixes of the one
shuffled train order, so 25 within 50 within 100), eval.jsonl (n_eval_per_task per family, grouped by
family), val.jsonl (up to n_val_per_task per family, grouped by family). Everything is drawn from
random.Random seeded by (seed, family, split), so a seed gives byte-identical files.

Validation vs eval: every choice of steps, learning rate, b or lambda is made on val.jsonl; eval.jsonl only
reports. Val is drawn after train and eval, from its own random streams, by eval's rules applied to what
eval left of each held-out pool: its prompts are never in train, never in eval, never twice, and its facts
or combinations are held out of train the same way. Adding it moves nothing: train and eval are
byte-identical with or without val (n_val_per_task=0). Per family at the defaults (320 eval, 100 val):
  capital  100: held-out templates x countries that eval did not ask (70 forward, 30 reverse, like eval).
  fish     100: held-out templates x fish that eval did not ask (40 habitat, 40 diet, 20 both, like eval).
  table    100: item combinations seen in neither train nor eval.
  arith    100: triples seen in neither train (nor its sums tables) nor eval (nor its sums tables). But the
           50 one-digit triples reserved out of train are all used by eval, so val has no 1d level: val
           arith is eval's 2d1d..3d3d mix only (eval: 50 of 320 are 1d), and its accuracy reads lower.
  word     100: eval's half of "unseen" (word, op) combinations uses up all 126 held-out combinations
           (it even repeats 34 in other phrasings), so val word is all "_newphrase" (combinations train
           saw, in held-out phrasings, never an eval prompt); eval word is half that, half "_unseen".
  With a smaller eval (as in the tests) what eval leaves of the 1d triples and the held-out word
  combinations goes to val first, in eval's proportions. A family whose held-out pool eval has used up
  gets fewer than n_val_per_task val prompts: the capital pools hold 500 forward and 300 reverse prompts,
  the fish pools 232 habitat, 232 diet and 174 both, eval's included (at --n_eval_per_task 580, val fish
  has 20).
So compare settings within val, not val's numbers with eval's: the arith and word columns measure a
subset of what eval measures.

Each family's facts, templates, difficulty range and split rule are described in its module in
data/tasks/ (capital, arith, word, fish, table); this file mixes them and enforces the splits.

Train mix: arith 24%, word 22%, capital, fish and table 18% each. Facts (capitals, fish, word
combinations) are cycled through in reshuffled passes, so even the 25% subset sees nearly all of them.
Records are short: at most ~300 characters (about 100 BPE tokens), most 10-40 words.

Calibration (an earlier train_sft.py, 1M model, greedy eval, words capped at 7 letters in these trials;
today's train_sft.py's default is 2400 steps, and the model, tokenizer and data have changed since): at
--max_steps 1500 (then the default, ~4 CPU minutes) three trials gave 17-20% overall (capital 25-45%,
fish 25-50%, word ~8%, arith ~5%, table ~2%), with run-to-run noise larger than the effect of the knobs
below; at --max_steps 4500 it gave 35% overall: capital 62% (forward 67, reverse 52), table 37% (fish
tables 50-80, capitals 31, sums and lengths ~0), word 31% (spell 42, count 49, reverse 6), fish 29%
(diet 40, habitat 31, both 3), arith 17% (1d 52, 2d1d 18, 2d2d and up 0).
Knobs: TRAIN_MIX below; in the family modules ARITH_LEVELS weights, ARITH_NEGATIVE_SHARE, WORD_MAX_LEN,
WORD_HELDOUT_SHARE, WORD_EVAL_UNSEEN_SHARE, CAPITAL_EVAL_REVERSE_SHARE, FISH_EVAL_SHARE, TABLE_KINDS
(weights, max rows).
"""

import argparse
import random
from pathlib import Path

from data.tasks import FAMILIES
from data.tasks.arith import ARITH_1D_RESERVED_SHARE, LEVEL_WEIGHTS, arith_record, draw_triple
from data.tasks.capital import (
    CAPITAL_EVAL_REVERSE_SHARE,
    CAPITAL_FWD_EVAL,
    CAPITAL_FWD_TRAIN,
    CAPITAL_REV_EVAL,
    CAPITAL_REV_TRAIN,
    CAPITALS,
    capital_record,
)
from data.tasks.fish import FISH, FISH_EVAL_SHARE, FISH_PROMPTS_EVAL, FISH_PROMPTS_TRAIN, fish_record
from data.tasks.table import TABLE_KINDS, table_record
from data.tasks.word import (
    WORD_EVAL_UNSEEN_SHARE,
    WORD_HELDOUT_SHARE,
    WORD_OPS,
    WORD_PROMPTS_EVAL,
    WORD_PROMPTS_TRAIN,
    WORDS,
    word_record,
)
from model.files import write_jsonl

TRAIN_MIX = {"arith": 0.24, "word": 0.22, "capital": 0.18, "fish": 0.18, "table": 0.18}


# ---------------------------------------------------------------------------------------------------
# Helpers


def _rng(seed, *names):
    # str seeds go through sha512: deterministic across processes, unlike hash()
    return random.Random(f"{seed}/" + "/".join(names))


def _cycle(rng, items, n):
    """n items: passes over items, reshuffled each pass (even coverage of the facts)."""
    out = []
    while len(out) < n:
        order = list(items)
        rng.shuffle(order)
        out.extend(order[: n - len(out)])
    return out


def _weighted(rng, pairs):
    names, weights = zip(*pairs)
    return rng.choices(names, weights=weights)[0]


def _split_counts(n, mix):
    """Largest-remainder split of n over the mix, so the counts add up exactly."""
    raw = {k: n * w / sum(mix.values()) for k, w in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


# ---------------------------------------------------------------------------------------------------
# The dataset


class _Builder:
    """Generates train first, remembering what it used, then an eval split that avoids all of it."""

    def __init__(self, seed):
        self.seed = seed
        # one-digit triples reserved for eval; everything arithmetic that train uses goes in arith_used
        every_1d = [(a, op, b) for a in range(10) for op in "+-" for b in range(10)]
        r = _rng(seed, "arith", "reserve")
        r.shuffle(every_1d)
        k = round(ARITH_1D_RESERVED_SHARE * len(every_1d))
        self.arith_reserved, self.arith_1d_train = set(every_1d[:k]), every_1d[k:]
        self.arith_reserved_order = every_1d[:k]  # a list, for a deterministic draw order
        self.arith_used = set()
        # (word, op) combinations held out of train
        combos = [(w, op) for w in WORDS for op in WORD_OPS]
        _rng(seed, "word", "holdout").shuffle(combos)
        k = round(WORD_HELDOUT_SHARE * len(combos))
        self.word_heldout, self.word_train = combos[:k], combos[k:]
        self.word_used = set()
        self.table_used = set()
        self.train_prompts = set()
        self.seen = set()  # every prompt handed out so far: train's, then eval's, then val's
        self.heldout_taken = set()  # held-out units eval (then val) used: ("capital", country, template), ...

    # -- train
    def train(self, n_train):
        counts = _split_counts(n_train, TRAIN_MIX)
        recs = []
        rng = _rng(self.seed, "capital", "train")
        facts = [(c, d) for c in CAPITALS for d in ("forward", "reverse")]
        for c, d in _cycle(rng, facts, counts["capital"]):
            recs.append(capital_record(rng, c, d, CAPITAL_FWD_TRAIN if d == "forward" else CAPITAL_REV_TRAIN))

        rng = _rng(self.seed, "arith", "train")
        for _ in range(counts["arith"]):
            level = _weighted(rng, LEVEL_WEIGHTS)
            if level == "1d":
                a, op, b = rng.choice(self.arith_1d_train)
            else:
                a, op, b = draw_triple(rng, level)
            self.arith_used.add((a, op, b))
            recs.append(arith_record(rng, a, op, b, level))

        rng = _rng(self.seed, "word", "train")
        for w, op in _cycle(rng, self.word_train, counts["word"]):
            self.word_used.add((w, op))
            recs.append(word_record(rng, w, op, WORD_PROMPTS_TRAIN, ""))

        rng = _rng(self.seed, "fish", "train")
        for f, q in _cycle(rng, [(f, q) for f in FISH for q in ("habitat", "diet", "both")], counts["fish"]):
            recs.append(fish_record(rng, f, q, FISH_PROMPTS_TRAIN))

        rng = _rng(self.seed, "table", "train")
        for _ in range(counts["table"]):
            kind, items = self._table_items(rng, eval_split=False)
            self.table_used.add((kind, tuple(items)))
            if kind == "sums":
                self.arith_used.update((a, "+", b) for a, b in items)
            recs.append(table_record(rng, kind, items))

        _rng(self.seed, "train", "order").shuffle(recs)
        self.train_prompts = {r["prompt"] for r in recs}
        self.seen = set(self.train_prompts)
        return recs

    def _table_items(self, rng, eval_split):
        kind = _weighted(rng, [(k, v[0]) for k, v in TABLE_KINDS.items()])
        n = rng.randint(2, TABLE_KINDS[kind][2])
        if kind == "capitals":
            return kind, rng.sample(list(CAPITALS), n)
        if kind.startswith("fish"):
            return kind, rng.sample(list(FISH), n)
        if kind == "lengths":
            # train may only show lengths of words whose count is not held out for eval
            pool = WORDS if eval_split else sorted({w for w, op in self.word_train if op == "count"})
            return kind, rng.sample(pool, n)
        pairs = []
        while len(pairs) < n:  # sums of one- and two-digit numbers, never a reserved one-digit triple
            a, b = rng.randint(1, 99), rng.randint(1, 99)
            if (a, "+", b) not in self.arith_reserved and (a, b) not in pairs:
                pairs.append((a, b))
        return kind, pairs

    def _taker(self, out):
        """take(rec) for a held-out split: the safety net under every split rule. A prompt already in
        train, in eval or in this split is refused (False); otherwise it joins `out` by family."""
        def take(rec):
            if rec["prompt"] in self.seen:
                return False
            self.seen.add(rec["prompt"])
            out.setdefault(rec["task"], []).append(rec)
            return True
        return take

    # -- eval
    def eval(self, n):
        out = {}  # train's prompts are in self.seen; eval's are added, so that val avoids both
        take = self._taker(out)
        self._eval_capital(n, take)
        self._eval_arith(n, out, take)
        self._eval_word(n, out, take)
        self._eval_fish(n, take)
        self._eval_table(n, out, take)
        return [r for task in FAMILIES for r in out.get(task, [])]

    def _eval_capital(self, n, take):
        rng = _rng(self.seed, "capital", "eval")
        n_rev = round(CAPITAL_EVAL_REVERSE_SHARE * n)
        for direction, k, templates in (("forward", n - n_rev, CAPITAL_FWD_EVAL),
                                        ("reverse", n_rev, CAPITAL_REV_EVAL)):
            pool = [(c, t) for c in CAPITALS for t in templates]
            if k > len(pool):
                raise ValueError(f"at most {len(pool)} {direction} capital eval prompts, asked for {k}")
            for c, t in rng.sample(pool, k):
                take(capital_record(rng, c, direction, [t]))
                self.heldout_taken.add(("capital", c, t))

    def _eval_arith(self, n, out, take):
        rng = _rng(self.seed, "arith", "eval")
        reserved = list(self.arith_reserved_order)
        while len(out.get("arith", [])) < n:
            level = _weighted(rng, LEVEL_WEIGHTS)
            if level == "1d":
                if not reserved:
                    continue  # the reserved one-digit triples are used up: draw another level
                t = reserved.pop(rng.randrange(len(reserved)))
            else:
                t = draw_triple(rng, level, fresh=lambda t: t not in self.arith_used)
            if take(arith_record(rng, *t, level)):
                self.arith_used.add(t)  # and never twice in eval

    def _eval_word(self, n, out, take):
        rng = _rng(self.seed, "word", "eval")
        n_unseen = round(WORD_EVAL_UNSEEN_SHARE * n)
        all_templates = {op: WORD_PROMPTS_TRAIN[op] + WORD_PROMPTS_EVAL[op] for op in WORD_OPS}
        seen_combos = [c for c in self.word_train if c in self.word_used]
        for attempt in range(100 * n + 1):
            k = len(out.get("word", []))
            if k >= n:
                break
            if k < n_unseen:  # an unseen combination, in any phrasing
                w, op = self.word_heldout[attempt % len(self.word_heldout)]
                if take(word_record(rng, w, op, all_templates, "_unseen")):
                    self.heldout_taken.add(("word", w, op))
            else:  # a combination train saw, in a held-out phrasing
                w, op = rng.choice(seen_combos)
                take(word_record(rng, w, op, WORD_PROMPTS_EVAL, "_newphrase"))
        else:
            raise ValueError(f"could not draw {n} distinct word eval prompts")

    def _eval_fish(self, n, take):
        rng = _rng(self.seed, "fish", "eval")
        shares = _split_counts(n, FISH_EVAL_SHARE)
        for q, k in shares.items():
            pool = [(f, t) for f in FISH for t in FISH_PROMPTS_EVAL[q]]
            if k > len(pool):
                raise ValueError(f"at most {len(pool)} fish {q} eval prompts, asked for {k}")
            for f, t in rng.sample(pool, k):
                take(fish_record(rng, f, q, {q: [t]}))
                self.heldout_taken.add(("fish", f, t))

    def _eval_table(self, n, out, take):
        rng = _rng(self.seed, "table", "eval")
        for _ in range(100 * n + 1):
            if len(out.get("table", [])) >= n:
                break
            kind, items = self._table_items(rng, eval_split=True)
            if (kind, tuple(items)) in self.table_used:
                continue  # an unseen combination of items, never one train had
            if take(table_record(rng, kind, items)):
                self.table_used.add((kind, tuple(items)))
        else:
            raise ValueError(f"could not draw {n} distinct table eval prompts")

    # -- val (after eval: eval's rules, on what eval left)
    def val(self, n):
        """Up to n records per family, grouped by family: held out of train by eval's rules, and never an
        eval prompt nor an eval held-out unit (capital or fish template x fact, word combination, arithmetic
        triple, table combination). Where eval used up a held-out pool, the family gets fewer (or, for the
        1d triples and unseen word combinations, none: the rest of the family fills in); see the module
        docstring. Never raises for lack of prompts."""
        out = {}
        take = self._taker(out)  # self.seen holds train's and eval's prompts

        def count(task):
            return len(out.get(task, []))

        self._val_capital(n, take)
        self._val_arith(n, count, take)
        self._val_word(n, count, take)
        self._val_fish(n, take)
        self._val_table(n, count, take)
        return [r for task in FAMILIES for r in out.get(task, [])]

    def _val_capital(self, n, take):
        rng = _rng(self.seed, "capital", "val")
        n_rev = round(CAPITAL_EVAL_REVERSE_SHARE * n)
        for direction, k, templates in (("forward", n - n_rev, CAPITAL_FWD_EVAL),
                                        ("reverse", n_rev, CAPITAL_REV_EVAL)):
            pool = [(c, t) for c in CAPITALS for t in templates if ("capital", c, t) not in self.heldout_taken]
            for c, t in rng.sample(pool, min(k, len(pool))):
                if take(capital_record(rng, c, direction, [t])):
                    self.heldout_taken.add(("capital", c, t))

    def _val_arith(self, n, count, take):
        rng = _rng(self.seed, "arith", "val")
        # triples of train, of eval, and of every sums table so far (train's are in arith_used already)
        avoid = set(self.arith_used)
        avoid.update((a, "+", b) for kind, items in self.table_used if kind == "sums" for a, b in items)
        reserved = [t for t in self.arith_reserved_order if t not in avoid]  # what eval left of the 1d ones
        while count("arith") < n:
            level = _weighted(rng, LEVEL_WEIGHTS)
            if level == "1d":
                if not reserved:
                    continue  # as in eval: the reserved one-digit triples are used up, draw another level
                t = reserved.pop(rng.randrange(len(reserved)))
            else:
                t = draw_triple(rng, level, fresh=lambda t: t not in avoid)
            if take(arith_record(rng, *t, level)):
                avoid.add(t)
                self.arith_used.add(t)

    def _val_word(self, n, count, take):
        rng = _rng(self.seed, "word", "val")
        unseen = [c for c in self.word_heldout if ("word", *c) not in self.heldout_taken]  # eval's leftovers
        n_unseen = round(WORD_EVAL_UNSEEN_SHARE * n) if unseen else 0
        all_templates = {op: WORD_PROMPTS_TRAIN[op] + WORD_PROMPTS_EVAL[op] for op in WORD_OPS}
        for attempt in range(100 * n_unseen):  # an unseen combination eval did not use, in any phrasing
            if count("word") >= n_unseen:
                break
            w, op = unseen[attempt % len(unseen)]
            if take(word_record(rng, w, op, all_templates, "_unseen")):
                self.heldout_taken.add(("word", w, op))
        seen_combos = [c for c in self.word_train if c in self.word_used]
        for _ in range(100 * n):  # a combination train saw, in a held-out phrasing eval did not ask
            if count("word") >= n or not seen_combos:
                break
            w, op = rng.choice(seen_combos)
            take(word_record(rng, w, op, WORD_PROMPTS_EVAL, "_newphrase"))

    def _val_fish(self, n, take):
        rng = _rng(self.seed, "fish", "val")
        for q, k in _split_counts(n, FISH_EVAL_SHARE).items():
            pool = [(f, t) for f in FISH for t in FISH_PROMPTS_EVAL[q] if ("fish", f, t) not in self.heldout_taken]
            for f, t in rng.sample(pool, min(k, len(pool))):
                if take(fish_record(rng, f, q, {q: [t]})):
                    self.heldout_taken.add(("fish", f, t))

    def _val_table(self, n, count, take):
        rng = _rng(self.seed, "table", "val")
        for _ in range(100 * n):
            if count("table") >= n:
                break
            kind, items = self._table_items(rng, eval_split=True)
            if (kind, tuple(items)) in self.table_used:
                continue  # a combination of items neither train nor eval had
            if take(table_record(rng, kind, items)):
                self.table_used.add((kind, tuple(items)))


def build(seed=0, n_train=20000, n_eval_per_task=320, n_val_per_task=100):
    """(train records in their shuffled order, eval records grouped by family, val records grouped by
    family). Train and eval do not depend on n_val_per_task (0: no val)."""
    b = _Builder(seed)
    train = b.train(n_train)
    ev = b.eval(n_eval_per_task)
    return train, ev, b.val(n_val_per_task) if n_val_per_task > 0 else []


def make_dataset(out_dir, seed=0, n_train=20000, n_eval_per_task=320, verbose=False, n_val_per_task=100):
    """Write train.jsonl, train_50.jsonl, train_25.jsonl, eval.jsonl and val.jsonl into out_dir; return the
    counts {split: {task: n}}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, ev, val = build(seed, n_train, n_eval_per_task, n_val_per_task)
    splits = {"train": train, "train_50": train[: n_train // 2], "train_25": train[: n_train // 4], "eval": ev,
              "val": val}
    counts = {}
    for name, recs in splits.items():
        write_jsonl(out_dir / f"{name}.jsonl", recs)  # atomic: temp file, then rename
        counts[name] = {t: sum(r["task"] == t for r in recs) for t in FAMILIES}
    if verbose:
        print(f"{'split':<10}" + "".join(f"{t:>9}" for t in FAMILIES) + f"{'total':>9}")
        for name, c in counts.items():
            print(f"{name:<10}" + "".join(f"{c[t]:>9}" for t in FAMILIES) + f"{sum(c.values()):>9}")
        print(f"wrote {', '.join(f'{n}.jsonl' for n in splits)} to {out_dir}")
    return counts


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--out", default="data/generated", help="output folder")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--n_train", type=int, default=20000)
    p.add_argument("--n_eval_per_task", type=int, default=320, help="per family; at most 580 (fish phrasings)")
    p.add_argument("--n_val_per_task", type=int, default=100,
                   help="per family, for choosing settings (eval only reports); fewer where eval used up a\n"
                        "held-out pool (see the docstring)")
    args = p.parse_args(argv)
    make_dataset(args.out, args.seed, args.n_train, args.n_eval_per_task, verbose=True,
                 n_val_per_task=args.n_val_per_task)


if __name__ == "__main__":
    main()
