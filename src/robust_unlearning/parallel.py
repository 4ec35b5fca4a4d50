"""Independent jobs side by side on one CPU machine (``unlearn demo``'s methods and seeds).

On a few CPU cores the small models of the demo use two threads poorly (one thread does 1.3× less
per second than two, not 2×), so ``workers`` processes each take a share of the threads and pull
jobs from one queue: this process is one of them, the others are spawned (never forked: torch's
thread pools do not survive a fork). Every job is a call ``fn(state, job)`` where ``state =
setup()`` is built once per process (loading models, for instance); ``fn`` and ``setup`` must be
picklable (module-level functions or :func:`functools.partial` of them).

A job's result does not depend on which process ran it or in which order (each job seeds what it
draws); the thread count a process has changes float rounding only, as it does between machines.
A job that fails in a worker raises here, with the worker's message; a worker that dies without
answering raises too. One worker (or one job) runs everything in this process, as before.
"""

from __future__ import annotations

import os
import queue
import traceback
from typing import Any, Callable, Sequence

import torch

from .errors import UnlearnError

ENV = "ROBUST_UNLEARNING_WORKERS"


SMALL = 50_000_000  # parameters: below this, two threads are used poorly and a copy costs little


def default_workers(n_jobs: int, n_params: int = 0) -> int:
    """``ROBUST_UNLEARNING_WORKERS`` when set; else two processes on a CPU-only machine with at
    least two threads for a model under 50 M parameters; one for a larger model (its operations
    use the threads well, and each process would hold a copy), where a GPU is present or under a
    distributed launch (the processes would share the device); never more than the jobs."""
    given = os.environ.get(ENV)
    if given is not None:
        try:
            n = int(given)
        except ValueError:
            raise UnlearnError(f"{ENV} must be a whole number of processes, got {given!r}") from None
        if n < 1:
            raise UnlearnError(f"{ENV} must be at least 1, got {n}")
    elif torch.cuda.is_available() or int(os.environ.get("WORLD_SIZE", "1")) > 1 or n_params >= SMALL:
        n = 1
    else:
        n = 2 if torch.get_num_threads() >= 2 else 1
    return max(1, min(n, n_jobs))


def run_jobs(fn: Callable[[Any, Any], Any], setup: Callable[[], Any], jobs: Sequence[Any], workers: int,
             on_result: Callable[[int, Any], None] | None = None,
             setup_here: Callable[[], Any] | None = None) -> list:
    """Results of ``fn(state, job)`` for every job, in the jobs' order; ``on_result(i, result)`` is
    called in this process as each one arrives. ``setup_here``: builds this process's state
    instead of ``setup`` (for work only this process does, such as evaluating the original model),
    called after the workers have been started, so that their start-up overlaps it."""
    setup_here = setup_here or setup
    workers = max(1, min(workers, len(jobs)))
    results: list = [None] * len(jobs)

    def record(i: int, r: Any) -> None:
        results[i] = r
        if on_result is not None:
            on_result(i, r)

    if workers == 1:
        state = setup_here()
        for i, job in enumerate(jobs):
            record(i, fn(state, job))
        return results

    import multiprocessing

    ctx = multiprocessing.get_context("spawn")
    tasks, done = ctx.Queue(), ctx.Queue()
    for i, job in enumerate(jobs):
        tasks.put((i, job))
    for _ in range(workers):
        tasks.put(None)  # one stop mark per process
    threads = torch.get_num_threads()
    share = [threads // workers + (1 if k < threads % workers else 0) for k in range(workers)]
    children = [ctx.Process(target=_worker, args=(fn, setup, tasks, done, max(1, share[k + 1])), daemon=True)
                for k in range(workers - 1)]
    for c in children:
        c.start()
    pending = set(range(len(jobs)))
    try:
        torch.set_num_threads(max(1, share[0]))
        state = setup_here()
        while True:
            item = tasks.get()
            if item is None:
                break
            i, job = item
            record(i, fn(state, job))
            pending.discard(i)
            _drain(done, record, pending, block=False, children=children)
        while pending:
            _drain(done, record, pending, block=True, children=children)
    except BaseException:
        for c in children:
            c.terminate()
        raise
    finally:
        torch.set_num_threads(threads)
        for c in children:
            c.join()
    return results


def _drain(done, record, pending: set, block: bool, children) -> None:
    """Take the workers' answers that have arrived (``block``: wait for at least one, checking that
    the workers still live)."""
    while True:
        try:
            msg = done.get(timeout=1.0) if block else done.get_nowait()
        except queue.Empty:
            if not block:
                return
            if not any(c.is_alive() for c in children):
                try:  # a last answer may have arrived as the worker ended
                    msg = done.get(timeout=1.0)
                except queue.Empty:
                    codes = ", ".join(str(c.exitcode) for c in children)
                    raise UnlearnError(f"a worker process ended without finishing its jobs (exit code {codes}); "
                                       f"run with {ENV}=1 to run every job in this process") from None
            else:
                continue
        i, ok, payload = msg
        if not ok:
            kind, text = payload
            if kind == "UnlearnError":
                raise UnlearnError(text)
            raise RuntimeError(f"a job failed in a worker process:\n{text}")
        record(i, payload)
        pending.discard(i)
        block = False  # one answer taken: take the rest that are there without waiting


def _worker(fn, setup, tasks, done, threads: int) -> None:
    torch.set_num_threads(threads)
    state = None
    while True:
        item = tasks.get()
        if item is None:
            return
        i, job = item
        try:
            if state is None:
                state = setup()
            done.put((i, True, fn(state, job)))
        except BaseException as exc:  # answered, so that the parent raises it
            kind = "UnlearnError" if isinstance(exc, UnlearnError) else type(exc).__name__
            text = str(exc) if isinstance(exc, UnlearnError) else traceback.format_exc()
            done.put((i, False, (kind, text)))
            return
