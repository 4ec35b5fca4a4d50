"""Long stages talk without a terminal: plain progress lines on stderr at an interval or every 10 %,
bars on a terminal, nothing with --quiet / ROBUST_UNLEARNING_QUIET=1."""

from __future__ import annotations

import copy
import io
import re

import pytest
from typer.testing import CliRunner

from robust_unlearning.errors import UnlearnError
from robust_unlearning.progress import QUIET_ENV, LineProgress, progress


class Clock:
    def __init__(self):
        self.t = 0.0

    def __call__(self):
        return self.t


def _run(total, step_seconds, interval, steps=None):
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(total=total, desc="stage", interval=interval, clock=clock, stream=out)
    for _ in range(total if steps is None else steps):
        clock.t += step_seconds
        bar.update(1)
    bar.close()
    return out.getvalue().splitlines()


def test_a_line_every_tenth_when_steps_are_fast():
    lines = _run(total=100, step_seconds=1.0, interval=30)
    assert lines[0] == "[progress] stage: 0/100 (0%), elapsed 0:00:00 started"
    # 10 %, 20 %, ... 90 %, then the end: each 10 steps of 1 s, long before the 30 s interval
    assert [re.search(r": (\d+)/100", ln).group(1) for ln in lines[1:]] == \
        [str(10 * k) for k in range(1, 10)] + ["100"]
    assert lines[3] == "[progress] stage: 30/100 (30%), 1 it/s, elapsed 0:00:30, ETA 0:01:10"
    assert lines[-1] == "[progress] stage: 100/100 (100%), 1 it/s, elapsed 0:01:40 done"


def test_a_line_every_interval_when_steps_are_slow():
    lines = _run(total=1000, step_seconds=5.0, interval=30, steps=20)
    counts = [int(re.search(r": (\d+)/1000", ln).group(1)) for ln in lines]
    assert counts == [0, 6, 12, 18, 20]  # every 30 s = 6 steps; close() reports where it stopped
    assert "0.2 it/s" not in lines[1] and "5 s/it" in lines[1]
    assert "ETA 1:22:50" in lines[1]  # 994 steps left at 5 s each: 4970 s


def test_postfix_is_shown():
    clock, out = Clock(), io.StringIO()
    bar = LineProgress(total=4, desc="x", interval=30, clock=clock, stream=out)
    bar.set_postfix(f="0.123")
    clock.t = 2
    bar.update(2)
    assert out.getvalue().splitlines()[-1].endswith("[f=0.123]")


def test_bad_interval_is_one_clear_error(monkeypatch):
    monkeypatch.setenv("ROBUST_UNLEARNING_PROGRESS_INTERVAL", "soon")
    with pytest.raises(UnlearnError, match="PROGRESS_INTERVAL"):
        LineProgress(total=3, desc="x")


def test_no_tty_lines_and_quiet_silence(monkeypatch, capsys):
    monkeypatch.delenv(QUIET_ENV, raising=False)
    monkeypatch.delenv("ROBUST_UNLEARNING_PROGRESS", raising=False)
    bar = progress(total=3, desc="relearn")
    assert isinstance(bar, LineProgress)  # capsys' stderr is no terminal
    bar.update(3)
    bar.close()
    err = capsys.readouterr().err
    assert "[progress] relearn: 0/3" in err and "[progress] relearn: 3/3 (100%)" in err
    monkeypatch.setenv("RANK", "1")  # another process of a launch: silent
    bar = progress(total=3, desc="relearn")
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""
    monkeypatch.delenv("RANK")
    monkeypatch.setenv(QUIET_ENV, "1")
    bar = progress(total=3, desc="relearn")
    bar.update(3)
    bar.close()
    assert capsys.readouterr().err == ""


def test_training_talks_without_a_terminal(monkeypatch, capsys, tiny_model, tiny_tokenizer, tiny_world):
    from robust_unlearning.config import build_config
    from robust_unlearning.loop import unlearn
    from robust_unlearning.world.benchmark import unlearning_data

    monkeypatch.delenv(QUIET_ENV, raising=False)
    forget, retain = unlearning_data(tiny_world)
    cfg = build_config({"method": "graddiff", "train": {"steps": 3, "batch_size": 4}})
    unlearn(copy.deepcopy(tiny_model), tiny_tokenizer, forget, retain, cfg)
    err = capsys.readouterr().err
    assert re.search(r"\[progress\] unlearn graddiff\S*: 0/3 .*started", err)
    assert re.search(r"\[progress\] unlearn graddiff\S*: 3/3 \(100%\), .* it/s, elapsed \S+ done", err)


def test_cli_quiet_flag_sets_the_switch(monkeypatch):
    from robust_unlearning.cli import app

    monkeypatch.delenv(QUIET_ENV, raising=False)
    result = CliRunner().invoke(app, ["--quiet", "methods"])
    assert result.exit_code == 0, result.output
    import os

    assert os.environ.get(QUIET_ENV) == "1"
    monkeypatch.delenv(QUIET_ENV)
