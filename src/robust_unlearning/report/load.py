"""Reading results files into :class:`Series`: one (run, method) with its per-seed entries."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UnlearnError


@dataclass
class Series:
    run: str
    method: str
    entries: list[dict] = field(default_factory=list)
    label: str = ""

    @property
    def is_gold(self) -> bool:
        return self.method == "gold"


def _read(path: Path) -> dict:
    file = path / "results.json" if path.is_dir() else path
    if not file.is_file():
        raise UnlearnError(f"no results in {path}: expected a run directory with results.json or a JSON file")
    try:
        data = json.loads(file.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UnlearnError(f"cannot read {file}: {exc}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("entries"), list) or not data["entries"]:
        raise UnlearnError(f"{file} has no 'entries' list (write it with `unlearn demo` or an "
                           "attack's --out)")
    for i, e in enumerate(data["entries"]):
        if not isinstance(e, dict) or "method" not in e:
            raise UnlearnError(f"{file}: entry {i} has no 'method'")
    return data


def load_runs(paths: list[str | Path]) -> tuple[list[Series], list[dict]]:
    """All series of all runs (gold last within each run) and the raw results per run."""
    if not paths:
        raise UnlearnError("give at least one run directory or results file")
    names, raws, series = [], [], []
    for p in paths:
        p = Path(p)
        raw = _read(p)
        base = p.name if p.is_dir() else p.stem
        name, i = base, 2
        while name in names:
            name, i = f"{base}-{i}", i + 1
        names.append(name)
        raws.append({"run": name, "path": str(p), **{k: v for k, v in raw.items() if k != "entries"}})
        groups: dict[str, Series] = {}
        for e in raw["entries"]:
            groups.setdefault(str(e["method"]), Series(name, str(e["method"]))).entries.append(e)
        series += [s for m, s in groups.items() if m != "gold"]
        series += [s for m, s in groups.items() if m == "gold"]
    multi = len(paths) > 1
    for s in series:
        s.label = f"{s.run}:{s.method}" if multi else s.method
    return series, raws
