"""
Generate the instruction data: five checkable task families, a train split, nested train subsets and an
eval split whose prompts never occur in train.

    python -m data.make_data --out data/generated [--seed 0] [--n_train 20000] [--n_eval_per_task 320]

Writes JSONL records {"prompt", "response", "task", "sub", "answer"}: `answer` is what model/checkers.py
scores against, `sub` a free-form tag of the variant and difficulty (for breakdowns; nothing keys on it).
Files: train.jsonl, train_50.jsonl, train_25.jsonl (prefixes of the one shuffled train order, so
25 within 50 within 100), eval.jsonl (n_eval_per_task per family, grouped by family). Everything is
drawn from random.Random seeded by (seed, family, split), so a seed gives byte-identical files.

Families, their difficulty ranges and their split rules:

  capital  Capital cities of 100 countries (facts in model/checkers.py). "forward" asks for the city,
           "reverse" ("Which country has Lima as its capital?") for the country and is harder. Facts can't
           be held out (an unseen fact can't be learned), so eval uses held-out *prompt templates*:
           70% forward, 30% reverse.
  arith    Addition and subtraction at five levels by operand size: 1d (both 0-9) 40%, 2d1d 35%, 2d2d 15%,
           3d2d 7%, 3d3d 3%. 15% of subtractions go negative. Eval uses (a, op, b) triples never seen in
           train (not in arith records, not in the sums tables); 25% of the 200 one-digit triples are
           reserved for eval so the easy level is represented there too.
  word     Reverse a word, spell it letter by letter ("c-a-t" or "c a t", fixed by the prompt template),
           count its letters; 365 common words of 3 to 12 letters (short 3-4, medium 5-7, long 8+). Half
           the reverse and count answers are worked ("c-a-t backwards is t-a-c, so tac."): one letter per
           token is what a BPE model can operate on. Eval: half unseen (word, op) combinations (15% of
           combinations are held out of train), half seen combinations asked with held-out templates.
  fish     Where 58 fish live and what they eat ("habitat", "diet", or "both" in one question, the
           hardest). Facts are all in train; eval uses held-out prompt templates (40/40/20%).
  table    Markdown tables of 2-3 rows and 2-3 columns: capitals, what fish eat, where they live, both,
           sums, word lengths. The only family where "|" is right. Eval uses combinations of items
           (kind + ordered items) never seen in train.

Train mix: arith 24%, word 22%, capital, fish and table 18% each. Facts (capitals, fish, word
combinations) are cycled through in reshuffled passes, so even the 25% subset sees nearly all of them.
Records are short: at most ~300 characters (about 100 BPE tokens), most 10-40 words.

Calibration (train_sft.py, 1M model, greedy eval, words capped at 7 letters in these trials): at the
default 1500 steps (~4 CPU minutes) three trials gave 17-20% overall (capital 25-45%, fish 25-50%,
word ~8%, arith ~5%, table ~2%), with run-to-run noise larger than the effect of the knobs below; at
--max_steps 4500 it gave 35% overall: capital 62% (forward 67, reverse 52), table 37% (fish tables
50-80, capitals 31, sums and lengths ~0), word 31% (spell 42, count 49, reverse 6), fish 29%
(diet 40, habitat 31, both 3), arith 17% (1d 52, 2d1d 18, 2d2d and up 0).
Knobs (constants below): ARITH_LEVELS weights, ARITH_NEGATIVE_SHARE, WORD_MAX_LEN, WORD_HELDOUT_SHARE,
WORD_EVAL_UNSEEN_SHARE, CAPITAL_EVAL_REVERSE_SHARE, FISH_EVAL_SHARE, TABLE_KINDS (weights, max rows),
TRAIN_MIX.
"""

import argparse
import random
from pathlib import Path

from model.checkers import CAPITALS, FAMILIES, FISH
from model.data import write_jsonl

TRAIN_MIX = {"arith": 0.24, "word": 0.22, "capital": 0.18, "fish": 0.18, "table": 0.18}

