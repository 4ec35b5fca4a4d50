"""LoRA through peft: module detection per family, the loop with adapters under several objectives and
strategies, the adapters-off reference, and save/load round trips (adapter and merged)."""

from __future__ import annotations

import copy
import json
import math

import pytest
import torch
import transformers as T
from conftest import save_model

from robust_unlearning.config import build_config
from robust_unlearning.data.collate import Collator
from robust_unlearning.errors import UnlearnError
from robust_unlearning.io import load_model
from robust_unlearning.loop import unlearn
from robust_unlearning.objectives.base import sequence_nll
from robust_unlearning.parameterizations.base import PARAMETERIZATIONS
from robust_unlearning.parameterizations.bounded_lora import load_adapter
from robust_unlearning.parameterizations.mlp_modules import attention_modules, mlp_modules, projection_modules
from robust_unlearning.strategies.base import STRATEGIES
from robust_unlearning.world.benchmark import unlearning_data

_SMALL = dict(vocab_size=64, num_hidden_layers=2, num_attention_heads=2)
FAMILIES = {
    # family: (config, expected MLP leaves of layer 0, expected attention leaves of layer 0)
    "llama": (lambda: T.LlamaConfig(hidden_size=16, intermediate_size=32, num_key_value_heads=2, **_SMALL),
              {"gate_proj", "up_proj", "down_proj"}, {"q_proj", "k_proj", "v_proj", "o_proj"}),
    "mistral": (lambda: T.MistralConfig(hidden_size=16, intermediate_size=32, num_key_value_heads=2,
                                        **_SMALL),
                {"gate_proj", "up_proj", "down_proj"}, {"q_proj", "k_proj", "v_proj", "o_proj"}),
    "qwen2": (lambda: T.Qwen2Config(hidden_size=16, intermediate_size=32, num_key_value_heads=2, **_SMALL),
              {"gate_proj", "up_proj", "down_proj"}, {"q_proj", "k_proj", "v_proj", "o_proj"}),
    "gpt2": (lambda: T.GPT2Config(vocab_size=64, n_embd=16, n_layer=2, n_head=2, n_positions=32),
             {"mlp.c_fc", "mlp.c_proj"}, {"attn.c_attn", "attn.c_proj"}),
    "gpt_neox": (lambda: T.GPTNeoXConfig(hidden_size=16, intermediate_size=32, **_SMALL),
                 {"dense_h_to_4h", "dense_4h_to_h"}, {"query_key_value", "dense"}),
    "opt": (lambda: T.OPTConfig(hidden_size=16, ffn_dim=32, word_embed_proj_dim=16,
                                max_position_embeddings=32, **_SMALL),
            {"fc1", "fc2"}, {"q_proj", "k_proj", "v_proj", "out_proj"}),
    "phi": (lambda: T.PhiConfig(hidden_size=16, intermediate_size=32, **_SMALL),
            {"fc1", "fc2"}, {"q_proj", "k_proj", "v_proj", "dense"}),
}


def tiny_family_model(family: str):
    torch.manual_seed(0)
    return T.AutoModelForCausalLM.from_config(FAMILIES[family][0]())


def _layer0(names: list[str], depth: int) -> set[str]:
    return {".".join(n.split(".")[-depth:]) for n in names if ".0." in n}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_detects_mlp_and_attention_projections_per_family(family):
    model = tiny_family_model(family)
    _, mlp, attn = FAMILIES[family]
    depth = 2 if family == "gpt2" else 1  # GPT-2's c_proj exists in both blocks
    found_mlp, found_attn = mlp_modules(model), attention_modules(model)
    assert _layer0(found_mlp, depth) == mlp
    assert _layer0(found_attn, depth) == attn
    assert len(found_mlp) == 2 * len(mlp)  # both layers, nothing else (no lm_head, no embeddings)
    assert not set(found_mlp) & set(found_attn)
    assert set(projection_modules(model)) == set(found_mlp) | set(found_attn)


def test_explicit_modules_and_unmatched_names(tiny_model):
    up = ["model.layers.0.mlp.up_proj", "model.layers.1.mlp.up_proj"]
    assert mlp_modules(tiny_model, ["up_proj"]) == up
    assert mlp_modules(tiny_model, ["model.layers.1.mlp.down_proj"]) == ["model.layers.1.mlp.down_proj"]
    with pytest.raises(UnlearnError, match="match no linear layer.*gate_proj"):
        mlp_modules(tiny_model, ["fc9"])
    with pytest.raises(UnlearnError, match="non-empty list"):
        mlp_modules(tiny_model, [])


def test_no_mlp_found_is_a_clear_error():
    model = torch.nn.Sequential(torch.nn.Linear(4, 4))
    with pytest.raises(UnlearnError, match="no MLP projections found.*'modules'"):
        mlp_modules(model)


