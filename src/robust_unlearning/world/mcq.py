"""The world's multiple-choice and exact-match scores, through the shared scorer
(:mod:`robust_unlearning.metrics.scoring`).

MCQ over a fact's options (items with ``prompt``, ``options`` — values — and ``label``): the score of
an option is the summed log-likelihood of ``" " + value`` given the prompt (lm-eval-harness's
``acc``); all (prompt, option) rows go through the model in padded batches. Not WMDP's lettered MCQ
(:func:`robust_unlearning.metrics.mcq.mcq_accuracy`).

Exact match: greedy generation from left-padded prompts; a hit when the generated continuation
starts with the correct value.
"""

from __future__ import annotations

import torch

from ..metrics.scoring import answer_logprobs, greedy_generate

BATCH_SIZE = 128


def option_logprobs(model, tokenizer, items, batch_size: int = BATCH_SIZE) -> torch.Tensor:
    """Summed log-likelihood of each option (``" " + value``) given the item's prompt: (items, options)."""
    prompts = [it.prompt for it in items for _ in it.options]
    conts = [" " + opt for it in items for opt in it.options]
    sums, _ = answer_logprobs(model, tokenizer, prompts, conts, batch_size=batch_size)
    return sums.float().view(len(items), len(items[0].options))  # fp32 sums, as computed


def fact_mcq_scores(model, tokenizer, items, batch_size: int = BATCH_SIZE) -> tuple[float, list[float]]:
    """MCQ accuracy and, per item, the probability of the correct option among the options."""
    items = list(items)
    if not items:
        raise ValueError("MCQ scoring on an empty fact list")
    lp = option_logprobs(model, tokenizer, items, batch_size)
    label = torch.tensor([it.label for it in items])
    acc = (lp.argmax(1) == label).float().mean().item()
    probs = lp.softmax(1).gather(1, label[:, None])[:, 0]
    return acc, [round(float(p), 6) for p in probs]


def fact_mcq_accuracy(model, tokenizer, items, batch_size: int = BATCH_SIZE) -> float:
    """MCQ accuracy over the facts' options."""
    return fact_mcq_scores(model, tokenizer, items, batch_size)[0]


def text_nll(model, tokenizer, texts: list[str]) -> float:
    """Per-token NLL over ``texts`` (each after BOS), pooled over all tokens."""
    sums, counts = answer_logprobs(model, tokenizer, [""] * len(texts), texts, batch_size=BATCH_SIZE)
    return float(-sums.float().sum() / counts.float().sum().clamp(min=1))


def exact_match(model, tokenizer, items, max_new_tokens: int = 8, batch_size: int = 64) -> float:
    """Share of items whose greedy continuation starts with the item's value."""
    items = list(items)
    texts = greedy_generate(model, tokenizer, [it.prompt for it in items], max_new_tokens, batch_size)
    hits = 0
    for it, text in zip(items, texts, strict=True):
        words = text.split()
        hits += bool(words) and words[0].rstrip(".") == it.value
    return hits / len(items)
