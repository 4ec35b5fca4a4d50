"""Turning records into model batches.

A record is ``{"text": ...}`` (every token is a target) or ``{"question": ..., "answer": ...}``
(only answer tokens are targets). Prompt and answer are tokenized separately and concatenated, the
same way the evaluation scores an option, so train and test see identical token boundaries; with a
chat template the question is the user turn and the answer the reply (:mod:`.chat`).

Padding is on the right for training. Which positions are padding is decided by position, never by
comparing ids with ``pad_token_id``: on models whose pad token *is* the end-of-sequence token, that
comparison would mask the real end token out of the loss.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .chat import answer_ids, bos_ids, prompt_ids, text_ids
from .idk import idk_answer, pick_alternate

IGNORE = -100


@dataclass
class Encoded:
    input_ids: list[int]
    labels: list[int]


def encode_record(tokenizer, record: dict, max_length: int = 256) -> Encoded:
    bos = bos_ids(tokenizer)
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    if "text" in record:
        ids = bos + text_ids(tokenizer, record["text"]) + eos
        ids = ids[:max_length]
        labels = [IGNORE] * len(bos) + ids[len(bos):]
        return Encoded(ids, labels[: len(ids)])
    prompt = prompt_ids(tokenizer, record["question"])  # <bos> or the chat template (data/chat.py)
    answer = answer_ids(tokenizer, record["answer"], add_eos=True)
    # Truncate the prompt from the left so the answer (the target) survives.
    room = max(1, max_length - len(answer))
    prompt = prompt[-room:]
    ids = (prompt + answer)[:max_length]
    labels = ([IGNORE] * len(prompt) + answer)[:max_length]
    return Encoded(ids, labels)


def pad_batch(encoded: list[Encoded], pad_id: int, side: str = "right") -> dict[str, torch.Tensor]:
    """Pad to the longest sequence, on the right (training) or the left (generation); the rows are
    built as Python lists and turned into tensors once (one small tensor per row cost more than the
    rest of collation)."""
    if side not in ("right", "left"):
        raise ValueError(f"pad side must be 'right' or 'left', not {side!r}")
    width = max(len(e.input_ids) for e in encoded)
    ids, labels, mask = [], [], []
    for e in encoded:
        row, lab = list(e.input_ids), list(e.labels)
        n = len(row)
        pad = width - n
        if side == "right":
            ids.append(row + [pad_id] * pad)
            labels.append(lab + [IGNORE] * pad)
            mask.append([1] * n + [0] * pad)
        else:
            ids.append([pad_id] * pad + row)
            labels.append([IGNORE] * pad + lab)
            mask.append([0] * pad + [1] * n)
    return {"input_ids": torch.tensor(ids, dtype=torch.long),
            "attention_mask": torch.tensor(mask, dtype=torch.long),
            "labels": torch.tensor(labels, dtype=torch.long)}


def pad_id_of(tokenizer) -> int:
    if tokenizer.pad_token_id is not None:
        return tokenizer.pad_token_id
    if tokenizer.eos_token_id is not None:
        return tokenizer.eos_token_id
    return 0


class Collator:
    """Callable for a ``DataLoader``: list of records -> padded batch.

    ``alternates=True`` (objectives that train towards another answer: IdkDPO, IdkNLL, AltPO) adds,
    for a batch of question/answer records, the same questions with an "I don't know" answer
    (:mod:`.idk`) as ``idk_input_ids`` / ``idk_attention_mask`` / ``idk_labels``, and, when every
    record carries an ``alternate`` answer (a string or a list), those as ``alt_*``."""

    def __init__(self, tokenizer, max_length: int = 256, alternates: bool = False):
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.pad_id = pad_id_of(tokenizer)
        self.alternates = alternates

    def __call__(self, records: list[dict]) -> dict[str, torch.Tensor]:
        batch = pad_batch([encode_record(self.tokenizer, r, self.max_length) for r in records],
                          self.pad_id)
        if self.alternates and all("question" in r for r in records):
            self._add(batch, "idk", [idk_answer(r["question"]) for r in records], records)
            if all(r.get("alternate") for r in records):
                self._add(batch, "alt", [pick_alternate(r["question"], r["alternate"]) for r in records],
                          records)
        return batch

    def _add(self, batch: dict, prefix: str, answers: list[str], records: list[dict]) -> None:
        enc = [encode_record(self.tokenizer, {"question": r["question"], "answer": a}, self.max_length)
               for r, a in zip(records, answers, strict=True)]
        for key, value in pad_batch(enc, self.pad_id).items():
            batch[f"{prefix}_{key}"] = value
