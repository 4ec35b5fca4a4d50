"""Exact, restorable weight perturbations and the small tensor-list tools robust strategies share.

Rules every strategy here follows (docs/methods.md#known-defects-avoided lists the defects they avoid):

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
* **What the forward sees.** Under bf16/fp16 autocast the forward casts the float32 masters of
  the weights it multiplies (linear, conv) to the autocast dtype, where most of a small ε rounds
  away again (a model loaded in bf16 has masters exactly on the bf16 grid: every entry with
  |ε_i| < ulp/2 vanishes). So every perturbation is measured in the dtype the forward uses
  (:class:`Realized`: the share ``⟨c(θ+ε) − c(θ), ε⟩ / ‖ε‖²`` and the relative error
  ``‖c(θ+ε) − c(θ) − ε‖ / ‖ε‖``, ``c`` the forward's cast of each parameter). When the autocast
  copy's error exceeds 10 %, the passes at the perturbed point run with autocast off, on the
  float32 masters (:func:`perturbed_passes`); when that is impossible (frozen half-precision
  weights would meet float32 activations) the step stops with an error naming the smallest
  radius whose perturbation the forward does see. Logged per step: ``perturb_realized`` /
  ``perturb_error`` (what the perturbed forward saw), ``perturb_realized_autocast`` /
  ``perturb_error_autocast`` (what the autocast cast keeps) and ``perturb_fp32_passes``.
* **Graphs never outlive their point.** A forward graph built at a perturbed point is consumed
  (backward run) before the weights move again: autograd does not see in-place ``.data`` changes.
* **Accumulate, never overwrite.** Whatever was in ``.grad`` when a strategy starts is stashed and
  added back at the end (:func:`take_grads` / :func:`put_back`); in the loop it is always empty,
  so this costs nothing there.
* **Global reductions.** Gradients come from ``ctx.backward`` (under DDP: averaged over processes
  in every backward pass, so every process holds the global batch's gradient). Squared norms and
  dot products are summed over the local parameters, then through ``ctx.all_reduce_sum`` (the
  identity for replicated gradients, a sum over processes where they are partitioned: DeepSpeed,
  FSDP2, whose DTensor shards enter the sums through ``local``): ``ctx.sq_norm`` / ``ctx.dot``,
  so that several processes agree on them. Noise comes from generators seeded by (seed, step),
  never from the global RNG.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Callable, Iterable, Iterator, Sequence

import torch

from ..distributed import local
from ..errors import UnlearnError
from ..precision import EXACT_DTYPES
from .base import dense

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

def shard_like(p: torch.Tensor, full: torch.Tensor) -> torch.Tensor:
    """``full`` (the same on every process) laid out like ``p``: its local shard where ``p`` is a
    DTensor, no communication; else ``full`` itself."""
    if getattr(p, "device_mesh", None) is None:
        return full
    from torch.distributed.tensor import distribute_tensor

    return distribute_tensor(full, p.device_mesh, p.placements, src_data_rank=None)


# -- tensor lists ----------------------------------------------------------------------------------

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
                 alpha: float = 1.0, own: bool = False) -> None:
    """``.grad += α·t`` per parameter. ``own``: the tensors are temporaries the caller gives up,
    which become ``.grad`` where there is none (no copy)."""
    with torch.no_grad():
        for p, t in zip(params, tensors, strict=True):
            t = t.to(p.dtype)
            if p.grad is None:
                if alpha != 1.0:
                    p.grad = t.mul_(alpha) if own else t.mul(alpha)
                else:
                    p.grad = t if own else t.clone()
            else:
                p.grad.add_(t, alpha=alpha)


@torch.no_grad()
def add_(params: Sequence[torch.nn.Parameter], direction: Iterable[torch.Tensor], alpha: float) -> None:
    """θ ← θ + α·d, in place (call while a :class:`Snapshot` of θ is held)."""
    for p, d in zip(params, direction, strict=True):
        p.data.add_(d.to(p.dtype), alpha=alpha)


@dataclass
class Realized:
    """How much of a requested move ε the weights kept: ``master`` in the parameters' own dtype,
    ``forward`` as the forward casts them (the same without autocast). Share along ε,
    ``⟨c(θ+ε) − c(θ), ε⟩ / ‖ε‖²`` (1: all of it, 0: rounded away), and relative error
    ``‖c(θ+ε) − c(θ) − ε‖ / ‖ε‖`` (0: exact; rounding of entries far below the ulp can keep the
    share near 1 on average while the error is large)."""

    master: float
    forward: float
    norm: float  # ‖ε‖ requested
    error_master: float = 0.0
    error_forward: float = 0.0


class _Share:
    """Running sums over the parameters: ⟨Δ, ε⟩ and ‖Δ − ε‖² (masters and forward casts), ‖ε‖²."""

    def __init__(self):
        self.parts: list[torch.Tensor] = []
        self.scratch = Scratch()  # for the differences: one buffer for every parameter

    def add(self, old: torch.Tensor, new: torch.Tensor, eps: torch.Tensor, cast: torch.dtype | None) -> None:
        # differences in float32 (exact for a move small against the weight: Sterbenz; float64 for
        # float64 weights), one dot product per sum and no other temporary than the difference;
        # the per-parameter sums are added in float64 in :meth:`result`. No float64 copy of the
        # parameters, which on a 100 M model cost more than the perturbation itself; the forward's
        # cast only where it differs from the stored dtype.
        old, new, eps = local(old), local(new), local(eps)
        work = torch.float64 if new.dtype == torch.float64 else torch.float32
        eps = eps.to(work).reshape(-1)
        m_dot, m_err = _dot_err(self._diff(new, old, work), eps)
        if cast is None or cast == new.dtype:
            f_dot, f_err = m_dot, m_err
        else:
            f_dot, f_err = _dot_err(self._diff(new.to(cast), old.to(cast), work), eps)
        self.parts.append(torch.stack([m_dot, f_dot, m_err, f_err, torch.dot(eps, eps)]))

    def _diff(self, new: torch.Tensor, old: torch.Tensor, work: torch.dtype) -> torch.Tensor:
        out = self.scratch.take(new.numel(), work, new.device)
        return torch.sub(new.reshape(-1).to(work), old.reshape(-1).to(work), out=out)

    def result(self, ctx) -> Realized:
        sums = (torch.stack(self.parts).to(torch.float64).sum(0).cpu() if self.parts
                else torch.zeros(5, dtype=torch.float64))
        m, f, em, ef, r = (float(x) for x in ctx.all_reduce_sum(sums))
        if r <= 0:
            return Realized(1.0, 1.0, 0.0)  # nothing was asked: nothing was lost
        return Realized(m / r, f / r, r ** 0.5, (em / r) ** 0.5, (ef / r) ** 0.5)


class Scratch:
    """One flat buffer reused for per-parameter temporaries (grown to the largest asked for), so a
    loop over the parameters does not allocate, and page in, a fresh tensor for each of them."""

    def __init__(self):
        self.buf: torch.Tensor | None = None

    def take(self, n: int, dtype: torch.dtype, device) -> torch.Tensor:
        b = self.buf
        if b is None or b.numel() < n or b.dtype != dtype or b.device != torch.device(device):
            b = self.buf = torch.empty(n, dtype=dtype, device=device)
        return b[:n]


def _dot_err(delta: torch.Tensor, eps: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """⟨Δ, ε⟩ and ‖Δ − ε‖² of flat vectors (``delta`` is a temporary: overwritten)."""
    dot = torch.dot(delta, eps)
    delta.sub_(eps)
    return dot, torch.dot(delta, delta)


def _casts(ctx, params) -> list:
    casts = getattr(ctx, "forward_dtypes", None)
    if casts is None or len(casts) != len(params) or params is not getattr(ctx, "params", None):
        return [None] * len(params)
    return list(casts)


@torch.no_grad()
def perturb_(ctx, params: Sequence[torch.nn.Parameter], direction: Iterable[torch.Tensor],
             alpha: float, base: Sequence[torch.Tensor] | None = None) -> Realized:
    """θ ← θ + α·d in place; return the share of the move the weights (and the forward) kept.
    ``base``: the values the parameters hold now (a :class:`Snapshot`'s ``saved`` right after a
    restore), which spares a copy of each parameter; without it each is copied before it moves."""
    share, scratch = _Share(), Scratch()
    for i, (p, d, cast) in enumerate(zip(params, direction, _casts(ctx, params), strict=True)):
        # one parameter at a time: no model-sized buffer
        old = p.detach().clone() if base is None else base[i]
        if getattr(p, "device_mesh", None) is None:
            out = scratch.take(p.numel(), p.dtype, p.device).view(p.shape)
            eps = torch.mul(d.to(p.dtype), alpha, out=out)
        else:
            eps = d.to(p.dtype) * alpha
        p.data.add_(eps)
        share.add(old, p.detach(), eps, cast)
    return share.result(ctx)


def noise_draw(params, sigma: float, seed: int, scratch: Scratch | None = None) -> Iterator[torch.Tensor]:
    """The N(0, σ²I) draw of ``seed`` for each parameter (one generator per device, so every
    process draws the same noise; each keeps its shard). With ``scratch`` each draw is written into
    that one reused buffer (bitwise the same draw, no allocation): use each yielded tensor before
    asking for the next."""
    gens: dict = {}
    for p in params:
        g = gens.get(p.device)
        if g is None:
            g = gens[p.device] = torch.Generator(device=p.device).manual_seed(seed)
        if scratch is None or getattr(p, "device_mesh", None) is not None:
            noise = torch.randn(p.shape, generator=g, device=p.device, dtype=torch.float32)
        else:
            noise = scratch.take(p.numel(), torch.float32, p.device).view(p.shape).normal_(generator=g)
        yield shard_like(p, noise.mul_(sigma))  # the full noise on every process, each keeps its shard


@torch.no_grad()
def gaussian_(ctx, params: Sequence[torch.nn.Parameter], sigma: float, seed: int,
              base: Sequence[torch.Tensor] | None = None) -> Realized:
    """θ ← θ + N(0, σ²I), reproducibly (seeded by ``seed``); return the share of the drawn noise
    the weights (and the forward) kept. ``base`` as in :func:`perturb_`."""
    share = _Share()
    draws = noise_draw(params, sigma, seed, Scratch())
    for i, (p, noise, cast) in enumerate(zip(params, draws, _casts(ctx, params), strict=True)):
        old = p.detach().clone() if base is None else base[i]
        noise = noise.to(p.dtype)
        p.data.add_(noise)
        share.add(old, p.detach(), noise, cast)
    return share.result(ctx)


@torch.no_grad()
def share_of(ctx, params: Sequence[torch.nn.Parameter], moves: Callable[[], Iterable[torch.Tensor]],
             scale: float) -> Realized:
    """What :func:`perturb_` would report for the move ``scale``·ε (``moves()`` yields ε per
    parameter) at the current weights, without moving them."""
    share = _Share()
    for p, eps, cast in zip(params, moves(), _casts(ctx, params), strict=True):
        eps = eps.to(p.dtype) * scale
        share.add(p.detach(), p.detach() + eps, eps, cast)
    return share.result(ctx)


SEEN = 0.1  # a move counts as seen when the forward's copy of it is within 10 % (relative error)


def _seen(r: Realized) -> bool:
    return r.error_forward <= SEEN


def smallest_radius(ctx, params, moves: Callable[[], Iterable[torch.Tensor]], radius: float) -> float | None:
    """The smallest multiple of ``radius`` (on a grid of ×√10 steps, up to 10⁸×) whose move the
    forward's casts keep within 10 %; ``None`` if none does."""
    for k in range(0, 17):
        scale = 10 ** (k / 2)
        if _seen(share_of(ctx, params, moves, radius * scale)):
            return radius * scale
    return None