# ---------------------------------------------------------------------------------------------------
# Templates. A prompt template is train-only or eval-only (held out); response templates are shared.

THE_COUNTRIES = {"Netherlands", "Philippines", "Czech Republic", "United Arab Emirates", "United Kingdom",
                 "United States"}

CAPITAL_FWD_TRAIN = [
    "What is the capital of {c}?",
    "What's the capital of {c}?",
    "Name the capital of {c}.",
    "Which city is the capital of {c}?",
    "Tell me the capital of {c}.",
]
CAPITAL_FWD_EVAL = [
    "What city is the capital of {c}?",
    "Do you know the capital of {c}?",
    "What is the capital city of {c}?",
    "I need the capital of {c}.",
    "Give me the capital of {c}.",
]
CAPITAL_FWD_RESP = [
    "The capital of {c} is {x}.",
    "{X} is the capital of {c}.",
    "It's {x}.",
    "{X}.",
    "The capital city of {c} is {x}.",
]
CAPITAL_REV_TRAIN = [
    "Which country has {x} as its capital?",
    "{X} is the capital of which country?",
    "What country is {x} the capital of?",
]
CAPITAL_REV_EVAL = [
    "Of which country is {x} the capital?",
    "Name the country whose capital is {x}.",
    "{X} is the capital city of what country?",
]
CAPITAL_REV_RESP = [
    "{X} is the capital of {c}.",
    "{C}.",
    "It is {c}.",
    "{C} has {x} as its capital.",
]
CAPITAL_EVAL_REVERSE_SHARE = 0.3

# (level, weight, range of a, range of b); b is the second operand as written
ARITH_LEVELS = [
    ("1d", 0.50, (0, 9), (0, 9)),
    ("2d1d", 0.33, (10, 99), (0, 9)),
    ("2d2d", 0.12, (10, 99), (10, 99)),
    ("3d2d", 0.04, (100, 999), (10, 99)),
    ("3d3d", 0.01, (100, 999), (100, 999)),
]
ARITH_1D_RESERVED_SHARE = 0.25  # of the 200 one-digit triples, kept out of train for eval
ARITH_NEGATIVE_SHARE = 0.15  # subtractions (beyond 1d) whose result is negative
ARITH_PROMPTS = {
    "+": ["What is {a} + {b}?", "What is {a} plus {b}?", "Compute {a} + {b}.", "Add {a} and {b}.",
          "{a} + {b} = ?", "Calculate {a} plus {b}."],
    "-": ["What is {a} - {b}?", "What is {a} minus {b}?", "Compute {a} - {b}.", "Subtract {b} from {a}.",
          "{a} - {b} = ?", "Calculate {a} minus {b}."],
}
ARITH_RESP = {
    "+": ["{a} + {b} = {c}.", "The answer is {c}.", "{c}", "{a} plus {b} is {c}."],
    "-": ["{a} - {b} = {c}.", "The answer is {c}.", "{c}", "{a} minus {b} is {c}."],
}

