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
