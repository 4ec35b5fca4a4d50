"""UNDIAL (Dong et al. 2025, "UNDIAL: Self-Distillation with Adjusted Logits for Robust Unlearning in
Large Language Models", NAACL 2025): self-distillation towards the reference model's logits with the
true token's logit lowered by β:

    ℓ_f = mean_x mean_t CE(softmax(z_ref − β·e_{y_t}), p_θ),       ℓ_r = NLL on retain.

The target is fixed (the reference is frozen), so the loss is bounded and stops once the true token
is suppressed by β. β = 10 as open-unlearning. Only answer (target) positions enter the mean;
open-unlearning averages over every position of the sequence, prompt and padding included.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch.nn.functional as F

from .base import OBJECTIVES, Objective, forward, mean_nll
from .tokens import per_sequence_mean, shifted


@OBJECTIVES.register("undial")
@dataclass
class UNDIAL(Objective):
    beta: float = 10.0
    needs_reference = True

    def forget_loss(self, model, batch, reference):
        logits, target, mask = shifted(forward(model, batch).logits, batch["labels"])
        ref = reference.logits(batch)[:, :-1].float()
        adjusted = ref - self.beta * F.one_hot(target, ref.shape[-1]).to(ref.dtype)
        q = F.softmax(adjusted, -1)
        ce = -(q * F.log_softmax(logits, -1)).sum(-1)
        return per_sequence_mean(ce, mask)

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)
