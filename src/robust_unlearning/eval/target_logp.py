"""Log-probabilities of the target tokens only, without the full-vocabulary logits of every position.

Scoring an MCQ option or an answer needs ``log P(token)`` at a few answer positions, yet
``model(...).logits`` projects every position of every row onto the vocabulary: on SmolLM2 (49 k
tokens) a batch of 128 rows × 64 tokens is 1.6 GB of float32 logits, and the projection is most of
the forward's cost. For the model families whose output is exactly ``lm_head(decoder(x))``
(``FAST_FAMILIES``: no logit soft-capping or scaling) the head is applied at the target positions
only; every other model takes the full-logits path. Both give the same values up to float rounding
(tests/test_target_logp.py).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..data.collate import IGNORE

# output = lm_head(final-norm hidden states), nothing after the head (Gemma's soft-capping, Cohere's
# logit_scale and Granite's logits_scaling are why this is a list and not a duck-typed check)
FAST_FAMILIES = frozenset({"llama", "mistral", "qwen2", "qwen3", "phi3", "olmo", "olmo2"})


def _split(model):
    cfg = getattr(model, "config", None)
    if getattr(cfg, "model_type", None) not in FAST_FAMILIES:
        return None
    if hasattr(model, "get_base_model"):  # a peft wrapper: its adapters live inside the base model
        model = model.get_base_model()
    decoder, head = getattr(model, "model", None), getattr(model, "lm_head", None)
    if decoder is None or hasattr(decoder, "lm_head") or not isinstance(head, torch.nn.Linear):
        return None
    return decoder, head


def target_logprobs(model, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-position ``log P(labels[t+1] | ids[:t+1])`` (float32, 0 where masked) and the target mask,
    both ``(batch, length - 1)``; ``labels`` uses ``IGNORE`` for positions not scored."""
    target = labels[:, 1:]
    mask = target != IGNORE
    split = _split(model)
    if split is None:
        logits = model(input_ids=input_ids, attention_mask=attention_mask).logits[:, :-1].float()
        logp = -F.cross_entropy(logits.transpose(1, 2), target.clamp(min=0), reduction="none")
        return logp * mask, mask
    decoder, head = split
    hidden = decoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state[:, :-1]
    out = torch.zeros(mask.shape, dtype=torch.float32, device=hidden.device)
    out[mask] = -F.cross_entropy(head(hidden[mask]).float(), target[mask], reduction="none")
    return out, mask


def target_nll(model, batch: dict) -> torch.Tensor:
    """Mean NLL over the target tokens of a batch (``input_ids``, ``attention_mask``, ``labels``): the
    value of ``model(**batch).loss`` for a causal LM, with gradient, computing the output layer at the
    target positions only where :func:`target_logprobs` may."""
    split = _split(model)
    if split is None:
        return model(**batch).loss
    decoder, head = split
    hidden = decoder(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
    target = batch["labels"][:, 1:]
    keep = target != IGNORE
    return F.cross_entropy(head(hidden[:, :-1][keep]).float(), target[keep])
