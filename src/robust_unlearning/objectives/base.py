"""Objectives: *what* to minimise.

An objective turns a forget batch into the forget loss ℓ_f (minimised: it removes knowledge) and a
retain batch into the retain loss ℓ_r (minimised: it keeps utility), separately. The strategy
decides how to combine them (ℓ_f + γ·ℓ_r at the plain point, smoothed ℓ_f, ...).

Definitions follow docs/methods.md#objectives NLL(x) is the per-token mean negative log-likelihood of the
target tokens of x (answer tokens for QA records, all tokens for text records).
"""

from __future__ import annotations

from typing import ClassVar

import torch

from ..metrics.scoring import token_logprobs
from ..registry import Registry

OBJECTIVES: Registry[Objective] = Registry("objective", package="robust_unlearning.objectives")


class Objective:
    """Base class. Subclasses are dataclasses whose fields are their options."""

    name: ClassVar[str]
    needs_reference: ClassVar[bool] = False
    has_retain_loss: ClassVar[bool] = True
    uses_alternates: ClassVar[bool] = False  # forget batches carry idk_* / alt_* answers (data/collate.py)

    def setup(self, model) -> None:
        """Called once with the (unwrapped) model before training."""

    def forget_loss(self, model, batch: dict, reference) -> torch.Tensor:
        raise NotImplementedError

    def retain_loss(self, model, batch: dict, reference) -> torch.Tensor | None:
        return None

    def retain_weight(self, gamma: float) -> float:
        """The retain loss's weight for the next step, given ``train.gamma`` (γ). A constant γ except
        for objectives that adapt it (PDU's dual variable)."""
        return gamma

    def after_step(self, stats: dict) -> dict:
        """Called once after each optimizer step with the step's logged statistics (means over
        micro-batches and processes, so every process sees the same); returns statistics to log."""
        return {}

    def state_dict(self) -> dict:
        """State carried from step to step, for checkpoints (JSON scalars)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def trainable_patterns(self, model) -> list[str] | None:
        """Regexes of parameter names this objective trains by default under full fine-tuning
        (``None``: all parameters)."""
        return None


# -- shared pieces ---------------------------------------------------------------------------------

def forward(model, batch: dict, **kw):
    return model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"], **kw)


def token_nll(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence summed NLL of target tokens and the number of target tokens (at least 1): the
    negated log-probs of :func:`~..metrics.scoring.token_logprobs`."""
    logp, mask = token_logprobs(logits, labels)
    return -logp.sum(1), mask.sum(1).clamp(min=1)


def sequence_nll(model, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
    return token_nll(forward(model, batch).logits, batch["labels"])


def mean_nll(model, batch: dict) -> torch.Tensor:
    """Mean over sequences of the per-token mean NLL: the NLL of docs/methods.md#notation."""
    s, n = sequence_nll(model, batch)
    return (s / n).mean()
