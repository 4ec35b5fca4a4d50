"""Real low-bit kernels in the quantization attack: optimum-quanto int4 / int8 weight-only on the CPU
(skipped when optimum-quanto is absent), bitsandbytes NF4 / int8 on a GPU (a clear error without one;
run on a GPU when there is one)."""

from __future__ import annotations

import copy

import pytest
import torch
from typer.testing import CliRunner

from robust_unlearning.attacks.quantize import QuantizeConfig, quantize_attack, quantize_model
from robust_unlearning.attacks.quantize_real import (
    BACKENDS,
    parse_backends,
    real_quantize,
    real_rows,
    unavailable,
)
from robust_unlearning.cli import app
from robust_unlearning.errors import UnlearnError

HAS_CUDA = torch.cuda.is_available()


def _linears(model):
    return {n: m for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}


@pytest.mark.parametrize("backend, levels", [("quanto-int4", 16), ("quanto-int8", 256)])
def test_quanto_stores_low_bit_weights(tiny_model, backend, levels):
    pytest.importorskip("optimum.quanto")
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    q, change = real_quantize(tiny_model, backend, ["lm_head"])
    ids = torch.randint(3, 100, (2, 10), generator=torch.Generator().manual_seed(0))
    num = den = 0.0
    for name, orig in _linears(tiny_model).items():
        mod = q.get_submodule(name)
        if name.endswith("lm_head"):
            assert torch.equal(mod.weight, orig.weight)  # kept in full precision
            continue
        assert type(mod.weight).__name__.startswith("WeightQ")  # quanto's packed integer weights
        deq = mod.weight.dequantize().float()
        # 4 (8) bits: at most 16 (256) distinct values in each output row (one scale per row here:
        # the tiny model's rows are narrower than quanto's 128-weight groups)
        assert max(len(torch.unique(row)) for row in deq) <= levels
        num += (deq - orig.weight.float()).pow(2).sum().item()
        den += orig.weight.float().pow(2).sum().item()
    assert change == pytest.approx((num / den) ** 0.5, rel=1e-6) and change > 0
    # 4 bits change more than 8; int4 lands near the simulated 4-bit round-to-nearest
    with torch.no_grad():
        out = q(input_ids=ids).logits
        ref = tiny_model(input_ids=ids).logits
    assert torch.isfinite(out).all() and not torch.equal(out, ref)
    _, rtn_change = quantize_model(tiny_model, 4 if levels == 16 else 8, "channel")
    assert 0.3 < change / rtn_change < 3
    assert all(torch.equal(v, before[k]) for k, v in tiny_model.state_dict().items())  # input untouched


def test_real_rows_name_the_path_and_record_what_cannot_run(tiny_model):
    pytest.importorskip("optimum.quanto")
    rows = real_rows(tiny_model, None, ["lm_head"], lambda m: {"score": 1.0})
    assert [r["scheme"] for r in rows] == list(BACKENDS)
    by = {r["scheme"]: r for r in rows}
    assert by["quanto-int4"]["bits"] == 4 and by["quanto-int4"]["granularity"] == "channel"
    assert by["quanto-int4"]["weight_change"] > by["quanto-int8"]["weight_change"] > 0
    if not HAS_CUDA:
        assert "CUDA GPU" in by["bnb-nf4"]["skipped"] and "CUDA GPU" in by["bnb-int8"]["skipped"]


@pytest.mark.skipif(HAS_CUDA, reason="the CPU-only error")
def test_bitsandbytes_without_a_gpu_is_one_clear_error(tiny_model, tiny_tokenizer, tiny_world):
    for backend in ("bnb-nf4", "bnb-int8"):
        with pytest.raises(UnlearnError, match="needs a CUDA GPU"):
            real_quantize(tiny_model, backend, ["lm_head"])
    with pytest.raises(UnlearnError, match="bnb-nf4.*CUDA GPU"):
        QuantizeConfig(backends=["bnb-nf4"])
    res = CliRunner().invoke(app, ["attack", "quantize", "--model", "m", "--backends", "bnb-nf4"])
    assert res.exit_code == 2 and "needs a CUDA GPU" in res.output, res.output


def test_backend_names():
    assert parse_backends("auto") is None and parse_backends("none") == []
    assert parse_backends("quanto-int4, bnb-int8") == ["quanto-int4", "bnb-int8"]
    with pytest.raises(UnlearnError, match="unknown quantization backend.*gptq"):
        parse_backends("gptq")
    with pytest.raises(UnlearnError, match="unknown quantization backend"):
        unavailable("gptq")
    res = CliRunner().invoke(app, ["attack", "quantize", "--model", "m", "--backends", "awq"])
    assert res.exit_code == 2 and "unknown quantization backend(s) awq" in res.output, res.output


def test_quanto_absent_is_recorded_or_refused(tiny_model, monkeypatch):
    import robust_unlearning.attacks.quantize_real as qr

    real_find = qr.importlib.util.find_spec
    monkeypatch.setattr(qr.importlib.util, "find_spec",
                        lambda name, *a: None if name.startswith("optimum") else real_find(name, *a))
    rows = real_rows(tiny_model, None, ["lm_head"], lambda m: {})
    assert "optimum-quanto is not installed" in rows[0]["skipped"]
    with pytest.raises(UnlearnError, match="optimum-quanto is not installed"):
        real_rows(tiny_model, ["quanto-int4"], ["lm_head"], lambda m: {})


@pytest.mark.skipif(not HAS_CUDA, reason="bitsandbytes runs on a CUDA GPU")
@pytest.mark.parametrize("backend", ["bnb-nf4", "bnb-int8"])
def test_bitsandbytes_on_the_gpu(tiny_model, tiny_tokenizer, tiny_world, backend):
    pytest.importorskip("bitsandbytes")
    import bitsandbytes as bnb

    q, change = real_quantize(tiny_model, backend, ["lm_head"])
    kinds = {type(m) for n, m in q.named_modules() if n.endswith(("q_proj", "down_proj"))}
    assert kinds == {bnb.nn.Linear4bit if backend == "bnb-nf4" else bnb.nn.Linear8bitLt}
    rows = quantize_attack(copy.deepcopy(tiny_model).cuda(), tiny_tokenizer, tiny_world,
                           QuantizeConfig(bits=[8], granularities=["channel"], torch_int8=False,
                                          backends=[backend]))
    assert rows[-1]["scheme"] == backend and 0 <= rows[-1]["forget_acc"] <= 1
