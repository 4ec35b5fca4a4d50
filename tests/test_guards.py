"""Bad input never escapes as a traceback: property-based tests (hypothesis) of the data loaders, the
config loader, the benchmarks' local-file loaders, the model loader and the CLI.

Every bad input must end in one :class:`UnlearnError` (CLI: one ``error: ...`` line on stderr, exit
code 2, no output directory) whose message names the file, and the line (``path:N``) for a problem
on one line of a JSON-lines file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from contextlib import contextmanager
from pathlib import Path
from unittest import mock

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from robust_unlearning.benchmarks import build_benchmark
from robust_unlearning.benchmarks.source import read_file
from robust_unlearning.cli import app
from robust_unlearning.config import RunConfig, load_config
from robust_unlearning.data import jsonl
from robust_unlearning.data.jsonl import read_jsonl
from robust_unlearning.errors import UnlearnError
from robust_unlearning.io import load_model

FAST = settings(max_examples=150, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
SLOW = settings(max_examples=12, deadline=None, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])

SMALL_MAX = 64  # MAX_RECORD_CHARS while fuzzing (the real limit is a million characters)


@contextmanager
def scratch():
    with tempfile.TemporaryDirectory(prefix="guards-") as d:
        yield Path(d)


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


def _well_formed(records: list[dict]) -> None:
    assert records
    for r in records:
        assert set(r) in ({"text"}, {"question", "answer"}), r
        for v in r.values():
            assert isinstance(v, str) and v.strip()
            v.encode("utf-8")  # valid Unicode: no unpaired surrogates


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
            _well_formed(got)
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
        try:
            records = read_jsonl(path)
        except UnlearnError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        else:
            _well_formed(records)


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


# --------------------------------------------------------------------------- benchmark files


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
        try:
            records = read_file(path)
        except UnlearnError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        else:
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
        try:
            records = read_file(path)
        except UnlearnError as exc:
            assert str(path) in str(exc) and "\n" not in str(exc)
        else:
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


# --------------------------------------------------------------------------- configs

yaml_keys = st.sampled_from(["model", "method", "data", "train", "forget", "lr", "steps", "output_dir",
                             "save", "dtype", "objective", "options", "bogus"]) | st.text(max_size=5)
yaml_values = st.recursive(
    json_scalars | st.floats(allow_nan=True, allow_infinity=True),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(yaml_keys, c, max_size=3), max_leaves=8)


@st.composite
def yaml_config(draw) -> bytes:
    kind = draw(st.sampled_from(["mapping", "value", "text", "bytes"]))
    if kind == "mapping":
        return yaml.safe_dump(draw(st.dictionaries(yaml_keys, yaml_values, max_size=4)),
                              allow_unicode=draw(st.booleans())).encode("utf-8")
    if kind == "value":
        return yaml.safe_dump(draw(yaml_values)).encode("utf-8")
    if kind == "text":
        return draw(st.text(max_size=60)).encode("utf-8", "surrogatepass")
    return draw(st.binary(max_size=60))


@FAST
@given(yaml_config())
def test_load_config_file(content):
    with scratch() as d:
        path = d / "exp.yaml"
        path.write_bytes(content)
        try:
            cfg = load_config(path)
        except UnlearnError as exc:
            assert str(path) in str(exc)
        else:
            assert isinstance(cfg, RunConfig)


overrides = st.lists(st.text(max_size=12) | st.builds(
    lambda k, v: f"{k}={v}",
    st.sampled_from(["train.lr", "train.steps", "method", "data.forget", "train", "x.y", "", "train..lr",
                     "data.options.a", "output_dir"]),
    st.sampled_from(["abc", "1e-4", "[1", "{a: 1}", "", ".nan", "-.inf", "5", "null", "true", "'x'"])),
    max_size=4)


@FAST
@given(overrides)
def test_load_config_overrides(items):
    try:
        cfg = load_config(None, items)
    except UnlearnError as exc:
        assert "override" in str(exc) and "\n" not in str(exc)
    else:
        assert isinstance(cfg, RunConfig)


@pytest.mark.parametrize("items, match", [
    (["train.lr=abc"], r"train.lr: Input should be a valid number"),
    (["train.lr=.nan"], r"train.lr: Input should be a finite number"),
    (["=5"], r"override '=5' has an empty key"),
    (["train.lr"], r"override 'train.lr' is not key=value"),
    (["bogus=1"], r"bogus: Extra inputs are not permitted"),
])
def test_load_config_override_messages(items, match):
    with pytest.raises(UnlearnError, match=match):
        load_config(None, items)


def test_load_config_messages(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr: 1e-4\n  steps: [\n")
    with pytest.raises(UnlearnError, match=r"c.yaml:\d+: malformed YAML"):
        load_config(path)
    path.write_bytes(b"method: npo\xff\n")
    with pytest.raises(UnlearnError, match=r"c.yaml: not UTF-8"):
        load_config(path)
    path.write_text("trian: {steps: 3}\n")
    with pytest.raises(UnlearnError, match=r"c.yaml: invalid config: trian: Extra inputs"):
        load_config(path)
    path.write_text("a: " + "[" * 1500)  # nested deeper than the YAML parser recurses
    with pytest.raises(UnlearnError, match=r"c.yaml: malformed YAML: nested too deeply"):
        load_config(path)
    with pytest.raises(UnlearnError, match="config file not found"):
        load_config(tmp_path / "missing.yaml")


# --------------------------------------------------------------------------- model directories


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, _tiny_model_init, tiny_tokenizer):
    """A good tiny model directory and broken variants of it."""
    root = tmp_path_factory.mktemp("models")
    good = root / "good"
    _tiny_model_init.save_pretrained(good)
    tiny_tokenizer.save_pretrained(good)
    cfg, weights = (good / "config.json").read_bytes(), (good / "model.safetensors").read_bytes()
    tok = {p.name: p.read_bytes() for p in good.iterdir() if p.name.startswith(("tokenizer", "special"))}
    from safetensors.torch import save_file

    save_file({}, str(root / "empty.safetensors"))
    variants = {
        "empty": {},
        "garbage_config": {"config.json": b"\x00not json", "model.safetensors": weights, **tok},
        "config_without_type": {"config.json": b'{"hidden_size": 3}', "model.safetensors": weights, **tok},
        "unknown_type": {"config.json": b'{"model_type": "nope"}', "model.safetensors": weights, **tok},
        "no_weights": {"config.json": cfg, **tok},
        "garbage_weights": {"config.json": cfg, "model.safetensors": b"garbage!" * 16, **tok},
        "truncated_weights": {"config.json": cfg, "model.safetensors": weights[: len(weights) // 2], **tok},
        "empty_weights": {"config.json": cfg, "model.safetensors": (root / "empty.safetensors").read_bytes(),
                          **tok},
        "no_tokenizer": {"config.json": cfg, "model.safetensors": weights},
        "garbage_tokenizer": {"config.json": cfg, "model.safetensors": weights,
                              **{k: b"{garbage" for k in tok}},
    }
    dirs = {"good": good, "missing": root / "missing"}
    for name, files in variants.items():
        d = root / name
        d.mkdir()
        for f, data in files.items():
            (d / f).write_bytes(data)
        dirs[name] = d
    return dirs


BAD_MODELS = {
    "empty": "no config.json", "garbage_config": "config.json is not valid JSON",
    "config_without_type": "has no 'model_type'", "unknown_type": "model type `nope`",
    "no_weights": "no .safetensors weights", "garbage_weights": "safetensors file is damaged",
    "truncated_weights": "safetensors file is damaged", "empty_weights": "the weights lack",
    "no_tokenizer": "no tokenizer files", "garbage_tokenizer": "tokenizer.json is not valid JSON",
    "missing": "model directory not found",
}


def test_load_model_bad_directories(model_dirs):
    model, tok = load_model(model_dirs["good"])
    assert model is not None and tok is not None
    for name, match in BAD_MODELS.items():
        with pytest.raises(UnlearnError, match=match) as err:
            load_model(model_dirs[name])
        assert "\n" not in str(err.value), name


# --------------------------------------------------------------------------- CLI

cli = CliRunner()


def _assert_clean_failure(result, out_dir: Path | None = None, match: str | None = None) -> str:
    """Exit code 2, one ``error:`` line on stderr, no traceback, no (half-written) output."""
    assert result.exit_code == 2, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.output
    if match is not None:
        assert match in lines[0], lines[0]
    if out_dir is not None:
        assert not out_dir.exists()
        if out_dir.parent.exists():
            assert not [p for p in out_dir.parent.iterdir() if p.name.startswith(f".{out_dir.name}.")]
    return lines[0]


def _config(d: Path, **fields) -> Path:
    base = {"model": str(d / "no-model"), "method": "graddiff", "output_dir": str(d / "runs" / "out"),
            "train": {"steps": 1, "batch_size": 2}, "evaluate": False}
    base.update(fields)
    path = d / "exp.yaml"
    path.write_text(yaml.safe_dump(base))
    return path


@pytest.fixture
def no_world(monkeypatch):
    """Any attempt to build (train) a world model fails the test: bad input must fail before."""
    import robust_unlearning.runner as runner

    def boom(*a, **k):
        raise AssertionError("the world was built before the bad input was noticed")

    monkeypatch.setattr(runner, "build_world", boom)


@SLOW
@given(jsonl_file())
def test_cli_run_with_fuzzed_forget_file(no_world, case):
    content, records, first_bad = case
    with scratch() as d:
        forget = d / "forget.jsonl"
        forget.write_bytes(content)
        cfg = _config(d, data={"forget": str(forget)})
        with mock.patch.object(jsonl, "MAX_RECORD_CHARS", SMALL_MAX):  # the limit the lines are drawn for
            line = _assert_clean_failure(cli.invoke(app, ["run", str(cfg)]), d / "runs" / "out")
        if first_bad is not None:
            assert f"{forget}:{first_bad}: " in line
        elif not records:
            assert "no records" in line
        else:  # good data: the (missing) model is the problem
            assert "model directory not found" in line


@pytest.mark.parametrize("case, match", [
    ("missing", "forget file not found"),
    ("empty", "no records"),
    ("not_utf8", "forget.jsonl:2: not valid UTF-8"),
    ("wrong_fields", "forget.jsonl:1: a record needs 'text'"),
    ("over_long", "forget.jsonl:1: 'text' is longer than 64 characters"),
    ("retain_malformed", "retain.jsonl:1: malformed JSON"),
    ("bad_yaml", "exp.yaml:2: malformed YAML: expected ',' or ']'"),
    ("wrong_key", "invalid config: trian: Extra inputs are not permitted"),
    ("bad_override", "train.lr: Input should be a valid number"),
    ("no_data", "no data: set data.benchmark"),
])
def test_cli_run_bad_input(tmp_path, no_world, case, match):
    forget, retain = tmp_path / "forget.jsonl", tmp_path / "retain.jsonl"
    forget.write_text('{"text": "a fact"}\n')
    data = {"forget": str(forget)}
    args = []
    if case == "missing":
        forget.unlink()
    elif case == "empty":
        forget.write_text("")
    elif case == "not_utf8":
        forget.write_bytes(b'{"text": "ok"}\n{"text": "caf\xe9"}\n')
    elif case == "wrong_fields":
        forget.write_text('{"prompt": "Q", "completion": "A"}\n')
    elif case == "over_long":
        forget.write_text(json.dumps({"text": "x" * 65}) + "\n")
    elif case == "retain_malformed":
        retain.write_text("{'text': 'single quotes'}\n")
        data["retain"] = str(retain)
    elif case == "bad_override":
        args = ["train.lr=abc"]
    elif case == "no_data":
        data = {}
    cfg = _config(tmp_path, data=data)
    if case == "bad_yaml":
        cfg.write_text("model: [unclosed\n")
    elif case == "wrong_key":
        cfg.write_text(cfg.read_text() + "trian: {steps: 3}\n")
    with mock.patch.object(jsonl, "MAX_RECORD_CHARS", SMALL_MAX):
        result = cli.invoke(app, ["run", str(cfg), *args])
    _assert_clean_failure(result, tmp_path / "runs" / "out", match)


@pytest.mark.parametrize("name", sorted(BAD_MODELS))
def test_cli_run_bad_model_dir(tmp_path, model_dirs, name):
    forget = tmp_path / "forget.jsonl"
    forget.write_text('{"text": "a fact"}\n')
    cfg = _config(tmp_path, model=str(model_dirs[name]), data={"forget": str(forget)})
    _assert_clean_failure(cli.invoke(app, ["run", str(cfg)]), tmp_path / "runs" / "out", BAD_MODELS[name])


def test_cli_run_unknown_method(tmp_path, model_dirs, no_world):
    """The known names are listed, and before any data or model is loaded (here: neither exists)."""
    cfg = _config(tmp_path, method="npo+sma", data={"forget": str(tmp_path / "missing.jsonl")})
    line = _assert_clean_failure(cli.invoke(app, ["run", str(cfg)]), tmp_path / "runs" / "out")
    assert "'sma'" in line and "strategies:" in line and "sam" in line and "objectives:" in line
    forget = tmp_path / "forget.jsonl"
    forget.write_text('{"question": "Who?", "answer": "Ada."}\n')
    cfg = _config(tmp_path, model=str(model_dirs["good"]), method="forget-it", data={"forget": str(forget)})
    line = _assert_clean_failure(cli.invoke(app, ["run", str(cfg)]), tmp_path / "runs" / "out")
    assert "unknown objective 'forget-it'; known:" in line and "npo" in line


@pytest.mark.parametrize("name", ["empty", "garbage_config", "garbage_weights", "missing"])
def test_cli_eval_and_attacks_bad_model_dir(model_dirs, no_world, name, tmp_path):
    out = tmp_path / "res.json"
    for args in (["eval", "--model", str(model_dirs[name]), "--out", str(out)],
                 ["attack", "relearn", "--model", str(model_dirs[name]), "--out", str(out)],
                 ["attack", "quantize", "--model", str(model_dirs[name]), "--out", str(out)],
                 ["diagnose", "--model", str(model_dirs[name]), "--out", str(out)]):
        _assert_clean_failure(cli.invoke(app, args), out, BAD_MODELS[name])


def test_cli_attack_unknown_world(model_dirs, no_world):
    result = cli.invoke(app, ["attack", "relearn", "--model", str(model_dirs["good"]), "--benchmark", "nope"])
    _assert_clean_failure(result, match="unknown benchmark 'nope'; known: ")


def test_cli_eval_bad_benchmark_data(tmp_path, model_dirs):
    (tmp_path / "forget10_perturbed.json").write_bytes(b'{"question": "q", "answer": "a"}\n[1, 2\n')
    result = cli.invoke(app, ["eval", "--model", str(model_dirs["good"]), "--benchmark", "tofu",
                              "--data", str(tmp_path)])
    _assert_clean_failure(result, match="forget10_perturbed.json:2: malformed JSON")


def _unlearn(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "ROBUST_UNLEARNING_QUIET": "1"}
    env.pop("ROBUST_UNLEARNING_DEBUG", None)
    return subprocess.run([sys.executable, "-c", "from robust_unlearning.cli import main; main()", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_cli_subprocess_exit_code_and_no_traceback(tmp_path, model_dirs):
    """The real entry point: exit status 2, one line on stderr, no traceback."""
    forget = tmp_path / "forget.jsonl"
    forget.write_bytes(b'{"text": "ok"}\n\xff\xfe\n')
    cfg = _config(tmp_path, data={"forget": str(forget)})
    proc = _unlearn("run", str(cfg), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout
    expected = f"error: {forget}:2: not valid UTF-8 (byte 1: invalid start byte)"
    assert proc.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "runs").exists()

    proc = _unlearn("eval", "--model", str(model_dirs["missing"]), cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"error: model directory not found: {model_dirs['missing']}"]


def test_main_reports_a_bug_on_one_line(monkeypatch, capsys):
    """Anything but an UnlearnError is a bug: one line, exit code 1 (traceback with the debug variable)."""
    import robust_unlearning.cli as cli_mod

    def broken():
        raise KeyError("oops")

    monkeypatch.setattr(cli_mod, "app", broken)
    monkeypatch.delenv(cli_mod.DEBUG_ENV, raising=False)
    with pytest.raises(SystemExit) as exit_:
        cli_mod.main()
    assert exit_.value.code == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "internal error" in err[0] and "KeyError" in err[0]
    monkeypatch.setenv(cli_mod.DEBUG_ENV, "1")
    with pytest.raises(KeyError):
        cli_mod.main()
