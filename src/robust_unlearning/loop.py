"""The unlearning loop. One function, readable top to bottom (torchtune-recipe style).

    objective       what to minimise: forget loss ℓ_f and retain loss ℓ_r, separately
    strategy        how to step: turns loss closures into the update left in .grad
    parameterization what is trained: full weights, LoRA, bounded LoRA

Built on accelerate (device placement, mixed precision, several processes). Per optimizer step:
zero grads -> strategy.compute (may run several passes over the accumulation group) -> finite check
-> clip -> optimizer step -> scheduler step -> strategy.after_step -> log -> checkpoint. After the
last step ``strategy.finalize`` may replace the weights (weight averaging).

Several processes (``accelerate launch`` / ``torchrun`` with DDP). N processes compute the update
one process computes on the same *global* batch: ``train.batch_size`` is the global batch. The data
comes from :class:`~.data.stream.BatchStream`, not from accelerate's prepared DataLoader: every
process draws the same seeded global batch and keeps its slice (what accelerate's
``split_batches=True`` does; that is also set, through ``DataLoaderConfiguration``, so that the
prepared scheduler steps once per optimizer step, not N times); DDP averages the gradients in every
backward pass, so after each ``backward`` every process holds the gradient of the global batch.
Hence the global quantities of the strategies (SAM's ‖g‖, StableUN's dot products and norms,
realised perturbation fractions) are computed from identical, replicated tensors and agree on all
processes; their ``all_reduce_sum`` is the identity under DDP and a sum only where gradients are
partitioned (DeepSpeed ZeRO: there only the plain strategy is supported, without checkpoints;
FSDP2: plain, sam and stableun on full weights, without checkpoints, local sums over the parameter
shards, the full state dict gathered at the end for the main process's output). Gradients taken
with ``torch.autograd.grad`` (gp, cr: double backward) bypass DDP's averaging; those strategies
average them through ``ctx.average_grads`` (one all-reduce; the identity in one process) and send
every contribution to the update through ``backward``.
Configs for ``accelerate launch``: ``configs/accelerate/``. Noise (RS, StableUN's gpn) and rule
draws come from generators seeded by (seed, step), never from the global RNG, so every process
draws the same. Logged float statistics are averaged over processes; only the main process
writes the metrics log and checkpoints.

Mixed precision fp16 (on an accelerator; accelerate ignores fp16 on the CPU): accelerate's GradScaler
scales every loss by S. Each backward's contribution is divided by S as it arrives, so strategies
and logs see true gradients; an overflow redoes the step at S/2 on the same batches; the update is
multiplied by S again before accelerate's clip and optimizer step, which unscale it exactly once.

Checkpoints (``train.checkpoint_every``): the trainable weights, optimizer, scheduler, strategy
state, RNG states and the data streams' positions (see :mod:`.checkpoint`); ``resume=True``
continues from the newest one bit-identically. A fresh run (``resume=False``) clears the directory's
old checkpoints. A non-finite loss or gradient stops the run with its step number before the
optimizer step, so no checkpoint ever holds weights from a non-finite update.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch

from . import checkpoint as ckpt
from .config import RunConfig
from .data.chat import set_chat_template
from .data.collate import Collator
from .data.stream import BatchStream
from .errors import NonFiniteLossError, UnlearnError
from .method import Method, parse_method
from .objectives.base import OBJECTIVES
from .parameterizations.base import PARAMETERIZATIONS
from .progress import progress
from .strategies.base import STRATEGIES, MicroBatch, StepContext

# settings a resumed run may change without invalidating its checkpoints
_RESUMABLE_CHANGES = {"output_dir", "save", "evaluate"}
_RESUMABLE_TRAIN_CHANGES = {"checkpoint_every", "checkpoint_dir", "keep_checkpoints"}


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


def unlearn(model, tokenizer, forget: list[dict], retain: list[dict] | None, cfg: RunConfig,
            metrics_path: Path | None = None, desc: str | None = None,
            resume: bool = False,
            evaluate_fn: Callable[[torch.nn.Module], dict] | None = None) -> UnlearnResult:
    """``evaluate_fn(model) -> {name: value}``: with ``train.eval_every``, called every that many steps
    and after the last (under no_grad, the model in eval mode, on every process), its values stored
    as ``eval`` in that step's log entry: the course of forgetting during training. It sees the
    current iterate (for ``wa``, not yet the average)."""
    from accelerate import Accelerator
    from accelerate.utils import DataLoaderConfiguration, DistributedType, set_seed
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
    if tc.checkpoint_every and not tc.checkpoint_dir:
        raise UnlearnError("train.checkpoint_every needs train.checkpoint_dir")
    # split_batches: the scheduler steps once per optimizer step (the Accelerator(split_batches=...)
    # argument itself is ignored by accelerate 1.x; only the DataLoaderConfiguration counts)
    accelerator = Accelerator(mixed_precision=tc.mixed_precision, cpu=cpu_only(),
                              dataloader_config=DataLoaderConfiguration(split_batches=True))
    fsdp = accelerator.distributed_type == DistributedType.FSDP
    if fsdp:
        _check_fsdp(accelerator, method, tc)
    deepspeed = accelerator.distributed_type == DistributedType.DEEPSPEED
    sharded = deepspeed or fsdp  # gradients partitioned: global sums are sums over processes
    if deepspeed and method.strategy != "plain":
        raise UnlearnError(f"strategy {method.strategy!r} reads and perturbs along the full gradient, "
                           "which DeepSpeed partitions; run it with DDP (configs/accelerate/ddp.yaml)")
    if deepspeed and tc.checkpoint_every:
        raise UnlearnError("train.checkpoint_every is not supported under DeepSpeed (partitioned "
                           "optimizer state); use DDP")
    set_seed(tc.seed)

    # -- model, reference, trainable parameters -------------------------------------------------
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
    reference = param.reference(model) if objective.needs_reference else None
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    params = [p for _, p in named]
    if tc.mixed_precision != "no":  # fp32 master weights: perturbations and restores stay exact
        for p in params:
            p.data = p.data.float()
    strategy.setup(params)

    # -- data, optimizer, schedule -----------------------------------------------------------------
    if cfg.data.chat_template != "auto":  # recorded on the tokenizer: evaluation and attacks follow
        set_chat_template(tokenizer, cfg.data.chat_template)
    collate = Collator(tokenizer, tc.max_length, alternates=objective.uses_alternates)
    shard = {"rank": accelerator.process_index, "world": accelerator.num_processes,
             "device": accelerator.device}
    forget_stream = BatchStream(forget, tc.batch_size, collate, tc.seed, name="forget", **shard)
    retain_stream = (BatchStream(retain, tc.retain_batch_size or tc.batch_size, collate, tc.seed + 1,
                                 name="retain", **shard) if use_retain else None)
    steps = tc.steps or max(1, math.ceil(tc.epochs * len(forget_stream) / tc.grad_accum))
    # fused: one kernel for the whole update (≈5× faster on the CPU for the world model); its float
    # rounding differs from the default's, so it is opt-in and recorded results use the default
    optimizer = torch.optim.AdamW(params, lr=tc.lr, weight_decay=tc.weight_decay,
                                  fused=True if tc.fused_optimizer else None)
    scheduler = get_scheduler(tc.scheduler, optimizer, num_warmup_steps=tc.warmup_steps,
                              num_training_steps=steps)
    plain_cls = type(model)
    model, optimizer, scheduler = accelerator.prepare(model, optimizer, scheduler)
    if fsdp:  # fully_shard replaced the parameters by sharded (DTensor) ones
        named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        params = [p for _, p in named]
        strategy.setup(params)

    # bf16/fp16 autocast casts the float32 masters of the weights it multiplies: a perturbation the
    # cast rounds away is not seen by the forward; strategies then run the passes at the perturbed
    # point with autocast off (exact_forward), on the masters (strategies/perturb.py)
    forward_dtypes, exact_forward, exact_on = _autocast_plan(accelerator, model, params)

    def amp():
        return (torch.autocast(accelerator.device.type, enabled=False) if exact_on[0]
                else accelerator.autocast())

    def forget_loss(batch):
        with amp():
            loss = objective.forget_loss(model, batch, reference)
        return loss * batch.weight if getattr(batch, "weight", 1.0) != 1.0 else loss

    def retain_loss(batch):
        with amp():
            loss = objective.retain_loss(model, batch, reference)
        return loss * batch.weight if loss is not None and getattr(batch, "weight", 1.0) != 1.0 else loss

    def all_reduce_sum(t: torch.Tensor) -> torch.Tensor:
        """Sum over processes of a quantity over the *local* gradients: only partitioned gradients
        (DeepSpeed) need it; DDP replicates parameters and all-reduces gradients."""
        return accelerator.reduce(t.to(accelerator.device), reduction="sum").cpu() if sharded else t

    def average_grads(ts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Mean over processes of per-process gradients from ``torch.autograd.grad`` (gp, cr): DDP
        averages only what ``backward`` accumulates into ``.grad``. One all-reduce per dtype; the
        identity in one process (and under DeepSpeed, which refuses the strategies that call it)."""
        if accelerator.num_processes == 1 or sharded:
            return ts
        out, by_dtype = list(ts), {}
        for i, t in enumerate(ts):
            by_dtype.setdefault(t.dtype, []).append(i)
        for idx in by_dtype.values():
            flat = torch.cat([ts[i].detach().reshape(-1) for i in idx])
            flat = accelerator.reduce(flat, reduction="mean")
            for i, piece in zip(idx, flat.split([ts[i].numel() for i in idx]), strict=True):
                out[i] = piece.view_as(ts[i])
        return out

    def all_finite(t: torch.Tensor) -> bool:
        """Finite on every process: a non-finite loss on one stops all of them at the same pass (a
        process that stopped alone would leave the others waiting in the gradient all-reduce)."""
        return all_finite_any(bool(torch.isfinite(t).all()))

    def all_finite_any(local_ok: bool) -> bool:
        bad = torch.tensor(0.0 if local_ok else 1.0, device=accelerator.device)
        if accelerator.num_processes > 1:
            bad = accelerator.reduce(bad, reduction="sum")
        return float(bad) == 0.0

    # fp16 on an accelerator: accelerate's GradScaler multiplies every loss by its scale S before
    # backward (accelerate ignores fp16 on the CPU: no scaler, no autocast). The strategies must see
    # true gradients, so each backward's contribution is divided by S (a power of two: exact) as it
    # arrives; an overflow retries the step at S/2. Before clipping and the optimizer step the update
    # is multiplied by S again, so accelerate's clip and scaler.step unscale it exactly once.
    scaler = accelerator.scaler
    backward_fn = (accelerator.backward if scaler is None
                   else _unscaling_backward(accelerator.backward, scaler, params, all_finite_any))

    # -- resume ------------------------------------------------------------------------------------
    log: list[dict] = []
    start_step, total_passes, elapsed_before = 0, 0, 0.0
    fp = ckpt.fingerprint(_fingerprint_config(cfg))
    if tc.checkpoint_dir and resume and (path := ckpt.latest(tc.checkpoint_dir)) is not None:
        start_step, weights, state = ckpt.load(path)
        if state["fingerprint"] != fp:
            raise UnlearnError(f"checkpoint {path} belongs to a run with other settings; resume with the "
                               "config it was written with, or start afresh without --resume")
        with torch.no_grad():
            for n, p in named:
                if n not in weights:
                    raise UnlearnError(f"checkpoint {path} has no weights for {n}")
                p.data.copy_(weights[n].to(p.device, p.dtype))
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        strategy.load_state_dict(ckpt.to_device(state["strategy"], accelerator.device))
        forget_stream.load_state_dict(state["forget_stream"])
        if retain_stream is not None:
            retain_stream.load_state_dict(state["retain_stream"])
        ckpt.set_rng_state(state["rng"])
        if scaler is not None and state.get("scaler"):
            scaler.load_state_dict(state["scaler"])
        log, total_passes, elapsed_before = state["log"], state["total_passes"], state["seconds"]
        accelerator.wait_for_everyone()  # every process has read it before any writes the next
    elif tc.checkpoint_dir and tc.checkpoint_every and accelerator.is_main_process:
        ckpt.clear(tc.checkpoint_dir)  # a fresh run: old checkpoints would be resumed by mistake

    def save_checkpoint(done: int) -> Path | None:
        path = None
        if accelerator.is_main_process:
            state = {
                "fingerprint": fp, "optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(),
                "strategy": strategy.state_dict(), "forget_stream": forget_stream.state_dict(),
                "retain_stream": retain_stream.state_dict() if retain_stream is not None else None,
                "rng": ckpt.rng_state(), "log": log, "total_passes": total_passes,
                "scaler": scaler.state_dict() if scaler is not None else None,
                "seconds": elapsed_before + time.perf_counter() - start,
            }
            path = ckpt.save(tc.checkpoint_dir, done, {n: p for n, p in named}, state,
                             keep=tc.keep_checkpoints)
        accelerator.wait_for_everyone()
        return path

    # -- the loop ------------------------------------------------------------------------------
    model.train()
    bar = progress(total=steps, initial=start_step, desc=desc or f"unlearn {method.name}")
    write_metrics = metrics_path is not None and accelerator.is_main_process
    metrics_file = open(metrics_path, "w") if write_metrics else None
    if metrics_file:
        metrics_file.writelines(json.dumps(e) + "\n" for e in log)
    start = time.perf_counter()
    try:
        for step in range(start_step, steps):
            micro = [MicroBatch(next(forget_stream), next(retain_stream) if retain_stream else None)
                     for _ in range(tc.grad_accum)]
            streams = [s for s in (forget_stream, retain_stream) if s is not None]
            positions = [s.state_dict() for s in streams]  # a redone step redraws the same batches
            while True:
                optimizer.zero_grad(set_to_none=True)
                ctx = StepContext(
                    model=model, params=params, micro=micro, forget_loss_fn=forget_loss,
                    retain_loss_fn=retain_loss, backward_fn=backward_fn,
                    next_forget=lambda: next(forget_stream),
                    next_retain=lambda: next(retain_stream) if retain_stream else None,
                    gamma=tc.gamma, lr=scheduler.get_last_lr()[0], step=step, total_steps=steps,
                    all_reduce_sum=all_reduce_sum, all_finite=all_finite, average_grads=average_grads,
                    forward_dtypes=forward_dtypes, exact_forward=exact_forward,
                )
                try:
                    strategy.compute(ctx)  # perturbations are undone even when it raises
                    break
                except _GradOverflow:  # fp16 only: the scaled gradient overflowed; retry at S/2
                    total_passes += ctx.passes
                    if scaler.get_scale() <= 1.0:
                        raise NonFiniteLossError("gradient", step) from None
                    scaler.update(scaler.get_scale() * scaler.get_backoff_factor())
                    for stream, pos in zip(streams, positions, strict=True):
                        stream.load_state_dict(pos)
            grad_norm = _grad_norm(params, all_reduce_sum)
            if not math.isfinite(grad_norm):
                raise NonFiniteLossError("gradient", step)
            if scaler is not None:  # hand accelerate the scaled update it unscales once (clip / step)
                _scale_grads(params, scaler.get_scale())
            if tc.max_grad_norm:
                accelerator.clip_grad_norm_(params, tc.max_grad_norm)
            optimizer.step()
            scheduler.step()
            strategy.after_step(ctx)
            total_passes += ctx.passes
            stats = _mean_over_processes(accelerator, ctx.stats)
            entry = {"step": step + 1, **{k: v for k, v in stats.items() if v is not None},
                     "grad_norm": grad_norm, "lr": ctx.lr, "passes": ctx.passes,
                     **param.step_stats(model)}
            if evaluate_fn is not None and tc.eval_every and ((step + 1) % tc.eval_every == 0
                                                               or step + 1 == steps):
                model.eval()
                with torch.no_grad():
                    entry["eval"] = evaluate_fn(accelerator.unwrap_model(model))
                model.train()
            log.append(entry)
            if metrics_file:
                metrics_file.write(json.dumps(entry) + "\n")
                metrics_file.flush()
            bar.update(1)
            if "forget_loss" in stats:
                bar.set_postfix(f=f"{stats['forget_loss']:.3f}")
            if tc.checkpoint_every and ((step + 1) % tc.checkpoint_every == 0 or step + 1 == steps):
                save_checkpoint(step + 1)
    except NonFiniteLossError as exc:
        last = ckpt.latest(tc.checkpoint_dir) if tc.checkpoint_dir else None
        if last is not None:
            exc.args = (f"{exc.args[0]}; last good checkpoint: {last}",)
        raise
    finally:
        bar.close()
        if metrics_file:
            metrics_file.close()
    strategy.finalize(params)
    elapsed = elapsed_before + time.perf_counter() - start
    model = accelerator.unwrap_model(model)
    if fsdp:  # the main process gets a plain model holding the gathered weights (what it writes)
        model = _gathered_model(model, plain_cls, accelerator.is_main_process)
    model.eval()
    metrics = {
        "method": method.name, "steps": steps, "seconds": round(elapsed, 3),
        "passes_per_step": total_passes / (steps * tc.grad_accum),
        # budget accounting: what the run consumed, to compare methods at matched budget
        "passes": total_passes,
        "forget_samples": forget_stream.samples_drawn(),
        "retain_samples": retain_stream.samples_drawn() if retain_stream is not None else 0,
        "trainable_parameters": sum(p.numel() for p in params),
        "final_forget_loss": log[-1].get("forget_loss") if log else None,
        "final_retain_loss": log[-1].get("retain_loss") if log else None,
        "processes": accelerator.num_processes,
    }
    if start_step:
        metrics["resumed_from_step"] = start_step
    return UnlearnResult(model, method, param, metrics, log)


