"""bounded-lora: LoRA on the MLP projections with a bounded update (docs/methods.md#bounded-lora).

    ΔW = (alpha / r) · f(omega · B A) / s,      f ∈ {sin, tanh},  s = √in_features (default)

so every entry of ΔW stays within ±alpha/(r·s) whatever the optimizer does: gradient ascent on an
unbounded loss can no longer blow the MLP weights (and their gradients) up. Attention is untouched.
Options: ``r``, ``alpha``, ``dropout`` (applied to the layer input), ``function`` (``sin`` or
``tanh``), ``omega`` (≈100 in the paper), ``scale`` (``"sqrt_in"`` for s = √in_features, or a
positive number for a fixed s), ``modules`` (``None``: the MLP projections of the model's family,
see :mod:`.mlp_modules`; or an explicit list of names) and ``recompute`` (default on: rebuild ΔW in
the backward pass instead of keeping two out×in tensors per module alive between forward and
backward; costs one extra ΔW per module per backward, r·out·in multiply-adds plus f).

peft integration (peft ≥ 0.21 read for this): peft's LoRA *variants* (DoRA, ...) are selected by
fields of ``LoraConfig`` and a fixed table inside ``lora.Linear``, so a new variant cannot be added
from outside. peft's documented extension point for new layer behaviour is the custom-module
mapping, ``LoraConfig._register_custom_module({nn.Linear: MyLayer})``. We use it:
:class:`BoundedLoraLinear` subclasses ``peft.tuners.lora.Linear`` (same ``lora_A``/``lora_B``
parameters and state-dict keys) and overrides only ``forward`` and ``get_delta_weight``. Everything
else is peft's own: ``save_pretrained``, ``from_pretrained``, ``merge_and_unload`` (which folds in
``get_delta_weight``, i.e. the *bounded* ΔW), ``disable_adapter``. GPT-2's ``Conv1D`` (weights stored
transposed) is handled by peft's ``fan_in_fan_out`` transpose.

Hand-written: the bounded forward (ΔW has no low-rank factorisation once f is applied, so it is
materialised per module, out×in, each forward) and the delta.

Loading a saved bounded adapter: the custom mapping is not part of ``adapter_config.json``, so the
settings go into a side file ``bounded_lora.json`` and :func:`load_adapter` registers the layer
before calling ``PeftModel.from_pretrained``::

    from robust_unlearning.parameterizations.bounded_lora import load_adapter
    model = load_adapter(AutoModelForCausalLM.from_pretrained(base_dir), adapter_dir)

(A plain ``PeftModel.from_pretrained`` would load it as ordinary LoRA, B A without f: wrong.)
"""

from __future__ import annotations

import functools
import json
import math
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

from .base import PARAMETERIZATIONS
from .lora import PeftParameterization, adapter_layers, quiet_peft
from .mlp_modules import mlp_modules

SIDE_FILE = "bounded_lora.json"
FUNCTIONS = {"sin": torch.sin, "tanh": torch.tanh}


def _scale_value(scale, in_features: int) -> float:
    return math.sqrt(in_features) if scale == "sqrt_in" else float(scale)


