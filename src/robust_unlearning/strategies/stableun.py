"""stableun: feedback-guided multi-point optimisation (seed 000, arXiv 2509.20230; docs/methods.md#stableun).

A wrapper around any objective. With L_u(θ) the objective's plain loss (see choice 1), per step:

1. inner step: θτ = θ − α·∇ℓ_f(θ), α = the current outer learning rate;
2. forgetting feedback: T rules drawn from ``rules`` ⊆ {sap, gpn, gap, hws}, each applied to θτ
   and scored on a fresh forget batch: L_fb = mean_i ℓ_f(θτ'_i);
       sap  θτ + ρ·∇ℓ_f(θτ)/‖∇ℓ_f(θτ)‖      gpn  θτ + N(0, ρ²I)
       gap  θτ + μ·∇ℓ_f(θτ)                   hws  mean of θτ and the last w − 1 outer iterates
3. remembering feedback: L_fb2 = mean over M fresh retain batches of ℓ_r(θτ);
4. g_f = ½∇L_u(θ) + λ_f·∇L_fb,   g_r = ½∇L_u(θ) + λ_r·∇L_fb2;
5. one-sided projection: if g_f·g_r < 0, g_f ← g_f − (g_f·g_r / ‖g_r‖²)·g_r (‖g_r‖² guarded);
   the update left in ``.grad`` is g_r + g_f (the loop then clips and steps).

Choices the paper leaves open, made here (all but 2 and 4 are options):

1. ``base_retain`` (default True): the base loss is the objective's own plain loss
   L_u = ℓ_f + γ·ℓ_r on the step's batches (for GA, which has no ℓ_r, just ℓ_f), so ``x+stableun``
   is ``x`` plus feedback. False uses L_u = ℓ_f (retain data then enters only through step 3).
   The inner step of 1 always uses ∇ℓ_f alone, as written in the paper.
2. First-order only: every feedback gradient is taken at its perturbed point and used as a gradient
   at θ (dθτ'/dθ = I); the rule directions (sap/gap gradients, gpn noise, the hws history) are
   constants. A second-order variant (through the inner step's Hessian) is not implemented.
3. ``replace`` (default False): the T rules are drawn *without* replacement from the pool (so T ≤
   pool size), uniformly, from a generator seeded by (``seed``, step), so runs reproduce.
4. sap/gap use ∇ℓ_f(θτ) on the *same* fresh batch the rule is then scored on (the adversary
   targets the batch it is judged on, as SAM does); that costs one extra pass per sap/gap rule.
5. hws: the w − 1 most recent *outer* iterates θ_t, θ_{t−1}, … (θ_0 included at the start) are
   kept as strategy state, and the hws point is their mean with θτ (w points in all; fewer during
   the first steps). The history is kept only if hws is in the pool.
6. ``gpn`` uses ρ as the noise standard deviation (the paper's "N(0, ρ²I)").
7. Every feedback "batch" is as large as the step's accumulation group (one fresh micro-batch per
   accumulation slot, averaged), so gradient accumulation gives the large-batch update.
8. ``M`` = 0 turns remembering feedback off. Left unset, M is 5 for objectives with a retain loss
   and 0 for those without (GA), so every ``objective+stableun`` runs with its defaults; an explicit
   M > 0 with no retain loss stops the run with an error rather than silently dropping it.

Perturbations are exact and restorable (see :mod:`.perturb`): θ is saved once per step, restored
by copy, and θτ is rebuilt from the saved θ by the same operation for every rule. Dot products and
norms are global: every gradient goes through ``ctx.backward`` (under DDP: averaged over
processes, so identical everywhere), and sums over parameters go through ``ctx.all_reduce_sum``.
Passes per micro-batch: 1 (ℓ_f at θ) + 1 if base_retain + Σ_rules (2 for sap/gap, 1 for gpn/hws) + M.
"""

from __future__ import annotations

import random
from collections import deque
from dataclasses import dataclass, field
from typing import ClassVar

import torch

from ..errors import UnlearnError
from .base import STRATEGIES, StepContext, Strategy, accumulate_forget, accumulate_retain, dense
from .perturb import (
    TINY,
    Snapshot,
    add_to_grads,
    gaussian_,
    mean_with_,
    noise_draw,
    perturb_,
    perturbed_passes,
    put_back,
    require_exact,
    take_grads,
)

