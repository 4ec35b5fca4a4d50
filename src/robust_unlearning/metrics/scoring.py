"""Batched model calls shared by every metric: answer log-likelihoods, per-token log-probs, and
greedy generation.

No metric loops over examples calling the model: rows are sorted by length, padded into batches and
sent through the model together; results are scattered back into input order.

Masks and labels come from *positions* (:func:`~robust_unlearning.data.collate.pad_batch`), never
from comparing ids with ``pad_token_id``: when the pad token is the end-of-sequence token, a real
end token is still scored (``add_eos=True``) and a generated end token still ends the answer.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.chat import answer_ids, prompt_ids
from ..data.collate import IGNORE, Encoded, pad_batch, pad_id_of


def _bos(tokenizer) -> list[int]:
    return [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []


def _device(model) -> torch.device:
    return next(model.parameters()).device


def _ids(tokenizer, text: str) -> list[int]:
    return tokenizer(text, add_special_tokens=False)["input_ids"]


def encode_pair(tokenizer, prompt: str, answer: str, add_eos: bool = False, max_length: int = 512,
                add_bos: bool = True) -> Encoded:
    """``bos + prompt + answer [+ eos]`` with labels on the answer (and eos) positions only.

    Prompt and answer are tokenized separately, as in training (``data/collate.py``). Too-long rows
    lose prompt tokens from the left first, so the scored answer survives.
    """
    p = prompt_ids(tokenizer, prompt, add_bos)  # <bos> or the chat template (data/chat.py)
    a = answer_ids(tokenizer, answer, add_eos)
    a = a[: max_length - 1]
    p = p[-(max_length - len(a)):]
    return Encoded(p + a, [IGNORE] * len(p) + a)


def _run_batches(model, tokenizer, enc: list[Encoded], batch_size: int, fn):
    """Call ``fn(logits, labels, idx)`` on length-sorted padded batches (eval mode, no grad)."""
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))
    device = _device(model)
    pad = pad_id_of(tokenizer)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = pad_batch([enc[i] for i in idx], pad)
                logits = model(input_ids=batch["input_ids"].to(device),
                               attention_mask=batch["attention_mask"].to(device)).logits
                fn(logits, batch["labels"].to(device), idx)
    finally:
        model.train(was_training)


def _token_logp(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Shifted per-position target log-probs and the target mask."""
    target = labels[:, 1:]
    mask = target != IGNORE
    logp = -F.cross_entropy(logits[:, :-1].float().transpose(1, 2), target.clamp(min=0), reduction="none")
    return logp * mask, mask


def answer_logprobs(model, tokenizer, prompts: Sequence[str], answers: Sequence[str], add_eos: bool = False,
                    batch_size: int = 64, max_length: int = 512, add_bos: bool = True,
                    ) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed ``log P(answer | prompt)`` and the number of scored tokens, one per pair."""
    if len(prompts) != len(answers):
        raise ValueError("prompts and answers differ in length")
    enc = [encode_pair(tokenizer, p, a, add_eos, max_length, add_bos)
           for p, a in zip(prompts, answers, strict=True)]
    sums = torch.zeros(len(enc), dtype=torch.float64)
    counts = torch.zeros(len(enc), dtype=torch.float64)

    def take(logits, labels, idx):
        logp, mask = _token_logp(logits, labels)
        sums[idx] = logp.sum(1).double().cpu()
        counts[idx] = mask.sum(1).double().cpu()

    if enc:
        _run_batches(model, tokenizer, enc, batch_size, take)
    return sums, counts


def text_token_logprobs(model, tokenizer, texts: Sequence[str], batch_size: int = 16,
                        max_length: int = 512) -> list[torch.Tensor]:
    """Log-prob of every token of each text (after the first) given its prefix, one tensor per text."""
    enc = []
    for t in texts:
        ids = (_bos(tokenizer) + _ids(tokenizer, t))[:max_length]
        enc.append(Encoded(ids, [IGNORE] * len(_bos(tokenizer)) + ids[len(_bos(tokenizer)):]))
    out: list[torch.Tensor] = [torch.zeros(0)] * len(enc)

    def take(logits, labels, idx):
        logp, mask = _token_logp(logits, labels)
        for row, i in enumerate(idx):
            out[i] = logp[row][mask[row]].double().cpu()

    if enc:
        _run_batches(model, tokenizer, enc, batch_size, take)
    return out


def greedy_generate(model, tokenizer, prompts: Sequence[str], max_new_tokens: int = 32, batch_size: int = 32,
                    max_length: int = 512, stop: Sequence[str] = ()) -> list[str]:
    """Greedy continuations of left-padded prompts, decoded without special tokens.

    Generation of a row ends at its end-of-sequence token (``generate`` fills the rest with the pad
    token, which is dropped by ``skip_special_tokens``); ``stop`` strings cut the text further.
    """
    device = _device(model)
    pad = pad_id_of(tokenizer)
    room = max(1, max_length - max_new_tokens)
    enc = []
    for p in prompts:
        ids = prompt_ids(tokenizer, p)[-room:]
        enc.append(Encoded(ids, [IGNORE] * len(ids)))
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))
    texts = [""] * len(enc)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            for start in range(0, len(order), batch_size):
                idx = order[start:start + batch_size]
                batch = pad_batch([enc[i] for i in idx], pad, side="left")
                gen = model.generate(input_ids=batch["input_ids"].to(device),
                                     attention_mask=batch["attention_mask"].to(device),
                                     max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                                     eos_token_id=tokenizer.eos_token_id)
                new = gen[:, batch["input_ids"].shape[1]:].cpu()
                for row, i in enumerate(idx):
                    ids = new[row].tolist()
                    if tokenizer.eos_token_id is not None and tokenizer.eos_token_id in ids:
                        ids = ids[: ids.index(tokenizer.eos_token_id)]
                    texts[i] = tokenizer.decode(ids, skip_special_tokens=True)
    finally:
        model.train(was_training)
    for i, t in enumerate(texts):
        for s in stop:
            if s and s in t:
                t = t[: t.index(s)]
        texts[i] = t.strip()
    return texts