@pytest.mark.parametrize("name,options,match", [
    ("lora", {"r": 0}, "r must be a positive integer"),
    ("lora", {"dropout": 1.5}, "dropout"),
    ("lora", {"alpha": -1}, "alpha"),
    ("lora", {"modules": "attention"}, "all-linear"),
    ("lora", {"rank": 4}, "unknown option"),
    ("bounded-lora", {"function": "relu"}, "function must be one of sin, tanh"),
    ("bounded-lora", {"omega": 0}, "omega"),
    ("bounded-lora", {"scale": -2}, "scale"),
    ("bounded-lora", {"scale": "sqrt"}, "scale"),
])
def test_bad_options_are_unlearn_errors(name, options, match):
    with pytest.raises(UnlearnError, match=match):
        PARAMETERIZATIONS.build(name, options)


def _cfg(method, parameterization=None, **train):
    return build_config({"method": method, "parameterization": parameterization or {},
                         "train": {"steps": 4, "batch_size": 4, "lr": 1e-2, **train}})


def _forget_nll(model, tok, records):
    batch = Collator(tok)(records)
    with torch.no_grad():
        s, n = sequence_nll(model, batch)
    return (s / n).mean().item()


def _base_state(model) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


def test_lora_trains_only_adapters_and_logs_its_statistics(trained_tiny, tiny_tokenizer, tiny_world,
                                                            tmp_path):
    forget, retain = unlearning_data(tiny_world)
    before_nll = _forget_nll(trained_tiny, tiny_tokenizer, forget[:32])
    base = _base_state(trained_tiny)
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg("npo+plain+lora", steps=6),
                     metrics_path=tmp_path / "metrics.jsonl")
    trainable = [n for n, p in result.model.named_parameters() if p.requires_grad]
    assert trainable and all("lora_" in n for n in trainable)
    assert result.metrics["trainable_parameters"] == sum(
        p.numel() for p in result.model.parameters() if p.requires_grad)
    # every base weight is bit-identical: training only moved adapters
    for name, p in result.model.base_model.model.named_parameters():
        if "lora_" not in name:
            key = name.replace(".base_layer", "")
            assert torch.equal(p, base[key]), name
    lines = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert len(lines) == 6
    for e in lines:
        assert math.isfinite(e["grad_norm"]) and e["adapter_norm"] > 0 and e["delta_w_max"] >= 0
    assert lines[-1]["delta_w_max"] > lines[0]["delta_w_max"] > 0
    after_nll = _forget_nll(result.export(), tiny_tokenizer, forget[:32])
    assert after_nll > before_nll + 0.1, (before_nll, after_nll)


def test_default_lora_targets_attention_and_mlp(tiny_model):
    param = PARAMETERIZATIONS.build("lora", {})
    model = param.prepare(tiny_model, None)
    wrapped = {n.split(".")[-1] for n, m in model.named_modules() if hasattr(m, "lora_A") and m.lora_A}
    assert wrapped == {"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}


def test_rmu_with_lora_runs_and_trains_every_target(trained_tiny, tiny_tokenizer, tiny_world):
    forget, retain = unlearning_data(tiny_world)
    cfg = _cfg("rmu+plain+lora", {"modules": ["gate_proj", "up_proj", "down_proj"]}, steps=3)
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain,
                     cfg.model_copy(update={"objective": {"layer": 0}}))
    assert all(math.isfinite(e["forget_loss"]) for e in result.log)
    moved = [n for n, p in result.model.named_parameters() if "lora_B" in n and p.abs().sum() > 0]
    # RMU reads the residual stream after layer 0: only layer 0's adapters get a gradient
    assert any("layers.0." in n for n in moved) and not any("layers.1." in n for n in moved)


def test_reference_is_the_model_without_adapters(trained_tiny, tiny_tokenizer, tiny_world):
    """NPO at the start (B = 0, θ = θ_ref) is (2/β)·log 2; after training, the adapters-off reference
    still gives the original model's logits while the adapted model does not."""
    from robust_unlearning.objectives.npo import NPO

    forget, retain = unlearning_data(tiny_world)
    batch = Collator(tiny_tokenizer)(forget[:8])
    with torch.no_grad():
        original = trained_tiny(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    param = PARAMETERIZATIONS.build("lora", {})
    model = param.prepare(copy.deepcopy(trained_tiny), None)
    ref = param.reference(model)
    assert NPO(beta=0.5).forget_loss(model, batch, ref).item() == pytest.approx(4 * math.log(2), rel=1e-5)
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg("npo+lora", steps=3))
    ref = result.parameterization.reference(result.model)
    assert torch.allclose(ref.logits(batch), original, atol=1e-5)
    with torch.no_grad():
        adapted = result.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
    assert not torch.allclose(adapted, original, atol=1e-3)
    assert result.model.training is False  # the reference restores the mode it found


