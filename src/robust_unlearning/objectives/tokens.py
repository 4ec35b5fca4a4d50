"""Per-token pieces shared by the token-weighted objectives (WGA, SatImp, CE-U, UNDIAL) and the
preference objectives (IdkDPO, AltPO).

Convention of this project: a loss over tokens is the per-token mean within each sequence, then the
mean over sequences (as :func:`.base.mean_nll`), so that it is a mean over sequences and splits over
processes exactly (data/stream.py). open-unlearning pools all target tokens of a batch instead; the
two agree when every sequence has the same number of target tokens.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.collate import IGNORE
from ..errors import UnlearnError


def shifted(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(logits predicting each next token, that token (ignored positions clamped to 0), target mask)."""
    target = labels[:, 1:]
    return logits[:, :-1].float(), target.clamp(min=0), target != IGNORE


def per_sequence_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean over sequences of the mean of ``values`` over each sequence's masked positions."""
    mask = mask.to(values.dtype)
    return ((values * mask).sum(1) / mask.sum(1).clamp(min=1)).mean()


def token_ce(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position cross-entropy −log p(y_t) [B, T−1] and the target mask."""
    logits, target, mask = shifted(logits, labels)
    ce = F.cross_entropy(logits.transpose(1, 2), target, reduction="none")
    return ce, mask


def answer_batch(batch: dict, prefix: str, objective: str) -> dict:
    """The ``prefix`` answers (``idk`` or ``alt``) of a forget batch, as a model batch."""
    key = f"{prefix}_input_ids"
    if key not in batch:
        what = ("an 'I don't know' answer per question" if prefix == "idk"
                else "an 'alternate' answer on every forget record")
        raise UnlearnError(f"objective {objective!r} needs {what}, so question/answer forget records; "
                           "this forget batch has text records (or lacks them)")
    return {k: batch[f"{prefix}_{k}"] for k in ("input_ids", "attention_mask", "labels")}
