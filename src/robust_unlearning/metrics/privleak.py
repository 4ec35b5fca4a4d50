"""Min-K % membership attack and MUSE's PrivLeak (REFERENCES.md §4).

- **Min-K % score** of a text: the mean of its lowest ``K``% token log-probs (``K = 40`` in MUSE).
  Seen (member) texts score higher.
- **AUC**: ``sklearn.metrics.roc_auc_score`` of telling forget texts (members, label 1) from holdout
  texts (non-members, label 0) by that score.
- **PrivLeak** = ``(AUC_unlearned - AUC_retrain) / AUC_retrain × 100``; near 0 is ideal; large
  positive means forget texts still look like training members (under-unlearning), large negative
  means they look *less* familiar than unseen text (over-unlearning). The retrain model's AUC
  is computed from that model or supplied as a number.
"""

from __future__ import annotations

import math
from typing import Sequence

import torch

from .scoring import text_token_logprobs


def min_k_score(token_logprobs: torch.Tensor, k: float = 0.4) -> float:
    """Mean of the lowest ``ceil(k·n)`` token log-probs (at least one)."""
    if not 0 < k <= 1:
        raise ValueError("k must be in (0, 1]")
    n = token_logprobs.numel()
    if n == 0:
        return 0.0
    m = max(1, math.ceil(k * n))
    return torch.sort(token_logprobs.double()).values[:m].mean().item()


def min_k_scores(model, tokenizer, texts: Sequence[str], k: float = 0.4, batch_size: int = 8,
                 max_length: int = 2048) -> list[float]:
    return [min_k_score(t, k) for t in text_token_logprobs(model, tokenizer, texts, batch_size, max_length)]


def mia_auc(member_scores: Sequence[float], nonmember_scores: Sequence[float]) -> float:
    from sklearn.metrics import roc_auc_score

    labels = [1] * len(member_scores) + [0] * len(nonmember_scores)
    return float(roc_auc_score(labels, list(member_scores) + list(nonmember_scores)))


def privleak(auc_unlearned: float, auc_retrain: float) -> float:
    if auc_retrain <= 0:
        raise ValueError("the retrain model's AUC must be positive")
    return (auc_unlearned - auc_retrain) / auc_retrain * 100.0
