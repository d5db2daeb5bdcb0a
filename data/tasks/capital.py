"""
Capital cities of 100 countries. "forward" asks for the city, "reverse" ("Which country has Lima as its
capital?") for the country and is harder. Facts can't be held out (an unseen fact can't be learned), so
eval uses held-out *prompt templates*: 70% forward, 30% reverse.

Answer: {"capital": city} or {"country": country}. The checker wants the expected city (country) and no
other one, in any phrasing: it knows every capital, so "another real capital" is wrong.
"""

from data.tasks.common import cap, found, make_record, norm, phrase_regex, strip_the

NAME = "capital"

# ---------------------------------------------------------------------------------------------------
# The closed world. ASCII spellings only (the tokenizer is a 2048-token BPE trained on this data).
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

# "the" in running text; the answer itself keeps the bare name
THE_COUNTRIES = {"Netherlands", "Philippines", "Czech Republic", "United Arab Emirates", "United Kingdom",
                 "United States"}

# ---------------------------------------------------------------------------------------------------
# Templates. A prompt template is train-only or eval-only (held out); response templates are shared.

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


def country_name(country):
    """The country as it reads in a sentence: "the Netherlands", "France"."""
    return f"the {country}" if country in THE_COUNTRIES else country


def capital_record(rng, country, direction, templates):
    city = CAPITALS[country]
    c = country_name(country)
    fill = {"c": c, "C": cap(c), "x": city, "X": city}
    prompt = rng.choice(templates).format(**fill)
    if direction == "forward":
        return make_record(prompt, rng.choice(CAPITAL_FWD_RESP).format(**fill), NAME, "forward", {"capital": city})
    return make_record(prompt, rng.choice(CAPITAL_REV_RESP).format(**fill), NAME, "reverse", {"country": country})


# ---------------------------------------------------------------------------------------------------
# Checker

_CAPITAL_RE = phrase_regex(CAPITALS.values())
_COUNTRY_RE = phrase_regex(CAPITALS)


def check(answer, response):
    text = norm(response)
    if "capital" in answer:  # "What is the capital of France?" -> the city, and no other capital
        return found(_CAPITAL_RE, text) == {norm(answer["capital"])}
    # "Which country has Paris as its capital?" -> the country, and no other country. Capitals are
    # blanked first, so "Mexico City is the capital of Mexico" reads one country, not two mentions.
    return found(_COUNTRY_RE, _CAPITAL_RE.sub(" ", text)) == {norm(strip_the(answer["country"]))}
