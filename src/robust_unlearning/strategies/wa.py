"""wa: weight averaging of iterates (Fan et al. 2025, docs/methods.md#wa).

Each step is the plain step (∇ℓ_f + γ∇ℓ_r). After optimizer step t (t = 1 … T), if t ≥ ``start``
and (t − ``start``) is a multiple of ``every``, the iterate θ_t joins the average:

* uniform (default): θ̄ = mean of the collected iterates (running mean, float32 or better);
* EMA (``ema`` = decay d in (0, 1)): θ̄ ← d·θ̄ + (1 − d)·θ_t, starting from the first collected θ_t.

``finalize`` copies θ̄ into the parameters, so the averaged weights are what gets evaluated and
saved. If no iterate was collected (``start`` beyond the last step) the final weights are kept.
The average lives in ``state_dict`` (one extra parameter-sized buffer). Recipe of the paper: from
step 100 every 5 steps, of 125; ``last`` = f in (0, 1] sets ``start`` to the first step of the run's
last fraction f (``preset: paper`` is the last fifth, every step), whatever the run's length.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import torch

from .base import STRATEGIES, StepContext, Strategy, accumulate_forget, accumulate_retain


@STRATEGIES.register("wa")
@dataclass
class WA(Strategy):
    presets: ClassVar[dict] = {"paper": {"last": 0.2, "every": 1}}
    start: int = 1
    every: int = 1
    ema: float | None = None
    last: float | None = None  # average the last fraction of the run (overrides start)

    def __post_init__(self):
        if self.start < 0:
            raise ValueError(f"start must be >= 0, got {self.start}")
        if self.every < 1:
            raise ValueError(f"every must be >= 1, got {self.every}")
        if self.last is not None and not 0.0 < self.last <= 1.0:
            raise ValueError(f"last (a fraction of the run) must lie in (0, 1], got {self.last}")
        if self.ema is not None and not 0.0 < self.ema < 1.0:
            raise ValueError(f"ema (the decay) must lie in (0, 1), got {self.ema}")
        self._avg: list[torch.Tensor] | None = None
        self._count = 0

    def compute(self, ctx: StepContext) -> None:
        ctx.stats["forget_loss"] = accumulate_forget(ctx)
        ctx.stats["retain_loss"] = accumulate_retain(ctx)

    @torch.no_grad()
    def after_step(self, ctx: StepContext) -> None:
        t = ctx.step + 1
        start = self.start
        if self.last is not None:
            if ctx.total_steps is None:
                raise ValueError("wa's 'last' needs the run's length (the loop passes it)")
            start = max(1, ctx.total_steps - round(self.last * ctx.total_steps) + 1)
        if t < start or (t - start) % self.every:
            return
        if self._avg is None:
            self._avg = [p.detach().clone().to(torch.promote_types(p.dtype, torch.float32))
                         for p in ctx.params]
        else:
            weight = (1.0 - self.ema) if self.ema is not None else 1.0 / (self._count + 1)
            for a, p in zip(self._avg, ctx.params, strict=True):
                a.lerp_(p.detach().to(a.dtype), weight)
        self._count += 1
        ctx.stats["averaged"] = self._count

    @torch.no_grad()
    def finalize(self, params) -> None:
        if self._avg is None:
            return
        for p, a in zip(params, self._avg, strict=True):
            p.data.copy_(a.to(p.dtype))

    def state_dict(self) -> dict:
        return {"avg": None if self._avg is None else [a.clone() for a in self._avg], "count": self._count}

    def load_state_dict(self, state: dict) -> None:
        self._avg = None if state.get("avg") is None else [a.clone() for a in state["avg"]]
        self._count = int(state.get("count", 0))