ALL_WORDS = sorted(set("""
cat dog sun cup hat pen box map bed car bus egg ice jam key leg man owl pig rat sky toy van web ant bag bee
cow fox hen jar kit lip mud nut oak pan rug tea arm ear fan gum hut ink jet log mat mop oil pot ram row saw
tin tub wax yam zip fig gas sea bat fly
book tree fish bird frog lamp milk moon rain road rock salt ship shoe sock star desk door drum farm fork
gate gift goat hand harp hill home horn king kite lake leaf lion mask nest note park pear pool ring rope
sand seed snow soap song tent toad town vase wall wind wolf worm yarn bell boat cake coat corn crab deer
duck fire flag bowl
apple bread chair cloud dream earth field flame fruit ghost glass grape heart horse house juice knife
lemon light money mouse music night ocean paint paper piano plant queen river robot shirt skirt smile
snake spoon stone storm sugar table tiger tooth towel train water whale wheel world zebra beach berry
brush candy chalk clock crown dress
animal banana basket bottle bridge butter camera candle carpet castle cheese cherry circle coffee cookie
desert dinner doctor dragon flower forest garden guitar hammer island jacket kitten ladder letter market
mirror monkey orange pencil pepper pillow planet pocket rabbit rocket saddle school silver spider spring
summer tomato turtle window winter wizard yellow office parrot
balloon blanket cabbage captain chicken cottage crystal diamond dolphin freedom giraffe harvest kitchen
lantern library machine morning mustard network octopus painter panther peacock penguin picture pumpkin
rainbow science teacher thunder tractor trumpet uniform village volcano weather whisper whistle
airplane alphabet backpack bathroom birthday building calendar chestnut children computer daughter
dinosaur elephant envelope exercise hospital mountain notebook painting question sandwich shoulder
sidewalk squirrel sunlight treasure umbrella vacation tomorrow
adventure afternoon astronaut beautiful butterfly chocolate crocodile dangerous education equipment
furniture grassland hamburger important invisible knowledge lightning newspaper orchestra pineapple
president raspberry scientist spaceship telephone waterfall wonderful yesterday
basketball blackboard collection dictionary everything friendship grandmother helicopter lighthouse
microphone playground strawberry television toothbrush understand vegetables watermelon wheelchair
calculator celebration electricity imagination temperature refrigerator instructions kindergarten
championship neighborhood
""".split()))
WORD_MAX_LEN = 7  # words longer than this are left out: 12 makes the family harder, 5-7 easier
WORDS = [w for w in ALL_WORDS if len(w) <= WORD_MAX_LEN]
WORD_OPS = ("reverse", "spell", "count")
WORD_HELDOUT_SHARE = 0.15  # of (word, op) combinations, never in train
WORD_EVAL_UNSEEN_SHARE = 0.5  # of word eval records: unseen combination; the rest: held-out phrasing
WORD_PROMPTS_TRAIN = {
    "reverse": ["Reverse the word {w}.", "Write {w} backwards.", "What is {w} spelled backwards?",
                "What is the reverse of {w}?"],
    # (template, separator): each spelling template fixes one canonical spelled form
    "spell": [("Spell {w} letter by letter.", "-"), ("Spell out the word {w}.", " "),
              ("How do you spell {w}?", "-"), ("Spell {w} with spaces between the letters.", " ")],
    "count": ["How many letters are in {w}?", "Count the letters in {w}.", "How many letters does {w} have?",
              "What is the number of letters in {w}?"],
}
WORD_PROMPTS_EVAL = {
    "reverse": ["Give me {w} reversed.", "How is {w} written backwards?"],
    "spell": [("Write out the letters of {w}.", " "), ("What are the letters in {w}, in order?", "-")],
    "count": ["Tell me how many letters {w} has.", "How long is the word {w}, in letters?"],
}
WORD_RESP = {
    # worked forms first spell the word out: a BPE model sees whole chunks, one letter per token is easier
    "reverse": ["{d} backwards is {rd}, so {r}.", "{W} is {d}; reversed, {rd}: {r}.", "{W} reversed is {r}.",
                "The reverse of {w} is {r}."],
    "spell": ["{s}", "{W} is spelled {s}.", "It is spelled {s}."],
    "count": ["{d} has {n} letters.", "{W} is {d}: {n} letters.", "{W} has {n} letters.",
              "There are {n} letters in {w}."],
}

