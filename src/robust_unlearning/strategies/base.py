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

from ..distributed import ONE_PROCESS, Collectives, local
from ..errors import NonFiniteLossError
from ..registry import Registry

STRATEGIES: Registry[Strategy] = Registry("strategy", package="robust_unlearning.strategies")


@dataclass
class MicroBatch:
    forget: dict
    retain: dict | None


@dataclass
class Losses:
    """What the loop lends a step: the loss of a batch, the backward, fresh batches."""

    forget: Callable[[dict], torch.Tensor]
    retain: Callable[[dict], torch.Tensor | None] = lambda batch: None
    backward: Callable[[torch.Tensor], None] = lambda loss: loss.backward()
    next_forget: Callable[[], dict] | None = None  # a fresh forget batch (StableUN's feedback)
    next_retain: Callable[[], dict | None] = lambda: None  # a fresh retain batch

    @classmethod
    def of(cls, objective, model, reference, autocast, backward, next_forget, next_retain) -> Losses:
        """The objective's losses on ``model``, each forward under ``autocast()``, weighted by a
        batch's ``weight`` where it has one."""

        def weighted(loss_fn):
            def run(batch):
                with autocast():
                    loss = loss_fn(model, batch, reference)
                w = getattr(batch, "weight", 1.0)
                return loss * w if loss is not None and w != 1.0 else loss
            return run

        return cls(weighted(objective.forget_loss), weighted(objective.retain_loss), backward,
                   next_forget, next_retain)


@dataclass
class StepContext:
    """Everything a strategy may use for one optimizer step: the batches, counted passes, global
    (over processes) norms, and what the forward's precision keeps of a perturbation."""

    model: torch.nn.Module
    params: list[torch.nn.Parameter]  # trainable parameters, in a fixed order
    micro: list[MicroBatch]  # the accumulation group
    losses: Losses
    gamma: float
    lr: float
    step: int
    total_steps: int | None = None  # optimizer steps in the whole run
    collectives: Collectives = ONE_PROCESS
    # per trainable parameter, the dtype the forward casts it to (autocast: bf16/fp16 for the weights
    # of linear layers), None where it is used as stored; None overall without autocast
    forward_dtypes: list | None = None
    # a context that runs passes with autocast off, on the float32 masters (None: not possible, as
    # frozen half-precision weights would meet float32 activations; or not needed)
    exact_forward: Callable[[], object] | None = None
    passes: int = 0  # forward+backward passes run this step
    stats: dict = field(default_factory=dict)

    @property
    def has_retain(self) -> bool:
        return self.micro[0].retain is not None

    # -- batches and counted passes ----------------------------------------------------------------
    def forget_loss(self, batch: dict) -> torch.Tensor:
        return self.losses.forget(batch)

    def retain_loss(self, batch: dict) -> torch.Tensor | None:
        return self.losses.retain(batch)

    def next_forget(self) -> dict:
        return self.losses.next_forget()

    def next_retain(self) -> dict | None:
        return self.losses.next_retain()

    def check_finite(self, loss: torch.Tensor) -> None:
        """Stop the run (on every process together) at a non-finite loss."""
        if not self.all_finite(loss.detach()):
            raise NonFiniteLossError("loss", self.step)

    def backward(self, loss: torch.Tensor) -> None:
        self.check_finite(loss)
        try:
            self.losses.backward(loss)
        finally:  # a pass that ran counts, also when it overflowed (fp16) and the step is redone
            self.passes += 1

    def count_passes(self, n: int) -> None:
        """Count passes run outside :meth:`backward` (``torch.autograd.grad`` calls)."""
        self.passes += n

    # -- gradients and global reductions -----------------------------------------------------------
    def grads(self) -> list[torch.Tensor]:
        """The current ``.grad`` of each trainable parameter (zeros where there is none)."""
        return dense([p.grad for p in self.params], self.params)

    def all_reduce_sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over processes of a sum over the local gradients (identity where they are replicated)."""
        return self.collectives.sum(t)

    def all_finite(self, t: torch.Tensor) -> bool:
        """Whether ``t`` is finite on *every* process (so that all stop at the same pass)."""
        return self.collectives.all_finite(t)

    def average_grads(self, ts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Mean over processes of gradients that did not come from ``backward`` (those of
        ``torch.autograd.grad``, which DDP does not average); the identity in one process."""
        return self.collectives.mean_grads(ts)

    def sq_norm(self, tensors) -> float:
        """Global Σ t² (float64, summed over processes)."""
        part = sum((local(t.detach()).double().pow(2).sum() for t in tensors),
                   torch.zeros((), dtype=torch.float64))
        return float(self.all_reduce_sum(part))

    def dot(self, a, b) -> float:
        """Global Σ a·b (float64, summed over processes)."""
        part = sum(((local(x.detach()).double() * local(y.detach()).double()).sum()
                    for x, y in zip(a, b, strict=True)), torch.zeros((), dtype=torch.float64))
        return float(self.all_reduce_sum(part))


def dense(tensors, params) -> list[torch.Tensor]:
    """``tensors`` with zeros (shaped like the parameter) where one is ``None``."""
    return [t if t is not None else torch.zeros_like(p) for t, p in zip(tensors, params, strict=True)]


class Strategy:
    """Base class. Subclasses are dataclasses whose fields are their options."""

    name: ClassVar[str]
    # where gradients are partitioned over processes (DeepSpeed ZeRO / FSDP2): strategies whose
    # global sums all go through ``ctx.all_reduce_sum`` say so here (distributed.py checks)
    supports_deepspeed: ClassVar[bool] = False
    supports_fsdp: ClassVar[bool] = False

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
