"""
Text helpers that several families share: the generators' record shape and the checkers' reading of a
response (normal form, whole-phrase matching, the integers written in a text). Pure Python.
"""

import re

# ---------------------------------------------------------------------------------------------------
# Generating


def make_record(prompt, response, task, sub, answer):
    """One JSONL record; `task` names the family whose checker scores `answer`."""
    return {"prompt": prompt, "response": response, "task": task, "sub": sub, "answer": answer}


def cap(s):
    """First letter upper case, the rest untouched ("the Netherlands" -> "The Netherlands")."""
    return s[:1].upper() + s[1:]


# ---------------------------------------------------------------------------------------------------
# Checking


def norm(text):
    """Lowercase, one space between words: the form every checker compares in."""
    return re.sub(r"\s+", " ", text.lower()).strip()


def strip_the(phrase):
    return phrase[4:] if phrase.lower().startswith("the ") else phrase


def phrase_regex(phrases):
    """One regex matching any of the phrases as whole words, longest first (so "kuwait city" wins over a
    shorter phrase that it contains). Lowercase input expected."""
    alts = sorted({norm(strip_the(p)) for p in phrases}, key=len, reverse=True)
    body = "|".join(re.escape(a).replace(r"\ ", r"\s+") for a in alts)
    return re.compile(rf"(?<![a-z0-9])(?:{body})(?![a-z0-9])")


def found(regex, text):
    """The distinct phrases of a phrase_regex in text, one space between words."""
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


def last_number(text):
    """The last integer in text, or None: an answer comes after any numbers the response echoes back."""
    nums = numbers_in(text)
    return nums[-1] if nums else None
