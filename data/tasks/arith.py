"""
Addition and subtraction at five levels by operand size: 1d (both 0-9), 2d1d, 2d2d, 3d2d, 3d3d (weights
in ARITH_LEVELS); 15% of subtractions beyond 1d go negative. Eval uses (a, op, b) triples never seen in
train (not in arith records, not in the sums tables); 25% of the 200 one-digit triples are reserved for
eval so the easy level is represented there too.

Answer: the result, an int. The checker reads the last integer of the response, so operands echoed back
("23 + 45 = 68") do not count.
"""

from data.tasks.common import last_number, make_record

NAME = "arith"

# (level, weight, range of a, range of b); b is the second operand as written
ARITH_LEVELS = [
    ("1d", 0.50, (0, 9), (0, 9)),
    ("2d1d", 0.33, (10, 99), (0, 9)),
    ("2d2d", 0.12, (10, 99), (10, 99)),
    ("3d2d", 0.04, (100, 999), (10, 99)),
    ("3d3d", 0.01, (100, 999), (100, 999)),
]
LEVEL_WEIGHTS = [(name, w) for name, w, _, _ in ARITH_LEVELS]
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


def draw_triple(rng, level, fresh=lambda t: True):
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


def arith_record(rng, a, op, b, level):
    c = a + b if op == "+" else a - b
    prompt = rng.choice(ARITH_PROMPTS[op]).format(a=a, b=b)
    response = rng.choice(ARITH_RESP[op]).format(a=a, b=b, c=c)
    return make_record(prompt, response, NAME, f"{'add' if op == '+' else 'sub'}_{level}", c)


def check(answer, response):
    # the last integer is the result: the operands echoed back ("23 + 45 = 68") come before it
    return last_number(response) == int(answer)
