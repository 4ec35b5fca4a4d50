"""Training towards "I don't know" (Maini et al. 2024, TOFU; Zhang et al. 2024, NPO §5; Rafailov et
al. 2023, DPO). Each forget question is paired with a refusal from the project's own set
(data/idk.py); ℓ_r = NLL on retain for both.

``idkdpo``: DPO preferring the refusal y_w over the original answer y_l,

    ℓ_f = −(2/β) · mean_x log σ(β · [(S_ref(y_w) − S_θ(y_w)) − (S_ref(y_l) − S_θ(y_l))]),

S the summed answer-token NLL (so S_ref − S_θ = log π_θ/π_ref). The 2/β scale is NPO's and
open-unlearning's (plain DPO uses 1); it only rescales the step. β = 0.1 as open-unlearning's DPO.

``idknll``: ℓ_f = NLL(y_w), plain fine-tuning on the refusals.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .base import OBJECTIVES, Objective, mean_nll, sequence_nll, token_nll
from .tokens import answer_batch


def dpo_loss(model, reference, win: dict, lose: dict, beta: float) -> torch.Tensor:
    s_win, _ = sequence_nll(model, win)
    s_lose, _ = sequence_nll(model, lose)
    r_win, _ = token_nll(reference.logits(win), win["labels"])
    r_lose, _ = token_nll(reference.logits(lose), lose["labels"])
    margin = (r_win - s_win) - (r_lose - s_lose)
    return -(2.0 / beta) * F.logsigmoid(beta * margin).mean()


@OBJECTIVES.register("idkdpo")
@dataclass
class IdkDPO(Objective):
    beta: float = 0.1
    needs_reference = True
    uses_alternates = True

    def forget_loss(self, model, batch, reference):
        return dpo_loss(model, reference, answer_batch(batch, "idk", self.name), batch, self.beta)

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)


@OBJECTIVES.register("idknll")
@dataclass
class IdkNLL(Objective):
    uses_alternates = True

    def forget_loss(self, model, batch, reference):
        return mean_nll(model, answer_batch(batch, "idk", self.name))

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)
