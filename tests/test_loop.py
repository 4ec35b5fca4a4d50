"""The unlearning loop with every objective, the plain strategy and full fine-tuning."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from robust_unlearning.config import build_config
from robust_unlearning.data.collate import Collator
from robust_unlearning.errors import NonFiniteLossError, UnlearnError
from robust_unlearning.loop import unlearn
from robust_unlearning.objectives.base import OBJECTIVES, sequence_nll
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
    # SimNPO's length-normalised loss saturates first (on the tiny world: +0.09 after 8 steps)
    assert after > before + 0.05, (before, after)


def test_rmu_trains_only_mlps_near_its_layer(trained_tiny, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    before = {k: v.clone() for k, v in trained_tiny.state_dict().items()}
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain,
                     _cfg("rmu", steps=2) .model_copy(update={"objective": {"layer": 0}}))
    changed = {k for k, v in result.model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(".mlp." in k for k in changed)
    assert any("layers.0.mlp" in k for k in changed)


def test_rmu_refuses_the_last_layer(trained_tiny, tiny_tokenizer, tiny_world):
    """hidden_states[-1] is after the final norm, not the last layer's residual stream."""
    forget, retain = unlearning_data(tiny_world)
    with pytest.raises(UnlearnError, match="final norm"):
        unlearn(trained_tiny, tiny_tokenizer, forget, retain,
                _cfg("rmu", steps=1).model_copy(update={"objective": {"layer": 1}}))


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


