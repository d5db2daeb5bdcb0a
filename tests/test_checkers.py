"""The answer checkers: right answers pass in every phrasing, near-misses fail; metrics match hand counts."""

import math
import subprocess
import sys
from pathlib import Path

import pytest

from data.tasks import has_pipe_leak, score
from data.tasks.arith import ARITH_RESP
from data.tasks.capital import CAPITAL_FWD_RESP, CAPITAL_REV_RESP, CAPITALS
from data.tasks.common import numbers_in
from data.tasks.fish import FISH_RESP
from data.tasks.table import TABLE_INTROS, parse_table, table_record
from data.tasks.word import WORD_RESP
from model.evaluate import eval_metrics


def rec(task, answer):
    return {"prompt": "", "response": "", "task": task, "answer": answer}


def accepts(record, responses):
    bad = [r for r in responses if score(record, r) is not True]
    assert not bad, f"rejected right answers: {bad}"


def rejects(record, responses):
    bad = [r for r in responses if score(record, r) is not False]
    assert not bad, f"accepted wrong answers: {bad}"


# --- capital -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("country", ["France", "Mexico", "Netherlands", "United States", "Tunisia", "Costa Rica"])
def test_capital_forward_every_phrasing(country):
    city = CAPITALS[country]
    c = f"the {country}" if country in ("Netherlands", "United States") else country
    r = rec("capital", {"capital": city})
    accepts(r, [t.format(c=c, C=c[0].upper() + c[1:], x=city, X=city) for t in CAPITAL_FWD_RESP])
    accepts(r, [city.upper(), city.lower(), f"  {city}!  ", f"I am fairly sure it is {city}, yes."])


def test_capital_forward_near_misses():
    r = rec("capital", {"capital": "Paris"})
    rejects(r, [
        "Lyon.",  # not the capital
        "The capital of France is London.",  # another real capital
        "It's Paris or maybe Berlin.",  # hedging with another capital
        "The capital of France is Paris|",  # a pipe in prose
        "| Paris |",
        "",
        "France.",
    ])
    mex = rec("capital", {"capital": "Mexico City"})
    accepts(mex, ["The capital of Mexico is Mexico City.", "mexico  city"])
    rejects(mex, ["Mexico.", "The capital of Mexico is Panama City."])
    # Tunis must not be read inside "Tunisia"
    rejects(rec("capital", {"capital": "Tunis"}), ["The capital of Tunisia is Tripoli."])


def test_capital_reverse():
    r = rec("capital", {"country": "France"})
    accepts(r, [t.format(c="France", C="France", x="Paris", X="Paris") for t in CAPITAL_REV_RESP])
    accepts(r, ["france", "Paris is in France, and it is the capital."])
    rejects(r, ["Germany.", "Paris is the capital of Germany.", "France or Belgium.", "Paris.", "France |"])
    nl = rec("capital", {"country": "Netherlands"})
    accepts(nl, ["The Netherlands.", "Amsterdam is the capital of the Netherlands."])
    # the country inside a capital's name is not a mention of that country
    mex = rec("capital", {"country": "Mexico"})
    accepts(mex, ["Mexico City is the capital of Mexico."])
    rejects(mex, ["Mexico City is the capital of Panama.", "Panama."])


# --- arith -------------------------------------------------------------------------------------------


def test_arith_every_phrasing_and_operands_echoed():
    for op, a, b in (("+", 23, 45), ("-", 45, 23), ("-", 12, 34), ("+", 999, 999), ("-", 7, 7)):
        c = a + b if op == "+" else a - b
        r = rec("arith", c)
        accepts(r, [t.format(a=a, b=b, c=c) for t in ARITH_RESP[op]])
        accepts(r, [f"{a}{op}{b}={c}", f"Sure! {a} {op} {b} = {c}", f"{c}."])


def test_arith_near_misses():
    r = rec("arith", 68)
    accepts(r, ["68", "23 + 45 = 68.", "The answer is 68.", "23 plus 45 is 68"])
    rejects(r, ["67", "69", "23 + 45 = 67.", "The answer is 86.", "68 | 68", "sixty-eight? no: 23 + 45", "", "-68"])
    neg = rec("arith", -22)
    accepts(neg, ["-22", "12 - 34 = -22.", "The answer is -22.", "12-34=-22", "It is minus 22.", "negative 22"])
    rejects(neg, ["22", "12 - 34 = 22.", "-23", "-21", "12 - 34"])
    accepts(rec("arith", 1998), ["999 + 999 = 1998", "1,998"])


def test_numbers_in():
    assert numbers_in("45 - 67 = -22") == [45, 67, -22]
    assert numbers_in("It has eight letters, not 1,234 or minus 3.") == [8, 1234, -3]
    assert numbers_in("someone often") == []  # number words only as whole words


# --- word --------------------------------------------------------------------------------------------


def word_fill(word, sep="-"):
    return {"w": word, "W": word.capitalize(), "r": word[::-1], "n": len(word), "s": sep.join(word),
            "d": "-".join(word), "rd": "-".join(word[::-1])}


