"""
Answer checkers for the generated task families (data/make_data.py), and the eval metrics built on them.

score(record, response) -> True / False, or None when the record has no known family (bring-your-own
data): every checker is tolerant to phrasing (any response template the generator uses, case, a trailing
period, extra words around the answer) and strict on the answer itself (a wrong number, a wrong city,
a missing or wrong table cell is wrong).

The closed world the checkers reason about lives here, not in the generator: to reject "another real
capital" or "another habitat" a checker must know every capital and every habitat. The generator
imports CAPITALS and FISH from this module, so the facts in the data and in the checker cannot drift.

A non-table answer that contains "|" is wrong, whatever else it says: the pipe is legitimate only inside
a markdown table, and its leak into prose is a classic tiny-model defect that we want the score to see.

Pure Python, no torch.
"""

import math
import re

# ---------------------------------------------------------------------------------------------------
# The closed world. ASCII spellings only (the tokenizer is a 1024-token BPE trained on this data).
# Countries whose capital is contested, split or named like the country (Bolivia, South Africa, Sri
# Lanka, Israel, Singapore, ...) are left out, and so are pairs whose names nest (Niger / Nigeria,
# Sudan / South Sudan), so that "the expected city and no other capital" is a clean test.

CAPITALS = {
    "Afghanistan": "Kabul",
    "Algeria": "Algiers",
    "Angola": "Luanda",
    "Argentina": "Buenos Aires",
    "Armenia": "Yerevan",
    "Australia": "Canberra",
    "Austria": "Vienna",
    "Azerbaijan": "Baku",
    "Bangladesh": "Dhaka",
    "Belarus": "Minsk",
    "Belgium": "Brussels",
    "Brazil": "Brasilia",
    "Bulgaria": "Sofia",
    "Cambodia": "Phnom Penh",
    "Cameroon": "Yaounde",
    "Canada": "Ottawa",
    "Chile": "Santiago",
    "China": "Beijing",
    "Colombia": "Bogota",
    "Costa Rica": "San Jose",
    "Croatia": "Zagreb",
    "Cuba": "Havana",
    "Cyprus": "Nicosia",
    "Czech Republic": "Prague",
    "Denmark": "Copenhagen",
    "Ecuador": "Quito",
    "Egypt": "Cairo",
    "El Salvador": "San Salvador",
    "Estonia": "Tallinn",
    "Ethiopia": "Addis Ababa",
    "Finland": "Helsinki",
    "France": "Paris",
    "Georgia": "Tbilisi",
    "Germany": "Berlin",
    "Ghana": "Accra",
    "Greece": "Athens",
    "Guatemala": "Guatemala City",
    "Honduras": "Tegucigalpa",
    "Hungary": "Budapest",
    "Iceland": "Reykjavik",
    "India": "New Delhi",
    "Indonesia": "Jakarta",
    "Iran": "Tehran",
    "Iraq": "Baghdad",
    "Ireland": "Dublin",
    "Italy": "Rome",
    "Jamaica": "Kingston",
    "Japan": "Tokyo",
    "Jordan": "Amman",
    "Kazakhstan": "Astana",
    "Kenya": "Nairobi",
    "Kuwait": "Kuwait City",
    "Lebanon": "Beirut",
    "Lithuania": "Vilnius",
    "Madagascar": "Antananarivo",
    "Malaysia": "Kuala Lumpur",
    "Malta": "Valletta",
    "Mexico": "Mexico City",
    "Mongolia": "Ulaanbaatar",
    "Morocco": "Rabat",
    "Nepal": "Kathmandu",
    "Netherlands": "Amsterdam",
    "New Zealand": "Wellington",
    "Nicaragua": "Managua",
    "Nigeria": "Abuja",
    "North Korea": "Pyongyang",
    "Norway": "Oslo",
    "Pakistan": "Islamabad",
    "Panama": "Panama City",
    "Paraguay": "Asuncion",
    "Peru": "Lima",
    "Philippines": "Manila",
    "Poland": "Warsaw",
    "Portugal": "Lisbon",
    "Qatar": "Doha",
    "Romania": "Bucharest",
    "Russia": "Moscow",
    "Saudi Arabia": "Riyadh",
    "Senegal": "Dakar",
    "Serbia": "Belgrade",
    "Slovakia": "Bratislava",
    "South Korea": "Seoul",
    "Spain": "Madrid",
    "Sudan": "Khartoum",
    "Sweden": "Stockholm",
    "Switzerland": "Bern",
    "Syria": "Damascus",
    "Tanzania": "Dodoma",
    "Thailand": "Bangkok",
    "Tunisia": "Tunis",
    "Turkey": "Ankara",
    "Uganda": "Kampala",
    "Ukraine": "Kyiv",
    "United Arab Emirates": "Abu Dhabi",
    "United Kingdom": "London",
    "United States": "Washington",
    "Uruguay": "Montevideo",
    "Venezuela": "Caracas",
    "Vietnam": "Hanoi",
    "Zimbabwe": "Harare",
}

