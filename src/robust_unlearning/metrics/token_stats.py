"""Per-token statistics of scored items in one batched pass, for the memorisation metrics
(:mod:`.extraction`) and the membership-inference attacks (:mod:`.mia`).

An item is a text (``{"text": ...}``: every token after the first scored) or a question/answer pair
(``{"prompt" | "question": ..., "answer": ...}``: the answer tokens scored, the prompt as in training,
``data/chat.py``). For each item, over its scored tokens x_t:

- ``logp``: log p_θ(x_t | x_<t);
- ``hit``: whether x_t is the argmax of p_θ(· | x_<t) (teacher forcing);
- ``mu``, ``var``: mean and variance of log p_θ(z | x_<t) for z ~ p_θ(· | x_<t) (Min-K %++).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.chat import bos_ids, text_ids
from ..data.collate import IGNORE, Encoded
from ..errors import UnlearnError
from .scoring import encode_pair, run_logits_batches


@dataclass
class TokenStats:
    logp: torch.Tensor
    hit: torch.Tensor
    mu: torch.Tensor
    var: torch.Tensor


def encode_item(tokenizer, item: dict, max_length: int = 512) -> Encoded:
    if "text" in item:
        bos = bos_ids(tokenizer)
        ids = (bos + text_ids(tokenizer, item["text"]))[:max_length]
        return Encoded(ids, [IGNORE] * len(bos) + ids[len(bos):])
    prompt = item.get("prompt", item.get("question"))
    if prompt is None or "answer" not in item:
        raise UnlearnError(f"a scored item needs 'text', or 'prompt'/'question' and 'answer'; got keys "
                           f"{sorted(item)}")
    return encode_pair(tokenizer, prompt, item["answer"], max_length=max_length)


def target_text(item: dict) -> str:
    """The scored text of an item (ZLib's compressed length)."""
    return item["text"] if "text" in item else item["answer"]


def token_stats(model, tokenizer, items: Sequence[dict], batch_size: int = 16,
                max_length: int = 512) -> list[TokenStats]:
    enc = [encode_item(tokenizer, it, max_length) for it in items]
    out: list[TokenStats | None] = [None] * len(enc)

    def take(logits, labels, idx):
        logq = F.log_softmax(logits[:, :-1].double(), -1)
        target = labels[:, 1:]
        mask = target != IGNORE
        logp = logq.gather(-1, target.clamp(min=0).unsqueeze(-1)).squeeze(-1)
        hit = logq.argmax(-1) == target
        q = logq.exp()
        mu = (q * logq).sum(-1)
        var = (q * logq.square()).sum(-1) - mu.square()
        for row, i in enumerate(idx):
            m = mask[row]
            out[i] = TokenStats(logp[row][m].cpu(), hit[row][m].cpu(), mu[row][m].cpu(), var[row][m].cpu())

    if enc:
        run_logits_batches(model, tokenizer, enc, batch_size, take)
    return out  # type: ignore[return-value]
