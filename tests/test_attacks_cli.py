"""CLI of the attack suite: bad settings fail fast with one line and exit code 2; the suite's names."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from robust_unlearning.attacks.suite import parse_extras
from robust_unlearning.cli import app


@pytest.mark.parametrize("args, message", [
    (["attack", "quantize", "--model", "m", "--bits", "1"], "bits must be in 2..16"),
    (["attack", "quantize", "--model", "m", "--bits", "eight"], "--bits takes comma-separated integers"),
    (["attack", "quantize", "--model", "m", "--granularity", "row"], "unknown granularity 'row'"),
    (["attack", "jailbreak", "--model", "m", "--candidates", "0"], "candidates must be at least 1"),
    (["attack", "incontext", "--model", "m", "--sources", "wiki"], "unknown in-context source 'wiki'"),
    (["diagnose", "--model", "m", "--what", "hessian"], "--what takes sharpness and/or landscape"),
    (["diagnose", "--model", "m", "--rho", "0"], "rho must be positive"),
    (["demo", "--attacks", "relearn,fgsm"], "unknown attack or diagnostic 'fgsm'"),
    (["attack", "quantize", "--model", "m", "--benchmark", "nope"], "unknown benchmark"),
])
def test_bad_settings_exit_2_with_one_line(args, message):
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0]


def test_parse_extras():
    assert parse_extras("relearn") == []
    assert parse_extras("relearn, quantize,sharpness,quantize") == ["quantize", "sharpness"]
    with pytest.raises(ValueError, match="known: relearn, quantize"):
        parse_extras("gcg")