# fish -> (where it lives, what it mostly eats). Simplified but real: one habitat and one food each, drawn
# from small closed vocabularies so that "the expected one and no other one" is checkable.
FISH = {
    "clownfish": ("coral reefs", "algae"),
    "parrotfish": ("coral reefs", "algae"),
    "surgeonfish": ("coral reefs", "algae"),
    "lionfish": ("coral reefs", "small fish"),
    "barracuda": ("coral reefs", "small fish"),
    "moray eel": ("coral reefs", "small fish"),
    "pufferfish": ("coral reefs", "snails"),
    "triggerfish": ("coral reefs", "sea urchins"),
    "grouper": ("coral reefs", "crabs"),
    "cleaner wrasse": ("coral reefs", "parasites"),
    "seahorse": ("coral reefs", "shrimp"),
    "tiger shark": ("coral reefs", "turtles"),
    "great white shark": ("the open ocean", "seals"),
    "whale shark": ("the open ocean", "plankton"),
    "manta ray": ("the open ocean", "plankton"),
    "ocean sunfish": ("the open ocean", "jellyfish"),
    "bluefin tuna": ("the open ocean", "squid"),
    "swordfish": ("the open ocean", "squid"),
    "hammerhead shark": ("the open ocean", "stingrays"),
    "sardine": ("the open ocean", "plankton"),
    "goldfish": ("ponds", "plants"),
    "koi": ("ponds", "plants"),
    "bluegill": ("ponds", "insects"),
    "carp": ("lakes", "plants"),
    "northern pike": ("lakes", "small fish"),
    "perch": ("lakes", "insects"),
    "walleye": ("lakes", "small fish"),
    "tilapia": ("lakes", "algae"),
    "Arctic char": ("lakes", "insects"),
    "brown trout": ("rivers", "insects"),
    "catfish": ("rivers", "worms"),
    "piranha": ("rivers", "small fish"),
    "electric eel": ("rivers", "small fish"),
    "sturgeon": ("rivers", "worms"),
    "arowana": ("rivers", "insects"),
    "guppy": ("rivers", "insects"),
    "betta": ("swamps", "insects"),
    "mudskipper": ("swamps", "insects"),
    "lungfish": ("swamps", "snails"),
    "bowfin": ("swamps", "small fish"),
    "anglerfish": ("the deep sea", "small fish"),
    "viperfish": ("the deep sea", "small fish"),
    "lanternfish": ("the deep sea", "plankton"),
    "gulper eel": ("the deep sea", "shrimp"),
    "blobfish": ("the deep sea", "crabs"),
    "oarfish": ("the deep sea", "krill"),
    "garibaldi": ("kelp forests", "sponges"),
    "kelp bass": ("kelp forests", "small fish"),
    "sheephead": ("kelp forests", "sea urchins"),
    "opaleye": ("kelp forests", "algae"),
    "cod": ("cold seas", "shrimp"),
    "herring": ("cold seas", "plankton"),
    "haddock": ("cold seas", "worms"),
    "capelin": ("cold seas", "krill"),
    "Greenland shark": ("cold seas", "seals"),
    "mullet": ("estuaries", "algae"),
    "red drum": ("estuaries", "crabs"),
    "flounder": ("estuaries", "shrimp"),
}

