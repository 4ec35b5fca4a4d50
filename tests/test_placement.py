"""--device / --dtype reach the model of every command that loads one (issue 15)."""

from __future__ import annotations

import pytest
import torch
from conftest import save_model
from typer.testing import CliRunner

from robust_unlearning import io, placement
from robust_unlearning.cli import app
from robust_unlearning.errors import UnlearnError


@pytest.fixture
def saved_tiny(tiny_model, tiny_tokenizer, tmp_path):
    return save_model(tiny_model, tiny_tokenizer, tmp_path / "tiny")


def test_load_model_places_and_casts(saved_tiny):
    m, _ = io.load_model(saved_tiny, dtype="bf16", device="cpu")
    assert {p.dtype for p in m.parameters()} == {torch.bfloat16}
    assert {p.device.type for p in m.parameters()} == {"cpu"}
    m, _ = io.load_model(saved_tiny)  # a library caller without --dtype keeps float32
    assert {p.dtype for p in m.parameters()} == {torch.float32}
    placement.configure("cpu", "fp16")
    m, _ = io.load_model(saved_tiny)  # what a command configured
    assert {p.dtype for p in m.parameters()} == {torch.float16}


def test_defaults_and_errors():
    assert placement.resolve_dtype(None, torch.device("cpu")) == "float32"
    assert placement.resolve_dtype("bf16", torch.device("cpu")) == "bfloat16"
    with pytest.raises(UnlearnError, match="unknown dtype"):
        placement.resolve_dtype("int3", torch.device("cpu"))
    with pytest.raises(UnlearnError, match="unknown device"):
        placement.resolve_device("nowhere")
    if not torch.cuda.is_available():
        with pytest.raises(UnlearnError, match="not available"):
            placement.resolve_device("cuda")
        assert placement.default_device().type == "cpu"


COMMANDS = [c + ["--benchmark", "world-quick"] for c in (
    ["eval"], ["attack", "relearn"], ["attack", "quantize"], ["attack", "jailbreak"], ["attack", "incontext"],
    ["diagnose"])]
DTYPES = [("bf16", torch.bfloat16), ("fp16", torch.float16), (None, torch.float32)]


@pytest.mark.parametrize("dtype,expected", DTYPES)
@pytest.mark.parametrize("cmd", COMMANDS, ids=[" ".join(c[:2]) for c in COMMANDS])
def test_every_command_places_its_model(cmd, dtype, expected, saved_tiny, monkeypatch):
    """The model each command loads is on --device in --dtype (stopped right after loading)."""
    seen = []
    real = io.load_model

    def spy(*a, **k):
        m, tok = real(*a, **k)
        seen.append(({p.dtype for p in m.parameters()}, {p.device.type for p in m.parameters()}))
        raise UnlearnError("stop after loading")

    monkeypatch.setattr(io, "load_model", spy)
    if cmd[0] == "eval":  # eval prepares the benchmark first: skip building the world
        from robust_unlearning import benchmarks

        class Stub:
            def prepare(self):
                pass

        monkeypatch.setattr(benchmarks, "build_benchmark", lambda *a, **k: Stub())
    args = cmd + ["--model", str(saved_tiny), "--device", "cpu"] + (["--dtype", dtype] if dtype else [])
    res = CliRunner().invoke(app, args)
    assert "stop after loading" in res.output, res.output
    assert seen == [({expected}, {"cpu"})]


def test_bad_dtype_is_one_line_error(saved_tiny):
    res = CliRunner().invoke(app, ["eval", "--model", str(saved_tiny), "--dtype", "fp8"])
    assert res.exit_code != 0 and "unknown dtype 'fp8'" in res.output
