"""Where a benchmark's data comes from: the Hugging Face hub by name, or local files of the same schema.

    load_records("locuslab/TOFU", "forget10", "train", path=None)   # hub (online)
    load_records("locuslab/TOFU", "forget10", "train", path="tofu/")  # local

Every set is named by the hub dataset id, its config and its split. With a local ``path``:

- a *file* (``.jsonl``, ``.json``, ``.parquet``, ``.txt``) named after the set is the set itself;
- a *directory* is searched for the set by its names, in this order:
  ``<path>/<hub id>/...`` (a local mirror of several hub datasets), then inside that base
  ``<config>/<split>``, ``<config>`` and ``<split>``, each either a ``datasets.save_to_disk``
  directory (a ``Dataset`` or a ``DatasetDict`` holding the split) or a data file with one of the
  suffixes above.

The directory named by the environment variable ``ROBUST_UNLEARNING_DATASETS`` is used as ``path``
when none is given: a local mirror that stands in for the hub (no network is touched then).

JSON files may hold a list of records, ``{"data": [...]}``, a single record, or one record per line
(TOFU's files on the hub are JSON lines named ``.json``). A ``.txt`` file is one ``{"text": ...}`` record.
Problems are :class:`UnlearnError` naming the file (and line for JSON lines).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Sequence

from ..data.jsonl import check_unicode, parse_json_line
from ..errors import UnlearnError

SUFFIXES = (".jsonl", ".json", ".parquet", ".txt")
ENV_DIR = "ROBUST_UNLEARNING_DATASETS"


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[:exc.start].count(b"\n") + 1
        raise UnlearnError(f"{path}:{line}: not valid UTF-8 ({exc.reason})") from exc
    except OSError as exc:
        raise UnlearnError(f"cannot read {path}: {exc.strerror or exc}") from exc


def _read_json(path: Path) -> list[dict]:
    text = _read_text(path)
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):  # not one JSON document: JSON lines
        records = []
        # split on "\n" only: str.splitlines would also cut at U+2028 and others inside strings
        for lineno, line in enumerate(text.split("\n"), 1):
            if line.strip():
                records.append(parse_json_line(line, f"{path}:{lineno}"))
        obj = records
    if isinstance(obj, dict):
        # {"data": [...]} or {"<split>": [...]} hold records; any other object is one record.
        values = list(obj.values())
        if isinstance(obj.get("data"), list):
            obj = obj["data"]
        elif len(values) == 1 and isinstance(values[0], list) and all(isinstance(v, dict) for v in values[0]):
            obj = values[0]
        else:
            obj = [obj]
    if not isinstance(obj, list):
        raise UnlearnError(f"{path}: holds a JSON {type(obj).__name__}, not records (a list of objects, "
                           "or one object per line)")
    for i, rec in enumerate(obj, 1):
        if not isinstance(rec, dict):
            raise UnlearnError(f"{path}: record {i} is a {type(rec).__name__}, not a JSON object")
    return obj


def read_file(path: str | Path) -> list[dict]:
    path = Path(path)
    if not path.is_file():
        raise UnlearnError(f"data file not found: {path}")
    suffix = path.suffix.lower()
    if suffix in (".json", ".jsonl"):
        records = _read_json(path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        try:
            records = pq.read_table(path).to_pylist()
        except Exception as exc:  # pyarrow raises several types for a bad file
            msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise UnlearnError(f"{path}: not a readable parquet file ({msg})") from exc
    elif suffix == ".txt":
        records = [{"text": _read_text(path)}]
    else:
        raise UnlearnError(f"{path}: unsupported data file (use {', '.join(SUFFIXES)} or a "
                           "datasets.save_to_disk directory)")
    if not records:
        raise UnlearnError(f"{path}: no records")
    return records


def _is_saved(d: Path) -> bool:
    return any((d / f).is_file() for f in ("dataset_info.json", "dataset_dict.json", "state.json"))


def _read_saved(d: Path, split: str | None) -> list[dict]:
    from datasets import DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(d))
    except Exception as exc:  # datasets raises several types for a bad directory
        raise UnlearnError(f"{d}: not a readable datasets.save_to_disk directory ({exc})") from exc
    if isinstance(ds, DatasetDict):
        if split not in ds:
            raise UnlearnError(f"{d}: no split {split!r} (has: {', '.join(ds)})")
        ds = ds[split]
    return ds.to_list()


def _candidates(base: Path, names: Sequence[str]) -> list[Path]:
    out = []
    for name in names:
        out.append(base / name)
        out += [base / f"{name}{s}" for s in SUFFIXES]
    return out


def _find_local(root: Path, hub_id: str, configs: Sequence[str], split: str) -> list[dict] | None:
    bases = [root / hub_id, root] if (root / hub_id).is_dir() else [root]
    for base in bases:
        configs = [c for c in configs if c]
        # A bare split name ("train") only identifies a set that has no config name.
        names = [f"{c}/{split}" for c in configs] + configs if configs else [split]
        for cand in _candidates(base, names):
            if cand.is_dir() and _is_saved(cand):
                return _read_saved(cand, split)
            if cand.is_file():
                return read_file(cand)
    return None


def load_records(hub_id: str, config: str | None, split: str, path: str | Path | None = None,
                 aliases: Sequence[str] = (), what: str | None = None) -> list[dict]:
    """The records of one set, from ``path`` (or ``$ROBUST_UNLEARNING_DATASETS``) or the hub."""
    what = what or f"{hub_id} {config or ''}/{split}".replace(" /", " ")
    if path is None and os.environ.get(ENV_DIR):
        path = os.environ[ENV_DIR]
    if path is not None:
        root = Path(path)
        if root.is_file():
            # a file is one set: it must be named after the set it stands for (forget10.json, ...)
            names = {n for n in (config, *aliases, split) if n}
            if root.name.split(".")[0] not in names:
                raise UnlearnError(f"{root}: a data file holds one set; for {what} give a directory with "
                                   f"a file named {config or split}.jsonl (or .json/.parquet, or a "
                                   "datasets.save_to_disk directory)")
            return read_file(root)
        if not root.is_dir():
            raise UnlearnError(f"data path not found: {root}")
        found = _find_local(root, hub_id, [config or "", *aliases], split)
        if found is None:
            configs = [c for c in (config, *aliases) if c]
            names = ", ".join([f"{c}/{split}" for c in configs] + configs if configs else [split])
            raise UnlearnError(f"{root}: no local data for {what} (looked for {names} as a file "
                               f"{'/'.join(SUFFIXES)} or a datasets.save_to_disk directory)")
        if not found:
            raise UnlearnError(f"{root}: the local data for {what} is empty")
        return found
    try:
        from datasets import load_dataset

        ds = load_dataset(hub_id, config, split=split)
    except Exception as exc:  # offline, gated, renamed: the user gets one line
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise UnlearnError(f"cannot load {what} from the hub ({msg}); give local files with --data") from exc
    return ds.to_list()


def require(records: list[dict], fields: Sequence[str], what: str, strings: Sequence[str] = ()) -> None:
    """Every record has ``fields`` (not null); those also in ``strings`` are valid Unicode strings."""
    for i, rec in enumerate(records, 1):
        missing = [f for f in fields if f not in rec or rec[f] is None]
        if missing:
            raise UnlearnError(f"{what}: record {i} lacks {', '.join(missing)} "
                               f"(has: {', '.join(sorted(map(str, rec))) or 'nothing'})")
        for f in strings:
            if not isinstance(rec[f], str):
                raise UnlearnError(f"{what}: record {i}: {f} must be a string, not {type(rec[f]).__name__}")
            check_unicode(rec[f], f"{what}: record {i}", f)


def chunk_words(text: str, words: int) -> list[str]:
    """Split a long document into pieces of about ``words`` words (for unlearning on raw text)."""
    toks = text.split()
    return [" ".join(toks[i:i + words]) for i in range(0, len(toks), words)]
