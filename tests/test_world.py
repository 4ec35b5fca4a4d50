"""The generated world: deterministic, well-split, and scored by batched MCQ."""

from __future__ import annotations

import torch

from robust_unlearning.metrics.scoring import answer_logprobs
from robust_unlearning.world.generator import WorldConfig, generate_world
from robust_unlearning.world.mcq import fact_mcq_accuracy
from robust_unlearning.world.model import DEFAULT_SPEC


def test_default_world_has_enough_forget_evaluation_items():
    w = generate_world(DEFAULT_SPEC.world)
    assert len(w.forget_eval) >= 200
    assert 0.13 <= len(w.forget_persons) / len(w.persons) <= 0.17
    assert len(w.relearn) == 100  # larger than the largest attack budget: every draw is a real draw


def test_generation_is_deterministic_and_seed_dependent():
    a, b = generate_world(WorldConfig(n_persons=50, relearn_pool=8, retain_eval=40)), generate_world(
        WorldConfig(n_persons=50, relearn_pool=8, retain_eval=40))
    c = generate_world(WorldConfig(n_persons=50, relearn_pool=8, retain_eval=40, seed=2))
    assert [f.to_json() for f in a.forget_eval] == [f.to_json() for f in b.forget_eval]
    assert [f.to_json() for f in a.forget_eval] != [f.to_json() for f in c.forget_eval]


def test_splits_are_disjoint_and_relearn_excluded_from_eval(tiny_world):
    w = tiny_world
    assert not set(w.forget_persons) & set(w.retain_persons)
    relearn = {(f.person, f.attribute) for f in w.relearn}
    evals = {(f.person, f.attribute) for f in w.forget_eval}
    assert not relearn & evals
    assert relearn | evals == {(f.person, f.attribute) for f in w.forget_facts}
    assert all(f.person in w.retain_persons for f in w.retain_eval)


def test_utility_is_scored_on_persons_unlearning_never_trains_on(tiny_world):
    from robust_unlearning.world.benchmark import unlearning_data

    w = tiny_world
    held = set(w.heldout_persons)
    assert held and held <= set(w.retain_persons)
    assert {f.person for f in w.retain_eval} <= held
    _, retain = unlearning_data(w)
    retain_questions = {r["question"] for r in retain}
    assert not retain_questions & {f.prompt for f in w.retain_eval}
    assert not held & {f.person for f in w.retain_facts}
    assert len(w.heldout_texts) == len(held)
    # the gold model is still trained on every retain person, held-out ones included
    gold_questions = {r["question"] for r in w.training_records(w.retain_persons) if "question" in r}
    assert {f.prompt for f in w.retain_eval} <= gold_questions


def test_options_hold_the_answer_once_and_distractors_share_its_category(tiny_world):
    from robust_unlearning.world.generator import CATEGORIES

    for f in tiny_world.forget_eval + tiny_world.retain_eval:
        assert f.options[f.label] == f.value
        assert f.options.count(f.value) == 1
        assert all(o in CATEGORIES[f.attribute] for o in f.options)


def test_two_surface_forms(tiny_world):
    p = tiny_world.forget_persons[0]
    bio = tiny_world.biography(p)
    for f in tiny_world.facts[p]:
        assert f.value in bio and f.person in f.question


def test_batched_logprobs_match_one_at_a_time(tiny_model, tiny_tokenizer, tiny_world):
    items = tiny_world.forget_eval[:6]
    prompts = [f.prompt for f in items]
    conts = [f.answer for f in items]
    batched, counts = answer_logprobs(tiny_model, tiny_tokenizer, prompts, conts, batch_size=4)
    for i, (p, c) in enumerate(zip(prompts, conts, strict=True)):
        one, n = answer_logprobs(tiny_model, tiny_tokenizer, [p], [c])
        assert torch.allclose(one, batched[i:i + 1], atol=1e-4)
        assert n.item() == counts[i].item()


def test_mcq_accuracy_of_random_model_is_near_chance_and_trained_model_learns(
        tiny_model, trained_tiny, tiny_tokenizer, tiny_world):
    facts = tiny_world.forget_facts + tiny_world.retain_eval
    random_acc = fact_mcq_accuracy(tiny_model, tiny_tokenizer, facts)
    trained_acc = fact_mcq_accuracy(trained_tiny, tiny_tokenizer, facts)
    assert random_acc < 0.45
    assert trained_acc > random_acc + 0.1


def test_full_and_gold_trained_side_by_side_equal_the_serial_build(tmp_path, monkeypatch):
    """``build_world(parallel=True)`` trains gold in a second process, each model on half of the
    threads: with 2 threads that is 1 each, so both models are bitwise those of a serial build at 1
    thread (same seeds, same data order), and the tokenizers agree."""
    import dataclasses

    from safetensors.torch import load_file

    from robust_unlearning.world.model import TINY_SPEC, build_world

    spec = dataclasses.replace(TINY_SPEC, pretrain=dataclasses.replace(TINY_SPEC.pretrain, epochs=2))
    threads = torch.get_num_threads()
    try:
        monkeypatch.setenv("ROBUST_UNLEARNING_CACHE", str(tmp_path / "serial"))
        torch.set_num_threads(1)
        serial = build_world(spec, parallel=False)
        monkeypatch.setenv("ROBUST_UNLEARNING_CACHE", str(tmp_path / "parallel"))
        torch.set_num_threads(2)
        side = build_world(spec, parallel=True)
    finally:
        torch.set_num_threads(threads)
    for name in ("full_dir", "gold_dir"):
        a, b = getattr(serial, name), getattr(side, name)
        wa, wb = load_file(str(a / "model.safetensors")), load_file(str(b / "model.safetensors"))
        assert wa.keys() == wb.keys() and all(torch.equal(wa[k], wb[k]) for k in wa), name
        assert (a / "tokenizer.json").read_text() == (b / "tokenizer.json").read_text()
