"""lora: low-rank adapters through peft, on the attention and MLP projections by default.

Options: ``r`` (rank), ``alpha`` (ΔW = (alpha/r)·B A), ``dropout`` (on the adapter input) and
``modules``: ``None`` detects the attention and MLP projections of the model's family
(:mod:`.mlp_modules`), ``"all-linear"`` hands the choice to peft, and a list names modules (full
names or suffixes such as ``q_proj``). The base weights are frozen; only the adapters train, so
perturbing strategies (SAM, RS, StableUN, ...) perturb only the adapters.

The reference model of NPO, GA+KL and RMU is the same model with its adapters disabled (peft's
``disable_adapter()``), which costs no memory. RMU's ``trainable_patterns`` (a few MLP layers) applies
to full fine-tuning only; with adapters, every targeted module trains.

Saving: ``merged`` writes a plain model with W + ΔW folded in (safetensors + tokenizer), which loads
anywhere; ``adapter`` writes the peft adapter (``adapter_config.json`` + ``adapter_model.safetensors``),
loaded with ``peft.PeftModel.from_pretrained(base, out_dir)`` or with :func:`.bounded_lora.load_adapter`
(which also handles bounded adapters).
"""

from __future__ import annotations

import contextlib
import copy
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from ..errors import UnlearnError
from ..reference import Reference
from .base import PARAMETERIZATIONS, Parameterization
from .mlp_modules import linear_modules, projection_modules, select


@contextlib.contextmanager
def quiet_peft():
    """peft reads transformers' deprecated ``is_gradient_checkpointing`` when it wraps a model; the
    FutureWarning that follows is not the user's concern."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*is_gradient_checkpointing.*", category=FutureWarning)
        yield


class PeftParameterization(Parameterization):
    """What LoRA and bounded LoRA share: peft wrapping, reference, statistics, save and export."""

    r: int
    alpha: float
    dropout: float

    def _check(self) -> None:
        if not isinstance(self.r, int) or isinstance(self.r, bool) or self.r < 1:
            raise ValueError(f"r must be a positive integer, not {self.r!r}")
        if not self.alpha > 0:
            raise ValueError(f"alpha must be positive, not {self.alpha!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), not {self.dropout!r}")

    # -- subclass hooks ---------------------------------------------------------------------------
    def target_modules(self, model) -> list[str] | str:
        raise NotImplementedError

    def lora_config(self, model, targets):
        from peft import LoraConfig

        conv1d = _has_conv1d(model, targets)
        return LoraConfig(r=self.r, lora_alpha=self.alpha, lora_dropout=self.dropout,
                          target_modules=targets, bias="none", task_type="CAUSAL_LM",
                          fan_in_fan_out=conv1d)

    # -- Parameterization -------------------------------------------------------------------------
    def prepare(self, model, objective):
        from peft import PeftModel, get_peft_model

        if isinstance(model, PeftModel):
            raise UnlearnError("the model already carries peft adapters; give a plain model "
                               "(merge the adapters first)")
        targets = self.target_modules(model)
        with quiet_peft():
            model = get_peft_model(model, self.lora_config(model, targets))
        if not any(p.requires_grad for p in model.parameters()):
            raise UnlearnError(f"{self.name}: no adapter parameter was created")
        return model

    def reference(self, model) -> Reference:
        def forward(batch, hidden):
            training = model.training
            model.eval()  # the reference is deterministic, like full's frozen eval-mode copy
            try:
                with model.disable_adapter():
                    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                 output_hidden_states=hidden)
            finally:
                model.train(training)

        return Reference(forward)

    def step_stats(self, model) -> dict[str, float]:
        """``adapter_norm``: L2 norm of all adapter weights; ``delta_w_max``: max |ΔW| over targets."""
        sq, dmax = 0.0, 0.0
        with torch.no_grad():
            for layer in adapter_layers(model):
                for adapter in layer.active_adapters:
                    if adapter not in layer.lora_A:
                        continue
                    sq += float(layer.lora_A[adapter].weight.float().pow(2).sum())
                    sq += float(layer.lora_B[adapter].weight.float().pow(2).sum())
                    dmax = max(dmax, float(layer.get_delta_weight(adapter).abs().max()))
        return {"adapter_norm": sq ** 0.5, "delta_w_max": dmax}

    def export(self, model) -> torch.nn.Module:
        """A plain model with W + ΔW; merged in a copy, so the trained adapter model stays usable."""
        from peft import PeftModel

        if not isinstance(model, PeftModel):
            return model
        merged = copy.deepcopy(model).merge_and_unload(safe_merge=True)
        merged.eval()
        return merged

    def save(self, model, tokenizer, out_dir: Path, merged: bool = True) -> None:
        out_dir = Path(out_dir)
        if merged:
            self.export(model).save_pretrained(out_dir)
        else:
            model.save_pretrained(out_dir)
            self._save_extra(out_dir)
        if tokenizer is not None:
            tokenizer.save_pretrained(out_dir)

    def _save_extra(self, out_dir: Path) -> None:
        pass


def adapter_layers(model) -> list:
    from peft.tuners.lora import LoraLayer

    return [m for m in model.modules() if isinstance(m, LoraLayer)]


def _has_conv1d(model, targets) -> bool:
    from transformers.pytorch_utils import Conv1D

    if isinstance(targets, str):
        return any(isinstance(m, Conv1D) for m in model.modules())
    linear = linear_modules(model)
    return any(isinstance(linear[t], Conv1D) for t in targets if t in linear)


@PARAMETERIZATIONS.register("lora")
@dataclass
class LoRA(PeftParameterization):
    r: int = 8
    alpha: float = 16.0
    dropout: float = 0.0
    modules: list[str] | str | None = None

    def __post_init__(self):
        self._check()
        if isinstance(self.modules, str) and self.modules.lower() != "all-linear":
            raise ValueError(f"modules must be a list of names or 'all-linear', not {self.modules!r}")

    def target_modules(self, model) -> list[str] | str:
        if isinstance(self.modules, str):
            return "all-linear"
        if self.modules is not None:
            return select(model, self.modules)
        return projection_modules(model)
