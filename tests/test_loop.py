"""The unlearning loop with every objective, the plain strategy and full fine-tuning."""

from __future__ import annotations

import math

import pytest
import torch

from robust_unlearning.config import build_config
from robust_unlearning.errors import NonFiniteLossError, UnlearnError
from robust_unlearning.loop import unlearn
from robust_unlearning.objectives.base import OBJECTIVES, sequence_nll
from robust_unlearning.data.collate import Collator
from robust_unlearning.world.benchmark import unlearning_data


def _cfg(method, **train):
    return build_config({"method": method, "train": {"steps": 4, "batch_size": 4, "lr": 1e-3, **train}})


def _forget_nll(model, tok, records):
    batch = Collator(tok)(records)
    with torch.no_grad():
        s, n = sequence_nll(model, batch)
    return (s / n).mean().item()


@pytest.mark.parametrize("objective", ["ga", "graddiff", "kl", "npo", "simnpo", "rmu"])
def test_every_objective_runs_and_reports(objective, trained_tiny, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg(objective))
    m = result.metrics
    assert m["steps"] == 4 and len(result.log) == 4
    assert all(math.isfinite(e["forget_loss"]) for e in result.log)
    has_retain = OBJECTIVES.get(objective).has_retain_loss
    assert ("retain_loss" in result.log[0]) == has_retain
    assert m["passes_per_step"] == (2 if has_retain else 1)


@pytest.mark.parametrize("objective", ["ga", "graddiff", "npo", "simnpo"])
def test_forgetting_objectives_raise_forget_nll(objective, trained_tiny, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    before = _forget_nll(trained_tiny, tiny_tokenizer, forget[:32])
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg(objective, steps=8))
    after = _forget_nll(result.export(), tiny_tokenizer, forget[:32])
    assert after > before + 0.1, (before, after)


def test_rmu_trains_only_mlps_near_its_layer(trained_tiny, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    before = {k: v.clone() for k, v in trained_tiny.state_dict().items()}
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain,
                     _cfg("rmu", steps=2) .model_copy(update={"objective": {"layer": 1}}))
    changed = {k for k, v in result.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".mlp." in k for k in changed)
    assert any("layers.1.mlp" in k for k in changed)


def test_reference_is_not_built_when_unused(trained_tiny, tiny_tokenizer, tiny_world, monkeypatch):
    from robust_unlearning.parameterizations.full import Full

    calls = []
    orig = Full.reference
    monkeypatch.setattr(Full, "reference", lambda self, m: calls.append(1) or orig(self, m))
    forget, retain = unlearning_data(tiny_world)
    unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg("graddiff", steps=1))
    assert calls == []
    unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg("npo", steps=1))
    assert calls == [1]


def test_npo_at_the_reference_point_equals_its_closed_form(trained_tiny, tiny_tokenizer, tiny_world):
    """At θ = θ_ref every sigmoid is σ(0), so ℓ_f = −(2/β)·log ½ = (2/β)·log 2."""
    from robust_unlearning.objectives.npo import NPO
    from robust_unlearning.parameterizations.full import Full

    forget, _ = unlearning_data(tiny_world)
    batch = Collator(tiny_tokenizer)(forget[:8])
    ref = Full().reference(trained_tiny)
    loss = NPO(beta=0.5).forget_loss(trained_tiny, batch, ref)
    assert loss.item() == pytest.approx(2 / 0.5 * math.log(2), rel=1e-5)


def test_seed_reproduces_and_differs(trained_tiny, tiny_tokenizer, tiny_world):
    import copy
    forget, retain = unlearning_data(tiny_world)
    a = unlearn(copy.deepcopy(trained_tiny), tiny_tokenizer, forget, retain, _cfg("graddiff", seed=1))
    b = unlearn(copy.deepcopy(trained_tiny), tiny_tokenizer, forget, retain, _cfg("graddiff", seed=1))
    c = unlearn(copy.deepcopy(trained_tiny), tiny_tokenizer, forget, retain, _cfg("graddiff", seed=2))
    pa, pb, pc = (next(r.model.parameters()) for r in (a, b, c))
    assert torch.equal(pa, pb)
    assert not torch.equal(pa, pc)


def test_non_finite_loss_stops_with_step(trained_tiny, tiny_tokenizer, tiny_world, monkeypatch):
    from robust_unlearning.objectives.graddiff import GradDiff

    monkeypatch.setattr(GradDiff, "forget_loss", lambda self, m, b, r: m(**b).loss * float("nan"))
    forget, retain = unlearning_data(tiny_world)
    with pytest.raises(NonFiniteLossError, match="step 0"):
        unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg("graddiff"))


def test_empty_forget_and_missing_retain_are_errors(tiny_model, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    with pytest.raises(UnlearnError, match="empty"):
        unlearn(tiny_model, tiny_tokenizer, [], retain, _cfg("ga"))
    with pytest.raises(UnlearnError, match="needs retain"):
        unlearn(tiny_model, tiny_tokenizer, forget, None, _cfg("graddiff"))
    unlearn(tiny_model, tiny_tokenizer, forget, None, _cfg("ga", steps=1))  # GA needs none


def test_unknown_components_list_the_known_ones():
    from robust_unlearning.method import parse_method

    with pytest.raises(UnlearnError, match="known: .*graddiff.*npo"):
        parse_method("nope")
    with pytest.raises(UnlearnError, match="strategies: .*plain"):
        parse_method("npo+warp")
    assert parse_method("npo").name == "npo+plain+full"
    with pytest.raises(UnlearnError, match="unknown option.*beta"):
        unlearn(None, None, [{"text": "x"}], None,
                build_config({"method": "ga", "objective": {"beta": 1}}))
