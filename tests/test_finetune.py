"""finetune.build_real_world on the tiny model: full and gold fine-tuned on their persons, saved,
cached by hash and reused (the real-model run does the same on smollm2-135m)."""

from __future__ import annotations

import json

import pytest
from conftest import save_model

from robust_unlearning import finetune
from robust_unlearning.finetune import FinetuneConfig, build_real_world, training_records


@pytest.fixture
def base_dir(tmp_path, trained_tiny, tiny_tokenizer):
    return save_model(trained_tiny, tiny_tokenizer, tmp_path / "base")


@pytest.mark.slow
def test_full_and_gold_are_trained_on_their_persons_and_cached(tiny_world, base_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUST_UNLEARNING_CACHE", str(tmp_path / "cache"))
    seen = {}
    real = finetune.finetune_facts

    def spy(model, tok, records, evals, cfg, dtype, log, desc):
        seen[desc] = (len(records), sorted(evals))
        return real(model, tok, records, evals, cfg, dtype, log, desc)

    monkeypatch.setattr(finetune, "finetune_facts", spy)
    cfg = FinetuneConfig(epochs=1, batch_size=32, lr=1e-3)
    bundle = build_real_world(tiny_world, str(base_dir), cfg)
    n_full = len(training_records(tiny_world, tiny_world.persons))
    n_gold = len(training_records(tiny_world, tiny_world.retain_persons))
    assert seen == {"finetune full": (n_full, ["forget", "retain"]), "finetune gold": (n_gold, ["retain"])}
    for d in (bundle.full_dir, bundle.gold_dir):
        assert (d / "model.safetensors").is_file() and (d / "tokenizer.json").is_file()
        meta = json.loads((d / "real_world_meta.json").read_text())
        assert meta["history"]["epochs"] == 1 and set(meta["history"]["acc"])
    assert bundle.full_dir.parent.name.startswith("real-world-")

    def fail(*a, **k):
        raise AssertionError("retrained a cached model")

    monkeypatch.setattr(finetune, "finetune_facts", fail)
    again = build_real_world(tiny_world, str(base_dir), cfg)
    assert again.full_dir == bundle.full_dir and again.history == bundle.history
    other = finetune.real_world_key(tiny_world, str(base_dir), FinetuneConfig(epochs=2), "float32", "auto")
    assert other not in str(bundle.full_dir)  # another config, another cache entry


@pytest.mark.slow
def test_finetuning_reaches_the_target_and_stops(tiny_world, tiny_tokenizer, trained_tiny):
    recs = training_records(tiny_world, tiny_world.persons)
    evals = {"retain": tiny_world.retain_eval[:20]}
    hist = finetune.finetune_facts(trained_tiny, tiny_tokenizer, recs, evals,
                                   FinetuneConfig(epochs=30, batch_size=32, lr=3e-3, target_acc=0.5))
    assert hist["reached"] and hist["epochs"] < 30 and hist["acc"]["retain"] >= 0.5
    assert [c["epoch"] for c in hist["curve"]] == list(range(1, hist["epochs"] + 1))
