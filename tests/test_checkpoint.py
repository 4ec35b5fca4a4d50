"""Checkpoint and resume: a run killed with SIGKILL and resumed with ``--resume`` ends with the weights
of an uninterrupted run; a non-finite loss or gradient stops the run, keeps the last good checkpoint
and leaves no half-written output."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml
from conftest import write_run_inputs
from safetensors.torch import load_file

from robust_unlearning import checkpoint as ckpt
from robust_unlearning.errors import NonFiniteLossError
from robust_unlearning.runner import run_config

STEPS = 6

# Runs ``unlearn run`` in this process after patching the strategy so that the process SIGKILLs
# itself inside step KILL_AT (after that step's optimizer update, before its checkpoint): a crash
# at a known point, with checkpoints of earlier steps on disk and the work of this step lost.
KILLER = """
import os, signal, sys
from robust_unlearning.strategies.base import STRATEGIES
cls = STRATEGIES.get(sys.argv[1])
kill_at = int(sys.argv[2])
orig = cls.after_step
def after_step(self, ctx):
    orig(self, ctx)
    if ctx.step + 1 == kill_at:
        os.kill(os.getpid(), signal.SIGKILL)
cls.after_step = after_step
from robust_unlearning.cli import main
sys.argv = ["unlearn", "run", *sys.argv[3:]]
main()
"""


@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory, tiny_model_init, tiny_tokenizer, tiny_world):
    """A tiny random Llama + tokenizer saved as a model directory, and small forget/retain JSONL."""
    return write_run_inputs(tmp_path_factory.mktemp("ckpt"), tiny_model_init, tiny_tokenizer, tiny_world, 12)


def _config(root: Path, method: str, out: str, strategy: dict | None = None, objective: dict | None = None,
            **train) -> Path:
    cfg = {
        "model": str(root / "model"), "method": method, "strategy": strategy or {},
        "objective": objective or {},
        "data": {"forget": str(root / "forget.jsonl"), "retain": str(root / "retain.jsonl")},
        # batch 5 of 12 records: epochs end with a partial batch, and 6 steps span 2 epochs
        "train": {"steps": STEPS, "batch_size": 5, "lr": 1e-3, "scheduler": "linear", "warmup_steps": 2,
                  "max_length": 48,
                  **train},
        "output_dir": str(root / out), "evaluate": False,
    }
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _weights(out: Path) -> dict[str, torch.Tensor]:
    return load_file(str(out / "model.safetensors"))


STABLEUN = {"rules": ["sap", "gpn", "hws"], "T": 2, "M": 1, "rho": 1e-3, "w": 3}
CASES = [("graddiff", {}), ("graddiff+stableun", STABLEUN)]


def _assert_same_run(out: Path, ref: Path, ckpt_dir: Path) -> None:
    got, want = _weights(out), _weights(ref)
    assert got.keys() == want.keys()
    for k in want:
        assert torch.equal(got[k], want[k]), (k, float((got[k] - want[k]).abs().max()))
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    ref_lines = [json.loads(x) for x in (ref / "metrics.jsonl").read_text().splitlines()]
    assert [e["step"] for e in lines] == list(range(1, STEPS + 1))
    assert [e["forget_loss"] for e in lines] == [e["forget_loss"] for e in ref_lines]
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 4
    assert [s for s, _ in ckpt.list_checkpoints(ckpt_dir)] == [4, 6]


@pytest.mark.slow
@pytest.mark.parametrize("method,strategy", CASES, ids=[c[0] for c in CASES])
def test_killed_run_resumes_to_the_uninterrupted_weights(method, strategy, setup_dir):
    """``unlearn run`` in a subprocess, SIGKILLed during step 5 (checkpoints every 2 steps), then
    ``--resume``: bitwise the weights, and the same per-step log, as one uninterrupted run."""
    root = setup_dir
    name = method.replace("+", "-")
    # the reference: one uninterrupted run without checkpoints
    ref = run_config(_config(root, method, f"{name}-ref", strategy), [], log=lambda *_: None)

    cfg = _config(root, method, f"{name}-crash", strategy, checkpoint_every=2, keep_checkpoints=2)
    out, ckpt_dir = root / f"{name}-crash", root / f"{name}-crash.checkpoints"
    strategy_name = method.split("+")[1] if "+" in method else "plain"
    proc = subprocess.run([sys.executable, "-c", KILLER, strategy_name, "5", str(cfg)], capture_output=True,
                          text=True, timeout=120, env={**os.environ, "ROBUST_UNLEARNING_QUIET": "1"})
    assert proc.returncode == -9, proc.stderr[-2000:]
    assert not out.exists()  # nothing half-written
    assert [s for s, _ in ckpt.list_checkpoints(ckpt_dir)] == [2, 4]  # the newest 2 of 2 and 4

    from typer.testing import CliRunner

    from robust_unlearning.cli import app

    res = CliRunner().invoke(app, ["run", str(cfg), "--resume"])
    assert res.exit_code == 0, res.output
    assert "resuming from" in res.output and "step-000004" in res.output
    _assert_same_run(out, ref, ckpt_dir)


def test_crashed_weight_averaging_resumes_its_average(setup_dir, monkeypatch):
    """WA's state (the running average and its count) goes through the checkpoint: a crash (here an
    exception in step 5, in this process) and a resume give the uninterrupted averaged weights."""
    from robust_unlearning.strategies.wa import WA

    root = setup_dir
    ref = run_config(_config(root, "npo+wa", "wa-ref", {"start": 2}), [], log=lambda *_: None)
    cfg = _config(root, "npo+wa", "wa-crash", {"start": 2}, checkpoint_every=2)
    orig = WA.after_step

    def crash(self, ctx):
        orig(self, ctx)
        if ctx.step + 1 == 5:
            raise RuntimeError("crash")

    monkeypatch.setattr(WA, "after_step", crash)
    with pytest.raises(RuntimeError, match="crash"):
        run_config(cfg, [], log=lambda *_: None)
    monkeypatch.setattr(WA, "after_step", orig)
    _, _, state = ckpt.load(ckpt.latest(root / "wa-crash.checkpoints"))
    assert state["strategy"]["count"] == 3 and len(state["strategy"]["avg"]) > 0  # iterates 2, 3, 4
    run_config(cfg, [], log=lambda *_: None, resume=True)
    _assert_same_run(root / "wa-crash", ref, root / "wa-crash.checkpoints")


def test_crashed_primal_dual_resumes_its_dual_variable(setup_dir, monkeypatch):
    """PDU's dual variable λ goes through the checkpoint: crash in step 5, resume, and the weights
    and the logged λ are those of the uninterrupted run."""
    from robust_unlearning.objectives.pdu import PDU

    root = setup_dir
    opts = {"eps": 0.2, "dual_step": 3.0}
    ref = run_config(_config(root, "pdu", "pdu-ref", objective=opts), [], log=lambda *_: None)
    cfg = _config(root, "pdu", "pdu-crash", objective=opts, checkpoint_every=2)
    orig = PDU.after_step

    def crash(self, stats):
        out = orig(self, stats)
        if self._steps == 5:
            raise RuntimeError("crash")
        return out

    monkeypatch.setattr(PDU, "after_step", crash)
    with pytest.raises(RuntimeError, match="crash"):
        run_config(cfg, [], log=lambda *_: None)
    monkeypatch.setattr(PDU, "after_step", orig)
    _, _, state = ckpt.load(ckpt.latest(root / "pdu-crash.checkpoints"))
    assert state["objective"]["steps"] == 4 and state["objective"]["dual"] != 1.0
    run_config(cfg, [], log=lambda *_: None, resume=True)
    _assert_same_run(root / "pdu-crash", ref, root / "pdu-crash.checkpoints")
    def weights(out):
        return [json.loads(x)["retain_weight"] for x in (out / "metrics.jsonl").read_text().splitlines()]

    got, want = weights(root / "pdu-crash"), weights(ref)
    assert got == want and len(set(want)) > 2


@pytest.mark.slow
def test_resume_without_checkpoints_starts_afresh_and_other_settings_are_refused(setup_dir):
    root = setup_dir
    cfg = _config(root, "graddiff", "fresh", checkpoint_every=3)
    run_config(cfg, [], log=lambda *_: None, resume=True)  # nothing to resume: a full run
    assert [s for s, _ in ckpt.list_checkpoints(root / "fresh.checkpoints")] == [3, 6]
    from robust_unlearning.errors import UnlearnError

    with pytest.raises(UnlearnError, match="other settings"):
        run_config(cfg, ["train.lr=0.5"], log=lambda *_: None, resume=True)
    with pytest.raises(UnlearnError, match="--resume needs checkpoints"):
        run_config(_config(root, "graddiff", "nockpt"), [], resume=True)


@pytest.mark.slow
@pytest.mark.parametrize("what", ["loss", "gradient"])
def test_non_finite_stops_and_keeps_the_last_good_checkpoint(what, setup_dir, monkeypatch):
    """Step 3 (0-based) turns non-finite: the run stops naming step 3, the checkpoint after 3 good
    steps survives and holds finite weights, the output directory is not written, and resuming
    from that checkpoint once the problem is gone completes the run."""
    from robust_unlearning.objectives.graddiff import GradDiff

    root = setup_dir
    calls = {"n": 0}
    orig = GradDiff.forget_loss

    def bad(self, model, batch, ref):
        loss = orig(self, model, batch, ref)
        calls["n"] += 1
        if calls["n"] == 4:  # the 4th forget loss: step 3 of the plain strategy
            if what == "loss":
                return loss * float("nan")
            p = next(q for q in model.parameters() if q.requires_grad)
            return loss + torch.sqrt((p - p.detach()).sum())  # value 0, gradient inf
        return loss

    monkeypatch.setattr(GradDiff, "forget_loss", bad)
    cfg = _config(root, "graddiff", f"nan-{what}", checkpoint_every=1, keep_checkpoints=2)
    with pytest.raises(NonFiniteLossError, match=f"non-finite {what} at step 3.*step-000003"):
        run_config(cfg, [], log=lambda *_: None)
    out = root / f"nan-{what}"
    assert not out.exists()
    assert not [p for p in root.iterdir() if p.name.startswith(f".nan-{what}.tmp")]
    last = ckpt.latest(root / f"nan-{what}.checkpoints")
    assert last is not None and last.name == "step-000003"
    step, weights, state = ckpt.load(last)
    assert step == 3 and len(state["log"]) == 3
    assert all(torch.isfinite(w).all() for w in weights.values())

    monkeypatch.setattr(GradDiff, "forget_loss", orig)
    run_config(cfg, [], log=lambda *_: None, resume=True)
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["resumed_from_step"] == 3 and math.isfinite(metrics["final_forget_loss"])


def test_pack_round_trips_nested_state():
    import random

    import numpy as np

    state = {"a": [torch.arange(3.0), None, (1, 2.5, "x")], 7: {"b": np.arange(4, dtype=np.uint32)},
             "rng": ckpt.rng_state(), "inf": float("inf")}
    tensors: dict = {}
    back = ckpt.unpack(json.loads(json.dumps(ckpt.pack(state, tensors))), tensors)
    assert torch.equal(back["a"][0], state["a"][0]) and back["a"][1:] == state["a"][1:]
    assert np.array_equal(back[7]["b"], state[7]["b"]) and back["inf"] == math.inf
    ckpt.set_rng_state(back["rng"])
    x = (random.random(), float(np.random.rand()), float(torch.rand(())))
    ckpt.set_rng_state(state["rng"])
    assert x == (random.random(), float(np.random.rand()), float(torch.rand(())))
