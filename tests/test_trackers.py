"""Trackers and the run's log directory: TensorBoard read back, the live metrics.jsonl, a failed run's
log and error kept while the model directory stays all-or-nothing (trackers.py, runner.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from conftest import write_run_inputs

from robust_unlearning import loop, trackers
from robust_unlearning.errors import NonFiniteLossError, UnlearnError
from robust_unlearning.runner import run_config


@pytest.fixture(scope="module")
def setup_dir(tmp_path_factory, tiny_model_init, tiny_tokenizer, tiny_world):
    root = tmp_path_factory.mktemp("trackers")
    return write_run_inputs(root, tiny_model_init, tiny_tokenizer, tiny_world, 8)


def _config(root: Path, out: str, **train) -> Path:
    cfg = {"model": str(root / "model"), "method": "npo",
           "data": {"forget": str(root / "forget.jsonl"), "retain": str(root / "retain.jsonl")},
           "train": {"steps": 4, "batch_size": 4, "lr": 1e-3, "max_length": 48, **train},
           "output_dir": str(root / out), "evaluate": False}
    path = root / f"{out}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def _lines(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text().splitlines()]


def test_report_to_names():
    assert trackers.parse("none") == [] and trackers.parse("") == []
    assert trackers.parse("TensorBoard") == ["tensorboard"]
    assert "tensorboard" in trackers.parse("all")
    with pytest.raises(UnlearnError, match="unknown tracker"):
        trackers.parse("tensorboard,comet")
    assert trackers.flatten({"a": {"b": 1, "c": [1, 2]}, "d": None}) == {"a/b": 1, "a/c": "[1, 2]"}
    assert trackers.scalars({"step": 1, "eval": {"acc": 0.5}, "ok": True, "m": "x"}) == {"step": 1,
                                                                                       "eval/acc": 0.5}


def test_tensorboard_events_match_the_metrics_log(setup_dir):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = run_config(_config(setup_dir, "tb", report_to="tensorboard"), [], log=lambda *_: None)
    log_dir = setup_dir / "tb.log"
    live = _lines(log_dir / "metrics.jsonl")
    assert live == _lines(out / "metrics.jsonl") and [e["step"] for e in live] == [1, 2, 3, 4]
    events = list(log_dir.rglob("events.out.tfevents.*"))
    assert events, "no TensorBoard event file"
    acc = EventAccumulator(str(events[0].parent))
    acc.Reload()
    got = [(e.step, e.value) for e in acc.Scalars("forget_loss")]
    assert [s for s, _ in got] == [1, 2, 3, 4]
    assert [v for _, v in got] == pytest.approx([e["forget_loss"] for e in live], rel=1e-6)
    assert not (log_dir / "error.txt").exists()


def test_a_failed_run_keeps_its_log_and_error_but_no_output(setup_dir, monkeypatch):
    real = loop.train_step

    def failing(strategy, make_ctx, *a, **k):
        if a[2] == 2:  # the third optimizer step (0-based step argument)
            raise NonFiniteLossError("forget loss", 2)
        return real(strategy, make_ctx, *a, **k)

    monkeypatch.setattr(loop, "train_step", failing)
    with pytest.raises(NonFiniteLossError):
        run_config(_config(setup_dir, "fail"), [], log=lambda *_: None)
    assert not (setup_dir / "fail").exists()
    assert not [p for p in setup_dir.iterdir() if p.name.startswith(".fail.")]
    log_dir = setup_dir / "fail.log"
    assert [e["step"] for e in _lines(log_dir / "metrics.jsonl")] == [1, 2]
    assert "NonFiniteLossError" in (log_dir / "error.txt").read_text()
