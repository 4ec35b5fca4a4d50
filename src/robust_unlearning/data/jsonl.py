"""User data: JSONL files, one record per line, with ``text`` or ``question`` + ``answer``.

Every problem names the file and the line: a missing or unreadable file, bytes that are not UTF-8,
a line that is not JSON (or nested too deeply, or too long), a record without the expected fields or
with fields of the wrong type, text that is not valid Unicode (an unpaired surrogate escape), a
record longer than :data:`MAX_RECORD_CHARS`, an empty set.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnlearnError

MAX_RECORD_CHARS = 1_000_000


def max_line_bytes() -> int:
    """The longest line read: a record of ``MAX_RECORD_CHARS`` characters, each JSON-escaped
    (``\\ud83d\\ude00``: 12 bytes for one character), plus room for the keys."""
    return 12 * MAX_RECORD_CHARS + 4096


def check_unicode(value: str, where: str, field: str) -> None:
    """Text from JSON may hold an unpaired surrogate (``"\\ud800"``), which no tokenizer can encode."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        bad = value[exc.start:exc.end].encode("utf-8", "backslashreplace").decode("ascii")
        raise UnlearnError(f"{where}: {field!r} is not valid Unicode (unpaired surrogate {bad} at "
                           f"character {exc.start})") from exc


def parse_json_line(line: str, where: str):
    """``json.loads`` with every failure as an :class:`UnlearnError` naming ``where``."""
    try:
        return json.loads(line)
    except json.JSONDecodeError as exc:
        raise UnlearnError(f"{where}: malformed JSON ({exc.msg}, column {exc.colno})") from exc
    except RecursionError as exc:
        raise UnlearnError(f"{where}: malformed JSON (nested too deeply)") from exc
    except ValueError as exc:  # e.g. an integer with more digits than Python converts
        msg = str(exc).split(";")[0] or type(exc).__name__
        raise UnlearnError(f"{where}: malformed JSON ({msg})") from exc


def _string(obj: dict, key: str, where: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise UnlearnError(f"{where}: {key!r} must be a string, got {_kind(value)}")
    if not value.strip():
        raise UnlearnError(f"{where}: {key!r} is empty")
    check_unicode(value, where, key)
    return value


def _kind(value) -> str:
    return "null" if value is None else {dict: "object", list: "array", bool: "boolean", int: "number",
                                         float: "number"}.get(type(value), type(value).__name__)


def _check_record(obj, path: Path, lineno: int) -> dict:
    where = f"{path}:{lineno}"
    if not isinstance(obj, dict):
        raise UnlearnError(f"{where}: each line must be a JSON object, got {_kind(obj)}")
    if "text" in obj:
        text = _string(obj, "text", where)
        if len(text) > MAX_RECORD_CHARS:
            raise UnlearnError(f"{where}: 'text' is longer than {MAX_RECORD_CHARS} characters")
        return {"text": text}
    if "question" in obj and "answer" in obj:
        q, a = _string(obj, "question", where), _string(obj, "answer", where)
        if len(q) + len(a) > MAX_RECORD_CHARS:
            raise UnlearnError(f"{where}: question and answer are longer than {MAX_RECORD_CHARS} characters")
        # The answer is a continuation of the question: make sure a space separates them.
        if not a.startswith((" ", "\n")) and not q.endswith((" ", "\n")):
            a = " " + a
        return {"question": q, "answer": a}
    fields = ", ".join(repr(k) for k in sorted(obj)) or "none"
    raise UnlearnError(f"{where}: a record needs 'text', or 'question' and 'answer' (found fields: {fields})")


def read_jsonl(path: str | Path, what: str = "data") -> list[dict]:
    path = Path(path)
    try:
        if not path.exists():
            raise UnlearnError(f"{what} file not found: {path}")
        if not path.is_file():
            raise UnlearnError(f"{what} path is not a file: {path}")
        fh = open(path, "rb")
    except OSError as exc:
        raise UnlearnError(f"cannot read {what} file {path}: {exc.strerror or exc}") from exc
    limit = max_line_bytes()
    records = []
    with fh:
        lineno = 0
        while True:
            lineno += 1
            try:
                raw = fh.readline(limit + 1)
            except OSError as exc:
                raise UnlearnError(f"{path}:{lineno}: cannot read ({exc.strerror or exc})") from exc
            if not raw:
                break
            if len(raw) > limit:
                raise UnlearnError(f"{path}:{lineno}: line longer than {limit} bytes (a record holds at "
                                   f"most {MAX_RECORD_CHARS} characters)")
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UnlearnError(f"{path}:{lineno}: not valid UTF-8 (byte {exc.start + 1}: "
                                   f"{exc.reason})") from exc
            if lineno == 1:
                line = line.removeprefix("\ufeff")  # a byte-order mark some editors write
            if not line.strip():
                continue
            records.append(_check_record(parse_json_line(line, f"{path}:{lineno}"), path, lineno))
    if not records:
        raise UnlearnError(f"{what} file has no records (it is empty or blank): {path}")
    return records
