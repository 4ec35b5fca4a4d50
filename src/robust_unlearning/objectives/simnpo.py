"""SimNPO (Fan et al. 2024), reference-free (docs/methods.md#simnpo):

    ℓ_f = −(2/β) · mean_x log σ(β · NLL_θ(x) − δ),   NLL length-normalised,
    ℓ_r = NLL on retain.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import OBJECTIVES, Objective, mean_nll, sequence_nll


@OBJECTIVES.register("simnpo")
@dataclass
class SimNPO(Objective):
    beta: float = 3.0
    delta: float = 0.0

    def forget_loss(self, model, batch, reference):
        s, n = sequence_nll(model, batch)
        return -(2.0 / self.beta) * F.logsigmoid(self.beta * (s / n) - self.delta).mean()

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)
