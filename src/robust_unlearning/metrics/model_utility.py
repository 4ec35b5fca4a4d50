"""Model utility (docs/metrics.md#model-utility, TOFU).

Definition: the harmonic mean of the nine values {probability, ROUGE-L recall, truth-ratio score
``max(0, 1-R)``} × {retain, real authors, world facts} (``scipy.stats.hmean``); zero if any value is
zero. Other benchmarks (the world) pass the subset of sets they have.
"""

from __future__ import annotations

from typing import Mapping


def model_utility(values: Mapping[str, float] | list[float]) -> float:
    from scipy.stats import hmean

    vals = list(values.values()) if isinstance(values, Mapping) else list(values)
    if not vals:
        raise ValueError("model utility of no values")
    if any(v < 0 for v in vals):
        raise ValueError("model utility values must be non-negative")
    if any(v == 0 for v in vals):
        return 0.0
    return float(hmean(vals))