COUNTRIES = list(CAPITALS)
HABITATS = sorted({h for h, _ in FISH.values()})
DIETS = sorted({d for _, d in FISH.values()})
FAMILIES = ("capital", "arith", "word", "fish", "table")


# ---------------------------------------------------------------------------------------------------
# Text helpers


def _norm(text):
    """Lowercase, one space between words: the form every checker compares in."""
    return re.sub(r"\s+", " ", text.lower()).strip()


def _strip_the(phrase):
    return phrase[4:] if phrase.lower().startswith("the ") else phrase


def _phrase_regex(phrases):
    """One regex matching any of the phrases as whole words, longest first (so "kuwait city" wins over a
    shorter phrase that it contains). Lowercase input expected."""
    alts = sorted({_norm(_strip_the(p)) for p in phrases}, key=len, reverse=True)
    body = "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alts)
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")


_CAPITAL_RE = _phrase_regex(CAPITALS.values())
_COUNTRY_RE = _phrase_regex(CAPITALS)
_HABITAT_RE = _phrase_regex(HABITATS)
_DIET_RE = _phrase_regex(DIETS)


def _found(regex, text):
    return {re.sub(r"\s+", " ", m) for m in regex.findall(text)}


_NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
# "minus 22" / "negative 22" / "-22" / "1,998" / "twelve". A "-" counts as a sign only when it touches the
# digits, so in "45 - 67 = -22" the operand reads 67 and the result -22.
_NUMBER_RE = re.compile(
    r"(?:(?<![a-z])(?P<negword>minus|negative)\s+)?(?P<sign>-)?"
    r"(?P<digits>\d{1,3}(?:,\d{3})+(?!\d)|\d+)"
    r"|(?<![a-z])(?P<word>" + "|".join(_NUMBER_WORDS) + r")(?![a-z])"
)


def numbers_in(text):
    """Every integer written in text, in order (digits, with sign, or a number word up to twenty)."""
    out = []
    for m in _NUMBER_RE.finditer(text.lower()):
        if m.group("word"):
            out.append(_NUMBER_WORDS[m.group("word")])
        else:
            value = int(m.group("digits").replace(",", ""))
            out.append(-value if (m.group("sign") or m.group("negword")) else value)
    return out


def _last_number(text):
    nums = numbers_in(text)
    return nums[-1] if nums else None


# ---------------------------------------------------------------------------------------------------
# Per-family scorers. Each takes the record's answer and the response (pipe leaks are handled in score()).


def _score_capital(answer, response):
    text = _norm(response)
    if "capital" in answer:  # "What is the capital of France?" -> the city, and no other capital
        return _found(_CAPITAL_RE, text) == {_norm(answer["capital"])}
    # "Which country has Paris as its capital?" -> the country, and no other country. Capitals are
    # blanked first, so "Mexico City is the capital of Mexico" reads one country, not two mentions.
    return _found(_COUNTRY_RE, _CAPITAL_RE.sub(" ", text)) == {_norm(_strip_the(answer["country"]))}


def _score_arith(answer, response):
    # the last integer is the result: the operands echoed back ("23 + 45 = 68") come before it
    return _last_number(response) == int(answer)


# a run of single letters with one kind of separator: "c-a-t", "c, a, t" or "c a t". One kind per run, so a
# trailing "..., I think" does not glue an "i" onto "c-a-t"
_SPELLED_RE = re.compile(
    r"(?<![a-z])[a-z](?:(?:-[a-z])+|(?:,\s*[a-z])+|(?:\s+[a-z])+)(?![a-z])"
)


def _score_word(answer, response):
    op, word = answer["op"], answer["word"].lower()
    text = response.lower()
    if op == "count":
        return _last_number(text) == int(answer["value"])
    if op == "spell":
        runs = _SPELLED_RE.findall(text)  # the last spelled-out run is the answer
        return bool(runs) and re.sub(r"[^a-z]", "", runs[-1]) == word
    if op == "reverse":
        tokens = re.findall(r"[a-z]+", text)
        expected = answer["value"].lower()
        # a wrong attempt at the reversal (another arrangement of the same letters) next to the right one
        # is a hedge, not an answer; the original word itself may of course be echoed
        wrong = [t for t in tokens if sorted(t) == sorted(word) and t not in (word, expected)]
        return expected in tokens and not wrong
    raise ValueError(f"unknown word op {op!r}")


