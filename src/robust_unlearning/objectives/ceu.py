"""CE-U, cross-entropy unlearning (Yang et al. 2025, "CE-U: Cross Entropy Unlearning",
arXiv:2503.01224): at each answer position the target distribution is the model's own (detached)
prediction with the true token removed, q = softmax(z_sg with z_y = −∞), and

    ℓ_f = mean_x mean_t CE(q, p_θ) = −mean_x mean_t Σ_v q_v log p_θ(v).

A bounded loss: it pushes probability off the true token onto the model's other guesses instead of
ascending without limit. The first ``ignore_first`` answer tokens are left out (the paper's footnote;
1 as open-unlearning). CE-U has no retain term in the paper (``has_retain_loss`` False, like GA).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import OBJECTIVES, Objective, forward
from .tokens import per_sequence_mean, shifted


@OBJECTIVES.register("ceu")
@dataclass
class CEU(Objective):
    ignore_first: int = 1
    has_retain_loss = False

    def __post_init__(self):
        if self.ignore_first < 0:
            raise ValueError(f"ignore_first must be >= 0, got {self.ignore_first}")

    def forget_loss(self, model, batch, reference):
        logits, target, mask = shifted(forward(model, batch).logits, batch["labels"])
        mask = mask & (mask.cumsum(1) > self.ignore_first)
        removed = logits.detach().scatter(-1, target.unsqueeze(-1), float("-inf"))
        q = F.softmax(removed, -1)
        logp = F.log_softmax(logits, -1)
        ce = -(q * torch.where(q > 0, logp, torch.zeros_like(logp))).sum(-1)
        return per_sequence_mean(ce, mask)
