"""PDU, primal-dual unlearning (Entesari et al. 2025, "Constrained Entropic Unlearning: A Primal-Dual
Framework for Large Language Models", arXiv:2506.05314; open-unlearning's ``PDU`` trainer).

Unlearning as a constrained problem: flatten the forget-set output distribution subject to the retain
loss staying below a tolerance ε,

    min_θ ℓ_f(θ)   s.t.   ℓ_r(θ) ≤ ε,

    ℓ_f = mean_x mean_t ( max_v z_t,v − mean_v z_t,v )²     (logit-margin flattening: 0 iff the
                                                              logits at t are all equal, i.e. uniform)
    ℓ_r = NLL on retain,

solved by a primal step on ℓ_f + λ·ℓ_r and, after each optimizer step, the dual ascent step

    λ ← max(0, λ + η · (ℓ_r − ε)),

where ℓ_r is the step's retain loss (its mean over micro-batches and processes, as logged). λ starts
at ``train.gamma`` (the strategy's retain weight; open-unlearning's ``alpha``) and replaces it from
then on: the constraint, not a fixed weight, decides how much utility is protected. The paper's TOFU
setting is γ = 100, ε = 0.3, η = 5 after 5 warm-up epochs (here ``warmup_steps``: the dual is frozen
for that many optimizer steps). Choose ε a little above the retain loss of the model before unlearning.

Departures from open-unlearning's code: the margin is averaged over the answer (target) tokens of each
sequence, then over sequences (objectives/tokens.py), where open-unlearning averages over every
position, prompt and padding included; only the per-step dual update is built (open-unlearning also
offers one per epoch over the whole retain set). With ``primal_dual: false`` λ stays at γ (plain
linear scalarisation, open-unlearning's default when the flag is off).
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import OBJECTIVES, Objective, forward, mean_nll
from .tokens import per_sequence_mean, shifted


@OBJECTIVES.register("pdu")
@dataclass
class PDU(Objective):
    eps: float = 0.3  # the retain-loss tolerance ε
    dual_step: float = 5.0  # η
    warmup_steps: int = 0  # optimizer steps before the dual variable moves
    primal_dual: bool = True

    def __post_init__(self):
        if self.dual_step < 0 or self.warmup_steps < 0:
            raise ValueError("pdu: dual_step and warmup_steps must be >= 0")
        self.dual: float | None = None  # λ; None until the first step sets it to train.gamma
        self._steps = 0

    def forget_loss(self, model, batch, reference):
        logits, _, mask = shifted(forward(model, batch).logits, batch["labels"])
        margin = logits.max(-1).values - logits.mean(-1)
        return per_sequence_mean(margin.pow(2), mask)

    def retain_loss(self, model, batch, reference):
        return mean_nll(model, batch)

    # -- the dual variable -------------------------------------------------------------------------
    def retain_weight(self, gamma: float) -> float:
        if self.dual is None:
            self.dual = float(gamma)
        return self.dual

    def after_step(self, stats: dict) -> dict:
        self._steps += 1
        retain = stats.get("retain_loss")
        if self.primal_dual and retain is not None and self._steps > self.warmup_steps:
            self.dual = max(0.0, self.dual + self.dual_step * (float(retain) - self.eps))
        return {"retain_weight": self.dual}

    def state_dict(self) -> dict:
        return {"dual": self.dual, "steps": self._steps}

    def load_state_dict(self, state: dict) -> None:
        self.dual, self._steps = state["dual"], state["steps"]