@pytest.mark.parametrize("word", ["cat", "elephant", "refrigerator"])
def test_word_every_phrasing(word):
    for op in ("reverse", "spell", "count"):
        value = {"reverse": word[::-1], "spell": word, "count": len(word)}[op]
        r = rec("word", {"op": op, "word": word, "value": value})
        for sep in ("-", " "):
            accepts(r, [t.format(**word_fill(word, sep)) for t in WORD_RESP[op]])


def test_word_reverse_near_misses():
    r = rec("word", {"op": "reverse", "word": "cat", "value": "tac"})
    accepts(r, ["TAC", "Cat backwards: tac!", "The reverse of cat is tac."])
    rejects(r, ["tca", "cat", "The reverse of cat is act.", "tac or tca", "ta|c", "tac |", "t-a-c", "tak"])
    r = rec("word", {"op": "reverse", "word": "elephant", "value": "tnahpele"})
    rejects(r, ["tnahplee", "Elephant reversed is tnahpel."])


def test_word_spell_near_misses():
    r = rec("word", {"op": "spell", "word": "elephant", "value": "elephant"})
    accepts(r, ["E-L-E-P-H-A-N-T", "e l e p h a n t", "e, l, e, p, h, a, n, t.", "It is spelled e-l-e-p-h-a-n-t, I think"])
    rejects(r, ["e-l-e-p-h-n-t", "e-l-e-f-a-n-t", "e-l-e-p-h-a-n-t-s", "elephant", "e|l|e|p|h|a|n|t", ""])


def test_word_count_near_misses():
    r = rec("word", {"op": "count", "word": "elephant", "value": 8})
    accepts(r, ["8", "Elephant has eight letters.", "There are 8 letters in elephant."])
    rejects(r, ["7", "9", "Elephant has 9 letters.", "8 | letters", "elephant", "There are 8 letters in elephant, no, 7."])


# --- fish --------------------------------------------------------------------------------------------


def test_fish_every_phrasing():
    f, h, d = "great white shark", "the open ocean", "seals"
    fill = {"f": f, "h": h, "H": h.capitalize(), "d": d, "D": d.capitalize()}
    for q, answer in (("habitat", {"habitat": h}), ("diet", {"diet": d}), ("both", {"habitat": h, "diet": d})):
        accepts(rec("fish", answer), [t.format(**fill) for t in FISH_RESP[q]])
    accepts(rec("fish", {"habitat": "coral reefs"}), ["Coral reefs!", "It lives on coral reefs in warm water."])


def test_fish_near_misses():
    rejects(rec("fish", {"habitat": "coral reefs"}), ["Rivers.", "Coral reefs or rivers.", "the ocean", "coral | reefs"])
    rejects(rec("fish", {"diet": "seals"}), ["Small fish.", "It eats seals and squid.", "fish"])
    both = rec("fish", {"habitat": "the open ocean", "diet": "seals"})
    rejects(both, ["It lives in the open ocean.", "It lives in the open ocean and eats squid.",
                   "It lives in the deep sea and eats seals."])


# --- table -------------------------------------------------------------------------------------------

CAPS = rec("table", {"header": ["Country", "Capital"], "rows": [["France", "Paris"], ["Japan", "Tokyo"], ["Peru", "Lima"]]})
CAPS_TABLE = "| Country | Capital |\n|---|---|\n| France | Paris |\n| Japan | Tokyo |\n| Peru | Lima |"


def test_table_every_intro_and_layout():
    accepts(CAPS, [intro + CAPS_TABLE for intro in TABLE_INTROS])
    accepts(CAPS, [
        "Country | Capital\n---|---\nFrance | Paris\nJapan | Tokyo\nPeru | Lima",  # no outer pipes
        "|country|capital|\n|:---:|---|\n|FRANCE|paris.|\n| japan |  Tokyo |\n|Peru|Lima|\nThat's all.",
        CAPS_TABLE.replace("Country", "Nation"),  # the header's wording is not judged
    ])
    sums = rec("table", {"header": ["Sum", "Result"], "rows": [["3 + 4", "7"], ["12 + 5", "17"]]})
    accepts(sums, ["| Sum | Result |\n|---|---|\n| 3+4 | 7 |\n| 12 + 5 | 17 |"])
    fish = rec("table", {"header": ["Fish", "Lives in"], "rows": [["whale shark", "open ocean"]]})
    accepts(fish, ["| Fish | Lives in |\n|---|---|\n| Whale shark | the open ocean |"])


def test_table_generated_record_scores():
    import random

    r = table_record(random.Random(0), "capitals", ["France", "Netherlands", "Peru"])
    assert score(r, r["response"]) is True
    assert "the Netherlands" in r["prompt"] and r["answer"]["rows"][1] == ["Netherlands", "Amsterdam"]


