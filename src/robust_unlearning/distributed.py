"""Several processes: what the loop supports, and the few collectives a step takes.

``accelerate launch`` / ``torchrun`` with DDP: N processes compute the update one process computes
on the same *global* batch (``train.batch_size`` is the global batch). The data comes from
:class:`~.data.stream.BatchStream`, not from accelerate's prepared DataLoader: every process draws
the same seeded global batch and keeps its slice (what accelerate's ``split_batches=True`` does;
that is also set, through ``DataLoaderConfiguration``, so that the prepared scheduler steps once per
optimizer step, not N times). DDP averages the gradients in every backward pass, so after each
``backward`` every process holds the gradient of the global batch: the global quantities of the
strategies (SAM's ‖g‖, StableUN's dot products and norms, realised perturbation fractions) are
computed from identical, replicated tensors and agree on all processes. :meth:`Collectives.sum` is
then the identity; it is a sum over processes only where gradients are partitioned:

* DeepSpeed ZeRO: only strategies with ``supports_deepspeed`` (plain), no checkpoints;
* FSDP2: strategies with ``supports_fsdp`` (plain, sam, stableun) on full weights, no checkpoints;
  local sums over the parameter shards, the full state dict gathered at the end for the main
  process's output (:func:`gathered_model`).

Gradients taken with ``torch.autograd.grad`` (gp, cr: double backward) bypass DDP's averaging; those
strategies average them through :meth:`Collectives.mean_grads` and send every contribution to the
update through ``backward``. Noise (RS, StableUN's gpn) and rule draws come from generators seeded by
(seed, step), never from the global RNG, so every process draws the same. Logged float statistics
are averaged over processes; only the main process writes the metrics log and checkpoints.
Configs for ``accelerate launch``: ``configs/accelerate/``.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .errors import UnlearnError


def cpu_only() -> bool:
    """True without an accelerator: accelerate then needs ``cpu=True`` to run several processes
    (torchrun on the CPU: gloo). Whatever creates accelerate's process state first must pass it."""
    acc = getattr(torch, "accelerator", None)
    return not (acc.is_available() if acc is not None else torch.cuda.is_available())


def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of ``t``: the local shard of a DTensor (FSDP2), else ``t`` itself. Sums
    over local parts go through :meth:`Collectives.sum`, which adds the shards' sums."""
    to_local = getattr(t, "to_local", None)
    return to_local() if to_local is not None else t


