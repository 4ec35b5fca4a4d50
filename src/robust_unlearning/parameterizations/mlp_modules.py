"""Which modules of a causal LM are its MLP projections and which its attention projections.

Names by family (docs/methods.md#mlp-module-names-by-family):

    family                     MLP                              attention
    Llama / Mistral / Qwen     gate_proj, up_proj, down_proj    q_proj, k_proj, v_proj, o_proj
    Phi-3                      gate_up_proj, down_proj          qkv_proj, o_proj
    GPT-2                      mlp.c_fc, mlp.c_proj (Conv1D)    attn.c_attn, attn.c_proj (Conv1D)
    GPT-NeoX / Pythia          dense_h_to_4h, dense_4h_to_h     query_key_value, attention.dense
    OPT                        fc1, fc2                         q_proj, k_proj, v_proj, out_proj
    Phi(-1.5, -2)              fc1, fc2                         q_proj, k_proj, v_proj, dense

Detection walks the model once and classifies every linear layer (``nn.Linear`` or GPT-2's
``Conv1D``) by the last part of its name and by whether its path runs through an attention block:
GPT-2's ``c_proj`` is an MLP projection under ``mlp`` and an attention projection under ``attn``.
The result is a list of full module names, which peft takes as ``target_modules`` verbatim.
An explicit list is also accepted: each entry is a full name or a name suffix (``up_proj``,
``mlp.c_proj``), matched the way peft matches ``target_modules``.
"""

from __future__ import annotations

from torch import nn

from ..errors import UnlearnError

MLP_NAMES: dict[str, tuple[str, ...]] = {
    "llama": ("gate_proj", "up_proj", "down_proj"),
    "mistral": ("gate_proj", "up_proj", "down_proj"),
    "qwen2": ("gate_proj", "up_proj", "down_proj"),
    "phi3": ("gate_up_proj", "down_proj"),
    "gpt2": ("c_fc", "c_proj"),
    "gpt_neox": ("dense_h_to_4h", "dense_4h_to_h"),
    "opt": ("fc1", "fc2"),
    "phi": ("fc1", "fc2"),
}
MLP_LEAVES = frozenset(n for names in MLP_NAMES.values() for n in names) | {"w1", "w2", "w3"}
# A path component that marks an attention block (its projections are never MLP projections).
ATTENTION_PARTS = frozenset({"attn", "attention", "self_attn", "self_attention", "cross_attn",
                             "encoder_attn", "crossattention"})


def _linear_types() -> tuple[type, ...]:
    from transformers.pytorch_utils import Conv1D

    return (nn.Linear, Conv1D)


def linear_modules(model) -> dict[str, nn.Module]:
    """Every ``nn.Linear``/``Conv1D`` of the model (peft adapter layers are looked through)."""
    types = _linear_types()
    out = {}
    for name, module in model.named_modules():
        if isinstance(module, types) and not name.endswith(("lora_A", "lora_B")) \
                and ".lora_" not in name and not name.endswith(".base_layer"):
            out[name] = module
    return out


def _in_attention(name: str) -> bool:
    return any(part in ATTENTION_PARTS for part in name.split(".")[:-1])


def _matches(name: str, target: str) -> bool:
    return name == target or name.endswith("." + target)


def mlp_modules(model, explicit: list[str] | None = None) -> list[str]:
    """Full names of the MLP projections (or of the modules matching ``explicit``)."""
    linear = linear_modules(model)
    if explicit is not None:
        return select(model, explicit, linear)
    found = [n for n in linear if n.split(".")[-1] in MLP_LEAVES and not _in_attention(n)]
    if not found:
        raise UnlearnError(
            f"no MLP projections found in this {_family(model)} model (looked for "
            f"{', '.join(sorted(MLP_LEAVES))} outside attention blocks); give the module names "
            "explicitly with the parameterization option 'modules'"
        )
    return found


def attention_modules(model) -> list[str]:
    """Full names of the linear layers inside attention blocks."""
    return [n for n in linear_modules(model) if _in_attention(n)]


def projection_modules(model) -> list[str]:
    """Attention and MLP projections, in model order (plain LoRA's default targets)."""
    mlp = set(mlp_modules(model))
    attn = set(attention_modules(model))
    return [n for n in linear_modules(model) if n in mlp or n in attn]


def select(model, names: list[str], linear: dict[str, nn.Module] | None = None) -> list[str]:
    """Resolve an explicit list (full names or suffixes) to full names of linear layers."""
    if isinstance(names, str) or not names or not all(isinstance(n, str) and n for n in names):
        raise UnlearnError(f"modules must be a non-empty list of module names, not {names!r}")
    linear = linear if linear is not None else linear_modules(model)
    unmatched = [t for t in names if not any(_matches(n, t) for n in linear)]
    if unmatched:
        leaves = sorted({n.split(".")[-1] for n in linear})
        raise UnlearnError(
            f"module name(s) {', '.join(unmatched)} match no linear layer of this {_family(model)} model; "
            f"its linear layers are named {', '.join(leaves)}"
        )
    return [n for n in linear if any(_matches(n, t) for t in names)]


def _family(model) -> str:
    config = getattr(model, "config", None)
    return str(getattr(config, "model_type", None) or type(model).__name__)
