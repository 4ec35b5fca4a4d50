"""Sharpness of the forget loss around the unlearned weights.

"How easily does the knowledge come back?" measured without training an attacker:

- ``worst_case_decrease``: the largest decrease of the forget loss (NLL on forget QA) found by a few
  steps of projected (normalised) gradient *descent* inside the L2 ball of radius ``rho`` around the
  weights, the relearning attacker's best move at a tiny budget (SAM's inner problem, sign flipped);
- ``random_sharpness``: the mean change of the forget loss over random directions of norm ``rho``
  (antithetic pairs ±d, so the first-order term cancels and the curvature remains), and the largest
  decrease among them: what a *random* perturbation of that size does, for comparison;
- ``top_hessian_eigenvalue``: the dominant eigenvalue of the Hessian of the forget loss (largest in
  magnitude, signed), by power iteration on Hessian-vector products (double backward through
  ``torch.autograd.grad``). Hand-written (20 lines) rather than pulled from PyHessian, which is
  unmaintained and pins old PyTorch.

Norms are global over all parameters (absolute, not relative to the weight norm).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Callable

import torch

from .common import (
    eager_attention,
    evaluation_mode,
    forget_batch,
    forget_loss_fn,
    global_norm,
    parameters,
    saved_weights,
)

LossFn = Callable[[], torch.Tensor]


@dataclass
class SharpnessConfig:
    rho: float = 0.05
    pgd_steps: int = 5
    random_dirs: int = 4  # antithetic pairs
    power_iters: int = 20
    power_tol: float = 1e-3
    max_samples: int = 64
    seed: int = 0

    def __post_init__(self):
        if not self.rho > 0:
            raise ValueError(f"sharpness rho must be positive, not {self.rho}")
        for name in ("pgd_steps", "random_dirs", "power_iters", "max_samples"):
            if getattr(self, name) < 1:
                raise ValueError(f"sharpness {name} must be at least 1, not {getattr(self, name)}")


def worst_case_decrease(loss_fn: LossFn, params: list[torch.Tensor], rho: float, steps: int = 5,
                        step_size: float | None = None) -> dict:
    """Projected normalised gradient descent within ||δ||₂ ≤ rho; the best loss seen is kept."""
    alpha = step_size if step_size is not None else 2.5 * rho / steps
    with saved_weights(params) as w0:
        base = loss_fn().item()
        best = base
        delta = [torch.zeros_like(p) for p in params]
        for _ in range(steps):
            grads = torch.autograd.grad(loss_fn(), params, allow_unused=True)
            grads = [torch.zeros_like(p) if g is None else g for p, g in zip(params, grads, strict=False)]
            gnorm = global_norm(grads).item()
            if gnorm == 0:
                break
            delta = [d - alpha * g / gnorm for d, g in zip(delta, grads, strict=False)]
            dnorm = global_norm(delta).item()
            if dnorm > rho:
                delta = [d * (rho / dnorm) for d in delta]
            with torch.no_grad():
                for p, w, d in zip(params, w0, delta, strict=False):
                    p.copy_(w + d)
                best = min(best, loss_fn().item())
    return {"loss": base, "pgd_loss": best, "pgd_decrease": base - best}


@torch.no_grad()
def random_sharpness(loss_fn: LossFn, params: list[torch.Tensor], rho: float, n_dirs: int = 4,
                     seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed)
    changes = []
    with saved_weights(params) as w0:
        base = loss_fn().item()
        for _ in range(n_dirs):
            d = [torch.randn(p.shape, generator=gen).to(p) for p in params]
            scale = rho / global_norm(d).item()
            for sign in (1.0, -1.0):
                for p, w, di in zip(params, w0, d, strict=False):
                    p.copy_(w + sign * scale * di)
                changes.append(loss_fn().item() - base)
    t = torch.tensor(changes)
    return {"random_change_mean": t.mean().item(), "random_change_std": t.std().item() if len(t) > 1 else 0.0,
            "random_decrease_max": max(0.0, -t.min().item())}


def top_hessian_eigenvalue(loss_fn: LossFn, params: list[torch.Tensor], iters: int = 20, tol: float = 1e-3,
                           seed: int = 0) -> dict:
    """Dominant Hessian eigenvalue (Rayleigh quotient at the last power-iteration vector)."""
    gen = torch.Generator().manual_seed(seed)
    grads = torch.autograd.grad(loss_fn(), params, create_graph=True)
    v = [torch.randn(p.shape, generator=gen).to(p) for p in params]
    n = global_norm(v)
    v = [x / n for x in v]
    eig, converged, done = 0.0, False, 0
    for done in range(1, iters + 1):
        hv = torch.autograd.grad(grads, params, grad_outputs=v, retain_graph=True)
        new = sum((a * b).sum() for a, b in zip(hv, v, strict=False)).item()
        norm = global_norm(hv).item()
        if norm == 0:
            eig, converged = 0.0, True
            break
        v = [h.detach() / norm for h in hv]
        if done > 1 and abs(new - eig) <= tol * max(abs(new), 1e-12):
            eig, converged = new, True
            break
        eig = new
    return {"top_eigenvalue": eig, "power_iters": done, "converged": converged}


def sharpness(model, tokenizer, world, cfg: SharpnessConfig = SharpnessConfig()) -> dict:
    """All three diagnostics of the forget loss at the model's weights (weights unchanged after)."""
    batch = forget_batch(tokenizer, world, cfg.max_samples, cfg.seed)
    params = parameters(model)
    with evaluation_mode(model), eager_attention(model):
        flags = [p.requires_grad for p in params]
        for p in params:
            p.requires_grad_(True)
        try:
            loss_fn = forget_loss_fn(model, batch)
            out = {"rho": cfg.rho, **worst_case_decrease(loss_fn, params, cfg.rho, cfg.pgd_steps)}
            out.update(random_sharpness(loss_fn, params, cfg.rho, cfg.random_dirs, cfg.seed))
            out.update(top_hessian_eigenvalue(loss_fn, params, cfg.power_iters, cfg.power_tol, cfg.seed))
        finally:
            for p, f in zip(params, flags, strict=False):
                p.requires_grad_(f)
    out["config"] = asdict(cfg)
    return out
