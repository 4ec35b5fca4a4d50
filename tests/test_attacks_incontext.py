"""The in-context attack: what goes into the prompt, and the rows it records."""

from __future__ import annotations

import random

import pytest

from robust_unlearning.attacks.incontext import InContextConfig, context_facts, incontext_attack, with_context
from robust_unlearning.world.mcq import fact_mcq_accuracy


def test_context_never_states_the_asked_fact(tiny_world):
    rng = random.Random(0)
    for fact in tiny_world.forget_eval:
        for source in ("person", "relearn", "retain"):
            ctx = context_facts(tiny_world, fact, source, 3, rng)
            assert len(ctx) == 3
            assert all((c.person, c.attribute) != (fact.person, fact.attribute) for c in ctx)
        assert all(c.person == fact.person for c in context_facts(tiny_world, fact, "person", 3, rng))
        assert all(c in tiny_world.relearn for c in context_facts(tiny_world, fact, "relearn", 3, rng))
        retain = context_facts(tiny_world, fact, "retain", 3, rng)
        assert all(c.person in tiny_world.retain_persons for c in retain)


def test_relearn_context_prefers_the_same_person(tiny_world):
    fact = next(f for f in tiny_world.forget_eval if any(r.person == f.person for r in tiny_world.relearn))
    first = context_facts(tiny_world, fact, "relearn", 1, random.Random(0))[0]
    assert first.person == fact.person


def test_prompts_carry_the_context_before_the_question(tiny_world):
    items = with_context(tiny_world, tiny_world.forget_eval[:3], "person", 2, seed=0)
    for it, f in zip(items, tiny_world.forget_eval[:3], strict=True):
        ctx, question = it.prompt.split("\n", 1)
        assert question == f.prompt and f.person in ctx and ctx.count(".") == 2
        assert it.options == f.options and it.label == f.label


def test_rows_and_zero_facts_is_the_plain_question(tiny_model, tiny_tokenizer, tiny_world):
    rows = incontext_attack(tiny_model, tiny_tokenizer, tiny_world,
                            InContextConfig(facts=[2, 0], sources=["person", "retain"]))
    assert [(r["source"], r["facts"]) for r in rows] == [("person", 0), ("person", 2),
                                                         ("retain", 0), ("retain", 2)]
    plain = fact_mcq_accuracy(tiny_model, tiny_tokenizer, tiny_world.forget_eval)
    assert rows[0]["forget_acc"] == pytest.approx(plain) and rows[2]["forget_acc"] == pytest.approx(plain)


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="source"):
        InContextConfig(sources=["wiki"])
    with pytest.raises(ValueError, match=">= 0"):
        InContextConfig(facts=[-1])
