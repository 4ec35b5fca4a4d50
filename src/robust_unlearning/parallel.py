"""Independent jobs side by side in worker processes (``unlearn demo``'s methods and seeds,
``unlearn sweep``'s runs).

On a few CPU cores the small models of the demo use two threads poorly (one thread does 1.3× less
per second than two, not 2×), so ``workers`` spawned processes each take a share of the threads.
Every job is a call ``fn(state, job)`` where ``state = setup()`` is built once per process (loading
models, for instance); ``fn`` and ``setup`` must be picklable (module-level functions or
:func:`functools.partial` of them).

A job's result does not depend on which process ran it or in which order (each job seeds what it
draws); the thread count a process has changes float rounding only, as it does between machines.
A job that fails in a worker raises here with its own exception; a worker that dies raises an
:class:`UnlearnError`. One worker (or one job) runs everything in this process.
"""

from __future__ import annotations

import os
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


def worker_pool(workers: int, threads: int, setup: Callable[[], Any] | None = None):
    """A pool of ``workers`` spawned processes (never forked: torch's thread pools do not survive a
    fork), each with ``threads`` threads, quiet progress, and ``setup()`` built once as its state
    (read by :func:`_call`). ``unlearn sweep`` and ``unlearn demo`` both run their jobs here."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                               initializer=_init, initargs=(max(1, threads), setup))


_STATE: dict = {}


def _init(threads: int, setup) -> None:
    os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")
    torch.set_num_threads(threads)
    _STATE.clear()
    _STATE["setup"] = setup


def _call(fn, job):
    """``fn(state, job)`` in a worker, its state built on the first job."""
    if "state" not in _STATE:
        setup = _STATE.get("setup")
        _STATE["state"] = setup() if setup is not None else None
    return fn(_STATE["state"], job)


def run_jobs(fn: Callable[[Any, Any], Any], setup: Callable[[], Any], jobs: Sequence[Any], workers: int,
             on_result: Callable[[int, Any], None] | None = None,
             setup_here: Callable[[], Any] | None = None) -> list:
    """Results of ``fn(state, job)`` for every job, in the jobs' order; ``on_result(i, result)`` is
    called in this process as each one arrives. With one worker everything runs here, with the
    state ``setup_here()`` (default ``setup()``). With more, the jobs run in a :func:`worker_pool`
    whose processes share this process's threads and build their state with ``setup()``, while this
    process calls ``setup_here()`` (for work only it does, such as evaluating the original model;
    its result is not used by the jobs)."""
    workers = max(1, min(workers, len(jobs)))
    results: list = [None] * len(jobs)

    def record(i: int, r: Any) -> None:
        results[i] = r
        if on_result is not None:
            on_result(i, r)

    if workers == 1:
        state = (setup_here or setup)()
        for i, job in enumerate(jobs):
            record(i, fn(state, job))
        return results

    from concurrent.futures import FIRST_COMPLETED, wait
    from concurrent.futures.process import BrokenProcessPool

    with worker_pool(workers, torch.get_num_threads() // workers, setup) as pool:
        futures = {pool.submit(_call, fn, job): i for i, job in enumerate(jobs)}
        try:
            if setup_here is not None:
                setup_here()
            pending = set(futures)
            while pending:
                finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                for fut in sorted(finished, key=futures.get):
                    record(futures[fut], fut.result())
        except BrokenProcessPool:
            raise UnlearnError(f"a worker process ended without finishing its jobs; run with {ENV}=1 "
                               "to run every job in this process") from None
        except BaseException:  # this process failed (or was interrupted): stop the workers now
            # the pool cancels the jobs not started itself (cancelling them here races with its
            # manager thread, which then fails on them once the processes are gone); its processes
            # are taken first, since shutting down forgets them
            procs = list((getattr(pool, "_processes", None) or {}).values())
            pool.shutdown(wait=False, cancel_futures=True)
            for proc in procs:
                proc.terminate()
            for proc in procs:  # one that outlives SIGTERM (seen once in a full test run) is killed
                proc.join(timeout=5)
                if proc.is_alive():
                    proc.kill()
                    proc.join(timeout=5)
            raise
    return results
