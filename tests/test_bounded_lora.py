"""Bounded LoRA: ΔW = (α/r)·f(ω·BA)/s on the MLP projections only. The bound holds entrywise, merging
folds in the bounded ΔW (also through GPT-2's transposed Conv1D), attention is untouched, and under
pure gradient ascent plain LoRA's update grows while bounded LoRA's stays within its analytic bound."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import transformers as T

from robust_unlearning.config import build_config
from robust_unlearning.loop import unlearn
from robust_unlearning.parameterizations.base import PARAMETERIZATIONS
from robust_unlearning.parameterizations.bounded_lora import bounded_layer_class
from robust_unlearning.world.benchmark import unlearning_data


def _bounded_layers(model):
    cls = bounded_layer_class()
    return {n: m for n, m in model.named_modules() if isinstance(m, cls)}


def _scramble_adapters(model, scale: float = 3.0) -> None:
    """Give A and B large random values, so that f(ω·BA) saturates."""
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for n, p in model.named_parameters():
            if "lora_" in n:
                p.copy_(torch.randn(p.shape, generator=g) * scale)


@pytest.mark.parametrize("function", ["sin", "tanh"])
def test_delta_is_bounded_entrywise_and_merge_folds_it_in(function, tiny_model):
    param = PARAMETERIZATIONS.build("bounded-lora", {"function": function, "r": 4, "alpha": 8.0})
    model = param.prepare(tiny_model, None)
    layers = _bounded_layers(model)
    assert layers and all(".mlp." in n for n in layers)
    _scramble_adapters(model)
    f = torch.sin if function == "sin" else torch.tanh
    for layer in layers.values():
        a, b = layer.lora_A["default"].weight, layer.lora_B["default"].weight
        bound = 8.0 / (4 * math.sqrt(layer.in_features))
        assert layer.bound("default") == pytest.approx(bound)
        delta = layer.get_delta_weight("default")
        torch.testing.assert_close(delta, (8.0 / 4) * f(100.0 * (b @ a)) / math.sqrt(layer.in_features))
        assert delta.abs().max() <= bound * (1 + 1e-6)
        assert delta.abs().max() > 0.5 * bound  # saturated: the bound is what limits it
    stats = param.step_stats(model)
    assert stats["delta_w_max"] <= stats["delta_w_bound"] * (1 + 1e-6)
    weights = {n: layer.get_base_layer().weight.detach() + layer.get_delta_weight("default").detach()
               for n, layer in layers.items()}
    ids = torch.arange(1, 21).reshape(2, 10)
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
    merged = param.export(model)
    for n, w in weights.items():
        torch.testing.assert_close(merged.get_submodule(n.replace("base_model.model.", "")).weight, w)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted, atol=1e-4, rtol=1e-4)


def test_gpt2_conv1d_transposed_weights_merge_correctly():
    torch.manual_seed(0)
    model = T.AutoModelForCausalLM.from_config(T.GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2,
                                                            n_positions=32)).eval()
    param = PARAMETERIZATIONS.build("bounded-lora", {"r": 2, "alpha": 4.0, "scale": 2.0})
    model = param.prepare(model, None)
    layers = _bounded_layers(model)
    assert {n.split(".")[-1] for n in layers} == {"c_fc", "c_proj"} and all(".mlp." in n for n in layers)
    _scramble_adapters(model, 0.5)
    ids = torch.arange(1, 13).reshape(2, 6)
    with torch.no_grad():
        adapted = model(input_ids=ids).logits
        base = model.get_base_model()
        with model.disable_adapter():
            plain = model(input_ids=ids).logits
    assert not torch.allclose(adapted, plain, atol=1e-3)
    assert base.transformer.h[0].mlp.c_fc.lora_A["default"].weight.shape == (2, 16)
    merged = param.export(model)
    with torch.no_grad():
        torch.testing.assert_close(merged(input_ids=ids).logits, adapted, atol=1e-4, rtol=1e-4)


def test_graddiff_with_bounded_lora_leaves_attention_untouched(trained_tiny, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    before = {k: v.clone() for k, v in trained_tiny.state_dict().items()}
    cfg = build_config({"method": "graddiff+plain+bounded-lora",
                        "train": {"steps": 4, "batch_size": 4, "lr": 1e-2}})
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain, cfg)
    for e in result.log:
        assert 0 < e["delta_w_max"] <= e["delta_w_bound"] * (1 + 1e-6)
        assert math.isfinite(e["grad_norm"]) and e["adapter_norm"] > 0
    after = result.export().state_dict()
    changed = {k for k, v in after.items() if not torch.equal(v, before[k])}
    assert changed and all(".mlp." in k for k in changed)
    assert {k.split(".")[-2] for k in changed} == {"gate_proj", "up_proj", "down_proj"}


def _ga(model, tok, forget, method, steps):
    cfg = build_config({"method": method, "train": {"steps": steps, "batch_size": 4, "lr": 1e-3}})
    return unlearn(copy.deepcopy(model), tok, forget, None, cfg).log


@pytest.mark.slow
def test_gradient_ascent_grows_plain_lora_but_not_bounded_lora(trained_tiny, tiny_tokenizer, tiny_world):
    """The weight-growth proof (docs/methods.md#bounded-lora), on the tiny trained world model, 200
    steps of pure gradient ascent with the loop's defaults (gradients clipped at 1.0; grad_norm is logged
    before
    clipping). Plain LoRA: its update ΔW (and here its gradient norm) grow by well over 10×. Bounded
    (sine) LoRA: max|ΔW| never exceeds α/(r·s), and its gradient norm stays finite."""
    torch.set_num_threads(1)  # tiny matrices: one thread is faster than two on a shared machine
    forget, _ = unlearning_data(tiny_world)
    steps = 200
    plain = _ga(trained_tiny, tiny_tokenizer, forget, "ga+lora", steps)
    bounded = _ga(trained_tiny, tiny_tokenizer, forget, "ga+bounded-lora", steps)
    torch.set_num_threads(2)
    assert len(plain) == len(bounded) == steps

    dw = [e["delta_w_max"] for e in plain]
    gn = [e["grad_norm"] for e in plain]
    assert max(dw[steps // 2:]) >= 10 * dw[0] or max(gn[steps // 2:]) >= 10 * gn[0], (dw[0], max(dw), gn[0],
                                                                                       max(gn))
    assert dw[-1] > dw[steps // 10]  # still growing late in the run: nothing holds it back

    bound = bounded[0]["delta_w_bound"]
    assert bound == pytest.approx(16.0 / (8 * math.sqrt(32)))  # defaults α 16, r 8; s = √hidden (32)
    assert all(e["delta_w_max"] <= bound * (1 + 1e-6) for e in bounded)
    assert max(e["delta_w_max"] for e in bounded) > 0.5 * bound  # the bound is reached, not idle
    assert all(math.isfinite(e["grad_norm"]) for e in bounded)
    assert all(math.isfinite(e["forget_loss"]) for e in bounded)
