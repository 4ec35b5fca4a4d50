"""ROUGE-L (docs/metrics.md#rouge-l; docs/conventions.md), computed with Google's ``rouge-score`` package.

- TOFU scores the *recall* of the greedy answer against the reference answer, with the Porter
  stemmer (``locuslab/tofu`` ``evaluate_util.py``: ``RougeScorer(['rouge1', 'rougeL'],
  use_stemmer=True)``): :func:`rouge_l_recall` defaults to ``use_stemmer=True``.
- MUSE scores VerbMem and KnowMem with ROUGE-L *F1* and no stemmer (``swj0419/muse_bench``
  ``metrics/logger.py``: ``use_stemmer=False``): :func:`rouge_l_f1` defaults to ``use_stemmer=False``.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Sequence


@lru_cache(maxsize=2)
def _scorer(use_stemmer: bool):
    from rouge_score import rouge_scorer

    return rouge_scorer.RougeScorer(["rougeL"], use_stemmer=use_stemmer)


def rouge_l(predictions: Sequence[str], references: Sequence[str], use_stemmer: bool) -> list:
    """One ``rouge_score.scoring.Score`` (precision, recall, fmeasure) per pair."""
    if len(predictions) != len(references):
        raise ValueError("predictions and references differ in length")
    scorer = _scorer(bool(use_stemmer))
    # rouge-score's argument order is (target, prediction).
    return [scorer.score(ref, pred)["rougeL"] for pred, ref in zip(predictions, references, strict=True)]


def rouge_l_recall(predictions: Sequence[str], references: Sequence[str],
                   use_stemmer: bool = True) -> list[float]:
    """TOFU's ROUGE-L recall (stemmed by default, as TOFU)."""
    return [s.recall for s in rouge_l(predictions, references, use_stemmer)]


def rouge_l_f1(predictions: Sequence[str], references: Sequence[str],
               use_stemmer: bool = False) -> list[float]:
    """MUSE's ROUGE-L F1 (no stemmer by default, as MUSE)."""
    return [s.fmeasure for s in rouge_l(predictions, references, use_stemmer)]
