"""Parameterizations: *what* is trained.

A parameterization prepares the model (freezes, wraps with adapters), says which parameters are
trainable, supplies the reference forward pass for objectives that need one, reports per-step
statistics of what it trains, and saves the result.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import torch

from ..reference import Reference
from ..registry import Registry

PARAMETERIZATIONS: Registry[Parameterization] = Registry(
    "parameterization", package="robust_unlearning.parameterizations")


class Parameterization:
    """Base class. Subclasses are dataclasses whose fields are their options."""

    name: ClassVar[str]

    def prepare(self, model, objective) -> torch.nn.Module:
        """Return the model to train (possibly wrapped), with ``requires_grad`` set."""
        raise NotImplementedError

    def reference(self, model) -> Reference:
        """The reference forward pass p_ref; only called when the objective needs one."""
        raise NotImplementedError

    def step_stats(self, model) -> dict[str, float]:
        """Cheap per-step statistics of the trained weights (logged to metrics.jsonl)."""
        return {}

    def save(self, model, tokenizer, out_dir: Path, merged: bool = True) -> None:
        """Write a Hugging Face directory (safetensors) into ``out_dir``."""
        raise NotImplementedError

    def export(self, model) -> torch.nn.Module:
        """A plain ``PreTrainedModel`` with the training folded in (for evaluation/attacks)."""
        return model

