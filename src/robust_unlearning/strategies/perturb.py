"""Exact, restorable weight perturbations and the small tensor-list tools robust strategies share.

Rules every strategy here follows (REFERENCES.md §2.1 lists the defects they avoid):

* **Exact restore.** Before perturbing, the trainable parameters are saved (:class:`Snapshot`) and
  afterwards copied back, so the weights after a step are bitwise the weights before the
  perturbation, at any dtype. Restoring by subtraction (θ + ε − ε) is not exact and is never used.
* **No rounding away.** A perturbation is added in the parameters' own dtype. In float32 a ρ of
  1e-7 along a normalised direction changes the weights (most entries' ulp is far smaller than the
  entries a normalised gradient concentrates on); in bfloat16/float16 most of a small ε rounds
  away. So perturbing strategies require float32 (or float64) trainable parameters and refuse
  half-precision ones with an :class:`UnlearnError` at setup. To train a half-precision model, set
  ``train.mixed_precision: bf16``: the loop then keeps float32 master copies of the trainable
  parameters (the perturbation is applied to them) and runs the forward in bf16 under autocast.
  Each perturbing step logs ``perturb_realized`` = ‖fl(θ+ε) − θ‖ / ‖ε‖ so a perturbation that
  did round away is visible in the metrics, never silent.
* **Graphs never outlive their point.** A forward graph built at a perturbed point is consumed
  (backward run) before the weights move again: autograd does not see in-place ``.data`` changes.
* **Accumulate, never overwrite.** Whatever was in ``.grad`` when a strategy starts is stashed and
  added back at the end (:func:`take_grads` / :func:`put_back`); in the loop it is always empty,
  so this costs nothing there.
* **Global reductions.** Gradients come from ``ctx.backward`` (under DDP: averaged over processes
  in every backward pass, so every process holds the global batch's gradient). Squared norms and
  dot products are summed over the local parameters, then through ``ctx.all_reduce_sum`` (the
  identity for replicated gradients, a sum over processes where they are partitioned: DeepSpeed,
  FSDP2, whose DTensor shards enter the sums through :func:`local`), so that several processes
  agree on them. Noise comes from generators seeded by (seed, step), never from
  the global RNG.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch

from ..errors import UnlearnError

EXACT_DTYPES = (torch.float32, torch.float64)
TINY = 1e-12  # guard for normalisations


def require_exact(params: Sequence[torch.Tensor], strategy: str) -> None:
    """Refuse half-precision trainable parameters: small perturbations would round away."""
    bad = sorted({str(p.dtype).replace("torch.", "") for p in params if p.dtype not in EXACT_DTYPES})
    if bad:
        raise UnlearnError(
            f"strategy {strategy!r} perturbs the weights by small steps, which round away in "
            f"{', '.join(bad)}; "
            "load the model in float32 (dtype: float32) or set train.mixed_precision: bf16 "
            "(float32 master weights, bf16 compute)"
        )


class Snapshot:
    """Saved copies of the trainable parameters; :meth:`restore` copies them back bitwise."""

    def __init__(self, params: Sequence[torch.nn.Parameter]):
        self.params = list(params)
        with torch.no_grad():
            self.saved = [p.detach().clone() for p in self.params]

    @torch.no_grad()
    def restore(self) -> None:
        for p, s in zip(self.params, self.saved, strict=True):
            p.data.copy_(s)



# -- sharded parameters (FSDP2: DTensor shards) -----------------------------------------------------

def local(t: torch.Tensor) -> torch.Tensor:
    """This process's part of ``t``: the local shard of a DTensor (FSDP2), else ``t`` itself. Sums
    over local parts go through ``ctx.all_reduce_sum``, which adds the shards' sums."""
    to_local = getattr(t, "to_local", None)
    return to_local() if to_local is not None else t


def shard_like(p: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """``full`` (the same on every process) laid out like ``p``: its local shard where ``p`` is a
    DTensor, no communication; else ``full`` itself."""
    if getattr(p, "device_mesh", None) is None:
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None)


# -- tensor lists ----------------------------------------------------------------------------------

def grads_of(params: Sequence[torch.nn.Parameter]) -> list[torch.Tensor]:
    """Current ``.grad`` of each parameter (zeros where there is none)."""
    return [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]


def take_grads(params: Sequence[torch.nn.Parameter]) -> list[torch.Tensor | None]:
    """Remove and return the current ``.grad`` tensors (``None`` where absent)."""
    out = [p.grad for p in params]
    for p in params:
        p.grad = None
    return out


def put_back(params: Sequence[torch.nn.Parameter], stash: Sequence[torch.Tensor | None]) -> None:
    """Add stashed gradients back into ``.grad`` (accumulating)."""
    with torch.no_grad():
        for p, g in zip(params, stash, strict=True):
            if g is None:
                continue
            if p.grad is None:
                p.grad = g
            else:
                p.grad.add_(g)


def add_to_grads(params: Sequence[torch.nn.Parameter], tensors: Iterable[torch.Tensor],
                 alpha: float = 1.0) -> None:
    with torch.no_grad():
        for p, t in zip(params, tensors, strict=True):
            t = t.to(p.dtype)
            if p.grad is None:
                p.grad = t.mul(alpha) if alpha != 1.0 else t.clone()
            else:
                p.grad.add_(t, alpha=alpha)


