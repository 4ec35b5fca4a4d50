"""Perturbations the bf16 forward really sees (issue 15).

Under train.mixed_precision: bf16 the forward casts the float32 masters to bfloat16; on a model
loaded in bf16 the masters lie on the bf16 grid, so a small ε rounds away in the cast. These tests
measure the *loss change of the forward* at every perturbed point against the first-order
prediction g·(θ' − θ) (g the float32 gradient at θ): the forward must see the perturbation. On the
code before issue 15 they fail (the perturbed passes ran under bf16 autocast and saw 0–37 % of it).
"""

from __future__ import annotations

import json

import pytest
import torch

from robust_unlearning.config import build_config
from robust_unlearning.errors import UnlearnError
from robust_unlearning.loop import unlearn
from robust_unlearning.objectives.base import OBJECTIVES
from robust_unlearning.strategies.base import STRATEGIES, Losses, MicroBatch, StepContext
from robust_unlearning.world.benchmark import unlearning_data


@pytest.fixture
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


CASES = [("sam", {"rho": 1e-4}), ("rs", {"sigma": 1e-4, "samples": 2}),
         ("stableun", {"rules": ["sap"], "T": 1, "M": 1, "rho": 1e-4}),
         ("stableun", {"rules": ["gpn"], "T": 1, "M": 1, "rho": 1e-4})]


@pytest.mark.parametrize("strategy,opts", CASES, ids=["sam", "rs", "stableun-sap", "stableun-gpn"])
def test_bf16_forward_sees_the_perturbation(strategy, opts, tiny_model, tiny_tokenizer, tiny_world,
                                            fresh_accelerate_state, monkeypatch, tmp_path):
    from robust_unlearning.objectives.graddiff import GradDiff

    forget, retain = unlearning_data(tiny_world)
    model = tiny_model.to(torch.bfloat16)  # masters on the bf16 grid, as for a model loaded in bf16
    start = [p.detach().float().clone() for p in model.parameters()]
    seen = []  # (batch, weights, loss change the forward saw, autocast on)
    orig = GradDiff.forget_loss

    def spy(self, m, batch, ref):
        params = list(m.parameters())
        with torch.no_grad():
            here = [p.detach().clone() for p in params]
            moved = any(not torch.equal(a, b) for a, b in zip(here, start, strict=True))
            if moved:
                l_pert = float(orig(self, m, batch, ref))
                for p, s in zip(params, start, strict=True):
                    p.data.copy_(s)
                l_0 = float(orig(self, m, batch, ref))
                for p, h in zip(params, here, strict=True):
                    p.data.copy_(h)
                seen.append((batch, here, l_pert - l_0, torch.is_autocast_enabled("cpu")))
        return orig(self, m, batch, ref)

    monkeypatch.setattr(GradDiff, "forget_loss", spy)
    cfg = build_config({"method": f"graddiff+{strategy}", "strategy": opts,
                        "train": {"steps": 1, "batch_size": 4, "lr": 0.0, "mixed_precision": "bf16"}})
    result = unlearn(model, tiny_tokenizer, forget, retain, cfg, metrics_path=tmp_path / "m.jsonl")
    monkeypatch.setattr(GradDiff, "forget_loss", orig)
    assert seen, "no perturbed forward"
    final = list(result.model.parameters())
    obj = GradDiff()
    ratios = []
    for batch, here, change, _ in seen:
        loss = obj.forget_loss(result.model, batch, None)  # float32, autocast off
        g = torch.autograd.grad(loss, final, allow_unused=True)
        pred = sum(float((gi.double() * (h.double() - s.double())).sum())
                   for gi, h, s in zip(g, here, start, strict=True) if gi is not None)
        ratios.append(change / pred)
    print(strategy, opts, "forward loss change / first-order prediction:", [round(r, 3) for r in ratios])
    assert all(0.8 < r < 1.2 for r in ratios), ratios
    log = [json.loads(line) for line in (tmp_path / "m.jsonl").read_text().splitlines()]
    assert log[0]["perturb_realized"] == pytest.approx(1.0, abs=0.1)
    assert log[0]["perturb_realized_autocast"] < 0.9 or log[0]["perturb_error_autocast"] > 0.1
    assert log[0]["perturb_fp32_passes"] >= 1


def test_fp32_run_is_unchanged_by_the_bf16_machinery(tiny_model, tiny_tokenizer, tiny_world):
    """Without autocast no pass switches precision and the realised share is recorded."""
    forget, retain = unlearning_data(tiny_world)
    cfg = build_config({"method": "graddiff+sam", "strategy": {"rho": 1e-2},
                        "train": {"steps": 1, "batch_size": 4, "lr": 0.0}})
    entry = unlearn(tiny_model, tiny_tokenizer, forget, retain, cfg).log[0]
    assert "perturb_fp32_passes" not in entry and "perturb_realized_autocast" not in entry
    assert entry["perturb_realized"] == pytest.approx(1.0, abs=1e-3)
    assert entry["perturb_loss_ratio"] == pytest.approx(1.0, abs=0.05)


def test_unseen_perturbation_without_float32_passes_is_refused_naming_the_radius(tiny_model, tiny_tokenizer,
                                                                               tiny_world):
    """Where the perturbed passes cannot run in float32 (frozen half-precision weights), a
    perturbation the bf16 cast loses stops the step with the smallest radius that works."""
    from robust_unlearning.data.collate import Collator
    from robust_unlearning.precision import forward_dtypes_of

    model = tiny_model.to(torch.bfloat16)
    params = [p for p in model.parameters()]
    for p in params:
        p.data = p.data.float()
    forget, retain = unlearning_data(tiny_world)
    collate = Collator(tiny_tokenizer, 64)
    fb, rb = collate(forget[:4]), collate(retain[:4])
    obj = OBJECTIVES.build("graddiff", {})

    def fl(b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return obj.forget_loss(model, b, None)

    def rl(b):
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return obj.retain_loss(model, b, None)

    before = [p.detach().clone() for p in params]
    ctx = StepContext(model=model, params=params, micro=[MicroBatch(fb, rb)],
                      losses=Losses(fl, rl, next_forget=lambda: fb, next_retain=lambda: rb),
                      gamma=1.0, lr=0.0, step=0,
                      forward_dtypes=forward_dtypes_of(model, params, torch.bfloat16), exact_forward=None)
    strat = STRATEGIES.build("sam", {"rho": 1e-4})
    with pytest.raises(UnlearnError, match=r"smallest rho whose perturbation it sees is about") as info:
        strat.compute(ctx)
    assert "bfloat16 autocast" in str(info.value)
    assert all(torch.equal(p.detach(), b) for p, b in zip(params, before, strict=True))  # restored
