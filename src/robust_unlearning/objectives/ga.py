"""GA: gradient ascent on the forget set, ℓ_f = −NLL (docs/methods.md#ga)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import OBJECTIVES, Objective, mean_nll


@OBJECTIVES.register("ga")
@dataclass
class GA(Objective):
    has_retain_loss = False

    def forget_loss(self, model, batch, reference):
        return -mean_nll(model, batch)
