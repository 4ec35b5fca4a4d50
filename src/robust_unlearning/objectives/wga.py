"""WGA, weighted gradient ascent (Wang et al. 2025, "Rethinking LLM Unlearning Objectives: A Gradient
Perspective and Go Beyond", ICLR 2025): gradient ascent whose per-token weight is the token's own
probability to the power β, held constant (no gradient through the weight):

    ℓ_f = −mean_x mean_t [ p_θ(y_t)^β ]_sg · (−log p_θ(y_t)),      ℓ_r = NLL on retain.

Tokens already unlikely stop being pushed (their weight → 0), which keeps GA from diverging.
β = 1 as open-unlearning. Token means per sequence, then over sequences (objectives/tokens.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import OBJECTIVES, Objective, forward, mean_nll
from .tokens import per_sequence_mean, token_ce


@OBJECTIVES.register("wga")
@dataclass
class WGA(Objective):
    beta: float = 1.0

    def forget_loss(self, model, batch, reference):
        ce, mask = token_ce(forward(model, batch).logits, batch["labels"])
        weight = (-ce.detach()).exp() ** self.beta
        return -per_sequence_mean(weight * ce, mask)

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)