# modules whose weights autocast casts to its dtype (linear / convolution kernels); a parameter of
# another module is taken as cast when it is a matrix that no embedding owns (custom matmuls)
_CAST_MODULES = (torch.nn.Linear, torch.nn.Conv1d, torch.nn.Conv2d, torch.nn.Conv3d, torch.nn.Bilinear)


def forward_dtypes_of(model: torch.nn.Module, params, dtype: torch.dtype) -> list:
    """Per parameter, the dtype the autocast forward multiplies it in (``dtype`` for linear and
    convolution weights, including an embedding tied to the output layer), ``None`` where it is
    used as stored (embedding lookups, norms)."""
    cast, emb = set(), set()
    for m in model.modules():
        own = {id(p) for p in m.parameters(recurse=False)}
        if isinstance(m, _CAST_MODULES) or type(m).__name__ == "Conv1D":  # transformers' GPT-2 Conv1D
            cast |= own
        elif isinstance(m, torch.nn.Embedding):
            emb |= own
    return [dtype if p.dtype != dtype and (id(p) in cast or (p.dim() >= 2 and id(p) not in emb)) else None
            for p in params]


def _autocast_plan(accelerator, model, params):
    """``(forward_dtypes, exact_forward, flag)`` for the StepContext: ``(None, None, flag)``
    without autocast. ``exact_forward()`` runs passes with autocast off (also accelerate's autocast
    wrapper of ``model.forward``); it is ``None`` when the model holds half-precision floating
    weights (they would meet float32 activations)."""
    import contextlib

    flag = [False]
    dev = accelerator.device.type
    with accelerator.autocast():
        on = torch.is_autocast_enabled(dev)
        dtype = torch.get_autocast_dtype(dev) if on else None
    if not on:
        return None, None, flag
    from .strategies.perturb import EXACT_DTYPES

    if any(p.is_floating_point() and p.dtype not in EXACT_DTYPES for p in model.parameters()):
        return forward_dtypes_of(model, params, dtype), None, flag

    @contextlib.contextmanager
    def exact_forward():
        inner = accelerator.unwrap_model(model, keep_fp32_wrapper=True)
        wrapped, orig = inner.__dict__.get("forward"), inner.__dict__.get("_original_forward")
        flag[0] = True
        if orig is not None:
            inner.forward = orig
        precision = torch.get_float32_matmul_precision()
        torch.set_float32_matmul_precision("highest")  # TF32 would round the perturbation away too
        try:
            with torch.autocast(dev, enabled=False):
                yield
        finally:
            torch.set_float32_matmul_precision(precision)
            flag[0] = False
            if orig is not None:
                inner.forward = wrapped

    return forward_dtypes_of(model, params, dtype), exact_forward, flag


