"""Bad input never escapes as a traceback (hypothesis): the JSON-lines reader of forget / retain files."""

from __future__ import annotations

from unittest import mock

import pytest
from fuzz_inputs import (
    FAST,
    SMALL_MAX,
    jsonl_file,
    read_or_refuse,
    scratch,
    well_formed,
)
from hypothesis import given
from hypothesis import strategies as st

from robust_unlearning.data import jsonl
from robust_unlearning.data.jsonl import read_jsonl
from robust_unlearning.errors import UnlearnError


@FAST
@given(jsonl_file())
def test_read_jsonl_classifies_every_line(case):
    content, records, first_bad = case
    with scratch() as d, mock.patch.object(jsonl, "MAX_RECORD_CHARS", SMALL_MAX):
        path = d / "forget.jsonl"
        path.write_bytes(content)
        if first_bad is not None:
            with pytest.raises(UnlearnError) as err:
                read_jsonl(path, "forget")
            assert f"{path}:{first_bad}: " in str(err.value)
            assert "\n" not in str(err.value)
        elif not records:
            with pytest.raises(UnlearnError, match="no records") as err:
                read_jsonl(path, "forget")
            assert str(path) in str(err.value)
        else:
            got = read_jsonl(path, "forget")
            well_formed(got)
            assert len(got) == len(records)
            for g, r in zip(got, records, strict=True):
                assert g.get("text") == r.get("text") and g.get("question") == r.get("question")
                assert g.get("answer", "").strip() == r.get("answer", "").strip()


@FAST
@given(st.binary(max_size=200) | st.lists(st.binary(max_size=30), max_size=5).map(b"\n".join))
def test_read_jsonl_random_bytes(content):
    with scratch() as d, mock.patch.object(jsonl, "MAX_RECORD_CHARS", SMALL_MAX):
        path = d / "data.jsonl"
        path.write_bytes(content)
        records = read_or_refuse(read_jsonl, path)
        if records is not None:
            well_formed(records)


def test_read_jsonl_missing_and_not_a_file(tmp_path):
    with pytest.raises(UnlearnError, match="forget file not found: .*nope.jsonl"):
        read_jsonl(tmp_path / "nope.jsonl", "forget")
    with pytest.raises(UnlearnError, match="retain path is not a file"):
        read_jsonl(tmp_path, "retain")
    with pytest.raises(UnlearnError, match="cannot read forget file"):
        read_jsonl(tmp_path / ("x" * 300), "forget")  # a name longer than the file system allows


def test_read_jsonl_messages(tmp_path):
    path = tmp_path / "f.jsonl"
    path.write_text('{"text": "fine"}\n\n{"txt": "typo"}\n')
    with pytest.raises(UnlearnError, match=r"f.jsonl:3: a record needs 'text'.*found fields: 'txt'"):
        read_jsonl(path)
    path.write_text('{"question": "Q?", "answer": 4}\n')
    with pytest.raises(UnlearnError, match=r"f.jsonl:1: 'answer' must be a string, got number"):
        read_jsonl(path)
    path.write_text('{"text": "a\\udc00"}\n')
    with pytest.raises(UnlearnError, match=r"f.jsonl:1: 'text' is not valid Unicode"):
        read_jsonl(path)
    path.write_text(" \n\t\n")
    with pytest.raises(UnlearnError, match="no records"):
        read_jsonl(path)