def _score_fish(answer, response):
    text = _norm(response)
    ok = True
    if "habitat" in answer:
        ok &= _found(_HABITAT_RE, text) == {_norm(_strip_the(answer["habitat"]))}
    if "diet" in answer:
        ok &= _found(_DIET_RE, text) == {_norm(answer["diet"])}
    return ok


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
    text = _norm(text).rstrip(".").strip()
    text = re.sub(r"\s*([+\-=])\s*", r"\1", text)
    return _strip_the(text)


def _score_table(answer, response):
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


_SCORERS = {
    "capital": _score_capital,
    "arith": _score_arith,
    "word": _score_word,
    "fish": _score_fish,
    "table": _score_table,
}


# ---------------------------------------------------------------------------------------------------
# Public API


def score(record, response):
    """True if response answers record right, False if not, None if the record has no known family."""
    scorer = _SCORERS.get(record.get("task"))
    if scorer is None:
        return None
    if record["task"] != "table" and "|" in response:
        return False
    return bool(scorer(record["answer"], response))


def has_pipe_leak(record, response):
    """A "|" in an answer that is not a table (records without a family count as non-table)."""
    return record.get("task") != "table" and "|" in response


def _se(p, n):
    return math.sqrt(p * (1.0 - p) / n) if n else float("nan")


def eval_metrics(records, responses, ended_with_eos):
    """
    Metrics over one set of generations (all values floats):
      accuracy, accuracy_se        over records with a known family (absent when there is none)
      acc/<task>, se/<task>, n/<task>   per family present
      pipe_rate        share of non-table answers containing "|"
      pipes_per_kchar  "|" characters per 1000 characters of non-table answers
      mean_len         mean characters per response
      eos_rate         share of responses that ended with EOS (not cut at max_new_tokens)
      distinct_2       distinct / total whitespace-word bigrams over all responses (0 if none)
      n                number of responses
    Standard errors are binomial: sqrt(p (1 - p) / n).
    """
    if not (len(records) == len(responses) == len(ended_with_eos)):
        raise ValueError(
            f"lengths differ: {len(records)} records, {len(responses)} responses, "
            f"{len(ended_with_eos)} ended_with_eos flags"
        )
    out = {"n": float(len(responses))}

    by_task = {}
    for rec, resp in zip(records, responses):
        s = score(rec, resp)
        if s is not None:
            by_task.setdefault(rec["task"], []).append(s)
    scored = [s for task in by_task.values() for s in task]
    if scored:
        p = sum(scored) / len(scored)
        out["accuracy"], out["accuracy_se"] = p, _se(p, len(scored))
    for task in sorted(by_task, key=lambda t: FAMILIES.index(t)):
        s = by_task[task]
        p = sum(s) / len(s)
        out[f"acc/{task}"], out[f"se/{task}"], out[f"n/{task}"] = p, _se(p, len(s)), float(len(s))

    prose = [resp for rec, resp in zip(records, responses) if rec.get("task") != "table"]
    out["pipe_rate"] = sum("|" in r for r in prose) / len(prose) if prose else 0.0
    prose_chars = sum(len(r) for r in prose)
    out["pipes_per_kchar"] = 1000.0 * sum(r.count("|") for r in prose) / prose_chars if prose_chars else 0.0
    out["mean_len"] = sum(len(r) for r in responses) / len(responses) if responses else 0.0
    out["eos_rate"] = sum(bool(e) for e in ended_with_eos) / len(ended_with_eos) if ended_with_eos else 0.0

    bigrams = [b for r in responses for b in zip(r.split(), r.split()[1:])]
    out["distinct_2"] = len(set(bigrams)) / len(bigrams) if bigrams else 0.0
    return out
