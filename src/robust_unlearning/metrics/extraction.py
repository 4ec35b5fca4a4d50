"""Memorisation of forget items under teacher forcing: exact memorisation and extraction strength,
as open-unlearning reports them (``src/evals/metrics/memorization.py``).

- **EM**, exact memorisation (Tirumala et al. 2022, "Memorization Without Overfitting"): the share of
  scored tokens that are the model's argmax prediction given the true prefix,
  EM(x) = (1/n) Σ_t 1[argmax p_θ(· | x_<t) = x_t].
- **ES**, extraction strength (Carlini et al. 2021, "Extracting Training Data from Large Language
  Models"; the form of Wang et al. 2025 / open-unlearning): how short a true prefix suffices for the
  model to produce the rest greedily, ES(x) = 1 − k*/n, k* = min{k ∈ 0..n : the argmax continues
  x_≥k exactly}. Greedy decoding from x_<k reproduces x_≥k exactly when every teacher-forced argmax
  from k on is right, so k* is read off the hits. When even the last token is missed, k* = n and
  ES = 0 (open-unlearning's loop stops at k = n − 1 and reports 1/n there).

Both are per item in [0, 1] and averaged over items; higher = more memorised.
"""

from __future__ import annotations

from statistics import fmean
from typing import Sequence

import torch

from .token_stats import token_stats


def exact_memorization(hit: torch.Tensor) -> float:
    if hit.numel() == 0:
        raise ValueError("exact memorization of an item with no scored tokens")
    return hit.double().mean().item()


def extraction_strength(hit: torch.Tensor) -> float:
    n = hit.numel()
    if n == 0:
        raise ValueError("extraction strength of an item with no scored tokens")
    misses = (~hit.bool()).nonzero().flatten()
    k = 0 if misses.numel() == 0 else int(misses[-1]) + 1
    return 1.0 - k / n


def memorization_report(model, tokenizer, items: Sequence[dict], batch_size: int = 16,
                        max_length: int = 512) -> dict:
    """EM and ES averaged over ``items`` (see :mod:`.token_stats` for the item forms), and per item."""
    stats = [s for s in token_stats(model, tokenizer, items, batch_size, max_length) if s.hit.numel()]
    if not stats:
        raise ValueError("no item has a scored token")
    em = [exact_memorization(s.hit) for s in stats]
    es = [extraction_strength(s.hit) for s in stats]
    return {"exact_memorization": fmean(em), "extraction_strength": fmean(es),
            "exact_memorization_by_item": em, "extraction_strength_by_item": es}
