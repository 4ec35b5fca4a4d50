"""The unlearning loop, readable top to bottom (torchtune-recipe style).

    objective        what to minimise: forget loss ℓ_f and retain loss ℓ_r, separately
    strategy         how to step: turns loss closures into the update left in .grad
    parameterization what is trained: full weights, LoRA, bounded LoRA

Per optimizer step (:func:`train_step`): zero grads -> ``strategy.compute`` (may run several passes
over the accumulation group) -> finite check -> clip -> optimizer step -> scheduler step ->
``strategy.after_step``; then log and checkpoint. After the last step ``strategy.finalize`` may
replace the weights (weight averaging). A non-finite loss or gradient stops the run with its step
number before the optimizer step, so no checkpoint ever holds weights from a non-finite update.
Several processes: :mod:`.distributed`; mixed precision: :mod:`.precision`; resume: :mod:`.checkpoint`.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Callable

import torch

from . import checkpoint as ckpt
from . import precision, trackers
from .best import BestKeeper
from .config import RunConfig
from .data.chat import set_chat_template
from .data.collate import Collator
from .data.stream import BatchStream
from .distributed import ONE_PROCESS, Collectives, collectives_for, cpu_only, gathered_model
from .errors import NonFiniteLossError, UnlearnError
from .method import Method, parse_method
from .objectives.base import OBJECTIVES
from .parameterizations.base import PARAMETERIZATIONS
from .progress import progress
from .strategies.base import STRATEGIES, Losses, MicroBatch, StepContext

__all__ = ["UnlearnResult", "cpu_only", "train_step", "unlearn"]

# settings a resumed run may change without invalidating its checkpoints
_RESUMABLE_CHANGES = {"output_dir", "save", "evaluate"}
_RESUMABLE_TRAIN_CHANGES = {"checkpoint_every", "checkpoint_dir", "keep_checkpoints", "report_to", "log_dir"}


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


# Longer than 80 lines on purpose (torchtune-recipe style): the whole recipe reads top to bottom in one
# place; each step of it is one call (train_step, precision, distributed, checkpoint).
def unlearn(model, tokenizer, forget: list[dict], retain: list[dict] | None, cfg: RunConfig,
            metrics_path: Path | None = None, desc: str | None = None,
            resume: bool = False,
            evaluate_fn: Callable[[torch.nn.Module], dict] | None = None) -> UnlearnResult:
    """``evaluate_fn(model) -> {name: value}``: with ``train.eval_every``, called every that many steps
    and after the last (under no_grad, the model in eval mode, on every process), its values stored
    as ``eval`` in that step's log entry: the course of forgetting during training. It sees the
    current iterate (for ``wa``, not yet the average)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, set_seed
    from transformers import get_scheduler

    tc = cfg.train
    method, objective, strategy, param = _components(cfg, forget, retain)
    # split_batches: the scheduler steps once per optimizer step (the Accelerator(split_batches=...)
    # argument itself is ignored by accelerate 1.x; only the DataLoaderConfiguration counts)
    report_to = trackers.parse(tc.report_to)
    accelerator = Accelerator(mixed_precision=tc.mixed_precision, cpu=cpu_only(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True),
                              log_with=report_to or None, project_dir=tc.log_dir if report_to else None)
    dist = collectives_for(accelerator, strategy, method, tc)
    set_seed(tc.seed)

    # -- model, reference, trainable parameters ---------------------------------------------------
    model, reference = _prepare_model(model, objective, param, method, tc)
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    precision.master_weights(params, tc.mixed_precision)  # perturbations and restores stay exact
    strategy.setup(params)

    # -- data, optimizer, schedule ---------------------------------------------------------------
    if cfg.data.chat_template != "auto":  # recorded on the tokenizer: evaluation and attacks follow
        set_chat_template(tokenizer, cfg.data.chat_template)
    collate = Collator(tokenizer, tc.max_length, alternates=objective.uses_alternates)
    shard = {"rank": accelerator.process_index, "world": accelerator.num_processes,
             "device": accelerator.device}
    forget_stream = BatchStream(forget, tc.batch_size, collate, tc.seed, name="forget", **shard)
    retain_stream = (BatchStream(retain, tc.retain_batch_size or tc.batch_size, collate, tc.seed + 1,
                                 name="retain", **shard) if objective.has_retain_loss else None)
    streams = [s for s in (forget_stream, retain_stream) if s is not None]
    steps = tc.steps or max(1, math.ceil(tc.epochs * len(forget_stream) / tc.grad_accum))
    # fused: one kernel for the whole update (≈5× faster on the CPU for the world model; rounding
    # differs from the per-tensor AdamW by about an ulp per step), the default where gradients are
    # whole tensors; train.fused_optimizer: false reproduces figures measured before it was
    fused = tc.fused_optimizer if tc.fused_optimizer is not None else not dist.sharded
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay,
                                  fused=True if fused else None)
    scheduler = get_scheduler(tc.scheduler, optimizer, num_warmup_steps=tc.warmup_steps,
                              num_training_steps=steps)
    plain_cls = type(model)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if dist.fsdp:  # fully_shard replaced the parameters by sharded (DTensor) ones
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        strategy.setup(params)
    prec = precision.Precision(accelerator, model, params, dist)
    losses = Losses.of(objective, model, reference, prec.autocast, prec.backward,
                       lambda: next(forget_stream), lambda: next(retain_stream) if retain_stream else None)

    # -- resume ------------------------------------------------------------------------------------
    run = ckpt.RunState(ckpt.fingerprint(_fingerprint_config(cfg)), named, optimizer, scheduler,
                        strategy, objective, forget_stream, retain_stream, prec.scaler, accelerator.device)
    done = ckpt.start(tc.checkpoint_dir, resume, bool(tc.checkpoint_every), accelerator.is_main_process, run)
    accelerator.wait_for_everyone()  # every process has read it before any writes the next
    start_step, log, elapsed_before = done.step, done.log, done.seconds
    best = BestKeeper(tc.keep_best, resumed=bool(start_step))

    # -- the loop ------------------------------------------------------------------------------
    model.train()
    bar = progress(total=steps, initial=start_step, desc=desc or f"unlearn {method.name}")
    metrics_file = _RunLog(metrics_path if accelerator.is_main_process else None, log, accelerator, report_to,
                           cfg.model_dump(), desc or method.name)
    start = time.perf_counter()
    with ckpt.naming_last_good(tc.checkpoint_dir), bar, metrics_file:
        for step in range(start_step, steps):
            micro = [MicroBatch(next(forget_stream), next(retain_stream) if retain_stream else None)
                     for _ in range(tc.grad_accum)]
            make_ctx = partial(StepContext, model, params, micro, losses,
                               gamma=objective.retain_weight(tc.gamma),
                               lr=scheduler.get_last_lr()[0], step=step, total_steps=steps, collectives=dist,
                               forward_dtypes=prec.forward_dtypes, exact_forward=prec.exact_forward)
            ctx, grad_norm, passes = train_step(
                strategy, make_ctx, optimizer, params, step, scheduler=scheduler, streams=streams,
                max_grad_norm=tc.max_grad_norm, clip=accelerator.clip_grad_norm_, collectives=dist,
                scaler=prec.scaler)
            done.passes += passes
            stats = dist.mean_stats(ctx.stats)
            objective_stats = objective.after_step(stats)  # e.g. PDU's dual update, from this step's losses
            entry = {"step": step + 1, **{k: v for k, v in stats.items() if v is not None},
                     "grad_norm": grad_norm, "lr": ctx.lr, "passes": ctx.passes, **param.step_stats(model),
                     **objective_stats}
            if evaluate_fn is not None and tc.eval_every and ((step + 1) % tc.eval_every == 0
                                                               or step + 1 == steps):
                entry["eval"] = _evaluate(evaluate_fn, model, accelerator)
                best.update(step + 1, entry["eval"], params)
            log.append(entry)
            metrics_file.write(entry)
            bar.update(1)
            if "forget_loss" in stats:
                bar.set_postfix(f=f"{stats['forget_loss']:.3f}")
            if tc.checkpoint_every and ((step + 1) % tc.checkpoint_every == 0 or step + 1 == steps):
                if accelerator.is_main_process:
                    done.step, done.seconds = step + 1, elapsed_before + time.perf_counter() - start
                    run.save(tc.checkpoint_dir, done, keep=tc.keep_checkpoints)
                accelerator.wait_for_everyone()
    strategy.finalize(params)
    kept = best.restore(params)
    elapsed = elapsed_before + time.perf_counter() - start
    model = accelerator.unwrap_model(model)
    if dist.fsdp:  # the main process gets a plain model (what it writes)
        model = gathered_model(model, plain_cls, accelerator.is_main_process)
    model.eval()
    metrics = _run_metrics(method, tc, steps, elapsed, done.passes, start_step, log, params,
                           forget_stream, retain_stream, accelerator.num_processes, kept)
    return UnlearnResult(model, method, param, metrics, log)