def test_table_near_misses():
    rejects(CAPS, [
        CAPS_TABLE.replace("Tokyo", "Kyoto"),  # a wrong cell
        CAPS_TABLE.replace("\n| Peru | Lima |", ""),  # a missing row
        CAPS_TABLE + "\n| Chile | Santiago |",  # an extra row
        CAPS_TABLE.replace("| Japan | Tokyo |\n| Peru | Lima |", "| Peru | Lima |\n| Japan | Tokyo |"),  # order
        CAPS_TABLE.replace("|---|---|\n", ""),  # no separator row
        CAPS_TABLE.replace("| France | Paris |", "| France | Paris | Europe |"),  # wrong width
        "The capitals are Paris, Tokyo and Lima.",  # prose, not a table
        "",
    ])


def test_parse_table():
    assert parse_table("Here:\n| a | b |\n|---|---|\n| 1 | 2 |") == [["a", "b"], ["---", "---"], ["1", "2"]]
    assert parse_table("no table here") == []


# --- dispatch, pipe leaks, metrics -------------------------------------------------------------------


def test_families_import_nothing_from_model():
    # model/evaluate.py imports data.tasks: the other direction would be a cycle
    code = "import sys, data.tasks; print(sorted(m for m in sys.modules if m.split('.')[0] in ('model', 'torch')))"
    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "-c", code], cwd=root, capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_unknown_family_is_none():
    assert score({"prompt": "hi", "response": "hello"}, "hello") is None
    assert score({"task": "poetry", "answer": None}, "roses") is None


def test_has_pipe_leak():
    assert has_pipe_leak({"task": "capital"}, "Paris | France")
    assert has_pipe_leak({}, "a | b")  # bring-your-own data: not a table, so a leak
    assert not has_pipe_leak({"task": "table"}, CAPS_TABLE)
    assert not has_pipe_leak({"task": "arith"}, "3 + 4 = 7")


def hand_built():
    records = [
        rec("arith", 7),  # right
        rec("arith", 5),  # wrong
        rec("capital", {"capital": "Paris"}),  # wrong: the pipe
        rec("table", {"header": ["A", "B"], "rows": [["x", "1"]]}),  # right
        {"prompt": "say hi", "response": "hi"},  # no family: not scored, but a leak
    ]
    responses = ["3 + 4 = 7.", "3 + 4 = 8", "Paris | France", "| A | B |\n|---|---|\n| x | 1 |", "hello | world"]
    eos = [True, True, False, True, False]
    return records, responses, eos


def test_eval_metrics_hand_computed():
    m = eval_metrics(*hand_built())
    approx = lambda x: pytest.approx(x, abs=1e-12)
    assert m["n"] == 5
    assert m["accuracy"] == approx(2 / 4)
    assert m["accuracy_se"] == approx(math.sqrt(0.5 * 0.5 / 4))  # 0.25
    assert (m["acc/arith"], m["se/arith"], m["n/arith"]) == (approx(0.5), approx(math.sqrt(0.25 / 2)), 2)
    assert (m["acc/capital"], m["se/capital"], m["n/capital"]) == (0.0, 0.0, 1)
    assert (m["acc/table"], m["se/table"], m["n/table"]) == (1.0, 0.0, 1)
    assert "acc/word" not in m and "acc/fish" not in m
    # non-table answers: 1, 2, 3 and the unscored 5; 3 and 5 leak one "|" each over 10 + 9 + 14 + 13 chars
    assert m["pipe_rate"] == approx(2 / 4)
    assert m["pipes_per_kchar"] == approx(1000 * 2 / 46)
    assert m["mean_len"] == approx((10 + 9 + 14 + 29 + 13) / 5)
    assert m["eos_rate"] == approx(3 / 5)
    # bigrams: 4 + 4 (3 already seen in the first answer) + 2 + 10 (the table, all distinct) + 2
    assert m["distinct_2"] == approx(19 / 22)


def test_eval_metrics_without_families_and_edge_cases():
    m = eval_metrics([{"prompt": "a"}, {"prompt": "b"}], ["x | y", "plain words here"], [True, True])
    assert "accuracy" not in m and "accuracy_se" not in m
    assert m["pipe_rate"] == 0.5 and m["eos_rate"] == 1.0
    assert m["pipes_per_kchar"] == pytest.approx(1000 / 21)
    assert m["distinct_2"] == pytest.approx(4 / 4)
    empty = eval_metrics([], [], [])
    assert empty["distinct_2"] == 0.0 and empty["mean_len"] == 0.0 and empty["pipe_rate"] == 0.0
    with pytest.raises(ValueError):
        eval_metrics([{}], ["a", "b"], [True])


def test_length_ratio_and_loops_are_measured():
    from model.evaluate import eval_metrics, loops

    assert loops("the fish is the fish is the fish is") and not loops("the fish is big and the fish is")
    recs = [{"prompt": "p", "response": "abcd"}, {"prompt": "q", "response": "abcd"}]
    m = eval_metrics(recs, ["abcdabcd", "one two three one two three one two three"], [True, False])
    assert m["len_ratio"] == ((8 + 41) / 2) / 4
    assert m["repetition_rate"] == 0.5