FISH_PROMPTS_TRAIN = {
    "habitat": ["Where does the {f} live?", "Where do you find the {f}?", "What is the habitat of the {f}?",
                "Where can you find the {f}?"],
    "diet": ["What does the {f} eat?", "What is the diet of the {f}?", "What food does the {f} eat?",
             "What does the {f} feed on?"],
    "both": ["Where does the {f} live and what does it eat?", "Tell me the habitat and diet of the {f}."],
}
FISH_PROMPTS_EVAL = {
    "habitat": ["Where is the {f} found?", "Tell me where the {f} lives.", "What is the home of the {f}?",
                "In what kind of place does the {f} live?"],
    "diet": ["What does the {f} like to eat?", "Tell me what the {f} eats.", "What is the main food of the {f}?",
             "What kind of food does the {f} eat?"],
    "both": ["What does the {f} eat, and where does it live?", "Describe where the {f} lives and what it eats.",
             "Where is the {f} found and what is its food?"],
}
FISH_RESP = {
    "habitat": ["The {f} lives in {h}.", "It lives in {h}.", "{H}.", "You can find the {f} in {h}."],
    "diet": ["The {f} eats {d}.", "It eats {d}.", "{D}.", "The {f} feeds on {d}."],
    "both": ["The {f} lives in {h} and eats {d}.", "It lives in {h} and feeds on {d}."],
}
FISH_EVAL_SHARE = {"habitat": 0.4, "diet": 0.4, "both": 0.2}

# kind -> (weight, header, max rows, prompt templates)
TABLE_KINDS = {
    "capitals": (0.30, ["Country", "Capital"], 3, [
        "Make a table of the capitals of {items}.", "Give me a table with the capitals of {items}.",
        "Show the capitals of {items} in a table.", "Put {items} and their capitals in a table."]),
    "fish_food": (0.25, ["Fish", "Food"], 3, [
        "Make a table of what these fish eat: {items}.", "Show in a table what these fish eat: {items}.",
        "Give me a table of the food of these fish: {items}."]),
    "fish_home": (0.25, ["Fish", "Lives in"], 3, [
        "Make a table of where these fish live: {items}.", "Show in a table where these fish live: {items}.",
        "Give me a table of the homes of these fish: {items}."]),
    "fish_both": (0.10, ["Fish", "Lives in", "Eats"], 3, [
        "Make a table of where these fish live and what they eat: {items}.",
        "Give me a table of the habitat and diet of these fish: {items}."]),
    "sums": (0.05, ["Sum", "Result"], 3, [
        "Make a table of these sums: {items}.", "Show the results of these sums in a table: {items}.",
        "Give me a table with the answers to {items}."]),
    "lengths": (0.05, ["Word", "Letters"], 3, [
        "Make a table of how many letters are in these words: {items}.",
        "Show in a table how many letters these words have: {items}."]),
}
TABLE_INTROS = ["", "Here is the table:\n", "Sure, here it is:\n"]


# ---------------------------------------------------------------------------------------------------
# Helpers


def _rng(seed, *names):
    # str seeds go through sha512: deterministic across processes, unlike hash()
    return random.Random(f"{seed}/" + "/".join(names))


def _cap(s):
    return s[:1].upper() + s[1:]


def _country(c):
    return f"the {c}" if c in THE_COUNTRIES else c


