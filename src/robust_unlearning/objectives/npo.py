"""NPO (Zhang et al. 2024), on per-sequence likelihoods (docs/methods.md#npo):

    ℓ_f = −(2/β) · mean_x log σ(β · (S_θ(x) − S_ref(x))),   S = summed answer-token NLL,
    ℓ_r = NLL on retain.

Some public code feeds raw logits into the sigmoid; this uses sequence log-likelihoods, as defined.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import OBJECTIVES, Objective, mean_nll, sequence_nll, token_nll


@OBJECTIVES.register("npo")
@dataclass
class NPO(Objective):
    beta: float = 0.1
    needs_reference = True

    def forget_loss(self, model, batch, reference):
        s_theta, _ = sequence_nll(model, batch)
        s_ref, _ = token_nll(reference.logits(batch), batch["labels"])
        return -(2.0 / self.beta) * F.logsigmoid(self.beta * (s_theta - s_ref)).mean()

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)
