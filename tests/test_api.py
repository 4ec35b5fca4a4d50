"""The Python API (robust_unlearning/api.py): the README's example runs as written (on the tiny world),
and each name does what it says."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

import robust_unlearning as ru
from robust_unlearning.errors import UnlearnError

README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_example() -> str:
    m = re.search(r"<!-- api-example -->\s*```python\n(.*?)```", README.read_text(), re.S)
    assert m, "the README's API example (after <!-- api-example -->) is missing"
    return m.group(1)


def test_readme_example_is_short_and_runs(tmp_path):
    code = _readme_example()
    assert len(code.strip().splitlines()) <= 6
    # the tiny world (seconds to build) instead of the quick one; everything else as written
    code = code.replace("world-quick", "world-tiny").replace("steps=40", "steps=3")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=900,
                         env={**os.environ, "ROBUST_UNLEARNING_QUIET": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    assert "forget_acc" in out.stdout


def test_import_is_light():
    code = "import sys, robust_unlearning; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False"


def test_names(tiny_model, tiny_tokenizer, tiny_world):
    from robust_unlearning.world.benchmark import unlearning_data

    m = ru.methods()
    assert {"npo", "idkdpo"} <= set(m["objectives"]) and "sam" in m["strategies"]
    assert "bounded-lora" in m["parameterizations"]
    before = {k: v.clone() for k, v in tiny_model.state_dict().items()}
    result = ru.unlearn(tiny_model, tiny_tokenizer, unlearning_data(tiny_world), "graddiff+sam",
                        strategy={"rho": 0.01}, steps=2, batch_size=4, lr=1e-3)
    assert result.metrics["steps"] == 2 and result.metrics["method"] == "graddiff+sam+full"
    assert any(not torch.equal(before[k], v) for k, v in result.export().state_dict().items())
    with pytest.raises(UnlearnError, match="unknown attack"):
        ru.attack(result, tiny_tokenizer, "world-tiny", "nope")
    with pytest.raises(UnlearnError, match="expected a benchmark"):
        ru.evaluate(result, tiny_tokenizer, 3)
    with pytest.raises(AttributeError):
        ru.nothing_here  # noqa: B018