class _GradOverflow(Exception):
    """A loss-scaled (fp16) backward overflowed: the step is recomputed at a smaller scale."""


@torch.no_grad()
def _scale_grads(params, factor: float) -> None:
    for p in params:
        if p.grad is not None:
            p.grad.mul_(factor)


def _unscaling_backward(backward, scaler, params, all_finite_any):
    """``backward`` (which multiplies the loss by the GradScaler's scale S) made to *add the true
    gradient* to ``.grad``: the gradients accumulated so far are set aside, the new ones divided by
    S (a power of two: exact), then the set-aside ones added back. Raises :class:`_GradOverflow`
    (on every process together) when the scaled gradient overflowed."""

    from .strategies.perturb import local

    def run(loss: torch.Tensor) -> None:
        inv = 1.0 / scaler.get_scale()
        stash = [p.grad for p in params]
        for p in params:
            p.grad = None
        backward(loss)
        finite = torch.ones((), dtype=torch.bool)
        with torch.no_grad():
            for p, old in zip(params, stash, strict=True):
                if p.grad is not None:
                    p.grad.mul_(inv)
                    finite = finite & torch.isfinite(local(p.grad)).all().cpu()  # FSDP2: its shard
                    if old is not None:
                        p.grad.add_(old)
                elif old is not None:
                    p.grad = old
        if not all_finite_any(bool(finite)):
            raise _GradOverflow

    return run


