"""The world as a benchmark: unlearning data and evaluation.

Unlearning data: the forget persons' QA pairs (as TOFU's forget split) and the retain persons' QA
pairs; ``form="bio"`` or ``"both"`` adds or swaps in the biographies. Evaluation: 4-option MCQ
accuracy (chance 0.25) and greedy exact match on ``forget_eval`` (forget facts the relearning
attacker never sees) and on ``retain_eval`` (utility).
"""

from __future__ import annotations

from typing import Literal

from ..eval.mcq import exact_match, mcq_accuracy
from .generator import Fact, World


def qa_records(facts: list[Fact]) -> list[dict]:
    return [{"question": f.prompt, "answer": f.answer} for f in facts]


def unlearning_data(world: World, form: Literal["qa", "bio", "both"] = "qa") -> tuple[list[dict], list[dict]]:
    forget, retain = [], []
    if form in ("qa", "both"):
        forget += qa_records(world.forget_facts)
        retain += qa_records(world.retain_facts)
    if form in ("bio", "both"):
        forget += [{"text": world.biography(p)} for p in world.forget_persons]
        retain += [{"text": world.biography(p)} for p in world.retain_persons]
    return forget, retain


def evaluate(model, tokenizer, world: World, generation: bool = False) -> dict[str, float]:
    out = {
        "forget_acc": mcq_accuracy(model, tokenizer, world.forget_eval),
        "retain_acc": mcq_accuracy(model, tokenizer, world.retain_eval),
    }
    if generation:
        out["forget_em"] = exact_match(model, tokenizer, world.forget_eval)
        out["retain_em"] = exact_match(model, tokenizer, world.retain_eval)
    return out
