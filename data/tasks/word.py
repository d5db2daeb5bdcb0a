"""
Word games: reverse a word, spell it letter by letter ("c-a-t" or "c a t", fixed by the prompt template),
count its letters; common words of 3 to 12 letters (short 3-4, medium 5-7, long 8+), capped at
WORD_MAX_LEN. Half the reverse and count answers are worked ("c-a-t backwards is t-a-c, so tac."): one
letter per token is what a BPE model can operate on. Eval: half unseen (word, op) combinations (15% of
combinations are held out of train), half seen combinations asked with held-out templates.

Answer: {"op", "word", "value"}, value being the reversed word, the word, or its length.
"""

import re

from data.tasks.common import cap, last_number, make_record

NAME = "word"

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


def _length_class(word):
    return "short" if len(word) <= 4 else "medium" if len(word) <= 7 else "long"


def word_record(rng, word, op, templates, tag):
    tmpl = rng.choice(templates[op])
    if op == "spell":
        tmpl, sep = tmpl
    prompt = tmpl.format(w=word)
    fill = {"w": word, "W": cap(word), "r": word[::-1], "n": len(word), "d": "-".join(word),
            "rd": "-".join(word[::-1])}
    if op == "spell":
        fill["s"] = sep.join(word)
    value = {"reverse": word[::-1], "spell": word, "count": len(word)}[op]
    response = rng.choice(WORD_RESP[op]).format(**fill)
    return make_record(prompt, response, NAME, f"{op}_{_length_class(word)}{tag}", {"op": op, "word": word, "value": value})


# ---------------------------------------------------------------------------------------------------
# Checker

# a run of single letters with one kind of separator: "c-a-t", "c, a, t" or "c a t". One kind per run, so a
# trailing "..., I think" does not glue an "i" onto "c-a-t"
_SPELLED_RE = re.compile(
    r"(?<![a-z])[a-z](?:(?:-[a-z])+|(?:,\s*[a-z])+|(?:\s+[a-z])+)(?![a-z])"
)


def check(answer, response):
    op, word = answer["op"], answer["word"].lower()
    text = response.lower()
    if op == "count":
        return last_number(text) == int(answer["value"])
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
