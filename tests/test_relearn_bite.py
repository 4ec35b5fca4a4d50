"""benchmarks/relearn_bite.py: its model variants are the worlds the world names give (so a protocol
run reuses the models the exploration trained), and its summary over unlearning seeds."""

from __future__ import annotations

import dataclasses
import importlib.util
import statistics
from pathlib import Path

import pytest

from robust_unlearning.benchmarks.world import world_spec
from robust_unlearning.world.generator import TUNING_SEED
from robust_unlearning.world.model import QUICK_SPEC

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "relearn_bite.py"


@pytest.fixture(scope="module")
def bite():
    spec = importlib.util.spec_from_file_location("relearn_bite", SCRIPT)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_variants_are_the_named_worlds(bite):
    base = dataclasses.replace(QUICK_SPEC, world=dataclasses.replace(QUICK_SPEC.world, seed=TUNING_SEED))
    for label, name in (("quick (96 x 3)", "world-quick-tune"),
                        ("quick 60 epochs (96 x 3)", "world-quick-tune:stop=end"),
                        ("deep (96 x 8)", "world-quick-tune:layers=8"),
                        ("deep 60 epochs (96 x 8)", "world-quick-tune:layers=8,stop=end")):
        assert bite.variant_spec(base, label).key() == world_spec(name).key(), label


def _cell(seed: int, pre: float, post: float, gold_moved: float = 0.01) -> dict:
    last = {"budget": [20, 100], "post": post, "post_draws": [post] * 3, "gold_post": 0.25 + gold_moved,
            "gold_moved": gold_moved, "recovery": (post - pre) / (1.0 - pre), "gap": abs(post - 0.25)}
    return {"steps": 200, "npo_lr": 1e-3, "seed": seed, "form": "qa", "attack": {"lr": 1e-3, "lora_rank": 0},
            "original": 1.0, "pre": pre, "retain_acc": 0.9, "gold_pre": 0.25, "budgets": [last]}


def test_summary_over_seeds(bite):
    cells = [_cell(0, 0.10, 0.46), _cell(1, 0.05, 0.43), _cell(2, 0.20, 0.40)]
    results = {"world": {"n_persons": 120, "seed": 100, "relearn_pool": 40}, "evaluation_world_check": False,
               "attack": {"lr": 1e-3, "batch_size": 8, "budgets": [[20, 10], [20, 100]]}, "draws": 3,
               "date": "2026-12-01", "seconds": 1.0, "environment": {"machine": "x"},
               "models": [{"label": "quick (96 x 3)", "parameters": 500_000, "cells": cells}]}
    text = bite.render(results)
    rec = [(0.46 - 0.10) / 0.90, (0.43 - 0.05) / 0.95, (0.40 - 0.20) / 0.80]
    row = next(line for line in text.splitlines() if line.startswith("| quick (96 x 3) | 200 @ 0.001 |"))
    assert f"{statistics.fmean(rec):.3f} ± {statistics.stdev(rec):.3f}" in row
    assert f"{statistics.fmean([0.46, 0.43, 0.40]):.3f} ± {statistics.stdev([0.46, 0.43, 0.40]):.3f}" in row
    assert text.count("| quick (96 x 3) | 0.5 M |") == 3  # one row per seed as well