@functools.cache
def bounded_layer_class() -> type:
    """:class:`BoundedLoraLinear`, defined on first use so that importing this module (the registry
    does, for every method lookup) does not import peft."""
    from peft.tuners.lora import Linear as LoraLinear

    class BoundedLoraLinear(LoraLinear):
        """A peft LoRA linear layer whose update is ΔW = scaling · f(omega · B A) / s."""

        def __init__(self, base_layer, adapter_name, *, function: str = "sin", omega: float = 100.0,
                     scale: float | str = "sqrt_in", recompute: bool = True, **kwargs):
            from transformers.pytorch_utils import Conv1D

            super().__init__(base_layer, adapter_name, **kwargs)
            self.bound_function = function
            self.omega = float(omega)
            self.s = _scale_value(scale, self.in_features)
            self.recompute = recompute
            # GPT-2's Conv1D stores its weight as (in, out): merged deltas must be transposed.
            self.fan_in_fan_out = isinstance(self.get_base_layer(), Conv1D)

        def bound(self, adapter: str) -> float:
            """The analytic per-entry bound alpha / (r · s) of |ΔW|."""
            return self.scaling[adapter] / self.s

        def delta(self, adapter: str) -> torch.Tensor:
            """ΔW in (out, in) layout, differentiable."""
            a = self.lora_A[adapter].weight
            b = self.lora_B[adapter].weight
            return FUNCTIONS[self.bound_function](self.omega * (b @ a)) * self.bound(adapter)

        def get_delta_weight(self, adapter) -> torch.Tensor:
            weight = self.lora_B[adapter].weight
            half_on_cpu = weight.device.type == "cpu" and weight.dtype in (torch.float16, torch.bfloat16)
            with torch.autocast(weight.device.type, enabled=False):
                if half_on_cpu:  # as peft does: slow half matmuls on CPU, compute in fp32
                    a, b = self.lora_A[adapter].weight.float(), weight.float()
                    d = FUNCTIONS[self.bound_function](self.omega * (b @ a)) * self.bound(adapter)
                    d = d.to(weight.dtype)
                else:
                    d = self.delta(adapter)
            return d.T if self.fan_in_fan_out else d

        def forward(self, x: torch.Tensor, *args, **kwargs) -> torch.Tensor:
            self._check_forward_args(x, *args, **kwargs)
            if kwargs.pop("adapter_names", None) is not None:
                raise ValueError("bounded LoRA does not support mixed-adapter batches")
            if self.disable_adapters:
                if self.merged:
                    self.unmerge()
                return self.base_layer(x, *args, **kwargs)
            result = self.base_layer(x, *args, **kwargs)
            if self.merged:
                return result
            out_dtype = result.dtype
            for adapter in self.active_adapters:
                if adapter not in self.lora_A:
                    continue
                xa = self._cast_input_dtype(x, self.lora_A[adapter].weight.dtype)
                result = result + self._branch(xa, adapter)
            return result.to(out_dtype)

        def _branch(self, x: torch.Tensor, adapter: str) -> torch.Tensor:
            def branch(inp):
                return F.linear(self.lora_dropout[adapter](inp), self.delta(adapter))

            if self.recompute and torch.is_grad_enabled():
                # Keep only x for the backward pass and rebuild ΔW there: otherwise every targeted
                # module holds two out×in tensors (ω·BA and ΔW) from its forward until the backward.
                return checkpoint(branch, x, use_reentrant=False)
            return branch(x)

        def supports_lora_conversion(self, adapter_name: str = "default") -> bool:
            return False  # f(B A) is not a low-rank matrix

        def __repr__(self) -> str:
            return "bounded_" + super().__repr__()

    return BoundedLoraLinear


def __getattr__(name: str):
    if name == "BoundedLoraLinear":
        return bounded_layer_class()
    raise AttributeError(name)


def register_bounded(config, function: str = "sin", omega: float = 100.0,
                     scale: float | str = "sqrt_in", recompute: bool = True):
    """Make ``config`` (a ``LoraConfig``) build :class:`BoundedLoraLinear` for its targets."""
    from transformers.pytorch_utils import Conv1D

    layer = functools.partial(bounded_layer_class(), function=function, omega=omega, scale=scale,
                              recompute=recompute)
    config._register_custom_module({torch.nn.Linear: layer, Conv1D: layer})
    return config


def load_adapter(base_model, adapter_dir: str | Path, is_trainable: bool = False):
    """Load a saved adapter (bounded or plain LoRA) onto ``base_model``; returns a ``PeftModel``."""
    from peft import PeftConfig, PeftModel

    adapter_dir = Path(adapter_dir)
    config = PeftConfig.from_pretrained(str(adapter_dir))
    side = adapter_dir / SIDE_FILE
    if side.is_file():
        register_bounded(config, **json.loads(side.read_text(encoding="utf-8")))
    with quiet_peft():
        return PeftModel.from_pretrained(base_model, str(adapter_dir), config=config,
                                         is_trainable=is_trainable)


@PARAMETERIZATIONS.register("bounded-lora")
@dataclass
class BoundedLoRA(PeftParameterization):
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    function: str = "sin"
    omega: float = 100.0
    scale: float | str = "sqrt_in"
    modules: list[str] | None = None
    recompute: bool = True

    def __post_init__(self):
        self._check()
        if self.function not in FUNCTIONS:
            raise ValueError(f"function must be one of {', '.join(FUNCTIONS)}, not {self.function!r}")
        if not self.omega > 0:
            raise ValueError(f"omega must be positive, not {self.omega!r}")
        if self.scale != "sqrt_in":
            if isinstance(self.scale, bool) or not isinstance(self.scale, (int, float)) or not self.scale > 0:
                raise ValueError(f"scale must be 'sqrt_in' or a positive number, not {self.scale!r}")

    def target_modules(self, model) -> list[str]:
        return mlp_modules(model, self.modules)

    def lora_config(self, model, targets):
        return register_bounded(super().lora_config(model, targets), self.function, self.omega,
                                self.scale, self.recompute)

    def step_stats(self, model) -> dict[str, float]:
        stats = super().step_stats(model)
        cls = bounded_layer_class()
        bounds = [layer.bound(a) for layer in adapter_layers(model) if isinstance(layer, cls)
                  for a in layer.active_adapters if a in layer.lora_A]
        stats["delta_w_bound"] = max(bounds) if bounds else 0.0
        return stats

    def _save_extra(self, out_dir: Path) -> None:
        side = {"function": self.function, "omega": self.omega, "scale": self.scale}
        (Path(out_dir) / SIDE_FILE).write_text(json.dumps(side, indent=2) + "\n", encoding="utf-8")
