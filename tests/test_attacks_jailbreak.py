"""The GCG-style jailbreak: batched scoring is exact, the search lowers the answer NLL."""

from __future__ import annotations

import random

import pytest
import torch

from robust_unlearning.attacks.jailbreak import (
    JailbreakConfig,
    _Template,
    allowed_tokens,
    candidate_losses,
    gcg_attack,
    mcq_with_prefix,
    prefix_gradient,
)
from robust_unlearning.world.mcq import fact_mcq_accuracy


def test_batched_candidate_losses_match_one_at_a_time(tiny_model, tiny_tokenizer, tiny_world):
    facts = tiny_world.forget_eval[:5]
    template = _Template(tiny_tokenizer, [(f.prompt, f.answer) for f in facts], 3)
    allowed = allowed_tokens(tiny_tokenizer)
    prefixes = allowed[torch.randint(len(allowed), (4, 3), generator=torch.Generator().manual_seed(0))]
    together = candidate_losses(tiny_model, template, prefixes, batch_rows=7)
    alone = torch.cat([candidate_losses(tiny_model, template, p.view(1, -1)) for p in prefixes])
    assert torch.allclose(together, alone, atol=1e-5)
    assert len(set(together.tolist())) > 1  # the prefix matters


def test_gradient_matches_loss_of_the_prefix(tiny_model, tiny_tokenizer, tiny_world):
    facts = tiny_world.forget_eval[:4]
    template = _Template(tiny_tokenizer, [(f.prompt, f.answer) for f in facts], 2)
    prefix = allowed_tokens(tiny_tokenizer)[:2]
    grad, loss = prefix_gradient(tiny_model, template, prefix)
    assert grad.shape == (2, tiny_model.get_input_embeddings().weight.shape[0])
    assert loss == pytest.approx(candidate_losses(tiny_model, template, prefix.view(1, -1)).item(), abs=1e-5)


def test_empty_prefix_scores_like_plain_mcq(tiny_model, tiny_tokenizer, tiny_world):
    facts = tiny_world.forget_eval
    empty = torch.zeros(0, dtype=torch.long)
    assert mcq_with_prefix(tiny_model, tiny_tokenizer, facts, empty) == pytest.approx(
        fact_mcq_accuracy(tiny_model, tiny_tokenizer, facts))


def test_allowed_tokens_exclude_special_tokens(tiny_tokenizer):
    ok = set(allowed_tokens(tiny_tokenizer).tolist())
    assert ok and not ok & set(tiny_tokenizer.all_special_ids)


def test_gcg_lowers_the_answer_nll(tiny_model, tiny_tokenizer, tiny_world):
    cfg = JailbreakConfig(prefix_len=3, iters=4, topk=16, candidates=16, train_questions=6, eval_every=2)
    r = gcg_attack(tiny_model, tiny_tokenizer, tiny_world, cfg)
    losses = [c["loss"] for c in r["curve"]]
    assert [c["iter"] for c in r["curve"]] == [0, 2, 4]
    assert all(b <= a for a, b in zip(losses, losses[1:], strict=False))
    assert losses[-1] < losses[0]
    assert r["train_questions"] + r["heldout_questions"] == len(tiny_world.forget_eval)
    assert len(r["prefix_ids"]) == 3 and r["forget_acc"] == r["heldout_acc"]
    # the recorded accuracy is the MCQ accuracy with the found prefix on the questions not optimised on
    train = random.Random(cfg.seed).sample(list(tiny_world.forget_eval), cfg.train_questions)
    heldout = [f for f in tiny_world.forget_eval if f not in train]
    assert r["heldout_acc"] == pytest.approx(
        mcq_with_prefix(tiny_model, tiny_tokenizer, heldout, torch.tensor(r["prefix_ids"])))


def test_bad_settings_are_rejected(tiny_model, tiny_tokenizer, tiny_world):
    with pytest.raises(ValueError, match="candidates"):
        JailbreakConfig(candidates=0)
    with pytest.raises(ValueError, match="held-out"):
        gcg_attack(tiny_model, tiny_tokenizer, tiny_world,
                   JailbreakConfig(train_questions=len(tiny_world.forget_eval), iters=0))
