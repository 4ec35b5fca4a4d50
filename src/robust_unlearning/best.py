"""``train.keep_best: METRIC:min|max``: keep the trainable weights of the best evaluated step.

With ``train.eval_every``, every evaluation (``evaluate_fn``'s values, e.g. ``forget_acc`` on a world,
``forget_nll`` / ``retain_nll`` on any data, a benchmark's summary metrics) is compared on METRIC;
the trainable weights of the best one are copied aside (on the CPU) and put back after the last step,
so the saved model is that step's. ``metrics.json`` records ``best: {metric, value, step}``. Ties keep
the earlier step. Not with ``wa`` (it averages iterates; keep_best picks one) and not across
``--resume`` (the copy is not in the checkpoint).
"""

from __future__ import annotations

import math

import torch

from .errors import UnlearnError


def parse(spec: str) -> tuple[str, str]:
    name, _, mode = spec.rpartition(":")
    if not name or mode not in ("min", "max"):
        raise UnlearnError(f"train.keep_best must be METRIC:min or METRIC:max (e.g. retain_acc:max), "
                           f"not {spec!r}")
    return name, mode


class BestKeeper:
    def __init__(self, spec: str | None, resumed: bool = False):
        if spec and resumed:
            raise UnlearnError("train.keep_best does not carry across --resume (its copy is not saved)")
        self.metric, self.mode = parse(spec) if spec else (None, None)
        self.value, self.step, self.weights = None, None, None

    def update(self, step: int, scores: dict, params: list[torch.Tensor]) -> None:
        if self.metric is None:
            return
        if self.metric not in scores:
            raise UnlearnError(f"train.keep_best: the evaluation has no {self.metric!r}; it gives "
                               f"{', '.join(sorted(scores))}")
        v = float(scores[self.metric])
        if not math.isfinite(v):
            return
        better = self.value is None or (v < self.value if self.mode == "min" else v > self.value)
        if better:
            self.value, self.step = v, step
            self.weights = [p.detach().to("cpu", copy=True) for p in params]

    def restore(self, params: list[torch.Tensor]) -> dict | None:
        """Put the best step's weights back; ``{metric, value, step}`` or None when not keeping."""
        if self.metric is None or self.weights is None:
            return None
        with torch.no_grad():
            for p, w in zip(params, self.weights, strict=True):
                p.copy_(w.to(p.device))
        return {"metric": self.metric, "mode": self.mode, "value": self.value, "step": self.step}