@dataclass(frozen=True)
class Collectives:
    """The reductions over processes a step needs; without an accelerator (one process) every one
    is the identity."""

    accelerator: object | None = None
    sharded: bool = False  # gradients partitioned (DeepSpeed, FSDP2): global sums are sums over processes
    fsdp: bool = False  # FSDP2: sharded (DTensor) parameters, the full weights gathered at the end

    @property
    def processes(self) -> int:
        return self.accelerator.num_processes if self.accelerator is not None else 1

    def sum(self, t: torch.Tensor) -> torch.Tensor:
        """Sum over processes of a quantity over the *local* gradients: only partitioned gradients
        need it; DDP replicates parameters and all-reduces gradients."""
        if not self.sharded:
            return t
        return self.accelerator.reduce(t.to(self.accelerator.device), reduction="sum").cpu()

    def mean_grads(self, ts: list[torch.Tensor]) -> list[torch.Tensor]:
        """Mean over processes of per-process gradients from ``torch.autograd.grad`` (gp, cr): DDP
        averages only what ``backward`` accumulates into ``.grad``. One all-reduce per dtype; the
        identity in one process (and under DeepSpeed, which refuses the strategies that call it)."""
        if self.processes == 1 or self.sharded:
            return ts
        out, by_dtype = list(ts), {}
        for i, t in enumerate(ts):
            by_dtype.setdefault(t.dtype, []).append(i)
        for idx in by_dtype.values():
            flat = torch.cat([ts[i].detach().reshape(-1) for i in idx])
            flat = self.accelerator.reduce(flat, reduction="mean")
            for i, piece in zip(idx, flat.split([ts[i].numel() for i in idx]), strict=True):
                out[i] = piece.view_as(ts[i])
        return out

    def all_ok(self, local_ok: bool) -> bool:
        """True on every process (so that all stop at the same pass: a process that stopped alone
        would leave the others waiting in the gradient all-reduce)."""
        if self.accelerator is None:
            return local_ok
        bad = torch.tensor(0.0 if local_ok else 1.0, device=self.accelerator.device)
        if self.processes > 1:
            bad = self.accelerator.reduce(bad, reduction="sum")
        return float(bad) == 0.0

    def all_finite(self, t: torch.Tensor) -> bool:
        return self.all_ok(bool(torch.isfinite(t).all()))

    def mean_stats(self, stats: dict) -> dict:
        """Float statistics (losses of each process's share) averaged over processes."""
        keys = [k for k, v in stats.items() if isinstance(v, float)]
        if self.processes == 1 or not keys:
            return stats
        t = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
        mean = self.accelerator.reduce(t, reduction="mean").tolist()
        return {**stats, **dict(zip(keys, mean, strict=True))}

    def grad_norm(self, params) -> float:
        """Global ‖.grad‖₂ over ``params``: the local norm as clipping computes it (float32, one fused
        kernel over the gradients: no float64 copy of them every step), squared and summed."""
        grads = [local(p.grad) for p in params if p.grad is not None]
        if not grads:
            return 0.0
        with torch.no_grad():
            sq = torch.nn.utils.get_total_norm(grads, 2.0).double().pow(2)
        return float(self.sum(sq.cpu()).sqrt())


ONE_PROCESS = Collectives()


def collectives_for(accelerator, strategy, method, tc) -> Collectives:
    """The run's collectives; refuses what the distribution in use does not support."""
    from accelerate.utils import DistributedType

    kind = accelerator.distributed_type
    if kind == DistributedType.FSDP:
        check_fsdp(accelerator, method, tc)
    if kind == DistributedType.DEEPSPEED:
        if not type(strategy).supports_deepspeed:
            raise UnlearnError(f"strategy {method.strategy!r} reads and perturbs along the full gradient, "
                               "which DeepSpeed partitions; run it with DDP (configs/accelerate/ddp.yaml)")
        if tc.checkpoint_every:
            raise UnlearnError("train.checkpoint_every is not supported under DeepSpeed (partitioned "
                               "optimizer state); use DDP")
    return Collectives(accelerator, sharded=kind in (DistributedType.FSDP, DistributedType.DEEPSPEED),
                       fsdp=kind == DistributedType.FSDP)


def check_fsdp(accelerator, method, tc) -> None:
    """What the loop supports under FSDP (tested with 2 processes against 1): FSDP2, full weights,
    the strategies that declare ``supports_fsdp`` (their global sums go through
    :meth:`Collectives.sum`), no checkpoints."""
    from .strategies.base import STRATEGIES

    if not accelerator.is_fsdp2:
        raise UnlearnError("FSDP1 (fsdp_version: 1) flattens the parameters, which the strategies read "
                           "one by one; set fsdp_version: 2 (configs/accelerate/fsdp.yaml)")
    if not STRATEGIES.get(method.strategy).supports_fsdp:
        ok = [n for n in STRATEGIES.names() if STRATEGIES.get(n).supports_fsdp]
        raise UnlearnError(f"strategy {method.strategy!r} is not supported under FSDP (supported: "
                           f"{', '.join(ok)}); run it with DDP (configs/accelerate/ddp.yaml)")
    if method.parameterization != "full":
        raise UnlearnError(f"parameterization {method.parameterization!r} is not supported under FSDP "
                           "(full weights only); run it with DDP (configs/accelerate/ddp.yaml)")
    if tc.checkpoint_every:
        raise UnlearnError("train.checkpoint_every is not supported under FSDP (sharded weights and "
                           "optimizer state); use DDP")


def gathered_model(model, plain_cls, is_main: bool):
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
