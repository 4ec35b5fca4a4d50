"""Bad input never escapes as a traceback (hypothesis): the benchmarks' local-file loaders."""

from __future__ import annotations

import json

import pytest
from fuzz_inputs import (
    FAST,
    SLOW,
    _dump,
    bad_line,
    good_line,
    json_scalars,
    json_values,
    nonblank,
    read_or_refuse,
    scratch,
)
from hypothesis import given
from hypothesis import strategies as st

from robust_unlearning.benchmarks import build_benchmark
from robust_unlearning.benchmarks.source import read_file
from robust_unlearning.errors import UnlearnError


@st.composite
def json_document(draw) -> bytes:
    """JSON, JSON lines (hub TOFU style), records under "data", scalars, or garbage."""
    kind = draw(st.sampled_from(["list", "data", "lines", "scalar", "value", "bytes"]))
    recs = st.lists(st.dictionaries(st.sampled_from(["question", "answer", "text", "x"]), json_values,
                                    max_size=3) | json_values, max_size=4)
    if kind == "list":
        return _dump(draw(recs), draw(st.booleans()))
    if kind == "data":
        return _dump({"data": draw(recs)}, True)
    if kind == "lines":
        lines = [draw(good_line())[0] if draw(st.booleans()) else draw(bad_line()) for _ in range(3)]
        return b"\n".join(lines)
    if kind == "scalar":
        return _dump(draw(json_scalars), True)
    if kind == "value":
        return _dump(draw(json_values), True)
    return draw(st.binary(max_size=100))


@FAST
@given(json_document(), st.sampled_from([".json", ".jsonl"]))
def test_benchmark_read_file_json(content, suffix):
    with scratch() as d:
        path = d / f"forget10{suffix}"
        path.write_bytes(content)
        records = read_or_refuse(read_file, path)
        if records is not None:
            assert records and all(isinstance(r, dict) for r in records)


def test_benchmark_read_file_json_lines_with_line_separators(tmp_path):
    # U+2028 is legal inside a JSON string: JSON lines split on "\n" only
    path = tmp_path / "forget10.json"
    path.write_text('{"question": "a\u2028b", "answer": "c"}\n{"question": "d", "answer": "e\u0085"}\n')
    assert [r["question"] for r in read_file(path)] == ["a\u2028b", "d"]
    path.write_bytes(b'{"question": "a", "answer": "b"}\n{"question": \xff}\n')
    with pytest.raises(UnlearnError, match=r"forget10.json:2: not valid UTF-8"):
        read_file(path)


@SLOW
@given(st.binary(max_size=64), st.sampled_from([".parquet", ".txt", ".csv"]))
def test_benchmark_read_file_other_formats(content, suffix):
    with scratch() as d:
        path = d / f"forget10{suffix}"
        path.write_bytes(content)
        records = read_or_refuse(read_file, path)
        if records is not None:
            assert suffix == ".txt" and records == [{"text": content.decode("utf-8-sig")}]


record_sets = st.lists(st.dictionaries(st.sampled_from(["question", "answer", "text", "other"]),
                                       json_values | nonblank, max_size=3), max_size=3)


@SLOW
@given(record_sets, record_sets)
def test_tofu_local_files(forget, retain):
    with scratch() as d:
        (d / "forget10.json").write_text("".join(json.dumps(r) + "\n" for r in forget))
        (d / "retain90.json").write_text(json.dumps(retain))
        try:
            f, r = build_benchmark("tofu", d, "forget10").unlearning_data()
        except UnlearnError as exc:
            assert "\n" not in str(exc) and ("forget10" in str(exc) or "retain90" in str(exc))
        else:
            for rec in f + r:
                assert isinstance(rec["question"], str) and isinstance(rec["answer"], str)


@SLOW
@given(record_sets, record_sets)
def test_wmdp_local_files(forget, retain):
    with scratch() as d:
        (d / "cyber-forget-corpus.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forget))
        (d / "wikitext.json").write_text(json.dumps({"train": retain}))
        try:
            f, r = build_benchmark("wmdp", d, "cyber", {"min_retain_chars": 1}).unlearning_data()
        except UnlearnError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(isinstance(x["text"], str) for x in f + r)


@SLOW
@given(record_sets, record_sets)
def test_muse_local_files(forget, retain):
    with scratch() as d:
        (d / "raw").mkdir()
        (d / "raw" / "forget.jsonl").write_text("".join(json.dumps(r) + "\n" for r in forget))
        (d / "raw" / "retain1.json").write_text(json.dumps(retain))
        try:
            f, r = build_benchmark("muse-news", d).unlearning_data()
        except UnlearnError as exc:
            assert "\n" not in str(exc)
        else:
            assert all(isinstance(x["text"], str) and x["text"] for x in f + r)
