"""Shared by the test_guards_* files: hypothesis settings and generators of bad (and good) input,
JSON-lines files above all. Every bad input must end in one :class:`UnlearnError` (CLI: one
``error: ...`` line on stderr, exit code 2, no output directory) whose message names the file, and
the line (``path:N``) for a problem on one line of a JSON-lines file.
"""

from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SMALL_MAX = 64  # MAX_RECORD_CHARS while fuzzing (the real limit is a million characters)


@contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="guards-") as d:
        yield Path(d)


def read_or_refuse(read, path: Path):
    """``read(path)``'s result, or ``None`` when it refused with the only failure allowed: one
    one-line :class:`UnlearnError` that names the file."""
    from robust_unlearning.errors import UnlearnError

    try:
        return read(path)
    except UnlearnError as exc:
        assert str(path) in str(exc) and "\n" not in str(exc)
        return None


# --------------------------------------------------------------------------- JSON lines, by line kind

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8)
json_values = st.recursive(json_scalars, lambda c: st.lists(c, max_size=3)
                           | st.dictionaries(st.text(max_size=5), c, max_size=3), max_leaves=6)
nonblank = st.text(min_size=1, max_size=SMALL_MAX // 2).filter(lambda s: s.strip())
blank = st.sampled_from(["", " ", "\t", "  \t ", "\r"])
other_keys = st.text(max_size=6).filter(lambda k: k not in ("text", "question", "answer"))


def _dump(obj, ascii_: bool) -> bytes:
    return json.dumps(obj, ensure_ascii=ascii_).encode("utf-8")


@st.composite
def good_line(draw) -> tuple[bytes, dict]:
    extra = draw(st.dictionaries(other_keys, json_values, max_size=2))
    if draw(st.booleans()):
        rec = {"text": draw(nonblank)}
    else:
        rec = {"question": draw(nonblank), "answer": draw(nonblank)}
    return _dump({**extra, **rec}, draw(st.booleans())), rec


@st.composite
def bad_line(draw) -> bytes:
    kind = draw(st.sampled_from([
        "scalar", "array", "fields", "half_qa", "text_type", "qa_type", "blank_text", "blank_answer",
        "long_text", "long_qa", "truncated", "garbage", "utf8", "deep", "bigint", "surrogate", "long_line",
    ]))
    if kind == "scalar":
        return _dump(draw(json_scalars), True)
    if kind == "array":
        return _dump(draw(st.lists(json_values, max_size=3)), True)
    if kind == "fields":  # an object with none of the fields
        return _dump(draw(st.dictionaries(other_keys, json_values, max_size=3)), True)
    if kind == "half_qa":
        return _dump({draw(st.sampled_from(["question", "answer"])): draw(nonblank)}, True)
    not_str = json_values.filter(lambda v: not isinstance(v, str))
    if kind == "text_type":
        return _dump({"text": draw(not_str)}, True)
    if kind == "qa_type":
        pair = draw(st.sampled_from([(not_str, nonblank), (nonblank, not_str)]))
        return _dump({"question": draw(pair[0]), "answer": draw(pair[1])}, True)
    if kind == "blank_text":
        return _dump({"text": draw(blank | st.just("\n \n"))}, True)
    if kind == "blank_answer":
        return _dump({"question": draw(nonblank), "answer": draw(blank)}, True)
    if kind == "long_text":
        return _dump({"text": "x" * draw(st.integers(SMALL_MAX + 1, 3 * SMALL_MAX))}, True)
    if kind == "long_qa":
        return _dump({"question": "q" * SMALL_MAX, "answer": draw(nonblank)}, True)
    if kind == "truncated":
        return _dump({"text": draw(nonblank)}, True)[:-1]
    if kind == "garbage":  # text that is not JSON
        return draw(st.text(min_size=1, max_size=20).filter(_not_json)).encode("utf-8")
    if kind == "utf8":
        good = _dump({"text": draw(nonblank)}, True)
        cut = draw(st.integers(0, len(good)))
        bad = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80abc"]))
        return good[:cut] + bad + good[cut:]
    if kind == "deep":
        depth = draw(st.integers(5000, 20000))
        return b"[" * depth + b"]" * depth
    if kind == "bigint":
        return b'{"text": "ok", "n": ' + b"9" * draw(st.integers(4301, 6000)) + b"}"
    if kind == "surrogate":
        return b'{"text": "a\\ud800b"}'
    assert kind == "long_line"  # more bytes than any record of SMALL_MAX characters takes
    return _dump({"text": "ok", "pad": "y" * (12 * SMALL_MAX + 4096)}, True)


def _not_json(text: str) -> bool:
    if "\n" in text or not text.strip():
        return False
    try:
        json.loads(text)
    except (ValueError, RecursionError):
        return True
    return False


@st.composite
def jsonl_file(draw) -> tuple[bytes, list[dict], int | None]:
    """(content, the records it holds, the line number of the first bad line or None)."""
    lines, records, first_bad = [], [], None
    for lineno in range(1, draw(st.integers(0, 6)) + 1):
        kind = draw(st.sampled_from(["good", "good", "blank", "bad"]))
        if kind == "good":
            raw, rec = draw(good_line())
            records.append(rec)
        elif kind == "blank":
            raw = draw(blank).encode()
        else:
            raw = draw(bad_line())
            first_bad = first_bad or lineno
        lines.append(raw)
    content = b"\n".join(lines) + draw(st.sampled_from([b"", b"\n", b"\r\n"]))
    if draw(st.booleans()) and content:
        content = b"\xef\xbb\xbf" + content  # a byte-order mark is tolerated
    return content, records, first_bad


def well_formed(records: list[dict]) -> None:
    assert records
    for r in records:
        assert set(r) in ({"text"}, {"question", "answer"}), r
        for v in r.values():
            assert isinstance(v, str) and v.strip()
            v.encode("utf-8")  # valid Unicode: no unpaired surrogates
