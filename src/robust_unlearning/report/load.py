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


def _merge_entry(entries: list[dict], e: dict) -> None:
    """Add ``e`` to ``entries``; an entry of the same method and seed absorbs it (its attacks and
    diagnostics are united, scalars it lacks are taken over)."""
    same = next((x for x in entries if x["method"] == e["method"] and x.get("seed") == e.get("seed")), None)
    if same is None:
        entries.append(dict(e))
        return
    for k, v in e.items():
        if k in ("attacks", "diagnostics") and isinstance(v, dict):
            same[k] = {**(same.get(k) or {}), **v}
        else:
            same.setdefault(k, v)


def load_runs(paths: list[str | Path]) -> tuple[list[Series], list[dict]]:
    """All series of all runs (gold last within each run) and the raw results per run.

    A file written by ``unlearn attack … --out`` or ``unlearn diagnose --out`` names its model and
    benchmark; the files of one model on one benchmark are one run (named after the model directory,
    ``@benchmark`` unless it is the world), so its attacks and diagnoses share a row of the report.
    A demo's results (several methods, no single model) are a run each.
    """
    if not paths:
        raise UnlearnError("give at least one run directory or results file")
    names: list[str] = []
    raws: list[dict] = []
    runs: dict[str, dict[str, Series]] = {}
    by_model: dict[tuple[str, str], str] = {}
    for p in paths:
        p = Path(p)
        raw = _read(p)
        model = raw.get("model") if isinstance(raw.get("model"), str) else None
        bench = str(raw.get("benchmark") or raw.get("source") or "world")
        key = (str(Path(model).expanduser().resolve()), bench) if model else None
        if key in by_model:
            name = by_model[key]
        else:
            base = (Path(model).name or model) if model else (p.name if p.is_dir() else p.stem)
            if model and bench != "world":
                base = f"{base}@{Path(bench).name}"
            name, i = base, 2
            while name in names:
                name, i = f"{base}-{i}", i + 1
            names.append(name)
            runs[name] = {}
            if key:
                by_model[key] = name
        raws.append({"run": name, "path": str(p), **{k: v for k, v in raw.items() if k != "entries"}})
        for e in raw["entries"]:
            method = str(e["method"])
            _merge_entry(runs[name].setdefault(method, Series(name, method)).entries, e)
    series: list[Series] = []
    for groups in runs.values():
        series += [s for m, s in groups.items() if m != "gold"]
        series += [s for m, s in groups.items() if m == "gold"]
    multi = len(runs) > 1
    for s in series:
        s.label = f"{s.run}:{s.method}" if multi else s.method
    return series, raws
