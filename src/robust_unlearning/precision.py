"""Mixed precision: float32 master weights, what the autocast forward sees, fp16 loss scaling.

bf16/fp16 (``train.mixed_precision``) keep float32 master copies of the trainable parameters, so
perturbations and restores stay exact; the forward runs under accelerate's autocast, which casts the
masters of the weights it multiplies. A perturbation that cast rounds away is not seen by the
forward; strategies then run the passes at the perturbed point with autocast off
(:attr:`Precision.exact_forward`), on the masters (strategies/perturb.py).

fp16 on an accelerator (accelerate ignores fp16 on the CPU: no scaler, no autocast): accelerate's
GradScaler multiplies every loss by its scale S before backward. Strategies must see true gradients,
so each backward's contribution is divided by S (a power of two: exact) as it arrives; an overflow
redoes the step at S/2 on the same batches (:func:`compute`); the update is multiplied by S again
before accelerate's clip and optimizer step (:func:`rescale`), which unscale it exactly once.
"""

from __future__ import annotations

import contextlib

import torch

from .distributed import local
from .errors import NonFiniteLossError

EXACT_DTYPES = (torch.float32, torch.float64)
# modules whose weights autocast casts to its dtype (linear / convolution kernels); a parameter of
# another module is taken as cast when it is a matrix that no embedding owns (custom matmuls)
_CAST_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Bilinear)


def master_weights(params, mixed_precision: str) -> None:
    """Under bf16/fp16, float32 masters of the trainable parameters."""
    if mixed_precision != "no":
        for p in params:
            p.data = p.data.float()


def forward_dtypes_of(model: torch.nn.Module, params, dtype: torch.dtype) -> list:
    """Per parameter, the dtype the autocast forward multiplies it in (``dtype`` for linear and
    convolution weights, including an embedding tied to the output layer), ``None`` where it is
    used as stored (embedding lookups, norms)."""
    cast, emb = set(), set()
    for m in model.modules():
        own = {id(p) for p in m.parameters(recurse=False)}
        if isinstance(m, _CAST_MODULES) or type(m).__name__ == "Conv1D":  # transformers' GPT-2 Conv1D
            cast |= own
        elif isinstance(m, torch.nn.Embedding):
            emb |= own
    return [dtype if p.dtype != dtype and (id(p) in cast or (p.dim() >= 2 and id(p) not in emb)) else None
            for p in params]


class Precision:
    """The run's forward and backward under its precision. ``forward_dtypes`` (None without
    autocast) and ``exact_forward`` (a context running passes with autocast off, also accelerate's
    autocast wrapper of ``model.forward``; None without autocast, or where the model holds
    half-precision floating weights that would meet float32 activations) go to the StepContext."""

    def __init__(self, accelerator, model, params, collectives):
        self.accelerator, self.model = accelerator, model
        self.scaler = accelerator.scaler
        self.forward_dtypes, self.exact_forward, self._exact = None, None, False
        dev = accelerator.device.type
        with accelerator.autocast():
            dtype = torch.get_autocast_dtype(dev) if torch.is_autocast_enabled(dev) else None
        if dtype is not None:
            self.forward_dtypes = forward_dtypes_of(model, params, dtype)
            if all(not p.is_floating_point() or p.dtype in EXACT_DTYPES for p in model.parameters()):
                self.exact_forward = self._exact_forward
        self.backward = accelerator.backward
        if self.scaler is not None:
            self.backward = unscaling_backward(accelerator.backward, self.scaler, params, collectives.all_ok)

    def autocast(self):
        """The context of a loss's forward: autocast, or none inside :meth:`exact_forward`."""
        if self._exact:
            return torch.autocast(self.accelerator.device.type, enabled=False)
        return self.accelerator.autocast()

    @contextlib.contextmanager
    def _exact_forward(self):
        inner = self.accelerator.unwrap_model(self.model, keep_fp32_wrapper=True)
        wrapped, orig = inner.__dict__.get("forward"), inner.__dict__.get("_original_forward")
        self._exact = True
        if orig is not None:
            inner.forward = orig
        precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")  # TF32 would round the perturbation away too
        try:
            with torch.autocast(self.accelerator.device.type, enabled=False):
                yield
        finally:
            torch.set_float32_matmul_precision(precision)
            self._exact = False
            if orig is not None:
                inner.forward = wrapped


class GradOverflow(Exception):
    """A loss-scaled (fp16) backward overflowed: the step is recomputed at a smaller scale."""


def compute(strategy, make_ctx, optimizer, step: int, scaler=None, streams=()):
    """Zero the gradients and let the strategy compute the update into ``.grad``; where the
    loss-scaled (fp16) gradient overflowed, redo it at S/2 on the same batches (``streams`` are
    rewound). Returns ``(ctx, passes of the abandoned tries)``."""
    positions = [s.state_dict() for s in streams] if scaler is not None else []  # only fp16 retries
    wasted = 0
    while True:
        optimizer.zero_grad(set_to_none=True)
        ctx = make_ctx()
        try:
            strategy.compute(ctx)  # perturbations are undone even when it raises
            return ctx, wasted
        except GradOverflow:
            wasted += ctx.passes
            if scaler.get_scale() <= 1.0:
                raise NonFiniteLossError("gradient", step) from None
            scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
            for stream, pos in zip(streams, positions, strict=True):
                stream.load_state_dict(pos)


@torch.no_grad()
def rescale(params, scaler) -> None:
    """Hand accelerate the scaled update it unscales once (clip / optimizer step); no-op without
    a scaler."""
    if scaler is None:
        return
    factor = scaler.get_scale()
    for p in params:
        if p.grad is not None:
            p.grad.mul_(factor)


def unscaling_backward(backward, scaler, params, all_ok):
    """``backward`` (which multiplies the loss by the GradScaler's scale S) made to *add the true
    gradient* to ``.grad``: the gradients accumulated so far are set aside, the new ones divided by
    S (a power of two: exact), then the set-aside ones added back. Raises :class:`GradOverflow`
    (on every process together: ``all_ok``) when the scaled gradient overflowed."""

    def run(loss: torch.Tensor) -> None:
        inv = 1.0 / scaler.get_scale()
        stash = [p.grad for p in params]
        for p in params:
            p.grad = None
        backward(loss)
        finite = torch.ones((), dtype=torch.bool)
        with torch.no_grad():
            for p, old in zip(params, stash, strict=True):
                if p.grad is not None:
                    p.grad.mul_(inv)
                    finite = finite & torch.isfinite(local(p.grad)).all().cpu()  # FSDP2: its shard
                    if old is not None:
                        p.grad.add_(old)
                elif old is not None:
                    p.grad = old
        if not all_ok(bool(finite)):
            raise GradOverflow

    return run
