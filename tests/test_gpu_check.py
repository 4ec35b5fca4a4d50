"""benchmarks/gpu_check.py runs to completion on the CPU (--device cpu --tiny): the smoke test of
the script the GPU check runs (issue 15)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(True)
    yield
    AcceleratorState._reset_state(True)


def test_gpu_check_smoke(tmp_path):
    path = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"
    spec = importlib.util.spec_from_file_location("gpu_check", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "gpu-smoke.json"
    mod.main(["--device", "cpu", "--tiny", "--steps", "1", "--out", str(out)])
    res = json.loads(out.read_text())
    assert res["device_type"] == "cpu" and res["torch"] and res["date"]
    rows = {r["strategy"]: r for r in res["strategies"]}
    assert set(rows) == set(mod.STRATEGIES)
    for name in ("sam", "rs", "cr", "stableun"):
        assert "perturb_realized_autocast" in rows[name] and "perturb_realized" in rows[name], name
    assert rows["sam"]["perturbation_seen"] and rows["sam"]["overhead"] > 0
    assert res["throughput"]["relearn_device"] == "cpu" and res["throughput"]["eval_texts_per_s"] > 0
