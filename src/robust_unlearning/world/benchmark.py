"""The world as a benchmark: unlearning data and evaluation.

Unlearning data: the forget persons' QA pairs (as TOFU's forget split) and the retain persons' QA
pairs, held-out persons excluded; ``form="bio"`` or ``"both"`` adds or swaps in the biographies.

Evaluation (:func:`evaluate`):

- ``forget_acc``: 4-option MCQ accuracy (chance 0.25) on ``forget_eval``, forget facts the relearning
  attacker never sees; ``forget_probs`` (with ``details``): per item, the probability of the correct
  option among the four (softmax of the options' summed log-likelihoods), the distribution the
  knowledge measure compares with gold's (:mod:`robust_unlearning.metrics.knowledge`);
- held-out utility: ``retain_acc`` on ``retain_eval`` (facts of held-out persons, never in the
  unlearning retain set) and ``utility_nll``, the per-token NLL of the held-out persons' biographies
  (general language the unlearning never trained on);
- ``retain_train_acc``: MCQ accuracy on up to 200 facts of the unlearning retain set itself, to show
  how much of the utility a method buys by fitting what it trains on;
- with ``generation``: greedy exact match on both evaluation sets.
"""

from __future__ import annotations

from typing import Literal

from .generator import Fact, World
from .mcq import exact_match, fact_mcq_scores, text_nll

RETAIN_TRAIN_EVAL = 200


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


def retain_train_sample(world: World) -> list[Fact]:
    facts = world.retain_facts
    step = max(1, len(facts) // RETAIN_TRAIN_EVAL)
    return facts[::step][:RETAIN_TRAIN_EVAL]


def evaluate(model, tokenizer, world: World, generation: bool = False, details: bool = False,
             utility: bool = True) -> dict:
    """``utility=False`` leaves out ``utility_nll`` and ``retain_train_acc`` (the relearning attack
    scores every checkpoint and needs only the forget and held-out retain accuracy)."""
    forget_acc, forget_probs = fact_mcq_scores(model, tokenizer, world.forget_eval)
    retain_acc = fact_mcq_scores(model, tokenizer, world.retain_eval)[0]
    out: dict = {"forget_acc": forget_acc, "retain_acc": retain_acc}
    if utility:
        if world.heldout_persons:
            out["utility_nll"] = text_nll(model, tokenizer, world.heldout_texts)
        out["retain_train_acc"] = fact_mcq_scores(model, tokenizer, retain_train_sample(world))[0]
    if details:
        out["forget_probs"] = forget_probs
    if generation:
        out["forget_em"] = exact_match(model, tokenizer, world.forget_eval)
        out["retain_em"] = exact_match(model, tokenizer, world.retain_eval)
    return out
