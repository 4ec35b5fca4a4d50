"""Progress of long stages (training, relearning, attacks), on stderr.

- on a terminal: tqdm bars;
- without one (a background job, SLURM, CI): a plain line per stage every ``interval`` seconds
  (``ROBUST_UNLEARNING_PROGRESS_INTERVAL``, default 30) or every 10 % of the total, whichever comes
  first, plus one when the stage starts and one when it ends, e.g.

      [progress] unlearn npo+sam+lora: 40/125 (32%) 1.31 it/s, elapsed 0:00:30, ETA 0:01:05

- ``unlearn --quiet`` (or ``ROBUST_UNLEARNING_QUIET=1``) silences both;
  ``ROBUST_UNLEARNING_PROGRESS=1`` forces bars without a terminal.
"""

from __future__ import annotations

import datetime
import os
import sys
import time

from tqdm.auto import tqdm

QUIET_ENV = "ROBUST_UNLEARNING_QUIET"
INTERVAL_ENV = "ROBUST_UNLEARNING_PROGRESS_INTERVAL"


def quiet() -> bool:
    return os.environ.get(QUIET_ENV) == "1"


def progress_enabled() -> bool:
    """Whether bars (ours and Hugging Face's) are drawn."""
    if quiet():
        return False
    if os.environ.get("ROBUST_UNLEARNING_PROGRESS") == "1":
        return True
    return sys.stderr.isatty()


def _interval() -> float:
    raw = os.environ.get(INTERVAL_ENV, "30")
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value > 0:
        from .errors import UnlearnError

        raise UnlearnError(f"{INTERVAL_ENV} must be a positive number of seconds, got {raw!r}")
    return value


def _hms(seconds: float) -> str:
    return str(datetime.timedelta(seconds=round(seconds)))


class LineProgress:
    """The tqdm calls the code uses (update, set_postfix, set_description, close), printed as lines."""

    def __init__(self, total: int | None = None, desc: str = "", initial: int = 0,
                 interval: float | None = None, clock=time.monotonic, stream=None):
        self.total, self.desc, self.n = total, desc, initial
        self.interval = _interval() if interval is None else interval
        self.clock, self.stream = clock, stream
        self.postfix = ""
        self._start = self._last = clock()
        self._start_n = initial
        self._last_decile = self._decile()
        self._closed = False
        self._emit("started")

    def _decile(self) -> int:
        return int(10 * self.n / self.total) if self.total else 0

    def line(self, note: str = "") -> str:
        elapsed = self.clock() - self._start
        done = self.n - self._start_n
        rate = done / elapsed if elapsed > 0 else 0.0
        parts = [f"{self.n}/{self.total}" if self.total else f"{self.n}"]
        if self.total:
            parts[0] += f" ({100 * self.n / self.total:.0f}%)"
        if done:
            parts.append(f"{rate:.3g} it/s" if rate >= 1 else f"{1 / rate:.3g} s/it")
        parts.append(f"elapsed {_hms(elapsed)}")
        if self.total and done and self.n < self.total:
            parts.append(f"ETA {_hms((self.total - self.n) / rate)}")
        text = f"[progress] {self.desc}: " + ", ".join(parts) + (f" {note}" if note else "")
        return text + (f" [{self.postfix}]" if self.postfix else "")

    def _emit(self, note: str = "") -> None:
        print(self.line(note), file=self.stream or sys.stderr, flush=True)
        self._last = self.clock()

    def update(self, n: int = 1) -> None:
        self.n += n
        decile = self._decile()
        if self.clock() - self._last >= self.interval or decile > self._last_decile:
            self._last_decile = decile
            if not (self.total and self.n >= self.total):  # the end is reported by close()
                self._emit()

    def set_postfix(self, ordered_dict=None, refresh: bool = True, **kw) -> None:
        items = {**(ordered_dict or {}), **kw}
        self.postfix = ", ".join(f"{k}={v}" for k, v in items.items())

    def set_description(self, desc: str | None = None, refresh: bool = True) -> None:
        self.desc = desc or ""

    def refresh(self) -> None:
        pass

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._emit("done")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _main_process() -> bool:
    """Lines come from one process of a multi-process launch (torchrun / accelerate set RANK)."""
    return os.environ.get("RANK", "0").strip() in ("", "0")


def progress(total: int | None = None, desc: str = "", **kw):
    """A progress bar (terminal), progress lines (no terminal) or nothing (quiet, ``disable=True``,
    or, for lines, a process other than the first of a launch)."""
    if not quiet() and not progress_enabled() and not kw.get("disable") and _main_process():
        return LineProgress(total=total, desc=desc, initial=kw.get("initial", 0))
    return tqdm(total=total, desc=desc, disable=not progress_enabled(), leave=False,
                dynamic_ncols=True, **kw)


def add_quiet_option(app) -> None:
    """``unlearn --quiet COMMAND ...``: no bars and no progress lines (sets ROBUST_UNLEARNING_QUIET
    for this process and the processes it starts)."""
    import typer

    @app.callback()
    def _options(quiet_: bool = typer.Option(False, "--quiet", "-q",
                                              help="No progress bars or progress lines.")) -> None:
        if quiet_:
            os.environ[QUIET_ENV] = "1"