def train_step(strategy, make_ctx: Callable[[], StepContext], optimizer, params, step: int, *,
               scheduler=None, max_grad_norm: float | None = None, clip=torch.nn.utils.clip_grad_norm_,
               collectives: Collectives = ONE_PROCESS, scaler=None, streams=()):
    """One optimizer step: the strategy's update into ``.grad`` (redone at a smaller loss scale on
    an fp16 overflow), finite check, clip, optimizer and scheduler step, ``after_step``. Returns
    ``(ctx, global gradient norm, passes run including abandoned tries)``."""
    ctx, wasted = precision.compute(strategy, make_ctx, optimizer, step, scaler, streams)
    grad_norm = collectives.grad_norm(params)
    if not math.isfinite(grad_norm):
        raise NonFiniteLossError("gradient", step)
    precision.rescale(params, scaler)
    if max_grad_norm and scaler is None and not collectives.sharded:
        # the norm just computed is the one clipping would compute (float32, exactly): scale by it
        # instead of a second pass over the gradients (bitwise torch's clip_grad_norm_)
        total = torch.tensor(grad_norm, dtype=torch.float32)
        torch.nn.utils.clip_grads_with_norm_([p for p in params if p.grad is not None], max_grad_norm, total)
    elif max_grad_norm:
        clip(params, max_grad_norm)
    optimizer.step()
    if scheduler is not None:
        scheduler.step()
    strategy.after_step(ctx)
    return ctx, grad_norm, wasted + ctx.passes


