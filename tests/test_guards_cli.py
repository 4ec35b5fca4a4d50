"""Bad input never escapes as a traceback: the model loader on broken directories, and the CLI (one
``error: ...`` line on stderr, exit code 2, no output directory)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from unittest import mock

import pytest
import yaml
from conftest import save_model
from fuzz_inputs import (
    SLOW,
    SMALL_MAX,
    jsonl_file,
    scratch,
)
from hypothesis import given
from typer.testing import CliRunner

from robust_unlearning.cli import app
from robust_unlearning.data import jsonl
from robust_unlearning.errors import UnlearnError
from robust_unlearning.io import load_model


@pytest.fixture(scope="module")
def model_dirs(tmp_path_factory, tiny_model_init, tiny_tokenizer):
    """A good tiny model directory and broken variants of it."""
    root = tmp_path_factory.mktemp("models")
    good = root / "good"
    save_model(tiny_model_init, tiny_tokenizer, good)
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
    import robust_unlearning.benchmarks.world as world_module

    def boom(*a, **k):
        raise AssertionError("the world was built before the bad input was noticed")

    monkeypatch.setattr(world_module, "build_world", boom)


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


@pytest.mark.slow
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
