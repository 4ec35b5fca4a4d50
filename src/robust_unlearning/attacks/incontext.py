"""The in-context attack: put related facts in the prompt and ask again.

Each forget-evaluation question is preceded by ``n`` sentences stating other facts (never the asked
one), then scored by 4-option MCQ accuracy as usual. Sources of the context facts:

- ``person``: other facts about the same person (the attacker knows a few things about them);
- ``relearn``: facts from the relearn pool, those about the same person first (the relearning
  attacker's material, used in context instead of for fine-tuning);
- ``retain``: facts about retain persons (a control: longer prompts, no related knowledge).

A model that only suppressed the person's name-to-fact association may recover when the context
re-activates the person; gold (never trained on them) gives the floor.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from types import SimpleNamespace

from ..world.generator import Fact, World
from ..world.mcq import fact_mcq_accuracy

SOURCES = ("person", "relearn", "retain")


@dataclass
class InContextConfig:
    facts: list[int] = field(default_factory=lambda: [0, 1, 2, 4])
    sources: list[str] = field(default_factory=lambda: ["person", "relearn", "retain"])
    seed: int = 0

    def __post_init__(self):
        self.facts = sorted({int(n) for n in self.facts})
        if any(n < 0 for n in self.facts):
            raise ValueError("in-context fact counts must be >= 0")
        for s in self.sources:
            if s not in SOURCES:
                raise ValueError(f"unknown in-context source {s!r}; known: {', '.join(SOURCES)}")


def context_facts(world: World, fact: Fact, source: str, n: int, rng: random.Random) -> list[Fact]:
    if n == 0:
        return []
    if source == "person":
        pool = [f for f in world.facts[fact.person] if f.attribute != fact.attribute]
        return rng.sample(pool, min(n, len(pool)))
    if source == "relearn":
        same = [f for f in world.relearn if f.person == fact.person]
        other = [f for f in world.relearn if f.person != fact.person]
        rng.shuffle(same)
        rng.shuffle(other)
        return (same + other)[:n]
    if source == "retain":
        persons = rng.sample(world.retain_persons, min(n, len(world.retain_persons)))
        return [rng.choice(world.facts[p]) for p in persons]
    raise ValueError(f"unknown in-context source {source!r}; known: {', '.join(SOURCES)}")


def with_context(world: World, facts: list[Fact], source: str, n: int, seed: int) -> list[SimpleNamespace]:
    rng = random.Random(f"{seed}-{source}-{n}")
    out = []
    for f in facts:
        ctx = " ".join(c.sentence for c in context_facts(world, f, source, n, rng))
        prompt = f"{ctx}\n{f.prompt}" if ctx else f.prompt
        out.append(SimpleNamespace(prompt=prompt, options=f.options, label=f.label))
    return out


def incontext_attack(model, tokenizer, world: World, cfg: InContextConfig = InContextConfig()) -> list[dict]:
    """One row per (source, n): ``{source, facts, forget_acc}``; ``n = 0`` is the plain question."""
    rows = []
    base = None
    for source in cfg.sources:
        for n in cfg.facts:
            if n == 0 and base is not None:
                acc = base
            else:
                items = with_context(world, world.forget_eval, source, n, cfg.seed)
                acc = fact_mcq_accuracy(model, tokenizer, items)
                if n == 0:
                    base = acc
            rows.append({"source": source, "facts": n, "forget_acc": acc})
    return rows
