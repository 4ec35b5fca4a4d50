"""``world-smol``: the world on a pretrained LM (fine-tuned, TOFU's protocol) through the same
benchmark path as every world: its names, its recipe (the tuned settings of the reduced real-model
run) and ``unlearn demo --benchmark world-smol`` end to end (here on a tiny stand-in base model, so
that it runs in seconds; tests/test_real_model.py runs the real SmolLM2)."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

import pytest
from conftest import save_model
from typer.testing import CliRunner

from robust_unlearning.benchmarks import build_benchmark
from robust_unlearning.benchmarks.world import SMOL_SPEC, RealWorldSpec, is_real, world_spec
from robust_unlearning.finetune import FinetuneConfig
from robust_unlearning.recipes import load_recipe, method_config
from robust_unlearning.world.generator import EVAL_SEEDS, TUNING_SEED

ROOT = Path(__file__).resolve().parents[1]


def test_names_resolve_to_real_worlds_with_their_own_recipe():
    spec = world_spec("world-smol")
    assert isinstance(spec, RealWorldSpec) and spec.base == "smollm2-135m"
    assert spec.world.seed == EVAL_SEEDS[0] and world_spec("world-smol-tune").world.seed == TUNING_SEED
    assert world_spec("world-smol:seed=2").world.seed == 2
    assert is_real("world-smol-tune") and not is_real("world") and not is_real("tofu")
    bench = build_benchmark("world-smol")
    assert bench.recipe()["tuning_world"] == "world-smol-tune"
    assert build_benchmark("world").recipe()["tuning_world"] == "world-tune"
    assert bench.smaller() is bench  # no quick variant


def test_recipe_is_the_reduced_real_model_run_with_its_tuned_learning_rates():
    """recipes/world-smol.yaml and ``benchmarks/real_model.py --cpu-reduced --tuned tune.json`` are the
    same settings on the same world (so the demo reuses the benchmark's cached models)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    try:
        import real_model as rm
    finally:
        sys.path.remove(str(ROOT / "benchmarks"))
    tuned = json.loads((ROOT / "benchmarks/results/real-model-cpu/tune.json").read_text())
    preset = rm.PRESETS["cpu-reduced"]
    default_lr = rm.RECIPE["defaults"]["train"]["lr"]
    factor = tuned["unlearning_lr"]["lr"] / default_lr
    recipe = load_recipe("world-smol")
    assert recipe["demo_methods"] == rm.METHODS
    for method in rm.METHODS:
        a, b = method_config(method, rm.RECIPE), method_config(method, recipe)
        assert b["train"]["lr"] == pytest.approx(a["train"].get("lr", default_lr) * factor), method
        assert (b["train"]["steps"], b["train"]["batch_size"]) == (preset["steps"], preset["batch_size"])
        for key in ("objective", "strategy", "parameterization"):
            assert a.get(key) == b.get(key), (method, key)
    att = recipe["attack"]
    assert [tuple(x) for x in att["budgets"]] == [tuple(x) for x in preset["budgets"]]
    assert att["lr"] == tuned["attack_lr"]["lr"] and len(att["seeds"]) == preset["draws"]
    world = rm.make_world(preset["persons"], preset["attributes"], preset["forget_fraction"],
                          preset["relearn_pool"], preset["retain_eval"])
    assert world.config == SMOL_SPEC.world
    ft = SMOL_SPEC.finetune
    assert (ft.epochs, ft.batch_size) == (preset["ft_epochs"], preset["ft_batch"])


@pytest.mark.slow
def test_demo_on_a_real_world_fine_tunes_then_unlearns_and_attacks(tmp_path, monkeypatch, tiny_model_init,
                                                                   tiny_tokenizer, tiny_world):
    """The whole demo on ``world-smol`` with the base model swapped for the tiny one: fine-tuning of
    full and gold into the cache, then unlearning, the attack on both, results and report; a second
    demo reuses the cached models."""
    import robust_unlearning.benchmarks.world as world_module
    from robust_unlearning.cli import app

    base = save_model(tiny_model_init, tiny_tokenizer, tmp_path / "base")
    spec = RealWorldSpec(dataclasses.replace(tiny_world.config, retain_eval=16), str(base),
                         FinetuneConfig(epochs=1, batch_size=32, lr=3e-3))
    monkeypatch.setitem(world_module.WORLDS, "world-smol", spec)
    monkeypatch.setenv("ROBUST_UNLEARNING_CACHE", str(tmp_path / "cache"))
    args = ["demo", "--benchmark", "world-smol", "--methods", "npo", "--budgets", "2x1", "--draws", "1",
            "--seeds", "1"]
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    cached = list((tmp_path / "cache").glob("real-world-*/full/model.safetensors"))
    assert len(cached) == 1 and (cached[0].parent.parent / "gold" / "model.safetensors").is_file()
    results = json.loads((tmp_path / "out" / "results.json").read_text())
    assert results["world_name"] == "world-smol" and results["world"]["base"] == str(base)
    methods = [e["method"] for e in results["entries"]]
    assert methods == ["gold", "npo"]
    npo = results["entries"][1]
    assert npo["unlearn"]["steps"] == 20 and npo["budget"]["forget_samples"] == 20 * 8  # world-smol.yaml
    assert npo["attacks"]["relearn"][0]["samples"] == 2
    assert "npo" in (tmp_path / "out" / "report.md").read_text()
    stamp = cached[0].stat().st_mtime_ns
    res = CliRunner().invoke(app, [*args, "--out", str(tmp_path / "out2")])
    assert res.exit_code == 0, res.output
    assert cached[0].stat().st_mtime_ns == stamp  # not fine-tuned again
