"""Answer probability (docs/metrics.md#probability, TOFU).

Definition: ``P(a|q)^{1/|a|}``, the length-normalised probability of the answer tokens given the
question, i.e. ``exp(mean token log-prob)``. On the real-authors and world-facts sets TOFU reports the
correct answer's *share* among the options: ``P(a)^{1/|a|} / (P(a)^{1/|a|} + Σ_k P(â_k)^{1/|â_k|})``.
"""

from __future__ import annotations

import torch


def normalized_probability(sums: torch.Tensor, counts: torch.Tensor) -> torch.Tensor:
    """``exp(sum / count)`` per row: ``P(a|q)^{1/|a|}`` from summed log-probs and token counts."""
    return torch.exp(sums / counts.clamp(min=1))


def option_share(correct: torch.Tensor, others: torch.Tensor) -> torch.Tensor:
    """Share of the correct option's normalised probability among all options.

    ``correct``: shape (n,); ``others``: shape (n, k), both normalised probabilities.
    """
    return correct / (correct + others.sum(-1))