@contextlib.contextmanager
def perturbed_passes(ctx, realized: Realized | Sequence[Realized], what: str,
                     moves: Callable[[], Iterable[torch.Tensor]] | None = None, radius: float | None = None,
                     also: Sequence[Realized] = ()):
    """Run the passes at a perturbed point so that their forward sees the perturbation.

    ``realized``: the perturbation(s) that led to this point; ``also``: earlier moves it stands on
    (StableUN's inner step), which count for the decision but are logged apart
    (``inner_step_realized``). Without autocast, or when the autocast cast keeps every move within
    10 %, the passes run as usual. Otherwise they run with autocast off on the float32 masters
    (``ctx.exact_forward``); where that is not available the step stops with an
    :class:`UnlearnError` naming the smallest ``what`` (the option; ``radius`` its value,
    ``moves()`` the move per unit of it) whose perturbation the forward does see. Yields whether
    the passes run in float32. Records in ``ctx.stats``: ``perturb_realized`` / ``perturb_error``
    (share and relative error of what the forward saw: minimum / maximum over the step),
    ``perturb_realized_autocast`` / ``perturb_error_autocast`` (what the autocast cast keeps) and
    ``perturb_fp32_passes``."""
    asked = [r for r in ([realized] if isinstance(realized, Realized) else realized) if r.norm > 0]
    before = [r for r in also if r.norm > 0]
    # without autocast the forward uses the weights as stored: nothing to decide, only to record
    autocast = getattr(ctx, "forward_dtypes", None) is not None
    unseen = [r for r in asked + before if not _seen(r)] if autocast else []
    stats = ctx.stats
    if asked and autocast:
        _low(stats, "perturb_realized_autocast", min(r.forward for r in asked))
        _high(stats, "perturb_error_autocast", max(r.error_forward for r in asked))
    if unseen and getattr(ctx, "exact_forward", None) is None:
        inner = not any(u is r for u in unseen for r in asked)
        hint = ""
        if not inner and moves is not None and radius is not None:
            r_ok = smallest_radius(ctx, ctx.params, moves, radius)
            hint = (f"; the smallest {what} whose perturbation it sees is about {r_ok:.3g}"
                    if r_ok is not None else f"; it sees none up to {what} = {radius * 1e8:.3g}")
        name = ("the inner step (the learning rate times the gradient)" if inner
                else f"the perturbation ({what} = {radius:g})" if radius is not None else "the perturbation")
        raise UnlearnError(
            f"{name} is below what the forward's {_autocast_name(ctx)} represents: it sees "
            f"{min(r.forward for r in unseen):.1%} of it (relative error "
            f"{max(r.error_forward for r in unseen):.0%}), and the perturbed passes cannot run on float32 "
            f"weights because the model has half-precision weights that are not trained{hint}. Load the "
            "model in float32 (dtype: float32; train.mixed_precision keeps bf16 compute for the other "
            "passes)" + ("" if inner else f" or raise {what}"))
    exact = bool(unseen)
    if asked:
        _low(stats, "perturb_realized", min(r.master if exact else r.forward for r in asked))
        _high(stats, "perturb_error", max(r.error_master if exact else r.error_forward for r in asked))
    if before:
        _low(stats, "inner_step_realized", min(r.master if exact else r.forward for r in before))
    if not exact:
        yield False
        return
    start = ctx.passes
    with ctx.exact_forward():
        yield True
    stats["perturb_fp32_passes"] = stats.get("perturb_fp32_passes", 0) + ctx.passes - start


def _low(stats: dict, key: str, value: float) -> None:
    stats[key] = min(value, stats.get(key, value))


def _high(stats: dict, key: str, value: float) -> None:
    stats[key] = max(value, stats.get(key, value))


def _autocast_name(ctx) -> str:
    dts = {d for d in (getattr(ctx, "forward_dtypes", None) or []) if d is not None}
    return "/".join(sorted(str(d).replace("torch.", "") for d in dts)) + " autocast" if dts else "dtype"


@torch.no_grad()
def mean_with_(params: Sequence[torch.nn.Parameter], others: Sequence[Sequence[torch.Tensor]]) -> None:
    """θ ← mean of θ and the given parameter lists (StableUN's HWS)."""
    for i, p in enumerate(params):
        acc = p.detach().clone()
        for o in others:
            acc.add_(o[i].to(acc.dtype))
        p.data.copy_(acc.div_(1 + len(others)))


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
        ctx.check_finite(loss)
        gs = torch.autograd.grad(loss * scale, ctx.params, create_graph=create_graph, allow_unused=True,
                                 retain_graph=create_graph)
        ctx.count_passes(1)
        yield loss, dense(gs, ctx.params)

