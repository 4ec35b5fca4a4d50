"""Jobs side by side (robust_unlearning.parallel) and the demo's use of them: the same answers in the
same order as in one process, a worker's error raised here with its message, a dead worker
reported, and the demo's results unchanged by the worker processes."""

from __future__ import annotations

import copy
import os
import re
import time
from functools import partial

import pytest
import torch

from robust_unlearning.errors import UnlearnError
from robust_unlearning.parallel import ENV, default_workers, run_jobs


def _setup(tag: str) -> dict:
    return {"tag": tag, "pid": os.getpid()}


def _square(state: dict, job: int) -> tuple:
    time.sleep(0.05 if job % 2 else 0.0)  # answers arrive out of order
    return job * job, state["tag"], state["pid"], torch.get_num_threads()


def _fail(state: dict, job: int):
    if job == 3:
        raise UnlearnError(f"job {job} refused in process {state['pid']}")
    return job


def _die(state: dict, job: int):
    if job == 2:
        os._exit(3)
    return job


def test_answers_in_job_order_from_two_worker_processes():
    seen, here = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    try:
        out = run_jobs(_square, partial(_setup, "worker"), list(range(12)), 2,
                       on_result=lambda i, r: seen.append(i), setup_here=lambda: here.append(os.getpid()))
        assert torch.get_num_threads() == 2  # this process keeps its threads
    finally:
        torch.set_num_threads(threads)
    assert [r[0] for r in out] == [j * j for j in range(12)]
    assert sorted(seen) == list(range(12))  # every answer announced once
    assert {r[1] for r in out} == {"worker"} and os.getpid() not in {r[2] for r in out}
    assert len({r[2] for r in out}) <= 2  # at most two processes, each with its own state
    assert {r[3] for r in out} == {1}  # two threads shared: one each
    assert here == [os.getpid()]  # setup_here ran once, here


def test_one_worker_runs_everything_here():
    out = run_jobs(_square, partial(_setup, "one"), [3, 1, 2], 1)
    assert [r[:3] for r in out] == [(9, "one", os.getpid()), (1, "one", os.getpid()), (4, "one", os.getpid())]
    built = []
    run_jobs(_square, partial(_setup, "one"), [1], 4, setup_here=lambda: built.append(1) or _setup("here"))
    assert built == [1]  # one job: run here, with this process's own state


def test_worker_error_is_raised_here_with_its_message():
    with pytest.raises(UnlearnError, match=r"job 3 refused in process \d+") as info:
        run_jobs(_fail, partial(_setup, "w"), list(range(8)), 2)
    assert str(os.getpid()) not in str(info.value)  # raised in a worker, re-raised here


def test_dead_worker_is_reported():
    with pytest.raises(UnlearnError, match=f"worker process ended.*{ENV}=1"):
        run_jobs(_die, partial(_setup, "w"), list(range(8)), 2)


def test_default_workers(monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    assert default_workers(5, 1_000_000) == 2
    assert default_workers(1, 1_000_000) == 1  # never more than the jobs
    assert default_workers(5, 135_000_000) == 1  # a large model uses the threads well
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert default_workers(5, 1_000_000) == 1
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert default_workers(5, 1_000_000) == 1
    monkeypatch.delenv("WORLD_SIZE")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert default_workers(5, 1_000_000) == 1
    monkeypatch.setenv(ENV, "3")
    assert default_workers(5, 1_000_000) == 3 and default_workers(2) == 2
    for bad in ("two", "0"):
        monkeypatch.setenv(ENV, bad)
        with pytest.raises(UnlearnError, match=ENV):
            default_workers(5)


@pytest.mark.slow
def test_demo_results_do_not_depend_on_worker_processes(tmp_path):
    """The world-tiny demo with two processes of one thread each gives the results of one process
    with one thread, entry by entry (timings aside)."""
    from robust_unlearning.benchmarks import build_benchmark
    from robust_unlearning.demo import run_demo

    bench = build_benchmark("world-tiny")
    recipe = copy.deepcopy(bench.recipe())
    recipe["defaults"]["train"]["steps"] = 4
    attack = bench.relearn_config({"budgets": [[4, 2]], "seeds": [0]}, recipe=recipe)
    runs, lines = {}, {}
    threads = torch.get_num_threads()
    try:
        for workers, n_threads in ((1, 1), (2, 2)):
            torch.set_num_threads(n_threads)
            lines[workers] = []
            runs[workers] = run_demo(bench, ["graddiff", "simnpo", "kl"], [0], tmp_path / f"w{workers}",
                                     recipe=recipe, attack=attack, workers=workers, log=lines[workers].append)
    finally:
        torch.set_num_threads(threads)
    strip = lambda e: {k: v for k, v in e.items() if k not in ("unlearn", "budget")}  # noqa: E731 (timings)
    one, two = runs[1]["entries"], runs[2]["entries"]
    assert [e["method"] for e in one] == ["gold", "graddiff", "simnpo", "kl"] == [e["method"] for e in two]
    assert [strip(e) for e in one] == [strip(e) for e in two]
    assert [e["budget"]["passes"] for e in one[1:]] == [e["budget"]["passes"] for e in two[1:]]
    untimed_rows = lambda rows: [{k: v for k, v in r.items() if "seconds" not in k} for r in rows]  # noqa: E731
    assert untimed_rows(runs[1]["summary"]) == untimed_rows(runs[2]["summary"])
    untimed = lambda ls: sorted(re.sub(r"\(\d+(\.\d+)?s\)", "", x) for x in ls[1:4])  # noqa: E731
    assert untimed(lines[1]) == untimed(lines[2])  # one line per method, in arrival order
    assert (tmp_path / "w2" / "results.json").exists() and (tmp_path / "w2" / "report.md").exists()


def _slow(state: dict, job: int):
    time.sleep(30)
    return job


def test_an_error_here_stops_the_workers_at_once():
    """setup_here failing (a bad gold model, say) does not wait for the workers' long jobs."""
    def bad():
        raise UnlearnError("bad input found here")

    t = time.perf_counter()
    with pytest.raises(UnlearnError, match="bad input found here"):
        run_jobs(_slow, partial(_setup, "w"), list(range(4)), 2, setup_here=bad)
    assert time.perf_counter() - t < 25


def test_demo_refuses_no_workers():
    from typer.testing import CliRunner

    from robust_unlearning.cli import app

    res = CliRunner().invoke(app, ["demo", "--quick", "--workers", "0"])
    assert res.exit_code != 0 and "--workers must be at least 1" in res.output