def _run_metrics(method, tc, steps, elapsed, passes, start_step, log, params, forget_stream,
                 retain_stream, processes, best: dict | None = None) -> dict:
    metrics = {
        "method": method.name, "steps": steps, "seconds": round(elapsed, 3),
        "passes_per_step": passes / (steps * tc.grad_accum),
        # budget accounting: what the run consumed, to compare methods at matched budget
        "passes": passes,
        "forget_samples": forget_stream.samples_drawn(),
        "retain_samples": retain_stream.samples_drawn() if retain_stream is not None else 0,
        "trainable_parameters": sum(p.numel() for p in params),
        "final_forget_loss": log[-1].get("forget_loss") if log else None,
        "final_retain_loss": log[-1].get("retain_loss") if log else None,
        "processes": processes,
    }
    if start_step:
        metrics["resumed_from_step"] = start_step
    if best:  # train.keep_best: the saved weights are this evaluated step's
        metrics["best"] = best
    return metrics


def _components(cfg: RunConfig, forget, retain):
    """``(method, objective, strategy, parameterization)`` of the config; refuses bad inputs."""
    if not forget:
        raise UnlearnError("the forget set is empty")
    method = parse_method(cfg.method)
    objective = OBJECTIVES.build(method.objective, cfg.objective)
    strategy = STRATEGIES.build(method.strategy, cfg.strategy)
    param = PARAMETERIZATIONS.build(method.parameterization, cfg.parameterization)
    if objective.has_retain_loss and not retain:
        raise UnlearnError(f"objective {method.objective!r} needs retain data, and none was given")
    if cfg.train.checkpoint_every and not cfg.train.checkpoint_dir:
        raise UnlearnError("train.checkpoint_every needs train.checkpoint_dir")
    if trackers.parse(cfg.train.report_to) and not cfg.train.log_dir:
        raise UnlearnError("train.report_to needs train.log_dir (unlearn run sets <output_dir>.log)")
    if cfg.train.keep_best and not cfg.train.eval_every:
        raise UnlearnError("train.keep_best needs train.eval_every (the evaluations it compares)")
    if cfg.train.keep_best and method.strategy == "wa":
        raise UnlearnError("train.keep_best picks one evaluated iterate; the wa strategy averages them: "
                           "use one or the other")
    return method, objective, strategy, param


def _prepare_model(model, objective, param, method: Method, tc):
    """The model to train (adapter-wrapped by the parameterization) and the objective's frozen
    reference (``None`` where it needs none)."""
    try:
        objective.setup(model)
    except ValueError as exc:
        raise UnlearnError(f"objective {method.objective!r}: {exc}") from exc
    if tc.gradient_checkpointing:  # on the base model, before any adapter wrapping
        enable = getattr(model, "activation_checkpointing_enable", None)  # transformers >= 5.x
        if enable is not None:
            enable({"use_reentrant": False})
        else:
            model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        model.config.use_cache = False
    model = param.prepare(model, objective)
    return model, (param.reference(model) if objective.needs_reference else None)


def _evaluate(evaluate_fn, model, accelerator) -> dict:
    model.eval()
    with torch.no_grad():
        out = evaluate_fn(accelerator.unwrap_model(model))
    model.train()
    return out


class _RunLog:
    """Each step's entry to ``metrics.jsonl`` (flushed: readable while the run goes; the resumed log
    first) and, with ``train.report_to``, to the trackers; a no-op without a path or trackers."""

    def __init__(self, path: Path | None, log: list[dict], accelerator=None, report_to=(), config=None,
                 run_name: str = "run"):
        self.fh = open(path, "w") if path is not None else None
        self.accelerator = accelerator if report_to else None
        trackers.start(accelerator, list(report_to), config or {}, run_name)
        if self.fh:
            self.fh.writelines(json.dumps(e) + "\n" for e in log)
            self.fh.flush()

    def write(self, entry: dict) -> None:
        if self.fh:
            self.fh.write(json.dumps(entry) + "\n")
            self.fh.flush()
        if self.accelerator is not None:
            self.accelerator.log(trackers.scalars(entry), step=entry["step"])

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        if self.fh:
            self.fh.close()
        if self.accelerator is not None:
            self.accelerator.end_training()


def _fingerprint_config(cfg: RunConfig) -> dict:
    data = cfg.model_dump()
    for k in _RESUMABLE_CHANGES:
        data.pop(k, None)
    for k in _RESUMABLE_TRAIN_CHANGES:
        data["train"].pop(k, None)
    return data
