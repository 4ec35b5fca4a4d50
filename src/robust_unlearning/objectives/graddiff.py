"""GradDiff: ℓ_f = −NLL on forget, ℓ_r = NLL on retain (docs/methods.md#graddiff)."""

from __future__ import annotations

from dataclasses import dataclass

from .base import OBJECTIVES, Objective, mean_nll


@OBJECTIVES.register("graddiff")
@dataclass
class GradDiff(Objective):
    def forget_loss(self, model, batch, reference):
        return -mean_nll(model, batch)

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)
