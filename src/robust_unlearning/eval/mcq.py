"""Multiple-choice and exact-match scoring, batched.

MCQ: every (prompt, option) pair is one row; the score of an option is the summed log-likelihood of
its tokens given the prompt (lm-eval-harness's ``acc``). All rows go through the model in padded
batches; there is no Python loop over model calls per example.

Exact match: greedy generation from left-padded prompts; a hit when the generated continuation
starts with the correct value.
"""

from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F

from ..data.chat import answer_ids, prompt_ids
from ..data.collate import IGNORE, Encoded, pad_batch, pad_id_of
from .target_logp import target_logprobs


def _model_device(model) -> torch.device:
    return next(model.parameters()).device


@torch.no_grad()
def sequence_logprobs(model, tokenizer, prompts: Sequence[str], continuations: Sequence[str],
                      batch_size: int = 128) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed log P(continuation | prompt) and the continuation token count, one per pair."""
    enc = []
    for p, c in zip(prompts, continuations, strict=True):
        pi = prompt_ids(tokenizer, p)  # <bos> or the chat template (data/chat.py)
        ci = answer_ids(tokenizer, c)
        enc.append(Encoded(pi + ci, [IGNORE] * len(pi) + ci))
    # Sort by length so batches carry little padding; scatter results back afterwards.
    order = sorted(range(len(enc)), key=lambda i: len(enc[i].input_ids))
    sums = torch.zeros(len(enc))
    counts = torch.zeros(len(enc))
    device = _model_device(model)
    was_training = model.training
    model.eval()
    pad = pad_id_of(tokenizer)
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        batch = pad_batch([enc[i] for i in idx], pad)
        batch = {k: v.to(device) for k, v in batch.items()}
        logp, mask = target_logprobs(model, batch["input_ids"], batch["attention_mask"], batch["labels"])
        sums[idx] = logp.sum(1).cpu()
        counts[idx] = mask.sum(1).float().cpu()
    model.train(was_training)
    return sums, counts


def token_logprob_sums(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-sequence sum of target-token log-probs and target count (shifted, IGNORE masked)."""
    logits = logits[:, :-1].float()
    target = labels[:, 1:]
    mask = target != IGNORE
    logp = -F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
    return (logp * mask).sum(1), mask.sum(1)


@torch.no_grad()
def option_logprobs(model, tokenizer, items, batch_size: int = 128) -> torch.Tensor:
    """Summed log-likelihood of each option (``" " + value``) given the item's prompt: (items, options)."""
    prompts = [it.prompt for it in items for _ in it.options]
    conts = [" " + opt for it in items for opt in it.options]
    sums, _ = sequence_logprobs(model, tokenizer, prompts, conts, batch_size)
    return sums.view(len(items), len(items[0].options))


@torch.no_grad()
def mcq_accuracy(model, tokenizer, items, batch_size: int = 128) -> float:
    """Accuracy over items with ``prompt``, ``options`` (list of values) and ``label``."""
    items = list(items)
    if not items:
        raise ValueError("mcq_accuracy on an empty item list")
    pred = option_logprobs(model, tokenizer, items, batch_size).argmax(1)
    gold = torch.tensor([it.label for it in items])
    return (pred == gold).float().mean().item()


@torch.no_grad()
def mcq_scores(model, tokenizer, items, batch_size: int = 128) -> tuple[float, list[float]]:
    """MCQ accuracy and, per item, the probability of the correct option among the options."""
    items = list(items)
    if not items:
        raise ValueError("MCQ scoring on an empty fact list")
    lp = option_logprobs(model, tokenizer, items, batch_size)
    label = torch.tensor([it.label for it in items])
    acc = (lp.argmax(1) == label).float().mean().item()
    probs = lp.softmax(1).gather(1, label[:, None])[:, 0]
    return acc, [round(float(p), 6) for p in probs]


@torch.no_grad()
def exact_match(model, tokenizer, items, max_new_tokens: int = 8, batch_size: int = 64) -> float:
    items = list(items)
    device = _model_device(model)
    pad = pad_id_of(tokenizer)
    was_training = model.training
    model.eval()
    hits = 0
    for start in range(0, len(items), batch_size):
        chunk = items[start:start + batch_size]
        enc = [Encoded(prompt_ids(tokenizer, it.prompt), []) for it in chunk]
        for e in enc:
            e.labels = [IGNORE] * len(e.input_ids)
        batch = pad_batch(enc, pad, side="left")
        out = model.generate(input_ids=batch["input_ids"].to(device),
                             attention_mask=batch["attention_mask"].to(device),
                             max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=pad,
                             eos_token_id=tokenizer.eos_token_id)
        texts = tokenizer.batch_decode(out[:, batch["input_ids"].shape[1]:], skip_special_tokens=True)
        for it, text in zip(chunk, texts, strict=True):
            words = text.strip().split()
            hits += bool(words) and words[0].rstrip(".") == it.value
    model.train(was_training)
    return hits / len(items)
