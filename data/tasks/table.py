"""
Markdown tables of 2-3 rows and 2-3 columns: capitals, what fish eat, where they live, both, sums, word
lengths. The only family where "|" is right. Eval uses combinations of items (kind + ordered items) never
seen in train.

Answer: {"header", "rows"}. The checker wants a markdown table of the header's width with a separator row
and exactly the expected rows, in order; the header's wording, case, spacing and a leading "the" in a cell
do not matter.
"""

import re

from data.tasks.capital import CAPITALS, country_name
from data.tasks.common import make_record, norm, strip_the
from data.tasks.fish import FISH

NAME = "table"

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


def _join(items):
    return items[0] if len(items) == 1 else ", ".join(items[:-1]) + " and " + items[-1]


def table_record(rng, kind, items):
    """items: countries, fish names, (a, b) pairs or words, in row order."""
    _, header, _, templates = TABLE_KINDS[kind]
    if kind == "capitals":
        names = [country_name(c) for c in items]
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
    return make_record(prompt, response, NAME, f"{kind}_{len(rows)}", {"header": header, "rows": rows})


# ---------------------------------------------------------------------------------------------------
# Checker

_SEPARATOR_CELL = re.compile(r":?-+:?")


def parse_table(response):
    """The markdown table in a response as a list of rows of cells (header first, separator included), or
    [] when there is none. Lines without a "|" (an intro such as "Here is the table:") are skipped."""
    rows = []
    for line in response.splitlines():
        line = line.strip()
        if "|" not in line:
            continue
        line = line[1:] if line.startswith("|") else line
        line = line[:-1] if line.endswith("|") else line
        rows.append([cell.strip() for cell in line.split("|")])
    return rows


def _cell(text):
    """Case and whitespace do not matter, nor a trailing period, a leading "the" or spaces around + and -."""
    text = norm(text).rstrip(".").strip()
    text = re.sub(r"\s*([+\-=])\s*", r"\1", text)
    return strip_the(text)


def check(answer, response):
    rows = parse_table(response)
    ncols = len(answer["header"])
    if len(rows) < 2 or len(rows[0]) != ncols or len(rows[1]) != ncols:
        return False
    if not all(_SEPARATOR_CELL.fullmatch(c) for c in rows[1]):
        return False
    body, expected = rows[2:], answer["rows"]
    # same rows in the order asked; the header's wording is not judged, only its width
    return len(body) == len(expected) and all(
        len(got) == ncols and [_cell(c) for c in got] == [_cell(c) for c in want]
        for got, want in zip(body, expected)
    )
