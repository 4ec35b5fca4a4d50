"""One path for every benchmark: world names through build_benchmark, the relearning settings each
benchmark gives, and the demo's per-method rows on a standard benchmark."""

from __future__ import annotations

import statistics

import pytest

from robust_unlearning.attacks.relearn import RelearnConfig
from robust_unlearning.attacks.relearn_benchmark import BenchmarkRelearnConfig
from robust_unlearning.benchmarks import build_benchmark
from robust_unlearning.benchmarks.demo_report import summarize_methods, table_rows
from robust_unlearning.benchmarks.forget_file import ForgetFile
from robust_unlearning.errors import UnlearnError


def test_every_world_name_is_a_benchmark_without_building_it():
    names = ("world", "world-quick", "world-tune", "world:seed=2", "world-quick-tune:seed=5", "world-tiny")
    for name in names:
        bench = build_benchmark(name, options={"rouge": False})
        assert bench.name == name and bench.rouge is False and bench.HAS_PERSONS
        assert bench.quick == name.startswith("world-quick")
    assert build_benchmark("world").smaller().name == "world-quick"
    assert build_benchmark("world:seed=2").smaller().name == "world:seed=2"  # --quick: the default world only
    with pytest.raises(UnlearnError, match="use world:seed=N"):
        build_benchmark("world:sed=2")
    with pytest.raises(UnlearnError, match="unknown benchmark 'nope'.*tofu.*worlds: world, world-quick"):
        build_benchmark("nope")
    with pytest.raises(UnlearnError, match="unknown option"):
        build_benchmark("world", path="somewhere")


def test_relearn_settings_per_benchmark(tmp_path):
    quick = build_benchmark("world-quick").relearn_config({"lr": 5e-4}, form="bio", lora_rank=2)
    assert isinstance(quick, RelearnConfig) and quick.form == "bio" and quick.lora_rank == 2
    assert [list(b) for b in quick.budgets] == [[8, 10], [16, 40]] and quick.lr == 5e-4  # the recipe's
    full = build_benchmark("world").relearn_config({})
    assert [list(b) for b in full.budgets] == [[20, 10], [40, 40], [40, 100]]
    own = ForgetFile(tmp_path / "forget.jsonl")
    cfg = own.relearn_config({"budgets": [(2, 3)]}, metrics=False)
    assert isinstance(cfg, BenchmarkRelearnConfig) and not hasattr(cfg, "form")
    assert [list(b) for b in cfg.budgets] == [[2, 0], [2, 3]]  # step 0 for every sample count
    with pytest.raises(UnlearnError, match="form applies to the world only"):
        own.relearn_config({}, form="bio")
    (tmp_path / "forget.jsonl").write_text('{"text": "a"}\n{"text": "b"}\n')
    with pytest.raises(UnlearnError, match="leaves no held-out forget record"):
        own.check_relearn(cfg)


def _entry(method, seed, prob, curve):
    return {"method": method, "seed": seed, "original": {}, "forget_probability": prob, "note": "text",
            "unlearn": {"steps": 3}, "attacks": {"benchmark_relearn": [
                {"samples": k, "steps": s, "heldout_forget_nll": v, "heldout_forget_nll_std": 0.5, "draws": 2}
                for (k, s), v in curve.items()]}}


def test_demo_rows_are_mean_and_std_over_seeds_at_the_largest_budget():
    entries = [_entry("gold", 0, 0.1, {(1, 0): 9.0, (2, 3): 8.0}),
               _entry("npo", 0, 0.2, {(1, 0): 5.0, (2, 3): 4.0}),
               _entry("npo", 1, 0.6, {(1, 0): 7.0, (2, 3): 2.0})]
    rows = summarize_methods(entries, "benchmark_relearn")
    assert [r["method"] for r in rows] == ["gold", "npo"] and rows[1]["seeds"] == 2
    npo = rows[1]
    assert npo["forget_probability"] == pytest.approx(0.4)
    assert npo["forget_probability_seed_std"] == pytest.approx(statistics.pstdev([0.2, 0.6]))
    assert npo["relearn_budget"] == [2, 3] and npo["after_heldout_forget_nll"] == pytest.approx(3.0)
    assert npo["after_heldout_forget_nll_seed_std"] == pytest.approx(1.0)
    assert "note" not in npo and "unlearn" not in npo and rows[0]["forget_probability_seed_std"] == 0.0
    head, cells = table_rows({"summary": rows})
    assert head[:3] == ["method", "seeds", "forget_probability"] and "after 2×3: heldout_forget_nll" in head
    assert cells[1][:3] == ["npo", "2", "0.400 ± 0.200"]
