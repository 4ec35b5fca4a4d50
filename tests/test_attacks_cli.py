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


def test_recipe_attack_settings_and_command_line_overrides(monkeypatch):
    """The quick world's attack budgets come from the recipe's quick_attack, and --budgets / --draws
    on the command line win over both."""
    import robust_unlearning.demo as demo
    from robust_unlearning.recipes import load_recipe, recipe_attack

    recipe = load_recipe("world")
    assert recipe_attack(recipe)["budgets"] == [[20, 10], [40, 40], [40, 100]]
    quick = recipe_attack(recipe, quick=True)
    assert quick["budgets"] == [[8, 10], [16, 40]] and quick["lr"] == recipe["attack"]["lr"]

    seen = {}
    monkeypatch.setattr(demo, "run_demo", lambda *a, attack=None, **k: seen.setdefault("attack", attack))
    res = CliRunner().invoke(app, ["demo", "--quick", "--budgets", "2x1,4x3", "--draws", "1"])
    assert res.exit_code == 0, res.output
    assert [list(b) for b in seen["attack"].budgets] == [[2, 1], [4, 3]] and seen["attack"].seeds == [0]
    seen.clear()
    assert CliRunner().invoke(app, ["demo", "--quick"]).exit_code == 0
    assert [list(b) for b in seen["attack"].budgets] == [[8, 10], [16, 40]] and seen["attack"].seeds == [0, 1]
