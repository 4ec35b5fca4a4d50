"""Bad input never escapes as a traceback (hypothesis): the config loader and its overrides."""

from __future__ import annotations

import pytest
import yaml
from fuzz_inputs import (
    FAST,
    json_scalars,
    scratch,
)
from hypothesis import given
from hypothesis import strategies as st

from robust_unlearning.config import RunConfig, load_config
from robust_unlearning.errors import UnlearnError

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
