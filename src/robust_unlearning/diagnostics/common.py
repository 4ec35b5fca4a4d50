"""Shared pieces of the diagnostics: the forget-loss closure over a model's parameters."""

from __future__ import annotations

import contextlib
import random
from typing import Callable, Iterator

import torch

from ..data.collate import Collator
from ..objectives.base import mean_nll
from ..world.benchmark import qa_records
from ..world.generator import World


def forget_batch(tokenizer, world: World | list[dict], max_samples: int | None = 64, seed: int = 0,
                 max_length: int = 256) -> dict:
    """The forget-evaluation QA pairs of a world (answer tokens are targets), or forget records of a
    benchmark or file (``text`` or ``question`` + ``answer``), at most ``max_samples``."""
    if isinstance(world, list):
        records = world
        if max_samples is not None and len(records) > max_samples:
            records = random.Random(seed).sample(records, max_samples)
        if not records:
            raise ValueError("the forget set is empty")
        return Collator(tokenizer, max_length)(records)
    facts = list(world.forget_eval)
    if max_samples is not None and len(facts) > max_samples:
        facts = random.Random(seed).sample(facts, max_samples)
    if not facts:
        raise ValueError("the world has no forget-evaluation facts")
    return Collator(tokenizer)(qa_records(facts))


def parameters(model) -> list[torch.nn.Parameter]:
    """All floating-point parameters (tied weights once)."""
    return [p for p in model.parameters() if p.is_floating_point()]


@contextlib.contextmanager
def eager_attention(model) -> Iterator[None]:
    """Switch HF attention to the eager kernel (fused SDPA kernels have no double backward)."""
    cfg = getattr(model, "config", None)
    prev = getattr(cfg, "_attn_implementation", None)
    switch = prev not in (None, "eager") and hasattr(model, "set_attn_implementation")
    if switch:
        model.set_attn_implementation("eager")
    try:
        yield
    finally:
        if switch:
            model.set_attn_implementation(prev)


@contextlib.contextmanager
def evaluation_mode(model) -> Iterator[None]:
    was = model.training
    model.eval()
    try:
        yield
    finally:
        model.train(was)


def forget_loss_fn(model, batch: dict) -> Callable[[], torch.Tensor]:
    from ..metrics.scoring import model_device

    device = model_device(model)
    batch = {k: v.to(device) for k, v in batch.items()}
    return lambda: mean_nll(model, batch)


@contextlib.contextmanager
def saved_weights(params: list[torch.Tensor]) -> Iterator[list[torch.Tensor]]:
    """Yield copies of the weights and restore them on exit, whatever happened in between."""
    w0 = [p.detach().clone() for p in params]
    try:
        yield w0
    finally:
        with torch.no_grad():
            for p, w in zip(params, w0, strict=False):
                p.copy_(w)


def global_norm(ts: list[torch.Tensor]) -> torch.Tensor:
    return torch.sqrt(sum((t.float() ** 2).sum() for t in ts))