def sq_norm(ctx, tensors: Iterable[torch.Tensor]) -> float:
    """Global Σ t² (float64, summed over processes)."""
    part = sum((local(t.detach()).double().pow(2).sum() for t in tensors),
               torch.zeros((), dtype=torch.float64))
    return float(ctx.all_reduce_sum(part))


def dot(ctx, a: Iterable[torch.Tensor], b: Iterable[torch.Tensor]) -> float:
    """Global Σ a·b (float64, summed over processes)."""
    part = sum(((local(x.detach()).double() * local(y.detach()).double()).sum()
                for x, y in zip(a, b, strict=True)), torch.zeros((), dtype=torch.float64))
    return float(ctx.all_reduce_sum(part))


@torch.no_grad()
def add_(params: Sequence[torch.nn.Parameter], direction: Iterable[torch.Tensor], alpha: float) -> None:
    """θ ← θ + α·d, in place (call while a :class:`Snapshot` of θ is held)."""
    for p, d in zip(params, direction, strict=True):
        p.data.add_(d.to(p.dtype), alpha=alpha)


@torch.no_grad()
def perturb_(ctx, params: Sequence[torch.nn.Parameter], direction: Iterable[torch.Tensor], alpha: float,
             requested_norm: float) -> float:
    """θ ← θ + α·d in place; return the realised fraction ‖fl(θ+αd) − θ‖ / ``requested_norm``
    (1.0 when fully represented, 0.0 when it rounded away entirely)."""
    sq = torch.zeros((), dtype=torch.float64)
    for p, d in zip(params, direction, strict=True):
        old = p.detach().clone()  # one parameter at a time: no model-sized buffer
        p.data.add_(d.to(p.dtype), alpha=alpha)
        sq += (local(p.detach()).double() - local(old).double()).pow(2).sum()
    if requested_norm <= 0:
        return 0.0
    return float(ctx.all_reduce_sum(sq)) ** 0.5 / requested_norm


@torch.no_grad()
def gaussian_(ctx, params: Sequence[torch.nn.Parameter], sigma: float, seed: int) -> float:
    """θ ← θ + N(0, σ²I), reproducibly (one generator per device seeded by ``seed``, so every
    process draws the same noise); return the realised fraction of the drawn noise's norm."""
    gens: dict = {}
    sq_req = torch.zeros((), dtype=torch.float64)
    sq_got = torch.zeros((), dtype=torch.float64)
    for p in params:
        g = gens.get(p.device)
        if g is None:
            g = gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        noise = torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32).mul_(sigma)
        noise = shard_like(p, noise)  # the full noise on every process, each keeps its shard
        old = p.detach().clone()
        p.data.add_(noise.to(p.dtype))
        sq_req += local(noise).double().pow(2).sum()
        sq_got += (local(p.detach()).double() - local(old).double()).pow(2).sum()
    req = float(ctx.all_reduce_sum(sq_req)) ** 0.5
    return float(ctx.all_reduce_sum(sq_got)) ** 0.5 / req if req > 0 else 0.0


@torch.no_grad()
def mean_with_(params: Sequence[torch.nn.Parameter], others: Sequence[Sequence[torch.Tensor]]) -> None:
    """θ ← mean of θ and the given parameter lists (StableUN's HWS)."""
    for i, p in enumerate(params):
        acc = p.detach().clone()
        for o in others:
            acc.add_(o[i].to(acc.dtype))
        p.data.copy_(acc.div_(1 + len(others)))


def count(ctx, passes: int) -> None:
    """Count passes run outside ``ctx.backward`` (``torch.autograd.grad`` calls)."""
    ctx.passes += passes


def double_backward_ready():
    """Context for forwards whose gradient graph will be differentiated again: fused attention
    kernels (flash / memory-efficient SDPA) have no double backward, the math kernel has."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    return sdpa_kernel([SDPBackend.MATH])


def forget_grads(ctx, batches: Sequence[dict], scale: float = 1.0, create_graph: bool = False):
    """Yield ``(loss, grads)`` of ``scale·ℓ_f`` per batch via ``torch.autograd.grad`` (no ``.grad``);
    with ``create_graph`` the forward uses a double-backward-capable attention kernel."""
    for b in batches:
        if create_graph:
            with double_backward_ready():
                loss = ctx.forget_loss(b)
        else:
            loss = ctx.forget_loss(b)
        _check_finite(ctx, loss)
        gs = torch.autograd.grad(loss * scale, ctx.params, create_graph=create_graph, allow_unused=True,
                                 retain_graph=create_graph)
        count(ctx, 1)
        yield loss, [g if g is not None else torch.zeros_like(p) for g, p in zip(gs, ctx.params, strict=True)]


def _check_finite(ctx, loss: torch.Tensor) -> None:
    if not ctx.all_finite(loss.detach()):
        from ..errors import NonFiniteLossError

        raise NonFiniteLossError("loss", ctx.step)