RULES = ("sap", "gpn", "gap", "hws")
DEFAULT_M = 5


@STRATEGIES.register("stableun")
@dataclass
class StableUN(Strategy):
    supports_fsdp: ClassVar[bool] = True
    # ``strategy: {preset: paper}``: the paper's settings (T 2, M 5, ρ = μ = 1e-7, w 5, λ 0.5)
    presets: ClassVar[dict] = {"paper": {"rules": list(RULES), "T": 2, "M": 5, "rho": 1e-7, "mu": 1e-7,
                                         "w": 5, "lambda_f": 0.5, "lambda_r": 0.5}}
    rules: list[str] = field(default_factory=lambda: list(RULES))
    T: int = 2
    M: int | None = None  # None: DEFAULT_M with a retain loss, 0 without (choice 8)
    rho: float = 1e-7
    mu: float = 1e-7
    w: int = 5
    lambda_f: float = 0.5
    lambda_r: float = 0.5
    replace: bool = False
    base_retain: bool = True
    seed: int = 0

    def __post_init__(self):
        self.rules = [str(r).lower() for r in self.rules]
        bad = [r for r in self.rules if r not in RULES]
        if bad:
            raise ValueError(f"unknown rule(s) {', '.join(bad)}; known: {', '.join(RULES)}")
        if self.T < 0 or (self.M is not None and self.M < 0):
            raise ValueError(f"T and M must be >= 0, got T={self.T}, M={self.M}")
        if self.T > 0 and not self.rules:
            raise ValueError("T > 0 needs a non-empty rule pool")
        if not self.replace and self.T > len(set(self.rules)):
            raise ValueError(f"T={self.T} rules cannot be drawn without replacement from a pool of "
                             f"{len(set(self.rules))}; set replace: true or lower T")
        if self.rho < 0 or self.mu < 0 or self.w < 1:
            raise ValueError(f"need rho >= 0, mu >= 0, w >= 1 (got {self.rho}, {self.mu}, {self.w})")
        self._history: deque = deque(maxlen=max(self.w - 1, 0))

    @property
    def _keeps_history(self) -> bool:
        return "hws" in self.rules and self.T > 0 and self.w > 1

    def setup(self, params) -> None:
        require_exact(params, "stableun")
        self._history.clear()
        if self._keeps_history:
            self._history.append([p.detach().clone() for p in params])

    def after_step(self, ctx: StepContext) -> None:
        if self._keeps_history:
            h = self._history
            if len(h) == h.maxlen:  # the oldest iterate leaves: its buffers take the newest
                old = h.popleft()
                with torch.no_grad():
                    for o, p in zip(old, ctx.params, strict=True):
                        o.copy_(p.detach())
                h.append(old)
            else:
                h.append([p.detach().clone() for p in ctx.params])

    def state_dict(self) -> dict:
        return {"history": [[t.clone() for t in h] for h in self._history]}

    def load_state_dict(self, state: dict) -> None:
        self._history.clear()
        for h in state.get("history", []):
            self._history.append([t.clone() for t in h])

    def draw(self, step: int) -> list[str]:
        rng = random.Random(self.seed * 1_000_003 + step)
        pool = list(dict.fromkeys(self.rules)) if not self.replace else list(self.rules)
        return [rng.choice(pool) for _ in range(self.T)] if self.replace else rng.sample(pool, self.T)

    # -- one step --------------------------------------------------------------------------------
    def compute(self, ctx: StepContext) -> None:
        params, n = ctx.params, len(ctx.micro)
        stash = take_grads(params)
        forget = [m.forget for m in ctx.micro]

        # base gradient ∇L_u(θ) and the inner-step direction ∇ℓ_f(θ)
        ctx.stats["retain_loss"] = accumulate_retain(ctx) if self.base_retain else None
        base_r = take_grads(params)
        ctx.stats["forget_loss"] = accumulate_forget(ctx, 1.0, forget)
        g0 = dense(take_grads(params), params)

        snap = Snapshot(params)
        lr = ctx.lr

        def goto_tau():
            """θ → θτ; the share of the inner step the weights (and the forward) kept."""
            snap.restore()
            return perturb_(ctx, params, g0, -lr, base=snap.saved)

        rules = self.draw(ctx.step)
        ctx.stats["rules"] = ",".join(rules)
        try:
            # 2. forgetting feedback, accumulated in .grad (scaled 1/T)
            fb_losses = []
            for i, rule in enumerate(rules):
                tau = goto_tau()
                batches = [ctx.next_forget() for _ in range(n)]
                with self._apply(ctx, rule, batches, i, tau):
                    fb_losses.append(accumulate_forget(ctx, 1.0 / len(rules), batches))
            g_fb = dense(take_grads(params), params)
            ctx.stats["feedback_forget"] = sum(fb_losses) / len(fb_losses) if fb_losses else None

            # 3. remembering feedback at θτ
            fb2 = []
            m = self.M if self.M is not None else (DEFAULT_M if ctx.has_retain else 0)
            if m:
                tau = goto_tau()
                with perturbed_passes(ctx, [], "lr", also=[tau]):
                    for _ in range(m):
                        batches = [ctx.next_retain() for _ in range(n)]
                        if any(b is None for b in batches):
                            raise UnlearnError("stableun's remembering feedback needs a retain loss and "
                                               "retain data; this objective has none: set strategy.M: 0 "
                                               "(or leave it unset)")
                        fb2.append(accumulate_retain(ctx, 1.0 / m, batches))
            g_fb2 = dense(take_grads(params), params)
            ctx.stats["feedback_retain"] = sum(fb2) / len(fb2) if fb2 else None
        finally:
            snap.restore()

        # 4. g_f = ½∇L_u + λ_f ∇L_fb  (in g_fb),  g_r = ½∇L_u + λ_r ∇L_fb2  (in g_fb2)
        with torch.no_grad():  # in place: g0, base_r, g_fb and g_fb2 are this step's temporaries
            for i, (b0, br) in enumerate(zip(g0, base_r, strict=True)):
                half = (b0 if br is None else b0.add_(br)).mul_(0.5)
                g_fb[i] = g_fb[i].mul_(self.lambda_f).add_(half)
                g_fb2[i] = g_fb2[i].mul_(self.lambda_r).add_(half)
        g0.clear()
        base_r.clear()

        # 5. one-sided projection, then update g_r + g_f
        fr = ctx.dot(g_fb, g_fb2)
        rr = ctx.sq_norm(g_fb2)
        ff = ctx.sq_norm(g_fb)
        ctx.stats["cos_fr"] = fr / ((ff * rr) ** 0.5 + TINY)
        coef = fr / max(rr, TINY) if fr < 0 else 0.0
        ctx.stats["projected"] = float(fr < 0)
        with torch.no_grad():
            for r, f in zip(g_fb2, g_fb, strict=True):
                (r.mul_(1.0 - coef) if coef else r).add_(f)
        add_to_grads(params, g_fb2, 1.0, own=True)
        put_back(params, stash)

    def _apply(self, ctx: StepContext, rule: str, batches, i: int, tau):
        """Move θτ (the current weights) by ``rule``; return the context the feedback passes at the
        moved point run in (so that their forward sees the move, see :func:`.perturb.perturbed_passes`)."""
        params = ctx.params
        if rule in ("sap", "gap"):
            # ∇ℓ_f(θτ) through ctx.backward (not autograd.grad), so that under DDP it is averaged over
            # processes like every other gradient; the feedback accumulated so far is set aside
            stash = take_grads(params)
            with perturbed_passes(ctx, [], "lr", also=[tau]):
                accumulate_forget(ctx, 1.0, batches)
            d = dense(take_grads(params), params)
            put_back(params, stash)
            norm = ctx.sq_norm(d) ** 0.5
            if rule == "sap":
                unit, radius, what = 1.0 / (norm + TINY), self.rho, "rho"
            else:
                unit, radius, what = 1.0, self.mu, "mu"
            got = perturb_(ctx, params, d, radius * unit)
            return perturbed_passes(ctx, got, what, lambda: (x * unit for x in d), radius, also=[tau])
        if rule == "gpn":
            seed = ((self.seed * 1_000_003 + ctx.step) * 101 + i) * 7 + 1
            got = gaussian_(ctx, params, self.rho, seed)
            return perturbed_passes(ctx, got, "rho", lambda: noise_draw(params, 1.0, seed), self.rho,
                                    also=[tau])
        mean_with_(params, list(self._history))  # hws: a large move (iterates apart), tau only
        return perturbed_passes(ctx, [], "lr", also=[tau])
