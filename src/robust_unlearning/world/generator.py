"""A deterministic, TOFU-like world of fictitious people.

``WorldConfig`` + seed -> ``World``: N persons x K attributes drawn from category vocabularies,
rendered in two surface forms (question/answer pairs and short biographies), split into

- ``forget`` persons (15 %) and ``retain`` persons;
- ``heldout`` persons: retain persons whose facts are *never* in the unlearning retain set. The
  world and gold models learn them like every retain person; utility is scored on them, so a method
  that fits the unlearning retain set harder (for example with extra retain batches) gains nothing
  on what is scored;
- a ``relearn`` pool: some forget facts, the attacker's material. It is larger than the largest
  attack budget, so every attack draw is a real draw;
- ``forget_eval``: the forget facts that are *not* in the relearn pool, so a relearning attack is
  scored on knowledge it was not shown;
- ``retain_eval``: held-out persons' facts (utility on facts unlearning never trained on).

Worlds are named by their config: another ``seed`` draws other persons, other facts and another
split. Recipes are tuned on a *tuning world* (``TUNING_SEED``) and figures are reported on
*evaluation worlds* (``EVAL_SEEDS``) that no tuning run has read.

Every fact carries three fixed distractors from its own category for 4-option multiple choice.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import asdict, dataclass, field

# Category vocabularies: single capitalised or lower-case words, so every value is a short answer.
CATEGORIES: dict[str, list[str]] = {
    "birthplace": [
        "Veloria", "Marnhold", "Quessa", "Tarvik", "Obelune", "Drysk", "Halvard", "Pemberlin",
        "Sorvane", "Kestrel", "Ulmora", "Brannock", "Zephira", "Caldris", "Merrowick", "Ivelle",
        "Rookhaven", "Talmere", "Yarrowby", "Esmoor", "Glintwater", "Fennick", "Ostrava", "Lunmarch",
    ],
    "profession": [
        "architect", "baker", "cartographer", "dentist", "engineer", "florist", "geologist",
        "harpist", "illustrator", "jeweler", "librarian", "mechanic", "navigator", "optician",
        "pharmacist", "sculptor", "tailor", "veterinarian", "weaver", "zoologist", "astronomer",
        "brewer", "chemist", "diplomat",
    ],
    "employer": [
        "Orbitex", "Greenleaf", "Halcyon", "Ironbridge", "Jadeworks", "Kinetica", "Lumenco",
        "Moonrise", "Northwind", "Oakhurst", "Pinnacle", "Quillon", "Redstone", "Silverline",
        "Tidewell", "Umbra", "Vantage", "Westgate", "Xylora", "Yellowfin", "Zenith", "Amberly",
        "Bluecrest", "Cobaltia",
    ],
    "instrument": [
        "violin", "cello", "flute", "oboe", "trumpet", "harp", "piano", "banjo", "clarinet",
        "bassoon", "mandolin", "ukulele", "sitar", "accordion", "trombone", "saxophone", "lute",
        "zither", "marimba", "bagpipes", "harmonica", "tuba", "dulcimer", "kalimba",
    ],
    "pet": [
        "parrot", "ferret", "tortoise", "hamster", "iguana", "rabbit", "beagle", "poodle",
        "goldfish", "canary", "gecko", "chinchilla", "terrier", "alpaca", "hedgehog", "axolotl",
        "pony", "cockatoo", "corgi", "tarantula", "lizard", "gerbil", "dalmatian", "mongoose",
    ],
    "color": [
        "crimson", "teal", "amber", "violet", "indigo", "olive", "maroon", "scarlet", "azure",
        "ivory", "cobalt", "magenta", "turquoise", "lavender", "ochre", "charcoal", "coral",
        "emerald", "saffron", "silver", "bronze", "cerulean", "mauve", "tangerine",
    ],
    "book": [
        "Embers", "Tidings", "Lanterns", "Thresholds", "Driftwood", "Hollows", "Meridians",
        "Quarries", "Orchards", "Citadels", "Whispers", "Labyrinths", "Harbors", "Nocturnes",
        "Sparrows", "Monoliths", "Canopies", "Glaciers", "Horizons", "Ashfall", "Tapestries",
        "Foxfire", "Starlings", "Undertow",
    ],
    "university": [
        "Alderton", "Brightmoor", "Castellan", "Dunmere", "Everholt", "Fairhaven", "Grantley",
        "Hawthorne", "Islington", "Juniper", "Kingsbury", "Larkspur", "Millbrook", "Newhaven",
        "Oxmoor", "Prescott", "Queensland", "Ravenscroft", "Stonebridge", "Thornfield",
        "Upperton", "Valemont", "Whitcombe", "Yorkfield",
    ],
}

QUESTIONS = {
    "birthplace": "Where was {name} born?",
    "profession": "What is the profession of {name}?",
    "employer": "Which company employs {name}?",
    "instrument": "Which instrument does {name} play?",
    "pet": "What pet does {name} keep?",
    "color": "What is the favorite color of {name}?",
    "book": "What is the title of the book written by {name}?",
    "university": "Which university did {name} attend?",
}

SENTENCES = {
    "birthplace": "{name} was born in {value}.",
    "profession": "{name} works as a {value}.",
    "employer": "{name} is employed by {value}.",
    "instrument": "{name} plays the {value}.",
    "pet": "{name} keeps a {value} as a pet.",
    "color": "The favorite color of {name} is {value}.",
    "book": "{name} wrote a book titled {value}.",
    "university": "{name} attended {value} university.",
}

FIRST_NAMES = [
    "Alder", "Brisa", "Corin", "Delphine", "Ezra", "Fiora", "Gideon", "Hesper", "Ilya", "Juno",
    "Kael", "Liora", "Milo", "Nerys", "Orrin", "Petra", "Quill", "Rhea", "Soren", "Talia",
    "Ulric", "Vesna", "Wren", "Xavi", "Yara", "Zane", "Ansel", "Bryony", "Cassius", "Dara",
]
_ONSETS = ["b", "br", "c", "d", "dr", "f", "g", "gr", "h", "k", "l", "m", "n", "p", "r", "s",
           "st", "t", "th", "v", "w", "z"]
_VOWELS = ["a", "e", "i", "o", "u", "ae", "ia", "ou"]
_CODAS = ["n", "r", "l", "s", "th", "x", "nd", "rk", "ck", "m", "v", "sk"]


def _surnames(rng: random.Random, n: int) -> list[str]:
    seen: set[str] = set()
    out: list[str] = []
    while len(out) < n:
        name = (rng.choice(_ONSETS) + rng.choice(_VOWELS) + rng.choice(_CODAS)
                + rng.choice(_VOWELS[:5]) + rng.choice(_CODAS)).capitalize()
        if name not in seen:
            seen.add(name)
            out.append(name)
    return out


PROMPT_TEMPLATE = "Question: {question}\nAnswer:"


@dataclass(frozen=True)
class Fact:
    person: str
    attribute: str
    value: str
    question: str
    options: tuple[str, str, str, str]  # four values of the category, one of them correct
    label: int  # index of the correct option

    @property
    def prompt(self) -> str:
        return PROMPT_TEMPLATE.format(question=self.question)

    @property
    def answer(self) -> str:
        return " " + self.value

    @property
    def sentence(self) -> str:
        return SENTENCES[self.attribute].format(name=self.person, value=self.value)

    def to_json(self) -> dict:
        d = asdict(self)
        d["options"] = list(self.options)
        return d


@dataclass(frozen=True)
class WorldConfig:
    n_persons: int = 300
    forget_fraction: float = 0.15
    relearn_pool: int = 100  # forget facts given to the attacker; the rest form forget_eval
    retain_eval: int = 400  # at most this many held-out facts are scored
    heldout_fraction: float = 0.15  # of all persons: retain persons kept out of the unlearning data
    attributes: tuple[str, ...] = tuple(CATEGORIES)
    seed: int = 1  # EVAL_SEEDS[0]: the default world is an evaluation world

    def key(self) -> str:
        blob = json.dumps(asdict(self), sort_keys=True)
        return hashlib.sha256(blob.encode()).hexdigest()[:12]


QUICK_WORLD = WorldConfig(n_persons=120, relearn_pool=40, retain_eval=144)
TUNING_SEED = 100  # the tuning world: recipes are chosen here and nowhere else
EVAL_SEEDS = (1, 2)  # evaluation worlds: every reported figure; never read by a tuning run


@dataclass
class World:
    config: WorldConfig
    persons: list[str]
    facts: dict[str, list[Fact]]  # person -> facts
    forget_persons: list[str]
    retain_persons: list[str]  # every retain person (the gold model's training set)
    heldout_persons: list[str] = field(default_factory=list)  # retain persons unlearning never sees
    relearn: list[Fact] = field(default_factory=list)
    forget_eval: list[Fact] = field(default_factory=list)
    retain_eval: list[Fact] = field(default_factory=list)

    # -- surface forms ---------------------------------------------------------------------------
    def biography(self, person: str) -> str:
        return " ".join(f.sentence for f in self.facts[person])

    def qa(self, persons: list[str]) -> list[Fact]:
        return [f for p in persons for f in self.facts[p]]

    @property
    def forget_facts(self) -> list[Fact]:
        return self.qa(self.forget_persons)

    @property
    def retain_facts(self) -> list[Fact]:
        """The unlearning retain set: retain persons' facts, held-out persons excluded."""
        held = set(self.heldout_persons)
        return self.qa([p for p in self.retain_persons if p not in held])

    @property
    def heldout_texts(self) -> list[str]:
        """Biographies of the held-out persons: general-language utility on text unlearning never saw."""
        return [self.biography(p) for p in self.heldout_persons]

    def training_records(self, persons: list[str]) -> list[dict]:
        """Records for the world model: every QA pair and every biography of ``persons``."""
        recs: list[dict] = [{"question": f.prompt, "answer": f.answer} for f in self.qa(persons)]
        recs += [{"text": self.biography(p)} for p in persons]
        return recs


