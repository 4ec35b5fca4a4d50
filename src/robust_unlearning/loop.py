"""The unlearning loop. One function, readable top to bottom (torchtune-recipe style).

    objective       what to minimise: forget loss ℓ_f and retain loss ℓ_r, separately
    strategy        how to step: turns loss closures into the update left in .grad
    parameterization what is trained: full weights, LoRA, bounded LoRA

Built on accelerate (device placement, mixed precision, several processes). Per optimizer step:
zero grads -> strategy.compute (may run several passes over the accumulation group) -> finite check
-> clip -> optimizer step -> scheduler step -> strategy.after_step -> log. After the last step
``strategy.finalize`` may replace the weights (weight averaging).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import torch
from torch.utils.data import DataLoader

from .config import RunConfig
from .data.collate import Collator
from .errors import NonFiniteLossError, UnlearnError
from .method import Method, parse_method
from .objectives.base import OBJECTIVES
from .parameterizations.base import PARAMETERIZATIONS, trainable_parameters
from .progress import progress
from .strategies.base import STRATEGIES, MicroBatch, StepContext


@dataclass
class UnlearnResult:
    model: torch.nn.Module  # the trained model (possibly adapter-wrapped)
    method: Method
    parameterization: object
    metrics: dict
    log: list[dict] = field(default_factory=list)

    def export(self) -> torch.nn.Module:
        """A plain causal LM with the training folded in."""
        return self.parameterization.export(self.model)


def _cycle(loader: DataLoader) -> Iterator[dict]:
    while True:
        yield from loader


def _loader(records: list[dict], batch_size: int, collate: Collator, seed: int) -> DataLoader:
    g = torch.Generator().manual_seed(seed)
    return DataLoader(records, batch_size=min(batch_size, len(records)), shuffle=True,
                      collate_fn=collate, generator=g, drop_last=False)


def unlearn(model, tokenizer, forget: list[dict], retain: list[dict] | None, cfg: RunConfig,
            metrics_path: Path | None = None, desc: str | None = None) -> UnlearnResult:
    from accelerate import Accelerator
    from accelerate.utils import set_seed
    from transformers import get_scheduler

    tc = cfg.train
    if not forget:
        raise UnlearnError("the forget set is empty")
    method = parse_method(cfg.method)
    objective = OBJECTIVES.build(method.objective, cfg.objective)
    strategy = STRATEGIES.build(method.strategy, cfg.strategy)
    param = PARAMETERIZATIONS.build(method.parameterization, cfg.parameterization)
    use_retain = objective.has_retain_loss
    if use_retain and not retain:
        raise UnlearnError(f"objective {method.objective!r} needs retain data, and none was given")
    set_seed(tc.seed)

    # -- model, reference, trainable parameters -------------------------------------------------
    objective.setup(model)
    model = param.prepare(model, objective)
    reference = param.reference(model) if objective.needs_reference else None
    params = trainable_parameters(model)
    if tc.mixed_precision != "no":  # fp32 master weights: perturbations and restores stay exact
        for p in params:
            p.data = p.data.float()
    strategy.setup(params)

    # -- data, optimizer, schedule -----------------------------------------------------------------
    collate = Collator(tokenizer, tc.max_length)
    forget_loader = _loader(forget, tc.batch_size, collate, tc.seed)
    retain_loader = (_loader(retain, tc.retain_batch_size or tc.batch_size, collate, tc.seed + 1)
                     if use_retain else None)
    steps = tc.steps or max(1, math.ceil(tc.epochs * len(forget_loader) / tc.grad_accum))
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay)
    scheduler = get_scheduler(tc.scheduler, optimizer, num_warmup_steps=tc.warmup_steps,
                              num_training_steps=steps)

    accelerator = Accelerator(mixed_precision=tc.mixed_precision)
    model, optimizer, scheduler, forget_loader = accelerator.prepare(model, optimizer, scheduler,
                                                                     forget_loader)
    if retain_loader is not None:
        retain_loader = accelerator.prepare(retain_loader)
    forget_iter = _cycle(forget_loader)
    retain_iter = _cycle(retain_loader) if retain_loader is not None else None

    def forget_loss(batch):
        with accelerator.autocast():
            return objective.forget_loss(model, batch, reference)

    def retain_loss(batch):
        with accelerator.autocast():
            return objective.retain_loss(model, batch, reference)

    def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
        return accelerator.reduce(t, reduction="sum") if accelerator.num_processes > 1 else t

    # -- the loop ------------------------------------------------------------------------------
    log: list[dict] = []
    total_passes = 0
    model.train()
    bar = progress(total=steps, desc=desc or f"unlearn {method.name}")
    metrics_file = open(metrics_path, "w") if metrics_path is not None else None
    start = time.perf_counter()
    try:
        for step in range(steps):
            micro = [MicroBatch(next(forget_iter), next(retain_iter) if retain_iter else None)
                     for _ in range(tc.grad_accum)]
            optimizer.zero_grad(set_to_none=True)
            ctx = StepContext(
                model=model, params=params, micro=micro, forget_loss_fn=forget_loss,
                retain_loss_fn=retain_loss, backward_fn=accelerator.backward,
                next_forget=lambda: next(forget_iter),
                next_retain=lambda: next(retain_iter) if retain_iter else None,
                gamma=tc.gamma, lr=scheduler.get_last_lr()[0], step=step,
                all_reduce_sum=all_reduce_sum,
            )
            strategy.compute(ctx)
            grad_norm = _grad_norm(params)
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError("gradient", step)
            if tc.max_grad_norm:
                accelerator.clip_grad_norm_(params, tc.max_grad_norm)
            optimizer.step()
            scheduler.step()
            strategy.after_step(ctx)
            total_passes += ctx.passes
            entry = {"step": step + 1, **{k: v for k, v in ctx.stats.items() if v is not None},
                     "grad_norm": grad_norm, "lr": ctx.lr, "passes": ctx.passes,
                     **param.step_stats(model)}
            log.append(entry)
            if metrics_file:
                metrics_file.write(json.dumps(entry) + "\n")
            bar.update(1)
            if "forget_loss" in ctx.stats:
                bar.set_postfix(f=f"{ctx.stats['forget_loss']:.3f}")
    finally:
        bar.close()
        if metrics_file:
            metrics_file.close()
    strategy.finalize(params)
    elapsed = time.perf_counter() - start
    model = accelerator.unwrap_model(model)
    model.eval()
    metrics = {
        "method": method.name, "steps": steps, "seconds": round(elapsed, 3),
        "passes_per_step": total_passes / (steps * tc.grad_accum),
        "trainable_parameters": sum(p.numel() for p in params),
        "final_forget_loss": log[-1].get("forget_loss") if log else None,
        "final_retain_loss": log[-1].get("retain_loss") if log else None,
    }
    return UnlearnResult(model, method, param, metrics, log)


def _grad_norm(params) -> float:
    with torch.no_grad():
        sq = sum(p.grad.float().pow(2).sum() for p in params if p.grad is not None)
    return float(torch.as_tensor(sq).sqrt())