FSDP_STRATEGIES = ("plain", "sam", "stableun")


def _check_fsdp(accelerator, method: Method, tc) -> None:
    """What the loop supports under FSDP (tested with 2 processes against 1): FSDP2, full weights,
    the strategies whose global sums go through ``all_reduce_sum``, no checkpoints."""
    if not accelerator.is_fsdp2:
        raise UnlearnError("FSDP1 (fsdp_version: 1) flattens the parameters, which the strategies read "
                           "one by one; set fsdp_version: 2 (configs/accelerate/fsdp.yaml)")
    if method.strategy not in FSDP_STRATEGIES:
        raise UnlearnError(f"strategy {method.strategy!r} is not supported under FSDP (supported: "
                           f"{', '.join(FSDP_STRATEGIES)}); run it with DDP (configs/accelerate/ddp.yaml)")
    if method.parameterization != "full":
        raise UnlearnError(f"parameterization {method.parameterization!r} is not supported under FSDP "
                           "(full weights only); run it with DDP (configs/accelerate/ddp.yaml)")
    if tc.checkpoint_every:
        raise UnlearnError("train.checkpoint_every is not supported under FSDP (sharded weights and "
                           "optimizer state); use DDP")


def _gathered_model(model, plain_cls, is_main: bool):
    """After FSDP2 training: every process takes part in gathering the full state dict (on the main
    process, on the CPU); the main process returns a plain (unsharded) model of the original class
    built on the meta device and given the gathered weights, the buffers and the tensor attributes
    of the trained one. Other processes return the sharded model (they write nothing)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    full = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not is_main:
        return model
    with torch.device("meta"):
        plain = plain_cls(model.config)
    plain.load_state_dict(full, assign=True, strict=False)
    trained = dict(model.named_modules())
    for name, mod in plain.named_modules():
        src = trained[name]
        for key, buf in list(mod._buffers.items()):
            if buf is not None:
                mod._buffers[key] = src._buffers[key].detach().to("cpu", copy=True)
        for key, val in list(vars(mod).items()):
            if isinstance(val, torch.Tensor) and val.is_meta:
                setattr(mod, key, getattr(src, key).detach().to("cpu", copy=True))
    if getattr(plain.config, "tie_word_embeddings", False):
        plain.tie_weights()
    requires = {n: p.requires_grad for n, p in model.named_parameters()}
    for n, p in plain.named_parameters():
        if p.is_meta:
            raise UnlearnError(f"FSDP: the gathered state dict has no weights for {n}")
        p.requires_grad_(requires.get(n, False))
    return plain


def cpu_only() -> bool:
    """True without an accelerator: accelerate then needs ``cpu=True`` to run several processes
    (torchrun on the CPU: gloo). Whatever creates accelerate's process state first must pass it."""
    acc = getattr(torch, "accelerator", None)
    return not (acc.is_available() if acc is not None else torch.cuda.is_available())


def _fingerprint_config(cfg: RunConfig) -> dict:
    data = cfg.model_dump()
    for k in _RESUMABLE_CHANGES:
        data.pop(k, None)
    for k in _RESUMABLE_TRAIN_CHANGES:
        data["train"].pop(k, None)
    return data


def _mean_over_processes(accelerator, stats: dict) -> dict:
    """Float statistics (losses of each process's share) averaged over processes."""
    if accelerator.num_processes == 1:
        return stats
    keys = [k for k, v in stats.items() if isinstance(v, float)]
    if not keys:
        return stats
    local = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=accelerator.device)
    mean = accelerator.reduce(local, reduction="mean").tolist()
    return {**stats, **dict(zip(keys, mean, strict=True))}


def _grad_norm(params, all_reduce_sum=lambda t: t) -> float:
    from .strategies.perturb import local

    with torch.no_grad():
        sq = sum((local(p.grad).double().pow(2).sum() for p in params if p.grad is not None),
                 torch.zeros((), dtype=torch.float64))
    return float(all_reduce_sum(sq.cpu()).sqrt())