def test_fused_optimizer_is_the_same_update_up_to_rounding(trained_tiny, tiny_tokenizer, tiny_world):
    import copy
    forget, retain = unlearning_data(tiny_world)
    runs = [unlearn(copy.deepcopy(trained_tiny), tiny_tokenizer, forget, retain,
                    build_config({"method": "npo+sam", "train": {"steps": 3, "batch_size": 4, "lr": 1e-3,
                                                                 "fused_optimizer": fused}}))
            for fused in (False, True)]
    moved = 0.0
    for (n, a), b, w in zip(runs[0].model.named_parameters(), runs[1].model.parameters(),
                            trained_tiny.parameters(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-4, msg=n)
        moved = max(moved, float((a - w).detach().abs().max()))
    assert moved > 1e-3  # the runs did move the weights


def test_eval_every_logs_scores_and_leaves_training_unchanged(trained_tiny, tiny_tokenizer, tiny_world,
                                                              monkeypatch):
    from robust_unlearning.runner import _evaluator

    forget, retain = unlearning_data(tiny_world)
    plain = unlearn(copy.deepcopy(trained_tiny), tiny_tokenizer, forget, retain, _cfg("graddiff+sam"))
    calls = []

    def score(m):
        calls.append(m.training)
        return _evaluator(tiny_tokenizer, forget, retain, None)(m)

    watched = unlearn(copy.deepcopy(trained_tiny), tiny_tokenizer, forget, retain,
                      _cfg("graddiff+sam", eval_every=3), evaluate_fn=score)
    assert [e["step"] for e in watched.log if "eval" in e] == [3, 4]  # every 3 steps and the last
    assert calls == [False, False]  # scored in eval mode
    first, last = (e["eval"] for e in watched.log if "eval" in e)
    assert last["forget_nll"] > first["forget_nll"] > _evaluator(tiny_tokenizer, forget, retain, None)(
        trained_tiny)["forget_nll"]  # forgetting, step by step
    for a, b in zip(plain.model.parameters(), watched.model.parameters(), strict=True):
        assert torch.equal(a, b)  # scoring does not disturb the run
    # the world evaluator scores MCQ accuracy
    import robust_unlearning.benchmarks.world as world_module
    from robust_unlearning.benchmarks import build_benchmark
    from robust_unlearning.world.model import WorldBundle

    monkeypatch.setattr(world_module, "world_bundle", lambda name: WorldBundle(None, tiny_world, None, None))
    world_scores = _evaluator(tiny_tokenizer, forget, retain, build_benchmark("world-tiny"))(trained_tiny)
    assert set(world_scores) == {"forget_acc", "retain_acc", "utility_nll", "retain_train_acc"}


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


# -- memory: gradient checkpointing; mixed precision -------------------------------------------------

def _layer_calls(model) -> list[int]:
    calls = [0]
    layer = next(m for n, m in model.named_modules() if n.endswith("layers.0.self_attn"))
    layer.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("method", ["graddiff+sam", "npo+plain+lora"])
def test_gradient_checkpointing_recomputes_and_gives_the_same_update(method, tiny_model, tiny_tokenizer,
                                                                     tiny_world):
    import copy

    forget, retain = unlearning_data(tiny_world)
    base = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    results, calls = [], []
    for on in (False, True):
        model = copy.deepcopy(tiny_model)
        calls.append(_layer_calls(model))
        results.append(unlearn(model, tiny_tokenizer, forget, retain,
                               _cfg(method, steps=2, gradient_checkpointing=on)))
    off, on = results
    enabled = [getattr(r.export(), "is_activation_checkpointing", None) for r in results]
    if enabled[0] is None:  # transformers < 5
        enabled = [r.export().is_gradient_checkpointing for r in results]
    assert enabled == [False, True]
    # the checkpointed layer runs again in every backward pass (the reference forwards run once)
    assert calls[1][0] >= calls[0][0] + 2 * on.metrics["passes_per_step"], calls
    for (k, a), b in zip(on.model.state_dict().items(), off.model.state_dict().values(), strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=0, msg=lambda m, k=k: f"{k}: {m}")
    if "lora" in method:  # base weights bitwise untouched, with checkpointing too
        for name, p in on.model.base_model.model.named_parameters():
            if "lora_" not in name:
                assert not p.requires_grad and torch.equal(p, base[name.replace(".base_layer", "")]), name


def test_lora_reference_makes_no_copy_of_the_model(tiny_model, tiny_tokenizer, tiny_world, monkeypatch):
    """The LoRA reference is the adapter-disabled model itself: no module is copied during a run
    (full fine-tuning, for contrast, copies the model once for its reference)."""
    import copy

    copied = []
    orig = copy.deepcopy

    def spy(obj, *a, **kw):
        if isinstance(obj, torch.nn.Module):
            copied.append(type(obj).__name__)
        return orig(obj, *a, **kw)

    forget, retain = unlearning_data(tiny_world)
    model = orig(tiny_model)
    monkeypatch.setattr(copy, "deepcopy", spy)
    unlearn(model, tiny_tokenizer, forget, retain, _cfg("npo+plain+lora", steps=1))
    assert copied == []
    unlearn(orig(tiny_model), tiny_tokenizer, forget, retain, _cfg("npo", steps=1))
    assert copied == ["LlamaForCausalLM"]


@pytest.fixture
def fresh_accelerate_state():
    """accelerate keeps one process-wide state whose mixed precision cannot change; reset it around
    a test that needs another one."""
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


@pytest.mark.parametrize("strategy", ["sam", "stableun"])
def test_bf16_run_applies_and_undoes_tiny_perturbations(strategy, tiny_model, tiny_tokenizer, tiny_world,
                                                        fresh_accelerate_state, monkeypatch):
    """End to end with train.mixed_precision: bf16 on a bfloat16 model: the trainable weights become
    float32 masters, the forward runs under bf16 autocast except at perturbed points the bf16 cast
    loses (there in float32), a ρ = 1e-7 perturbation reaches the weights the perturbed forward
    sees, and (lr = 0) the weights after the run are bitwise the
    starting ones: every perturbation was undone exactly."""
    from robust_unlearning.objectives.graddiff import GradDiff

    forget, retain = unlearning_data(tiny_world)
    model = tiny_model.to(torch.bfloat16)
    start = [p.detach().float().clone() for p in model.parameters()]
    seen, autocast = [], []
    orig = GradDiff.forget_loss

    def spy(self, m, batch, ref):
        seen.append([p.detach().clone() for p in m.parameters()])
        on = torch.is_autocast_enabled("cpu") and torch.get_autocast_dtype("cpu") == torch.bfloat16
        autocast.append(on)
        return orig(self, m, batch, ref)

    monkeypatch.setattr(GradDiff, "forget_loss", spy)
    opts = {"rho": 1e-7} if strategy == "sam" else {"rules": ["sap", "gpn"], "T": 2, "M": 1, "rho": 1e-7}
    cfg = build_config({"method": f"graddiff+{strategy}", "strategy": opts,
                        "train": {"steps": 2, "batch_size": 4, "lr": 0.0, "mixed_precision": "bf16"}})
    result = unlearn(model, tiny_tokenizer, forget, retain, cfg)
    final = list(result.model.parameters())
    assert all(p.dtype == torch.float32 for p in final)
    assert len(seen) >= 4
    assert all(torch.equal(p.detach(), s) for p, s in zip(final, start, strict=True))
    moved = [any(not torch.equal(a, b) for a, b in zip(snap, start, strict=True)) for snap in seen]
    assert any(moved), "the 1e-7 perturbation rounded away"
    # forwards at θ run under bf16 autocast; at a 1e-7 perturbation, which the bf16 cast loses, they
    # run in float32 on the masters (tests/test_bf16_perturbations.py measures their loss change)
    assert all(on for on, mv in zip(autocast, moved, strict=True) if not mv)
    assert not any(on for on, mv in zip(autocast, moved, strict=True) if mv)
    realized = [e["perturb_realized"] for e in result.log]
    assert min(realized) > 0.1, realized
    assert all(e["perturb_realized_autocast"] < 0.5 and e["perturb_fp32_passes"] >= 1 for e in result.log)


FP16_CASES = [("plain", {}, 2.0 ** 16), ("sam", {"rho": 0.05}, 2.0 ** 16), ("sam", {"rho": 0.05}, 2.0 ** 126),
              ("gp", {"coef": 0.5}, 2.0 ** 16),
              ("stableun", {"rules": ["sap", "gap"], "T": 2, "M": 1, "rho": 1e-3, "mu": 1e-2}, 2.0 ** 126)]


@pytest.mark.parametrize("strategy,opts,init_scale", FP16_CASES,
                         ids=[f"{c[0]}-{'overflow' if c[2] > 2.0 ** 100 else 'scaled'}" for c in FP16_CASES])
def test_fp16_loss_scaling_is_invisible_to_the_strategies(strategy, opts, init_scale, tiny_model,
                                                          tiny_tokenizer, tiny_world, fresh_accelerate_state,
                                                          monkeypatch):
    """train.mixed_precision: fp16 on an accelerator multiplies every loss by accelerate's GradScaler
    scale S. The strategies must see the true gradients (SAM's ‖g‖, StableUN's dot products), and
    accelerate's clip and optimizer step must unscale exactly once. accelerate gives no scaler on the
    CPU, so one is put in here (a real torch GradScaler, autocast left off so the numbers are fp32):
    the run must then equal the unscaled run (S is a power of two: scaling and unscaling are exact).
    S = 2^126 overflows the first backward: the step is recomputed at smaller scales on the same
    batches (StableUN's fresh feedback batches included), with the same result."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState
    from accelerate.utils import AutocastKwargs

    forget, retain = unlearning_data(tiny_world)

    def run(precision):
        AcceleratorState._reset_state(True)
        cfg = build_config({"method": f"graddiff+{strategy}", "strategy": opts,
                            "train": {"steps": 2, "batch_size": 4, "lr": 1e-3, "max_grad_norm": 1.0,
                                      "mixed_precision": precision}})
        return unlearn(copy.deepcopy(tiny_model), tiny_tokenizer, forget, retain, cfg)

    ref = run("no")
    scalers = []
    orig_init = Accelerator.__init__

    def with_scaler(self, *args, **kwargs):
        orig_init(self, *args, **kwargs)
        assert self.scaler is None  # accelerate on the CPU: fp16 is a no-op
        self.native_amp = True  # what accelerate sets with a GPU: clip and step unscale
        self.autocast_handler = AutocastKwargs(enabled=False)
        self.scaler = torch.amp.GradScaler("cpu", init_scale=init_scale)
        scalers.append(self.scaler)

    monkeypatch.setattr(Accelerator, "__init__", with_scaler)
    got = run("fp16")
    assert len(scalers) == 1
    for a, b in zip(ref.log, got.log, strict=True):
        for key in ("forget_loss", "grad_norm", "forget_grad_norm", "grad_penalty", "cos_fr"):
            if key in a:
                assert b[key] == pytest.approx(a[key], rel=1e-6, abs=1e-12), (key, a[key], b[key])
    for (n, p), q in zip(ref.model.named_parameters(), got.model.parameters(), strict=True):
        torch.testing.assert_close(q, p, rtol=0, atol=1e-7, msg=lambda m, n=n: f"{n}: {m}")
    if init_scale > 2.0 ** 100:
        assert scalers[0].get_scale() < init_scale
        assert got.metrics["passes_per_step"] > ref.metrics["passes_per_step"]
    else:
        assert got.metrics["passes_per_step"] == ref.metrics["passes_per_step"]
