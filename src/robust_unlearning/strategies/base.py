"""Strategies: *how* to step.

A strategy turns loss closures into one update direction, left in the trainable parameters' ``.grad``
(the loop zeroes ``.grad`` before calling it, then clips, then lets the optimizer step). It is the only
place that may run extra forward/backward passes or touch ``.grad``.

The strategy receives the whole gradient-accumulation group of micro-batches at once, so a
multi-phase strategy (SAM: gradient, perturb, gradient again) still produces exactly the update of one
large batch. Helpers here accumulate into ``.grad`` (never overwrite it) and count passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, ClassVar

import torch

from ..registry import Registry

STRATEGIES: Registry[Strategy] = Registry(
    "strategy",
    modules=tuple(f"robust_unlearning.strategies.{m}" for m in
                  ("plain", "sam", "rs", "gp", "cr", "wa", "stableun")),
)


@dataclass
class MicroBatch:
    forget: dict
    retain: dict | None


@dataclass
class StepContext:
    """Everything a strategy may use for one optimizer step."""

    model: torch.nn.Module
    params: list[torch.nn.Parameter]  # trainable parameters, in a fixed order
    micro: list[MicroBatch]  # the accumulation group
    forget_loss_fn: Callable[[dict], torch.Tensor]
    retain_loss_fn: Callable[[dict], torch.Tensor | None]
    backward_fn: Callable[[torch.Tensor], None]
    next_forget: Callable[[], dict]  # a fresh forget batch (StableUN's feedback)
    next_retain: Callable[[], dict | None]  # a fresh retain batch
    gamma: float
    lr: float
    step: int
    # sum over processes of a sum over the local gradients (identity where gradients are replicated)
    all_reduce_sum: Callable[[torch.Tensor], torch.Tensor] = lambda t: t
    # whether a loss is finite on *every* process (so that all stop at the same pass, none waits)
    all_finite: Callable[[torch.Tensor], bool] = lambda t: bool(torch.isfinite(t).all())
    # mean over processes of per-process gradients that did not come from ``backward`` (those of
    # ``torch.autograd.grad``, which DDP does not average); the identity in one process
    average_grads: Callable[[list[torch.Tensor]], list[torch.Tensor]] = lambda ts: ts
    # per trainable parameter, the dtype the forward casts it to (autocast: bf16/fp16 for the weights
    # of linear layers), None where it is used as stored; None overall without autocast
    forward_dtypes: list | None = None
    # a context that runs passes with autocast off, on the float32 masters (None: not possible, as
    # frozen half-precision weights would meet float32 activations; or not needed)
    exact_forward: Callable[[], object] | None = None
    passes: int = 0  # forward+backward passes run this step
    stats: dict = field(default_factory=dict)
    total_steps: int | None = None  # optimizer steps in the whole run

    @property
    def has_retain(self) -> bool:
        return self.micro[0].retain is not None

    # -- counted passes ------------------------------------------------------------------------
    def forget_loss(self, batch: dict) -> torch.Tensor:
        return self.forget_loss_fn(batch)

    def retain_loss(self, batch: dict) -> torch.Tensor | None:
        return self.retain_loss_fn(batch)

    def backward(self, loss: torch.Tensor) -> None:
        if not self.all_finite(loss.detach()):
            from ..errors import NonFiniteLossError

            raise NonFiniteLossError("loss", self.step)
        try:
            self.backward_fn(loss)
        finally:  # a pass that ran counts, also when it overflowed (fp16) and the step is redone
            self.passes += 1


class Strategy:
    """Base class. Subclasses are dataclasses whose fields are their options."""

    name: ClassVar[str]

    def setup(self, params: list[torch.nn.Parameter]) -> None:
        """Called once before training with the trainable parameters."""

    def compute(self, ctx: StepContext) -> None:
        """Leave the update direction in ``p.grad`` for every trainable ``p``."""
        raise NotImplementedError

    def after_step(self, ctx: StepContext) -> None:
        """Called after the optimizer step (weight averaging, iterate history, ...)."""

    def finalize(self, params: list[torch.nn.Parameter]) -> None:
        """Called once after training; may replace the weights (weight averaging)."""

    def state_dict(self) -> dict:
        """State carried from step to step (averages, iterate history), for checkpoints: nested
        dicts/lists/tuples of tensors and JSON scalars. Stateless strategies (their randomness is
        seeded by the step) return ``{}``."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned (tensors already on the parameters' device)."""


# -- helpers shared by strategies ------------------------------------------------------------------

def accumulate_forget(ctx: StepContext, scale: float = 1.0, batches: list[dict] | None = None) -> float:
    """Add ``scale · ∇ mean_mb ℓ_f(mb)`` to ``.grad``; return the mean forget loss."""
    batches = batches if batches is not None else [m.forget for m in ctx.micro]
    total = 0.0
    for b in batches:
        loss = ctx.forget_loss(b)
        ctx.backward(loss * (scale / len(batches)))
        total += loss.item()
    return total / len(batches)


def accumulate_retain(ctx: StepContext, scale: float | None = None,
                      batches: list[dict] | None = None) -> float | None:
    """Add ``scale · ∇ mean_mb ℓ_r(mb)`` (default scale γ) to ``.grad``; return the mean retain loss."""
    if not ctx.has_retain and batches is None:
        return None
    scale = ctx.gamma if scale is None else scale
    batches = batches if batches is not None else [m.retain for m in ctx.micro]
    total, n = 0.0, 0
    for b in batches:
        loss = ctx.retain_loss(b)
        if loss is None:
            return None
        ctx.backward(loss * (scale / len(batches)))
        total += loss.item()
        n += 1
    return total / n


def grads(params: list[torch.nn.Parameter]) -> list[torch.Tensor]:
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def zero_grads(params: list[torch.nn.Parameter]) -> None:
    for p in params:
        p.grad = None
