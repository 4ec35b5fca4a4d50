"""gp: gradient-penalty smoothing of the forget loss (Fan et al. 2025, docs/methods.md#gp).

    minimise ℓ_f(θ) + c·‖∇ℓ_f(θ)‖₂ + γ·ℓ_r(θ)      (first-order Taylor form of SAM)

The penalty carries gradient (double backward): ∇‖g‖ = H·g/‖g‖, obtained by back-propagating
⟨g, ĝ⟩ through the graph of g = ∇ℓ_f built with ``create_graph=True`` (ĝ = g/‖g‖ held constant,
which gives exactly H·ĝ). Public code accumulated the penalty through ``.item()`` so it trained
exactly like the base objective; a test here compares the update with finite differences.

With one micro-batch the step is one forward, one ``create_graph`` backward and one backward of
ℓ_f + c⟨g, ĝ⟩ through both graphs. With several, the penalty is of the *group* gradient
g = mean_i g_i: phase 1 computes g (plain backward), phase 2 adds (c/n)·H_i·ĝ per micro-batch, so
the update equals the large-batch one. A backward through a gradient graph is counted as two
passes. Several processes: ĝ is the direction of the *global* gradient (with one micro-batch the
``torch.autograd.grad`` result, per process, is averaged through ``ctx.average_grads``; with
several, phase 1 runs through ``ctx.backward``, which DDP averages), and every contribution to the
update goes through ``ctx.backward``, so DDP averages H_i·ĝ like any gradient.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import STRATEGIES, StepContext, Strategy, accumulate_forget, accumulate_retain, dense
from .perturb import TINY, double_backward_ready, forget_grads, put_back, take_grads


def inner(a, b) -> torch.Tensor:
    return sum((x * y).sum() for x, y in zip(a, b, strict=True))


@STRATEGIES.register("gp")
@dataclass
class GP(Strategy):
    coef: float = 0.1  # c

    def __post_init__(self):
        if not self.coef >= 0:
            raise ValueError(f"coef must be >= 0, got {self.coef}")

    def compute(self, ctx: StepContext) -> None:
        stash = take_grads(ctx.params)
        forget = [m.forget for m in ctx.micro]
        if len(forget) == 1:
            with double_backward_ready():
                loss = ctx.forget_loss(forget[0])
            ctx.check_finite(loss)
            gs = torch.autograd.grad(loss, ctx.params, create_graph=True, allow_unused=True)
            gs = dense(gs, ctx.params)
            ctx.count_passes(1)
            # the direction ĝ is the global gradient's (autograd.grad is per process); the backward
            # of ⟨g_local, ĝ⟩ below is then averaged by DDP into H·ĝ of the global batch
            g = ctx.average_grads([x.detach() for x in gs])
            norm = ctx.sq_norm(g) ** 0.5
            ghat = [x / (norm + TINY) for x in g]
            del g
            ctx.backward(loss + self.coef * inner(gs, ghat))
            ctx.count_passes(1)  # the backward ran through the gradient graph too
            ctx.stats["forget_loss"] = loss.item()
        else:
            ctx.stats["forget_loss"] = accumulate_forget(ctx, 1.0, forget)
            norm = ctx.sq_norm([p.grad for p in ctx.params if p.grad is not None]) ** 0.5
            ghat = [x.detach() / (norm + TINY) for x in ctx.grads()]
            for _, gs in forget_grads(ctx, forget, create_graph=True):
                ctx.backward(inner(gs, ghat) * (self.coef / len(forget)))
                ctx.count_passes(1)
        ctx.stats["grad_penalty"] = norm
        ctx.stats["retain_loss"] = accumulate_retain(ctx)
        put_back(ctx.params, stash)
