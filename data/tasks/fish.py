"""
Where 58 fish live and what they eat: "habitat", "diet", or "both" in one question (the hardest). The
facts are all in train; eval uses held-out prompt templates (40/40/20%).

Answer: {"habitat"}, {"diet"} or both. The checker wants the expected habitat (food) and no other one: it
knows every habitat and every food of the closed vocabularies below.
"""

from data.tasks.common import cap, found, make_record, norm, phrase_regex, strip_the

NAME = "fish"

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
HABITATS = sorted({h for h, _ in FISH.values()})
DIETS = sorted({d for _, d in FISH.values()})

# ---------------------------------------------------------------------------------------------------
# Templates. A prompt template is train-only or eval-only (held out); response templates are shared.

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


def fish_record(rng, fish, q, templates):
    h, d = FISH[fish]
    fill = {"f": fish, "h": h, "H": cap(h), "d": d, "D": cap(d)}
    prompt = rng.choice(templates[q]).format(**fill)
    answer = {"habitat": {"habitat": h}, "diet": {"diet": d}, "both": {"habitat": h, "diet": d}}[q]
    return make_record(prompt, rng.choice(FISH_RESP[q]).format(**fill), NAME, q, answer)


# ---------------------------------------------------------------------------------------------------
# Checker

_HABITAT_RE = phrase_regex(HABITATS)
_DIET_RE = phrase_regex(DIETS)


def check(answer, response):
    text = norm(response)
    ok = True
    if "habitat" in answer:
        ok &= found(_HABITAT_RE, text) == {norm(strip_the(answer["habitat"]))}
    if "diet" in answer:
        ok &= found(_DIET_RE, text) == {norm(answer["diet"])}
    return ok
