"""train.keep_best: the saved weights are those of the best evaluated step (best.py, loop.py)."""

from __future__ import annotations

import copy

import pytest
import torch

from robust_unlearning.config import build_config
from robust_unlearning.errors import UnlearnError
from robust_unlearning.loop import unlearn
from robust_unlearning.world.benchmark import unlearning_data

SCRIPT = [3.0, 1.0, 2.0, 5.0]  # the fake metric at steps 1..4


def _cfg(steps=4, **train):
    train = {"steps": steps, "batch_size": 4, "lr": 1e-2, **train}
    return build_config({"method": "graddiff", "train": train})


def _scripted():
    calls = []

    def evaluate(model):
        calls.append(1)
        return {"score": SCRIPT[len(calls) - 1], "other": 0.0}

    return evaluate


def _weights(model):
    return {k: v.clone() for k, v in model.state_dict().items()}


@pytest.mark.parametrize("mode,best_step", [("min", 2), ("max", 4)])
def test_the_best_step_is_what_is_returned(mode, best_step, tiny_model, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    base = copy.deepcopy(tiny_model)
    kept = unlearn(copy.deepcopy(base), tiny_tokenizer, forget, retain,
                   _cfg(eval_every=1, keep_best=f"score:{mode}"), evaluate_fn=_scripted())
    assert kept.metrics["best"] == {"metric": "score", "mode": mode, "value": SCRIPT[best_step - 1],
                                    "step": best_step}
    ref = unlearn(copy.deepcopy(base), tiny_tokenizer, forget, retain, _cfg(steps=best_step))
    other = unlearn(copy.deepcopy(base), tiny_tokenizer, forget, retain, _cfg(steps=3))
    got, want, not_it = _weights(kept.export()), _weights(ref.export()), _weights(other.export())
    assert all(torch.equal(got[k], want[k]) for k in want)
    assert any(not torch.equal(got[k], not_it[k]) for k in want)


def test_keep_best_bad_inputs(tiny_model, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    with pytest.raises(UnlearnError, match="METRIC:min"):
        _cfg(keep_best="score")
    with pytest.raises(UnlearnError, match="eval_every"):
        unlearn(tiny_model, tiny_tokenizer, forget, retain, _cfg(keep_best="score:min"))
    with pytest.raises(UnlearnError, match="averages"):
        unlearn(tiny_model, tiny_tokenizer, forget, retain,
                build_config({"method": "graddiff+wa", "train": {"steps": 2, "eval_every": 1,
                                                                 "keep_best": "score:min"}}))
    with pytest.raises(UnlearnError, match="no 'nope'"):
        unlearn(tiny_model, tiny_tokenizer, forget, retain, _cfg(eval_every=1, keep_best="nope:min"),
                evaluate_fn=_scripted())


def test_benchmark_metrics_during_training_and_keep_best(tmp_path, tiny_model, tiny_tokenizer):
    """train.eval_benchmark: every evaluation carries the benchmark's summary metrics (TOFU fixture),
    and keep_best can pick on one of them; the saved metrics say which step."""
    import json

    import yaml
    from conftest import save_model
    from test_benchmarks_tofu import write_tofu

    from robust_unlearning.runner import run_config

    save_model(tiny_model, tiny_tokenizer, tmp_path / "model")
    cfg = {"model": str(tmp_path / "model"), "method": "graddiff", "evaluate": False,
           "data": {"benchmark": "tofu", "path": str(write_tofu(tmp_path / "tofu")), "split": "forget10",
                    "options": {"generate": False}},
           "train": {"steps": 2, "batch_size": 2, "lr": 1e-3, "max_length": 64, "eval_every": 1,
                     "eval_benchmark": True, "keep_best": "model_utility:max"},
           "output_dir": str(tmp_path / "out")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg))
    out = run_config(tmp_path / "c.yaml", [], log=lambda *_: None)
    lines = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    evals = [e["eval"] for e in lines]
    keys = {"forget_nll", "model_utility", "forget_truth_ratio"}
    assert len(evals) == 2 and all(keys <= set(e) for e in evals)
    best = json.loads((out / "metrics.json").read_text())["best"]
    want = max(range(2), key=lambda i: (evals[i]["model_utility"], -i))
    assert best["step"] == want + 1 and best["value"] == evals[want]["model_utility"]
