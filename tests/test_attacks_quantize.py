"""The quantization attack: round-to-nearest arithmetic, the Zhang et al. mechanism, real int8."""

from __future__ import annotations

import copy

import pytest
import torch

from robust_unlearning.attacks.quantize import (
    QuantizeConfig,
    label,
    quantize_attack,
    quantize_model,
    rtn_quantize,
)


def test_rtn_levels_and_error_bound():
    torch.manual_seed(0)
    w = torch.randn(6, 40)
    for bits in (8, 4, 3):
        q = rtn_quantize(w, bits, "channel")
        qmax = 2 ** (bits - 1) - 1
        scale = w.abs().amax(1, keepdim=True) / qmax
        levels = torch.round(q / scale)
        assert torch.allclose(levels * scale, q, atol=1e-6)
        assert levels.abs().max() <= qmax
        assert ((q - w).abs() <= scale / 2 + 1e-6).all()
    # finer scales (per group of 8) lose less than one scale per row
    err_ch = (rtn_quantize(w, 4, "channel") - w).pow(2).sum()
    err_g = (rtn_quantize(w, 4, "group", 8) - w).pow(2).sum()
    assert err_g < err_ch
    # a ragged last group (40 = 3 * 12 + 4) is handled and keeps the shape
    assert rtn_quantize(w, 4, "group", 12).shape == w.shape


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="bits"):
        QuantizeConfig(bits=[1])
    with pytest.raises(ValueError, match="granularity"):
        QuantizeConfig(granularities=["row"])
    with pytest.raises(ValueError, match="2-D"):
        rtn_quantize(torch.ones(3), 8)


def test_quantization_snaps_a_small_update_back_onto_the_original(tiny_model):
    """Zhang et al.: an update smaller than half a quantization step is undone by rounding."""
    original, _ = quantize_model(tiny_model, 4, "channel")  # a model exactly on the 4-bit grid
    unlearned = copy.deepcopy(original)
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, mod in unlearned.named_modules():
            if isinstance(mod, torch.nn.Linear) and not name.endswith("lm_head"):
                scale = mod.weight.abs().amax(1, keepdim=True) / 7
                noise = 0.4 * scale * (torch.rand(mod.weight.shape, generator=gen) - 0.5)
                # leave each row's largest weights alone, so the row's scale stays what it was
                noise[mod.weight.abs() >= mod.weight.abs().amax(1, keepdim=True)] = 0.0
                mod.weight.add_(noise)
    ids = torch.randint(3, 100, (2, 12), generator=gen)
    with torch.no_grad():
        ref = original(input_ids=ids).logits
        assert not torch.allclose(unlearned(input_ids=ids).logits, ref, atol=1e-5)
        requantized, change = quantize_model(unlearned, 4, "channel")
        assert torch.allclose(requantized(input_ids=ids).logits, ref, atol=1e-4)
    assert change > 0
    emb_before = original.get_input_embeddings().weight
    assert torch.equal(requantized.get_input_embeddings().weight, emb_before)  # lm_head/embeddings kept


def test_attack_rows_on_a_model(tiny_model, tiny_tokenizer, tiny_world):
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    rows = quantize_attack(tiny_model, tiny_tokenizer, tiny_world,
                           QuantizeConfig(bits=[8, 2], granularities=["channel"], group_size=16))
    assert [label(r) for r in rows] == ["fp32", "rtn8-ch", "rtn2-ch", "torch-int8", "quanto-int4",
                                        "quanto-int8", "bnb-nf4", "bnb-int8"]  # real kernels: auto
    for r in rows[4:]:  # each real path ran or says why not
        assert "skipped" in r or 0 <= r["forget_acc"] <= 1, r
    changes = {label(r): r["weight_change"] for r in rows if "weight_change" in r}
    assert 0 < changes["rtn8-ch"] < changes["rtn2-ch"]
    for r in rows:
        assert "skipped" in r or 0 <= r["forget_acc"] <= 1 and 0 <= r["retain_acc"] <= 1
    int8 = rows[3]
    assert "skipped" in int8 or int8["forget_acc"] == pytest.approx(rows[0]["forget_acc"], abs=0.15)
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())  # input untouched


def test_torch_int8_failure_is_recorded_not_raised(tiny_model, tiny_tokenizer, tiny_world, monkeypatch):
    import robust_unlearning.attacks.quantize as q

    def broken(model, skip=None):
        raise RuntimeError("no quantized engine\nmore")

    monkeypatch.setattr(q, "torch_int8", broken)
    monkeypatch.setattr(q, "evaluate", lambda *a, **k: {"forget_acc": 0.5, "retain_acc": 0.5})
    cfg = QuantizeConfig(bits=[8], granularities=["channel"], backends=[])
    rows = quantize_attack(tiny_model, tiny_tokenizer, tiny_world, cfg)
    assert rows[-1]["skipped"] == "RuntimeError: no quantized engine"
    assert label({"scheme": "rtn", "bits": 4, "granularity": "group", "group_size": 64}) == "rtn4-g64"