@pytest.mark.parametrize("method", ["npo+sam+lora", "graddiff+stableun+bounded-lora", "graddiff+rs+lora"])
def test_perturbing_strategies_move_only_adapters(method, trained_tiny, tiny_tokenizer, tiny_world):
    strategy = method.split("+")[1]
    if strategy not in STRATEGIES.names():
        pytest.skip(f"strategy {strategy} not available")
    forget, retain = unlearning_data(tiny_world)
    base = _base_state(trained_tiny)
    result = unlearn(trained_tiny, tiny_tokenizer, forget, retain, _cfg(method, steps=2, lr=1e-3))
    assert result.metrics["passes_per_step"] > 2  # the strategy really ran its extra passes
    for name, p in result.model.base_model.model.named_parameters():
        if "lora_" not in name:
            assert torch.equal(p, base[name.replace(".base_layer", "")]), name
    assert any(p.abs().sum() > 0 for n, p in result.model.named_parameters() if "lora_B" in n)


def _logits(model, batch):
    with torch.no_grad():
        return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits


@pytest.mark.parametrize("name", ["lora", "bounded-lora"])
def test_save_load_round_trip_adapter_and_merged(name, tiny_model_init, tiny_tokenizer, tiny_world,
                                                 tmp_path):
    forget, retain = unlearning_data(tiny_world)
    model = copy.deepcopy(tiny_model_init)
    result = unlearn(model, tiny_tokenizer, forget, retain, _cfg(f"graddiff+{name}", steps=3))
    batch = Collator(tiny_tokenizer)(forget[:6])
    expected = _logits(result.model, batch)
    assert not torch.allclose(expected, _logits(tiny_model_init, batch), atol=1e-4)  # adapters matter

    result.parameterization.save(result.model, tiny_tokenizer, tmp_path / "adapter", merged=False)
    result.parameterization.save(result.model, tiny_tokenizer, tmp_path / "merged", merged=True)
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()
    assert (tmp_path / "adapter" / "adapter_config.json").is_file()
    assert (tmp_path / "adapter" / "bounded_lora.json").is_file() == (name == "bounded-lora")
    assert not list((tmp_path / "merged").glob("adapter_*"))

    merged, _ = load_model(tmp_path / "merged")
    torch.testing.assert_close(_logits(merged, batch), expected, atol=1e-4, rtol=1e-4)
    loaded = load_adapter(copy.deepcopy(tiny_model_init), tmp_path / "adapter")
    torch.testing.assert_close(_logits(loaded, batch), expected, atol=1e-5, rtol=1e-5)
    # export merged into a copy: the trained adapter model still computes the same thing
    torch.testing.assert_close(_logits(result.model, batch), expected)


@pytest.mark.parametrize("name", ["lora", "bounded-lora"])
def test_load_model_takes_an_adapter_directory(name, tiny_model_init, tiny_tokenizer, tiny_world, tmp_path):
    """`unlearn eval/attack --model RUN` work on a run saved with ``save: adapter``: the base named in
    adapter_config.json is loaded and the adapter merged in."""
    save_model(tiny_model_init, tiny_tokenizer, tmp_path / "base")
    base, tok = load_model(tmp_path / "base")
    forget, retain = unlearning_data(tiny_world)
    result = unlearn(base, tok, forget, retain, _cfg(f"graddiff+{name}", steps=3))
    result.parameterization.save(result.model, tok, tmp_path / "adapter", merged=False)
    batch = Collator(tok)(forget[:6])
    loaded, loaded_tok = load_model(tmp_path / "adapter")
    assert type(loaded).__name__ == "LlamaForCausalLM"  # adapters merged away
    torch.testing.assert_close(_logits(loaded, batch), _logits(result.model, batch), atol=1e-4, rtol=1e-4)
    assert loaded_tok.get_vocab() == tok.get_vocab()

    cfg_file = tmp_path / "adapter" / "adapter_config.json"
    cfg = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({**cfg, "base_model_name_or_path": str(tmp_path / "gone")}))
    with pytest.raises(UnlearnError, match="model directory not found"):
        load_model(tmp_path / "adapter")
    cfg_file.write_text(json.dumps({**cfg, "base_model_name_or_path": None}))
    with pytest.raises(UnlearnError, match="names no 'base_model_name_or_path'"):
        load_model(tmp_path / "adapter")
    cfg_file.write_text("{not json")
    with pytest.raises(UnlearnError, match="adapter_config.json is not valid JSON"):
        load_model(tmp_path / "adapter")
