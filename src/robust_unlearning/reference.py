"""The reference model p_ref of NPO, GA+KL and RMU.

A :class:`Reference` answers ``logits(batch)`` and ``hidden(batch, index)`` under ``no_grad``. It
wraps a *forward function* supplied by the parameterization: a frozen copy of the starting weights
for full fine-tuning, or the same model with adapters disabled for LoRA (no extra memory). It is
only built when the objective declares ``needs_reference``.

Outputs are cached per batch (by tensor identity), so a strategy that scores the same batch at
several perturbed points pays for the reference once.
"""

from __future__ import annotations

from typing import Callable

import torch

ForwardFn = Callable[[dict, bool], object]


class Reference:
    def __init__(self, forward: ForwardFn, cache_size: int = 8):
        self._forward = forward
        self._cache: dict[int, tuple[torch.Tensor, object]] = {}
        self._cache_size = cache_size

    def _outputs(self, batch: dict, hidden: bool):
        key = id(batch["input_ids"])
        hit = self._cache.get(key)
        # The tensor is kept in the entry so its id cannot be reused while cached.
        if hit is not None and hit[0] is batch["input_ids"] and (not hidden or hit[1][1] is not None):
            return hit[1]
        with torch.no_grad():
            out = self._forward(batch, hidden)
        entry = (out.logits.detach(), tuple(h.detach() for h in out.hidden_states) if hidden else None)
        if len(self._cache) >= self._cache_size:
            self._cache.pop(next(iter(self._cache)))
        self._cache[key] = (batch["input_ids"], entry)
        return entry

    def logits(self, batch: dict) -> torch.Tensor:
        return self._outputs(batch, False)[0]

    def hidden(self, batch: dict, index: int) -> torch.Tensor:
        return self._outputs(batch, True)[1][index]

    def clear(self) -> None:
        self._cache.clear()
