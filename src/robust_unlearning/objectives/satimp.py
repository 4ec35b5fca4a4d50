"""SatImp (Yang et al. 2025, "Exploring Criteria of Loss Reweighting to Enhance LLM Unlearning",
ICML 2025): gradient ascent with per-token weights that combine *saturation* (p^β₁, down-weights
tokens already forgotten) and *importance* ((1 − p)^β₂), both held constant:

    ℓ_f = −mean_x mean_t [ p^β₁ (1 − p)^β₂ ]_sg · (−log p),   p = p_θ(y_t),     ℓ_r = NLL on retain.

β₁ = 5, β₂ = 1 as open-unlearning (which also scales ℓ_f by 0.1 against the retain loss; here the
strategy's γ weighs ℓ_r). Token means per sequence, then over sequences (objectives/tokens.py).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import OBJECTIVES, Objective, forward, mean_nll
from .tokens import per_sequence_mean, token_ce


@OBJECTIVES.register("satimp")
@dataclass
class SatImp(Objective):
    beta1: float = 5.0
    beta2: float = 1.0

    def forget_loss(self, model, batch, reference):
        ce, mask = token_ce(forward(model, batch).logits, batch["labels"])
        p = (-ce.detach()).exp()
        weight = p ** self.beta1 * (1 - p) ** self.beta2
        return -per_sequence_mean(weight * ce, mask)

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)
