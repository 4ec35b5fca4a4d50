"""What the ``unlearn`` commands share: option types, the one error handler, and the parsers of
comma-separated settings.

Every user error is an :class:`UnlearnError`; :func:`handles_errors` turns it into one line
``error: ...`` on stderr and exit code 2 (``exit_code`` of the error).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Annotated, List

import typer

from .errors import UnlearnError

BENCHMARKS_HELP = "world, world-quick, tofu, muse-news, muse-books or wmdp"

ModelDir = Annotated[Path, typer.Option(help="A saved (unlearned) model directory.")]
Gold = Annotated[bool, typer.Option(help="World: attack the gold model too (the floor).")]
GoldModel = Annotated[Path | None, typer.Option(
    "--gold-model", help="Other benchmarks: a model that never learnt the forget set (TOFU's retain-only, "
                         "MUSE's retrain model), treated the same way: the floor.")]
Data = Annotated[Path | None, typer.Option(help="Other benchmarks: local data (default: the hub).")]
Split = Annotated[str | None, typer.Option(help="tofu: forget01/05/10; wmdp: bio, cyber or bio,cyber.")]
Options = Annotated[List[str] | None, typer.Option(
    "--option", "-o", help="Further benchmark option key=value (repeatable).")]
OutFile = Annotated[Path | None, typer.Option(help="Write the results JSON here.")]


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a message from a library may span several)."""
    return " ".join(ln.strip() for ln in str(exc).splitlines() if ln.strip()) or type(exc).__name__


def fail(exc: Exception) -> None:
    typer.echo(f"error: {one_line(exc)}", err=True)
    raise typer.Exit(getattr(exc, "exit_code", 2))


def handles_errors(command):
    """A command whose :class:`UnlearnError` (and ``ValueError`` of a settings class) ends it with
    one line and the error's exit code."""
    @functools.wraps(command)
    def run(*args, **kwargs):
        try:
            return command(*args, **kwargs)
        except UnlearnError as exc:
            fail(exc)

    return run


def build(cls, **kw):
    """``cls(**kw)``, its ``ValueError`` (a bad setting) as an :class:`UnlearnError`."""
    try:
        return cls(**kw)
    except ValueError as exc:
        raise UnlearnError(str(exc)) from exc


def ints(text: str, what: str) -> list[int]:
    try:
        vals = [int(x) for x in str(text).split(",") if x.strip()]
    except ValueError as exc:
        raise UnlearnError(f"{what} takes comma-separated integers, not {text!r}") from exc
    if not vals:
        raise UnlearnError(f"{what} is empty")
    return vals


def names(text: str | None) -> list[str]:
    return [x.strip() for x in str(text or "").split(",") if x.strip()]


def parse_seeds(text: str) -> list[int]:
    text = str(text).strip()
    try:
        if "," in text:
            return [int(x) for x in text.split(",") if x.strip()]
        n = int(text)
    except ValueError as exc:
        raise UnlearnError(f"--seeds takes a count (3) or a list (0,1,2), not {text!r}") from exc
    if n < 1:
        raise UnlearnError("--seeds must be at least 1")
    return list(range(n))


def parse_budgets(text: str) -> list[tuple[int, int]]:
    out = []
    for part in str(text).split(","):
        try:
            k, s = part.lower().split("x")
            out.append((int(k), int(s)))
        except ValueError as exc:
            raise UnlearnError(f"a budget is SAMPLESxSTEPS (e.g. 20x5), not {part!r}") from exc
    return out


def attack_overrides(budgets: str | None = None, lr: float | None = None,
                     seeds: list[int] | None = None) -> dict:
    """The relearning attack's settings given on the command line (``None``: not given), to lay
    over the recipe's or the config class's defaults."""
    given = {"budgets": parse_budgets(budgets) if budgets is not None else None, "lr": lr, "seeds": seeds}
    return {k: v for k, v in given.items() if v is not None}


def benchmark_of(name: str, data=None, split=None, option=None):
    """The benchmark of a command line: any world name or a standard benchmark with its options."""
    from .benchmarks import build_benchmark
    from .config import parse_overrides

    return build_benchmark(name, data, split, parse_overrides(option or []))
