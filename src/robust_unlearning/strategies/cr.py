"""cr: curvature regularisation of the forget loss (Fan et al. 2025, docs/methods.md#cr).

    minimise ℓ_f(θ) + λ·‖∇ℓ_f(θ + h·ĝ) − ∇ℓ_f(θ)‖₂ + γ·ℓ_r(θ),   ĝ = g/‖g‖, g = ∇ℓ_f(θ)

The difference d = ∇ℓ_f(θ + hĝ) − ∇ℓ_f(θ) is a finite-difference Hessian-vector product along ĝ.
The penalty carries gradient (double backward); ĝ is treated as a constant direction (stop
gradient, as in the Taylor reading of the paper), so with d̂ = d/‖d‖:

    ∇ penalty = λ·(H(θ + hĝ) − H(θ))·d̂,

each term obtained by back-propagating ⟨∇ℓ_f, d̂⟩ through a ``create_graph`` gradient at its point.
Phases (each over the whole accumulation group, so the update equals the large-batch one):
1. g at θ (plain backward; this is also the ℓ_f term of the update);
2. perturb θ + hĝ (θ saved), g' there → d (one micro-batch: fused with 3);
3. still at θ + hĝ: add λ·H(θ+hĝ)·d̂; restore θ by copy;
4. at θ: add −λ·H(θ)·d̂; then γ∇ℓ_r(θ).
Norms are global (summed over processes). Several processes: g' comes from ``torch.autograd.grad``
(per process), so d is averaged through ``ctx.average_grads``; every contribution to the update
goes through ``ctx.backward``, which DDP averages. A backward through a gradient graph counts two
passes.
"""

from __future__ import annotations

from dataclasses import dataclass

from .base import STRATEGIES, StepContext, Strategy, accumulate_forget, accumulate_retain
from .gp import inner
from .perturb import (
    TINY,
    Snapshot,
    add_,
    forget_grads,
    perturbed_passes,
    put_back,
    require_exact,
    share_of,
    take_grads,
)


@STRATEGIES.register("cr")
@dataclass
class CR(Strategy):
    coef: float = 0.1  # λ
    h: float = 0.01

    def __post_init__(self):
        if not self.coef >= 0:
            raise ValueError(f"coef must be >= 0, got {self.coef}")
        if not self.h > 0:
            raise ValueError(f"h must be > 0, got {self.h}")

    def setup(self, params) -> None:
        require_exact(params, "cr")

    def _hvp(self, ctx: StepContext, forget, dhat, scale: float) -> None:
        """Add scale·mean_i H_i·d̂ to ``.grad``."""
        for _, gs in forget_grads(ctx, forget, create_graph=True):
            ctx.backward(inner(gs, dhat) * (scale / len(forget)))
            ctx.count_passes(1)

    def compute(self, ctx: StepContext) -> None:
        stash = take_grads(ctx.params)
        forget = [m.forget for m in ctx.micro]
        ctx.stats["forget_loss"] = accumulate_forget(ctx, 1.0, forget)
        g = [x.detach().clone() for x in ctx.grads()]
        gnorm = ctx.sq_norm(g) ** 0.5
        # the forward must see θ + hĝ; if the autocast cast loses it, every pass of the step runs in
        # float32 (d compares two gradients: both must come from one precision), phase 1 again
        seen = share_of(ctx, ctx.params, lambda: iter(g), self.h / (gnorm + TINY))
        with perturbed_passes(ctx, seen, "h", lambda: (x / (gnorm + TINY) for x in g), self.h) as exact:
            if exact:
                take_grads(ctx.params)
                ctx.stats["forget_loss"] = accumulate_forget(ctx, 1.0, forget)
                g = [x.detach().clone() for x in ctx.grads()]
                gnorm = ctx.sq_norm(g) ** 0.5
            dnorm = self._phases(ctx, forget, g, gnorm)
        ctx.stats["curvature_penalty"] = dnorm
        ctx.stats["retain_loss"] = accumulate_retain(ctx)
        put_back(ctx.params, stash)

    def _phases(self, ctx: StepContext, forget, g, gnorm: float) -> float:
        """Phases 2-4 (see the module doc); returns ‖d‖."""
        n = len(forget)
        snap = Snapshot(ctx.params)
        try:
            add_(ctx.params, g, self.h / (gnorm + TINY))
            if n == 1:  # fused phases 2 and 3
                (_, gs), = forget_grads(ctx, forget, create_graph=True)
                # g' from autograd.grad is per process: average it (g is global already)
                d = [x - y for x, y in zip(ctx.average_grads([x.detach() for x in gs]), g, strict=True)]
                dnorm = ctx.sq_norm(d) ** 0.5
                dhat = [x / (dnorm + TINY) for x in d]
                ctx.backward(inner(gs, dhat) * self.coef)
                ctx.count_passes(1)
            else:
                d = [-x for x in g]
                for _, gs in forget_grads(ctx, forget, scale=1.0 / n):
                    for acc, x in zip(d, gs, strict=True):
                        acc.add_(x)
                d = ctx.average_grads(d)  # −g is the same everywhere: the mean averages g' only
                dnorm = ctx.sq_norm(d) ** 0.5
                dhat = [x / (dnorm + TINY) for x in d]
                self._hvp(ctx, forget, dhat, self.coef)
        finally:
            snap.restore()
        del g, d
        self._hvp(ctx, forget, dhat, -self.coef)
        return dnorm
