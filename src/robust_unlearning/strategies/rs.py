"""rs: randomized smoothing of the forget loss (Fan et al. 2025, docs/methods.md#rs).

    update = (1/m)·Σ_{i=1..m} ∇ℓ_f(θ + δ_i) + γ·∇ℓ_r(θ),   δ_i ~ N(0, σ²I)

A Monte-Carlo estimate of ∇ E_δ ℓ_f(θ + δ) with ``samples`` = m draws (absolute std ``sigma``).
Each draw is applied once to the whole accumulation group (so the accumulated update equals the
large-batch one) and θ is restored by copy after every draw (each draw starts from the saved θ,
so the saved copy serves as θ when the realised share of the noise is measured). The noise comes
from a generator seeded by (``seed``, step, draw), so runs reproduce and every process draws the
same δ. The strategy never calls the optimizer: the loop clips and steps once. Passes per
micro-batch: m + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import STRATEGIES, StepContext, Strategy, accumulate_forget, accumulate_retain
from .perturb import (
    Snapshot,
    gaussian_,
    noise_draw,
    perturbed_passes,
    put_back,
    require_exact,
    take_grads,
)


@STRATEGIES.register("rs")
@dataclass
class RS(Strategy):
    sigma: float = 1e-4
    samples: int = 3
    seed: int = 0

    def __post_init__(self):
        if not self.sigma >= 0:
            raise ValueError(f"sigma must be >= 0, got {self.sigma}")
        if self.samples < 1:
            raise ValueError(f"samples must be >= 1, got {self.samples}")

    def setup(self, params) -> None:
        require_exact(params, "rs")

    def compute(self, ctx: StepContext) -> None:
        stash = take_grads(ctx.params)
        forget = [m.forget for m in ctx.micro]
        snap = Snapshot(ctx.params)
        total = 0.0
        try:
            for i in range(self.samples):
                seed = (self.seed * 1_000_003 + ctx.step) * 101 + i
                got = gaussian_(ctx, ctx.params, self.sigma, seed, base=snap.saved)
                unit = lambda s=seed: noise_draw(ctx.params, 1.0, s)  # noqa: E731 (the draw at σ = 1)
                with perturbed_passes(ctx, got, "sigma", unit, self.sigma):
                    total += accumulate_forget(ctx, 1.0 / self.samples, forget)
                snap.restore()
        finally:
            snap.restore()
        ctx.stats["forget_loss"] = total / self.samples
        ctx.stats["retain_loss"] = accumulate_retain(ctx)
        put_back(ctx.params, stash)
