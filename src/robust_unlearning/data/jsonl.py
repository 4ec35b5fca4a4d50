"""User data: JSONL files, one record per line, with ``text`` or ``question`` + ``answer``.

Every problem names the file and the line: a missing file, bytes that are not UTF-8, a line that is
not JSON, a record without the expected fields, an empty set.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import UnlearnError

MAX_RECORD_CHARS = 1_000_000


def _check_record(obj, path: Path, lineno: int) -> dict:
    where = f"{path}:{lineno}"
    if not isinstance(obj, dict):
        raise UnlearnError(f"{where}: each line must be a JSON object, got {type(obj).__name__}")
    if "text" in obj:
        if not isinstance(obj["text"], str) or not obj["text"].strip():
            raise UnlearnError(f"{where}: 'text' must be a non-empty string")
        if len(obj["text"]) > MAX_RECORD_CHARS:
            raise UnlearnError(f"{where}: 'text' longer than {MAX_RECORD_CHARS} characters")
        return {"text": obj["text"]}
    if "question" in obj and "answer" in obj:
        q, a = obj["question"], obj["answer"]
        if not isinstance(q, str) or not isinstance(a, str) or not a.strip():
            raise UnlearnError(f"{where}: 'question' and 'answer' must be strings, the answer non-empty")
        if len(q) + len(a) > MAX_RECORD_CHARS:
            raise UnlearnError(f"{where}: record longer than {MAX_RECORD_CHARS} characters")
        # The answer is a continuation of the question: make sure a space separates them.
        if not a.startswith((" ", "\n")) and q and not q.endswith((" ", "\n")):
            a = " " + a
        return {"question": q, "answer": a}
    fields = ", ".join(sorted(obj)) or "none"
    raise UnlearnError(f"{where}: a record needs 'text', or 'question' and 'answer' (found fields: {fields})")


def read_jsonl(path: str | Path, what: str = "data") -> list[dict]:
    path = Path(path)
    if not path.exists():
        raise UnlearnError(f"{what} file not found: {path}")
    if not path.is_file():
        raise UnlearnError(f"{what} path is not a file: {path}")
    records = []
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise UnlearnError(f"{path}:{lineno}: not valid UTF-8 ({exc.reason})") from exc
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise UnlearnError(f"{path}:{lineno}: malformed JSON ({exc.msg})") from exc
            records.append(_check_record(obj, path, lineno))
    if not records:
        raise UnlearnError(f"{what} file is empty: {path}")
    return records
