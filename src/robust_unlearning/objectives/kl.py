"""GA+KL: ℓ_f = −NLL on forget, ℓ_r = KL(p_ref ‖ p_θ) on retain target positions
(docs/methods.md#kl)."""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from ..data.collate import IGNORE
from .base import OBJECTIVES, Objective, forward, mean_nll


@OBJECTIVES.register("kl")
@dataclass
class GAKL(Objective):
    needs_reference = True

    def forget_loss(self, model, batch, reference):
        return -mean_nll(model, batch)

    def retain_loss(self, model, batch, reference):
        logp = F.log_softmax(forward(model, batch).logits[:, :-1].float(), -1)
        logq = F.log_softmax(reference.logits(batch)[:, :-1].float(), -1)
        mask = (batch["labels"][:, 1:] != IGNORE).float()
        kl = (logq.exp() * (logq - logp)).sum(-1)  # KL(p_ref || p_theta) per position
        return (kl * mask).sum() / mask.sum().clamp(min=1)