def _join(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


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


def _rec(prompt, response, task, sub, answer):
    return {"prompt": prompt, "response": response, "task": task, "sub": sub, "answer": answer}


def _split_counts(n, mix):
    """Largest-remainder split of n over the mix, so the counts add up exactly."""
    raw = {k: n * w / sum(mix.values()) for k, w in mix.items()}
    counts = {k: int(v) for k, v in raw.items()}
    for k in sorted(raw, key=lambda k: raw[k] - counts[k], reverse=True)[: n - sum(counts.values())]:
        counts[k] += 1
    return counts


def _length_class(word):
    return "short" if len(word) <= 4 else "medium" if len(word) <= 7 else "long"


# ---------------------------------------------------------------------------------------------------
# Record builders (one per family); each draws its phrasings from rng


def capital_record(rng, country, direction, templates):
    city = CAPITALS[country]
    c = _country(country)
    fill = {"c": c, "C": _cap(c), "x": city, "X": city}
    prompt = rng.choice(templates).format(**fill)
    if direction == "forward":
        return _rec(prompt, rng.choice(CAPITAL_FWD_RESP).format(**fill), "capital", "forward", {"capital": city})
    return _rec(prompt, rng.choice(CAPITAL_REV_RESP).format(**fill), "capital", "reverse", {"country": country})


def arith_record(rng, a, op, b, level):
    c = a + b if op == "+" else a - b
    prompt = rng.choice(ARITH_PROMPTS[op]).format(a=a, b=b)
    response = rng.choice(ARITH_RESP[op]).format(a=a, b=b, c=c)
    return _rec(prompt, response, "arith", f"{'add' if op == '+' else 'sub'}_{level}", c)


def word_record(rng, word, op, templates, tag):
    tmpl = rng.choice(templates[op])
    if op == "spell":
        tmpl, sep = tmpl
    prompt = tmpl.format(w=word)
    fill = {"w": word, "W": _cap(word), "r": word[::-1], "n": len(word), "d": "-".join(word),
            "rd": "-".join(word[::-1])}
    if op == "spell":
        fill["s"] = sep.join(word)
    value = {"reverse": word[::-1], "spell": word, "count": len(word)}[op]
    response = rng.choice(WORD_RESP[op]).format(**fill)
    return _rec(prompt, response, "word", f"{op}_{_length_class(word)}{tag}", {"op": op, "word": word, "value": value})


def fish_record(rng, fish, q, templates):
    h, d = FISH[fish]
    fill = {"f": fish, "h": h, "H": _cap(h), "d": d, "D": _cap(d)}
    prompt = rng.choice(templates[q]).format(**fill)
    answer = {"habitat": {"habitat": h}, "diet": {"diet": d}, "both": {"habitat": h, "diet": d}}[q]
    return _rec(prompt, rng.choice(FISH_RESP[q]).format(**fill), "fish", q, answer)


def table_record(rng, kind, items):
    """items: countries, fish names, (a, b) pairs or words, in row order."""
    _, header, _, templates = TABLE_KINDS[kind]
    if kind == "capitals":
        names = [_country(c) for c in items]
        rows = [[c, CAPITALS[c]] for c in items]
    elif kind in ("fish_food", "fish_home", "fish_both"):
        names = list(items)
        cols = {"fish_food": lambda h, d: [d], "fish_home": lambda h, d: [h], "fish_both": lambda h, d: [h, d]}
        # cells drop a leading "the": "the open ocean" -> "open ocean"
        rows = [[f] + [x.removeprefix("the ") for x in cols[kind](*FISH[f])] for f in items]
    elif kind == "sums":
        names = [f"{a} + {b}" for a, b in items]
        rows = [[f"{a} + {b}", str(a + b)] for a, b in items]
    else:  # lengths
        names = list(items)
        rows = [[w, str(len(w))] for w in items]
    prompt = rng.choice(templates).format(items=_join(names))
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    response = rng.choice(TABLE_INTROS) + "\n".join(lines)
    return _rec(prompt, response, "table", f"{kind}_{len(rows)}", {"header": header, "rows": rows})


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

    # -- arithmetic operands
    @staticmethod
    def _draw_triple(rng, level, fresh=lambda t: True):
        """(a, op, b) at a level above 1d, redrawn until fresh(triple)."""
        _, _, (alo, ahi), (blo, bhi) = next(x for x in ARITH_LEVELS if x[0] == level)
        for _ in range(1000):
            op = rng.choice("+-")
            a, b = rng.randint(alo, ahi), rng.randint(blo, bhi)
            if op == "+" and rng.random() < 0.5:
                a, b = b, a  # the smaller operand first half the time
            if op == "-" and (a < b) != (rng.random() < ARITH_NEGATIVE_SHARE):
                a, b = b, a  # result negative with probability ARITH_NEGATIVE_SHARE
            if fresh((a, op, b)):
                return a, op, b
        raise RuntimeError(f"could not draw a fresh arithmetic triple at level {level}")

    # -- train
    def train(self, n_train):
        counts = _split_counts(n_train, TRAIN_MIX)
        recs = []
        rng = _rng(self.seed, "capital", "train")
        facts = [(c, d) for c in CAPITALS for d in ("forward", "reverse")]
        for c, d in _cycle(rng, facts, counts["capital"]):
            recs.append(capital_record(rng, c, d, CAPITAL_FWD_TRAIN if d == "forward" else CAPITAL_REV_TRAIN))

        rng = _rng(self.seed, "arith", "train")
        levels = [(name, w) for name, w, _, _ in ARITH_LEVELS]
        for _ in range(counts["arith"]):
            level = _weighted(rng, levels)
            if level == "1d":
                a, op, b = rng.choice(self.arith_1d_train)
            else:
                a, op, b = self._draw_triple(rng, level)
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

    # -- eval
    def eval(self, n):
        out = {}
        seen = set(self.train_prompts)

        def take(rec):
            # the safety net under every split rule: an eval prompt never occurs in train, nor twice in eval
            if rec["prompt"] in seen:
                return False
            seen.add(rec["prompt"])
            out.setdefault(rec["task"], []).append(rec)
            return True

        rng = _rng(self.seed, "capital", "eval")
        n_rev = round(CAPITAL_EVAL_REVERSE_SHARE * n)
        for direction, k, templates in (("forward", n - n_rev, CAPITAL_FWD_EVAL),
                                        ("reverse", n_rev, CAPITAL_REV_EVAL)):
            pool = [(c, t) for c in CAPITALS for t in templates]
            if k > len(pool):
                raise ValueError(f"at most {len(pool)} {direction} capital eval prompts, asked for {k}")
            for c, t in rng.sample(pool, k):
                take(capital_record(rng, c, direction, [t]))

        rng = _rng(self.seed, "arith", "eval")
        levels = [(name, w) for name, w, _, _ in ARITH_LEVELS]
        reserved = list(self.arith_reserved_order)
        while len(out.get("arith", [])) < n:
            level = _weighted(rng, levels)
            if level == "1d":
                if not reserved:
                    continue  # the reserved one-digit triples are used up: draw another level
                t = reserved.pop(rng.randrange(len(reserved)))
            else:
                t = self._draw_triple(rng, level, fresh=lambda t: t not in self.arith_used)
            if take(arith_record(rng, *t, level)):
                self.arith_used.add(t)  # and never twice in eval

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
                take(word_record(rng, w, op, all_templates, "_unseen"))
            else:  # a combination train saw, in a held-out phrasing
                w, op = rng.choice(seen_combos)
                take(word_record(rng, w, op, WORD_PROMPTS_EVAL, "_newphrase"))
        else:
            raise ValueError(f"could not draw {n} distinct word eval prompts")

        rng = _rng(self.seed, "fish", "eval")
        shares = _split_counts(n, FISH_EVAL_SHARE)
        for q, k in shares.items():
            pool = [(f, t) for f in FISH for t in FISH_PROMPTS_EVAL[q]]
            if k > len(pool):
                raise ValueError(f"at most {len(pool)} fish {q} eval prompts, asked for {k}")
            for f, t in rng.sample(pool, k):
                take(fish_record(rng, f, q, {q: [t]}))

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
        return [r for task in FAMILIES for r in out.get(task, [])]


def build(seed=0, n_train=20000, n_eval_per_task=320):
    """(train records in their shuffled order, eval records grouped by family)."""
    b = _Builder(seed)
    train = b.train(n_train)
    return train, b.eval(n_eval_per_task)


def make_dataset(out_dir, seed=0, n_train=20000, n_eval_per_task=320, verbose=False):
    """Write train.jsonl, train_50.jsonl, train_25.jsonl and eval.jsonl into out_dir; return the counts
    {split: {task: n}}."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    train, ev = build(seed, n_train, n_eval_per_task)
    splits = {"train": train, "train_50": train[: n_train // 2], "train_25": train[: n_train // 4], "eval": ev}
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
    args = p.parse_args(argv)
    make_dataset(args.out, args.seed, args.n_train, args.n_eval_per_task, verbose=True)


if __name__ == "__main__":
    main()
