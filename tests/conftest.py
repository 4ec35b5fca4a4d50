"""Shared fixtures: a tiny world, its tokenizer and a tiny random Llama (seconds to build), and
:func:`save_model` (a model directory of a model and its tokenizer: ``from conftest import save_model``).

Tests that need a model that *knows* facts use ``trained_tiny``: the tiny model briefly trained on
the tiny world (session-scoped, cached under a temporary directory).
"""

from __future__ import annotations

import copy
import os

import pytest
import torch

os.environ.setdefault("ROBUST_UNLEARNING_QUIET", "1")
os.environ.setdefault("ROBUST_UNLEARNING_PARALLEL_WORLD", "0")  # test_world.py tests the parallel build
os.environ.setdefault("ROBUST_UNLEARNING_WORKERS", "1")  # test_parallel.py tests the demo's worker processes
torch.set_num_threads(int(os.environ.get("ROBUST_UNLEARNING_TEST_THREADS", "2")))  # 1 on a busy machine

from robust_unlearning.world.generator import WorldConfig, generate_world  # noqa: E402
from robust_unlearning.world.model import ModelConfig, PretrainConfig, new_model, pretrain, train_tokenizer  # noqa: E402

TINY_WORLD = WorldConfig(n_persons=40, relearn_pool=8, retain_eval=40)
TINY_MODEL = ModelConfig(vocab_size=600, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=2, max_position_embeddings=128)


@pytest.fixture(scope="session")
def tiny_world():
    return generate_world(TINY_WORLD)


@pytest.fixture(scope="session")
def tiny_tokenizer(tiny_world):
    return train_tokenizer(tiny_world, TINY_MODEL.vocab_size)


@pytest.fixture(scope="session")
def tiny_model_init(tiny_tokenizer):
    """The tiny random Llama, shared by the session: read it, or copy it before changing it."""
    torch.manual_seed(0)
    return new_model(TINY_MODEL, tiny_tokenizer)


@pytest.fixture
def tiny_model(tiny_model_init):
    """A fresh copy of a tiny random Llama (tests may modify it)."""
    return copy.deepcopy(tiny_model_init)


@pytest.fixture(scope="session")
def _trained_tiny(tiny_world, tiny_tokenizer, tiny_model_init):
    model = copy.deepcopy(tiny_model_init)
    pretrain(model, tiny_tokenizer, tiny_world.training_records(tiny_world.persons),
             PretrainConfig(epochs=15, batch_size=16, lr=5e-3, eval_every=100), {})
    return model


@pytest.fixture
def trained_tiny(_trained_tiny):
    """The tiny model after a short training on the tiny world (a fresh copy per test)."""
    return copy.deepcopy(_trained_tiny)


def save_model(model, tokenizer, path):
    """A Hugging Face directory (safetensors) of ``model`` and ``tokenizer`` at ``path``; returns it."""
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def write_run_inputs(root, model, tokenizer, world, n: int):
    """``root/model`` (a saved model) and ``root/{forget,retain}.jsonl`` (the first ``n`` unlearning
    records of ``world``): the inputs of an ``unlearn run`` config; returns ``root``."""
    import json

    from robust_unlearning.world.benchmark import unlearning_data

    save_model(model, tokenizer, root / "model")
    forget, retain = unlearning_data(world)
    for name, records in (("forget", forget[:n]), ("retain", retain[:n])):
        (root / f"{name}.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    return root


@pytest.fixture(autouse=True)
def _placement_reset():
    """A command's --device / --dtype (robust_unlearning.placement) never outlives its test."""
    from robust_unlearning import placement

    yield
    placement.reset()
