"""sam: sharpness-aware smoothing of the forget loss (Fan et al. 2025, docs/methods.md#sam).

    g = ∇ℓ_f(θ);  ε = ρ·g/‖g‖₂;  update = ∇ℓ_f(θ + ε) + γ·∇ℓ_r(θ)

Smoothing applies to ℓ_f only; ℓ_r is evaluated at the unperturbed θ. ‖g‖₂ is one global L2 norm
over all trainable parameters (summed over processes). Over an accumulation group both phases run
over every micro-batch (gradient, then perturb once, then gradient again), so the update equals the
large-batch one. θ is saved before the perturbation and copied back afterwards (bitwise exact);
the saved copy is the only extra parameter-sized buffer: the phase-1 gradient is held in ``.grad``
and released once ε has been applied. Passes per micro-batch: 2 (forget) + 1 (retain).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from .base import STRATEGIES, StepContext, Strategy, accumulate_forget, accumulate_retain, dense
from .perturb import TINY, Snapshot, perturb_, perturbed_passes, put_back, require_exact, take_grads


@STRATEGIES.register("sam")
@dataclass
class SAM(Strategy):
    # ``strategy: {preset: paper}``: ρ 0.01, the smoothing paper's WMDP and MUSE recipes
    presets: ClassVar[dict] = {"paper": {"rho": 0.01}}
    supports_fsdp: ClassVar[bool] = True
    rho: float = 0.01

    def __post_init__(self):
        if not self.rho >= 0:
            raise ValueError(f"rho must be >= 0, got {self.rho}")

    def setup(self, params) -> None:
        require_exact(params, "sam")

    def compute(self, ctx: StepContext) -> None:
        stash = take_grads(ctx.params)
        forget = [m.forget for m in ctx.micro]
        ctx.stats["forget_loss"] = accumulate_forget(ctx, 1.0, forget)
        g = [p.grad for p in ctx.params]
        norm = ctx.sq_norm([x for x in g if x is not None]) ** 0.5
        ctx.stats["forget_grad_norm"] = norm
        snap = Snapshot(ctx.params)
        try:
            direction = dense(g, ctx.params)
            got = perturb_(ctx, ctx.params, direction, self.rho / (norm + TINY), base=snap.saved)
            held = [direction]  # for the error message only: released before the next pass
            with perturbed_passes(ctx, got, "rho", lambda: (x / (norm + TINY) for x in held[0]), self.rho):
                held.clear()
                del direction
                del g
                take_grads(ctx.params)  # drop the phase-1 gradient: ∇ℓ_f(θ+ε) replaces it
                loss_eps = accumulate_forget(ctx, 1.0, forget)
            ctx.stats["forget_loss_perturbed"] = loss_eps
            if norm > 0 and not ctx.stats.get("perturb_fp32_passes"):
                # the loss change the forward saw against the first-order prediction ρ‖g‖ (both
                # losses from the same batches in the same precision)
                ctx.stats["perturb_loss_ratio"] = (loss_eps - ctx.stats["forget_loss"]) / (self.rho * norm)
        finally:
            snap.restore()
        ctx.stats["retain_loss"] = accumulate_retain(ctx)
        put_back(ctx.params, stash)
