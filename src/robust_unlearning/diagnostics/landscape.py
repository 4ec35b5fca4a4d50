"""1-D and 2-D landscapes of the forget loss around the weights (Li et al. 2018).

Directions are *filter-normalised*: a Gaussian direction whose every filter (row of a weight
matrix, i.e. one output unit) is rescaled to the norm of the corresponding filter of the weights;
1-D parameters (norm gains, biases) get no perturbation, as in the paper. The loss is evaluated at
``w + α·d₁`` (1-D) or ``w + α·d₁ + β·d₂`` (2-D) on a grid of ``points`` values in ``[-span, span]``.
Plots are drawn by :mod:`robust_unlearning.report.plots`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from .common import evaluation_mode, forget_batch, forget_loss_fn, parameters, saved_weights


@dataclass
class LandscapeConfig:
    span: float = 1.0
    points_1d: int = 21
    points_2d: int = 11
    max_samples: int = 64
    seed: int = 0
    two_d: bool = True

    def __post_init__(self):
        if not self.span > 0:
            raise ValueError(f"landscape span must be positive, not {self.span}")
        if self.points_1d < 2 or self.points_2d < 2:
            raise ValueError("a landscape needs at least 2 points per axis")


def filter_normalized_direction(params: list[torch.Tensor], gen: torch.Generator) -> list[torch.Tensor]:
    out = []
    for p in params:
        if p.dim() < 2:
            out.append(torch.zeros_like(p))
            continue
        d = torch.randn(p.shape, generator=gen).to(p)
        w = p.detach().reshape(p.shape[0], -1)
        dr = d.reshape(p.shape[0], -1)
        dr.mul_(w.norm(dim=1, keepdim=True) / dr.norm(dim=1, keepdim=True).clamp(min=1e-12))
        out.append(dr.reshape(p.shape))
    return out


def _grid(span: float, points: int) -> list[float]:
    return torch.linspace(-span, span, points).tolist()


@torch.no_grad()
def landscape_1d(loss_fn, params, span: float = 1.0, points: int = 21, seed: int = 0) -> dict:
    d = filter_normalized_direction(params, torch.Generator().manual_seed(seed))
    alphas = _grid(span, points)
    losses = []
    with saved_weights(params) as w0:
        for a in alphas:
            for p, w, di in zip(params, w0, d, strict=False):
                p.copy_(w + a * di)
            losses.append(loss_fn().item())
    return {"alphas": alphas, "losses": losses}


@torch.no_grad()
def landscape_2d(loss_fn, params, span: float = 1.0, points: int = 11, seed: int = 0) -> dict:
    gen = torch.Generator().manual_seed(seed + 1)
    d1 = filter_normalized_direction(params, gen)
    d2 = filter_normalized_direction(params, gen)
    axis = _grid(span, points)
    losses = []
    with saved_weights(params) as w0:
        for b in axis:
            row = []
            for a in axis:
                for p, w, x, y in zip(params, w0, d1, d2, strict=False):
                    p.copy_(w + a * x + b * y)
                row.append(loss_fn().item())
            losses.append(row)
    return {"alphas": axis, "betas": axis, "losses": losses}  # losses[i][j]: beta i, alpha j


def landscape(model, tokenizer, world, cfg: LandscapeConfig = LandscapeConfig()) -> dict:
    batch = forget_batch(tokenizer, world, cfg.max_samples, cfg.seed)
    params = parameters(model)
    with evaluation_mode(model):
        loss_fn = forget_loss_fn(model, batch)
        out = {"one_d": landscape_1d(loss_fn, params, cfg.span, cfg.points_1d, cfg.seed)}
        if cfg.two_d:
            out["two_d"] = landscape_2d(loss_fn, params, cfg.span, cfg.points_2d, cfg.seed)
    out["config"] = asdict(cfg)
    return out