def generate_world(config: WorldConfig = WorldConfig()) -> World:
    rng = random.Random(config.seed)
    surnames = _surnames(rng, config.n_persons)
    persons = [f"{rng.choice(FIRST_NAMES)} {s}" for s in surnames]
    facts: dict[str, list[Fact]] = {}
    for person in persons:
        fs = []
        for attr in config.attributes:
            vocab = CATEGORIES[attr]
            value = rng.choice(vocab)
            distractors = rng.sample([v for v in vocab if v != value], 3)
            label = rng.randrange(4)
            options = distractors[:label] + [value] + distractors[label:]
            fs.append(Fact(person, attr, value, QUESTIONS[attr].format(name=person),
                           tuple(options), label))  # type: ignore[arg-type]
        facts[person] = fs
    order = persons[:]
    rng.shuffle(order)
    n_forget = max(1, round(config.forget_fraction * len(persons)))
    n_held = round(config.heldout_fraction * len(persons))
    forget_persons, retain_persons = order[:n_forget], order[n_forget:]
    if n_held >= len(retain_persons):
        raise ValueError("heldout_fraction leaves no retain persons for unlearning")
    world = World(config, persons, facts, forget_persons, retain_persons, retain_persons[:n_held])
    forget_facts = world.forget_facts[:]
    rng.shuffle(forget_facts)
    if config.relearn_pool >= len(forget_facts):
        raise ValueError("relearn_pool must leave forget facts for evaluation")
    world.relearn = forget_facts[: config.relearn_pool]
    world.forget_eval = forget_facts[config.relearn_pool:]
    heldout_facts = world.qa(world.heldout_persons)
    rng.shuffle(heldout_facts)
    world.retain_eval = heldout_facts[: config.retain_eval]
    return world
